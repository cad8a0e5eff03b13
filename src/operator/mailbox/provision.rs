//! Provision: carries out a [`Provision`] plan in its order — the tenant account, the Secret,
//! the mailbox on the broker, its subscriptions — and says how the pass ends. The broker's
//! answers decide that end (a conflict, an unreachable broker), so they are read here, not
//! planned; every decision that needs no answer was made by [`plan::desired`](super::plan::desired).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use super::outcome::{BrokerState, Outcome, Reason, Settle};
use super::plan::{self, Facts, Provision, SecretWrite};
use crate::crd::Mailbox;
use crate::operator::admin_client::{Admin, AdminError, EnsureMailbox};
use crate::operator::builders::{self, secret};
use crate::operator::context::Context;
use crate::operator::credentials::Grant;
use crate::operator::error::Result;
use crate::operator::names;
use crate::operator::tenants::{self, Revocation};

/// Carries out `provision`; returns how the pass ends and, when the Mailbox was patched on
/// the way (the user key annotation), the Mailbox as patched: the status write builds on its
/// resourceVersion.
pub async fn carry_out(
    mailbox: &Mailbox,
    ctx: &Context,
    facts: &Facts,
    provision: &Provision,
) -> Result<(Settle, Option<Mailbox>)> {
    let admin = &facts.admin;
    let namespace = mailbox.namespace().unwrap_or_default();
    if let Some(auth) = &facts.auth {
        let published = tenants::publish(ctx, &facts.broker, auth, &namespace, None).await?;
        if let Err(e) = published {
            let why = format!("the account of namespace {namespace} is not on its NATS: {e}");
            let state = BrokerState::NotReady(why);
            return Ok((Settle::broker_not_ready(mailbox, &state), None));
        }
    }
    let annotated = match provision.secret {
        Some(why) => write_secret(mailbox, ctx, facts, provision, why).await?,
        None => None,
    };
    // The annotation's patch moved the resourceVersion: later writes build on the new one.
    let current = annotated.as_ref().unwrap_or(mailbox);
    if let Some(settle) = ensure_on_broker(current, ctx, admin, provision).await {
        return Ok((settle, annotated));
    }
    let account = facts
        .auth
        .as_ref()
        .map(|auth| auth.tenant_account_public_key(&namespace));
    let synced = sync_subscriptions(
        admin,
        &provision.address,
        &provision.topics,
        account.as_deref(),
    );
    if let Err(e) = synced.await {
        let state = BrokerState::NotReady(e.to_string());
        return Ok((Settle::broker_not_ready(current, &state), annotated));
    }
    tracing::debug!(next_check = ?provision.ready.next, "mailbox ready");
    Ok((provision.ready.clone(), annotated))
}

/// Writes the Secret (missing, or its credentials no longer match the grant). The address in it
/// is never changed. Written before the mailbox is created on the broker, so a crash between
/// the two never leaves a mailbox whose address nobody knows. New credentials end the previous
/// ones first (see the module documentation of `super`); returns the Mailbox as the
/// annotation's patch left it, when patched.
async fn write_secret(
    mailbox: &Mailbox,
    ctx: &Context,
    facts: &Facts,
    provision: &Provision,
    why: SecretWrite,
) -> Result<Option<Mailbox>> {
    let namespace = mailbox.namespace().unwrap_or_default();
    let grant: Grant<'_> = provision.grant();
    let mut annotated = None;
    let mut creds = None;
    if let Some(auth) = &facts.auth {
        let minted = auth.mailbox_credentials(&namespace, &grant)?;
        if let Some(old) = plan::issued_user_key(mailbox) {
            let revocation = Revocation {
                user_key: old,
                expires_at: grant.expires_at,
            };
            tenants::publish(ctx, &facts.broker, auth, &namespace, Some(revocation)).await??;
        }
        annotated = Some(record_user_key(mailbox, ctx, &minted.public_key).await?);
        creds = Some(minted.creds_file_text);
    }
    let (host, port) = builders::client_endpoint(&facts.broker);
    let binding = secret::Binding {
        host: &host,
        port,
        address: grant.address,
        expires_at: grant.expires_at,
        creds: creds.as_deref(),
        permissions_hash: &provision.permissions_hash,
    };
    let desired: Secret = secret::secret(mailbox, &binding);
    crate::operator::apply::apply(&ctx.client, &desired).await?;
    let note = match why {
        SecretWrite::New => "wrote the mailbox's address and credentials",
        SecretWrite::Restore => "the Secret was deleted: wrote it again with the mailbox's address",
        SecretWrite::Reissue => "re-issued the mailbox's credentials for changed permissions",
    };
    let note = format!("Secret {}: {note}", desired.name_any());
    let reference = mailbox.object_ref(&());
    ctx.event(&reference, EventType::Normal, "SecretWritten", note)
        .await;
    Ok(annotated)
}

