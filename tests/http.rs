//! The broker's HTTP endpoints: `/healthz`, `/readyz` and `/metrics`.
mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn healthz_and_readyz_answer_200_when_ready() {
    let env = Env::start().await;
    assert_eq!(http_get(env.broker.http_addr, "/healthz").await.0, 200);
    assert_eq!(http_get(env.broker.http_addr, "/readyz").await.0, 200);
}

/// Ready means answering: the operator counts a Broker available from its pods' readiness and
/// then sends it requests, which must not meet "no responders".
#[tokio::test]
async fn a_broker_that_reports_ready_answers_requests() {
    let mut env = Env::start().await;
    // The gap it guards against lasts a moment: several restarts make it show.
    for _ in 0..20 {
        env.broker.terminate();
        env.broker = env.broker.again(env.nats.url(), env.data_dir());
        // Polled without pause, to catch the first moment /readyz says 200.
        let deadline = std::time::Instant::now() + DEADLINE;
        while try_http_get(env.broker.http_addr, "/readyz")
            .await
            .map(|r| r.0)
            != Some(200)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the broker gets ready"
            );
            tokio::task::yield_now().await;
        }
        let reply = env
            .client
            .request("$mq9.AI.MSG.QUERY.ready.probe", "".into())
            .await;
        assert!(reply.is_ok(), "answered once ready: {reply:?}");
    }
}

#[tokio::test]
async fn readyz_fails_while_nats_is_unreachable() {
    let env = Env::start().await;
    // SAFETY: kill(2) on the nats-server child this test started.
    unsafe { libc::kill(env.nats.pid() as libc::pid_t, libc::SIGKILL) };
    wait_until("readyz reports not ready", || async {
        http_get(env.broker.http_addr, "/readyz").await.0 == 503
    })
    .await;
    assert_eq!(http_get(env.broker.http_addr, "/healthz").await.0, 200);
}

#[tokio::test]
async fn the_broker_reconnects_after_nats_server_restarts() {
    let mut env = Env::start().await;
    let address = env.create(json!({"name": "keep.me", "ttl": 0})).await;
    env.send_ok(&address, b"before", &[]).await;
    env.restart_nats().await;
    // The test's own client reconnects too; once the broker is back it answers again.
    env.wait_ready().await;
    assert_eq!(http_get(env.broker.http_addr, "/readyz").await.0, 200);
    env.send_ok(&address, b"after", &[]).await;
    assert_eq!(
        texts(&env.query(&address, json!({})).await),
        vec!["before", "after"]
    );
}

/// The value of the sample `name{labels}` in a Prometheus exposition.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{')?;
        let all = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        (metric == name && all).then(|| value.parse().ok())?
    })
}

#[tokio::test]
async fn metrics_count_commands_by_outcome_and_report_what_is_stored() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_ok(&address, b"12345", &[]).await;
    env.send_ok(&address, b"678", &[]).await;
    assert_error(&env.send("nobody.home", b"x", &[]).await, "not_found");
    assert_error(
        &env.send(&address, b"x", &[("mq9-ttl", "x")]).await,
        "bad_request",
    );
    env.fetch(&address, json!({})).await;
    env.request("$mq9.AI.NOPE", "").await;

    let counted = |text: &str, command: &str, outcome: &str| {
        let labels = [("command", command), ("outcome", outcome)];
        sample(text, "mq9_commands_total", &labels).unwrap_or(0.0)
    };
    wait_until("metrics caught up", || async {
        let text = env.metrics().await;
        counted(&text, "send", "ok") == 2.0 && counted(&text, "fetch", "ok") == 1.0
    })
    .await;
    let text = env.metrics().await;
    assert_eq!(counted(&text, "mailbox_create", "ok"), 1.0, "{text}");
    assert_eq!(counted(&text, "send", "not_found"), 1.0, "{text}");
    assert_eq!(counted(&text, "send", "bad_request"), 1.0, "{text}");
    assert!(counted(&text, "unknown", "bad_request") >= 1.0, "{text}");
    assert_eq!(metric_value(&text, "mq9_mailboxes"), Some(1.0));
    assert_eq!(metric_value(&text, "mq9_stored_messages"), Some(2.0));
    assert_eq!(metric_value(&text, "mq9_stored_bytes"), Some(8.0));
    let histogram = "mq9_command_duration_seconds";
    assert!(
        text.contains(&format!("# TYPE {histogram} histogram")),
        "{text}"
    );
    let sends = sample(&text, &format!("{histogram}_count"), &[("command", "send")]);
    assert!(sends.unwrap_or(0.0) >= 3.0, "{text}");
    let bucket = sample(
        &text,
        &format!("{histogram}_bucket"),
        &[("command", "send"), ("le", "+Inf")],
    );
    assert_eq!(bucket, sends, "the +Inf bucket holds every observation");
}

#[tokio::test]
async fn stored_gauges_follow_deletes() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_ok(&address, b"abc", &[]).await;
    env.send_ok(&address, b"defgh", &[]).await;
    env.delete_ok(&address, 1).await;
    wait_until("gauges show one message of 3 bytes", || async {
        env.metric("mq9_stored_messages").await == Some(1.0)
            && env.metric("mq9_stored_bytes").await == Some(3.0)
    })
    .await;
}

#[tokio::test]
async fn a_standby_broker_is_ready_but_leaves_every_request_to_the_active_one() {
    let env = Env::start().await;
    let data = tempfile::TempDir::new().unwrap();
    let http_addr = free_port();
    // A second replica's broker, as the operator runs it: active only in pod `agents-0`.
    let mut standby = std::process::Command::new(env!("CARGO_BIN_EXE_mq9"))
        .args([
            "broker",
            "--nats-url",
            env.nats.url(),
            "--active-pod",
            "agents-0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--http-addr", &http_addr.to_string()])
        .env("POD_NAME", "agents-1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the standby answers /readyz", || async {
        tokio::net::TcpStream::connect(http_addr).await.is_ok()
            && http_get(http_addr, "/readyz").await.0 == 200
    })
    .await;
    // Were the standby serving, its queue subscription would take some of these.
    for i in 0..20 {
        let reply = env
            .request(
                "$mq9.AI.MAILBOX.CREATE",
                &json!({"name": format!("box.{i}")}).to_string(),
            )
            .await;
        assert_eq!(reply["mail_id"], format!("box.{i}"), "{reply}");
    }
    assert_eq!(env.metric("mq9_mailboxes").await, Some(20.0));
    let _ = standby.kill();
    let _ = standby.wait();
}
