//! `Broker`: a managed mq9 data plane — nats-server plus `mq9 broker` in a StatefulSet.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A managed mq9 broker: nats-server and the mq9 broker in each pod of a StatefulSet, with
/// mailboxes on a persistent volume.
// `printcolumn(... type_ = "string" ...)` repeated is not a duplicate; clippy's lint misreads it.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "mq9.io",
    version = "v1alpha1",
    kind = "Broker",
    namespaced,
    status = "BrokerStatus",
    shortname = "mq9b",
    category = "mq9",
    doc = "A managed mq9 broker: nats-server plus the mq9 mailbox service, run as a StatefulSet.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Available\")].status"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Shards", type_ = "string", json_path = ".status.shards"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new(BROKER_NAME_RULE).message(BROKER_NAME_MESSAGE)
)]
#[x_kube(validation = Rule::new(BROKER_REPLICAS_RULE).message(BROKER_REPLICAS_MESSAGE))]
#[serde(rename_all = "camelCase")]
pub struct BrokerSpec {
    /// Number of pods (nats-server + mq9 broker each). More than one form a NATS cluster.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,
    /// How many shards the mailboxes are spread over when the Broker runs replicated (3 or
    /// more replicas): each shard has its own leader and log. Fixed once the data exists, so
    /// immutable; take at least four per replica (the default fits 3 or 5). Ignored with one
    /// replica.
    #[serde(default = "default_shards")]
    #[schemars(range(min = 1, max = crate::replication::shard::MAX_SHARDS))]
    #[x_kube(validation = Rule::new(BROKER_SHARDS_RULE).message(BROKER_SHARDS_MESSAGE))]
    pub shards: u32,
    /// The mq9 container image. Default: the operator's own image (`--broker-image`, normally
    /// `ghcr.io/mq9/mq9` at the operator's version), so upgrading the operator upgrades the
    /// Brokers that do not pin one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// The nats-server container image (2.11 or later: per-message TTL and JWT auth). Default:
    /// the operator's (`--nats-image`, normally the nats-server version mq9 is tested with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub nats_image: Option<String>,
    /// Compute resources of the nats-server container. Default: a request of 50m CPU and
    /// 64Mi memory and a 512Mi memory limit, so a namespace ResourceQuota admits the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_resources: Option<ResourceRequirements>,
    /// The persistent volume that holds the mailboxes.
    #[serde(default)]
    pub storage: BrokerStorage,
    /// Compute resources of the mq9 broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// TTL of mailboxes created without one, e.g. `24h`; `0` means they never expire.
    #[serde(default = "default_mailbox_ttl")]
    #[schemars(regex(pattern = r"^(0|([0-9]+(s|m|h|d))+)$"))]
    pub default_mailbox_ttl: String,
    /// How long a SEND's `Nats-Msg-Id` is remembered per mailbox, e.g. `2m`: a repeated SEND
    /// within it stores nothing and is answered with the original msg_id. `0` turns it off.
    #[serde(default = "default_dedup_window")]
    #[schemars(regex(pattern = r"^(0|([0-9]+(s|m|h|d))+)$"))]
    pub dedup_window: String,
    /// Caps that protect the broker; CREATE and SEND beyond them are answered `full`.
    #[serde(default)]
    pub limits: BrokerLimits,
    /// How clients authenticate to NATS.
    #[serde(default)]
    pub auth: BrokerAuth,
    /// While true, the operator changes nothing of this Broker's workload.
    #[serde(default)]
    pub paused: bool,
    /// Namespaces whose Mailboxes and Broadcasts may use this Broker, besides its own (always
    /// allowed); `["*"]` allows every namespace. Empty (default): only the Broker's namespace.
    /// A Mailbox elsewhere gets `Ready=False` with reason `NamespaceNotAllowed`, and the
    /// NetworkPolicy admits NATS clients only from these namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(
        length(min = 1, max = 63),
        regex(pattern = r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$")
    ))]
    pub allowed_namespaces: Vec<String>,
}

/// A Broker's name becomes its Services' names (DNS-1035 labels: a lowercase letter first,
/// then lowercase letters, digits and `-`, no `-` last) and its StatefulSet's; the StatefulSet
/// controller labels each revision `<name>-<hash of up to 10 characters>`, and a label value is
/// at most 63 characters, so the name is at most 52. The CRD's CEL rule refuses other names at
/// admission; [`Broker::name_problem`] is the same check for API servers without CEL.
const BROKER_NAME_RULE: &str =
    "self.metadata.name.size() <= 52 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";
