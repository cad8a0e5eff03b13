//! A power cut (SIGKILL plus the loss of every unsynced write, by the `powercut` shim) loses
//! nothing acknowledged under `--sync always`, and does lose with `--sync none`.

use super::*;

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
