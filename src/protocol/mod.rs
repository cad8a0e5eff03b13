//! The mq9 wire contract (`../shared/spec/protocol.md`): everything an agent can put on the wire
//! and everything the broker answers, parsed and encoded without touching state.
//!
//! - [`subject`] turns a NATS subject under `$mq9.AI.` into a [`subject::Route`];
//! - [`body`] reads JSON request bodies field by field, naming the field in every error;
//! - [`request`], [`admin`] and [`agents`] hold the typed requests of each command, and
//!   [`command`] the one [`Request`] a message carries, whatever its command;
//! - [`headers`] reads the `mq9-*` headers of a SEND;
//! - [`encode`] writes subjects, bodies and headers for clients, as the parsers read them;
//! - [`reply`] encodes replies, including size-bounded message batches;
//! - [`error`] is the error model (`code` + human-readable `error`).

pub mod address;
pub mod admin;
pub mod agents;
pub mod body;
pub mod command;
pub mod encode;
pub mod error;
pub mod headers;
pub mod identity;
pub mod reply;
pub mod request;
pub mod subject;

pub use command::Request;
pub use error::{ErrorCode, ProtoError};

use std::fmt;

/// Message priority. The numeric order is the delivery order: critical first, notify last.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Priority {
    Critical = 0,
    Urgent = 1,
    Normal = 2,
    Notify = 3,
}

impl Priority {
    /// Every priority in delivery order.
    pub const ALL: [Priority; 4] = [
        Priority::Critical,
        Priority::Urgent,
        Priority::Normal,
        Priority::Notify,
    ];

    /// The name used in headers, subjects and replies.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::Urgent => "urgent",
            Priority::Normal => "normal",
            Priority::Notify => "notify",
        }
    }

    /// Parses a priority name (case-insensitive).
    pub fn parse(name: &str) -> Option<Priority> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// The priority stored in one byte of a RocksDB key.
    pub fn from_index(index: u8) -> Option<Priority> {
        Priority::ALL.get(index as usize).copied()
    }

    pub fn index(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two mailbox types of the original design; also the Mailbox CRD's `spec.type` (hence the
/// schema and the lowercase spelling, the wire's).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum MailboxType {
    /// Keeps every message.
    #[default]
    Standard,
    /// Keeps only the newest message: status, heartbeats, capability declarations.
    Latest,
}

impl MailboxType {
    pub fn as_str(self) -> &'static str {
        match self {
            MailboxType::Standard => "standard",
            MailboxType::Latest => "latest",
        }
    }

    pub fn parse(name: &str) -> Option<MailboxType> {
        match name {
            "standard" => Some(MailboxType::Standard),
            "latest" => Some(MailboxType::Latest),
            _ => None,
        }
    }
}
