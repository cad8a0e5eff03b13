use super::*;
use k8s_openapi::api::apps::v1::StatefulSetStatus;

#[test]
fn images_default_to_the_operators_unless_the_spec_names_them() {
    let images = Images {
        broker: "mirror/mq9:9".into(),
        nats: "mirror/nats:2".into(),
    };
    let observed = |broker: &Broker| {
        let plan = desired(&Observed {
            broker,
            existing: None,
            decision: &super::super::layout::decide(broker, None),
            auth_config: None,
            route_password: None,
            operator_namespace: "mq9-system",
            images: &images,
        });
        let pod = plan.statefulset.spec.unwrap().template.spec.unwrap();
        let image = |i: usize| pod.containers[i].image.clone().unwrap();
        (image(0), image(1))
    };
    assert_eq!(
        observed(&broker(1, "1Gi")),
        ("mirror/nats:2".into(), "mirror/mq9:9".into())
    );
    let pinned = builders::tests::broker(
        serde_json::json!({"image": "mq9:old", "natsImage": "nats:2.12-alpine"}),
    );
    assert_eq!(
        observed(&pinned),
        ("nats:2.12-alpine".into(), "mq9:old".into())
    );
}

fn broker(replicas: i32, size: &str) -> Broker {
    crate::operator::builders::tests::broker(
        serde_json::json!({"replicas": replicas, "storage": {"size": size}}),
    )
}

fn sts(ready: i32, updated: i32, size: &str) -> StatefulSet {
    let broker = broker(3, size);
    let mut sts = builders::statefulset(
        &broker,
        builders::Layout::for_new(&broker),
        &Images::default(),
        "sum",
        None,
    );
    sts.status = Some(StatefulSetStatus {
        ready_replicas: Some(ready),
        updated_replicas: Some(updated),
        replicas: 3,
        ..Default::default()
    });
    sts
}

#[test]
fn conditions_follow_the_statefulset() {
    let now = Timestamp::UNIX_EPOCH;
    let broker = broker(3, "1Gi");
    let rolling = next_status(
        &broker,
        Some(&sts(1, 3, "1Gi")),
        &Findings::default(),
        "nats://b.ns.svc:4222".into(),
        now,
    );
    assert!(
        conditions::is_true(&rolling.conditions, "Available")
            && conditions::is_true(&rolling.conditions, "Progressing")
    );
    assert_eq!(rolling.ready_replicas, 1);
    let done = next_status(
        &broker,
        Some(&sts(3, 3, "1Gi")),
        &Findings::default(),
        "u".into(),
        now,
    );
    assert!(
        !conditions::is_true(&done.conditions, "Progressing")
            && !conditions::is_true(&done.conditions, "Degraded")
    );
    let refusals = [
        Refusal {
            reason: "StorageChangeRefused",
            message: "no".into(),
        },
        Refusal {
            reason: "ImmutableFieldChanged",
            message: "never".into(),
        },
    ];
    let findings = Findings {
        refused: refusals.to_vec(),
        ..Findings::default()
    };
    let refused = next_status(&broker, Some(&sts(3, 3, "1Gi")), &findings, "u".into(), now);
    let degraded = conditions::find(&refused.conditions, "Degraded").unwrap();
    assert_eq!(
        (degraded.reason.as_str(), degraded.message.as_str()),
        ("StorageChangeRefused", "no; never"),
        "the first reason, every message"
    );
    let starting = next_status(&broker, None, &Findings::default(), "u".into(), now);
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
        decision: &super::super::layout::decide(&broker(3, "1Gi"), Some(&running)),
        auth_config: None,
        route_password: None,
        operator_namespace: "mq9-system",
        images: &Images::default(),
    });
    let templates = |s: &StatefulSet| s.spec.as_ref().unwrap().volume_claim_templates.clone();
    assert_eq!(templates(&plan.statefulset), templates(&running));
    let now = Timestamp::UNIX_EPOCH;
    let before = next_status(
        &broker(3, "1Gi"),
        Some(&running),
        &Findings::default(),
        "u".into(),
        now,
    );
    let after = next_status(
        &broker(3, "1Gi"),
        Some(&running),
        &Findings {
            refused: plan.refused,
            ..Findings::default()
        },
        "u".into(),
        now,
    );
    let notes = status_notes(&before, &after);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(
        (notes[0].type_, notes[0].reason.as_str()),
        (
            kube::runtime::events::EventType::Warning,
            "StorageChangeRefused"
        )
    );
    assert!(
        status_notes(&after, &after).is_empty(),
        "no change, no Event"
    );
}

