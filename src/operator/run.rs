//! `mq9 operator`: the controllers (Broker, Mailbox, Broadcast, and the pods with an `auto`
//! mailbox) behind leader election, the pod-injection webhook on every replica, and
//! `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client, Config};

use super::context::{Context, Settings};
use super::leader::LeaderElection;
use super::metrics::OperatorMetrics;
use super::triggers::Stores;

#[derive(Debug, Clone, clap::Args)]
pub struct OperatorArgs {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "MQ9_OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Namespace of the leader-election Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "mq9-system")]
    pub namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "mq9-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease (default: the pod name, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a leader may go without renewing before another replica takes over.
    #[arg(long, default_value_t = 15)]
    pub lease_duration: u64,
    /// Seconds between checks of a Ready Mailbox against its broker (drift repair).
    #[arg(long, default_value_t = 120)]
    pub resync_interval: u64,
    /// Reach every Broker's NATS at this URL instead of its in-cluster Service: for running the
    /// operator outside the cluster during development (e.g. with `kubectl port-forward`).
    #[arg(long, env = "MQ9_NATS_URL_OVERRIDE")]
    pub nats_url_override: Option<String>,
    /// Serve the pod-injection webhook (HTTPS) here; without it there is no injection.
    #[arg(long, env = "MQ9_WEBHOOK_ADDR")]
    pub webhook_addr: Option<SocketAddr>,
    /// The webhook's Service in --namespace: its certificate is for `<service>.<namespace>.svc`.
    #[arg(long, default_value = "mq9-operator-webhook")]
    pub webhook_service: String,
    /// More DNS names for the webhook's certificate (e.g. `localhost` in development).
    #[arg(long)]
    pub webhook_dns_name: Vec<String>,
    /// The MutatingWebhookConfiguration whose caBundle the operator keeps current.
    #[arg(long, default_value = "mq9-operator")]
    pub webhook_configuration: String,
    /// The Secret in --namespace that holds the webhook's certificate.
    #[arg(long, default_value = "mq9-operator-webhook-tls")]
    pub webhook_cert_secret: String,
    /// Seconds an `auto` Mailbox waits for the pod it was made for; a Mailbox whose pod never
    /// came to exist (refused after the webhook ran) is deleted after that.
    #[arg(long, default_value_t = 300)]
    pub auto_mailbox_grace: u64,
    /// The mq9 image of Brokers whose spec names none (default: this operator's own image,
    /// `ghcr.io/mq9/mq9:<its version>`, so upgrading the operator upgrades those Brokers).
    #[arg(long, env = "MQ9_BROKER_IMAGE")]
    pub broker_image: Option<String>,
    /// The nats-server image of Brokers whose spec names none (default: the version mq9 is
    /// tested with, `nats:2.15.1-alpine`).
    #[arg(long, env = "MQ9_NATS_IMAGE")]
    pub nats_image: Option<String>,
    /// Kubernetes API server URL (default: in-cluster config or KUBECONFIG).
    #[arg(long, env = "MQ9_KUBE_API")]
    pub api_server: Option<String>,
}

struct OperatorProbe {
    metrics: Arc<OperatorMetrics>,
    api_reached: AtomicBool,
}

impl crate::http::Probe for OperatorProbe {
    fn metrics(&self) -> String {
        self.metrics.encode()
    }

    fn not_ready_reason(&self) -> Option<String> {
        (!self.api_reached.load(Ordering::Acquire))
            .then(|| "the Kubernetes API has not been reached yet".into())
    }
}

/// Runs until `shutdown` completes (Ok) or leadership is lost (Err: the process restarts).
pub async fn run(
    args: OperatorArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let client = match &args.api_server {
        Some(url) => Client::try_from(Config::new(
            url.parse().context("invalid --api-server URL")?,
        ))?,
        None => Client::try_default()
            .await
            .context("no Kubernetes configuration (in-cluster or KUBECONFIG)")?,
    };
    let metrics = Arc::new(OperatorMetrics::default());
    let probe = Arc::new(OperatorProbe {
        metrics: metrics.clone(),
        api_reached: AtomicBool::new(false),
    });
    let http = crate::http::HttpServer::start(args.http_addr, probe.clone()).await?;

    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("mq9-operator-{}", std::process::id()));
    let leases = Api::<Lease>::namespaced(client.clone(), &args.namespace);
    client
        .apiserver_version()
        .await
        .context("cannot reach the Kubernetes API")?;
    probe.api_reached.store(true, Ordering::Release);
    let election = LeaderElection::new(
        leases,
        &args.lease_name,
        &identity,
        Duration::from_secs(args.lease_duration),
    );
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let stopped = |stop: &tokio::sync::broadcast::Sender<()>| {
        let mut receiver = stop.subscribe();
        async move {
            let _ = receiver.recv().await;
        }
    };
    // The webhook is stateless: every replica serves it, leader or not.
    let webhook = webhook_settings(&args)
        .map(|settings| super::webhook::serve(client.clone(), settings, stopped(&stop)));
    let webhook = async move {
        match webhook {
            Some(serving) => serving.await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(webhook, shutdown);
    tokio::select! {
        _ = election.acquire() => tracing::info!(%identity, "leading: controllers start"),
        served = &mut webhook => return served.context("the admission webhook failed"),
        _ = &mut shutdown => return Ok(()),
    }
    let settings = Settings {
        resync: Duration::from_secs(args.resync_interval),
        nats_url_override: args.nats_url_override.clone(),
        operator_namespace: args.namespace.clone(),
        auto_mailbox_grace: Duration::from_secs(args.auto_mailbox_grace),
        images: images(&args),
    };
    let (stores, writers) = Stores::new();
    let ctx = Arc::new(Context::new(client, stores, metrics, settings));
    let controllers = futures::future::join4(
        super::broker::run(ctx.clone(), stopped(&stop)),
        super::mailbox::run(ctx.clone(), writers, stopped(&stop)),
        super::broadcast::run(ctx.clone(), stopped(&stop)),
        super::pods::run(ctx.clone(), stopped(&stop)),
    );
    tokio::pin!(controllers);
    let outcome = tokio::select! {
        _ = &mut controllers => Ok(()),
        _ = election.hold() => Err(anyhow::anyhow!("lost the leader Lease; exiting so that only one replica acts")),
        served = &mut webhook => served.context("the admission webhook failed"),
        _ = &mut shutdown => Ok(()),
    };
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), controllers).await;
    let _ = http.stop().await;
    outcome
}

/// The default images of Brokers' containers: the flags, else the operator's own.
fn images(args: &OperatorArgs) -> super::builders::Images {
    let defaults = super::builders::Images::default();
    super::builders::Images {
        broker: args.broker_image.clone().unwrap_or(defaults.broker),
        nats: args.nats_image.clone().unwrap_or(defaults.nats),
    }
}

/// The webhook's settings, when `--webhook-addr` asks for it.
fn webhook_settings(args: &OperatorArgs) -> Option<super::webhook::WebhookSettings> {
    let addr = args.webhook_addr?;
    let service = format!("{}.{}.svc", args.webhook_service, args.namespace);
    let mut dns_names = vec![service.clone(), format!("{service}.cluster.local")];
    dns_names.extend(args.webhook_dns_name.iter().cloned());
    Some(super::webhook::WebhookSettings {
        addr,
        namespace: args.namespace.clone(),
        dns_names,
        cert_secret: args.webhook_cert_secret.clone(),
        configuration: args.webhook_configuration.clone(),
    })
}
