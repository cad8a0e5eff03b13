use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{ServerName, UnixTime};

use super::*;

fn names() -> Vec<String> {
    vec![
        "mq9-operator-webhook.mq9-system.svc".to_owned(),
        "localhost".to_owned(),
    ]
}

fn days(n: i64) -> i64 {
    n * 24 * 3600
}

/// A certificate from nothing (the first start).
fn first(now: Timestamp) -> ServingCert {
    renewed(None, None, &names(), now)
        .unwrap()
        .expect("created")
}

/// Whether a client trusting only `bundle` accepts `cert` for `localhost` at `at`, as the API
/// server would.
fn verifies(bundle: &str, cert: &ServingCert, at: Timestamp) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(bundle.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
    let leaf = CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap();
    let at = UnixTime::since_unix_epoch(Duration::from_secs(at.as_second() as u64));
    let name = ServerName::try_from("localhost").unwrap();
    verifier
        .verify_server_cert(&leaf, &[], &name, &[], at)
        .is_ok()
}

#[test]
fn generated_certificate_round_trips_through_its_secret_and_serves() {
    let now = Timestamp::now();
    let cert = first(now);
    assert!(cert.ca_bundle.contains("BEGIN CERTIFICATE") && cert.key_pem.contains("PRIVATE KEY"));
    assert_eq!(cert.ca_bundle, cert.ca.cert_pem, "one CA to trust");
    let stored = secret("webhook-tls", "mq9-system", &cert);
    assert_eq!(stored.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(from_secret(&stored).as_ref(), Some(&cert));
    tls_config(&cert).expect("rustls accepts the certificate and key");
    assert!(verifies(&cert.ca_bundle, &cert, now));
    assert_eq!(renewed(Some(&cert), None, &names(), now).unwrap(), None);
}

#[test]
fn renewals_keep_the_ca_so_the_previous_certificate_still_verifies() {
    let now = Timestamp::now();
    let old = first(now);
    // Expiring soon, or for other names (a replica started with other flags): a new serving
    // certificate, the same CA, the same bundle.
    let late = at(old.not_after, -days(10));
    let expiring = renewed(Some(&old), Some(&old.ca_bundle), &names(), late).unwrap();
    let other_names = vec!["other.svc".to_owned(), "localhost".to_owned()];
    let renamed = renewed(Some(&old), Some(&old.ca_bundle), &other_names, now).unwrap();
    for (renewal, when) in [(expiring, late), (renamed, now)] {
        let new = renewal.expect("renewed");
        assert_ne!(new.cert_pem, old.cert_pem);
        assert_eq!((&new.ca, &new.ca_bundle), (&old.ca, &old.ca_bundle));
        // Both replicas, the one that renewed and the one not yet following, verify.
        assert!(verifies(&new.ca_bundle, &new, when));
        assert!(verifies(&new.ca_bundle, &old, when));
    }
}

#[test]
fn a_new_ca_is_published_together_with_the_one_it_replaces() {
    let start = Timestamp::now();
    let first = first(start);
    // A serving renewal when the CA has a year and 40 days left: still under the first CA.
    let t1 = at(first.ca.not_after, -(VALIDITY.as_secs() as i64) - days(40));
    let serving = renewed(Some(&first), Some(&first.ca_bundle), &names(), t1)
        .unwrap()
        .expect("the first serving certificate expired");
    assert_eq!(serving.ca, first.ca);
    assert!(
        serving.not_after <= first.ca.not_after,
        "never beyond its CA"
    );
    // 60 days later less than a year of CA is left: a new CA, both in the bundle.
    let t2 = at(t1, days(60));
    let new = renewed(Some(&serving), Some(&serving.ca_bundle), &names(), t2)
        .unwrap()
        .expect("the CA is renewed");
    assert_ne!(new.ca, serving.ca);
    assert_eq!(
        new.ca_bundle,
        format!("{}{}", new.ca.cert_pem, first.ca.cert_pem)
    );
    assert!(verifies(&new.ca_bundle, &new, t2));
    assert!(
        verifies(&new.ca_bundle, &serving, t2),
        "the old CA is still trusted"
    );
    assert_eq!(from_secret(&secret("s", "ns", &new)).as_ref(), Some(&new));
}

#[test]
fn a_secret_without_the_ca_key_keeps_its_ca_trusted_while_a_new_one_takes_over() {
    // As written by an operator that did not keep the CA's key: unusable for renewals.
    let now = Timestamp::now();
    let old = first(now);
    let mut stored = secret("s", "ns", &old);
    stored.data.as_mut().unwrap().remove("ca.key");
    assert_eq!(from_secret(&stored), None);
    let previous = secret_text(&stored, "ca.crt");
    let new = renewed(None, previous.as_deref(), &names(), now)
        .unwrap()
        .expect("a new CA");
    assert_ne!(new.ca, old.ca);
    assert!(verifies(&new.ca_bundle, &new, now));
    assert!(verifies(&new.ca_bundle, &old, now));
}
