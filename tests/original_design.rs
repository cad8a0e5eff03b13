//! The original design's flow (shared/seed/), done exactly as its example does it: a plain
//! NATS client, `MAILBOX.CREATE` with `{"type":"standard","ttl":3600}`, plain publishes to
//! `$mq9.AI.INBOX.{mail_id}.{priority}` and `$mq9.AI.BROADCAST.task.available`, live
//! subscribers, queue groups, and `MAILBOX.QUERY` as the pull fallback.
mod support;

use std::collections::BTreeSet;

use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};
use support::*;

/// A plain NATS connection, as any agent would open one.
async fn connect(env: &Env) -> async_nats::Client {
    async_nats::connect(env.nats.url()).await.unwrap()
}

/// `nc.request(subject, body)`; the reply as JSON.
async fn request(nc: &async_nats::Client, subject: &str, body: &str) -> Value {
    let reply = tokio::time::timeout(
        DEADLINE,
        nc.request(subject.to_owned(), body.as_bytes().to_vec().into()),
    )
    .await
    .unwrap_or_else(|_| panic!("{subject} answered"))
    .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

/// `nc.request("$mq9.AI.MAILBOX.CREATE", body)`; returns `mail_id`.
async fn create_mailbox(nc: &async_nats::Client, body: &str) -> String {
    let reply = request(nc, "$mq9.AI.MAILBOX.CREATE", body).await;
    assert_eq!(reply["error"], "", "{reply}");
    reply["mail_id"].as_str().expect("mail_id").to_owned()
}

/// `nc.publish(subject, payload)`: no reply subject, flushed.
async fn publish(nc: &async_nats::Client, subject: &str, payload: &str) {
    nc.publish(subject.to_owned(), payload.as_bytes().to_vec().into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
}

/// Waits until `MAILBOX.QUERY.{mail_id}` reports `unread` messages; returns that reply.
async fn wait_unread(env: &Env, mail_id: &str, unread: u64) -> Value {
    wait_until(&format!("{mail_id} has {unread} unread"), || async {
        env.mailbox_query(mail_id, json!({})).await["unread"] == unread
    })
    .await;
    env.mailbox_query(mail_id, json!({})).await
}

/// The payload of the next message on a live subscription.
async fn next_text(subscriber: &mut async_nats::Subscriber) -> (String, String) {
    let message = tokio::time::timeout(DEADLINE, subscriber.next())
        .await
        .expect("a live message arrives")
        .unwrap();
    (
        message.subject.to_string(),
        String::from_utf8(message.payload.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn send_by_subject_suffix_live_and_from_the_mailbox_in_priority_order() {
    let env = Env::start().await;
    let nc = connect(&env).await;
    let mail_id = create_mailbox(&nc, r#"{"type":"standard","ttl":3600}"#).await;
    // The agent is online: it listens on its inbox.
    let mut live = nc
        .subscribe(format!("$mq9.AI.INBOX.{mail_id}.*"))
        .await
        .unwrap();
    support::server_caught_up(&nc).await;
    let sender = connect(&env).await;
    for (priority, payload) in [("normal", "result"), ("urgent", "alarm"), ("notify", "fyi")] {
        publish(
            &sender,
            &format!("$mq9.AI.INBOX.{mail_id}.{priority}"),
            payload,
        )
        .await;
    }
    for (priority, payload) in [("normal", "result"), ("urgent", "alarm"), ("notify", "fyi")] {
        assert_eq!(
            next_text(&mut live).await,
            (
                format!("$mq9.AI.INBOX.{mail_id}.{priority}"),
                payload.into()
            )
        );
    }
    // The mailbox kept them too.
    let reply = wait_unread(&env, &mail_id, 3).await;
    assert_eq!(
        (&reply["error"], &reply["mail_id"]),
        (&json!(""), &json!(mail_id))
    );
    assert_eq!(texts(&reply), ["result", "alarm", "fyi"]);
    let fetched = env.fetch(&mail_id, json!({})).await;
    assert_eq!(texts(&fetched), ["alarm", "result", "fyi"]);
    let priorities: Vec<Value> = messages(&fetched)
        .iter()
        .map(|m| m["priority"].clone())
        .collect();
    assert_eq!(
        priorities,
        [json!("urgent"), json!("normal"), json!("notify")]
    );
}

#[tokio::test]
async fn an_agent_that_was_offline_finds_its_messages_waiting() {
    let env = Env::start().await;
    let agent = connect(&env).await;
    let mail_id = create_mailbox(&agent, r#"{"type":"standard","ttl":3600}"#).await;
    drop(agent);
    let sender = connect(&env).await;
    for (priority, payload) in [
        ("notify", "fyi-1"),
        ("normal", "work-1"),
        ("urgent", "stop"),
        ("normal", "work-2"),
        ("notify", "fyi-2"),
    ] {
        publish(
            &sender,
            &format!("$mq9.AI.INBOX.{mail_id}.{priority}"),
            payload,
        )
        .await;
    }
    // Back online: QUERY first (how much is waiting), then FETCH by priority.
    let back = connect(&env).await;
    let reply = wait_unread(&env, &mail_id, 5).await;
    assert_eq!(messages(&reply).len(), 5);
    let subject = format!("$mq9.AI.MSG.FETCH.{mail_id}");
    let fetched = request(&back, &subject, r#"{"group_name":"me"}"#).await;
    assert_eq!(
        texts(&fetched),
        ["stop", "work-1", "work-2", "fyi-1", "fyi-2"]
    );
}

#[tokio::test]
async fn a_latest_mailbox_keeps_only_the_newest_status() {
    let env = Env::start().await;
    let nc = connect(&env).await;
    let mail_id = create_mailbox(&nc, r#"{"type":"latest","ttl":3600}"#).await;
    for status in ["starting", "busy 40%", "idle"] {
        publish(&nc, &format!("$mq9.AI.INBOX.{mail_id}.normal"), status).await;
    }
    wait_until("only the newest status is kept", || async {
        texts(&env.mailbox_query(&mail_id, json!({})).await) == ["idle"]
    })
    .await;
    assert_eq!(env.mailbox_query(&mail_id, json!({})).await["unread"], 1);
    assert_eq!(texts(&env.fetch(&mail_id, json!({})).await), ["idle"]);
}

#[tokio::test]
async fn broadcast_tasks_reach_one_worker_each_and_every_subscribed_mailbox() {
    let env = Env::start().await;
    // Workers compete for tasks through a queue group, each on its own connection.
    let mut workers = Vec::new();
    for _ in 0..3 {
        let nc = connect(&env).await;
        let tasks = nc
            .queue_subscribe("$mq9.AI.BROADCAST.task.available", "workers".into())
            .await
            .unwrap();
        let done = nc.subscribe("test.done").await.unwrap();
        support::server_caught_up(&nc).await;
        workers.push((nc, tasks, done));
    }
    // Two agents subscribe their mailboxes durably; one of them then goes offline.
    let planner = connect(&env).await;
    let online = create_mailbox(&planner, r#"{"type":"standard","ttl":3600}"#).await;
    let offline_agent = connect(&env).await;
    let offline = create_mailbox(&offline_agent, r#"{"type":"standard","ttl":3600}"#).await;
    for (address, topic) in [(&online, "task.available"), (&offline, "task.*")] {
        let body = json!({"mail_address": address, "topic": topic}).to_string();
        let reply = env.request("$mq9.AI.MAILBOX.SUBSCRIBE", &body).await;
        assert_eq!(reply, json!({"error": ""}));
    }
    drop(offline_agent);
    let nc = connect(&env).await;
    let tasks: Vec<String> = (0..12).map(|i| format!("task {i}")).collect();
    for task in &tasks {
        publish(&nc, "$mq9.AI.BROADCAST.task.available", task).await;
    }
    publish(&nc, "test.done", "").await;
    let mut handled = Vec::new();
    for (_nc, queue, done) in &mut workers {
        // Published last: once it is here, so is every task this worker will get.
        tokio::time::timeout(DEADLINE, done.next())
            .await
            .expect("every worker sees the end");
        while let Some(Some(task)) = queue.next().now_or_never() {
            handled.push(String::from_utf8(task.payload.to_vec()).unwrap());
        }
    }
    assert_eq!(handled.len(), tasks.len(), "each task handled exactly once");
    assert_eq!(
        handled.iter().collect::<BTreeSet<_>>(),
        tasks.iter().collect::<BTreeSet<_>>()
    );
    let expected: Vec<&str> = tasks.iter().map(String::as_str).collect();
    let reply = wait_unread(&env, &online, 12).await;
    assert_eq!(texts(&reply), expected);
    // The offline agent comes back and fetches what it missed.
    wait_unread(&env, &offline, 12).await;
    let back = connect(&env).await;
    let subject = format!("$mq9.AI.MSG.FETCH.{offline}");
    assert_eq!(texts(&request(&back, &subject, "").await), expected);
}
