//! The `mq9` client commands (`mailbox`, `send`, `fetch`, `query`, `agents`, `subscribe`):
//! the real binary against a real nats-server and broker, as a person or a script runs it.
//! Every failure must exit non-zero with exactly one `mq9: <reason>` line on stderr.
#[path = "../support/mod.rs"]
mod support;

mod agents;
mod errors;
mod mailboxes;
mod messages;

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
