//! General rules of protocol.md §1: unknown commands, malformed bodies, the shape of failure
//! replies, empty bodies, and that a bad request changes nothing.
mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn subjects_that_name_no_command_are_unknown_commands() {
    let env = Env::start().await;
    for subject in [
        "$mq9.AI.NOPE",
        "$mq9.AI.MSG.PEEK.box",
        "$mq9.AI.MSG",
        "$mq9.AI.MAILBOX.DESTROY",
        "$mq9.AI.MAILBOX.CREATE.extra",
        "$mq9.AI.mailbox.create",
    ] {
        let reply = env.request(subject, "{}").await;
        assert_eq!(
            reply,
            json!({"error": format!("unknown command: {subject}"), "code": "bad_request"})
        );
    }
}

#[tokio::test]
async fn malformed_bodies_are_bad_requests_for_every_command() {
    let env = Env::start().await;
    let address = env.create(json!({"name": "body.check"})).await;
    let subjects = [
        "$mq9.AI.MAILBOX.CREATE".to_owned(),
        format!("$mq9.AI.MSG.FETCH.{address}"),
        format!("$mq9.AI.MSG.ACK.{address}"),
        format!("$mq9.AI.MSG.QUERY.{address}"),
        format!("$mq9.AI.MAILBOX.QUERY.{address}"),
    ];
    for subject in &subjects {
        for body in ["{", "{\"ttl\":}", "[1]", "42", "\"text\"", "null", "\u{1}"] {
            let reply = env.request(subject, body).await;
            assert_error(&reply, "bad_request");
        }
    }
}

#[tokio::test]
async fn wrong_field_types_name_the_field() {
    let env = Env::start().await;
    let address = env.create(json!({"name": "type.check"})).await;
    let fetch = format!("$mq9.AI.MSG.FETCH.{address}");
    let query = format!("$mq9.AI.MSG.QUERY.{address}");
    let cases = [
        ("$mq9.AI.MAILBOX.CREATE", json!({"ttl": true}), "ttl"),
        ("$mq9.AI.MAILBOX.CREATE", json!({"type": "archive"}), "type"),
        ("$mq9.AI.MAILBOX.CREATE", json!({"name": ["a"]}), "name"),
        (&fetch, json!({"deliver": 1}), "deliver"),
        (&fetch, json!({"deliver": "LATEST"}), "deliver"),
        (&fetch, json!({"from_id": "3"}), "from_id"),
        (&fetch, json!({"from_time": -3}), "from_time"),
        (&fetch, json!({"config": {"num_msgs": "ten"}}), "num_msgs"),
        (
            &fetch,
            json!({"config": {"max_wait_ms": 1.5}}),
            "max_wait_ms",
        ),
        (&query, json!({"limit": -1}), "limit"),
        (&query, json!({"tags": {"a": 1}}), "tags"),
    ];
    for (subject, body, field) in cases {
        let reply = env.request(subject, &body.to_string()).await;
        assert_error_says(&reply, "bad_request", field);
    }
}

#[tokio::test]
async fn bad_subjects_are_bad_requests() {
    let env = Env::start().await;
    let address = env.create(json!({"name": "subj.check"})).await;
    for subject in [
        "$mq9.AI.MSG.SEND.Upper".to_owned(),
        "$mq9.AI.MSG.FETCH.a-b".to_owned(),
        format!("$mq9.AI.INBOX.{address}.loud"),
        format!("$mq9.AI.INBOX.{address}.URGENT"),
        format!("$mq9.AI.MSG.DELETE.{address}.-1"),
        format!("$mq9.AI.MSG.DELETE.{address}.x"),
    ] {
        let reply = env.request(&subject, "").await;
        assert_error(&reply, "bad_request");
    }
    assert!(
        env.query_ids(&address).await.is_empty(),
        "nothing was stored"
    );
}

#[tokio::test]
async fn empty_bodies_mean_all_defaults() {
    let env = Env::start().await;
    let created = env.request("$mq9.AI.MAILBOX.CREATE", "").await;
    assert_eq!(created["error"], "");
    let address = created["mail_address"].as_str().unwrap();
    env.send_ok(address, b"x", &[]).await;
    for subject in [
        format!("$mq9.AI.MSG.FETCH.{address}"),
        format!("$mq9.AI.MSG.QUERY.{address}"),
        format!("$mq9.AI.MAILBOX.QUERY.{address}"),
    ] {
        for body in ["", " \n", "{}"] {
            let reply = env.request(&subject, body).await;
            assert_eq!(ids(&reply), vec![0], "{subject} with {body:?}");
        }
    }
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let env = Env::start().await;
    let address = env
        .create(json!({"name": "extra.fields", "future_option": {"x": 1}}))
        .await;
    env.send_ok(&address, b"x", &[]).await;
    let reply = env
        .fetch(&address, json!({"mail_address": address, "extra": [1, 2]}))
        .await;
    assert_eq!(ids(&reply), vec![0]);
}

#[tokio::test]
async fn success_replies_carry_an_empty_error() {
    let env = Env::start().await;
    let address = env.create(json!({})).await;
    let replies = [
        env.send(&address, b"x", &[]).await,
        env.fetch(&address, json!({"group_name": "g"})).await,
        env.ack(&address, "g", 0).await,
        env.query(&address, json!({})).await,
        env.mailbox_query(&address, json!({})).await,
        env.delete(&address, 0).await,
    ];
    for reply in replies {
        assert_eq!(reply["error"], "", "{reply}");
        assert!(reply.get("code").is_none(), "success has no code: {reply}");
    }
}
