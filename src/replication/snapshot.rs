//! Snapshots of a shard (replication.md, "Snapshots"): they bound the shard's log, and a broker
//! with an empty (or too old) copy of the shard starts from one instead of from entry 1.
//!
//! - **Where.** One JetStream object store bucket per cluster, `MQ9_<cluster>_SNAPSHOTS`,
//!   replicated like the logs (`--log-replicas`). Shard `n`'s snapshot covering the log up to
//!   sequence `s` is the object `shard-<n>/<s, 20 digits>`, so names sort as sequences do. The
//!   object is a [`snapshot_archive`](super::snapshot_archive) of a RocksDB checkpoint.
//! - **When.** The shard's leader looks every `--snapshot-interval-secs` (so at most one
//!   snapshot per interval) and takes one when the log has `--snapshot-every` entries past the
//!   newest snapshot ([`Snapshotter`]). The checkpoint is the only step beside the engine's
//!   writes (hard links and a memtable flush); packing and uploading run in a task.
//! - **Trimming.** Once the upload returned (JetStream stored it on a quorum), snapshots beyond
//!   the newest `--snapshot-keep` are deleted and the log is trimmed up to the oldest one kept,
//!   never further: every kept snapshot plus the log still rebuilds the shard, so a corrupt
//!   newest snapshot leaves the previous one usable. Any leader may trim (even a deposed one,
//!   late): what it trims is covered by a stored snapshot, and a snapshot holds only entries
//!   that were on a quorum (a leader writes its copy after the append's ack).
//! - **Restoring.** [`restore_newest`]: download, unpack into a scratch directory, check the
//!   digest, the header and the sequence the copy itself records, then rename it into place;
//!   a refused snapshot is logged and the next older one tried. The broker then applies the
//!   log from the snapshot's sequence on, as any follower, and can lead only through the usual
//!   takeover (which applies everything up to its takeover entry first).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{self, object_store, stream::StorageType};
use futures::TryStreamExt;
use tokio::task::JoinSet;

use super::log::ShardLog;
use super::snapshot_archive::{self, Header};
use crate::config::SnapshotOptions;
use crate::store::{self, Checkpoints};

/// Why a snapshot could not be taken, stored or restored.
#[derive(Debug, thiserror::Error)]
#[error("shard {shard}: {why}")]
pub struct SnapshotError {
    pub shard: u32,
    pub why: String,
}

/// A snapshot in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub name: String,
    /// The last log entry it holds.
    pub sequence: u64,
}

/// A snapshot just taken and stored.
#[derive(Debug, Clone, Copy)]
pub struct Taken {
    pub sequence: u64,
    /// The archive's size in bytes.
    pub size: u64,
    /// The log's first sequence after the trim that followed.
    pub log_first: u64,
}

/// The cluster's snapshot bucket.
pub struct Snapshots {
    bucket: object_store::ObjectStore,
    shard: u32,
}

/// The object store bucket holding `cluster`'s snapshots.
pub fn bucket_name(cluster: &str) -> String {
    format!("MQ9_{cluster}_SNAPSHOTS")
}

fn object_name(shard: u32, sequence: u64) -> String {
    format!("shard-{shard}/{sequence:020}")
}

