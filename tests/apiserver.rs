//! The fake Kubernetes API server (tests/support/apiserver), tested by the behaviours the
//! operator relies on, through kube's typed APIs and its runtime (watcher, Controller).
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{watcher, Controller};
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

#[tokio::test]
async fn create_get_and_list_with_selectors() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let pp = PostParams::default();
    let a = cms
        .create(&pp, &config_map("a", &[("app", "x"), ("tier", "web")], &[]))
        .await
        .unwrap();
    cms.create(&pp, &config_map("b", &[("app", "y")], &[]))
        .await
        .unwrap();
    cms.create(&pp, &config_map("c", &[], &[])).await.unwrap();
    Api::<ConfigMap>::namespaced(server.client(), "other")
        .create(&pp, &config_map("d", &[("app", "x")], &[]))
        .await
        .unwrap();

    assert_eq!(a.namespace().as_deref(), Some("default"));
    assert_eq!(a.metadata.generation, Some(1));
    assert!(
        a.uid().is_some() && a.creation_timestamp().is_some() && a.resource_version().is_some()
    );
    assert_eq!(cms.get("a").await.unwrap().labels()["tier"], "web");
    assert_eq!(api_code(cms.get("missing").await), (404, "NotFound".into()));
    assert!(cms.get_opt("missing").await.unwrap().is_none());
    assert_eq!(
        api_code(cms.create(&pp, &config_map("a", &[], &[])).await),
        (409, "AlreadyExists".into())
    );

    let names = |api: Api<ConfigMap>, selector: &'static str| async move {
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap();
        assert!(list.metadata.resource_version.is_some());
        list.items.iter().map(|c| c.name_any()).collect::<Vec<_>>()
    };
    assert_eq!(names(cms.clone(), "app=x").await, ["a"]);
    assert_eq!(names(cms.clone(), "app!=x").await, ["b", "c"]);
    assert_eq!(names(cms.clone(), "app").await, ["a", "b"]);
    assert_eq!(names(cms.clone(), "!app").await, ["c"]);
    assert_eq!(names(cms.clone(), "app in (x,y),tier").await, ["a"]);
    assert_eq!(names(cms.clone(), "app notin (x)").await, ["b", "c"]);
    assert_eq!(names(Api::all(server.client()), "app=x").await, ["a", "d"]);
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(
        by_name
            .items
            .iter()
            .map(|c| c.name_any())
            .collect::<Vec<_>>(),
        ["b"]
    );
    let elsewhere = Api::<ConfigMap>::all(server.client())
        .list(&ListParams::default().fields("metadata.namespace=other"))
        .await
        .unwrap();
    assert_eq!(elsewhere.items.len(), 1);
    assert_eq!(server.list("v1/configmaps", Some("default")).len(), 3);
    assert!(server.get("v1/configmaps", "other", "d").is_some());
}

#[tokio::test]
async fn generation_bumps_only_when_the_spec_changes() {
    let server = FakeApiServer::start().await;
    let sts: Api<StatefulSet> = Api::default_namespaced(server.client());
    let created = sts
        .create(&PostParams::default(), &stateful_set("s", 1))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    let labelled = sts
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    assert_ne!(labelled.resource_version(), created.resource_version());

    let same = sts
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        same.resource_version(),
        labelled.resource_version(),
        "a no-op write changes nothing"
    );

    let scaled = sts
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.metadata.generation, Some(2));

    let status = server.patch_status(
        "apps/v1/statefulsets",
        "default",
        "s",
        json!({"readyReplicas": 3}),
    );
    assert_eq!(status["metadata"]["generation"], 2);
    let got = sts.get("s").await.unwrap();
    assert_eq!(got.status.unwrap().ready_replicas, Some(3));
    assert_eq!(got.metadata.generation, Some(2));
}