#[test]
fn a_name_its_objects_cannot_carry_is_a_problem() {
    let named = |name: &str| {
        let mut broker = broker(1, "1Gi");
        broker.metadata.name = Some(name.into());
        broker.name_problem()
    };
    for fine in ["agents", "a", "v2-agents", &"a".repeat(52)] {
        assert_eq!(named(fine), None, "{fine}");
    }
    for bad in [
        "v2.agents",
        "2agents",
        "Agents",
        "agents-",
        "",
        &"a".repeat(53),
    ] {
        let problem = named(bad).unwrap_or_else(|| panic!("{bad:?} accepted"));
        assert!(
            problem.contains("DNS-1035") && problem.contains("52"),
            "{problem}"
        );
    }
}

#[test]
fn the_shards_answer_becomes_status_and_a_missing_leader_degrades() {
    use crate::operator::admin_client::ShardsAnswer;
    let broker = broker(3, "1Gi");
    let answer: ShardsAnswer = serde_json::from_value(serde_json::json!({
        "shards": 3, "leaders": {"0": "b1-0", "1": "b1-1"}, "live": ["b1-0", "b1-1", "b1-2"],
        "without_quorum": []
    }))
    .unwrap();
    let findings = Findings {
        shards: Some(super::super::shards::health(&answer)),
        ..Findings::default()
    };
    let status = ready_status(&broker, &findings);
    assert_eq!(status.shards.as_deref(), Some("2/3"));
    assert_eq!(status.shard_leaders["b1-2"], 0);
    let degraded = conditions::find(&status.conditions, "Degraded").unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ShardsWithoutLeader")
    );
    let notes = status_notes(&BrokerStatus::default(), &status);
    assert!(
        notes.iter().any(|n| n.reason == "ShardsWithoutLeader"
            && n.type_ == kube::runtime::events::EventType::Warning),
        "{notes:?}"
    );
    // Unknown next time: nothing stale is kept, nothing is claimed.
    let mut later = broker.clone();
    later.status = Some(status);
    let unknown = ready_status(&later, &Findings::default());
    assert_eq!((unknown.shards, unknown.shard_leaders.len()), (None, 0));
    assert!(!conditions::is_true(&unknown.conditions, "Degraded"));
}

#[test]
fn migration_needed_is_said_while_it_is_and_cleared_after() {
    let mut broker = broker(3, "1Gi");
    let findings = Findings {
        migration: Some("move it".into()),
        ..Findings::default()
    };
    let needed = ready_status(&broker, &findings);
    let condition = conditions::find(&needed.conditions, MIGRATION_NEEDED).unwrap();
    assert_eq!(
        (
            condition.status.as_str(),
            condition.reason.as_str(),
            condition.message.as_str()
        ),
        ("True", "ActivePodMode", "move it")
    );
    let fresh = ready_status(&broker, &Findings::default());
    assert!(
        conditions::find(&fresh.conditions, MIGRATION_NEEDED).is_none(),
        "never set on a Broker that never needed it"
    );
    broker.status = Some(needed);
    let done = ready_status(&broker, &Findings::default());
    let condition = conditions::find(&done.conditions, MIGRATION_NEEDED).unwrap();
    assert_eq!(condition.status, "False");
}

/// The status of `broker` with its 3 pods ready and updated, after `findings`.
fn ready_status(broker: &Broker, findings: &Findings) -> BrokerStatus {
    let sts = sts(3, 3, "1Gi");
    next_status(
        broker,
        Some(&sts),
        findings,
        "u".into(),
        Timestamp::UNIX_EPOCH,
    )
}
