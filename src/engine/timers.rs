//! Every timer of the engine: mailbox expiry, message TTL, delayed messages becoming visible,
//! the end of `Nats-Msg-Id` windows (the time indexes below); the TTL of delayed messages
//! ([`super::delayed`]), agent heartbeats ([`super::registry`]) and long-poll deadlines and
//! lease ends ([`super::waiters`]) run from here too, from their in-memory indexes.
//!
//! Each time index is a column family (`mailbox_expiry`, `message_expiry`, `delayed`,
//! `dedup_expiry`) whose keys start with the moment they fall due. The engine remembers the first due moment of each,
//! sleeps until the earliest, then processes exactly the entries that are due: no scan of
//! everything, and expiry lands within milliseconds of its time. Processing starts at a cursor
//! (the last processed moment) so the tombstones of processed entries are never re-read.

use serde::{Deserialize, Serialize};

use super::commands::Room;
use super::delayed::delay_id_of;
use super::pending::MessageAt;
use super::Engine;
use crate::protocol::Priority;
use crate::store::{
    self, expiring_message_of, time_of, DedupRecord, DelayedRecord, MessageRecord, Store,
    StoreError,
};
use crate::time::now_ms;

/// An index entry that fell due: its key, and its value unless it could not be decoded.
type Due<V> = (Vec<u8>, Option<V>);

/// The time-ordered indexes: column families whose keys start with the moment they fall due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeIndex {
    MailboxExpiry,
    MessageExpiry,
    Delayed,
    DedupExpiry,
}

impl TimeIndex {
    const ALL: [TimeIndex; 4] = [
        TimeIndex::MailboxExpiry,
        TimeIndex::MessageExpiry,
        TimeIndex::Delayed,
        TimeIndex::DedupExpiry,
    ];

    fn cf(self) -> &'static str {
        match self {
            TimeIndex::MailboxExpiry => store::CF_MAILBOX_EXPIRY,
            TimeIndex::MessageExpiry => store::CF_MESSAGE_EXPIRY,
            TimeIndex::Delayed => store::CF_DELAYED,
            TimeIndex::DedupExpiry => store::CF_DEDUP_EXPIRY,
        }
    }
}

/// A timer an [`Effect`](super::Effect) arms: its index has an entry due at `due_ms` (the
/// earliest of the effect's entries in that index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    pub index: TimeIndex,
    pub due_ms: u64,
}

/// Where each time index stands, in [`TimeIndex`] order.
#[derive(Debug, Default)]
pub struct Timers {
    indexes: [Index; 4],
}

/// The first due moment of one index, and where its unprocessed entries begin.
#[derive(Debug, Default)]
struct Index {
    next_due: Option<u64>,
    cursor: u64,
}

impl Index {
    fn load(store: &Store, cf: &'static str) -> Result<Index, StoreError> {
        let mut index = Index::default();
        index.refresh(store, cf)?;
        Ok(index)
    }

    fn refresh(&mut self, store: &Store, cf: &'static str) -> Result<(), StoreError> {
        self.next_due = store
            .first_key(cf, &self.cursor.to_be_bytes())?
            .map(|k| time_of(&k));
        Ok(())
    }

    fn at(&mut self, due: u64) {
        self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
    }

    fn is_due(&self, now: u64) -> bool {
        self.next_due.is_some_and(|d| d <= now)
    }

    /// Every entry due by `now`, in order; the cursor moves past them. An entry that cannot be
    /// decoded comes back as `None` (logged): the caller deletes it, so one bad record never
    /// stalls the timers.
    fn take_due<V: serde::de::DeserializeOwned>(
        &mut self,
        store: &Store,
        cf: &'static str,
        now: u64,
    ) -> Result<Vec<Due<V>>, StoreError> {
        let mut due = Vec::new();
        let end = (now + 1).to_be_bytes();
        store.scan_raw(cf, &self.cursor.to_be_bytes(), &end, false, |key, value| {
            let record = store::decode(cf, value)
                .inspect_err(
                    |e| tracing::error!(error = %e, cf, "dropping an undecodable index entry"),
                )
                .ok();
            due.push((key.to_vec(), record));
            true
        })?;
        self.cursor = self.cursor.max(now + 1);
        Ok(due)
    }
}

impl Timers {
    pub fn load(store: &Store) -> Result<Timers, StoreError> {
        let mut timers = Timers::default();
        for index in TimeIndex::ALL {
            *timers.index_mut(index) = Index::load(store, index.cf())?;
        }
        Ok(timers)
    }

    pub fn next_due(&self) -> Option<u64> {
        self.indexes.iter().filter_map(|i| i.next_due).min()
    }

    /// The loop wakes by `timer.due_ms` at the latest.
    pub fn arm(&mut self, timer: Timer) {
        self.index_mut(timer.index).at(timer.due_ms);
    }

    fn index_mut(&mut self, index: TimeIndex) -> &mut Index {
        &mut self.indexes[index as usize]
    }
}

impl Engine {
    /// Runs every timer that is due. Called at the top of the loop, when the open batch is
    /// empty, so the reads below see everything written.
    pub(super) fn run_due_timers(&mut self) {
        let now = now_ms();
        if let Err(e) = self.run_indexes(now) {
            tracing::error!(error = %e, "expiry processing failed; retrying on the next pass");
        }
        self.expire_delayed(now);
        self.expire_agents(now);
        self.run_due_waiters(now);
    }

