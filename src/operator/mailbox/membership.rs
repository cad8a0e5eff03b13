//! Broadcast membership, as pure functions: which Broadcasts count a Mailbox among their
//! members (selector and refs) or publishers, and so which topics the mailbox must hold. The
//! Mailbox controller carries it out (the single writer of subscriptions); the Broadcast
//! controller counts the members.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

use crate::crd::{Broadcast, Mailbox};

/// Every broadcast topic the mailbox must hold: its own `subscriptions` plus the topic of every
/// Broadcast (same namespace, same Broker) it is a member of.
pub fn desired_topics(mailbox: &Mailbox, broadcasts: &[Broadcast]) -> BTreeSet<String> {
    let namespace = mailbox.namespace().unwrap_or_default();
    let broker = mailbox.spec.broker_ref.namespace_or(&namespace);
    let mut topics: BTreeSet<String> = mailbox.spec.subscriptions.iter().cloned().collect();
    for broadcast in broadcasts {
        let same_broker = broadcast.spec.broker_ref.name == mailbox.spec.broker_ref.name
            && broadcast.spec.broker_ref.namespace_or(&namespace) == broker;
        if same_broker
            && broadcast.metadata.deletion_timestamp.is_none()
            && is_member(broadcast, mailbox)
        {
            topics.insert(broadcast.spec.topic.clone());
        }
    }
    topics
}

/// Whether a Broadcast (of the same namespace) counts the mailbox among its members.
pub fn is_member(broadcast: &Broadcast, mailbox: &Mailbox) -> bool {
    if broadcast.namespace() != mailbox.namespace() {
        return false;
    }
    let members = &broadcast.spec.members;
    members
        .mailbox_refs
        .iter()
        .any(|name| *name == mailbox.name_any())
        || members
            .mailbox_selector
            .as_ref()
            .is_some_and(|s| selects(s, mailbox))
}

/// Whether the credentials of this mailbox may publish on the Broadcast's topic.
pub fn is_publisher(broadcast: &Broadcast, mailbox: &Mailbox) -> bool {
    broadcast.namespace() == mailbox.namespace()
        && broadcast
            .spec
            .publishers
            .iter()
            .any(|n| *n == mailbox.name_any())
}

/// Label-selector matching (`matchLabels` and `matchExpressions`). An empty selector selects
/// everything, as in Kubernetes.
pub fn selects(selector: &LabelSelector, mailbox: &Mailbox) -> bool {
    let labels = mailbox.labels();
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}
