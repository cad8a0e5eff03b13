//! The Broadcast controller. Membership is decided by
//! [`is_member`](crate::operator::mailbox::membership::is_member) (selector and refs), and carried
//! out by the Mailbox controller, the single writer of every mailbox's subscriptions: it
//! watches Broadcasts and subscribes each member to the union of its topics. This controller
//! validates the Broadcast, counts the members that hold the subscription (Ready Mailboxes), and
//! keeps the status and Events current; it watches Mailboxes so that label changes are
//! reflected at once, and Brokers so that a Broadcast refused by its Broker
//! (`spec.allowedNamespaces`) becomes Ready as soon as it is allowed.
//!
//! One pass: observe (the namespace's Mailboxes, the Broker) → [`plan::desired`] → write the
//! status once, when it changed → publish the plan's Events.

pub mod plan;

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::{watcher, Controller};
use kube::{Api, ResourceExt};

use super::context::{drive, selected, Context};
use super::error::Result;
use crate::crd::{Broadcast, Broker, Mailbox};

const CONTROLLER: &str = "broadcast";

pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<Broadcast>::all(client.clone()),
        watcher::Config::default(),
    );
    // The Broadcasts a change concerns: those of a Mailbox's namespace, those of a Broker.
    let (store, for_broker) = (controller.store(), controller.store());
    let controller = controller
        .watches(
            Api::<Mailbox>::all(client.clone()),
            watcher::Config::default(),
            move |mailbox| selected(&store, |b| b.namespace() == mailbox.namespace()),
        )
        .watches(
            Api::<Broker>::all(client),
            watcher::Config::default(),
            move |broker| {
                selected(&for_broker, |b| {
                    let own = b.namespace().unwrap_or_default();
                    b.spec.broker_ref.refers_to(&own, &broker)
                })
            },
        );
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
    let mailboxes = Api::<Mailbox>::namespaced(ctx.client.clone(), &namespace)
        .list(&Default::default())
        .await?
        .items;
    let broker_ref = &broadcast.spec.broker_ref;
    let broker = Api::<Broker>::namespaced(ctx.client.clone(), broker_ref.namespace_or(&namespace))
        .get_opt(&broker_ref.name)
        .await?;
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
