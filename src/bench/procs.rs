//! The processes a benchmark measures: nats-servers and mq9 brokers, each on loopback with
//! its own temporary directory, each stopped when the benchmark ends (also when it fails).
//!
//! The broker runs as a *separate process* (this very executable, `mq9 broker`), never as a
//! task inside the benchmark: its CPU then competes with the load generator the way a real
//! deployment's would, and its memory can be read from `/proc/<pid>/status` — the resident
//! set size (RSS) is how the scale figure prices a mailbox.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::natsd::{NatsServer, NatsServerOptions};

/// How long a process may take to become ready, or to stop, before the benchmark gives up.
const START_DEADLINE: Duration = Duration::from_secs(30);
const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// When JetStream syncs its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JetStreamSync {
    /// The server's default: a background flush every two minutes; an ack means "in the
    /// server's memory and the OS page cache".
    Default,
    /// `sync_interval: always`: every write is fsynced before its ack — the durability the
    /// broker's default (`--sync always`) gives.
    Always,
}

/// Starts a nats-server with JetStream enabled, storage under `work_dir`.
pub async fn start_nats(
    binary: &Path,
    work_dir: &Path,
    sync: JetStreamSync,
) -> anyhow::Result<NatsServer> {
    let mut options = NatsServerOptions::new(work_dir);
    options.binary = Some(binary.to_path_buf());
    let store_dir = work_dir.join("jetstream");
    let sync_line = match sync {
        JetStreamSync::Default => "",
        JetStreamSync::Always => "sync_interval: always\n",
    };
    options.extra_config = format!(
        "jetstream {{\n store_dir: {:?}\n {sync_line}}}\n",
        store_dir.display().to_string()
    );
    tokio::task::spawn_blocking(move || NatsServer::start(&options))
        .await?
        .context("cannot start nats-server")
}

/// A client connection with a request timeout long enough for fsyncs under load: a request
/// that still times out is an error, and the benchmark stops on it.
pub async fn connect(url: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .request_timeout(Some(Duration::from_secs(30)))
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

/// `mq9 broker` as a child process; killed when dropped.
pub struct BrokerProcess {
    child: Child,
    http_addr: SocketAddr,
    log: PathBuf,
}

impl BrokerProcess {
    /// Starts the broker on `data_dir` and waits until its `/readyz` answers 200.
    ///
    /// `durable` is the broker's default (`--sync always`: a SEND is answered after the WAL
    /// sync); otherwise `--sync none`. Mailboxes get no message or byte caps: a benchmark
    /// fills one mailbox with more than the default 100,000 messages.
    pub async fn start(nats_url: &str, data_dir: &Path, durable: bool) -> anyhow::Result<Self> {
        BrokerProcess::start_with(nats_url, data_dir, durable, &[]).await
    }

    /// As [`BrokerProcess::start`], with more `mq9 broker` flags.
    pub async fn start_with(
        nats_url: &str,
        data_dir: &Path,
        durable: bool,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let exe = std::env::current_exe().context("cannot locate the mq9 executable")?;
        let http_addr = free_loopback_addr()?;
        let log = data_dir.join("broker.log");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(exe)
            .process_group(0)
            .arg("broker")
            .arg("--nats-url")
            .arg(nats_url)
            .arg("--data-dir")
            .arg(data_dir.join("db"))
            .arg("--http-addr")
            .arg(http_addr.to_string())
            .arg("--sync")
            .arg(if durable { "always" } else { "none" })
            .args(["--max-messages-per-mailbox", "0"])
            .args(["--max-bytes-per-mailbox", "0"])
            .args(extra)
            .env("MQ9_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .context("cannot start mq9 broker")?;
        let mut broker = BrokerProcess {
            child,
            http_addr,
            log,
        };
        broker.wait_ready().await?;
        Ok(broker)
    }

    /// Polls `/readyz` until it answers 200, the process exits, or the deadline passes.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("mq9 broker exited at start ({status}): {}", self.log_tail());
            }
            if readyz_ok(self.http_addr).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "mq9 broker not ready within {START_DEADLINE:?}: {}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The broker's resident set size in bytes (`VmRSS` in `/proc/<pid>/status`).
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .with_context(|| format!("no VmRSS line in {path}"))
    }

    /// kill -9 (a failover figure).
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL if the broker has not exited within the deadline.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill(2) on a child we own; no memory is touched.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_DEADLINE;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                self.child.wait()?;
                bail!("mq9 broker did not stop within {STOP_DEADLINE:?}; killed");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The last lines of the broker's log, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n");
        format!("log {}:\n{tail}", self.log.display())
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A loopback address nobody listens on right now (the kernel picks the port).
fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?)
}

/// One `GET /readyz` over HTTP/1.0; true on a 200 answer.
async fn readyz_ok(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        std::io::Result::Ok(
            answer.starts_with(b"HTTP/1.0 200") || answer.starts_with(b"HTTP/1.1 200"),
        )
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Ok(true))
    )
}
