//! The Mailbox controller's decisions, as pure functions of what it observed: validation,
//! expiry, the finalizer's fate, the next status, and which broadcast topics the mailbox must
//! hold. The reconcile loop (`super`) only gathers facts, calls these, and applies the result.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::crd::{duration, Broadcast, Broker, DeletionPolicy, Mailbox, MailboxStatus};
use crate::operator::conditions;
use crate::operator::names::USER_KEY_ANNOTATION;
use crate::protocol::{address, subject};

/// How long a finalizer keeps trying an unreachable broker before it lets the object go.
pub const RELEASE_AFTER: Duration = Duration::from_secs(300);

/// The user key recorded by [`USER_KEY_ANNOTATION`], if any.
pub fn issued_user_key(mailbox: &Mailbox) -> Option<&str> {
    mailbox
        .annotations()
        .get(USER_KEY_ANNOTATION)
        .map(String::as_str)
        .filter(|key| key.starts_with('U'))
}

/// The reasons of the `Ready` condition (operator.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Created,
    BrokerNotFound,
    BrokerNotReady,
    AddressConflict,
    Expired,
    Invalid,
    NamespaceNotAllowed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Created => "Created",
            Reason::BrokerNotFound => "BrokerNotFound",
            Reason::BrokerNotReady => "BrokerNotReady",
            Reason::AddressConflict => "AddressConflict",
            Reason::Expired => "Expired",
            Reason::Invalid => "Invalid",
            Reason::NamespaceNotAllowed => "NamespaceNotAllowed",
        }
    }
}

/// What the controller learned about the mailbox's Broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerState {
    /// No such Broker.
    Missing,
    /// The Broker is being deleted.
    Deleting,
    /// The Broker exists but is not Available (or its NATS cannot be reached).
    NotReady(String),
    Ready,
}

/// Checks what the schema cannot: broadcast topics and sendTo patterns.
pub fn validate(mailbox: &Mailbox) -> Result<(), String> {
    for topic in &mailbox.spec.subscriptions {
        subject::validate_topic(topic).map_err(|e| format!("subscriptions: {}", e.message))?;
    }
    for pattern in &mailbox.spec.send_to {
        let literal = pattern.replace(['*', '>'], "x");
        let tokens_ok = pattern
            .split('.')
            .enumerate()
            .all(|(i, t)| t != ">" || i + 1 == pattern.split('.').count());
        if address::validate(&literal).is_err() || !tokens_ok {
            return Err(format!(
                "sendTo: {pattern:?} is not an address pattern (a-z, 0-9, dots, * and a final >)"
            ));
        }
    }
    if let Some(ttl) = &mailbox.spec.ttl {
        duration::parse(ttl).map_err(|e| format!("ttl: {e}"))?;
    }
    Ok(())
}

/// Whether the Mailbox may bind to `broker`; `Err` holds the condition message when the
/// Broker does not admit the Mailbox's namespace (`spec.allowedNamespaces`).
///
/// A Mailbox that was Ready and whose namespace the Broker stops admitting is frozen, not
/// destroyed: Ready=False, nothing more is done for it on the broker and no credentials are
/// minted, but its mailbox, messages and Secret stay, so a mistaken edit of the Broker is undone
/// by reverting it (same address, same messages). What cuts the namespace off at once is the
/// Broker's NetworkPolicy; credentials already handed out end at their expiry. Deleting the
/// Mailbox still deletes its mailbox on the broker (the finalizer ignores admission: cleaning up
/// what the object owns is always allowed).
pub fn admission(mailbox: &Mailbox, broker: &Broker) -> Result<(), String> {
    let namespace = mailbox.namespace().unwrap_or_default();
    match broker.admits(&namespace) {
        true => Ok(()),
        false => Err(broker.refusal(&namespace)),
    }
}

/// The mailbox's lifetime in seconds (0 = never), from `spec.ttl`.
pub fn ttl_secs(mailbox: &Mailbox) -> u64 {
    mailbox
        .spec
        .ttl
        .as_deref()
        .and_then(|ttl| duration::parse(ttl).ok().flatten())
        .map_or(0, |d| d.as_secs())
}

/// When a mailbox created at `created_at` expires.
pub fn expiry(created_at: Timestamp, ttl_secs: u64) -> Option<Timestamp> {
    (ttl_secs > 0).then(|| {
        Timestamp::from_second(created_at.as_second().saturating_add(ttl_secs as i64))
            .unwrap_or(Timestamp::MAX)
    })
}

