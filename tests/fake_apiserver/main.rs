//! The fake Kubernetes API server itself (tests/support/apiserver), tested by the behaviours
//! the operator relies on, through kube's typed APIs and its runtime (watcher, Controller).
//! The operator's own tests are `tests/operator*.rs`; these only check the fake they run on.
#[path = "../support/mod.rs"]
mod support;

mod coordination;
mod lifecycle;
mod objects;
mod requests;
mod rules;
mod watches;

use std::collections::BTreeMap;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use support::apiserver::FakeApiServer;
use support::DEADLINE;

fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn config_map(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    let data: BTreeMap<String, String> = data
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ConfigMap {
        metadata: meta(name, labels),
        data: Some(data),
        ..Default::default()
    }
}

fn stateful_set(name: &str, replicas: i32) -> StatefulSet {
    StatefulSet {
        metadata: meta(name, &[]),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector::default(),
            ..Default::default()
        }),
        status: None,
    }
}

fn owned_by<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into(),
        kind: K::kind(&()).into(),
        name: owner.name_any(),
        uid: owner.uid().expect("a stored object has a uid"),
        controller: Some(true),
        ..Default::default()
    }
}

fn api_code(result: Result<impl std::fmt::Debug, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The next item of a stream, failing the test after the deadline.
async fn next<S: Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("a stream item before the deadline")
        .expect("the stream goes on")
}

/// Creates `object` through `api`, failing the test on an error.
async fn create<K>(api: &Api<K>, object: &K) -> K
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.create(&PostParams::default(), object).await.unwrap()
}

/// Merge-patches the object `name` through `api`, failing the test on an error.
async fn merge<K>(api: &Api<K>, name: &str, patch: serde_json::Value) -> K
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams::default();
    api.patch(name, &params, &Patch::Merge(patch))
        .await
        .unwrap()
}
