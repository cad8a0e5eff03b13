//! A real `nats-server` as a child process: for `mq9 dev`, the tests and the benchmarks.
//!
//! The server gets a config file in its own work directory. With no port given it listens on a
//! random loopback port and reports it through a ports file, so parallel tests never collide.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How to start a nats-server.
#[derive(Debug, Clone)]
pub struct NatsServerOptions {
    /// The executable; `None` looks for `nats-server` on PATH.
    pub binary: Option<PathBuf>,
    /// Loopback port; `None` picks a free one.
    pub port: Option<u16>,
    /// Config file, ports file, logs and JetStream storage go here.
    pub work_dir: PathBuf,
    /// Extra nats-server configuration appended to the generated file.
    pub extra_config: String,
    /// Forward the server's output to ours (dev) instead of a log file (tests).
    pub inherit_output: bool,
    /// Environment variables for the server, which its configuration can reference as `$NAME`.
    pub env: Vec<(String, String)>,
}

impl NatsServerOptions {
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        NatsServerOptions {
            binary: None,
            port: None,
            work_dir: work_dir.into(),
            extra_config: String::new(),
            inherit_output: false,
            env: Vec::new(),
        }
    }
}

/// A running nats-server, killed when dropped.
pub struct NatsServer {
    child: Child,
    url: String,
    monitoring: Option<SocketAddr>,
    work_dir: PathBuf,
    /// What it was started with, for [`NatsServer::restart`].
    options: NatsServerOptions,
}

/// Finds the nats-server executable, or says how to install it.
pub fn find_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        bail!(
            "nats-server not found at {}; run scripts/setup.sh to install it",
            path.display()
        );
    }
    if let Some(path) = std::env::var_os("MQ9_NATS_SERVER").map(PathBuf::from) {
        return find_binary(Some(&path));
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .context("nats-server is not on PATH; run scripts/setup.sh to install it (or pass --nats-server PATH)")
}

impl NatsServer {
    /// Starts the server and waits (up to 10 s) until it accepts clients.
    pub fn start(options: &NatsServerOptions) -> anyhow::Result<NatsServer> {
        let binary = find_binary(options.binary.as_deref())?;
        std::fs::create_dir_all(&options.work_dir)
            .with_context(|| format!("cannot create {}", options.work_dir.display()))?;
        let work_dir = options.work_dir.canonicalize()?;
        let port = options.port.map_or("-1".to_owned(), |p| p.to_string());
        let config = format!(
            "listen: \"127.0.0.1:{port}\"\nports_file_dir: {dir:?}\n{extra}\n",
            dir = work_dir.display().to_string(),
            extra = options.extra_config,
        );
        let config_path = work_dir.join("nats-server.conf");
        std::fs::write(&config_path, config)?;
        let (stdout, stderr) = if options.inherit_output {
            (Stdio::inherit(), Stdio::inherit())
        } else {
            let log = std::fs::File::create(work_dir.join("nats-server.log"))?;
            (Stdio::from(log.try_clone()?), Stdio::from(log))
        };
        // Its own process group: a Ctrl-C in the terminal reaches us, and we stop the server
        // after the broker has flushed its last replies.
        let mut child = Command::new(&binary)
            .process_group(0)
            .arg("-c")
            .arg(&config_path)
            .envs(options.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let ports_file = work_dir.join(format!("nats-server_{}.ports", child.id()));
        let deadline = Instant::now() + Duration::from_secs(10);
        let ports = loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "nats-server exited at start ({status}); see {}",
                    work_dir.join("nats-server.log").display()
                );
            }
            if let Some(ports) = read_ports(&ports_file) {
                break ports;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("nats-server did not start listening within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(NatsServer {
            child,
            url: ports.client_url,
            monitoring: ports.monitoring,
            work_dir,
            options: options.clone(),
        })
    }

    /// Starts the server again after it stopped (or kills it first): same configuration, same
    /// work directory (a JetStream server keeps its store and rejoins its cluster), same client
    /// port, so its clients reconnect by themselves.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child.kill()?;
            self.child.wait()?;
        }
        let port = self.url.rsplit(':').next().and_then(|p| p.parse().ok());
        let mut options = self.options.clone();
        options.port = Some(port.context("a client URL with a port")?);
        let deadline = Instant::now() + Duration::from_secs(10);
        // The port is free once the kernel has let the dead server's socket go.
        *self = loop {
            match NatsServer::start(&options) {
                Ok(server) => break server,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => return Err(e),
            }
        };
        Ok(())
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The monitoring endpoint (`/connz`, `/varz`, ...), when `extra_config` enables it:
    /// `http: "127.0.0.1:-1"` picks a free loopback port. Tests use `/connz` to see the
    /// server's side of the broker's connection (its `cid` changes when it reconnects).
    pub fn monitoring_addr(&self) -> Option<SocketAddr> {
        self.monitoring
    }

    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the server to stop (SIGTERM) and waits up to 5 s before killing it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        // SAFETY: kill(2) with a pid we own; no memory is touched.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What nats-server reports in its ports file once every listener is up.
