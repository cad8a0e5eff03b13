//! Failover: a killed or paused leader loses no acknowledged write and answers nothing as
//! success.

use super::*;

/// kill -9 of the broker that leads the most shards while SENDs go on: its mailboxes are
/// served again within 5 s (one lease of 2 s, then the takeover).
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_leader_broker_loses_no_acknowledged_message() {
    let served_again = kill_under_load(Kill::Broker).await;
    assert!(served_again <= Duration::from_secs(5), "{served_again:?}");
}

/// kill -9 of that broker's nats-server: the broker can no longer renew its leases, and the
/// shards' streams and the lease bucket may lose their JetStream leader, which JetStream
/// replaces within seconds (0.5–8.5 s until served again measured here; the bound leaves room
/// for a slow machine).
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_leader_nats_server_loses_no_acknowledged_message() {
    let served_again = kill_under_load(Kill::Server).await;
    assert!(served_again <= Duration::from_secs(30), "{served_again:?}");
}

/// kill -9 of both: the whole pod.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_leader_pod_loses_no_acknowledged_message() {
    let served_again = kill_under_load(Kill::Pod).await;
    assert!(served_again <= Duration::from_secs(30), "{served_again:?}");
}

/// SENDs to a mailbox of every shard through the surviving pods, round after round (each
/// waiting up to 0.5 s for its answers: the times are measured to that); after ten rounds `what` of the pod that leads the most shards is killed. Every acknowledged message
/// is there afterwards, with its payload, under one msg_id each; only `unavailable` is ever
/// answered as an error. How long the killed leader's mailboxes took to be served again (the
/// slowest of them).
async fn kill_under_load(what: Kill) -> Duration {
    let mut cluster = Cluster::start().await;
    let names = cluster.create_mailboxes().await;
    // The broker that leads the most shards is the one to kill; its mailboxes are timed.
    let holders = cluster.leaders().await;
    let victim = (0..3)
        .max_by_key(|i| holders.values().filter(|h| **h == format!("n{i}")).count())
        .unwrap();
    let orphaned: BTreeSet<&String> = names
        .iter()
        .filter(|name| holders[&shard_of(name, SHARDS)] == format!("n{victim}"))
        .collect();
    assert!(!orphaned.is_empty(), "the victim leads shards: {holders:?}");
    let survivors = [0, 1, 2]
        .into_iter()
        .filter(|i| *i != victim)
        .collect::<Vec<_>>();
    let mut acked: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    let mut killed_at = None;
    let mut served_again: BTreeMap<String, Duration> = BTreeMap::new();
    for round in 0..120 {
        if round == 10 {
            cluster.kill(victim, what);
            killed_at = Some(Instant::now());
        }
        let sends = names.iter().enumerate().map(|(i, name)| {
            let payload = format!("{name} #{round}");
            let subject = format!("$mq9.AI.MSG.SEND.{name}");
            let pod = survivors[(i + round) % 2]; // any pod would do: the servers stay up
            let cluster = &cluster;
            async move {
                let reply = cluster
                    .request(
                        pod,
                        &subject,
                        payload.clone().into_bytes(),
                        Duration::from_millis(500),
                    )
                    .await;
                (name.clone(), payload, reply)
            }
        });
        for (name, payload, reply) in futures::future::join_all(sends).await {
            let Some(reply) = reply else { continue };
            if reply["error"] != "" {
                assert_eq!(
                    reply["code"], "unavailable",
                    "only unavailable, never a wrong answer: {reply}"
                );
                continue;
            }
            let msg_id = reply["msg_id"].as_u64().expect("a msg_id");
            if let (Some(at), true) = (killed_at, orphaned.contains(&name)) {
                served_again
                    .entry(name.clone())
                    .or_insert_with(|| at.elapsed());
            }
            acked
                .entry(name)
                .or_default()
                .push((msg_id, base64(payload.as_bytes())));
        }
    }
    let slowest = orphaned
        .iter()
        .map(|name| {
            *served_again
                .get(*name)
                .expect("served again after the kill")
        })
        .max()
        .expect("the victim led shards");
    for name in &names {
        let fetch = format!("$mq9.AI.MSG.QUERY.{name}");
        let stored = cluster.until_ok(&fetch, r#"{"limit":1000}"#).await;
        let stored: BTreeMap<u64, String> = stored["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["msg_id"].as_u64().unwrap(),
                    m["payload"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        let acked = acked.get(name).cloned().unwrap_or_default();
        let ids: BTreeSet<u64> = acked.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), acked.len(), "{name}: no msg_id given twice");
        for (msg_id, payload) in &acked {
            assert_eq!(
                stored.get(msg_id),
                Some(payload),
                "{name}: acknowledged {msg_id} is stored"
            );
        }
    }
    eprintln!("{what:?} killed: its mailboxes served again after {served_again:?}");
    slowest
}

/// A leader paused past its lease (SIGSTOP) loses its shard to another broker; resumed
/// (SIGCONT), it answers nothing as success: its appends are fenced. SENDs published to the
/// shard's forwarding subject reach both the new leader and the paused one; every success any
/// of them answers names the one msg_id stored with that payload.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_leader_answers_nothing_as_success() {
    let cluster = Cluster::start().await;
    let name = &mailboxes()[0];
    cluster
        .until_ok("$mq9.AI.MAILBOX.CREATE", &json!({"name": name}).to_string())
        .await;
    let shard = shard_of(name, SHARDS);
    let before = cluster.leaders().await[&shard].clone();
    let victim: usize = before.trim_start_matches('n').parse().unwrap();
    let pid = cluster.brokers[victim].as_ref().unwrap().id() as libc::pid_t;
    // SAFETY: kill(2) with the pid of a child we own.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.leaders().await[&shard] == before {
        assert!(
            Instant::now() < deadline,
            "nobody took the paused leader's shard"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = &cluster.clients[(victim + 1) % 3];
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(format!("{inbox}.>")).await.unwrap();
    let forward = format!("$mq9.FWD.t.{shard}");
    for i in 0..5 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Mq9-Forwarded-Subject",
            format!("$mq9.AI.MSG.SEND.{name}").as_str(),
        );
        headers.insert("Nats-Msg-Id", format!("paused-{i}").as_str());
        // As a forwarding broker sends it: the client's reply in a header, the forward's own
        // reply subject for the leader's acknowledgement.
        headers.insert("Mq9-Forwarded-Reply", format!("{inbox}.{i}").as_str());
        let payload = format!("while paused #{i}");
        let ack = client.new_inbox();
        client
            .publish_with_reply_and_headers(forward.clone(), ack, headers, payload.into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let mut answered: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let collect_until = Instant::now() + Duration::from_secs(6);
    while let Ok(Some(reply)) = tokio::time::timeout_at(collect_until.into(), replies.next()).await
    {
        let request: u64 = reply.subject.rsplit('.').next().unwrap().parse().unwrap();
        let body: Value = serde_json::from_slice(&reply.payload).unwrap();
        let outcome = match body["error"].as_str() {
            Some("") => format!("msg_id {}", body["msg_id"]),
            _ => format!("refused {}", body["code"]),
        };
        answered.entry(request).or_default().insert(outcome);
    }
    let stored = cluster
        .until_ok(&format!("$mq9.AI.MSG.QUERY.{name}"), r#"{"limit":100}"#)
        .await;
    for i in 0..5 {
        let outcomes = answered.get(&i).cloned().unwrap_or_default();
        let successes: Vec<&String> = outcomes
            .iter()
            .filter(|o| o.starts_with("msg_id"))
            .collect();
        assert!(
            successes.len() <= 1,
            "request {i}: two different successes {outcomes:?}"
        );
        for refusal in outcomes.iter().filter(|o| o.starts_with("refused")) {
            assert_eq!(refusal, "refused \"unavailable\"", "request {i}");
        }
        if let Some(success) = successes.first() {
            let msg_id: u64 = success.trim_start_matches("msg_id ").parse().unwrap();
            let message = stored["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["msg_id"] == msg_id)
                .unwrap_or_else(|| panic!("request {i}: acknowledged {msg_id} is not stored"));
            assert_eq!(
                message["payload"],
                base64(format!("while paused #{i}").as_bytes())
            );
        }
    }
    eprintln!("replies to the five SENDs: {answered:?}");
}
