//! `$mq9.AI.MAILBOX.CREATE` (protocol.md §2, §3): names, TTLs, types and the reply shape.
mod support;

use std::collections::HashSet;

use serde_json::{json, Value};
use support::*;

async fn create_reply(env: &Env, body: Value) -> Value {
    env.request("$mq9.AI.MAILBOX.CREATE", &body.to_string())
        .await
}

#[tokio::test]
async fn generated_names_are_26_lowercase_base32_characters_and_distinct() {
    let env = Env::start().await;
    let mut seen = HashSet::new();
    for _ in 0..20 {
        let reply = create_reply(&env, json!({})).await;
        assert_eq!(reply["error"], "", "{reply}");
        let name = reply["mail_address"].as_str().unwrap().to_owned();
        assert_eq!(name.len(), 26, "{name}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
            "not lowercase base32: {name}"
        );
        assert_eq!(reply["mail_id"], reply["mail_address"]);
        assert!(seen.insert(name), "a generated name repeated");
    }
}

#[tokio::test]
async fn an_empty_body_creates_a_standard_mailbox_with_the_default_ttl() {
    let env = Env::start().await;
    let before = now_secs();
    let reply = env.request("$mq9.AI.MAILBOX.CREATE", "").await;
    let after = now_secs();
    assert_eq!(reply["error"], "", "{reply}");
    assert_eq!(reply["type"], "standard");
    assert_eq!(reply["ttl"], 86400);
    let expires_at = reply["expires_at"].as_u64().unwrap();
    assert!(
        (before + 86400..=after + 86400).contains(&expires_at),
        "expires_at {expires_at} is not now + 86400"
    );
    let keys: Vec<&str> = reply
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for field in [
        "error",
        "mail_address",
        "mail_id",
        "type",
        "ttl",
        "expires_at",
    ] {
        assert!(keys.contains(&field), "reply lacks {field}: {reply}");
    }
}

#[tokio::test]
async fn explicit_ttl_type_and_never_expiring_mailboxes() {
    let env = Env::start().await;
    let reply = create_reply(&env, json!({"name": "keeper", "ttl": 0, "type": "latest"})).await;
    assert_eq!(reply["error"], "", "{reply}");
    assert_eq!(
        (&reply["mail_address"], &reply["mail_id"]),
        (&json!("keeper"), &json!("keeper"))
    );
    assert_eq!(reply["type"], "latest");
    assert_eq!(reply["ttl"], 0);
    assert_eq!(reply["expires_at"], 0, "ttl 0 never expires");

    let reply = create_reply(&env, json!({"ttl": 60, "type": "standard", "desc": "x"})).await;
    assert_eq!(reply["ttl"], 60);
    let expires_at = reply["expires_at"].as_u64().unwrap();
    assert!(expires_at.abs_diff(now_secs() + 60) <= 2, "{reply}");
}

#[tokio::test]
async fn the_broker_default_ttl_is_configurable() {
    let env = Env::start_with(&["--default-mailbox-ttl", "0"]).await;
    let reply = create_reply(&env, json!({})).await;
    assert_eq!(
        (&reply["ttl"], &reply["expires_at"]),
        (&json!(0), &json!(0))
    );
}

#[tokio::test]
async fn explicit_names_follow_the_address_grammar() {
    let env = Env::start().await;
    let longest = "a".repeat(128);
    for name in ["a", "agent42", "team.agent1", "x1.y2.z3", longest.as_str()] {
        let reply = create_reply(&env, json!({ "name": name })).await;
        assert_eq!(reply["error"], "", "{name}: {reply}");
        assert_eq!(reply["mail_address"], name);
    }
    let too_long = "a".repeat(129);
    for name in [
        "",
        "Agent",
        "a..b",
        ".a",
        "a.",
        "a-b",
        "a b",
        "a*",
        "a.>",
        "ä",
        too_long.as_str(),
    ] {
        let reply = create_reply(&env, json!({ "name": name })).await;
        assert_error_says(&reply, "bad_request", "name");
    }
}

#[tokio::test]
async fn a_dotted_name_works_in_every_subject() {
    let env = Env::start().await;
    let address = env.create(json!({"name": "team.agent1"})).await;
    assert_eq!(env.send_ok(&address, b"one", &[]).await, 0);
    assert_eq!(env.inbox(&address, "urgent", b"two").await["msg_id"], 1);
    let fetched = env.fetch(&address, json!({})).await;
    assert_eq!(texts(&fetched), vec!["two", "one"]);
    assert_eq!(
        env.ack(&address, "g", 0).await,
        json!({"error": ""}),
        "ACK on a dotted address"
    );
    assert_eq!(env.delete(&address, 0).await["deleted"], true);
    assert_eq!(env.query_ids(&address).await, vec![1]);
    let reply = env.mailbox_query(&address, json!({})).await;
    assert_eq!(reply["mail_id"], "team.agent1");
    // The dotted name does not alias a shorter one.
    assert_error(&env.send("team", b"x", &[]).await, "not_found");
}

#[tokio::test]
async fn a_live_name_cannot_be_created_twice() {
    let env = Env::start().await;
    let address = env.create(json!({"name": "dup.box", "ttl": 3600})).await;
    env.send_ok(&address, b"kept", &[]).await;
    let reply = create_reply(&env, json!({"name": "dup.box", "type": "latest"})).await;
    assert_error(&reply, "already_exists");
    assert_eq!(reply["error"], "mailbox dup.box already exists");
    assert_eq!(
        texts(&env.query(&address, json!({})).await),
        vec!["kept"],
        "the failed create changed nothing"
    );
}

#[tokio::test]
async fn wrong_field_types_and_unknown_types_are_bad_requests() {
    let env = Env::start().await;
    for (body, field) in [
        (json!({"type": "fancy"}), "type"),
        (json!({"type": 1}), "type"),
        (json!({"ttl": "soon"}), "ttl"),
        (json!({"ttl": -1}), "ttl"),
        (json!({"ttl": 1.5}), "ttl"),
        (json!({"name": 7}), "name"),
        (json!({"desc": []}), "desc"),
    ] {
        let reply = create_reply(&env, body.clone()).await;
        assert_error_says(&reply, "bad_request", field);
    }
    // Nothing was created by the failed requests.
    let reply = create_reply(&env, json!({"name": "partial", "ttl": "soon"})).await;
    assert_error(&reply, "bad_request");
    assert_error(&env.send("partial", b"x", &[]).await, "not_found");
}
