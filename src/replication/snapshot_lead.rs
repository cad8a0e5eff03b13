//! The lead side of snapshots ([`super::snapshot`]): a shard's leader decides when one is due,
//! checkpoints its store, packs and uploads the checkpoint, prunes old snapshots and trims the
//! log — all in a task beside the shard's engine, so neither its writes nor its lease renewal
//! wait for a snapshot.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::log::ShardLog;
use super::snapshot::{remove_dir, SnapshotError, Snapshots, Stored, Taken};
use super::snapshot_archive::{self, Header};
use crate::config::SnapshotOptions;
use crate::store::Checkpoints;

/// The lead side: decides when a snapshot is due, takes the checkpoint, and runs the upload,
/// pruning and trim in a task.
pub struct Snapshotter {
    side: LeadSide,
    options: SnapshotOptions,
    /// The sequence the newest stored snapshot covers (`None`: not known yet).
    covered: Option<u64>,
    /// One job at a time: learning `covered`, or taking and storing a snapshot.
    running: JoinSet<Result<Job, SnapshotError>>,
    /// Its one permit is held while a checkpoint is taken ([`Snapshotter::close`]).
    checkpointing: Arc<Semaphore>,
}

/// What a finished job learned.
enum Job {
    Listed(Option<Stored>),
    Took(Taken),
}

/// Where the shard's leader takes snapshots: its bucket (opened by each job, so a JetStream
/// outage delays snapshots, never the shard), and the store and log it snapshots and trims.
pub struct LeadSide {
    pub js: jetstream::Context,
    pub cluster: String,
    pub replicas: usize,
    pub log: ShardLog,
    pub checkpoints: Checkpoints,
    /// Where snapshots are taken (`<data-dir>/shard-<n>.snapshot`).
    pub work: PathBuf,
}

impl Snapshotter {
    pub fn new(side: LeadSide, options: SnapshotOptions) -> Snapshotter {
        Snapshotter {
            side,
            options,
            covered: None,
            running: JoinSet::new(),
            checkpointing: Arc::new(Semaphore::new(1)),
        }
    }

    /// How often [`Snapshotter::tick`] should run.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.options.interval_secs.max(1))
    }

    /// Starts what is due, unless a job runs: learning which sequence the newest snapshot
    /// covers, or, when the shard's copy is at `applied`, `--snapshot-every` past it, a new
    /// snapshot. Everything runs in a task: the lead loop (lease renewal) never waits for it.
    pub fn tick(&mut self, applied: u64) {
        if !self.running.is_empty() {
            return;
        }
        let shard = self.side.log.shard();
        let (js, cluster, replicas) = (
            self.side.js.clone(),
            self.side.cluster.clone(),
            self.side.replicas,
        );
        let bucket = async move { Snapshots::open(&js, &cluster, replicas, shard).await };
        match self.covered {
            None => {
                self.running
                    .spawn(async move { Ok(Job::Listed(bucket.await?.list().await?.pop())) });
            }
            Some(covered) if applied >= covered + self.options.every.max(1) => {
                let Ok(permit) = self.checkpointing.clone().try_acquire_owned() else {
                    return; // Free whenever no job runs (checked above).
                };
                let (checkpoints, work) = (self.side.checkpoints.clone(), self.side.work.clone());
                let (log, keep) = (self.side.log.clone(), self.options.keep);
                self.running.spawn(async move {
                    let scratch = work.clone();
                    let taken = tokio::task::spawn_blocking(move || {
                        let _open = permit;
                        checkpoint(&checkpoints, &scratch)
                    });
                    let sequence = taken.await.map_err(|e| e.to_string()).flatten();
                    let why = |why| SnapshotError { shard, why };
                    let sequence = sequence.map_err(|e| why(format!("no checkpoint: {e}")))?;
                    let stored = store_snapshot(bucket.await?, log, work, sequence, keep);
                    stored.await.map(Job::Took)
                });
            }
            Some(_) => {}
        }
    }

    /// The next snapshot stored by a job (never returns while none runs).
    pub async fn stored(&mut self) -> Taken {
        loop {
            let Some(done) = self.running.join_next().await else {
                std::future::pending::<()>().await;
                continue;
            };
            let shard = self.side.log.shard();
            match done {
                Ok(Ok(Job::Listed(newest))) => {
                    self.covered = Some(newest.map_or(0, |stored| stored.sequence))
                }
                Ok(Ok(Job::Took(taken))) => {
                    self.covered = Some(taken.sequence);
                    tracing::info!(
                        shard,
                        sequence = taken.sequence,
                        bytes = taken.size,
                        log_first = taken.log_first,
                        "snapshot stored"
                    );
                    return taken;
                }
                Ok(Err(e)) => tracing::warn!(shard, error = %e.why, "snapshot failed"),
                Err(e) => tracing::warn!(shard, error = %e, "snapshot task failed"),
            }
        }
    }

    /// Lets go of the shard's store: waits for a checkpoint being taken (it holds the store
    /// open, and the shard's next cycle opens it again). A job past its checkpoint finishes on
    /// its own: cutting an upload short would leave its chunks in the bucket unreferenced, and
    /// what it stores and trims is sound whoever leads now (see [`super::snapshot`]). Should
    /// this broker lead the shard again before that job ends, the two share the scratch
    /// directory and one of them may fail: it is logged and the next tick tries again.
    pub async fn close(mut self) {
        let _ = self.checkpointing.acquire().await;
        self.running.detach_all();
    }
}

/// Checkpoints the store into `work/checkpoint` (clearing `work` first); the sequence it holds.
fn checkpoint(checkpoints: &Checkpoints, work: &Path) -> Result<u64, String> {
    remove_dir(work)
        .and_then(|()| std::fs::create_dir_all(work))
        .map_err(|e| format!("{}: {e}", work.display()))?;
    checkpoints
        .create(&work.join("checkpoint"))
        .map_err(|e| e.to_string())
}

/// Packs the checkpoint in `work` (covering `sequence`), uploads it, keeps the newest `keep`
/// snapshots and trims the log up to the oldest one kept.
async fn store_snapshot(
    snapshots: Snapshots,
    log: ShardLog,
    work: PathBuf,
    sequence: u64,
    keep: u64,
) -> Result<Taken, SnapshotError> {
    let archive = work.join("archive");
    let header = Header {
        shard: snapshots.shard,
        sequence,
    };
    let packing = {
        let (checkpoint, archive) = (work.join("checkpoint"), archive.clone());
        move || {
            let out = File::create_new(&archive)?;
            let size = snapshot_archive::pack(&checkpoint, header, &out)?;
            out.sync_all().map(|()| size)
        }
    };
    let packed = tokio::task::spawn_blocking(packing).await;
    let size = packed
        .map_err(|e| snapshots.error(e))?
        .map_err(|e| snapshots.error(format!("cannot pack the snapshot: {e}")))?;
    snapshots.upload(sequence, &archive).await?;
    let _ = tokio::task::spawn_blocking(move || remove_dir(&work)).await;
    let oldest_kept = snapshots.prune(keep).await?;
    let log_first = match oldest_kept {
        Some(through) => log.trim(through).await,
        None => log.first_sequence().await,
    };
    let log_first = log_first.map_err(|e| snapshots.error(e.why))?;
    Ok(Taken {
        sequence,
        size,
        log_first,
    })
}
