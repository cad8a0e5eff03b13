//! The rules of a real API server the fake learnt because the operator broke on them: a
//! StatefulSet's immutable spec (422), quantities stored in canonical form, and `410 Gone` for a
//! watch from a compacted resourceVersion.

use super::*;

use kube::api::WatchParams;
use kube::core::WatchEvent;
use kube::runtime::watcher;

/// A StatefulSet `web` whose claim template asks for `size` of class `class`, applied (as the
/// operator applies) by server-side apply.
fn claimed(size: &str, class: &str) -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "serviceName": "web", "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "i",
                    "resources": {"requests": {"cpu": "0.5", "memory": "2048Mi"},
                                  "limits": {"memory": "1.5G"}}}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": size}}}}]}})
}

async fn apply(api: &Api<StatefulSet>, object: serde_json::Value) -> kube::Result<StatefulSet> {
    let params = PatchParams::apply("test").force();
    api.patch("web", &params, &Patch::Apply(object)).await
}

#[tokio::test]
async fn a_statefulsets_immutable_fields_are_refused_as_a_real_server_does() {
    let server = FakeApiServer::start().await;
    let sts: Api<StatefulSet> = Api::default_namespaced(server.client());
    apply(&sts, claimed("1Gi", "standard")).await.unwrap();
    let stored = server
        .get("apps/v1/statefulsets", "default", "web")
        .unwrap();

    let mut changes = Vec::new();
    changes.push(claimed("1Gi", "fast-ssd"));
    changes.push(claimed("2Gi", "standard"));
    for (field, value) in [
        ("serviceName", json!("other")),
        ("podManagementPolicy", json!("OrderedReady")),
        ("selector", json!({"matchLabels": {"app": "web", "v": "2"}})),
    ] {
        let mut changed = claimed("1Gi", "standard");
        changed["spec"][field] = value;
        changes.push(changed);
    }
    for changed in changes {
        let refused = apply(&sts, changed.clone()).await;
        let Err(kube::Error::Api(status)) = refused else {
            panic!("{changed} was accepted: {refused:?}");
        };
        assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
        assert!(
            status.message.contains(
                "spec: Forbidden: updates to statefulset spec for fields other than 'replicas'"
            ),
            "{}",
            status.message
        );
    }
    assert_eq!(
        server
            .get("apps/v1/statefulsets", "default", "web")
            .unwrap(),
        stored,
        "nothing of a refused update is stored"
    );

    // What a StatefulSet may change still changes.
    let mut scaled = claimed("1Gi", "standard");
    scaled["spec"]["replicas"] = json!(3);
    scaled["spec"]["template"]["spec"]["containers"][0]["image"] = json!("j");
    let scaled = apply(&sts, scaled).await.unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(3));
}

#[tokio::test]
async fn quantities_are_stored_in_canonical_form() {
    let server = FakeApiServer::start().await;
    let sts: Api<StatefulSet> = Api::default_namespaced(server.client());
    let created = apply(&sts, claimed("1.5Gi", "standard")).await.unwrap();
    let json = serde_json::to_value(&created).unwrap();
    let spec = &json["spec"];
    assert_eq!(
        spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "1536Mi"
    );
    let resources = &spec["template"]["spec"]["containers"][0]["resources"];
    assert_eq!(
        resources["requests"],
        json!({"cpu": "500m", "memory": "2Gi"})
    );
    assert_eq!(resources["limits"], json!({"memory": "1500M"}));

    // The same sizes spelled as sent again are no change: no new resourceVersion, no 422.
    let again = apply(&sts, claimed("1.5Gi", "standard")).await.unwrap();
    assert_eq!(again.resource_version(), created.resource_version());
    assert!(apply(&sts, claimed("1536Mi", "standard")).await.is_ok());
}

#[tokio::test]
async fn a_watch_from_a_compacted_resource_version_is_gone() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let before = create(&cms, &config_map("c", &[], &[("k", "1")])).await;
    let old = before.resource_version().unwrap();
    let params = WatchParams::default();
    // Before compaction, the change after `old` is replayed.
    merge(&cms, "c", json!({"data": {"k": "2"}})).await;
    let mut replay = cms.watch(&params, &old).await.unwrap().boxed();
    assert!(matches!(
        next(&mut replay).await.unwrap(),
        WatchEvent::Modified(_)
    ));

    server.compact();
    let mut gone = cms.watch(&params, &old).await.unwrap().boxed();
    match next(&mut gone).await.unwrap() {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            assert!(status.message.contains("too old resource version"));
        }
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    let latest = cms.get("c").await.unwrap().resource_version().unwrap();
    let mut current = cms.watch(&params, &latest).await.unwrap().boxed();
    merge(&cms, "c", json!({"data": {"k": "3"}})).await;
    assert!(
        matches!(next(&mut current).await.unwrap(), WatchEvent::Modified(_)),
        "a watch from after the compaction goes on"
    );
}

#[tokio::test]
async fn kubes_watcher_lists_again_after_a_410() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    create(&cms, &config_map("c", &[], &[("k", "1")])).await;
    let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
    // The initial list; the watch from its resourceVersion starts on the next poll only.
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::Init
    ));
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::InitApply(_)
    ));
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::InitDone
    ));
    merge(&cms, "c", json!({"data": {"k": "2"}})).await;
    server.compact();
    // The watch from the listed resourceVersion is Gone: the watcher lists again and so still
    // sees the change.
    let mut seen = None;
    while seen.is_none() {
        match next(&mut events).await {
            Ok(watcher::Event::InitApply(o)) => seen = o.data.and_then(|d| d.get("k").cloned()),
            Ok(_) => {}
            Err(e) => assert!(
                e.to_string().contains("410") || e.to_string().contains("too old"),
                "{e}"
            ),
        }
    }
    assert_eq!(seen.as_deref(), Some("2"));
}
