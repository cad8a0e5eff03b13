//! Long-polling FETCHes (`max_wait_ms`): parked until a message can answer them.
//!
//! A waiter is retried when its mailbox receives a visible message (after that message's batch
//! committed), when the earliest lease of its group ends, and at its deadline, where it is
//! answered with an empty batch. Waiters of one mailbox are retried in arrival order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use serde_json::json;

use super::commands::{Attempt, FetchOutcome};
use super::{Engine, Start};
use crate::config::Limits;
use crate::protocol::reply::BatchBuilder;
use crate::protocol::request::FetchRequest;
use crate::protocol::{ErrorCode, ProtoError};
use crate::time::now_ms;

pub struct Waiter {
    address: String,
    mailbox_id: u64,
    request: FetchRequest,
    start: Start,
    reply_to: async_nats::Subject,
    kind: &'static str,
    received: Instant,
    deadline_ms: u64,
    check_at_ms: u64,
}

#[derive(Default)]
pub struct Waiters {
    next_id: u64,
    parked: BTreeMap<u64, Waiter>,
    by_mailbox: HashMap<u64, BTreeSet<u64>>,
    checks: BTreeSet<(u64, u64)>,
}

impl Waiters {
    /// When the loop must wake for the next retry or deadline.
    pub fn next_check(&self) -> Option<u64> {
        self.checks.first().map(|(at, _)| *at)
    }

    fn insert(&mut self, waiter: Waiter) {
        let id = self.next_id;
        self.next_id += 1;
        self.checks.insert((waiter.check_at_ms, id));
        self.by_mailbox
            .entry(waiter.mailbox_id)
            .or_default()
            .insert(id);
        self.parked.insert(id, waiter);
    }

    fn take(&mut self, id: u64) -> Option<Waiter> {
        let waiter = self.parked.remove(&id)?;
        self.checks.remove(&(waiter.check_at_ms, id));
        if let Some(ids) = self.by_mailbox.get_mut(&waiter.mailbox_id) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_mailbox.remove(&waiter.mailbox_id);
            }
        }
        Some(waiter)
    }

    /// How many FETCHes wait, in all.
    pub fn count(&self) -> usize {
        self.parked.len()
    }

    fn count_of(&self, mailbox_id: u64) -> usize {
        self.by_mailbox.get(&mailbox_id).map_or(0, BTreeSet::len)
    }

    fn of_mailbox(&self, mailbox_id: u64) -> Vec<u64> {
        self.by_mailbox
            .get(&mailbox_id)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }
}

impl Engine {
    /// Parks an empty FETCH, or answers it empty now when it may not wait. Beyond
    /// `--max-waiters-per-mailbox` or `--max-waiters` it answers `full`: an empty answer would
    /// make the client poll again at once without knowing why.
    pub(super) fn park(
        &mut self,
        address: String,
        request: FetchRequest,
        start: Start,
        reply_to: Option<async_nats::Subject>,
        kind: &'static str,
        received: Instant,
    ) {
        let deadline_ms = now_ms().saturating_add(request.max_wait_ms);
        match reply_to {
            Some(reply_to) if request.max_wait_ms > 0 => {
                let mailbox_id = self
                    .mailboxes
                    .get(address.as_str())
                    .map_or(u64::MAX, |m| m.record.id);
                if let Err(e) = self.room_to_wait(mailbox_id, &address) {
                    self.finish(Some(reply_to), kind, received, Err(e));
                    return;
                }
                self.repark(Waiter {
                    address,
                    mailbox_id,
                    request,
                    start,
                    reply_to,
                    kind,
                    received,
                    deadline_ms,
                    check_at_ms: deadline_ms,
                });
            }
            reply_to => self.finish(reply_to, kind, received, Ok(empty_batch())),
        }
    }

