//! A request to a shard without a leader (its leader's broker died, its lease has not run out)
//! waits for the next leader instead of meeting "no responders"; past `--leader-wait-secs` it
//! is answered `unavailable` and nothing of it is stored.

use futures::FutureExt;

use super::*;

/// A mailbox (one per shard is created) and the pod whose broker leads its shard.
async fn a_mailbox_led_by_a_victim(cluster: &Cluster) -> (String, usize) {
    let names = cluster.create_mailboxes().await;
    let holders = cluster.leaders().await;
    let name = names.into_iter().next().unwrap();
    let leader = &holders[&shard_of(&name, SHARDS)];
    (name, leader.trim_start_matches('n').parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_to_a_shard_whose_leader_died_waits_for_the_next_one() {
    let mut cluster = Cluster::start().await;
    let (name, victim) = a_mailbox_led_by_a_victim(&cluster).await;
    // The dead leader's lease holds the shard for up to two more seconds: nobody serves it.
    cluster.kill(victim, Kill::Broker);
    let send = format!("$mq9.AI.MSG.SEND.{name}");
    let sent = cluster
        .request(
            (victim + 1) % 3,
            &send,
            b"waited".to_vec(),
            support::DEADLINE,
        )
        .await;
    assert_eq!(
        sent.as_ref().map(|s| s["error"].clone()),
        Some(json!("")),
        "answered by the next leader: {sent:?}"
    );
    let stored = cluster
        .until_ok(&format!("$mq9.AI.MSG.QUERY.{name}"), "{}")
        .await;
    assert_eq!(stored["messages"][0]["payload"], base64(b"waited"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_leaderless_for_the_whole_wait_is_answered_unavailable() {
    // The lease (5 s) outlasts the wait (1 s): nobody can lead the shard in time.
    let flags = ["--leader-wait-secs", "1", "--lease-secs", "5"];
    let mut cluster = Cluster::start_with(&flags).await;
    let (name, victim) = a_mailbox_led_by_a_victim(&cluster).await;
    cluster.kill(victim, Kill::Broker);
    // A broadcast published as a request: its live subscribers answer it, never the broker,
    // not even for the shard that cannot store it.
    let client = &cluster.clients[(victim + 1) % 3];
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(inbox.clone()).await.unwrap();
    let broadcast = "$mq9.AI.BROADCAST.jobs.new".to_owned();
    client
        .publish_with_reply(broadcast, inbox, "work".into())
        .await
        .unwrap();
    let started = Instant::now();
    let send = format!("$mq9.AI.MSG.SEND.{name}");
    let sent = cluster
        .request(
            (victim + 1) % 3,
            &send,
            b"too late".to_vec(),
            support::DEADLINE,
        )
        .await
        .expect("an answer, not silence");
    let waited = started.elapsed();
    assert_eq!(sent["code"], "unavailable", "{sent}");
    assert!(
        sent["error"].as_str().unwrap().contains("no leader"),
        "{sent}"
    );
    assert!(
        waited >= Duration::from_millis(900),
        "answered after {waited:?}, before the wait"
    );
    let stored = cluster
        .until_ok(&format!("$mq9.AI.MSG.QUERY.{name}"), "{}")
        .await;
    assert_eq!(stored["messages"], json!([]), "refused means not stored");
    // The broadcast's forwards gave up before the SEND's (they started first).
    client.flush().await.unwrap();
    let answered = answers.next().now_or_never().flatten();
    assert!(
        answered.is_none(),
        "the broker answered a broadcast: {answered:?}"
    );
}
