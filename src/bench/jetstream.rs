//! The JetStream anchors: what the same workloads cost when built from NATS's own persistence,
//! the obvious alternative to a mailbox broker ("one stream per mailbox").
//!
//! - `publish_ack`: publish to a file stream and wait for the server's ack — JetStream's SEND.
//!   Measured twice: with the server's default sync (a background flush every two minutes)
//!   and with `sync_interval: always` (fsync before every ack, the durability of mq9's
//!   default). JetStream lives inside nats-server, so it skips the client hop mq9 pays.
//! - `fetch_ack`: drain a pre-filled stream with a durable pull consumer, batches of 100,
//!   every message explicitly acked — JetStream's FETCH + ACK.
//! - `stream_create`: the price of one stream per mailbox. Each stream is a directory, files
//!   and a file descriptor on the server, and an entry in its meta layer.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use async_nats::Subject;
use bytes::Bytes;
use futures::StreamExt;

use super::load::{self, Sample};
use super::procs::{self, JetStreamSync};

/// Creates the stream `name` on `subject` from scratch (a leftover of an earlier run is
/// deleted first): file storage, everything else the server's default.
pub async fn fresh_stream(
    js: &jetstream::Context,
    name: &str,
    subject: &str,
    replicas: usize,
) -> anyhow::Result<stream::Stream> {
    // Not found is the usual case here; any real failure shows in the create below.
    let _ = js.delete_stream(name).await;
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .with_context(|| format!("cannot create the JetStream stream {name}"))
}

/// One publish, waited for until the server acks it as stored.
pub async fn publish_ack(
    js: &jetstream::Context,
    subject: Subject,
    payload: Bytes,
) -> anyhow::Result<()> {
    js.publish(subject, payload)
        .await
        .context("JetStream publish failed")?
        .await
        .context("JetStream publish was not acked")?;
    Ok(())
}

/// Fills a fresh stream with `count` messages (128 in flight), then drains it with a durable
/// pull consumer: fetch batches of 100, ack each message. Returns messages per second of the
/// drain alone.
pub async fn fetch_ack(
    js: &jetstream::Context,
    count: u64,
    payload: Bytes,
) -> anyhow::Result<Sample> {
    const SUBJECT: &str = "bench.fetch";
    let stream = fresh_stream(js, "BENCH_FETCH", SUBJECT, 1).await?;
    let filler = js.clone();
    load::fixed_count(128, count, None, move |_| {
        let (js, payload) = (filler.clone(), payload.clone());
        async move { publish_ack(&js, Subject::from_static(SUBJECT), payload).await }
    })
    .await?;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("g".to_owned()),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .context("cannot create the JetStream consumer")?;
    let started = Instant::now();
    let mut drained = 0;
    while drained < count {
        let mut batch = consumer
            .fetch()
            .max_messages(100)
            .messages()
            .await
            .context("JetStream fetch failed")?;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("JetStream fetch failed: {e}"))?;
            message
                .ack()
                .await
                .map_err(|e| anyhow::anyhow!("JetStream ack failed: {e}"))?;
            drained += 1;
        }
    }
    let sample = Sample::rate_only(drained, started.elapsed());
    js.delete_stream("BENCH_FETCH")
        .await
        .context("cannot delete the JetStream stream")?;
    Ok(sample)
}

/// Creates `count` streams (`in_flight` at a time) on a nats-server of their own, started
/// for this run in `work_dir` and stopped after, so every run starts from an empty server.
pub async fn stream_create(
    binary: &Path,
    work_dir: &Path,
    count: u64,
    in_flight: usize,
) -> anyhow::Result<Sample> {
    let server = procs::start_nats(binary, work_dir, JetStreamSync::Default).await?;
    let js = jetstream::new(procs::connect(server.url()).await?);
    let (_, elapsed) = load::fixed_count(in_flight, count, None, move |i| {
        let js = js.clone();
        async move {
            js.create_stream(stream::Config {
                name: format!("S{i}"),
                subjects: vec![format!("bench.stream.{i}")],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot create stream {i} of {count}"))
            .map(drop)
        }
    })
    .await?;
    tokio::task::spawn_blocking(move || server.stop()).await??;
    Ok(Sample::rate_only(count, elapsed))
}
