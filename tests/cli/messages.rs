//! Messages through the CLI: `send`, `fetch` (groups, `--ack`), `query` filters, `--json`
//! output, and delayed messages listed and deleted.

use super::*;

/// The payloads `mq9 --json query cli.query <filters>` returns, as strings.
async fn query_texts(cli: &Cli, filters: &[&str]) -> Vec<String> {
    texts(&cli.json(&[&["query", "cli.query"], filters].concat()).await)
}

#[tokio::test]
async fn create_send_fetch_in_priority_order_then_ack_the_batch() {
    let env = Env::start().await;
    let cli = Cli::of(&env);
    let created = cli
        .ok(&["mailbox", "create", "--name", "cli.flow", "--ttl", "600"])
        .await;
    assert!(
        created.contains("cli.flow") && created.contains("600s"),
        "{created}"
    );

    assert_eq!(
        cli.ok(&["send", "cli.flow", "task"]).await,
        "sent: msg_id 0\n"
    );
    let fyi = ["send", "cli.flow", "--priority", "notify", "fyi"];
    assert_eq!(cli.ok(&fyi).await, "sent: msg_id 1\n");
    let binary = [0x00, 0x9f, 0xff, b'\n'];
    let stop = ["send", "cli.flow", "--priority", "critical", "-"];
    let sent = cli.run_with_stdin(&stop, &binary).await;
    assert!(sent.status.success(), "{sent:?}");
    assert_eq!(sent.stdout, b"sent: msg_id 2\n");

    // Human output: priority order, binary payload marked and base64-encoded.
    let text = cli.ok(&["fetch", "cli.flow", "--wait", "0"]).await;
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from:\n{text}"))
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(binary);
    assert!(at("[#2] critical") < at("[#0] normal") && at("[#0] normal") < at("[#1] notify"));
    assert!(at(&format!("(binary, 4 bytes, base64) {encoded}")) < at("\ntask\n"));

    // --json: the reply itself; the stdin bytes arrived exactly.
    let reply = cli.json(&["fetch", "cli.flow", "--wait", "0"]).await;
    let items = messages(&reply);
    let priorities: Vec<&str> = items
        .iter()
        .map(|m| m["priority"].as_str().unwrap())
        .collect();
    assert_eq!(priorities, ["critical", "normal", "notify"]);
    assert_eq!(payload(&items[0]), binary);

    // A group that does not acknowledge gets its messages again when the lease ends (the
    // long-poll answers as soon as they are available again)...
    let lease = ["--ack-wait", "100"];
    let taken = ["fetch", "cli.flow", "--group", "lazy", "--wait", "0"];
    assert_eq!(
        ids(&cli.json(&[&taken[..], &lease].concat()).await),
        [2, 0, 1]
    );
    let again = cli
        .json(&["fetch", "cli.flow", "--group", "lazy", "--wait", "5000"])
        .await;
    assert_eq!(ids(&again), [2, 0, 1]);
    assert!(messages(&again).iter().all(|m| m["delivery_count"] == 2));

    // ...while --ack acknowledges the whole batch by its last msg_id: nothing comes back.
    let acked = cli
        .ok(&[
            "fetch",
            "cli.flow",
            "--group",
            "workers",
            "--ack",
            "--ack-wait",
            "100",
            "--wait",
            "0",
        ])
        .await;
    assert!(acked.contains("[#1] notify") && acked.contains("acknowledged for group workers"));
    let after = cli
        .json(&["fetch", "cli.flow", "--group", "workers", "--wait", "1000"])
        .await;
    assert_eq!(after, json!({"error": "", "messages": []}));
    let empty = ["fetch", "cli.flow", "--group", "workers", "--wait", "0"];
    assert_eq!(cli.ok(&empty).await, "no messages\n");
}

