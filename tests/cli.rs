//! The `mq9` client commands (`mailbox`, `send`, `fetch`, `query`, `agents`, `subscribe`):
//! the real binary against a real nats-server and broker, as a person or a script runs it.
//! Every failure must exit non-zero with exactly one `mq9: <reason>` line on stderr.
mod support;

use std::net::TcpListener;
use std::process::{Output, Stdio};

use base64::Engine as _;
use serde_json::{json, Value};
use support::*;
use tokio::io::AsyncWriteExt;

/// The `mq9` binary pointed at one server.
struct Cli {
    server: String,
}

impl Cli {
    fn of(env: &Env) -> Cli {
        Cli::at(env.nats.url())
    }

    fn at(server: &str) -> Cli {
        Cli {
            server: server.to_owned(),
        }
    }

    /// Runs `mq9 --server URL <args>` with `stdin` as its standard input.
    async fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mq9"))
            .arg("--server")
            .arg(&self.server)
            .args(args)
            .env_remove("MQ9_URL")
            .env_remove("MQ9_CREDS")
            .env_remove("MQ9_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("mq9 binary starts");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin).await.unwrap();
        drop(input);
        tokio::time::timeout(DEADLINE, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("mq9 {args:?} did not finish within {DEADLINE:?}"))
            .unwrap()
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, b"").await
    }

    /// Runs a command that must succeed silently on stderr; returns its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "mq9 {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("text output")
    }

    /// Runs `mq9 --json <args>`: stdout must be exactly one JSON document.
    async fn json(&self, args: &[&str]) -> Value {
        let stdout = self.ok(&[&["--json"], args].concat()).await;
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("mq9 --json {args:?} printed no single JSON ({e}): {stdout}")
        })
    }

    /// Runs a command that must fail; returns its one stderr line.
    async fn fails(&self, args: &[&str]) -> String {
        error_line(&self.run(args).await, args)
    }
}

/// The error contract: non-zero exit, empty stdout, exactly one line `mq9: ...` on stderr.
fn error_line(out: &Output, args: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "mq9 {args:?} should fail");
    assert!(out.stdout.is_empty(), "mq9 {args:?} printed on failure");
    assert!(
        stderr.starts_with("mq9: ") && stderr.ends_with('\n') && stderr.lines().count() == 1,
        "mq9 {args:?}: stderr is not one `mq9:` line: {stderr:?}"
    );
    stderr.trim_end().to_owned()
}

/// The payloads `mq9 --json query cli.query <filters>` returns, as strings.
async fn query_texts(cli: &Cli, filters: &[&str]) -> Vec<String> {
    texts(&cli.json(&[&["query", "cli.query"], filters].concat()).await)
}

/// A loopback URL where nothing listens.
fn unreachable_url(userinfo: &str) -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("nats://{userinfo}127.0.0.1:{port}")
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

