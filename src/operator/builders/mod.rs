//! The Kubernetes objects of a [`Broker`] (and a Mailbox's [`secret`]), built as values: pure
//! functions of their owner (and of what the controller looked up for them), with no API calls and no I/O, so every field the
//! operator writes is pinned by a unit test.
//!
//! Every object comes out complete for server-side apply: `apiVersion` and `kind` (the
//! `k8s_openapi` types serialize them), name, namespace, the [broker labels](broker_labels) and a
//! controller [owner reference](owner_reference) to the Broker, so Kubernetes' garbage collector
//! deletes them with it. The one thing that outlives a Broker on purpose is its data: see
//! [`statefulset`] (`persistentVolumeClaimRetentionPolicy`).
//!
//! Names, all derived from the Broker's name `<b>` in its namespace `<ns>`:
//!
//! | object | name |
//! |---|---|
//! | StatefulSet (pods `<b>-0`, `<b>-1`, …) | `<b>` |
//! | headless Service (pod DNS, cluster routes) | `<b>-nats` |
//! | client Service (`nats://<b>.<ns>.svc:4222`) | `<b>` |
//! | ConfigMap (`nats-server.conf`) | `<b>-config` |
//! | PodDisruptionBudget | `<b>` |
//! | NetworkPolicy | `<b>` |
//! | Secret with the signing keys (built elsewhere) | `<b>-auth` |
//! | Secret with the route password (built elsewhere) | `<b>-routes` |
//! | ConfigMap of the tenant accounts' revocations (written elsewhere) | `<b>-tenants` |

mod containers;
mod layout;
mod nats_config;
mod network_policy;
mod pdb;
mod quantity;
pub mod secret;
mod services;
mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;
use kube::{Resource, ResourceExt};

use crate::crd::Broker;
use crate::operator::names::{
    COMPONENT_LABEL, INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL, NAME_LABEL,
};

pub use containers::{default_broker_image, Images, DEFAULT_NATS_IMAGE};
pub use layout::{Layout, MIN_REPLICATED_REPLICAS};
pub use nats_config::{config_checksum, config_map, nats_server_config, route_urls, CONFIG_KEY};
pub use nats_config::{ROUTES_ENV, ROUTE_PASSWORD_ENV, ROUTE_USER};
pub use network_policy::network_policy;
pub use pdb::pod_disruption_budget;
pub use quantity::{compare_sizes, same_size, storage_shrink};
pub use services::{client_service, headless_service};
#[cfg(test)]
pub(crate) use statefulset::tests::new_sts;
pub use statefulset::{statefulset, BROKER_CREDS_KEY, ROUTE_PASSWORD_KEY};

/// NATS clients (agents, the broker container, the operator's admin connection).
pub const CLIENT_PORT: u16 = 4222;
/// NATS cluster routes between the pods of one Broker.
pub const CLUSTER_PORT: u16 = 6222;
/// nats-server's monitoring endpoint (`/healthz`, `/varz`, …), bound to the pod's loopback.
pub const MONITOR_PORT: u16 = 8222;
/// The `mq9 broker` HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.
pub const BROKER_HTTP_PORT: u16 = 9090;

/// The labels of every object of a Broker. They are also the pod selector, so they must never
/// change for a given Broker (a StatefulSet's selector is immutable): only the name goes in.
pub fn broker_labels(name: &str) -> BTreeMap<String, String> {
    [
        (NAME_LABEL, "mq9"),
        (INSTANCE_LABEL, name),
        (COMPONENT_LABEL, "broker"),
        (MANAGED_BY_LABEL, MANAGED_BY),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect()
}

/// The controller reference to the Broker: Kubernetes deletes the object when the Broker goes
/// (`blockOwnerDeletion`: a foreground deletion of the Broker waits for it), and kube's
/// controller maps events on the object back to the Broker.
///
/// # Panics
/// When the Broker has no name or uid: every Broker read from the API server has both.
pub fn owner_reference(broker: &Broker) -> OwnerReference {
    let reference = broker
        .controller_owner_ref(&())
        .expect("a Broker read from the API server has a name and a uid");
    OwnerReference {
        block_owner_deletion: Some(true),
        ..reference
    }
}

/// Metadata of an object named `name` that belongs to `broker`.
pub(crate) fn metadata(broker: &Broker, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: broker.namespace(),
        labels: Some(broker_labels(&broker.name_any())),
        owner_references: Some(vec![owner_reference(broker)]),
        ..ObjectMeta::default()
    }
}

