//! A replicated broker's readiness follows its pod's JetStream copies: the pod is ready only
//! while this pod's nats-server holds a current copy of every shard's log and of the lease
//! bucket (or leads them).
//!
//! This is what keeps a rolling update above quorum (replication.md, "Kubernetes"): the
//! StatefulSet replaces one pod at a time and waits for the new pod to be Ready before the next;
//! were a pod Ready while its copies still caught up, taking the next pod down would leave a
//! log with one current copy of three — no quorum, no writes. It also takes a pod whose
//! nats-server stopped answering (paused, overloaded) out of the client Service.
//!
//! Only this pod's own state counts. A log without a quorum anywhere makes no pod unready:
//! that would empty the client Service of every pod at once; the operator reports it instead
//! (`$mq9.ADMIN.SHARDS`). A stream not made yet (a cluster's first start) holds nothing to
//! catch up on; a stream of one copy has nothing to catch up from.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::watch;

use super::Health;
use crate::replication::lease::bucket_name;
use crate::replication::log::stream_name;

/// How often the copies are checked.
const EVERY: Duration = Duration::from_secs(2);
/// How long this pod's nats-server may take to answer before the pod counts as not ready, and
/// how long a stream's state is waited for (past it, the stream says nothing about this pod).
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What the check looks at: the streams of `cluster`'s `shards` logs and its lease bucket.
pub struct Copies {
    pub js: jetstream::Context,
    pub client: async_nats::Client,
    pub cluster: String,
    pub shards: u32,
}

/// Checks the copies every [`EVERY`] and records the verdict in `health`, until `stopping`.
pub async fn run(copies: Copies, health: Arc<Health>, mut stopping: watch::Receiver<bool>) {
    while !*stopping.borrow() {
        let verdict = copies.behind().await;
        if let Ok(mut behind) = health.replicas_behind.lock() {
            *behind = verdict;
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stopping.changed() => {}
        }
    }
}

impl Copies {
    /// Why this pod's copies are not current, or `None` when they are. A stream whose state
    /// cannot be read (its JetStream leader is being elected) says nothing about this pod: it
    /// takes no writes meanwhile, so no copy falls behind.
    async fn behind(&self) -> Option<String> {
        // The local server answers a PING itself: one that does not is stalled, this pod's
        // own problem.
        match tokio::time::timeout(CHECK_TIMEOUT, self.client.round_trip()).await {
            Ok(Ok(())) => {}
            _ => return Some("this pod's nats-server does not answer".into()),
        }
        let server = self.client.server_info().server_name;
        let leases = format!("KV_{}", bucket_name(&self.cluster));
        let logs = (0..self.shards).map(|shard| stream_name(&self.cluster, shard));
        let checks = logs.chain([leases]).map(|name| {
            let server = &server;
            let check = async move {
                let mut stream = self.js.get_stream(&name).await.ok()?;
                let cluster = stream.info().await.ok()?.cluster.clone()?;
                if cluster.leader.as_deref() == Some(server.as_str()) {
                    return None;
                }
                let copy = cluster.replicas.iter().find(|peer| peer.name == *server)?;
                let lag = copy.lag.unwrap_or_default();
                (!copy.current).then(|| {
                    format!("this pod's copy of {name} is not current yet ({lag} entries behind)")
                })
            };
            async move {
                tokio::time::timeout(CHECK_TIMEOUT, check)
                    .await
                    .ok()
                    .flatten()
            }
        });
        futures::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .next()
    }
}
