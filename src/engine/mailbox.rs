//! One mailbox in memory, and the engine's bookkeeping that keeps memory and store in step.

use std::collections::{BTreeMap, HashMap};

use super::pending::MessageAt;
use super::{Engine, GroupState};
use crate::protocol::ProtoError;
use crate::store::{self, name_of, MailboxRecord, Slot, Store, StoreError};

/// A mailbox as the engine holds it: its record plus the small per-mailbox indexes.
///
/// The indexes are allocated on first use. Most mailboxes never get a compaction slot, a
/// consumer group or a subscription, and every byte here is paid once per mailbox: three
/// empty collections inline would cost 120 bytes each, a million times over.
#[derive(Debug, Clone)]
pub struct Mailbox {
    pub record: MailboxRecord,
    indexes: Option<Box<Indexes>>,
}

/// A durable broadcast subscription: a topic pattern, and the account whose publishes it
/// stores. Tenants are NATS accounts (security.md §3): a Broadcast in one namespace must not
/// receive what another namespace publishes on the same topic, so the operator subscribes each
/// mailbox for its own namespace's account. `None` admits every publisher (no auth, `mq9 dev`,
/// and subscriptions made before tenancy until the operator renews them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub topic: String,
    pub account: Option<Box<str>>,
}

impl Subscription {
    /// Whether a publish by `publisher` (its account; `None`: anonymous) on `subject` is stored.
    pub fn admits(&self, subject: &str, publisher: Option<&str>) -> bool {
        super::topics::pattern_matches(&self.topic, subject)
            && self.account.as_deref().is_none_or(|a| Some(a) == publisher)
    }
}

/// The per-mailbox indexes.
#[derive(Debug, Clone, Default)]
pub struct Indexes {
    /// Which message holds each compaction key (`""` is the one slot of a `latest` mailbox).
    pub slots: HashMap<String, Slot>,
    /// Consumer groups by name.
    pub groups: HashMap<String, GroupState>,
    /// Broadcast topic patterns this mailbox durably receives.
    pub subscriptions: Vec<Subscription>,
    /// Delayed messages not visible yet, by delay_id: what QUERY `delayed` lists and
    /// `DELETE .d{delay_id}` finds without reading the time-ordered `delayed` index.
    pub delayed: BTreeMap<u64, PendingDelayed>,
}

/// A delayed message that is not visible yet: where it is stored (its `delayed` key is
/// visible_at · delay_id) and what it counts against the mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingDelayed {
    pub visible_at_ms: u64,
    /// 0 = no TTL.
    pub expires_at_ms: u64,
    pub size: u64,
}

impl Mailbox {
    pub fn new(record: MailboxRecord) -> Mailbox {
        Mailbox {
            record,
            indexes: None,
        }
    }

    /// The indexes, allocating them if this mailbox has none yet.
    pub fn indexes_mut(&mut self) -> &mut Indexes {
        self.indexes.get_or_insert_with(Box::default)
    }

    /// The indexes if allocated (`None` means all empty).
    pub fn existing_indexes_mut(&mut self) -> Option<&mut Indexes> {
        self.indexes.as_deref_mut()
    }

    /// The message holding compaction slot `key`.
    pub fn slot(&self, key: &str) -> Option<Slot> {
        self.indexes.as_ref()?.slots.get(key).copied()
    }

    pub fn group(&self, name: &str) -> Option<&GroupState> {
        self.indexes.as_ref()?.groups.get(name)
    }

    pub fn group_count(&self) -> usize {
        self.indexes.as_ref().map_or(0, |i| i.groups.len())
    }

    pub fn subscriptions(&self) -> &[Subscription] {
        self.indexes.as_ref().map_or(&[], |i| &i.subscriptions)
    }

    /// The delayed messages not visible yet, by delay_id.
    pub fn delayed(&self) -> Option<&BTreeMap<u64, PendingDelayed>> {
        self.indexes.as_ref().map(|i| &i.delayed)
    }
}

/// Reads every mailbox with its slots and groups.
pub fn load_all(store: &Store) -> Result<HashMap<Box<str>, Box<Mailbox>>, StoreError> {
    let mut mailboxes = HashMap::new();
    store.scan_prefix(store::CF_MAILBOXES, &[], |key, record: MailboxRecord| {
        let address: Box<str> = String::from_utf8_lossy(key).into();
        mailboxes.insert(address, Box::new(Mailbox::new(record)));
        true
    })?;
    let by_id: HashMap<u64, Box<str>> = mailboxes
        .iter()
        .map(|(address, mailbox)| (mailbox.record.id, address.clone()))
        .collect();
    let owner = |key: &[u8]| {
        let id = u64::from_be_bytes(key[..8].try_into().expect("keys start with a mailbox id"));
        by_id.get(&id).cloned()
    };
    store.scan_prefix(store::CF_SLOTS, &[], |key, slot: Slot| {
        if let Some(mailbox) = owner(key).and_then(|a| mailboxes.get_mut(&a)) {
            mailbox.indexes_mut().slots.insert(name_of(key), slot);
        }
        true
    })?;
    store.scan_prefix(store::CF_GROUPS, &[], |key, group: GroupState| {
        if let Some(mailbox) = owner(key).and_then(|a| mailboxes.get_mut(&a)) {
            mailbox.indexes_mut().groups.insert(name_of(key), group);
        }
        true
    })?;
    // The value is the subscription's account as UTF-8; empty (as the `()` written before
    // tenancy encodes) for none.
    let to = store::prefix_end(&[]);
    store.scan_raw(store::CF_SUBSCRIPTIONS, &[], &to, false, |key, value| {
        if let Some(mailbox) = owner(key).and_then(|a| mailboxes.get_mut(&a)) {
            let account = (!value.is_empty()).then(|| String::from_utf8_lossy(value).into());
            mailbox.indexes_mut().subscriptions.push(Subscription {
                topic: name_of(key),
                account,
            });
        }
        true
    })?;
    Ok(mailboxes)
}

