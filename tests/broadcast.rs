//! Broadcast (protocol.md §3, `MAILBOX.SUBSCRIBE` and `$mq9.AI.BROADCAST.{topic}`): durable
//! subscriptions store each matching publish once per mailbox; live subscribers and queue
//! groups receive it straight from nats-server; the broker never answers a broadcast.
mod support;

use std::collections::BTreeSet;

use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};
use support::*;

/// SUBSCRIBE (or UNSUBSCRIBE) a mailbox to a topic; returns the reply.
async fn subscription(env: &Env, subscribe: bool, address: &str, topic: &str) -> Value {
    let verb = if subscribe {
        "SUBSCRIBE"
    } else {
        "UNSUBSCRIBE"
    };
    let body = json!({"mail_address": address, "topic": topic});
    env.request(&format!("$mq9.AI.MAILBOX.{verb}"), &body.to_string())
        .await
}

/// Creates a mailbox subscribed to every topic given.
async fn subscribed(env: &Env, topics: &[&str]) -> String {
    let address = env.create(json!({"ttl": 3600})).await;
    for topic in topics {
        assert_eq!(
            subscription(env, true, &address, topic).await,
            json!({"error": ""})
        );
    }
    address
}

/// A plain publish on `$mq9.AI.BROADCAST.{topic}`.
async fn broadcast(env: &Env, topic: &str, headers: &[(&str, &str)], payload: &str) {
    env.publish(
        &format!("$mq9.AI.BROADCAST.{topic}"),
        headers,
        payload.as_bytes(),
    )
    .await;
}

/// The payloads stored in a mailbox, in msg_id order.
async fn stored(env: &Env, address: &str) -> Vec<String> {
    texts(&env.query(address, json!({})).await)
}

/// Waits until a mailbox holds exactly these payloads.
async fn wait_stored(env: &Env, address: &str, expected: &[&str]) {
    wait_until(&format!("{address} holds {expected:?}"), || async {
        stored(env, address).await == expected
    })
    .await;
}

/// The `subscriptions` of the admin INFO of a mailbox, sorted.
async fn info_subscriptions(env: &Env, address: &str) -> Vec<String> {
    let info = env
        .request(
            "$mq9.ADMIN.MAILBOX.INFO",
            &json!({"name": address}).to_string(),
        )
        .await;
    assert_eq!(info["exists"], true, "{info}");
    let mut topics: Vec<String> = info["subscriptions"]
        .as_array()
        .expect("subscriptions array")
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    topics.sort();
    topics
}

#[tokio::test]
async fn exact_star_and_rest_topics_store_one_copy_in_each_matching_mailbox() {
    let env = Env::start().await;
    let exact = subscribed(&env, &["task.available"]).await;
    let star = subscribed(&env, &["task.*"]).await;
    let rest = subscribed(&env, &["task.>"]).await;
    let twice = subscribed(&env, &["task.*", "task.available", "task.>"]).await;
    let all = subscribed(&env, &[">"]).await;
    let system = subscribed(&env, &["system.>"]).await;
    broadcast(
        &env,
        "task.available",
        &[("mq9-priority", "urgent"), ("trace-id", "t-1")],
        "t1",
    )
    .await;
    broadcast(&env, "task.done.now", &[], "t2").await;
    broadcast(&env, "task", &[], "t0").await;
    broadcast(&env, "system.alert", &[("mq9-priority", "critical")], "s1").await;
    // The last publish is stored only after every earlier one.
    wait_stored(&env, &all, &["t1", "t2", "t0", "s1"]).await;
    assert_eq!(stored(&env, &exact).await, ["t1"]);
    assert_eq!(stored(&env, &star).await, ["t1"]);
    assert_eq!(stored(&env, &rest).await, ["t1", "t2"]);
    assert_eq!(stored(&env, &twice).await, ["t1", "t2"], "one copy each");
    assert_eq!(stored(&env, &system).await, ["s1"]);
    let items = messages(&env.query(&all, json!({})).await);
    let priorities: Vec<&str> = items
        .iter()
        .map(|m| m["priority"].as_str().unwrap())
        .collect();
    assert_eq!(priorities, ["urgent", "normal", "normal", "critical"]);
    assert_eq!(items[0]["headers"], json!({"trace-id": "t-1"}));
    // FETCH serves them like any message: by priority.
    assert_eq!(
        texts(&env.fetch(&all, json!({})).await),
        ["s1", "t1", "t2", "t0"]
    );
}

