//! A crash (SIGKILL) loses no acknowledged SEND; concurrent SENDs share syncs; a failed sync
//! stops every success answer and fails `/healthz`.

use super::*;

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
