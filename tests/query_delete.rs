//! `MSG.QUERY`, `MAILBOX.QUERY` and `MSG.DELETE` (protocol.md §3).
mod support;

use serde_json::json;
use support::*;

async fn mailbox(env: &Env) -> String {
    env.create(json!({"ttl": 3600})).await
}

#[tokio::test]
async fn filters_combine_with_and() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    env.send_ok(&address, b"0", &[("mq9-key", "a"), ("mq9-tags", "x")])
        .await;
    env.send_ok(&address, b"1", &[("mq9-tags", "x,y")]).await;
    env.send_ok(&address, b"2", &[("mq9-key", "b"), ("mq9-tags", "y")])
        .await;
    env.send_ok(&address, b"3", &[]).await;
    sleep_into_next_second().await;
    env.send_ok(&address, b"4", &[("mq9-tags", "x")]).await;
    let stored = messages(&env.query(&address, json!({})).await);
    let since = stored[4]["create_time"].as_u64().unwrap();
    assert!(stored[3]["create_time"].as_u64().unwrap() < since);

    let cases = [
        (json!({}), vec![0, 1, 2, 3, 4]),
        (json!({"key": "a"}), vec![0]),
        (json!({"key": "zzz"}), vec![]),
        (json!({"tags": ["x"]}), vec![0, 1, 4]),
        (json!({"tags": ["x", "y"]}), vec![1]),
        (json!({"tags": []}), vec![0, 1, 2, 3, 4]),
        (json!({"key": "a", "tags": ["y"]}), vec![]),
        (json!({"key": "b", "tags": ["y"]}), vec![2]),
        (json!({"since": since}), vec![4]),
        (json!({"since": since, "tags": ["x"]}), vec![4]),
        (json!({"since": since, "tags": ["y"]}), vec![]),
        (json!({"since": since + 5}), vec![]),
    ];
    for (body, expected) in cases {
        assert_eq!(
            ids(&env.query(&address, body.clone()).await),
            expected,
            "{body}"
        );
    }
}

#[tokio::test]
async fn the_newest_matches_come_back_in_msg_id_order() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    for priority in ["notify", "critical", "normal", "urgent", "notify"] {
        env.send_ok(&address, priority.as_bytes(), &[("mq9-priority", priority)])
            .await;
    }
    let reply = env.query(&address, json!({"limit": 3})).await;
    assert_eq!(
        ids(&reply),
        vec![2, 3, 4],
        "newest 3, msg_id order, not priority"
    );
    assert_eq!(texts(&reply), vec!["normal", "urgent", "notify"]);
    assert_eq!(messages(&reply)[1]["priority"], "urgent");
}

#[tokio::test]
async fn limit_defaults_to_100_and_is_at_most_1000() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    env.send_many(&address, 120).await;
    assert_eq!(
        env.query_ids(&address).await,
        (20..120).collect::<Vec<u64>>()
    );
    let all = env.query(&address, json!({"limit": 1000})).await;
    assert_eq!(ids(&all).len(), 120);
    for bad in [json!(0), json!(1001), json!("5")] {
        let reply = env.query(&address, json!({ "limit": bad })).await;
        assert_error_says(&reply, "bad_request", "limit");
    }
}

#[tokio::test]
async fn query_touches_no_group_state() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    env.send_many(&address, 3).await;
    assert_eq!(env.query_ids(&address).await, vec![0, 1, 2]);
    let group = json!({"group_name": "g", "config": {"max_wait_ms": 0}});
    let fetched = env.fetch(&address, group.clone()).await;
    assert_eq!(ids(&fetched), vec![0, 1, 2], "the query consumed nothing");
    assert!(messages(&fetched).iter().all(|m| m["delivery_count"] == 1));
    // Leased and acknowledged messages remain visible to QUERY, and QUERY does not release
    // or renew them.
    env.ack_ok(&address, "g", 0).await;
    assert_eq!(env.query_ids(&address).await, vec![0, 1, 2]);
    assert!(ids(&env.fetch(&address, group).await).is_empty());
}

