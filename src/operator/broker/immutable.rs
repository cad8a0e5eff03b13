//! What the API server never lets change on a StatefulSet once it exists: its
//! `volumeClaimTemplates`, `selector`, `serviceName` and `podManagementPolicy` (any update
//! touching them is a 422 `spec: Forbidden: updates to statefulset spec for fields other than
//! ...`). Applying a change to one of them would fail every pass, forever, and take the rest
//! of the pass (replicas, template, status) down with it.
//!
//! So the plan never asks for one: [`keep_immutable`] puts the running StatefulSet's value of
//! each of those fields into the desired one, and tells each difference it overrode as a
//! [`Refusal`] (the Broker's `Degraded` condition and a Warning Event), naming the field and
//! what would be needed instead. The storage size is compared by value (`1.5Gi` is the
//! `1536Mi` the API server stored, not a change); a different size is refused like the rest
//! (a shrink would lose mailboxes; a growth needs the claims resized by hand).

use std::cmp::Ordering;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use crate::operator::builders;

/// Degraded reason: the spec asks for a change of a field the StatefulSet cannot change.
pub const IMMUTABLE_FIELD_CHANGED: &str = "ImmutableFieldChanged";
/// Degraded reason: the spec asks for another volume size than the volumes have.
pub const STORAGE_CHANGE_REFUSED: &str = "StorageChangeRefused";
/// Degraded reason: the Broker's name cannot name its objects (see `Broker::name_problem`).
pub const INVALID_NAME: &str = "InvalidName";
/// Degraded reason: an even replica count (see `Broker::replicas_problem`).
pub const INVALID_REPLICAS: &str = "InvalidReplicas";

/// A change the spec asks for and the operator does not make: why, for the `Degraded`
/// condition and a Warning Event. Never carries a secret (field names, sizes, class names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    fn immutable(message: String) -> Refusal {
        let reason = IMMUTABLE_FIELD_CHANGED;
        Refusal { reason, message }
    }
}

/// Makes `desired` keep every immutable field of `existing`, and returns the differences that
/// were overridden, storage size last.
pub fn keep_immutable(desired: &mut StatefulSet, existing: &StatefulSet) -> Vec<Refusal> {
    let (Some(want), Some(have)) = (desired.spec.as_mut(), existing.spec.as_ref()) else {
        return Vec::new();
    };
    let mut refused = Vec::new();
    if want.selector != have.selector {
        refused.push(Refusal::immutable(
            "the StatefulSet's selector differs from the operator's: it is immutable, so the \
             StatefulSet keeps its own (delete the StatefulSet, never its volumes, to re-create it)"
                .to_owned(),
        ));
    }
    for (field, wanted, had) in [
        ("serviceName", &want.service_name, &have.service_name),
        (
            "podManagementPolicy",
            &want.pod_management_policy,
            &have.pod_management_policy,
        ),
    ] {
        if wanted != had {
            refused.push(Refusal::immutable(format!(
                "the StatefulSet's {field} is {}, the operator's {}: it is immutable, so the \
                 StatefulSet keeps its own",
                shown(had.as_deref()),
                shown(wanted.as_deref()),
            )));
        }
    }
    refused.extend(claim_template_changes(want, have));
    want.selector = have.selector.clone();
    want.service_name = have.service_name.clone();
    want.pod_management_policy = have.pod_management_policy.clone();
    want.volume_claim_templates = have.volume_claim_templates.clone();
    refused
}

/// How the desired claim templates differ from the running ones, field by field: storage
/// class, then anything else the operator sets, then the size (by value).
fn claim_template_changes(want: &StatefulSetSpec, have: &StatefulSetSpec) -> Vec<Refusal> {
    let wanted = want.volume_claim_templates.as_deref().unwrap_or_default();
    let had = have.volume_claim_templates.as_deref().unwrap_or_default();
    let mut refused = Vec::new();
    let class = |t: Option<&PersistentVolumeClaim>| {
        t.and_then(|t| t.spec.as_ref()?.storage_class_name.clone())
    };
    let (wanted_class, had_class) = (class(wanted.first()), class(had.first()));
    if wanted_class != had_class {
        refused.push(Refusal::immutable(format!(
            "spec.storage.storageClassName is {}, the volumes' claim template has {}: \
             volumeClaimTemplates are immutable, so the StatefulSet keeps {} (to move the \
             mailboxes to another class, migrate the volumes by hand)",
            shown(wanted_class.as_deref()),
            shown(had_class.as_deref()),
            shown(had_class.as_deref()),
        )));
    }
    let shape = |t: &PersistentVolumeClaim| {
        let spec = t.spec.as_ref();
        (
            t.metadata.name.clone(),
            t.metadata.labels.clone(),
            spec.and_then(|s| s.access_modes.clone()),
        )
    };
    let same_shape =
        wanted.len() == had.len() && wanted.iter().zip(had).all(|(w, h)| shape(w) == shape(h));
    if !same_shape {
        refused.push(Refusal::immutable(
            "the StatefulSet's volumeClaimTemplates differ from the operator's (names, labels or \
             access modes): they are immutable, so the StatefulSet keeps its own"
                .to_owned(),
        ));
    }
    let size = |t: Option<&PersistentVolumeClaim>| {
        let requests = t?.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?;
        requests.get("storage").map(|q| q.0.clone())
    };
    if let (Some(desired), Some(current)) = (size(wanted.first()), size(had.first())) {
        refused.extend(size_change(&current, &desired));
    }
    refused
}

