//! What goes into the engine and what comes out of it: [`Command`]s in [`Job`]s, and finished
//! jobs into a [`Sink`]: the seam between the engine thread and the broker's async side.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A command for the engine, already parsed and validated: the protocol's typed request.
pub use crate::protocol::Request as Command;

/// A job: a command, where to answer it, and what to record about it.
#[derive(Debug)]
pub struct Job {
    pub command: Command,
    /// `None` for a plain publish: executed, not answered.
    pub reply_to: Option<async_nats::Subject>,
    /// The command's name, for metrics.
    pub kind: &'static str,
    pub received: Instant,
}

/// A reply ready to publish. Part of an [`Effect`](super::Effect), so it serializes: the
/// subject as its string, the body as bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    pub subject: async_nats::Subject,
    #[serde(with = "super::effect::as_bytes")]
    pub body: Bytes,
}

/// Where finished jobs go: replies to publish, outcomes to count.
pub trait Sink {
    fn reply(&self, outgoing: Outgoing);
    /// `outcome` is `"ok"` or an error code.
    fn finished(&self, kind: &'static str, outcome: &'static str, latency: Duration);
    /// The engine's totals, after every commit.
    fn totals(&self, totals: &Totals);
    /// The engine failed for good (see [`failure`]): from now on it answers only `internal`.
    /// Called before the replies of the failed batch go out, and possibly more than once.
    fn failed(&self, reason: &str);
}

/// What the engine holds and how much it wrote, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub mailboxes: u64,
    /// Stored messages, delayed ones included.
    pub messages: u64,
    /// Their bytes: payload, headers, key and tags ([`crate::store::MessageRecord::size`]).
    pub bytes: u64,
    /// Write batches committed since start.
    pub writes: u64,
    /// Of those, the ones that synced the WAL: fewer than the SENDs they made durable when
    /// concurrent SENDs share a sync (group commit).
    pub syncs: u64,
    /// Long-poll FETCHes parked now.
    pub waiting_fetches: u64,
}
