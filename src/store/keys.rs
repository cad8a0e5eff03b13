//! Key encodings. Integers are big-endian so that byte order is numeric order.

use crate::protocol::Priority;

/// The first key after every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

/// All of one mailbox's keys in the per-mailbox column families.
pub fn mailbox_prefix(mailbox_id: u64) -> [u8; 8] {
    mailbox_id.to_be_bytes()
}

/// `messages`: mailbox id · priority · msg_id.
pub fn message_key(mailbox_id: u64, priority: Priority, msg_id: u64) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[..8].copy_from_slice(&mailbox_id.to_be_bytes());
    key[8] = priority.index();
    key[9..].copy_from_slice(&msg_id.to_be_bytes());
    key
}

/// The msg_id at the end of a `messages` key.
pub fn message_id_of(key: &[u8]) -> u64 {
    u64::from_be_bytes(key[9..17].try_into().expect("message keys are 17 bytes"))
}

/// `groups` and `slots`: mailbox id · name.
pub fn named_key(mailbox_id: u64, name: &str) -> Vec<u8> {
    let mut key = mailbox_id.to_be_bytes().to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

/// The name after the mailbox id of a `groups` or `slots` key.
pub fn name_of(key: &[u8]) -> String {
    String::from_utf8_lossy(&key[8..]).into_owned()
}

/// `mailbox_expiry`: expires_at · mailbox id.
pub fn mailbox_expiry_key(expires_at_ms: u64, mailbox_id: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&expires_at_ms.to_be_bytes());
    key[8..].copy_from_slice(&mailbox_id.to_be_bytes());
    key
}

/// `message_expiry`: expires_at · mailbox id · priority · msg_id.
pub fn message_expiry_key(
    expires_at_ms: u64,
    mailbox_id: u64,
    priority: Priority,
    msg_id: u64,
) -> [u8; 25] {
    let mut key = [0u8; 25];
    key[..8].copy_from_slice(&expires_at_ms.to_be_bytes());
    key[8..].copy_from_slice(&message_key(mailbox_id, priority, msg_id));
    key
}

/// `delayed`: visible_at · sequence.
pub fn delayed_key(visible_at_ms: u64, seq: u64) -> [u8; 16] {
    mailbox_expiry_key(visible_at_ms, seq)
}

/// `dedup_expiry`: expires_at · the `dedup` key (mailbox id · `Nats-Msg-Id`).
pub fn dedup_expiry_key(expires_at_ms: u64, dedup_key: &[u8]) -> Vec<u8> {
    let mut key = expires_at_ms.to_be_bytes().to_vec();
    key.extend_from_slice(dedup_key);
    key
}

/// The leading timestamp of a time-ordered index key.
pub fn time_of(key: &[u8]) -> u64 {
    u64::from_be_bytes(
        key[..8]
            .try_into()
            .expect("index keys start with a timestamp"),
    )
}

/// Splits the `messages` key embedded in a `message_expiry` key.
pub fn expiring_message_of(key: &[u8]) -> (u64, Option<Priority>, u64) {
    let message = &key[8..];
    (
        u64::from_be_bytes(message[..8].try_into().expect("17-byte message key")),
        Priority::from_index(message[8]),
        message_id_of(message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(&[1, 2]), vec![1, 3]);
        assert_eq!(prefix_end(&[1, 255]), vec![2]);
        assert!(prefix_end(&[255, 255]).as_slice() > [255u8, 255, 0].as_slice());
    }

    #[test]
    fn message_keys_sort_by_mailbox_priority_then_id() {
        let a = message_key(1, Priority::Critical, 9);
        let b = message_key(1, Priority::Normal, 2);
        let c = message_key(1, Priority::Normal, 10);
        let d = message_key(2, Priority::Critical, 0);
        assert!(a < b && b < c && c < d);
        assert_eq!(message_id_of(&c), 10);
        let e = message_expiry_key(5, 1, Priority::Urgent, 3);
        assert_eq!(expiring_message_of(&e), (1, Some(Priority::Urgent), 3));
        assert_eq!(time_of(&e), 5);
    }
}
