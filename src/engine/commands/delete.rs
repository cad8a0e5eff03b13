//! `$mq9.AI.MSG.DELETE.{addr}.{msg_id}` and `$mq9.AI.MSG.DELETE.{addr}.d{delay_id}`.

use bytes::Bytes;
use serde_json::json;

use crate::engine::pending::MessageAt;
use crate::engine::Engine;
use crate::protocol::subject::DeleteTarget;
use crate::protocol::{reply, Priority, ProtoError};
use crate::store::{self, MessageRecord};
use crate::time::now_ms;

impl Engine {
    /// Deletes one message of this mailbox, or one of its delayed messages not visible yet.
    pub(in crate::engine) fn delete(
        &mut self,
        address: &str,
        target: DeleteTarget,
    ) -> Result<Bytes, ProtoError> {
        match target {
            DeleteTarget::Message(msg_id) => self.delete_message(address, msg_id),
            DeleteTarget::Delayed(delay_id) => self.delete_delayed(address, delay_id),
        }
    }

    /// Deletes one stored message. Keys carry the mailbox's internal id, so no address can
    /// reach another mailbox's message.
    fn delete_message(&mut self, address: &str, msg_id: u64) -> Result<Bytes, ProtoError> {
        let id = self.live(address, now_ms())?.record.id;
        self.read_barrier(id);
        for priority in Priority::ALL {
            let at = MessageAt {
                mailbox_id: id,
                priority,
                msg_id,
            };
            let stored: Option<MessageRecord> = self
                .store
                .get(store::CF_MESSAGES, &at.key())
                .map_err(|e| ProtoError::internal(format!("reading the message failed: {e}")))?;
            if let Some(record) = stored {
                self.remove_message(address, at, record.size());
                return Ok(reply::ok(json!({"deleted": true})));
            }
        }
        Err(ProtoError::not_found("message not found"))
    }
}
