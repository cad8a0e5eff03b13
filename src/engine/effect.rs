//! Effects: what the engine decided, as a value that can be stored, sent and applied elsewhere.
//!
//! The engine applies jobs to memory and to the open batch ([`super::pending`]); sealing the
//! batch makes an [`Effect`]: the RocksDB write batch (with whether it syncs), the replies it
//! releases and the timers it arms. Everything that needs the clock or randomness (`now`,
//! generated addresses, lease ends, msg_ids) was decided while the jobs ran, so applying an
//! effect reads neither: write the batch, arm the timers, release the replies. That is what a
//! replicated shard needs (replication.md: followers apply the leader's effects from a log, with
//! no engine), and what a single node does today with its own effects, right away.
//!
//! One batch can make more than one effect: a read of a mailbox the open batch wrote must see
//! the writes, so it seals and applies them first (a *read barrier*, with no replies: replies
//! wait for the commit, which seals the rest with all of them).
//!
//! The batch bytes name column families by their RocksDB ids, so an effect applies to a store
//! opened by this version whose column families were created in the same order (a fresh store,
//! or a copy of the one that made the effect).

use std::mem::take;

use rocksdb::WriteBatch;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::timers::Timer;
use super::{Engine, Outgoing, Sink, Totals};
use crate::config::SyncMode;
use crate::store;

/// The effect of (part of) a batch of jobs: its writes, the replies they release and the
/// timers they arm.
#[derive(Serialize, Deserialize)]
pub struct Effect {
    /// The RocksDB write batch, serialized as its `data()`.
    #[serde(serialize_with = "batch_data", deserialize_with = "batch_from_data")]
    pub writes: WriteBatch,
    /// Whether the write syncs the WAL before the replies go out.
    pub sync: bool,
    pub replies: Vec<Outgoing>,
    pub timers: Vec<Timer>,
}

impl Engine {
    /// Seals the open batch into an effect releasing `replies`: the mailbox records and the id
    /// counter the batch changed are written now, once each.
    fn seal(&mut self, replies: Vec<Outgoing>) -> Effect {
        self.dedup.flushed();
        for address in take(&mut self.pending.records) {
            if let Some(mailbox) = self.mailboxes.get(&address) {
                let batch = &mut self.pending.batch;
                let key = address.as_bytes();
                self.store
                    .put(batch, store::CF_MAILBOXES, key, &mailbox.record);
            }
        }
        if let Some(next) = self.pending.next_mailbox_id.take() {
            self.store.put_raw(
                &mut self.pending.batch,
                store::CF_META,
                store::META_NEXT_MAILBOX_ID,
                &next.to_be_bytes(),
            );
        }
        self.pending.dirty.clear();
        Effect {
            writes: take(&mut self.pending.batch),
            sync: take(&mut self.pending.sync) && self.config.sync == SyncMode::Always,
            replies,
            timers: take(&mut self.pending.timers),
        }
    }

    /// Applies an effect on this node: writes its batch and arms its timers, then hands back
    /// its replies to release. A storage error puts the engine in its failed state
    /// ([`super::failure`]): the replies then all carry the failure, so nothing possibly
    /// unwritten is ever acknowledged. A failed engine writes nothing more.
    fn apply(&mut self, effect: Effect) -> Vec<Outgoing> {
        let Effect {
            mut writes,
            sync,
            mut replies,
            timers,
        } = effect;
        if self.failed.is_none() && !writes.is_empty() {
            self.replicate(&mut writes, sync);
        }
        if self.failed.is_none() && !writes.is_empty() {
            match self.store.write(writes, sync) {
                Ok(()) => {
                    self.writes += 1;
                    self.syncs += u64::from(sync);
                }
                Err(e) => self.fail(&format!("storage write failed: {e}")),
            }
        }
        match &self.failed {
            Some(failure) => {
                for reply in &mut replies {
                    reply.body = failure.to_reply();
                }
            }
            None => {
                for timer in timers {
                    self.timers.arm(timer);
                }
            }
        }
        replies
    }

    /// Writes the open batch without releasing any reply: a read barrier.
    pub(super) fn flush(&mut self) {
        let effect = self.seal(Vec::new());
        self.apply(effect);
    }

    /// Flushes first when the open batch wrote this mailbox's messages, so that a read sees
    /// them. The flushed jobs' replies go out with the next commit.
    pub(super) fn read_barrier(&mut self, mailbox_id: u64) {
        if self.pending.dirty.contains(&mailbox_id) {
            self.flush();
        }
    }

    /// Commits the open batch: seals it with every reply waiting for it, applies it, and
    /// releases the replies.
    pub(super) fn commit(&mut self, sink: &dyn Sink) {
        let effect = self.seal_batch();
        self.apply_batch(effect, sink);
    }

    fn seal_batch(&mut self) -> Effect {
        let replies = take(&mut self.pending.replies);
        self.seal(replies)
    }

    fn apply_batch(&mut self, effect: Effect, sink: &dyn Sink) {
        let mut replies = self.apply(effect);
        // Back in the open batch, ahead of the replies the apply added (a failure answers every
        // waiting FETCH), until the sink takes them: should the sink panic first, the failed
        // engine still answers them (see `Engine::run`).
        replies.append(&mut self.pending.replies);
        self.pending.replies = replies;
        self.release(sink);
    }

    /// Counts the finished jobs and publishes the replies. Metrics are updated before the
    /// replies go out, so a client that got its reply sees it counted.
    fn release(&mut self, sink: &dyn Sink) {
        sink.totals(&Totals {
            mailboxes: self.mailboxes.len() as u64,
            messages: self.held.messages,
            bytes: self.held.bytes,
            writes: self.writes,
            syncs: self.syncs,
            waiting_fetches: self.waiters.count() as u64,
        });
        let failed = self.failed.as_ref().map(|failure| {
            sink.failed(&failure.message);
            failure.code.as_str()
        });
        for job in take(&mut self.pending.finished) {
            let outcome = failed.unwrap_or(job.outcome);
            sink.finished(job.kind, outcome, job.received.elapsed());
        }
        for reply in take(&mut self.pending.replies) {
            sink.reply(reply);
        }
    }
}

#[cfg(test)]
mod tests;

/// Serde for byte fields: bytes out, bytes (or a sequence of them) in.
pub(super) mod as_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &impl AsRef<[u8]>, out: S) -> Result<S::Ok, S::Error> {
        out.serialize_bytes(bytes.as_ref())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: From<Vec<u8>>>(
        input: D,
    ) -> Result<T, D::Error> {
        Vec::<u8>::deserialize(input).map(T::from)
    }
}

fn batch_data<S: Serializer>(batch: &WriteBatch, out: S) -> Result<S::Ok, S::Error> {
    as_bytes::serialize(&batch.data(), out)
}

fn batch_from_data<'de, D: Deserializer<'de>>(input: D) -> Result<WriteBatch, D::Error> {
    let data: Vec<u8> = as_bytes::deserialize(input)?;
    Ok(WriteBatch::from_data(&data))
}
