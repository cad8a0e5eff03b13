//! `mq9 dev`: a working mq9 in one command — nats-server as a child process plus the broker,
//! with data under a local folder. Ctrl-C stops both. `--replicas 3` runs a replicated
//! cluster instead ([`cluster`]).

mod cluster;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::config::{
    BrokerConfig, Limits, NatsOptions, ReplicationOptions, SecurityOptions, SyncMode,
};
use crate::natsd::{NatsServer, NatsServerOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// NATS client port on 127.0.0.1.
    #[arg(long, default_value_t = 4222)]
    pub port: u16,
    /// Where mailboxes (and nats-server's files) are kept.
    #[arg(long, default_value = "./mq9-data")]
    pub data_dir: PathBuf,
    /// The nats-server executable (default: from PATH).
    #[arg(long, env = "MQ9_NATS_SERVER")]
    pub nats_server: Option<PathBuf>,
    /// Address of the broker's /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub http_addr: SocketAddr,
    #[command(flatten)]
    pub limits: Limits,
    /// 3 or 5: a replicated cluster on loopback (replication.md) — that many clustered
    /// nats-servers (client ports `--port`, `--port`+1, …) and as many `mq9 broker` processes,
    /// each a child process that can be killed on its own; their pids are printed.
    #[arg(long, default_value_t = 1, value_parser = parse_replicas)]
    pub replicas: usize,
}

/// 1, 3 or 5: a majority of the nats-servers must survive the loss of any one.
fn parse_replicas(text: &str) -> Result<usize, String> {
    match text {
        "1" | "3" | "5" => Ok(text.parse().expect("a listed number")),
        _ => Err(format!("{text:?}: replicas is 1, 3 or 5")),
    }
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    if args.replicas > 1 {
        return cluster::run(args).await;
    }
    let mut nats_options = NatsServerOptions::new(args.data_dir.join("nats"));
    nats_options.binary = args.nats_server.clone();
    nats_options.port = Some(args.port);
    nats_options.inherit_output = true;
    let server = tokio::task::spawn_blocking(move || NatsServer::start(&nats_options))
        .await?
        .context("cannot start nats-server")?;
    let url = server.url().to_owned();
    let config = BrokerConfig {
        nats: NatsOptions {
            nats_url: url.clone(),
            nats_creds: None,
            nats_user: None,
            nats_password: None,
            nats_token: None,
        },
        data_dir: args.data_dir.join("broker"),
        http_addr: args.http_addr,
        sync: SyncMode::Always,
        default_mailbox_ttl: 86_400,
        dedup_window: crate::config::DEFAULT_DEDUP_WINDOW_SECS,
        limits: args.limits,
        security: SecurityOptions::default(),
        active_pod: None,
        replication: ReplicationOptions::default(),
    };
    println!(
        "mq9 is running at {url} (data in {}); Ctrl-C stops it.",
        args.data_dir.display()
    );
    println!(
        "Try it with any NATS client: request $mq9.AI.MAILBOX.CREATE with {{\"ttl\":3600}}, then publish to $mq9.AI.INBOX.<mail_id>.normal"
    );
    let result = crate::broker::run(config, crate::shutdown_signal()).await;
    tokio::task::spawn_blocking(move || server.stop()).await??;
    Ok(result?)
}
