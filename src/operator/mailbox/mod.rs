//! The Mailbox controller: validate → dereference the Broker ([`dereference`]), which must admit
//! the Mailbox's namespace ([`plan::admission`]) → build the
//! Secret ([`secret`]) → apply (Secret by server-side apply, mailbox by
//! `$mq9.ADMIN.MAILBOX.ENSURE` with the Mailbox's uid as owner, subscriptions by
//! `MAILBOX.SUBSCRIBE`) → status ([`status`]); expiry and deletion in [`end_of_life`].
//! Decisions live in [`plan`]; these modules only gather facts and carry the decisions out.
//!
//! Order matters for "nothing half-written": the address is generated and written to the
//! Secret *before* the mailbox is created on the broker, so a crash between the two steps never
//! leaves a mailbox whose address nobody knows.
//!
//! With JWT auth, the namespace's tenant account is recorded and pushed to nats-server before
//! any credentials of it are written (they would not log in otherwise), and credentials are
//! replaced in the order *revoke the old user → record the new one on the Mailbox
//! ([`names::USER_KEY_ANNOTATION`]) → write the Secret*: a crash anywhere in between leaves
//! at worst a revoked or never-issued key behind, never a live one that nobody will revoke.

mod dereference;
mod end_of_life;
pub mod plan;
mod status;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, Resource, ResourceExt};

use self::dereference::Connected;
use self::plan::{BrokerState, Outcome, Reason};
use super::broker_client::{Admin, AdminError, EnsureMailbox};
use super::builders::secret;
use super::context::{error_policy, Context};
use super::credentials::{self, Grant};
use super::error::{Error, Result};
use super::names;
use super::tenants::{self, Revocation};
use crate::crd::{Broadcast, Broker, Mailbox};

const CONTROLLER: &str = "mailbox";
/// How soon a Mailbox whose address is taken by another owner is checked again.
const RECHECK_CONFLICT: Duration = Duration::from_secs(300);

