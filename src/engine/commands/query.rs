//! `$mq9.AI.MSG.QUERY.{addr}` and the original design's `$mq9.AI.MAILBOX.QUERY.{addr}`.
//!
//! A QUERY walks the mailbox newest first and examines at most `--max-scan` records, so a
//! filter that matches nothing in a huge mailbox cannot stall the engine for every tenant.
//! When it stops before the oldest record (its `limit` reached, the scan bound reached, or the
//! reply full), the reply carries `"next_before": N`: every match at or above N was answered,
//! and the same QUERY with `"before": N` continues below it. Clients that never reach a bound
//! see the answer they always saw. `"delayed": true` lists the delayed messages that are not
//! visible yet, by delay_id, with the same paging.

use bytes::Bytes;
use serde_json::{json, Value};

use super::view;
use crate::engine::Engine;
use crate::protocol::reply::{BatchBuilder, MessageView, PendingView};
use crate::protocol::request::QueryRequest;
use crate::protocol::{Priority, ProtoError};
use crate::store::{
    self, delayed_key, message_id_of, message_key, DelayedRecord, MessageRecord, StoreResult,
};
use crate::time::{ms_to_secs, now_ms, secs_to_ms};

/// A record the walk examined: its id (msg_id, or delay_id for a delayed message), priority
/// and record.
struct Examined {
    id: u64,
    priority: Priority,
    record: MessageRecord,
    pending: Option<PendingView>,
}

/// What a bounded newest-first walk found: matches newest first, and, when it stopped before
/// the oldest record, the id of the last record it examined.
struct Walk {
    found: Vec<Examined>,
    stopped_at: Option<u64>,
}

impl Engine {
    /// The newest `limit` messages below `before` matching every filter, answered in id order.
    /// Reads only: no group state changes.
    pub(in crate::engine) fn query(
        &mut self,
        address: &str,
        request: &QueryRequest,
        with_unread: bool,
    ) -> Result<Bytes, ProtoError> {
        let now = now_ms();
        let mailbox = self.live(address, now)?;
        let (id, unread) = (mailbox.record.id, mailbox.record.visible());
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
        let budget = self.config.limits.scan_budget();
        let walk = if request.delayed {
            walk(
                self.delayed_newest_first(address, request.before),
                budget,
                request.limit,
                matches,
            )
        } else {
            walk(
                self.newest_first(id, request.before),
                budget,
                request.limit,
                matches,
            )
        }
        .map_err(|e| ProtoError::internal(format!("reading messages failed: {e}")))?;
        let mut batch = BatchBuilder::new(self.config.max_payload);
        let mut next_before = walk.stopped_at;
        for (i, examined) in walk.found.iter().enumerate() {
            let item = MessageView {
                pending: examined.pending,
                ..view(examined.id, examined.priority, &examined.record, 0)
            };
            if !batch.push(&item) {
                // The first item always fits: `i` is at least 1.
                next_before = Some(walk.found[i - 1].id);
                break;
            }
        }
        batch.reverse();
        let mut fields = serde_json::Map::new();
        if with_unread {
            fields.insert("mail_id".into(), json!(address));
            fields.insert("unread".into(), json!(unread));
        }
        if let Some(next_before) = next_before {
            fields.insert("next_before".into(), json!(next_before));
        }
        Ok(batch.finish(Value::Object(fields)))
    }

    /// The visible messages below `before`, newest first over all priorities: a merge of one
    /// reversed scan per priority.
    fn newest_first(
        &self,
        mailbox_id: u64,
        before: Option<u64>,
    ) -> impl Iterator<Item = StoreResult<Examined>> + '_ {
        let before = before.unwrap_or(u64::MAX);
        let mut lanes: Vec<_> = Priority::ALL
            .into_iter()
            .map(|priority| Lane {
                priority,
                scan: self.store.iter(
                    store::CF_MESSAGES,
                    &message_key(mailbox_id, priority, 0),
                    &message_key(mailbox_id, priority, before),
                    true,
                ),
                head: None,
                done: false,
            })
            .collect();
        std::iter::from_fn(move || {
            for lane in &mut lanes {
                if let Err(e) = lane.fill() {
                    return Some(Err(e));
                }
            }
            let lane = lanes
                .iter_mut()
                .filter(|l| l.head.is_some())
                .max_by_key(|l| l.head.as_ref().map(|(id, _)| *id))?;
            let (id, record) = lane.head.take()?;
            Some(Ok(Examined {
                id,
                priority: lane.priority,
                record,
                pending: None,
            }))
        })
    }

    /// The delayed messages not visible yet with a delay_id below `before`, newest first.
    fn delayed_newest_first(
        &self,
        address: &str,
        before: Option<u64>,
    ) -> impl Iterator<Item = StoreResult<Examined>> + '_ {
        let pending = self
            .mailboxes
            .get(address)
            .and_then(|m| m.delayed())
            .into_iter()
            .flat_map(move |index| index.range(..before.unwrap_or(u64::MAX)).rev());
        pending.filter_map(|(&delay_id, pending)| {
            let key = delayed_key(pending.visible_at_ms, delay_id);
            let stored: StoreResult<Option<DelayedRecord>> =
                self.store.get(store::CF_DELAYED, &key);
            stored
                .map(|delayed| {
                    delayed.map(|delayed| Examined {
                        id: delay_id,
                        priority: Priority::from_index(delayed.priority)
                            .unwrap_or(Priority::Normal),
                        record: delayed.message,
                        pending: Some(PendingView {
                            delay_id,
                            visible_at: ms_to_secs(pending.visible_at_ms),
                        }),
                    })
                })
                .transpose()
        })
    }
}

/// One priority's reversed scan and the record it is at.
struct Lane<I> {
    priority: Priority,
    scan: I,
    head: Option<(u64, MessageRecord)>,
    done: bool,
}

impl<I: Iterator<Item = StoreResult<(Box<[u8]>, MessageRecord)>>> Lane<I> {
    fn fill(&mut self) -> StoreResult<()> {
        if self.head.is_none() && !self.done {
            match self.scan.next().transpose()? {
                Some((key, record)) => self.head = Some((message_id_of(&key), record)),
                None => self.done = true,
            }
        }
        Ok(())
    }
}

/// Takes matches from `records` (newest first) until `limit` matched or `budget` records were
/// examined; says where it stopped when records remain.
fn walk(
    records: impl Iterator<Item = StoreResult<Examined>>,
    budget: usize,
    limit: usize,
    matches: impl Fn(&MessageRecord) -> bool,
) -> StoreResult<Walk> {
    let mut records = records.peekable();
    let mut found = Vec::new();
    let mut examined = 0;
    while let Some(record) = records.next() {
        let record = record?;
        examined += 1;
        let id = record.id;
        if matches(&record.record) {
            found.push(record);
        }
        if (found.len() == limit || examined == budget) && records.peek().is_some() {
            return Ok(Walk {
                found,
                stopped_at: Some(id),
            });
        }
    }
    Ok(Walk {
        found,
        stopped_at: None,
    })
}
