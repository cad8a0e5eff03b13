//! The mq9 side of the comparison, spoken exactly as an agent speaks it: plain NATS requests
//! to `$mq9.AI.*` (protocol.md §3) from an async-nats client, with `protocol::encode`'s
//! subjects and bodies — each encoded once, outside the measured loops.
//!
//! Every reply is checked. A success reply has `"error": ""`; anything else (a `full`
//! mailbox, `not_found`, a malformed reply) stops the benchmark with the reply's `code` —
//! never its message, which may name the mailbox, and mail addresses are never printed.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::{Client, Subject};
use bytes::Bytes;
use serde::Deserialize;

use super::load::{self, Sample};
use crate::protocol::encode::subjects;
use crate::protocol::request::{
    AckRequest, CreateRequest, Deliver, FetchRequest, DEFAULT_ACK_WAIT_MS,
};
use crate::protocol::MailboxType;

/// The consumer group that drains the fetch figure's mailbox.
const GROUP: &str = "g";

/// The part every mq9 reply shares.
#[derive(Deserialize)]
struct Status {
    error: String,
    #[serde(default)]
    code: String,
}

#[derive(Deserialize)]
struct CreateReply {
    mail_id: String,
}

#[derive(Deserialize)]
struct FetchReply {
    messages: Vec<FetchedId>,
}

#[derive(Deserialize)]
struct FetchedId {
    msg_id: u64,
}

/// Sends one request and fails unless the broker answered success.
async fn request(
    client: &Client,
    command: &str,
    subject: Subject,
    body: Bytes,
) -> anyhow::Result<Bytes> {
    let reply = client
        .request(subject, body)
        .await
        .with_context(|| format!("{command}: no reply from the broker"))?;
    let status: Status = serde_json::from_slice(&reply.payload)
        .with_context(|| format!("{command}: the reply is not an mq9 reply"))?;
    if !status.error.is_empty() {
        bail!("{command} failed: the broker answered `{}`", status.code);
    }
    Ok(reply.payload)
}

/// `MAILBOX.CREATE` of a mailbox that never expires, encoded once per process: the creation
/// figures measure creating, not encoding.
static CREATE: LazyLock<(Subject, Bytes)> = LazyLock::new(|| {
    let request = CreateRequest {
        name: None,
        ttl: Some(0),
        kind: MailboxType::Standard,
        desc: None,
    };
    (subjects::mailbox_create().into(), request.encode().into())
});

/// `MAILBOX.CREATE` of a mailbox that never expires; returns its address.
pub async fn create_mailbox(client: &Client) -> anyhow::Result<String> {
    let (subject, body) = CREATE.clone();
    let reply = request(client, "MAILBOX.CREATE", subject, body).await?;
    let created: CreateReply =
        serde_json::from_slice(&reply).context("MAILBOX.CREATE: the reply has no mail_id")?;
    Ok(created.mail_id)
}

/// The SEND subject of a mailbox, built once and reused for every request.
pub fn send_subject(mail_id: &str) -> Subject {
    Subject::from(subjects::send(mail_id))
}

/// One SEND, answered once the message is stored (and, with `--sync always`, synced).
pub async fn send(client: &Client, subject: Subject, payload: Bytes) -> anyhow::Result<()> {
    request(client, "MSG.SEND", subject, payload)
        .await
        .map(drop)
}

/// SENDs `count` messages to one mailbox, 128 in flight (to pre-fill it).
pub async fn fill(
    client: &Client,
    mail_id: &str,
    count: u64,
    payload: Bytes,
) -> anyhow::Result<()> {
    let (client, subject) = (client.clone(), send_subject(mail_id));
    load::fixed_count(128, count, None, move |_| {
        let (client, subject, payload) = (client.clone(), subject.clone(), payload.clone());
        async move { send(&client, subject, payload).await }
    })
    .await
    .map(drop)
}

/// Drains `count` pre-filled messages with the consumer group `g`: FETCH up to 100, then
/// ACK the last one (which acknowledges the whole batch) — the messages per second one agent
/// can work through.
///
/// The ACK of a batch is sent together with the FETCH of the next and both replies are
/// awaited (and checked) before going on. JetStream's client does not even wait for its acks
/// (an ack is a plain publish); waiting for the ACK alone before fetching again would charge
/// mq9 a round trip that the JetStream figure does not pay.
pub async fn drain(client: &Client, mail_id: &str, count: u64) -> anyhow::Result<Sample> {
    let fetch_subject = Subject::from(subjects::fetch(mail_id));
    let ack_subject = Subject::from(subjects::ack(mail_id));
    let fetch_body = Bytes::from(
        FetchRequest {
            group: Some(GROUP.to_owned()),
            deliver: Deliver::Earliest,
            force_deliver: false,
            num_msgs: 100,
            max_wait_ms: 1000,
            ack_wait_ms: DEFAULT_ACK_WAIT_MS,
        }
        .encode(),
    );
    let ack = |msg_id: u64| {
        let body = AckRequest {
            group: GROUP.to_owned(),
            msg_id,
        }
        .encode();
        request(client, "MSG.ACK", ack_subject.clone(), body.into())
    };
    let started = Instant::now();
    let mut drained = 0;
    let mut last_fetched: Option<u64> = None;
    while drained < count {
        let fetch = request(
            client,
            "MSG.FETCH",
            fetch_subject.clone(),
            fetch_body.clone(),
        );
        let reply = match last_fetched {
            Some(msg_id) => tokio::try_join!(ack(msg_id), fetch)?.1,
            None => fetch.await?,
        };
        let batch: FetchReply =
            serde_json::from_slice(&reply).context("MSG.FETCH: the reply has no messages")?;
        let Some(last) = batch.messages.last() else {
            bail!("MSG.FETCH returned nothing after {drained} of {count} messages");
        };
        last_fetched = Some(last.msg_id);
        drained += batch.messages.len() as u64;
    }
    if let Some(msg_id) = last_fetched {
        ack(msg_id).await?;
    }
    Ok(Sample::rate_only(drained, started.elapsed()))
}

/// Creates `count` mailboxes, `in_flight` at a time, stopping early at `deadline`; returns
/// their addresses and the time taken.
pub async fn create_many(
    client: &Client,
    count: u64,
    in_flight: usize,
    deadline: Option<Instant>,
) -> anyhow::Result<(Vec<String>, Duration)> {
    let client = client.clone();
    load::fixed_count(in_flight, count, deadline, move |_| {
        let client = client.clone();
        async move { create_mailbox(&client).await }
    })
    .await
}