/// Runs the controller until `shutdown` completes.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let mailboxes = Api::<Mailbox>::all(client.clone());
    let controller = Controller::new(mailboxes, watcher::Config::default());
    let store = controller.store();
    // The Mailboxes a change concerns: those of a Broadcast's namespace (membership), those
    // whose brokerRef names a Broker (which may be in another namespace).
    let selected = move |wanted: &dyn Fn(&Mailbox) -> bool| {
        store
            .state()
            .into_iter()
            .filter(|m| wanted(m))
            .map(|m| ObjectRef::from_obj(&*m))
            .collect::<Vec<_>>()
    };
    let for_broker = selected.clone();
    controller
        .owns(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default().labels(&format!("{}=true", names::MANAGED_LABEL)),
        )
        .watches(
            Api::<Broadcast>::all(client.clone()),
            watcher::Config::default(),
            move |b| selected(&|m| m.namespace() == b.namespace()),
        )
        .watches(
            Api::<Broker>::all(client),
            watcher::Config::default(),
            move |b| {
                for_broker(&|m| {
                    let own = m.namespace().unwrap_or_default();
                    m.spec.broker_ref.refers_to(&own, &b)
                })
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// One pass. The object handed over comes from the controller's cache, which can lag behind
/// the status this controller itself just wrote; decisions that rest on the status
/// (`createdAt`, `expiresAt` set once, whether a creation is a re-creation) are therefore made
/// on the object read afresh from the API server.
async fn reconcile(mailbox: Arc<Mailbox>, ctx: Arc<Context>) -> Result<Action> {
    let api =
        Api::<Mailbox>::namespaced(ctx.client.clone(), &mailbox.namespace().unwrap_or_default());
    let pass = finalizer(&api, names::MAILBOX_FINALIZER, mailbox, |event| async {
        match event {
            Finalizer::Apply(cached) => match api.get_opt(&cached.name_any()).await? {
                Some(fresh) if fresh.metadata.deletion_timestamp.is_none() => {
                    apply(&fresh, &ctx).await
                }
                // Gone or going since the cache saw it: the next event brings the cleanup.
                _ => Ok(Action::await_change()),
            },
            Finalizer::Cleanup(mailbox) => end_of_life::cleanup(&mailbox, &ctx).await,
        }
    });
    let pass = async { pass.await.map_err(|e| Error::Finalizer(Box::new(e))) };
    ctx.measured(CONTROLLER, pass).await
}

async fn apply(mailbox: &Mailbox, ctx: &Context) -> Result<Action> {
    let now = Timestamp::now();
    if let Err(message) = plan::validate(mailbox) {
        return status::not_ready(mailbox, ctx, Reason::Invalid, message).await;
    }
    if plan::is_expired(mailbox.status.as_ref(), now) {
        return end_of_life::expire(mailbox, ctx).await;
    }
    let (state, broker) = dereference::broker_state(mailbox, ctx).await?;
    if let Some(Err(message)) = broker.as_ref().map(|b| plan::admission(mailbox, b)) {
        // Back when the Broker changes (watched), and every resync interval so that a frozen
        // mailbox's expiry is still noticed.
        let reason = Reason::NamespaceNotAllowed;
        let outcome = Outcome::NotReady { reason, message };
        let action = Action::requeue(ctx.settings.resync);
        return status::settle(mailbox, ctx, outcome, action).await;
    }
    let connected = match dereference::connect_to(ctx, state, broker).await {
        Ok(connected) => connected,
        Err(state) => return status::broker_not_ready(mailbox, ctx, &state).await,
    };
    let namespace = mailbox.namespace().unwrap_or_default();
    let secret_name = secret::secret_name(mailbox);
    let existing = Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&secret_name)
        .await?;
    if existing
        .as_ref()
        .is_some_and(|s| !secret::is_owned_by(s, mailbox))
    {
        let message = format!("Secret {secret_name} exists and is not managed by this Mailbox");
        return status::not_ready(mailbox, ctx, Reason::Invalid, message).await;
    }
    // The address: explicit, else the one already handed out, else a fresh one.
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
    let expires_at = plan::recorded_expiry(mailbox.status.as_ref())
        .or_else(|| plan::expiry(created_at, plan::ttl_secs(mailbox)));

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
    let grant = Grant {
        user: &user,
        address: &address,
        send_to: &mailbox.spec.send_to,
        subscribe: &topics,
        publish: &publish,
        expires_at,
    };
    if let Some(auth) = &connected.auth {
        let published = tenants::publish(ctx, &connected.broker, auth, &namespace, None).await?;
        if let Err(e) = published {
            let why = format!("the account of namespace {namespace} is not on its NATS: {e}");
            return status::broker_not_ready(mailbox, ctx, &BrokerState::NotReady(why)).await;
        }
    }
    let annotated = write_secret(mailbox, ctx, &connected, existing.as_ref(), &grant).await?;
    // The annotation's patch moved the resourceVersion: later writes build on the new one.
    let mailbox = annotated.as_ref().unwrap_or(mailbox);
    if let Some(action) = ensure_on_broker(mailbox, ctx, &connected.admin, &grant).await? {
        return Ok(action);
    }
    let account = connected
        .auth
        .as_ref()
        .map(|auth| auth.tenant_account_public_key(&namespace));
    let synced = sync_subscriptions(&connected.admin, &address, &topics, account.as_deref());
    if let Err(e) = synced.await {
        let state = BrokerState::NotReady(e.to_string());
        return status::broker_not_ready(mailbox, ctx, &state).await;
    }
    // Back at expiry, and every resync interval to repair drift.
    let until_expiry = expires_at.map(|at| (at.as_second() - now.as_second()).max(0) as u64);
    let next = until_expiry.map_or(ctx.settings.resync, |secs| {
        Duration::from_secs(secs).min(ctx.settings.resync)
    });
    tracing::debug!(mailbox = %mailbox.name_any(), next_check = ?next, "mailbox ready");
    let outcome = Outcome::Ready {
        created_at,
        expires_at,
        secret_name,
    };
    status::settle(mailbox, ctx, outcome, Action::requeue(next)).await
}

/// Writes the Secret when it is missing or its credentials no longer match `grant` (the
/// permissions hash on it says which). The address in it is never changed. Written before the
/// mailbox is created on the broker, so a crash between the two never leaves a mailbox whose
/// address nobody knows. New credentials end the previous ones first (see the module
/// documentation); returns the Mailbox as the annotation's patch left it, when patched.
async fn write_secret(
    mailbox: &Mailbox,
    ctx: &Context,
    connected: &Connected,
    existing: Option<&Secret>,
    grant: &Grant<'_>,
) -> Result<Option<Mailbox>> {
    let permissions_hash = credentials::grant_hash(grant);
    let recorded = existing.and_then(secret::recorded_permissions);
    if recorded == Some(permissions_hash.as_str()) {
        return Ok(None);
    }
    let namespace = mailbox.namespace().unwrap_or_default();
    let mut annotated = None;
    let mut creds = None;
    if let Some(auth) = &connected.auth {
        let minted = auth.mailbox_credentials(&namespace, grant)?;
        if let Some(old) = plan::issued_user_key(mailbox) {
            let revocation = Revocation {
                user_key: old,
                expires_at: grant.expires_at,
            };
            tenants::publish(ctx, &connected.broker, auth, &namespace, Some(revocation)).await??;
        }
        annotated = Some(record_user_key(mailbox, ctx, &minted.public_key).await?);
        creds = Some(minted.creds_file_text);
    }
    let (host, port) = super::builders::client_endpoint(&connected.broker);
    let binding = secret::Binding {
        host: &host,
        port,
        address: grant.address,
        expires_at: grant.expires_at,
        creds: creds.as_deref(),
        permissions_hash: &permissions_hash,
    };
    let desired = secret::secret(mailbox, &binding);
    super::apply::apply(&ctx.client, &desired).await?;
    let note = match existing {
        None => "wrote the mailbox's address and credentials",
        Some(_) => "re-issued the mailbox's credentials for changed permissions",
    };
    let note = format!("Secret {}: {note}", desired.name_any());
    ctx.event(
        &mailbox.object_ref(&()),
        EventType::Normal,
        "SecretWritten",
        note,
    )
    .await;
    Ok(annotated)
}

/// Records on the Mailbox which user its credentials are about to belong to.
async fn record_user_key(mailbox: &Mailbox, ctx: &Context, user_key: &str) -> Result<Mailbox> {
    let api =
        Api::<Mailbox>::namespaced(ctx.client.clone(), &mailbox.namespace().unwrap_or_default());
    let patch =
        serde_json::json!({"metadata": {"annotations": {names::USER_KEY_ANNOTATION: user_key}}});
    let patched = api
        .patch(
            &mailbox.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(patched)
}

/// `$mq9.ADMIN.MAILBOX.ENSURE` with this object's uid as owner. A mailbox the broker had lost
/// is recreated with its original expiry and a Warning Event. `Some(action)` when the Mailbox
/// cannot be Ready (its status is settled).
async fn ensure_on_broker(
    mailbox: &Mailbox,
    ctx: &Context,
    admin: &Admin,
    grant: &Grant<'_>,
) -> Result<Option<Action>> {
    let created_before = mailbox
        .status
        .as_ref()
        .is_some_and(|s| s.created_at.is_some());
    let ensure = EnsureMailbox {
        address: grant.address,
        kind: mailbox.spec.kind.as_str(),
        ttl_secs: plan::ttl_secs(mailbox),
        expires_at: grant
            .expires_at
            .filter(|_| created_before)
            .map(|t| t.as_second()),
        owner: mailbox.metadata.uid.as_deref().unwrap_or_default(),
    };
    let reference = mailbox.object_ref(&());
    let ensured = admin.ensure(&ensure).await;
    tracing::debug!(mailbox = %mailbox.name_any(), created_before, ensured = ?ensured, "ensured on the broker");
    let settled = match ensured {
        Ok(false) => return Ok(None),
        Ok(true) if created_before => {
            let note =
                "the broker had lost the mailbox (volume replaced?); it was created again, empty";
            ctx.event(&reference, EventType::Warning, "Recreated", note.into())
                .await;
            return Ok(None);
        }
        Ok(true) => {
            let note = "created the mailbox on the broker".to_owned();
            ctx.event(&reference, EventType::Normal, "Created", note)
                .await;
            return Ok(None);
        }
        Err(AdminError::Rejected { code }) if code == "conflict" => {
            let message = "the address is taken on the broker by another owner".to_owned();
            let outcome = Outcome::NotReady {
                reason: Reason::AddressConflict,
                message,
            };
            status::settle(mailbox, ctx, outcome, Action::requeue(RECHECK_CONFLICT)).await?
        }
        Err(AdminError::Unreachable(why)) => {
            status::broker_not_ready(mailbox, ctx, &BrokerState::NotReady(why)).await?
        }
        Err(e) => status::not_ready(mailbox, ctx, Reason::Invalid, e.to_string()).await?,
    };
    Ok(Some(settled))
}

/// Subscribes to what is desired and unsubscribes from what is not. With JWT auth every
/// desired topic is subscribed for the namespace's tenant `account` on each pass (idempotent),
/// so that subscriptions made before tenancy come to admit only their own tenant's publishes.
async fn sync_subscriptions(
    admin: &Admin,
    address: &str,
    desired: &BTreeSet<String>,
    account: Option<&str>,
) -> Result<(), AdminError> {
    let current: BTreeSet<String> = admin
        .info(address)
        .await?
        .map(|i| i.subscriptions.into_iter().collect())
        .unwrap_or_default();
    for topic in desired {
        if account.is_some() || !current.contains(topic) {
            admin.subscribe(address, topic, account).await?;
        }
    }
    for topic in current.difference(desired) {
        admin.unsubscribe(address, topic).await?;
    }
    Ok(())
}
