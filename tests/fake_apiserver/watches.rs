//! Watches: the watcher's order, selected and streaming watches, a Controller driven by them.

use super::*;
use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::{watcher, Controller};

/// Reads the initial list of a watch: Init, the one object `name`, InitDone.
async fn initial_list<S>(events: &mut S, name: &str)
where
    S: futures::Stream<Item = Result<watcher::Event<ConfigMap>, watcher::Error>> + Unpin,
{
    assert!(matches!(next(events).await.unwrap(), watcher::Event::Init));
    let first = next(events).await.unwrap();
    assert!(matches!(first, watcher::Event::InitApply(o) if o.name_any() == name));
    assert!(matches!(
        next(events).await.unwrap(),
        watcher::Event::InitDone
    ));
}

#[tokio::test]
async fn watcher_sees_changes_in_order() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    create(&cms, &config_map("before", &[], &[])).await;
    let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
    initial_list(&mut events, "before").await;

    create(&cms, &config_map("w", &[], &[("k", "1")])).await;
    merge(&cms, "w", json!({"data": {"k": "2"}})).await;
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
    create(&cms, &config_map("old", &[("app", "x")], &[])).await;
    let config = watcher::Config::default().labels("app=x").streaming_lists();
    let mut events = watcher(cms.clone(), config).boxed();
    initial_list(&mut events, "old").await;

    create(&cms, &config_map("unseen", &[("app", "y")], &[])).await;
    merge(&cms, "old", json!({"metadata": {"labels": {"app": "y"}}})).await;
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::Delete(o) if o.name_any() == "old"),
        "left the selection"
    );
    merge(
        &cms,
        "unseen",
        json!({"metadata": {"labels": {"app": "x"}}}),
    )
    .await;
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
    create(&secrets, &child).await;
    server
        .wait_for("a reconcile after the owned Secret was created", seen("1"))
        .await;
    merge(
        &secrets,
        "child",
        json!({"metadata": {"annotations": {"v": "2"}}}),
    )
    .await;
    server
        .wait_for("a reconcile after the owned Secret changed", seen("2"))
        .await;
    controller.abort();
}
