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

#[test]
fn pod_checksum_follows_the_route_password() {
    let broker = broker(3, "1Gi");
    let config_map = builders::config_map(&broker, "listen: 0.0.0.0:4222\n".into());
    let without = pod_config_checksum(&config_map, None);
    let with_one = pod_config_checksum(&config_map, Some("one"));
    assert_ne!(without, with_one);
    assert_eq!(with_one, pod_config_checksum(&config_map, Some("one")));
    assert_ne!(with_one, pod_config_checksum(&config_map, Some("two")));
    assert!(!with_one.contains("one"));
}

#[test]
fn a_refused_storage_change_keeps_the_volumes_and_warns() {
    let running = sts(3, 3, "10Gi");
    let plan = desired(&Observed {
        broker: &broker(3, "1Gi"),
        existing: Some(&running),
        auth_config: None,
        route_password: None,
        operator_namespace: "mq9-system",
    });
    assert_eq!(current_storage(&plan.statefulset).as_deref(), Some("10Gi"));
    let now = Timestamp::UNIX_EPOCH;
    let before = next_status(&broker(3, "1Gi"), Some(&running), None, "u".into(), now);
    let after = next_status(
        &broker(3, "1Gi"),
        Some(&running),
        plan.refused.as_deref(),
        "u".into(),
        now,
    );
    let notes = status_notes(&before, &after);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(
        (notes[0].type_, notes[0].reason.as_str()),
        (kube::runtime::events::EventType::Warning, "Degraded")
    );
    assert!(
        status_notes(&after, &after).is_empty(),
        "no change, no Event"
    );
}
