//! `$mq9.AI.MSG.ACK.{addr}` (protocol.md §3): per message, per batch, idempotent.
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// How long leases last in these tests: unacknowledged messages come back after it.
const LEASE_MS: u64 = 400;

async fn mailbox_with(env: &Env, count: usize) -> String {
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_many(&address, count).await;
    address
}

/// A group FETCH of up to `num` messages under a short lease.
async fn take(env: &Env, address: &str, num: u64) -> Vec<u64> {
    let body = json!({"group_name": "g",
        "config": {"num_msgs": num, "ack_wait_ms": LEASE_MS, "max_wait_ms": 0}});
    ids(&env.fetch(address, body).await)
}

/// What group `g` gets once every lease has ended: the messages it did not acknowledge. The
/// sleep is the behaviour under test (a lease ends with time); no condition could stand in for
/// it, since an empty answer must also be proven empty after the lease.
async fn redelivered(env: &Env, address: &str) -> Vec<u64> {
    tokio::time::sleep(Duration::from_millis(LEASE_MS + 200)).await;
    take(env, address, 1000).await
}

#[tokio::test]
async fn acking_the_last_message_of_a_batch_acks_that_batch_only() {
    let env = Env::start().await;
    let address = mailbox_with(&env, 6).await;
    assert_eq!(take(&env, &address, 3).await, vec![0, 1, 2]);
    assert_eq!(take(&env, &address, 3).await, vec![3, 4, 5]);
    env.ack_ok(&address, "g", 2).await;
    assert_eq!(redelivered(&env, &address).await, vec![3, 4, 5]);
}

#[tokio::test]
async fn acking_a_message_acks_those_before_it_in_its_reply() {
    let env = Env::start().await;
    let address = mailbox_with(&env, 4).await;
    assert_eq!(take(&env, &address, 4).await, vec![0, 1, 2, 3]);
    env.ack_ok(&address, "g", 1).await;
    assert_eq!(redelivered(&env, &address).await, vec![2, 3]);
}

#[tokio::test]
async fn batch_order_follows_the_reply_not_the_msg_id() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_ok(&address, b"n0", &[]).await;
    env.send_ok(&address, b"n1", &[]).await;
    env.send_ok(&address, b"c2", &[("mq9-priority", "critical")])
        .await;
    assert_eq!(take(&env, &address, 10).await, vec![2, 0, 1]);
    // msg 2 came first in the reply: acking it acknowledges nothing else.
    env.ack_ok(&address, "g", 2).await;
    assert_eq!(redelivered(&env, &address).await, vec![0, 1]);
}

#[tokio::test]
async fn acking_each_message_works_and_is_idempotent() {
    let env = Env::start().await;
    let address = mailbox_with(&env, 3).await;
    assert_eq!(take(&env, &address, 10).await, vec![0, 1, 2]);
    for id in [2, 0, 1, 1, 0] {
        env.ack_ok(&address, "g", id).await;
    }
    assert!(redelivered(&env, &address).await.is_empty());
    env.ack_ok(&address, "g", 2).await;
}

#[tokio::test]
async fn acknowledged_messages_never_come_back_to_the_group() {
    let env = Env::start().await;
    let address = mailbox_with(&env, 2).await;
    assert_eq!(take(&env, &address, 10).await, vec![0, 1]);
    env.ack_ok(&address, "g", 1).await;
    env.send_ok(&address, b"m2", &[]).await;
    assert_eq!(redelivered(&env, &address).await, vec![2]);
    env.ack_ok(&address, "g", 2).await;
    // Not with a new deliver policy (without force_deliver), nor on a waiting FETCH.
    let body = json!({"group_name": "g", "deliver": "earliest", "config": {"max_wait_ms": 700}});
    assert!(ids(&env.fetch(&address, body).await).is_empty());
    // Other groups still see everything.
    let other = env.fetch(&address, json!({"group_name": "h"})).await;
    assert_eq!(ids(&other), vec![0, 1, 2]);
}

#[tokio::test]
async fn the_subjects_address_wins_over_mail_address() {
    let env = Env::start().await;
    let address = mailbox_with(&env, 1).await;
    let decoy = mailbox_with(&env, 1).await;
    assert_eq!(take(&env, &address, 10).await, vec![0]);
    assert_eq!(take(&env, &decoy, 10).await, vec![0]);
    let body = json!({"group_name": "g", "msg_id": 0, "mail_address": decoy});
    let reply = env
        .request(&format!("$mq9.AI.MSG.ACK.{address}"), &body.to_string())
        .await;
    assert_eq!(reply, json!({"error": ""}));
    assert!(redelivered(&env, &address).await.is_empty());
    assert_eq!(
        take(&env, &decoy, 10).await,
        vec![0],
        "the decoy was not acked"
    );
}

#[tokio::test]
async fn ack_needs_a_group_and_a_msg_id() {
    let env = Env::start().await;
    let address = mailbox_with(&env, 1).await;
    let subject = format!("$mq9.AI.MSG.ACK.{address}");
    let cases: [(Value, &str); 6] = [
        (json!({"msg_id": 0}), "group_name"),
        (json!({"group_name": "", "msg_id": 0}), "group_name"),
        (json!({"group_name": 3, "msg_id": 0}), "group_name"),
        (json!({"group_name": "g"}), "msg_id"),
        (json!({"group_name": "g", "msg_id": "0"}), "msg_id"),
        (json!({"group_name": "g", "msg_id": -1}), "msg_id"),
    ];
    for (body, field) in cases {
        let reply = env.request(&subject, &body.to_string()).await;
        assert_error_says(&reply, "bad_request", field);
    }
    assert_error(&env.request(&subject, "").await, "bad_request");
    assert_eq!(
        env.ack("nobody.home", "g", 0).await,
        json!({"error": "mailbox nobody.home does not exist", "code": "not_found"})
    );
}
