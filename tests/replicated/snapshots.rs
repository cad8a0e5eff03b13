//! Snapshots bound the shards' logs, and a broker with an empty data directory catches up from
//! them: the logs no longer start at entry 1, so replaying them alone cannot rebuild a shard.

use async_nats::jetstream;
use tokio::io::AsyncReadExt;

use super::*;

/// Snapshots often, so a test's few writes get the logs trimmed.
const SNAPSHOT_OFTEN: &[&str] = &[
    "--snapshot-every",
    "8",
    "--snapshot-interval-secs",
    "1",
    "--snapshot-keep",
    "2",
];

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_broker_restores_snapshots_after_the_logs_were_trimmed() {
    let mut cluster = Cluster::start_with(SNAPSHOT_OFTEN).await;
    let names = cluster.create_mailboxes().await;
    let mut acked = Acked::default();
    // Writes until every shard's log was trimmed: it no longer starts at entry 1.
    let trimmed = |states: &[(u64, u64)]| states.iter().all(|(first, _)| *first > 1);
    let round = send_until(&cluster, &names, &mut acked, 0, "logs trimmed", trimmed).await;
    // The leaders show it: snapshots stored, and where each log starts now.
    snapshots_shown(&cluster).await;
    // Broker n2 goes, with its data; it comes back empty while SENDs go on.
    cluster.rejoin_empty(2);
    for round in round..round + 10 {
        acked.add(send_round(&cluster, &names, round).await);
    }
    serves_alone_from_restored_copies(&mut cluster, &acked).await;
}

/// A broker away while the logs were trimmed past its copy (not empty: behind) comes back,
/// restores snapshots over its old copy, and serves everything alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_behind_the_trimmed_logs_restores_over_its_old_copy() {
    let mut cluster = Cluster::start_with(SNAPSHOT_OFTEN).await;
    let names = cluster.create_mailboxes().await;
    let mut acked = Acked::default();
    for round in 0..3 {
        acked.add(send_round(&cluster, &names, round).await);
    }
    cluster.caught_up(2).await;
    let away_at = cluster.shard_metric(2, "mq9_shard_applied_sequence").await;
    cluster.kill(2, Kill::Broker);
    let past = |states: &[(u64, u64)]| {
        (0..SHARDS as usize).all(|shard| states[shard].0 as f64 > away_at[shard] + 1.0)
    };
    let why = "logs trimmed past n2's copy";
    send_until(&cluster, &names, &mut acked, 3, why, past).await;
    cluster.start_broker(2);
    serves_alone_from_restored_copies(&mut cluster, &acked).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_newest_snapshot_falls_back_to_the_previous_one() {
    let mut cluster = Cluster::start_with(SNAPSHOT_OFTEN).await;
    let names = cluster.create_mailboxes().await;
    let mut acked = Acked::default();
    // Writes until every shard keeps two snapshots (its log trimmed up to the older) and is
    // settled: so few entries past the newest one (at most 5, of the 8 that make one due; a
    // takeover adds one) that no snapshot is due or on its way while the test goes on.
    let bucket = snapshot_bucket(&cluster).await;
    let mut round = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    let kept = loop {
        let kept = snapshots(&bucket).await;
        let states = log_states(&cluster).await;
        let past_newest = |shard: usize| {
            let newest = kept.get(&shard).and_then(|kept| kept.last());
            states[shard].1 - newest.map_or(0, |(sequence, _)| *sequence)
        };
        let shards = 0..SHARDS as usize;
        if shards
            .clone()
            .all(|s| kept.get(&s).is_some_and(|k| k.len() == 2) && past_newest(s) <= 5)
        {
            break kept;
        }
        assert!(Instant::now() < deadline, "snapshots kept: {kept:?}");
        match shards.clone().any(|s| past_newest(s) >= 8) {
            // One is due or on its way: let it be stored.
            true => tokio::time::sleep(Duration::from_millis(100)).await,
            false => {
                acked.add(send_round(&cluster, &names, round).await);
                round += 1;
            }
        }
    };
    // Writes stop; each shard's newest snapshot is cut short.
    for kept in kept.values() {
        let (_, name) = kept.last().unwrap();
        let mut whole = Vec::new();
        let mut object = bucket.get(name).await.unwrap();
        object.read_to_end(&mut whole).await.unwrap();
        let cut = &whole[..whole.len() / 2];
        bucket.put(name.as_str(), &mut &cut[..]).await.unwrap();
    }
    let states = log_states(&cluster).await;
    assert!(states.iter().all(|(first, _)| *first > 1), "{states:?}");
    cluster.rejoin_empty(2);
    serves_alone_from_restored_copies(&mut cluster, &acked).await;
    let log = std::fs::read_to_string(cluster.dir.path().join("b2.log")).unwrap();
    let refused = log.matches("snapshot refused").count();
    assert_eq!(
        refused, SHARDS as usize,
        "each newest snapshot refused:\n{log}"
    );
}

/// n2, started empty, catches up by restoring one snapshot per shard; then the others go, and
/// it serves every acknowledged message from its restored copies.
async fn serves_alone_from_restored_copies(cluster: &mut Cluster, acked: &Acked) {
    cluster.caught_up(2).await;
    let restores = cluster.shard_metric(2, "mq9_shard_restores_total").await;
    assert_eq!(
        restores,
        vec![1.0; SHARDS as usize],
        "one restore per shard"
    );
    cluster.kill(0, Kill::Broker);
    cluster.kill(1, Kill::Broker);
    assert_served(cluster, &acked.by_mailbox).await;
}

