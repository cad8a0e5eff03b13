//! Prometheus metrics of the broker, served at `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::shard_metrics::ShardMetrics;
use crate::engine::Totals;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    command: &'static str,
}

type LatencyFamily = Family<KindLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    commands: Family<CommandLabels, Counter>,
    latency: LatencyFamily,
    mailboxes: Gauge<u64, AtomicU64>,
    messages: Gauge<u64, AtomicU64>,
    bytes: Gauge<u64, AtomicU64>,
    waiting: Gauge<u64, AtomicU64>,
    writes: Counter,
    syncs: Counter,
    refused_replies: Counter,
    malformed: Counter,
    /// A replicated broker's (registered for every broker; empty on a single node).
    pub shards: ShardMetrics,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~26 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mq9");
        let commands = Family::<CommandLabels, Counter>::default();
        let latency = LatencyFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        let mailboxes = Gauge::<u64, AtomicU64>::default();
        let messages = Gauge::<u64, AtomicU64>::default();
        let bytes = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "commands",
            "Commands handled, by command and outcome (ok or an error code)",
            commands.clone(),
        );
        registry.register(
            "command_duration_seconds",
            "Time from receipt of a command to its reply (after the commit it waits for)",
            latency.clone(),
        );
        registry.register("mailboxes", "Mailboxes held", mailboxes.clone());
        registry.register(
            "stored_messages",
            "Messages stored, delayed ones included",
            messages.clone(),
        );
        registry.register(
            "stored_bytes",
            "Bytes stored: payload, headers, key and tags of every message, delayed ones included",
            bytes.clone(),
        );
        let waiting = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "waiting_fetches",
            "Long-poll FETCHes waiting for a message",
            waiting.clone(),
        );
        let writes = Counter::default();
        let syncs = Counter::default();
        registry.register(
            "store_writes",
            "Write batches committed to RocksDB",
            writes.clone(),
        );
        registry.register(
            "store_syncs",
            "Write batches that synced the WAL; concurrent SENDs share one (group commit)",
            syncs.clone(),
        );
        let refused_replies = Counter::default();
        registry.register(
            "refused_replies",
            "Requests dropped unexecuted because their reply subject is not a reply inbox \
             (a confused-deputy attempt or a misconfigured client inbox prefix)",
            refused_replies.clone(),
        );
        let malformed = Counter::default();
        registry.register(
            "nats_malformed_messages",
            "Messages from nats-server skipped unread because their subject or header block was malformed (the NATS connection stays up)",
            malformed.clone(),
        );
        let shards = ShardMetrics::register(&mut registry);
        Metrics {
            shards,
            registry,
            commands,
            latency,
            mailboxes,
            messages,
            bytes,
            waiting,
            writes,
            syncs,
            refused_replies,
            malformed,
        }
    }
}

impl Metrics {
    pub fn command(&self, command: &'static str, outcome: &'static str, latency: Duration) {
        self.commands
            .get_or_create(&CommandLabels { command, outcome })
            .inc();
        self.latency
            .get_or_create(&KindLabels { command })
            .observe(latency.as_secs_f64());
    }

    pub fn totals(&self, totals: &Totals) {
        self.mailboxes.set(totals.mailboxes);
        self.messages.set(totals.messages);
        self.bytes.set(totals.bytes);
        self.waiting.set(totals.waiting_fetches);
        // The engine reports running totals; counters advance by the difference.
        for (counter, total) in [(&self.writes, totals.writes), (&self.syncs, totals.syncs)] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// A request dropped for its reply subject (see `super::replies`).
    pub fn refused_reply(&self) {
        self.refused_replies.inc();
    }

    /// Takes the NATS client's running count of malformed messages it skipped (see
    /// `patches/async-nats/MQ9-PATCH.md`). `fetch_max`, so that concurrent scrapes never
    /// count twice.
    pub fn nats_client(&self, statistics: &async_nats::Statistics) {
        let skipped = statistics.malformed_messages.load(Ordering::Relaxed);
        self.malformed.inner().fetch_max(skipped, Ordering::Relaxed);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
