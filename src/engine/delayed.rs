//! Delayed messages (`mq9-delay`) while they are not visible yet.
//!
//! A delayed message is stored in the time-ordered `delayed` column family (visible_at ·
//! delay_id) and counts against its mailbox's limits from SEND on, so that becoming visible
//! never fails for lack of room. Because that room is taken early, a tenant must be able to
//! see and give it back, and nothing may hold it longer than asked:
//! - each mailbox indexes its pending delayed messages by delay_id (QUERY `delayed` lists
//!   them, `DELETE .d{delay_id}` removes one) — bounded by `--max-delayed-per-mailbox`;
//! - a message whose `mq9-ttl` (counted from SEND) ends before its delay never becomes
//!   visible: it is dropped, and its room released, at the end of its TTL.
//!
//! Both indexes live in memory and are rebuilt from the `delayed` column family at load.

use bytes::Bytes;
use serde_json::json;

use super::mailbox::PendingDelayed;
use super::Engine;
use crate::protocol::{reply, ProtoError};
use crate::store::{self, time_of, DelayedRecord, StoreError};
use crate::time::now_ms;

/// The delay_id in a `delayed` key.
pub fn delay_id_of(key: &[u8]) -> u64 {
    u64::from_be_bytes(key[8..16].try_into().expect("16-byte delayed key"))
}

impl PendingDelayed {
    /// Whether its TTL ends before it becomes visible.
    fn expires_first(&self) -> bool {
        self.expires_at_ms != 0 && self.expires_at_ms <= self.visible_at_ms
    }
}

impl Engine {
    /// Rebuilds the per-mailbox indexes and the TTL timers of delayed messages from the store.
    /// Entries of mailboxes that are gone stay until they fall due and are dropped then.
    pub(super) fn load_delayed(&mut self) -> Result<(), StoreError> {
        self.delayed_expiry.clear();
        let mut entries = Vec::new();
        self.store
            .scan_prefix(store::CF_DELAYED, &[], |key, delayed: DelayedRecord| {
                let pending = PendingDelayed {
                    visible_at_ms: time_of(key),
                    expires_at_ms: delayed.message.expires_at_ms,
                    size: delayed.message.size(),
                };
                entries.push((
                    delay_id_of(key),
                    delayed.address,
                    delayed.mailbox_id,
                    pending,
                ));
                true
            })?;
        for (delay_id, address, mailbox_id, pending) in entries {
            if self
                .mailboxes
                .get(address.as_str())
                .is_some_and(|m| m.record.id == mailbox_id)
            {
                self.hold_delayed(&address, delay_id, pending);
            }
        }
        Ok(())
    }

    /// Indexes a delayed message of a live mailbox.
    pub(super) fn hold_delayed(&mut self, address: &str, delay_id: u64, pending: PendingDelayed) {
        let Some(mailbox) = self.mailboxes.get_mut(address) else {
            return;
        };
        mailbox.indexes_mut().delayed.insert(delay_id, pending);
        if pending.expires_first() {
            self.delayed_expiry
                .insert((pending.expires_at_ms, delay_id), address.into());
        }
    }

    /// Un-indexes a delayed message (it became visible, or is being released).
    pub(super) fn forget_delayed(
        &mut self,
        address: &str,
        delay_id: u64,
    ) -> Option<PendingDelayed> {
        let pending = self
            .mailboxes
            .get_mut(address)?
            .existing_indexes_mut()?
            .delayed
            .remove(&delay_id)?;
        self.delayed_expiry
            .remove(&(pending.expires_at_ms, delay_id));
        Some(pending)
    }

    /// Removes a delayed message that will never become visible and gives its room back.
    pub(super) fn release_delayed(&mut self, address: &str, delay_id: u64) -> bool {
        let Some(pending) = self.forget_delayed(address, delay_id) else {
            return false;
        };
        let mailbox = self
            .mailboxes
            .get_mut(address)
            .expect("found by forget_delayed");
        mailbox.record.delayed -= 1;
        self.held.remove(&mut mailbox.record, pending.size);
        let store = &self.store;
        self.pending
            .delete_delayed(store, pending.visible_at_ms, delay_id);
        self.pending.save_record(address);
        true
    }

    /// Deletes the `delayed` entry of a mailbox being removed (its counters go with it).
    pub(super) fn drop_delayed_of_removed(&mut self, delay_id: u64, pending: &PendingDelayed) {
        self.delayed_expiry
            .remove(&(pending.expires_at_ms, delay_id));
        let store = &self.store;
        self.pending
            .delete_delayed(store, pending.visible_at_ms, delay_id);
    }

    /// `MSG.DELETE.{addr}.d{delay_id}`: the owner takes back a delayed message before it
    /// becomes visible. The index is per mailbox, so no address reaches another mailbox's
    /// delayed message.
    pub(in crate::engine) fn delete_delayed(
        &mut self,
        address: &str,
        delay_id: u64,
    ) -> Result<Bytes, ProtoError> {
        self.live(address, now_ms())?;
        if self.release_delayed(address, delay_id) {
            Ok(reply::ok(json!({"deleted": true})))
        } else {
            Err(ProtoError::not_found(format!(
                "no pending delayed message with delay_id {delay_id} in this mailbox"
            )))
        }
    }

    /// When the next delayed message's TTL ends before its delay.
    pub(super) fn next_delayed_expiry(&self) -> Option<u64> {
        self.delayed_expiry
            .first_key_value()
            .map(|((at, _), _)| *at)
    }

    /// Drops the delayed messages whose TTL ended before they became visible.
    pub(super) fn expire_delayed(&mut self, now: u64) {
        while let Some(entry) = self.delayed_expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, delay_id), address) = entry.remove_entry();
            self.release_delayed(&address, delay_id);
        }
    }
}
