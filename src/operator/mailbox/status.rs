//! The status step, the one place a pass writes the Mailbox's status: the next status when it
//! changed, with an Event when the Ready reason changed.

use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use super::outcome::{next_status, Outcome, Reason, Settle};
use crate::crd::{Mailbox, MailboxStatus};
use crate::operator::conditions;
use crate::operator::context::Context;
use crate::operator::error::Result;

/// Writes the status for `settle.outcome` when it changed, records an Event when the Ready
/// reason changed to a failure, and returns `settle.next`.
pub async fn settle(mailbox: &Mailbox, ctx: &Context, settle: Settle) -> Result<Action> {
    let Settle { outcome, next } = settle;
    let status = next_status(mailbox, &outcome, Timestamp::now());
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
        let written = api
            .replace_status(&mailbox.name_any(), &PostParams::default(), &updated)
            .await?;
        ctx.own_writes.wrote(&written);
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
    Ok(next)
}
