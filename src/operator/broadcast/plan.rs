//! The Broadcast controller's decisions, as pure functions of what it observed: the status
//! (Ready, the number of member Mailboxes holding the subscription) and the Events that tell
//! its changes. Membership itself ([`is_member`]) is shared with the Mailbox controller, which
//! carries it out.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::crd::{Broadcast, BroadcastStatus, Mailbox};
use crate::operator::conditions;
use crate::operator::context::Note;
use crate::operator::mailbox::membership::is_member;
use crate::protocol::subject;

/// What one pass observed.
pub struct Observed<'a> {
    pub broadcast: &'a Broadcast,
    /// The Mailboxes of the Broadcast's namespace.
    pub mailboxes: &'a [Mailbox],
    /// Why the Broker does not admit the Broadcast's namespace, if it does not.
    pub refused: Option<String>,
    pub now: Timestamp,
}

/// What the pass does: write `status` (only when it changed), then publish `notes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub status: Option<BroadcastStatus>,
    pub notes: Vec<Note>,
}

/// The plan for what was observed: a MembersChanged Event when the count of members holding
/// the subscription moved, a Warning when Ready turned False (or changed its reason).
pub fn desired(observed: &Observed<'_>) -> Plan {
    let broadcast = observed.broadcast;
    let status = next_status(
        broadcast,
        observed.mailboxes,
        observed.refused.clone(),
        observed.now,
    );
    let before = broadcast.status.clone().unwrap_or_default();
    if before == status {
        return Plan {
            status: None,
            notes: Vec::new(),
        };
    }
    let mut notes = Vec::new();
    if before.member_count != status.member_count {
        let message = format!(
            "{} member mailboxes hold the subscription to {}",
            status.member_count, broadcast.spec.topic
        );
        notes.push(Note::normal("MembersChanged", message));
    }
    let ready = |s: &BroadcastStatus| {
        conditions::find(&s.conditions, "Ready").map(|c| (c.status.clone(), c.reason.clone()))
    };
    if ready(&before) != ready(&status) {
        let failed = conditions::find(&status.conditions, "Ready").filter(|c| c.status == "False");
        if let Some(c) = failed {
            notes.push(Note::warning(&c.reason, c.message.clone()));
        }
    }
    Plan {
        status: Some(status),
        notes,
    }
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
        .filter(|m| same_broker(m) && is_member(broadcast, m))
        .collect();
    let holding = members
        .iter()
        .filter(|m| {
            m.status
                .as_ref()
                .is_some_and(|s| conditions::is_true(&s.conditions, "Ready"))
        })
        .count();
    status.member_count = holding as i32;
    match (subject::validate_topic(&broadcast.spec.topic), refused) {
        (Err(e), _) => conditions::set(
            &mut status.conditions,
            "Ready",
            false,
            "Invalid",
            e.message,
            generation,
            now,
        ),
        (Ok(()), Some(refused)) => conditions::set(
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
            conditions::set(
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
        conditions::set(
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

    /// The Broadcast `tasks` of `ns` on Broker `b`.
    fn broadcast(members: BroadcastMembers) -> Broadcast {
        let broker_ref = BrokerRef {
            name: "b".into(),
            namespace: None,
        };
        let topic = "task.*".into();
        let publishers = vec![];
        let spec = BroadcastSpec {
            broker_ref,
            topic,
            members,
            publishers,
        };
        let mut broadcast = Broadcast::new("tasks", spec);
        broadcast.metadata.namespace = Some("ns".into());
        broadcast
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
        let mut broadcast = broadcast(members);
        let mailboxes = [
            mailbox("a1", true, "a"),
            mailbox("a2", false, "a"),
            mailbox("named", true, "z"),
            mailbox("other", true, "z"),
        ];
        let status = next_status(&broadcast, &mailboxes, None, Timestamp::UNIX_EPOCH);
        assert_eq!(status.member_count, 2);
        assert!(conditions::is_true(&status.conditions, "Ready"));
        let refused = Some("Broker ns/b does not allow namespace ns".to_owned());
        let status = next_status(&broadcast, &mailboxes, refused, Timestamp::UNIX_EPOCH);
        let ready = conditions::find(&status.conditions, "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "NamespaceNotAllowed")
        );
        assert!(ready.message.contains("ns/b"), "{}", ready.message);
        broadcast.spec.topic = "a..b".into();
        let status = next_status(&broadcast, &mailboxes, None, Timestamp::UNIX_EPOCH);
        assert_eq!(
            conditions::find(&status.conditions, "Ready")
                .unwrap()
                .reason,
            "Invalid"
        );
    }

    #[test]
    fn a_pass_writes_and_tells_only_what_changed() {
        let mut broadcast = broadcast(BroadcastMembers {
            mailbox_selector: None,
            mailbox_refs: vec!["a1".into()],
        });
        let mailboxes = [mailbox("a1", true, "a")];
        let observed = |broadcast: &Broadcast, refused: Option<&str>| {
            desired(&Observed {
                broadcast,
                mailboxes: &mailboxes,
                refused: refused.map(str::to_owned),
                now: Timestamp::UNIX_EPOCH,
            })
        };
        let first = observed(&broadcast, None);
        let reasons: Vec<&str> = first.notes.iter().map(|n| n.reason.as_str()).collect();
        assert_eq!(reasons, ["MembersChanged"], "Ready=True is no warning");
        broadcast.status = first.status;
        assert_eq!(
            observed(&broadcast, None),
            Plan {
                status: None,
                notes: vec![]
            },
            "an unchanged world writes nothing"
        );
        let refused = observed(&broadcast, Some("not allowed"));
        assert!(refused.status.is_some());
        let reasons: Vec<&str> = refused.notes.iter().map(|n| n.reason.as_str()).collect();
        assert_eq!(reasons, ["NamespaceNotAllowed"]);
    }
}
