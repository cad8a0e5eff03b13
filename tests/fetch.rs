//! `$mq9.AI.MSG.FETCH.{addr}` without a group (protocol.md §3): deliver policies, order,
//! `num_msgs`, long-poll, and the message item shape. Groups and leases: `fetch_groups.rs`.
mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

async fn mailbox(env: &Env) -> String {
    env.create(json!({"ttl": 3600})).await
}

/// A non-waiting FETCH with `deliver` and extra top-level fields.
async fn fetch_now(env: &Env, address: &str, mut body: serde_json::Value) -> Vec<u64> {
    body["config"] = json!({"max_wait_ms": 0});
    ids(&env.fetch(address, body).await)
}

#[tokio::test]
async fn stateless_fetches_read_without_consuming_in_every_sdk_shape() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    env.send_many(&address, 3).await;
    for body in [
        json!({}),
        json!({"group_name": ""}),
        json!({"group_name": "", "deliver": "earliest", "from_time": 0, "from_id": 0}),
        json!({"group_name": "", "from_time": 0, "from_id": 0, "force_deliver": false}),
        json!({"group_name": null}),
    ] {
        for _ in 0..2 {
            let reply = env.fetch(&address, body.clone()).await;
            assert_eq!(ids(&reply), vec![0, 1, 2], "{body}");
        }
    }
    let reply = env
        .request(&format!("$mq9.AI.MSG.FETCH.{address}"), "")
        .await;
    assert_eq!(ids(&reply), vec![0, 1, 2], "empty body = all defaults");
}

#[tokio::test]
async fn deliver_picks_where_a_stateless_fetch_starts() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    env.send_many(&address, 3).await;
    sleep_into_next_second().await;
    env.send_many(&address, 2).await;
    let stored = messages(&env.query(&address, json!({})).await);
    let create_time = |i: usize| stored[i]["create_time"].as_u64().unwrap();
    let (early, late) = (create_time(2), create_time(3));
    assert!(early < late, "the sends are a second apart");

    let cases = [
        (json!({"deliver": "earliest"}), vec![0, 1, 2, 3, 4]),
        (json!({"deliver": "latest"}), vec![]),
        (json!({"deliver": "from_id", "from_id": 2}), vec![2, 3, 4]),
        (json!({"deliver": "from_id", "from_id": 99}), vec![]),
        (
            json!({"deliver": "from_time", "from_time": late}),
            vec![3, 4],
        ),
        (
            json!({"deliver": "from_time", "from_time": early}),
            vec![0, 1, 2, 3, 4],
        ),
        (
            json!({"deliver": "from_time", "from_time": late + 10}),
            vec![],
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            fetch_now(&env, &address, body.clone()).await,
            expected,
            "{body}"
        );
    }
    for (body, field) in [
        (json!({"deliver": "from_id"}), "from_id"),
        (json!({"deliver": "from_time"}), "from_time"),
        (json!({"deliver": "newest"}), "deliver"),
    ] {
        assert_error_says(&env.fetch(&address, body).await, "bad_request", field);
    }
}

#[tokio::test]
async fn order_is_priority_then_msg_id() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    let sends = [
        "notify", "normal", "critical", "urgent", "normal", "critical", "notify", "urgent",
    ];
    for priority in sends {
        env.send_ok(&address, priority.as_bytes(), &[("mq9-priority", priority)])
            .await;
    }
    let reply = env.fetch(&address, json!({})).await;
    assert_eq!(ids(&reply), vec![2, 5, 3, 7, 1, 4, 0, 6]);
    let priorities: Vec<String> = messages(&reply)
        .iter()
        .map(|m| m["priority"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        priorities,
        texts(&reply),
        "priority field matches the header"
    );
}

