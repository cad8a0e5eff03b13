//! The tenant accounts of a Broker with JWT auth: one NATS account per namespace that has
//! Mailboxes on it (security.md §3), and the revocations that end credentials early (§5).
//!
//! A tenant account's *key* is derived from the Broker's signing keys
//! ([`SigningKeys::tenant_account`](crate::auth::SigningKeys::tenant_account)); what changes at
//! run time is its JWT, which carries the revoked user keys. That state lives in the
//! ConfigMap `<broker>-tenants` in the Broker's namespace (owned by the Broker, so the Broker
//! controller is woken by its changes): one key per tenant namespace, each a JSON [`Record`]
//!
//! ```json
//! {"issued_at": 1767000000, "revoked": {"U…": [1767000000, 1767086400]}}
//! ```
//!
//! (`revoked`: user public key → `[revoked at, that user's expiry or 0 = never]`, Unix seconds).
//! Only public keys and times: nothing in it is secret or names an address.
//!
//! Why a ConfigMap: the set of revocations must survive operator restarts, be shared by every
//! reconcile (any Mailbox of the namespace can add one), and be written safely while several
//! reconciles race. Each write carries the ConfigMap's `resourceVersion` and is retried on a
//! conflict (optimistic concurrency), so no revocation is ever lost to a concurrent write.
//!
//! `issued_at` becomes the account JWT's `iat` and grows with every change (never below the
//! clock): nats-server's resolvers prefer the JWT with the larger `iat`. The same record always
//! gives byte for byte the same JWT, so pushing it again changes nothing. Revocations whose
//! credentials have expired anyway are pruned on the next change. Credentials that never expire
//! (Mailboxes without TTL) keep their entry for good: the ConfigMap's 1 MiB holds about ten
//! thousand of them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde::{Deserialize, Serialize};

use super::admin_client::AdminError;
use super::builders;
use super::context::Context;
use super::credentials::BrokerAuth;
use super::error::{Result, StoredError};
use crate::auth::Tenant;
use crate::crd::Broker;

/// How many times a write that lost a race (409) is tried again before the reconcile fails
/// (and is retried as a whole).
const WRITE_ATTEMPTS: usize = 5;

/// One tenant namespace's entry in the ConfigMap (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub issued_at: u64,
    #[serde(default)]
    pub revoked: BTreeMap<String, (u64, u64)>,
}

/// A user key to revoke, and until when its credentials would have been valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation<'a> {
    pub user_key: &'a str,
    pub expires_at: Option<Timestamp>,
}

impl Record {
    /// The record after revoking `revocation` (when given) and pruning the revocations of
    /// expired credentials, at Unix second `now`; `None` when an existing record stays as it
    /// is. A missing record is created (a new tenant), so the result is `Some` then.
    pub fn next(
        current: Option<&Record>,
        revocation: Option<Revocation<'_>>,
        now: u64,
    ) -> Option<Record> {
        let mut next = current.cloned().unwrap_or_default();
        let before = next.revoked.len();
        next.revoked
            .retain(|_, &mut (_, expiry)| expiry == 0 || expiry >= now);
        let mut changed = current.is_none() || next.revoked.len() != before;
        if let Some(revocation) = revocation {
            let expiry = revocation
                .expires_at
                .map_or(0, |t| t.as_second().max(1) as u64);
            let live = expiry == 0 || expiry >= now;
            if live && !next.revoked.contains_key(revocation.user_key) {
                next.revoked
                    .insert(revocation.user_key.to_owned(), (now, expiry));
                changed = true;
            }
        }
        changed.then(|| {
            next.issued_at = now.max(next.issued_at + 1);
            next
        })
    }

    /// What the tenant account JWT says.
    pub fn tenant(&self) -> Tenant {
        Tenant {
            issued_at: self.issued_at,
            revocations: self
                .revoked
                .iter()
                .map(|(key, &(at, _))| (key.clone(), at))
                .collect(),
        }
    }
}

