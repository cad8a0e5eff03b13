//! Pods with an `auto` mailbox own it. The webhook creates the Mailbox before the pod exists
//! (a pod being admitted has no uid yet, often not even a name), so ownership is set here
//! afterwards: this controller watches pods labelled `mq9.io/pod-mailbox=true` and adds the pod
//! as owner of the Mailbox named in its `mq9.io/injected` annotation. Kubernetes' garbage
//! collector then deletes the Mailbox with the pod, and the Mailbox's finalizer deletes the
//! mailbox on the broker. A Mailbox whose pod never came to exist ends at its TTL
//! (`expirationPolicy: Delete`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::{watcher, Controller};
use kube::{Api, Resource, ResourceExt};
use serde_json::{json, Value};

use super::context::{drive, Context};
use super::error::Result;
use super::names::{INJECTED_ANNOTATION, POD_MAILBOX_LABEL};
use crate::crd::Mailbox;

const CONTROLLER: &str = "pod";

pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let pods = Api::<Pod>::all(ctx.client.clone());
    let labelled = watcher::Config::default().labels(&format!("{POD_MAILBOX_LABEL}=true"));
    drive(Controller::new(pods, labelled), reconcile, ctx, shutdown).await;
}

#[tracing::instrument(skip_all, fields(
    namespace = pod.namespace().unwrap_or_default(),
    name = pod.name_any(),
))]
async fn reconcile(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action> {
    ctx.measured(CONTROLLER, adopt(&pod, &ctx)).await
}

async fn adopt(pod: &Pod, ctx: &Context) -> Result<Action> {
    let Some(name) = pod.annotations().get(INJECTED_ANNOTATION) else {
        return Ok(Action::await_change());
    };
    let mailboxes =
        Api::<Mailbox>::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let Some(mailbox) = mailboxes.get_opt(name).await? else {
        return Ok(Action::await_change());
    };
    if let Some(patch) = owner_patch(pod, &mailbox) {
        mailboxes
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        tracing::info!(pod = %pod.name_any(), mailbox = %name, "the pod owns its mailbox");
    }
    Ok(Action::await_change())
}

/// The merge patch that adds `pod` to the Mailbox's owners, or `None` when it is one already,
/// when the pod has no uid, or when the Mailbox is not a pod mailbox (a Mailbox someone named
/// in `mq9.io/injected` by hand is never adopted).
pub fn owner_patch(pod: &Pod, mailbox: &Mailbox) -> Option<Value> {
    let owner = pod.controller_owner_ref(&())?;
    if mailbox.labels().get(POD_MAILBOX_LABEL).map(String::as_str) != Some("true") {
        return None;
    }
    let owners = mailbox.owner_references();
    if owners.iter().any(|o| o.uid == owner.uid) {
        return None;
    }
    // Not the controller: the pod owns the Mailbox for garbage collection only.
    let owner = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        controller: None,
        ..owner
    };
    let mut all = owners.to_vec();
    all.push(owner);
    Some(json!({"metadata": {"ownerReferences": all}}))
}

