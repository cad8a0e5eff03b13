use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, Time,
};

use super::*;
use crate::crd::{BroadcastMembers, BroadcastSpec, BrokerRef, MailboxSpec};
use crate::operator::conditions;
use crate::operator::mailbox::outcome::next_status;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn mailbox(spec: MailboxSpec) -> Mailbox {
    let mut mailbox = Mailbox::new("inbox", spec);
    mailbox.metadata.namespace = Some("team".into());
    mailbox.metadata.generation = Some(3);
    mailbox.metadata.labels = Some([("role".to_owned(), "worker".to_owned())].into());
    mailbox
}

fn spec() -> MailboxSpec {
    MailboxSpec {
        broker_ref: BrokerRef {
            name: "b".into(),
            namespace: None,
        },
        ..Default::default()
    }
}

fn broadcast(topic: &str, members: BroadcastMembers) -> Broadcast {
    let mut broadcast = Broadcast::new(
        topic,
        BroadcastSpec {
            broker_ref: BrokerRef {
                name: "b".into(),
                namespace: None,
            },
            topic: topic.into(),
            members,
            publishers: vec![],
        },
    );
    broadcast.metadata.namespace = Some("team".into());
    broadcast
}

#[test]
fn validation_names_the_field() {
    let bad_topic = mailbox(MailboxSpec {
        subscriptions: vec!["a..b".into()],
        ..spec()
    });
    assert!(validate(&bad_topic)
        .unwrap_err()
        .starts_with("subscriptions"));
    let bad_send_to = mailbox(MailboxSpec {
        send_to: vec!["Team.*".into()],
        ..spec()
    });
    assert!(validate(&bad_send_to).unwrap_err().starts_with("sendTo"));
    let good = mailbox(MailboxSpec {
        send_to: vec!["team.*".into(), "ops.>".into()],
        subscriptions: vec!["task.>".into()],
        ..spec()
    });
    assert!(validate(&good).is_ok());
}

#[test]
fn expiry_comes_from_ttl_and_is_recorded_once() {
    let with_ttl = mailbox(MailboxSpec {
        ttl: Some("1h".into()),
        ..spec()
    });
    assert_eq!(ttl_secs(&with_ttl), 3600);
    assert_eq!(expiry(at(100), 3600), Some(at(3700)));
    assert_eq!(expiry(at(100), 0), None);
    let ready = Outcome::Ready {
        created_at: at(100),
        expires_at: Some(at(3700)),
        secret_name: "s".into(),
    };
    let mut mailbox = with_ttl;
    mailbox.status = Some(next_status(&mailbox, &ready, at(100)));
    let later = Outcome::Ready {
        created_at: at(500),
        expires_at: Some(at(4100)),
        secret_name: "s".into(),
    };
    let status = next_status(&mailbox, &later, at(500));
    assert_eq!(status.created_at.as_deref(), Some("1970-01-01T00:01:40Z"));
    assert_eq!(recorded_expiry(Some(&status)), Some(at(3700)));
    assert!(!is_expired(Some(&status), at(3699)) && is_expired(Some(&status), at(3700)));
    assert_eq!(
        status,
        next_status(
            &Mailbox {
                status: Some(status.clone()),
                ..mailbox.clone()
            },
            &later,
            at(900)
        ),
        "no change when nothing changed"
    );
}

/// The status of a mailbox Ready at second 1 (expiring at `expires_at`) that is not Ready for
/// `reason` at second 2.
fn ready_then_not(expires_at: Option<Timestamp>, reason: Reason) -> MailboxStatus {
    let mut mailbox = mailbox(spec());
    let ready = Outcome::Ready {
        created_at: at(1),
        expires_at,
        secret_name: "inbox-mq9".into(),
    };
    mailbox.status = Some(next_status(&mailbox, &ready, at(1)));
    let message = "why".to_owned();
    next_status(&mailbox, &Outcome::NotReady { reason, message }, at(2))
}

#[test]
fn expired_status_drops_the_secret_and_says_why() {
    let status = ready_then_not(Some(at(2)), Reason::Expired);
    let ready = conditions::find(&status.conditions, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Expired")
    );
    assert_eq!(ready.last_transition_time, Time(at(2)));
    assert_eq!((status.secret_name, status.binding), (None, None));
    assert!(status.expires_at.is_some(), "the expiry stays recorded");
}

