//! The operator end to end: the real `mq9 operator` binary against the fake Kubernetes API
//! server, with a real nats-server and `mq9 broker` as the Broker's data plane. Each test is
//! one story a user lives through with `kubectl apply`. Here: the Broker controller and the
//! process around the controllers (leader election); the Mailbox and Broadcast controllers are
//! in `tests/operator_mailbox.rs`.

mod support;

use serde_json::{json, Value};
use support::cluster::*;

#[tokio::test(flavor = "multi_thread")]
async fn broker_sample_reconciles_into_its_workload_and_becomes_available() {
    let api = support::apiserver::FakeApiServer::start().await;
    let operator = Operator::start(&api, "nats://127.0.0.1:1", 60);
    let sample: Value =
        serde_yaml::from_str(&std::fs::read_to_string("config/samples/broker.yaml").unwrap())
            .unwrap();
    api.create(BROKERS, sample);
    let what = operator.waiting_for("the Broker's objects");
    api.wait_for(&what, |api| {
        let found = [
            api.get(STATEFULSETS, "mq9", "agents"),
            api.get("v1/services", "mq9", "agents"),
            api.get("v1/services", "mq9", "agents-nats"),
            api.get(CONFIG_MAPS, "mq9", "agents-config"),
            api.get(SECRETS, "mq9", "agents-auth"),
            api.get("policy/v1/poddisruptionbudgets", "mq9", "agents"),
        ];
        found.iter().all(Option::is_some).then_some(())
    })
    .await;
    let config = api.get(CONFIG_MAPS, "mq9", "agents-config").unwrap();
    let conf = config["data"]["nats-server.conf"].as_str().unwrap();
    assert!(
        conf.contains("type: full") && conf.contains("routes"),
        "JWT trust and cluster routes:\n{conf}"
    );
    let auth = api.get(SECRETS, "mq9", "agents-auth").unwrap();
    assert!(secret_text(&auth, "broker.creds")
        .unwrap()
        .contains("NATS USER JWT"));

    // The data plane: routes need the password from the Secret the operator made, which no
    // ConfigMap or StatefulSet holds; monitoring stays in the pod; a NetworkPolicy guards it.
    let routes = api
        .get(SECRETS, "mq9", "agents-routes")
        .expect("the routes Secret");
    assert_eq!(routes["metadata"]["ownerReferences"][0]["kind"], "Broker");
    let password = secret_text(&routes, "password").unwrap();
    assert!(password.len() >= 32, "a long random password");
    assert!(
        conf.contains("password: $ROUTE_PASSWORD") && conf.contains("http: 127.0.0.1:8222"),
        "{conf}"
    );
    let sts = api.get(STATEFULSETS, "mq9", "agents").unwrap();
    for text in [conf.to_owned(), sts.to_string()] {
        assert!(
            !text.contains(&password),
            "the password is only in its Secret"
        );
    }
    let nats_env = &sts["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        nats_env
            .to_string()
            .contains(r#""secretKeyRef":{"key":"password","name":"agents-routes""#),
        "{nats_env}"
    );
    for service in ["agents", "agents-nats"] {
        let service = api.get("v1/services", "mq9", service).unwrap();
        assert!(
            !service["spec"]["ports"].to_string().contains("8222"),
            "{service}"
        );
    }
    let policy = api
        .get("networking.k8s.io/v1/networkpolicies", "mq9", "agents")
        .expect("the NetworkPolicy");
    assert_eq!(policy["metadata"]["ownerReferences"][0]["kind"], "Broker");
    let clients = &policy["spec"]["ingress"][0];
    assert_eq!(clients["ports"][0]["port"], 4222);
    assert_eq!(
        clients["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"],
        json!(["mq9", "mq9-system", "research"]),
        "the Broker's namespace, the operator's and the allowed one"
    );
    let sts = api.get(STATEFULSETS, "mq9", "agents").unwrap();
    assert_eq!(sts["spec"]["replicas"], 3);
    assert_eq!(sts["metadata"]["ownerReferences"][0]["kind"], "Broker");
    let keys_before = auth["data"].clone();
    let routes_before = routes["data"].clone();

    broker_pods_ready(&api, "mq9", "agents", 3).await;
    let what = operator.waiting_for("Broker Available");
    let broker = api
        .wait_for(&what, |api| {
            let broker = api.get(BROKERS, "mq9", "agents")?;
            condition(&broker, "Available").filter(|c| c["status"] == "True")?;
            Some(broker)
        })
        .await;
    assert_eq!(broker["status"]["url"], "nats://agents.mq9.svc:4222");
    assert_eq!(broker["status"]["readyReplicas"], 3);
    assert_eq!(
        condition(&broker, "Progressing").unwrap()["status"],
        "False"
    );
    assert_eq!(
        api.get(SECRETS, "mq9", "agents-auth").unwrap()["data"],
        keys_before,
        "the signing keys are never regenerated"
    );
    assert_eq!(
        api.get(SECRETS, "mq9", "agents-routes").unwrap()["data"],
        routes_before,
        "the route password is never regenerated"
    );

    // A storage shrink is refused loudly: Degraded, a Warning Event, the volumes untouched.
    let client = api.client();
    let brokers: kube::Api<mq9::crd::Broker> = kube::Api::namespaced(client, "mq9");
    let patch = json!({"spec": {"storage": {"size": "1Gi"}}});
    brokers
        .patch(
            "agents",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let what = operator.waiting_for("the shrink refused");
    api.wait_for(&what, |api| {
        let broker = api.get(BROKERS, "mq9", "agents")?;
        condition(&broker, "Degraded").filter(|c| c["reason"] == "StorageChangeRefused")
    })
    .await;
    let sts = api.get(STATEFULSETS, "mq9", "agents").unwrap();
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "20Gi"
    );
    let warned = api
        .list(EVENTS, Some("mq9"))
        .iter()
        .any(|e| e["type"] == "Warning" && e["regarding"]["name"] == "agents");
    assert!(warned, "a Warning Event about the refused change");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_acts_and_a_standby_takes_over() {
    let api = support::apiserver::FakeApiServer::start().await;
    let env = support::Env::start().await;
    let replica = |identity: &'static str| {
        let flags = ["--identity", identity, "--lease-duration", "2"];
        Operator::start_with(&api, env.nats.url(), 60, &flags)
    };
    let first = replica("first");
    let holder = |api: &support::apiserver::FakeApiServer| {
        let lease = api.get(
            "coordination.k8s.io/v1/leases",
            "mq9-system",
            "mq9-operator",
        )?;
        lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
    };
    api.wait_for(first.waiting_for("the first replica to lead"), |api| {
        holder(api).filter(|h| h == "first")
    })
    .await;
    let second = replica("second");
    let broker = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Broker",
        "metadata": {"name": "agents", "namespace": NS}, "spec": {"auth": {"mode": "none"}}});
    api.create(BROKERS, broker);
    api.wait_for(first.waiting_for("the leader to reconcile"), |api| {
        api.get(STATEFULSETS, NS, "agents")
    })
    .await;
    assert!(first.log_text().contains("leading"));
    assert!(
        !second.log_text().contains("leading"),
        "the standby does not act:\n{}",
        second.log_text()
    );

    // The leader dies without releasing the Lease: once it lapses, the standby leads and acts.
    drop(first);
    api.wait_for(second.waiting_for("the standby to take over"), |api| {
        holder(api).filter(|h| h == "second")
    })
    .await;
    broker_pods_ready(&api, NS, "agents", 1).await;
    api.wait_for(
        second.waiting_for("the new leader to report the Broker Available"),
        |api| {
            let broker = api.get(BROKERS, NS, "agents")?;
            condition(&broker, "Available").filter(|c| c["status"] == "True")
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_serves_only_the_namespaces_it_allows() {
    const OTHER: &str = "team-b";
    let cluster = Cluster::start().await;
    cluster.ready_broker("agents").await;
    let mailbox = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Mailbox",
        "metadata": {"name": "visitor", "namespace": OTHER},
        "spec": {"brokerRef": {"name": "agents", "namespace": NS}, "address": "visitor.inbox"}});
    cluster.api.create(MAILBOXES, mailbox);
    let broadcast = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Broadcast",
        "metadata": {"name": "news", "namespace": OTHER},
        "spec": {"brokerRef": {"name": "agents", "namespace": NS}, "topic": "visitors.news",
                 "members": {"mailboxRefs": ["visitor"]}}});
    cluster.api.create(BROADCASTS, broadcast);

    // A namespace the Broker does not allow: refused, nothing made, the reason says who and where.
    let refused = cluster
        .wait_reason_in(MAILBOXES, OTHER, "visitor", "NamespaceNotAllowed")
        .await;
    let message = condition(&refused, "Ready").unwrap()["message"].to_string();
    assert!(
        message.contains("Broker apps/agents") && message.contains("namespace team-b"),
        "{message}"
    );
    assert_eq!(condition(&refused, "Ready").unwrap()["status"], "False");
    cluster
        .wait_reason_in(BROADCASTS, OTHER, "news", "NamespaceNotAllowed")
        .await;
    assert!(
        cluster.api.get(SECRETS, OTHER, "visitor-mq9").is_none(),
        "no credentials are written"
    );
    let info = cluster.info("visitor.inbox").await;
    assert_eq!(
        info["exists"], false,
        "nothing is created on the broker: {info}"
    );
    let what = cluster.operator.waiting_for("a NamespaceNotAllowed Event");
    cluster
        .api
        .wait_for(&what, |api| {
            let events = api.list(EVENTS, Some(OTHER));
            events
                .iter()
                .any(|e| e["reason"] == "NamespaceNotAllowed" && e["type"] == "Warning")
                .then_some(())
        })
        .await;

    // The Broker allows the namespace: the Mailbox and the Broadcast follow on their own.
    let brokers: kube::Api<mq9::crd::Broker> = kube::Api::namespaced(cluster.api.client(), NS);
    let allow = |namespaces: Value| {
        let brokers = brokers.clone();
        async move {
            let patch = json!({"spec": {"allowedNamespaces": namespaces}});
            let params = kube::api::PatchParams::default();
            brokers
                .patch("agents", &params, &kube::api::Patch::Merge(&patch))
                .await
                .unwrap();
        }
    };
    allow(json!([OTHER])).await;
    let what = cluster
        .operator
        .waiting_for("the NetworkPolicy to admit team-b's clients");
    cluster
        .api
        .wait_for(&what, |api| {
            let policy = api.get("networking.k8s.io/v1/networkpolicies", NS, "agents")?;
            let clients = &policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"];
            (clients["matchExpressions"][0]["values"] == json!([NS, "mq9-system", OTHER]))
                .then_some(())
        })
        .await;
    let ready = cluster
        .wait_reason_in(MAILBOXES, OTHER, "visitor", "Created")
        .await;
    assert!(cluster.api.get(SECRETS, OTHER, "visitor-mq9").is_some());
    let info = cluster.info("visitor.inbox").await;
    assert_eq!(info["owner"], ready["metadata"]["uid"], "{info}");
    cluster
        .wait_reason_in(BROADCASTS, OTHER, "news", "Subscribed")
        .await;
    support::wait_until("the member subscribed to the broadcast", || async {
        let info = cluster.info("visitor.inbox").await;
        info["subscriptions"].to_string().contains("visitors.news")
    })
    .await;

    // Allowed no more: the Mailbox is frozen, not destroyed (see plan::admission).
    allow(Value::Null).await;
    cluster
        .wait_reason_in(MAILBOXES, OTHER, "visitor", "NamespaceNotAllowed")
        .await;
    cluster
        .wait_reason_in(BROADCASTS, OTHER, "news", "NamespaceNotAllowed")
        .await;
    assert!(
        cluster.api.get(SECRETS, OTHER, "visitor-mq9").is_some(),
        "the Secret keeps the address"
    );
    assert_eq!(cluster.info("visitor.inbox").await["exists"], true);
    cluster.assert_address_never_shown("visitor.inbox");
}

