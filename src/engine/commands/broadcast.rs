//! `$mq9.AI.MAILBOX.SUBSCRIBE` / `UNSUBSCRIBE` and the durable side of
//! `$mq9.AI.BROADCAST.{topic}`: a broadcast publish is stored once into every mailbox
//! subscribed to a matching topic — all in the open batch, so the whole fan-out shares one sync.

use bytes::Bytes;
use serde_json::json;

use crate::engine::mailbox::Subscription;
use crate::engine::Engine;
use crate::protocol::headers::SendOptions;
use crate::protocol::request::SubscribeRequest;
use crate::protocol::{reply, ErrorCode, ProtoError};
use crate::store::named_key;
use crate::time::now_ms;

impl Engine {
    /// Subscribes or unsubscribes a mailbox; idempotent both ways. Subscribing again with
    /// another `account` changes whose publishes the subscription stores.
    pub(in crate::engine) fn subscribe(
        &mut self,
        request: &SubscribeRequest,
        subscribe: bool,
    ) -> Result<Bytes, ProtoError> {
        let (address, topic) = (request.address.as_str(), request.topic.as_str());
        let account: Option<Box<str>> = request.account.as_deref().map(Into::into);
        let mailbox = self.live_mut(address, now_ms())?;
        let key = named_key(mailbox.record.id, topic);
        let position = mailbox
            .subscriptions()
            .iter()
            .position(|s| s.topic == topic);
        match (subscribe, position) {
            (true, None) => {
                mailbox.indexes_mut().subscriptions.push(Subscription {
                    topic: topic.to_owned(),
                    account,
                });
                self.topics.insert(topic, address);
                let account = request.account.as_deref();
                self.pending.put_subscription(&self.store, &key, account);
            }
            (true, Some(position)) if mailbox.subscriptions()[position].account != account => {
                mailbox.indexes_mut().subscriptions[position].account = account;
                let account = request.account.as_deref();
                self.pending.put_subscription(&self.store, &key, account);
            }
            (false, Some(position)) => {
                mailbox.indexes_mut().subscriptions.swap_remove(position);
                self.topics.remove(topic, address);
                self.pending.delete_subscription(&self.store, &key);
            }
            _ => {}
        }
        Ok(reply::ok(json!({})))
    }

    /// Stores a broadcast in every durably subscribed mailbox, with the same header semantics
    /// as SEND. Broadcasts are plain publishes, answered by nobody: a mailbox that refuses the
    /// message (full) is logged and counted as this job's outcome, without its address.
    /// Only subscriptions that admit the `publisher`'s account store it (tenants' topics are
    /// their own: see [`Subscription`]).
    pub(in crate::engine) fn broadcast(
        &mut self,
        topic: &str,
        options: SendOptions,
        payload: Bytes,
        publisher: Option<&str>,
    ) -> Result<Bytes, ProtoError> {
        let mut stored = 0;
        let mut refused: Option<ProtoError> = None;
        for address in self.topics.matching(topic) {
            let admitted = self.mailboxes.get(&address).is_some_and(|mailbox| {
                mailbox
                    .subscriptions()
                    .iter()
                    .any(|s| s.admits(topic, publisher))
            });
            if !admitted {
                continue;
            }
            match self.send(&address, None, options.clone(), payload.clone()) {
                Ok(_) => stored += 1,
                Err(e) if e.code == ErrorCode::NotFound => {}
                Err(e) => {
                    tracing::warn!(
                        topic,
                        code = e.code.as_str(),
                        "a subscribed mailbox refused a broadcast"
                    );
                    refused = Some(e);
                }
            }
        }
        match refused {
            Some(e) => Err(ProtoError::new(
                e.code,
                format!("stored in {stored} mailboxes; refused: {}", e.message),
            )),
            None => Ok(reply::ok(json!({"stored": stored}))),
        }
    }
}
