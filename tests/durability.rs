//! Durability (protocol.md §5, security.md "Health and durability"): a restart (SIGTERM), a
//! crash (SIGKILL) or a power cut (SIGKILL plus the loss of every unsynced write) of the broker
//! on the same data dir keeps messages, the msg_id sequence, group state and TTLs; a failed sync
//! stops the broker from answering success and fails `/healthz`.
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use support::powercut::{Shim, Snapshot};
use support::*;

#[tokio::test]
async fn a_restart_keeps_messages_and_the_msg_id_sequence() {
    let mut env = Env::start().await;
    let address = env.create(json!({"name": "kept", "ttl": 3600})).await;
    let latest = env.create(json!({"type": "latest", "ttl": 0})).await;
    let headers = [
        ("mq9-priority", "urgent"),
        ("mq9-key", "k"),
        ("mq9-tags", "t"),
        ("h", "v"),
    ];
    env.send_ok(&address, b"first", &headers).await;
    env.send_ok(&address, b"second", &[]).await;
    env.send_ok(&address, b"third", &[]).await;
    env.delete(&address, 2).await;
    env.send_ok(&latest, b"old", &[]).await;
    env.send_ok(&latest, b"new", &[]).await;
    let before = env.query(&address, json!({})).await;

    env.restart_broker().await;
    assert_eq!(env.query(&address, json!({})).await, before);
    assert_eq!(
        env.send_ok(&address, b"fourth", &[]).await,
        3,
        "ids continue"
    );
    assert_eq!(env.send_ok(&address, b"k2", &[("mq9-key", "k")]).await, 4);
    assert_eq!(
        texts(&env.query(&address, json!({})).await),
        vec!["second", "fourth", "k2"],
        "compaction slots survive"
    );
    assert_eq!(texts(&env.query(&latest, json!({})).await), vec!["new"]);
    env.send_ok(&latest, b"newer", &[]).await;
    assert_eq!(texts(&env.query(&latest, json!({})).await), vec!["newer"]);
    let again = env
        .request("$mq9.AI.MAILBOX.CREATE", r#"{"name":"kept"}"#)
        .await;
    assert_error(&again, "already_exists");
}

#[tokio::test]
async fn a_restart_keeps_group_state() {
    let mut env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_many(&address, 6).await;
    let take = |n: u64| json!({"group_name": "g", "config": {"num_msgs": n, "max_wait_ms": 0}});
    assert_eq!(ids(&env.fetch(&address, take(2)).await), vec![0, 1]);
    env.ack(&address, "g", 1).await;
    assert_eq!(ids(&env.fetch(&address, take(1)).await), vec![2]);
    env.ack(&address, "g", 2).await;
    let leased = json!({"group_name": "g", "config": {"num_msgs": 1, "ack_wait_ms": 60000}});
    assert_eq!(ids(&env.fetch(&address, leased).await), vec![3]);

    env.restart_broker().await;
    assert_eq!(
        ids(&env.fetch(&address, take(100)).await),
        vec![4, 5],
        "acked messages stay acked, the lease on 3 holds"
    );
    env.ack(&address, "g", 5).await;
    env.send_ok(&address, b"m6", &[]).await;
    assert_eq!(ids(&env.fetch(&address, take(100)).await), vec![6]);
    let other = env.fetch(&address, json!({"group_name": "h"})).await;
    assert_eq!(ids(&other).len(), 7, "other groups are unaffected");
}

#[tokio::test]
async fn a_restart_keeps_ttls_and_delays() {
    let mut env = Env::start().await;
    let created = env
        .request("$mq9.AI.MAILBOX.CREATE", r#"{"name":"brief","ttl":5}"#)
        .await;
    let expires_at = created["expires_at"].as_u64().unwrap();
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_ok(&address, b"short", &[("mq9-ttl", "3")]).await;
    env.send_ok(&address, b"long", &[]).await;
    env.send_ok(&address, b"later", &[("mq9-delay", "2")]).await;

    env.restart_broker().await;
    assert!(
        now_secs() < expires_at,
        "restart took too long for this test"
    );
    assert_eq!(env.query("brief", json!({})).await["error"], "");
    wait_until("the delayed message became visible", || async {
        texts(&env.query(&address, json!({})).await).contains(&"later".to_owned())
    })
    .await;
    env.wait_gone("brief").await;
    assert!(now_secs() <= expires_at + 2, "mailbox outlived its ttl");
    assert_eq!(
        texts(&env.query(&address, json!({})).await),
        vec!["long", "later"]
    );
}

/// A SEND outcome: the msg_id for a success reply, `None` when no reply came.
async fn try_send(client: &async_nats::Client, subject: &str, payload: String) -> Option<Value> {
    let request = client.request(subject.to_owned(), payload.into_bytes().into());
    match tokio::time::timeout(Duration::from_secs(3), request).await {
        Ok(Ok(reply)) => serde_json::from_slice(&reply.payload).ok(),
        _ => None,
    }
}

/// Sends `t{task}-{i}` in a loop until `stop`; returns the acknowledged (msg_id, payload).
async fn sender(
    client: async_nats::Client,
    subject: String,
    task: usize,
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Vec<(u64, String)> {
    let mut confirmed = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let payload = format!("t{task}-{i}");
        i += 1;
        match try_send(&client, &subject, payload.clone()).await {
            Some(reply) if reply["error"] == "" => {
                confirmed.push((reply["msg_id"].as_u64().unwrap(), payload));
                acked.fetch_add(1, Ordering::Relaxed);
            }
            // No broker (no responders) or no reply: back off briefly, the send may be lost.
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    confirmed
}

/// Every stored message of a mailbox by msg_id, read with stateless FETCHes.
async fn read_all(env: &Env, address: &str) -> HashMap<u64, String> {
    let mut stored = HashMap::new();
    let mut from_id = 0;
    loop {
        let body = json!({"deliver": "from_id", "from_id": from_id,
            "config": {"num_msgs": 1000, "max_wait_ms": 0}});
        let reply = env.fetch(address, body).await;
        let batch = messages(&reply);
        let Some(last) = batch.last() else { break };
        from_id = last["msg_id"].as_u64().unwrap() + 1;
        for m in &batch {
            let text = String::from_utf8(payload(m)).unwrap();
            stored.insert(m["msg_id"].as_u64().unwrap(), text);
        }
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_loses_no_acknowledged_send_and_reuses_no_msg_id() {
    let mut env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    let subject = format!("$mq9.AI.MSG.SEND.{address}");
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let args = (
                env.client.clone(),
                subject.clone(),
                acked.clone(),
                stop.clone(),
            );
            tokio::spawn(sender(args.0, args.1, task, args.2, args.3))
        })
        .collect();
    let count = || async { acked.load(Ordering::Relaxed) };
    wait_until("sends are flowing", || async { count().await >= 200 }).await;
    env.crash_and_restart_broker().await;
    let after_crash = count().await;
    wait_until("sends flow again", || async {
        count().await >= after_crash + 200
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut confirmed = Vec::new();
    for task in tasks {
        confirmed.extend(task.await.unwrap());
    }

    let distinct: HashSet<u64> = confirmed.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        distinct.len(),
        confirmed.len(),
        "a msg_id was handed out twice"
    );
    let stored = read_all(&env, &address).await;
    for (msg_id, sent) in &confirmed {
        assert_eq!(
            stored.get(msg_id),
            Some(sent),
            "acknowledged msg {msg_id} lost"
        );
    }
}

/// Group commit: concurrent SENDs share WAL syncs, so 400 concurrent sends need far fewer
/// syncs than messages (each acknowledged only after its sync).
#[tokio::test]
async fn concurrent_sends_share_syncs() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    let syncs_before = env.metric("mq9_store_syncs_total").await.unwrap_or(0.0);
    let ids = env.send_many(&address, 400).await;
    assert_eq!(ids.len(), 400);
    let syncs = env.metric("mq9_store_syncs_total").await.unwrap() - syncs_before;
    assert!(syncs >= 1.0, "the sends were synced");
    assert!(
        syncs < 200.0,
        "400 concurrent sends took {syncs} syncs: no group commit"
    );
}

/// A disk that fails `fsync` (the shim returns `EIO`): the batch that needed the sync answers
/// `internal`, a FETCH waiting since before is answered `internal` at once (not "empty" later),
/// every later request too — reads included, since memory may be ahead of the disk — and
/// `/healthz` turns 503 so that Kubernetes restarts the pod. A restart serves again.
#[tokio::test]
async fn a_failed_sync_fails_healthz_and_no_success_is_answered_after_it() {
    let shim = Shim::build();
    let mut env = Env::start_with_env(&[], "", &shim.env()).await;
    let address = env.create(json!({"ttl": 3600})).await;
    let quiet = env.create(json!({"ttl": 3600})).await;
    env.send_ok(&address, b"before", &[]).await;
    assert_eq!(http_get(env.broker.http_addr, "/healthz").await.0, 200);

    // A long-poll the broker holds (`woken_by` waits for it) when the failing SEND comes.
    let inbox = env.client.new_inbox();
    let mut parked = env.client.subscribe(inbox.clone()).await.unwrap();
    let long_poll = json!({"config": {"max_wait_ms": 30000}}).to_string();
    env.client
        .publish_with_reply(
            format!("$mq9.AI.MSG.FETCH.{quiet}"),
            inbox,
            long_poll.into(),
        )
        .await
        .unwrap();
    shim.fail_syncs();
    let answer = tokio::time::timeout(DEADLINE, parked.next());
    let (parked, during) = env
        .woken_by(1, answer, env.send(&address, b"during", &[]))
        .await;
    assert_error_says(&during, "internal", "must restart");
    let parked = parked
        .expect("the waiting FETCH is answered at the failure, not at its deadline")
        .unwrap();
    assert_error(
        &serde_json::from_slice(&parked.payload).unwrap(),
        "internal",
    );

    let (status, reason) = http_get(env.broker.http_addr, "/healthz").await;
    assert_eq!(status, 503, "healthz after a failed sync: {reason}");
    assert!(reason.contains("store failed"), "{reason}");
    assert_eq!(http_get(env.broker.http_addr, "/readyz").await.0, 503);
    let subject = format!("$mq9.AI.MSG.SEND.{address}");
    for attempt in 0..20 {
        let reply = env.request(&subject, &format!("after-{attempt}")).await;
        assert_error(&reply, "internal");
    }
    assert_error(&env.query(&address, json!({})).await, "internal");
    let create = env.request("$mq9.AI.MAILBOX.CREATE", "{}").await;
    assert_error(&create, "internal");

    shim.restore_syncs();
    env.crash_and_restart_broker().await;
    assert_eq!(http_get(env.broker.http_addr, "/healthz").await.0, 200);
    let kept = texts(&env.query(&address, json!({})).await);
    assert_eq!(kept.first().map(String::as_str), Some("before"), "{kept:?}");
    assert!(
        kept.iter().all(|t| !t.starts_with("after-")),
        "no SEND after the failure is stored: {kept:?}"
    );
}

/// What one power-cut run saw.
struct PowerCut {
    /// Acknowledged SENDs of the run.
    sends: Vec<(u64, String)>,
    /// Of those, the ones missing after the power cut.
    lost_sends: Vec<u64>,
    /// msg_ids whose ACK was acknowledged.
    acks: HashSet<u64>,
    /// Of those, the ones the group got again after the power cut.
    redelivered: Vec<u64>,
}

/// Fetches with group `g` and acknowledges every message on its own, until `stop`; returns the
/// msg_ids whose ACK was answered with success.
async fn consumer(
    client: async_nats::Client,
    address: String,
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> HashSet<u64> {
    let fetch = format!("$mq9.AI.MSG.FETCH.{address}");
    let ack = format!("$mq9.AI.MSG.ACK.{address}");
    let body = json!({"group_name": "g", "config": {"num_msgs": 10, "max_wait_ms": 0}});
    let mut confirmed = HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        let Some(reply) = try_send(&client, &fetch, body.to_string()).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        for id in reply["messages"].as_array().into_iter().flatten() {
            let id = id["msg_id"].as_u64().unwrap();
            let request = json!({"group_name": "g", "msg_id": id}).to_string();
            if try_send(&client, &ack, request)
                .await
                .is_some_and(|r| r["error"] == "")
            {
                confirmed.insert(id);
                acked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    confirmed
}

/// Every msg_id group `g` is given from now on (leases held long, so each comes once).
async fn drain_group(env: &Env, address: &str) -> Vec<u64> {
    let body = json!({"group_name": "g",
        "config": {"num_msgs": 1000, "max_wait_ms": 0, "ack_wait_ms": 600000}});
    let mut delivered = Vec::new();
    loop {
        let batch = ids(&env.fetch(address, body.clone()).await);
        if batch.is_empty() {
            return delivered;
        }
        delivered.extend(batch);
    }
}

/// A broker with the shim, a mailbox of 400 messages made durable by a clean stop, then: 4
/// senders and a consumer group acknowledging one message at a time; the senders stop, the
/// consumer acknowledges on alone (ACK-only batches), SIGKILL, the power cut, a restart.
async fn power_cut_run(args: &[&str]) -> PowerCut {
    let shim = Shim::build();
    let mut env = Env::start_with_env(args, "", &shim.env()).await;
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_many(&address, 400).await;
    env.broker.terminate();
    shim.clear_journal();
    let durable = Snapshot::take(env.data_dir());
    env.respawn_broker().await;

    let subject = format!("$mq9.AI.MSG.SEND.{address}");
    let (sent, acked) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (stop_senders, stop_consumer) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let senders: Vec<_> = (0..4)
        .map(|task| {
            let (client, subject) = (env.client.clone(), subject.clone());
            tokio::spawn(sender(
                client,
                subject,
                task,
                sent.clone(),
                stop_senders.clone(),
            ))
        })
        .collect();
    let consumer = tokio::spawn(consumer(
        env.client.clone(),
        address.clone(),
        acked.clone(),
        stop_consumer.clone(),
    ));
    wait_until("sends and acks flow", || async {
        sent.load(Ordering::Relaxed) >= 200 && acked.load(Ordering::Relaxed) >= 50
    })
    .await;
    stop_senders.store(true, Ordering::Relaxed);
    let mut sends = Vec::new();
    for task in senders {
        sends.extend(task.await.unwrap());
    }
    let acked_alone = acked.load(Ordering::Relaxed) + 30;
    wait_until("acks flow without sends", || async {
        acked.load(Ordering::Relaxed) >= acked_alone
    })
    .await;
    env.broker.kill();
    stop_consumer.store(true, Ordering::Relaxed);
    let acks = consumer.await.unwrap();

    let cut = shim.cut_power(env.data_dir(), &durable);
    eprintln!("power cut: {cut:?}");
    env.respawn_broker().await;
    let stored = read_all(&env, &address).await;
    let lost_sends = sends
        .iter()
        .filter(|(id, text)| stored.get(id) != Some(text))
        .map(|(id, _)| *id)
        .collect();
    let redelivered = drain_group(&env, &address)
        .await
        .into_iter()
        .filter(|id| acks.contains(id))
        .collect();
    PowerCut {
        sends,
        lost_sends,
        acks,
        redelivered,
    }
}

/// The default `--sync always`: after a power cut every acknowledged SEND is there and every
/// acknowledged ACK holds (the group never gets that message again).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_power_cut_loses_no_acknowledged_send_or_ack() {
    let run = power_cut_run(&[]).await;
    assert!(
        run.sends.len() >= 200 && run.acks.len() >= 80,
        "the run did work"
    );
    assert_eq!(run.lost_sends, Vec::<u64>::new(), "acknowledged SENDs lost");
    assert_eq!(
        run.redelivered,
        Vec::<u64>::new(),
        "acknowledged ACKs undone"
    );
}

/// The model is sharp: with `--sync none` the same power cut loses acknowledged SENDs and ACKs.
/// Were it to lose nothing, the shim would be proving nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_power_cut_without_sync_loses_acknowledged_writes() {
    let run = power_cut_run(&["--sync", "none"]).await;
    assert!(
        run.sends.len() >= 200 && run.acks.len() >= 80,
        "the run did work"
    );
    assert!(!run.lost_sends.is_empty(), "no SEND lost without sync");
    assert!(!run.redelivered.is_empty(), "no ACK undone without sync");
}
