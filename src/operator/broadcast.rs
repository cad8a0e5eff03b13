//! The Broadcast controller. Membership is decided by [`plan::is_member`] (selector and refs),
//! and carried out by the Mailbox controller, the single writer of every mailbox's
//! subscriptions: it watches Broadcasts and subscribes each member to the union of its topics
//! ([`plan::desired_topics`]). This controller validates the Broadcast, counts the members that
//! hold the subscription (Ready Mailboxes), and keeps the status and Events current; it watches
//! Mailboxes so that label changes are reflected at once, and Brokers so that a Broadcast
//! refused by its Broker (`spec.allowedNamespaces`) becomes Ready as soon as it is allowed.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, Resource, ResourceExt};

use super::context::{error_policy, Context};
use super::error::Result;
use super::mailbox::plan;
use crate::crd::{Broadcast, BroadcastStatus, Broker, Mailbox};
use crate::protocol::subject;

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
    let store = controller.store();
    // The Broadcasts a change concerns: those of a Mailbox's namespace, those of a Broker.
    let selected = move |wanted: &dyn Fn(&Broadcast) -> bool| {
        store
            .state()
            .into_iter()
            .filter(|b| wanted(b))
            .map(|b| ObjectRef::from_obj(&*b))
            .collect::<Vec<_>>()
    };
    let for_broker = selected.clone();
    controller
        .watches(
            Api::<Mailbox>::all(client.clone()),
            watcher::Config::default(),
            move |mailbox| selected(&|b| b.namespace() == mailbox.namespace()),
        )
        .watches(
            Api::<Broker>::all(client),
            watcher::Config::default(),
            move |broker| {
                for_broker(&|b| {
                    let own = b.namespace().unwrap_or_default();
                    b.spec.broker_ref.refers_to(&own, &broker)
                })
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(broadcast: Arc<Broadcast>, ctx: Arc<Context>) -> Result<Action> {
    ctx.measured(CONTROLLER, apply(&broadcast, &ctx)).await
}

async fn apply(broadcast: &Broadcast, ctx: &Context) -> Result<Action> {
    let namespace = broadcast.namespace().unwrap_or_default();
    let mailboxes = Api::<Mailbox>::namespaced(ctx.client.clone(), &namespace)
        .list(&Default::default())
        .await?
        .items;
    let broker_ref = &broadcast.spec.broker_ref;
    let broker = Api::<Broker>::namespaced(ctx.client.clone(), broker_ref.namespace_or(&namespace))
        .get_opt(&broker_ref.name)
        .await?;
    let refused = broker
        .filter(|b| !b.admits(&namespace))
        .map(|b| b.refusal(&namespace));
    let status = next_status(broadcast, &mailboxes, refused, Timestamp::now());
    let before = broadcast.status.clone().unwrap_or_default();
    if before == status {
        return Ok(Action::await_change());
    }
    let api = Api::<Broadcast>::namespaced(ctx.client.clone(), &namespace);
    // A merge patch of the status alone: this controller is its only writer, so there is no
    // lost update to guard against with a resourceVersion (the cached object may lag).
    let patch = serde_json::json!({"status": status});
    api.patch_status(
        &broadcast.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    let reference = broadcast.object_ref(&());
    if before.member_count != status.member_count {
        let note = format!(
            "{} member mailboxes hold the subscription to {}",
            status.member_count, broadcast.spec.topic
        );
        ctx.event(&reference, EventType::Normal, "MembersChanged", note)
            .await;
    }
    let ready = |s: &BroadcastStatus| {
        super::conditions::find(&s.conditions, "Ready")
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    if ready(&before) != ready(&status) {
        if let Some(c) =
            super::conditions::find(&status.conditions, "Ready").filter(|c| c.status == "False")
        {
            ctx.event(&reference, EventType::Warning, &c.reason, c.message.clone())
                .await;
        }
    }
    Ok(Action::await_change())
}

/// The status: valid topic → Ready, with the number of member Mailboxes that are Ready (and so
/// hold the subscription). `refused`: why the Broker does not admit the Broadcast's namespace
/// (its Mailboxes are refused too, so no member holds the subscription).
pub fn next_status(
    broadcast: &Broadcast,
    mailboxes: &[Mailbox],
    refused: Option<String>,
    now: Timestamp,
) -> BroadcastStatus {
    let mut status = broadcast.status.clone().unwrap_or_default();
    let generation = broadcast.metadata.generation;
    status.observed_generation = generation;
    let namespace = broadcast.namespace().unwrap_or_default();
    let same_broker = |m: &Mailbox| {
        m.spec.broker_ref.name == broadcast.spec.broker_ref.name
            && m.spec.broker_ref.namespace_or(&namespace)
                == broadcast.spec.broker_ref.namespace_or(&namespace)
    };
    let members: Vec<&Mailbox> = mailboxes
        .iter()
        .filter(|m| same_broker(m) && plan::is_member(broadcast, m))
        .collect();
    let holding = members
        .iter()
        .filter(|m| {
            m.status
                .as_ref()
                .is_some_and(|s| super::conditions::is_true(&s.conditions, "Ready"))
        })
        .count();
    status.member_count = holding as i32;
    match (subject::validate_topic(&broadcast.spec.topic), refused) {
        (Err(e), _) => super::conditions::set(
            &mut status.conditions,
            "Ready",
            false,
            "Invalid",
            e.message,
            generation,
            now,
        ),
        (Ok(()), Some(refused)) => super::conditions::set(
            &mut status.conditions,
            "Ready",
            false,
            "NamespaceNotAllowed",
            refused,
            generation,
            now,
        ),
        (Ok(()), None) => {
            let message = format!(
                "{holding} of {} member mailboxes hold the subscription",
                members.len()
            );
            super::conditions::set(
                &mut status.conditions,
                "Ready",
                true,
                "Subscribed",
                message,
                generation,
                now,
            )
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{BroadcastMembers, BroadcastSpec, BrokerRef, MailboxSpec, MailboxStatus};

    fn mailbox(name: &str, ready: bool, label: &str) -> Mailbox {
        let mut mailbox = Mailbox::new(
            name,
            MailboxSpec {
                broker_ref: BrokerRef {
                    name: "b".into(),
                    namespace: None,
                },
                ..Default::default()
            },
        );
        mailbox.metadata.namespace = Some("ns".into());
        mailbox.metadata.labels = Some([("team".to_owned(), label.to_owned())].into());
        let mut status = MailboxStatus::default();
        super::super::conditions::set(
            &mut status.conditions,
            "Ready",
            ready,
            "Created",
            "",
            None,
            Timestamp::UNIX_EPOCH,
        );
        mailbox.status = Some(status);
        mailbox
    }

    #[test]
    fn counts_ready_members_by_selector_and_ref() {
        let members = BroadcastMembers {
            mailbox_selector: Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some([("team".to_owned(), "a".to_owned())].into()),
                    match_expressions: None,
                },
            ),
            mailbox_refs: vec!["named".into()],
        };
        let mut broadcast = Broadcast::new(
            "tasks",
            BroadcastSpec {
                broker_ref: BrokerRef {
                    name: "b".into(),
                    namespace: None,
                },
                topic: "task.*".into(),
                members,
                publishers: vec![],
            },
        );
        broadcast.metadata.namespace = Some("ns".into());
        let mailboxes = [
            mailbox("a1", true, "a"),
            mailbox("a2", false, "a"),
            mailbox("named", true, "z"),
            mailbox("other", true, "z"),
        ];
        let status = next_status(&broadcast, &mailboxes, None, Timestamp::UNIX_EPOCH);
        assert_eq!(status.member_count, 2);
        assert!(super::super::conditions::is_true(
            &status.conditions,
            "Ready"
        ));
        let refused = Some("Broker ns/b does not allow namespace ns".to_owned());
        let status = next_status(&broadcast, &mailboxes, refused, Timestamp::UNIX_EPOCH);
        let ready = super::super::conditions::find(&status.conditions, "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "NamespaceNotAllowed")
        );
        assert!(ready.message.contains("ns/b"), "{}", ready.message);
        broadcast.spec.topic = "a..b".into();
        let status = next_status(&broadcast, &mailboxes, None, Timestamp::UNIX_EPOCH);
        assert_eq!(
            super::super::conditions::find(&status.conditions, "Ready")
                .unwrap()
                .reason,
            "Invalid"
        );
    }
}
