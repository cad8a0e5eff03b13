//! Pod injection end to end: the operator serves its admission webhook over HTTPS with the
//! certificate it generated, publishes the CA in the MutatingWebhookConfiguration, answers
//! AdmissionReviews as the API server sends them, and makes each pod the owner of the Mailbox
//! it was given, so the Mailbox (and its mailbox on the broker) goes with the pod.

mod support;

use base64::Engine as _;
use serde_json::{json, Value};
use support::cluster::*;

const WEBHOOK_CONFIGURATIONS: &str =
    "admissionregistration.k8s.io/v1/mutatingwebhookconfigurations";

/// An HTTPS client of the webhook at 127.0.0.1:`port` (as `localhost`) that trusts only `ca_pem`.
fn webhook_client(port: u16, ca_pem: &str) -> kube::Client {
    use rustls::pki_types::pem::PemObject;
    let ca = rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .expect("a PEM certificate");
    let mut config = kube::Config::new(format!("https://localhost:{port}").parse().unwrap());
    config.root_cert = Some(vec![ca.to_vec()]);
    kube::Client::try_from(config).unwrap()
}

/// The webhook's answer to the API server asking about `pod` being created in `apps`.
async fn review(client: &kube::Client, pod: &Value) -> Value {
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "req-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": NS, "operation": "CREATE", "userInfo": {"username": "deployer"},
        "object": pod, "dryRun": false}});
    let request = http::Request::post("/mutate")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&review).unwrap())
        .unwrap();
    let answer: Value = client
        .request(request)
        .await
        .expect("the webhook answers over TLS");
    assert_eq!(answer["response"]["uid"], "req-1");
    assert_eq!(
        answer["response"]["allowed"], true,
        "the webhook never refuses a pod: {answer}"
    );
    answer["response"].clone()
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

fn pod(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "annotations": annotations},
        "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}})
}

#[tokio::test(flavor = "multi_thread")]
async fn annotated_pods_get_their_mailbox_and_auto_mailboxes_go_with_their_pod() {
    let port = support::free_port().port();
    let addr = format!("127.0.0.1:{port}");
    let flags = [
        "--webhook-addr",
        addr.as_str(),
        "--webhook-dns-name",
        "localhost",
    ];
    let started = Cluster::start_with(&flags).await;
    let cluster = &started;
    // What config/operator/webhook.yaml installs: the configuration, caBundle still empty.
    cluster.api.create(WEBHOOK_CONFIGURATIONS, json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration", "metadata": {"name": "mq9-operator"},
        "webhooks": [{"name": "pods.mq9.io", "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun",
            "clientConfig": {"service": {"name": "mq9-operator-webhook", "namespace": "mq9-system", "path": "/mutate"}}}]}));
    cluster.ready_broker("agents").await;
    let what = cluster
        .operator
        .waiting_for("the CA in the webhook configuration");
    let ca_pem = cluster
        .api
        .wait_for(what, |api| {
            let config = api.get(WEBHOOK_CONFIGURATIONS, "", "mq9-operator")?;
            let bundle = config["webhooks"][0]["clientConfig"]["caBundle"].as_str()?;
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(bundle)
                    .ok()?,
            )
            .ok()
        })
        .await;
    let tls = cluster
        .api
        .get(SECRETS, "mq9-system", "mq9-operator-webhook-tls")
        .expect("the certificate Secret");
    assert_eq!(tls["type"], "kubernetes.io/tls");
    let client = webhook_client(port, &ca_pem);

    // A pod without the annotation is left alone.
    let plain = pod("plain", json!({}));
    assert!(review(&client, &plain).await["patch"].is_null());

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
    assert!(
        container["envFrom"].is_null(),
        "the seed never becomes environment"
    );
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
