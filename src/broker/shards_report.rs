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

    async fn read(&self) -> Result<Value, String> {
        let mut leaders = Map::new();
        let mut without_quorum = Vec::new();
        for shard in 0..self.shards {
            let holder = self.leases.holder(shard).await.map_err(|e| e.to_string())?;
            if let Some(holder) = holder {
                leaders.insert(shard.to_string(), Value::String(holder));
            }
            if !self.has_quorum(shard).await {
                without_quorum.push(shard);
            }
        }
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