#[tokio::test]
async fn query_filters_by_key_tags_since_and_limit() {
    let env = Env::start().await;
    let cli = Cli::of(&env);
    cli.ok(&["mailbox", "create", "--name", "cli.query"]).await;
    cli.ok(&["send", "cli.query", "--key", "k", "--tags", "x", "a1"])
        .await;
    cli.ok(&["send", "cli.query", "--key", "k", "--tags", "x,y", "a2"])
        .await;
    let tagged = [
        "send",
        "cli.query",
        "--tags",
        "y",
        "--header",
        "X-Trace=7",
        "b",
    ];
    cli.ok(&tagged).await;

    let only_newest = query_texts(&cli, &["--key", "k"]).await;
    assert_eq!(only_newest, ["a2"], "compaction keeps the newest per key");
    assert_eq!(query_texts(&cli, &["--tags", "y"]).await, ["a2", "b"]);
    assert_eq!(query_texts(&cli, &["--tags", "x,y"]).await, ["a2"]);
    assert_eq!(query_texts(&cli, &["--limit", "1"]).await, ["b"]);
    let future = query_texts(&cli, &["--since", "4000000000"]).await;
    assert!(future.is_empty(), "{future:?}");
    let since_now = now_secs().saturating_sub(60).to_string();
    let recent = cli
        .json(&["query", "cli.query", "--since", &since_now, "--tags", "y"])
        .await;
    assert_eq!(messages(&recent)[1]["headers"], json!({"X-Trace": "7"}));
    assert!(messages(&recent).iter().all(|m| m["delivery_count"] == 0));

    let text = cli.ok(&["query", "cli.query", "--tags", "y"]).await;
    assert!(
        text.contains("X-Trace: 7\n\nb\n") && text.contains("tags: x, y"),
        "{text}"
    );
}

#[tokio::test]
async fn json_output_is_the_reply_object() {
    let env = Env::start().await;
    let cli = Cli::of(&env);
    let created = cli.json(&["mailbox", "create", "--type", "latest"]).await;
    assert_eq!(created["error"], "");
    let address = created["mail_address"].as_str().unwrap().to_owned();
    assert_eq!(address.len(), 26, "generated addresses are 128 random bits");
    assert_eq!(created["mail_id"], created["mail_address"]);
    assert_eq!(
        (&created["type"], &created["ttl"]),
        (&json!("latest"), &json!(86400))
    );
    assert!(created["expires_at"].as_u64().unwrap() > now_secs());

    let sent = cli.json(&["send", &address, "status: ok"]).await;
    assert_eq!(sent, json!({"error": "", "msg_id": 0}));
    let delayed = ["send", &address, "--delay", "3600", "later"];
    assert_eq!(
        cli.json(&delayed).await,
        json!({"error": "", "msg_id": -1, "delay_id": 0})
    );
    assert!(cli.ok(&delayed).await.contains("delayed, delay_id 1"));
}

/// A mailbox filled with delayed messages is not stuck: `query --delayed` lists them with their
/// delay ids and `delete` removes one by `d<delay_id>`, or a visible one by its msg_id.
#[tokio::test]
async fn delayed_messages_are_listed_and_deleted() {
    let env = Env::start().await;
    let cli = Cli::of(&env);
    cli.ok(&["mailbox", "create", "--name", "cli.later"]).await;
    let sent = cli
        .ok(&["send", "cli.later", "--delay", "3600", "later"])
        .await;
    assert!(sent.contains("delay_id 0"), "{sent}");
    cli.ok(&["send", "cli.later", "now"]).await;

    let listed = cli.ok(&["query", "cli.later", "--delayed"]).await;
    assert!(listed.starts_with("[d0] normal, visible "), "{listed}");
    assert!(
        listed.contains("later") && !listed.contains("now"),
        "{listed}"
    );
    assert_eq!(
        cli.ok(&["delete", "cli.later", "d0"]).await,
        "deleted message d0\n"
    );
    let none = cli.json(&["query", "cli.later", "--delayed"]).await;
    assert_eq!(none["messages"], json!([]), "{none}");
    assert_eq!(
        cli.ok(&["delete", "cli.later", "0"]).await,
        "deleted message 0\n"
    );
    assert_eq!(cli.ok(&["query", "cli.later"]).await, "no messages\n");
    assert!(cli
        .fails(&["delete", "cli.later", "d0"])
        .await
        .contains("not_found"));
    let refused = cli.fails(&["delete", "cli.later", "x1"]).await;
    assert!(refused.contains("not a message id"), "{refused}");
}
