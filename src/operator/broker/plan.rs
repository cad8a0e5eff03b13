//! The Broker controller's decisions, as pure functions of what it observed: the objects to
//! apply ([`desired`], in the layout [`super::layout`] decided, keeping what a StatefulSet
//! cannot change: [`super::immutable`]), the status that follows from the StatefulSet and the
//! shards ([`next_status`]) and the Events that tell its changes ([`status_notes`]).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;

use super::immutable::{keep_immutable, Refusal};
use super::layout::Decision;
use super::shards::ShardHealth;
use crate::crd::{Broker, BrokerStatus};
use crate::operator::builders::{self, Images};
use crate::operator::conditions;
use crate::operator::context::Note;

/// What a pass observed of a Broker that is not paused (its keys and route password are made
/// once, before the plan, since they are generated).
pub struct Observed<'a> {
    pub broker: &'a Broker,
    /// The StatefulSet as it runs, if any.
    pub existing: Option<&'a StatefulSet>,
    /// Its layout and replica count ([`super::layout::decide`] of `broker` and `existing`).
    pub decision: &'a Decision,
    /// With JWT auth, nats-server's block for the operator's trust and the account resolver.
    pub auth_config: Option<&'a str>,
    /// With more than one replica, the cluster routes' password.
    pub route_password: Option<&'a str>,
    /// The operator's namespace, admitted by the NetworkPolicy (its admin connection).
    pub operator_namespace: &'a str,
    /// The containers' images where the spec names none.
    pub images: &'a Images,
}

/// Every object a pass applies, in this order, and the change it refuses.
pub struct Plan {
    pub config_map: ConfigMap,
    pub headless_service: Service,
    pub client_service: Service,
    pub network_policy: NetworkPolicy,
    pub statefulset: StatefulSet,
    /// `None` with a single replica: an existing budget is deleted.
    pub pod_disruption_budget: Option<PodDisruptionBudget>,
    /// The changes of the spec the StatefulSet keeps out (the layout's, then its immutable
    /// fields').
    pub refused: Vec<Refusal>,
}

/// The objects of the Broker as observed: built from the spec with the replica count the
/// decision keeps, in its layout.
pub fn desired(observed: &Observed<'_>) -> Plan {
    let decision = observed.decision;
    let layout = decision.layout;
    let mut kept = observed.broker.clone();
    kept.spec.replicas = decision.replicas;
    let broker = &kept;
    let config_map = builders::config_map(
        broker,
        builders::nats_server_config(broker, layout, observed.auth_config),
    );
    let checksum = pod_config_checksum(&config_map, observed.route_password);
    let auth_secret = observed
        .auth_config
        .map(|_| builders::auth_secret_name(broker));
    let mut statefulset = builders::statefulset(
        broker,
        layout,
        observed.images,
        &checksum,
        auth_secret.as_deref(),
    );
    let mut refused = decision.refused.clone();
    if let Some(existing) = observed.existing {
        refused.extend(keep_immutable(&mut statefulset, existing));
    }
    Plan {
        config_map,
        headless_service: builders::headless_service(broker),
        client_service: builders::client_service(broker),
        network_policy: builders::network_policy(broker, observed.operator_namespace),
        statefulset,
        pod_disruption_budget: builders::pod_disruption_budget(broker),
        refused,
    }
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

/// An Event for each condition that flipped between `before` and `after`: `<Type>` when it
/// became True (for `Degraded`, its reason: `ImmutableFieldChanged`, `StorageChangeRefused`,
/// ...), `<Type>False` when it became False; a Warning when the Broker got worse (Degraded
/// True, or Available/Progressing False).
pub fn status_notes(before: &BrokerStatus, after: &BrokerStatus) -> Vec<Note> {
    let mut notes = Vec::new();
    for condition in &after.conditions {
        let previous = conditions::find(&before.conditions, &condition.type_);
        if previous.map(|p| (&p.status, &p.reason)) == Some((&condition.status, &condition.reason))
        {
            continue;
        }
        let is_true = condition.status == "True";
        let suffix = if is_true { "" } else { "False" };
        let reason = match condition.type_ == "Degraded" && is_true {
            // What degraded it, as the Event's reason: kube's recorder folds Events of one
            // reason into a series that keeps its first note, so under a shared `Degraded` a
            // new refusal's message would never be seen.
            true => condition.reason.clone(),
            false => format!("{}{suffix}", condition.type_),
        };
        let message = format!("{}: {}", condition.reason, condition.message);
        notes.push(match (condition.type_ == "Degraded") == is_true {
            true => Note::warning(&reason, message),
            false => Note::normal(&reason, message),
        });
    }
    notes
}

/// Condition type: an active-pod Broker whose mailboxes are not replicated (see
/// [`super::layout::migration`]).
pub const MIGRATION_NEEDED: &str = "MigrationNeeded";

/// What a pass found besides the StatefulSet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// The changes of the spec it did not make.
    pub refused: Vec<Refusal>,
    /// An active-pod Broker's migration note ([`super::layout::Decision::migration`]).
    pub migration: Option<String>,
    /// The shards of a replicated Broker; `None` when not replicated or unknown.
    pub shards: Option<ShardHealth>,
}

