//! A replicated cluster end to end (replication.md): three clustered nats-servers with
//! JetStream and three `mq9 broker --replication jetstream` processes, one per server. Any pod
//! answers for any mailbox, and killing a shard leader's broker (kill -9) loses no acknowledged
//! message: another broker takes its shards over and serves them again.

#[path = "../support/mod.rs"]
mod support;

mod failover;
mod layout;
mod load;
mod readiness;
mod rejoin;
mod serving;
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
    /// Flags every broker of this cluster gets beyond [`broker`]'s.
    flags: Vec<String>,
}

impl Cluster {
    async fn start() -> Cluster {
        Cluster::start_with(&[]).await
    }

    /// A cluster whose brokers get `flags` too (they replace the harness's `--lease-secs`).
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
            flags: flags.iter().map(|f| f.to_string()).collect(),
        };
        for i in 0..3 {
            let http = support::free_port();
            let data_dir = cluster.dir.path().join(format!("b{i}"));
            let url = cluster.servers[i].url();
            let broker = broker_with(url, &data_dir, i, http, &cluster.flags);
            cluster.brokers.push(Some(broker));
            cluster.http.push(http);
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
        let deadline = Instant::now() + Duration::from_secs(30);
        for attempt in 0.. {
            // Through each pod in turn: one may be down.
            let js = async_nats::jetstream::new(self.clients[attempt % 3].clone());
            // The bucket is made by the first broker to start.
            let mut holders = BTreeMap::new();
            if let Ok(bucket) = js.get_key_value("MQ9_LEASES_t").await {
                for shard in 0..SHARDS {
                    if let Ok(Some(entry)) = bucket.get(format!("shard.{shard}")).await {
                        holders.insert(shard, String::from_utf8_lossy(&entry).into_owned());
                    }
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
        self.revive_broker(pod);
    }

    /// Starts pod `pod`'s broker again (it was killed or stopped) on the same data.
    fn revive_broker(&mut self, pod: usize) {
        let http = support::free_port();
        let data_dir = self.dir.path().join(format!("b{pod}"));
        let url = self.servers[pod].url();
        self.brokers[pod] = Some(broker_with(url, &data_dir, pod, http, &self.flags));
        self.http[pod] = http;
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
            self.revive_broker(pod);
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

fn broker(url: &str, data_dir: &Path, node: usize, http: std::net::SocketAddr) -> Child {
    broker_with(url, data_dir, node, http, &[])
}

/// [`broker`] with more flags.
fn broker_with(
    url: &str,
    data_dir: &Path,
    node: usize,
    http: std::net::SocketAddr,
    flags: &[String],
) -> Child {
    let log = std::fs::File::create(data_dir.with_extension("log")).unwrap();
    let lease = match flags.iter().any(|f| f == "--lease-secs") {
        true => &[][..],
        false => &["--lease-secs", "2"][..],
    };
    Command::new(env!("CARGO_BIN_EXE_mq9"))
        .args(["broker", "--nats-url", url, "--data-dir"])
        .arg(data_dir)
        .args(["--http-addr", &http.to_string()])
        .args(["--replication", "jetstream", "--cluster", "t"])
        .args(["--shards", &SHARDS.to_string(), "--peers", "3"])
        .args(lease)
        .args(flags)
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
