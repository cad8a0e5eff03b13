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
    /// Set for a delayed message that is not visible yet: it has no msg_id (`-1`) but a
    /// `delay_id` and the moment it becomes visible.
    pub pending: Option<PendingView>,
}

/// What a delayed message that is not visible yet shows besides the usual fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingView {
    pub delay_id: u64,
    /// Unix seconds.
    pub visible_at: u64,
}

struct Headers<'a>(&'a [(String, String)]);

impl Serialize for Headers<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Appends the JSON of one message item to `out`:
/// `{"msg_id":N,"payload":"<base64>","priority":P,"create_time":T,"delivery_count":D,
/// "headers":{...}[,"key":K][,"tags":[...]][,"delay_id":I,"visible_at":V]}`, where a pending
/// delayed message has `msg_id` -1.
///
/// Written by hand because it is the broker's hottest encoding: the base64 goes straight into
/// `out` (its alphabet needs no JSON escaping, so no second pass over it), numbers and the
/// priority are plain text; only the user-supplied strings (headers, key, tags) go through
/// serde_json for escaping.
pub fn encode_item(out: &mut Vec<u8>, message: &MessageView<'_>) {
    let base64 = base64::engine::general_purpose::STANDARD;
    out.extend_from_slice(b"{\"msg_id\":");
    match message.pending {
        Some(_) => out.extend_from_slice(b"-1"),
        None => out.extend_from_slice(message.msg_id.to_string().as_bytes()),
    }
    out.extend_from_slice(b",\"payload\":\"");
    let start = out.len();
    out.resize(
        start + base64::encoded_len(message.payload.len(), true).expect("a payload fits in memory"),
        0,
    );
    let written = base64
        .encode_slice(message.payload, &mut out[start..])
        .expect("the buffer has the encoded length");
    out.truncate(start + written);
    out.extend_from_slice(b"\",\"priority\":\"");
    out.extend_from_slice(message.priority.as_str().as_bytes());
    out.extend_from_slice(b"\",\"create_time\":");
    out.extend_from_slice(message.create_time.to_string().as_bytes());
    out.extend_from_slice(b",\"delivery_count\":");
    out.extend_from_slice(message.delivery_count.to_string().as_bytes());
    out.extend_from_slice(b",\"headers\":");
    serde_json::to_writer(&mut *out, &Headers(message.headers)).expect("writing to a Vec succeeds");
    if let Some(key) = message.key {
        out.extend_from_slice(b",\"key\":");
        serde_json::to_writer(&mut *out, key).expect("writing to a Vec succeeds");
    }
    if !message.tags.is_empty() {
        out.extend_from_slice(b",\"tags\":");
        serde_json::to_writer(&mut *out, message.tags).expect("writing to a Vec succeeds");
    }
    if let Some(pending) = message.pending {
        out.extend_from_slice(
            format!(
                ",\"delay_id\":{},\"visible_at\":{}",
                pending.delay_id, pending.visible_at
            )
            .as_bytes(),
        );
    }
    out.push(b'}');
}

/// The size of a reply that holds only this message: a message bigger than `max_payload` in
/// this form could never be read back, so SEND refuses it as `too_large`.
pub fn single_item_reply_len(message: &MessageView<'_>) -> usize {
    let mut item = Vec::new();
    encode_item(&mut item, message);
    BATCH_OVERHEAD + item.len()
}

/// `{"error":"","messages":[` + `]}` + room for the extra fields (`mail_id`, `unread`,
/// `next_before`).
const BATCH_OVERHEAD: usize = 128 + super::address::MAX_ADDRESS_LEN;

/// Builds `{"error":"", <fields>, "messages":[...]}` no larger than the server's `max_payload`.
/// Items are encoded once, into one buffer; `items` remembers where each one ends.
pub struct BatchBuilder {
    buffer: Vec<u8>,
    items: Vec<std::ops::Range<usize>>,
    budget: usize,
}

impl BatchBuilder {
    /// `max_payload` is the server's limit for one message.
    pub fn new(max_payload: usize) -> Self {
        BatchBuilder {
            buffer: Vec::new(),
            items: Vec::new(),
            budget: max_payload.saturating_sub(BATCH_OVERHEAD),
        }
    }

    /// Adds a message if it fits; the first one is always taken (protocol.md §1).
    /// Returns `false`, adding nothing, when the batch is full.
    pub fn push(&mut self, message: &MessageView<'_>) -> bool {
        let start = self.buffer.len();
        encode_item(&mut self.buffer, message);
        // One separating comma per item.
        let used = self.buffer.len() + self.items.len() + 1;
        if !self.items.is_empty() && used > self.budget {
            self.buffer.truncate(start);
            return false;
        }
        self.items.push(start..self.buffer.len());
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
        let mut out = Vec::with_capacity(self.buffer.len() + self.items.len() + BATCH_OVERHEAD);
        out.extend_from_slice(b"{\"error\":\"\",");
        if let Value::Object(fields) = fields {
            for (name, value) in fields {
                out.extend_from_slice(format!("{}:{},", Value::String(name), value).as_bytes());
            }
        }
        out.extend_from_slice(b"\"messages\":[");
        for (i, item) in self.items.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&self.buffer[item]);
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
            pending: None,
        }
    }

    /// One message as `encode_item` writes it.
    fn item_bytes(message: &MessageView) -> Vec<u8> {
        let mut out = Vec::new();
        encode_item(&mut out, message);
        out
    }

    fn as_json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("valid JSON")
    }

    #[test]
    fn a_pending_delayed_message_has_no_msg_id_but_a_delay_id() {
        let message = MessageView {
            pending: Some(PendingView {
                delay_id: 12,
                visible_at: 1_700_000_100,
            }),
            ..view(b"x")
        };
        assert_eq!(
            as_json(&item_bytes(&message)),
            json!({"msg_id":-1,"payload":"eA==","priority":"urgent","create_time":1_700_000_000u64,
                "delivery_count":1,"headers":{},"delay_id":12,"visible_at":1_700_000_100u64})
        );
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
    fn user_strings_are_escaped_and_optional_fields_appear_when_set() {
        let headers = [("x-note".to_owned(), "say \"hi\"\n\\ ü".to_owned())];
        let tags = ["a\"b".to_owned(), "eu".to_owned()];
        let message = MessageView {
            headers: &headers,
            key: Some("k\u{1}ey"),
            tags: &tags,
            ..view(b"x")
        };
        let out = item_bytes(&message);
        assert_eq!(
            as_json(&out),
            json!({"msg_id":3,"payload":"eA==","priority":"urgent","create_time":1_700_000_000u64,
                "delivery_count":1,"headers":{"x-note":"say \"hi\"\n\\ ü"},"key":"k\u{1}ey","tags":["a\"b","eu"]})
        );
        assert_eq!(single_item_reply_len(&message), BATCH_OVERHEAD + out.len());
    }

    #[test]
    fn reversed_batches_keep_each_item_whole() {
        let mut batch = BatchBuilder::new(1 << 20);
        for payload in [b"one".as_slice(), b"two", b"three"] {
            assert!(batch.push(&view(payload)));
        }
        batch.reverse();
        let reply: Value = serde_json::from_slice(&batch.finish(json!({}))).unwrap();
        let payloads: Vec<&str> = reply["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["payload"].as_str().unwrap())
            .collect();
        assert_eq!(payloads, ["dGhyZWU=", "dHdv", "b25l"]);
    }

    #[test]
    fn batches_stay_under_max_payload_but_always_hold_one() {
        let big = vec![7u8; 600];
        let max_payload = 2100;
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