struct Ports {
    client_url: String,
    monitoring: Option<SocketAddr>,
}

fn read_ports(ports_file: &Path) -> Option<Ports> {
    let text = std::fs::read_to_string(ports_file).ok()?;
    let ports: serde_json::Value = serde_json::from_str(&text).ok()?;
    let monitoring = ports["monitoring"]
        .get(0)
        .and_then(|url| url.as_str()?.strip_prefix("http://")?.parse().ok());
    Some(Ports {
        client_url: ports["nats"].get(0)?.as_str()?.to_owned(),
        monitoring,
    })
}

/// The options of `count` nats-servers clustered on loopback with JetStream (for replicated
/// brokers: `mq9 dev --replicas`, tests, benchmarks): `n<i>` in `base/n<i>`, client port
/// `first_port + i` (or free ports), routes on free loopback ports, each server routing to all.
/// With `sync_always`, JetStream syncs every write to disk (`sync_interval: always`).
pub fn cluster_options(
    base: &Path,
    count: usize,
    first_port: Option<u16>,
    sync_always: bool,
) -> anyhow::Result<Vec<NatsServerOptions>> {
    let route_ports = (0..count)
        .map(|_| free_loopback_port())
        .collect::<anyhow::Result<Vec<u16>>>()?;
    let routes: Vec<String> = route_ports
        .iter()
        .map(|port| format!("\"nats-route://127.0.0.1:{port}\""))
        .collect();
    let options = route_ports.iter().enumerate().map(|(i, route_port)| {
        let mut options = NatsServerOptions::new(base.join(format!("n{i}")));
        options.port = first_port.map(|port| port + i as u16);
        let store = options.work_dir.join("jetstream");
        let sync = if sync_always {
            ", sync_interval: always"
        } else {
            ""
        };
        options.extra_config = format!(
            "server_name: n{i}\njetstream {{ store_dir: {store:?}{sync} }}\n\
             cluster {{ name: mq9, listen: \"127.0.0.1:{route_port}\", routes: [{routes}] }}\n",
            store = store.display().to_string(),
            routes = routes.join(", "),
        );
        options
    });
    Ok(options.collect())
}

/// A loopback port free now (the OS's pick), for a listener configured before it starts.
fn free_loopback_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Starts `count` clustered servers ([`cluster_options`]) and waits until their JetStream
/// answers (the cluster elected its meta leader).
pub async fn start_cluster(
    base: &Path,
    count: usize,
    first_port: Option<u16>,
    binary: Option<&Path>,
    sync_always: bool,
) -> anyhow::Result<Vec<NatsServer>> {
    let mut options = cluster_options(base, count, first_port, sync_always)?;
    for options in &mut options {
        options.binary = binary.map(Path::to_path_buf);
    }
    let servers = options
        .iter()
        .map(NatsServer::start)
        .collect::<anyhow::Result<Vec<NatsServer>>>()?;
    wait_for_jetstream(servers[0].url(), Duration::from_secs(30)).await?;
    Ok(servers)
}

/// Waits (up to `within`) until JetStream answers at `url`: the cluster elected its meta leader.
async fn wait_for_jetstream(url: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let answered = async {
            let client = async_nats::connect(url).await?;
            let js = async_nats::jetstream::new(client);
            js.query_account().await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(2), answered).await {
            Ok(Ok(())) => return Ok(()),
            _ if Instant::now() > deadline => {
                bail!("JetStream at {url} did not answer within {within:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
