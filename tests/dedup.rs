//! `Nats-Msg-Id` idempotency on SEND (security.md "Health and durability"): a repeat within the
//! window stores nothing and answers the original msg_id, across restarts, crashes and a failed
//! sync; per mailbox incarnation; off with `--dedup-window 0`.
mod support;

use serde_json::json;
use support::powercut::Shim;
use support::*;

const ID: &str = "Nats-Msg-Id";

#[tokio::test]
async fn a_repeated_send_stores_once_and_answers_the_original_msg_id() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    let other = env.create(json!({"ttl": 3600})).await;
    assert_eq!(env.send_ok(&address, b"first", &[(ID, "a")]).await, 0);
    assert_eq!(env.send_ok(&address, b"plain", &[]).await, 1);
    // A retry need not even carry the same payload: the id decides, as in JetStream.
    assert_eq!(env.send_ok(&address, b"retry", &[(ID, "a")]).await, 0);
    assert_eq!(env.send_ok(&address, b"second", &[(ID, "b")]).await, 2);
    assert_eq!(
        env.send_ok(&other, b"elsewhere", &[(ID, "a")]).await,
        0,
        "ids are per mailbox"
    );
    assert_eq!(
        texts(&env.query(&address, json!({})).await),
        vec!["first", "plain", "second"]
    );
    let stored = messages(&env.query(&address, json!({})).await);
    assert_eq!(stored[0]["headers"][ID], "a", "the header is kept");
    assert_eq!(
        texts(&env.query(&other, json!({})).await),
        vec!["elsewhere"]
    );
}

#[tokio::test]
async fn a_repeated_delayed_send_answers_minus_one_again_and_stores_once() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    let delayed = [(ID, "d"), ("mq9-delay", "1")];
    assert_eq!(env.send_ok(&address, b"later", &delayed).await, -1);
    assert_eq!(env.send_ok(&address, b"later", &delayed).await, -1);
    wait_until("the delayed message became visible", || async {
        !env.query_ids(&address).await.is_empty()
    })
    .await;
    assert_eq!(env.send_ok(&address, b"later", &[(ID, "d")]).await, -1);
    assert_eq!(texts(&env.query(&address, json!({})).await), vec!["later"]);
}

/// Repeats that land in one write batch: the store cannot answer for the first until the batch
/// is written, so the engine must remember the ids of the open batch.
#[tokio::test]
async fn concurrent_repeats_store_once() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_ok(&address, b"warm-up", &[]).await;
    let sends = (0..64).map(|_| env.send_ok(&address, b"once", &[(ID, "burst")]));
    let ids = futures::future::join_all(sends).await;
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(
        texts(&env.query(&address, json!({})).await),
        vec!["warm-up", "once"]
    );
}

#[tokio::test]
async fn ids_survive_a_restart_and_a_crash() {
    let mut env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_ok(&address, b"zero", &[]).await;
    assert_eq!(env.send_ok(&address, b"kept", &[(ID, "r")]).await, 1);
    env.restart_broker().await;
    assert_eq!(env.send_ok(&address, b"kept", &[(ID, "r")]).await, 1);
    env.crash_and_restart_broker().await;
    assert_eq!(env.send_ok(&address, b"kept", &[(ID, "r")]).await, 1);
    assert_eq!(env.query_ids(&address).await, vec![0, 1]);
}

#[tokio::test]
async fn ids_expire_with_the_window() {
    let env = Env::start_with(&["--dedup-window", "1"]).await;
    let address = env.create(json!({"ttl": 3600})).await;
    assert_eq!(env.send_ok(&address, b"m", &[(ID, "w")]).await, 0);
    // Each repeat inside the window stores nothing; the first one after it is a new message.
    wait_until("the window ended", || async {
        env.send_ok(&address, b"m", &[(ID, "w")]).await != 0
    })
    .await;
    assert_eq!(env.query_ids(&address).await, vec![0, 1]);
    assert_eq!(
        env.send_ok(&address, b"m", &[(ID, "w")]).await,
        1,
        "the new message opened a new window"
    );
}

#[tokio::test]
async fn a_window_of_zero_deduplicates_nothing() {
    let env = Env::start_with(&["--dedup-window", "0"]).await;
    let address = env.create(json!({"ttl": 3600})).await;
    assert_eq!(env.send_ok(&address, b"m", &[(ID, "z")]).await, 0);
    assert_eq!(env.send_ok(&address, b"m", &[(ID, "z")]).await, 1);
}

/// A mailbox deleted and created again under the same name is a new incarnation: the old one's
/// ids went with it and cannot swallow a message sent to the new one.
#[tokio::test]
async fn a_recreated_mailbox_does_not_inherit_ids() {
    let env = Env::start().await;
    let create = r#"{"name":"team.inbox","ttl":3600}"#;
    assert_eq!(
        env.request("$mq9.AI.MAILBOX.CREATE", create).await["error"],
        ""
    );
    env.send_ok("team.inbox", b"old", &[(ID, "x")]).await;
    let deleted = env
        .request("$mq9.ADMIN.MAILBOX.DELETE", r#"{"name":"team.inbox"}"#)
        .await;
    assert_eq!(deleted["error"], "", "{deleted}");
    assert_eq!(
        env.request("$mq9.AI.MAILBOX.CREATE", create).await["error"],
        ""
    );
    env.send_ok("team.inbox", b"new", &[(ID, "x")]).await;
    assert_eq!(
        texts(&env.query("team.inbox", json!({})).await),
        vec!["new"]
    );
}

#[tokio::test]
async fn an_oversized_id_is_refused_naming_the_header() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    let long = "i".repeat(1025);
    let reply = env.send(&address, b"m", &[(ID, &long)]).await;
    assert_error_says(&reply, "bad_request", ID);
}

/// The retry a failed sync calls for. The failed SEND's WAL record may have reached the file
/// (the write succeeded, only its `fdatasync` failed): after the restart it is there, and the
/// retry must get its msg_id instead of storing a second copy. Or it is not, and the retry stores
/// it. Either way: exactly once, because the id is written in the same batch as the message.
#[tokio::test]
async fn a_retry_after_a_failed_sync_stores_the_message_once() {
    let shim = Shim::build();
    let mut env = Env::start_with_env(&[], "", &shim.env()).await;
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_ok(&address, b"before", &[]).await;
    shim.fail_syncs();
    let failed = env.send(&address, b"once", &[(ID, "retry-me")]).await;
    assert_error(&failed, "internal");
    shim.restore_syncs();
    env.crash_and_restart_broker().await;
    let retried = env.send_ok(&address, b"once", &[(ID, "retry-me")]).await;
    let again = env.send_ok(&address, b"once", &[(ID, "retry-me")]).await;
    assert_eq!(retried, again);
    assert_eq!(
        texts(&env.query(&address, json!({})).await),
        vec!["before", "once"]
    );
}
