//! The open batch: the writes of the jobs applied since the last commit, and the replies that
//! wait for them.
//!
//! Every write the engine makes goes through one method here, which pairs it with what must
//! come with it, so that no call site can forget one:
//! - the WAL sync (`sync`) for a write a reply promises is durable;
//! - the expiry index entry and its [`Timer`] for anything with a deadline;
//! - `dirty` for a write of a mailbox's messages: a read of that mailbox commits the batch
//!   first, so it sees the write;
//! - `woken` for a visible message: the mailbox's waiting FETCHes retry after the commit;
//! - `records` for a changed mailbox record, written once when the batch is sealed.
//!
//! The engine seals all of it into an [`Effect`](super::Effect) (see [`super::effect`]).

use std::collections::HashSet;
use std::time::Instant;

use bytes::Bytes;
use rocksdb::WriteBatch;

use super::group::GroupState;
use super::timers::{TimeIndex, Timer};
use super::Outgoing;
use crate::protocol::{Priority, ProtoError};
use crate::store::{
    self, dedup_expiry_key, delayed_key, mailbox_expiry_key, mailbox_prefix, message_expiry_key,
    message_key, named_key, AgentRecord, DedupRecord, DelayedRecord, MailboxRecord, MessageRecord,
    Slot, Store,
};

/// A finished job, for the metrics: what it was, how it ended, when it arrived.
pub struct Finished {
    pub kind: &'static str,
    /// `"ok"` or an error code.
    pub outcome: &'static str,
    pub received: Instant,
}

#[derive(Default)]
pub struct Pending {
    pub batch: WriteBatch,
    /// Whether a job in the batch needs the WAL synced before its reply.
    pub sync: bool,
    /// The earliest due moment per time index the batch wrote to.
    pub timers: Vec<Timer>,
    /// The replies of the batch's jobs, released after it commits.
    pub replies: Vec<Outgoing>,
    pub finished: Vec<Finished>,
    /// Mailboxes the batch wrote messages of: a read of one of them commits first.
    pub dirty: HashSet<u64>,
    /// Mailboxes that got a visible message in this batch.
    pub woken: HashSet<u64>,
    /// The mailbox id counter to persist with this batch: written once per batch, not once
    /// per CREATE — every write of one key stays in the memtable until it is flushed.
    pub next_mailbox_id: Option<u64>,
    /// Mailboxes whose record (counters) changed in this batch. Each is written once, when the
    /// batch is sealed: 128 SENDs to one mailbox in a batch write its record once, not 128
    /// times. A mailbox removed meanwhile is skipped, so its delete in the batch stands.
    pub records: HashSet<Box<str>>,
}