/// Makes sure `namespace` is a tenant of `broker` and, when given, records `revocation`;
/// returns the tenant account's state to push. Conflicting writers are retried. A pass with
/// nothing to record answers from what is known of the ConfigMap
/// ([`KnownBrokers`](super::known::KnownBrokers)) without reading it; any change reads it
/// afresh.
pub async fn record(
    ctx: &Context,
    broker: &Broker,
    namespace: &str,
    revocation: Option<Revocation<'_>>,
) -> Result<Tenant> {
    let now = Timestamp::now().as_second().max(0) as u64;
    if revocation.is_none() {
        let known = ctx.known.tenant(broker, namespace).flatten();
        if let Some(known) = known.filter(|k| Record::next(Some(k), None, now).is_none()) {
            return Ok(known.tenant());
        }
    }
    let api =
        Api::<ConfigMap>::namespaced(ctx.client.clone(), &broker.namespace().unwrap_or_default());
    let name = builders::tenants_config_map_name(broker);
    for _ in 0..WRITE_ATTEMPTS {
        let existing = api.get_opt(&name).await?;
        let current = match &existing {
            Some(map) => entry(map, namespace)?,
            None => None,
        };
        let Some(next) = Record::next(current.as_ref(), revocation, now) else {
            return Ok(current.unwrap_or_default().tenant());
        };
        let text = serde_json::to_string(&next).expect("a record serializes");
        let written = match existing {
            Some(mut map) => {
                map.data
                    .get_or_insert_with(BTreeMap::new)
                    .insert(namespace.to_owned(), text);
                api.replace(&name, &PostParams::default(), &map).await
            }
            None => {
                let map = new_config_map(broker, namespace, text);
                api.create(&PostParams::default(), &map).await
            }
        };
        match written {
            Ok(_) => {
                ctx.known.set_tenant(broker, namespace, &next);
                return Ok(next.tenant());
            }
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoredError::Contended {
        object: format!("ConfigMap {name}"),
        attempts: WRITE_ATTEMPTS,
    }
    .into())
}

/// Every tenant of `broker` and its account state, for pushing them all; what is known of the
/// ConfigMap is replaced by what is read.
pub async fn all(ctx: &Context, broker: &Broker) -> Result<Vec<(String, Tenant)>> {
    let api =
        Api::<ConfigMap>::namespaced(ctx.client.clone(), &broker.namespace().unwrap_or_default());
    let name = builders::tenants_config_map_name(broker);
    let mut records = BTreeMap::new();
    if let Some(map) = api.get_opt(&name).await? {
        for namespace in map.data.iter().flatten().map(|(namespace, _)| namespace) {
            let record = entry(&map, namespace)?.unwrap_or_default();
            records.insert(namespace.clone(), record);
        }
    }
    ctx.known.set_tenants(broker, &records);
    let tenants = records
        .iter()
        .map(|(ns, record)| (ns.clone(), record.tenant()));
    Ok(tenants.collect())
}

/// [`record`]s (and so creates) `namespace`'s tenant state, with `revocation` when given, and
/// [`push`]es the account: the one step before credentials of the namespace are written or
/// after they are revoked. `Ok(Err(_))`: recorded, but nats-server did not take it (yet).
pub async fn publish(
    ctx: &Context,
    broker: &Broker,
    auth: &BrokerAuth,
    namespace: &str,
    revocation: Option<Revocation<'_>>,
) -> Result<Result<(), AdminError>> {
    let tenant = record(ctx, broker, namespace, revocation).await?;
    Ok(push(ctx, broker, auth, namespace, &tenant).await)
}

/// Pushes `namespace`'s tenant account, as `tenant` describes it, to the Broker's nats-server.
pub async fn push(
    ctx: &Context,
    broker: &Broker,
    auth: &BrokerAuth,
    namespace: &str,
    tenant: &Tenant,
) -> Result<(), AdminError> {
    let url = ctx.nats_url(broker);
    let accounts = ctx
        .brokers
        .accounts(&url, || auth.account_push_credentials())
        .await?;
    accounts
        .push(&auth.tenant_account_jwt(namespace, tenant))
        .await
}

/// The record of `namespace` in the ConfigMap, if any; an entry that does not parse is an
/// error (never silently dropped: it holds revocations).
fn entry(map: &ConfigMap, namespace: &str) -> Result<Option<Record>> {
    let Some(text) = map.data.as_ref().and_then(|d| d.get(namespace)) else {
        return Ok(None);
    };
    serde_json::from_str(text).map(Some).map_err(|e| {
        let object = format!("ConfigMap {}", map.name_any());
        StoredError::unparsable(&object, namespace, e).into()
    })
}

fn new_config_map(broker: &Broker, namespace: &str, record: String) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(builders::tenants_config_map_name(broker)),
            namespace: broker.namespace(),
            labels: Some(builders::broker_labels(&broker.name_any())),
            owner_references: Some(vec![builders::owner_reference(broker)]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(namespace.to_owned(), record)])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revoke(key: &str, expires_at: Option<i64>) -> Option<Revocation<'_>> {
        Some(Revocation {
            user_key: key,
            expires_at: expires_at.map(|at| Timestamp::from_second(at).unwrap()),
        })
    }

    #[test]
    fn a_new_tenant_is_recorded_and_then_left_alone() {
        let created = Record::next(None, None, 1000).expect("a new tenant is written");
        assert_eq!(created.issued_at, 1000);
        assert!(created.revoked.is_empty());
        assert_eq!(
            Record::next(Some(&created), None, 2000),
            None,
            "nothing changed"
        );
    }

    #[test]
    fn revocations_are_recorded_once_with_a_growing_issue_time() {
        let start = Record::next(None, None, 1000).unwrap();
        let one = Record::next(Some(&start), revoke("UA", Some(5000)), 1000).unwrap();
        assert_eq!(one.revoked["UA"], (1000, 5000));
        assert_eq!(
            one.issued_at, 1001,
            "same second: still newer than the last JWT"
        );
        assert_eq!(
            Record::next(Some(&one), revoke("UA", Some(5000)), 1200),
            None
        );
        let two = Record::next(Some(&one), revoke("UB", None), 1200).unwrap();
        assert_eq!(two.revoked["UB"], (1200, 0), "0 = never expires");
        assert_eq!(two.issued_at, 1200);
        assert_eq!(
            two.tenant().revocations,
            BTreeMap::from([("UA".to_owned(), 1000), ("UB".to_owned(), 1200)])
        );
        assert_eq!(two.tenant().issued_at, 1200);
    }

    #[test]
    fn expired_credentials_need_no_revocation_and_are_pruned() {
        let start = Record::next(None, None, 1000).unwrap();
        assert_eq!(
            Record::next(Some(&start), revoke("UOLD", Some(900)), 1000),
            None,
            "already expired: nothing to revoke"
        );
        let one = Record::next(Some(&start), revoke("UA", Some(1500)), 1000).unwrap();
        let forever = Record::next(Some(&one), revoke("UF", None), 1001).unwrap();
        let pruned = Record::next(Some(&forever), None, 1501).expect("UA expired");
        assert_eq!(pruned.revoked.keys().collect::<Vec<_>>(), ["UF"]);
        assert!(pruned.issued_at > forever.issued_at);
    }

    #[test]
    fn records_round_trip_in_the_documented_form() {
        let record = Record {
            issued_at: 7,
            revoked: BTreeMap::from([("UA".to_owned(), (5, 0))]),
        };
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(text, r#"{"issued_at":7,"revoked":{"UA":[5,0]}}"#);
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), record);
    }
}
