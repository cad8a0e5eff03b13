//! Pods with an `auto` mailbox own it. The webhook creates the Mailbox before the pod exists
//! (a pod being admitted has no uid yet, often not even a name), so ownership is set here
//! afterwards: this controller watches pods labelled `mq9.io/pod-mailbox=true` and adds the pod
//! as owner of the Mailbox named in its `mq9.io/injected` annotation. Kubernetes' garbage
//! collector then deletes the Mailbox with the pod, and the Mailbox's finalizer deletes the
//! mailbox on the broker. A Mailbox whose pod never came to exist ends at its TTL
//! (`expirationPolicy: Delete`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
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
    fn hand_made_mailboxes_are_never_adopted() {
        let mut mailbox = auto_mailbox(&pod(), "apps", "abc123", "agents", "1h");
        mailbox.metadata.labels = None;
        assert_eq!(owner_patch(&pod(), &mailbox), None);
    }
}
