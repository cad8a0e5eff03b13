//! Pod injection end to end: the operator serves its admission webhook over HTTPS with the
//! certificate it generated, publishes the CA in the MutatingWebhookConfiguration, answers
//! AdmissionReviews as the API server sends them, and makes each pod the owner of the Mailbox
//! it was given, so the Mailbox (and its mailbox on the broker) goes with the pod. It starts
//! before its webhook configuration exists, keeps one CA across renewals by any replica, and
//! deletes the `auto` Mailbox of a pod that never came to exist.

mod support;

use base64::Engine as _;
use serde_json::{json, Value};
use support::cluster::*;
use support::wait_until;

const WEBHOOK_CONFIGURATIONS: &str =
    "admissionregistration.k8s.io/v1/mutatingwebhookconfigurations";
const TLS_SECRET: &str = "mq9-operator-webhook-tls";

/// An HTTPS client of the webhook at 127.0.0.1:`port` (as `localhost`) that trusts only the
/// CAs of `bundle`, as the API server does with the configuration's `caBundle`.
fn webhook_client(port: u16, bundle: &str) -> kube::Client {
    use rustls::pki_types::pem::PemObject;
    let cas = rustls::pki_types::CertificateDer::pem_slice_iter(bundle.as_bytes())
        .map(|ca| ca.expect("PEM certificates").to_vec())
        .collect();
    let mut config = kube::Config::new(format!("https://localhost:{port}").parse().unwrap());
    config.root_cert = Some(cas);
    kube::Client::try_from(config).unwrap()
}

/// The webhook's answer to the API server asking about `pod` being created in `apps`; `Err`
/// when the call fails (e.g. the webhook's certificate is not trusted).
async fn try_review(client: &kube::Client, pod: &Value) -> Result<Value, kube::Error> {
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "req-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": NS, "operation": "CREATE", "userInfo": {"username": "deployer"},
        "object": pod, "dryRun": false}});
    let request = http::Request::post("/mutate")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&review).unwrap())
        .unwrap();
    let answer: Value = client.request(request).await?;
    assert_eq!(answer["response"]["uid"], "req-1");
    assert_eq!(
        answer["response"]["allowed"], true,
        "the webhook never refuses a pod: {answer}"
    );
    Ok(answer["response"].clone())
}

async fn review(client: &kube::Client, pod: &Value) -> Value {
    try_review(client, pod)
        .await
        .expect("the webhook answers over TLS")
}

/// Waits until the webhook at `port` answers a client trusting `bundle`.
async fn wait_trusted(port: u16, bundle: &str, what: &str) {
    let client = webhook_client(port, bundle);
    let plain = pod("plain", json!({}));
    wait_until(what, || async { try_review(&client, &plain).await.is_ok() }).await;
}

/// The flags that serve the webhook at 127.0.0.1:`port` with a certificate for `localhost`.
fn webhook_flags(port: u16) -> Vec<String> {
    ["--webhook-addr", &format!("127.0.0.1:{port}")]
        .into_iter()
        .chain(["--webhook-dns-name", "localhost"])
        .map(str::to_owned)
        .collect()
}

/// A cluster whose operator serves the webhook at the returned port, `more` flags added.
async fn cluster_with_webhook(more: &[&str]) -> (Cluster, u16) {
    let port = support::free_port().port();
    let flags = webhook_flags(port);
    let flags: Vec<&str> = flags
        .iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect();
    (Cluster::start_with(&flags).await, port)
}

/// What config/operator/webhook.yaml installs: the configuration, caBundle still empty.
fn create_configuration(cluster: &Cluster) {
    cluster.api.create(WEBHOOK_CONFIGURATIONS, json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration", "metadata": {"name": "mq9-operator"},
        "webhooks": [{"name": "pods.mq9.io", "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun",
            "objectSelector": {"matchLabels": {"mq9.io/inject": "true"}},
            "clientConfig": {"service": {"name": "mq9-operator-webhook", "namespace": "mq9-system", "path": "/mutate"}}}]}));
}

