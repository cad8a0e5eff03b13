//! The typed requests of each command, read from a [`Body`] with the defaults and bounds of
//! protocol.md §3.

use super::body::Body;
use super::{MailboxType, ProtoError};

/// The JSON field names of every request body: the parsers here, in `admin` and in `agents`
/// read them, and `encode` writes them, so a client and the broker cannot spell one apart.
pub mod field {
    pub const NAME: &str = "name";
    pub const TTL: &str = "ttl";
    pub const TYPE: &str = "type";
    pub const DESC: &str = "desc";
    pub const GROUP_NAME: &str = "group_name";
    pub const DELIVER: &str = "deliver";
    /// `deliver`'s values; `from_time` and `from_id` are also the fields they read.
    pub const DELIVER_EARLIEST: &str = "earliest";
    pub const DELIVER_LATEST: &str = "latest";
    pub const FROM_TIME: &str = "from_time";
    pub const FROM_ID: &str = "from_id";
    pub const FORCE_DELIVER: &str = "force_deliver";
    pub const CONFIG: &str = "config";
    pub const NUM_MSGS: &str = "num_msgs";
    pub const MAX_WAIT_MS: &str = "max_wait_ms";
    pub const ACK_WAIT_MS: &str = "ack_wait_ms";
    pub const MSG_ID: &str = "msg_id";
    pub const MAIL_ADDRESS: &str = "mail_address";
    pub const TOPIC: &str = "topic";
    pub const ACCOUNT: &str = "account";
    pub const KEY: &str = "key";
    pub const TAGS: &str = "tags";
    pub const SINCE: &str = "since";
    pub const LIMIT: &str = "limit";
    pub const BEFORE: &str = "before";
    pub const DELAYED: &str = "delayed";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const OWNER: &str = "owner";
    pub const PREFIX: &str = "prefix";
    pub const AFTER: &str = "after";
    pub const MAILBOX: &str = "mailbox";
    pub const TEXT: &str = "text";
    pub const SEMANTIC: &str = "semantic";
    pub const PAGE: &str = "page";
    /// REPORT stores its whole body as the agent's status; the CLI puts it under this field.
    pub const STATUS: &str = "status";
}

/// Default and maximum number of messages in one FETCH reply.
pub const DEFAULT_NUM_MSGS: u64 = 100;
pub const MAX_NUM_MSGS: u64 = 1000;
/// Default and maximum long-poll wait.
pub const DEFAULT_MAX_WAIT_MS: u64 = 500;
pub const MAX_MAX_WAIT_MS: u64 = 30_000;
/// Default lease of a message fetched by a group.
pub const DEFAULT_ACK_WAIT_MS: u64 = 30_000;
/// Longest lease: a day. Longer leases would hide a crashed consumer's messages for good.
pub const MAX_ACK_WAIT_MS: u64 = 86_400_000;
/// Default and maximum number of messages a QUERY returns.
pub const DEFAULT_QUERY_LIMIT: u64 = 100;
pub const MAX_QUERY_LIMIT: u64 = 1000;

/// `MAILBOX.CREATE`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CreateRequest {
    pub name: Option<String>,
    /// Seconds; `None` = the broker's default, `Some(0)` = never expires.
    pub ttl: Option<u64>,
    pub kind: MailboxType,
    pub desc: Option<String>,
}

impl CreateRequest {
    pub fn parse(body: &Body) -> Result<Self, ProtoError> {
        let name = body.opt_str(field::NAME)?.map(str::to_owned);
        if let Some(name) = &name {
            super::address::validate(name)
                .map_err(|e| ProtoError::bad_request(format!("field `name`: {}", e.message)))?;
        }
        Ok(CreateRequest {
            name,
            ttl: body.opt_u64(field::TTL)?,
            kind: body
                .opt_enum(field::TYPE, &["standard", "latest"], MailboxType::parse)?
                .unwrap_or(MailboxType::Standard),
            desc: body.opt_str(field::DESC)?.map(str::to_owned),
        })
    }
}

/// Where a FETCH starts when a group has no state yet, and for every stateless FETCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Deliver {
    /// Only messages that arrive from now on.
    Latest,
    /// The oldest stored message.
    Earliest,
    /// The first message with `create_time >= t` (Unix seconds).
    FromTime(u64),
    /// The first message with `msg_id >= id`.
    FromId(u64),
}