/// An Opaque Secret named `name` that belongs to `broker`, holding generated key material or
/// passwords as text under each key.
pub fn opaque_secret<'a>(
    broker: &Broker,
    name: String,
    data: impl IntoIterator<Item = (&'a str, String)>,
) -> Secret {
    let data = data.into_iter();
    Secret {
        metadata: metadata(broker, name),
        type_: Some("Opaque".into()),
        data: Some(
            data.map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// The Broker's namespace. Brokers are namespaced, so one read from the API server has one.
fn namespace(broker: &Broker) -> String {
    broker
        .namespace()
        .expect("a Broker read from the API server has a namespace")
}

/// The StatefulSet; its pods are `<name>-0`, `<name>-1`, ….
pub fn statefulset_name(broker: &Broker) -> String {
    broker.name_any()
}

/// The headless Service that gives each pod a stable DNS name for the cluster routes.
pub fn headless_service_name(broker: &Broker) -> String {
    format!("{}-nats", broker.name_any())
}

/// The client Service: the address agents and the operator connect to.
pub fn client_service_name(broker: &Broker) -> String {
    broker.name_any()
}

/// The ConfigMap that holds `nats-server.conf`.
pub fn config_map_name(broker: &Broker) -> String {
    format!("{}-config", broker.name_any())
}

/// The PodDisruptionBudget (only with more than one replica).
pub fn pdb_name(broker: &Broker) -> String {
    broker.name_any()
}

/// The Secret with the Broker's signing keys and the broker container's credentials.
pub fn auth_secret_name(broker: &Broker) -> String {
    format!("{}-auth", broker.name_any())
}

/// The Secret with the password of the cluster routes (only with more than one replica).
pub fn routes_secret_name(broker: &Broker) -> String {
    format!("{}-routes", broker.name_any())
}

/// The NetworkPolicy that says who may reach the Broker's pods.
pub fn network_policy_name(broker: &Broker) -> String {
    broker.name_any()
}

/// The ConfigMap that records each tenant namespace's account state (revoked users); see
/// `operator::tenants`.
pub fn tenants_config_map_name(broker: &Broker) -> String {
    format!("{}-tenants", broker.name_any())
}

/// In-cluster host and port of the client Service: `(<name>.<ns>.svc, 4222)`.
pub fn client_endpoint(broker: &Broker) -> (String, u16) {
    let host = format!("{}.{}.svc", client_service_name(broker), namespace(broker));
    (host, CLIENT_PORT)
}

/// The in-cluster NATS URL of the Broker, `nats://<name>.<ns>.svc:4222` (its `status.url`).
pub fn broker_url(broker: &Broker) -> String {
    let (host, port) = client_endpoint(broker);
    format!("nats://{host}:{port}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crd::BrokerSpec;

    /// A Broker as the API server would hand it over: `b1` in `ns`, with a uid.
    pub(crate) fn broker(spec: serde_json::Value) -> Broker {
        let spec: BrokerSpec = serde_json::from_value(spec).unwrap();
        let mut broker = Broker::new("b1", spec);
        broker.metadata.namespace = Some("ns".into());
        broker.metadata.uid = Some("uid-1".into());
        broker
    }

    /// Checks what every built object carries, on its JSON form (what is applied).
    pub(crate) fn assert_applyable(object: &impl serde::Serialize, kind: &str, name: &str) {
        let json = serde_json::to_value(object).unwrap();
        assert_eq!(json["kind"], kind);
        assert!(json["apiVersion"].is_string());
        assert_eq!(json["metadata"]["name"], name);
        assert_eq!(json["metadata"]["namespace"], "ns");
        assert_eq!(json["metadata"]["labels"][INSTANCE_LABEL], "b1");
        assert_eq!(json["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    }

    #[test]
    fn labels_name_the_instance() {
        let labels = broker_labels("b1");
        assert_eq!(labels[NAME_LABEL], "mq9");
        assert_eq!(labels[INSTANCE_LABEL], "b1");
        assert_eq!(labels[COMPONENT_LABEL], "broker");
        assert_eq!(labels[MANAGED_BY_LABEL], "mq9-operator");
    }

    #[test]
    fn owner_reference_is_the_controlling_broker() {
        let owner = owner_reference(&broker(serde_json::json!({})));
        assert_eq!(owner.uid, "uid-1");
        assert_eq!(owner.name, "b1");
        assert_eq!(owner.kind, "Broker");
        assert_eq!(owner.api_version, "mq9.io/v1alpha1");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
    }

    #[test]
    fn names_and_url() {
        let b = broker(serde_json::json!({}));
        assert_eq!(statefulset_name(&b), "b1");
        assert_eq!(headless_service_name(&b), "b1-nats");
        assert_eq!(client_service_name(&b), "b1");
        assert_eq!(config_map_name(&b), "b1-config");
        assert_eq!(pdb_name(&b), "b1");
        assert_eq!(auth_secret_name(&b), "b1-auth");
        assert_eq!(routes_secret_name(&b), "b1-routes");
        assert_eq!(network_policy_name(&b), "b1");
        assert_eq!(tenants_config_map_name(&b), "b1-tenants");
        assert_eq!(client_endpoint(&b), ("b1.ns.svc".to_owned(), 4222));
        assert_eq!(broker_url(&b), "nats://b1.ns.svc:4222");
    }
}
