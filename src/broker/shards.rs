//! A replicated broker's shards (replication.md): for each shard, this broker follows the
//! shard's log into its own RocksDB (`<data-dir>/shard-<n>`) until it takes the shard's lease;
//! then it takes over — appends a takeover entry (which fences the previous leader), applies
//! everything before it — opens the engine on the store and serves, renewing the lease; when
//! the lease or an append is lost it steps down: the engine and its memory go, and the store
//! follows the log again.
//!
//! Leaders spread over the brokers ([`super::slots`]): a broker that leads more than its share
//! hands the extra shards off: it steps down from them and releases their leases.
//!
//! Snapshots ([`crate::replication::snapshot`]): a leader snapshots its shard from time to time,
//! which lets the log be trimmed; a copy that is empty or ends before the log's first entry is
//! rebuilt from the newest usable snapshot before it follows the log.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use super::router::Router;
use super::shard_metrics::ShardMetrics;
use super::slots::{LeaderSlots, HAND_OFF_AFTER};
use super::{BrokerError, Health, JOB_QUEUE};
use crate::config::{SnapshotOptions, SyncMode};
use crate::engine::replicate::{Replicate, ShardPlace};
use crate::engine::{Effect, Engine, EngineConfig, Job, Outgoing, Sink, Totals};
use crate::replication::lease::{Lease, Leases};
use crate::replication::log::{AppendError, ShardLog};
use crate::replication::snapshot::{self, LeadSide, Snapshots, Snapshotter};
use crate::replication::{follower, route};
use crate::store::Store;

/// What every shard of this broker shares.
pub struct Shared {
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub router: Arc<Router>,
    pub leases: Leases,
    pub engine: EngineConfig,
    pub data_dir: PathBuf,
    pub cluster: String,
    pub shards: u32,
    pub log_replicas: usize,
    pub snapshots: SnapshotOptions,
    /// How many shards this broker may lead.
    pub slots: LeaderSlots,
    pub out: mpsc::UnboundedSender<Outgoing>,
    pub health: Arc<Health>,
    /// Forwarded requests of the shards this broker leads, to its dispatcher.
    pub forwarded: mpsc::Sender<(u32, async_nats::Message)>,
}

