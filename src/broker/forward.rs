//! Forwarding a request to the broker that leads its shard, and waiting for one when the shard
//! has none (replication.md, "Routing"; issue: "a request to a shard with no leader waits up to
//! the client's timeout for one").
//!
//! A forward is published on `$mq9.FWD.<cluster>.<shard>`, which only the shard's leader
//! subscribes to. Its NATS reply subject is the forwarder's own inbox, not the client's: the
//! client's reply subject travels in the [`FORWARDED_REPLY`] header and the original subject in
//! [`FORWARDED_SUBJECT`], so the leader still answers the client directly (one extra hop, no
//! extra reply hop). On the forwarder's inbox the leader sends an empty acknowledgement the
//! moment it takes the request; nats-server itself answers "no responders" there when no leader
//! subscribes — during a takeover, or while a dead leader's lease runs out. Then the forwarder
//! tries again, until a leader takes the request or [`Forwarder::wait`] has passed, when the
//! client is answered `unavailable` (retriable). Had the client's own reply subject been on the
//! forward, the "no responders" would have gone to the client at once.
//!
//! A forward whose acknowledgement does not come (the leader died holding it) is not sent
//! again: the leader may have acted on it, and a SEND must not be stored twice. The client's
//! own timeout and retry cover it, as for any request lost with a server.

use std::time::Duration;

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use futures::StreamExt;
use tokio::time::Instant;

use crate::protocol::{ErrorCode, ProtoError};
use crate::replication::route::{self, FORWARDED_REPLY, FORWARDED_SUBJECT};

/// How long a leader has to acknowledge a forward it received.
const ACK_WAIT: Duration = Duration::from_secs(2);
/// The first pause before asking a leaderless shard again; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(25);
const MAX_PAUSE: Duration = Duration::from_millis(250);

/// Why a forward did not reach a leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undelivered {
    /// No leader took it within the wait.
    NoLeader,
    /// A subscriber got it but never acknowledged it (it died meanwhile), or NATS failed.
    Lost(String),
}

/// Sends forwards on a connection of its own: a leader's acknowledgement comes from the
/// leader's main connection, which never delivers its own publishes back to itself (`no_echo`),
/// so a forward that ends up at this very broker must not wait on that connection.
pub struct Forwarder {
    client: async_nats::Client,
    /// Where requests to be served come from, for answering `unavailable`.
    replies: async_nats::Client,
    cluster: String,
    /// How long a request waits for its shard to have a leader.
    pub wait: Duration,
}

impl Forwarder {
    pub fn new(
        client: async_nats::Client,
        replies: async_nats::Client,
        cluster: &str,
        wait: Duration,
    ) -> Forwarder {
        Forwarder {
            client,
            replies,
            cluster: cluster.to_owned(),
            wait,
        }
    }

    /// Forwards `message` to `shard`'s leader in a task of its own; `answer_to` (the request's
    /// reply subject, `None` for one nobody waits on the broker for, like a broadcast's) is
    /// answered `unavailable` if no leader takes it within the wait.
    pub fn forward(&self, shard: u32, message: &async_nats::Message, answer_to: Option<Subject>) {
        let (client, replies) = (self.client.clone(), self.replies.clone());
        let subject = route::forward_subject(&self.cluster, shard);
        let headers = forward_headers(message, message.reply.as_ref());
        let (payload, reply) = (message.payload.clone(), answer_to);
        let deadline = Instant::now() + self.wait;
        tokio::spawn(async move {
            match deliver(&client, subject, headers, payload, deadline).await {
                Ok(()) => {}
                Err(Undelivered::NoLeader) => {
                    let Some(reply) = reply else { return };
                    let body = no_leader(shard).to_reply();
                    if let Err(e) = replies.publish(reply, body).await {
                        tracing::warn!(error = %e, "answering a request to a leaderless shard failed");
                    }
                }
                Err(Undelivered::Lost(why)) => {
                    tracing::warn!(shard, why, "a forwarded request was not acknowledged");
                }
            }
        });
    }

    /// Asks `shard`'s leader `message` (a LIST or STATS of a gathering) and waits up to
    /// `timeout` for its answer.
    pub async fn ask(
        &self,
        shard: u32,
        message: &async_nats::Message,
        timeout: Duration,
    ) -> Result<async_nats::Message, Undelivered> {
        let lost = |e: &dyn std::fmt::Display| Undelivered::Lost(e.to_string());
        let inbox: Subject = self.client.new_inbox().into();
        let mut answers = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| lost(&e))?;
        let subject = route::forward_subject(&self.cluster, shard);
        let headers = forward_headers(message, Some(&inbox));
        let deadline = Instant::now() + timeout.min(self.wait);
        deliver(
            &self.client,
            subject,
            headers,
            message.payload.clone(),
            deadline,
        )
        .await?;
        match tokio::time::timeout_at(Instant::now() + timeout, answers.next()).await {
            Ok(Some(answer)) => Ok(answer),
            _ => Err(Undelivered::Lost("no answer in time".into())),
        }
    }
}

/// `unavailable`, retriable: the shard had no leader for the whole wait.
pub fn no_leader(shard: u32) -> ProtoError {
    ProtoError::new(
        ErrorCode::Unavailable,
        format!("shard {shard} has no leader right now; retry"),
    )
}

/// The headers of a forward: the message's own, plus its subject and the client's reply.
fn forward_headers(message: &async_nats::Message, reply: Option<&Subject>) -> HeaderMap {
    let mut headers = message.headers.clone().unwrap_or_default();
    headers.insert(FORWARDED_SUBJECT, message.subject.as_str());
    if let Some(reply) = reply {
        headers.insert(FORWARDED_REPLY, reply.as_str());
    }
    headers
}

/// Publishes a forward until a leader acknowledges it, trying again while nobody leads.
async fn deliver(
    client: &async_nats::Client,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
    deadline: Instant,
) -> Result<(), Undelivered> {
    use async_nats::client::RequestErrorKind;
    let mut pause = FIRST_PAUSE;
    loop {
        let request = async_nats::Request::new()
            .headers(headers.clone())
            .payload(payload.clone())
            .timeout(Some(ACK_WAIT));
        match client.send_request(subject.clone(), request).await {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == RequestErrorKind::NoResponders => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(Undelivered::NoLeader);
                }
                // The last try is at the deadline itself.
                tokio::time::sleep(pause.min(deadline - now)).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Err(e) => return Err(Undelivered::Lost(e.to_string())),
        }
    }
}

/// A forward as its leader serves it: the original subject and the client's reply subject
/// back from the headers, and the subject to acknowledge it on. `None` for a message on the
/// forwarding subject that no broker forwarded.
pub fn received(mut message: async_nats::Message) -> Option<(async_nats::Message, Subject)> {
    let headers = message.headers.as_ref()?;
    let original = headers.get(FORWARDED_SUBJECT)?.as_str();
    let reply = headers
        .get(FORWARDED_REPLY)
        .map(|r| Subject::from(r.as_str()));
    let ack = message.reply.take()?;
    message.subject = original.into();
    message.reply = reply;
    Some((message, ack))
}
