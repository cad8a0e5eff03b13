//! `$mq9.AI.MSG.SEND.{addr}` and `$mq9.AI.INBOX.{addr}.{priority}` (protocol.md §3).
mod support;

use futures::StreamExt;
use serde_json::{json, Value};
use support::*;

async fn mailbox(env: &Env) -> String {
    env.create(json!({"ttl": 3600})).await
}

/// The only message of a QUERY reply.
async fn only_message(env: &Env, address: &str) -> Value {
    let found = messages(&env.query(address, json!({})).await);
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[tokio::test]
async fn msg_ids_are_dense_from_zero_per_mailbox() {
    let env = Env::start().await;
    let a = mailbox(&env).await;
    let b = mailbox(&env).await;
    for expected in 0..5 {
        assert_eq!(env.send_ok(&a, b"a", &[]).await, expected);
    }
    assert_eq!(
        env.send_ok(&b, b"b", &[]).await,
        0,
        "each mailbox counts alone"
    );
    let reply = env.send(&a, b"a", &[]).await;
    assert_eq!(reply, json!({"error": "", "msg_id": 5}));
}

#[tokio::test]
async fn inbox_subject_sends_with_its_priority() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    for (i, priority) in ["notify", "normal", "urgent", "critical"]
        .iter()
        .enumerate()
    {
        let reply = env.inbox(&address, priority, priority.as_bytes()).await;
        assert_eq!(reply, json!({"error": "", "msg_id": i}));
    }
    let fetched = messages(&env.fetch(&address, json!({})).await);
    let got: Vec<(&str, String)> = fetched
        .iter()
        .map(|m| {
            let text = String::from_utf8(payload(m)).unwrap();
            (m["priority"].as_str().unwrap(), text)
        })
        .collect();
    let expected = ["critical", "urgent", "normal", "notify"];
    assert_eq!(
        got,
        expected.map(|p| (p, p.to_owned())).to_vec(),
        "priority field and delivery order"
    );
    for bad in ["loud", "Urgent", "1"] {
        assert_error(&env.inbox(&address, bad, b"x").await, "bad_request");
    }
    assert_error(&env.inbox("nobody.home", "normal", b"x").await, "not_found");
}

#[tokio::test]
async fn a_plain_publish_without_reply_subject_is_stored() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    env.publish(
        &format!("$mq9.AI.MSG.SEND.{address}"),
        &[("mq9-priority", "urgent")],
        b"pub-send",
    )
    .await;
    env.publish(
        &format!("$mq9.AI.INBOX.{address}.critical"),
        &[],
        b"pub-inbox",
    )
    .await;
    wait_until("both publishes are stored", || async {
        env.query_ids(&address).await.len() == 2
    })
    .await;
    let fetched = messages(&env.fetch(&address, json!({})).await);
    let got: Vec<(&Value, Vec<u8>)> = fetched
        .iter()
        .map(|m| (&m["priority"], payload(m)))
        .collect();
    assert_eq!(
        got,
        vec![
            (&json!("critical"), b"pub-inbox".to_vec()),
            (&json!("urgent"), b"pub-send".to_vec())
        ]
    );
}

#[tokio::test]
async fn live_inbox_subscribers_receive_the_publish_too() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    let listener = async_nats::connect(env.nats.url()).await.unwrap();
    let mut live = listener
        .subscribe(format!("$mq9.AI.INBOX.{address}.*"))
        .await
        .unwrap();
    support::server_caught_up(&listener).await;
    assert_eq!(env.inbox(&address, "urgent", b"hello").await["msg_id"], 0);
    let received = tokio::time::timeout(DEADLINE, live.next())
        .await
        .expect("live subscriber got the publish")
        .unwrap();
    assert_eq!(
        received.subject.as_str(),
        format!("$mq9.AI.INBOX.{address}.urgent")
    );
    assert_eq!(&received.payload[..], b"hello");
    assert_eq!(texts(&env.query(&address, json!({})).await), vec!["hello"]);
}

#[tokio::test]
async fn options_come_back_as_fields_and_other_headers_are_returned() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    let headers = [
        ("MQ9-PRIORITY", "critical"),
        ("Mq9-Key", "status"),
        ("mq9-TAGS", "billing, eu"),
        ("mq9-future-option", "ignored"),
        ("trace-id", "t-1"),
        ("X-Agent", "planner"),
    ];
    assert_eq!(env.send_ok(&address, b"body", &headers).await, 0);
    let before = now_secs();
    let message = only_message(&env, &address).await;
    assert_eq!(
        message["priority"], "critical",
        "header names are case-insensitive"
    );
    assert_eq!(message["key"], "status");
    assert_eq!(message["tags"], json!(["billing", "eu"]));
    assert_eq!(message["headers"]["trace-id"], "t-1");
    assert_eq!(message["headers"]["X-Agent"], "planner");
    assert!(message["create_time"].as_u64().unwrap().abs_diff(before) <= 2);
    assert_eq!(payload(&message), b"body");
}