#[tokio::test]
async fn mailbox_query_reports_its_address_and_unread_count() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    env.send_many(&address, 3).await;
    env.send_ok(&address, b"later", &[("mq9-delay", "60")])
        .await;
    let reply = env.mailbox_query(&address, json!({})).await;
    assert_eq!(reply["mail_id"], address.as_str());
    assert_eq!(
        reply["unread"], 3,
        "a delayed message is not visible yet: {reply}"
    );
    assert_eq!(ids(&reply), vec![0, 1, 2]);
    let limited = env.mailbox_query(&address, json!({"limit": 1})).await;
    assert_eq!((ids(&limited), &limited["unread"]), (vec![2], &json!(3)));
    env.delete_ok(&address, 1).await;
    assert_eq!(env.mailbox_query(&address, json!({})).await["unread"], 2);
    let reply = env
        .request(&format!("$mq9.AI.MAILBOX.QUERY.{address}"), "")
        .await;
    assert_eq!(ids(&reply), vec![0, 2], "an empty body means all defaults");
    assert_error(
        &env.mailbox_query("nobody.home", json!({})).await,
        "not_found",
    );
    assert_error(&env.query("nobody.home", json!({})).await, "not_found");
}

#[tokio::test]
async fn delete_removes_the_message_for_every_reader() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    env.send_many(&address, 3).await;
    let leased = json!({"group_name": "g", "config": {"num_msgs": 1, "max_wait_ms": 0}});
    assert_eq!(ids(&env.fetch(&address, leased.clone()).await), vec![0]);
    assert_eq!(
        env.delete(&address, 0).await,
        json!({"error": "", "deleted": true})
    );
    assert_eq!(
        env.delete(&address, 2).await,
        json!({"error": "", "deleted": true})
    );
    assert_eq!(env.query_ids(&address).await, vec![1]);
    assert_eq!(ids(&env.fetch(&address, json!({})).await), vec![1]);
    assert_eq!(ids(&env.fetch(&address, leased).await), vec![1]);
    assert_eq!(
        env.delete(&address, 0).await,
        json!({"error": "message not found", "code": "not_found"}),
        "deleting twice"
    );
    assert_eq!(
        env.send_ok(&address, b"next", &[]).await,
        3,
        "ids are never reused"
    );
}

#[tokio::test]
async fn a_mailbox_cannot_delete_another_mailboxs_message() {
    let env = Env::start().await;
    let mine = mailbox(&env).await;
    let theirs = mailbox(&env).await;
    env.send_many(&theirs, 3).await;
    env.send_ok(&mine, b"mine", &[]).await;
    assert_error_says(
        &env.delete(&mine, 2).await,
        "not_found",
        "message not found",
    );
    assert_eq!(env.delete(&mine, 0).await["deleted"], true);
    assert_eq!(env.query_ids(&theirs).await, vec![0, 1, 2], "untouched");
    assert_eq!(
        env.delete("nobody.home", 0).await,
        json!({"error": "mailbox nobody.home does not exist", "code": "not_found"})
    );
    let reply = env
        .request(&format!("$mq9.AI.MSG.DELETE.{mine}.first"), "")
        .await;
    assert_error(&reply, "bad_request");
}

#[tokio::test]
async fn query_fields_of_the_wrong_type_are_bad_requests() {
    let env = Env::start().await;
    let address = mailbox(&env).await;
    for (body, field) in [
        (json!({"key": 5}), "key"),
        (json!({"tags": "x"}), "tags"),
        (json!({"tags": [1]}), "tags"),
        (json!({"since": "yesterday"}), "since"),
        (json!({"since": -1}), "since"),
    ] {
        assert_error_says(
            &env.query(&address, body.clone()).await,
            "bad_request",
            field,
        );
        let reply = env.mailbox_query(&address, body).await;
        assert_error_says(&reply, "bad_request", field);
    }
}
