//! `$mq9.AI.MAILBOX.CREATE`.

use bytes::Bytes;
use serde_json::json;

use crate::engine::{Engine, Mailbox};
use crate::protocol::request::CreateRequest;
use crate::protocol::{address, reply, ErrorCode, MailboxType, ProtoError};
use crate::store::{self, mailbox_expiry_key, MailboxRecord};
use crate::time::{ms_to_secs, now_ms, secs_to_ms};

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
                if !self.mailboxes.contains_key(candidate.as_str()) {
                    break candidate;
                }
            },
        };
        let ttl = request.ttl.unwrap_or(self.config.default_mailbox_ttl);
        let expires_at_ms = if ttl == 0 {
            0
        } else {
            now.saturating_add(secs_to_ms(ttl))
        };
        self.insert_mailbox(
            &address,
            request.kind,
            ttl,
            expires_at_ms,
            request.desc,
            None,
            now,
        )?;
        Ok(reply::ok(json!({
            "mail_address": address,
            "mail_id": address,
            "type": request.kind.as_str(),
            "ttl": ttl,
            "expires_at": ms_to_secs(expires_at_ms),
        })))
    }

    /// Creates a mailbox in memory and in the open batch, within `max_mailboxes`.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::engine) fn insert_mailbox(
        &mut self,
        address: &str,
        kind: MailboxType,
        ttl_secs: u64,
        expires_at_ms: u64,
        desc: Option<String>,
        owner: Option<String>,
        now: u64,
    ) -> Result<(), ProtoError> {
        let max = self.config.limits.max_mailboxes;
        if max > 0 && self.mailboxes.len() as u64 >= max {
            return Err(ProtoError::new(
                ErrorCode::Full,
                format!("the broker holds its maximum of {max} mailboxes"),
            ));
        }
        let id = self.next_mailbox_id;
        self.next_mailbox_id += 1;
        let record = MailboxRecord {
            id,
            kind,
            ttl_secs,
            created_at_ms: now,
            expires_at_ms,
            desc: desc.map(String::into_boxed_str),
            owner: owner.map(String::into_boxed_str),
            next_msg_id: 0,
            count: 0,
            bytes: 0,
            delayed: 0,
        };
        self.pending.next_mailbox_id = Some(self.next_mailbox_id);
        let batch = &mut self.pending.batch;
        if expires_at_ms != 0 {
            self.store.put(
                batch,
                store::CF_MAILBOX_EXPIRY,
                &mailbox_expiry_key(expires_at_ms, id),
                &address,
            );
            self.timers.mailbox_expiry_at(expires_at_ms);
        }
        self.pending.sync = true;
        self.mailboxes
            .insert(address.into(), Box::new(Mailbox::new(record)));
        self.save_mailbox(address);
        Ok(())
    }
}
