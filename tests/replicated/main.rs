//! A replicated cluster end to end (replication.md): three clustered nats-servers with
//! JetStream and three `mq9 broker --replication jetstream` processes, one per server. Any pod
//! answers for any mailbox, and killing a shard leader's broker (kill -9) loses no acknowledged
//! message: another broker takes its shards over and serves them again.

#[path = "../support/mod.rs"]
mod support;

mod balance;
mod failover;
mod layout;
mod load;
mod readiness;
mod rejoin;
mod serving;
mod snapshots;
mod waiting;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use mq9::natsd::{self, NatsServer};
use mq9::replication::shard::shard_of;
use serde_json::{json, Value};

const SHARDS: u32 = 4;

/// What a failover test kills (with SIGKILL).
#[derive(Debug, Clone, Copy)]
enum Kill {
    Broker,
    Server,
    /// The broker and its nats-server: the whole pod.
    Pod,
}

struct Cluster {
    servers: Vec<NatsServer>,
    brokers: Vec<Option<Child>>,
    /// Each broker's /metrics, /healthz and /readyz.
    http: Vec<std::net::SocketAddr>,
    clients: Vec<async_nats::Client>,
    dir: tempfile::TempDir,
    /// Flags every broker gets besides the harness's own.
    flags: Vec<String>,
}

impl Cluster {
    async fn start() -> Cluster {
        Cluster::start_with(&[]).await
    }

    /// A cluster whose brokers get `flags` too (they replace the harness's `--lease-secs` and
    /// `--shards`).
    async fn start_with(flags: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let servers = natsd::start_cluster(&dir.path().join("nats"), 3, None, None, false)
            .await
            .unwrap();
        let mut cluster = Cluster {
            brokers: Vec::new(),
            http: Vec::new(),
            clients: Vec::new(),
            servers,
            dir,
            flags: flags.iter().map(|flag| flag.to_string()).collect(),
        };
        for i in 0..3 {
            cluster.brokers.push(None);
            cluster.http.push(support::free_port());
            cluster.start_broker(i);
            cluster
                .clients
                .push(async_nats::connect(cluster.servers[i].url()).await.unwrap());
        }
        cluster
    }

    /// Starts pod `pod`'s broker (not running) on its data directory, with a new HTTP port.
    fn start_broker(&mut self, pod: usize) {
        assert!(self.brokers[pod].is_none(), "broker {pod} runs already");
        let http = support::free_port();
        let data_dir = self.dir.path().join(format!("b{pod}"));
        let url = self.servers[pod].url();
        self.brokers[pod] = Some(broker(url, &data_dir, pod, http, &self.flags));
        self.http[pod] = http;
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
        self.leaders_of(SHARDS).await
    }

