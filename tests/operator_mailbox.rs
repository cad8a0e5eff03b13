//! The operator end to end, the Mailbox and Broadcast controllers: the real `mq9 operator`
//! binary against the fake Kubernetes API server, with a real nats-server and `mq9 broker` as
//! the Broker's data plane. Each test is one story a user lives through with `kubectl apply`.

mod support;

use serde_json::json;
use support::cluster::*;

#[tokio::test(flavor = "multi_thread")]
async fn mailbox_gets_its_secret_and_goes_with_its_finalizer() {
    let cluster = Cluster::start().await;
    cluster.ready_broker("agents").await;
    cluster.create_mailbox("inbox", json!({"team": "a"}), json!({"ttl": "7d"}));
    let mailbox = cluster.wait_reason("inbox", "Created").await;
    let status = &mailbox["status"];
    assert_eq!(status["secretName"], "inbox-mq9");
    assert_eq!(status["binding"]["name"], "inbox-mq9");
    assert!(
        status["createdAt"].is_string() && status["expiresAt"].is_string(),
        "{status}"
    );
    assert_eq!(mailbox["metadata"]["finalizers"][0], "mq9.io/mailbox");

    let secret = cluster
        .api
        .get(SECRETS, NS, "inbox-mq9")
        .expect("the Secret");
    assert_eq!(secret["type"], "servicebinding.io/mq9");
    assert_eq!(secret["metadata"]["labels"]["mq9.io/managed"], "true");
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["uid"],
        mailbox["metadata"]["uid"]
    );
    for key in [
        "type",
        "provider",
        "host",
        "port",
        "uri",
        "mail_address",
        "expires_at",
        "MQ9_URL",
        "MQ9_MAIL_ADDRESS",
    ] {
        assert!(secret_text(&secret, key).is_some(), "Secret key {key}");
    }
    assert_eq!(
        secret_text(&secret, "uri").unwrap(),
        "nats://agents.apps.svc:4222"
    );
    assert_eq!(
        secret_text(&secret, "expires_at").unwrap(),
        status["expiresAt"].as_str().unwrap()
    );
    let address = cluster.address("inbox-mq9");
    assert_eq!(address.len(), 26, "a generated 128-bit address");

    // The mailbox is real: an agent sends to it and the broker knows its owner.
    cluster.env.send_ok(&address, b"hello", &[]).await;
    let info = cluster.info(&address).await;
    assert_eq!(info["owner"], mailbox["metadata"]["uid"], "{info}");
    assert_eq!(info["messages"], 1, "{info}");
    assert!(cluster
        .event_reasons("inbox")
        .contains(&"Created".to_owned()));
    let (code, metrics) = support::http_get(cluster.operator.http_addr, "/metrics").await;
    assert_eq!(code, 200);
    let value = |name: &str| {
        support::metric_value(&metrics, name).unwrap_or_else(|| panic!("{name} in\n{metrics}"))
    };
    assert_eq!(value(r#"mq9_operator_mailboxes{reason="Created"}"#), 1.0);
    assert!(value(r#"mq9_operator_reconciles_total{controller="mailbox"}"#) >= 1.0);
    assert_eq!(
        support::http_get(cluster.operator.http_addr, "/readyz")
            .await
            .0,
        200
    );

    // Deleting the object deletes the mailbox on the broker, then releases the finalizer.
    cluster.api.delete(MAILBOXES, NS, "inbox");
    cluster.wait_gone(MAILBOXES, "inbox").await;
    cluster.wait_gone(SECRETS, "inbox-mq9").await;
    let info = cluster.info(&address).await;
    assert_eq!(info["exists"], false, "deleted on the broker: {info}");
    assert!(cluster
        .event_reasons("inbox")
        .contains(&"DeletedOnBroker".to_owned()));
    cluster.assert_address_never_shown(&address);
}

#[tokio::test(flavor = "multi_thread")]
async fn ttl_expiry_deletes_the_secret_and_applies_the_expiration_policy() {
    let cluster = Cluster::start().await;
    cluster.ready_broker("agents").await;
    cluster.create_mailbox(
        "kept",
        json!({}),
        json!({"ttl": "3s", "expirationPolicy": "Retain"}),
    );
    cluster.create_mailbox(
        "job",
        json!({}),
        json!({"ttl": "3s", "expirationPolicy": "Delete"}),
    );
    cluster.wait_reason("kept", "Created").await;
    cluster.wait_reason("job", "Created").await;
    let kept_address = cluster.address("kept-mq9");

    let kept = cluster.wait_reason("kept", "Expired").await;
    assert_eq!(condition(&kept, "Ready").unwrap()["status"], "False");
    cluster.wait_gone(SECRETS, "kept-mq9").await;
    cluster.wait_gone(MAILBOXES, "job").await;
    cluster.wait_gone(SECRETS, "job-mq9").await;
    assert!(
        cluster.api.get(MAILBOXES, NS, "kept").is_some(),
        "Retain keeps the object"
    );
    assert!(cluster
        .event_reasons("kept")
        .contains(&"Expired".to_owned()));
    // The broker drops it at its own TTL, which can end up to a second after the status's
    // `expiresAt` (whole seconds) made the operator call it Expired.
    support::wait_until("the broker dropped the expired mailbox", || async {
        cluster.info(&kept_address).await["exists"] == false
    })
    .await;
    // Expired stays expired: no new mailbox is minted for a Retained object.
    cluster.wait_reason("kept", "Expired").await;
    assert!(cluster.api.get(SECRETS, NS, "kept-mq9").is_none());
    cluster.assert_address_never_shown(&kept_address);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mailbox_lost_by_the_broker_is_recreated() {
    let cluster = Cluster::start().await;
    cluster.ready_broker("agents").await;
    cluster.create_mailbox("inbox", json!({}), json!({"address": "team.inbox"}));
    let mailbox = cluster.wait_reason("inbox", "Created").await;
    let deleted = cluster
        .env
        .request("$mq9.ADMIN.MAILBOX.DELETE", r#"{"name":"team.inbox"}"#)
        .await;
    assert_eq!(deleted["deleted"], true, "{deleted}");
    let what = cluster.operator.waiting_for("a Recreated Event");
    cluster
        .api
        .wait_for(&what, |api| {
            let events = api.list(EVENTS, Some(NS));
            events
                .iter()
                .any(|e| e["reason"] == "Recreated" && e["regarding"]["name"] == "inbox")
                .then_some(())
        })
        .await;
    let info = cluster.info("team.inbox").await;
    assert_eq!(
        info["owner"], mailbox["metadata"]["uid"],
        "recreated with its owner: {info}"
    );
    let after = cluster.api.get(MAILBOXES, NS, "inbox").unwrap();
    assert_eq!(
        after["status"]["createdAt"], mailbox["status"]["createdAt"],
        "createdAt is set once"
    );
    cluster.assert_address_never_shown("team.inbox");
}

#[tokio::test(flavor = "multi_thread")]
async fn broadcast_members_follow_labels() {
    let started = Cluster::start().await;
    let cluster = &started;
    cluster.ready_broker("agents").await;
    cluster.create_mailbox(
        "worker",
        json!({"role": "worker"}),
        json!({"address": "w.one"}),
    );
    cluster.create_mailbox("idle", json!({"role": "idle"}), json!({"address": "w.two"}));
    cluster.wait_reason("worker", "Created").await;
    cluster.wait_reason("idle", "Created").await;
    let broadcast = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Broadcast",
        "metadata": {"name": "tasks", "namespace": NS},
        "spec": {"brokerRef": {"name": "agents"}, "topic": "task.available",
                 "members": {"mailboxSelector": {"matchLabels": {"role": "worker"}}}}});
    cluster.api.create(BROADCASTS, broadcast);

    let subscribed = |address: &'static str| async move {
        let info = cluster.info(address).await;
        info["subscriptions"]
            .as_array()
            .is_some_and(|s| s.iter().any(|t| t == "task.available"))
    };
    support::wait_until("the worker subscribed", || subscribed("w.one")).await;
    assert!(
        !subscribed("w.two").await,
        "a mailbox outside the selector is not a member"
    );
    let status = cluster
        .wait_condition(BROADCASTS, "tasks", "Ready", "True")
        .await;
    assert_eq!(status["status"]["memberCount"], 1);
    cluster
        .env
        .publish("$mq9.AI.BROADCAST.task.available", &[], b"job 1")
        .await;
    support::wait_until("the broadcast stored in the member", || async {
        cluster.env.query_ids("w.one").await.len() == 1
    })
    .await;

    // Relabel: the idle mailbox joins, the worker leaves.
    let mailboxes: kube::Api<mq9::crd::Mailbox> = kube::Api::namespaced(cluster.api.client(), NS);
    let relabel = |role: &'static str| json!({"metadata": {"labels": {"role": role}}});
    let params = kube::api::PatchParams::default();
    mailboxes
        .patch(
            "idle",
            &params,
            &kube::api::Patch::Merge(&relabel("worker")),
        )
        .await
        .unwrap();
    mailboxes
        .patch(
            "worker",
            &params,
            &kube::api::Patch::Merge(&relabel("idle")),
        )
        .await
        .unwrap();
    support::wait_until("the relabelled mailbox subscribed", || subscribed("w.two")).await;
    support::wait_until("the old member unsubscribed", || async {
        !subscribed("w.one").await
    })
    .await;
    cluster.assert_address_never_shown("w.one");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_finalizer_never_wedges_when_the_broker_is_gone() {
    let cluster = Cluster::start().await;
    cluster.ready_broker("agents").await;
    cluster.create_mailbox("orphan", json!({}), json!({}));
    cluster.wait_reason("orphan", "Created").await;
    cluster.api.delete(BROKERS, NS, "agents");
    cluster.wait_reason("orphan", "BrokerNotFound").await;
    cluster.api.delete(MAILBOXES, NS, "orphan");
    cluster.wait_gone(MAILBOXES, "orphan").await;
    assert!(cluster
        .event_reasons("orphan")
        .contains(&"FinalizerReleased".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mailbox_without_its_broker_says_so() {
    let cluster = Cluster::start().await;
    cluster.create_mailbox("early", json!({}), json!({"brokerRef": {"name": "later"}}));
    let mailbox = cluster.wait_reason("early", "BrokerNotFound").await;
    let message = condition(&mailbox, "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("later"),
        "the condition names the missing Broker: {message}"
    );
    assert!(
        cluster.api.get(SECRETS, NS, "early-mq9").is_none(),
        "no Secret before the mailbox exists"
    );
    cluster.ready_broker("later").await;
    cluster.wait_reason("early", "Created").await;
}