impl Engine {
    /// The mailbox at `address` unless it does not exist or has expired.
    pub(super) fn live(&self, address: &str, now_ms: u64) -> Result<&Mailbox, ProtoError> {
        self.mailboxes
            .get(address)
            .map(Box::as_ref)
            .filter(|m| !m.record.is_expired(now_ms))
            .ok_or_else(|| ProtoError::no_mailbox(address))
    }

    pub(super) fn live_mut(
        &mut self,
        address: &str,
        now_ms: u64,
    ) -> Result<&mut Mailbox, ProtoError> {
        self.mailboxes
            .get_mut(address)
            .map(Box::as_mut)
            .filter(|m| !m.record.is_expired(now_ms))
            .ok_or_else(|| ProtoError::no_mailbox(address))
    }

    /// Queues a group's state into the open batch.
    pub(super) fn save_group(&mut self, address: &str, group: &str) {
        if let Some(mailbox) = self.mailboxes.get(address) {
            let (id, state) = (mailbox.record.id, mailbox.group(group));
            self.pending.save_group(&self.store, id, group, state);
        }
    }

    /// Removes one stored, visible message: its record, its counters, the compaction slot it
    /// holds and every group's lease on it.
    pub(super) fn remove_message(&mut self, address: &str, at: MessageAt, size: u64) {
        let Some(mailbox) = self.mailboxes.get_mut(address) else {
            return;
        };
        self.held.remove(&mut mailbox.record, size);
        let (freed_slots, leased_by) = match mailbox.existing_indexes_mut() {
            Some(indexes) => {
                let freed_slots: Vec<String> = indexes
                    .slots
                    .iter()
                    .filter(|(_, slot)| slot.msg_id == at.msg_id)
                    .map(|(key, _)| key.clone())
                    .collect();
                for key in &freed_slots {
                    indexes.slots.remove(key);
                }
                let leased_by: Vec<String> = indexes
                    .groups
                    .iter_mut()
                    .filter_map(|(name, group)| {
                        group.delivered.remove(&at.msg_id).map(|_| name.clone())
                    })
                    .collect();
                (freed_slots, leased_by)
            }
            None => (Vec::new(), Vec::new()),
        };
        self.pending.delete_message(&self.store, address, at);
        for key in &freed_slots {
            self.pending
                .save_slot(&self.store, at.mailbox_id, key, None);
        }
        for group in leased_by {
            self.save_group(address, &group);
        }
    }

    /// Removes a mailbox and everything it holds (messages, slots, groups, subscriptions,
    /// delayed messages, `Nats-Msg-Id`s) in the open batch.
    /// Expiry index entries of the old incarnation are skipped when they fall due.
    pub(super) fn remove_mailbox(&mut self, address: &str) {
        let Some(mailbox) = self.mailboxes.remove(address) else {
            return;
        };
        let record = &mailbox.record;
        self.held.messages -= record.count;
        self.held.bytes -= record.bytes;
        self.pending.delete_mailbox(&self.store, address, record.id);
        for subscription in mailbox.subscriptions() {
            self.topics.remove(&subscription.topic, address);
        }
        for (delay_id, pending) in mailbox.delayed().into_iter().flatten() {
            self.drop_delayed_of_removed(*delay_id, pending);
        }
        self.waiters_answer_gone(record.id, address);
    }
}

/// The messages stored over all mailboxes (delayed ones included) and their bytes, kept in
/// step with each mailbox's own counters.
#[derive(Debug, Default)]
pub struct Held {
    pub messages: u64,
    pub bytes: u64,
}

impl Held {
    /// One more message of `size` bytes in the mailbox of `record`.
    pub fn add(&mut self, record: &mut MailboxRecord, size: u64) {
        record.count += 1;
        record.bytes += size;
        self.messages += 1;
        self.bytes += size;
    }

    /// One message of `size` bytes fewer in the mailbox of `record`.
    pub fn remove(&mut self, record: &mut MailboxRecord, size: u64) {
        record.count -= 1;
        record.bytes -= size;
        self.messages -= 1;
        self.bytes -= size;
    }
}
