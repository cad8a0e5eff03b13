//! A replicated cluster end to end (replication.md): three clustered nats-servers with
//! JetStream and three `mq9 broker --replication jetstream` processes, one per server. Any pod
//! answers for any mailbox, and killing a shard leader's broker (kill -9) loses no acknowledged
//! message: another broker takes its shards over and serves them again.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use mq9::natsd::{self, NatsServer};
use mq9::replication::shard::shard_of;
use serde_json::{json, Value};

const SHARDS: u32 = 4;

struct Cluster {
    servers: Vec<NatsServer>,
    brokers: Vec<Option<Child>>,
    clients: Vec<async_nats::Client>,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let servers = natsd::start_cluster(&dir.path().join("nats"), 3, None, None)
            .await
            .unwrap();
        let mut cluster = Cluster {
            brokers: Vec::new(),
            clients: Vec::new(),
            servers,
            dir,
        };
        for i in 0..3 {
            let broker = broker(
                cluster.servers[i].url(),
                &cluster.dir.path().join(format!("b{i}")),
                i,
            );
            cluster.brokers.push(Some(broker));
            cluster
                .clients
                .push(async_nats::connect(cluster.servers[i].url()).await.unwrap());
        }
        cluster
    }

    /// A request through pod `pod`, answered within `timeout`.
    async fn request(
        &self,
        pod: usize,
        subject: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Option<Value> {
        let request = self.clients[pod].request(subject.to_owned(), body.into());
        let reply = tokio::time::timeout(timeout, request).await.ok()?.ok()?;
        serde_json::from_slice(&reply.payload).ok()
    }

    /// Repeats a request (through pods in turn) until it is answered without error.
    async fn until_ok(&self, subject: &str, body: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut pod = 0;
        loop {
            let reply = self
                .request(
                    pod % 3,
                    subject,
                    body.as_bytes().to_vec(),
                    Duration::from_secs(2),
                )
                .await;
            if let Some(reply) = reply.filter(|r| r["error"] == "") {
                return reply;
            }
            assert!(Instant::now() < deadline, "{subject} never answered");
            pod += 1;
        }
    }

    /// Who leads each shard (the lease bucket's holders), once every shard has a leader.
    async fn leaders(&self) -> BTreeMap<u32, String> {
        let js = async_nats::jetstream::new(self.clients[0].clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let bucket = js.get_key_value("MQ9_LEASES_t").await.unwrap();
            let mut holders = BTreeMap::new();
            for shard in 0..SHARDS {
                if let Some(entry) = bucket.get(format!("shard.{shard}")).await.unwrap() {
                    holders.insert(shard, String::from_utf8_lossy(&entry).into_owned());
                }
            }
            if holders.len() == SHARDS as usize {
                return holders;
            }
            assert!(
                Instant::now() < deadline,
                "shards without a leader: {holders:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(&mut self, broker: usize) {
        let mut child = self.brokers[broker].take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.brokers.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn broker(url: &str, data_dir: &Path, node: usize) -> Child {
    let log = std::fs::File::create(data_dir.with_extension("log")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_mq9"))
        .args(["broker", "--nats-url", url, "--data-dir"])
        .arg(data_dir)
        .args(["--http-addr", &support::free_port().to_string()])
        .args(["--replication", "jetstream", "--cluster", "t"])
        .args([
            "--shards",
            &SHARDS.to_string(),
            "--peers",
            "3",
            "--lease-secs",
            "2",
        ])
        .args(["--node", &format!("n{node}")])
        .env("MQ9_LOG", "mq9=info")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}

/// How the protocol carries payloads in JSON.
fn base64(bytes: &[u8]) -> String {
    data_encoding::BASE64.encode(bytes)
}

/// Mailbox names covering every shard.
fn mailboxes() -> Vec<String> {
    let mut by_shard = BTreeMap::new();
    for i in 0.. {
        let name = format!("team.box{i}");
        by_shard.entry(shard_of(&name, SHARDS)).or_insert(name);
        if by_shard.len() == SHARDS as usize {
            break;
        }
    }
    by_shard.into_values().collect()
}

/// Every mailbox answers through every pod: created through one, sent to through another,
/// fetched through the third.
#[tokio::test(flavor = "multi_thread")]
async fn any_pod_serves_any_mailbox() {
    let cluster = Cluster::start().await;
    for (i, name) in mailboxes().iter().enumerate() {
        cluster
            .until_ok("$mq9.AI.MAILBOX.CREATE", &json!({"name": name}).to_string())
            .await;
        let send = format!("$mq9.AI.MSG.SEND.{name}");
        let sent = cluster
            .request((i + 1) % 3, &send, b"hello".to_vec(), support::DEADLINE)
            .await;
        assert_eq!(
            sent.as_ref().map(|s| s["error"].clone()),
            Some(json!("")),
            "{sent:?}"
        );
        let fetch = format!("$mq9.AI.MSG.FETCH.{name}");
        let body = json!({"group_name": "g"}).to_string().into_bytes();
        let fetched = cluster
            .request((i + 2) % 3, &fetch, body, support::DEADLINE)
            .await
            .unwrap();
        assert_eq!(
            fetched["messages"][0]["payload"],
            base64(b"hello"),
            "{fetched}"
        );
    }
    let created = cluster.until_ok("$mq9.AI.MAILBOX.CREATE", "{}").await;
    let address = created["mail_address"].as_str().unwrap();
    let send = format!("$mq9.AI.MSG.SEND.{address}");
    let sent = cluster
        .request(2, &send, b"to a made address".to_vec(), support::DEADLINE)
        .await;
    assert_eq!(
        sent.unwrap()["error"],
        "",
        "an address the cluster made is served"
    );

    // LIST (two at a time) and STATS see every shard's mailboxes, as from one broker.
    let mut expected: Vec<String> = mailboxes();
    expected.push(address.to_owned());
    expected.sort();
    let mut listed = Vec::new();
    let mut after = Value::Null;
    loop {
        let body = json!({"limit": 2, "after": after}).to_string();
        let page = cluster.until_ok("$mq9.ADMIN.MAILBOX.LIST", &body).await;
        let names = page["mailboxes"].as_array().unwrap();
        listed.extend(names.iter().map(|m| m["name"].as_str().unwrap().to_owned()));
        if page["more"] == false {
            break;
        }
        after = page["next_after"].clone();
    }
    assert_eq!(listed, expected);
    let stats = cluster.until_ok("$mq9.ADMIN.STATS", "{}").await;
    assert_eq!(stats["mailboxes"], expected.len(), "{stats}");
    assert_eq!(
        stats["messages"],
        expected.len(),
        "one message each: {stats}"
    );
}

/// kill -9 of a broker while SENDs go on through every pod: every acknowledged message is
/// there afterwards, with its payload, under one msg_id each, and every mailbox is served
/// again.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_leader_loses_no_acknowledged_message() {
    let mut cluster = Cluster::start().await;
    let names = mailboxes();
    for name in &names {
        cluster
            .until_ok("$mq9.AI.MAILBOX.CREATE", &json!({"name": name}).to_string())
            .await;
    }
    // The broker that leads the most shards is the one to kill; its mailboxes are timed.
    let holders = cluster.leaders().await;
    let victim = (0..3)
        .max_by_key(|i| holders.values().filter(|h| **h == format!("n{i}")).count())
        .unwrap();
    let orphaned: BTreeSet<&String> = names
        .iter()
        .filter(|name| holders[&shard_of(name, SHARDS)] == format!("n{victim}"))
        .collect();
    assert!(!orphaned.is_empty(), "the victim leads shards: {holders:?}");
    let survivors = [0, 1, 2]
        .into_iter()
        .filter(|i| *i != victim)
        .collect::<Vec<_>>();
    let mut acked: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    let mut killed_at = None;
    let mut served_again: BTreeMap<String, Duration> = BTreeMap::new();
    for round in 0..40 {
        if round == 10 {
            cluster.kill(victim);
            killed_at = Some(Instant::now());
        }
        let sends = names.iter().enumerate().map(|(i, name)| {
            let payload = format!("{name} #{round}");
            let subject = format!("$mq9.AI.MSG.SEND.{name}");
            let pod = survivors[(i + round) % 2]; // any pod would do: the servers stay up
            let cluster = &cluster;
            async move {
                let reply = cluster
                    .request(
                        pod,
                        &subject,
                        payload.clone().into_bytes(),
                        Duration::from_secs(2),
                    )
                    .await;
                (name.clone(), payload, reply)
            }
        });
        for (name, payload, reply) in futures::future::join_all(sends).await {
            let Some(reply) = reply else { continue };
            if reply["error"] != "" {
                assert_eq!(
                    reply["code"], "unavailable",
                    "only unavailable, never a wrong answer: {reply}"
                );
                continue;
            }
            let msg_id = reply["msg_id"].as_u64().expect("a msg_id");
            if let (Some(at), true) = (killed_at, orphaned.contains(&name)) {
                served_again
                    .entry(name.clone())
                    .or_insert_with(|| at.elapsed());
            }
            acked
                .entry(name)
                .or_default()
                .push((msg_id, base64(payload.as_bytes())));
        }
    }
    for name in &orphaned {
        let after = served_again
            .get(*name)
            .expect("served again after the kill");
        assert!(
            *after <= Duration::from_secs(5),
            "{name} served again after {after:?}"
        );
    }
    for name in &names {
        let fetch = format!("$mq9.AI.MSG.QUERY.{name}");
        let stored = cluster.until_ok(&fetch, r#"{"limit":1000}"#).await;
        let stored: BTreeMap<u64, String> = stored["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["msg_id"].as_u64().unwrap(),
                    m["payload"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        let acked = acked.get(name).cloned().unwrap_or_default();
        let ids: BTreeSet<u64> = acked.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), acked.len(), "{name}: no msg_id given twice");
        for (msg_id, payload) in &acked {
            assert_eq!(
                stored.get(msg_id),
                Some(payload),
                "{name}: acknowledged {msg_id} is stored"
            );
        }
    }
    eprintln!("the killed leader's mailboxes served again after {served_again:?}");
}

/// A leader paused past its lease (SIGSTOP) loses its shard to another broker; resumed
/// (SIGCONT), it answers nothing as success: its appends are fenced. SENDs published to the
/// shard's forwarding subject reach both the new leader and the paused one; every success any
/// of them answers names the one msg_id stored with that payload.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_leader_answers_nothing_as_success() {
    let cluster = Cluster::start().await;
    let name = &mailboxes()[0];
    cluster
        .until_ok("$mq9.AI.MAILBOX.CREATE", &json!({"name": name}).to_string())
        .await;
    let shard = shard_of(name, SHARDS);
    let before = cluster.leaders().await[&shard].clone();
    let victim: usize = before.trim_start_matches('n').parse().unwrap();
    let pid = cluster.brokers[victim].as_ref().unwrap().id() as libc::pid_t;
    // SAFETY: kill(2) with the pid of a child we own.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.leaders().await[&shard] == before {
        assert!(
            Instant::now() < deadline,
            "nobody took the paused leader's shard"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = &cluster.clients[(victim + 1) % 3];
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(format!("{inbox}.>")).await.unwrap();
    let forward = format!("$mq9.FWD.t.{shard}");
    for i in 0..5 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Mq9-Forwarded-Subject",
            format!("$mq9.AI.MSG.SEND.{name}").as_str(),
        );
        headers.insert("Nats-Msg-Id", format!("paused-{i}").as_str());
        let reply = format!("{inbox}.{i}");
        let payload = format!("while paused #{i}");
        client
            .publish_with_reply_and_headers(forward.clone(), reply, headers, payload.into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let mut answered: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let collect_until = Instant::now() + Duration::from_secs(6);
    while let Ok(Some(reply)) = tokio::time::timeout_at(collect_until.into(), replies.next()).await
    {
        let request: u64 = reply.subject.rsplit('.').next().unwrap().parse().unwrap();
        let body: Value = serde_json::from_slice(&reply.payload).unwrap();
        let outcome = match body["error"].as_str() {
            Some("") => format!("msg_id {}", body["msg_id"]),
            _ => format!("refused {}", body["code"]),
        };
        answered.entry(request).or_default().insert(outcome);
    }
    let stored = cluster
        .until_ok(&format!("$mq9.AI.MSG.QUERY.{name}"), r#"{"limit":100}"#)
        .await;
    for i in 0..5 {
        let outcomes = answered.get(&i).cloned().unwrap_or_default();
        let successes: Vec<&String> = outcomes
            .iter()
            .filter(|o| o.starts_with("msg_id"))
            .collect();
        assert!(
            successes.len() <= 1,
            "request {i}: two different successes {outcomes:?}"
        );
        for refusal in outcomes.iter().filter(|o| o.starts_with("refused")) {
            assert_eq!(refusal, "refused \"unavailable\"", "request {i}");
        }
        if let Some(success) = successes.first() {
            let msg_id: u64 = success.trim_start_matches("msg_id ").parse().unwrap();
            let message = stored["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["msg_id"] == msg_id)
                .unwrap_or_else(|| panic!("request {i}: acknowledged {msg_id} is not stored"));
            assert_eq!(
                message["payload"],
                base64(format!("while paused #{i}").as_bytes())
            );
        }
    }
    eprintln!("replies to the five SENDs: {answered:?}");
}
