//! The Broker's NetworkPolicy: who may open a connection to its pods.

use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{broker_labels, metadata, namespace, network_policy_name};
use super::{BROKER_HTTP_PORT, CLIENT_PORT, CLUSTER_PORT};
use crate::crd::{Broker, ANY_NAMESPACE};
use crate::operator::names::NAMESPACE_NAME_LABEL;

/// Ingress to the Broker's pods, and nothing else (egress is not restricted):
///
/// - **4222, NATS clients**: from pods of the namespaces the Broker admits (its own,
///   `spec.allowedNamespaces`, or every namespace with `*`) and of the operator's namespace
///   (`operator_namespace`: its admin connection). Credentials still decide what a client may
///   do; this keeps other tenants from reaching the server at all.
/// - **6222, cluster routes**: only from the Broker's own pods (routes also need the password).
/// - **9090, the broker's `/metrics`, `/healthz`, `/readyz`**: from anywhere, so any Prometheus
///   can scrape it; it lists counts, never an address.
/// - **8222, nats-server monitoring**: not listed, so refused; it is bound to the pod's
///   loopback anyway.
///
/// As with any NetworkPolicy, it is enforced only by a network plugin that implements them,
/// and most plugins let the kubelet's probes through regardless.
pub fn network_policy(broker: &Broker, operator_namespace: &str) -> NetworkPolicy {
    let own_pods = LabelSelector {
        match_labels: Some(broker_labels(&broker.name_any())),
        ..LabelSelector::default()
    };
    let rule = |port: u16, from: Option<Vec<NetworkPolicyPeer>>| NetworkPolicyIngressRule {
        ports: Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(i32::from(port))),
            protocol: Some("TCP".to_owned()),
            end_port: None,
        }]),
        from,
    };
    let routes_peer = NetworkPolicyPeer {
        pod_selector: Some(own_pods.clone()),
        ..NetworkPolicyPeer::default()
    };
    let clients_peer = NetworkPolicyPeer {
        namespace_selector: Some(client_namespaces(broker, operator_namespace)),
        ..NetworkPolicyPeer::default()
    };
    NetworkPolicy {
        metadata: metadata(broker, network_policy_name(broker)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(own_pods),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![
                rule(CLIENT_PORT, Some(vec![clients_peer])),
                rule(CLUSTER_PORT, Some(vec![routes_peer])),
                rule(BROKER_HTTP_PORT, None),
            ]),
            egress: None,
        }),
    }
}

/// The namespaces whose pods may be NATS clients: every one (an empty selector) when the
/// Broker admits `*`, else its own, the allowed ones and the operator's, by name.
fn client_namespaces(broker: &Broker, operator_namespace: &str) -> LabelSelector {
    let allowed = &broker.spec.allowed_namespaces;
    if allowed.iter().any(|n| n == ANY_NAMESPACE) {
        return LabelSelector::default();
    }
    let names: BTreeSet<String> = allowed
        .iter()
        .cloned()
        .chain([namespace(broker), operator_namespace.to_owned()])
        .collect();
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: NAMESPACE_NAME_LABEL.to_owned(),
            operator: "In".to_owned(),
            values: Some(names.into_iter().collect()),
        }]),
        match_labels: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::builders::tests::{assert_applyable, broker};
    use serde_json::{json, Value};

    /// The policy's ingress rules as JSON, keyed by port.
    fn rules(allowed: Value) -> Vec<(i64, Value)> {
        let policy = network_policy(&broker(json!({"allowedNamespaces": allowed})), "mq9-system");
        let json = serde_json::to_value(&policy).unwrap();
        json["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["ports"][0]["port"].as_i64().unwrap(), r["from"].clone()))
            .collect()
    }

    #[test]
    fn policy_selects_the_broker_pods_for_ingress_only() {
        let policy = network_policy(&broker(json!({})), "mq9-system");
        assert_applyable(&policy, "NetworkPolicy", "b1");
        let spec = policy.spec.unwrap();
        assert_eq!(
            spec.pod_selector.unwrap().match_labels.unwrap(),
            broker_labels("b1")
        );
        assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
    }

    #[test]
    fn clients_come_from_admitted_namespaces_routes_from_own_pods_metrics_from_anywhere() {
        let rules = rules(json!(["team-b", "team-a"]));
        let ports: Vec<i64> = rules.iter().map(|(port, _)| *port).collect();
        assert_eq!(ports, [4222, 6222, 9090], "8222 is not reachable");
        let clients = &rules[0].1[0]["namespaceSelector"]["matchExpressions"][0];
        assert_eq!(clients["key"], "kubernetes.io/metadata.name");
        assert_eq!(clients["operator"], "In");
        assert_eq!(
            clients["values"],
            json!(["mq9-system", "ns", "team-a", "team-b"])
        );
        assert_eq!(
            rules[1].1,
            json!([{"podSelector": {"matchLabels": broker_labels("b1")}}]),
            "routes only from the Broker's own pods"
        );
        assert!(rules[2].1.is_null(), "metrics from any source");
    }

    #[test]
    fn by_default_only_the_own_and_operator_namespaces_are_clients() {
        let rules = rules(json!([]));
        let clients = &rules[0].1[0]["namespaceSelector"]["matchExpressions"][0];
        assert_eq!(clients["values"], json!(["mq9-system", "ns"]));
    }

    #[test]
    fn star_admits_clients_from_every_namespace() {
        let rules = rules(json!(["*"]));
        assert_eq!(rules[0].1, json!([{"namespaceSelector": {}}]));
    }
}
