//! Broker configuration: every setting is a command-line flag with an `MQ9_*` environment
//! variable, so the same binary is configured the same way by hand, in `mq9 dev` and by the
//! operator's StatefulSet.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Per-broker caps (protocol.md §5). 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct Limits {
    /// Most mailboxes the broker holds (0 = unlimited). CREATE beyond it answers `full`.
    #[arg(long, env = "MQ9_MAX_MAILBOXES", default_value_t = 0)]
    pub max_mailboxes: u64,
    /// Most messages one mailbox holds (0 = unlimited). SEND beyond it answers `full`.
    #[arg(long, env = "MQ9_MAX_MESSAGES_PER_MAILBOX", default_value_t = 100_000)]
    pub max_messages_per_mailbox: u64,
    /// Most payload bytes one mailbox holds (0 = unlimited). SEND beyond it answers `full`.
    #[arg(long, env = "MQ9_MAX_BYTES_PER_MAILBOX", default_value_t = 256 * 1024 * 1024)]
    pub max_bytes_per_mailbox: u64,
}

/// When a SEND's reply may go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// After the write-ahead log is synced to disk (concurrent SENDs share one sync):
    /// acknowledged messages survive a machine crash.
    Always,
    /// After the write-ahead log is written but not synced: acknowledged messages survive a
    /// crash of the broker process, not of the machine. Faster.
    None,
}

/// The `Nats-Msg-Id` window of JetStream streams (2 minutes), so that a client retrying with
/// JetStream's habits is covered.
pub const DEFAULT_DEDUP_WINDOW_SECS: u64 = 120;

/// How the broker reaches NATS.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsOptions {
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "MQ9_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// A NATS credentials file (JWT + nkey seed).
    #[arg(long, env = "MQ9_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// User name for user/password authentication.
    #[arg(long, env = "MQ9_NATS_USER", requires = "nats_password")]
    pub nats_user: Option<String>,
    /// Password for user/password authentication.
    #[arg(long, env = "MQ9_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// Token authentication.
    #[arg(long, env = "MQ9_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
}

/// `mq9 broker`.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerConfig {
    #[command(flatten)]
    pub nats: NatsOptions,
    /// Where RocksDB keeps the mailboxes.
    #[arg(long, env = "MQ9_DATA_DIR", default_value = "./mq9-data")]
    pub data_dir: PathBuf,
    /// Address of the HTTP endpoints /metrics, /healthz and /readyz.
    #[arg(long, env = "MQ9_HTTP_ADDR", default_value = "127.0.0.1:9090")]
    pub http_addr: SocketAddr,
    /// When a SEND is acknowledged: `always` = after the WAL sync, `none` = after the WAL write.
    #[arg(long, env = "MQ9_SYNC", value_enum, default_value_t = SyncMode::Always)]
    pub sync: SyncMode,
    /// TTL in seconds of mailboxes created without one (0 = never expire).
    #[arg(long, env = "MQ9_DEFAULT_MAILBOX_TTL", default_value_t = 86_400)]
    pub default_mailbox_ttl: u64,
    /// Seconds a SEND's `Nats-Msg-Id` is remembered per mailbox: a repeated SEND within them
    /// stores nothing and answers the original msg_id (0 = no deduplication).
    #[arg(long, env = "MQ9_DEDUP_WINDOW", default_value_t = DEFAULT_DEDUP_WINDOW_SECS)]
    pub dedup_window: u64,
    #[command(flatten)]
    pub limits: Limits,
    /// Serve mailboxes only in the pod of this name (`$POD_NAME`); elsewhere stand by. The
    /// operator sets it for Brokers with several replicas: nats-server forms a cluster across
    /// the pods, one RocksDB (pod 0's) holds the mailboxes, the other brokers wait.
    #[arg(long, env = "MQ9_ACTIVE_POD")]
    pub active_pod: Option<String>,
}
