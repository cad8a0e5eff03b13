//! RocksDB persistence: the column families, their keys and records.
//!
//! The [`Store`] is owned by the engine thread alone. Writes are collected in a
//! [`rocksdb::WriteBatch`] and committed together (one WAL write, and one sync when a command in
//! the batch needs durability), so the store never holds half of a command.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `mailboxes` | address | [`MailboxRecord`] |
//! | `messages` | mailbox id · priority · msg_id | [`MessageRecord`] |
//! | `groups` | mailbox id · group name | the group's state (engine) |
//! | `slots` | mailbox id · compaction key | [`Slot`] (which message holds the key) |
//! | `mailbox_expiry` | expires_at · mailbox id | address |
//! | `message_expiry` | expires_at · mailbox id · priority · msg_id | address |
//! | `delayed` | visible_at · sequence | [`DelayedRecord`] |
//! | `subscriptions` | mailbox id · topic | `()` (durable broadcast subscriptions) |
//! | `agents` | identity (name, else mailbox) | [`AgentRecord`] |
//! | `agent_owners` | identity | the owning caller (`Caller::owner`), UTF-8 |
//! | `dedup` | mailbox id · `Nats-Msg-Id` | [`DedupRecord`] (the original SEND's msg_id) |
//! | `dedup_expiry` | expires_at · mailbox id · `Nats-Msg-Id` | `()` |
//! | `meta` | name | counters ([`META_NEXT_MAILBOX_ID`], [`META_NEXT_DELAY_SEQ`]), [`META_SIZE_RULE`] |
//!
//! Mailboxes are keyed internally by a numeric id that is never reused, so a re-created address
//! starts empty even before the old incarnation's data is physically removed.

mod keys;
mod migrate;
mod records;

pub use keys::*;
pub use migrate::{META_SIZE_RULE, SIZE_RULE};
pub use records::*;

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, Direction, IteratorMode, Options, ReadOptions,
    WriteBatch, DB,
};
use serde::{de::DeserializeOwned, Serialize};

pub const CF_MAILBOXES: &str = "mailboxes";
pub const CF_MESSAGES: &str = "messages";
pub const CF_GROUPS: &str = "groups";
pub const CF_SLOTS: &str = "slots";
pub const CF_MAILBOX_EXPIRY: &str = "mailbox_expiry";
pub const CF_MESSAGE_EXPIRY: &str = "message_expiry";
pub const CF_DELAYED: &str = "delayed";
pub const CF_SUBSCRIPTIONS: &str = "subscriptions";
pub const CF_AGENTS: &str = "agents";
/// Kept apart from `agents` so that entries written before identities existed still decode.
pub const CF_AGENT_OWNERS: &str = "agent_owners";
pub const CF_DEDUP: &str = "dedup";
pub const CF_DEDUP_EXPIRY: &str = "dedup_expiry";
pub const CF_META: &str = "meta";

/// The memtable size of the mailbox column families.
const MAILBOX_MEMTABLE_BYTES: usize = 8 << 20;

const ALL_CFS: [&str; 13] = [
    CF_MAILBOXES,
    CF_MESSAGES,
    CF_GROUPS,
    CF_SLOTS,
    CF_MAILBOX_EXPIRY,
    CF_MESSAGE_EXPIRY,
    CF_DELAYED,
    CF_SUBSCRIPTIONS,
    CF_AGENTS,
    CF_AGENT_OWNERS,
    CF_DEDUP,
    CF_DEDUP_EXPIRY,
    CF_META,
];

pub const META_NEXT_MAILBOX_ID: &[u8] = b"next_mailbox_id";
pub const META_NEXT_DELAY_SEQ: &[u8] = b"next_delay_seq";
/// A replicated shard's store: the last log sequence written into it (big-endian u64).
pub const META_REPLICATION_APPLIED: &[u8] = b"replication.applied";

/// A storage failure. The engine answers the affected commands with `internal` and reloads its
/// in-memory view from disk, so memory never runs ahead of what is stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt record in {cf}: {source}")]
    Corrupt {
        cf: &'static str,
        source: postcard::Error,
    },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The open database.
pub struct Store {
    /// Shared only with [`Checkpoints`]: every write still goes through the owner of the Store.
    db: Arc<DB>,
}