    fn room_to_wait(&self, mailbox_id: u64, address: &str) -> Result<(), ProtoError> {
        let limits = &self.config.limits;
        let per_mailbox = limits.max_waiters_per_mailbox;
        if !Limits::allows_one_more(per_mailbox, self.waiters.count_of(mailbox_id) as u64) {
            return Err(ProtoError::new(
                ErrorCode::Full,
                format!(
                    "mailbox {address} already has its maximum of {per_mailbox} waiting FETCHes"
                ),
            ));
        }
        if !Limits::allows_one_more(limits.max_waiters, self.waiters.count() as u64) {
            return Err(ProtoError::new(
                ErrorCode::Full,
                format!(
                    "the broker already has its maximum of {} waiting FETCHes",
                    limits.max_waiters
                ),
            ));
        }
        Ok(())
    }

    fn repark(&mut self, mut waiter: Waiter) {
        let lease_end = self.group_lease_end(&waiter.address, waiter.request.group.as_deref());
        waiter.check_at_ms =
            lease_end.map_or(waiter.deadline_ms, |end| end.min(waiter.deadline_ms));
        self.waiters.insert(waiter);
    }

    /// Retries a waiter, examining at most `budget` records.
    fn retry(&mut self, waiter: Waiter, budget: &mut usize) {
        let attempt = Attempt::Retry {
            start: waiter.start,
        };
        match self.fetch(&waiter.address, &waiter.request, attempt, budget) {
            Ok(FetchOutcome::Empty(_)) if now_ms() < waiter.deadline_ms => self.repark(waiter),
            Ok(FetchOutcome::Empty(_)) => self.finish(
                Some(waiter.reply_to),
                waiter.kind,
                waiter.received,
                Ok(empty_batch()),
            ),
            Ok(FetchOutcome::Reply(body)) => self.finish(
                Some(waiter.reply_to),
                waiter.kind,
                waiter.received,
                Ok(body),
            ),
            Err(e) => self.finish(Some(waiter.reply_to), waiter.kind, waiter.received, Err(e)),
        }
    }

    /// Retries the waiters of mailboxes that received messages in a committed batch.
    ///
    /// All retries of one mailbox's round share one `--max-scan` budget: otherwise a tenant
    /// with many waiters whose FETCHes each skip a long run of leased messages would make
    /// every SEND to its mailbox cost waiters × max-scan reads. Waiters the budget does not
    /// reach stay parked until the next message, lease end or deadline; a retried waiter that
    /// parks again goes behind them, so every waiter gets its turn.
    pub(super) fn retry_woken_waiters(&mut self) {
        for mailbox_id in std::mem::take(&mut self.pending.woken) {
            let mut budget = self.config.limits.scan_budget();
            for id in self.waiters.of_mailbox(mailbox_id) {
                if budget == 0 {
                    break;
                }
                if let Some(waiter) = self.waiters.take(id) {
                    self.retry(waiter, &mut budget);
                }
            }
        }
    }

    /// Retries waiters whose lease check or deadline has come.
    pub(super) fn run_due_waiters(&mut self, now: u64) {
        let due: Vec<u64> = self
            .waiters
            .checks
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            if let Some(waiter) = self.waiters.take(id) {
                self.retry(waiter, &mut self.config.limits.scan_budget());
            }
        }
    }

    /// A mailbox went away (expired or re-created): its waiters learn it now.
    pub(super) fn waiters_answer_gone(&mut self, mailbox_id: u64, address: &str) {
        for id in self.waiters.of_mailbox(mailbox_id) {
            if let Some(w) = self.waiters.take(id) {
                self.finish(
                    Some(w.reply_to),
                    w.kind,
                    w.received,
                    Err(ProtoError::no_mailbox(address)),
                );
            }
        }
    }

    /// Answers every waiter now with `result`: empty at shutdown, instead of a timeout; the
    /// failure when the engine failed.
    pub(super) fn waiters_answer_all(&mut self, result: Result<bytes::Bytes, ProtoError>) {
        let ids: Vec<u64> = self.waiters.parked.keys().copied().collect();
        for id in ids {
            if let Some(w) = self.waiters.take(id) {
                self.finish(Some(w.reply_to), w.kind, w.received, result.clone());
            }
        }
    }
}

pub(super) fn empty_batch() -> bytes::Bytes {
    BatchBuilder::new(usize::MAX).finish(json!({}))
}
