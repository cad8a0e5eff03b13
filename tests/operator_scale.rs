//! The operator's work grows linearly with the objects (issue 10 item 6), measured on the fake
//! API server's request counter with a real nats-server and `mq9 broker` as the data plane:
//! Mailboxes, a tenth of them members of ten Broadcasts, all brought to Ready; then one resync
//! of every Mailbox. The API requests are asserted per Mailbox (they do not depend on the
//! machine's speed); the time to all-Ready and the operator's memory are only reported.
//!
//! CI runs 200 Mailboxes. The README's figures come from the full run:
//! `cargo test --release --test operator_scale -- --ignored --nocapture`.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use support::apiserver::FakeApiServer;
use support::cluster::*;
use support::Env;

/// API requests a Mailbox may cost on its way to Ready: add the finalizer, look for a Secret of
/// its name, write the Secret, two Events (SecretWritten, Created), write the status.
const PER_MAILBOX_TO_READY: f64 = 6.0;
/// API requests a Ready Mailbox may cost per resync (none are needed: every read is cached).
const PER_RESYNC: f64 = 1.0;
const GROUPS: usize = 10;

#[tokio::test(flavor = "multi_thread")]
async fn requests_per_mailbox_stay_constant() {
    scale(200, 10, Duration::from_secs(120)).await;
}

/// The README's figures: 2,000 Mailboxes, 200 of them in 10 Broadcasts.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "minutes of work; run by hand for the README's figures"]
async fn two_thousand_mailboxes() {
    scale(2000, 60, Duration::from_secs(600)).await;
}

async fn scale(mailboxes: usize, resync_secs: u64, deadline: Duration) {
    let api = FakeApiServer::start().await;
    let env = Env::start().await;
    let operator = Operator::start(&api, env.nats.url(), resync_secs);
    let cluster = Cluster { api, env, operator };
    cluster.ready_broker("agents").await;
    let members_each = mailboxes / 10 / GROUPS;
    for group in 0..GROUPS {
        let broadcast = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Broadcast",
            "metadata": {"name": format!("b{group}"), "namespace": NS},
            "spec": {"brokerRef": {"name": "agents"}, "topic": format!("jobs.g{group}"),
                "members": {"mailboxSelector": {"matchLabels": {"group": format!("g{group}")}}}}});
        cluster.api.create(BROADCASTS, broadcast);
        cluster
            .wait_condition(BROADCASTS, &format!("b{group}"), "Ready", "True")
            .await;
    }
    let before = cluster.api.requests();
    let started = Instant::now();
    for i in 0..mailboxes {
        let labels = match i < members_each * GROUPS {
            true => json!({"group": format!("g{}", i % GROUPS)}),
            false => json!({}),
        };
        cluster.create_mailbox(&format!("m{i}"), labels, json!({}));
    }
    let ready = |api: &FakeApiServer| {
        let mailboxes = api.list(MAILBOXES, Some(NS));
        let is_ready =
            |m: &serde_json::Value| condition(m, "Ready").is_some_and(|c| c["status"] == "True");
        let counted = api.list(BROADCASTS, Some(NS));
        let counted = counted
            .iter()
            .all(|b| b["status"]["memberCount"] == members_each);
        (mailboxes.iter().filter(|m| is_ready(m)).count(), counted)
    };
    poll(
        &cluster,
        deadline,
        "every Mailbox Ready and counted",
        || ready(&cluster.api) == (mailboxes, true),
    )
    .await;
    let all_ready = started.elapsed();
    let to_ready = cluster.api.requests_since(&before);

    let (passes_before, before) = (
        cluster.operator.passes("mailbox").await,
        cluster.api.requests(),
    );
    let resync_deadline = deadline + Duration::from_secs(2 * resync_secs);
    let mut passes = 0.0;
    while passes < mailboxes as f64 {
        assert!(
            Instant::now() - started < resync_deadline + all_ready,
            "no resync of every Mailbox"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        passes = cluster.operator.passes("mailbox").await - passes_before;
    }
    let per_resync = cluster.api.requests_since(&before);
    let rss = rss_mib(cluster.operator.pid());

    let total = |counts: &BTreeMap<String, u64>| counts.values().sum::<u64>() as f64;
    // What the Mailboxes cost themselves: their object and status, their Secrets, the Events
    // about them (the Broker's workload, the Lease and the Broadcasts' status are counted in
    // the report, not here: they do not grow per Mailbox).
    let own = |request: &str| {
        ["mq9.io/v1alpha1/mailboxes", "v1/secrets"]
            .iter()
            .any(|resource| {
                request.ends_with(resource) || request.contains(&format!("{resource}/"))
            })
    };
    let own_requests: u64 = to_ready
        .iter()
        .filter(|(r, _)| own(r))
        .map(|(_, n)| n)
        .sum();
    let events = cluster.api.list(EVENTS, None);
    let mailbox_events = events
        .iter()
        .filter(|e| e["regarding"]["kind"] == "Mailbox")
        .count();
    let per_mailbox = (own_requests as f64 + mailbox_events as f64) / mailboxes as f64;
    let all_per_mailbox = total(&to_ready) / mailboxes as f64;
    let per_pass = total(&per_resync) / passes;
    eprintln!(
        "{mailboxes} Mailboxes ({} in {GROUPS} Broadcasts): all Ready in {:.1} s; \
         {per_mailbox:.2} API requests per Mailbox to Ready ({all_per_mailbox:.2} with the \
         Broker's, the Broadcasts' and the Lease's) {to_ready:?}; \
         {per_pass:.3} per resync pass ({passes} passes) {per_resync:?}; operator RSS {rss:.0} MiB",
        members_each * GROUPS,
        all_ready.as_secs_f64(),
    );
    assert!(
        per_mailbox <= PER_MAILBOX_TO_READY,
        "{per_mailbox:.2} requests per Mailbox to Ready: {to_ready:?}"
    );
    assert!(
        per_pass <= PER_RESYNC,
        "{per_pass:.3} requests per resync pass: {per_resync:?}"
    );
    // Nothing is LISTed per change: lists are the watches' (re)starts only.
    let lists: u64 = to_ready
        .iter()
        .filter(|(request, _)| request.starts_with("list "))
        .map(|(_, n)| n)
        .sum();
    assert!(
        lists <= 10,
        "LISTs while Mailboxes became Ready: {to_ready:?}"
    );
}