/// Runs shard `shard` until `shutdown` turns true: follow, lead, step down, again.
pub async fn run(shared: Arc<Shared>, shard: u32, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(200);
    while !*shutdown.borrow() {
        match cycle(&shared, shard, &mut shutdown).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!(shard, error = %e, retry_in = ?backoff, "shard cycle failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                // Short: a failed cycle is usually JetStream electing a stream leader, which
                // takes seconds; every second waited beyond it is a second of outage.
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// One follow → lead → step-down cycle.
async fn cycle(
    shared: &Shared,
    shard: u32,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), BrokerError> {
    let log = ShardLog::open(&shared.js, &shared.cluster, shard, shared.log_replicas)
        .await
        .map_err(|e| BrokerError::Replication(e.to_string()))?;
    let dir = shared.data_dir.join(format!("shard-{shard}"));
    let store = open_caught_up(shared, &log, dir).await?;
    let Some(lease) = follow(shared, &log, &store, shutdown).await? else {
        return Ok(());
    };
    // The lease holds one of this broker's leader slots (claimed in `follow`) until the
    // shard is given up.
    let led = match take_over(&log, &store).await {
        Ok(last) => {
            tracing::info!(shard, sequence = last, "leading the shard");
            lead(shared, shard, log, store, lease, last, shutdown).await
        }
        Err(e) => {
            let _ = shared.leases.release(lease).await;
            Err(e)
        }
    };
    // A shard handed off gave its slot back already (`LeaderSlots::give_back_extra`).
    if !matches!(led, Ok(Ended::HandedOff)) {
        shared.slots.release();
    }
    led.map(drop)
}

/// How a shard's leadership ended without error.
enum Ended {
    /// Stopped (shutdown, a lost lease or append): the slot is still claimed.
    SteppedDown,
    /// Given to a broker with room: the slot was given back when it was decided.
    HandedOff,
}

async fn open_store(dir: PathBuf) -> Result<Store, BrokerError> {
    std::fs::create_dir_all(&dir).map_err(|source| BrokerError::DataDir {
        dir: dir.clone(),
        source,
    })?;
    let opened = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || Store::open(&dir)
    });
    opened
        .await?
        .map_err(|source| BrokerError::OpenStore { dir, source })
}

/// Opens the shard's store in `dir`, first rebuilt from a snapshot when it is empty or ends
/// before the log's first entry (trimmed away: the log alone cannot bring it up to date).
async fn open_caught_up(
    shared: &Shared,
    log: &ShardLog,
    dir: PathBuf,
) -> Result<Store, BrokerError> {
    let shard = log.shard();
    let failed = |e: &dyn std::fmt::Display| BrokerError::Replication(e.to_string());
    let store = open_store(dir.clone()).await?;
    let applied = applied(&store)?;
    let first = log.first_sequence().await.map_err(|e| failed(&e))?;
    let metrics = &shared.health.metrics.shards;
    metrics.log_first(shard, first);
    if applied != 0 && applied + 1 >= first {
        return Ok(store);
    }
    drop(store);
    let last = log.last_sequence().await.map_err(|e| failed(&e))?;
    let snapshots = Snapshots::open(&shared.js, &shared.cluster, shared.log_replicas, shard);
    let snapshots = snapshots.await.map_err(|e| failed(&e))?;
    let restored = snapshot::restore_newest(&snapshots, &dir, applied, (first, last)).await;
    if let Some(sequence) = restored.map_err(|e| failed(&e))? {
        tracing::info!(shard, sequence, "restored the shard from a snapshot");
        metrics.restored(shard);
    }
    open_store(dir).await
}

/// Applies the log to `store` until this broker takes the shard's lease (`Some`) or shuts
/// down (`None`).
async fn follow(
    shared: &Shared,
    log: &ShardLog,
    store: &Store,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Lease>, BrokerError> {
    let shard = log.shard();
    let failed = |e: &dyn std::fmt::Display| BrokerError::Replication(e.to_string());
    let mut entries = log
        .read(applied(store)? + 1)
        .await
        .map_err(|e| failed(&e))?;
    let metrics = &shared.health.metrics.shards;
    metrics.applied(shard, applied(store)?, 0);
    let mut tick = tokio::time::interval(shared.leases.renew_every());
    loop {
        tokio::select! {
            entry = entries.next() => {
                let entry = entry
                    .ok_or_else(|| failed(&"the log read ended"))?
                    .map_err(|e| failed(&e))?;
                follower::apply(store, entry.sequence, &entry.payload).map_err(|e| failed(&e))?;
                metrics.applied(shard, entry.sequence, entry.pending);
            }
            _ = tick.tick() => {
                if !shared.slots.claim() {
                    continue;
                }
                match shared.leases.acquire(shard).await {
                    Ok(Some(lease)) => return Ok(Some(lease)),
                    Ok(None) => shared.slots.release(),
                    Err(e) => {
                        shared.slots.release();
                        return Err(failed(&e));
                    }
                };
            }
            _ = shutdown.changed() => return Ok(None),
        }
    }
}

/// Appends the takeover entry after everything the log holds and applies the log up to it;
/// the sequence the leader appends after. Anything appended meanwhile (the old leader's last
/// write) is applied first and the takeover tried again.
async fn take_over(log: &ShardLog, store: &Store) -> Result<u64, BrokerError> {
    let failed = |e: &dyn std::fmt::Display| BrokerError::Replication(e.to_string());
    let marker = Effect {
        writes: Default::default(),
        sync: false,
        replies: Vec::new(),
        timers: Vec::new(),
    };
    let marker = Bytes::from(postcard::to_allocvec(&marker).map_err(|e| failed(&e))?);
    loop {
        let last = log.last_sequence().await.map_err(|e| failed(&e))?;
        let mut applied_now = applied(store)?;
        if applied_now < last {
            let mut entries = log.read(applied_now + 1).await.map_err(|e| failed(&e))?;
            while applied_now < last {
                let next = tokio::time::timeout(Duration::from_secs(10), entries.next()).await;
                let entry = next
                    .map_err(|_| failed(&"the log did not deliver its tail in time"))?
                    .ok_or_else(|| failed(&"the log read ended"))?
                    .map_err(|e| failed(&e))?;
                follower::apply(store, entry.sequence, &entry.payload).map_err(|e| failed(&e))?;
                applied_now = entry.sequence;
            }
        }
        match log.append(marker.clone(), last).await {
            Ok(sequence) => {
                follower::apply(store, sequence, &marker).map_err(|e| failed(&e))?;
                return Ok(sequence);
            }
            Err(AppendError::Fenced { .. }) => continue,
            Err(e) => return Err(failed(&e)),
        }
    }
}

fn applied(store: &Store) -> Result<u64, BrokerError> {
    follower::applied(store).map_err(|e| BrokerError::Replication(e.to_string()))
}

/// Serves the shard until its lease or an append is lost, it is handed off, or shutdown.
async fn lead(
    shared: &Shared,
    shard: u32,
    log: ShardLog,
    store: Store,
    mut lease: Lease,
    last: u64,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Ended, BrokerError> {
    let mut config = shared.engine.clone();
    config.shard = Some(ShardPlace {
        index: shard,
        count: shared.shards,
    });
    // A batch is durable once a quorum of the log holds it: the local copy is not synced (a
    // crash loses at most its tail, with the applied sequence written alongside, and the
    // broker applies that tail from the log again).
    config.sync = SyncMode::None;
    let mut snapshotter = Snapshotter::new(
        LeadSide {
            js: shared.js.clone(),
            cluster: shared.cluster.clone(),
            replicas: shared.log_replicas,
            log: log.clone(),
            checkpoints: store.checkpoints(),
            work: shared.data_dir.join(format!("shard-{shard}.snapshot")),
        },
        shared.snapshots.clone(),
    );
    let engine = tokio::task::spawn_blocking(move || Engine::open(store, config))
        .await?
        .map_err(BrokerError::LoadStore)?;
    let metrics = shared.health.metrics.shards.clone();
    metrics.leading(shard, true);
    metrics.applied(shard, last, 0);
    let applied_now = Arc::new(AtomicU64::new(last));
    let appender = Appender {
        runtime: tokio::runtime::Handle::current(),
        log,
        last: applied_now.clone(),
        metrics: metrics.clone(),
    };
    let engine = engine.replicated(Box::new(appender));
    let (jobs_tx, jobs_rx) = flume::bounded::<Job>(JOB_QUEUE);
    let (lost_tx, mut lost) = watch::channel(false);
    let sink = ShardSink {
        out: shared.out.clone(),
        health: shared.health.clone(),
        lost: lost_tx,
    };
    let subject = route::forward_subject(&shared.cluster, shard);
    let subscribed = shared.client.subscribe(subject).await;
    let mut subscriber = match subscribed {
        Ok(subscriber) => subscriber,
        Err(e) => {
            let _ = shared.leases.release(lease).await;
            return Err(BrokerError::Replication(e.to_string()));
        }
    };
    let to_dispatcher = shared.forwarded.clone();
    let forwarding = tokio::spawn(async move {
        while let Some(message) = subscriber.next().await {
            if to_dispatcher.send((shard, message)).await.is_err() {
                break;
            }
        }
    });
    let engine_thread = std::thread::Builder::new()
        .name(format!("mq9-shard-{shard}"))
        .spawn(move || engine.run(jobs_rx, &sink))
        .map_err(BrokerError::EngineThread)?;
    shared.router.lead(shard, jobs_tx);
    let mut tick = tokio::time::interval(shared.leases.renew_every());
    let mut snapshot_tick = tokio::time::interval(snapshotter.interval());
    let leading_since = Instant::now();
    let mut how = Ended::SteppedDown;
    let ended = loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = shared.leases.renew(&mut lease).await {
                    break format!("{e}");
                }
                if leading_since.elapsed() >= HAND_OFF_AFTER && shared.slots.give_back_extra() {
                    how = Ended::HandedOff;
                    break "handing the shard off: this broker leads more than its share".into();
                }
            }
            _ = snapshot_tick.tick() => {
                snapshotter.tick(applied_now.load(Ordering::Acquire));
            }
            taken = snapshotter.stored() => {
                metrics.snapshot_stored(shard, taken.sequence, taken.size);
                metrics.log_first(shard, taken.log_first);
            }
            _ = lost.changed() => break "an append failed".to_owned(),
            _ = shutdown.changed() => break "shutting down".to_owned(),
        }
    };
    tracing::info!(shard, why = %ended, "stepping down");
    shared.router.step_down(shard);
    metrics.leading(shard, false);
    forwarding.abort();
    tokio::task::spawn_blocking(move || engine_thread.join())
        .await?
        .map_err(|_| BrokerError::EnginePanicked)?;
    let _ = shared.leases.release(lease).await;
    snapshotter.close().await;
    Ok(how)
}

