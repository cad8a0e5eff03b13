//! The Broker controller's decisions: what to do with a storage change, and the status that
//! follows from the StatefulSet.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::jiff::Timestamp;

use crate::crd::{Broker, BrokerStatus};
use crate::operator::conditions;

/// What happens to `spec.storage.size` against the running StatefulSet. A StatefulSet's volume
/// claim templates cannot change, so any other size keeps the current one and is reported
/// (Degraded, Warning Event): a smaller one would lose data, a larger one needs the claims
/// resized by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Use the spec's size (new StatefulSet, or unchanged).
    AsSpecified,
    /// Keep the StatefulSet's current size; the string explains why (for a Warning Event and
    /// the Degraded condition).
    KeepCurrent {
        current: String,
        refused: Option<String>,
    },
}

/// The current volume size of the StatefulSet's `data` claim template.
pub fn current_storage(statefulset: &StatefulSet) -> Option<String> {
    let template = statefulset
        .spec
        .as_ref()?
        .volume_claim_templates
        .as_ref()?
        .first()?;
    let requests = template
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?;
    requests.get("storage").map(|q| q.0.clone())
}

pub fn storage(broker: &Broker, existing: Option<&StatefulSet>) -> Storage {
    let desired = &broker.spec.storage.size;
    let Some(current) = existing.and_then(current_storage) else {
        return Storage::AsSpecified;
    };
    if current == *desired {
        return Storage::AsSpecified;
    }
    let refused = if crate::operator::builders::storage_shrink(&current, desired) {
        format!("storage.size {desired} is smaller than the volumes' {current}: shrinking would lose mailboxes, so it is refused")
    } else {
        format!("storage.size {desired} differs from the volumes' {current}: volume claim templates are immutable, so resize the PersistentVolumeClaims by hand; the StatefulSet keeps {current}")
    };
    let refused = Some(refused);
    Storage::KeepCurrent { current, refused }
}

/// The status from the StatefulSet's progress. `Available` once a pod serves (the URL works),
/// `Progressing` while pods are not all updated and ready, `Degraded` when a change was
/// refused or no pod is ready.
pub fn next_status(
    broker: &Broker,
    statefulset: Option<&StatefulSet>,
    refused: Option<&str>,
    url: String,
    now: Timestamp,
) -> BrokerStatus {
    let mut status = broker.status.clone().unwrap_or_default();
    let generation = broker.metadata.generation;
    status.observed_generation = generation;
    status.url = Some(url);
    let desired = broker.spec.replicas;
    let sts_status = statefulset.and_then(|s| s.status.as_ref());
    let ready = sts_status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = sts_status.and_then(|s| s.updated_replicas).unwrap_or(0);
    status.ready_replicas = ready;
    let c = &mut status.conditions;
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
    match refused {
        Some(why) => conditions::set(
            c,
            "Degraded",
            true,
            "StorageChangeRefused",
            why,
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
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;

    fn broker(replicas: i32, size: &str) -> Broker {
        crate::operator::builders::tests::broker(
            serde_json::json!({"replicas": replicas, "storage": {"size": size}}),
        )
    }

    fn sts(ready: i32, updated: i32, size: &str) -> StatefulSet {
        let broker = broker(3, size);
        let mut sts = crate::operator::builders::statefulset(&broker, "sum", None);
        sts.status = Some(StatefulSetStatus {
            ready_replicas: Some(ready),
            updated_replicas: Some(updated),
            replicas: 3,
            ..Default::default()
        });
        sts
    }

    #[test]
    fn storage_never_shrinks_or_changes_in_place() {
        assert_eq!(storage(&broker(1, "1Gi"), None), Storage::AsSpecified);
        assert_eq!(
            storage(&broker(1, "1Gi"), Some(&sts(1, 1, "1Gi"))),
            Storage::AsSpecified
        );
        let Storage::KeepCurrent { current, refused } =
            storage(&broker(1, "1Gi"), Some(&sts(1, 1, "10Gi")))
        else {
            panic!()
        };
        assert_eq!(current, "10Gi");
        assert!(refused.unwrap().contains("refused"));
        let Storage::KeepCurrent { refused, .. } =
            storage(&broker(1, "20Gi"), Some(&sts(1, 1, "10Gi")))
        else {
            panic!()
        };
        assert!(
            refused.unwrap().contains("by hand"),
            "growth is reported, not silently ignored"
        );
    }

    #[test]
    fn conditions_follow_the_statefulset() {
        let now = Timestamp::UNIX_EPOCH;
        let broker = broker(3, "1Gi");
        let rolling = next_status(
            &broker,
            Some(&sts(1, 3, "1Gi")),
            None,
            "nats://b.ns.svc:4222".into(),
            now,
        );
        assert!(
            conditions::is_true(&rolling.conditions, "Available")
                && conditions::is_true(&rolling.conditions, "Progressing")
        );
        assert_eq!(rolling.ready_replicas, 1);
        let done = next_status(&broker, Some(&sts(3, 3, "1Gi")), None, "u".into(), now);
        assert!(
            !conditions::is_true(&done.conditions, "Progressing")
                && !conditions::is_true(&done.conditions, "Degraded")
        );
        let refused = next_status(
            &broker,
            Some(&sts(3, 3, "1Gi")),
            Some("no"),
            "u".into(),
            now,
        );
        assert_eq!(
            conditions::find(&refused.conditions, "Degraded")
                .unwrap()
                .reason,
            "StorageChangeRefused"
        );
        let starting = next_status(&broker, None, None, "u".into(), now);
        assert!(
            !conditions::is_true(&starting.conditions, "Available")
                && !conditions::is_true(&starting.conditions, "Degraded")
        );
    }
}