#[test]
fn finalizer_never_wedges() {
    let mut deleting = mailbox(spec());
    deleting.metadata.deletion_timestamp = Some(Time(at(1000)));
    assert_eq!(
        finalize(&deleting, &BrokerState::Ready, at(1000)),
        Finalize::DeleteOnBroker
    );
    assert!(matches!(
        finalize(&deleting, &BrokerState::Missing, at(1000)),
        Finalize::Release(_)
    ));
    assert!(matches!(
        finalize(&deleting, &BrokerState::Deleting, at(1000)),
        Finalize::Release(_)
    ));
    let down = BrokerState::NotReady("connection refused".into());
    assert_eq!(finalize(&deleting, &down, at(1299)), Finalize::RetryLater);
    assert!(matches!(
        finalize(&deleting, &down, at(1300)),
        Finalize::Release(_)
    ));
    let mut retain = deleting.clone();
    retain.spec.deletion_policy = DeletionPolicy::Retain;
    assert!(matches!(
        finalize(&retain, &BrokerState::Ready, at(1000)),
        Finalize::Release(_)
    ));
}

#[test]
fn topics_are_own_subscriptions_plus_broadcast_memberships() {
    let mailbox = mailbox(MailboxSpec {
        subscriptions: vec!["own.>".into()],
        ..spec()
    });
    let by_label = broadcast(
        "task.*",
        BroadcastMembers {
            mailbox_selector: Some(LabelSelector {
                match_labels: Some([("role".to_owned(), "worker".to_owned())].into()),
                match_expressions: None,
            }),
            mailbox_refs: vec![],
        },
    );
    let by_name = broadcast(
        "alerts",
        BroadcastMembers {
            mailbox_selector: None,
            mailbox_refs: vec!["inbox".into()],
        },
    );
    let other = broadcast(
        "ops",
        BroadcastMembers {
            mailbox_selector: Some(LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "role".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["worker".into()]),
                }]),
            }),
            mailbox_refs: vec![],
        },
    );
    let mut elsewhere = by_name.clone();
    elsewhere.metadata.namespace = Some("other".into());
    let topics = desired_topics(&mailbox, &[by_label, by_name, other, elsewhere]);
    assert_eq!(
        topics.into_iter().collect::<Vec<_>>(),
        ["alerts", "own.>", "task.*"]
    );
}

/// Broker `b` in `namespace`, allowing `allowed`.
fn broker_in(namespace: &str, allowed: &[&str]) -> Broker {
    let mut broker = crate::operator::builders::tests::broker(serde_json::json!({
        "allowedNamespaces": allowed,
    }));
    broker.metadata.name = Some("b".into());
    broker.metadata.namespace = Some(namespace.into());
    broker
}

#[test]
fn a_broker_admits_its_own_namespace_the_listed_ones_or_all_with_a_star() {
    let mailbox = mailbox(spec()); // in "team"
    assert_eq!(admission(&mailbox, &broker_in("team", &[])), Ok(()));
    assert_eq!(
        admission(&mailbox, &broker_in("team", &["other"])),
        Ok(()),
        "own namespace always"
    );
    assert_eq!(
        admission(&mailbox, &broker_in("platform", &["team"])),
        Ok(())
    );
    assert_eq!(admission(&mailbox, &broker_in("platform", &["*"])), Ok(()));
    for refused in [
        broker_in("platform", &[]),
        broker_in("platform", &["team-b", "teams"]),
    ] {
        let message = admission(&mailbox, &refused).unwrap_err();
        assert!(
            message.contains("Broker platform/b") && message.contains("namespace team"),
            "names the Broker and the namespace: {message}"
        );
        assert!(message.contains("spec.allowedNamespaces"), "{message}");
    }
}

#[test]
fn a_refused_mailbox_keeps_its_recorded_secret_and_says_why() {
    let status = ready_then_not(None, Reason::NamespaceNotAllowed);
    let ready = conditions::find(&status.conditions, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NamespaceNotAllowed")
    );
    assert_eq!(
        status.secret_name.as_deref(),
        Some("inbox-mq9"),
        "frozen, not destroyed"
    );
}

/// What a pass observes once connected to Broker `b` of `team`, with no auth.
fn connected(secret: Option<Secret>, broadcasts: Vec<Broadcast>) -> Observed<()> {
    Observed::Connected(Box::new(Facts {
        admin: (),
        broker: broker_in("team", &[]),
        auth: None,
        secret,
        broadcasts,
        owned_address: None,
        fresh_address: "fresh.one".into(),
    }))
}

