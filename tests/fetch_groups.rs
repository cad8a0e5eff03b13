//! Stateful `MSG.FETCH` (protocol.md §3): consumer groups, their start, leases, competing
//! consumers and redelivery.
mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

async fn mailbox_with(env: &Env, count: usize) -> String {
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_many(&address, count).await;
    address
}

/// A group FETCH that does not wait, with extra fields merged in.
async fn group_fetch(env: &Env, address: &str, group: &str, extra: Value) -> Value {
    let mut body = json!({"group_name": group, "config": {"max_wait_ms": 0}});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    env.fetch(address, body).await
}

#[tokio::test]
async fn a_group_does_not_get_what_it_holds_or_acknowledged() {
    let env = Env::start().await;
    let address = mailbox_with(&env, 3).await;
    let first = group_fetch(&env, &address, "g", json!({})).await;
    assert_eq!(ids(&first), vec![0, 1, 2]);
    assert!(messages(&first).iter().all(|m| m["delivery_count"] == 1));
    let leased = group_fetch(&env, &address, "g", json!({})).await;
    assert!(
        ids(&leased).is_empty(),
        "leased messages are skipped: {leased}"
    );
    env.ack_ok(&address, "g", 2).await;
    env.send_ok(&address, b"m3", &[]).await;
    assert_eq!(
        ids(&group_fetch(&env, &address, "g", json!({})).await),
        vec![3]
    );
    // Groups are independent of each other and of stateless readers.
    let other = group_fetch(&env, &address, "h", json!({})).await;
    assert_eq!(ids(&other), vec![0, 1, 2, 3]);
    assert_eq!(ids(&env.fetch(&address, json!({})).await), vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn deliver_sets_a_new_groups_start_and_is_ignored_afterwards() {
    let env = Env::start().await;
    let address = mailbox_with(&env, 3).await;
    let latest = group_fetch(&env, &address, "tail", json!({"deliver": "latest"})).await;
    assert!(ids(&latest).is_empty());
    let from = json!({"deliver": "from_id", "from_id": 1});
    assert_eq!(
        ids(&group_fetch(&env, &address, "mid", from).await),
        vec![1, 2]
    );
    env.send_ok(&address, b"m3", &[]).await;
    // Existing groups keep their position; a deliver without force_deliver changes nothing.
    let earliest = json!({"deliver": "earliest"});
    let tail = group_fetch(&env, &address, "tail", earliest.clone()).await;
    assert_eq!(ids(&tail), vec![3]);
    env.ack_ok(&address, "mid", 2).await;
    let mid = group_fetch(&env, &address, "mid", earliest).await;
    assert_eq!(ids(&mid), vec![3]);
}

#[tokio::test]
async fn force_deliver_resets_the_group() {
    let env = Env::start().await;
    let address = mailbox_with(&env, 4).await;
    let all = group_fetch(&env, &address, "g", json!({})).await;
    env.ack_ok(&address, "g", *ids(&all).last().unwrap()).await;
    assert!(ids(&group_fetch(&env, &address, "g", json!({})).await).is_empty());
    let reset = json!({"deliver": "from_id", "from_id": 2, "force_deliver": true});
    assert_eq!(
        ids(&group_fetch(&env, &address, "g", reset).await),
        vec![2, 3]
    );
    let reset = json!({"deliver": "earliest", "force_deliver": true});
    assert_eq!(
        ids(&group_fetch(&env, &address, "g", reset).await),
        vec![0, 1, 2, 3]
    );
}

#[tokio::test]
async fn competing_workers_of_a_group_never_share_a_leased_message() {
    let env = Env::start().await;
    let address = mailbox_with(&env, 40).await;
    let body = json!({"group_name": "workers", "config": {"num_msgs": 7, "max_wait_ms": 0}});
    let replies =
        futures::future::join_all((0..8).map(|_| env.fetch(&address, body.clone()))).await;
    let mut seen = HashSet::new();
    for reply in &replies {
        for id in ids(reply) {
            assert!(seen.insert(id), "msg {id} went to two workers");
        }
    }
    assert_eq!(seen.len(), 40, "between them the workers got every message");
    assert!(
        replies.iter().all(|r| ids(r).len() <= 7),
        "num_msgs per reply"
    );
}

#[tokio::test]
async fn an_unacknowledged_message_is_redelivered_when_its_lease_ends() {
    let env = Env::start().await;
    let address = mailbox_with(&env, 2).await;
    let lease = json!({"group_name": "g", "config": {"ack_wait_ms": 500, "max_wait_ms": 0}});
    assert_eq!(ids(&env.fetch(&address, lease).await), vec![0, 1]);
    env.ack_ok(&address, "g", 0).await;
    // A waiting FETCH of the group is answered when the lease ends, well before its deadline.
    let (reply, took) = env
        .fetch_held(
            &address,
            json!({"group_name": "g", "config": {"max_wait_ms": 8000}}),
        )
        .await;
    assert_eq!(ids(&reply), vec![1], "only the unacknowledged message");
    assert_eq!(messages(&reply)[0]["delivery_count"], 2);
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
}

#[tokio::test]
async fn a_group_long_poll_wakes_for_a_new_message() {
    let env = Env::start().await;
    let address = mailbox_with(&env, 1).await;
    let g = json!({"group_name": "g", "config": {"max_wait_ms": 0}});
    env.fetch(&address, g).await;
    env.ack_ok(&address, "g", 0).await;
    let poll = env.fetch_timed(
        &address,
        json!({"group_name": "g", "config": {"max_wait_ms": 10000}}),
    );
    let send = env.send_ok(&address, b"new", &[]);
    let ((reply, took), _) = env.woken_by(1, poll, send).await;
    assert_eq!(texts(&reply), vec!["new"]);
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
}

#[tokio::test]
async fn two_waiting_workers_of_a_group_split_new_messages() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    let body = json!({"group_name": "w", "config": {"num_msgs": 1, "max_wait_ms": 8000}});
    let workers = futures::future::join(
        env.fetch(&address, body.clone()),
        env.fetch(&address, body.clone()),
    );
    let sends = async {
        env.send_ok(&address, b"a", &[]).await;
        env.send_ok(&address, b"b", &[]).await;
    };
    let ((one, two), ()) = env.woken_by(2, workers, sends).await;
    let mut got = [ids(&one), ids(&two)].concat();
    got.sort();
    assert_eq!(
        got,
        vec![0, 1],
        "each message to exactly one waiting worker"
    );
}

#[tokio::test]
async fn group_name_must_be_a_string_and_ack_wait_is_bounded() {
    let env = Env::start().await;
    let address = mailbox_with(&env, 1).await;
    for (body, field) in [
        (json!({"group_name": 5}), "group_name"),
        (
            json!({"group_name": "g", "force_deliver": "yes"}),
            "force_deliver",
        ),
        (
            json!({"group_name": "g", "config": {"ack_wait_ms": 0}}),
            "ack_wait_ms",
        ),
        (
            json!({"group_name": "g", "config": {"ack_wait_ms": "1s"}}),
            "ack_wait_ms",
        ),
        (json!({"group_name": "g", "config": 3}), "config"),
    ] {
        assert_error_says(&env.fetch(&address, body).await, "bad_request", field);
    }
    // The rejected requests created no group state: the group still starts at the beginning.
    let reply = group_fetch(&env, &address, "g", json!({"deliver": "latest"})).await;
    assert!(ids(&reply).is_empty());
}
