//! Which [`Layout`] a pass keeps, and what of the spec it cannot follow because of it.
//!
//! The layout is what the volumes hold, so a running StatefulSet keeps its own
//! ([`Layout::of_running`]); only a new one is chosen from the spec ([`Layout::for_new`]). That
//! is the upgrade path from the active-pod Brokers of earlier versions: their pod 0 holds a
//! single node's data, which a replicated broker refuses to open, so switching them to
//! replicated mode would leave every pod crash-looping. They keep running as they are, with a
//! `MigrationNeeded` condition that says why and how to move (see [`migration`]).

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::ResourceExt;

use super::immutable::{Refusal, IMMUTABLE_FIELD_CHANGED};
use crate::crd::{Broker, BROKER_SHARDS_MESSAGE};
use crate::operator::builders::{Layout, MIN_REPLICATED_REPLICAS};

/// Degraded reason: fewer replicas than a replicated Broker's quorum needs.
pub const REPLICAS_CHANGE_REFUSED: &str = "ReplicasChangeRefused";

/// The layout a pass applies, the replica count it applies, and what it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub layout: Layout,
    pub replicas: i32,
    pub refused: Vec<Refusal>,
    /// With several replicas in the active-pod layout: why the mailboxes are not replicated,
    /// and how to change that (the `MigrationNeeded` condition's message).
    pub migration: Option<String>,
}

/// The layout of `broker`'s pods given the StatefulSet running, if any.
///
/// - None running: [`Layout::for_new`].
/// - Replicated: kept, with its shard count; another `spec.shards` is refused (an API server
///   without CEL let it in), and so is a scale below 3 replicas (each shard's log needs 2 of its
///   3 copies: one pod would hold no quorum), the StatefulSet keeping its count.
/// - Single or active-pod: kept, active-pod from 2 replicas on (pod 0's broker serves), with
///   the [`migration`] note.
pub fn decide(broker: &Broker, existing: Option<&StatefulSet>) -> Decision {
    let wanted = broker.spec.replicas;
    let Some(existing) = existing else {
        return Decision {
            layout: Layout::for_new(broker),
            replicas: wanted,
            refused: Vec::new(),
            migration: None,
        };
    };
    match Layout::of_running(existing) {
        Layout::Replicated { shards } => {
            let mut refused = Vec::new();
            if broker.spec.shards != shards {
                refused.push(Refusal {
                    reason: IMMUTABLE_FIELD_CHANGED,
                    message: format!(
                        "spec.shards is {}, the data is laid out in {shards}: {BROKER_SHARDS_MESSAGE}; the brokers keep {shards} shards",
                        broker.spec.shards
                    ),
                });
            }
            let running = existing.spec.as_ref().and_then(|s| s.replicas);
            let replicas = match wanted >= MIN_REPLICATED_REPLICAS {
                true => wanted,
                false => {
                    let kept = running
                        .unwrap_or(MIN_REPLICATED_REPLICAS)
                        .max(MIN_REPLICATED_REPLICAS);
                    refused.push(Refusal {
                        reason: REPLICAS_CHANGE_REFUSED,
                        message: format!(
                            "replicas {wanted} refused: the mailboxes are replicated, each shard's log on {MIN_REPLICATED_REPLICAS} pods of which 2 must be up to take a write; the StatefulSet keeps {kept}"
                        ),
                    });
                    kept
                }
            };
            Decision {
                layout: Layout::Replicated { shards },
                replicas,
                refused,
                migration: None,
            }
        }
        Layout::Single | Layout::ActivePod => {
            let several = wanted > 1;
            Decision {
                layout: if several {
                    Layout::ActivePod
                } else {
                    Layout::Single
                },
                replicas: wanted,
                refused: Vec::new(),
                migration: several.then(|| migration(broker)),
            }
        }
    }
}