const RESYNC: Duration = Duration::from_secs(120);

fn provision(mailbox: &Mailbox, observed: &Observed<()>, now: Timestamp) -> Provision {
    match desired(mailbox, observed, now, RESYNC) {
        Plan::Provision(provision, _) => *provision,
        _ => panic!("a connected, valid Mailbox is provisioned"),
    }
}

fn settled(plan: Plan<'_, ()>) -> (Reason, Action) {
    match plan {
        Plan::Settle(Settle {
            outcome: Outcome::NotReady { reason, .. },
            next,
        }) => (reason, next),
        _ => panic!("expected a settled, not Ready pass"),
    }
}

#[test]
fn invalid_or_expired_mailboxes_need_no_broker() {
    let invalid = mailbox(MailboxSpec {
        subscriptions: vec!["a..b".into()],
        ..spec()
    });
    let plan = without_broker::<()>(&invalid, at(1)).expect("decided");
    assert_eq!(settled(plan), (Reason::Invalid, Action::await_change()));
    let mut expired = mailbox(spec());
    expired.status = Some(MailboxStatus {
        expires_at: Some(at(5).to_string()),
        ..Default::default()
    });
    assert!(matches!(
        without_broker::<()>(&expired, at(5)),
        Some(Plan::Expire)
    ));
    assert!(without_broker::<()>(&expired, at(4)).is_none(), "not yet");
}

#[test]
fn a_renamed_secret_is_refused_and_the_recorded_one_kept() {
    let mut renamed = mailbox(MailboxSpec {
        secret_name: Some("elsewhere".into()),
        ..spec()
    });
    assert!(
        without_broker::<()>(&renamed, at(1)).is_none(),
        "nothing written yet"
    );
    renamed.status = Some(MailboxStatus {
        secret_name: Some("inbox-mq9".into()),
        ..Default::default()
    });
    let plan = without_broker::<()>(&renamed, at(1)).expect("decided");
    let Plan::Settle(Settle {
        outcome: Outcome::NotReady { reason, message },
        ..
    }) = plan
    else {
        panic!("expected a refusal")
    };
    assert_eq!(reason, Reason::Invalid);
    assert!(
        message.contains("inbox-mq9") && message.contains("elsewhere"),
        "{message}"
    );
    let status = next_status(&renamed, &Outcome::NotReady { reason, message }, at(1));
    assert_eq!(status.secret_name.as_deref(), Some("inbox-mq9"));
    renamed.spec.secret_name = None;
    assert!(
        without_broker::<()>(&renamed, at(1)).is_none(),
        "reverted: fine"
    );
}

#[test]
fn a_broker_that_cannot_serve_settles_the_pass() {
    let mailbox = mailbox(spec());
    let missing = Observed::<()>::Unusable(BrokerState::Missing);
    let (reason, next) = settled(desired(&mailbox, &missing, at(1), RESYNC));
    assert_eq!(reason, Reason::BrokerNotFound);
    assert_ne!(
        next,
        Action::await_change(),
        "waiting for a Broker retries by itself"
    );
    let refused = Observed::<()>::Refused("no".into());
    let (reason, next) = settled(desired(&mailbox, &refused, at(1), RESYNC));
    assert_eq!(
        (reason, next),
        (Reason::NamespaceNotAllowed, Action::requeue(RESYNC))
    );
}

#[test]
fn a_new_mailbox_gets_a_fresh_address_a_secret_and_a_check_at_expiry() {
    let mailbox = mailbox(MailboxSpec {
        ttl: Some("60s".into()),
        ..spec()
    });
    let observed = connected(None, vec![]);
    let plan = provision(&mailbox, &observed, at(1000));
    assert_eq!(plan.address, "fresh.one");
    assert_eq!(plan.secret, Some(SecretWrite::New));
    assert!(!plan.created_before);
    assert_eq!(plan.expires_at, Some(at(1060)));
    assert_eq!(plan.ready.next, Action::requeue(Duration::from_secs(60)));
    assert_eq!(
        plan.permissions_hash,
        credentials::grant_hash(&plan.grant())
    );
}

