//! Bringing counters written under an older rule up to date, once, when the store opens.
//!
//! The mailbox record persists `bytes`, and each compaction [`Slot`] persists its message's
//! size, so that a restart does not read every message. Both are sums of
//! [`MessageRecord::size`]. Version 1 counted payloads only; version 2 counts everything
//! stored (payload, headers, key, tags). A store written by version 1 would otherwise keep
//! the old sums while new messages add and remove sizes by the new rule: counters would
//! drift, and a freed message could even subtract more than was added. So at open a store
//! without the current [`SIZE_RULE`] is recounted from its messages (one full read, paid once
//! at the upgrade) and the rule is recorded in the same synced batch.

use std::collections::HashMap;

use rocksdb::WriteBatch;

use super::*;

/// The version of the rule [`MessageRecord::size`] follows.
pub const SIZE_RULE: u64 = 2;

/// `meta` key of the size rule the stored counters follow (absent = 1, payload only).
pub const META_SIZE_RULE: &[u8] = b"size_rule";

/// Recounts every mailbox's `bytes` and every slot's `size` unless the store already follows
/// [`SIZE_RULE`].
pub(super) fn recount_sizes(store: &Store) -> StoreResult<()> {
    if store.get_u64(CF_META, META_SIZE_RULE)? == SIZE_RULE {
        return Ok(());
    }
    let mut batch = WriteBatch::default();
    // Which slot holds each message, by the message's key.
    let mut slots: HashMap<Vec<u8>, (Vec<u8>, Slot)> = HashMap::new();
    store.scan_prefix(CF_SLOTS, &[], |key, slot: Slot| {
        let mailbox_id =
            u64::from_be_bytes(key[..8].try_into().expect("slot keys start with an id"));
        if let Some(priority) = crate::protocol::Priority::from_index(slot.priority) {
            let message = message_key(mailbox_id, priority, slot.msg_id).to_vec();
            slots.insert(message, (key.to_vec(), slot));
        }
        true
    })?;
    let mut bytes: HashMap<u64, u64> = HashMap::new();
    store.scan_prefix(CF_MESSAGES, &[], |key, record: MessageRecord| {
        let mailbox_id = u64::from_be_bytes(key[..8].try_into().expect("17-byte message key"));
        let size = record.size();
        *bytes.entry(mailbox_id).or_default() += size;
        if let Some((slot_key, mut slot)) = slots.remove(key) {
            slot.size = size;
            store.put(&mut batch, CF_SLOTS, &slot_key, &slot);
        }
        true
    })?;
    store.scan_prefix(CF_DELAYED, &[], |_, delayed: DelayedRecord| {
        *bytes.entry(delayed.mailbox_id).or_default() += delayed.message.size();
        true
    })?;
    store.scan_prefix(CF_MAILBOXES, &[], |address, mut record: MailboxRecord| {
        let recounted = bytes.get(&record.id).copied().unwrap_or(0);
        if record.bytes != recounted {
            record.bytes = recounted;
            store.put(&mut batch, CF_MAILBOXES, address, &record);
        }
        true
    })?;
    store.put_raw(
        &mut batch,
        CF_META,
        META_SIZE_RULE,
        &SIZE_RULE.to_be_bytes(),
    );
    store.write(batch, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{MailboxType, Priority};

    /// A store written under the payload-only rule: the mailbox counts 4 bytes for a message
    /// of 4 payload bytes, a 2-byte key and a 3-byte tag, and its slot says 4 too.
    fn write_version_1(store: &Store) {
        let mut batch = WriteBatch::default();
        let message = MessageRecord {
            create_time_ms: 0,
            expires_at_ms: 0,
            payload: b"abcd".to_vec(),
            headers: Vec::new(),
            key: Some("k1".into()),
            tags: vec!["red".into()],
        };
        let mailbox = MailboxRecord {
            id: 7,
            kind: MailboxType::Standard,
            ttl_secs: 0,
            created_at_ms: 0,
            expires_at_ms: 0,
            desc: None,
            owner: None,
            next_msg_id: 1,
            count: 1,
            bytes: 4,
            delayed: 0,
        };
        let slot = Slot {
            priority: Priority::Normal.index(),
            msg_id: 0,
            size: 4,
        };
        store.put(
            &mut batch,
            CF_MESSAGES,
            &message_key(7, Priority::Normal, 0),
            &message,
        );
        store.put(&mut batch, CF_MAILBOXES, b"box", &mailbox);
        store.put(&mut batch, CF_SLOTS, &named_key(7, "k1"), &slot);
        store.delete(&mut batch, CF_META, META_SIZE_RULE);
        store.write(batch, true).unwrap();
    }

    #[test]
    fn counters_of_an_older_rule_are_recounted_once() {
        let dir = tempfile::TempDir::new().unwrap();
        write_version_1(&Store::open(dir.path()).unwrap());
        let store = Store::open(dir.path()).unwrap();
        let mailbox: MailboxRecord = store.get(CF_MAILBOXES, b"box").unwrap().unwrap();
        let slot: Slot = store.get(CF_SLOTS, &named_key(7, "k1")).unwrap().unwrap();
        assert_eq!((mailbox.bytes, slot.size), (9, 9));
        assert_eq!(store.get_u64(CF_META, META_SIZE_RULE).unwrap(), SIZE_RULE);
    }
}
