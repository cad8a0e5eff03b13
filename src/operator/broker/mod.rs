//! The Broker controller. One pass: observe (the running StatefulSet; the signing keys and the
//! route password, made once when missing) → [`plan::desired`] (every object, built by
//! [`builders`](crate::operator::builders), and what a storage change keeps) → apply
//! (server-side apply, one field manager) → push the tenant accounts → the status from the
//! StatefulSet, written once when it changed, with an Event per flipped condition.

pub mod immutable;
pub mod layout;
pub mod plan;
pub mod shards;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::{watcher, Controller};
use kube::{Api, Resource, ResourceExt};

use super::apply::apply;
use super::builders;
use super::context::{bounded, drive, Context};
use super::credentials::{self, BrokerAuth};
use super::error::Result;
use super::names;
use super::routes;
use super::tenants;
use crate::crd::{AuthMode, Broker, BrokerStatus};

const CONTROLLER: &str = "broker";
/// How many Brokers are reconciled at once.
const CONCURRENCY: u16 = 4;
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
    let controller = Controller::new(
        Api::<Broker>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<StatefulSet>::all(client.clone()), owned())
    .owns(Api::<Service>::all(client.clone()), owned())
    .owns(Api::<ConfigMap>::all(client.clone()), owned())
    .owns(Api::<NetworkPolicy>::all(client.clone()), owned())
    .owns(Api::<PodDisruptionBudget>::all(client), owned())
    .with_config(bounded(CONCURRENCY));
    drive(controller, reconcile, ctx, shutdown).await;
}

#[tracing::instrument(skip_all, fields(
    namespace = broker.namespace().unwrap_or_default(),
    name = broker.name_any(),
    generation = broker.metadata.generation.unwrap_or_default(),
))]
async fn reconcile(broker: Arc<Broker>, ctx: Arc<Context>) -> Result<Action> {
    ctx.measured(CONTROLLER, reconcile_broker(&broker, &ctx))
        .await
}

async fn reconcile_broker(broker: &Broker, ctx: &Context) -> Result<Action> {
    // What is known of Brokers that are gone is forgotten (an empty cache before the first
    // list only costs Mailbox passes a read).
    let live = ctx.stores.brokers.store().state();
    ctx.known
        .retain(live.iter().filter_map(|b| b.metadata.uid.as_deref()));
    if broker.metadata.deletion_timestamp.is_some() {
        // Owned objects go by garbage collection; the volumes stay (retention policy Retain).
        return Ok(Action::await_change());
    }
    let namespace = broker.namespace().unwrap_or_default();
    let statefulsets = Api::<StatefulSet>::namespaced(ctx.client.clone(), &namespace);
    let existing = statefulsets.get_opt(&broker.name_any()).await?;
    let decision = layout::decide(broker, existing.as_ref());
    let mut findings = plan::Findings::default();
    let mut next = Action::requeue(RESYNC);
    // A name its objects cannot carry, or a replica count that cannot keep a quorum (an API
    // server without CEL let them in): nothing is made or changed (a running StatefulSet keeps
    // its size), the status says why.
    let refusal = |reason| move |message| immutable::Refusal { reason, message };
    let invalid = broker
        .name_problem()
        .map(refusal(immutable::INVALID_NAME))
        .or_else(|| {
            broker
                .replicas_problem()
                .map(refusal(immutable::INVALID_REPLICAS))
        });
    let valid = invalid.is_none();
    match invalid {
        Some(refusal) => findings.refused.push(refusal),
        // What the volumes hold, said even while paused.
        None => findings.migration = decision.migration.clone(),
    }
    if valid && !broker.spec.paused {
        let auth = match broker.spec.auth.mode {
            AuthMode::Jwt => {
                Some(credentials::ensure_broker_keys(ctx, broker, decision.layout).await?)
            }
            AuthMode::None => None,
        };
        let route_password = match decision.replicas > 1 {
            true => Some(routes::ensure_password(ctx, broker).await?),
            false => None,
        };
        let auth_config = auth
            .as_ref()
            .map(|auth| auth.server_config(decision.layout));
        let plan = plan::desired(&plan::Observed {
            broker,
            existing: existing.as_ref(),
            decision: &decision,
            auth_config: auth_config.as_deref(),
            route_password: route_password.as_deref(),
            operator_namespace: &ctx.settings.operator_namespace,
            images: &ctx.settings.images,
        });
        apply(&ctx.client, &plan.config_map).await?;
        apply(&ctx.client, &plan.headless_service).await?;
        apply(&ctx.client, &plan.client_service).await?;
        apply(&ctx.client, &plan.network_policy).await?;
        apply(&ctx.client, &plan.statefulset).await?;
        let pdbs = Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), &namespace);
        match &plan.pod_disruption_budget {
            Some(pdb) => drop(apply(&ctx.client, pdb).await?),
            None => {
                if pdbs.get_opt(&broker.name_any()).await?.is_some() {
                    pdbs.delete(&broker.name_any(), &DeleteParams::default())
                        .await?;
                }
            }
        }
        findings.refused = plan.refused;
        if let Some(auth) = &auth {
            if !push_tenants(broker, ctx, auth).await? {
                next = Action::requeue(RETRY_PUSH);
            }
        }
        if decision.layout.is_replicated() && is_available(broker) {
            findings.shards = shard_health(ctx, broker, auth.as_ref()).await;
        }
    }
    let current = statefulsets.get_opt(&broker.name_any()).await?;
    let status = plan::next_status(
        broker,
        current.as_ref(),
        &findings,
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
/// [`super::admin_client`]). Whether everything was pushed; a failure is a Warning Event.
async fn push_tenants(broker: &Broker, ctx: &Context, auth: &BrokerAuth) -> Result<bool> {
    if !is_available(broker) {
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

/// Whether the Broker's last status said a pod serves.
fn is_available(broker: &Broker) -> bool {
    let status = broker.status.as_ref();
    status.is_some_and(|s| super::conditions::is_true(&s.conditions, "Available"))
}

/// The shards' health as the brokers tell it (`$mq9.ADMIN.SHARDS`, as the operator's user);
/// `None`, unknown, when they cannot: no connection, no answer in time, or an error `code`
/// (a broker that does not know the request yet).
async fn shard_health(
    ctx: &Context,
    broker: &Broker,
    auth: Option<&BrokerAuth>,
) -> Option<shards::ShardHealth> {
    let url = ctx.nats_url(broker);
    let creds = auth.map(BrokerAuth::operator_credentials);
    let answer = match ctx.brokers.admin(&url, creds).await {
        Ok(admin) => admin.shards().await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(answer) => Some(shards::health(&answer)),
        Err(e) => {
            tracing::debug!(error = %e, "the brokers did not say who leads their shards");
            None
        }
    }
}

/// Writes the status when it changed, then an Event for each condition that flipped.
async fn write_status(broker: &Broker, ctx: &Context, status: BrokerStatus) -> Result<()> {
    let before = broker.status.clone().unwrap_or_default();
    if before == status {
        return Ok(());
    }
    ctx.patch_status(broker, &status).await?;
    ctx.emit(broker, plan::status_notes(&before, &status)).await;
    Ok(())
}
