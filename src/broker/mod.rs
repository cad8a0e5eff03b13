//! `mq9 broker`: the mq9 protocol served over NATS.
//!
//! The broker is a NATS *client*. It subscribes to `$mq9.AI.>` in the queue group `mq9`, turns
//! each message into a [`Job`] (parsing and validating on the async side, so malformed requests
//! are answered without touching the engine), and hands jobs to the [`Engine`] thread. Replies
//! come back through a channel and are published by one task. Live subscribers of INBOX and
//! BROADCAST subjects receive those publishes from nats-server directly.

mod dispatch;
mod error;
mod forward;
mod health;
mod metrics;
mod replica_check;
mod replicated;
mod replies;
mod router;
mod shard_metrics;
mod shards;
mod shards_report;
mod slots;

pub use error::BrokerError;
pub use health::Health;
use health::Standby;
pub use metrics::Metrics;
pub use replies::{parse_prefix as parse_reply_prefix, ReplyPolicy, DEFAULT_REPLY_PREFIXES};

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::config::{BrokerConfig, NatsOptions, ReplicationMode};
use crate::engine::{Engine, EngineConfig, Job, Outgoing, Sink, Totals};
use crate::http::HttpServer;
use crate::protocol::subject;
use crate::store::Store;
use dispatch::Dispatcher;

/// The queue group every broker joins: each request is handled by one broker.
pub const QUEUE_GROUP: &str = "mq9";

/// Jobs waiting for the engine; beyond this the subscription stops reading (back-pressure).
const JOB_QUEUE: usize = 16_384;

/// Serves only the HTTP endpoints until `shutdown`: see `BrokerConfig::active_pod`.
async fn stand_by(
    config: &BrokerConfig,
    active: &str,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), BrokerError> {
    tracing::info!(
        active_pod = active,
        "standing by: the active pod's broker serves mailboxes"
    );
    let http = HttpServer::start(config.http_addr, Arc::new(Standby)).await?;
    shutdown.await;
    Ok(http.stop().await?)
}

/// Publishes replies and records outcomes: the engine's view of the outside world.
struct BrokerSink {
    out: mpsc::UnboundedSender<Outgoing>,
    health: Arc<Health>,
}

impl Sink for BrokerSink {
    fn reply(&self, outgoing: Outgoing) {
        // Fails only when the publisher task is gone, i.e. during shutdown.
        let _ = self.out.send(outgoing);
    }

    /// Also the one log line per answered request (at `debug`): the engine's outcomes arrive
    /// here from its thread, outside the dispatcher's `request` span.
    fn finished(&self, kind: &'static str, outcome: &'static str, latency: Duration) {
        self.health.metrics.command(kind, outcome, latency);
        tracing::debug!(command = kind, outcome, ?latency, "request finished");
    }

    fn totals(&self, totals: &Totals) {
        self.health.metrics.totals(totals);
    }

    fn failed(&self, reason: &str) {
        self.health.fail(reason);
    }
}

