//! Applying a shard's log to a broker's own RocksDB: what every broker does for the shards it
//! may lead, so that a takeover only applies the tail.
//!
//! An entry is an [`Effect`](crate::engine::Effect) as the leader sealed it: its write batch
//! goes to the store as it is (no clock, no randomness, no engine), together with the entry's
//! sequence under `meta/replication.applied` (the leader writes it the same way), in the same atomic write. So a broker that stops
//! at any point restarts from exactly the first entry it has not applied, and applies none
//! twice. Its replies and timers are the leader's business and are dropped here.

use crate::engine::Effect;
use crate::store::{self, Store, StoreError};

/// Why an entry cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The entry is not an effect of this version (or not an effect at all): applying nothing
    /// more is the only safe answer.
    #[error("log entry {0} is not an effect this broker can apply: {1}")]
    Undecodable(u64, String),
    /// Entries must be applied in order, each once.
    #[error("log entry {got} applied out of order (next is {next})")]
    OutOfOrder { got: u64, next: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The last log sequence applied to `store` (0: none).
pub fn applied(store: &Store) -> Result<u64, StoreError> {
    store.get_u64(store::CF_META, store::META_REPLICATION_APPLIED)
}

/// Applies the entry at `sequence`; entries already applied are skipped (a re-read after a
/// restart or a reconnect), a gap is an error. Whether it was applied.
pub fn apply(store: &Store, sequence: u64, entry: &[u8]) -> Result<bool, ApplyError> {
    let last = applied(store)?;
    if sequence <= last {
        return Ok(false);
    }
    if sequence != last + 1 {
        return Err(ApplyError::OutOfOrder {
            got: sequence,
            next: last + 1,
        });
    }
    let effect: Effect = postcard::from_bytes(entry)
        .map_err(|e| ApplyError::Undecodable(sequence, e.to_string()))?;
    let mut writes = effect.writes;
    store.put_raw(
        &mut writes,
        store::CF_META,
        store::META_REPLICATION_APPLIED,
        &sequence.to_be_bytes(),
    );
    store.write(writes, false)?;
    Ok(true)
}