/// The status from the StatefulSet's progress and the findings. `Available` once a pod serves
/// (the URL works), `Progressing` while pods are not all updated and ready, `Degraded` when a
/// change was refused or a shard has no quorum or no leader (the first problem's reason, every
/// problem's message) or no pod is ready; `MigrationNeeded` while an active-pod Broker of
/// several replicas does not replicate its mailboxes (False once it does or has one replica;
/// never set on a Broker that never needed it).
pub fn next_status(
    broker: &Broker,
    statefulset: Option<&StatefulSet>,
    findings: &Findings,
    url: String,
    now: Timestamp,
) -> BrokerStatus {
    let mut status = broker.status.clone().unwrap_or_default();
    let generation = broker.metadata.generation;
    status.observed_generation = generation;
    status.url = Some(url);
    // The StatefulSet's count: the spec's, unless a change of it was refused.
    let applied = statefulset.and_then(|s| s.spec.as_ref()?.replicas);
    let desired = applied.unwrap_or(broker.spec.replicas);
    let sts_status = statefulset.and_then(|s| s.status.as_ref());
    let ready = sts_status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = sts_status.and_then(|s| s.updated_replicas).unwrap_or(0);
    status.ready_replicas = ready;
    status.shards = findings.shards.as_ref().map(|h| h.led.clone());
    status.shard_leaders = findings
        .shards
        .as_ref()
        .map(|h| h.leaders.clone())
        .unwrap_or_default();
    let shard_problems = findings.shards.iter().flat_map(|h| &h.problems);
    let refused: Vec<&Refusal> = findings.refused.iter().chain(shard_problems).collect();
    let c = &mut status.conditions;
    match &findings.migration {
        Some(how) => conditions::set(
            c,
            MIGRATION_NEEDED,
            true,
            "ActivePodMode",
            how,
            generation,
            now,
        ),
        None if conditions::find(c, MIGRATION_NEEDED).is_some() => conditions::set(
            c,
            MIGRATION_NEEDED,
            false,
            "NotNeeded",
            "the mailboxes are replicated, or one replica serves them",
            generation,
            now,
        ),
        None => {}
    }
    if broker.spec.paused {
        conditions::set(
            c,
            "Progressing",
            false,
            "Paused",
            "spec.paused is true: the workload is left as it is",
            generation,
            now,
        );
    } else if ready < desired || updated < desired {
        conditions::set(
            c,
            "Progressing",
            true,
            "RollingOut",
            format!("{ready} of {desired} pods ready, {updated} updated"),
            generation,
            now,
        );
    } else {
        conditions::set(
            c,
            "Progressing",
            false,
            "Complete",
            format!("all {desired} pods ready and updated"),
            generation,
            now,
        );
    }
    if ready > 0 {
        conditions::set(
            c,
            "Available",
            true,
            "PodsReady",
            format!("{ready} of {desired} pods ready"),
            generation,
            now,
        );
    } else {
        conditions::set(
            c,
            "Available",
            false,
            "NoPodReady",
            "no broker pod is ready yet",
            generation,
            now,
        );
    }
    match refused.first() {
        Some(first) => conditions::set(
            c,
            "Degraded",
            true,
            first.reason,
            refused
                .iter()
                .map(|r| r.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            generation,
            now,
        ),
        None if ready == 0 && statefulset.is_some() => conditions::set(
            c,
            "Degraded",
            true,
            "NoPodReady",
            "no broker pod is ready",
            generation,
            now,
        ),
        None => conditions::set(
            c,
            "Degraded",
            false,
            "AsExpected",
            "nothing refused, pods serving",
            generation,
            now,
        ),
    }
    status
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