impl Pending {
    /// Queues a job's answer behind the batch (`reply_to` is `None` for a plain publish).
    pub fn finish(
        &mut self,
        reply_to: Option<async_nats::Subject>,
        kind: &'static str,
        received: Instant,
        result: Result<Bytes, ProtoError>,
    ) {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code.as_str(),
        };
        self.finished.push(Finished {
            kind,
            outcome,
            received,
        });
        if let Some(subject) = reply_to {
            let body = result.unwrap_or_else(|e| e.to_reply());
            self.replies.push(Outgoing { subject, body });
        }
    }

    /// A job of the batch promises durability in its reply: the batch syncs the WAL.
    pub fn mark_durable(&mut self) {
        self.sync = true;
    }

    /// The mailbox's record (its counters) is written when the batch is sealed.
    pub fn save_record(&mut self, address: &str) {
        if !self.records.contains(address) {
            self.records.insert(address.into());
        }
    }

    fn arm(&mut self, index: TimeIndex, due_ms: u64) {
        match self.timers.iter_mut().find(|t| t.index == index) {
            Some(timer) => timer.due_ms = timer.due_ms.min(due_ms),
            None => self.timers.push(Timer { index, due_ms }),
        }
    }

    /// A new mailbox: its record, its expiry entry and timer, and the id counter.
    pub fn put_mailbox(&mut self, store: &Store, address: &str, record: &MailboxRecord) {
        if record.expires_at_ms != 0 {
            let key = mailbox_expiry_key(record.expires_at_ms, record.id);
            store.put(&mut self.batch, store::CF_MAILBOX_EXPIRY, &key, &address);
            self.arm(TimeIndex::MailboxExpiry, record.expires_at_ms);
        }
        self.next_mailbox_id = Some(record.id + 1);
        self.save_record(address);
        self.mark_durable();
    }

    /// A removed mailbox and everything it holds under its id. Its expiry entries stay: they
    /// are dropped when they fall due, as the entries of a gone incarnation.
    pub fn delete_mailbox(&mut self, store: &Store, address: &str, mailbox_id: u64) {
        let prefix = mailbox_prefix(mailbox_id);
        for cf in [
            store::CF_MESSAGES,
            store::CF_SLOTS,
            store::CF_GROUPS,
            store::CF_SUBSCRIPTIONS,
            store::CF_DEDUP,
        ] {
            store.delete_prefix(&mut self.batch, cf, &prefix);
        }
        store.delete(&mut self.batch, store::CF_MAILBOXES, address.as_bytes());
        self.dirty.insert(mailbox_id);
        self.mark_durable();
    }

    /// A visible message, with its TTL's expiry entry and timer; its mailbox's waiters retry
    /// after the commit.
    pub fn put_message(
        &mut self,
        store: &Store,
        address: &str,
        at: MessageAt,
        message: &MessageRecord,
    ) {
        if message.expires_at_ms != 0 {
            let key =
                message_expiry_key(message.expires_at_ms, at.mailbox_id, at.priority, at.msg_id);
            store.put(&mut self.batch, store::CF_MESSAGE_EXPIRY, &key, &address);
            self.arm(TimeIndex::MessageExpiry, message.expires_at_ms);
        }
        store.put(&mut self.batch, store::CF_MESSAGES, &at.key(), message);
        self.woken.insert(at.mailbox_id);
        self.wrote_messages(address, at.mailbox_id);
    }

    /// A removed message (its expiry entry, if any, is dropped when it falls due).
    pub fn delete_message(&mut self, store: &Store, address: &str, at: MessageAt) {
        store.delete(&mut self.batch, store::CF_MESSAGES, &at.key());
        self.wrote_messages(address, at.mailbox_id);
    }

    /// Which message holds compaction slot `key` (`None`: the slot is free again).
    pub fn save_slot(&mut self, store: &Store, mailbox_id: u64, key: &str, slot: Option<&Slot>) {
        let key = named_key(mailbox_id, key);
        match slot {
            Some(slot) => store.put(&mut self.batch, store::CF_SLOTS, &key, slot),
            None => store.delete(&mut self.batch, store::CF_SLOTS, &key),
        }
    }

    /// A delayed message stored until `visible_at_ms` as `delay_id`, with its timer and the
    /// delay counter; QUERY `delayed` reads it, so its mailbox is dirty.
    pub fn put_delayed(
        &mut self,
        store: &Store,
        delay_id: u64,
        visible_at_ms: u64,
        delayed: &DelayedRecord,
    ) {
        let next = (delay_id + 1).to_be_bytes();
        store.put_raw(
            &mut self.batch,
            store::CF_META,
            store::META_NEXT_DELAY_SEQ,
            &next,
        );
        let key = delayed_key(visible_at_ms, delay_id);
        store.put(&mut self.batch, store::CF_DELAYED, &key, delayed);
        self.arm(TimeIndex::Delayed, visible_at_ms);
        self.wrote_messages(&delayed.address, delayed.mailbox_id);
    }

    /// A delayed message gone from the `delayed` index (visible now, deleted, or expired).
    pub fn delete_delayed(&mut self, store: &Store, visible_at_ms: u64, delay_id: u64) {
        let key = delayed_key(visible_at_ms, delay_id);
        self.delete_due(store, store::CF_DELAYED, &key);
        self.mark_durable();
    }

    /// A consumer group's state (`None`: the group is gone). Not durable by itself: FETCH
    /// leases may be lost in a crash (at-least-once allows it); ACK marks its batch durable.
    pub fn save_group(
        &mut self,
        store: &Store,
        mailbox_id: u64,
        name: &str,
        state: Option<&GroupState>,
    ) {
        let key = named_key(mailbox_id, name);
        match state {
            Some(state) => store.put(&mut self.batch, store::CF_GROUPS, &key, state),
            None => store.delete(&mut self.batch, store::CF_GROUPS, &key),
        }
    }

    /// A SEND's `Nats-Msg-Id` and its answer, with the entry and timer that end its window.
    pub fn put_dedup(&mut self, store: &Store, key: &[u8], entry: &DedupRecord) {
        store.put(&mut self.batch, store::CF_DEDUP, key, entry);
        let index = dedup_expiry_key(entry.expires_at_ms, key);
        store.put(&mut self.batch, store::CF_DEDUP_EXPIRY, &index, &());
        self.arm(TimeIndex::DedupExpiry, entry.expires_at_ms);
    }

    /// Deletes an entry of a time index, or what one pointed at, once it fell due.
    pub fn delete_due(&mut self, store: &Store, cf: &'static str, key: &[u8]) {
        store.delete(&mut self.batch, cf, key);
    }

    /// A registry entry (a REPORT's status and heartbeat need no sync: the next one renews it).
    pub fn put_agent(&mut self, store: &Store, identity: &str, record: &AgentRecord) {
        store.put(
            &mut self.batch,
            store::CF_AGENTS,
            identity.as_bytes(),
            record,
        );
    }

    /// Who owns a registry entry (`None`: nobody, it was registered anonymously).
    pub fn save_owner(&mut self, store: &Store, identity: &str, owner: Option<&str>) {
        let key = identity.as_bytes();
        match owner {
            Some(owner) => store.put(&mut self.batch, store::CF_AGENT_OWNERS, key, &owner),
            None => store.delete(&mut self.batch, store::CF_AGENT_OWNERS, key),
        }
    }

    /// A removed registry entry and its ownership.
    pub fn delete_agent(&mut self, store: &Store, identity: &str) {
        for cf in [store::CF_AGENTS, store::CF_AGENT_OWNERS] {
            store.delete(&mut self.batch, cf, identity.as_bytes());
        }
    }

    /// A durable subscription (`key`: mailbox id · topic) admitting `account` (`None`: every
    /// publisher; stored as empty, as the `()` written before tenancy encodes).
    pub fn put_subscription(&mut self, store: &Store, key: &[u8], account: Option<&str>) {
        let stored = account.unwrap_or_default().as_bytes();
        store.put_raw(&mut self.batch, store::CF_SUBSCRIPTIONS, key, stored);
        self.mark_durable();
    }

    pub fn delete_subscription(&mut self, store: &Store, key: &[u8]) {
        store.delete(&mut self.batch, store::CF_SUBSCRIPTIONS, key);
        self.mark_durable();
    }

    /// The batch changed a mailbox's messages: it syncs, its record is saved, and a read of
    /// the mailbox commits first.
    fn wrote_messages(&mut self, address: &str, mailbox_id: u64) {
        self.dirty.insert(mailbox_id);
        self.save_record(address);
        self.mark_durable();
    }
}

/// Where a visible message is stored.
#[derive(Debug, Clone, Copy)]
pub struct MessageAt {
    pub mailbox_id: u64,
    pub priority: Priority,
    pub msg_id: u64,
}

impl MessageAt {
    pub fn key(&self) -> [u8; 17] {
        message_key(self.mailbox_id, self.priority, self.msg_id)
    }
}
