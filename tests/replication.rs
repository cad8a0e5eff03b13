//! The replicated data plane's parts on a real three-server JetStream cluster (replication.md):
//! a shard is led by one broker at a time, its lease frees itself when the holder stops
//! renewing, and a leader that lost the shard cannot append to its log (fencing).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use mq9::natsd::{self, NatsServer};
use mq9::replication::lease::{LeaseError, Leases};
use mq9::replication::log::{AppendError, LogEntry, ShardLog};

/// Three clustered nats-servers with JetStream, in a temporary directory.
struct Cluster {
    servers: Vec<NatsServer>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let servers = natsd::start_cluster(dir.path(), 3, None, None, false)
            .await
            .unwrap();
        Cluster { servers, _dir: dir }
    }

    /// A JetStream context through server `i`.
    async fn jetstream(&self, i: usize) -> async_nats::jetstream::Context {
        let client = async_nats::connect(self.servers[i].url()).await.unwrap();
        async_nats::jetstream::new(client)
    }
}

const TTL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_has_one_leader_until_it_stops_renewing() {
    let cluster = Cluster::start().await;
    let a = Leases::open(&cluster.jetstream(0).await, "agents", 3, "pod-a", TTL)
        .await
        .unwrap();
    let b = Leases::open(&cluster.jetstream(1).await, "agents", 3, "pod-b", TTL)
        .await
        .unwrap();
    let mut lease = a.acquire(3).await.unwrap().expect("a free shard is taken");
    assert_eq!(b.acquire(3).await.unwrap(), None, "one leader at a time");
    assert!(
        b.acquire(4).await.unwrap().is_some(),
        "other shards are free"
    );
    assert_eq!(b.holder(3).await.unwrap().as_deref(), Some("pod-a"));

    // Renewing every third of the lease keeps it past its ttl.
    let renewed_until = Instant::now() + 2 * TTL;
    while Instant::now() < renewed_until {
        tokio::time::sleep(a.renew_every()).await;
        a.renew(&mut lease).await.expect("the holder renews");
        assert_eq!(b.acquire(3).await.unwrap(), None, "a renewed lease holds");
    }

    // The holder stops renewing (a paused or dead broker): the shard frees itself.
    let stopped = Instant::now();
    let mut taken = None;
    while taken.is_none() {
        assert!(stopped.elapsed() < 4 * TTL, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
        taken = b.acquire(3).await.unwrap();
    }
    assert!(stopped.elapsed() >= TTL / 2, "not before the lease ran out");
    assert_eq!(a.holder(3).await.unwrap().as_deref(), Some("pod-b"));
    assert!(
        matches!(a.renew(&mut lease).await, Err(LeaseError::Lost(3))),
        "the old holder learns it lost the shard"
    );

    // A clean hand-off frees the shard at once.
    b.release(taken.unwrap()).await.unwrap();
    assert!(a.acquire(3).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_that_lost_the_shard_cannot_append() {
    let cluster = Cluster::start().await;
    let old = ShardLog::open(&cluster.jetstream(0).await, "agents", 7, 3)
        .await
        .unwrap();
    let new = ShardLog::open(&cluster.jetstream(1).await, "agents", 7, 3)
        .await
        .unwrap();
    let mut last = 0;
    for entry in ["one", "two"] {
        last = old.append(Bytes::from(entry), last).await.unwrap();
    }
    assert_eq!(last, 2);
    // The new leader appends its takeover entry after what it saw last.
    let seen = new.last_sequence().await.unwrap();
    assert_eq!(seen, last);
    let takeover = new.append(Bytes::from("takeover"), seen).await.unwrap();
    // The old one, resumed, tries to go on where it stopped: refused, nothing stored.
    let refused = old.append(Bytes::from("stale"), last).await;
    assert!(
        matches!(
            refused,
            Err(AppendError::Fenced {
                shard: 7,
                expected: 2
            })
        ),
        "{refused:?}"
    );
    assert_eq!(new.last_sequence().await.unwrap(), takeover);
    let entries: Vec<LogEntry> = new
        .read(1)
        .await
        .unwrap()
        .take(3)
        .map(Result::unwrap)
        .collect()
        .await;
    let payloads: Vec<&[u8]> = entries.iter().map(|e| e.payload.as_ref()).collect();
    assert_eq!(payloads, [&b"one"[..], b"two", b"takeover"]);
    let sequences: Vec<(u64, u64)> = entries.iter().map(|e| (e.sequence, e.pending)).collect();
    assert_eq!(
        sequences,
        [(1, 2), (2, 1), (3, 0)],
        "each with what followed it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_append_without_a_quorum_is_never_acknowledged() {
    let mut cluster = Cluster::start().await;
    let log = ShardLog::open(&cluster.jetstream(0).await, "agents", 1, 3)
        .await
        .unwrap();
    let last = log.append(Bytes::from("stored"), 0).await.unwrap();
    // Two of three servers gone: no quorum for the stream.
    for server in cluster.servers.drain(1..) {
        server.stop().unwrap();
    }
    let appended = log.append(Bytes::from("unsure"), last).await;
    assert!(
        matches!(appended, Err(AppendError::Unavailable { shard: 1, .. })),
        "{appended:?}"
    );
}