#[tokio::test]
async fn compaction_keeps_only_the_newest_message_per_key() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    env.send_ok(&address, b"a1", &[("mq9-key", "a")]).await;
    env.send_ok(&address, b"b1", &[("mq9-key", "b")]).await;
    env.send_ok(&address, b"plain", &[]).await;
    // A newer message with the same key replaces the old one, whatever its priority.
    let a2 = env
        .send_ok(
            &address,
            b"a2",
            &[("mq9-key", "a"), ("mq9-priority", "urgent")],
        )
        .await;
    assert_eq!(a2, 3);
    assert_eq!(
        texts(&env.query(&address, json!({})).await),
        vec!["b1", "plain", "a2"]
    );
    assert_eq!(
        texts(&env.fetch(&address, json!({})).await),
        vec!["a2", "b1", "plain"]
    );
    let keyed = env.query(&address, json!({"key": "a"})).await;
    assert_eq!(ids(&keyed), vec![3]);
}

#[tokio::test]
async fn compaction_removes_a_message_a_group_holds_under_lease() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    env.send_ok(&address, b"old", &[("mq9-key", "k")]).await;
    let leased = env
        .fetch(
            &address,
            json!({"group_name": "g", "config": {"ack_wait_ms": 300}}),
        )
        .await;
    assert_eq!(ids(&leased), vec![0]);
    env.send_ok(&address, b"new", &[("mq9-key", "k")]).await;
    // Let the lease on the replaced message end: it must not come back.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let group = env
        .fetch(
            &address,
            json!({"group_name": "g", "config": {"max_wait_ms": 0}}),
        )
        .await;
    assert_eq!(texts(&group), vec!["new"]);
    assert_eq!(messages(&group)[0]["delivery_count"], 1);
    let other = env.fetch(&address, json!({"group_name": "h"})).await;
    assert_eq!(
        texts(&other),
        vec!["new"],
        "a fresh group sees only the newest"
    );
    assert_eq!(env.ack(&address, "g", 1).await["error"], "");
    let after = env
        .fetch(
            &address,
            json!({"group_name": "g", "config": {"max_wait_ms": 0}}),
        )
        .await;
    assert!(ids(&after).is_empty(), "{after}");
}

#[tokio::test]
async fn latest_mailboxes_keep_only_the_newest_message() {
    let env = Env::start().await;
    let address = env.create(json!({"type": "latest", "ttl": 3600})).await;
    for (i, status) in ["idle", "busy", "done"].iter().enumerate() {
        let headers = [("mq9-priority", if i == 1 { "critical" } else { "normal" })];
        assert_eq!(
            env.send_ok(&address, status.as_bytes(), &headers).await,
            i as i64
        );
    }
    assert_eq!(texts(&env.query(&address, json!({})).await), vec!["done"]);
    assert_eq!(texts(&env.fetch(&address, json!({})).await), vec!["done"]);
    assert_eq!(env.mailbox_query(&address, json!({})).await["unread"], 1);
}

#[tokio::test]
async fn unknown_mailboxes_are_not_found() {
    let env = Env::start().await;
    let reply = env.send("nobody.home", b"x", &[]).await;
    assert_eq!(
        reply,
        json!({"error": "mailbox nobody.home does not exist", "code": "not_found"})
    );
}

#[tokio::test]
async fn bad_header_values_are_rejected_naming_the_header_and_store_nothing() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    for (name, value) in [
        ("mq9-priority", "loud"),
        ("mq9-delay", "-1"),
        ("mq9-delay", "soon"),
        ("mq9-ttl", "1.5"),
        ("MQ9-TTL", "x"),
    ] {
        let reply = env.send(&address, b"x", &[(name, value)]).await;
        assert_error_says(&reply, "bad_request", &name.to_ascii_lowercase());
    }
    assert!(env.query_ids(&address).await.is_empty(), "nothing stored");
    assert_eq!(env.send_ok(&address, b"ok", &[]).await, 0, "no id was used");
}

#[tokio::test]
async fn payloads_are_stored_byte_exact() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    let all_bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    env.send_ok(&address, &all_bytes, &[]).await;
    env.send_ok(&address, b"", &[]).await;
    let fetched = messages(&env.fetch(&address, json!({})).await);
    assert_eq!(payload(&fetched[0]), all_bytes);
    assert_eq!(
        payload(&fetched[1]),
        b"",
        "an empty payload is a message too"
    );
}