#[tokio::test]
async fn server_side_apply_creates_then_merges() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let apply = PatchParams::apply("mq9-test").force();
    let first = cms
        .patch(
            "cfg",
            &apply,
            &Patch::Apply(config_map("cfg", &[("a", "1")], &[("k1", "v1")])),
        )
        .await
        .unwrap();
    assert_eq!(first.metadata.generation, Some(1));
    assert!(first.uid().is_some());

    let second = cms
        .patch(
            "cfg",
            &apply,
            &Patch::Apply(config_map("cfg", &[("b", "2")], &[("k2", "v2")])),
        )
        .await
        .unwrap();
    assert_eq!(second.uid(), first.uid());
    assert_eq!(
        second.labels().len(),
        2,
        "labels are merged: {:?}",
        second.labels()
    );
    let data = second.data.clone().unwrap();
    assert_eq!((data["k1"].as_str(), data["k2"].as_str()), ("v1", "v2"));
    assert_eq!(second.metadata.generation, Some(2));

    let again = cms
        .patch(
            "cfg",
            &apply,
            &Patch::Apply(config_map("cfg", &[("b", "2")], &[("k2", "v2")])),
        )
        .await
        .unwrap();
    assert_eq!(
        again.resource_version(),
        second.resource_version(),
        "re-applying the same object is a no-op"
    );
}

#[tokio::test]
async fn status_is_a_separate_subresource() {
    let server = FakeApiServer::start().await;
    let sts: Api<StatefulSet> = Api::default_namespaced(server.client());
    let mut object = stateful_set("s", 1);
    object.status = Some(StatefulSetStatus {
        replicas: 9,
        ..Default::default()
    });
    let created = sts.create(&PostParams::default(), &object).await.unwrap();
    assert!(created.status.is_none(), "create drops the status");

    // A status write changes only the status, even if the body says otherwise.
    let mut body = created.clone();
    body.spec.as_mut().unwrap().replicas = Some(5);
    body.status = Some(StatefulSetStatus {
        replicas: 1,
        ready_replicas: Some(1),
        ..Default::default()
    });
    let written = sts
        .replace_status("s", &PostParams::default(), &body)
        .await
        .unwrap();
    assert_eq!(written.spec.as_ref().unwrap().replicas, Some(1));
    assert_eq!(written.status.as_ref().unwrap().ready_replicas, Some(1));
    let patched = sts
        .patch_status(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyReplicas": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.status.as_ref().unwrap().ready_replicas, Some(2));
    assert_eq!(patched.status.as_ref().unwrap().replicas, 1);

    // A main-resource write keeps the stored status.
    let mut body = patched.clone();
    body.spec.as_mut().unwrap().replicas = Some(4);
    body.status = None;
    let replaced = sts
        .replace("s", &PostParams::default(), &body)
        .await
        .unwrap();
    assert_eq!(replaced.spec.unwrap().replicas, Some(4));
    assert_eq!(replaced.status.unwrap().ready_replicas, Some(2));
    assert_eq!(
        api_code(sts.replace("s", &PostParams::default(), &body).await),
        (409, "Conflict".into()),
        "stale resourceVersion"
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    cms.create(&PostParams::default(), &config_map("f", &[], &[]))
        .await
        .unwrap();
    let pp = PatchParams::default();
    // What kube::runtime::finalizer sends to add the first finalizer and to remove it.
    let add = json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                     {"op": "add", "path": "/metadata/finalizers", "value": ["mq9.io/cleanup"]}]);
    let with = cms
        .patch(
            "f",
            &pp,
            &Patch::Json::<()>(serde_json::from_value(add).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(with.finalizers(), ["mq9.io/cleanup"]);
    let bad = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "other"}]);
    assert_eq!(
        api_code(
            cms.patch(
                "f",
                &pp,
                &Patch::Json::<()>(serde_json::from_value(bad).unwrap())
            )
            .await
        )
        .0,
        422
    );

    let deleting = cms
        .delete("f", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("the object, still there");
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert!(cms
        .get("f")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_some());

    let remove = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "mq9.io/cleanup"},
                        {"op": "remove", "path": "/metadata/finalizers/0"}]);
    cms.patch(
        "f",
        &pp,
        &Patch::Json::<()>(serde_json::from_value(remove).unwrap()),
    )
    .await
    .unwrap();
    assert!(cms.get_opt("f").await.unwrap().is_none());

    cms.create(&PostParams::default(), &config_map("g", &[], &[]))
        .await
        .unwrap();
    cms.delete("g", &DeleteParams::default()).await.unwrap();
    assert!(
        cms.get_opt("g").await.unwrap().is_none(),
        "no finalizers: removed at once"
    );
}

