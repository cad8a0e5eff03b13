//! How a Broker's pods hold the mailboxes. Fixed by what is on the volumes, so it is chosen
//! once, when the StatefulSet is made ([`Layout::for_new`]), and read back from the running
//! StatefulSet's broker flags ever after ([`Layout::of_running`]): the StatefulSet is the record,
//! no annotation or status field can drift from what the pods really run.

use k8s_openapi::api::apps::v1::StatefulSet;

use crate::crd::Broker;

/// The broker flag that turns replicated mode on, and its value.
const REPLICATION_FLAG: &str = "--replication";
const REPLICATION_JETSTREAM: &str = "jetstream";
/// The broker flag with the shard count (replicated mode).
pub(super) const SHARDS_FLAG: &str = "--shards";
/// The broker flag that makes one pod's broker serve (the layout before replication).
pub(super) const ACTIVE_POD_FLAG: &str = "--active-pod";

/// The fewest replicas of a replicated Broker: JetStream keeps each shard's log on 3 servers
/// and needs 2 of them (a quorum) to accept a write.
pub const MIN_REPLICATED_REPLICAS: i32 = 3;

/// Where the mailboxes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One pod; its broker serves every mailbox from the RocksDB on its volume.
    Single,
    /// Several clustered nats-servers, but one RocksDB: pod 0's broker serves every mailbox,
    /// the others stand by (`--active-pod`). Brokers made before replicated mode, or scaled
    /// up from one replica, keep it: pod 0's volume holds a single node's data, which a
    /// replicated broker refuses.
    ActivePod,
    /// Every pod's broker in replicated mode (`--replication jetstream`): the mailboxes spread
    /// over `shards` shards, each with a leader and a JetStream log of 3 copies.
    Replicated { shards: u32 },
}

impl Layout {
    /// The layout of a Broker's first StatefulSet: replicated with 3 replicas or more.
    pub fn for_new(broker: &Broker) -> Layout {
        match broker.spec.replicas >= MIN_REPLICATED_REPLICAS {
            true => Layout::Replicated {
                shards: broker.spec.shards,
            },
            false => Layout::Single,
        }
    }

    /// The layout the running StatefulSet's broker container was started with (its flags).
    pub fn of_running(statefulset: &StatefulSet) -> Layout {
        let containers = statefulset
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|pod| pod.containers.as_slice())
            .unwrap_or_default();
        let args = containers
            .iter()
            .find(|c| c.name == super::containers::BROKER_CONTAINER)
            .and_then(|c| c.args.as_deref())
            .unwrap_or_default();
        let value = |flag: &str| {
            let at = args.iter().position(|a| a == flag)?;
            args.get(at + 1).map(String::as_str)
        };
        if value(REPLICATION_FLAG) == Some(REPLICATION_JETSTREAM) {
            // The flag's own default when it is missing, as the broker would read it.
            let shards = value(SHARDS_FLAG).and_then(|s| s.parse().ok());
            return Layout::Replicated {
                shards: shards.unwrap_or(crate::replication::shard::DEFAULT_SHARDS),
            };
        }
        match value(ACTIVE_POD_FLAG) {
            Some(_) => Layout::ActivePod,
            None => Layout::Single,
        }
    }

    pub fn is_replicated(self) -> bool {
        matches!(self, Layout::Replicated { .. })
    }

    /// The broker's flags for this layout, besides those every broker gets.
    pub(super) fn broker_args(self, broker: &Broker) -> Vec<String> {
        let name = super::statefulset_name(broker);
        match self {
            Layout::Single => Vec::new(),
            // One RocksDB holds the mailboxes: the broker of pod 0. The others stand by
            // (their nats-server still serves clients and routes to pod 0's broker).
            Layout::ActivePod => vec![ACTIVE_POD_FLAG.to_owned(), format!("{name}-0")],
            // The cluster is the Broker (its streams, lease bucket and forwarding subjects
            // are named after it); each pod's broker is its pod (Kubernetes expands
            // `$(POD_NAME)` from the container's environment), which is also its
            // nats-server's `server_name`.
            Layout::Replicated { shards } => [
                (REPLICATION_FLAG, REPLICATION_JETSTREAM.to_owned()),
                (SHARDS_FLAG, shards.to_string()),
                ("--cluster", name),
                ("--node", "$(POD_NAME)".to_owned()),
                ("--peers", broker.spec.replicas.to_string()),
                ("--log-replicas", MIN_REPLICATED_REPLICAS.to_string()),
            ]
            .into_iter()
            .flat_map(|(flag, value)| [flag.to_owned(), value])
            .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::builders::tests::broker;
    use crate::operator::builders::{statefulset, Images};
    use serde_json::json;

    fn running(spec: serde_json::Value, layout: Layout) -> Layout {
        let sts = statefulset(&broker(spec), layout, &Images::default(), "sum", None);
        Layout::of_running(&sts)
    }

    #[test]
    fn new_brokers_replicate_from_three_replicas() {
        let layout = |spec| Layout::for_new(&broker(spec));
        assert_eq!(layout(json!({"replicas": 1})), Layout::Single);
        assert_eq!(
            layout(json!({"replicas": 3})),
            Layout::Replicated { shards: 16 }
        );
        assert_eq!(
            layout(json!({"replicas": 5, "shards": 40})),
            Layout::Replicated { shards: 40 }
        );
    }

    #[test]
    fn the_running_layout_is_read_back_from_the_flags_it_was_given() {
        for layout in [
            Layout::Single,
            Layout::ActivePod,
            Layout::Replicated { shards: 7 },
        ] {
            assert_eq!(running(json!({"replicas": 3}), layout), layout);
        }
        // Another count in the spec does not change what runs.
        let replicated = Layout::Replicated { shards: 7 };
        assert_eq!(
            running(json!({"replicas": 3, "shards": 9}), replicated),
            replicated
        );
    }
}