/// `MSG.FETCH`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FetchRequest {
    /// `None` for a stateless fetch (field absent or `""`).
    pub group: Option<String>,
    pub deliver: Deliver,
    pub force_deliver: bool,
    pub num_msgs: usize,
    pub max_wait_ms: u64,
    pub ack_wait_ms: u64,
}

impl FetchRequest {
    pub fn parse(body: &Body) -> Result<Self, ProtoError> {
        let group = body
            .opt_str(field::GROUP_NAME)?
            .filter(|g| !g.is_empty())
            .map(str::to_owned);
        let deliver = match body.opt_str(field::DELIVER)? {
            None | Some(field::DELIVER_EARLIEST) => Deliver::Earliest,
            Some(field::DELIVER_LATEST) => Deliver::Latest,
            Some(field::FROM_TIME) => Deliver::FromTime(required(body.opt_u64(field::FROM_TIME)?, field::FROM_TIME)?),
            Some(field::FROM_ID) => Deliver::FromId(required(body.opt_u64(field::FROM_ID)?, field::FROM_ID)?),
            Some(other) => {
                return Err(ProtoError::bad_request(format!(
                    "field `deliver` must be one of latest, earliest, from_time, from_id, got {other:?}"
                )))
            }
        };
        // Validate the unused start fields' types too: a wrong type is never ignored.
        body.opt_u64(field::FROM_TIME)?;
        body.opt_u64(field::FROM_ID)?;
        let config = body.opt_object(field::CONFIG)?.unwrap_or_default();
        Ok(FetchRequest {
            group,
            deliver,
            force_deliver: body.opt_bool(field::FORCE_DELIVER)?.unwrap_or(false),
            num_msgs: config
                .opt_u64_in(field::NUM_MSGS, 1..=MAX_NUM_MSGS)
                .map_err(in_config)?
                .unwrap_or(DEFAULT_NUM_MSGS) as usize,
            max_wait_ms: config
                .opt_u64_in(field::MAX_WAIT_MS, 0..=MAX_MAX_WAIT_MS)
                .map_err(in_config)?
                .unwrap_or(DEFAULT_MAX_WAIT_MS),
            ack_wait_ms: config
                .opt_u64_in(field::ACK_WAIT_MS, 1..=MAX_ACK_WAIT_MS)
                .map_err(in_config)?
                .unwrap_or(DEFAULT_ACK_WAIT_MS),
        })
    }
}

/// `MSG.ACK`. The subject's address wins over a `mail_address` field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AckRequest {
    pub group: String,
    pub msg_id: u64,
}

impl AckRequest {
    pub fn parse(body: &Body) -> Result<Self, ProtoError> {
        let group = required(body.opt_str(field::GROUP_NAME)?, field::GROUP_NAME)?;
        if group.is_empty() {
            return Err(ProtoError::bad_request(
                "field `group_name` must name the group that fetched the message",
            ));
        }
        Ok(AckRequest {
            group: group.to_owned(),
            msg_id: required(body.opt_u64(field::MSG_ID)?, field::MSG_ID)?,
        })
    }
}

/// `MAILBOX.SUBSCRIBE` / `MAILBOX.UNSUBSCRIBE`: a mailbox and a broadcast topic pattern.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubscribeRequest {
    pub address: String,
    pub topic: String,
    /// The only account whose publishes this subscription stores (the operator names the
    /// mailbox's tenant account); absent: every publisher. Ignored by UNSUBSCRIBE.
    pub account: Option<String>,
}

impl SubscribeRequest {
    pub fn parse(body: &Body) -> Result<Self, ProtoError> {
        let address = required(body.opt_str(field::MAIL_ADDRESS)?, field::MAIL_ADDRESS)?;
        super::address::validate(address)
            .map_err(|e| ProtoError::bad_request(format!("field `mail_address`: {}", e.message)))?;
        let topic = required(body.opt_str(field::TOPIC)?, field::TOPIC)?;
        super::subject::validate_topic(topic)?;
        let account = body.opt_str(field::ACCOUNT)?.filter(|a| !a.is_empty());
        if let Some(account) = account {
            let valid = account.len() <= 64
                && account
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(ProtoError::bad_request(
                    "field `account` must be a NATS account (up to 64 letters, digits, `-`, `_`)",
                ));
            }
        }
        Ok(SubscribeRequest {
            address: address.to_owned(),
            topic: topic.to_owned(),
            account: account.map(str::to_owned),
        })
    }
}

