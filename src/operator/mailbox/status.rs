//! The status step: write the next status when it changed, with an Event when the Ready
//! reason changed.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use super::plan::{self, BrokerState, Outcome, Reason};
use crate::crd::{Mailbox, MailboxStatus};
use crate::operator::conditions;
use crate::operator::context::Context;
use crate::operator::error::Result;

/// How soon a Mailbox waiting for its Broker is tried again.
const WAIT_FOR_BROKER: Duration = Duration::from_secs(15);

/// Writes the status for `outcome` when it changed, records an Event when the Ready reason
/// changed to a failure, and returns `action`.
pub async fn settle(
    mailbox: &Mailbox,
    ctx: &Context,
    outcome: Outcome,
    action: Action,
) -> Result<Action> {
    let status = plan::next_status(mailbox, &outcome, Timestamp::now());
    let reason_of = |s: Option<&MailboxStatus>| {
        s.and_then(|s| conditions::find(&s.conditions, "Ready"))
            .map(|c| c.reason.clone())
    };
    let before = reason_of(mailbox.status.as_ref());
    let after = reason_of(Some(&status));
    if mailbox.status.as_ref() != Some(&status) {
        let api = Api::<Mailbox>::namespaced(
            ctx.client.clone(),
            &mailbox.namespace().unwrap_or_default(),
        );
        let mut updated = mailbox.clone();
        updated.status = Some(status);
        api.replace_status(&mailbox.name_any(), &PostParams::default(), &updated)
            .await?;
    }
    if let (true, Outcome::NotReady { reason, message }) = (before != after, &outcome) {
        let type_ = if *reason == Reason::Expired {
            ctx.metrics.expired();
            EventType::Normal
        } else {
            EventType::Warning
        };
        ctx.event(
            &mailbox.object_ref(&()),
            type_,
            reason.as_str(),
            message.clone(),
        )
        .await;
    }
    if let (Some(uid), Some(reason)) = (&mailbox.metadata.uid, after) {
        ctx.metrics.mailbox_reason(uid, Some(&reason));
    }
    Ok(action)
}

/// Settles a Mailbox that is not Ready for `reason`, retried only when something changes.
pub async fn not_ready(
    mailbox: &Mailbox,
    ctx: &Context,
    reason: Reason,
    message: String,
) -> Result<Action> {
    settle(
        mailbox,
        ctx,
        Outcome::NotReady { reason, message },
        Action::await_change(),
    )
    .await
}

/// Settles a Mailbox whose Broker cannot serve it (yet), retried soon.
pub async fn broker_not_ready(
    mailbox: &Mailbox,
    ctx: &Context,
    state: &BrokerState,
) -> Result<Action> {
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
    settle(mailbox, ctx, outcome, Action::requeue(WAIT_FOR_BROKER)).await
}
