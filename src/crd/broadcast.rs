//! `Broadcast`: durable fan-out of a broadcast topic to a set of mailboxes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::BrokerRef;

/// Every member mailbox holds a durable subscription to the topic on the broker, so broadcasts
/// reach agents that were offline.
// `printcolumn(... type_ = "string" ...)` repeated is not a duplicate; clippy's lint misreads it.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "mq9.io",
    version = "v1alpha1",
    kind = "Broadcast",
    namespaced,
    status = "BroadcastStatus",
    shortname = "mbc",
    category = "mq9",
    doc = "Durable fan-out: every member Mailbox receives the broadcasts of a topic, even while offline.",
    printcolumn(name = "Topic", type_ = "string", json_path = ".spec.topic"),
    printcolumn(name = "Members", type_ = "integer", json_path = ".status.memberCount"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.brokerRef == oldSelf.brokerRef").message("brokerRef is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct BroadcastSpec {
    /// The Broker the member mailboxes live on (immutable).
    pub broker_ref: BrokerRef,
    /// Topic relative to `$mq9.AI.BROADCAST.`; `*` matches one token, `>` the rest.
    #[schemars(
        length(min = 1, max = 255),
        regex(pattern = r"^([^.*> ]+|\*)(\.([^.*> ]+|\*))*(\.>)?$|^>$")
    )]
    pub topic: String,
    /// Which mailboxes receive the topic.
    #[serde(default)]
    pub members: BroadcastMembers,
    /// Mailboxes (by name, same namespace) whose credentials may publish on the topic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publishers: Vec<String>,
}

/// Members: the union of a label selector and explicit names (same namespace).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BroadcastMembers {
    /// Mailboxes whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox_selector: Option<LabelSelector>,
    /// Mailboxes by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mailbox_refs: Vec<String>,
}

/// What the operator observed of a Broadcast.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BroadcastStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// How many mailboxes hold the subscription.
    #[serde(default)]
    pub member_count: i32,
}
