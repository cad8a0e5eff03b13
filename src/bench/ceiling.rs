//! The ceiling: plain NATS request/reply against the thinnest possible responder.
//!
//! mq9's broker is a NATS client: every command crosses nats-server twice (request in, reply
//! out) and the broker's own client library once each way. An echo responder written with
//! the same library (async-nats) pays exactly that and nothing else — no parsing, no storage.
//! No NATS-client service can beat it, so mq9's rates are reported as fractions of it. It
//! runs as a task of this process on its own connection, as the broker has its own.

use anyhow::Context;
use async_nats::Subject;
use futures::StreamExt;

/// The subject the echo responder answers on.
pub const ECHO_SUBJECT: &str = "bench.echo";

/// The running responder; stopped when dropped.
pub struct Echo {
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    /// Connects, subscribes, and returns once the server knows the subscription.
    pub async fn start(url: &str) -> anyhow::Result<Echo> {
        let client = super::procs::connect(url).await?;
        let mut requests = client
            .subscribe(Subject::from_static(ECHO_SUBJECT))
            .await
            .context("echo responder: cannot subscribe")?;
        client
            .flush()
            .await
            .context("echo responder: cannot flush")?;
        let task = tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply {
                    if client.publish(reply, request.payload).await.is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Echo { task })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request/reply round trip to the echo responder.
pub async fn round_trip(client: &async_nats::Client, payload: bytes::Bytes) -> anyhow::Result<()> {
    client
        .request(Subject::from_static(ECHO_SUBJECT), payload)
        .await
        .context("echo request failed")?;
    Ok(())
}