#[test]
fn an_existing_secret_keeps_its_address_and_is_rewritten_only_for_new_permissions() {
    let mut mailbox = mailbox(spec());
    mailbox.metadata.uid = Some("uid-1".into());
    let first = provision(&mailbox, &connected(None, vec![]), at(1));
    let binding = secret::Binding {
        host: "h",
        port: 1,
        address: &first.address,
        expires_at: None,
        creds: None,
        permissions_hash: &first.permissions_hash,
    };
    let written = secret::secret(&mailbox, &binding);
    let mut observed = connected(Some(written.clone()), vec![]);
    if let Observed::Connected(facts) = &mut observed {
        facts.fresh_address = "another.one".into();
    }
    let again = provision(&mailbox, &observed, at(2));
    assert_eq!(again.address, first.address, "the address handed out stays");
    let mut retyped = mailbox.clone();
    retyped.spec.kind = crate::protocol::MailboxType::Latest;
    let (reason, next) = settled(desired(&retyped, &observed, at(2), RESYNC));
    assert_eq!(
        (reason, next),
        (Reason::Invalid, Action::await_change()),
        "the type the Secret records is kept"
    );
    assert_eq!(again.secret, None, "same permissions: nothing to write");
    let members = BroadcastMembers {
        mailbox_selector: None,
        mailbox_refs: vec!["inbox".into()],
    };
    let joined = connected(Some(written.clone()), vec![broadcast("news", members)]);
    let plan = provision(&mailbox, &joined, at(3));
    assert_eq!(
        plan.secret,
        Some(SecretWrite::Reissue),
        "a new topic, new permissions"
    );
    let mut foreign = written;
    foreign.metadata.owner_references = None;
    let (reason, _) = settled(desired(
        &mailbox,
        &connected(Some(foreign), vec![]),
        at(4),
        RESYNC,
    ));
    assert_eq!(
        reason,
        Reason::Invalid,
        "someone else's Secret is never overwritten"
    );
}

/// A Mailbox created before whose Secret was deleted takes back the address of the mailbox it
/// owns on the broker (a restore, not a new mailbox); the spec's address or one in a Secret
/// wins over it, and a Mailbox never created asks nothing.
#[test]
fn a_deleted_secret_is_restored_with_the_address_owned_on_the_broker() {
    let mut created = mailbox(spec());
    assert!(!needs_owned_address(&created, None), "never created");
    created.status = Some(MailboxStatus {
        created_at: Some(at(1).to_string()),
        ..Default::default()
    });
    assert!(needs_owned_address(&created, None));
    let mut observed = connected(None, vec![]);
    if let Observed::Connected(facts) = &mut observed {
        facts.owned_address = Some("owned.one".into());
    }
    let plan = provision(&created, &observed, at(2));
    assert_eq!(plan.address, "owned.one");
    assert_eq!(plan.secret, Some(SecretWrite::Restore));
    let explicit = mailbox(MailboxSpec {
        address: Some("team.inbox".into()),
        ..spec()
    });
    assert!(!needs_owned_address(&explicit, None));
    let plan = provision(&explicit, &observed, at(2));
    assert_eq!(
        (plan.address.as_str(), plan.secret),
        ("team.inbox", Some(SecretWrite::New))
    );
}

/// Credentials signed by a Broker's keys carry its tenant account as signer: the same Mailbox
/// against a re-created Broker (new keys) plans a re-issued Secret.
#[test]
fn a_recreated_broker_reissues_the_credentials() {
    let mut mailbox = mailbox(spec());
    mailbox.metadata.uid = Some("uid-1".into());
    let broker = crate::operator::builders::tests::broker(serde_json::json!({}));
    let signed_by = |secret: Option<Secret>| {
        let auth = BrokerAuth::from_secret(&credentials::new_auth_secret(&broker)).unwrap();
        let mut observed = connected(secret, vec![]);
        if let Observed::Connected(facts) = &mut observed {
            facts.auth = Some(auth.clone());
        }
        let plan = provision(&mailbox, &observed, at(1));
        assert_eq!(plan.signer, Some(auth.tenant_account_public_key("team")));
        plan
    };
    let first = signed_by(None);
    let binding = secret::Binding {
        host: "h",
        port: 1,
        address: &first.address,
        expires_at: None,
        creds: Some("creds"),
        permissions_hash: &first.permissions_hash,
    };
    let written = secret::secret(&mailbox, &binding);
    let again = signed_by(Some(written));
    assert_eq!(again.address, first.address);
    assert_eq!(again.secret, Some(SecretWrite::Reissue));
}