/// The engine's log: appends on the shard's stream, from the engine thread.
struct Appender {
    runtime: tokio::runtime::Handle,
    log: ShardLog,
    /// The sequence the next append expects last (the shard's snapshots read it too).
    last: Arc<AtomicU64>,
    metrics: ShardMetrics,
}

impl Replicate for Appender {
    fn append(&mut self, entry: Vec<u8>) -> Result<u64, String> {
        let started = Instant::now();
        let last = self.last.load(Ordering::Acquire);
        let appended = self.runtime.block_on(self.log.append(entry.into(), last));
        let sequence = appended.map_err(|e| e.to_string())?;
        self.metrics.appended(started.elapsed());
        self.metrics.applied(self.log.shard(), sequence, 0);
        self.last.store(sequence, Ordering::Release);
        Ok(sequence)
    }
}

/// A shard engine's outside world: replies to the broker's publisher, metrics to its health,
/// and a failure (an append lost) to the shard's runtime, which steps down. A shard's failure
/// is not the broker's: `/healthz` stays up.
struct ShardSink {
    out: mpsc::UnboundedSender<Outgoing>,
    health: Arc<Health>,
    lost: watch::Sender<bool>,
}

impl Sink for ShardSink {
    fn reply(&self, outgoing: Outgoing) {
        let _ = self.out.send(outgoing);
    }

    fn finished(&self, kind: &'static str, outcome: &'static str, latency: Duration) {
        self.health.metrics.command(kind, outcome, latency);
    }

    fn totals(&self, _totals: &Totals) {}

    fn failed(&self, _reason: &str) {
        let _ = self.lost.send(true);
    }
}
