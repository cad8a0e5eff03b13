//! A Mailbox's Secret, in the service-binding form of operator.md (type
//! `servicebinding.io/mq9`): everything an agent needs to use its mailbox, ready for
//! `envFrom` (`MQ9_URL`, `MQ9_MAIL_ADDRESS`, `MQ9_CREDS`) or a volume mount (`user.creds`).
//!
//! `MQ9_CREDS` is a path, not the credentials: `/var/run/secrets/mq9/user.creds`, where the
//! injection webhook (and the documented manual mount) puts this Secret. NATS clients and the
//! `mq9` CLI take a credentials *file*.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::ByteString;
use kube::{Resource, ResourceExt};

use crate::crd::Mailbox;
use crate::operator::names::{
    CREDS_KEY, ENV_CREDS, ENV_MAIL_ADDRESS, ENV_URL, MAILBOX_TYPE_ANNOTATION, MANAGED_BY,
    MANAGED_BY_LABEL, MANAGED_LABEL, MOUNT_PATH, PERMISSIONS_ANNOTATION,
};

/// The key holding the mailbox's address, read back by [`recorded_address`].
const ADDRESS_KEY: &str = "mail_address";

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
        (ADDRESS_KEY, binding.address.to_owned()),
        ("expires_at", expires_at),
        (ENV_URL, uri),
        (ENV_MAIL_ADDRESS, binding.address.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(creds) = binding.creds {
        data.insert(CREDS_KEY.into(), creds.to_owned());
        data.insert(ENV_CREDS.into(), format!("{MOUNT_PATH}/{CREDS_KEY}"));
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
    annotations.insert(
        MAILBOX_TYPE_ANNOTATION.into(),
        mailbox.spec.kind.as_str().to_owned(),
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
    let bytes = secret.data.as_ref()?.get(ADDRESS_KEY)?;
    String::from_utf8(bytes.0.clone())
        .ok()
        .filter(|a| crate::protocol::address::validate(a).is_ok())
}

/// The permissions hash recorded on a Secret by [`secret`]: which grant its credentials carry.
pub fn recorded_permissions(secret: &Secret) -> Option<&str> {
    secret
        .annotations()
        .get(PERMISSIONS_ANNOTATION)
        .map(String::as_str)
}

/// The mailbox type recorded on a Secret by [`secret`]: the type the mailbox has on the broker
/// (`None` for a Secret written before the type was recorded).
pub fn recorded_type(secret: &Secret) -> Option<&str> {
    secret
        .annotations()
        .get(MAILBOX_TYPE_ANNOTATION)
        .map(String::as_str)
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
#[path = "secret_tests.rs"]
mod tests;
