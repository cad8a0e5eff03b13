//! `$mq9.AI.MAILBOX.CREATE`.

use bytes::Bytes;
use serde_json::json;

use super::ends_at;
use crate::engine::{Engine, Mailbox};
use crate::protocol::request::CreateRequest;
use crate::protocol::{address, reply, ErrorCode, MailboxType, ProtoError};
use crate::store::MailboxRecord;
use crate::time::{ms_to_secs, now_ms};

impl Engine {
    pub(in crate::engine) fn create(
        &mut self,
        request: CreateRequest,
    ) -> Result<Bytes, ProtoError> {
        let now = now_ms();
        let address = match request.name {
            Some(name) => {
                if self.live(&name, now).is_ok() {
                    return Err(ProtoError::new(
                        ErrorCode::AlreadyExists,
                        format!("mailbox {name} already exists"),
                    ));
                }
                // An expired mailbox not purged yet: its old incarnation goes now.
                self.remove_mailbox(&name);
                name
            }
            None => loop {
                let candidate = address::generate();
                let ours = self
                    .config
                    .shard
                    .is_none_or(|place| place.holds(&candidate));
                if ours && !self.mailboxes.contains_key(candidate.as_str()) {
                    break candidate;
                }
            },
        };
        let ttl = request.ttl.unwrap_or(self.config.default_mailbox_ttl);
        let expires_at_ms = ends_at(now, ttl);
        let new = NewMailbox {
            kind: request.kind,
            ttl_secs: ttl,
            expires_at_ms,
            desc: request.desc,
            owner: None,
        };
        self.insert_mailbox(&address, new, now)?;
        Ok(reply::ok(json!({
            "mail_address": address,
            "mail_id": address,
            "type": request.kind.as_str(),
            "ttl": ttl,
            "expires_at": ms_to_secs(expires_at_ms),
        })))
    }

    /// Creates a mailbox in memory and in the open batch, within `max_mailboxes`.
    pub(in crate::engine) fn insert_mailbox(
        &mut self,
        address: &str,
        new: NewMailbox,
        now: u64,
    ) -> Result<(), ProtoError> {
        let max = self.config.limits.max_mailboxes;
        if max > 0 && self.mailboxes.len() as u64 >= max {
            return Err(ProtoError::new(
                ErrorCode::Full,
                format!("the broker holds its maximum of {max} mailboxes"),
            ));
        }
        let record = MailboxRecord {
            id: self.next_mailbox_id,
            kind: new.kind,
            ttl_secs: new.ttl_secs,
            created_at_ms: now,
            expires_at_ms: new.expires_at_ms,
            desc: new.desc.map(String::into_boxed_str),
            owner: new.owner.map(String::into_boxed_str),
            next_msg_id: 0,
            count: 0,
            bytes: 0,
            delayed: 0,
        };
        self.next_mailbox_id += 1;
        self.pending.put_mailbox(&self.store, address, &record);
        self.mailboxes
            .insert(address.into(), Box::new(Mailbox::new(record)));
        Ok(())
    }
}

/// What CREATE or ENSURE decided a new mailbox is.
pub(in crate::engine) struct NewMailbox {
    pub kind: MailboxType,
    pub ttl_secs: u64,
    /// 0 = never.
    pub expires_at_ms: u64,
    pub desc: Option<String>,
    /// The operator's owner reference (ENSURE); `None` for a mailbox an agent created.
    pub owner: Option<String>,
}
