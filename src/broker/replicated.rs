//! `mq9 broker --replication jetstream`: the broker as one of a cluster's (replication.md).
//! Every shard runs its follow → lead cycle ([`super::shards`]); requests from the queue
//! group, and those other brokers forward to the shards this one leads, go through the
//! dispatcher to the [`Router`].
//!
//! The data directory records its cluster and shard count (`layout.json`); a directory made
//! for another cluster or another count is refused, saying why: its shards' stores would be
//! applied from the wrong logs.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::dispatch::{Dispatcher, Queue};
use super::forward::Forwarder;
use super::replica_check;
use super::router::Router;
use super::shards_report::ShardsReport;
use super::slots::LeaderSlots;
use super::{serve_requests, shards, BrokerError, BrokerSink, Health, ReplyPolicy, JOB_QUEUE};
use crate::config::BrokerConfig;
use crate::engine::{EngineConfig, Outgoing};
use crate::replication::lease::Leases;

/// How long one JetStream request may take before it is tried again.
const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// What the broker's common start hands over.
pub(super) struct Parts {
    pub client: async_nats::Client,
    pub health: Arc<Health>,
    pub engine: EngineConfig,
    pub out: mpsc::UnboundedSender<Outgoing>,
    pub rejects: BrokerSink,
}

/// Serves the shards until `shutdown`.
pub(super) async fn serve(
    config: &BrokerConfig,
    parts: Parts,
    mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<(), BrokerError> {
    let options = &config.replication;
    check_layout(&config.data_dir, &options.cluster, options.shards)?;
    let node = options
        .node
        .clone()
        .or_else(|| std::env::var("POD_NAME").ok())
        .unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()));
    // JetStream requests (stream info, lease writes, consumer creation) give up after 2 s and are
    // tried again, rather than waiting out async-nats' default while JetStream elects a new
    // stream leader after a server's loss.
    let mut js = async_nats::jetstream::new(parts.client.clone());
    js.set_timeout(JETSTREAM_TIMEOUT);
    let ttl = Duration::from_secs(options.lease_secs.max(1));
    let leases = tokio::select! {
        leases = open_leases(&js, &options.cluster, options.log_replicas, &node, ttl) => leases,
        _ = &mut shutdown => return Ok(()),
    };
    // Forwards go out on a connection of their own (see `forward::Forwarder`).
    let forwarding = tokio::select! {
        client = super::connect(&config.nats) => client,
        _ = &mut shutdown => return Ok(()),
    };
    let wait = Duration::from_secs(options.leader_wait_secs);
    let forwarder = Forwarder::new(forwarding, parts.client.clone(), &options.cluster, wait);
    let report = ShardsReport {
        js: js.clone(),
        leases: leases.clone(),
        cluster: options.cluster.clone(),
        shards: options.shards,
    };
    let router = Arc::new(Router::new(parts.client.clone(), forwarder, report));
    let (forwarded_tx, mut forwarded_rx) = mpsc::channel(JOB_QUEUE);
    let shared = Arc::new(shards::Shared {
        client: parts.client.clone(),
        js,
        router: router.clone(),
        leases,
        engine: parts.engine,
        data_dir: config.data_dir.clone(),
        cluster: options.cluster.clone(),
        shards: options.shards,
        slots: LeaderSlots::new(options.shards, options.peers),
        log_replicas: options.log_replicas,
        snapshots: options.snapshots.clone(),
        out: parts.out,
        health: parts.health.clone(),
        forwarded: forwarded_tx,
    });
    let (stop, stopping) = watch::channel(false);
    let mut tasks: Vec<_> = (0..options.shards)
        .map(|shard| tokio::spawn(shards::run(shared.clone(), shard, stopping.clone())))
        .collect();
    if let Ok(mut behind) = parts.health.replicas_behind.lock() {
        *behind = Some("this pod's copies of the logs are not checked yet".into());
    }
    let copies = replica_check::Copies {
        js: shared.js.clone(),
        client: parts.client.clone(),
        cluster: options.cluster.clone(),
        shards: options.shards,
    };
    let health = parts.health.clone();
    tasks.push(tokio::spawn(replica_check::run(
        copies,
        health,
        stopping.clone(),
    )));
    tasks.push(tokio::spawn(announce(shared, stopping)));
    let dispatcher = Dispatcher {
        queue: Queue::Shards(router),
        rejects: parts.rejects,
        replies: ReplyPolicy::new(&config.security.reply_prefixes),
        trust_request_info: config.security.trust_request_info,
    };
    parts.health.engine_running.store(true, Ordering::Release);
    tracing::info!(node, shards = options.shards, cluster = %options.cluster, "mq9 broker ready (replicated)");
    let served = serve_requests(
        &parts.client,
        &dispatcher,
        &parts.health,
        Some(&mut forwarded_rx),
        shutdown,
    )
    .await;
    let _ = stop.send(true);
    for task in tasks {
        task.await?;
    }
    parts.health.engine_running.store(false, Ordering::Release);
    served
}

/// Announces this broker every third of a lease and counts the live ones, until `stopping`.
/// For the first lease the count stays `--peers`: brokers starting together have not all
/// announced themselves yet, and the first would otherwise take every shard.
async fn announce(shared: Arc<shards::Shared>, mut stopping: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(shared.leases.renew_every());
    let counted_from = std::time::Instant::now() + shared.leases.renew_every() * 3;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopping.changed() => return,
        }
        let counted = match shared.leases.announce().await {
            Ok(()) => shared.leases.live_brokers().await,
            Err(e) => Err(e),
        };
        match counted {
            Ok(_) if std::time::Instant::now() < counted_from => {}
            Ok(live) => shared.slots.set_live(live as u32),
            Err(e) => tracing::warn!(error = %e, "cannot announce this broker"),
        }
    }
}

async fn open_leases(
    js: &async_nats::jetstream::Context,
    cluster: &str,
    replicas: usize,
    node: &str,
    ttl: Duration,
) -> Leases {
    let mut backoff = Duration::from_millis(200);
    loop {
        match Leases::open(js, cluster, replicas, node, ttl).await {
            Ok(leases) => return leases,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot open the lease bucket");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "mq9".into())
}

/// Records the cluster and shard count in `dir/layout.json` on first start; refuses a directory
/// that recorded others.
fn check_layout(dir: &Path, cluster: &str, shards: u32) -> Result<(), BrokerError> {
    let path = dir.join("layout.json");
    let wanted = format!("cluster {cluster:?} with {shards} shards");
    let layout = serde_json::json!({"cluster": cluster, "shards": shards});
    let io = |source| BrokerError::DataDir {
        dir: dir.to_owned(),
        source,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let found: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            match found == layout {
                true => Ok(()),
                false => Err(BrokerError::Layout {
                    dir: dir.to_owned(),
                    found: format!(
                        "cluster {} with {} shards",
                        found["cluster"], found["shards"]
                    ),
                    wanted,
                }),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let has_data = std::fs::read_dir(dir).map_err(io)?.next().is_some();
            if has_data {
                return Err(BrokerError::Layout {
                    dir: dir.to_owned(),
                    found: "a single node's data".into(),
                    wanted,
                });
            }
            std::fs::write(&path, layout.to_string()).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}