#[tokio::test]
async fn unsubscribe_stops_storage_and_both_are_idempotent() {
    let env = Env::start().await;
    let leaving = subscribed(&env, &["news.*", "news.*"]).await;
    let staying = subscribed(&env, &["news.*"]).await;
    assert_eq!(info_subscriptions(&env, &leaving).await, ["news.*"]);
    broadcast(&env, "news.a", &[], "n1").await;
    wait_stored(&env, &leaving, &["n1"]).await;
    for topic in ["news.*", "news.*", "never.subscribed"] {
        assert_eq!(
            subscription(&env, false, &leaving, topic).await,
            json!({"error": ""})
        );
    }
    assert!(info_subscriptions(&env, &leaving).await.is_empty());
    broadcast(&env, "news.b", &[], "n2").await;
    wait_stored(&env, &staying, &["n1", "n2"]).await;
    assert_eq!(stored(&env, &leaving).await, ["n1"]);
}

#[tokio::test]
async fn bad_subscriptions_are_refused_naming_the_field() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    for topic in ["", "a..b", "a.>.b", "ta*", "a b", "x>"] {
        for subscribe in [true, false] {
            let reply = subscription(&env, subscribe, &address, topic).await;
            assert_error_says(&reply, "bad_request", "topic");
        }
    }
    let missing = env
        .request(
            "$mq9.AI.MAILBOX.SUBSCRIBE",
            &json!({"mail_address": address}).to_string(),
        )
        .await;
    assert_error_says(&missing, "bad_request", "topic");
    let bad_address = subscription(&env, true, "Not Valid", "a").await;
    assert_error_says(&bad_address, "bad_request", "mail_address");
    for subscribe in [true, false] {
        let reply = subscription(&env, subscribe, "no.such.box", "a").await;
        assert_error_says(&reply, "not_found", "no.such.box");
    }
    assert!(info_subscriptions(&env, &address).await.is_empty());
}

#[tokio::test]
async fn subscriptions_survive_a_broker_restart() {
    let mut env = Env::start().await;
    let kept = subscribed(&env, &["job.*", "alerts.>"]).await;
    let dropped = subscribed(&env, &["job.x"]).await;
    assert_eq!(
        subscription(&env, false, &dropped, "job.x").await,
        json!({"error": ""})
    );
    env.restart_broker().await;
    assert_eq!(info_subscriptions(&env, &kept).await, ["alerts.>", "job.*"]);
    broadcast(&env, "alerts.disk.full", &[], "a1").await;
    broadcast(&env, "job.x", &[], "j1").await;
    wait_stored(&env, &kept, &["a1", "j1"]).await;
    assert!(stored(&env, &dropped).await.is_empty());
}

#[tokio::test]
async fn subscriptions_end_when_the_mailbox_expires() {
    let env = Env::start().await;
    let name = "short.lived";
    env.create(json!({"name": name, "ttl": 1})).await;
    assert_eq!(
        subscription(&env, true, name, "ev.>").await,
        json!({"error": ""})
    );
    let control = subscribed(&env, &["ev.>"]).await;
    env.wait_gone(name).await;
    env.create(json!({"name": name, "ttl": 3600})).await;
    assert!(info_subscriptions(&env, name).await.is_empty());
    broadcast(&env, "ev.1", &[], "e1").await;
    wait_stored(&env, &control, &["e1"]).await;
    assert!(
        stored(&env, name).await.is_empty(),
        "a re-created mailbox has no subscription"
    );
    let stats = env.request("$mq9.ADMIN.STATS", "").await;
    assert_eq!(stats["subscriptions"], 1, "{stats}");
}

