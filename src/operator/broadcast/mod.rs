//! The Broadcast controller. Membership is decided by
//! [`is_member`](crate::operator::mailbox::membership::is_member) (selector and refs), and carried
//! out by the Mailbox controller, the single writer of every mailbox's subscriptions: it
//! watches Broadcasts and subscribes each member to the union of its topics. This controller
//! validates the Broadcast, counts the members that hold the subscription (Ready Mailboxes), and
//! keeps the status and Events current; it watches Mailboxes so that label changes are
//! reflected at once, and Brokers so that a Broadcast refused by its Broker
//! (`spec.allowedNamespaces`) becomes Ready as soon as it is allowed.
//!
//! One pass: observe (the namespace's Mailboxes, the Broker, from the watch caches) →
//! [`plan::desired`] → write the status once, when it changed → publish the plan's Events.

pub mod plan;

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, ResourceExt};

use super::context::{bounded, drive, selected, Context};
use super::error::Result;
use super::triggers::{self, OnFirstSight};
use crate::crd::{Broadcast, Broker, Mailbox};

const CONTROLLER: &str = "broadcast";
/// How many Broadcasts are reconciled at once.
const CONCURRENCY: u16 = 4;
/// How long a Broadcast's pass waits for more changes: when a hundred members turn Ready
/// together, the count is written once or twice, not a hundred times.
const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs the controller until `shutdown` completes. It is woken by a Mailbox only when what it
/// counts changes (membership, `Ready`, deletion; [`triggers::mailbox_membership`]), and by a
/// Broker only when its spec does; a pass reads both from the operator's watch caches.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<Broadcast>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(bounded(CONCURRENCY).debounce(DEBOUNCE));
    let mailboxes = watcher(Api::<Mailbox>::all(client.clone()), Default::default());
    let mailboxes = triggers::changes(
        mailboxes.default_backoff(),
        triggers::mailbox_membership,
        OnFirstSight::Trigger,
    );
    let brokers = watcher(Api::<Broker>::all(client), Default::default()).default_backoff();
    let brokers = triggers::changes(brokers, triggers::spec_of, OnFirstSight::Trigger);
    // The Broadcasts a change concerns: those of a Mailbox's namespace, those of a Broker.
    let (store, for_broker) = (controller.store(), controller.store());
    let controller = controller
        .watches_stream(mailboxes, move |mailbox| {
            selected(&store, |b| b.namespace() == mailbox.namespace())
        })
        .watches_stream(brokers, move |broker| {
            selected(&for_broker, |b| {
                let own = b.namespace().unwrap_or_default();
                b.spec.broker_ref.refers_to(&own, &broker)
            })
        });
    drive(controller, reconcile, ctx, shutdown).await;
}

#[tracing::instrument(skip_all, fields(
    namespace = broadcast.namespace().unwrap_or_default(),
    name = broadcast.name_any(),
    generation = broadcast.metadata.generation.unwrap_or_default(),
))]
async fn reconcile(broadcast: Arc<Broadcast>, ctx: Arc<Context>) -> Result<Action> {
    ctx.measured(CONTROLLER, pass(&broadcast, &ctx)).await
}

async fn pass(broadcast: &Broadcast, ctx: &Context) -> Result<Action> {
    let namespace = broadcast.namespace().unwrap_or_default();
    let mailboxes = ctx.stores.mailboxes_in(&namespace).await;
    let broker_ref = &broadcast.spec.broker_ref;
    let broker_namespace = broker_ref.namespace_or(&namespace);
    let broker = ctx.stores.broker(broker_namespace, &broker_ref.name).await;
    let observed = plan::Observed {
        broadcast,
        mailboxes: &mailboxes,
        refused: broker
            .filter(|b| !b.admits(&namespace))
            .map(|b| b.refusal(&namespace)),
        now: Timestamp::now(),
    };
    let plan = plan::desired(&observed);
    if let Some(status) = &plan.status {
        ctx.patch_status(broadcast, status).await?;
    }
    ctx.emit(broadcast, plan.notes).await;
    Ok(Action::await_change())
}
