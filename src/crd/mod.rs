//! The custom resources of `mq9.io/v1alpha1` (`../shared/spec/operator.md`): [`Broker`],
//! [`Mailbox`] and [`Broadcast`]. The CRD YAML in `crds/` is generated from these types by
//! `mq9 crds`; CI fails when the two differ.
//!
//! Every field carries a description (so `kubectl explain` teaches), validation lives in the
//! schema (patterns, enums, minimums) and immutability in CEL rules, so the API server refuses
//! bad input before the operator ever sees it.

mod broadcast;
mod broker;
pub mod duration;
mod mailbox;

pub use broadcast::*;
pub use broker::*;
pub use mailbox::*;

use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every mq9 resource.
pub const GROUP: &str = "mq9.io";

/// A reference to the Broker a Mailbox or Broadcast lives on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerRef {
    /// Name of the Broker.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Broker; defaults to the namespace of the referring object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl BrokerRef {
    /// The Broker's namespace, given the referring object's.
    pub fn namespace_or<'a>(&'a self, own: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(own)
    }

    /// Whether this reference, made from namespace `own`, names `broker`.
    pub fn refers_to(&self, own: &str, broker: &Broker) -> bool {
        broker.metadata.name.as_deref() == Some(self.name.as_str())
            && broker.metadata.namespace.as_deref() == Some(self.namespace_or(own))
    }
}

/// Every CRD, in the order `mq9 crds` prints them.
pub fn all(
) -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    vec![Broker::crd(), Mailbox::crd(), Broadcast::crd()]
}

/// The YAML of every CRD as one multi-document stream: what `mq9 crds` prints and what
/// `crds/` holds.
pub fn yaml() -> String {
    all()
        .iter()
        .map(|crd| serde_yaml::to_string(crd).expect("CRDs serialize"))
        .collect::<Vec<_>>()
        .join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn each_crd_json() -> Vec<Value> {
        all()
            .iter()
            .map(|crd| serde_json::to_value(crd).unwrap())
            .collect()
    }

    /// Argo CD reports an empty list the API server drops as permanent drift.
    fn assert_no_empty_lists(value: &Value, path: &str) {
        match value {
            Value::Array(items) => {
                assert!(!items.is_empty(), "empty list at {path}");
                for (i, item) in items.iter().enumerate() {
                    assert_no_empty_lists(item, &format!("{path}[{i}]"));
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    assert_no_empty_lists(item, &format!("{path}.{key}"));
                }
            }
            _ => {}
        }
    }

    /// `kubectl explain` shows descriptions: every property of every schema has one.
    fn assert_described(schema: &Value, path: &str) {
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                let here = format!("{path}.{name}");
                if !matches!(name.as_str(), "apiVersion" | "kind" | "metadata") {
                    assert!(
                        property.get("description").is_some(),
                        "no description at {here}"
                    );
                }
                assert_described(property, &here);
            }
        }
        for nested in ["items", "additionalProperties"] {
            if let Some(inner) = schema.get(nested).filter(|v| v.is_object()) {
                assert_described(inner, &format!("{path}.{nested}"));
            }
        }
    }

    #[test]
    fn crds_have_no_empty_lists_and_describe_every_field() {
        for crd in each_crd_json() {
            let name = crd["metadata"]["name"].as_str().unwrap().to_owned();
            assert_no_empty_lists(&crd, &name);
            let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            assert_described(schema, &name);
            assert_eq!(crd["spec"]["names"]["categories"][0], "mq9");
            assert!(crd["spec"]["versions"][0]["subresources"]["status"].is_object());
        }
    }

    #[test]
    fn broker_shards_are_bounded_defaulted_and_immutable() {
        let crd = serde_json::to_value(Broker::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let shards = &spec["properties"]["shards"];
        assert_eq!(
            (shards["minimum"].as_f64(), shards["maximum"].as_f64()),
            (Some(1.0), Some(1024.0))
        );
        assert_eq!(shards["default"], 16);
        assert_eq!(
            shards["x-kubernetes-validations"][0]["rule"],
            "self == oldSelf"
        );
        let message = shards["x-kubernetes-validations"][0]["message"]
            .as_str()
            .unwrap();
        assert!(message.starts_with("shards is immutable"), "{message}");
    }

    #[test]
    fn mailbox_schema_validates_address_and_immutability() {
        let crd = serde_json::to_value(Mailbox::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["properties"]["address"]["maxLength"], 128);
        assert_eq!(
            spec["properties"]["address"]["pattern"],
            r"^[a-z0-9]+(\.[a-z0-9]+)*$"
        );
        let rules: Vec<&str> = spec["x-kubernetes-validations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].as_str().unwrap())
            .collect();
        assert!(rules
            .iter()
            .any(|r| r.contains("brokerRef == oldSelf.brokerRef")));
        assert!(rules
            .iter()
            .any(|r| r.contains("self.address == oldSelf.address")));
        assert!(rules.iter().any(|r| r.contains("self.ttl == oldSelf.ttl")));
    }
}