/// Records on the Mailbox which user its credentials are about to belong to.
async fn record_user_key(mailbox: &Mailbox, ctx: &Context, user_key: &str) -> Result<Mailbox> {
    let api =
        Api::<Mailbox>::namespaced(ctx.client.clone(), &mailbox.namespace().unwrap_or_default());
    let patch =
        serde_json::json!({"metadata": {"annotations": {names::USER_KEY_ANNOTATION: user_key}}});
    let patched = api
        .patch(
            &mailbox.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    ctx.own_writes.wrote(&patched);
    Ok(patched)
}

/// `$mq9.ADMIN.MAILBOX.ENSURE` with this object's uid as owner. A mailbox the broker had lost
/// is recreated with its original expiry and a Warning Event. `Some` when the Mailbox cannot be
/// Ready: how the pass ends.
async fn ensure_on_broker(
    mailbox: &Mailbox,
    ctx: &Context,
    admin: &Admin,
    provision: &Provision,
) -> Option<Settle> {
    let created_before = provision.created_before;
    let ensure = EnsureMailbox {
        address: &provision.address,
        kind: mailbox.spec.kind.as_str(),
        ttl_secs: plan::ttl_secs(mailbox),
        expires_at: provision
            .expires_at
            .filter(|_| created_before)
            .map(|t| t.as_second()),
        owner: mailbox.metadata.uid.as_deref().unwrap_or_default(),
    };
    let reference = mailbox.object_ref(&());
    let ensured = admin.ensure(&ensure).await;
    tracing::debug!(created_before, ensured = ?ensured, "ensured on the broker");
    let (type_, reason, note) = match ensured {
        Ok(false) => return None,
        Ok(true) if created_before => (
            EventType::Warning,
            "Recreated",
            "the broker had lost the mailbox (volume replaced?); it was created again, empty",
        ),
        Ok(true) => (
            EventType::Normal,
            "Created",
            "created the mailbox on the broker",
        ),
        Err(AdminError::Rejected { code }) if code == "conflict" => {
            let message = "the address is taken on the broker by another owner".to_owned();
            let outcome = Outcome::NotReady {
                reason: Reason::AddressConflict,
                message,
            };
            let next = kube::runtime::controller::Action::requeue(plan::RECHECK_CONFLICT);
            return Some(Settle { outcome, next });
        }
        Err(AdminError::Unreachable(why)) => {
            return Some(Settle::broker_not_ready(
                mailbox,
                &BrokerState::NotReady(why),
            ))
        }
        Err(e) => return Some(Settle::not_ready(Reason::Invalid, e.to_string())),
    };
    ctx.event(&reference, type_, reason, note.to_owned()).await;
    None
}

/// Subscribes to what is desired and unsubscribes from what is not. With JWT auth every
/// desired topic is subscribed for the namespace's tenant `account` on each pass (idempotent),
/// so that subscriptions made before tenancy come to admit only their own tenant's publishes.
async fn sync_subscriptions(
    admin: &Admin,
    address: &str,
    desired: &BTreeSet<String>,
    account: Option<&str>,
) -> Result<(), AdminError> {
    let current: BTreeSet<String> = admin
        .info(address)
        .await?
        .map(|i| i.subscriptions.into_iter().collect())
        .unwrap_or_default();
    for topic in desired {
        if account.is_some() || !current.contains(topic) {
            admin.subscribe(address, topic, account).await?;
        }
    }
    for topic in current.difference(desired) {
        admin.unsubscribe(address, topic).await?;
    }
    Ok(())
}
