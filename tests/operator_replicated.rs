//! Replicated Brokers, end to end on the operator's side: the real `mq9 operator` binary against
//! the fake Kubernetes API server (which, like an API server without CEL, lets every update
//! in). A new Broker of three replicas runs every pod's broker replicated with JetStream on
//! its volumes; what the data forbids (another shard count, fewer than three replicas) is
//! refused loudly and never applied; a Broker whose pod 0 holds a single broker's data keeps
//! serving that way and says how to migrate.

mod support;

use base64::Engine as _;
use serde_json::{json, Value};
use support::apiserver::FakeApiServer;
use support::cluster::*;

/// Creates the Broker `name` with `spec` and waits for its StatefulSet.
async fn create_broker(api: &FakeApiServer, operator: &Operator, name: &str, spec: Value) -> Value {
    let broker = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Broker",
        "metadata": {"name": name, "namespace": NS}, "spec": spec});
    api.create(BROKERS, broker);
    let what = operator.waiting_for(format!("the StatefulSet of {name}"));
    api.wait_for(&what, |api| api.get(STATEFULSETS, NS, name))
        .await
}

/// The broker container's arguments in a StatefulSet.
fn broker_args(sts: &Value) -> Vec<String> {
    let containers = sts["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    let broker = containers.iter().find(|c| c["name"] == "broker").unwrap();
    serde_json::from_value(broker["args"].clone()).unwrap()
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).map(String::as_str)
}