#[tokio::test]
async fn owned_objects_are_deleted_with_their_owner() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let (secrets, cms): (Api<Secret>, Api<ConfigMap>) = (
        Api::default_namespaced(client.clone()),
        Api::default_namespaced(client),
    );
    let pp = PostParams::default();
    let owner = secrets
        .create(
            &pp,
            &Secret {
                metadata: meta("owner", &[]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let other = secrets
        .create(
            &pp,
            &Secret {
                metadata: meta("other", &[]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut child = config_map("child", &[], &[]);
    child.metadata.owner_references = Some(vec![owned_by(&owner)]);
    let child = cms.create(&pp, &child).await.unwrap();
    let mut grandchild = config_map("grandchild", &[], &[]);
    grandchild.metadata.owner_references = Some(vec![owned_by(&child)]);
    grandchild.metadata.finalizers = Some(vec!["mq9.io/hold".into()]);
    cms.create(&pp, &grandchild).await.unwrap();
    let mut shared = config_map("shared", &[], &[]);
    shared.metadata.owner_references = Some(vec![owned_by(&owner), owned_by(&other)]);
    cms.create(&pp, &shared).await.unwrap();
    cms.create(&pp, &config_map("unrelated", &[], &[]))
        .await
        .unwrap();

    secrets
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    assert!(cms.get_opt("child").await.unwrap().is_none());
    let held = cms.get("grandchild").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "the cascade honours finalizers"
    );
    assert!(
        cms.get_opt("shared").await.unwrap().is_some(),
        "another owner still exists"
    );
    assert!(cms.get_opt("unrelated").await.unwrap().is_some());

    cms.patch(
        "grandchild",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(cms.get_opt("grandchild").await.unwrap().is_none());
    server.delete("v1/secrets", "default", "other").unwrap();
    assert!(server.get("v1/configmaps", "default", "shared").is_none());
}

#[tokio::test]
async fn watcher_sees_changes_in_order() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let pp = PostParams::default();
    cms.create(&pp, &config_map("before", &[], &[]))
        .await
        .unwrap();
    let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::Init
    ));
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::InitApply(o) if o.name_any() == "before")
    );
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::InitDone
    ));

    cms.create(&pp, &config_map("w", &[], &[("k", "1")]))
        .await
        .unwrap();
    cms.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    cms.delete("w", &DeleteParams::default()).await.unwrap();
    let data = |o: &ConfigMap| o.data.as_ref().and_then(|d| d.get("k").cloned());
    match next(&mut events).await.unwrap() {
        watcher::Event::Apply(o) => {
            assert_eq!((o.name_any(), data(&o).as_deref()), ("w".into(), Some("1")))
        }
        other => panic!("expected the creation, got {other:?}"),
    }
    match next(&mut events).await.unwrap() {
        watcher::Event::Apply(o) => assert_eq!(data(&o).as_deref(), Some("2")),
        other => panic!("expected the modification, got {other:?}"),
    }
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::Delete(o) if o.name_any() == "w")
    );
}

#[tokio::test]
async fn selected_and_streaming_watches() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    cms.create(
        &PostParams::default(),
        &config_map("old", &[("app", "x")], &[]),
    )
    .await
    .unwrap();
    let config = watcher::Config::default().labels("app=x").streaming_lists();
    let mut events = watcher(cms.clone(), config).boxed();
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::Init
    ));
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::InitApply(o) if o.name_any() == "old")
    );
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::InitDone
    ));

    cms.create(
        &PostParams::default(),
        &config_map("unseen", &[("app", "y")], &[]),
    )
    .await
    .unwrap();
    cms.patch(
        "old",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "y"}}})),
    )
    .await
    .unwrap();
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::Delete(o) if o.name_any() == "old"),
        "left the selection"
    );
    cms.patch(
        "unseen",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})),
    )
    .await
    .unwrap();
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::Apply(o) if o.name_any() == "unseen"),
        "entered the selection"
    );
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ReconcileError(#[from] kube::Error);

/// Copies the `v` annotation of the Secret "child" (or "none") into the ConfigMap's data.
async fn reconcile(
    cm: Arc<ConfigMap>,
    client: Arc<kube::Client>,
) -> Result<Action, ReconcileError> {
    let secret = Api::<Secret>::default_namespaced((*client).clone())
        .get_opt("child")
        .await?;
    let seen = secret
        .map(|s| s.annotations().get("v").cloned().unwrap_or_default())
        .unwrap_or_else(|| "none".into());
    let patch = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"seen": seen}});
    Api::<ConfigMap>::default_namespaced((*client).clone())
        .patch(
            &cm.name_any(),
            &PatchParams::apply("test").force(),
            &Patch::Apply(patch),
        )
        .await?;
    Ok(Action::await_change())
}