/// The `caBundle` the operator published, once it has.
async fn published_bundle(cluster: &Cluster) -> String {
    let what = cluster
        .operator
        .waiting_for("the CA in the webhook configuration");
    cluster
        .api
        .wait_for(what, |api| {
            let config = api.get(WEBHOOK_CONFIGURATIONS, "", "mq9-operator")?;
            let bundle = config["webhooks"][0]["clientConfig"]["caBundle"].as_str()?;
            let bundle = base64::engine::general_purpose::STANDARD
                .decode(bundle)
                .ok()?;
            String::from_utf8(bundle).ok()
        })
        .await
}

/// The webhook's certificate Secret, once it exists.
async fn certificate_secret(cluster: &Cluster) -> Value {
    let what = cluster
        .operator
        .waiting_for("the webhook's certificate Secret");
    cluster
        .api
        .wait_for(what, |api| api.get(SECRETS, "mq9-system", TLS_SECRET))
        .await
}

/// The pod as the API server stores it after applying the webhook's patch.
fn patched(pod: &Value, response: &Value) -> Value {
    let patch = response["patch"]
        .as_str()
        .unwrap_or_else(|| panic!("a patch in {response}"));
    let patch = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut pod = pod.clone();
    json_patch::patch(&mut pod, &patch).unwrap();
    pod
}

/// A pod opted in by label (`mq9.io/inject: "true"`), with `annotations`.
fn pod(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS,
            "labels": {"mq9.io/inject": "true"}, "annotations": annotations},
        "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}})
}

