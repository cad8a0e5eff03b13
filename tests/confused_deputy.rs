//! security.md §2, attacked: a client names a command subject as the reply subject of its own
//! request, hoping the broker will "answer" there with its own rights (delete, inject into or
//! create another tenant's mailbox). The broker answers only reply inboxes and drops such
//! requests unexecuted, counting them in `mq9_refused_replies_total`.

mod support;

use serde_json::json;
use support::*;

const REFUSED: &str = "mq9_refused_replies_total";

async fn refused(env: &Env) -> f64 {
    metric_value(&env.metrics().await, REFUSED).expect("the refused-replies counter is exported")
}

/// Publishes `subject` with `reply` as its reply subject and waits until the broker has
/// refused it (the counter moved), so later assertions see its effect, if any.
async fn reflect(env: &Env, subject: &str, reply: &str, body: &str) {
    let before = refused(env).await;
    env.client
        .publish_with_reply(subject.to_owned(), reply.to_owned(), body.to_owned().into())
        .await
        .unwrap();
    env.client.flush().await.unwrap();
    wait_until(
        &format!("the request answered to {reply} is refused"),
        || async { refused(env).await > before },
    )
    .await;
}

#[tokio::test]
async fn reflected_replies_never_act_on_another_mailbox() {
    let env = Env::start().await;
    assert_eq!(refused(&env).await, 0.0);
    let victim = env.create(json!({"name": "victim.box"})).await;
    let attacker = env.create(json!({})).await;
    assert_eq!(env.send_ok(&victim, b"private", &[]).await, 0);
    let query_own = format!("$mq9.AI.MSG.QUERY.{attacker}");

    for reply in [
        format!("$mq9.AI.MSG.DELETE.{victim}.0"),
        format!("$mq9.AI.MSG.SEND.{victim}"),
        format!("$mq9.AI.INBOX.{victim}.critical"),
        "$mq9.AI.MAILBOX.CREATE".to_owned(),
        "$mq9.ADMIN.MAILBOX.DELETE".to_owned(),
    ] {
        reflect(&env, &query_own, &reply, "{}").await;
    }
    // A refused request is not executed either: a SEND with a forged reply stores nothing.
    reflect(
        &env,
        &format!("$mq9.AI.MSG.SEND.{victim}"),
        &format!("$mq9.AI.MSG.DELETE.{victim}.0"),
        "injected",
    )
    .await;

    let stored = messages(&env.query(&victim, json!({})).await);
    assert_eq!(stored.len(), 1, "nothing deleted or injected: {stored:?}");
    assert_eq!(stored[0]["msg_id"], 0);
    assert_eq!(
        env.metric("mq9_mailboxes").await,
        Some(2.0),
        "no mailbox created"
    );
    assert_eq!(refused(&env).await, 6.0);
    // Ordinary requests are still answered.
    assert_eq!(env.send_ok(&victim, b"hello", &[]).await, 1);
}

#[tokio::test]
async fn only_configured_reply_prefixes_are_answered() {
    let env = Env::start_with(&["--reply-prefix", "_INBOX.,_TEAM."]).await;
    let team = async_nats::ConnectOptions::new()
        .custom_inbox_prefix("_TEAM")
        .connect(env.nats.url())
        .await
        .unwrap();
    let reply = team
        .request("$mq9.AI.MAILBOX.CREATE", "{}".into())
        .await
        .expect("answered on the configured prefix");
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["error"], "", "{reply}");
    // Only configured prefixes are answered. (nats-server itself refuses client publishes with
    // an `_R_.` reply, the prefix it reserves for replies crossing an import.)
    let probe = env.create(json!({})).await;
    reflect(
        &env,
        &format!("$mq9.AI.MSG.SEND.{probe}"),
        "_OTHER.abc.def",
        "dropped",
    )
    .await;
    assert!(messages(&env.query(&probe, json!({})).await).is_empty());
}

#[test]
fn a_reply_prefix_in_the_command_space_is_refused_at_start() {
    for prefix in ["$mq9.AI.", "$mq9.", "_INBOX.>"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mq9"))
            .args(["broker", "--reply-prefix", prefix])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{prefix} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("reply prefix"), "{prefix}: {stderr}");
    }
}
