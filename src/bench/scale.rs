//! `mq9.scale`: what a mailbox costs when there are very many of them.
//!
//! The original design's case against "one JetStream stream per mailbox" is weight: a stream
//! is a directory, files, a file descriptor and ~51 KiB of server memory. A mailbox should be
//! a few RocksDB keys and a small in-memory record. This figure creates up to a million
//! mailboxes in a fresh broker (128 CREATEs in flight, at most the given time), and reports:
//!
//! - the create rate (`mq9.scale.create`);
//! - the growth of the broker's resident memory divided by the number of mailboxes — RSS,
//!   read from `/proc`, includes everything: the engine's records, RocksDB's memtables and
//!   caches, allocator overhead;
//! - the SEND rate when every request picks one of those mailboxes at random
//!   (`mq9.scale.send`), i.e. with no locality at all for the engine's maps and RocksDB.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Subject;
use bytes::Bytes;

use super::load::{self, Window};
use super::mq9;
use super::procs::{self, BrokerProcess};
use super::report::{Figure, ScaleMemory};

/// CREATEs in flight while filling the broker.
const IN_FLIGHT: usize = 128;

/// Runs the scale figure against a broker of its own on `data_dir`.
pub async fn measure(
    nats_url: &str,
    data_dir: &Path,
    mailboxes: u64,
    time_limit: Duration,
    window: Window,
    payload: Bytes,
) -> anyhow::Result<(Vec<Figure>, ScaleMemory)> {
    let broker = BrokerProcess::start(nats_url, data_dir, true).await?;
    let client = procs::connect(nats_url).await?;
    let rss_before_bytes = broker.rss_bytes()?;
    tracing::info!(mailboxes, "scale: creating mailboxes");
    let deadline = Instant::now() + time_limit;
    let (addresses, elapsed) =
        mq9::create_many(&client, mailboxes, IN_FLIGHT, Some(deadline)).await?;
    let created = addresses.len() as u64;
    let rss_after_bytes = broker.rss_bytes()?;
    let create = Figure::new(
        "mq9.scale.create",
        IN_FLIGHT,
        load::Sample::rate_only(created, elapsed),
        Some(created),
    );
    let subjects: Arc<Vec<Subject>> =
        Arc::new(addresses.iter().map(|a| mq9::send_subject(a)).collect());
    drop(addresses);
    anyhow::ensure!(!subjects.is_empty(), "scale: no mailbox was created");
    tracing::info!(created, "scale: sending across all mailboxes");
    let sender = client.clone();
    let sample = load::closed_loop(IN_FLIGHT, window, move || {
        let subject = subjects[rand::random_range(0..subjects.len())].clone();
        let (client, payload) = (sender.clone(), payload.clone());
        async move { mq9::send(&client, subject, payload).await }
    })
    .await?;
    let send = Figure::new("mq9.scale.send", IN_FLIGHT, sample, Some(created));
    broker.stop().await?;
    let memory = ScaleMemory {
        mailboxes: created,
        rss_before_bytes,
        rss_after_bytes,
    };
    Ok((vec![create, send], memory))
}