/// Deletes `mailbox` if it is an `auto` Mailbox whose pod never came to exist (see the module
/// doc); whether it did.
pub async fn delete_if_orphaned(mailbox: &Mailbox, ctx: &Context, now: Timestamp) -> Result<bool> {
    if !awaits_its_pod(mailbox, now, ctx.settings.auto_mailbox_grace) {
        return Ok(false);
    }
    let namespace = mailbox.namespace().unwrap_or_default();
    let labelled = ListParams::default().labels(&format!("{POD_MAILBOX_LABEL}=true"));
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
        .list(&labelled)
        .await?;
    if claimed(&pods.items, &mailbox.name_any()) {
        // Its pod exists and is about to adopt it.
        return Ok(false);
    }
    // The uid precondition: never a Mailbox of the same name created since.
    let only_this = DeleteParams {
        preconditions: Some(Preconditions {
            uid: mailbox.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    Api::<Mailbox>::namespaced(ctx.client.clone(), &namespace)
        .delete(&mailbox.name_any(), &only_this)
        .await?;
    let grace = ctx.settings.auto_mailbox_grace.as_secs();
    let note = format!("no pod came to exist for this auto Mailbox within {grace}s: deleted");
    ctx.event(
        &mailbox.object_ref(&()),
        EventType::Normal,
        "Orphaned",
        note,
    )
    .await;
    Ok(true)
}

/// Whether `mailbox` is an `auto` Mailbox that no pod owns yet although it is older than
/// `grace`: the one case where its pod must be looked for.
pub fn awaits_its_pod(mailbox: &Mailbox, now: Timestamp, grace: Duration) -> bool {
    let auto = mailbox.labels().get(POD_MAILBOX_LABEL).map(String::as_str) == Some("true");
    let owned_by_pod = mailbox.owner_references().iter().any(|o| o.kind == "Pod");
    let old_enough = mailbox
        .metadata
        .creation_timestamp
        .as_ref()
        .is_some_and(|created| now.as_second() - created.0.as_second() >= grace.as_secs() as i64);
    auto && !owned_by_pod && old_enough && mailbox.metadata.deletion_timestamp.is_none()
}

/// Whether one of `pods` was given the Mailbox `name` by the webhook.
pub fn claimed(pods: &[Pod], name: &str) -> bool {
    pods.iter().any(|pod| {
        pod.annotations()
            .get(INJECTED_ANNOTATION)
            .map(String::as_str)
            == Some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::webhook::inject::auto_mailbox;

    fn pod() -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "web-1", "namespace": "apps", "uid": "pod-uid"}}),
        )
        .unwrap()
    }

    #[test]
    fn a_pod_adopts_its_auto_mailbox_once() {
        let mut mailbox = auto_mailbox(&pod(), "apps", "abc123", "agents", "1h");
        let patch = owner_patch(&pod(), &mailbox).expect("adopted");
        let owner = &patch["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["uid"].as_str()),
            (Some("Pod"), Some("pod-uid"))
        );
        assert!(owner.get("controller").is_none());
        mailbox.metadata.owner_references =
            serde_json::from_value(patch["metadata"]["ownerReferences"].clone()).unwrap();
        assert_eq!(owner_patch(&pod(), &mailbox), None, "already owned");
    }

    #[test]
    fn only_an_unowned_auto_mailbox_past_its_grace_is_looked_after() {
        let grace = Duration::from_secs(300);
        let mut mailbox = auto_mailbox(&pod(), "apps", "abc123", "agents", "1h");
        let created = Timestamp::from_second(1_000_000).unwrap();
        mailbox.metadata.creation_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(created),
        );
        let at = |secs: i64| Timestamp::from_second(created.as_second() + secs).unwrap();
        assert!(
            !awaits_its_pod(&mailbox, at(299), grace),
            "still being admitted"
        );
        assert!(awaits_its_pod(&mailbox, at(300), grace));
        let mut owned = mailbox.clone();
        owned.metadata.owner_references = serde_json::from_value(
            owner_patch(&pod(), &mailbox).unwrap()["metadata"]["ownerReferences"].clone(),
        )
        .unwrap();
        assert!(!awaits_its_pod(&owned, at(3600), grace), "its pod owns it");
        let mut hand_made = mailbox.clone();
        hand_made.metadata.labels = None;
        assert!(
            !awaits_its_pod(&hand_made, at(3600), grace),
            "not the webhook's"
        );
    }

    #[test]
    fn a_mailbox_is_claimed_only_by_a_pod_naming_it() {
        let injected = |name: &str| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": "p", "annotations": {INJECTED_ANNOTATION: name}}}),
            )
            .unwrap()
        };
        let pods = [pod(), injected("web-1-aaaaaa")];
        assert!(claimed(&pods, "web-1-aaaaaa"));
        assert!(!claimed(&pods, "web-1-bbbbbb"));
        assert!(!claimed(&[], "web-1-aaaaaa"));
    }

    #[test]
    fn hand_made_mailboxes_are_never_adopted() {
        let mut mailbox = auto_mailbox(&pod(), "apps", "abc123", "agents", "1h");
        mailbox.metadata.labels = None;
        assert_eq!(owner_patch(&pod(), &mailbox), None);
    }
}
