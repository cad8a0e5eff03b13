//! Brokers that come back: one with an empty data directory catches up from the logs while
//! writes go on, then serves every acknowledged message alone; a rolling restart of all three
//! loses nothing acknowledged.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_broker_catches_up_and_serves_everything() {
    let mut cluster = Cluster::start().await;
    let names = cluster.create_mailboxes().await;
    let mut acked: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for round in 0..5 {
        for (name, payload) in send_round(&cluster, &names, round).await {
            acked.entry(name).or_default().push(payload);
        }
    }
    // Broker n2 goes, with its data; it comes back empty while SENDs go on.
    cluster.kill(2, Kill::Broker);
    let data_dir = cluster.dir.path().join("b2");
    std::fs::remove_dir_all(&data_dir).unwrap();
    let http = support::free_port();
    cluster.brokers[2] = Some(broker(cluster.servers[2].url(), &data_dir, 2, http));
    cluster.http[2] = http;
    for round in 5..15 {
        for (name, payload) in send_round(&cluster, &names, round).await {
            acked.entry(name).or_default().push(payload);
        }
    }
    // n2's copy catches up with the leaders' (followers apply as the logs grow).
    let deadline = Instant::now() + support::DEADLINE;
    loop {
        let theirs = [
            cluster.shard_metric(0, "mq9_shard_applied_sequence").await,
            cluster.shard_metric(1, "mq9_shard_applied_sequence").await,
        ];
        let ours = cluster.shard_metric(2, "mq9_shard_applied_sequence").await;
        let caught_up = (0..SHARDS as usize).all(|s| ours[s] >= theirs[0][s].max(theirs[1][s]));
        if caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n2 {ours:?}, the others {theirs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The others go: n2 takes every shard over from its own, rebuilt copy.
    cluster.kill(0, Kill::Broker);
    cluster.kill(1, Kill::Broker);
    assert_served(&cluster, &acked).await;
}

/// One SEND to each mailbox through pod 0 or 1; the acknowledged ones, with their payloads as
/// the protocol shows them.
async fn send_round(cluster: &Cluster, names: &[String], round: usize) -> Vec<(String, String)> {
    let mut sent = Vec::new();
    for name in names {
        let payload = format!("{name} #{round}");
        let subject = format!("$mq9.AI.MSG.SEND.{name}");
        let body = payload.clone().into_bytes();
        let reply = cluster
            .request(round % 2, &subject, body, Duration::from_secs(2))
            .await;
        if reply.is_some_and(|r| r["error"] == "") {
            sent.push((name.clone(), base64(payload.as_bytes())));
        }
    }
    sent
}

/// A rolling restart (SIGTERM, then started again on the same data, one broker at a time)
/// while SENDs go on: every acknowledged message is served afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_loses_no_acknowledged_message() {
    let mut cluster = Cluster::start().await;
    let names = cluster.create_mailboxes().await;
    let mut acked: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for round in 0..20 {
        if round % 5 == 4 && round < 15 {
            cluster.restart(round / 5).await;
        }
        for (name, payload) in send_round(&cluster, &names, round).await {
            acked.entry(name).or_default().push(payload);
        }
    }
    assert!(acked.values().all(|sent| !sent.is_empty()));
    assert_served(&cluster, &acked).await;
}

/// Every mailbox serves (QUERY) every payload `acked` lists for it.
async fn assert_served(cluster: &Cluster, acked: &BTreeMap<String, Vec<String>>) {
    for (name, payloads) in acked {
        let query = format!("$mq9.AI.MSG.QUERY.{name}");
        let stored = cluster.until_ok(&query, r#"{"limit":1000}"#).await;
        let stored: BTreeSet<&str> = stored["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["payload"].as_str().unwrap())
            .collect();
        for payload in payloads {
            assert!(
                stored.contains(payload.as_str()),
                "{name}: an acknowledged message is served"
            );
        }
    }
}
