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
use kube::runtime::{reflector, watcher, Controller, WatchStreamExt};
use kube::{Api, ResourceExt};

use self::plan::Plan;
use super::context::{bounded, drive, selected, Context};
use super::error::{Error, Result};
use super::names;
use super::triggers::{self, OnFirstSight, Writers};
use crate::crd::{Broadcast, Broker, Mailbox};

const CONTROLLER: &str = "mailbox";
/// How many Mailboxes are reconciled at once.
const CONCURRENCY: u16 = 16;

/// Runs the controller until `shutdown` completes. Its watches fill the operator's
/// [`Stores`](super::triggers::Stores) (`writers`), which every controller reads; each wakes
/// the controller only for what a pass acts on ([`triggers`]): a Mailbox's spec, labels,
/// finalizers, deletion or why it is not Ready (not the rest of its status); a Broadcast's spec,
/// for the Mailboxes of its namespace; a Broker's spec or `Available`, for the Mailboxes that
/// name it; a managed Secret changed or deleted by someone else.
pub async fn run(
    ctx: Arc<Context>,
    writers: Writers,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let mailboxes = watcher(Api::<Mailbox>::all(client.clone()), Default::default());
    let mailboxes = triggers::changes(
        reflector(writers.mailboxes, mailboxes.default_backoff()),
        triggers::mailbox_spec,
        OnFirstSight::Trigger,
    );
    let managed = watcher::Config::default().labels(&format!("{}=true", names::MANAGED_LABEL));
    let secrets = watcher(Api::<Secret>::all(client.clone()), managed).default_backoff();
    let secrets = triggers::changes(
        reflector(writers.secrets, secrets),
        triggers::secret_contents,
        OnFirstSight::Ignore,
    );
    let broadcasts = watcher(Api::<Broadcast>::all(client.clone()), Default::default());
    let broadcasts = triggers::changes(
        reflector(writers.broadcasts, broadcasts.default_backoff()),
        triggers::spec_of,
        OnFirstSight::Trigger,
    );
    let brokers = watcher(Api::<Broker>::all(client), Default::default()).default_backoff();
    let brokers = triggers::changes(
        reflector(writers.brokers, brokers),
        triggers::broker_facts,
        OnFirstSight::Trigger,
    );
    // The Mailboxes a change concerns: those of a Broadcast's namespace (membership), those
    // whose brokerRef names a Broker (which may be in another namespace).
    let cached = ctx.stores.mailboxes.store();
    let (store, for_broker) = (cached.clone(), cached.clone());
    let controller = Controller::for_stream(mailboxes, cached.clone())
        .with_config(bounded(CONCURRENCY))
        .owns_stream(secrets)
        .watches_stream(broadcasts, move |b| {
            selected(&store, |m| m.namespace() == b.namespace())
        })
        .watches_stream(brokers, move |b| {
            selected(&for_broker, |m| {
                let own = m.namespace().unwrap_or_default();
                m.spec.broker_ref.refers_to(&own, &b)
            })
        });
    drive(controller, reconcile, ctx, shutdown).await;
}

/// One pass. The object handed over comes from the watch cache, which can lag behind what this
/// controller itself just wrote (the status, the user key annotation); decisions that rest on
/// those (`createdAt`, `expiresAt` set once, whether a creation is a re-creation) must not be
/// made on a lagging copy, so the object is read afresh when the cache has not shown the last
/// write yet ([`OwnWrites`](super::context::OwnWrites)).
#[tracing::instrument(skip_all, fields(
    namespace = mailbox.namespace().unwrap_or_default(),
    name = mailbox.name_any(),
    generation = mailbox.metadata.generation.unwrap_or_default(),
))]
async fn reconcile(mailbox: Arc<Mailbox>, ctx: Arc<Context>) -> Result<Action> {
    let api =
        Api::<Mailbox>::namespaced(ctx.client.clone(), &mailbox.namespace().unwrap_or_default());
    let pass = async {
        let mailbox = match ctx.own_writes.shown_in(&*mailbox) {
            true => mailbox,
            false => match api.get_opt(&mailbox.name_any()).await? {
                Some(fresh) => Arc::new(fresh),
                // Gone since the cache saw it: nothing left to do.
                None => return Ok(Action::await_change()),
            },
        };
        let finalized = finalizer(&api, names::MAILBOX_FINALIZER, mailbox, |event| async {
            match event {
                Finalizer::Apply(mailbox) => pass(&mailbox, &ctx).await,
                Finalizer::Cleanup(mailbox) => end_of_life::cleanup(&mailbox, &ctx).await,
            }
        });
        finalized.await.map_err(|e| Error::Finalizer(Box::new(e)))
    };
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