/// Snapshots outlive their log when its streams are deleted and made again (a cluster reset by
/// hand, the bucket forgotten): brokers starting empty restore none of them (each ends past the
/// new log's last entry), so nothing the new log never held is served.
#[tokio::test(flavor = "multi_thread")]
async fn snapshots_of_a_deleted_log_are_not_restored() {
    let mut cluster = Cluster::start_with(SNAPSHOT_OFTEN).await;
    let names = cluster.create_mailboxes().await;
    let mut acked = Acked::default();
    let trimmed = |states: &[(u64, u64)]| states.iter().all(|(first, _)| *first > 1);
    send_until(&cluster, &names, &mut acked, 0, "logs trimmed", trimmed).await;
    snapshots_shown(&cluster).await;
    for pod in 0..3 {
        cluster.kill(pod, Kill::Broker);
    }
    let js = jetstream::new(cluster.clients[0].clone());
    for shard in 0..SHARDS {
        js.delete_stream(format!("MQ9_t_SHARD_{shard}"))
            .await
            .unwrap();
    }
    for pod in 0..3 {
        std::fs::remove_dir_all(cluster.dir.path().join(format!("b{pod}"))).unwrap();
        cluster.start_broker(pod);
    }
    // Every shard is served again, from its new, empty log.
    for name in &names {
        let query = format!("$mq9.AI.MSG.QUERY.{name}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let reply = loop {
            let reply = cluster
                .request(0, &query, b"{}".to_vec(), Duration::from_secs(2))
                .await;
            match reply {
                Some(reply) if reply["code"] != "unavailable" => break reply,
                _ => assert!(Instant::now() < deadline, "{name} never answered"),
            }
        };
        let served = reply["messages"].as_array().map_or(0, Vec::len);
        let what = format!("{name}: {served} messages the new log never held");
        assert_eq!(reply["code"], "not_found", "{what}");
    }
    for pod in 0..3 {
        let restores = cluster.shard_metric(pod, "mq9_shard_restores_total").await;
        assert_eq!(restores, vec![0.0; SHARDS as usize], "n{pod} restored");
    }
}

/// Sends rounds, from round `round` on, until the shards' logs are as `done` wants them (first
/// and last sequences, by shard); the next round.
async fn send_until(
    cluster: &Cluster,
    names: &[String],
    acked: &mut Acked,
    mut round: usize,
    what: &str,
    done: impl Fn(&[(u64, u64)]) -> bool,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&log_states(cluster).await) {
        assert!(Instant::now() < deadline, "never {what}");
        acked.add(send_round(cluster, names, round).await);
        round += 1;
    }
    round
}

/// Waits until the brokers' metrics show, for every shard, a snapshot stored (by whichever
/// led it) and a log that no longer starts at entry 1 (the leader notes it after its trim).
async fn snapshots_shown(cluster: &Cluster) {
    let deadline = Instant::now() + support::DEADLINE;
    loop {
        let mut taken = vec![0.0; SHARDS as usize];
        let mut log_first = vec![0.0; SHARDS as usize];
        for pod in 0..3 {
            let pod_taken = cluster.shard_metric(pod, "mq9_shard_snapshots_total").await;
            let pod_first = cluster.shard_metric(pod, "mq9_shard_log_first_sequence");
            for (shard, first) in pod_first.await.into_iter().enumerate() {
                taken[shard] += pod_taken[shard];
                log_first[shard] = first.max(log_first[shard]);
            }
        }
        if taken.iter().all(|n| *n >= 1.0) && log_first.iter().all(|n| *n > 1.0) {
            return;
        }
        let seen = format!("snapshots taken {taken:?}, logs start {log_first:?}");
        assert!(Instant::now() < deadline, "{seen}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first and last sequences each shard's log holds.
async fn log_states(cluster: &Cluster) -> Vec<(u64, u64)> {
    let js = jetstream::new(cluster.clients[0].clone());
    let mut states = Vec::new();
    for shard in 0..SHARDS {
        let mut stream = js.get_stream(format!("MQ9_t_SHARD_{shard}")).await.unwrap();
        let state = &stream.info().await.unwrap().state;
        states.push((state.first_sequence, state.last_sequence));
    }
    states
}

async fn snapshot_bucket(cluster: &Cluster) -> jetstream::object_store::ObjectStore {
    let js = jetstream::new(cluster.clients[0].clone());
    let deadline = Instant::now() + support::DEADLINE;
    loop {
        if let Ok(bucket) = js.get_object_store("MQ9_t_SNAPSHOTS").await {
            return bucket;
        }
        assert!(Instant::now() < deadline, "no snapshot bucket");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The snapshots in the bucket (`shard-<n>/<sequence>`): by shard, their sequences and names,
/// oldest first.
async fn snapshots(
    bucket: &jetstream::object_store::ObjectStore,
) -> BTreeMap<usize, Vec<(u64, String)>> {
    let names: Vec<String> = bucket
        .list()
        .await
        .unwrap()
        .map(|info| info.unwrap().name)
        .collect()
        .await;
    let mut by_shard: BTreeMap<usize, Vec<(u64, String)>> = BTreeMap::new();
    for name in names {
        let (shard, sequence) = name.split_once('/').unwrap();
        let shard = shard.strip_prefix("shard-").unwrap().parse().unwrap();
        let sequence = sequence.parse().unwrap();
        by_shard.entry(shard).or_default().push((sequence, name));
    }
    by_shard.values_mut().for_each(|kept| kept.sort());
    by_shard
}
