//! Any pod serves any mailbox, and cluster-wide answers see every shard.

use super::*;

/// Every mailbox answers through every pod: created through one, sent to through another,
/// fetched through the third.
#[tokio::test(flavor = "multi_thread")]
async fn any_pod_serves_any_mailbox() {
    let cluster = Cluster::start().await;
    // Leaders spread over the brokers: none leads more than its share, ceil(4 / 3).
    let holders = cluster.leaders().await;
    for node in ["n0", "n1", "n2"] {
        let led = holders.values().filter(|h| *h == node).count();
        assert!(led <= 2, "{node} leads {led} shards: {holders:?}");
    }
    for (i, name) in mailboxes().iter().enumerate() {
        cluster
            .until_ok("$mq9.AI.MAILBOX.CREATE", &json!({"name": name}).to_string())
            .await;
        let send = format!("$mq9.AI.MSG.SEND.{name}");
        let sent = cluster
            .request((i + 1) % 3, &send, b"hello".to_vec(), support::DEADLINE)
            .await;
        assert_eq!(
            sent.as_ref().map(|s| s["error"].clone()),
            Some(json!("")),
            "{sent:?}"
        );
        let fetch = format!("$mq9.AI.MSG.FETCH.{name}");
        let body = json!({"group_name": "g"}).to_string().into_bytes();
        let fetched = cluster
            .request((i + 2) % 3, &fetch, body, support::DEADLINE)
            .await
            .unwrap();
        assert_eq!(
            fetched["messages"][0]["payload"],
            base64(b"hello"),
            "{fetched}"
        );
    }
    let created = cluster.until_ok("$mq9.AI.MAILBOX.CREATE", "{}").await;
    let address = created["mail_address"].as_str().unwrap();
    let send = format!("$mq9.AI.MSG.SEND.{address}");
    let sent = cluster
        .request(2, &send, b"to a made address".to_vec(), support::DEADLINE)
        .await;
    assert_eq!(
        sent.unwrap()["error"],
        "",
        "an address the cluster made is served"
    );

    // LIST (two at a time) and STATS see every shard's mailboxes, as from one broker.
    let mut expected: Vec<String> = mailboxes();
    expected.push(address.to_owned());
    expected.sort();
    let mut listed = Vec::new();
    let mut after = Value::Null;
    loop {
        let body = json!({"limit": 2, "after": after}).to_string();
        let page = cluster.until_ok("$mq9.ADMIN.MAILBOX.LIST", &body).await;
        let names = page["mailboxes"].as_array().unwrap();
        listed.extend(names.iter().map(|m| m["name"].as_str().unwrap().to_owned()));
        if page["more"] == false {
            break;
        }
        after = page["next_after"].clone();
    }
    assert_eq!(listed, expected);
    let stats = cluster.until_ok("$mq9.ADMIN.STATS", "{}").await;
    assert_eq!(stats["mailboxes"], expected.len(), "{stats}");
    assert_eq!(
        stats["messages"],
        expected.len(),
        "one message each: {stats}"
    );
}

/// Each broker's /metrics says which shards it leads (one leader per shard across the
/// cluster) and how far its copy of each shard is: the followers catch up with the leaders.
#[tokio::test(flavor = "multi_thread")]
async fn shard_metrics_show_leaders_and_followers_catching_up() {
    let cluster = Cluster::start().await;
    cluster.create_mailboxes().await;
    let deadline = Instant::now() + support::DEADLINE;
    loop {
        let mut leaders = vec![0.0; SHARDS as usize];
        let mut applied = vec![Vec::new(); SHARDS as usize];
        for pod in 0..3 {
            let led = cluster.shard_metric(pod, "mq9_shard_leader").await;
            let copies = cluster
                .shard_metric(pod, "mq9_shard_applied_sequence")
                .await;
            for shard in 0..SHARDS as usize {
                leaders[shard] += led[shard];
                applied[shard].push(copies[shard]);
            }
        }
        let one_leader_each = leaders.iter().all(|n| *n == 1.0);
        // Every shard has its takeover entry and a CREATE at least; all three copies equal.
        let caught_up = applied
            .iter()
            .all(|copies| copies[0] >= 2.0 && copies.iter().all(|c| *c == copies[0]));
        if one_leader_each && caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leaders {leaders:?}, applied sequences {applied:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `$mq9.ADMIN.SHARDS`, the operator's view, through every pod: the lease holders, the live
/// brokers, every log with its quorum; a killed broker drops out and its shards are led again.
#[tokio::test(flavor = "multi_thread")]
async fn shards_report_leaders_and_live_brokers_through_every_pod() {
    let mut cluster = Cluster::start().await;
    let holders = cluster.leaders().await;
    let expected = |holders: &BTreeMap<u32, String>, live: &[&str]| {
        let leaders: serde_json::Map<String, Value> = holders
            .iter()
            .map(|(shard, node)| (shard.to_string(), json!(node)))
            .collect();
        json!({"error": "", "shards": SHARDS, "leaders": leaders, "live": live,
               "without_quorum": []})
    };
    for pod in 0..3 {
        let want = expected(&holders, &["n0", "n1", "n2"]);
        until_reported(&cluster, pod, |report| *report == want).await;
    }
    cluster.kill(2, Kill::Broker);
    let report = until_reported(&cluster, 0, |report| {
        let leaders = report["leaders"].as_object().map(|l| l.values().cloned());
        report["live"] == json!(["n0", "n1"])
            && leaders.is_some_and(|mut l| l.len() == SHARDS as usize && l.all(|n| n != "n2"))
    })
    .await;
    assert_eq!(report["without_quorum"], json!([]), "{report}");
}

/// The SHARDS report through `pod`, once `wanted` holds of it.
async fn until_reported(cluster: &Cluster, pod: usize, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let report = cluster
            .request(pod, "$mq9.ADMIN.SHARDS", b"{}".to_vec(), support::DEADLINE)
            .await;
        match report {
            Some(report) if wanted(&report) => return report,
            report => assert!(Instant::now() < deadline, "pod {pod} reports {report:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
