//! `mq9 dev --replicas 3`, run as a user (and an outside checker) runs it: three clustered
//! nats-servers on `--port`, `--port`+1, `--port`+2 and three brokers, their pids printed; a
//! killed broker's mailboxes are served again; Ctrl-C (SIGTERM here) stops every child.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A port such that it and the next two are free now.
fn three_free_ports() -> u16 {
    loop {
        let first = support::free_port().port();
        let free = (0..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", first + i)).is_ok());
        if free && first < 65_000 {
            return first;
        }
    }
}

fn alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

async fn request(client: &async_nats::Client, subject: &str, body: &str) -> Option<Value> {
    let request = client.request(subject.to_owned(), body.to_owned().into());
    let reply = tokio::time::timeout(Duration::from_secs(2), request)
        .await
        .ok()?
        .ok()?;
    serde_json::from_slice::<Value>(&reply.payload)
        .ok()
        .filter(|r| r["error"] == "")
}

/// Repeats a request until it succeeds, within 30 s.
async fn until_ok(client: &async_nats::Client, subject: &str, body: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(reply) = request(client, subject, body).await {
            return reply;
        }
        assert!(Instant::now() < deadline, "{subject} never answered");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_with_three_replicas_survives_a_killed_broker() {
    let dir = tempfile::tempdir().unwrap();
    let port = three_free_ports();
    let http = three_free_ports();
    let mut dev = Command::new(env!("CARGO_BIN_EXE_mq9"))
        .args(["dev", "--replicas", "3", "--port", &port.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--http-addr", &format!("127.0.0.1:{http}")])
        .env("MQ9_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let stdout = dev.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut printed = Vec::new();
    while !printed
        .iter()
        .any(|l: &String| l.starts_with("mq9 is running replicated"))
    {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("mq9 dev starts");
        printed.push(line);
    }
    // "n<i>: nats-server pid <p> at <url>, broker pid <p> (http <addr>)"
    let pids: Vec<(u32, u32)> = printed
        .iter()
        .filter(|l| l.starts_with('n') && l.contains("broker pid"))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let after = |word: &str| {
                let i = words.iter().position(|w| *w == word).unwrap();
                words[i + 2].trim_end_matches(',').parse::<u32>().unwrap()
            };
            (after("nats-server"), after("broker"))
        })
        .collect();
    assert_eq!(pids.len(), 3, "{printed:?}");
    assert!(
        printed[0].contains(&format!("127.0.0.1:{port}")),
        "{printed:?}"
    );

    let client = async_nats::connect(format!("nats://127.0.0.1:{}", port + 1))
        .await
        .unwrap();
    for name in ["dev.a", "dev.b", "dev.c", "dev.d"] {
        let create = json!({"name": name}).to_string();
        until_ok(&client, "$mq9.AI.MAILBOX.CREATE", &create).await;
        until_ok(&client, &format!("$mq9.AI.MSG.SEND.{name}"), "before").await;
    }
    // kill -9 the first broker: every mailbox is served again.
    // SAFETY: kill(2) with a pid mq9 dev printed; no memory is touched.
    unsafe { libc::kill(pids[0].1 as libc::pid_t, libc::SIGKILL) };
    let other = async_nats::connect(format!("nats://127.0.0.1:{}", port + 2))
        .await
        .unwrap();
    for name in ["dev.a", "dev.b", "dev.c", "dev.d"] {
        until_ok(&other, &format!("$mq9.AI.MSG.SEND.{name}"), "after").await;
        let query = until_ok(&other, &format!("$mq9.AI.MSG.QUERY.{name}"), "{}").await;
        assert_eq!(
            query["messages"].as_array().unwrap().len(),
            2,
            "{name}: {query}"
        );
    }

    // SAFETY: as above, for mq9 dev itself.
    unsafe { libc::kill(dev.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + support::DEADLINE;
    while dev.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "mq9 dev did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    for (server, broker) in &pids {
        assert!(!alive(*server), "nats-server {server} stopped with mq9 dev");
        assert!(
            !alive(*broker) || *broker == pids[0].1,
            "broker {broker} stopped"
        );
    }
}
