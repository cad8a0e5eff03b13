//! `$mq9.AI.MAILBOX.SUBSCRIBE` / `UNSUBSCRIBE` and the durable side of
//! `$mq9.AI.BROADCAST.{topic}`: a broadcast publish is stored once into every mailbox
//! subscribed to a matching topic — all in the open batch, so the whole fan-out shares one sync.

use bytes::Bytes;
use serde_json::json;

use crate::engine::Engine;
use crate::protocol::headers::SendOptions;
use crate::protocol::request::SubscribeRequest;
use crate::protocol::{reply, ErrorCode, ProtoError};
use crate::store::{self, named_key};
use crate::time::now_ms;

impl Engine {
    /// Subscribes or unsubscribes a mailbox; idempotent both ways.
    pub(in crate::engine) fn subscribe(
        &mut self,
        request: &SubscribeRequest,
        subscribe: bool,
    ) -> Result<Bytes, ProtoError> {
        let (address, topic) = (request.address.as_str(), request.topic.as_str());
        let mailbox = self.live_mut(address, now_ms())?;
        let key = named_key(mailbox.record.id, topic);
        let position = mailbox.subscriptions().iter().position(|t| t == topic);
        match (subscribe, position) {
            (true, None) => {
                mailbox.indexes_mut().subscriptions.push(topic.to_owned());
                self.topics.insert(topic, address);
                self.store
                    .put(&mut self.pending.batch, store::CF_SUBSCRIPTIONS, &key, &());
                self.pending.sync = true;
            }
            (false, Some(position)) => {
                mailbox.indexes_mut().subscriptions.swap_remove(position);
                self.topics.remove(topic, address);
                self.store
                    .delete(&mut self.pending.batch, store::CF_SUBSCRIPTIONS, &key);
                self.pending.sync = true;
            }
            _ => {}
        }
        Ok(reply::ok(json!({})))
    }

    /// Stores a broadcast in every durably subscribed mailbox, with the same header semantics
    /// as SEND. Broadcasts are plain publishes, answered by nobody: a mailbox that refuses the
    /// message (full) is logged and counted as this job's outcome, without its address.
    pub(in crate::engine) fn broadcast(
        &mut self,
        topic: &str,
        options: SendOptions,
        payload: Bytes,
    ) -> Result<Bytes, ProtoError> {
        let mut stored = 0;
        let mut refused: Option<ProtoError> = None;
        for address in self.topics.matching(topic) {
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
