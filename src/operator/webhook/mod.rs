//! The pod-injection webhook (operator.md, "Getting mailboxes into agent pods"): a mutating
//! admission webhook served over HTTPS by every operator replica (it is stateless, so it needs
//! no leadership).
//!
//! A pod opts in with the label `mq9.io/inject: "true"` (what the configuration's
//! `objectSelector` selects) *and* the annotation `mq9.io/mailbox` ([`inject`] says why both):
//!
//! - `mq9.io/mailbox: <name>`: the pod gets that Mailbox's `MQ9_*` keys as environment and the
//!   whole Secret (`user.creds`, the NATS seed, only ever as this file) as a read-only mount at
//!   `/var/run/secrets/mq9`.
//! - `mq9.io/mailbox: auto` (optional `mq9.io/broker`, `mq9.io/ttl`): a Mailbox is created for
//!   the pod and wired the same way; [`crate::operator::pods`] makes the pod its owner, so it is
//!   deleted with the pod (or, when the pod never comes to exist, deletes it as an orphan).
//!
//! The webhook never refuses a pod (the configuration says `failurePolicy: Ignore` too): when it
//! cannot inject, the pod is admitted unchanged with a warning saying why, which `kubectl`
//! prints. Decisions are in [`inject`]; TLS in [`certs`].

pub mod certs;
pub mod inject;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use serde_json::{json, Value};

use self::inject::Request;
use crate::crd::{Broker, Mailbox};
use crate::operator::builders::secret;

/// How often a replica reads the certificate Secret (to follow a renewal by another replica)
/// and checks the configuration's `caBundle` (to restore it on a re-created configuration).
const CERT_CHECK_INTERVAL: Duration = Duration::from_secs(600);
/// The first and the longest wait before trying again when the certificate cannot be kept
/// current, e.g. while the MutatingWebhookConfiguration does not exist yet.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Where and as what the webhook serves.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub addr: SocketAddr,
    /// The operator's namespace: its pods are never injected; the certificate Secret lives here.
    pub namespace: String,
    /// The DNS names the serving certificate is for (the webhook Service's).
    pub dns_names: Vec<String>,
    /// The Secret holding the certificate.
    pub cert_secret: String,
    /// The MutatingWebhookConfiguration whose `caBundle` the operator keeps current.
    pub configuration: String,
}

#[derive(Clone)]
struct WebhookState {
    client: Client,
    namespace: String,
}

/// Serves `/mutate` until `shutdown` completes.
pub async fn serve(
    client: Client,
    settings: WebhookSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let cert = certs::ensure(
        &client,
        &settings.namespace,
        &settings.cert_secret,
        &settings.dns_names,
    )
    .await?;
    let tls = Arc::new(RwLock::new(certs::tls_config(&cert)?));
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for the webhook on {}: {e}", settings.addr))?;
    tracing::info!(addr = %settings.addr, "admission webhook listening");
    let state = WebhookState {
        client: client.clone(),
        namespace: settings.namespace.clone(),
    };
    let app = Router::new()
        .route("/mutate", post(mutate))
        .with_state(state);
    let renewal = tokio::spawn(keep_certificate_current(
        client,
        settings,
        cert,
        tls.clone(),
    ));
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let config = tls.read().expect("the TLS lock is never poisoned").clone();
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let stream = match tokio_rustls::TlsAcceptor::from(config).accept(stream).await {
                Ok(stream) => stream,
                Err(e) => return tracing::debug!(error = %e, "webhook TLS handshake failed"),
            };
            let connection = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = connection
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "webhook connection ended with an error");
            }
        });
    }
    renewal.abort();
    Ok(())
}