impl Snapshots {
    /// Opens (creating when missing) the bucket, for shard `shard`'s snapshots.
    pub async fn open(
        js: &jetstream::Context,
        cluster: &str,
        replicas: usize,
        shard: u32,
    ) -> Result<Snapshots, SnapshotError> {
        let error = |why: String| SnapshotError { shard, why };
        let name = bucket_name(cluster);
        let bucket = match js.get_object_store(&name).await {
            Ok(bucket) => bucket,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: name,
                    description: Some("mq9 shard snapshots".into()),
                    storage: StorageType::File,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| error(format!("cannot open the snapshot bucket: {e}")))?,
        };
        Ok(Snapshots { bucket, shard })
    }

    /// The shard's snapshots, oldest first.
    pub async fn list(&self) -> Result<Vec<Stored>, SnapshotError> {
        let prefix = format!("shard-{}/", self.shard);
        let listed = self.bucket.list().await.map_err(|e| self.error(e))?;
        let infos: Vec<_> = listed.try_collect().await.map_err(|e| self.error(e))?;
        let mut stored: Vec<Stored> = infos
            .into_iter()
            .filter_map(|info| {
                let sequence = info.name.strip_prefix(&prefix)?.parse().ok()?;
                Some(Stored {
                    name: info.name,
                    sequence,
                })
            })
            .collect();
        stored.sort_by_key(|snapshot| snapshot.sequence);
        Ok(stored)
    }

    /// Stores the archive `path` as the snapshot covering `sequence`; it is on a quorum once
    /// this returns.
    async fn upload(&self, sequence: u64, path: &Path) -> Result<(), SnapshotError> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| self.error(e))?;
        let name = object_name(self.shard, sequence);
        let put = self.bucket.put(name.as_str(), &mut file).await;
        put.map_err(|e| self.error(format!("cannot store snapshot {name}: {e}")))?;
        Ok(())
    }

    /// Deletes all but the newest `keep` snapshots; the sequence of the oldest one kept.
    async fn prune(&self, keep: u64) -> Result<Option<u64>, SnapshotError> {
        let stored = self.list().await?;
        let excess = stored.len().saturating_sub(keep as usize);
        for old in &stored[..excess] {
            let deleted = self.bucket.delete(&old.name).await;
            deleted.map_err(|e| self.error(format!("cannot delete {}: {e}", old.name)))?;
        }
        Ok(stored.get(excess).map(|kept| kept.sequence))
    }

    async fn download(&self, name: &str, path: &Path) -> Result<(), SnapshotError> {
        let failed = |e: &dyn std::fmt::Display| self.error(format!("cannot download: {e}"));
        let mut object = self.bucket.get(name).await.map_err(|e| failed(&e))?;
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| failed(&e))?;
        tokio::io::copy(&mut object, &mut file)
            .await
            .map_err(|e| failed(&e))?;
        file.sync_all().await.map_err(|e| failed(&e))
    }

    fn error(&self, e: impl std::fmt::Display) -> SnapshotError {
        SnapshotError {
            shard: self.shard,
            why: e.to_string(),
        }
    }
}

/// Restores into `dir` (the shard's store, closed) the newest snapshot that brings a copy at
/// `applied` further and leaves no gap before the log's `first` entry; its sequence, or `None`
/// when no snapshot is newer and the log alone can bring the copy up to date. A snapshot that
/// fails its checks is logged and the next older one tried.
pub async fn restore_newest(
    snapshots: &Snapshots,
    dir: &Path,
    applied: u64,
    first: u64,
) -> Result<Option<u64>, SnapshotError> {
    let shard = snapshots.shard;
    for stored in snapshots.list().await?.iter().rev() {
        if stored.sequence <= applied {
            break;
        }
        let restored = match stored.sequence + 1 < first {
            true => Err(snapshots.error(format!(
                "it ends at {} and the log starts at {first}",
                stored.sequence
            ))),
            false => restore(snapshots, stored, dir).await,
        };
        match restored {
            Ok(()) => return Ok(Some(stored.sequence)),
            Err(e) => {
                tracing::warn!(shard, snapshot = %stored.name, error = %e.why,
                    "snapshot refused; trying the next older one");
            }
        }
    }
    match applied + 1 >= first {
        true => Ok(None),
        false => Err(snapshots.error(format!(
            "this copy ends at {applied}, the log starts at {first}, and no stored snapshot \
             bridges the gap"
        ))),
    }
}

