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
    /// Most bytes one mailbox stores (0 = unlimited): every message counts its payload,
    /// header names and values, key and tags. SEND beyond it answers `full`.
    #[arg(long, env = "MQ9_MAX_BYTES_PER_MAILBOX", default_value_t = 256 * 1024 * 1024)]
    pub max_bytes_per_mailbox: u64,
    /// Most agent registry entries (0 = unlimited). A new REGISTER beyond it answers `full`.
    #[arg(long, env = "MQ9_MAX_AGENTS", default_value_t = 250_000)]
    pub max_agents: u64,
    /// Most registry entries one identity may own (0 = unlimited; only with
    /// `--trust-request-info`, where callers have identities). Beyond it: `full`.
    #[arg(long, env = "MQ9_MAX_AGENTS_PER_IDENTITY", default_value_t = 32)]
    pub max_agents_per_identity: u64,
    /// Largest agent card (REGISTER body) in bytes (0 = unlimited). Larger: `too_large`.
    #[arg(long, env = "MQ9_MAX_CARD_BYTES", default_value_t = 32 * 1024)]
    pub max_card_bytes: u64,
    /// Most delayed (not yet visible) messages one mailbox holds (0 = unlimited). A delayed
    /// SEND beyond it answers `full`.
    #[arg(long, env = "MQ9_MAX_DELAYED_PER_MAILBOX", default_value_t = 1_000)]
    pub max_delayed_per_mailbox: u64,
    /// Longest `mq9-delay` in seconds (0 = unlimited); a longer one is a `bad_request`.
    #[arg(long, env = "MQ9_MAX_DELAY", default_value_t = 7 * 86_400)]
    pub max_delay: u64,
    /// Most consumer groups one mailbox holds (0 = unlimited). A FETCH naming a new group
    /// beyond it answers `full`.
    #[arg(long, env = "MQ9_MAX_GROUPS_PER_MAILBOX", default_value_t = 1_000)]
    pub max_groups_per_mailbox: u64,
    /// Most long-poll FETCHes waiting on one mailbox (0 = unlimited). One more answers `full`.
    #[arg(long, env = "MQ9_MAX_WAITERS_PER_MAILBOX", default_value_t = 1_024)]
    pub max_waiters_per_mailbox: u64,
    /// Most long-poll FETCHes waiting in the whole broker (0 = unlimited). One more answers
    /// `full`.
    #[arg(long, env = "MQ9_MAX_WAITERS", default_value_t = 1_000_000)]
    pub max_waiters: u64,
    /// Most stored records one request examines (0 = unlimited): a QUERY, FETCH or LIST that
    /// reaches it stops there and answers with a cursor to continue from, so that no request
    /// stalls the engine for every other tenant.
    #[arg(long, env = "MQ9_MAX_SCAN", default_value_t = 10_000)]
    pub max_scan: u64,
}

impl Limits {
    /// Whether one more of something capped by `limit` (0 = unlimited) fits when `used` are
    /// taken.
    pub fn allows_one_more(limit: u64, used: u64) -> bool {
        limit == 0 || used < limit
    }

    /// The scan bound as a count (0 = unlimited becomes `usize::MAX`).
    pub fn scan_budget(&self) -> usize {
        match self.max_scan {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        }
    }
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
    #[command(flatten)]
    pub security: SecurityOptions,
    /// Serve mailboxes only in the pod of this name (`$POD_NAME`); elsewhere stand by. The
    /// operator sets it for Brokers with several replicas: nats-server forms a cluster across
    /// the pods, one RocksDB (pod 0's) holds the mailboxes, the other brokers wait.
    #[arg(long, env = "MQ9_ACTIVE_POD")]
    pub active_pod: Option<String>,
    #[command(flatten)]
    pub replication: ReplicationOptions,
}

/// Whether mailboxes live on this broker alone or in shards replicated on JetStream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplicationMode {
    /// One broker, one RocksDB, no JetStream in the write path (the default).
    None,
    /// Shards replicated on JetStream streams, led by one broker each (replication.md).
    Jetstream,
}

