//! Objects: create, get, list with selectors, generations, server-side apply, the status subresource.

use super::*;

#[tokio::test]
async fn create_get_and_list_with_selectors() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let pp = PostParams::default();
    let a = create(
        &cms,
        &config_map("a", &[("app", "x"), ("tier", "web")], &[]),
    )
    .await;
    create(&cms, &config_map("b", &[("app", "y")], &[])).await;
    create(&cms, &config_map("c", &[], &[])).await;
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
    let created = create(&sts, &stateful_set("s", 1)).await;
    assert_eq!(created.metadata.generation, Some(1));

    let labelled = merge(&sts, "s", json!({"metadata": {"labels": {"a": "b"}}})).await;
    assert_eq!(labelled.metadata.generation, Some(1));
    assert_ne!(labelled.resource_version(), created.resource_version());

    let same = merge(&sts, "s", json!({"metadata": {"labels": {"a": "b"}}})).await;
    assert_eq!(
        same.resource_version(),
        labelled.resource_version(),
        "a no-op write changes nothing"
    );

    let scaled = merge(&sts, "s", json!({"spec": {"replicas": 3}})).await;
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
    type Pairs = &'static [(&'static str, &'static str)];
    let apply = |labels: Pairs, data: Pairs| {
        let (cms, object) = (cms.clone(), config_map("cfg", labels, data));
        async move {
            let params = PatchParams::apply("mq9-test").force();
            cms.patch("cfg", &params, &Patch::Apply(object))
                .await
                .unwrap()
        }
    };
    let first = apply(&[("a", "1")], &[("k1", "v1")]).await;
    assert_eq!(first.metadata.generation, Some(1));
    assert!(first.uid().is_some());

    let second = apply(&[("b", "2")], &[("k2", "v2")]).await;
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

    let again = apply(&[("b", "2")], &[("k2", "v2")]).await;
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
    let created = create(&sts, &object).await;
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