const BROKER_NAME_MESSAGE: &str = "a Broker's name is a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, not ending with '-') of at most 52 characters";
/// `spec.replicas` is odd: 1, or 3 or more of which a majority keeps JetStream's quorum.
const BROKER_REPLICAS_RULE: &str = "self.replicas % 2 == 1";
const BROKER_REPLICAS_MESSAGE: &str = "replicas is 1 or an odd number of at least 3: of two replicas, losing either loses the quorum the replicated data plane needs";
/// `spec.shards` never changes: the data is laid out by shard. Without CEL the controller
/// refuses a change too (`operator::broker::layout`), keeping the running count.
const BROKER_SHARDS_RULE: &str = "self == oldSelf";
pub const BROKER_SHARDS_MESSAGE: &str = "shards is immutable: every mailbox's shard is fixed when the data is made, and the brokers refuse data laid out in another count";
/// The longest Broker name (see [`BROKER_NAME_RULE`]).
pub const BROKER_NAME_MAX: usize = 52;

/// `spec.allowedNamespaces` entry that allows every namespace.
pub const ANY_NAMESPACE: &str = "*";

impl Broker {
    /// Why this Broker's name cannot become its objects' names, if it cannot (the CRD's CEL
    /// rule, checked again for API servers that do not run CEL): the message names the rule.
    pub fn name_problem(&self) -> Option<String> {
        let name = self.metadata.name.as_deref().unwrap_or_default();
        let mut chars = name.chars();
        let dns_1035 = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.ends_with('-');
        match dns_1035 && name.len() <= BROKER_NAME_MAX {
            true => None,
            false => Some(format!(
                "the name {name:?} cannot name the Broker's Services and StatefulSet: {BROKER_NAME_MESSAGE}"
            )),
        }
    }

    /// Why this Broker's replica count cannot keep a quorum, if it cannot (the CRD's CEL rule,
    /// checked again for API servers that do not run CEL).
    pub fn replicas_problem(&self) -> Option<String> {
        let replicas = self.spec.replicas;
        (replicas % 2 != 1)
            .then(|| format!("replicas {replicas} refused: {BROKER_REPLICAS_MESSAGE}"))
    }

    /// Whether Mailboxes and Broadcasts of `namespace` may use this Broker: its own namespace
    /// always (whoever administers it administers the Broker), others when
    /// `spec.allowedNamespaces` names them or holds `*`.
    pub fn admits(&self, namespace: &str) -> bool {
        self.metadata.namespace.as_deref() == Some(namespace)
            || self
                .spec
                .allowed_namespaces
                .iter()
                .any(|allowed| allowed == ANY_NAMESPACE || allowed == namespace)
    }

    /// The condition message for an object of `namespace` this Broker does not admit: it
    /// names the Broker and the namespace, and says what would admit it.
    pub fn refusal(&self, namespace: &str) -> String {
        let broker = self.metadata.name.as_deref().unwrap_or_default();
        let own = self.metadata.namespace.as_deref().unwrap_or_default();
        format!(
            "Broker {own}/{broker} does not allow namespace {namespace}: add {namespace} to the Broker's spec.allowedNamespaces"
        )
    }
}

