//! Lifecycle (protocol.md §2, §3, §4): mailbox expiry and re-creation, message TTL
//! (`mq9-ttl`) and delayed messages (`mq9-delay`).
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

#[tokio::test]
async fn an_expired_mailbox_is_removed_within_about_a_second() {
    let env = Env::start().await;
    let created = Instant::now();
    let address = env.create(json!({"ttl": 1})).await;
    env.send_ok(&address, b"soon gone", &[]).await;
    env.fetch(&address, json!({"group_name": "g"})).await;
    env.wait_gone(&address).await;
    assert_eq!(
        env.send(&address, b"x", &[]).await,
        json!({"error": format!("mailbox {address} does not exist"), "code": "not_found"})
    );
    for reply in [
        env.fetch(&address, json!({})).await,
        env.ack(&address, "g", 0).await,
        env.delete(&address, 0).await,
        env.mailbox_query(&address, json!({})).await,
    ] {
        assert_error(&reply, "not_found");
    }
    // Physically removed, with its messages.
    wait_until("the broker holds no mailbox", || async {
        env.metric("mq9_mailboxes").await == Some(0.0)
            && env.metric("mq9_stored_messages").await == Some(0.0)
    })
    .await;
    let took = created.elapsed();
    assert!(
        took < Duration::from_millis(3500),
        "removed {took:?} after create"
    );
}

#[tokio::test]
async fn timers_keep_working_after_a_mailbox_expired() {
    let env = Env::start().await;
    let short = env.create(json!({"ttl": 1})).await;
    let address = env.create(json!({"ttl": 3600})).await;
    assert_eq!(
        env.send_ok(&address, b"later", &[("mq9-delay", "2")]).await,
        -1
    );
    env.send_ok(&address, b"brief", &[("mq9-ttl", "2")]).await;
    env.wait_gone(&short).await;
    wait_until("the delayed message is visible", || async {
        env.query_ids(&address).await == vec![1]
    })
    .await;
    wait_until("the expired message is removed", || async {
        env.metric("mq9_stored_messages").await == Some(1.0)
    })
    .await;
}

#[tokio::test]
async fn a_waiting_fetch_learns_that_its_mailbox_expired() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 1})).await;
    let (reply, took) = env
        .fetch_held(&address, json!({"config": {"max_wait_ms": 8000}}))
        .await;
    assert_error(&reply, "not_found");
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
}

#[tokio::test]
async fn a_recreated_mailbox_starts_empty() {
    let env = Env::start().await;
    let name = "again.and.again";
    env.create(json!({"name": name, "ttl": 1})).await;
    env.send_many(name, 3).await;
    env.send_ok(name, b"keyed", &[("mq9-key", "k")]).await;
    env.send_ok(name, b"delayed", &[("mq9-delay", "2")]).await;
    let group = json!({"group_name": "g", "config": {"max_wait_ms": 0}});
    env.fetch(name, group.clone()).await;
    env.ack_ok(name, "g", 3).await;
    env.wait_gone(name).await;

    env.create(json!({"name": name, "ttl": 3600})).await;
    assert!(
        env.query_ids(name).await.is_empty(),
        "no old message survives"
    );
    env.send_ok(name, b"fresh", &[]).await;
    // No old group state: the group starts from scratch and gets the new message.
    let reply = env.fetch(name, group.clone()).await;
    assert_eq!(texts(&reply), vec!["fresh"]);
    assert_eq!(messages(&reply)[0]["delivery_count"], 1);
    // The old incarnation's delayed message never shows up in the new one: past its 2 s delay
    // (waiting out the delay is the behaviour under test; nothing can be awaited instead).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(texts(&env.query(name, json!({})).await), vec!["fresh"]);
    // Nor does its compaction slot: a new keyed message replaces nothing old.
    env.send_ok(name, b"keyed2", &[("mq9-key", "k")]).await;
    assert_eq!(
        texts(&env.query(name, json!({})).await),
        vec!["fresh", "keyed2"]
    );
}

#[tokio::test]
async fn a_message_ttl_hides_the_message_at_expiry_then_removes_it() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_ok(&address, b"short", &[("mq9-ttl", "1")]).await;
    env.send_ok(&address, b"forever", &[("mq9-ttl", "0")]).await;
    env.send_ok(&address, b"plain", &[]).await;
    let group = json!({"group_name": "g", "config": {"max_wait_ms": 0, "ack_wait_ms": 300}});
    assert_eq!(
        texts(&env.query(&address, json!({})).await),
        vec!["short", "forever", "plain"]
    );
    assert_eq!(
        ids(&env.fetch(&address, group.clone()).await),
        vec![0, 1, 2]
    );
    // Past the 1 s ttl and the 300 ms lease: waiting out the expiry is the behaviour under test.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let expected = vec!["forever", "plain"];
    assert_eq!(texts(&env.query(&address, json!({})).await), expected);
    assert_eq!(texts(&env.fetch(&address, json!({})).await), expected);
    assert_eq!(
        texts(&env.fetch(&address, group).await),
        expected,
        "not redelivered"
    );
    assert_eq!(env.mailbox_query(&address, json!({})).await["unread"], 2);
    wait_until("the expired message is removed", || async {
        env.metric("mq9_stored_messages").await == Some(2.0)
    })
    .await;
}

#[tokio::test]
async fn a_delayed_message_gets_its_id_when_it_becomes_visible() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    let sent_at = now_secs();
    let reply = env
        .send(
            &address,
            b"later",
            &[("mq9-delay", "1"), ("mq9-priority", "urgent")],
        )
        .await;
    assert_eq!(reply, json!({"error": "", "msg_id": -1, "delay_id": 0}));
    assert_eq!(env.send_ok(&address, b"now", &[]).await, 0);
    assert_eq!(texts(&env.fetch(&address, json!({})).await), vec!["now"]);
    assert_eq!(texts(&env.query(&address, json!({})).await), vec!["now"]);
    // A waiting FETCH is answered when the delayed message becomes visible.
    let latest = json!({"deliver": "latest", "config": {"max_wait_ms": 8000}});
    let (reply, took) = env.fetch_held(&address, latest).await;
    assert_eq!(texts(&reply), vec!["later"]);
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    let visible = &messages(&reply)[0];
    assert_eq!(
        visible["msg_id"], 1,
        "the next id at the moment it became visible"
    );
    assert_eq!(visible["priority"], "urgent");
    assert!(visible["create_time"].as_u64().unwrap() >= sent_at);
    assert_eq!(env.send_ok(&address, b"after", &[]).await, 2);
}

#[tokio::test]
async fn a_delayed_message_whose_ttl_ends_first_never_appears() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    let headers = [("mq9-delay", "2"), ("mq9-ttl", "1")];
    assert_eq!(env.send_ok(&address, b"never", &headers).await, -1);
    // Past both the ttl and the delay: the message must never have appeared (waiting out the
    // delay is the behaviour under test).
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert!(env.query_ids(&address).await.is_empty());
    assert_eq!(
        env.send_ok(&address, b"next", &[]).await,
        0,
        "no id was used"
    );
}
