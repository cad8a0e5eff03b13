//! A clean restart (SIGTERM) on the same data dir keeps messages, the msg_id sequence, group
//! state, TTLs and delays.

use super::*;

#[tokio::test]
async fn a_restart_keeps_messages_and_the_msg_id_sequence() {
    let mut env = Env::start().await;
    let address = env.create(json!({"name": "kept", "ttl": 3600})).await;
    let latest = env.create(json!({"type": "latest", "ttl": 0})).await;
    let headers = [
        ("mq9-priority", "urgent"),
        ("mq9-key", "k"),
        ("mq9-tags", "t"),
        ("h", "v"),
    ];
    env.send_ok(&address, b"first", &headers).await;
    env.send_ok(&address, b"second", &[]).await;
    env.send_ok(&address, b"third", &[]).await;
    env.delete_ok(&address, 2).await;
    env.send_ok(&latest, b"old", &[]).await;
    env.send_ok(&latest, b"new", &[]).await;
    let before = env.query(&address, json!({})).await;

    env.restart_broker().await;
    assert_eq!(env.query(&address, json!({})).await, before);
    assert_eq!(
        env.send_ok(&address, b"fourth", &[]).await,
        3,
        "ids continue"
    );
    assert_eq!(env.send_ok(&address, b"k2", &[("mq9-key", "k")]).await, 4);
    assert_eq!(
        texts(&env.query(&address, json!({})).await),
        vec!["second", "fourth", "k2"],
        "compaction slots survive"
    );
    assert_eq!(texts(&env.query(&latest, json!({})).await), vec!["new"]);
    env.send_ok(&latest, b"newer", &[]).await;
    assert_eq!(texts(&env.query(&latest, json!({})).await), vec!["newer"]);
    let again = env
        .request("$mq9.AI.MAILBOX.CREATE", r#"{"name":"kept"}"#)
        .await;
    assert_error(&again, "already_exists");
}

#[tokio::test]
async fn a_restart_keeps_group_state() {
    let mut env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_many(&address, 6).await;
    let take = |n: u64| json!({"group_name": "g", "config": {"num_msgs": n, "max_wait_ms": 0}});
    assert_eq!(ids(&env.fetch(&address, take(2)).await), vec![0, 1]);
    env.ack_ok(&address, "g", 1).await;
    assert_eq!(ids(&env.fetch(&address, take(1)).await), vec![2]);
    env.ack_ok(&address, "g", 2).await;
    let leased = json!({"group_name": "g", "config": {"num_msgs": 1, "ack_wait_ms": 60000}});
    assert_eq!(ids(&env.fetch(&address, leased).await), vec![3]);

    env.restart_broker().await;
    assert_eq!(
        ids(&env.fetch(&address, take(100)).await),
        vec![4, 5],
        "acked messages stay acked, the lease on 3 holds"
    );
    env.ack_ok(&address, "g", 5).await;
    env.send_ok(&address, b"m6", &[]).await;
    assert_eq!(ids(&env.fetch(&address, take(100)).await), vec![6]);
    let other = env.fetch(&address, json!({"group_name": "h"})).await;
    assert_eq!(ids(&other).len(), 7, "other groups are unaffected");
}

#[tokio::test]
async fn a_restart_keeps_ttls_and_delays() {
    let mut env = Env::start().await;
    let created = env
        .request("$mq9.AI.MAILBOX.CREATE", r#"{"name":"brief","ttl":5}"#)
        .await;
    let expires_at = created["expires_at"].as_u64().unwrap();
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_ok(&address, b"short", &[("mq9-ttl", "3")]).await;
    env.send_ok(&address, b"long", &[]).await;
    env.send_ok(&address, b"later", &[("mq9-delay", "2")]).await;

    env.restart_broker().await;
    assert!(
        now_secs() < expires_at,
        "restart took too long for this test"
    );
    assert_eq!(env.query("brief", json!({})).await["error"], "");
    wait_until("the delayed message became visible", || async {
        texts(&env.query(&address, json!({})).await).contains(&"later".to_owned())
    })
    .await;
    env.wait_gone("brief").await;
    assert!(now_secs() <= expires_at + 2, "mailbox outlived its ttl");
    assert_eq!(
        texts(&env.query(&address, json!({})).await),
        vec!["long", "later"]
    );
}
