//! The Mailbox controller: dereference the Broker → validate → build the Secret → apply
//! (Secret by server-side apply, mailbox by `$mq9.ADMIN.MAILBOX.ENSURE` with the Mailbox's uid
//! as owner, subscriptions by `MAILBOX.SUBSCRIBE`) → status. Decisions live in [`plan`]; this
//! module only gathers facts and carries the decisions out.
//!
//! Order matters for "nothing half-written": the address is generated and written to the
//! Secret *before* the mailbox is created on the broker, so a crash between the two steps never
//! leaves a mailbox whose address nobody knows.

pub mod plan;
pub mod secret;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, Resource, ResourceExt};

use self::plan::{BrokerState, Finalize, Outcome, Reason};
use super::broker_client::{Admin, AdminError, EnsureMailbox};
use super::context::Context;
use super::credentials::{self, BrokerAuth};
use super::error::{Error, Result};
use crate::crd::{Broadcast, Broker, ExpirationPolicy, Mailbox, MailboxKind};

const CONTROLLER: &str = "mailbox";
/// How soon a Mailbox waiting for its Broker is tried again.
const WAIT_FOR_BROKER: Duration = Duration::from_secs(15);

/// Runs the controller until `shutdown` completes.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let mailboxes = Api::<Mailbox>::all(client.clone());
    let controller = Controller::new(mailboxes, watcher::Config::default());
    let store = controller.store();
    let by_namespace = move |namespace: Option<String>| {
        store
            .state()
            .into_iter()
            .filter(|m| m.namespace() == namespace)
            .map(|m| ObjectRef::from_obj(&*m))
            .collect::<Vec<_>>()
    };
    let for_broadcast = by_namespace.clone();
    controller
        .owns(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default().labels(&format!("{}=true", secret::MANAGED_LABEL)),
        )
        .watches(
            Api::<Broadcast>::all(client.clone()),
            watcher::Config::default(),
            move |b| for_broadcast(b.namespace()),
        )
        .watches(
            Api::<Broker>::all(client),
            watcher::Config::default(),
            move |b| by_namespace(b.namespace()),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(mailbox: Arc<Mailbox>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let api =
        Api::<Mailbox>::namespaced(ctx.client.clone(), &mailbox.namespace().unwrap_or_default());
    let result = finalizer(&api, plan::FINALIZER, mailbox, |event| async {
        match event {
            Finalizer::Apply(mailbox) => apply(&mailbox, &ctx).await,
            Finalizer::Cleanup(mailbox) => cleanup(&mailbox, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    let failure = result.as_ref().err().map(Error::reason);
    ctx.metrics
        .reconciled(CONTROLLER, started.elapsed(), failure);
    result
}

fn error_policy(_mailbox: Arc<Mailbox>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(controller = CONTROLLER, reason = error.reason(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

async fn apply(mailbox: &Mailbox, ctx: &Context) -> Result<Action> {
    let now = Timestamp::now();
    if let Err(message) = plan::validate(mailbox) {
        return settle(
            mailbox,
            ctx,
            Outcome::NotReady {
                reason: Reason::Invalid,
                message,
            },
            Action::await_change(),
        )
        .await;
    }
    if plan::is_expired(mailbox.status.as_ref(), now) {
        return expire(mailbox, ctx).await;
    }
    let (state, broker) = broker_state(mailbox, ctx).await?;
    let broker = match (state, broker) {
        (BrokerState::Ready, Some(broker)) => broker,
        (state, _) => return not_ready_broker(mailbox, ctx, &state).await,
    };
    let auth = match credentials::load(ctx, &broker).await {
        Ok(auth) => auth,
        Err(e) => {
            return not_ready_broker(mailbox, ctx, &BrokerState::NotReady(e.to_string())).await
        }
    };
    let admin = match connect(ctx, &broker, auth.as_ref()).await {
        Ok(admin) => admin,
        Err(e) => {
            return not_ready_broker(mailbox, ctx, &BrokerState::NotReady(e.to_string())).await
        }
    };

    let namespace = mailbox.namespace().unwrap_or_default();
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
    let secret_name = secret::secret_name(mailbox);
    let existing = secrets.get_opt(&secret_name).await?;
    if let Some(existing) = existing
        .as_ref()
        .filter(|s| !secret::is_owned_by(s, mailbox))
    {
        let message = format!(
            "Secret {} exists and is not managed by this Mailbox",
            existing.name_any()
        );
        return settle(
            mailbox,
            ctx,
            Outcome::NotReady {
                reason: Reason::Invalid,
                message,
            },
            Action::await_change(),
        )
        .await;
    }
    let address = mailbox
        .spec
        .address
        .clone()
        .or_else(|| existing.as_ref().and_then(secret::recorded_address))
        .unwrap_or_else(crate::protocol::address::generate);
    let created_at = mailbox
        .status
        .as_ref()
        .and_then(|s| s.created_at.as_deref()?.parse().ok())
        .unwrap_or(now);
    let ttl_secs = plan::ttl_secs(mailbox);
    let expires_at = plan::recorded_expiry(mailbox.status.as_ref())
        .or_else(|| plan::expiry(created_at, ttl_secs));

    let broadcasts = Api::<Broadcast>::namespaced(ctx.client.clone(), &namespace)
        .list(&Default::default())
        .await?
        .items;
    let topics = plan::desired_topics(mailbox, &broadcasts);
    let publish: Vec<String> = broadcasts
        .iter()
        .filter(|b| plan::is_publisher(b, mailbox))
        .map(|b| b.spec.topic.clone())
        .collect();
    let user = format!("{namespace}/{}", mailbox.name_any());
    let grant = credentials::Grant {
        user: &user,
        address: &address,
        send_to: &mailbox.spec.send_to,
        subscribe: &topics,
        publish: &publish,
        expires_at,
    };
    let minted = auth
        .as_ref()
        .map(|auth| auth.mailbox_credentials(&grant))
        .transpose()?;
    let permissions_hash = credentials::grant_hash(&grant);
    let recorded_hash = existing
        .as_ref()
        .and_then(|s| s.annotations().get(secret::PERMISSIONS_ANNOTATION).cloned());
    if recorded_hash.as_deref() != Some(permissions_hash.as_str()) {
        let (host, port) = super::builders::client_endpoint(&broker);
        let binding = secret::Binding {
            host: &host,
            port,
            address: &address,
            expires_at,
            creds: minted.as_deref(),
            permissions_hash: &permissions_hash,
        };
        let desired = secret::secret(mailbox, &binding);
        super::apply::apply(&ctx.client, &desired).await?;
        let note = if existing.is_none() {
            "wrote the mailbox's address and credentials"
        } else {
            "re-issued the mailbox's credentials for changed permissions"
        };
        ctx.event(
            &mailbox.object_ref(&()),
            EventType::Normal,
            "SecretWritten",
            format!("Secret {secret_name}: {note}"),
        )
        .await;
    }

    let ensure = EnsureMailbox {
        address: &address,
        kind: match mailbox.spec.kind {
            MailboxKind::Standard => "standard",
            MailboxKind::Latest => "latest",
        },
        ttl_secs,
        expires_at: expires_at
            .filter(|_| {
                mailbox
                    .status
                    .as_ref()
                    .is_some_and(|s| s.created_at.is_some())
            })
            .map(|t| t.as_second()),
        owner: mailbox.metadata.uid.as_deref().unwrap_or_default(),
    };
    match admin.ensure(&ensure).await {
        Ok(true)
            if mailbox
                .status
                .as_ref()
                .is_some_and(|s| s.created_at.is_some()) =>
        {
            let note =
                "the broker had lost the mailbox (volume replaced?); it was created again, empty"
                    .to_owned();
            ctx.event(
                &mailbox.object_ref(&()),
                EventType::Warning,
                "Recreated",
                note,
            )
            .await;
        }
        Ok(true) => {
            ctx.event(
                &mailbox.object_ref(&()),
                EventType::Normal,
                "Created",
                "created the mailbox on the broker".into(),
            )
            .await;
        }
        Ok(false) => {}
        Err(AdminError::Rejected { code }) if code == "conflict" => {
            let message = "the address is taken on the broker by another owner".to_owned();
            return settle(
                mailbox,
                ctx,
                Outcome::NotReady {
                    reason: Reason::AddressConflict,
                    message,
                },
                Action::requeue(Duration::from_secs(300)),
            )
            .await;
        }
        Err(AdminError::Unreachable(why)) => {
            return not_ready_broker(mailbox, ctx, &BrokerState::NotReady(why)).await
        }
        Err(e) => {
            return settle(
                mailbox,
                ctx,
                Outcome::NotReady {
                    reason: Reason::Invalid,
                    message: e.to_string(),
                },
                Action::await_change(),
            )
            .await
        }
    }
    if let Err(e) = sync_subscriptions(&admin, &address, &topics).await {
        return not_ready_broker(mailbox, ctx, &BrokerState::NotReady(e.to_string())).await;
    }
    let next = match expires_at {
        Some(at) => {
            Duration::from_secs(at.as_second().saturating_sub(now.as_second()).max(0) as u64)
                .min(ctx.settings.resync)
        }
        None => ctx.settings.resync,
    };
    let outcome = Outcome::Ready {
        created_at,
        expires_at,
        secret_name,
    };
    settle(mailbox, ctx, outcome, Action::requeue(next)).await
}

/// TTL garbage collection: the broker dropped the mailbox by itself; the Secret goes (pods can
/// no longer start with a dead address), the status says Expired, and `expirationPolicy`
/// decides whether the object stays (Retain) or goes (Delete).
async fn expire(mailbox: &Mailbox, ctx: &Context) -> Result<Action> {
    let namespace = mailbox.namespace().unwrap_or_default();
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
    let secret_name = secret::secret_name(mailbox);
    if let Some(existing) = secrets.get_opt(&secret_name).await? {
        if secret::is_owned_by(&existing, mailbox) {
            secrets
                .delete(&secret_name, &DeleteParams::default())
                .await?;
        }
    }
    let message =
        "the mailbox reached its TTL and the broker removed it; its Secret was deleted".to_owned();
    let action = settle(
        mailbox,
        ctx,
        Outcome::NotReady {
            reason: Reason::Expired,
            message,
        },
        Action::await_change(),
    )
    .await?;
    if mailbox.spec.expiration_policy == ExpirationPolicy::Delete
        && mailbox.metadata.deletion_timestamp.is_none()
    {
        let api = Api::<Mailbox>::namespaced(ctx.client.clone(), &namespace);
        api.delete(&mailbox.name_any(), &DeleteParams::default())
            .await?;
        ctx.event(
            &mailbox.object_ref(&()),
            EventType::Normal,
            "Deleted",
            "expirationPolicy is Delete: the expired Mailbox is deleted".into(),
        )
        .await;
    }
    Ok(action)
}

/// The finalizer: delete the mailbox on the broker (deletionPolicy Delete), never wedging.
async fn cleanup(mailbox: &Mailbox, ctx: &Context) -> Result<Action> {
    let now = Timestamp::now();
    let (mut state, broker) = broker_state(mailbox, ctx).await?;
    let mut admin = None;
    if let (BrokerState::Ready, Some(broker)) = (&state, broker.as_ref()) {
        let connected = match credentials::load(ctx, broker).await {
            Ok(auth) => connect(ctx, broker, auth.as_ref()).await,
            Err(e) => Err(AdminError::Unreachable(e.to_string())),
        };
        match connected {
            Ok(client) => admin = Some(client),
            Err(e) => state = BrokerState::NotReady(e.to_string()),
        }
    }
    let reference = mailbox.object_ref(&());
    match plan::finalize(mailbox, &state, now) {
        Finalize::DeleteOnBroker => {
            let admin = admin.expect("connected when the broker is ready");
            let secrets = Api::<Secret>::namespaced(
                ctx.client.clone(),
                &mailbox.namespace().unwrap_or_default(),
            );
            let recorded = secrets
                .get_opt(&secret::secret_name(mailbox))
                .await?
                .filter(|s| secret::is_owned_by(s, mailbox));
            let address = mailbox
                .spec
                .address
                .clone()
                .or_else(|| recorded.as_ref().and_then(secret::recorded_address));
            if let Some(address) = address {
                let ours = admin
                    .info(&address)
                    .await
                    .map_err(|e| Error::BrokerUnreachable(e.to_string()))?
                    .is_some_and(|info| info.owner == mailbox.metadata.uid);
                if ours {
                    admin
                        .delete(&address)
                        .await
                        .map_err(|e| Error::BrokerUnreachable(e.to_string()))?;
                    ctx.event(
                        &reference,
                        EventType::Normal,
                        "DeletedOnBroker",
                        "deleted the mailbox on the broker".into(),
                    )
                    .await;
                }
            }
        }
        Finalize::Release(why) => {
            ctx.event(&reference, EventType::Warning, "FinalizerReleased", why)
                .await
        }
        Finalize::RetryLater => {
            return Err(Error::BrokerUnreachable(
                "the Broker is unreachable; the finalizer retries".into(),
            ))
        }
    }
    if let Some(uid) = &mailbox.metadata.uid {
        ctx.metrics.mailbox_reason(uid, None);
    }
    Ok(Action::await_change())
}

/// Writes the status when it changed, records an Event when the Ready reason changed, and
/// returns `action`.
async fn settle(
    mailbox: &Mailbox,
    ctx: &Context,
    outcome: Outcome,
    action: Action,
) -> Result<Action> {
    let now = Timestamp::now();
    let status = plan::next_status(mailbox, &outcome, now);
    let reason_of = |s: Option<&crate::crd::MailboxStatus>| {
        s.and_then(|s| super::conditions::find(&s.conditions, "Ready"))
            .map(|c| c.reason.clone())
    };
    let before = reason_of(mailbox.status.as_ref());
    let after = reason_of(Some(&status));
    if mailbox.status.as_ref() != Some(&status) {
        let api = Api::<Mailbox>::namespaced(
            ctx.client.clone(),
            &mailbox.namespace().unwrap_or_default(),
        );
        let mut updated = mailbox.clone();
        updated.status = Some(status);
        api.replace_status(&mailbox.name_any(), &PostParams::default(), &updated)
            .await?;
    }
    if before != after {
        if let Outcome::NotReady { reason, message } = &outcome {
            let type_ = if *reason == Reason::Expired {
                EventType::Normal
            } else {
                EventType::Warning
            };
            if *reason == Reason::Expired {
                ctx.metrics.expired();
            }
            ctx.event(
                &mailbox.object_ref(&()),
                type_,
                reason.as_str(),
                message.clone(),
            )
            .await;
        }
    }
    if let (Some(uid), Some(reason)) = (&mailbox.metadata.uid, after) {
        ctx.metrics.mailbox_reason(uid, Some(&reason));
    }
    Ok(action)
}

async fn not_ready_broker(mailbox: &Mailbox, ctx: &Context, state: &BrokerState) -> Result<Action> {
    let broker = &mailbox.spec.broker_ref.name;
    let (reason, message) = match state {
        BrokerState::Missing => (
            Reason::BrokerNotFound,
            format!("Broker {broker} does not exist"),
        ),
        BrokerState::Deleting => (
            Reason::BrokerNotFound,
            format!("Broker {broker} is being deleted"),
        ),
        BrokerState::NotReady(why) => (
            Reason::BrokerNotReady,
            format!("Broker {broker} is not ready: {why}"),
        ),
        BrokerState::Ready => (
            Reason::BrokerNotReady,
            format!("Broker {broker} is not ready"),
        ),
    };
    settle(
        mailbox,
        ctx,
        Outcome::NotReady { reason, message },
        Action::requeue(WAIT_FOR_BROKER),
    )
    .await
}

/// Dereferences `spec.brokerRef`.
async fn broker_state(mailbox: &Mailbox, ctx: &Context) -> Result<(BrokerState, Option<Broker>)> {
    let own = mailbox.namespace().unwrap_or_default();
    let namespace = mailbox.spec.broker_ref.namespace_or(&own);
    let broker = Api::<Broker>::namespaced(ctx.client.clone(), namespace)
        .get_opt(&mailbox.spec.broker_ref.name)
        .await?;
    let state = match &broker {
        None => BrokerState::Missing,
        Some(b) if b.metadata.deletion_timestamp.is_some() => BrokerState::Deleting,
        Some(b)
            if !b
                .status
                .as_ref()
                .is_some_and(|s| super::conditions::is_true(&s.conditions, "Available")) =>
        {
            BrokerState::NotReady("it is not Available yet".into())
        }
        Some(_) => BrokerState::Ready,
    };
    Ok((state, broker))
}

async fn connect(
    ctx: &Context,
    broker: &Broker,
    auth: Option<&BrokerAuth>,
) -> Result<Admin, AdminError> {
    let url = ctx
        .settings
        .nats_url_override
        .clone()
        .unwrap_or_else(|| super::builders::broker_url(broker));
    ctx.brokers
        .admin(&url, auth.map(BrokerAuth::operator_credentials))
        .await
}

/// Subscribes to what is desired and unsubscribes from what is not.
async fn sync_subscriptions(
    admin: &Admin,
    address: &str,
    desired: &BTreeSet<String>,
) -> Result<(), AdminError> {
    let current: BTreeSet<String> = admin
        .info(address)
        .await?
        .map(|i| i.subscriptions.into_iter().collect())
        .unwrap_or_default();
    for topic in desired.difference(&current) {
        admin.subscribe(address, topic, true).await?;
    }
    for topic in current.difference(desired) {
        admin.subscribe(address, topic, false).await?;
    }
    Ok(())
}