#[tokio::test(flavor = "multi_thread")]
async fn annotated_pods_get_their_mailbox_and_auto_mailboxes_go_with_their_pod() {
    let (started, port) = cluster_with_webhook(&[]).await;
    let cluster = &started;
    create_configuration(cluster);
    cluster.ready_broker("agents").await;
    let ca_pem = published_bundle(cluster).await;
    let tls = certificate_secret(cluster).await;
    assert_eq!(tls["type"], "kubernetes.io/tls");
    let client = webhook_client(port, &ca_pem);

    // A pod without the annotation is left alone.
    let plain = pod("plain", json!({}));
    assert!(review(&client, &plain).await["patch"].is_null());
    // The annotation without the opt-in label (a selector widened by hand): not injected, and
    // the warning names the missing label.
    let mut unlabelled = pod("unlabelled", json!({"mq9.io/mailbox": "inbox"}));
    unlabelled["metadata"]["labels"] = json!({});
    let answer = review(&client, &unlabelled).await;
    assert!(answer["patch"].is_null(), "{answer}");
    let warning = answer["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("mq9.io/inject"), "{answer}");

    // A named Mailbox: its Secret (here under a custom name) as env and mount.
    cluster.create_mailbox(
        "inbox",
        json!({}),
        json!({"secretName": "inbox-credentials"}),
    );
    let named = pod("named", json!({"mq9.io/mailbox": "inbox"}));
    let injected = patched(&named, &review(&client, &named).await);
    let container = &injected["spec"]["containers"][0];
    assert_eq!(
        secret_of_env(container, "MQ9_MAIL_ADDRESS"),
        "inbox-credentials"
    );
    assert_seed_only_as_file(&injected);
    assert_eq!(
        container["volumeMounts"][0]["mountPath"],
        "/var/run/secrets/mq9"
    );
    assert_eq!(
        injected["spec"]["volumes"][0]["secret"]["secretName"],
        "inbox-credentials"
    );
    assert_eq!(
        injected["metadata"]["annotations"]["mq9.io/injected"],
        "inbox"
    );
    let again = review(&client, &injected).await;
    assert!(
        again["patch"].is_null(),
        "an injected pod is not injected twice"
    );

    // A Mailbox that does not exist: admitted unchanged, with a warning that says so.
    let missing = review(&client, &pod("lost", json!({"mq9.io/mailbox": "nobody"}))).await;
    assert!(missing["patch"].is_null());
    assert!(
        missing["warnings"][0].as_str().unwrap().contains("nobody"),
        "{missing}"
    );

    // auto: a Mailbox is made for the pod, on the namespace's only Broker.
    let auto = pod(
        "worker-1",
        json!({"mq9.io/mailbox": "auto", "mq9.io/ttl": "2h"}),
    );
    let injected = patched(&auto, &review(&client, &auto).await);
    let mailbox_name = injected["metadata"]["annotations"]["mq9.io/injected"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(mailbox_name.starts_with("worker-1-"), "{mailbox_name}");
    assert_eq!(injected["metadata"]["labels"]["mq9.io/pod-mailbox"], "true");
    let mailbox = cluster
        .api
        .get(MAILBOXES, NS, &mailbox_name)
        .expect("the pod's Mailbox exists");
    assert_eq!(mailbox["spec"]["ttl"], "2h");
    assert_eq!(mailbox["spec"]["brokerRef"]["name"], "agents");
    cluster.wait_reason(&mailbox_name, "Created").await;
    let secret_name = format!("{mailbox_name}-mq9");
    assert_eq!(
        secret_of_env(&injected["spec"]["containers"][0], "MQ9_CREDS"),
        secret_name.as_str()
    );
    assert_seed_only_as_file(&injected);
    let address = cluster.address(&secret_name);

    // The API server stores the pod; the operator makes it the Mailbox's owner.
    let stored = cluster.api.create("v1/pods", injected);
    let pod_uid = stored["metadata"]["uid"].as_str().unwrap().to_owned();
    let what = cluster.operator.waiting_for("the pod to own its Mailbox");
    cluster
        .api
        .wait_for(what, |api| {
            let mailbox = api.get(MAILBOXES, NS, &mailbox_name)?;
            let owners = mailbox["metadata"]["ownerReferences"].as_array()?;
            owners
                .iter()
                .any(|o| o["uid"] == pod_uid.as_str() && o["kind"] == "Pod")
                .then_some(())
        })
        .await;
    // The pod goes: its Mailbox goes with it, and so does the mailbox on the broker.
    cluster.api.delete("v1/pods", NS, "worker-1");
    cluster.wait_gone(MAILBOXES, &mailbox_name).await;
    assert_eq!(cluster.info(&address).await["exists"], false);
    cluster.assert_address_never_shown(&address);
}

/// The Secret an injected environment variable is read from.
fn secret_of_env<'a>(container: &'a Value, name: &str) -> &'a str {
    let vars = container["env"].as_array().expect("injected env");
    let var = vars.iter().find(|v| v["name"] == name).expect(name);
    var["valueFrom"]["secretKeyRef"]["name"].as_str().unwrap()
}

