//! Shard leadership: one key per shard in a JetStream key-value bucket (replicated like the
//! logs), created by the broker that takes the shard and renewed with its revision.
//!
//! - **Acquire** creates the key `shard.<n>`; it fails while someone holds it.
//! - **Renew** updates the key expecting the revision the holder last wrote: a holder that was
//!   paused past its lease finds another's revision there and learns it lost the shard.
//! - **Expiry** is the bucket's `max_age`: every write of the key ages out `ttl` after it was
//!   written, on the servers' clocks, so a holder that stops renewing (dead, paused,
//!   partitioned) frees the shard without anyone's clock being trusted. Holders renew every
//!   third of the ttl.
//!
//! Brokers also announce themselves (`node.<name>`, aging out the same way), so each knows how
//! many are alive and leads at most its share of the shards.
//!
//! A lease alone does not fence: a paused holder does not know it lost the lease until it next
//! talks to JetStream. The log does ([`super::log`]): a new holder appends to the shard's log
//! before it serves, and every append expects the last sequence its writer saw, so the old
//! holder's next append fails.

use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::{self, stream::StorageType};
use bytes::Bytes;
use futures::TryStreamExt;

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another broker holds the shard now (or the key expired and was taken).
    #[error("the lease of shard {0} was lost")]
    Lost(u32),
    /// JetStream did not answer (no quorum, no connection).
    #[error("the lease bucket is unavailable: {0}")]
    Unavailable(String),
}

/// The lease bucket of one Broker's shards, used by one broker (`holder`).
#[derive(Clone)]
pub struct Leases {
    bucket: kv::Store,
    holder: String,
    ttl: Duration,
}

/// A shard held by this broker, at the revision it last wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub shard: u32,
    revision: u64,
}

impl Leases {
    /// Opens (creating when missing) the bucket `MQ9_LEASES_<cluster>` with `replicas` copies
    /// and leases lasting `ttl`.
    pub async fn open(
        js: &jetstream::Context,
        cluster: &str,
        replicas: usize,
        holder: &str,
        ttl: Duration,
    ) -> Result<Leases, LeaseError> {
        let config = kv::Config {
            bucket: bucket_name(cluster),
            description: "mq9 shard leaders".into(),
            history: 1,
            max_age: ttl,
            storage: StorageType::File,
            num_replicas: replicas,
            ..kv::Config::default()
        };
        let bucket = js
            .create_key_value(config)
            .await
            .map_err(|e| LeaseError::Unavailable(e.to_string()))?;
        Ok(Leases {
            bucket,
            holder: holder.to_owned(),
            ttl,
        })
    }

    /// How often a holder renews: a third of the lease.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Takes `shard` when nobody holds it; `Ok(None)` while someone does.
    pub async fn acquire(&self, shard: u32) -> Result<Option<Lease>, LeaseError> {
        let value = Bytes::from(self.holder.clone());
        match self.bucket.create(key(shard), value).await {
            Ok(revision) => Ok(Some(Lease { shard, revision })),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(LeaseError::Unavailable(e.to_string())),
        }
    }

    /// Renews `lease` for another ttl; [`LeaseError::Lost`] when someone else holds it now.
    pub async fn renew(&self, lease: &mut Lease) -> Result<(), LeaseError> {
        let value = Bytes::from(self.holder.clone());
        let updated = self.bucket.update(key(lease.shard), value, lease.revision);
        match updated.await {
            Ok(revision) => {
                lease.revision = revision;
                Ok(())
            }
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                Err(LeaseError::Lost(lease.shard))
            }
            Err(e) => Err(LeaseError::Unavailable(e.to_string())),
        }
    }

    /// Gives `lease` up at once (a clean hand-off): the shard is free for the next acquire.
    /// Nothing happens when someone else holds it already.
    pub async fn release(&self, lease: Lease) -> Result<(), LeaseError> {
        let deleted = self
            .bucket
            .delete_expect_revision(key(lease.shard), Some(lease.revision));
        deleted.await.or_else(|e| match e.kind() {
            kv::DeleteErrorKind::WrongLastRevision => Ok(()),
            _ => Err(LeaseError::Unavailable(e.to_string())),
        })
    }

    /// Says this broker is alive (`node.<holder>`, aging out like a lease): renewed with the
    /// leases, it makes [`Leases::live_brokers`] count it.
    pub async fn announce(&self) -> Result<(), LeaseError> {
        let value = Bytes::from(self.holder.clone());
        let key = format!("node.{}", self.holder);
        self.bucket
            .put(key, value)
            .await
            .map(drop)
            .map_err(|e| LeaseError::Unavailable(e.to_string()))
    }

    /// How many brokers announced themselves within the last lease.
    pub async fn live_brokers(&self) -> Result<usize, LeaseError> {
        Ok(self.live_nodes().await?.len())
    }

    /// The names of the brokers that announced themselves within the last lease.
    pub async fn live_nodes(&self) -> Result<Vec<String>, LeaseError> {
        let unavailable = |e: &dyn std::fmt::Display| LeaseError::Unavailable(e.to_string());
        let keys = self.bucket.keys().await.map_err(|e| unavailable(&e))?;
        let keys: Vec<String> = keys.try_collect().await.map_err(|e| unavailable(&e))?;
        Ok(keys
            .iter()
            .filter_map(|k| k.strip_prefix("node.").map(str::to_owned))
            .collect())
    }

    /// Who holds `shard` now, if anyone.
    pub async fn holder(&self, shard: u32) -> Result<Option<String>, LeaseError> {
        let entry = self.bucket.entry(key(shard)).await;
        let entry = entry.map_err(|e| LeaseError::Unavailable(e.to_string()))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| String::from_utf8_lossy(&e.value).into_owned()))
    }
}

/// The lease bucket of `cluster`: `MQ9_LEASES_<cluster>` (its stream: `KV_MQ9_LEASES_<cluster>`).
pub fn bucket_name(cluster: &str) -> String {
    format!("MQ9_LEASES_{cluster}")
}

fn key(shard: u32) -> String {
    format!("shard.{shard}")
}