/// `MSG.QUERY` and `MAILBOX.QUERY`: filters that combine with AND.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueryRequest {
    pub key: Option<String>,
    /// A message matches when it carries every listed tag.
    pub tags: Vec<String>,
    /// Unix seconds: `create_time >= since`.
    pub since: Option<u64>,
    pub limit: usize,
    /// Continue an earlier QUERY: only messages with a msg_id (a delay_id when `delayed`)
    /// below this, as its reply's `next_before` said.
    pub before: Option<u64>,
    /// List the delayed messages that are not visible yet instead of the visible ones.
    pub delayed: bool,
}

impl QueryRequest {
    pub fn parse(body: &Body) -> Result<Self, ProtoError> {
        Ok(QueryRequest {
            key: body.opt_str(field::KEY)?.map(str::to_owned),
            tags: body.opt_str_list(field::TAGS)?.unwrap_or_default(),
            since: body.opt_u64(field::SINCE)?,
            limit: body
                .opt_u64_in(field::LIMIT, 1..=MAX_QUERY_LIMIT)?
                .unwrap_or(DEFAULT_QUERY_LIMIT) as usize,
            before: body.opt_u64(field::BEFORE)?,
            delayed: body.opt_bool(field::DELAYED)?.unwrap_or(false),
        })
    }
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, ProtoError> {
    value.ok_or_else(|| ProtoError::bad_request(format!("field `{field}` is required")))
}

fn in_config(e: ProtoError) -> ProtoError {
    ProtoError::bad_request(e.message.replacen("field `", "field `config.", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> Body {
        Body::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn fetch_defaults_and_sdk_shapes() {
        let fetch =
            FetchRequest::parse(&body(r#"{"group_name":"","from_time":0,"from_id":0}"#)).unwrap();
        assert_eq!(fetch.group, None);
        assert_eq!(fetch.deliver, Deliver::Earliest);
        assert_eq!(
            (fetch.num_msgs, fetch.max_wait_ms, fetch.ack_wait_ms),
            (100, 500, 30_000)
        );
        let fetch = FetchRequest::parse(&body(
            r#"{"group_name":"g","deliver":"from_id","from_id":4}"#,
        ))
        .unwrap();
        assert_eq!(fetch.group.as_deref(), Some("g"));
        assert_eq!(fetch.deliver, Deliver::FromId(4));
    }

    #[test]
    fn fetch_bounds_name_the_field() {
        let err = FetchRequest::parse(&body(r#"{"config":{"num_msgs":1001}}"#)).unwrap_err();
        assert!(err.message.contains("config.num_msgs"), "{}", err.message);
        let err = FetchRequest::parse(&body(r#"{"deliver":"from_time"}"#)).unwrap_err();
        assert!(err.message.contains("from_time"), "{}", err.message);
        let err = FetchRequest::parse(&body(r#"{"deliver":"newest"}"#)).unwrap_err();
        assert!(err.message.contains("deliver"), "{}", err.message);
    }

    #[test]
    fn query_paging_and_delayed_listing() {
        let query = QueryRequest::parse(&body(r#"{"before":42,"delayed":true}"#)).unwrap();
        assert_eq!((query.before, query.delayed), (Some(42), true));
        let query = QueryRequest::parse(&body("{}")).unwrap();
        assert_eq!((query.before, query.delayed), (None, false));
        let err = QueryRequest::parse(&body(r#"{"before":-1}"#)).unwrap_err();
        assert!(err.message.contains("before"), "{}", err.message);
    }

    #[test]
    fn create_and_ack() {
        let create = CreateRequest::parse(&body(r#"{"ttl":0,"type":"latest"}"#)).unwrap();
        assert_eq!((create.ttl, create.kind), (Some(0), MailboxType::Latest));
        assert!(CreateRequest::parse(&body(r#"{"name":"Bad Name"}"#)).is_err());
        assert!(AckRequest::parse(&body(r#"{"msg_id":1}"#))
            .unwrap_err()
            .message
            .contains("group_name"));
    }
}