/// The persistent volume of each broker pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStorage {
    /// Size of each pod's volume, e.g. `10Gi`. It can grow (if the storage class allows) but
    /// never shrink: a smaller size is refused with a Warning event.
    #[serde(default = "default_storage_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: String,
    /// Storage class of the volumes; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for BrokerStorage {
    fn default() -> Self {
        BrokerStorage {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// Broker-wide caps; `0` means unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerLimits {
    /// Most mailboxes the broker holds (0 = unlimited).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub max_mailboxes: i64,
    /// Most messages one mailbox holds (0 = unlimited).
    #[serde(default = "default_max_messages")]
    #[schemars(range(min = 0))]
    pub max_messages_per_mailbox: i64,
    /// Most bytes one mailbox stores (0 = unlimited): payload, headers, key and tags.
    #[serde(default = "default_max_bytes")]
    #[schemars(range(min = 0))]
    pub max_bytes_per_mailbox: i64,
    /// Most agent registry entries (0 = unlimited).
    #[serde(default = "default_max_agents")]
    #[schemars(range(min = 0))]
    pub max_agents: i64,
    /// Most registry entries one agent identity may own (0 = unlimited).
    #[serde(default = "default_max_agents_per_identity")]
    #[schemars(range(min = 0))]
    pub max_agents_per_identity: i64,
    /// Largest agent card (REGISTER body) in bytes (0 = unlimited).
    #[serde(default = "default_max_card_bytes")]
    #[schemars(range(min = 0))]
    pub max_card_bytes: i64,
    /// Most delayed (not yet visible) messages one mailbox holds (0 = unlimited).
    #[serde(default = "default_max_delayed")]
    #[schemars(range(min = 0))]
    pub max_delayed_per_mailbox: i64,
    /// Longest `mq9-delay` a SEND may ask for, in seconds (0 = unlimited).
    #[serde(default = "default_max_delay")]
    #[schemars(range(min = 0))]
    pub max_delay: i64,
    /// Most consumer groups one mailbox holds (0 = unlimited).
    #[serde(default = "default_max_groups")]
    #[schemars(range(min = 0))]
    pub max_groups_per_mailbox: i64,
    /// Most long-poll FETCHes waiting on one mailbox (0 = unlimited).
    #[serde(default = "default_max_waiters_per_mailbox")]
    #[schemars(range(min = 0))]
    pub max_waiters_per_mailbox: i64,
    /// Most long-poll FETCHes waiting in the whole broker (0 = unlimited).
    #[serde(default = "default_max_waiters")]
    #[schemars(range(min = 0))]
    pub max_waiters: i64,
    /// Most stored records one request examines before it answers with a cursor
    /// (0 = unlimited).
    #[serde(default = "default_max_scan")]
    #[schemars(range(min = 0))]
    pub max_scan: i64,
}

impl Default for BrokerLimits {
    fn default() -> Self {
        BrokerLimits {
            max_mailboxes: 0,
            max_messages_per_mailbox: default_max_messages(),
            max_bytes_per_mailbox: default_max_bytes(),
            max_agents: default_max_agents(),
            max_agents_per_identity: default_max_agents_per_identity(),
            max_card_bytes: default_max_card_bytes(),
            max_delayed_per_mailbox: default_max_delayed(),
            max_delay: default_max_delay(),
            max_groups_per_mailbox: default_max_groups(),
            max_waiters_per_mailbox: default_max_waiters_per_mailbox(),
            max_waiters: default_max_waiters(),
            max_scan: default_max_scan(),
        }
    }
}

/// NATS authentication of the broker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerAuth {
    /// `jwt` (default): every client needs credentials; each Mailbox's Secret holds credentials
    /// scoped to that mailbox and expiring with it. `none`: no authentication (development
    /// only: anyone who can reach NATS can read any mailbox whose address they know).
    #[serde(default)]
    pub mode: AuthMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Jwt,
    None,
}

/// What the operator observed of a Broker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Available`, `Progressing` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Pods whose containers are all ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// The in-cluster NATS URL of the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// With replicated mode, the shards that have a leader out of all, e.g. `16/16`, as the
    /// brokers last answered (absent while they cannot say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<String>,
    /// With replicated mode, how many shards each live pod leads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shard_leaders: BTreeMap<String, u32>,
}

fn default_replicas() -> i32 {
    1
}

fn default_shards() -> u32 {
    crate::replication::shard::DEFAULT_SHARDS
}

fn default_storage_size() -> String {
    "1Gi".to_owned()
}

fn default_mailbox_ttl() -> String {
    "24h".to_owned()
}

fn default_dedup_window() -> String {
    "2m".to_owned()
}

fn default_max_messages() -> i64 {
    100_000
}

fn default_max_bytes() -> i64 {
    256 * 1024 * 1024
}

fn default_max_agents() -> i64 {
    250_000
}

fn default_max_agents_per_identity() -> i64 {
    32
}

fn default_max_card_bytes() -> i64 {
    32 * 1024
}

fn default_max_delayed() -> i64 {
    1_000
}

fn default_max_delay() -> i64 {
    7 * 86_400
}

fn default_max_groups() -> i64 {
    1_000
}

fn default_max_waiters_per_mailbox() -> i64 {
    1_024
}

fn default_max_waiters() -> i64 {
    1_000_000
}

fn default_max_scan() -> i64 {
    10_000
}
