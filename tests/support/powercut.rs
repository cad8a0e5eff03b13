//! Power cuts without a power switch. The broker runs with an `LD_PRELOAD` shim
//! (`tests/powercut/shim.c`) that journals every successful `fsync`/`fdatasync`: which file, and
//! how large it was when the sync began. After SIGKILL, [`Shim::cut_power`] rolls the data dir
//! back to what a machine losing its page cache would keep: every file truncated to its last
//! synced size, files never synced removed. The same shim can also make syncs fail
//! ([`Shim::fail_syncs`]): a disk that stopped taking writes.
//!
//! The model, and where it simplifies:
//! - Before the run, a [`Snapshot`] declares every file of the data dir durable at its size
//!   (taken after a clean stop of the broker).
//! - A file is known by inode and birth time, so a rename (RocksDB writes `CURRENT` under a
//!   temporary name) keeps its synced size and a later file reusing an inode does not.
//! - A file created during the run keeps its name only if the data dir was fsynced after the
//!   file's first sync (RocksDB syncs a new file, then its directory). This is stricter than a
//!   real file system, which needs only a directory sync after the creation.
//! - Deletions and renames are taken as they are after the kill: a real power cut could bring
//!   back a file deleted without a directory sync since. RocksDB ignores such leftovers (an old
//!   WAL or MANIFEST is older than what `CURRENT` and the MANIFEST name), so the test loses no
//!   sharpness by not resurrecting them.
//! - Within a file, bytes beyond the synced size are dropped, never partly kept or garbled.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use tempfile::TempDir;

/// A file across renames: inode and birth time (seconds, nanoseconds).
type FileId = (u64, i64, u32);

/// The compiled shim and the files it works with.
pub struct Shim {
    dir: TempDir,
    library: PathBuf,
}

/// What [`Shim::cut_power`] did, for failure messages.
#[derive(Debug, Default)]
pub struct Cut {
    pub truncated: Vec<(String, u64, u64)>,
    pub removed: Vec<String>,
}

impl Shim {
    /// Compiles the shim with `cc` into a temporary directory.
    pub fn build() -> Shim {
        let dir = TempDir::new().unwrap();
        let library = dir.path().join("powercut-shim.so");
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/powercut/shim.c");
        let output = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(&library)
            .arg(source)
            .arg("-ldl")
            .output()
            .expect("cc runs (install build-essential)");
        assert!(
            output.status.success(),
            "the shim compiles: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Shim { dir, library }
    }

    fn journal(&self) -> PathBuf {
        self.dir.path().join("syncs.journal")
    }

    fn trigger(&self) -> PathBuf {
        self.dir.path().join("fail-syncs")
    }

    /// The environment that loads the shim into the broker.
    pub fn env(&self) -> Vec<(String, String)> {
        let path = |p: PathBuf| p.to_str().unwrap().to_owned();
        vec![
            ("LD_PRELOAD".into(), path(self.library.clone())),
            ("MQ9_SHIM_JOURNAL".into(), path(self.journal())),
            ("MQ9_SHIM_FAIL_SYNC_WHEN".into(), path(self.trigger())),
        ]
    }

    /// From now on every `fsync`/`fdatasync` of the broker fails with `EIO`.
    pub fn fail_syncs(&self) {
        std::fs::write(self.trigger(), b"").unwrap();
    }

    /// Syncs work again.
    pub fn restore_syncs(&self) {
        std::fs::remove_file(self.trigger()).unwrap();
    }

    /// Forgets the syncs journaled so far: call it when taking a [`Snapshot`].
    pub fn clear_journal(&self) {
        let _ = std::fs::remove_file(self.journal());
    }

    /// The syncs since the last [`Shim::clear_journal`], in order: (file, size before the sync).
    fn syncs(&self) -> Vec<(FileId, u64)> {
        let text = std::fs::read_to_string(self.journal()).unwrap_or_default();
        text.lines()
            .map(|line| {
                let mut fields = line.splitn(5, ' ');
                let mut next = || fields.next().expect("5 fields per journal line");
                let id = (
                    next().parse().unwrap(),
                    next().parse().unwrap(),
                    next().parse().unwrap(),
                );
                (id, next().parse().unwrap())
            })
            .collect()
    }

    /// Rolls `data_dir` (the broker is dead) back to what survives losing the page cache:
    /// see the module documentation.
    pub fn cut_power(&self, data_dir: &Path, durable: &Snapshot) -> Cut {
        let syncs = self.syncs();
        let dir_id = file_id(&std::fs::metadata(data_dir).unwrap());
        let last_dir_sync = syncs.iter().rposition(|(id, _)| *id == dir_id);
        let mut synced_size: HashMap<FileId, u64> = HashMap::new();
        let mut first_sync: HashMap<FileId, usize> = HashMap::new();
        for (at, (id, size)) in syncs.iter().enumerate() {
            synced_size.insert(*id, *size);
            first_sync.entry(*id).or_insert(at);
        }
        let mut cut = Cut::default();
        for entry in std::fs::read_dir(data_dir).unwrap() {
            let entry = entry.unwrap();
            let metadata = entry.metadata().unwrap();
            assert!(metadata.is_file(), "RocksDB's data dir is flat");
            let id = file_id(&metadata);
            let named_durably = durable.files.contains_key(&id)
                || last_dir_sync.is_some_and(|dir| first_sync.get(&id).is_some_and(|f| *f < dir));
            let keep = match synced_size.get(&id) {
                Some(size) if named_durably => Some(*size),
                Some(_) => None,
                None => durable.files.get(&id).copied(),
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            match keep {
                Some(size) if size < metadata.len() => {
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .open(entry.path())
                        .unwrap();
                    file.set_len(size).unwrap();
                    cut.truncated.push((name, metadata.len(), size));
                }
                Some(_) => {}
                None => {
                    std::fs::remove_file(entry.path()).unwrap();
                    cut.removed.push(name);
                }
            }
        }
        cut
    }
}

/// Every file of a data dir and its size, all declared durable.
pub struct Snapshot {
    files: HashMap<FileId, u64>,
}

impl Snapshot {
    pub fn take(data_dir: &Path) -> Snapshot {
        let files = std::fs::read_dir(data_dir)
            .unwrap()
            .map(|entry| {
                let metadata = entry.unwrap().metadata().unwrap();
                (file_id(&metadata), metadata.len())
            })
            .collect();
        Snapshot { files }
    }
}

fn file_id(metadata: &std::fs::Metadata) -> FileId {
    let born = metadata
        .created()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    (metadata.ino(), born.as_secs() as i64, born.subsec_nanos())
}
