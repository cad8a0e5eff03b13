//! Mailboxes through the CLI: `mailbox info`, `list` (paged), `delete`, and `subscribe` /
//! `unsubscribe` to broadcast topics.

use super::*;

/// The mailbox names of a `mailbox list --json` reply, in reply order.
fn listed_names(reply: &Value) -> Vec<&str> {
    reply["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn mailbox_info_list_and_delete() {
    let env = Env::start().await;
    let cli = Cli::of(&env);
    for name in ["adm.a", "adm.b", "other.c"] {
        cli.ok(&["mailbox", "create", "--name", name, "--ttl", "0"])
            .await;
    }
    cli.ok(&["send", "adm.a", "hello"]).await;

    let info = cli.json(&["mailbox", "info", "adm.a"]).await;
    assert_eq!(
        (&info["exists"], &info["name"]),
        (&json!(true), &json!("adm.a"))
    );
    assert_eq!((&info["messages"], &info["bytes"]), (&json!(1), &json!(5)));
    let text = cli.ok(&["mailbox", "info", "adm.a"]).await;
    assert!(
        text.contains("never expires")
            && text
                .lines()
                .any(|line| line.split_whitespace().eq(["messages", "1"])),
        "{text}"
    );

    let listed = cli.json(&["mailbox", "list", "--prefix", "adm."]).await;
    let names = listed_names(&listed);
    assert_eq!(
        (names, &listed["more"]),
        (vec!["adm.a", "adm.b"], &json!(false))
    );
    let first = cli.json(&["mailbox", "list", "--limit", "1"]).await;
    assert_eq!(first["mailboxes"][0]["name"], "adm.a");
    assert_eq!(first["more"], true);
    let text = cli
        .ok(&["mailbox", "list", "--prefix", "adm.", "--limit", "1"])
        .await;
    assert!(
        text.starts_with("NAME") && text.contains("adm.a") && text.contains("more"),
        "{text}"
    );

    assert_eq!(
        cli.ok(&["mailbox", "delete", "adm.b"]).await,
        "deleted mailbox adm.b\n"
    );
    let again = cli.ok(&["mailbox", "delete", "adm.b"]).await;
    assert!(again.contains("did not exist"), "{again}");
    let gone = cli.fails(&["mailbox", "info", "adm.b"]).await;
    assert!(
        gone.contains("adm.b") && gone.contains("not_found"),
        "{gone}"
    );
}

#[tokio::test]
async fn mailbox_list_pages_with_after_up_to_the_limit() {
    let env = Env::start().await;
    // More mailboxes than the broker returns in one page (1000).
    let names: Vec<String> = (0..1003).map(|i| format!("page.m{i:04}")).collect();
    let creates = names.iter().map(|name| env.create(json!({"name": name})));
    futures::future::join_all(creates).await;
    let cli = Cli::of(&env);

    let all = cli
        .json(&["mailbox", "list", "--prefix", "page.", "--limit", "5000"])
        .await;
    let listed = listed_names(&all);
    assert_eq!(listed, names, "every mailbox once, in name order");
    assert_eq!(all["more"], false);

    let capped = cli
        .json(&["mailbox", "list", "--prefix", "page.", "--limit", "1001"])
        .await;
    assert_eq!(capped["mailboxes"].as_array().unwrap().len(), 1001);
    assert_eq!(capped["mailboxes"][1000]["name"], "page.m1000");
    assert_eq!(capped["more"], true);
}

#[tokio::test]
async fn subscribed_mailboxes_store_broadcasts_until_unsubscribed() {
    let env = Env::start().await;
    let cli = Cli::of(&env);
    cli.ok(&["mailbox", "create", "--name", "sub.one"]).await;
    cli.ok(&["mailbox", "create", "--name", "sub.two"]).await;
    let subscribed = cli.ok(&["subscribe", "sub.one", "task.*"]).await;
    assert_eq!(subscribed, "subscribed mailbox sub.one to topic task.*\n");
    let info = cli.json(&["mailbox", "info", "sub.one"]).await;
    assert_eq!(info["subscriptions"], json!(["task.*"]));

    env.publish("$mq9.AI.BROADCAST.task.new", &[], b"job 1")
        .await;
    wait_until("the broadcast is stored", || async {
        texts(&env.query("sub.one", json!({})).await) == ["job 1"]
    })
    .await;
    assert!(cli.ok(&["query", "sub.one"]).await.contains("job 1"));

    cli.ok(&["unsubscribe", "sub.one", "task.*"]).await;
    env.publish("$mq9.AI.BROADCAST.task.new", &[], b"job 2")
        .await;
    // A second subscriber shows when the broker has handled later broadcasts.
    cli.ok(&["subscribe", "sub.two", "task.*"]).await;
    env.publish("$mq9.AI.BROADCAST.task.new", &[], b"job 3")
        .await;
    wait_until("sub.two stores job 3", || async {
        texts(&env.query("sub.two", json!({})).await) == ["job 3"]
    })
    .await;
    assert_eq!(texts(&env.query("sub.one", json!({})).await), ["job 1"]);
}
