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
    /// that never fetched has nothing to acknowledge. The group state shares the batch's group
    /// commit like a SEND: the reply goes out only after the WAL sync, so an acknowledged message
    /// never comes back after a machine crash. (FETCH leases are written without a sync: losing
    /// one can only deliver a message again early, which at-least-once allows.)
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
            self.pending.mark_durable();
        }
        Ok(reply::ok(json!({})))
    }
}