/// Merge-patches the object `name` through `api`, as `kubectl patch --type merge` does.
async fn merge_patch<K>(api: &kube::Api<K>, name: &str, patch: Value)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = kube::api::PatchParams::default();
    let patch = kube::api::Patch::Merge(&patch);
    api.patch(name, &params, &patch).await.unwrap();
}

/// Claim templates are immutable on a real API server (the fake answers its 422): a new
/// storage class is refused loudly and never applied, every later pass still applies what may
/// change, and a size the API server stored in another spelling is no change at all.
#[tokio::test(flavor = "multi_thread")]
async fn an_immutable_storage_change_is_refused_without_a_422_loop() {
    let api = support::apiserver::FakeApiServer::start().await;
    let operator = Operator::start(&api, "nats://127.0.0.1:1", 60);
    let broker = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Broker",
        "metadata": {"name": "store", "namespace": NS},
        "spec": {"auth": {"mode": "none"},
                 "storage": {"size": "1.5Gi", "storageClassName": "standard"}}});
    api.create(BROKERS, broker);
    broker_pods_ready(&api, NS, "store", 1).await;
    let claim = |api: &support::apiserver::FakeApiServer| {
        let sts = api.get(STATEFULSETS, NS, "store").unwrap();
        sts["spec"]["volumeClaimTemplates"][0]["spec"].clone()
    };
    assert_eq!(claim(&api)["resources"]["requests"]["storage"], "1536Mi");
    let brokers: kube::Api<mq9::crd::Broker> = kube::Api::namespaced(api.client(), NS);
    let change = |patch: Value| merge_patch(&brokers, "store", patch);
    // A pass that compares with the stored StatefulSet (generation 2): 1.5Gi asked, 1536Mi
    // stored, the same size, so nothing is refused.
    change(json!({"spec": {"replicas": 3}})).await;
    let what = operator.waiting_for("generation 2 observed");
    let observed = api
        .wait_for(&what, |api| {
            let broker = api.get(BROKERS, NS, "store")?;
            (broker["status"]["observedGeneration"] == 2).then_some(broker)
        })
        .await;
    let degraded = condition(&observed, "Degraded").unwrap();
    assert_eq!(degraded["reason"], "AsExpected", "{degraded}");

    change(json!({"spec": {"replicas": 5, "storage": {"storageClassName": "fast-ssd"}}})).await;
    let what = operator.waiting_for("the storage class change refused");
    let degraded = api
        .wait_for(&what, |api| {
            let broker = api.get(BROKERS, NS, "store")?;
            condition(&broker, "Degraded").filter(|c| c["reason"] == "ImmutableFieldChanged")
        })
        .await;
    assert_eq!(degraded["status"], "True");
    let message = degraded["message"].as_str().unwrap();
    assert!(
        message.contains("storageClassName") && message.contains("fast-ssd"),
        "{message}"
    );
    let what = operator.waiting_for("a Warning Event naming the field");
    api.wait_for(&what, |api| {
        let events = api.list(EVENTS, Some(NS));
        events
            .iter()
            .any(|e| {
                e["type"] == "Warning"
                    && e["regarding"]["name"] == "store"
                    && e["reason"] == "ImmutableFieldChanged"
                    && e["note"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("storageClassName")
            })
            .then_some(())
    })
    .await;
    // The rest of the pass was applied: the new replica count, the old claim template.
    let sts = api.get(STATEFULSETS, NS, "store").unwrap();
    assert_eq!(sts["spec"]["replicas"], 5);
    assert_eq!(claim(&api)["storageClassName"], "standard");
    assert_eq!(claim(&api)["resources"]["requests"]["storage"], "1536Mi");
    assert!(
        !operator.log_text().contains("reconcile failed"),
        "no pass failed (no 422 retried forever):\n{}",
        operator.log_text()
    );
}