    fn run_indexes(&mut self, now: u64) -> Result<(), StoreError> {
        for index in TimeIndex::ALL {
            if !self.timers.index_mut(index).is_due(now) {
                continue;
            }
            match index {
                TimeIndex::MailboxExpiry => self.expire_mailboxes(now)?,
                TimeIndex::MessageExpiry => self.expire_messages(now)?,
                TimeIndex::Delayed => self.reveal_delayed(now)?,
                TimeIndex::DedupExpiry => self.expire_dedup(now)?,
            }
            self.timers
                .index_mut(index)
                .refresh(&self.store, index.cf())?;
        }
        Ok(())
    }

    /// The entries of `index` due by `now`, their keys deleted in the open batch.
    fn take_due<V: serde::de::DeserializeOwned>(
        &mut self,
        index: TimeIndex,
        now: u64,
    ) -> Result<Vec<Due<V>>, StoreError> {
        let cf = index.cf();
        let due = self
            .timers
            .index_mut(index)
            .take_due(&self.store, cf, now)?;
        for (key, _) in &due {
            self.pending.delete_due(&self.store, cf, key);
        }
        Ok(due)
    }

    /// Removes the mailboxes whose TTL ran out (entries of re-created or deleted incarnations
    /// are just dropped).
    fn expire_mailboxes(&mut self, now: u64) -> Result<(), StoreError> {
        let due: Vec<Due<String>> = self.take_due(TimeIndex::MailboxExpiry, now)?;
        for (key, address) in due {
            let mailbox_id = u64::from_be_bytes(key[8..16].try_into().expect("16-byte key"));
            if let Some(address) = address.filter(|a| self.incarnation_is(a, mailbox_id)) {
                tracing::debug!(mailbox_id, "mailbox expired");
                self.remove_mailbox(&address);
            }
        }
        Ok(())
    }

    /// Removes the messages whose `mq9-ttl` ran out.
    fn expire_messages(&mut self, now: u64) -> Result<(), StoreError> {
        let due: Vec<Due<String>> = self.take_due(TimeIndex::MessageExpiry, now)?;
        for (key, address) in due {
            let (mailbox_id, priority, msg_id) = expiring_message_of(&key);
            let (Some(address), Some(priority)) = (
                address.filter(|a| self.incarnation_is(a, mailbox_id)),
                priority,
            ) else {
                continue;
            };
            let at = MessageAt {
                mailbox_id,
                priority,
                msg_id,
            };
            let stored: Option<MessageRecord> = self.store.get(store::CF_MESSAGES, &at.key())?;
            if let Some(record) = stored {
                self.remove_message(&address, at, record.size());
            }
        }
        Ok(())
    }

    /// Makes the delayed messages whose delay ended visible.
    fn reveal_delayed(&mut self, now: u64) -> Result<(), StoreError> {
        let due: Vec<Due<DelayedRecord>> = self.take_due(TimeIndex::Delayed, now)?;
        if !due.is_empty() {
            self.pending.mark_durable();
        }
        for (key, delayed) in due {
            if let Some(delayed) = delayed {
                self.reveal(delay_id_of(&key), delayed, now);
            }
        }
        Ok(())
    }

    /// Forgets the `Nats-Msg-Id`s whose window ended. An id sent again after its window has a
    /// new, later entry: that one stays.
    fn expire_dedup(&mut self, now: u64) -> Result<(), StoreError> {
        let due: Vec<Due<()>> = self.take_due(TimeIndex::DedupExpiry, now)?;
        for (key, _) in due {
            let dedup_key = &key[8..];
            let entry: Option<DedupRecord> = self.store.get(store::CF_DEDUP, dedup_key)?;
            if entry.is_some_and(|e| e.expires_at_ms <= now) {
                self.pending
                    .delete_due(&self.store, store::CF_DEDUP, dedup_key);
            }
        }
        Ok(())
    }

    /// Whether `address` is still the incarnation `mailbox_id` (not re-created since).
    fn incarnation_is(&self, address: &str, mailbox_id: u64) -> bool {
        self.mailboxes
            .get(address)
            .is_some_and(|m| m.record.id == mailbox_id)
    }

    /// A delayed message becomes visible now, with the next msg_id, unless its mailbox is gone
    /// (then it went with it), its owner deleted it, or its own TTL ran out while it waited.
    /// Its `delayed` entry is already deleted by the caller.
    fn reveal(&mut self, delay_id: u64, mut delayed: DelayedRecord, now: u64) {
        let address = delayed.address.as_str();
        let Some(mailbox) = self.mailboxes.get(address) else {
            return;
        };
        if mailbox.record.id != delayed.mailbox_id || mailbox.record.is_expired(now) {
            return;
        }
        if delayed.message.is_expired(now) {
            self.release_delayed(&delayed.address, delay_id);
            return;
        }
        self.forget_delayed(&delayed.address, delay_id);
        delayed.message.create_time_ms = now;
        let priority = Priority::from_index(delayed.priority).unwrap_or(Priority::Normal);
        let address = delayed.address.clone();
        if let Err(e) = self.store_visible(&address, priority, delayed.message, Room::Taken) {
            tracing::error!(error = %e.message, "a delayed message could not become visible");
        }
    }
}