#[tokio::test]
async fn live_subscribers_and_each_queue_worker_receive_publishes_directly() {
    let env = Env::start().await;
    let durable = subscribed(&env, &["task.available"]).await;
    let mut watcher = env
        .client
        .subscribe("$mq9.AI.BROADCAST.task.*")
        .await
        .unwrap();
    // Three workers on their own connections, one queue group.
    let mut workers = Vec::new();
    for _ in 0..3 {
        let client = async_nats::connect(env.nats.url()).await.unwrap();
        let queue = client
            .queue_subscribe("$mq9.AI.BROADCAST.task.available", "workers".into())
            .await
            .unwrap();
        let marker = client.subscribe("test.marker").await.unwrap();
        support::server_caught_up(&client).await;
        workers.push((client, queue, marker));
    }
    let sent: Vec<String> = (0..30).map(|i| format!("task-{i}")).collect();
    for payload in &sent {
        broadcast(&env, "task.available", &[], payload).await;
    }
    env.publish("test.marker", &[], b"end").await;
    let mut seen = Vec::new();
    let mut busy_workers = 0;
    for (_client, queue, marker) in &mut workers {
        // The marker was published last: once it arrives, the worker holds all it will get.
        tokio::time::timeout(DEADLINE, marker.next())
            .await
            .expect("marker reaches every worker");
        let before = seen.len();
        while let Some(Some(message)) = queue.next().now_or_never() {
            seen.push(String::from_utf8(message.payload.to_vec()).unwrap());
        }
        busy_workers += usize::from(seen.len() > before);
    }
    assert_eq!(seen.len(), sent.len(), "each message to exactly one worker");
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique, sent.iter().collect::<BTreeSet<_>>());
    assert!(busy_workers >= 2, "the queue group spreads the work");
    for payload in &sent {
        let message = tokio::time::timeout(DEADLINE, watcher.next())
            .await
            .expect("the live subscriber gets every publish")
            .unwrap();
        assert_eq!(message.payload, payload.as_bytes());
    }
    let expected: Vec<&str> = sent.iter().map(String::as_str).collect();
    wait_stored(&env, &durable, &expected).await;
}

#[tokio::test]
async fn the_broker_does_not_answer_a_request_on_a_broadcast_subject() {
    let env = Env::start().await;
    let durable = subscribed(&env, &["svc.ping"]).await;
    let responder = async_nats::connect(env.nats.url()).await.unwrap();
    let mut requests = responder
        .subscribe("$mq9.AI.BROADCAST.svc.ping")
        .await
        .unwrap();
    support::server_caught_up(&responder).await;
    let answering = tokio::spawn(async move {
        let request = requests.next().await.unwrap();
        responder
            .publish(request.reply.unwrap(), "pong".into())
            .await
            .unwrap();
        responder.flush().await.unwrap();
    });
    let inbox = env.client.new_inbox();
    let mut replies = env.client.subscribe(inbox.clone()).await.unwrap();
    env.client
        .publish_with_reply("$mq9.AI.BROADCAST.svc.ping", inbox, "ping".into())
        .await
        .unwrap();
    env.client.flush().await.unwrap();
    let first = tokio::time::timeout(DEADLINE, replies.next())
        .await
        .expect("a reply arrives")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&first.payload),
        "pong",
        "the responder answers, not the broker"
    );
    answering.await.unwrap();
    // The broker still stores it durably; its later replies come after any answer to the ping.
    wait_stored(&env, &durable, &["ping"]).await;
    let extra = replies.next().now_or_never().flatten();
    assert!(
        extra.is_none(),
        "the broker answered a broadcast: {:?}",
        extra.map(|m| m.payload)
    );
}

#[tokio::test]
async fn fan_out_into_fifty_mailboxes_shares_syncs() {
    let env = Env::start().await;
    let mut mailboxes = Vec::new();
    for _ in 0..50 {
        mailboxes.push(subscribed(&env, &["fan.out"]).await);
    }
    let syncs = || async { env.metric("mq9_store_syncs_total").await.unwrap() };
    let before = syncs().await;
    broadcast(&env, "fan.out", &[("mq9-priority", "urgent")], "wide").await;
    wait_until("the broadcast is stored 50 times", || async {
        env.metric("mq9_stored_messages").await == Some(50.0)
    })
    .await;
    let grew = syncs().await - before;
    assert!(
        (1.0..10.0).contains(&grew),
        "one fan-out of 50 took {grew} syncs"
    );
    for address in &mailboxes {
        let items = messages(&env.query(address, json!({})).await);
        assert_eq!(items.len(), 1, "{address}");
        assert_eq!(payload(&items[0]), b"wide");
        assert_eq!(items[0]["priority"], "urgent");
    }
}
