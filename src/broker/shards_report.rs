//! `$mq9.ADMIN.SHARDS`: who leads each shard of a replicated broker, which brokers are alive,
//! and which shards' logs have lost their quorum — what the operator turns into a Broker's
//! status (`shards` led/total, leaders per pod, `Degraded`).
//!
//! Any broker answers from the lease bucket and the log streams' JetStream state, without
//! asking the shards' leaders: a shard without a leader has nobody to ask.
//!
//! ```json
//! {"shards": 16, "leaders": {"0": "agents-1", "1": "agents-0"}, "live": ["agents-0", "agents-1"],
//!  "without_quorum": [5]}
//! ```
//! A shard without a leader is absent from `leaders`. A log "without quorum" has no JetStream
//! stream leader (fewer than a majority of its replicas can talk), so no write to it can succeed.

use async_nats::jetstream;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::protocol::{reply, ErrorCode, ProtoError};
use crate::replication::lease::Leases;
use crate::replication::log::stream_name;

/// What a SHARDS answer is made from.
pub struct ShardsReport {
    pub js: jetstream::Context,
    pub leases: Leases,
    pub cluster: String,
    pub shards: u32,
}

impl ShardsReport {
    /// The SHARDS reply, or `unavailable` when the lease bucket cannot be read.
    pub async fn answer(&self) -> Bytes {
        match self.read().await {
            Ok(fields) => reply::ok(fields),
            Err(why) => ProtoError::new(
                ErrorCode::Unavailable,
                format!("cannot read the shards' leases: {why}"),
            )
            .to_reply(),
        }
    }

    /// Every shard is asked at once: a log without a leader takes a JetStream timeout to say
    /// so, and the operator's request must not wait one per shard.
    async fn read(&self) -> Result<Value, String> {
        let shards = 0..self.shards;
        let holders = futures::future::join_all(shards.clone().map(|s| self.leases.holder(s)));
        let quorums = futures::future::join_all(shards.map(|s| self.has_quorum(s)));
        let (holders, quorums) = tokio::join!(holders, quorums);
        let mut leaders = Map::new();
        for (shard, holder) in holders.into_iter().enumerate() {
            if let Some(holder) = holder.map_err(|e| e.to_string())? {
                leaders.insert(shard.to_string(), Value::String(holder));
            }
        }
        let without_quorum: Vec<u32> = (0..self.shards)
            .zip(quorums)
            .filter_map(|(shard, quorum)| (!quorum).then_some(shard))
            .collect();
        let mut live = self.leases.live_nodes().await.map_err(|e| e.to_string())?;
        live.sort();
        Ok(json!({
            "shards": self.shards,
            "leaders": leaders,
            "live": live,
            "without_quorum": without_quorum,
        }))
    }

    /// Whether `shard`'s log has a JetStream stream leader (an unanswered question counts as no:
    /// JetStream answers it whenever the stream can take writes).
    async fn has_quorum(&self, shard: u32) -> bool {
        let name = stream_name(&self.cluster, shard);
        let Ok(mut stream) = self.js.get_stream(&name).await else {
            return false;
        };
        let Ok(info) = stream.info().await else {
            return false;
        };
        // A stream of one replica has no cluster block, and no quorum to lose.
        info.cluster
            .as_ref()
            .is_none_or(|cluster| cluster.leader.is_some())
    }
}
