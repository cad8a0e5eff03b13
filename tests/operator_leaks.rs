//! Deletion never leaks a mailbox (operator.md, "Installing it"): the finalizer finds a
//! Mailbox's mailbox on the broker by owner uid under any propagation, a Secret deleted by hand
//! comes back with the same address, and a re-created Broker re-mints every Mailbox's
//! credentials. The real `mq9 operator` against the fake API server and a real broker.

mod support;

use serde_json::json;
use support::cluster::*;
use support::data_plane::DataPlane;

/// The addresses of the broker's live mailboxes owned by `uid` (LIST by owner, one page: the
/// test broker holds few).
async fn owned_on_broker(cluster: &Cluster, uid: &serde_json::Value) -> Vec<String> {
    let body = json!({"owner": uid, "limit": 1000}).to_string();
    let reply = cluster.env.request("$mq9.ADMIN.MAILBOX.LIST", &body).await;
    assert_eq!(reply["more"], false, "{reply}");
    let mailboxes = reply["mailboxes"].as_array().expect("a LIST reply");
    mailboxes
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Foreground deletion (`kubectl delete --cascade=foreground`, Argo CD's prune) lets the garbage
/// collector delete the Mailbox's Secret before the finalizer runs. The operator is stopped
/// while the Secret and then the Mailbox are deleted, so that it wakes up to exactly that
/// state (a running one could write the Secret again in between). The finalizer finds the
/// mailbox by owner on the broker and deletes it (deletionPolicy Delete) or keeps it (Retain);
/// reading the address from the Secret, it would release the finalizer and leak the mailbox.
#[tokio::test(flavor = "multi_thread")]
async fn deletion_finds_the_mailbox_by_owner_when_its_secret_went_first() {
    let mut cluster = Cluster::start().await;
    cluster.ready_broker("agents").await;
    cluster.create_mailbox("doomed", json!({}), json!({}));
    cluster.create_mailbox("kept", json!({}), json!({"deletionPolicy": "Retain"}));
    let mut owners = Vec::new();
    for name in ["doomed", "kept"] {
        let mailbox = cluster.wait_reason(name, "Created").await;
        let address = cluster.address(&format!("{name}-mq9"));
        let uid = mailbox["metadata"]["uid"].clone();
        assert_eq!(owned_on_broker(&cluster, &uid).await, [address.as_str()]);
        owners.push((name, address, uid));
    }
    cluster.operator.stop();
    for (name, _, _) in &owners {
        cluster.api.delete(SECRETS, NS, &format!("{name}-mq9"));
        let deleting = cluster.api.delete(MAILBOXES, NS, name).expect("deleted");
        assert!(deleting["metadata"]["deletionTimestamp"].is_string());
    }
    cluster.operator = Operator::start(&cluster.api, cluster.env.nats.url(), 2);
    for (name, _, _) in &owners {
        cluster.wait_gone(MAILBOXES, name).await;
    }
    let (_, doomed, doomed_uid) = &owners[0];
    assert_eq!(cluster.info(doomed).await["exists"], false, "deleted");
    assert!(owned_on_broker(&cluster, doomed_uid).await.is_empty());
    assert!(cluster
        .event_reasons("doomed")
        .contains(&"DeletedOnBroker".to_owned()));
    let (_, kept, kept_uid) = &owners[1];
    assert_eq!(owned_on_broker(&cluster, kept_uid).await, [kept.as_str()]);
    for (_, address, _) in &owners {
        cluster.assert_address_never_shown(address);
    }
}

/// Foreground deletion (Argo CD prunes that way) with the operator running: the garbage
/// collector deletes the Mailbox's Secret before the Mailbox's finalizer runs, and the
/// finalizer still finds the mailbox by owner and deletes it on the broker.
#[tokio::test(flavor = "multi_thread")]
async fn foreground_deletion_still_deletes_the_mailbox_on_the_broker() {
    let cluster = Cluster::start().await;
    cluster.ready_broker("agents").await;
    cluster.create_mailbox("pruned", json!({}), json!({}));
    let mailbox = cluster.wait_reason("pruned", "Created").await;
    let address = cluster.address("pruned-mq9");
    let deleting = cluster
        .api
        .delete_with(
            MAILBOXES,
            NS,
            "pruned",
            json!({"propagationPolicy": "Foreground"}),
        )
        .expect("deleted");
    assert!(deleting["metadata"]["deletionTimestamp"].is_string());
    assert!(
        cluster.api.get(SECRETS, NS, "pruned-mq9").is_none(),
        "the Secret goes first"
    );
    cluster.wait_gone(MAILBOXES, "pruned").await;
    assert_eq!(cluster.info(&address).await["exists"], false, "deleted");
    assert!(owned_on_broker(&cluster, &mailbox["metadata"]["uid"])
        .await
        .is_empty());
    cluster.assert_address_never_shown(&address);
}

/// A Secret deleted by hand is written again with the address of the mailbox the Mailbox owns
/// on the broker, found by owner: agents keep their address and their messages, no second
/// mailbox is made, and no Event claims that the broker lost the mailbox.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_secret_is_written_again_with_the_same_address() {
    let cluster = Cluster::start().await;
    cluster.ready_broker("agents").await;
    cluster.create_mailbox("inbox", json!({}), json!({}));
    let mailbox = cluster.wait_reason("inbox", "Created").await;
    let uid = &mailbox["metadata"]["uid"];
    let address = cluster.address("inbox-mq9");
    cluster.env.send_ok(&address, b"kept", &[]).await;
    let deleted = cluster
        .api
        .delete(SECRETS, NS, "inbox-mq9")
        .expect("deleted");
    let what = cluster.operator.waiting_for("the Secret written again");
    let written = cluster
        .api
        .wait_for(&what, |api| api.get(SECRETS, NS, "inbox-mq9"))
        .await;
    assert_ne!(written["metadata"]["uid"], deleted["metadata"]["uid"]);
    assert_eq!(
        secret_text(&written, "mail_address").as_deref(),
        Some(address.as_str()),
        "the same address"
    );
    assert_eq!(owned_on_broker(&cluster, uid).await, [address.as_str()]);
    assert_eq!(
        cluster.env.query_ids(&address).await.len(),
        1,
        "messages kept"
    );
    let reasons = cluster.event_reasons("inbox");
    assert!(reasons.contains(&"SecretWritten".to_owned()), "{reasons:?}");
    assert!(!reasons.contains(&"Recreated".to_owned()), "{reasons:?}");
    cluster.wait_reason("inbox", "Created").await;
    cluster.assert_address_never_shown(&address);
}

/// A Broker deleted and re-created gets new signing keys. Its Mailboxes outlive it: each one's
/// `user.creds` must be re-minted under the new keys, since the new nats-server refuses
/// credentials signed by the old ones (the attack: keep using them).
#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_broker_remints_every_mailboxs_credentials() {
    let api = support::apiserver::FakeApiServer::start().await;
    let port = support::free_port().port();
    let url = format!("nats://127.0.0.1:{port}");
    let operator = Operator::start(&api, &url, 2);
    let broker = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Broker",
        "metadata": {"name": "agents", "namespace": NS}, "spec": {}});
    let mailbox = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Mailbox",
        "metadata": {"name": "inbox", "namespace": NS},
        "spec": {"brokerRef": {"name": "agents"}, "address": "team.inbox"}});
    let connect = |creds: String| {
        let options = async_nats::ConnectOptions::with_credentials(&creds).unwrap();
        options.connect(url.clone())
    };
    let mut minted: Vec<String> = Vec::new();
    for life in ["first", "re-created"] {
        api.create(BROKERS, broker.clone());
        let data_plane = DataPlane::start(&api, &operator, NS, "agents", port).await;
        broker_pods_ready(&api, NS, "agents", 1).await;
        if minted.is_empty() {
            api.create(MAILBOXES, mailbox.clone());
        }
        let what = operator.waiting_for(format!("credentials of the {life} Broker"));
        let creds = api
            .wait_for(&what, |api| {
                let secret = api.get(SECRETS, NS, "inbox-mq9")?;
                let creds = secret_text(&secret, "user.creds")?;
                let ready = api
                    .get(MAILBOXES, NS, "inbox")
                    .and_then(|m| condition(&m, "Ready").filter(|c| c["reason"] == "Created"));
                (ready.is_some() && !minted.contains(&creds)).then_some(creds)
            })
            .await;
        let agent = connect(creds.clone())
            .await
            .unwrap_or_else(|e| panic!("the {life} Broker's credentials log in: {e}"));
        let fetch = agent.request("$mq9.AI.MSG.FETCH.team.inbox", "{}".into());
        let reply = serde_json::from_slice::<serde_json::Value>(&fetch.await.unwrap().payload);
        assert_eq!(reply.unwrap()["error"], "", "its own mailbox answers");
        for old in &minted {
            assert!(
                connect(old.clone()).await.is_err(),
                "the old keys' credentials are refused"
            );
        }
        minted.push(creds);
        api.delete(BROKERS, NS, "agents");
        let what = operator.waiting_for("the Broker and its keys gone");
        api.wait_for(&what, |api| {
            let gone = api.get(BROKERS, NS, "agents").is_none()
                && api.get(SECRETS, NS, "agents-auth").is_none();
            gone.then_some(())
        })
        .await;
        drop(data_plane);
    }
}