/// Publishes the CA bundle, then follows renewals of the certificate (by this replica or
/// another) and keeps the bundle published. The operator does not wait for its configuration:
/// Helm creates webhook configurations last, and until one exists no API server calls the
/// webhook, so nothing is lost while this retries.
async fn keep_certificate_current(
    client: Client,
    settings: WebhookSettings,
    mut current: certs::ServingCert,
    tls: Arc<RwLock<Arc<rustls::ServerConfig>>>,
) {
    let mut retry = RETRY_FIRST;
    loop {
        let wait = match refresh(&client, &settings, &mut current, &tls).await {
            Ok(()) => {
                retry = RETRY_FIRST;
                CERT_CHECK_INTERVAL
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?retry, "cannot keep the webhook certificate current");
                let wait = retry;
                retry = (retry * 2).min(RETRY_MAX);
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// One check: the Secret's certificate (renewed if due), its CA bundle published, then served.
/// The bundle goes first so that a renewal never serves a certificate the API server was not
/// told to trust (and under one CA, the bundle rarely changes at all: see [`certs`]).
async fn refresh(
    client: &Client,
    settings: &WebhookSettings,
    current: &mut certs::ServingCert,
    tls: &RwLock<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    let cert = certs::ensure(
        client,
        &settings.namespace,
        &settings.cert_secret,
        &settings.dns_names,
    )
    .await?;
    certs::publish_ca_bundle(client, &settings.configuration, &cert.ca_bundle).await?;
    if cert != *current {
        *tls.write().expect("the TLS lock is never poisoned") = certs::tls_config(&cert)?;
        tracing::info!(?cert, "webhook serves its renewed certificate");
        *current = cert;
    }
    Ok(())
}

/// The answer to the API server (`admission.k8s.io/v1` AdmissionReview). Written here rather
/// than with kube's `AdmissionResponse`, which serializes the patch as an array of numbers
/// (kube-rs issue 1781); the API server wants the JSON patch base64-encoded.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewResponse {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

impl ReviewResponse {
    fn into_review(self) -> Json<Value> {
        Json(
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": self}),
        )
    }
}

async fn mutate(
    State(state): State<WebhookState>,
    Json(review): Json<AdmissionReview<Pod>>,
) -> Json<Value> {
    let request: AdmissionRequest<Pod> = match review.try_into() {
        Ok(request) => request,
        // Nothing to answer to: no uid. The API server treats this as a failed call (Ignore).
        Err(e) => {
            return Json(
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "error": e.to_string()}),
            )
        }
    };
    let mut response = ReviewResponse {
        uid: request.uid.clone(),
        allowed: true,
        patch_type: None,
        patch: None,
        warnings: vec![],
    };
    match decide(&state, &request).await {
        Ok(None) => {}
        Ok(Some(patch)) => {
            let bytes = serde_json::to_vec(&patch).expect("a JSON patch serializes");
            response.patch = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
            response.patch_type = Some("JSONPatch");
        }
        Err(warning) => {
            tracing::info!(%warning, "pod admitted without injection");
            response.warnings.push(warning);
        }
    }
    response.into_review()
}

/// The patch for one admission request; `Err` is a warning for the user.
async fn decide(
    state: &WebhookState,
    request: &AdmissionRequest<Pod>,
) -> Result<Option<json_patch::Patch>, String> {
    let Some(pod) = &request.object else {
        return Ok(None);
    };
    let namespace = request.namespace.clone().unwrap_or_default();
    let mailboxes = Api::<Mailbox>::namespaced(state.client.clone(), &namespace);
    match inject::request(pod, &namespace, &state.namespace)? {
        Request::Skip(why) => {
            tracing::debug!(why, "pod not injected");
            Ok(None)
        }
        Request::Existing(name) => {
            let mailbox = mailboxes
                .get_opt(&name)
                .await
                .map_err(|e| format!("mq9: cannot read Mailbox {name}: {e}"))?
                .ok_or_else(|| format!("mq9: Mailbox {name} does not exist in {namespace}; the pod gets no mq9 credentials"))?;
            Ok(Some(inject::patch(
                pod,
                &name,
                &secret::secret_name(&mailbox),
                false,
            )))
        }
        Request::Auto { broker, ttl } => {
            let broker = match broker {
                Some(broker) => broker,
                None => only_broker(&state.client, &namespace).await?,
            };
            // A short slice of a fresh unguessable address: lowercase base32, a valid name part.
            let address = crate::protocol::address::generate();
            let suffix = &address[..6];
            let mailbox = inject::auto_mailbox(pod, &namespace, suffix, &broker, &ttl);
            // A dry run must have no side effects: the patch is shown, the Mailbox not made.
            if !request.dry_run {
                mailboxes
                    .create(&PostParams::default(), &mailbox)
                    .await
                    .map_err(|e| format!("mq9: cannot create a Mailbox for the pod: {e}"))?;
            }
            Ok(Some(inject::patch(
                pod,
                &mailbox.name_any(),
                &secret::secret_name(&mailbox),
                true,
            )))
        }
    }
}

/// The namespace's Broker when there is exactly one.
async fn only_broker(client: &Client, namespace: &str) -> Result<String, String> {
    let brokers = Api::<Broker>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("mq9: cannot list Brokers: {e}"))?;
    match brokers.items.as_slice() {
        [only] => Ok(only.name_any()),
        found => Err(format!(
            "mq9: {} Brokers in {namespace}; set the annotation {} to choose one",
            found.len(),
            crate::operator::names::BROKER_ANNOTATION
        )),
    }
}