/// Status writes that change nothing a Mailbox depends on wake no Mailbox: a Broadcast's
/// `memberCount` (written by someone else, and restored by the Broadcast controller), a Broker's
/// `readyReplicas` moving while it stays Available. Then `Available` flipping wakes them all:
/// the count that stood still would have moved. (No resync falls in the test: 10 minutes.)
#[tokio::test(flavor = "multi_thread")]
async fn status_writes_wake_no_mailbox() {
    let mailboxes = 20;
    let api = FakeApiServer::start().await;
    let env = Env::start().await;
    let operator = Operator::start(&api, env.nats.url(), 600);
    let cluster = Cluster { api, env, operator };
    cluster.ready_broker("agents").await;
    let broadcast = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Broadcast",
        "metadata": {"name": "b0", "namespace": NS},
        "spec": {"brokerRef": {"name": "agents"}, "topic": "jobs",
            "members": {"mailboxSelector": {"matchLabels": {"group": "g"}}}}});
    cluster.api.create(BROADCASTS, broadcast);
    for i in 0..mailboxes {
        cluster.create_mailbox(&format!("m{i}"), json!({"group": "g"}), json!({}));
    }
    for i in 0..mailboxes {
        cluster.wait_reason(&format!("m{i}"), "Created").await;
    }
    wait_member_count(&cluster, "every member counted", |n| *n == mailboxes).await;
    let before = cluster.operator.passes("mailbox").await;
    cluster
        .api
        .patch_status(BROADCASTS, NS, "b0", json!({"memberCount": 999}));
    wait_member_count(&cluster, "the memberCount restored", |n| *n != 999).await;
    broker_pods_ready(&cluster.api, NS, "agents", 2).await;
    let recorded = cluster.operator.waiting_for("the Broker's readyReplicas 2");
    cluster
        .api
        .wait_for(&recorded, |api| {
            let ready = &api.get(BROKERS, NS, "agents")?["status"]["readyReplicas"];
            (ready == 2).then_some(())
        })
        .await;
    assert_eq!(
        cluster.operator.passes("mailbox").await,
        before,
        "status writes woke Mailboxes"
    );
    broker_pods_ready(&cluster.api, NS, "agents", 0).await;
    cluster
        .wait_condition(BROKERS, "agents", "Available", "False")
        .await;
    let deadline = Instant::now() + support::DEADLINE;
    while cluster.operator.passes("mailbox").await < before + mailboxes as f64 {
        assert!(
            Instant::now() < deadline,
            "Available flipping woke not every Mailbox"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the Broadcast `b0`'s `memberCount` passes `check`.
async fn wait_member_count(
    cluster: &Cluster,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) {
    let what = cluster.operator.waiting_for(what);
    cluster
        .api
        .wait_for(&what, |api| {
            check(&api.get(BROADCASTS, NS, "b0")?["status"]["memberCount"]).then_some(())
        })
        .await;
}

/// Waits until `done()`, checking every 200 ms, failing after `deadline`.
async fn poll(cluster: &Cluster, deadline: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < deadline,
            "{}",
            cluster
                .operator
                .waiting_for(format!("{what} within {deadline:?}"))
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A process's resident memory, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}