/// No environment variable of the injected pod can carry the NATS seed: no `envFrom` (which
/// would take every key of the Secret, `user.creds` included), and every variable read from a
/// Secret reads one `MQ9_*` key. The credentials reach the pod only as the mounted file: the
/// whole Secret, `user.creds` included, under `/var/run/secrets/mq9`.
fn assert_seed_only_as_file(pod: &Value) {
    let spec = &pod["spec"];
    let containers = spec["containers"].as_array().into_iter().flatten();
    let init = spec["initContainers"].as_array().into_iter().flatten();
    for container in containers.chain(init) {
        assert!(container["envFrom"].is_null(), "no envFrom: {container}");
        for var in container["env"].as_array().into_iter().flatten() {
            let key = var["valueFrom"]["secretKeyRef"]["key"].as_str();
            assert!(
                key.is_some_and(|key| key.starts_with("MQ9_")),
                "only MQ9_* keys become environment: {var}"
            );
            assert!(var["value"].is_null(), "no literal value: {var}");
        }
        let mounted = container["volumeMounts"].as_array().into_iter().flatten();
        assert!(mounted
            .into_iter()
            .any(|m| m["mountPath"] == "/var/run/secrets/mq9" && m["readOnly"] == true));
    }
    let volume = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == "mq9")
        .expect("the Secret's volume");
    assert!(
        volume["secret"]["items"].is_null(),
        "every key of the Secret, user.creds included, is a file: {volume}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_starts_before_its_webhook_configuration_exists() {
    // Helm creates webhook configurations last: the operator must not exit meanwhile.
    let (started, port) = cluster_with_webhook(&[]).await;
    let cluster = &started;
    let tls = certificate_secret(cluster).await;
    let bundle = secret_text(&tls, "ca.crt").expect("the CA in the Secret");
    wait_trusted(
        port,
        &bundle,
        "the webhook serves without its configuration",
    )
    .await;
    create_configuration(cluster);
    assert_eq!(published_bundle(cluster).await, bundle);
    wait_trusted(port, &bundle, "the webhook still serves").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewal_by_another_replica_leaves_every_replica_trusted() {
    let (started, first_port) = cluster_with_webhook(&[]).await;
    let cluster = &started;
    create_configuration(cluster);
    let bundle = published_bundle(cluster).await;
    wait_trusted(first_port, &bundle, "the first replica serves").await;
    let first_cert = secret_text(&certificate_secret(cluster).await, "tls.crt");

    // A second replica for other names (as in a rolling upgrade that changes them): it renews
    // the certificate while the first replica still serves the one it read at start.
    let second_port = support::free_port().port();
    let mut flags = webhook_flags(second_port);
    flags.extend(
        [
            "--webhook-dns-name",
            "replica-2.test",
            "--identity",
            "second",
        ]
        .map(String::from),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let _second = Operator::start_with(&cluster.api, cluster.env.nats.url(), 2, &flags);
    let what = cluster.operator.waiting_for("the second replica's renewal");
    cluster
        .api
        .wait_for(what, |api| {
            let tls = api.get(SECRETS, "mq9-system", TLS_SECRET)?;
            (secret_text(&tls, "tls.crt") != first_cert).then_some(())
        })
        .await;
    wait_trusted(second_port, &bundle, "the renewed certificate verifies").await;
    // Both under the CA the API server was told to trust, which did not change.
    assert_eq!(published_bundle(cluster).await, bundle);
    let client = webhook_client(first_port, &bundle);
    try_review(&client, &pod("plain", json!({})))
        .await
        .expect("the replica still serving the previous certificate is trusted");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auto_mailbox_whose_pod_never_came_to_exist_is_deleted() {
    let (started, port) = cluster_with_webhook(&["--auto-mailbox-grace", "5"]).await;
    let cluster = &started;
    create_configuration(cluster);
    cluster.ready_broker("agents").await;
    let client = webhook_client(port, &published_bundle(cluster).await);
    let mailbox_of = |pod: &Value| {
        pod["metadata"]["annotations"]["mq9.io/injected"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Admitted by the webhook, then refused by the API server: never stored.
    let refused = pod("refused", json!({"mq9.io/mailbox": "auto"}));
    let orphan = mailbox_of(&patched(&refused, &review(&client, &refused).await));
    // Admitted and stored: its Mailbox must stay.
    let kept = pod("kept", json!({"mq9.io/mailbox": "auto"}));
    let kept = patched(&kept, &review(&client, &kept).await);
    let owned = mailbox_of(&kept);
    cluster.api.create("v1/pods", kept);

    // Made on the broker meanwhile (the grace period is far longer than that).
    cluster.wait_reason(&orphan, "Created").await;
    let secret = format!("{orphan}-mq9");
    let address = cluster.address(&secret);
    assert_eq!(cluster.info(&address).await["exists"], true);
    cluster.wait_gone(MAILBOXES, &orphan).await;
    assert_eq!(cluster.info(&address).await["exists"], false);
    let what = cluster.operator.waiting_for("an Event saying why");
    cluster
        .api
        .wait_for(what, |_| {
            let reasons = cluster.event_reasons(&orphan);
            reasons.iter().any(|r| r == "Orphaned").then_some(())
        })
        .await;
    cluster.wait_reason(&owned, "Created").await;
    assert!(
        cluster.api.get(MAILBOXES, NS, &owned).is_some(),
        "the Mailbox of a pod that exists stays"
    );
    cluster.assert_address_never_shown(&address);
}
