//! Reply bodies. Messages travel as JSON items with a standard-base64 payload; batches are
//! built item by item so that a reply never exceeds the server's `max_payload`.

use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::Priority;

/// The success reply of commands whose answer is only `{"error":""}` plus `fields`.
pub fn ok(fields: Value) -> Bytes {
    let mut object = serde_json::Map::new();
    object.insert("error".into(), Value::String(String::new()));
    if let Value::Object(fields) = fields {
        object.extend(fields);
    }
    Bytes::from(Value::Object(object).to_string().into_bytes())
}

/// One stored message as a reader sees it.
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a> {
    pub msg_id: u64,
    pub payload: &'a [u8],
    pub priority: Priority,
    /// Unix seconds.
    pub create_time: u64,
    pub delivery_count: u32,
    pub headers: &'a [(String, String)],
    pub key: Option<&'a str>,
    pub tags: &'a [String],
}

#[derive(Serialize)]
struct Item<'a> {
    msg_id: u64,
    payload: String,
    priority: &'static str,
    create_time: u64,
    delivery_count: u32,
    headers: Headers<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    tags: &'a [String],
}

struct Headers<'a>(&'a [(String, String)]);

impl Serialize for Headers<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// The JSON of one message item.
pub fn encode_item(message: &MessageView<'_>) -> Vec<u8> {
    let item = Item {
        msg_id: message.msg_id,
        payload: base64::engine::general_purpose::STANDARD.encode(message.payload),
        priority: message.priority.as_str(),
        create_time: message.create_time,
        delivery_count: message.delivery_count,
        headers: Headers(message.headers),
        key: message.key,
        tags: message.tags,
    };
    serde_json::to_vec(&item).expect("a message item always serializes")
}

/// The size of a reply that holds only this message: a message bigger than `max_payload` in
/// this form could never be read back, so SEND refuses it as `too_large`.
pub fn single_item_reply_len(message: &MessageView<'_>) -> usize {
    BATCH_OVERHEAD + encode_item(message).len()
}

/// `{"error":"","messages":[` + `]}` + room for the largest extra field (`mail_id`, `unread`).
const BATCH_OVERHEAD: usize = 64 + super::address::MAX_ADDRESS_LEN;

/// Builds `{"error":"", <fields>, "messages":[...]}` no larger than the server's `max_payload`.
pub struct BatchBuilder {
    items: Vec<Vec<u8>>,
    len: usize,
    budget: usize,
}

impl BatchBuilder {
    /// `max_payload` is the server's limit for one message.
    pub fn new(max_payload: usize) -> Self {
        BatchBuilder {
            items: Vec::new(),
            len: 0,
            budget: max_payload.saturating_sub(BATCH_OVERHEAD),
        }
    }

    /// Adds a message if it fits; the first one is always taken (protocol.md §1).
    /// Returns `false`, adding nothing, when the batch is full.
    pub fn push(&mut self, message: &MessageView<'_>) -> bool {
        let item = encode_item(message);
        let needed = item.len() + 1;
        if !self.items.is_empty() && self.len + needed > self.budget {
            return false;
        }
        self.len += needed;
        self.items.push(item);
        true
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Reverses the order of the items (QUERY fills newest first, answers oldest first).
    pub fn reverse(&mut self) {
        self.items.reverse();
    }

    /// The reply: `fields` (a JSON object) come before `messages`.
    pub fn finish(self, fields: Value) -> Bytes {
        let mut out = Vec::with_capacity(self.len + BATCH_OVERHEAD);
        out.extend_from_slice(b"{\"error\":\"\",");
        if let Value::Object(fields) = fields {
            for (name, value) in fields {
                out.extend_from_slice(format!("{}:{},", Value::String(name), value).as_bytes());
            }
        }
        out.extend_from_slice(b"\"messages\":[");
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(item);
        }
        out.extend_from_slice(b"]}");
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(payload: &[u8]) -> MessageView<'_> {
        MessageView {
            msg_id: 3,
            payload,
            priority: Priority::Urgent,
            create_time: 1_700_000_000,
            delivery_count: 1,
            headers: &[],
            key: None,
            tags: &[],
        }
    }

    #[test]
    fn item_shape_and_binary_safe_base64() {
        let payload = [0u8, 255, 10, 13];
        let mut batch = BatchBuilder::new(1 << 20);
        assert!(batch.push(&view(&payload)));
        let reply: Value = serde_json::from_slice(&batch.finish(json!({"unread": 1}))).unwrap();
        assert_eq!(
            reply,
            json!({"error":"","unread":1,"messages":[{"msg_id":3,"payload":"AP8KDQ==","priority":"urgent",
                "create_time":1_700_000_000u64,"delivery_count":1,"headers":{}}]})
        );
    }

    #[test]
    fn batches_stay_under_max_payload_but_always_hold_one() {
        let big = vec![7u8; 600];
        let max_payload = 2000;
        let mut batch = BatchBuilder::new(max_payload);
        let mut taken = 0;
        while batch.push(&view(&big)) {
            taken += 1;
        }
        assert_eq!(taken, 2);
        assert!(batch.finish(json!({})).len() <= max_payload);
        let mut tiny = BatchBuilder::new(10);
        assert!(
            tiny.push(&view(&big)),
            "a lone message is returned even when larger"
        );
    }
}