/// A Secret of a Broker's name left by an earlier Broker of the same name (its garbage
/// collection held up here by a finalizer; on a real cluster it lingers for a moment, or is
/// even written by a pass that was still running for the earlier Broker) is never taken over:
/// the new Broker waits for it to go and then makes keys of its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_broker_never_takes_over_its_predecessors_keys() {
    let api = support::apiserver::FakeApiServer::start().await;
    let operator = Operator::start(&api, "nats://127.0.0.1:1", 2);
    let earlier = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Broker", "name": "agents",
        "uid": "uid-of-the-earlier-broker", "controller": true});
    api.create(
        SECRETS,
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "agents-auth", "namespace": NS, "ownerReferences": [earlier],
                "finalizers": ["test.mq9.io/hold"]},
            "data": {"signing-keys.json": "b2xk"}}),
    );
    assert!(
        api.get(SECRETS, NS, "agents-auth").unwrap()["metadata"]["deletionTimestamp"].is_string(),
        "the garbage collector is deleting the leftover"
    );
    api.create(
        BROKERS,
        json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Broker",
            "metadata": {"name": "agents", "namespace": NS}, "spec": {}}),
    );
    let what = operator.waiting_for("the leftover Secret refused");
    api.wait_for(&what, |_| {
        let log = operator.log_text();
        log.contains("belongs to an earlier Broker").then_some(())
    })
    .await;
    let leftover = api.get(SECRETS, NS, "agents-auth").unwrap();
    assert_eq!(
        leftover["metadata"]["ownerReferences"][0]["uid"],
        "uid-of-the-earlier-broker"
    );
    assert!(
        api.get(STATEFULSETS, NS, "agents").is_none(),
        "nothing is built on the earlier Broker's keys"
    );
    let secrets = kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(api.client(), NS);
    let release = json!({"metadata": {"finalizers": null}});
    let patch = kube::api::Patch::Merge(&release);
    secrets
        .patch("agents-auth", &Default::default(), &patch)
        .await
        .expect("the hold is released");
    let uid = api.get(BROKERS, NS, "agents").unwrap()["metadata"]["uid"].clone();
    let what = operator.waiting_for("keys of the new Broker's own");
    let own = api
        .wait_for(&what, |api| {
            let secret = api.get(SECRETS, NS, "agents-auth")?;
            (secret["metadata"]["ownerReferences"][0]["uid"] == uid).then_some(secret)
        })
        .await;
    assert_ne!(own["data"]["signing-keys.json"], "b2xk", "new keys");
    let what = operator.waiting_for("the StatefulSet, built on the new keys");
    api.wait_for(&what, |api| api.get(STATEFULSETS, NS, "agents"))
        .await;
}
