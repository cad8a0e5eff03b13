//! The webhook's TLS, managed by the operator itself (no cert-manager): a private CA and a
//! serving certificate for the webhook Service, kept in a Secret in the operator's namespace
//! so every replica serves the same one, and the CA published as the `caBundle` of the
//! MutatingWebhookConfiguration so the API server trusts it.
//!
//! **One CA across renewals.** The API server trusts whatever `caBundle` says, and each replica
//! swaps in a renewed certificate only when it next reads the Secret. Were every renewal a new
//! CA, the replicas still serving the previous certificate would fail every call until then
//! (and with `failurePolicy: Ignore`, pods would silently go uninjected). So the CA's key is
//! kept in the Secret (`ca.key`) and renewals issue a new *serving* certificate under the same
//! CA: the published bundle does not change, and old and new serving certificates both verify
//! against it. The CA lives [`CA_VALIDITY`] and is itself replaced when less than
//! [`VALIDITY`] is left (or when the Secret has no usable CA key, as one written by an older
//! operator); then the bundle holds the new CA *and* the one it replaces, so a replica still
//! serving a certificate of the old CA keeps verifying until it follows the renewal.
//!
//! The serving certificate is valid for [`VALIDITY`] (never beyond its CA), renewed when less
//! than [`RENEW_BEFORE`] is left or the DNS names changed. The server checks the Secret
//! periodically and swaps in its current certificate, so every replica follows a renewal by
//! any of them.

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
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::operator::names::{
    CA_NOT_AFTER_ANNOTATION, DNS_NAMES_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL,
    NOT_AFTER_ANNOTATION,
};

/// How long a serving certificate is valid.
pub const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A serving certificate with less than this left is replaced.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long the CA is valid; it is replaced when less than [`VALIDITY`] is left.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The CA's subject: the same on every CA this operator makes, so that a serving certificate
/// issued by a CA rebuilt from its stored key names the stored CA as issuer.
const CA_COMMON_NAME: &str = "mq9-operator webhook CA";
const PEM_END: &str = "-----END CERTIFICATE-----";

/// The CA that signs serving certificates: its certificate and its key, in PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: Timestamp,
}

/// What the certificate Secret holds: the CA, the bundle the API server trusts, and a serving
/// certificate signed by the CA.
#[derive(Clone, PartialEq, Eq)]
pub struct ServingCert {
    pub ca: Ca,
    /// The `caBundle`: [`ServingCert::ca`] first, then the CA it replaced, if any.
    pub ca_bundle: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: Timestamp,
    pub dns_names: Vec<String>,
}

/// Never prints a key.
impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("not_after", &self.not_after)
            .field("ca_not_after", &self.ca.not_after)
            .field("dns_names", &self.dns_names)
            .finish_non_exhaustive()
    }
}

/// The certificate to store instead of `current` (what the Secret holds; `previous_ca` is its
/// `ca.crt`, even when the rest is unusable), or `None` when `current` is good as it is.
pub fn renewed(
    current: Option<&ServingCert>,
    previous_ca: Option<&str>,
    dns_names: &[String],
    now: Timestamp,
) -> Result<Option<ServingCert>, rcgen::Error> {
    let left = |not_after: Timestamp| not_after.as_second() - now.as_second();
    let usable_ca = current
        .map(|cert| &cert.ca)
        .filter(|ca| left(ca.not_after) >= VALIDITY.as_secs() as i64);
    let (ca, ca_bundle) = match (usable_ca, current) {
        (Some(_), Some(cert))
            if cert.dns_names == dns_names
                && left(cert.not_after) >= RENEW_BEFORE.as_secs() as i64 =>
        {
            return Ok(None)
        }
        (Some(ca), Some(cert)) => (ca.clone(), cert.ca_bundle.clone()),
        _ => {
            let ca = new_ca(now)?;
            // The CA being replaced stays trusted while replicas may still serve under it.
            let old = previous_ca.map(first_certificate).unwrap_or_default();
            let bundle = format!("{}{old}", ca.cert_pem);
            (ca, bundle)
        }
    };
    issue(ca, ca_bundle, dns_names, now).map(Some)
}

/// A fresh CA, valid from an hour ago (clock skew) for [`CA_VALIDITY`].
fn new_ca(now: Timestamp) -> Result<Ca, rcgen::Error> {
    let key = KeyPair::generate()?;
    let not_after = at(now, CA_VALIDITY.as_secs() as i64);
    let cert = ca_certificate(&key, now, not_after)?;
    Ok(Ca {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after,
    })
}

/// The CA's certificate for `key`. Rebuilt from the stored key to sign a renewal: the issuer a
/// serving certificate names is the CA's subject and key, the same as the stored certificate's.
fn ca_certificate(
    key: &KeyPair,
    now: Timestamp,
    not_after: Timestamp,
) -> Result<Certificate, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = offset_date_time(at(now, -3600));
    params.not_after = offset_date_time(not_after);
    params.self_signed(key)
}

