//! Time-driven work: mailbox expiry, message TTL, delayed messages becoming visible, the end of
//! `Nats-Msg-Id` windows.
//!
//! Each is a time-ordered column family (`mailbox_expiry`, `message_expiry`, `delayed`,
//! `dedup_expiry`) whose
//! keys start with the moment they fall due. The engine remembers the first due moment of each,
//! sleeps until the earliest, then processes exactly the entries that are due: no scan of
//! everything, and expiry lands within milliseconds of its time. Processing starts at a cursor
//! (the last processed moment) so the tombstones of processed entries are never re-read.

use super::delayed::delay_id_of;
use super::Engine;
use crate::protocol::Priority;
use crate::store::{
    self, expiring_message_of, time_of, DedupRecord, DelayedRecord, MessageRecord, Store,
    StoreError,
};
use crate::time::now_ms;

/// An index entry that fell due: its key, and its value unless it could not be decoded.
type Due<V> = (Vec<u8>, Option<V>);

#[derive(Debug, Default)]
pub struct Timers {
    mailbox_expiry: Index,
    message_expiry: Index,
    delayed: Index,
    dedup_expiry: Index,
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
        Ok(Timers {
            mailbox_expiry: Index::load(store, store::CF_MAILBOX_EXPIRY)?,
            message_expiry: Index::load(store, store::CF_MESSAGE_EXPIRY)?,
            delayed: Index::load(store, store::CF_DELAYED)?,
            dedup_expiry: Index::load(store, store::CF_DEDUP_EXPIRY)?,
        })
    }

    pub fn next_due(&self) -> Option<u64> {
        [
            &self.mailbox_expiry,
            &self.message_expiry,
            &self.delayed,
            &self.dedup_expiry,
        ]
        .into_iter()
        .filter_map(|i| i.next_due)
        .min()
    }

    pub fn mailbox_expiry_at(&mut self, due: u64) {
        self.mailbox_expiry.at(due);
    }

    pub fn message_expiry_at(&mut self, due: u64) {
        self.message_expiry.at(due);
    }

    pub fn delayed_at(&mut self, due: u64) {
        self.delayed.at(due);
    }

    pub fn dedup_expiry_at(&mut self, due: u64) {
        self.dedup_expiry.at(due);
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
        if self.timers.mailbox_expiry.is_due(now) {
            self.expire_mailboxes(now)?;
        }
        if self.timers.message_expiry.is_due(now) {
            self.expire_messages(now)?;
        }
        if self.timers.delayed.is_due(now) {
            self.reveal_delayed(now)?;
        }
        if self.timers.dedup_expiry.is_due(now) {
            self.expire_dedup(now)?;
        }
        Ok(())
    }

    /// Removes the mailboxes whose TTL ran out (entries of re-created or deleted incarnations
    /// are just dropped).
    fn expire_mailboxes(&mut self, now: u64) -> Result<(), StoreError> {
        let cf = store::CF_MAILBOX_EXPIRY;
        let due: Vec<Due<String>> = self.timers.mailbox_expiry.take_due(&self.store, cf, now)?;
        for (key, address) in due {
            self.store.delete(&mut self.pending.batch, cf, &key);
            let mailbox_id = u64::from_be_bytes(key[8..16].try_into().expect("16-byte key"));
            if let Some(address) = address.filter(|a| self.incarnation_is(a, mailbox_id)) {
                tracing::debug!(mailbox_id, "mailbox expired");
                self.remove_mailbox(&address);
            }
        }
        self.timers.mailbox_expiry.refresh(&self.store, cf)
    }

    /// Removes the messages whose `mq9-ttl` ran out.
    fn expire_messages(&mut self, now: u64) -> Result<(), StoreError> {
        let cf = store::CF_MESSAGE_EXPIRY;
        let due: Vec<Due<String>> = self.timers.message_expiry.take_due(&self.store, cf, now)?;
        for (key, address) in due {
            self.store.delete(&mut self.pending.batch, cf, &key);
            let (mailbox_id, priority, msg_id) = expiring_message_of(&key);
            let (Some(address), Some(priority)) = (
                address.filter(|a| self.incarnation_is(a, mailbox_id)),
                priority,
            ) else {
                continue;
            };
            let stored: Option<MessageRecord> = self.store.get(
                store::CF_MESSAGES,
                &store::message_key(mailbox_id, priority, msg_id),
            )?;
            if let Some(record) = stored {
                self.remove_message(&address, priority, msg_id, record.size());
            }
        }
        self.timers.message_expiry.refresh(&self.store, cf)
    }

    /// Makes the delayed messages whose delay ended visible.
    fn reveal_delayed(&mut self, now: u64) -> Result<(), StoreError> {
        let cf = store::CF_DELAYED;
        let due: Vec<Due<DelayedRecord>> = self.timers.delayed.take_due(&self.store, cf, now)?;
        for (key, delayed) in due {
            self.store.delete(&mut self.pending.batch, cf, &key);
            self.pending.sync = true;
            if let Some(delayed) = delayed {
                self.reveal(delay_id_of(&key), delayed, now);
            }
        }
        self.timers.delayed.refresh(&self.store, cf)
    }

    /// Forgets the `Nats-Msg-Id`s whose window ended. An id sent again after its window has a
    /// new, later entry: that one stays.
    fn expire_dedup(&mut self, now: u64) -> Result<(), StoreError> {
        let cf = store::CF_DEDUP_EXPIRY;
        let due: Vec<Due<()>> = self.timers.dedup_expiry.take_due(&self.store, cf, now)?;
        for (key, _) in due {
            self.store.delete(&mut self.pending.batch, cf, &key);
            let dedup_key = &key[8..];
            let entry: Option<DedupRecord> = self.store.get(store::CF_DEDUP, dedup_key)?;
            if entry.is_some_and(|e| e.expires_at_ms <= now) {
                self.store
                    .delete(&mut self.pending.batch, store::CF_DEDUP, dedup_key);
            }
        }
        self.timers.dedup_expiry.refresh(&self.store, cf)
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
            self.release_delayed(&delayed.address, delay_id, false);
            return;
        }
        self.forget_delayed(&delayed.address, delay_id);
        delayed.message.create_time_ms = now;
        let priority = Priority::from_index(delayed.priority).unwrap_or(Priority::Normal);
        let address = delayed.address.clone();
        if let Err(e) = self.store_visible(&address, priority, delayed.message, true) {
            tracing::error!(error = %e.message, "a delayed message could not become visible");
        }
    }
}
