//! The Broker controller: dereference (the running StatefulSet, the signing keys, the route
//! password) → validate (storage changes) → build ([`builders`](crate::operator::builders), pure) → apply (server-side
//! apply, one field manager) → status from the StatefulSet.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::{watcher, Controller};
use kube::{Api, Resource, ResourceExt};

use super::apply::apply;
use super::builders;
use super::context::{error_policy, Context};
use super::credentials::{self, BrokerAuth};
use super::error::Result;
use super::names;
use super::routes;
use super::tenants;
use crate::crd::{AuthMode, Broker, BrokerStatus};

const CONTROLLER: &str = "broker";
/// How often a Broker is reconciled when nothing changes (status, tenant accounts).
const RESYNC: Duration = Duration::from_secs(60);
/// How soon a Broker whose tenant accounts could not be pushed is tried again.
const RETRY_PUSH: Duration = Duration::from_secs(15);

pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let owned = || {
        watcher::Config::default().labels(&format!(
            "{}={}",
            names::MANAGED_BY_LABEL,
            names::MANAGED_BY
        ))
    };
    Controller::new(
        Api::<Broker>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<StatefulSet>::all(client.clone()), owned())
    .owns(Api::<Service>::all(client.clone()), owned())
    .owns(Api::<ConfigMap>::all(client.clone()), owned())
    .owns(Api::<NetworkPolicy>::all(client.clone()), owned())
    .owns(Api::<PodDisruptionBudget>::all(client), owned())
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|_| async {})
    .await;
}

async fn reconcile(broker: Arc<Broker>, ctx: Arc<Context>) -> Result<Action> {
    ctx.measured(CONTROLLER, reconcile_broker(&broker, &ctx))
        .await
}

async fn reconcile_broker(broker: &Broker, ctx: &Context) -> Result<Action> {
    if broker.metadata.deletion_timestamp.is_some() {
        // Owned objects go by garbage collection; the volumes stay (retention policy Retain).
        return Ok(Action::await_change());
    }
    let namespace = broker.namespace().unwrap_or_default();
    let statefulsets = Api::<StatefulSet>::namespaced(ctx.client.clone(), &namespace);
    let existing = statefulsets.get_opt(&broker.name_any()).await?;
    let mut refused = None;
    let mut next = Action::requeue(RESYNC);
    if !broker.spec.paused {
        let auth = match broker.spec.auth.mode {
            AuthMode::Jwt => Some(credentials::ensure_broker_keys(ctx, broker).await?),
            AuthMode::None => None,
        };
        let route_password = match broker.spec.replicas > 1 {
            true => Some(routes::ensure_password(ctx, broker).await?),
            false => None,
        };
        let auth_block = auth.as_ref().map(credentials::BrokerAuth::server_config);
        let config_map = builders::config_map(
            broker,
            builders::nats_server_config(broker, auth_block.as_deref()),
        );
        let checksum = pod_config_checksum(&config_map, route_password.as_deref());
        let auth_secret = auth.as_ref().map(|_| builders::auth_secret_name(broker));
        let mut statefulset = builders::statefulset(broker, &checksum, auth_secret.as_deref());
        if let plan::Storage::KeepCurrent {
            current,
            refused: why,
        } = plan::storage(broker, existing.as_ref())
        {
            set_storage(&mut statefulset, current);
            refused = why;
        }
        apply(&ctx.client, &config_map).await?;
        apply(&ctx.client, &builders::headless_service(broker)).await?;
        apply(&ctx.client, &builders::client_service(broker)).await?;
        let operator_namespace = &ctx.settings.operator_namespace;
        apply(
            &ctx.client,
            &builders::network_policy(broker, operator_namespace),
        )
        .await?;
        apply(&ctx.client, &statefulset).await?;
        let pdbs = Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), &namespace);
        match builders::pod_disruption_budget(broker) {
            Some(pdb) => drop(apply(&ctx.client, &pdb).await?),
            None => {
                if pdbs.get_opt(&broker.name_any()).await?.is_some() {
                    pdbs.delete(&broker.name_any(), &DeleteParams::default())
                        .await?;
                }
            }
        }
        if let Some(auth) = &auth {
            if !push_tenants(broker, ctx, auth).await? {
                next = Action::requeue(RETRY_PUSH);
            }
        }
    }
    let current = statefulsets.get_opt(&broker.name_any()).await?;
    let status = plan::next_status(
        broker,
        current.as_ref(),
        refused.as_deref(),
        builders::broker_url(broker),
        Timestamp::now(),
    );
    write_status(broker, ctx, status).await?;
    Ok(next)
}

