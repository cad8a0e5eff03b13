//! Test harness: a real nats-server (random loopback port, temp dir) and the real `mq9 broker`
//! binary as a child process on a temp data dir, plus an async-nats client and helpers that
//! speak the wire protocol as any agent would. No mocks.
//!
//! `mod.rs` starts and restarts the pair; [`broker`] runs the broker process; [`requests`] are
//! the agent's requests; [`replies`] reads their answers; [`wait`] waits on conditions, never
//! on the clock alone.
// Every test binary compiles the whole harness and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod apiserver;
pub mod broker;
pub mod cluster;
pub mod data_plane;
pub mod powercut;
pub mod replies;
pub mod requests;
pub mod wait;

pub use broker::{free_port, Broker};
pub use replies::*;
pub use requests::*;
pub use wait::*;

use std::path::Path;
use std::time::{Duration, Instant};

use mq9::natsd::{NatsServer, NatsServerOptions};
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
        self.broker = self.broker.again(self.nats.url(), self.data_dir.path());
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
}
