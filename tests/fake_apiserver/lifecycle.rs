//! Deletion: finalizers and owner references (garbage collection).

use super::*;

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    create(&cms, &config_map("f", &[], &[])).await;
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

    create(&cms, &config_map("g", &[], &[])).await;
    cms.delete("g", &DeleteParams::default()).await.unwrap();
    assert!(
        cms.get_opt("g").await.unwrap().is_none(),
        "no finalizers: removed at once"
    );
}

/// The Secrets (owners) and ConfigMaps (their dependents) of the default namespace.
fn owners_and_dependents(server: &FakeApiServer) -> (Api<Secret>, Api<ConfigMap>) {
    let client = server.client();
    (
        Api::default_namespaced(client.clone()),
        Api::default_namespaced(client),
    )
}

/// A Secret of that name, to own things.
fn secret(name: &str) -> Secret {
    Secret {
        metadata: meta(name, &[]),
        ..Default::default()
    }
}

#[tokio::test]
async fn owned_objects_are_deleted_with_their_owner() {
    let server = FakeApiServer::start().await;
    let (secrets, cms) = owners_and_dependents(&server);
    let owner = create(&secrets, &secret("owner")).await;
    let other = create(&secrets, &secret("other")).await;
    let mut child = config_map("child", &[], &[]);
    child.metadata.owner_references = Some(vec![owned_by(&owner)]);
    let child = create(&cms, &child).await;
    let mut grandchild = config_map("grandchild", &[], &[]);
    grandchild.metadata.owner_references = Some(vec![owned_by(&child)]);
    grandchild.metadata.finalizers = Some(vec!["mq9.io/hold".into()]);
    create(&cms, &grandchild).await;
    let mut shared = config_map("shared", &[], &[]);
    shared.metadata.owner_references = Some(vec![owned_by(&owner), owned_by(&other)]);
    create(&cms, &shared).await;
    create(&cms, &config_map("unrelated", &[], &[])).await;

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

    merge(
        &cms,
        "grandchild",
        json!({"metadata": {"finalizers": null}}),
    )
    .await;
    assert!(cms.get_opt("grandchild").await.unwrap().is_none());
    server.delete("v1/secrets", "default", "other").unwrap();
    assert!(server.get("v1/configmaps", "default", "shared").is_none());
}

/// An object written for an owner that is already gone (a controller acting on a lagging
/// cache) is collected as the garbage collector would: nothing is left behind. One with a live
/// owner among its owners stays.
#[tokio::test]
async fn an_object_written_for_a_gone_owner_is_collected() {
    let server = FakeApiServer::start().await;
    let (secrets, cms) = owners_and_dependents(&server);
    let gone = create(&secrets, &secret("gone")).await;
    let live = create(&secrets, &secret("live")).await;
    secrets
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    let mut late = config_map("late", &[], &[]);
    late.metadata.owner_references = Some(vec![owned_by(&gone)]);
    let answered = create(&cms, &late).await;
    assert_eq!(
        answered.metadata.name.as_deref(),
        Some("late"),
        "the write is answered"
    );
    assert!(
        cms.get_opt("late").await.unwrap().is_none(),
        "then collected"
    );
    let mut shared = config_map("shared", &[], &[]);
    shared.metadata.owner_references = Some(vec![owned_by(&gone), owned_by(&live)]);
    create(&cms, &shared).await;
    assert!(
        cms.get_opt("shared").await.unwrap().is_some(),
        "a live owner holds it"
    );
    let mut orphaned = cms.get("shared").await.unwrap();
    orphaned.metadata.owner_references = Some(vec![owned_by(&gone)]);
    cms.replace("shared", &Default::default(), &orphaned)
        .await
        .unwrap();
    assert!(
        cms.get_opt("shared").await.unwrap().is_none(),
        "an update that leaves only gone owners is collected too"
    );
}

/// Foreground deletion (Argo CD's way): the owner waits, held by `foregroundDeletion`, while its
/// dependents go first; a dependent that blocks it (`blockOwnerDeletion`) and has a finalizer
/// of its own keeps it waiting until that finalizer is removed.
#[tokio::test]
async fn foreground_deletion_removes_dependents_before_the_owner() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let (secrets, cms): (Api<Secret>, Api<ConfigMap>) = (
        Api::default_namespaced(client.clone()),
        Api::default_namespaced(client),
    );
    let mut owner = Secret {
        metadata: meta("owner", &[]),
        ..Default::default()
    };
    owner.metadata.finalizers = Some(vec!["mq9.io/own".into()]);
    let owner = create(&secrets, &owner).await;
    let mut plain = config_map("plain", &[], &[]);
    plain.metadata.owner_references = Some(vec![owned_by(&owner)]);
    create(&cms, &plain).await;
    let mut blocking = config_map("blocking", &[], &[]);
    let mut reference = owned_by(&owner);
    reference.block_owner_deletion = Some(true);
    blocking.metadata.owner_references = Some(vec![reference]);
    blocking.metadata.finalizers = Some(vec!["mq9.io/hold".into()]);
    create(&cms, &blocking).await;

    secrets
        .delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    let waiting = secrets.get("owner").await.unwrap();
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert_eq!(
        waiting.finalizers(),
        ["mq9.io/own", "foregroundDeletion"],
        "held for its blocking dependent"
    );
    assert!(
        cms.get_opt("plain").await.unwrap().is_none(),
        "dependents go first"
    );
    assert!(cms
        .get("blocking")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_some());

    merge(&cms, "blocking", json!({"metadata": {"finalizers": null}})).await;
    assert!(cms.get_opt("blocking").await.unwrap().is_none());
    assert_eq!(
        secrets.get("owner").await.unwrap().finalizers(),
        ["mq9.io/own"],
        "released once no blocking dependent is left; its own finalizer still holds it"
    );
    merge(&secrets, "owner", json!({"metadata": {"finalizers": null}})).await;
    assert!(secrets.get_opt("owner").await.unwrap().is_none());
}