/// A refused size change, if `desired` is not `current` by value.
fn size_change(current: &str, desired: &str) -> Option<Refusal> {
    if builders::same_size(current, desired) {
        return None;
    }
    let message = match builders::compare_sizes(current, desired) {
        Some(Ordering::Less) => format!(
            "storage.size {desired} is smaller than the volumes' {current}: shrinking would lose \
             mailboxes, so it is refused"
        ),
        _ => format!(
            "storage.size {desired} differs from the volumes' {current}: volume claim templates \
             are immutable, so resize the PersistentVolumeClaims by hand; the StatefulSet keeps \
             {current}"
        ),
    };
    let reason = STORAGE_CHANGE_REFUSED;
    Some(Refusal { reason, message })
}

fn shown(value: Option<&str>) -> String {
    value.map_or_else(|| "unset".to_owned(), |v| format!("{v:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sts(spec: serde_json::Value) -> StatefulSet {
        crate::operator::builders::new_sts(spec, None)
    }

    fn storage(sts: &StatefulSet) -> serde_json::Value {
        let json = serde_json::to_value(sts).unwrap();
        json["spec"]["volumeClaimTemplates"][0]["spec"].clone()
    }

    #[test]
    fn the_same_size_spelled_otherwise_is_no_change() {
        let running = sts(json!({"storage": {"size": "1536Mi"}}));
        let mut desired = sts(json!({"storage": {"size": "1.5Gi"}}));
        assert_eq!(keep_immutable(&mut desired, &running), Vec::new());
        assert_eq!(storage(&desired), storage(&running));
    }

    #[test]
    fn a_shrink_by_value_is_refused_and_a_growth_reported() {
        let running = sts(json!({"storage": {"size": "1536Mi"}}));
        let mut smaller = sts(json!({"storage": {"size": "1.4Gi"}}));
        let refused = keep_immutable(&mut smaller, &running);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].reason, STORAGE_CHANGE_REFUSED);
        assert!(refused[0].message.contains("shrinking"), "{refused:?}");
        assert_eq!(
            storage(&smaller)["resources"]["requests"]["storage"],
            "1536Mi"
        );
        let mut larger = sts(json!({"storage": {"size": "2Gi"}}));
        let refused = keep_immutable(&mut larger, &running);
        assert!(refused[0].message.contains("by hand"), "{refused:?}");
    }

    #[test]
    fn every_immutable_field_keeps_the_running_value_and_is_named() {
        let running = sts(json!({"storage": {"size": "1Gi", "storageClassName": "standard"}}));
        let mut desired = sts(json!({"storage": {"size": "1Gi", "storageClassName": "fast-ssd"}}));
        {
            let spec = desired.spec.as_mut().unwrap();
            spec.service_name = Some("other".into());
            spec.pod_management_policy = Some("OrderedReady".into());
            spec.selector.match_labels = Some([("a".to_owned(), "b".to_owned())].into());
        }
        let mut replicas_only = desired.clone();
        replicas_only.spec.as_mut().unwrap().replicas = Some(7);
        let refused = keep_immutable(&mut desired, &running);
        let messages: Vec<&str> = refused.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(refused.len(), 4, "{messages:?}");
        assert!(refused.iter().all(|r| r.reason == IMMUTABLE_FIELD_CHANGED));
        for field in [
            "selector",
            "serviceName",
            "podManagementPolicy",
            "storageClassName",
        ] {
            assert!(
                messages.iter().any(|m| m.contains(field)),
                "{field}: {messages:?}"
            );
        }
        let (want, have) = (desired.spec.unwrap(), running.spec.clone().unwrap());
        assert_eq!(want.selector, have.selector);
        assert_eq!(want.service_name, have.service_name);
        assert_eq!(want.pod_management_policy, have.pod_management_policy);
        assert_eq!(want.volume_claim_templates, have.volume_claim_templates);
        // What may change still does.
        keep_immutable(&mut replicas_only, &running);
        assert_eq!(replicas_only.spec.unwrap().replicas, Some(7));
    }

    #[test]
    fn server_defaults_in_the_running_templates_are_kept_as_they_are() {
        let mut running = sts(json!({}));
        let templates = running
            .spec
            .as_mut()
            .unwrap()
            .volume_claim_templates
            .as_mut();
        templates.unwrap()[0].spec.as_mut().unwrap().volume_mode = Some("Filesystem".into());
        let mut desired = sts(json!({}));
        assert!(keep_immutable(&mut desired, &running).is_empty());
        assert_eq!(storage(&desired)["volumeMode"], "Filesystem");
    }
}