/// The recorded expiry, if the mailbox was created with a TTL.
pub fn recorded_expiry(status: Option<&MailboxStatus>) -> Option<Timestamp> {
    status?.expires_at.as_deref()?.parse().ok()
}

/// Whether the recorded expiry has passed.
pub fn is_expired(status: Option<&MailboxStatus>, now: Timestamp) -> bool {
    recorded_expiry(status).is_some_and(|at| at <= now)
}

/// What the finalizer does with an object being deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finalize {
    /// Delete the mailbox on the broker, then release.
    DeleteOnBroker,
    /// Release without touching the broker; the string says why (for the Event).
    Release(String),
    /// The broker is unreachable but may come back: try again later.
    RetryLater,
}

/// Decides the finalizer's step. It must never wedge: a missing or deleting Broker, a
/// `Retain` policy, an expired mailbox, or a broker unreachable for longer than
/// [`RELEASE_AFTER`] all release at once.
pub fn finalize(mailbox: &Mailbox, broker: &BrokerState, now: Timestamp) -> Finalize {
    if mailbox.spec.deletion_policy == DeletionPolicy::Retain {
        return Finalize::Release(
            "deletionPolicy is Retain: the mailbox stays on the broker".into(),
        );
    }
    if is_expired(mailbox.status.as_ref(), now) {
        return Finalize::Release("the mailbox already expired on the broker".into());
    }
    match broker {
        BrokerState::Ready => Finalize::DeleteOnBroker,
        BrokerState::Missing => Finalize::Release("the Broker no longer exists".into()),
        BrokerState::Deleting => Finalize::Release("the Broker is being deleted".into()),
        BrokerState::NotReady(why) => {
            if release_due(mailbox, now) {
                Finalize::Release(format!(
                    "the Broker was unreachable for {}s ({why}); the mailbox may remain on it until its TTL",
                    RELEASE_AFTER.as_secs()
                ))
            } else {
                Finalize::RetryLater
            }
        }
    }
}

/// Whether a Mailbox being deleted has waited [`RELEASE_AFTER`] since its deletion began: a
/// finalizer step that still fails then gives up instead of wedging the object.
pub fn release_due(mailbox: &Mailbox, now: Timestamp) -> bool {
    let since = mailbox
        .metadata
        .deletion_timestamp
        .as_ref()
        .map_or(now, |t| t.0);
    let waited = now.as_second().saturating_sub(since.as_second());
    waited >= RELEASE_AFTER.as_secs() as i64
}

/// The result of one pass, as the status will tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The mailbox exists on the broker and its Secret is written.
    Ready {
        created_at: Timestamp,
        expires_at: Option<Timestamp>,
        secret_name: String,
    },
    NotReady {
        reason: Reason,
        message: String,
    },
}

/// The next status. `createdAt` and `expiresAt` are written once and never moved; a condition's
/// transition time moves only when its status changes; nothing depends on the clock otherwise,
/// so an unchanged world yields an identical status (and no write).
pub fn next_status(mailbox: &Mailbox, outcome: &Outcome, now: Timestamp) -> MailboxStatus {
    let mut status = mailbox.status.clone().unwrap_or_default();
    let generation = mailbox.metadata.generation;
    status.observed_generation = generation;
    match outcome {
        Outcome::Ready {
            created_at,
            expires_at,
            secret_name,
        } => {
            status
                .created_at
                .get_or_insert_with(|| created_at.to_string());
            if status.expires_at.is_none() {
                status.expires_at = expires_at.map(|t| t.to_string());
            }
            status.secret_name = Some(secret_name.clone());
            status.binding = Some(crate::crd::Binding {
                name: secret_name.clone(),
            });
            conditions::set(
                &mut status.conditions,
                "Ready",
                true,
                Reason::Created.as_str(),
                "the mailbox exists on the broker; its address and credentials are in the Secret",
                generation,
                now,
            );
        }
        Outcome::NotReady { reason, message } => {
            if *reason == Reason::Expired {
                status.secret_name = None;
                status.binding = None;
            }
            conditions::set(
                &mut status.conditions,
                "Ready",
                false,
                reason.as_str(),
                message.clone(),
                generation,
                now,
            );
        }
    }
    status
}

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

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
