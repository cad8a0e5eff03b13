//! The CLI's error contract: one `mq9: <reason>` line naming the reason and its code, never a
//! credential.

use super::*;

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
