//! Limits (protocol.md §1, §5): per-broker caps answer `full`, messages that could never be
//! returned are `too_large`, and replies never exceed the server's `max_payload`.
mod support;

use std::collections::HashSet;

use serde_json::json;
use support::*;

/// nats-server's default `max_payload`.
const MAX_PAYLOAD: usize = 1024 * 1024;

#[tokio::test]
async fn max_mailboxes_caps_create() {
    let env = Env::start_with(&["--max-mailboxes", "2"]).await;
    env.create(json!({"name": "one"})).await;
    env.create(json!({})).await;
    let reply = env
        .request("$mq9.AI.MAILBOX.CREATE", r#"{"name":"three"}"#)
        .await;
    assert_error(&reply, "full");
    assert_error(&env.send("three", b"x", &[]).await, "not_found");
    assert_eq!(env.send_ok("one", b"still works", &[]).await, 0);
}

#[tokio::test]
async fn max_messages_per_mailbox_answers_full_and_drops_nothing() {
    let env = Env::start_with(&["--max-messages-per-mailbox", "3"]).await;
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_many(&address, 3).await;
    assert_error(&env.send(&address, b"fourth", &[]).await, "full");
    assert_error(&env.inbox(&address, "critical", b"fourth").await, "full");
    let delayed = env.send(&address, b"fourth", &[("mq9-delay", "1")]).await;
    assert_error(&delayed, "full");
    assert_eq!(
        texts(&env.query(&address, json!({})).await),
        vec!["m0", "m1", "m2"]
    );
    // Replacing a keyed message takes no extra room; freeing room lets SEND in again.
    env.delete_ok(&address, 2).await;
    env.send_ok(&address, b"k1", &[("mq9-key", "k")]).await;
    env.send_ok(&address, b"k2", &[("mq9-key", "k")]).await;
    assert_error(&env.send(&address, b"more", &[]).await, "full");
    assert_eq!(
        texts(&env.query(&address, json!({})).await),
        vec!["m0", "m1", "k2"]
    );
    // The cap is per mailbox.
    let other = env.create(json!({"ttl": 3600})).await;
    assert_eq!(env.send_ok(&other, b"fine", &[]).await, 0);
}

#[tokio::test]
async fn max_bytes_per_mailbox_answers_full() {
    let env = Env::start_with(&["--max-bytes-per-mailbox", "10"]).await;
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_ok(&address, b"123456", &[]).await;
    assert_error(&env.send(&address, b"12345", &[]).await, "full");
    env.send_ok(&address, b"1234", &[]).await;
    assert_error(&env.send(&address, b"1", &[]).await, "full");
    assert_eq!(
        texts(&env.query(&address, json!({})).await),
        vec!["123456", "1234"]
    );
    env.delete_ok(&address, 0).await;
    env.send_ok(&address, b"abcdef", &[]).await;
}

#[tokio::test]
async fn a_message_that_could_never_be_returned_is_too_large() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    // 800 000 bytes fit in one NATS message but not, as base64, in a reply.
    let reply = env.send(&address, &vec![1u8; 800_000], &[]).await;
    assert_error(&reply, "too_large");
    assert!(env.query_ids(&address).await.is_empty());
    // 700 000 bytes still fit in a reply of their own.
    let big: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(env.send_ok(&address, &big, &[]).await, 0);
    let raw = env
        .request_raw(&format!("$mq9.AI.MSG.FETCH.{address}"), "{}")
        .await;
    assert!(raw.payload.len() <= MAX_PAYLOAD);
    let reply: serde_json::Value = serde_json::from_slice(&raw.payload).unwrap();
    assert_eq!(payload(&messages(&reply)[0]), big);
}

/// Eight messages of 256 KiB (2 MiB in all) come back over several replies, each within
/// `max_payload`, every message exactly once.
#[tokio::test]
async fn fetch_splits_two_mebibytes_over_replies_within_max_payload() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    let sent: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 256 * 1024]).collect();
    for body in &sent {
        env.send_ok(&address, body, &[]).await;
    }
    let subject = format!("$mq9.AI.MSG.FETCH.{address}");
    let request = json!({"group_name": "big", "config": {"max_wait_ms": 0}}).to_string();
    let mut received = Vec::new();
    let mut replies = 0;
    loop {
        let raw = env.request_raw(&subject, &request).await;
        assert!(
            raw.payload.len() <= MAX_PAYLOAD,
            "reply of {} bytes",
            raw.payload.len()
        );
        let reply: serde_json::Value = serde_json::from_slice(&raw.payload).unwrap();
        let batch = messages(&reply);
        let Some(last) = batch.last() else { break };
        replies += 1;
        env.ack_ok(&address, "big", last["msg_id"].as_u64().unwrap())
            .await;
        received.extend(batch.iter().map(payload));
        assert!(replies <= 8, "too many replies");
    }
    assert!(replies >= 3, "2 MiB cannot come back in {replies} replies");
    assert_eq!(received, sent, "every message exactly once, in order");
}

#[tokio::test]
async fn query_replies_stay_within_max_payload_and_keep_the_newest() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    for i in 0..6u8 {
        env.send_ok(&address, &vec![i; 300 * 1024], &[]).await;
    }
    let raw = env
        .request_raw(&format!("$mq9.AI.MSG.QUERY.{address}"), "{}")
        .await;
    assert!(raw.payload.len() <= MAX_PAYLOAD);
    let reply: serde_json::Value = serde_json::from_slice(&raw.payload).unwrap();
    let got = ids(&reply);
    assert!(!got.is_empty() && got.len() < 6, "{got:?}");
    let newest: Vec<u64> = (6 - got.len() as u64..6).collect();
    assert_eq!(got, newest, "the newest that fit, in msg_id order");
    let distinct: HashSet<_> = messages(&reply).iter().map(payload).collect();
    assert_eq!(distinct.len(), got.len());
}