/// A serving certificate for `dns_names` signed by `ca`, valid from an hour ago for
/// [`VALIDITY`], never beyond the CA.
fn issue(
    ca: Ca,
    ca_bundle: String,
    dns_names: &[String],
    now: Timestamp,
) -> Result<ServingCert, rcgen::Error> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = ca_certificate(&ca_key, now, ca.not_after)?;
    let not_after = at(now, VALIDITY.as_secs() as i64).min(ca.not_after);
    let mut params = CertificateParams::new(dns_names.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        dns_names.first().map_or("mq9-operator", String::as_str),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = offset_date_time(at(now, -3600));
    params.not_after = offset_date_time(not_after);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer, &ca_key)?;
    Ok(ServingCert {
        ca,
        ca_bundle,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after,
        dns_names: dns_names.to_vec(),
    })
}

/// The first certificate of a PEM bundle (the current CA of a stored `ca.crt`).
fn first_certificate(bundle: &str) -> String {
    match bundle.find(PEM_END) {
        Some(end) => format!("{}\n", &bundle[..end + PEM_END.len()]),
        None => String::new(),
    }
}

fn at(now: Timestamp, offset_secs: i64) -> Timestamp {
    Timestamp::from_second(now.as_second() + offset_secs).expect("within years of now")
}

fn offset_date_time(at: Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(at.as_second()).expect("within years of now")
}

/// The Secret holding `cert`: `ca.crt` (the bundle), `tls.crt`, `tls.key` (the layout of
/// `kubernetes.io/tls`), and `ca.key`, the CA's key that renewals sign with.
pub fn secret(name: &str, namespace: &str, cert: &ServingCert) -> Secret {
    let data: BTreeMap<String, ByteString> = [
        ("ca.crt", &cert.ca_bundle),
        ("ca.key", &cert.ca.key_pem),
        ("tls.crt", &cert.cert_pem),
        ("tls.key", &cert.key_pem),
    ]
    .into_iter()
    .map(|(key, pem)| (key.to_owned(), ByteString(pem.clone().into_bytes())))
    .collect();
    let annotations = [
        (NOT_AFTER_ANNOTATION.to_owned(), cert.not_after.to_string()),
        (
            CA_NOT_AFTER_ANNOTATION.to_owned(),
            cert.ca.not_after.to_string(),
        ),
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

/// A key of the Secret, as text.
fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    String::from_utf8(secret.data.as_ref()?.get(key)?.0.clone()).ok()
}

/// Reads a certificate back from its Secret; `None` when anything is missing or malformed.
pub fn from_secret(secret: &Secret) -> Option<ServingCert> {
    let text = |key: &str| secret_text(secret, key);
    let annotations = secret.annotations();
    let time = |key: &str| annotations.get(key)?.parse().ok();
    let ca_bundle = text("ca.crt")?;
    let ca = Ca {
        cert_pem: first_certificate(&ca_bundle),
        key_pem: text("ca.key")?,
        not_after: time(CA_NOT_AFTER_ANNOTATION)?,
    };
    Some(ServingCert {
        ca,
        ca_bundle,
        cert_pem: text("tls.crt")?,
        key_pem: text("tls.key")?,
        not_after: time(NOT_AFTER_ANNOTATION)?,
        dns_names: annotations
            .get(DNS_NAMES_ANNOTATION)?
            .split(',')
            .map(str::to_owned)
            .collect(),
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

/// The certificate in the Secret `name`, renewed (or created) when [`renewed`] says so.
pub async fn ensure(
    client: &Client,
    namespace: &str,
    name: &str,
    dns_names: &[String],
) -> anyhow::Result<ServingCert> {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    let existing = secrets.get_opt(name).await?;
    let current = existing.as_ref().and_then(from_secret);
    let previous_ca = existing.as_ref().and_then(|s| secret_text(s, "ca.crt"));
    let Some(cert) = renewed(
        current.as_ref(),
        previous_ca.as_deref(),
        dns_names,
        Timestamp::now(),
    )?
    else {
        return Ok(current.expect("only an existing certificate is kept"));
    };
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
            tracing::info!(?cert, "renewed the webhook's serving certificate");
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

/// Sets `ca_bundle` as the `caBundle` of every webhook of the MutatingWebhookConfiguration
/// `name`. `Err` when it does not exist (yet: Helm creates webhook configurations last).
pub async fn publish_ca_bundle(client: &Client, name: &str, ca_bundle: &str) -> anyhow::Result<()> {
    let configs = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let mut config = configs.get_opt(name).await?.ok_or_else(|| {
        anyhow::anyhow!("the MutatingWebhookConfiguration {name} does not exist (yet)")
    })?;
    let bundle = ByteString(ca_bundle.as_bytes().to_vec());
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
        tracing::info!("published the webhook's CA bundle");
    }
    Ok(())
}

#[cfg(test)]
#[path = "certs_tests.rs"]
mod tests;
