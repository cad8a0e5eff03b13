//! Test harness: a real nats-server (random loopback port, temp dir) and the real `mq9 broker`
//! binary as a child process on a temp data dir, plus an async-nats client and helpers that
//! speak the wire protocol as any agent would. No mocks.
#![allow(dead_code)]

pub mod apiserver;
pub mod cluster;
pub mod data_plane;
pub mod powercut;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use base64::Engine as _;
use mq9::natsd::{NatsServer, NatsServerOptions};
use serde_json::{json, Value};
use tempfile::TempDir;

/// How long any single wait in a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A running nats-server plus a running broker.
pub struct Env {
    pub nats: NatsServer,
    pub broker: Broker,
    pub client: async_nats::Client,
    _nats_dir: TempDir,
    data_dir: TempDir,
}

/// The broker child process.
pub struct Broker {
    child: Child,
    pub http_addr: SocketAddr,
    pub log: PathBuf,
    args: Vec<String>,
    /// Extra environment of the broker process (e.g. an `LD_PRELOAD` shim), kept on restarts.
    env: Vec<(String, String)>,
}

impl Env {
    /// nats-server + broker with default settings.
    pub async fn start() -> Env {
        Env::start_with(&[]).await
    }

    /// nats-server + broker with extra `mq9 broker` flags.
    pub async fn start_with(args: &[&str]) -> Env {
        Env::start_full(args, "").await
    }

    /// As [`Env::start_with`], with extra nats-server configuration (e.g. `max_payload`).
    pub async fn start_full(args: &[&str], nats_config: &str) -> Env {
        Env::start_with_env(args, nats_config, &[]).await
    }

