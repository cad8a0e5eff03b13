//! `$mq9.AI.MSG.QUERY.{addr}` and the original design's `$mq9.AI.MAILBOX.QUERY.{addr}`.

use bytes::Bytes;
use serde_json::{json, Value};

use super::view;
use crate::engine::Engine;
use crate::protocol::reply::BatchBuilder;
use crate::protocol::request::QueryRequest;
use crate::protocol::{Priority, ProtoError};
use crate::store::{self, message_id_of, message_key, prefix_end, MessageRecord};
use crate::time::{now_ms, secs_to_ms};

impl Engine {
    /// The newest `limit` visible messages matching every filter, answered in msg_id order.
    /// Reads only: no group state changes.
    pub(in crate::engine) fn query(
        &mut self,
        address: &str,
        request: &QueryRequest,
        with_unread: bool,
    ) -> Result<Bytes, ProtoError> {
        let now = now_ms();
        let id = self.live(address, now)?.record.id;
        self.read_barrier(id);
        let since_ms = request.since.map_or(0, secs_to_ms);
        let matches = |record: &MessageRecord| {
            !record.is_expired(now)
                && record.create_time_ms >= since_ms
                && request
                    .key
                    .as_ref()
                    .is_none_or(|k| record.key.as_ref() == Some(k))
                && request.tags.iter().all(|t| record.tags.contains(t))
        };
        // The newest `limit` matches of each priority, then the newest `limit` of those.
        let mut found: Vec<(u64, Priority, MessageRecord)> = Vec::new();
        for priority in Priority::ALL {
            let prefix = &message_key(id, priority, 0)[..9];
            let mut taken = 0;
            self.store
                .scan(
                    store::CF_MESSAGES,
                    prefix,
                    &prefix_end(prefix),
                    true,
                    |key, record: MessageRecord| {
                        if matches(&record) {
                            found.push((message_id_of(key), priority, record));
                            taken += 1;
                        }
                        taken < request.limit
                    },
                )
                .map_err(|e| ProtoError::internal(format!("reading messages failed: {e}")))?;
        }
        found.sort_unstable_by_key(|(msg_id, _, _)| std::cmp::Reverse(*msg_id));
        found.truncate(request.limit);
        let mut batch = BatchBuilder::new(self.config.max_payload);
        for (msg_id, priority, record) in &found {
            if !batch.push(&view(*msg_id, *priority, record, 0)) {
                break;
            }
        }
        batch.reverse();
        let fields = if with_unread {
            let unread = self.live(address, now)?.record.visible();
            json!({"mail_id": address, "unread": unread})
        } else {
            Value::Object(Default::default())
        };
        Ok(batch.finish(fields))
    }
}