/// Merge-patches the Broker `name`'s spec, as `kubectl patch --type merge` does.
async fn patch_spec(api: &FakeApiServer, name: &str, spec: Value) {
    let brokers: kube::Api<mq9::crd::Broker> = kube::Api::namespaced(api.client(), NS);
    let patch = json!({ "spec": spec });
    let params = kube::api::PatchParams::default();
    brokers
        .patch(name, &params, &kube::api::Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Waits for the Broker's condition `type_` with `reason`.
async fn wait_condition(
    api: &FakeApiServer,
    operator: &Operator,
    name: &str,
    type_: &str,
    reason: &str,
) -> Value {
    let what = operator.waiting_for(format!("Broker {name} {type_}/{reason}"));
    api.wait_for(&what, |api| {
        let broker = api.get(BROKERS, NS, name)?;
        condition(&broker, type_).filter(|c| c["reason"] == reason)
    })
    .await
}

/// Waits for a Warning Event of `reason` about the Broker whose note contains `says`.
async fn wait_warning(
    api: &FakeApiServer,
    operator: &Operator,
    name: &str,
    reason: &str,
    says: &str,
) {
    let what = operator.waiting_for(format!("a {reason} Warning Event saying {says:?}"));
    api.wait_for(&what, |api| {
        let events = api.list(EVENTS, Some(NS));
        let warned = events.iter().any(|e| {
            e["type"] == "Warning"
                && e["reason"] == reason
                && e["regarding"]["name"] == name
                && e["note"].as_str().unwrap_or_default().contains(says)
        });
        warned.then_some(())
    })
    .await;
}

/// The `nats.pub.allow` list of the user JWT in a `.creds` text.
fn creds_publish_allow(creds: &str) -> Value {
    let jwt = creds.lines().find(|l| l.starts_with("eyJ")).unwrap();
    let claims = jwt.split('.').nth(1).unwrap();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .unwrap();
    let claims: Value = serde_json::from_slice(&claims).unwrap();
    claims["nats"]["pub"]["allow"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_of_three_runs_every_pod_replicated_with_jetstream_on_its_volumes() {
    let api = FakeApiServer::start().await;
    let operator = Operator::start(&api, "nats://127.0.0.1:1", 60);
    let sts = create_broker(
        &api,
        &operator,
        "repl",
        json!({"replicas": 3, "shards": 24, "storage": {"size": "8Gi"}}),
    )
    .await;
    let args = broker_args(&sts);
    for (name, value) in [
        ("--replication", "jetstream"),
        ("--shards", "24"),
        ("--cluster", "repl"),
        ("--node", "$(POD_NAME)"),
        ("--peers", "3"),
        ("--log-replicas", "3"),
        ("--data-dir", "/data/broker"),
    ] {
        assert_eq!(flag(&args, name), Some(value), "{name} in {args:?}");
    }
    assert_eq!(flag(&args, "--active-pod"), None, "every pod serves");
    assert_eq!(sts["spec"]["updateStrategy"]["type"], "RollingUpdate");
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    let conf = api.get(CONFIG_MAPS, NS, "repl-config").unwrap();
    let conf = conf["data"]["nats-server.conf"].as_str().unwrap();
    for line in [
        "jetstream {",
        "  store_dir: \"/data/jetstream\"",
        "  max_file_store: 4294967296",
        "  name: repl",
    ] {
        assert!(conf.lines().any(|l| l == line), "{line} in\n{conf}");
    }
    let what = operator.waiting_for("the PodDisruptionBudget");
    let pdb = api
        .wait_for(&what, |api| {
            api.get("policy/v1/poddisruptionbudgets", NS, "repl")
        })
        .await;
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let auth = api.get(SECRETS, NS, "repl-auth").unwrap();
    let allow = creds_publish_allow(&secret_text(&auth, "broker.creds").unwrap());
    for subject in ["$JS.API.>", "$KV.MQ9_LEASES_repl.>", "$mq9.REPL.repl.>"] {
        assert!(allow.to_string().contains(subject), "{subject} in {allow}");
    }

    broker_pods_ready(&api, NS, "repl", 3).await;
    let available = wait_condition(&api, &operator, "repl", "Available", "PodsReady").await;
    assert_eq!(available["status"], "True");
    let broker = api.get(BROKERS, NS, "repl").unwrap();
    assert!(
        condition(&broker, "MigrationNeeded").is_none(),
        "a replicated Broker needs none: {broker}"
    );
    assert_eq!(
        broker["status"].get("shards"),
        None,
        "no broker answered: the shards are unknown, not stale"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shards_or_quorum_breaking_change_is_refused_and_never_applied() {
    let api = FakeApiServer::start().await;
    let operator = Operator::start(&api, "nats://127.0.0.1:1", 60);
    let spec = json!({"auth": {"mode": "none"}, "replicas": 3});
    let created = create_broker(&api, &operator, "fixed", spec).await;
    assert_eq!(
        flag(&broker_args(&created), "--shards"),
        Some("16"),
        "the default"
    );
    broker_pods_ready(&api, NS, "fixed", 3).await;
    wait_condition(&api, &operator, "fixed", "Degraded", "AsExpected").await;

    patch_spec(&api, "fixed", json!({"shards": 64, "replicas": 5})).await;
    let degraded = wait_condition(
        &api,
        &operator,
        "fixed",
        "Degraded",
        "ImmutableFieldChanged",
    )
    .await;
    assert_eq!(degraded["status"], "True");
    let message = degraded["message"].as_str().unwrap();
    assert!(
        message.contains("spec.shards is 64") && message.contains("keep 16 shards"),
        "{message}"
    );
    wait_warning(
        &api,
        &operator,
        "fixed",
        "ImmutableFieldChanged",
        "spec.shards",
    )
    .await;
    let sts = api.get(STATEFULSETS, NS, "fixed").unwrap();
    assert_eq!(
        flag(&broker_args(&sts), "--shards"),
        Some("16"),
        "no rewrite"
    );
    assert_eq!(
        sts["spec"]["replicas"], 5,
        "the rest of the spec is applied"
    );

    patch_spec(&api, "fixed", json!({"shards": 16, "replicas": 1})).await;
    let degraded = wait_condition(
        &api,
        &operator,
        "fixed",
        "Degraded",
        "ReplicasChangeRefused",
    )
    .await;
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("replicas 1 refused"),
        "{degraded}"
    );
    wait_warning(
        &api,
        &operator,
        "fixed",
        "ReplicasChangeRefused",
        "replicas 1 refused",
    )
    .await;
    let sts = api.get(STATEFULSETS, NS, "fixed").unwrap();
    assert_eq!(
        sts["spec"]["replicas"], 5,
        "the StatefulSet keeps its count"
    );
    assert_eq!(flag(&broker_args(&sts), "--replication"), Some("jetstream"));
    assert!(
        !operator.log_text().contains("reconcile failed"),
        "no pass failed:\n{}",
        operator.log_text()
    );
}

/// The upgrade path: pod 0's volume holds a single broker's data (a Broker made before
/// replicated mode, or scaled up from one replica), which replicated brokers would refuse:
/// the StatefulSet keeps that layout, active-pod from three replicas on, and the Broker says
/// that a migration is needed and how.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_holding_a_single_brokers_data_keeps_serving_it_and_says_how_to_migrate() {
    let api = FakeApiServer::start().await;
    let operator = Operator::start(&api, "nats://127.0.0.1:1", 60);
    let spec = json!({"auth": {"mode": "none"}});
    let single = create_broker(&api, &operator, "old", spec).await;
    assert_eq!(flag(&broker_args(&single), "--replication"), None);
    assert_eq!(flag(&broker_args(&single), "--data-dir"), Some("/data"));
    broker_pods_ready(&api, NS, "old", 1).await;
    wait_condition(&api, &operator, "old", "Available", "PodsReady").await;

    patch_spec(&api, "old", json!({"replicas": 3})).await;
    let migration =
        wait_condition(&api, &operator, "old", "MigrationNeeded", "ActivePodMode").await;
    assert_eq!(migration["status"], "True");
    let message = migration["message"].as_str().unwrap();
    for part in ["old-0", "new Broker", "data-old-*"] {
        assert!(message.contains(part), "{part}: {message}");
    }
    let sts = api.get(STATEFULSETS, NS, "old").unwrap();
    let args = broker_args(&sts);
    assert_eq!(sts["spec"]["replicas"], 3);
    assert_eq!(flag(&args, "--active-pod"), Some("old-0"));
    assert_eq!(flag(&args, "--replication"), None, "{args:?}");
    assert_eq!(
        flag(&args, "--data-dir"),
        Some("/data"),
        "pod 0's data where it is"
    );
    let conf = api.get(CONFIG_MAPS, NS, "old-config").unwrap();
    let conf = conf["data"]["nats-server.conf"].as_str().unwrap();
    assert!(!conf.contains("jetstream"), "{conf}");
    let broker = api.get(BROKERS, NS, "old").unwrap();
    assert_eq!(condition(&broker, "Degraded").unwrap()["status"], "False");

    // Back to one replica: nothing left to migrate.
    patch_spec(&api, "old", json!({"replicas": 1})).await;
    let done = wait_condition(&api, &operator, "old", "MigrationNeeded", "NotNeeded").await;
    assert_eq!(done["status"], "False");
}
