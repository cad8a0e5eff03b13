//! A replicated shard's engine (replication.md): the engine runs as on a single node, and each
//! batch it seals goes to the shard's log — on a quorum of JetStream servers — before it is
//! written locally and before any of its replies leave. The log entry is the batch's writes as
//! an [`Effect`] (no replies, no timers: followers only write), and the local write records
//! the entry's sequence (`meta/replication.applied`) atomically with the batch, as a follower
//! does.
//!
//! An append that fails — no quorum in time, or another broker appended since (it leads the
//! shard now: fencing) — puts the engine in its failed state with `unavailable`: every reply of
//! the batch and every later one says so, nothing is written locally, and the shard's runtime
//! steps down (the engine and its memory are dropped; the store follows the log again).

use rocksdb::WriteBatch;

use super::{Effect, Engine};
use crate::protocol::{ErrorCode, ProtoError};
use crate::replication::shard::shard_of;
use crate::store;

/// Where a replicated engine's batches go first.
pub trait Replicate: Send {
    /// Stores `entry` on a quorum of the shard's log; its sequence. `Err(why)`: the entry is
    /// not known to be stored (the caller answers nothing as success).
    fn append(&mut self, entry: Vec<u8>) -> Result<u64, String>;
}

/// A shard's place: shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardPlace {
    pub index: u32,
    pub count: u32,
}

impl ShardPlace {
    /// Whether `address` lives in this shard.
    pub fn holds(&self, address: &str) -> bool {
        shard_of(address, self.count) == self.index
    }
}

impl Engine {
    /// This engine, appending every batch to `log` before writing it.
    pub fn replicated(mut self, log: Box<dyn Replicate>) -> Engine {
        self.replicator = Some(log);
        self
    }

    /// Appends `writes` to the log and records the entry's sequence in them; on failure the
    /// engine fails with `unavailable`.
    pub(super) fn replicate(&mut self, writes: &mut WriteBatch, sync: bool) {
        let Some(log) = self.replicator.as_mut() else {
            return;
        };
        let entry = Effect {
            writes: WriteBatch::from_data(writes.data()),
            sync,
            replies: Vec::new(),
            timers: Vec::new(),
        };
        let appended = postcard::to_allocvec(&entry)
            .map_err(|e| e.to_string())
            .and_then(|bytes| log.append(bytes));
        match appended {
            Ok(sequence) => self.store.put_raw(
                writes,
                store::CF_META,
                store::META_REPLICATION_APPLIED,
                &sequence.to_be_bytes(),
            ),
            Err(why) => {
                tracing::warn!(%why, "a shard log append failed: this broker steps down");
                self.fail_with(ProtoError::new(
                    ErrorCode::Unavailable,
                    format!("the write is not stored ({why}); retry: another broker takes over"),
                ));
            }
        }
    }
}
