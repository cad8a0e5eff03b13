//! The replicated data plane's parts (replication.md; issue 11, in progress): which shard a
//! mailbox lives on ([`shard`]), who leads a shard ([`lease`]), the shard's log of committed
//! effects with fenced appends ([`log`]), how a broker applies that log to its own RocksDB
//! ([`follower`]), and the snapshots that bound the log and restore an empty copy
//! ([`snapshot`]). Replication, ordering and fencing are JetStream's: a stream per shard
//! (replicated on a quorum of servers) and a key-value bucket of leases; nothing here is
//! consensus of its own.
//!
//! How they fit (the design these parts are built for): the leader of a shard runs the engine
//! as a single node does; each committed batch's [`Effect`](crate::engine::Effect) (its write
//! batch) is appended to the shard's log, fenced by the last sequence the leader saw, and the
//! replies leave only after JetStream's quorum ack; then the leader writes the batch locally.
//! Every other broker applies the log to its own store. A broker taking a shard over acquires
//! the lease, appends a takeover entry (which fences the old leader), applies everything before
//! it, opens the engine on its store (which rebuilds timers and waiters' state from disk) and
//! serves.

pub mod follower;
pub mod gather;
pub mod lease;
pub mod log;
pub mod route;
pub mod shard;
pub mod snapshot;
pub mod snapshot_archive;
pub mod snapshot_lead;
