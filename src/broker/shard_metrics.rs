//! A replicated broker's per-shard metrics (replication.md): who leads, how far this broker's
//! copy is, how often it took a shard over, how long appends to the logs take, and the
//! snapshots that bound the logs: taken (as leader), restored (as a broker with an empty or too
//! old copy), and where each log starts now (it rises as snapshots let it be trimmed).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabels {
    shard: u32,
}

/// See the module documentation.
#[derive(Clone)]
pub struct ShardMetrics {
    leader: Family<ShardLabels, Gauge>,
    applied: Family<ShardLabels, Gauge<u64, AtomicU64>>,
    lag: Family<ShardLabels, Gauge<u64, AtomicU64>>,
    takeovers: Family<ShardLabels, Counter>,
    append: Histogram,
    snapshots: Family<ShardLabels, Counter>,
    snapshot_sequence: Family<ShardLabels, Gauge<u64, AtomicU64>>,
    snapshot_bytes: Family<ShardLabels, Gauge<u64, AtomicU64>>,
    restores: Family<ShardLabels, Counter>,
    log_first: Family<ShardLabels, Gauge<u64, AtomicU64>>,
}

impl ShardMetrics {
    /// The metrics, registered in `registry` (prefixed `mq9_shard_`).
    pub fn register(registry: &mut Registry) -> ShardMetrics {
        let metrics = ShardMetrics {
            leader: Family::default(),
            applied: Family::default(),
            lag: Family::default(),
            takeovers: Family::default(),
            // 100 µs to ~3 s.
            append: Histogram::new(exponential_buckets(0.000_1, 2.0, 15)),
            snapshots: Family::default(),
            snapshot_sequence: Family::default(),
            snapshot_bytes: Family::default(),
            restores: Family::default(),
            log_first: Family::default(),
        };
        let shards = registry.sub_registry_with_prefix("shard");
        shards.register(
            "leader",
            "1 while this broker leads the shard",
            metrics.leader.clone(),
        );
        shards.register(
            "applied_sequence",
            "The last log sequence in this broker's copy of the shard",
            metrics.applied.clone(),
        );
        shards.register(
            "lag",
            "Log entries this broker has not applied yet (0 while it leads)",
            metrics.lag.clone(),
        );
        shards.register(
            "takeovers",
            "Times this broker took the shard over (failovers and first leads)",
            metrics.takeovers.clone(),
        );
        shards.register(
            "append_duration_seconds",
            "Time to append a batch to a shard's log until a quorum stored it",
            metrics.append.clone(),
        );
        shards.register(
            "snapshots",
            "Snapshots of the shard this broker took and stored (as its leader)",
            metrics.snapshots.clone(),
        );
        shards.register(
            "snapshot_sequence",
            "The last log sequence covered by the newest snapshot this broker stored",
            metrics.snapshot_sequence.clone(),
        );
        shards.register(
            "snapshot_bytes",
            "The size of the newest snapshot this broker stored",
            metrics.snapshot_bytes.clone(),
        );
        shards.register(
            "restores",
            "Times this broker rebuilt its copy of the shard from a snapshot",
            metrics.restores.clone(),
        );
        shards.register(
            "log_first_sequence",
            "The first entry the shard's log still holds (earlier ones are trimmed)",
            metrics.log_first.clone(),
        );
        metrics
    }

    /// This broker leads `shard` (`true`) or not.
    pub fn leading(&self, shard: u32, leading: bool) {
        self.leader
            .get_or_create(&ShardLabels { shard })
            .set(i64::from(leading));
        if leading {
            self.takeovers.get_or_create(&ShardLabels { shard }).inc();
            self.lag.get_or_create(&ShardLabels { shard }).set(0);
        }
    }

    /// This broker's copy of `shard` holds the log up to `sequence`, `behind` entries short of
    /// its end.
    pub fn applied(&self, shard: u32, sequence: u64, behind: u64) {
        self.applied
            .get_or_create(&ShardLabels { shard })
            .set(sequence);
        self.lag.get_or_create(&ShardLabels { shard }).set(behind);
    }

    /// One append took `took`.
    pub fn appended(&self, took: Duration) {
        self.append.observe(took.as_secs_f64());
    }

    /// A snapshot of `shard` covering the log up to `sequence`, `bytes` long, is stored.
    pub fn snapshot_stored(&self, shard: u32, sequence: u64, bytes: u64) {
        let labels = ShardLabels { shard };
        self.snapshots.get_or_create(&labels).inc();
        self.snapshot_sequence.get_or_create(&labels).set(sequence);
        self.snapshot_bytes.get_or_create(&labels).set(bytes);
    }

    /// This broker's copy of `shard` was rebuilt from a snapshot.
    pub fn restored(&self, shard: u32) {
        self.restores.get_or_create(&ShardLabels { shard }).inc();
    }

    /// `shard`'s log starts at `sequence`.
    pub fn log_first(&self, shard: u32, sequence: u64) {
        self.log_first
            .get_or_create(&ShardLabels { shard })
            .set(sequence);
    }
}
