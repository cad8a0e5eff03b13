//! A shard's log: a JetStream stream of the shard's committed effects, in order, replicated on
//! a quorum of servers. The leader appends one entry per committed batch and answers its clients
//! only after JetStream's ack (the entry is then on a quorum); followers read the entries and
//! apply them ([`super::follower`]).
//!
//! Every append names the sequence its writer believes is last
//! (`Nats-Expected-Last-Sequence`): JetStream refuses the append when anything else was
//! appended since. That is the fencing of replication.md: a broker that lost its lease while
//! paused and resumes cannot add a write behind the new leader's back, because the new leader
//! appended (at least its takeover entry) first.

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Something was appended after the sequence this writer expected: another broker leads
    /// the shard now. The writer must stop serving the shard and answer nothing as success.
    #[error("shard {shard}: the log moved on past sequence {expected} (another leader)")]
    Fenced { shard: u32, expected: u64 },
    /// No quorum answered in time (or no connection): the write is not known to be stored.
    #[error("shard {shard}: the log is unavailable: {why}")]
    Unavailable { shard: u32, why: String },
}

/// Why the log cannot be opened or read.
#[derive(Debug, thiserror::Error)]
#[error("shard {shard}: {why}")]
pub struct LogError {
    pub shard: u32,
    pub why: String,
}

/// An entry read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub sequence: u64,
    /// How many entries followed it in the log when it was delivered (the reader's lag).
    pub pending: u64,
    pub payload: Bytes,
}

/// An entry read from the log, or why it could not be.
pub type Entry = Result<LogEntry, LogError>;

/// The log stream of `shard` in `cluster`: `MQ9_<cluster>_SHARD_<shard>`.
pub fn stream_name(cluster: &str, shard: u32) -> String {
    format!("MQ9_{cluster}_SHARD_{shard}")
}

/// One shard's log, as seen by one broker.
#[derive(Clone)]
pub struct ShardLog {
    js: jetstream::Context,
    shard: u32,
    stream: String,
    subject: String,
}

/// How long an append may wait for JetStream's ack before it counts as unavailable.
const APPEND_TIMEOUT: Duration = Duration::from_secs(5);

impl ShardLog {
    /// Opens (creating when missing) the stream `MQ9_<cluster>_SHARD_<shard>` with `replicas`
    /// copies on file storage. Entries are kept (limits retention) until a snapshot covers
    /// them ([`ShardLog::trim`], [`super::snapshot`]).
    pub async fn open(
        js: &jetstream::Context,
        cluster: &str,
        shard: u32,
        replicas: usize,
    ) -> Result<ShardLog, LogError> {
        let error = |why: String| LogError { shard, why };
        let subject = format!("$mq9.REPL.{cluster}.{shard}");
        let config = stream::Config {
            name: stream_name(cluster, shard),
            description: Some(format!("mq9 shard {shard}: committed effects")),
            subjects: vec![subject.clone()],
            storage: StorageType::File,
            num_replicas: replicas,
            discard: DiscardPolicy::New,
            allow_direct: true,
            ..stream::Config::default()
        };
        let stream = js
            .get_or_create_stream(config)
            .await
            .map_err(|e| error(format!("cannot open the log stream: {e}")))?;
        Ok(ShardLog {
            js: js.clone(),
            shard,
            stream: stream.cached_info().config.name.clone(),
            subject,
        })
    }

    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// Appends `entry` after sequence `last` (0: the log is empty); its own sequence once a
    /// quorum stored it.
    pub async fn append(&self, entry: Bytes, last: u64) -> Result<u64, AppendError> {
        let shard = self.shard;
        let unavailable = |why: String| AppendError::Unavailable { shard, why };
        let message = PublishMessage::build()
            .payload(entry)
            .expected_last_sequence(last);
        let sent = self.js.send_publish(self.subject.clone(), message).await;
        let ack = sent.map_err(|e| unavailable(e.to_string()))?;
        match tokio::time::timeout(APPEND_TIMEOUT, std::future::IntoFuture::into_future(ack)).await
        {
            Err(_) => Err(unavailable("no acknowledgement in time".into())),
            Ok(Ok(ack)) => Ok(ack.sequence),
            Ok(Err(e)) if e.kind() == PublishErrorKind::WrongLastSequence => {
                Err(AppendError::Fenced {
                    shard,
                    expected: last,
                })
            }
            Ok(Err(e)) => Err(unavailable(e.to_string())),
        }
    }

    /// The sequence of the last entry (0 when empty).
    pub async fn last_sequence(&self) -> Result<u64, LogError> {
        Ok(self.state().await?.last_sequence)
    }

    /// The sequence of the first entry the log still holds (entries before it were trimmed:
    /// a copy of the shard behind it catches up from a snapshot); 0 or 1 before any trim.
    pub async fn first_sequence(&self) -> Result<u64, LogError> {
        Ok(self.state().await?.first_sequence)
    }

    /// Removes the entries up to and including `through`, which a durably stored snapshot
    /// covers; the log's first sequence afterwards. The last sequence stays as it was, so
    /// fenced appends are unaffected (JetStream keeps it across a purge).
    pub async fn trim(&self, through: u64) -> Result<u64, LogError> {
        let stream = self.stream().await?;
        let purged = stream.purge().sequence(through + 1).await;
        purged.map_err(|e| self.error(format!("cannot trim the log: {e}")))?;
        self.first_sequence().await
    }

    async fn state(&self) -> Result<stream::State, LogError> {
        let mut stream = self.stream().await?;
        let info = stream.info().await.map_err(|e| self.error(e))?;
        Ok(info.state.clone())
    }

    /// The entries from sequence `from` on, in order, without end: new entries arrive as they
    /// are appended.
    pub async fn read(&self, from: u64) -> Result<BoxStream<'static, Entry>, LogError> {
        let stream = self.stream().await?;
        let config = consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from.max(1),
            },
            ..Default::default()
        };
        let consumer = stream
            .create_consumer(config)
            .await
            .map_err(|e| self.error(e))?;
        let messages = consumer.messages().await.map_err(|e| self.error(e))?;
        let shard = self.shard;
        let error = move |e: &dyn std::fmt::Display| LogError {
            shard,
            why: e.to_string(),
        };
        let entries = messages.map(move |message| {
            let message = message.map_err(|e| error(&e))?;
            let info = message.info().map_err(|e| error(&e))?;
            Ok(LogEntry {
                sequence: info.stream_sequence,
                pending: info.pending,
                payload: message.payload.clone(),
            })
        });
        Ok(entries.boxed())
    }

    async fn stream(&self) -> Result<stream::Stream, LogError> {
        let stream = self.js.get_stream(&self.stream).await;
        stream.map_err(|e| self.error(e))
    }

    fn error(&self, e: impl std::fmt::Display) -> LogError {
        LogError {
            shard: self.shard,
            why: e.to_string(),
        }
    }
}