/// What the `MigrationNeeded` condition says of an active-pod Broker: what runs, why it stays,
/// and the two ways to replicated mode (the operator does neither on its own: both cost the
/// agents an interruption, and the second loses the messages).
pub fn migration(broker: &Broker) -> String {
    let name = broker.name_any();
    format!(
        "pod {name}-0 holds every mailbox in a single broker's store (the StatefulSet was made before replicated mode, or with one replica); replicated brokers refuse that data, so {name}-0 alone serves and its mailboxes are not replicated. \
         To replicate them: create a new Broker with 3 or more replicas and re-create the Mailboxes with brokerRef naming it; or, if their messages may be lost, delete the StatefulSet {name} (not the Broker): the operator makes a replicated StatefulSet and the Mailboxes' mailboxes again, empty; the old store stays unused on the volume of {name}-0 until the PersistentVolumeClaims data-{name}-* are deleted"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::builders::{statefulset, tests::broker, Images};
    use serde_json::json;

    fn running(layout: Layout, replicas: i32) -> StatefulSet {
        let spec = json!({"replicas": replicas});
        statefulset(&broker(spec), layout, &Images::default(), "sum", None)
    }

    #[test]
    fn a_new_broker_of_three_replicates() {
        let decision = decide(&broker(json!({"replicas": 3, "shards": 32})), None);
        assert_eq!(decision.layout, Layout::Replicated { shards: 32 });
        assert_eq!(
            (decision.replicas, decision.refused, decision.migration),
            (3, vec![], None)
        );
        assert_eq!(decide(&broker(json!({})), None).layout, Layout::Single);
    }

    #[test]
    fn an_active_pod_broker_keeps_its_layout_and_says_how_to_migrate() {
        let existing = running(Layout::ActivePod, 3);
        let decision = decide(&broker(json!({"replicas": 3})), Some(&existing));
        assert_eq!(decision.layout, Layout::ActivePod);
        let note = decision.migration.expect("a migration note");
        for part in ["b1-0", "new Broker", "data-b1-*"] {
            assert!(note.contains(part), "{part}: {note}");
        }
        assert!(decision.refused.is_empty());
        // Scaled up from one replica, pod 0 holds a single node's data too.
        let single = running(Layout::Single, 1);
        let decision = decide(&broker(json!({"replicas": 5})), Some(&single));
        assert_eq!((decision.layout, decision.replicas), (Layout::ActivePod, 5));
        assert!(decision.migration.is_some());
        let back = decide(&broker(json!({"replicas": 1})), Some(&existing));
        assert_eq!((back.layout, back.migration), (Layout::Single, None));
    }

    #[test]
    fn a_replicated_broker_keeps_its_shards_and_its_quorum() {
        let existing = running(Layout::Replicated { shards: 16 }, 3);
        let same = decide(
            &broker(json!({"replicas": 5, "shards": 16})),
            Some(&existing),
        );
        assert_eq!(
            (same.layout, same.replicas),
            (Layout::Replicated { shards: 16 }, 5)
        );
        assert!(same.refused.is_empty());
        let reshard = decide(
            &broker(json!({"replicas": 3, "shards": 64})),
            Some(&existing),
        );
        assert_eq!(reshard.layout, Layout::Replicated { shards: 16 });
        assert_eq!(reshard.refused.len(), 1);
        assert_eq!(reshard.refused[0].reason, IMMUTABLE_FIELD_CHANGED);
        let message = &reshard.refused[0].message;
        assert!(
            message.contains("spec.shards is 64") && message.contains("keep 16"),
            "{message}"
        );
        let shrink = decide(
            &broker(json!({"replicas": 1, "shards": 16})),
            Some(&existing),
        );
        assert_eq!(shrink.replicas, 3, "the StatefulSet keeps its count");
        assert_eq!(shrink.refused[0].reason, REPLICAS_CHANGE_REFUSED);
        assert_eq!(shrink.layout, Layout::Replicated { shards: 16 });
    }
}