/// Pushes every tenant account of the Broker (as recorded by [`tenants`]) to its nats-server,
/// once it serves: this repairs what a Mailbox reconcile could not push (a finalizer that gave
/// up, a server that lost its resolver directory) and runs whenever the record changes (the
/// controller owns its ConfigMap). Unchanged accounts are not re-sent within a minute (see
/// [`super::broker_client`]). Whether everything was pushed; a failure is a Warning Event.
async fn push_tenants(broker: &Broker, ctx: &Context, auth: &BrokerAuth) -> Result<bool> {
    let available = broker
        .status
        .as_ref()
        .is_some_and(|s| super::conditions::is_true(&s.conditions, "Available"));
    if !available {
        return Ok(true);
    }
    for (namespace, tenant) in tenants::all(ctx, broker).await? {
        if let Err(e) = tenants::push(ctx, broker, auth, &namespace, &tenant).await {
            let note = format!(
                "the account of namespace {namespace} could not be pushed to nats-server: {e}"
            );
            ctx.event(
                &broker.object_ref(&()),
                EventType::Warning,
                "AccountPushFailed",
                note,
            )
            .await;
            return Ok(false);
        }
    }
    Ok(true)
}

/// The pod template's checksum: over the ConfigMap and, with routes, over the route password
/// (which the ConfigMap only references), so that a new password — its Secret deleted by hand
/// and made again — rolls the pods onto it instead of leaving old pods unable to route to new
/// ones. Only a SHA-256 digest of it reaches the annotation.
fn pod_config_checksum(config_map: &ConfigMap, route_password: Option<&str>) -> String {
    let mut inputs = config_map.data.clone().unwrap_or_default();
    if let Some(password) = route_password {
        inputs.insert(builders::ROUTE_PASSWORD_ENV.to_owned(), password.to_owned());
    }
    builders::config_checksum(&inputs)
}

/// Keeps the volume size the StatefulSet already has (claim templates are immutable).
fn set_storage(statefulset: &mut StatefulSet, size: String) {
    let templates = statefulset
        .spec
        .as_mut()
        .and_then(|s| s.volume_claim_templates.as_mut());
    for template in templates.into_iter().flatten() {
        if let Some(requests) = template
            .spec
            .as_mut()
            .and_then(|s| s.resources.as_mut())
            .and_then(|r| r.requests.as_mut())
        {
            requests.insert("storage".into(), Quantity(size.clone()));
        }
    }
}

/// Writes the status when it changed and records an Event for each condition that flipped.
async fn write_status(broker: &Broker, ctx: &Context, status: BrokerStatus) -> Result<()> {
    let before = broker.status.clone().unwrap_or_default();
    if before == status {
        return Ok(());
    }
    let api =
        Api::<Broker>::namespaced(ctx.client.clone(), &broker.namespace().unwrap_or_default());
    // A merge patch of the status alone: this controller is its only writer, so there is no
    // lost update to guard against with a resourceVersion (the cached object may lag).
    let patch = serde_json::json!({"status": status});
    api.patch_status(
        &broker.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    for condition in &status.conditions {
        let previous = super::conditions::find(&before.conditions, &condition.type_);
        if previous.map(|p| (&p.status, &p.reason)) != Some((&condition.status, &condition.reason))
        {
            let type_ = if (condition.type_ == "Degraded") == (condition.status == "True") {
                EventType::Warning
            } else {
                EventType::Normal
            };
            let reason = format!(
                "{}{}",
                condition.type_,
                if condition.status == "True" {
                    ""
                } else {
                    "False"
                }
            );
            ctx.event(
                &broker.object_ref(&()),
                type_,
                &reason,
                format!("{}: {}", condition.reason, condition.message),
            )
            .await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_checksum_follows_the_route_password() {
        let broker = builders::tests::broker(serde_json::json!({"replicas": 3}));
        let config_map = builders::config_map(&broker, "listen: 0.0.0.0:4222\n".into());
        let without = pod_config_checksum(&config_map, None);
        let with_one = pod_config_checksum(&config_map, Some("one"));
        assert_ne!(without, with_one);
        assert_eq!(with_one, pod_config_checksum(&config_map, Some("one")));
        assert_ne!(with_one, pod_config_checksum(&config_map, Some("two")));
        assert!(!with_one.contains("one"));
    }
}