impl Store {
    /// Opens (or creates) the database under `dir`.
    pub fn open(dir: &Path) -> StoreResult<Store> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.increase_parallelism(2);
        // Bound the WAL so restarts replay little; the memtables flush on their own size.
        options.set_max_total_wal_size(256 << 20);
        let descriptors = ALL_CFS.map(|name| {
            let mut cf_options = Options::default();
            // Mailbox records are small, many and read from memory (the engine holds every
            // mailbox): a smaller memtable keeps the broker's memory per mailbox down. The
            // message column families keep RocksDB's default (64 MiB) for write throughput.
            if [CF_MAILBOXES, CF_MAILBOX_EXPIRY].contains(&name) {
                cf_options.set_write_buffer_size(MAILBOX_MEMTABLE_BYTES);
            }
            ColumnFamilyDescriptor::new(name, cf_options)
        });
        let db = DB::open_cf_descriptors(&options, dir, descriptors)?;
        let store = Store { db: Arc::new(db) };
        migrate::recount_sizes(&store)?;
        Ok(store)
    }

    /// A handle that takes checkpoints of this store from another thread than its owner's.
    pub fn checkpoints(&self) -> Checkpoints {
        Checkpoints {
            db: self.db.clone(),
        }
    }

    fn cf(&self, name: &'static str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family is created at open")
    }

    /// Writes a batch; `sync` waits for the WAL to reach the disk.
    pub fn write(&self, batch: WriteBatch, sync: bool) -> StoreResult<()> {
        let mut options = rocksdb::WriteOptions::default();
        options.set_sync(sync);
        self.db.write_opt(batch, &options)?;
        Ok(())
    }

    pub fn put<V: Serialize>(
        &self,
        batch: &mut WriteBatch,
        cf: &'static str,
        key: &[u8],
        value: &V,
    ) {
        batch.put_cf(self.cf(cf), key, encode(value));
    }

    pub fn put_raw(&self, batch: &mut WriteBatch, cf: &'static str, key: &[u8], value: &[u8]) {
        batch.put_cf(self.cf(cf), key, value);
    }

    pub fn delete(&self, batch: &mut WriteBatch, cf: &'static str, key: &[u8]) {
        batch.delete_cf(self.cf(cf), key);
    }

    /// Deletes every key of `cf` that starts with `prefix`.
    pub fn delete_prefix(&self, batch: &mut WriteBatch, cf: &'static str, prefix: &[u8]) {
        batch.delete_range_cf(self.cf(cf), prefix, &prefix_end(prefix));
    }

    pub fn get<V: DeserializeOwned>(&self, cf: &'static str, key: &[u8]) -> StoreResult<Option<V>> {
        match self.db.get_pinned_cf(self.cf(cf), key)? {
            Some(bytes) => decode(cf, &bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn get_u64(&self, cf: &'static str, key: &[u8]) -> StoreResult<u64> {
        Ok(be_u64(self.db.get_pinned_cf(self.cf(cf), key)?))
    }

    /// Visits the records whose keys lie in `[from, to)`, in key order or reversed, until `visit`
    /// returns `false`.
    pub fn scan<V: DeserializeOwned>(
        &self,
        cf: &'static str,
        from: &[u8],
        to: &[u8],
        reverse: bool,
        mut visit: impl FnMut(&[u8], V) -> bool,
    ) -> StoreResult<()> {
        let mut failure = None;
        self.scan_raw(cf, from, to, reverse, |key, value| {
            match decode(cf, value) {
                Ok(record) => visit(key, record),
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        })?;
        failure.map_or(Ok(()), Err)
    }

    /// As [`Store::scan`], with the values undecoded.
    pub fn scan_raw(
        &self,
        cf: &'static str,
        from: &[u8],
        to: &[u8],
        reverse: bool,
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> StoreResult<()> {
        for item in self.range(cf, from, to, reverse) {
            let (key, value) = item?;
            if !visit(&key, &value) {
                break;
            }
        }
        Ok(())
    }

    /// The raw entries whose keys lie in `[from, to)`, in key order or reversed.
    fn range(
        &self,
        cf: &'static str,
        from: &[u8],
        to: &[u8],
        reverse: bool,
    ) -> rocksdb::DBIteratorWithThreadMode<'_, DB> {
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(from.to_vec());
        read.set_iterate_upper_bound(to.to_vec());
        let mode = if reverse {
            IteratorMode::End
        } else {
            IteratorMode::From(from, Direction::Forward)
        };
        self.db.iterator_cf_opt(self.cf(cf), read, mode)
    }

    /// The records whose keys lie in `[from, to)`, in key order or reversed, as an iterator:
    /// for reads that walk several ranges side by side (a merge), which a callback cannot.
    pub fn iter<'a, V: DeserializeOwned + 'a>(
        &'a self,
        cf: &'static str,
        from: &[u8],
        to: &[u8],
        reverse: bool,
    ) -> impl Iterator<Item = StoreResult<(Box<[u8]>, V)>> + 'a {
        self.range(cf, from, to, reverse).map(move |item| {
            let (key, value) = item?;
            Ok((key, decode(cf, &value)?))
        })
    }

    /// The first key at or after `from`.
    pub fn first_key(&self, cf: &'static str, from: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(from.to_vec());
        let mode = IteratorMode::From(from, Direction::Forward);
        match self.db.iterator_cf_opt(self.cf(cf), read, mode).next() {
            Some(Ok((key, _))) => Ok(Some(key.to_vec())),
            Some(Err(e)) => Err(e.into()),
            None => Ok(None),
        }
    }

    /// Visits every record whose key starts with `prefix`.
    pub fn scan_prefix<V: DeserializeOwned>(
        &self,
        cf: &'static str,
        prefix: &[u8],
        visit: impl FnMut(&[u8], V) -> bool,
    ) -> StoreResult<()> {
        self.scan(cf, prefix, &prefix_end(prefix), false, visit)
    }
}

/// Takes consistent copies of an open store beside the thread that writes it (a replicated
/// shard's snapshots). It keeps the database open: drop it before the store is opened again.
#[derive(Clone)]
pub struct Checkpoints {
    db: Arc<DB>,
}

impl Checkpoints {
    /// Writes a RocksDB checkpoint of the store into `dir` (which must not exist; on the same
    /// file system, its files are hard links, so this is cheap: one memtable flush) and returns
    /// the log sequence the copy holds ([`META_REPLICATION_APPLIED`], read from the copy itself,
    /// so it matches its contents whatever was written meanwhile).
    pub fn create(&self, dir: &Path) -> StoreResult<u64> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(dir)?;
        applied_in(dir)
    }
}

/// The log sequence ([`META_REPLICATION_APPLIED`]) a closed store (a checkpoint) holds, opened
/// read-only.
pub fn applied_in(dir: &Path) -> StoreResult<u64> {
    let db = DB::open_cf_for_read_only(&Options::default(), dir, ALL_CFS, false)?;
    let meta = db
        .cf_handle(CF_META)
        .expect("opened with every column family");
    let applied = be_u64(db.get_pinned_cf(meta, META_REPLICATION_APPLIED)?);
    Ok(applied)
}

/// A stored big-endian u64 (0 when absent or not 8 bytes long).
fn be_u64(stored: Option<rocksdb::DBPinnableSlice<'_>>) -> u64 {
    stored
        .and_then(|bytes| bytes.as_ref().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0)
}

/// Serializes a record (postcard: compact, versioned by field order).
pub fn encode<V: Serialize>(value: &V) -> Vec<u8> {
    postcard::to_allocvec(value).expect("records always serialize")
}

/// Deserializes a record read from `cf`.
pub fn decode<V: DeserializeOwned>(cf: &'static str, bytes: &[u8]) -> StoreResult<V> {
    postcard::from_bytes(bytes).map_err(|source| StoreError::Corrupt { cf, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_applied(store: &Store, sequence: u64) {
        let mut batch = WriteBatch::default();
        let value = sequence.to_be_bytes();
        store.put_raw(&mut batch, CF_META, META_REPLICATION_APPLIED, &value);
        store.write(batch, false).unwrap();
    }

    #[test]
    fn a_checkpoint_holds_the_sequence_of_its_moment_whatever_is_written_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        set_applied(&store, 41);
        let copy = dir.path().join("copy");
        assert_eq!(store.checkpoints().create(&copy).unwrap(), 41);
        set_applied(&store, 42);
        assert_eq!(applied_in(&copy).unwrap(), 41);
        drop(store);
        let reopened = Store::open(&copy).unwrap();
        assert_eq!(
            reopened.get_u64(CF_META, META_REPLICATION_APPLIED).unwrap(),
            41
        );
    }
}
