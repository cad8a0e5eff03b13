//! How a pass of the Mailbox controller ends, as values: the `Ready` condition's reasons, the
//! outcome the status tells ([`Outcome`], [`next_status`]) and when to look again
//! ([`Settle`]). Pure: the status step (`super::status`) writes what these decide.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;

use crate::crd::{Mailbox, MailboxStatus};
use crate::operator::conditions;

/// How soon a Mailbox waiting for its Broker is tried again.
const WAIT_FOR_BROKER: Duration = Duration::from_secs(15);
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

/// How a pass ends: what the status tells, and when the Mailbox is looked at again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    pub outcome: Outcome,
    pub next: Action,
}

impl Settle {
    /// Not Ready for `reason`; looked at again when something changes.
    pub fn not_ready(reason: Reason, message: String) -> Settle {
        let outcome = Outcome::NotReady { reason, message };
        Settle {
            outcome,
            next: Action::await_change(),
        }
    }

    /// Not Ready because the Broker cannot serve the Mailbox (yet); tried again soon.
    pub fn broker_not_ready(mailbox: &Mailbox, state: &BrokerState) -> Settle {
        let broker = &mailbox.spec.broker_ref.name;
        let (reason, message) = match state {
            BrokerState::Missing => (
                Reason::BrokerNotFound,
                format!("Broker {broker} does not exist"),
            ),
            BrokerState::Deleting => (
                Reason::BrokerNotFound,
                format!("Broker {broker} is being deleted"),
            ),
            BrokerState::NotReady(why) => (
                Reason::BrokerNotReady,
                format!("Broker {broker} is not ready: {why}"),
            ),
            BrokerState::Ready => (
                Reason::BrokerNotReady,
                format!("Broker {broker} is not ready"),
            ),
        };
        let outcome = Outcome::NotReady { reason, message };
        Settle {
            outcome,
            next: Action::requeue(WAIT_FOR_BROKER),
        }
    }
}