/// The replicated data plane's settings (`--replication jetstream`).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ReplicationOptions {
    #[arg(long, env = "MQ9_REPLICATION", value_enum, default_value_t = ReplicationMode::None)]
    pub replication: ReplicationMode,
    /// How many shards the mailboxes are spread over; fixed once data exists (a data directory
    /// made with another count is refused).
    #[arg(long, env = "MQ9_SHARDS", default_value_t = crate::replication::shard::DEFAULT_SHARDS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::replication::shard::MAX_SHARDS)))]
    pub shards: u32,
    /// The cluster's name (letters, digits, `-` and `_`): it names the shards' streams, the
    /// lease bucket and the forwarding subjects, so brokers of one cluster share it.
    #[arg(long, env = "MQ9_CLUSTER", default_value = "mq9", value_parser = parse_cluster_name)]
    pub cluster: String,
    /// This broker's name among the cluster's (default: `$POD_NAME`, else host name and pid).
    #[arg(long, env = "MQ9_NODE")]
    pub node: Option<String>,
    /// How many brokers the cluster has, until they have announced themselves: each leads at
    /// most its share of the shards (rounded up) of the brokers alive.
    #[arg(long, env = "MQ9_PEERS", default_value_t = 3)]
    pub peers: u32,
    /// Copies of each shard's log and of the leases (JetStream replicas: 1, 3 or 5).
    #[arg(long, env = "MQ9_LOG_REPLICAS", default_value_t = 3)]
    pub log_replicas: usize,
    /// Seconds a shard leader's lease lasts without renewal: a leader that dies is replaced
    /// within about this time.
    #[arg(long, env = "MQ9_LEASE_SECS", default_value_t = 3)]
    pub lease_secs: u64,
    /// Seconds a request to a shard without a leader (a takeover under way) waits for one
    /// before it is answered `unavailable`: longer than a takeover after a nats-server's loss
    /// (JetStream's own election takes 4-9 s), shorter than clients' usual timeouts.
    #[arg(long, env = "MQ9_LEADER_WAIT_SECS", default_value_t = 15)]
    pub leader_wait_secs: u64,
    #[command(flatten)]
    pub snapshots: SnapshotOptions,
}

/// When a shard's leader snapshots the shard (replication.md, "Snapshots"; README "High
/// availability"). The defaults bound the replay a broker does after restoring a snapshot to
/// about 10,000 log entries (seconds of work) at one snapshot a minute per shard at most.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct SnapshotOptions {
    /// A shard's leader takes a snapshot once the shard's log holds this many entries past the
    /// newest snapshot.
    #[arg(long = "snapshot-every", env = "MQ9_SNAPSHOT_EVERY", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub every: u64,
    /// Seconds between a leader's looks at whether a snapshot is due: at most one snapshot
    /// per shard per interval.
    #[arg(long = "snapshot-interval-secs", env = "MQ9_SNAPSHOT_INTERVAL_SECS",
          default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval_secs: u64,
    /// Snapshots kept per shard; the log keeps every entry after the oldest one kept, so an
    /// unreadable newest snapshot leaves older ones usable.
    #[arg(long = "snapshot-keep", env = "MQ9_SNAPSHOT_KEEP", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=100))]
    pub keep: u64,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            every: 10_000,
            interval_secs: 60,
            keep: 2,
        }
    }
}

impl Default for ReplicationOptions {
    fn default() -> Self {
        ReplicationOptions {
            replication: ReplicationMode::None,
            shards: crate::replication::shard::DEFAULT_SHARDS,
            cluster: "mq9".into(),
            node: None,
            peers: 3,
            log_replicas: 3,
            lease_secs: 3,
            leader_wait_secs: 15,
            snapshots: SnapshotOptions::default(),
        }
    }
}

/// A cluster name can name JetStream streams and NATS subject tokens.
fn parse_cluster_name(name: &str) -> Result<String, String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    match !name.is_empty() && name.len() <= 64 && name.chars().all(valid) {
        true => Ok(name.to_owned()),
        false => Err(format!(
            "{name:?}: a cluster name is 1 to 64 letters, digits, '-' or '_'"
        )),
    }
}

/// Who the broker answers and whom it believes (security.md §2, §4).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct SecurityOptions {
    /// Subject prefixes the broker answers to (comma-separated); a request whose reply subject
    /// starts with none of them is dropped unexecuted and counted
    /// (`mq9_refused_replies_total`). Defaults: `_INBOX.` (every NATS client's inbox prefix)
    /// and `_R_.` (replies of requests that cross an account import). `$…` prefixes are refused.
    #[arg(
        long = "reply-prefix",
        env = "MQ9_REPLY_PREFIXES",
        value_delimiter = ',',
        default_values_t = crate::broker::DEFAULT_REPLY_PREFIXES.map(str::to_owned),
        value_parser = crate::broker::parse_reply_prefix,
    )]
    pub reply_prefixes: Vec<String>,
    /// Take the caller's identity from the `Nats-Request-Info` header that nats-server writes
    /// on requests crossing an account import (the operator sets this with JWT auth, where
    /// every agent lives in a tenant account). Without it (no auth, `mq9 dev`) the header is
    /// ignored — any client could write one — and callers are anonymous.
    #[arg(long, env = "MQ9_TRUST_REQUEST_INFO")]
    pub trust_request_info: bool,
}

impl Default for SecurityOptions {
    fn default() -> Self {
        SecurityOptions {
            reply_prefixes: crate::broker::DEFAULT_REPLY_PREFIXES
                .map(str::to_owned)
                .to_vec(),
            trust_request_info: false,
        }
    }
}
