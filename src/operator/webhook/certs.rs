//! The webhook's TLS, managed by the operator itself (no cert-manager): a private CA and a
//! serving certificate for the webhook Service, kept in a Secret in the operator's namespace
//! so every replica serves the same one, and the CA published as the `caBundle` of the
//! MutatingWebhookConfiguration so the API server trusts it.
//!
//! Generated on first start, valid for [`VALIDITY`], regenerated when less than [`RENEW_BEFORE`]
//! is left or the DNS names changed; the server checks periodically and swaps in the Secret's
//! current certificate, so every replica follows a renewal by any of them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;

use crate::operator::names::{
    DNS_NAMES_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, NOT_AFTER_ANNOTATION,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How long a generated certificate is valid.
pub const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A certificate with less than this left is replaced.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// A CA and a serving certificate signed by it, in PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ServingCert {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: Timestamp,
    pub dns_names: Vec<String>,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("not_after", &self.not_after)
            .field("dns_names", &self.dns_names)
            .finish_non_exhaustive()
    }
}

/// A fresh CA and a certificate for `dns_names`, valid from an hour ago (clock skew) for
/// [`VALIDITY`].
pub fn generate(dns_names: &[String], now: Timestamp) -> Result<ServingCert, rcgen::Error> {
    let not_before = offset_date_time(now.as_second() - 3600);
    let not_after_secs = now.as_second() + VALIDITY.as_secs() as i64;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mq9-operator webhook CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before;
    ca_params.not_after = offset_date_time(not_after_secs);
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;

    let mut params = CertificateParams::new(dns_names.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        dns_names.first().map_or("mq9-operator", String::as_str),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = not_before;
    params.not_after = offset_date_time(not_after_secs);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    Ok(ServingCert {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after: Timestamp::from_second(not_after_secs).expect("a year from now is a valid time"),
        dns_names: dns_names.to_vec(),
    })
}

fn offset_date_time(unix_seconds: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .expect("a time within a few years of now")
}

/// Whether `current` must be replaced: missing, expiring soon, or for other names.
pub fn needs_new(current: Option<&ServingCert>, dns_names: &[String], now: Timestamp) -> bool {
    current.is_none_or(|cert| {
        cert.dns_names != dns_names
            || cert.not_after.as_second() - now.as_second() < RENEW_BEFORE.as_secs() as i64
    })
}

/// The Secret holding `cert` (`ca.crt`, `tls.crt`, `tls.key`: the layout of `kubernetes.io/tls`).
pub fn secret(name: &str, namespace: &str, cert: &ServingCert) -> Secret {
    let data: BTreeMap<String, ByteString> = [
        ("ca.crt", &cert.ca_pem),
        ("tls.crt", &cert.cert_pem),
        ("tls.key", &cert.key_pem),
    ]
    .into_iter()
    .map(|(key, pem)| (key.to_owned(), ByteString(pem.clone().into_bytes())))
    .collect();
    let annotations = [
        (NOT_AFTER_ANNOTATION.to_owned(), cert.not_after.to_string()),
        (DNS_NAMES_ANNOTATION.to_owned(), cert.dns_names.join(",")),
    ];
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            annotations: Some(annotations.into()),
            labels: Some([(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned())].into()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Reads a certificate back from its Secret; `None` when anything is missing or malformed.
pub fn from_secret(secret: &Secret) -> Option<ServingCert> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
    let annotations = secret.annotations();
    let dns_names = annotations
        .get(DNS_NAMES_ANNOTATION)?
        .split(',')
        .map(str::to_owned)
        .collect();
    Some(ServingCert {
        ca_pem: text("ca.crt")?,
        cert_pem: text("tls.crt")?,
        key_pem: text("tls.key")?,
        not_after: annotations.get(NOT_AFTER_ANNOTATION)?.parse().ok()?,
        dns_names,
    })
}

/// The rustls configuration that serves `cert`.
pub fn tls_config(cert: &ServingCert) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain =
        CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificate in the Secret `name`, replaced (or created) when [`needs_new`] says so.
pub async fn ensure(
    client: &Client,
    namespace: &str,
    name: &str,
    dns_names: &[String],
) -> anyhow::Result<ServingCert> {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    let existing = secrets.get_opt(name).await?;
    let current = existing.as_ref().and_then(from_secret);
    let now = Timestamp::now();
    if !needs_new(current.as_ref(), dns_names, now) {
        return Ok(current.expect("needs_new is false only for an existing certificate"));
    }
    let cert = generate(dns_names, now)?;
    let mut desired = secret(name, namespace, &cert);
    let written = match existing {
        Some(existing) => {
            desired.metadata.resource_version = existing.metadata.resource_version;
            secrets
                .replace(name, &PostParams::default(), &desired)
                .await
        }
        None => secrets.create(&PostParams::default(), &desired).await,
    };
    match written {
        Ok(_) => {
            tracing::info!(not_after = %cert.not_after, "generated the webhook's serving certificate");
            Ok(cert)
        }
        // Another replica wrote one first: use that.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let secret = secrets.get(name).await?;
            from_secret(&secret)
                .ok_or_else(|| anyhow::anyhow!("Secret {name} holds no usable certificate"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Sets the CA as the `caBundle` of every webhook of the MutatingWebhookConfiguration `name`.
pub async fn publish_ca_bundle(client: &Client, name: &str, ca_pem: &str) -> anyhow::Result<()> {
    let configs = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let mut config = configs.get(name).await?;
    let bundle = ByteString(ca_pem.as_bytes().to_vec());
    let mut changed = false;
    for webhook in config.webhooks.iter_mut().flatten() {
        if webhook.client_config.ca_bundle.as_ref() != Some(&bundle) {
            webhook.client_config.ca_bundle = Some(bundle.clone());
            changed = true;
        }
    }
    if changed {
        configs
            .replace(&config.name_any(), &PostParams::default(), &config)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec![
            "mq9-operator-webhook.mq9-system.svc".to_owned(),
            "localhost".to_owned(),
        ]
    }

    #[test]
    fn generated_certificate_round_trips_through_its_secret_and_serves() {
        let now = Timestamp::now();
        let cert = generate(&names(), now).unwrap();
        assert!(cert.ca_pem.contains("BEGIN CERTIFICATE") && cert.key_pem.contains("PRIVATE KEY"));
        let stored = secret("webhook-tls", "mq9-system", &cert);
        assert_eq!(stored.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(from_secret(&stored).as_ref(), Some(&cert));
        tls_config(&cert).expect("rustls accepts the certificate and key");
        assert!(!needs_new(Some(&cert), &names(), now));
    }

    #[test]
    fn renewed_when_missing_expiring_or_for_other_names() {
        let now = Timestamp::now();
        let cert = generate(&names(), now).unwrap();
        assert!(needs_new(None, &names(), now));
        let late = Timestamp::from_second(cert.not_after.as_second() - 10 * 24 * 3600).unwrap();
        assert!(needs_new(Some(&cert), &names(), late));
        assert!(needs_new(Some(&cert), &["other.svc".to_owned()], now));
    }
}
