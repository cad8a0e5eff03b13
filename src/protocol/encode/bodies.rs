//! Each typed request written as the JSON body its parser reads, and a SEND's options as the
//! headers [`headers::parse`](crate::protocol::headers::parse) reads.
//!
//! Decision: a body carries only what differs from the protocol's default — no `null`s, no
//! restated defaults — so a request is as small as it can be and reads as what the caller
//! asked for; since the parser fills the defaults back in, `parse(encode(x)) == x` still holds.

use std::str::FromStr;

use async_nats::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::protocol::admin::{EnsureRequest, ListRequest, DEFAULT_LIST_LIMIT};
use crate::protocol::agents::{
    AgentLookup, DiscoverRequest, RegisterRequest, DEFAULT_DISCOVER_LIMIT,
};
use crate::protocol::headers::{
    SendOptions, DEDUP_HEADER, DELAY_HEADER, KEY_HEADER, PRIORITY_HEADER, TAGS_HEADER, TTL_HEADER,
};
use crate::protocol::request::{
    field, AckRequest, CreateRequest, Deliver, FetchRequest, QueryRequest, SubscribeRequest,
    DEFAULT_ACK_WAIT_MS, DEFAULT_MAX_WAIT_MS, DEFAULT_NUM_MSGS, DEFAULT_QUERY_LIMIT,
};
use crate::protocol::{MailboxType, ProtoError};

impl CreateRequest {
    pub fn encode(&self) -> Vec<u8> {
        body([
            (field::NAME, self.name.as_deref().map(Value::from)),
            (field::TTL, self.ttl.map(Value::from)),
            (field::TYPE, mailbox_type(self.kind)),
            (field::DESC, self.desc.as_deref().map(Value::from)),
        ])
    }
}

impl FetchRequest {
    pub fn encode(&self) -> Vec<u8> {
        let (deliver, from_time, from_id) = match self.deliver {
            Deliver::Earliest => (None, None, None),
            Deliver::Latest => (Some(field::DELIVER_LATEST), None, None),
            Deliver::FromTime(t) => (Some(field::FROM_TIME), Some(t), None),
            Deliver::FromId(id) => (Some(field::FROM_ID), None, Some(id)),
        };
        let config = object([
            (
                field::NUM_MSGS,
                unless(self.num_msgs as u64, DEFAULT_NUM_MSGS),
            ),
            (
                field::MAX_WAIT_MS,
                unless(self.max_wait_ms, DEFAULT_MAX_WAIT_MS),
            ),
            (
                field::ACK_WAIT_MS,
                unless(self.ack_wait_ms, DEFAULT_ACK_WAIT_MS),
            ),
        ]);
        body([
            (field::GROUP_NAME, self.group.as_deref().map(Value::from)),
            (field::DELIVER, deliver.map(Value::from)),
            (field::FROM_TIME, from_time.map(Value::from)),
            (field::FROM_ID, from_id.map(Value::from)),
            (field::FORCE_DELIVER, unless(self.force_deliver, false)),
            (
                field::CONFIG,
                (!config.is_empty()).then_some(Value::Object(config)),
            ),
        ])
    }
}

impl AckRequest {
    pub fn encode(&self) -> Vec<u8> {
        body([
            (field::GROUP_NAME, Some(Value::from(self.group.as_str()))),
            (field::MSG_ID, Some(Value::from(self.msg_id))),
        ])
    }
}

impl QueryRequest {
    pub fn encode(&self) -> Vec<u8> {
        body([
            (field::KEY, self.key.as_deref().map(Value::from)),
            (
                field::TAGS,
                (!self.tags.is_empty()).then(|| Value::from(self.tags.clone())),
            ),
            (field::SINCE, self.since.map(Value::from)),
            (field::LIMIT, unless(self.limit as u64, DEFAULT_QUERY_LIMIT)),
            (field::BEFORE, self.before.map(Value::from)),
            (field::DELAYED, unless(self.delayed, false)),
        ])
    }
}

impl SubscribeRequest {
    pub fn encode(&self) -> Vec<u8> {
        body([
            (
                field::MAIL_ADDRESS,
                Some(Value::from(self.address.as_str())),
            ),
            (field::TOPIC, Some(Value::from(self.topic.as_str()))),
            (field::ACCOUNT, self.account.as_deref().map(Value::from)),
        ])
    }
}

impl EnsureRequest {
    pub fn encode(&self) -> Vec<u8> {
        body([
            (field::NAME, Some(Value::from(self.name.as_str()))),
            (field::TTL, self.ttl.map(Value::from)),
            (field::EXPIRES_AT, self.expires_at.map(Value::from)),
            (field::TYPE, mailbox_type(self.kind)),
            (field::OWNER, self.owner.as_deref().map(Value::from)),
            (field::DESC, self.desc.as_deref().map(Value::from)),
        ])
    }
}

