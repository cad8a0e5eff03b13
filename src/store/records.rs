//! The records stored as values.

use serde::{Deserialize, Serialize};

use crate::protocol::MailboxType;

/// A mailbox and its counters. Rewritten with every change of its counters, in the same batch as
/// the change, so that a restart finds `next_msg_id`, `count` and `bytes` exact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxRecord {
    /// Internal incarnation id, never reused: the key of everything the mailbox holds.
    pub id: u64,
    pub kind: MailboxType,
    /// Seconds; 0 = never expires.
    pub ttl_secs: u64,
    pub created_at_ms: u64,
    /// 0 = never.
    pub expires_at_ms: u64,
    pub desc: Option<Box<str>>,
    /// Who ensured it through the admin API (the operator's Mailbox uid), if anyone.
    pub owner: Option<Box<str>>,
    pub next_msg_id: u64,
    /// Stored messages, delayed ones included (they count against the limits from SEND on).
    pub count: u64,
    /// Bytes of those messages, as [`MessageRecord::size`] counts them.
    pub bytes: u64,
    /// How many of `count` are delayed and not visible yet.
    pub delayed: u64,
}

impl MailboxRecord {
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms != 0 && self.expires_at_ms <= now_ms
    }

    /// Messages a reader can see now (delayed ones are not yet visible).
    pub fn visible(&self) -> u64 {
        self.count - self.delayed
    }
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// When it became visible (and got its msg_id).
    pub create_time_ms: u64,
    /// 0 = no message TTL.
    pub expires_at_ms: u64,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub key: Option<String>,
    pub tags: Vec<String>,
}

impl MessageRecord {
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms != 0 && self.expires_at_ms <= now_ms
    }

    /// What the message counts against `max_bytes_per_mailbox` and in `mq9_stored_bytes`:
    /// everything a sender chose to store — payload, header names and values, key and tags.
    /// Counting the payload alone would let a tenant store megabytes of headers for free.
    ///
    /// The mailbox counters and [`Slot::size`] are persisted sums of this; when the rule
    /// changes, [`SIZE_RULE`](super::migrate::SIZE_RULE) changes and the store recounts them
    /// once at open.
    pub fn size(&self) -> u64 {
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        let key = self.key.as_ref().map_or(0, String::len);
        let tags: usize = self.tags.iter().map(String::len).sum();
        (self.payload.len() + headers + key + tags) as u64
    }
}

/// A message sent with `mq9-delay`, waiting to become visible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelayedRecord {
    pub address: String,
    pub mailbox_id: u64,
    pub priority: u8,
    pub message: MessageRecord,
}

/// A SEND's `Nats-Msg-Id`, remembered for the dedup window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupRecord {
    /// What the original SEND answered: its msg_id, or -1 if it was delayed.
    pub msg_id: i64,
    /// The end of the window; the entry means nothing from then on, even before it is removed.
    pub expires_at_ms: u64,
}

/// Which message currently holds a compaction key (`mq9-key`, or the single slot of a
/// `latest` mailbox, stored under the empty key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub priority: u8,
    pub msg_id: u64,
    pub size: u64,
}

/// An entry of the agent registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Registration order (DISCOVER without a query lists in this order).
    pub seq: u64,
    /// The REGISTER body exactly as sent.
    pub card: String,
    /// The card's string values, as indexed for search.
    pub text: String,
    pub name: Option<String>,
    pub mailbox: Option<String>,
    /// The latest REPORT body.
    pub status: Option<String>,
    pub last_seen_ms: u64,
    /// Seconds without a REPORT before the entry expires; 0 = never.
    pub ttl_secs: u64,
}

impl AgentRecord {
    /// When the entry expires, if it has a TTL.
    pub fn expires_at_ms(&self) -> Option<u64> {
        (self.ttl_secs > 0).then(|| {
            self.last_seen_ms
                .saturating_add(self.ttl_secs.saturating_mul(1000))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_counts_everything_a_sender_stores() {
        let record = MessageRecord {
            create_time_ms: 1,
            expires_at_ms: 2,
            payload: vec![0; 10],
            headers: vec![("trace".into(), "abc".into()), ("x".into(), String::new())],
            key: Some("k1".into()),
            tags: vec!["eu".into(), "red".into()],
        };
        assert_eq!(record.size(), 10 + 5 + 3 + 1 + 2 + 2 + 3);
    }
}