    /// As [`Env::start_full`], with extra environment variables for the broker process.
    pub async fn start_with_env(args: &[&str], nats_config: &str, env: &[(String, String)]) -> Env {
        let nats_dir = TempDir::new().unwrap();
        let mut options = NatsServerOptions::new(nats_dir.path());
        options.extra_config = nats_config.to_owned();
        let nats = NatsServer::start(&options).expect("nats-server starts (run scripts/setup.sh)");
        let data_dir = TempDir::new().unwrap();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let broker = Broker::spawn_with_env(nats.url(), data_dir.path(), &args, env);
        let client = async_nats::connect(nats.url()).await.unwrap();
        let env = Env {
            nats,
            broker,
            client,
            _nats_dir: nats_dir,
            data_dir,
        };
        env.wait_ready().await;
        env
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Stops the broker with SIGTERM and starts it again on the same data dir.
    pub async fn restart_broker(&mut self) {
        self.broker.terminate();
        self.respawn_broker().await;
    }

    /// Kills the broker with SIGKILL (a crash) and starts it again on the same data dir.
    pub async fn crash_and_restart_broker(&mut self) {
        self.broker.kill();
        self.respawn_broker().await;
    }

    /// Starts a new broker (same flags and environment) on the data dir of the stopped one.
    pub async fn respawn_broker(&mut self) {
        self.broker = Broker::spawn_with_env(
            self.nats.url(),
            self.data_dir.path(),
            &self.broker.args.clone(),
            &self.broker.env.clone(),
        );
        self.wait_ready().await;
    }

    /// Kills nats-server and starts a new one on the same port, as a crash and restart of the
    /// server looks to its clients (the broker's connection drops and must come back by itself).
    pub async fn restart_nats(&mut self) {
        let port: u16 = self.nats.url().rsplit(':').next().unwrap().parse().unwrap();
        // SAFETY: kill(2) on the nats-server child this harness started.
        unsafe { libc::kill(self.nats.pid() as libc::pid_t, libc::SIGKILL) };
        let dir = TempDir::new().unwrap();
        let mut options = NatsServerOptions::new(dir.path());
        options.port = Some(port);
        let deadline = Instant::now() + DEADLINE;
        self.nats = loop {
            match NatsServer::start(&options) {
                Ok(server) => break server,
                // The old process may still hold the port for a moment.
                Err(e) => assert!(Instant::now() < deadline, "nats-server restarts: {e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self._nats_dir = dir;
    }

    /// Waits until the broker answers requests.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let probe = self
                .client
                .request("$mq9.AI.MSG.QUERY.ready.probe", "".into());
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), probe).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "broker not ready; log: {}",
                self.broker.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A request with a JSON (or any) body; the reply parsed as JSON.
    pub async fn request(&self, subject: &str, body: &str) -> Value {
        self.request_with(subject, HeaderMap::new(), body.as_bytes().to_vec())
            .await
    }

    /// A request with headers and a raw payload.
    pub async fn request_with(&self, subject: &str, headers: HeaderMap, payload: Vec<u8>) -> Value {
        let request = self
            .client
            .request_with_headers(subject.to_owned(), headers, payload.into());
        let reply = tokio::time::timeout(DEADLINE, request)
            .await
            .unwrap_or_else(|_| panic!("no reply to {subject} within {DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("request {subject} failed: {e}"));
        serde_json::from_slice(&reply.payload)
            .unwrap_or_else(|e| panic!("reply to {subject} is not JSON ({e}): {:?}", reply.payload))
    }

    /// Creates a mailbox and returns its address; panics on an error reply.
    pub async fn create(&self, body: Value) -> String {
        let reply = self
            .request("$mq9.AI.MAILBOX.CREATE", &body.to_string())
            .await;
        assert_eq!(reply["error"], "", "create failed: {reply}");
        reply["mail_address"].as_str().unwrap().to_owned()
    }

    /// MSG.SEND with headers; returns the reply.
    pub async fn send(&self, address: &str, payload: &[u8], headers: &[(&str, &str)]) -> Value {
        self.request_with(
            &format!("$mq9.AI.MSG.SEND.{address}"),
            header_map(headers),
            payload.to_vec(),
        )
        .await
    }

    /// The original design's send: a request on `$mq9.AI.INBOX.{address}.{priority}`.
    pub async fn inbox(&self, address: &str, priority: &str, payload: &[u8]) -> Value {
        self.request_with(
            &format!("$mq9.AI.INBOX.{address}.{priority}"),
            HeaderMap::new(),
            payload.to_vec(),
        )
        .await
    }

    /// Sends `count` messages concurrently (payloads `m0`, `m1`, ...); returns their msg_ids.
    pub async fn send_many(&self, address: &str, count: usize) -> Vec<i64> {
        let payloads: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
        let sends = payloads
            .iter()
            .map(|p| self.send_ok(address, p.as_bytes(), &[]));
        futures::future::join_all(sends).await
    }

    /// A plain publish (no reply subject), flushed to the server.
    pub async fn publish(&self, subject: &str, headers: &[(&str, &str)], payload: &[u8]) {
        self.client
            .publish_with_headers(
                subject.to_owned(),
                header_map(headers),
                payload.to_vec().into(),
            )
            .await
            .unwrap();
        self.client.flush().await.unwrap();
    }

    /// A request whose raw reply is returned (to look at its size).
    pub async fn request_raw(&self, subject: &str, body: &str) -> async_nats::Message {
        let request = self
            .client
            .request(subject.to_owned(), body.as_bytes().to_vec().into());
        tokio::time::timeout(DEADLINE, request)
            .await
            .unwrap_or_else(|_| panic!("no reply to {subject} within {DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("request {subject} failed: {e}"))
    }

    /// MSG.FETCH, also returning how long the reply took.
    pub async fn fetch_timed(&self, address: &str, body: Value) -> (Value, Duration) {
        let started = Instant::now();
        let reply = self.fetch(address, body).await;
        (reply, started.elapsed())
    }

    /// MSG.QUERY; returns the reply.
    pub async fn query(&self, address: &str, body: Value) -> Value {
        self.request(&format!("$mq9.AI.MSG.QUERY.{address}"), &body.to_string())
            .await
    }

    /// The msg_ids an empty MSG.QUERY returns.
    pub async fn query_ids(&self, address: &str) -> Vec<u64> {
        ids(&self.query(address, json!({})).await)
    }

    /// MAILBOX.QUERY (the original design's pull); returns the reply.
    pub async fn mailbox_query(&self, address: &str, body: Value) -> Value {
        self.request(
            &format!("$mq9.AI.MAILBOX.QUERY.{address}"),
            &body.to_string(),
        )
        .await
    }

    /// MSG.DELETE with an empty body; returns the reply.
    pub async fn delete(&self, address: &str, msg_id: u64) -> Value {
        self.request(&format!("$mq9.AI.MSG.DELETE.{address}.{msg_id}"), "")
            .await
    }

    /// Waits until commands on the mailbox answer `not_found`.
    pub async fn wait_gone(&self, address: &str) {
        wait_until(&format!("mailbox {address} is gone"), || async {
            self.query(address, json!({})).await["code"] == "not_found"
        })
        .await;
    }

    /// The value of an unlabelled metric (a gauge) in `/metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        metric_value(&self.metrics().await, name)
    }

    /// MSG.SEND expecting success; returns the msg_id.
    pub async fn send_ok(&self, address: &str, payload: &[u8], headers: &[(&str, &str)]) -> i64 {
        let reply = self.send(address, payload, headers).await;
        assert_eq!(reply["error"], "", "send failed: {reply}");
        reply["msg_id"].as_i64().unwrap()
    }

    /// MSG.FETCH; returns the reply.
    pub async fn fetch(&self, address: &str, body: Value) -> Value {
        self.request(&format!("$mq9.AI.MSG.FETCH.{address}"), &body.to_string())
            .await
    }

    /// MSG.ACK; returns the reply.
    pub async fn ack(&self, address: &str, group: &str, msg_id: u64) -> Value {
        let body = json!({"group_name": group, "msg_id": msg_id});
        self.request(&format!("$mq9.AI.MSG.ACK.{address}"), &body.to_string())
            .await
    }

    /// The body of `/metrics`.
    pub async fn metrics(&self) -> String {
        http_get(self.broker.http_addr, "/metrics").await.1
    }
}

/// The messages of a FETCH or QUERY reply (panics on an error reply).
pub fn messages(reply: &Value) -> Vec<Value> {
    assert_eq!(reply["error"], "", "error reply: {reply}");
    reply["messages"]
        .as_array()
        .expect("messages array")
        .clone()
}

/// The msg_ids of a FETCH or QUERY reply, in reply order.
pub fn ids(reply: &Value) -> Vec<u64> {
    messages(reply)
        .iter()
        .map(|m| m["msg_id"].as_u64().unwrap())
        .collect()
}

/// A message's payload, base64-decoded as every SDK decodes it.
pub fn payload(message: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(message["payload"].as_str().unwrap())
        .expect("standard base64 with padding")
}

/// A header map from name/value pairs (a name may repeat).
pub fn header_map(headers: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(*name, *value);
    }
    map
}

/// The payloads of a FETCH or QUERY reply as strings, in reply order.
pub fn texts(reply: &Value) -> Vec<String> {
    messages(reply)
        .iter()
        .map(|m| String::from_utf8(payload(m)).unwrap())
        .collect()
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sleeps into the next wall-clock second: creates the gap that `from_time` and `since`
/// (whole seconds) need to tell two sends apart.
pub async fn sleep_into_next_second() {
    let start = now_secs();
    while now_secs() == start {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the line `name value` (no labels) in a Prometheus text exposition.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (metric, value) = line.split_once(' ')?;
        (metric == name).then(|| value.trim().parse().ok())?
    })
}

/// Asserts an error reply with this code whose message contains `needle`.
pub fn assert_error_says(reply: &Value, code: &str, needle: &str) {
    assert_error(reply, code);
    let message = reply["error"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "error should mention {needle:?}: {reply}"
    );
}

/// Asserts an error reply with this code and exactly two fields.
pub fn assert_error(reply: &Value, code: &str) {
    assert_eq!(reply["code"], code, "expected {code}: {reply}");
    assert!(
        !reply["error"].as_str().unwrap_or("").is_empty(),
        "error message missing: {reply}"
    );
    assert_eq!(
        reply.as_object().unwrap().len(),
        2,
        "failure replies carry only error and code: {reply}"
    );
}

/// Waits until nats-server has processed everything `client` sent so far, its SUBs above all,
/// so that a publish from another connection reaches them. `flush` only writes the buffer;
/// this publishes to the client itself and waits for the echo, which the server sends only
/// after handling what came before it on the connection.
pub async fn server_caught_up(client: &async_nats::Client) {
    use futures::StreamExt;
    let subject = client.new_inbox();
    let mut echo = client.subscribe(subject.clone()).await.unwrap();
    client.publish(subject, "".into()).await.unwrap();
    tokio::time::timeout(DEADLINE, echo.next())
        .await
        .expect("nats-server echoes a publish within the deadline");
}

/// Waits for a condition, polling, failing the test at the deadline.
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A minimal HTTP/1.1 GET: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("HTTP port open");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

impl Broker {
    pub fn spawn(nats_url: &str, data_dir: &Path, args: &[String]) -> Broker {
        Broker::spawn_with_env(nats_url, data_dir, args, &[])
    }

    pub fn spawn_with_env(
        nats_url: &str,
        data_dir: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Broker {
        let http_addr = free_port();
        let log = data_dir.with_extension("broker.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mq9"))
            .arg("broker")
            .arg("--nats-url")
            .arg(nats_url)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--http-addr")
            .arg(http_addr.to_string())
            .args(args)
            .env("MQ9_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("mq9 binary starts");
        Broker {
            child,
            http_addr,
            log,
            args: args.to_vec(),
            env: env.to_vec(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "broker exited with {status}; log: {}",
            self.log_text()
        );
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
