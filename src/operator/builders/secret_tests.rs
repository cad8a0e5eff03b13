//! The Secret checked for what its readers rely on: an agent (service binding, `MQ9_*`
//! variables, the mounted credentials file), the webhook (where it mounts the Secret) and the
//! Mailbox controller (reading back the address, the permissions and the owner).

use super::*;
use crate::crd::{BrokerRef, MailboxSpec, SecretTemplate};
use crate::operator::webhook::inject;
use k8s_openapi::api::core::v1::Pod;

fn mailbox(uid: &str) -> Mailbox {
    let mut mailbox = Mailbox::new(
        "inbox",
        MailboxSpec {
            broker_ref: BrokerRef {
                name: "b".into(),
                namespace: None,
            },
            secret_template: Some(SecretTemplate {
                labels: [
                    ("team".to_owned(), "a".to_owned()),
                    (MANAGED_LABEL.to_owned(), "no".to_owned()),
                ]
                .into(),
                annotations: [("note".to_owned(), "x".to_owned())].into(),
            }),
            ..Default::default()
        },
    );
    mailbox.metadata.namespace = Some("ns".into());
    mailbox.metadata.uid = Some(uid.into());
    mailbox
}

fn text_data(secret: &Secret) -> BTreeMap<String, String> {
    let data = secret.data.clone().unwrap();
    data.into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect()
}

fn binding<'a>(creds: Option<&'a str>, expires_at: Option<Timestamp>) -> Binding<'a> {
    Binding {
        host: "b.ns.svc",
        port: 4222,
        address: "abc",
        expires_at,
        creds,
        permissions_hash: "h1",
    }
}

/// Where the injection webhook mounts the Secret in a container.
fn webhook_mount_path() -> String {
    let pod: Pod =
        serde_json::from_value(serde_json::json!({"spec": {"containers": [{"name": "c"}]}}))
            .unwrap();
    let patch = serde_json::to_value(inject::patch(&pod, "inbox", "inbox-mq9", false)).unwrap();
    let mount = patch
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["path"] == "/spec/containers/0/volumeMounts")
        .expect("the webhook mounts the Secret");
    mount["value"][0]["mountPath"].as_str().unwrap().to_owned()
}

#[test]
fn an_agent_finds_its_broker_address_and_credentials() {
    let expires = Timestamp::from_second(1_700_000_000).unwrap();
    let secret = secret(&mailbox("uid-1"), &binding(Some("CREDS"), Some(expires)));
    let data = text_data(&secret);
    assert_eq!(secret.type_.as_deref(), Some("servicebinding.io/mq9"));
    // The service binding's fields agree with one another and with the env-ready copies.
    let endpoint = data["uri"].strip_prefix("nats://").expect("a NATS URL");
    assert_eq!(endpoint, format!("{}:{}", data["host"], data["port"]));
    assert_eq!(data[ENV_URL], data["uri"]);
    assert_eq!(data[ENV_MAIL_ADDRESS], data["mail_address"]);
    assert_eq!(recorded_address(&secret).as_deref(), Some("abc"));
    assert_eq!(data["expires_at"].parse::<Timestamp>().unwrap(), expires);
    assert!(data.contains_key("type") && data.contains_key("provider"));
    // MQ9_CREDS names the credentials file where the webhook mounts this very Secret.
    let (dir, key) = data[ENV_CREDS].rsplit_once('/').unwrap();
    assert_eq!(dir, webhook_mount_path());
    assert_eq!(data[key], "CREDS");
}

#[test]
fn the_controller_reads_back_owner_permissions_and_labels() {
    let owner = mailbox("uid-1");
    let secret = secret(&owner, &binding(None, None));
    assert!(is_owned_by(&secret, &owner));
    assert!(!is_owned_by(&secret, &mailbox("uid-2")), "another Mailbox");
    let controller = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        controller.controller,
        Some(true),
        "deleted with its Mailbox"
    );
    assert_eq!(recorded_permissions(&secret), Some("h1"));
    assert_eq!(recorded_type(&secret), Some("standard"));
    let labels = secret.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[MANAGED_LABEL], "true", "the operator's label wins");
    assert_eq!(labels["team"], "a", "the template's labels are kept");
    let annotations = secret.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations["note"], "x",
        "the template's annotations are kept"
    );
}

#[test]
fn without_auth_there_are_no_credentials() {
    let data = text_data(&secret(&mailbox("uid-1"), &binding(None, None)));
    assert!(!data.contains_key(CREDS_KEY) && !data.contains_key(ENV_CREDS));
    assert_eq!(data["expires_at"], "never");
}
