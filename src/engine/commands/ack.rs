//! `$mq9.AI.MSG.ACK.{addr}`.

use bytes::Bytes;
use serde_json::json;

use crate::engine::Engine;
use crate::protocol::reply;
use crate::protocol::request::AckRequest;
use crate::protocol::ProtoError;
use crate::time::now_ms;

impl Engine {
    /// Acknowledges a message and its predecessors in the same FETCH reply. Idempotent; a group
    /// that never fetched has nothing to acknowledge. Group state is written without a sync: a
    /// crash of the machine can at worst deliver an acknowledged message again (at-least-once),
    /// never lose one.
    pub(in crate::engine) fn ack(
        &mut self,
        address: &str,
        request: &AckRequest,
    ) -> Result<Bytes, ProtoError> {
        let mailbox = self.live_mut(address, now_ms())?;
        let next_msg_id = mailbox.record.next_msg_id;
        if let Some(group) = mailbox
            .existing_indexes_mut()
            .and_then(|i| i.groups.get_mut(&request.group))
        {
            group.ack(request.msg_id, next_msg_id);
            self.save_group(address, &request.group);
        }
        Ok(reply::ok(json!({})))
    }
}
