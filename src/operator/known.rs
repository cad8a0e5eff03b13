//! What the operator last read or wrote of each Broker's own state objects (with JWT auth):
//! the auth Secret's keys and the tenant records of the `<broker>-tenants` ConfigMap. A
//! Mailbox pass needs both; reading them from the API server on every pass and every resync
//! would cost two requests per Mailbox per resync. They change only by the operator's own
//! writes, which update this, or by hand.
//!
//! Who fills it: the Broker controller, which reads both objects on each of its passes (at
//! least once a minute, and whenever the ConfigMap changes: it owns it), so a hand edit is
//! seen within a Broker pass; and a Mailbox pass that wrote a tenant record. Until a Broker's
//! first pass, Mailbox passes read the objects themselves. A change a Mailbox pass makes (a
//! revocation, a new tenant, pruning) always reads the ConfigMap afresh and writes with its
//! `resourceVersion` ([`tenants::record`](super::tenants::record)): nothing known here is
//! ever written back unread. Of two records of a namespace the one with the larger
//! `issued_at` is kept (it grows with every change), so a Broker pass's read that raced a
//! Mailbox pass's write never brings back an older account (one without a revocation).
//! Entries are per Broker *uid*: a Broker deleted and created again under the same name never
//! sees its predecessor's keys.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use kube::ResourceExt;

use super::credentials::BrokerAuth;
use super::tenants::Record;
use crate::crd::Broker;

/// See the module documentation.
#[derive(Default)]
pub struct KnownBrokers {
    by_uid: Mutex<HashMap<String, Known>>,
}

#[derive(Default)]
struct Known {
    auth: Option<BrokerAuth>,
    /// `None`: the ConfigMap was not read yet. `Some`: every tenant namespace's record.
    tenants: Option<BTreeMap<String, Record>>,
}

impl KnownBrokers {
    /// The Broker's auth, if known.
    pub fn auth(&self, broker: &Broker) -> Option<BrokerAuth> {
        self.with(broker, |known| known.auth.clone())
    }

    /// Records the Broker's auth as just read or written.
    pub fn set_auth(&self, broker: &Broker, auth: &BrokerAuth) {
        self.with(broker, |known| known.auth = Some(auth.clone()));
    }

    /// The record of `namespace`: `Some(None)` when the ConfigMap is known to have none,
    /// `None` when nothing is known.
    pub fn tenant(&self, broker: &Broker, namespace: &str) -> Option<Option<Record>> {
        self.with(broker, |known| {
            let tenants = known.tenants.as_ref()?;
            Some(tenants.get(namespace).cloned())
        })
    }

    /// Records one namespace's record as just written (only once the whole ConfigMap is known).
    pub fn set_tenant(&self, broker: &Broker, namespace: &str, record: &Record) {
        self.with(broker, |known| {
            if let Some(tenants) = known.tenants.as_mut() {
                keep_newer(tenants, namespace, record);
            }
        });
    }

    /// Records the whole ConfigMap as just read (empty when it does not exist): namespaces it
    /// lacks are forgotten (a hand edit), those it has keep the newer record.
    pub fn set_tenants(&self, broker: &Broker, records: &BTreeMap<String, Record>) {
        self.with(broker, |known| {
            let before = known.tenants.take().unwrap_or_default();
            let mut tenants = BTreeMap::new();
            for (namespace, record) in records {
                tenants.insert(namespace.clone(), record.clone());
                if let Some(known) = before.get(namespace) {
                    keep_newer(&mut tenants, namespace, known);
                }
            }
            known.tenants = Some(tenants);
        });
    }

    /// Forgets every Broker whose uid is not in `live` (deleted ones).
    pub fn retain<'a>(&self, live: impl IntoIterator<Item = &'a str>) {
        let live: Vec<&str> = live.into_iter().collect();
        self.lock().retain(|uid, _| live.contains(&uid.as_str()));
    }

    fn with<T>(&self, broker: &Broker, f: impl FnOnce(&mut Known) -> T) -> T {
        let uid = broker.uid().unwrap_or_default();
        f(self.lock().entry(uid).or_default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.by_uid
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Puts `record` for `namespace` unless a newer one (larger `issued_at`) is there.
fn keep_newer(tenants: &mut BTreeMap<String, Record>, namespace: &str, record: &Record) {
    let newer = |known: &Record| known.issued_at > record.issued_at;
    if !tenants.get(namespace).is_some_and(newer) {
        tenants.insert(namespace.to_owned(), record.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(uid: &str) -> Broker {
        let mut broker = Broker::new("agents", serde_json::from_str("{}").unwrap());
        broker.metadata.uid = Some(uid.into());
        broker
    }

    fn record(issued_at: u64) -> Record {
        Record {
            issued_at,
            ..Record::default()
        }
    }

    #[test]
    fn tenants_are_known_only_once_the_config_map_was_read() {
        let known = KnownBrokers::default();
        let b = broker("u1");
        known.set_tenant(&b, "apps", &record(5));
        assert_eq!(
            known.tenant(&b, "apps"),
            None,
            "a write alone is not the whole map"
        );
        known.set_tenants(&b, &BTreeMap::new());
        assert_eq!(known.tenant(&b, "apps"), Some(None), "read: no record");
        known.set_tenant(&b, "apps", &record(5));
        assert_eq!(known.tenant(&b, "apps"), Some(Some(record(5))));
    }

    /// A Broker pass's read that raced a Mailbox pass's write never brings back the older
    /// record (one without the revocation just written); a namespace the read lacks (deleted
    /// by hand) is forgotten.
    #[test]
    fn the_newer_record_wins_and_a_missing_one_is_forgotten() {
        let known = KnownBrokers::default();
        let b = broker("u1");
        known.set_tenants(&b, &BTreeMap::from([("apps".into(), record(5))]));
        known.set_tenant(&b, "apps", &record(7));
        known.set_tenants(&b, &BTreeMap::from([("apps".into(), record(5))]));
        assert_eq!(known.tenant(&b, "apps"), Some(Some(record(7))));
        known.set_tenant(&b, "apps", &record(6));
        assert_eq!(known.tenant(&b, "apps"), Some(Some(record(7))));
        known.set_tenants(&b, &BTreeMap::new());
        assert_eq!(known.tenant(&b, "apps"), Some(None));
    }

    #[test]
    fn a_broker_of_the_same_name_with_another_uid_knows_nothing() {
        let known = KnownBrokers::default();
        known.set_tenants(&broker("u1"), &BTreeMap::from([("apps".into(), record(5))]));
        assert_eq!(known.tenant(&broker("u2"), "apps"), None);
        known.retain(["u2"]);
        assert_eq!(
            known.tenant(&broker("u1"), "apps"),
            None,
            "forgotten when gone"
        );
    }
}