    /// [`Cluster::leaders`] of a cluster of `shards` shards.
    async fn leaders_of(&self, shards: u32) -> BTreeMap<u32, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for attempt in 0.. {
            // Through each pod in turn: one may be down.
            let js = async_nats::jetstream::new(self.clients[attempt % 3].clone());
            // The bucket is made by the first broker to start.
            let mut holders = BTreeMap::new();
            if let Ok(bucket) = js.get_key_value("MQ9_LEASES_t").await {
                for shard in 0..shards {
                    if let Ok(Some(entry)) = bucket.get(format!("shard.{shard}")).await {
                        holders.insert(shard, String::from_utf8_lossy(&entry).into_owned());
                    }
                }
            }
            if holders.len() == shards as usize {
                return holders;
            }
            assert!(
                Instant::now() < deadline,
                "shards without a leader: {holders:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        unreachable!("the loop returns or fails the test")
    }

    /// Creates a mailbox on every shard ([`mailboxes`]); their names.
    async fn create_mailboxes(&self) -> Vec<String> {
        let names = mailboxes();
        for name in &names {
            let body = json!({"name": name}).to_string();
            self.until_ok("$mq9.AI.MAILBOX.CREATE", &body).await;
        }
        names
    }

    /// A per-shard metric of pod `pod`'s broker (`mq9_shard_leader`, …), shard by shard (0 when
    /// it does not show it).
    async fn shard_metric(&self, pod: usize, name: &str) -> Vec<f64> {
        let (_, metrics) = support::http_get(self.http[pod], "/metrics").await;
        let value = |shard| {
            let labeled = format!("{name}{{shard=\"{shard}\"}}");
            support::metric_value(&metrics, &labeled).unwrap_or(0.0)
        };
        (0..SHARDS).map(value).collect()
    }

    /// Stops pod `pod`'s broker (SIGTERM) and starts it again on the same data.
    async fn restart(&mut self, pod: usize) {
        let mut child = self.brokers[pod].take().expect("running");
        // SAFETY: kill(2) with the pid of a child we own.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + support::DEADLINE;
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "broker {pod} did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.start_broker(pod);
    }

    /// kill -9 of pod `pod`'s broker, whose data directory is then removed, and a new broker
    /// there, empty.
    fn rejoin_empty(&mut self, pod: usize) {
        self.kill(pod, Kill::Broker);
        std::fs::remove_dir_all(self.dir.path().join(format!("b{pod}"))).unwrap();
        self.start_broker(pod);
    }

    /// Waits until pod `pod`'s copy of every shard holds as much of its log as the other pods'.
    async fn caught_up(&self, pod: usize) {
        let deadline = Instant::now() + support::DEADLINE;
        while support::try_http_get(self.http[pod], "/metrics")
            .await
            .is_none()
        {
            assert!(Instant::now() < deadline, "n{pod} never served /metrics");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        loop {
            let mut theirs = vec![0.0; SHARDS as usize];
            for other in (0..3).filter(|other| *other != pod) {
                let applied = self.shard_metric(other, "mq9_shard_applied_sequence").await;
                for (most, applied) in theirs.iter_mut().zip(applied) {
                    *most = applied.max(*most);
                }
            }
            let ours = self.shard_metric(pod, "mq9_shard_applied_sequence").await;
            if ours
                .iter()
                .zip(&theirs)
                .all(|(ours, theirs)| ours >= theirs)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "n{pod} {ours:?}, the others {theirs:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Brings back what [`Cluster::kill`] killed of pod `pod` (a nats-server keeps its store and
    /// port), then waits until every broker is ready again.
    async fn revive(&mut self, pod: usize, what: Kill) {
        if matches!(what, Kill::Server | Kill::Pod) {
            self.servers[pod]
                .restart()
                .expect("nats-server starts again");
        }
        if matches!(what, Kill::Broker | Kill::Pod) {
            self.start_broker(pod);
        }
        for pod in 0..3 {
            self.until_readyz(pod, |status, _| status == 200).await;
        }
    }

    /// The body of pod `pod`'s `/readyz` once `wanted` holds of its status and body.
    async fn until_readyz(&self, pod: usize, wanted: impl Fn(u16, &str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = support::try_http_get(self.http[pod], "/readyz").await;
            let (status, body) = answer.unwrap_or((0, "not listening".into()));
            if wanted(status, &body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "pod {pod}: /readyz {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// kill -9 of pod `pod`'s broker, its nats-server, or both.
    fn kill(&mut self, pod: usize, what: Kill) {
        if matches!(what, Kill::Broker | Kill::Pod) {
            let mut child = self.brokers[pod].take().expect("running");
            child.kill().unwrap();
            child.wait().unwrap();
        }
        if matches!(what, Kill::Server | Kill::Pod) {
            // SAFETY: kill(2) with the pid of a child we own; its NatsServer reaps it.
            unsafe { libc::kill(self.servers[pod].pid() as libc::pid_t, libc::SIGKILL) };
        }
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

fn broker(
    url: &str,
    data_dir: &Path,
    node: usize,
    http: std::net::SocketAddr,
    flags: &[String],
) -> Child {
    let log = std::fs::File::create(data_dir.with_extension("log")).unwrap();
    let given = |flag: &str| flags.iter().any(|f| f == flag);
    let lease = match given("--lease-secs") {
        true => &[][..],
        false => &["--lease-secs", "2"][..],
    };
    let shards = match given("--shards") {
        true => vec![],
        false => vec!["--shards".to_owned(), SHARDS.to_string()],
    };
    Command::new(env!("CARGO_BIN_EXE_mq9"))
        .args(["broker", "--nats-url", url, "--data-dir"])
        .arg(data_dir)
        .args(["--http-addr", &http.to_string()])
        .args(["--replication", "jetstream", "--cluster", "t"])
        .args(["--peers", "3"])
        .args(lease)
        .args(shards)
        .args(flags)
        .args(["--node", &format!("n{node}")])
        .env("MQ9_LOG", "mq9=info")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}

/// One SEND to each mailbox through pod 0 or 1; the acknowledged ones, with their payloads as
/// the protocol shows them.
async fn send_round(cluster: &Cluster, names: &[String], round: usize) -> Vec<(String, String)> {
    let mut sent = Vec::new();
    for name in names {
        let payload = format!("{name} #{round}");
        let subject = format!("$mq9.AI.MSG.SEND.{name}");
        let body = payload.clone().into_bytes();
        let reply = cluster
            .request(round % 2, &subject, body, Duration::from_secs(2))
            .await;
        if reply.is_some_and(|r| r["error"] == "") {
            sent.push((name.clone(), base64(payload.as_bytes())));
        }
    }
    sent
}

/// The acknowledged payloads, by mailbox.
#[derive(Default)]
struct Acked {
    by_mailbox: BTreeMap<String, Vec<String>>,
}

impl Acked {
    /// Records what [`send_round`] says was acknowledged.
    fn add(&mut self, sent: Vec<(String, String)>) {
        for (name, payload) in sent {
            self.by_mailbox.entry(name).or_default().push(payload);
        }
    }
}

/// Every mailbox serves (QUERY) every payload `acked` lists for it, and no msg_id twice.
async fn assert_served(cluster: &Cluster, acked: &BTreeMap<String, Vec<String>>) {
    for (name, payloads) in acked {
        let query = format!("$mq9.AI.MSG.QUERY.{name}");
        let stored = cluster.until_ok(&query, r#"{"limit":1000}"#).await;
        let messages = stored["messages"].as_array().unwrap();
        let msg_ids: BTreeSet<u64> = messages
            .iter()
            .map(|m| m["msg_id"].as_u64().unwrap())
            .collect();
        assert_eq!(
            msg_ids.len(),
            messages.len(),
            "{name}: a msg_id given twice"
        );
        let stored: BTreeSet<&str> = messages
            .iter()
            .map(|m| m["payload"].as_str().unwrap())
            .collect();
        for payload in payloads {
            assert!(
                stored.contains(payload.as_str()),
                "{name}: an acknowledged message is served"
            );
        }
    }
}

/// How the protocol carries payloads in JSON.
fn base64(bytes: &[u8]) -> String {
    data_encoding::BASE64.encode(bytes)
}

/// Mailbox names covering every shard.
fn mailboxes() -> Vec<String> {
    mailboxes_of(SHARDS)
}

/// Mailbox names covering every shard of `shards`, one each.
fn mailboxes_of(shards: u32) -> Vec<String> {
    let mut by_shard = BTreeMap::new();
    for i in 0.. {
        let name = format!("team.box{i}");
        by_shard.entry(shard_of(&name, shards)).or_insert(name);
        if by_shard.len() == shards as usize {
            break;
        }
    }
    by_shard.into_values().collect()
}
