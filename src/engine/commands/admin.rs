//! `$mq9.ADMIN.MAILBOX.ENSURE | DELETE | INFO | LIST` and `$mq9.ADMIN.STATS`: the operator's
//! API to the broker. Every command is idempotent.

use bytes::Bytes;
use serde_json::{json, Value};

use super::{ends_at, NewMailbox};
use crate::engine::{Engine, Mailbox};
use crate::protocol::admin::{EnsureRequest, ListRequest};
use crate::protocol::{reply, ErrorCode, ProtoError};
use crate::store::{self, prefix_end, MailboxRecord};
use crate::time::{ms_to_secs, now_ms, secs_to_ms};

impl Engine {
    /// Creates the mailbox, or confirms it when it exists with the same owner. A mailbox of
    /// another owner (or created by an agent, without one) is a `conflict`.
    pub(in crate::engine) fn ensure(
        &mut self,
        request: EnsureRequest,
    ) -> Result<Bytes, ProtoError> {
        let now = now_ms();
        if let Ok(existing) = self.live(&request.name, now) {
            if existing.record.owner.as_deref() != request.owner.as_deref() {
                return Err(ProtoError::new(
                    ErrorCode::Conflict,
                    format!("mailbox {} exists with another owner", request.name),
                ));
            }
            return Ok(reply::ok(
                json!({"created": false, "mailbox": info(&request.name, existing)}),
            ));
        }
        let (ttl, expires_at_ms) = match (request.expires_at, request.ttl) {
            (Some(at), _) if secs_to_ms(at) <= now => {
                return Err(ProtoError::bad_request(
                    "field `expires_at` lies in the past",
                ))
            }
            (Some(at), ttl) => (ttl.unwrap_or(0), secs_to_ms(at)),
            (None, ttl) => {
                let ttl = ttl.unwrap_or(self.config.default_mailbox_ttl);
                (ttl, ends_at(now, ttl))
            }
        };
        self.remove_mailbox(&request.name);
        let new = NewMailbox {
            kind: request.kind,
            ttl_secs: ttl,
            expires_at_ms,
            desc: request.desc,
            owner: request.owner,
        };
        self.insert_mailbox(&request.name, new, now)?;
        let created = self.live(&request.name, now)?;
        Ok(reply::ok(
            json!({"created": true, "mailbox": info(&request.name, created)}),
        ))
    }

    pub(in crate::engine) fn admin_delete(&mut self, name: &str) -> Result<Bytes, ProtoError> {
        let existed = self.live(name, now_ms()).is_ok();
        self.remove_mailbox(name);
        Ok(reply::ok(json!({"deleted": existed})))
    }

    pub(in crate::engine) fn info(&mut self, name: &str) -> Result<Bytes, ProtoError> {
        Ok(match self.live(name, now_ms()) {
            Ok(mailbox) => {
                let mut fields = info(name, mailbox);
                fields.insert("exists".into(), Value::Bool(true));
                reply::ok(Value::Object(fields))
            }
            Err(_) => reply::ok(json!({"exists": false})),
        })
    }

    /// Live mailboxes in name order (of `request.owner` only, when given), from the store
    /// (which keeps them sorted), within `max_payload`. Examines at most `--max-scan` records:
    /// with `"more": true` the reply says `"next_after"`, the name to pass as `after` to
    /// continue (past the expired and other owners' mailboxes it skipped too).
    pub(in crate::engine) fn list(&mut self, request: &ListRequest) -> Result<Bytes, ProtoError> {
        self.flush();
        let now = now_ms();
        let from = match &request.after {
            Some(after) if after.as_str() >= request.prefix.as_str() => format!("{after}\0"),
            _ => request.prefix.clone(),
        };
        let to = if request.prefix.is_empty() {
            vec![u8::MAX]
        } else {
            prefix_end(request.prefix.as_bytes())
        };
        let budget = self.config.limits.scan_budget();
        let mut examined = 0;
        // The reply stays within max_payload too: room for the fields around the items.
        let mut room = self
            .config
            .max_payload
            .saturating_sub(128 + crate::protocol::address::MAX_ADDRESS_LEN);
        let mut mailboxes = Vec::new();
        let mut next_after: Option<String> = None;
        let mut more = false;
        self.store
            .scan(
                store::CF_MAILBOXES,
                from.as_bytes(),
                &to,
                false,
                |key, record: MailboxRecord| {
                    if mailboxes.len() == request.limit || examined == budget {
                        more = true;
                        return false;
                    }
                    let name = String::from_utf8_lossy(key);
                    let wanted = request
                        .owner
                        .as_ref()
                        .is_none_or(|owner| record.owner.as_deref() == Some(owner.as_str()));
                    if wanted && !record.is_expired(now) {
                        let item = json!({
                            "name": name,
                            "type": record.kind.as_str(),
                            "ttl": record.ttl_secs,
                            "expires_at": ms_to_secs(record.expires_at_ms),
                            "owner": record.owner,
                            "messages": record.visible(),
                        });
                        let len = item.to_string().len() + 1;
                        if len > room && !mailboxes.is_empty() {
                            more = true;
                            return false;
                        }
                        room = room.saturating_sub(len);
                        mailboxes.push(item);
                    }
                    examined += 1;
                    next_after = Some(name.into_owned());
                    true
                },
            )
            .map_err(|e| ProtoError::internal(format!("listing mailboxes failed: {e}")))?;
        let mut fields = json!({"mailboxes": mailboxes, "more": more});
        if more {
            fields["next_after"] = json!(next_after);
        }
        Ok(reply::ok(fields))
    }

    pub(in crate::engine) fn stats(&mut self) -> Result<Bytes, ProtoError> {
        Ok(reply::ok(json!({
            "mailboxes": self.mailboxes.len(),
            "messages": self.held.messages,
            "bytes": self.held.bytes,
            "agents": self.registry.count(),
            "subscriptions": self.topics.count(),
            "max_payload": self.config.max_payload,
            "version": env!("CARGO_PKG_VERSION"),
        })))
    }

    /// A single node is one shard, always led by itself (a replicated broker answers SHARDS in
    /// its router, from the leases).
    pub(in crate::engine) fn shards(&mut self) -> Result<Bytes, ProtoError> {
        Ok(reply::ok(json!({
            "shards": 1,
            "leaders": {"0": SINGLE_NODE},
            "live": [SINGLE_NODE],
            "without_quorum": [],
        })))
    }
}

/// The node name a single-node broker gives itself in SHARDS.
const SINGLE_NODE: &str = "single";

/// What INFO and ENSURE say about a mailbox.
fn info(name: &str, mailbox: &Mailbox) -> serde_json::Map<String, Value> {
    let record = &mailbox.record;
    let Value::Object(fields) = json!({
        "name": name,
        "type": record.kind.as_str(),
        "ttl": record.ttl_secs,
        "expires_at": ms_to_secs(record.expires_at_ms),
        "created_at": ms_to_secs(record.created_at_ms),
        "owner": record.owner,
        "messages": record.visible(),
        "delayed": record.delayed,
        "bytes": record.bytes,
        "groups": mailbox.group_count(),
        "subscriptions": mailbox
            .subscriptions()
            .iter()
            .map(|s| &s.topic)
            .collect::<Vec<_>>(),
    }) else {
        unreachable!("json! of an object literal is an object")
    };
    fields
}
