//! The two ends of a Mailbox's life: TTL expiry and deletion (the finalizer).

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use super::dereference;
use super::plan::{self, BrokerState, Finalize, Outcome, Reason};
use super::secret;
use super::status::settle;
use crate::crd::{ExpirationPolicy, Mailbox};
use crate::operator::broker_client::Admin;
use crate::operator::context::Context;
use crate::operator::error::{Error, Result};

/// TTL garbage collection: the broker dropped the mailbox by itself; the Secret goes (pods can
/// no longer start with a dead address), the status says Expired, and `expirationPolicy`
/// decides whether the object stays (Retain) or goes (Delete).
pub async fn expire(mailbox: &Mailbox, ctx: &Context) -> Result<Action> {
    let namespace = mailbox.namespace().unwrap_or_default();
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
    let secret_name = secret::secret_name(mailbox);
    if let Some(existing) = secrets.get_opt(&secret_name).await? {
        if secret::is_owned_by(&existing, mailbox) {
            secrets
                .delete(&secret_name, &DeleteParams::default())
                .await?;
        }
    }
    let message =
        "the mailbox reached its TTL and the broker removed it; its Secret was deleted".to_owned();
    let outcome = Outcome::NotReady {
        reason: Reason::Expired,
        message,
    };
    let action = settle(mailbox, ctx, outcome, Action::await_change()).await?;
    if mailbox.spec.expiration_policy == ExpirationPolicy::Delete
        && mailbox.metadata.deletion_timestamp.is_none()
    {
        let api = Api::<Mailbox>::namespaced(ctx.client.clone(), &namespace);
        api.delete(&mailbox.name_any(), &DeleteParams::default())
            .await?;
        let note = "expirationPolicy is Delete: the expired Mailbox is deleted".to_owned();
        ctx.event(&mailbox.object_ref(&()), EventType::Normal, "Deleted", note)
            .await;
    }
    Ok(action)
}

/// The finalizer: delete the mailbox on the broker (deletionPolicy Delete), never wedging
/// (see [`plan::finalize`]).
pub async fn cleanup(mailbox: &Mailbox, ctx: &Context) -> Result<Action> {
    let (state, admin) = match dereference::connect(mailbox, ctx).await? {
        Ok(connected) => (BrokerState::Ready, Some(connected.admin)),
        Err(state) => (state, None),
    };
    let reference = mailbox.object_ref(&());
    match (plan::finalize(mailbox, &state, Timestamp::now()), admin) {
        (Finalize::DeleteOnBroker, Some(admin)) => {
            if delete_on_broker(mailbox, ctx, &admin).await? {
                let note = "deleted the mailbox on the broker".to_owned();
                ctx.event(&reference, EventType::Normal, "DeletedOnBroker", note)
                    .await;
            }
        }
        (Finalize::Release(why), _) => {
            ctx.event(&reference, EventType::Warning, "FinalizerReleased", why)
                .await
        }
        (Finalize::RetryLater | Finalize::DeleteOnBroker, _) => {
            let why = "the Broker is unreachable; the finalizer retries";
            return Err(Error::BrokerUnreachable(why.into()));
        }
    }
    if let Some(uid) = &mailbox.metadata.uid {
        ctx.metrics.mailbox_reason(uid, None);
    }
    Ok(Action::await_change())
}

/// Deletes the mailbox on the broker if this object owns it there; whether it did.
async fn delete_on_broker(mailbox: &Mailbox, ctx: &Context, admin: &Admin) -> Result<bool> {
    let secrets =
        Api::<Secret>::namespaced(ctx.client.clone(), &mailbox.namespace().unwrap_or_default());
    let recorded = secrets
        .get_opt(&secret::secret_name(mailbox))
        .await?
        .filter(|s| secret::is_owned_by(s, mailbox));
    let address = mailbox
        .spec
        .address
        .clone()
        .or_else(|| recorded.as_ref().and_then(secret::recorded_address));
    let Some(address) = address else {
        return Ok(false);
    };
    let unreachable =
        |e: crate::operator::broker_client::AdminError| Error::BrokerUnreachable(e.to_string());
    let info = admin.info(&address).await.map_err(unreachable)?;
    if info.is_none_or(|info| info.owner != mailbox.metadata.uid) {
        return Ok(false);
    }
    admin.delete(&address).await.map_err(unreachable)?;
    Ok(true)
}