/// The body of `MAILBOX.DELETE` and `MAILBOX.INFO`, read by [`crate::protocol::admin::name`].
pub fn mailbox_name(name: &str) -> Vec<u8> {
    body([(field::NAME, Some(Value::from(name)))])
}

impl ListRequest {
    pub fn encode(&self) -> Vec<u8> {
        body([
            (
                field::PREFIX,
                (!self.prefix.is_empty()).then(|| Value::from(self.prefix.as_str())),
            ),
            (field::AFTER, self.after.as_deref().map(Value::from)),
            (field::LIMIT, unless(self.limit as u64, DEFAULT_LIST_LIMIT)),
            (field::OWNER, self.owner.as_deref().map(Value::from)),
        ])
    }
}

impl RegisterRequest {
    /// The card, exactly as it will be kept and returned by DISCOVER.
    pub fn encode(&self) -> Vec<u8> {
        self.card.clone().into_bytes()
    }
}

impl AgentLookup {
    /// The UNREGISTER body.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_report(None)
    }

    /// The REPORT body: the agent, and its status, if any (the broker keeps the whole body).
    pub fn encode_report(&self, status: Option<Value>) -> Vec<u8> {
        body([
            (field::NAME, self.name.as_deref().map(Value::from)),
            (field::MAILBOX, self.mailbox.as_deref().map(Value::from)),
            (field::STATUS, status),
        ])
    }
}

impl DiscoverRequest {
    /// The query travels as `text`: `semantic` runs the same ranked search today.
    pub fn encode(&self) -> Vec<u8> {
        body([
            (field::TEXT, self.query.as_deref().map(Value::from)),
            (
                field::LIMIT,
                unless(self.limit as u64, DEFAULT_DISCOVER_LIMIT),
            ),
            (field::PAGE, unless(self.page as u64, 1)),
        ])
    }
}

impl SendOptions {
    /// The headers of a SEND: the `mq9-*` options that are set, the dedup id (unless `headers`
    /// already carries it), then every other header. A name or value NATS cannot carry, or a
    /// tag with a comma (tags travel comma-separated), is a `bad_request` naming it.
    pub fn to_headers(&self) -> Result<HeaderMap, ProtoError> {
        if let Some(tag) = self.tags.iter().find(|tag| tag.contains(',')) {
            return Err(ProtoError::bad_request(format!(
                "tag {tag:?} contains a comma, which separates tags in {TAGS_HEADER}"
            )));
        }
        let has_dedup_header = self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(DEDUP_HEADER));
        let options = [
            (
                PRIORITY_HEADER,
                self.priority.map(|p| p.as_str().to_owned()),
            ),
            (KEY_HEADER, self.key.clone()),
            (DELAY_HEADER, self.delay_secs.map(|secs| secs.to_string())),
            (TTL_HEADER, self.ttl_secs.map(|secs| secs.to_string())),
            (
                TAGS_HEADER,
                (!self.tags.is_empty()).then(|| self.tags.join(",")),
            ),
            (
                DEDUP_HEADER,
                self.dedup_id.clone().filter(|_| !has_dedup_header),
            ),
        ];
        let options = options
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?)));
        let others = self.headers.iter().map(|(n, v)| (n.as_str(), v.clone()));
        let mut headers = HeaderMap::new();
        for (name, value) in options.chain(others) {
            let header = HeaderName::from_str(name)
                .map_err(|_| ProtoError::bad_request(format!("invalid header name {name:?}")))?;
            let value = HeaderValue::from_str(&value).map_err(|_| {
                ProtoError::bad_request(format!("header {name}: a value must not break lines"))
            })?;
            headers.append(header, value);
        }
        Ok(headers)
    }
}

/// `type`, left out for the default, standard.
fn mailbox_type(kind: MailboxType) -> Option<Value> {
    (kind != MailboxType::Standard).then(|| Value::from(kind.as_str()))
}

/// `value`, unless it is the protocol's `default`.
fn unless<T: PartialEq + Into<Value>>(value: T, default: T) -> Option<Value> {
    (value != default).then(|| value.into())
}

/// An object of the fields that are present.
fn object<const N: usize>(fields: [(&str, Option<Value>); N]) -> Map<String, Value> {
    fields
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value?)))
        .collect()
}

fn body<const N: usize>(fields: [(&str, Option<Value>); N]) -> Vec<u8> {
    Value::Object(object(fields)).to_string().into_bytes()
}

#[cfg(test)]
#[path = "bodies_tests.rs"]
mod tests;