#[tokio::test]
async fn controller_reconciles_when_an_owned_object_changes() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let controller = Controller::new(
        Api::<ConfigMap>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<Secret>::all(client.clone()),
        watcher::Config::default(),
    )
    .run(
        reconcile,
        |_, _, _| Action::requeue(std::time::Duration::from_millis(100)),
        Arc::new(client.clone()),
    )
    .for_each(|_| async {});
    let controller = tokio::spawn(controller);
    let seen = |value: &'static str| {
        move |s: &FakeApiServer| {
            (s.get("v1/configmaps", "default", "parent")?["data"]["seen"] == value).then_some(())
        }
    };

    let parent = Api::<ConfigMap>::default_namespaced(client.clone())
        .create(&PostParams::default(), &config_map("parent", &[], &[]))
        .await
        .unwrap();
    server.wait_for("a first reconcile", seen("none")).await;
    let secrets: Api<Secret> = Api::default_namespaced(client);
    let mut child = Secret {
        metadata: meta("child", &[]),
        ..Default::default()
    };
    child.metadata.annotations = Some([("v".to_string(), "1".to_string())].into());
    child.metadata.owner_references = Some(vec![owned_by(&parent)]);
    secrets
        .create(&PostParams::default(), &child)
        .await
        .unwrap();
    server
        .wait_for("a reconcile after the owned Secret was created", seen("1"))
        .await;
    secrets
        .patch(
            "child",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"v": "2"}}})),
        )
        .await
        .unwrap();
    server
        .wait_for("a reconcile after the owned Secret changed", seen("2"))
        .await;
    controller.abort();
}

#[tokio::test]
async fn leases_for_leader_election() {
    let server = FakeApiServer::start().await;
    let leases: Api<Lease> = Api::namespaced(server.client(), "mq9-system");
    let spec = |holder: &str| {
        Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        })
    };
    let lease = Lease {
        metadata: meta("mq9-operator", &[]),
        spec: spec("a"),
    };
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    assert_eq!(
        api_code(leases.create(&PostParams::default(), &lease).await),
        (409, "AlreadyExists".into())
    );

    let mut renewed = created.clone();
    renewed.spec = spec("b");
    let renewed = leases
        .replace("mq9-operator", &PostParams::default(), &renewed)
        .await
        .unwrap();
    assert_eq!(renewed.spec.unwrap().holder_identity.as_deref(), Some("b"));
    let mut stale = created;
    stale.spec = spec("c");
    assert_eq!(
        api_code(
            leases
                .replace("mq9-operator", &PostParams::default(), &stale)
                .await
        ),
        (409, "Conflict".into())
    );
    assert_eq!(
        leases
            .get("mq9-operator")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("b")
    );
}

#[tokio::test]
async fn events_recorder_publishes() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let cm = cms
        .create(&PostParams::default(), &config_map("about", &[], &[]))
        .await
        .unwrap();
    let recorder = Recorder::new(
        server.client(),
        Reporter {
            controller: "mq9-operator".into(),
            instance: None,
        },
    );
    let reference: ObjectReference = cm.object_ref(&());
    let event = Event {
        type_: EventType::Normal,
        reason: "Tested".into(),
        note: Some("hello".into()),
        action: "Test".into(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();
    let events = Api::<K8sEvent>::default_namespaced(server.client())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(events.items.len(), 1, "the repeat is patched into a series");
    assert_eq!(events.items[0].series.as_ref().map(|s| s.count), Some(2));
}
