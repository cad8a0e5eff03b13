//! `Nats-Msg-Id` idempotency on SEND, as JetStream has it.
//!
//! A sender that got no reply (a timeout, a broker restart, a failed sync answered `internal`)
//! cannot know whether its message was stored. Retrying with the same `Nats-Msg-Id` header is
//! safe: within the window (`--dedup-window`, counted from the original SEND) a repeat to the
//! same mailbox stores nothing and gets the original SEND's answer again: its msg_id, or `-1`
//! again for a delayed message.
//!
//! Where the ids live, and why memory stays bounded: in the `dedup` column family, written in
//! the same batch as the message, so the two are durable together (after a crash either both are
//! there or neither, and a retry stores the message exactly once). A SEND with the header reads
//! it with one point lookup; a SEND without it costs nothing. In memory the engine keeps only the
//! ids of the open batch, which the store cannot answer for until the batch is written. Entries
//! expire with their window: the `dedup_expiry` index, run by the timers of [`super::timers`],
//! removes them, and a lookup ignores an entry whose window ended even before that. Ids belong to
//! one incarnation of a mailbox: they are deleted with it, and a re-created address deduplicates
//! nothing against the old one.
//!
//! Limits: ids are chosen by senders, so anyone allowed to send to a mailbox could claim an id
//! first and have a later message with that id swallowed (as in JetStream): use unguessable ids
//! (UUIDs). Broadcasts are not deduplicated: nobody receives their reply, and one publish lands
//! in many mailboxes.

use std::collections::HashMap;

use super::Engine;
use crate::protocol::ProtoError;
use crate::store::{self, named_key, DedupRecord};
use crate::time::secs_to_ms;

pub struct Dedup {
    /// 0 = deduplication off.
    window_ms: u64,
    /// `dedup` key → msg_id, for the SENDs of the open batch.
    unflushed: HashMap<Vec<u8>, i64>,
}

impl Dedup {
    pub fn new(window_secs: u64) -> Dedup {
        Dedup {
            window_ms: secs_to_ms(window_secs),
            unflushed: HashMap::new(),
        }
    }

    /// The open batch is being written (or dropped): from now on the store answers for its ids.
    pub fn flushed(&mut self) {
        self.unflushed.clear();
    }

    /// The id to deduplicate on, unless deduplication is off.
    fn active<T>(&self, id: Option<T>) -> Option<T> {
        id.filter(|_| self.window_ms > 0)
    }
}

impl Engine {
    /// What the original SEND answered, if `id` was sent to this mailbox within the window.
    pub(super) fn original_send(
        &self,
        mailbox_id: u64,
        id: Option<&str>,
        now_ms: u64,
    ) -> Result<Option<i64>, ProtoError> {
        let Some(id) = self.dedup.active(id) else {
            return Ok(None);
        };
        let key = named_key(mailbox_id, id);
        if let Some(msg_id) = self.dedup.unflushed.get(&key) {
            return Ok(Some(*msg_id));
        }
        let stored: Option<DedupRecord> = self
            .store
            .get(store::CF_DEDUP, &key)
            .map_err(|e| ProtoError::internal(format!("reading message ids failed: {e}")))?;
        Ok(stored
            .filter(|entry| entry.expires_at_ms > now_ms)
            .map(|entry| entry.msg_id))
    }

    /// Remembers a stored SEND's id and answer, in the open batch with the message.
    pub(super) fn remember_send(
        &mut self,
        mailbox_id: u64,
        id: Option<String>,
        msg_id: i64,
        now_ms: u64,
    ) {
        let Some(id) = self.dedup.active(id) else {
            return;
        };
        let key = named_key(mailbox_id, &id);
        let expires_at_ms = now_ms.saturating_add(self.dedup.window_ms);
        let entry = DedupRecord {
            msg_id,
            expires_at_ms,
        };
        self.pending.put_dedup(&self.store, &key, &entry);
        self.dedup.unflushed.insert(key, msg_id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use crate::engine::testing::{engine, job, RecordingSink};
    use crate::engine::Command;
    use crate::protocol::body::Body;
    use crate::protocol::headers::SendOptions;
    use crate::protocol::request::CreateRequest;
    use crate::store::{self, Store};

    fn send_with_id(id: &str) -> Command {
        Command::Send {
            address: "box".into(),
            priority: None,
            options: SendOptions {
                dedup_id: Some(id.into()),
                ..SendOptions::default()
            },
            payload: Bytes::from_static(b"m"),
        }
    }

    /// Disk use follows the window, not the history: the timers remove an id's entries from
    /// the store once its window ended.
    #[test]
    fn entries_are_removed_from_the_store_when_their_window_ends() {
        let dir = tempfile::TempDir::new().unwrap();
        let engine = engine(dir.path(), 1);
        let (jobs, received) = flume::unbounded();
        let create = Body::parse(br#"{"name":"box","ttl":0}"#).unwrap();
        let create = Command::Create(CreateRequest::parse(&create).unwrap());
        jobs.send(job(create, "create")).unwrap();
        jobs.send(job(send_with_id("x"), "send")).unwrap();
        let sink = Arc::new(RecordingSink::default());
        let engine_sink = sink.clone();
        let thread = std::thread::spawn(move || engine.run(received, &*engine_sink));
        assert_eq!(sink.replies(2)[1].1["msg_id"], 0);
        let sent = Instant::now();
        jobs.send(job(send_with_id("x"), "repeat")).unwrap();
        assert_eq!(
            sink.replies(3)[2].1["msg_id"],
            0,
            "read back from the store"
        );

        // The window of 1 s ends: waiting for time itself, not for a condition.
        std::thread::sleep(Duration::from_millis(1100).saturating_sub(sent.elapsed()));
        // The loop runs due timers before it takes a job: once the second STATS is answered,
        // the loop has been through its top with the window over.
        jobs.send(job(Command::Stats, "stats.1")).unwrap();
        sink.replies(4);
        jobs.send(job(Command::Stats, "stats.2")).unwrap();
        sink.replies(5);
        drop(jobs);
        thread.join().unwrap();

        let store = Store::open(dir.path()).unwrap();
        for cf in [store::CF_DEDUP, store::CF_DEDUP_EXPIRY] {
            let mut left = 0;
            store
                .scan_raw(cf, &[], &[u8::MAX; 32], false, |_, _| {
                    left += 1;
                    true
                })
                .unwrap();
            assert_eq!(left, 0, "entries left in {cf}");
        }
    }
}
