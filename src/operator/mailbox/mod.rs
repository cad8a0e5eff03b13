//! The Mailbox controller. One pass: [`plan::without_broker`] (an invalid spec, a passed TTL)
//! or [`observe`] (the Broker, which must admit the Mailbox's namespace; the Secret; the
//! namespace's Broadcasts and [`membership`]) → [`plan::desired`] → carry out ([`provision`]:
//! the tenant account, the Secret by server-side apply, the mailbox by
//! `$mq9.ADMIN.MAILBOX.ENSURE` with the Mailbox's uid as owner, subscriptions by
//! `MAILBOX.SUBSCRIBE`) → the status, written once ([`status`], from an [`outcome`]); expiry
//! and deletion in [`end_of_life`]. Decisions live in [`plan`]; the other modules gather facts
//! and carry the decisions out.
//!
//! Order matters for "nothing half-written": the address is generated and written to the
//! Secret *before* the mailbox is created on the broker, so a crash between the two steps never
//! leaves a mailbox whose address nobody knows. The broker remembers the owner too: with the
//! Secret gone (by hand, or by a foreground deletion's garbage collector), the address is found
//! again by owner uid (`MAILBOX.LIST {owner}`), to write the Secret again or to delete.
//!
//! With JWT auth, the namespace's tenant account is recorded and pushed to nats-server before
//! any credentials of it are written (they would not log in otherwise), and credentials are
//! replaced in the order *revoke the old user → record the new one on the Mailbox
//! ([`names::USER_KEY_ANNOTATION`]) → write the Secret*: a crash anywhere in between leaves
//! at worst a revoked or never-issued key behind, never a live one that nobody will revoke.

mod end_of_life;
pub mod membership;
mod observe;
pub mod outcome;
pub mod plan;
mod provision;
mod status;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::{watcher, Controller};
use kube::{Api, ResourceExt};

use self::plan::Plan;
use super::context::{drive, selected, Context};
use super::error::{Error, Result};
use super::names;
use crate::crd::{Broadcast, Broker, Mailbox};

const CONTROLLER: &str = "mailbox";

/// Runs the controller until `shutdown` completes.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let mailboxes = Api::<Mailbox>::all(client.clone());
    let controller = Controller::new(mailboxes, watcher::Config::default());
    // The Mailboxes a change concerns: those of a Broadcast's namespace (membership), those
    // whose brokerRef names a Broker (which may be in another namespace).
    let (store, for_broker) = (controller.store(), controller.store());
    let managed = format!("{}=true", names::MANAGED_LABEL);
    let controller = controller
        .owns(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default().labels(&managed),
        )
        .watches(
            Api::<Broadcast>::all(client.clone()),
            watcher::Config::default(),
            move |b| selected(&store, |m| m.namespace() == b.namespace()),
        )
        .watches(
            Api::<Broker>::all(client),
            watcher::Config::default(),
            move |b| {
                selected(&for_broker, |m| {
                    let own = m.namespace().unwrap_or_default();
                    m.spec.broker_ref.refers_to(&own, &b)
                })
            },
        );
    drive(controller, reconcile, ctx, shutdown).await;
}

/// One pass. The object handed over comes from the controller's cache, which can lag behind
/// the status this controller itself just wrote; decisions that rest on the status
/// (`createdAt`, `expiresAt` set once, whether a creation is a re-creation) are therefore made
/// on the object read afresh from the API server.
#[tracing::instrument(skip_all, fields(
    namespace = mailbox.namespace().unwrap_or_default(),
    name = mailbox.name_any(),
    generation = mailbox.metadata.generation.unwrap_or_default(),
))]
async fn reconcile(mailbox: Arc<Mailbox>, ctx: Arc<Context>) -> Result<Action> {
    let api =
        Api::<Mailbox>::namespaced(ctx.client.clone(), &mailbox.namespace().unwrap_or_default());
    let pass = finalizer(&api, names::MAILBOX_FINALIZER, mailbox, |event| async {
        match event {
            Finalizer::Apply(cached) => match api.get_opt(&cached.name_any()).await? {
                Some(fresh) if fresh.metadata.deletion_timestamp.is_none() => {
                    pass(&fresh, &ctx).await
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

/// observe → plan → carry out → the status, written once.
async fn pass(mailbox: &Mailbox, ctx: &Context) -> Result<Action> {
    let now = Timestamp::now();
    // An `auto` Mailbox whose pod never came to exist goes (its finalizer ends the pass).
    if super::pods::delete_if_orphaned(mailbox, ctx, now).await? {
        return Ok(Action::await_change());
    }
    let observed;
    let plan = match plan::without_broker(mailbox, now) {
        Some(plan) => plan,
        None => {
            observed = observe::observe(mailbox, ctx).await?;
            plan::desired(mailbox, &observed, now, ctx.settings.resync)
        }
    };
    let (settle, annotated) = match plan {
        Plan::Settle(settle) => (settle, None),
        Plan::Expire => return end_of_life::expire(mailbox, ctx).await,
        Plan::Provision(provision, facts) => {
            provision::carry_out(mailbox, ctx, facts, &provision).await?
        }
    };
    status::settle(annotated.as_ref().unwrap_or(mailbox), ctx, settle).await
}