/// An API server without CEL lets in a Broker name its objects cannot carry, or an even
/// replica count (two replicas cannot keep a quorum): the operator makes nothing and says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_its_objects_cannot_carry_is_refused() {
    let api = support::apiserver::FakeApiServer::start().await;
    let operator = Operator::start(&api, "nats://127.0.0.1:1", 60);
    let long = "b".repeat(53);
    for (name, replicas, reason, says) in [
        ("v2.agents", 1, "InvalidName", "DNS-1035"),
        (long.as_str(), 1, "InvalidName", "DNS-1035"),
        ("pair", 2, "InvalidReplicas", "quorum"),
    ] {
        let broker = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Broker",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"auth": {"mode": "none"}, "replicas": replicas}});
        api.create(BROKERS, broker);
        let what = operator.waiting_for(format!("Broker {name} Degraded/{reason}"));
        let degraded = api
            .wait_for(&what, |api| {
                let broker = api.get(BROKERS, NS, name)?;
                condition(&broker, "Degraded").filter(|c| c["reason"] == reason)
            })
            .await;
        assert_eq!(degraded["status"], "True");
        assert!(degraded["message"].to_string().contains(says), "{degraded}");
        let what = operator.waiting_for(format!("a {reason} Warning Event"));
        api.wait_for(&what, |api| {
            let events = api.list(EVENTS, Some(NS));
            let warned = events.iter().any(|e| {
                e["type"] == "Warning" && e["reason"] == reason && e["regarding"]["name"] == name
            });
            warned.then_some(())
        })
        .await;
        assert!(api.get(STATEFULSETS, NS, name).is_none(), "nothing is made");
        assert!(api.get("v1/services", NS, name).is_none());
        assert!(api
            .get(CONFIG_MAPS, NS, &format!("{name}-config"))
            .is_none());
    }
}

