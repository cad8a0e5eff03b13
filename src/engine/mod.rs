//! The mailbox engine: one thread that owns every mailbox and applies commands in batches.
//!
//! Why one thread: msg_ids are dense per mailbox, leases must never be handed out twice, and a
//! SEND reply must follow its WAL sync. A single owner makes all of that plain sequential code,
//! and batching makes it fast: the loop takes every job that is waiting, applies them to memory
//! and to one RocksDB write batch, writes the batch once (syncing once when any job needs
//! durability: *group commit*), and only then releases the replies. A job that reads RocksDB
//! for a mailbox the open batch has written commits the batch first, so reads see every write.
//! Each write goes through the open batch ([`pending`]), which pairs it with its side effects;
//! sealed, the batch is an [`Effect`]: a value that applies without a clock ([`effect`]).
//!
//! Long-polling FETCHes park as [`waiters`]; they are retried when their mailbox receives a
//! message, when a lease of their group ends, and answered empty at their deadline. Expiry of
//! mailboxes and messages and the arrival of delayed messages run from time-ordered indexes
//! ([`timers`]), woken exactly when the first entry falls due.

mod command;
mod commands;
mod dedup;
mod delayed;
mod effect;
mod failure;
mod group;
mod mailbox;
mod pending;
mod registry;
pub mod replicate;
mod search;
#[cfg(test)]
mod testing;
mod timers;
mod topics;
mod waiters;

pub use command::{Command, Job, Outgoing, Sink, Totals};
pub use effect::Effect;
pub use group::{GroupState, Start};
pub use mailbox::Mailbox;

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::{Limits, SyncMode};
use crate::protocol::ProtoError;
use crate::store::{Store, StoreError};
use commands::Attempt;

/// Most jobs applied in one batch: bounds the latency a batch adds to its first job.
const MAX_BATCH: usize = 1024;

/// What the engine needs to know besides its store.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub limits: Limits,
    /// TTL of mailboxes created without one, in seconds (0 = never).
    pub default_mailbox_ttl: u64,
    /// How long a SEND's `Nats-Msg-Id` is remembered, in seconds (0 = not at all).
    pub dedup_window_secs: u64,
    pub sync: SyncMode,
    /// The NATS server's `max_payload`: no reply may be larger.
    pub max_payload: usize,
    /// A replicated shard's place among the shards: the addresses it makes are its own.
    pub shard: Option<replicate::ShardPlace>,
}

pub struct Engine {
    store: Store,
    config: EngineConfig,
    mailboxes: HashMap<Box<str>, Box<Mailbox>>,
    next_mailbox_id: u64,
    next_delay_seq: u64,
    pending: pending::Pending,
    waiters: waiters::Waiters,
    timers: timers::Timers,
    registry: registry::Registry,
    /// A replicated shard's log: every batch goes there first ([`replicate`]).
    replicator: Option<Box<dyn replicate::Replicate>>,
    topics: topics::TopicIndex,
    /// Delayed messages whose TTL ends before their delay, by (expires_at, delay_id): their
    /// mailbox's address ([`delayed`]).
    delayed_expiry: BTreeMap<(u64, u64), Box<str>>,
    held: mailbox::Held,
    /// Committed write batches, and how many of them synced.
    writes: u64,
    syncs: u64,
    /// Set when a write failed or the engine panicked: the answer to everything from then on.
    failed: Option<ProtoError>,
    /// `Nats-Msg-Id`s of the open batch.
    dedup: dedup::Dedup,
}

impl Engine {
    /// Loads every mailbox from the store.
    pub fn open(store: Store, config: EngineConfig) -> Result<Engine, StoreError> {
        let dedup = dedup::Dedup::new(config.dedup_window_secs);
        let mut engine = Engine {
            store,
            config,
            mailboxes: HashMap::new(),
            next_mailbox_id: 0,
            next_delay_seq: 0,
            pending: pending::Pending::default(),
            waiters: waiters::Waiters::default(),
            timers: timers::Timers::default(),
            registry: registry::Registry::default(),
            replicator: None,
            topics: topics::TopicIndex::default(),
            delayed_expiry: BTreeMap::new(),
            held: mailbox::Held::default(),
            writes: 0,
            syncs: 0,
            failed: None,
            dedup,
        };
        engine.load()?;
        Ok(engine)
    }

    /// Reads the in-memory view from disk.
    fn load(&mut self) -> Result<(), StoreError> {
        self.mailboxes = mailbox::load_all(&self.store)?;
        self.next_mailbox_id = self
            .store
            .get_u64(crate::store::CF_META, crate::store::META_NEXT_MAILBOX_ID)?;
        self.next_delay_seq = self
            .store
            .get_u64(crate::store::CF_META, crate::store::META_NEXT_DELAY_SEQ)?;
        self.held = mailbox::Held {
            messages: self.mailboxes.values().map(|m| m.record.count).sum(),
            bytes: self.mailboxes.values().map(|m| m.record.bytes).sum(),
        };
        self.load_delayed()?;
        self.timers = timers::Timers::load(&self.store)?;
        self.registry = registry::Registry::load(&self.store)?;
        self.topics = topics::TopicIndex::default();
        for (address, mailbox) in &self.mailboxes {
            for subscription in mailbox.subscriptions() {
                self.topics.insert(&subscription.topic, address);
            }
        }
        Ok(())
    }

