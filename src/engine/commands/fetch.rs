//! `$mq9.AI.MSG.FETCH.{addr}`: stateless reads and consumer groups with leases.

use bytes::Bytes;
use serde_json::json;

use super::view;
use crate::config::Limits;
use crate::engine::{Engine, GroupState, Start};
use crate::protocol::reply::BatchBuilder;
use crate::protocol::request::FetchRequest;
use crate::protocol::{ErrorCode, Priority, ProtoError};
use crate::store::{self, message_id_of, message_key, prefix_end, MessageRecord, Store};
use crate::time::now_ms;

/// What one attempt of a FETCH found.
pub enum FetchOutcome {
    /// Messages to answer with.
    Reply(Bytes),
    /// Nothing available: the request may wait. For a stateless fetch, `Start` is where it
    /// started, so that a retry of `deliver: latest` still means "after the request arrived".
    Empty(Start),
}

/// Which attempt of a FETCH this is.
#[derive(Debug, Clone, Copy)]
pub enum Attempt {
    /// The request as it arrived: `force_deliver` resets its group.
    First,
    /// A waiting FETCH tried again: its group is not reset again, and a stateless FETCH goes
    /// on from `start`, where its first attempt started.
    Retry { start: Start },
}

impl Engine {
    /// One attempt of a FETCH. It examines at most `budget` records and takes what it
    /// examined off it.
    pub(in crate::engine) fn fetch(
        &mut self,
        address: &str,
        request: &FetchRequest,
        attempt: Attempt,
        budget: &mut usize,
    ) -> Result<FetchOutcome, ProtoError> {
        let now = now_ms();
        let id = self.live(address, now)?.record.id;
        self.read_barrier(id);
        let max_payload = self.config.max_payload;
        let max_groups = self.config.limits.max_groups_per_mailbox;
        let Engine {
            store, mailboxes, ..
        } = self;
        let mailbox = mailboxes
            .get_mut(address)
            .filter(|m| !m.record.is_expired(now))
            .ok_or_else(|| ProtoError::no_mailbox(address))?;
        let next_msg_id = mailbox.record.next_msg_id;
        let resolved = Start::resolve(request.deliver, next_msg_id);
        let mut batch = BatchBuilder::new(max_payload);
        let Some(name) = &request.group else {
            let start = match attempt {
                Attempt::First => resolved,
                Attempt::Retry { start } => start,
            };
            *budget -= collect(store, id, start, None, now, request, *budget, &mut batch)?;
            return Ok(if batch.is_empty() {
                FetchOutcome::Empty(start)
            } else {
                FetchOutcome::Reply(batch.finish(json!({})))
            });
        };
        let reset = matches!(attempt, Attempt::First) && request.force_deliver;
        let groups = mailbox.group_count() as u64;
        let group = match mailbox.indexes_mut().groups.entry(name.clone()) {
            std::collections::hash_map::Entry::Occupied(mut entry) => {
                if reset {
                    entry.insert(GroupState::new(resolved));
                }
                entry.into_mut()
            }
            std::collections::hash_map::Entry::Vacant(_)
                if !Limits::allows_one_more(max_groups, groups) =>
            {
                return Err(ProtoError::new(
                    ErrorCode::Full,
                    format!("mailbox {address} holds its maximum of {max_groups} consumer groups"),
                ));
            }
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(GroupState::new(resolved))
            }
        };
        let start = group.start;
        *budget -= collect(
            store,
            id,
            start,
            Some(group),
            now,
            request,
            *budget,
            &mut batch,
        )?;
        self.save_group(address, name);
        Ok(if batch.is_empty() {
            FetchOutcome::Empty(start)
        } else {
            FetchOutcome::Reply(batch.finish(json!({})))
        })
    }

    /// The moment a waiting FETCH of this group could find a message whose lease ended.
    pub(in crate::engine) fn group_lease_end(
        &self,
        address: &str,
        group: Option<&str>,
    ) -> Option<u64> {
        let group = self.mailboxes.get(address)?.group(group?)?;
        group.earliest_lease_end()
    }
}

/// Fills `batch` in delivery order: priority, then msg_id. With a group, skips what the group
/// acknowledged or holds under lease, leases what it returns, and raises the group's floors over
/// what it saw to be done.
///
/// Examines at most `budget` records (`--max-scan`) and answers how many it examined, so that
/// skipping cannot stall the engine:
/// a group whose floor lies below many acknowledged messages moves it up by at most that many
/// per attempt (the next FETCH goes on from there), and a group holding more messages under
/// lease than that, ahead of the rest, sees nothing new until leases end or ACKs come — the
/// same as JetStream's `max_ack_pending`.
#[allow(clippy::too_many_arguments)]
fn collect(
    store: &Store,
    mailbox_id: u64,
    start: Start,
    mut group: Option<&mut GroupState>,
    now: u64,
    request: &FetchRequest,
    budget: usize,
    batch: &mut BatchBuilder,
) -> Result<usize, ProtoError> {
    let batch_id = group.as_mut().map(|g| g.begin_batch());
    let lease_until = now.saturating_add(request.ack_wait_ms);
    let mut examined = 0;
    for priority in Priority::ALL {
        if batch.len() >= request.num_msgs || examined == budget {
            break;
        }
        let p = priority.index() as usize;
        let from = start.min_id.max(group.as_ref().map_or(0, |g| g.floors[p]));
        let prefix = &message_key(mailbox_id, priority, 0)[..9];
        let mut floor = from;
        let mut advancing = true;
        let mut full = false;
        store
            .scan(
                store::CF_MESSAGES,
                &message_key(mailbox_id, priority, from),
                &prefix_end(prefix),
                false,
                |key, record: MessageRecord| {
                    if examined == budget {
                        return false;
                    }
                    examined += 1;
                    let msg_id = message_id_of(key);
                    let done_for_good = record.is_expired(now)
                        || !start.admits(msg_id, record.create_time_ms)
                        || group.as_ref().is_some_and(|g| g.is_acked(msg_id));
                    if done_for_good {
                        if advancing {
                            floor = msg_id + 1;
                        }
                        return true;
                    }
                    advancing = false;
                    if group.as_ref().is_some_and(|g| g.is_leased(msg_id, now)) {
                        return true;
                    }
                    let delivery_count = group
                        .as_ref()
                        .and_then(|g| g.delivered.get(&msg_id))
                        .map_or(1, |d| d.count + 1);
                    if !batch.push(&view(msg_id, priority, &record, delivery_count)) {
                        full = true;
                        return false;
                    }
                    if let (Some(g), Some(b)) = (group.as_mut(), batch_id) {
                        g.lease(msg_id, lease_until, b, batch.len() as u32 - 1);
                    }
                    batch.len() < request.num_msgs
                },
            )
            .map_err(|e| ProtoError::internal(format!("reading messages failed: {e}")))?;
        if let Some(g) = group.as_mut() {
            g.raise_floor(p, floor);
        }
        if full {
            break;
        }
    }
    Ok(examined)
}