/// Runs the broker until `shutdown` completes, then stops taking requests, lets the engine
/// answer what it holds, and flushes the replies.
pub async fn run(
    config: BrokerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), BrokerError> {
    if let Some(active) = config.active_pod.as_deref() {
        if std::env::var("POD_NAME").ok().as_deref() != Some(active) {
            return stand_by(&config, active, shutdown).await;
        }
    }
    let health = Arc::new(Health::default());
    let http = HttpServer::start(config.http_addr, health.clone()).await?;

    std::fs::create_dir_all(&config.data_dir).map_err(|source| BrokerError::DataDir {
        dir: config.data_dir.clone(),
        source,
    })?;
    // A single node opens its store before it connects (a broken store fails fast); a
    // replicated broker opens one per shard as it follows them.
    let store = match config.replication.replication {
        ReplicationMode::None => {
            let data_dir = config.data_dir.clone();
            let opened = tokio::task::spawn_blocking(move || Store::open(&data_dir)).await?;
            Some(opened.map_err(|source| BrokerError::OpenStore {
                dir: config.data_dir.clone(),
                source,
            })?)
        }
        ReplicationMode::Jetstream => None,
    };

    tokio::pin!(shutdown);
    let client = tokio::select! {
        client = connect(&config.nats) => client,
        _ = &mut shutdown => return Ok(()),
    };
    let _ = health.client.set(client.clone());
    let engine_config = EngineConfig {
        limits: config.limits,
        default_mailbox_ttl: config.default_mailbox_ttl,
        dedup_window_secs: config.dedup_window,
        sync: config.sync,
        max_payload: client.server_info().max_payload,
        shard: None,
    };
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Outgoing>();
    let publisher = spawn_publisher(client.clone(), out_rx);
    let rejects = BrokerSink {
        out: out_tx.clone(),
        health: health.clone(),
    };
    let served = match config.replication.replication {
        ReplicationMode::None => {
            let store = store.expect("opened for a single node");
            let sink = BrokerSink {
                out: out_tx,
                health: health.clone(),
            };
            serve_single(
                &config,
                &client,
                store,
                engine_config,
                sink,
                rejects,
                shutdown,
            )
            .await
        }
        ReplicationMode::Jetstream => {
            let parts = replicated::Parts {
                client: client.clone(),
                health: health.clone(),
                engine: engine_config,
                out: out_tx,
                rejects,
            };
            replicated::serve(&config, parts, shutdown).await
        }
    };
    publisher.await?;
    served?;
    // Bounded: with nats-server gone, a flush would wait for a reconnect that never comes.
    match tokio::time::timeout(Duration::from_secs(2), client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "flushing the last replies failed"),
        Err(_) => tracing::warn!("NATS unreachable; the last replies may not have been delivered"),
    }
    http.stop().await?;
    Ok(())
}

/// Publishes every reply the engines and the dispatcher hand over, until they are all gone.
fn spawn_publisher(
    client: async_nats::Client,
    mut out: mpsc::UnboundedReceiver<Outgoing>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(outgoing) = out.recv().await {
            if let Err(e) = client.publish(outgoing.subject, outgoing.body).await {
                tracing::warn!(error = %e, "publishing a reply failed");
            }
        }
    })
}