    /// Runs until every sender of `jobs` is gone, then answers what it holds and returns.
    /// After a failure (a storage error, or a panic caught here) it answers every job with
    /// `internal` instead, until the senders are gone: see [`failure`].
    pub fn run(mut self, jobs: flume::Receiver<Job>, sink: &dyn Sink) {
        let served = std::panic::catch_unwind(AssertUnwindSafe(|| self.serve(&jobs, sink)));
        if served.is_err() {
            self.fail("the mailbox engine panicked");
        }
        match self.failed.clone() {
            Some(failure) => {
                self.commit(sink);
                failure::refuse_all(&jobs, sink, &failure);
            }
            None => {
                self.waiters_answer_all(Ok(waiters::empty_batch()));
                self.commit(sink);
            }
        }
    }

    /// The normal loop: returns when every sender is gone or the engine failed.
    fn serve(&mut self, jobs: &flume::Receiver<Job>, sink: &dyn Sink) {
        while self.failed.is_none() {
            self.run_due_timers();
            self.settle(sink);
            let received = match self.next_timer() {
                Some(at) => {
                    let wait = at.saturating_sub(crate::time::now_ms());
                    jobs.recv_timeout(Duration::from_millis(wait))
                }
                None => jobs
                    .recv()
                    .map_err(|_| flume::RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(job) => {
                    self.execute(job);
                    for job in jobs.try_iter().take(MAX_BATCH - 1) {
                        self.execute(job);
                    }
                    self.settle(sink);
                }
                Err(flume::RecvTimeoutError::Timeout) => {}
                Err(flume::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Commits the open batch, then retries the FETCHes waiting on mailboxes that just received
    /// messages, and commits their leases.
    fn settle(&mut self, sink: &dyn Sink) {
        self.commit(sink);
        if !self.pending.woken.is_empty() {
            self.retry_woken_waiters();
            self.commit(sink);
        }
    }

    /// Applies one job and queues its reply behind the open batch. A failed engine applies
    /// nothing (a job of the batch whose mid-batch flush failed would run on memory that may
    /// be ahead of the disk).
    fn execute(&mut self, job: Job) {
        if let Some(failure) = self.failed.clone() {
            self.finish(job.reply_to, job.kind, job.received, Err(failure));
            return;
        }
        let result = match job.command {
            Command::Create(request) => self.create(request),
            Command::Send {
                address,
                priority,
                options,
                payload,
            } => self.send(&address, priority, options, payload),
            Command::Fetch { address, request } => {
                let mut budget = self.config.limits.scan_budget();
                match self.fetch(&address, &request, Attempt::First, &mut budget) {
                    Ok(commands::FetchOutcome::Reply(body)) => Ok(body),
                    Ok(commands::FetchOutcome::Empty(start)) => {
                        self.park(
                            address,
                            request,
                            start,
                            job.reply_to,
                            job.kind,
                            job.received,
                        );
                        return;
                    }
                    Err(e) => Err(e),
                }
            }
            Command::Ack { address, request } => self.ack(&address, &request),
            Command::Query {
                address,
                request,
                with_unread,
            } => self.query(&address, &request, with_unread),
            Command::Delete { address, target } => self.delete(&address, target),
            Command::Subscribe { request, subscribe } => self.subscribe(&request, subscribe),
            Command::Broadcast {
                topic,
                options,
                payload,
                publisher,
            } => self.broadcast(&topic, options, payload, publisher.as_deref()),
            Command::Register { request, caller } => self.register(request, caller.as_ref()),
            Command::Unregister { lookup, caller } => self.unregister(&lookup, caller.as_ref()),
            Command::Report {
                lookup,
                status,
                caller,
            } => self.report(&lookup, status, caller.as_ref()),
            Command::Discover(request) => self.discover(&request),
            Command::Ensure(request) => self.ensure(request),
            Command::AdminDelete { name } => self.admin_delete(&name),
            Command::Info { name } => self.info(&name),
            Command::List(request) => self.list(&request),
            Command::Stats => self.stats(),
            Command::Shards => self.shards(),
        };
        self.finish(job.reply_to, job.kind, job.received, result);
    }

    fn finish(
        &mut self,
        reply_to: Option<async_nats::Subject>,
        kind: &'static str,
        received: Instant,
        result: Result<Bytes, ProtoError>,
    ) {
        self.pending.finish(reply_to, kind, received, result);
    }

    /// The earliest moment a timer needs the loop.
    fn next_timer(&self) -> Option<u64> {
        [
            self.timers.next_due(),
            self.waiters.next_check(),
            self.registry.next_expiry(),
            self.next_delayed_expiry(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}
