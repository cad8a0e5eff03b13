//! `mq9 dev --replicas N`: a replicated mq9 on loopback — N clustered nats-servers with
//! JetStream (client ports `--port` … `--port`+N-1) and N `mq9 broker` processes in replicated
//! mode, one per server. Each is its own child process, so any one can be killed (`kill -9
//! <pid>`) to watch the others take its shards over; their pids are printed. Ctrl-C stops all.
//! Data lives under `--data-dir` (`nats/n<i>`, `broker-<i>`); the brokers' HTTP endpoints are
//! on `--http-addr`'s port + i.

use std::process::{Child, Command, Stdio};

use anyhow::Context;

use super::DevArgs;
use crate::natsd;

/// The shard count of the dev cluster.
const SHARDS: u32 = 16;

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let nats_dir = args.data_dir.join("nats");
    let binary = args.nats_server.as_deref();
    let servers = natsd::start_cluster(&nats_dir, args.replicas, Some(args.port), binary, false)
        .await
        .context("cannot start the nats-server cluster")?;
    let executable = std::env::current_exe().context("cannot find the mq9 executable")?;
    let mut brokers: Vec<Child> = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let mut http = args.http_addr;
        http.set_port(args.http_addr.port() + i as u16);
        let broker = Command::new(&executable)
            .arg("broker")
            .args(["--nats-url", server.url()])
            .arg("--data-dir")
            .arg(args.data_dir.join(format!("broker-{i}")))
            .args(["--http-addr", &http.to_string()])
            .args(["--replication", "jetstream", "--cluster", "dev"])
            .args(["--shards", &SHARDS.to_string()])
            .args(["--node", &format!("n{i}")])
            .args(["--peers", &args.replicas.to_string()])
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start a broker")?;
        println!(
            "n{i}: nats-server pid {} at {}, broker pid {} (http {http})",
            server.pid(),
            server.url(),
            broker.id()
        );
        brokers.push(broker);
    }
    println!(
        "mq9 is running replicated on {} nodes (data in {}); Ctrl-C stops it.",
        args.replicas,
        args.data_dir.display()
    );
    crate::shutdown_signal().await;
    for broker in &mut brokers {
        // SAFETY: kill(2) with a pid we own; no memory is touched.
        unsafe { libc::kill(broker.id() as libc::pid_t, libc::SIGTERM) };
    }
    for mut broker in brokers {
        let _ = tokio::task::spawn_blocking(move || broker.wait()).await;
    }
    tokio::task::spawn_blocking(move || servers.into_iter().try_for_each(|s| s.stop())).await??;
    Ok(())
}
