//! One module per command, each an `impl Engine` block: what the command checks, what it
//! changes in memory, what it queues into the open write batch, and what it answers.

mod ack;
mod admin;
mod agents;
mod broadcast;
mod create;
mod delete;
mod fetch;
mod query;
mod send;

use create::NewMailbox;
pub use fetch::{Attempt, FetchOutcome};
pub use send::Room;

use crate::protocol::reply::MessageView;
use crate::protocol::Priority;
use crate::store::MessageRecord;

/// When a TTL of `ttl_secs` counted from `now` ends: 0 (never) for a TTL of 0.
fn ends_at(now: u64, ttl_secs: u64) -> u64 {
    if ttl_secs == 0 {
        0
    } else {
        now.saturating_add(crate::time::secs_to_ms(ttl_secs))
    }
}

/// How a stored message looks to a reader.
pub(crate) fn view<'a>(
    msg_id: u64,
    priority: Priority,
    record: &'a MessageRecord,
    delivery_count: u32,
) -> MessageView<'a> {
    MessageView {
        msg_id,
        payload: &record.payload,
        priority,
        create_time: crate::time::ms_to_secs(record.create_time_ms),
        delivery_count,
        headers: &record.headers,
        key: record.key.as_deref(),
        tags: &record.tags,
        pending: None,
    }
}
