//! The engine's failed state: after a storage write or sync fails, or the engine panics, the
//! broker stops serving for good and says so.
//!
//! Why not carry on: after a failed `fsync` nobody knows what reached the disk (the kernel may
//! have dropped the dirty pages it could not write — the "fsyncgate" lesson of PostgreSQL), and
//! RocksDB itself turns read-only after a failed WAL write. Memory may then be ahead of the disk,
//! and any success answered from it could be a lie. So the engine answers `internal` to every job
//! of the failed batch, to every waiting FETCH, and to every later request, never a success, and
//! reports the failure through [`Sink::failed`] so that `/healthz` fails and Kubernetes restarts
//! the pod. A restart reloads exactly what the disk holds; a client retrying with the same
//! `Nats-Msg-Id` then gets its original msg_id if the message made it, or stores it once if not.

use super::{Engine, Job, Outgoing, Sink};
use crate::protocol::ProtoError;

impl Engine {
    /// Enters the failed state (the first reason wins): waiting FETCHes are answered with the
    /// failure now, and every reply released from here on carries it.
    pub(super) fn fail(&mut self, reason: &str) {
        if self.failed.is_some() {
            return;
        }
        tracing::error!(
            reason,
            "the mailbox store failed: answering `internal` until the broker restarts"
        );
        self.fail_with(ProtoError::internal(format!(
            "the mailbox store failed ({reason}); the broker must restart"
        )));
    }

    /// Enters the failed state with `failure` (unless failed already).
    pub(super) fn fail_with(&mut self, failure: ProtoError) {
        if self.failed.is_some() {
            return;
        }
        self.waiters_answer_all(Err(failure.clone()));
        self.failed = Some(failure);
    }
}

/// The failed engine's loop: answers every job with `failure` until the broker stops. Replies
/// must not hang: a client learns at once that this broker cannot serve it.
pub(super) fn refuse_all(jobs: &flume::Receiver<Job>, sink: &dyn Sink, failure: &ProtoError) {
    for job in jobs.iter() {
        sink.finished(job.kind, failure.code.as_str(), job.received.elapsed());
        if let Some(subject) = job.reply_to {
            let body = failure.to_reply();
            sink.reply(Outgoing { subject, body });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::engine::testing::{engine, job, RecordingSink};
    use crate::engine::Command;

    #[test]
    fn a_panic_answers_the_batch_and_every_later_job_with_internal() {
        let dir = tempfile::TempDir::new().unwrap();
        let engine = engine(dir.path(), 0);
        let (jobs, received) = flume::unbounded();
        // Queued before the engine starts, so both land in the first batch; its commit makes
        // the second `totals` call (the first comes from the loop's start).
        jobs.send(job(Command::Stats, "in.batch.1")).unwrap();
        jobs.send(job(Command::Stats, "in.batch.2")).unwrap();
        let sink = Arc::new(RecordingSink::panicking_on_totals_call(1));
        let engine_sink = sink.clone();
        let thread = std::thread::spawn(move || engine.run(received, &*engine_sink));
        sink.replies(2);
        jobs.send(job(Command::Stats, "after")).unwrap();
        let replies = sink.replies(3);
        drop(jobs);
        thread.join().expect("the engine caught its panic");

        let subjects: Vec<&str> = replies.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(subjects, ["in.batch.1", "in.batch.2", "after"]);
        for (_, reply) in &replies {
            assert_eq!(reply["code"], "internal", "{reply}");
            assert!(reply["error"].as_str().unwrap().contains("must restart"));
        }
        let failures = sink.failures.lock().unwrap();
        assert!(
            failures.first().is_some_and(|f| f.contains("panicked")),
            "{failures:?}"
        );
    }
}
