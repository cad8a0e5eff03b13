//! The `mq9 broker` child process of a test: started on a free HTTP port, its output in a log
//! file next to its data dir, stopped cleanly (SIGTERM) or crashed (SIGKILL) on demand.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The broker child process.
pub struct Broker {
    child: Child,
    pub http_addr: SocketAddr,
    pub log: PathBuf,
    args: Vec<String>,
    /// Extra environment of the broker process (e.g. an `LD_PRELOAD` shim), kept on restarts.
    env: Vec<(String, String)>,
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

    /// A new broker with this one's flags and environment, once this one has stopped.
    pub fn again(&self, nats_url: &str, data_dir: &Path) -> Broker {
        Broker::spawn_with_env(nats_url, data_dir, &self.args, &self.env)
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

    /// Waits until `/readyz` answers 200, as the kubelet's readiness probe does before a pod
    /// counts as ready.
    pub async fn wait_ready(&self) {
        let what = format!("the broker answers /readyz; log: {}", self.log.display());
        super::wait_until(&what, || async {
            super::try_http_get(self.http_addr, "/readyz")
                .await
                .is_some_and(|(status, _)| status == 200)
        })
        .await;
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
