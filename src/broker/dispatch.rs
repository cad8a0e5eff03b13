//! The broker's front door: each NATS message is parsed once into a [`Request`] and queued as
//! an engine [`Job`], or is answered (or dropped) right here — a reply subject that is not a
//! reply inbox (see [`super::replies`]), a caller nats-server vouches for (see
//! [`crate::protocol::identity`]), a malformed request.
//!
//! Each message gets a `request` span (level `debug`, so that it costs nothing unless
//! `MQ9_LOG` asks for it) carrying the command's name and what became of it here: the error
//! code of a refusal, `dropped`, `not_stored` (a broadcast's bad headers), or `queued` for the
//! engine, whose outcome is logged by [`BrokerSink::finished`]. Never the subject or the
//! payload: both may hold a mail address.

use std::sync::Arc;
use std::time::Instant;

use tracing::field::Empty;

use super::router::Router;
use super::{BrokerSink, ReplyPolicy};
use crate::engine::{Job, Outgoing, Sink};
use crate::protocol::identity::{self, Caller};
use crate::protocol::subject::{self, Route};
use crate::protocol::{ProtoError, Request};

/// Where jobs go: the one engine, or a replicated broker's shards.
pub(super) enum Queue {
    Engine(flume::Sender<Job>),
    Shards(Arc<Router>),
}

/// Turns requests into engine jobs: the broker's front door.
pub(super) struct Dispatcher {
    pub(super) queue: Queue,
    /// Where requests refused before the engine are answered and counted.
    pub(super) rejects: BrokerSink,
    pub(super) replies: ReplyPolicy,
    /// Read callers from `Nats-Request-Info` (see `protocol::identity`).
    pub(super) trust_request_info: bool,
}

impl Dispatcher {
    /// Parses one request and queues it for the engine; malformed requests are answered here.
    /// A request whose reply subject is not a reply inbox is dropped unexecuted.
    #[tracing::instrument(
        name = "request",
        level = "debug",
        skip_all,
        fields(command = Empty, outcome = Empty)
    )]
    /// `forwarded_to`: the shard a request forwarded by another broker was sent to.
    pub(super) async fn dispatch(&self, message: async_nats::Message, forwarded_to: Option<u32>) {
        let received = Instant::now();
        let route = subject::parse(&message.subject);
        let kind = route.as_ref().map_or("unknown", Route::kind);
        let span = tracing::Span::current();
        span.record("command", kind);
        // A request on a broadcast subject is for the live subscribers (a queue group of
        // workers, say): the broker stores it but must not race them with a reply, so its
        // reply subject is theirs, not the broker's to check.
        let broadcast = matches!(route, Ok(Route::Broadcast { .. }));
        let reply_to = message.reply.clone().filter(|_| !broadcast);
        if let Some(reply) = &reply_to {
            if !self.replies.allows(reply) {
                span.record("outcome", "dropped");
                tracing::warn!(
                    command = kind,
                    "request dropped: its reply subject is not a reply inbox"
                );
                self.rejects.health.metrics.refused_reply();
                return;
            }
        }
        let caller = match self.caller(&message) {
            Ok(caller) => caller,
            Err(error) => return self.refuse(reply_to, kind, received, error),
        };
        let request = route.and_then(|route| {
            Request::parse(route, message.headers.as_ref(), &message.payload, caller)
        });
        match request {
            Ok(command) => {
                let job = Job {
                    command,
                    reply_to,
                    kind,
                    received,
                };
                match &self.queue {
                    Queue::Engine(jobs) => self.queue(jobs, job).await,
                    Queue::Shards(router) => {
                        tracing::Span::current().record("outcome", "queued");
                        router.route(job, &message, forwarded_to).await;
                    }
                }
            }
            // Its live subscribers have it from nats-server already; only its headers can be
            // wrong, and nobody waits for an answer. Neither the topic nor the error (which
            // quotes the bad value) is logged: both are the publisher's text.
            Err(_) if broadcast => {
                span.record("outcome", "not_stored");
                tracing::warn!("broadcast not stored durably: its mq9-* headers are invalid");
            }
            Err(error) => self.refuse(reply_to, kind, received, error),
        }
    }

    /// Hands `job` to the engine. Only a dead engine thread drops its receiver while requests
    /// still come in: then the job is refused here.
    async fn queue(&self, jobs: &flume::Sender<Job>, job: Job) {
        let (kind, received) = (job.kind, job.received);
        match jobs.send_async(job).await {
            Ok(()) => {
                tracing::Span::current().record("outcome", "queued");
                tracing::debug!("request queued");
            }
            Err(flume::SendError(job)) => {
                let stopped =
                    ProtoError::internal("the mailbox engine stopped; the broker must restart");
                self.refuse(job.reply_to, kind, received, stopped);
            }
        }
    }

    /// Answers `error` (when the request asked for an answer) and counts it.
    fn refuse(
        &self,
        reply_to: Option<async_nats::Subject>,
        kind: &'static str,
        received: Instant,
        error: ProtoError,
    ) {
        if let Some(subject) = reply_to {
            self.rejects.reply(Outgoing {
                subject,
                body: error.to_reply(),
            });
        }
        let outcome = error.code.as_str();
        tracing::Span::current().record("outcome", outcome);
        self.rejects.finished(kind, outcome, received.elapsed());
    }

    /// Who sent `message`, when the broker trusts nats-server's word for it; `None` for an
    /// anonymous caller.
    fn caller(&self, message: &async_nats::Message) -> Result<Option<Caller>, ProtoError> {
        if !self.trust_request_info {
            return Ok(None);
        }
        match message
            .headers
            .as_ref()
            .and_then(|h| h.get(identity::REQUEST_INFO_HEADER))
        {
            Some(info) => Caller::from_request_info(info.as_str()).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;