/// Unpacks one snapshot into a scratch directory beside `dir`, checks it, and puts it in
/// `dir`'s place.
async fn restore(snapshots: &Snapshots, stored: &Stored, dir: &Path) -> Result<(), SnapshotError> {
    let scratch = dir.with_extension("restore");
    let shard = snapshots.shard;
    let failed = |e: &dyn std::fmt::Display| snapshots.error(e);
    let unpacked = scratch.join("db");
    let prepared = remove_dir(&scratch).and_then(|()| std::fs::create_dir_all(&unpacked));
    prepared.map_err(|e| failed(&e))?;
    let archive = scratch.join("archive");
    snapshots.download(&stored.name, &archive).await?;
    let expected = Header {
        shard,
        sequence: stored.sequence,
    };
    let dir = dir.to_owned();
    let checked = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let file = File::open(&archive).map_err(|e| e.to_string())?;
        let header = snapshot_archive::unpack(file, &unpacked).map_err(|e| e.to_string())?;
        if header != expected {
            return Err(format!(
                "the archive holds {header:?}, its name says {expected:?}"
            ));
        }
        let holds = store::applied_in(&unpacked).map_err(|e| e.to_string())?;
        if holds != expected.sequence {
            return Err(format!("the store inside holds sequence {holds}"));
        }
        remove_dir(&dir)
            .and_then(|()| std::fs::rename(&unpacked, &dir))
            .and_then(|()| sync_parent(&dir))
            .and_then(|()| remove_dir(&scratch))
            .map_err(|e| format!("cannot put the restored copy in place: {e}"))
    });
    checked
        .await
        .map_err(|e| failed(&e))?
        .map_err(|e| failed(&e))
}

/// The lead side: decides when a snapshot is due, takes the checkpoint, and runs the upload,
/// pruning and trim in a task.
pub struct Snapshotter {
    js: jetstream::Context,
    cluster: String,
    replicas: usize,
    log: ShardLog,
    checkpoints: Checkpoints,
    options: SnapshotOptions,
    /// Where snapshots are taken (`<data-dir>/shard-<n>.snapshot`).
    work: PathBuf,
    /// The sequence the newest stored snapshot covers (`None`: not known yet).
    covered: Option<u64>,
    running: JoinSet<Result<Job, SnapshotError>>,
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
    pub work: PathBuf,
}

impl Snapshotter {
    pub fn new(side: LeadSide, options: SnapshotOptions) -> Snapshotter {
        Snapshotter {
            js: side.js,
            cluster: side.cluster,
            replicas: side.replicas,
            log: side.log,
            checkpoints: side.checkpoints,
            options,
            work: side.work,
            covered: None,
            running: JoinSet::new(),
        }
    }

    /// How often [`Snapshotter::tick`] should run.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.options.interval_secs.max(1))
    }

    /// Starts what is due, unless a job runs: learning which sequence the newest snapshot
    /// covers, or, when the shard's copy is at `applied`, `--snapshot-every` past it, a new
    /// snapshot (the checkpoint is taken here; the rest runs in a task).
    pub async fn tick(&mut self, applied: u64) {
        if !self.running.is_empty() {
            return;
        }
        let shard = self.log.shard();
        let (js, cluster, replicas) = (self.js.clone(), self.cluster.clone(), self.replicas);
        let bucket = async move { Snapshots::open(&js, &cluster, replicas, shard).await };
        match self.covered {
            None => {
                self.running
                    .spawn(async move { Ok(Job::Listed(bucket.await?.list().await?.pop())) });
            }
            Some(covered) if applied >= covered + self.options.every.max(1) => {
                let (checkpoints, work) = (self.checkpoints.clone(), self.work.clone());
                let taken = tokio::task::spawn_blocking(move || checkpoint(&checkpoints, &work));
                let sequence = match taken.await.map_err(|e| e.to_string()).flatten() {
                    Ok(sequence) => sequence,
                    Err(why) => {
                        tracing::warn!(shard, %why, "cannot take a snapshot");
                        return;
                    }
                };
                let (log, work, keep) = (self.log.clone(), self.work.clone(), self.options.keep);
                self.running.spawn(async move {
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
            let shard = self.log.shard();
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
}

impl Drop for Snapshotter {
    /// A job left running when the shard is given up is dropped half way: its upload is not
    /// listed (the bucket lists an object once all of it is stored) and its scratch directory
    /// is cleared by the next snapshot.
    fn drop(&mut self) {
        self.running.abort_all();
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

/// Removes a directory tree if it exists.
fn remove_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes a rename into `path`'s parent directory durable.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) => File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}
