//! Leases (leader election) and the Events recorder.

use super::*;

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
    let created = create(&leases, &lease).await;
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
    let cm = create(&cms, &config_map("about", &[], &[])).await;
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
