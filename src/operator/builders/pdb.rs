//! The Broker's PodDisruptionBudget.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{broker_labels, metadata, pdb_name};
use crate::crd::Broker;

/// With more than one replica, at most one pod may be evicted at a time (a drain waits for the
/// evicted pod to come back before taking the next), so the cluster keeps serving. A single
/// replica gets none: a budget that forbids every eviction would block node drains forever.
pub fn pod_disruption_budget(broker: &Broker) -> Option<PodDisruptionBudget> {
    (broker.spec.replicas > 1).then(|| PodDisruptionBudget {
        metadata: metadata(broker, pdb_name(broker)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(broker_labels(&broker.name_any())),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::builders::tests::{assert_applyable, broker};

    #[test]
    fn only_clusters_get_a_budget() {
        assert!(pod_disruption_budget(&broker(serde_json::json!({"replicas": 1}))).is_none());
        let pdb = pod_disruption_budget(&broker(serde_json::json!({"replicas": 3}))).unwrap();
        assert_applyable(&pdb, "PodDisruptionBudget", "b1");
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.unwrap().match_labels.unwrap(),
            broker_labels("b1")
        );
    }
}