/// An API server without CEL lets `spec.secretName` change: the operator refuses it instead of
/// writing a new Secret with a new address and orphaning the mailbox.
#[tokio::test(flavor = "multi_thread")]
async fn a_renamed_mailbox_secret_is_refused_and_the_address_kept() {
    let cluster = Cluster::start().await;
    cluster.ready_broker("agents").await;
    cluster.create_mailbox("inbox", json!({}), json!({}));
    cluster.wait_reason("inbox", "Created").await;
    let address = cluster.address("inbox-mq9");

    let mailboxes: kube::Api<mq9::crd::Mailbox> = kube::Api::namespaced(cluster.api.client(), NS);
    merge_patch(
        &mailboxes,
        "inbox",
        json!({"spec": {"secretName": "elsewhere"}}),
    )
    .await;
    let refused = cluster.wait_reason("inbox", "Invalid").await;
    let message = condition(&refused, "Ready").unwrap()["message"].to_string();
    assert!(
        message.contains("secretName is immutable") && message.contains("inbox-mq9"),
        "{message}"
    );
    assert_eq!(refused["status"]["secretName"], "inbox-mq9");
    assert!(
        cluster.api.get(SECRETS, NS, "elsewhere").is_none(),
        "no new Secret"
    );
    assert_eq!(
        cluster.address("inbox-mq9"),
        address,
        "the Secret keeps its address"
    );
    assert_eq!(cluster.info(&address).await["exists"], true);
    let list = cluster
        .env
        .request("$mq9.ADMIN.MAILBOX.LIST", &json!({}).to_string())
        .await;
    let names = list["mailboxes"].as_array().map(Vec::len);
    assert_eq!(names, Some(1), "no second mailbox");

    // Set back, it is Ready again; a new type is refused the same way (the broker keeps the
    // type the mailbox was created with, which the Secret records).
    let change = |patch: Value| merge_patch(&mailboxes, "inbox", patch);
    change(json!({"spec": {"secretName": null}})).await;
    cluster.wait_reason("inbox", "Created").await;
    change(json!({"spec": {"type": "latest"}})).await;
    let refused = cluster.wait_reason("inbox", "Invalid").await;
    let message = condition(&refused, "Ready").unwrap()["message"].to_string();
    assert!(message.contains("spec.type is immutable"), "{message}");
    assert_eq!(cluster.info(&address).await["type"], "standard");
    cluster.assert_address_never_shown(&address);
}