#[tokio::test]
async fn num_msgs_defaults_to_100_caps_the_whole_reply_and_is_at_most_1000() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    env.send_many(&address, 150).await;
    let reply = env.fetch(&address, json!({})).await;
    assert_eq!(ids(&reply), (0..100).collect::<Vec<u64>>());
    let reply = env
        .fetch(&address, json!({"config": {"num_msgs": 1000}}))
        .await;
    assert_eq!(ids(&reply).len(), 150);
    // The cap counts across priorities.
    env.send_ok(&address, b"c", &[("mq9-priority", "critical")])
        .await;
    let reply = env
        .fetch(&address, json!({"config": {"num_msgs": 3}}))
        .await;
    assert_eq!(ids(&reply), vec![150, 0, 1]);
    for bad in [0, 1001] {
        let reply = env
            .fetch(&address, json!({"config": {"num_msgs": bad}}))
            .await;
        assert_error_says(&reply, "bad_request", "num_msgs");
    }
}

#[tokio::test]
async fn long_poll_answers_as_soon_as_a_message_arrives() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    env.send_ok(&address, b"old", &[]).await;
    let poll = env.fetch_timed(
        &address,
        json!({"deliver": "latest", "config": {"max_wait_ms": 10000}}),
    );
    let send = env.send_ok(&address, b"fresh", &[]);
    let ((reply, took), sent) = env.woken_by(1, poll, send).await;
    assert_eq!(sent, 1);
    assert_eq!(
        texts(&reply),
        vec!["fresh"],
        "only what arrived after the request"
    );
    assert!(
        took < Duration::from_secs(5),
        "answered after {took:?}, not early"
    );
}

#[tokio::test]
async fn long_poll_answers_empty_at_its_deadline() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    let (reply, took) = env
        .fetch_timed(&address, json!({"config": {"max_wait_ms": 1000}}))
        .await;
    assert_eq!(reply, json!({"error": "", "messages": []}));
    assert!(took >= Duration::from_millis(900), "held only {took:?}");
    assert!(took < Duration::from_secs(6), "held {took:?}");
    let (reply, took) = env
        .fetch_timed(&address, json!({"config": {"max_wait_ms": 0}}))
        .await;
    assert!(ids(&reply).is_empty());
    assert!(
        took < Duration::from_millis(900),
        "max_wait_ms 0 does not wait"
    );
    let reply = env
        .fetch(&address, json!({"config": {"max_wait_ms": 30001}}))
        .await;
    assert_error_says(&reply, "bad_request", "max_wait_ms");
}

#[tokio::test]
async fn payloads_are_standard_base64_with_padding_and_binary_safe() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    env.send_ok(&address, b"a", &[]).await;
    env.send_ok(&address, &[0xfb, 0xff], &[]).await;
    env.send_ok(&address, &all_bytes, &[]).await;
    let fetched = messages(&env.fetch(&address, json!({})).await);
    assert_eq!(fetched[0]["payload"], "YQ==", "padding kept");
    assert_eq!(
        fetched[1]["payload"], "+/8=",
        "standard alphabet, not URL-safe"
    );
    assert_eq!(payload(&fetched[2]), all_bytes);
}

#[tokio::test]
async fn items_carry_every_field() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    let sent_at = now_secs();
    let headers = [("mq9-key", "k1"), ("mq9-tags", "x,y"), ("trace", "t")];
    env.send_ok(&address, b"p", &headers).await;
    let fetched = messages(&env.fetch(&address, json!({})).await);
    let item = &fetched[0];
    assert_eq!(item["msg_id"], 0);
    assert_eq!(item["payload"], "cA==");
    assert_eq!(item["priority"], "normal");
    assert!(item["create_time"].as_u64().unwrap().abs_diff(sent_at) <= 2);
    assert!(item["delivery_count"].as_u64().is_some(), "{item}");
    assert_eq!(item["headers"]["trace"], "t");
    assert_eq!(item["key"], "k1");
    assert_eq!(item["tags"], json!(["x", "y"]));
}

#[tokio::test]
async fn fetch_of_an_unknown_mailbox_is_not_found() {
    let env = Env::start().await;
    let reply = env.fetch("nobody.home", json!({})).await;
    assert_eq!(
        reply,
        json!({"error": "mailbox nobody.home does not exist", "code": "not_found"})
    );
}
