//! The two ends of a Mailbox's life: TTL expiry and deletion (the finalizer).

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use super::observe;
use super::outcome::{BrokerState, Reason, Settle};
use super::plan::{self, Finalize};
use super::status::settle;
use crate::crd::{ExpirationPolicy, Mailbox};
use crate::operator::admin_client::Admin;
use crate::operator::builders::secret;
use crate::operator::context::Context;
use crate::operator::credentials;
use crate::operator::error::{Error, Result};
use crate::operator::tenants::{self, Revocation};

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
    let action = settle(mailbox, ctx, Settle::not_ready(Reason::Expired, message)).await?;
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

/// The finalizer: revoke the Mailbox's credentials (whatever the deletionPolicy: they must not
/// outlive the object) and delete the mailbox on the broker (deletionPolicy Delete), never
/// wedging (see [`plan::finalize`]).
pub async fn cleanup(mailbox: &Mailbox, ctx: &Context) -> Result<Action> {
    let reference = mailbox.object_ref(&());
    if let Err(why) = revoke_credentials(mailbox, ctx).await? {
        if !plan::release_due(mailbox, Timestamp::now()) {
            return Err(why);
        }
        let note = format!(
            "the revocation of the credentials is recorded but nats-server did not take it ({why}); \
             the Broker controller pushes it once nats-server is reachable"
        );
        ctx.event(&reference, EventType::Warning, "RevocationPending", note)
            .await;
    }
    let (state, admin) = match observe::connect(mailbox, ctx).await? {
        Ok(connected) => (BrokerState::Ready, Some(connected.admin)),
        Err(state) => (state, None),
    };
    match (plan::finalize(mailbox, &state, Timestamp::now()), admin) {
        (Finalize::DeleteOnBroker, Some(admin)) => {
            if delete_on_broker(mailbox, &admin).await? {
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
            return Err(Error::BrokerUnreachable);
        }
    }
    if let Some(uid) = &mailbox.metadata.uid {
        ctx.metrics.mailbox_reason(uid, None);
    }
    Ok(Action::await_change())
}

/// Revokes the user recorded on the Mailbox ([`plan::issued_user_key`]) in its namespace's
/// tenant account and pushes the account to nats-server. Nothing to do without such a user, or
/// when the Broker is gone (its accounts went with it). `Ok(Err(why))`: recorded but not
/// pushed (or the Broker's keys cannot be read); the record does not depend on the Mailbox's Secret, which may already be gone.
async fn revoke_credentials(mailbox: &Mailbox, ctx: &Context) -> Result<Result<(), Error>> {
    let Some(user_key) = plan::issued_user_key(mailbox) else {
        return Ok(Ok(()));
    };
    let (state, broker) = observe::broker_state(mailbox, ctx).await?;
    let broker = match (state, broker) {
        (BrokerState::Missing | BrokerState::Deleting, _) | (_, None) => return Ok(Ok(())),
        (_, Some(broker)) => broker,
    };
    let auth = match credentials::load(ctx, &broker).await {
        Ok(Some(auth)) => auth,
        Ok(None) => return Ok(Ok(())),
        Err(e) => return Ok(Err(e)),
    };
    let namespace = mailbox.namespace().unwrap_or_default();
    let revocation = Revocation {
        user_key,
        expires_at: plan::recorded_expiry(mailbox.status.as_ref()),
    };
    let published = tenants::publish(ctx, &broker, &auth, &namespace, Some(revocation)).await?;
    Ok(published.map_err(Error::from))
}

/// Deletes every mailbox this object owns on the broker, found by its uid (the owner ENSURE
/// recorded), not by the address in its Secret: under foreground deletion (`kubectl delete
/// --cascade=foreground`, Argo CD's prune) the garbage collector may delete the Secret before
/// this finalizer runs, and a Secret deleted by hand is gone just the same; reading the address
/// from it would leak the mailbox. Whether any was deleted.
async fn delete_on_broker(mailbox: &Mailbox, admin: &Admin) -> Result<bool> {
    let uid = mailbox.metadata.uid.as_deref().unwrap_or_default();
    let owned = admin.owned(uid).await?;
    for address in &owned {
        admin.delete(address).await?;
    }
    Ok(!owned.is_empty())
}
