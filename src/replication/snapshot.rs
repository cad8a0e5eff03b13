//! Snapshots of a shard (replication.md, "Snapshots"): they bound the shard's log, and a broker
//! with an empty (or too old) copy of the shard starts from one instead of from entry 1.
//!
//! - **Where.** One JetStream object store bucket per cluster, `MQ9_<cluster>_SNAPSHOTS`,
//!   replicated like the logs (`--log-replicas`). Shard `n`'s snapshot covering the log up to
//!   sequence `s` is the object `shard-<n>/<s, 20 digits>`, so names sort as sequences do. The
//!   object is a [`snapshot_archive`](super::snapshot_archive) of a RocksDB checkpoint.
//! - **When.** The shard's leader looks every `--snapshot-interval-secs` (so at most one
//!   snapshot per interval) and takes one when the log has `--snapshot-every` entries past the
//!   newest snapshot ([`Snapshotter`], in [`super::snapshot_lead`]). The checkpoint is the only step that touches the live
//!   store (hard links and a memtable flush, beside the engine's writes, which go on); it,
//!   the packing and the upload run in a task.
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
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{self, object_store, stream::StorageType};
use futures::TryStreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::snapshot_archive::{self, Header};
use crate::store;

pub use super::snapshot_lead::{LeadSide, Snapshotter};

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
    pub(super) shard: u32,
}

/// How long a listing, or a download between two chunks, may stall before it fails (and the
/// shard's cycle is tried again) rather than hold the shard up.
const STALL: Duration = Duration::from_secs(10);

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
        let listing = async {
            let listed = self.bucket.list().await.map_err(|e| self.error(e))?;
            listed.try_collect().await.map_err(|e| self.error(e))
        };
        let listed = tokio::time::timeout(STALL, listing).await;
        let infos: Vec<_> = listed.map_err(|_| self.error("listing the snapshots stalled"))??;
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
    pub(super) async fn upload(&self, sequence: u64, path: &Path) -> Result<(), SnapshotError> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| self.error(e))?;
        let name = object_name(self.shard, sequence);
        let put = self.bucket.put(name.as_str(), &mut file).await;
        put.map_err(|e| self.error(format!("cannot store snapshot {name}: {e}")))?;
        Ok(())
    }

    /// Deletes all but the newest `keep` snapshots; the sequence of the oldest one kept.
    pub(super) async fn prune(&self, keep: u64) -> Result<Option<u64>, SnapshotError> {
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
        let mut chunk = vec![0; 1 << 16];
        loop {
            let read = tokio::time::timeout(STALL, object.read(&mut chunk)).await;
            let read = read.map_err(|_| failed(&"the download stalled"))?;
            match read.map_err(|e| failed(&e))? {
                0 => break,
                n => file.write_all(&chunk[..n]).await.map_err(|e| failed(&e))?,
            }
        }
        file.sync_all().await.map_err(|e| failed(&e))
    }

    pub(super) fn error(&self, e: impl std::fmt::Display) -> SnapshotError {
        SnapshotError {
            shard: self.shard,
            why: e.to_string(),
        }
    }
}

/// Restores into `dir` (the shard's store, closed) the newest snapshot that brings a copy at
/// `applied` further and fits the log (`first..=last`: no gap before its first entry, nothing
/// past its last); its sequence, or `None` when no snapshot is newer and the log alone can
/// bring the copy up to date. A snapshot that fails its checks is logged and the next older
/// one tried.
pub async fn restore_newest(
    snapshots: &Snapshots,
    dir: &Path,
    applied: u64,
    (first, last): (u64, u64),
) -> Result<Option<u64>, SnapshotError> {
    let shard = snapshots.shard;
    for stored in snapshots.list().await?.iter().rev() {
        if stored.sequence <= applied {
            break;
        }
        let misfit = match stored.sequence {
            ends if ends + 1 < first => Some(format!("the log starts at {first}")),
            // A log made again under the same name (its stream deleted) while the bucket kept
            // the old log's snapshots: restoring one would claim entries the log never had.
            ends if ends > last => Some(format!("the log ends at {last}: another log's")),
            _ => None,
        };
        let restored = match misfit {
            Some(why) => Err(snapshots.error(format!("it ends at {}; {why}", stored.sequence))),
            None => restore(snapshots, stored, dir).await,
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
    let (dir, leftover) = (dir.to_owned(), scratch.clone());
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
    let checked = checked
        .await
        .map_err(|e| failed(&e))?
        .map_err(|e| failed(&e));
    if checked.is_err() {
        // A refused archive's partial copy is of no use to anyone.
        let _ = tokio::task::spawn_blocking(move || remove_dir(&leftover)).await;
    }
    checked
}

/// Removes a directory tree if it exists.
pub(super) fn remove_dir(dir: &Path) -> std::io::Result<()> {
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
