//! Requests of the administration API, `$mq9.ADMIN.>` (protocol.md §6): the operator's way to
//! manage mailboxes. Not for agents: credentials minted for agents carry no permission on it.

use super::body::Body;
use super::request::field;
use super::{address, MailboxType, ProtoError};

/// Default and maximum page size of MAILBOX.LIST.
pub const DEFAULT_LIST_LIMIT: u64 = 100;
pub const MAX_LIST_LIMIT: u64 = 1000;

/// `MAILBOX.ENSURE`: create, or confirm an existing mailbox of the same owner.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EnsureRequest {
    pub name: String,
    /// Seconds; `None` = the broker's default, `Some(0)` = never.
    pub ttl: Option<u64>,
    /// Absolute expiry (Unix seconds), for re-creating a lost mailbox with its original
    /// expiry; wins over `ttl`.
    pub expires_at: Option<u64>,
    pub kind: MailboxType,
    pub owner: Option<String>,
    pub desc: Option<String>,
}

impl EnsureRequest {
    pub fn parse(body: &Body) -> Result<Self, ProtoError> {
        Ok(EnsureRequest {
            name: name(body)?,
            ttl: body.opt_u64(field::TTL)?,
            expires_at: body.opt_u64(field::EXPIRES_AT)?.filter(|t| *t > 0),
            kind: body
                .opt_enum(field::TYPE, &["standard", "latest"], MailboxType::parse)?
                .unwrap_or(MailboxType::Standard),
            owner: body
                .opt_str(field::OWNER)?
                .filter(|o| !o.is_empty())
                .map(str::to_owned),
            desc: body.opt_str(field::DESC)?.map(str::to_owned),
        })
    }
}

/// `MAILBOX.DELETE` and `MAILBOX.INFO`: the mailbox's name, required.
pub fn name(body: &Body) -> Result<String, ProtoError> {
    let name = body
        .opt_str(field::NAME)?
        .ok_or_else(|| ProtoError::bad_request("field `name` is required"))?;
    address::validate(name)
        .map_err(|e| ProtoError::bad_request(format!("field `name`: {}", e.message)))?;
    Ok(name.to_owned())
}

/// `MAILBOX.LIST`: names in byte order, after `after`, starting with `prefix`, and, with
/// `owner`, only the mailboxes ENSUREd with that owner.
///
/// The owner filter is how the operator finds the mailboxes a Mailbox object holds when
/// nothing else records the address (its Secret deleted, by hand or by a foreground
/// deletion's garbage collector). The broker keeps no index by owner: a filtered LIST scans
/// names like any LIST, `--max-scan` records per request, and says `next_after` to go on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListRequest {
    pub prefix: String,
    pub after: Option<String>,
    pub limit: usize,
    /// Only mailboxes of this owner. Never empty: an empty owner is refused rather than read as
    /// "no filter", so a caller with a missing uid cannot be handed (and delete) every mailbox.
    pub owner: Option<String>,
}

impl ListRequest {
    pub fn parse(body: &Body) -> Result<Self, ProtoError> {
        Ok(ListRequest {
            prefix: body.opt_str(field::PREFIX)?.unwrap_or_default().to_owned(),
            after: body
                .opt_str(field::AFTER)?
                .filter(|a| !a.is_empty())
                .map(str::to_owned),
            limit: body
                .opt_u64_in(field::LIMIT, 1..=MAX_LIST_LIMIT)?
                .unwrap_or(DEFAULT_LIST_LIMIT) as usize,
            owner: match body.opt_str(field::OWNER)? {
                Some("") => {
                    return Err(ProtoError::bad_request(
                        "field `owner` must not be empty: leave it out to list every owner",
                    ))
                }
                owner => owner.map(str::to_owned),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_needs_a_valid_name() {
        let body = Body::parse(br#"{"name":"orders.agent1","ttl":60,"owner":"uid-1"}"#).unwrap();
        let ensure = EnsureRequest::parse(&body).unwrap();
        assert_eq!(
            (ensure.name.as_str(), ensure.ttl, ensure.owner.as_deref()),
            ("orders.agent1", Some(60), Some("uid-1"))
        );
        assert!(EnsureRequest::parse(&Body::parse(b"{}").unwrap())
            .unwrap_err()
            .message
            .contains("`name`"));
        assert!(name(&Body::parse(br#"{"name":"Bad"}"#).unwrap()).is_err());
    }
}
