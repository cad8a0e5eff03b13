//! Observe: from `spec.brokerRef` to a connection to that Broker's admin API, and what a pass
//! needs to know once connected (the Secret, the namespace's Broadcasts).

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::outcome::BrokerState;
use super::plan::{self, Facts, Observed};
use crate::crd::{Broker, Mailbox};
use crate::operator::admin_client::Admin;
use crate::operator::builders::secret;
use crate::operator::conditions;
use crate::operator::context::Context;
use crate::operator::credentials::{self, BrokerAuth};
use crate::operator::error::Result;

/// A Broker the Mailbox can be reconciled against.
pub struct Connected {
    pub broker: Broker,
    pub auth: Option<BrokerAuth>,
    pub admin: Admin,
}

/// The Broker named by `spec.brokerRef`, and what state it is in.
pub async fn broker_state(
    mailbox: &Mailbox,
    ctx: &Context,
) -> Result<(BrokerState, Option<Broker>)> {
    let own = mailbox.namespace().unwrap_or_default();
    let namespace = mailbox.spec.broker_ref.namespace_or(&own);
    let broker = ctx
        .stores
        .broker(namespace, &mailbox.spec.broker_ref.name)
        .await;
    let available = |b: &Broker| {
        b.status
            .as_ref()
            .is_some_and(|s| conditions::is_true(&s.conditions, "Available"))
    };
    let state = match &broker {
        None => BrokerState::Missing,
        Some(b) if b.metadata.deletion_timestamp.is_some() => BrokerState::Deleting,
        Some(b) if !available(b) => BrokerState::NotReady("it is not Available yet".into()),
        Some(_) => BrokerState::Ready,
    };
    Ok((state, broker))
}

/// The Broker, its credentials and an admin connection; or, when any of them cannot be had,
/// the Broker's state for the status (`Err` only for Kubernetes API failures).
pub async fn connect(mailbox: &Mailbox, ctx: &Context) -> Result<Result<Connected, BrokerState>> {
    let (state, broker) = broker_state(mailbox, ctx).await?;
    Ok(connect_to(ctx, state, broker).await)
}

/// As [`connect`], with the Broker and its state already looked up by [`broker_state`].
pub async fn connect_to(
    ctx: &Context,
    state: BrokerState,
    broker: Option<Broker>,
) -> Result<Connected, BrokerState> {
    let broker = match (state, broker) {
        (BrokerState::Ready, Some(broker)) => broker,
        (state, _) => return Err(state),
    };
    let auth = match credentials::load(ctx, &broker).await {
        Ok(auth) => auth,
        Err(e) => return Err(BrokerState::NotReady(e.to_string())),
    };
    let url = ctx.nats_url(&broker);
    let creds = auth.as_ref().map(BrokerAuth::operator_credentials);
    match ctx.brokers.admin(&url, creds).await {
        Ok(admin) => Ok(Connected {
            broker,
            auth,
            admin,
        }),
        Err(e) => Err(BrokerState::NotReady(e.to_string())),
    }
}

/// What a pass of a valid, unexpired Mailbox observes of its Broker: it stops at the first fact
/// that settles the pass (a Broker that cannot serve, a namespace it does not admit), and
/// otherwise connects and reads the Secret and the Broadcasts.
pub async fn observe(mailbox: &Mailbox, ctx: &Context) -> Result<Observed> {
    let (state, broker) = broker_state(mailbox, ctx).await?;
    if let Some(Err(message)) = broker.as_ref().map(|b| plan::admission(mailbox, b)) {
        return Ok(Observed::Refused(message));
    }
    let connected = match connect_to(ctx, state, broker).await {
        Ok(connected) => connected,
        Err(state) => return Ok(Observed::Unusable(state)),
    };
    let namespace = mailbox.namespace().unwrap_or_default();
    let name = secret::secret_name(mailbox);
    // The cache holds only the operator's Secrets: one missing from it may still exist as
    // someone else's, which must be seen (and not overwritten).
    let secret = match ctx.stores.secret(&namespace, &name).await {
        Some(secret) => Some(secret),
        None => {
            Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
                .get_opt(&name)
                .await?
        }
    };
    let broadcasts = ctx.stores.broadcasts_in(&namespace).await;
    let mut owned_address = None;
    if plan::needs_owned_address(mailbox, secret.as_ref()) {
        let uid = mailbox.metadata.uid.as_deref().unwrap_or_default();
        // The first by name, should there be several.
        match connected.admin.owned(uid).await {
            Ok(owned) => owned_address = owned.into_iter().next(),
            Err(e) => return Ok(Observed::Unusable(BrokerState::NotReady(e.to_string()))),
        }
    }
    let facts = Facts {
        admin: connected.admin,
        broker: connected.broker,
        auth: connected.auth,
        secret,
        broadcasts,
        owned_address,
        fresh_address: crate::protocol::address::generate(),
    };
    Ok(Observed::Connected(Box::new(facts)))
}