#[tokio::test]
async fn errors_are_one_line_with_the_reason_and_code() {
    let env = Env::start().await;
    let cli = Cli::of(&env);
    let missing = cli.fails(&["send", "no.such.box", "hi"]).await;
    assert!(
        missing.contains("no.such.box") && missing.contains("(not_found)"),
        "{missing}"
    );
    let missing = cli.fails(&["fetch", "no.such.box", "--wait", "0"]).await;
    assert!(missing.contains("not_found"), "{missing}");

    cli.ok(&["mailbox", "create", "--name", "cli.dup"]).await;
    let dup = cli.fails(&["mailbox", "create", "--name", "cli.dup"]).await;
    assert!(dup.ends_with("(already_exists)"), "{dup}");

    // Bad arguments are caught before connecting: this server URL reaches nothing.
    let offline = Cli::at(&unreachable_url(""));
    let bad = offline.fails(&["send", "Not_Valid", "hi"]).await;
    assert!(
        bad.contains("invalid mail address") && bad.contains("Not_Valid"),
        "{bad}"
    );
    let bad = offline.fails(&["agents", "register", r#"{"name":"#]).await;
    assert!(bad.contains("JSON is not valid"), "{bad}");
    let bad = offline
        .fails(&["agents", "register", r#"{"desc":"x"}"#])
        .await;
    assert!(bad.contains("`name` or `mailbox`"), "{bad}");
    let bad = offline.fails(&["fetch", "cli.dup", "--ack"]).await;
    assert!(bad.contains("--group"), "{bad}");
    let bad = offline
        .fails(&["send", "cli.dup", "--priority", "asap", "x"])
        .await;
    assert!(
        bad.contains("asap") && bad.contains("critical, urgent, normal, notify"),
        "{bad}"
    );
    let bad = offline.fails(&["subscribe", "cli.dup", "task.>.x"]).await;
    assert!(bad.contains("task.>.x"), "{bad}");
    let bad = offline.fails(&["mailbox"]).await;
    assert!(bad.contains("mq9 mailbox"), "{bad}");
}

#[tokio::test]
async fn an_unreachable_server_is_named_without_its_credentials() {
    let url = unreachable_url("");
    let line = Cli::at(&url).fails(&["mailbox", "create"]).await;
    assert!(
        line.contains(&format!("cannot connect to {url}")) && line.contains("mq9 dev"),
        "{line}"
    );

    let secret = unreachable_url("alice:s3cret@");
    let line = Cli::at(&secret).fails(&["send", "a.box", "hi"]).await;
    assert!(line.contains("nats://***@127.0.0.1:"), "{line}");
    assert!(
        !line.contains("s3cret") && !line.contains("alice"),
        "{line}"
    );

    let creds = "/nonexistent/agent.creds";
    let line = Cli::at(&url)
        .fails(&["--creds", creds, "mailbox", "create"])
        .await;
    assert!(line.contains(creds), "{line}");
}

#[tokio::test]
async fn a_server_without_a_broker_says_so() {
    let dir = tempfile::TempDir::new().unwrap();
    let options = mq9::natsd::NatsServerOptions::new(dir.path());
    let nats = mq9::natsd::NatsServer::start(&options).expect("nats-server starts");
    let line = Cli::at(nats.url()).fails(&["mailbox", "create"]).await;
    assert!(
        line.contains("no mq9 broker answers") && line.contains(nats.url()),
        "{line}"
    );
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
    let names: Vec<&str> = listed["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
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
    let listed: Vec<&str> = all["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
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
async fn agents_register_discover_report_unregister() {
    let env = Env::start().await;
    let cli = Cli::of(&env);
    let card =
        json!({"name": "translator", "mailbox": "tr.box", "description": "French to English"});
    let registered = cli.ok(&["agents", "register", &card.to_string()]).await;
    assert_eq!(registered, "registered agent translator\n");
    let ocr = json!({"mailbox": "ocr.box", "skills": ["ocr"]});
    let piped = cli
        .run_with_stdin(&["agents", "register", "-"], ocr.to_string().as_bytes())
        .await;
    assert!(piped.status.success(), "{piped:?}");

    assert_eq!(cli.json(&["agents", "discover"]).await, json!([card, ocr]));
    assert_eq!(
        cli.json(&["agents", "discover", "--text", "french"]).await,
        json!([card])
    );
    let text = cli.ok(&["agents", "discover"]).await;
    assert!(
        text.contains("translator  tr.box") && text.contains("French to English"),
        "{text}"
    );

    let status = [
        "agents",
        "report",
        "--name",
        "translator",
        "--status",
        r#"{"load":1}"#,
    ];
    assert_eq!(cli.ok(&status).await, "reported agent translator\n");
    let unknown = cli.fails(&["agents", "report", "--name", "nobody"]).await;
    assert!(unknown.contains("not_found"), "{unknown}");

    cli.ok(&["agents", "unregister", "--mailbox", "ocr.box"])
        .await;
    assert_eq!(cli.json(&["agents", "discover"]).await, json!([card]));
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