/// The single-node broker: one engine thread over one store, until `shutdown`.
async fn serve_single(
    config: &BrokerConfig,
    client: &async_nats::Client,
    store: Store,
    engine_config: EngineConfig,
    sink: BrokerSink,
    rejects: BrokerSink,
    shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<(), BrokerError> {
    let health = sink.health.clone();
    let engine = tokio::task::spawn_blocking(move || Engine::open(store, engine_config))
        .await?
        .map_err(BrokerError::LoadStore)?;
    let (jobs_tx, jobs_rx) = flume::bounded::<Job>(JOB_QUEUE);
    let engine_health = health.clone();
    let engine_thread = std::thread::Builder::new()
        .name("mq9-engine".into())
        .spawn(move || {
            engine_health.engine_running.store(true, Ordering::Release);
            // The engine catches its own panics and keeps answering `internal`; this is the
            // last line, should a panic escape it: the thread ends, health says why, and
            // `dispatch` answers the requests that can no longer be queued.
            let run = std::panic::AssertUnwindSafe(|| engine.run(jobs_rx, &sink));
            if std::panic::catch_unwind(run).is_err() {
                engine_health.fail("the mailbox engine thread panicked");
            }
            engine_health.engine_running.store(false, Ordering::Release);
        })
        .map_err(BrokerError::EngineThread)?;
    let dispatcher = Dispatcher {
        queue: dispatch::Queue::Engine(jobs_tx),
        rejects,
        replies: ReplyPolicy::new(&config.security.reply_prefixes),
        trust_request_info: config.security.trust_request_info,
    };
    tracing::info!(sync = ?config.sync, max_payload = client.server_info().max_payload, "mq9 broker ready");
    serve_requests(client, &dispatcher, &health, None, shutdown).await?;
    drop(dispatcher);
    tokio::task::spawn_blocking(move || engine_thread.join())
        .await?
        .map_err(|_| BrokerError::EnginePanicked)?;
    Ok(())
}

/// Takes requests from the queue group (and, for a replicated broker, the requests other
/// brokers forward to its shards) to `dispatcher` until `shutdown`; then stops taking them.
async fn serve_requests(
    client: &async_nats::Client,
    dispatcher: &Dispatcher,
    health: &Health,
    mut forwarded: Option<&mut mpsc::Receiver<(u32, async_nats::Message)>>,
    mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<(), BrokerError> {
    let agents = subscribe(client, subject::AI_WILDCARD).await?;
    let admin = subscribe(client, subject::ADMIN_WILDCARD).await?;
    // Ready once nats-server has processed the subscriptions (a PING answered after them),
    // not before: a flush only writes them out. A failed round trip means a lost connection:
    // readiness says so, and the client subscribes again when it reconnects.
    if let Err(e) = client.round_trip().await {
        tracing::warn!(error = %e, "confirming the request subscriptions failed");
    }
    health.subscribed.store(true, Ordering::Release);
    let mut requests = futures::stream::select(agents, admin);
    loop {
        let next_forwarded = async {
            match forwarded.as_mut() {
                Some(forwarded) => forwarded.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = requests.next() => match message {
                Some(message) => dispatcher.dispatch(message, None).await,
                None => break,
            },
            Some((shard, message)) = next_forwarded => {
                if let Some((message, ack)) = forward::received(message) {
                    // Taken: the forwarding broker stops waiting for a leader.
                    if let Err(e) = client.publish(ack, Bytes::new()).await {
                        tracing::warn!(error = %e, "acknowledging a forwarded request failed");
                    }
                    dispatcher.dispatch(message, Some(shard)).await;
                }
            }
            _ = &mut shutdown => break,
        }
    }
    tracing::info!("mq9 broker stopping");
    health.subscribed.store(false, Ordering::Release);
    let (mut agents, mut admin) = requests.into_inner();
    let _ = agents.unsubscribe().await;
    let _ = admin.unsubscribe().await;
    Ok(())
}

/// Connects to NATS, retrying until it succeeds (nats-server may start after the broker, as
/// in a pod). Once connected, the client reconnects by itself for ever.
async fn connect(options: &NatsOptions) -> async_nats::Client {
    let mut backoff = Duration::from_millis(100);
    loop {
        match try_connect(options).await {
            Ok(client) => {
                tracing::info!("connected to NATS");
                return client;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot connect to NATS");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn try_connect(options: &NatsOptions) -> Result<async_nats::Client, BrokerError> {
    let mut connect = match &options.nats_creds {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|source| BrokerError::Credentials {
                path: path.clone(),
                source,
            })?,
        None => async_nats::ConnectOptions::new(),
    };
    if let (Some(user), Some(password)) = (&options.nats_user, &options.nats_password) {
        connect = connect.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &options.nats_token {
        connect = connect.token(token.clone());
    }
    // `no_echo`: the broker never receives its own publications, so no reply it publishes
    // can come back to it as a command (security.md §2; see `replies`).
    let client = connect
        .name("mq9-broker")
        .no_echo()
        .max_reconnects(None)
        .subscription_capacity(JOB_QUEUE * 4)
        .event_callback(|event| async move { tracing::info!(%event, "NATS connection event") })
        .connect(options.nats_url.as_str())
        .await?;
    Ok(client)
}

/// Joins the queue group on `subject`: each request reaches one broker.
async fn subscribe(
    client: &async_nats::Client,
    subject: &'static str,
) -> Result<async_nats::Subscriber, BrokerError> {
    client
        .queue_subscribe(subject, QUEUE_GROUP.into())
        .await
        .map_err(|source| BrokerError::Subscribe { subject, source })
}
