//! The Mailbox's Secret, in the service-binding form of operator.md (type
//! `servicebinding.io/mq9`): everything an agent needs to use its mailbox, ready for
//! `envFrom` (`MQ9_URL`, `MQ9_MAIL_ADDRESS`, `MQ9_CREDS`) or a volume mount (`user.creds`).
//!
//! `MQ9_CREDS` is a path, not the credentials: `/var/run/secrets/mq9/user.creds`, where the
//! injection webhook (and the documented manual mount) puts this Secret. NATS clients and the
//! `mq9` CLI take a credentials *file*.

use std::collections::BTreeMap;

/// The Secret's environment-ready keys. Only these become environment variables of an agent's
/// containers; `user.creds` (the NATS seed) is mounted as a file, never put into the
/// environment, where it would show in `kubectl describe`, crash dumps and child processes.
pub const ENV_URL: &str = "MQ9_URL";
pub const ENV_MAIL_ADDRESS: &str = "MQ9_MAIL_ADDRESS";
/// The path of the mounted `user.creds`; absent without auth.
pub const ENV_CREDS: &str = "MQ9_CREDS";
pub const ENV_KEYS: [&str; 3] = [ENV_URL, ENV_MAIL_ADDRESS, ENV_CREDS];

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::ByteString;
use kube::{Resource, ResourceExt};

use crate::crd::Mailbox;
use crate::operator::builders::{MANAGED_BY, MANAGED_BY_LABEL};

/// Label on every Secret the operator manages; the operator watches only Secrets with it.
pub const MANAGED_LABEL: &str = "mq9.io/managed";
/// Annotation recording which permissions the credentials in the Secret carry, so that a
/// membership change re-mints them (the address is never rewritten).
pub const PERMISSIONS_ANNOTATION: &str = "mq9.io/permissions-hash";
/// Where the Secret is mounted in agent pods.
pub const MOUNT_PATH: &str = "/var/run/secrets/mq9";

/// The Secret's name: `spec.secretName` or `<mailbox>-mq9`.
pub fn secret_name(mailbox: &Mailbox) -> String {
    mailbox
        .spec
        .secret_name
        .clone()
        .unwrap_or_else(|| format!("{}-mq9", mailbox.name_any()))
}

/// Everything that goes into the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding<'a> {
    /// In-cluster host and port of the broker's NATS.
    pub host: &'a str,
    pub port: u16,
    pub address: &'a str,
    pub expires_at: Option<Timestamp>,
    /// The `.creds` text, when the broker requires authentication.
    pub creds: Option<&'a str>,
    pub permissions_hash: &'a str,
}

/// Builds the Secret, owned by the Mailbox (so it goes when the Mailbox goes).
pub fn secret(mailbox: &Mailbox, binding: &Binding<'_>) -> Secret {
    let uri = format!("nats://{}:{}", binding.host, binding.port);
    let expires_at = binding
        .expires_at
        .map_or_else(|| "never".to_owned(), |t| t.to_string());
    let mut data: BTreeMap<String, String> = [
        ("type", "mq9".to_owned()),
        ("provider", "mq9.io".to_owned()),
        ("host", binding.host.to_owned()),
        ("port", binding.port.to_string()),
        ("uri", uri.clone()),
        ("mail_address", binding.address.to_owned()),
        ("expires_at", expires_at),
        (ENV_URL, uri),
        (ENV_MAIL_ADDRESS, binding.address.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(creds) = binding.creds {
        data.insert("user.creds".into(), creds.to_owned());
        data.insert(ENV_CREDS.into(), format!("{MOUNT_PATH}/user.creds"));
    }
    let template = mailbox.spec.secret_template.clone().unwrap_or_default();
    let mut labels = template.labels;
    labels.insert(MANAGED_LABEL.into(), "true".into());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let mut annotations = template.annotations;
    annotations.insert(
        PERMISSIONS_ANNOTATION.into(),
        binding.permissions_hash.to_owned(),
    );
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(mailbox)),
            namespace: mailbox.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: mailbox.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        type_: Some("servicebinding.io/mq9".into()),
        // `data`, not `stringData`: what is applied is then exactly what a read returns.
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// The address recorded in an existing Secret, if any.
pub fn recorded_address(secret: &Secret) -> Option<String> {
    let bytes = secret.data.as_ref()?.get("mail_address")?;
    String::from_utf8(bytes.0.clone())
        .ok()
        .filter(|a| crate::protocol::address::validate(a).is_ok())
}

/// Whether the Secret belongs to this Mailbox (a Secret of the same name that someone else
/// made is never overwritten).
pub fn is_owned_by(secret: &Secret, mailbox: &Mailbox) -> bool {
    let uid = mailbox.uid();
    secret
        .owner_references()
        .iter()
        .any(|r| Some(&r.uid) == uid.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{BrokerRef, MailboxSpec, SecretTemplate};

    fn mailbox() -> Mailbox {
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
        mailbox.metadata.uid = Some("uid-1".into());
        mailbox
    }

    fn text_data(secret: &Secret) -> BTreeMap<String, String> {
        let data = secret.data.clone().unwrap();
        data.into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
            .collect()
    }

    #[test]
    fn service_binding_keys_owner_and_labels() {
        let binding = Binding {
            host: "b.ns.svc",
            port: 4222,
            address: "abc",
            expires_at: Some(Timestamp::from_second(0).unwrap()),
            creds: Some("CREDS"),
            permissions_hash: "h1",
        };
        let secret = secret(&mailbox(), &binding);
        let data = text_data(&secret);
        assert_eq!(secret.type_.as_deref(), Some("servicebinding.io/mq9"));
        assert_eq!(secret.metadata.name.as_deref(), Some("inbox-mq9"));
        for (key, value) in [
            ("type", "mq9"),
            ("host", "b.ns.svc"),
            ("port", "4222"),
            ("uri", "nats://b.ns.svc:4222"),
            ("mail_address", "abc"),
            ("expires_at", "1970-01-01T00:00:00Z"),
            ("user.creds", "CREDS"),
            ("MQ9_URL", "nats://b.ns.svc:4222"),
            ("MQ9_MAIL_ADDRESS", "abc"),
            ("MQ9_CREDS", "/var/run/secrets/mq9/user.creds"),
        ] {
            assert_eq!(data.get(key).map(String::as_str), Some(value), "{key}");
        }
        assert!(data.contains_key("provider"));
        assert_eq!(
            recorded_address(&secret).as_deref(),
            Some("abc"),
            "read back from `data`"
        );
        let labels = secret.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[MANAGED_LABEL], "true", "the operator's label wins");
        assert_eq!(labels["team"], "a");
        assert_eq!(
            secret.metadata.annotations.as_ref().unwrap()[PERMISSIONS_ANNOTATION],
            "h1"
        );
        let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            ("uid-1", Some(true))
        );
    }

    #[test]
    fn without_auth_there_are_no_credentials() {
        let binding = Binding {
            host: "h",
            port: 1,
            address: "a",
            expires_at: None,
            creds: None,
            permissions_hash: "",
        };
        let data = text_data(&secret(&mailbox(), &binding));
        assert!(!data.contains_key("user.creds") && !data.contains_key("MQ9_CREDS"));
        assert_eq!(data["expires_at"], "never");
    }
}
