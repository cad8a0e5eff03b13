//! What wakes a controller, and the caches it reads instead of the API server: the work of the
//! operator grows with the number of objects, not with its square.
//!
//! - One watch per kind feeds one [`Stores`] (Brokers, Broadcasts, Mailboxes, the managed
//!   Secrets): the Mailbox controller runs these watches (it watches all four kinds) and every
//!   controller reads them, so a pass reads no object the operator already watches.
//! - [`changes`] turns a watch into triggers only for the changes a controller acts on (the
//!   hashes below): a status write never re-reconciles unrelated objects. A Broadcast's status
//!   does not wake its namespace's Mailboxes, a Broker's status wakes its Mailboxes only when
//!   `Available` flips, a Mailbox's status wakes the Broadcasts only when `Ready` flips.
//!   Deletions always pass (kube's `predicate_filter` can drop them).
//! - A watch that restarts (re-list after a compaction, a dropped connection) wakes only what
//!   changed while it was away, not every object.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};

use super::conditions;
use crate::crd::{Broadcast, Broker, Mailbox};

/// One watched kind's cache, and its first full list as a future any number of tasks can
/// await at once.
///
/// kube's `Store::wait_until_ready` keeps one waker: of several reconciles waiting for the
/// first list at the same time, only the last to wait is woken, and the others wait forever
/// (found as a Mailbox deletion that never finished when the operator restarted with two
/// Mailboxes to finalize). One shared future waits on kube's side; every reader awaits it.
#[derive(Clone)]
pub struct Cache<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    listed: Shared<BoxFuture<'static, ()>>,
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    fn new(store: Store<K>) -> Cache<K> {
        let waiting = store.clone();
        // A watch that ended (shutdown) before its first list leaves the cache as it is.
        let listed = async move { _ = waiting.wait_until_ready().await }
            .boxed()
            .shared();
        Cache { store, listed }
    }

    /// The cache as kube's controllers read it (no waiting).
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// The object `namespace/name`, once the watch has listed them all (an empty cache before
    /// it would read as "nothing exists").
    async fn get(&self, namespace: &str, name: &str) -> Option<K> {
        self.listed.clone().await;
        let key = ObjectRef::new(name).within(namespace);
        self.store.get(&key).map(|object| (*object).clone())
    }

    /// The objects of `namespace`, once the watch has listed them all.
    async fn in_namespace(&self, namespace: &str) -> Vec<K> {
        self.listed.clone().await;
        let state = self.store.state().into_iter();
        state
            .filter(|o| o.namespace().as_deref() == Some(namespace))
            .map(|o| (*o).clone())
            .collect()
    }
}

/// The operator's caches of the kinds it watches (read side).
#[derive(Clone)]
pub struct Stores {
    pub brokers: Cache<Broker>,
    pub broadcasts: Cache<Broadcast>,
    pub mailboxes: Cache<Mailbox>,
    /// Only the Secrets labelled `mq9.io/managed=true` (the operator's own).
    pub secrets: Cache<Secret>,
}

/// The write side of [`Stores`], handed to the watches that fill them.
pub struct Writers {
    pub brokers: reflector::store::Writer<Broker>,
    pub broadcasts: reflector::store::Writer<Broadcast>,
    pub mailboxes: reflector::store::Writer<Mailbox>,
    pub secrets: reflector::store::Writer<Secret>,
}

impl Stores {
    pub fn new() -> (Stores, Writers) {
        let (brokers, broker_writer) = reflector::store();
        let (broadcasts, broadcast_writer) = reflector::store();
        let (mailboxes, mailbox_writer) = reflector::store();
        let (secrets, secret_writer) = reflector::store();
        let stores = Stores {
            brokers: Cache::new(brokers),
            broadcasts: Cache::new(broadcasts),
            mailboxes: Cache::new(mailboxes),
            secrets: Cache::new(secrets),
        };
        let writers = Writers {
            brokers: broker_writer,
            broadcasts: broadcast_writer,
            mailboxes: mailbox_writer,
            secrets: secret_writer,
        };
        (stores, writers)
    }

    /// The Broker `namespace/name`, once the Broker watch has listed them all.
    pub async fn broker(&self, namespace: &str, name: &str) -> Option<Broker> {
        self.brokers.get(namespace, name).await
    }

    /// A managed Secret `namespace/name`; `None` also for a Secret that is not the operator's.
    pub async fn secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.secrets.get(namespace, name).await
    }

    /// The Broadcasts of `namespace`.
    pub async fn broadcasts_in(&self, namespace: &str) -> Vec<Broadcast> {
        self.broadcasts.in_namespace(namespace).await
    }

    /// The Mailboxes of `namespace`.
    pub async fn mailboxes_in(&self, namespace: &str) -> Vec<Mailbox> {
        self.mailboxes.in_namespace(namespace).await
    }
}

fn hash_of(value: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// What the Mailbox controller acts on in a Mailbox: its spec (generation), its labels
/// (Broadcast membership), its finalizers (kube's finalizer helper waits for its own patch)
/// and its deletion; and why it is not Ready, so that a pass that just found its broker
/// unreachable (a broker starting, not visible in any watch) checks once more at once before
/// waiting for its retry. Not the rest of its status (turning Ready wakes nothing), nor its
/// annotations, which the controller writes itself.
pub fn mailbox_spec(mailbox: &Mailbox) -> u64 {
    let meta = &mailbox.metadata;
    let not_ready = mailbox
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, "Ready"))
        .filter(|c| c.status == "False")
        .map(|c| c.reason.as_str());
    hash_of((
        meta.generation,
        &meta.labels,
        &meta.finalizers,
        meta.deletion_timestamp.is_some(),
        not_ready,
    ))
}

/// What the Broadcast controller counts in a Mailbox: membership (spec, labels), whether it is
/// Ready, whether it is going.
pub fn mailbox_membership(mailbox: &Mailbox) -> u64 {
    let ready = mailbox
        .status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, "Ready"));
    let meta = &mailbox.metadata;
    hash_of((
        meta.generation,
        &meta.labels,
        meta.deletion_timestamp.is_some(),
        ready,
    ))
}

/// What a Mailbox depends on in its Broker: the spec (allowed namespaces, auth, limits),
/// whether it is Available, whether it is going.
pub fn broker_facts(broker: &Broker) -> u64 {
    let available = broker
        .status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, "Available"));
    let meta = &broker.metadata;
    hash_of((
        meta.generation,
        meta.deletion_timestamp.is_some(),
        available,
    ))
}

/// A custom resource's spec and deletion: what others depend on in a Broadcast.
pub fn spec_of<K: Resource>(object: &K) -> u64 {
    let meta = object.meta();
    hash_of((meta.generation, meta.deletion_timestamp.is_some()))
}

/// What the Mailbox controller reads in its Secret: the recorded address and grant, the
/// owner. A Secret the operator just wrote is no news to it (see [`changes`]).
pub fn secret_contents(secret: &Secret) -> u64 {
    let data = secret.data.iter().flatten();
    let data: Vec<(&String, &Vec<u8>)> = data.map(|(k, v)| (k, &v.0)).collect();
    let owners: Vec<&str> = secret
        .owner_references()
        .iter()
        .map(|o| o.uid.as_str())
        .collect();
    hash_of((data, secret.annotations(), owners))
}

/// Whether a controller is woken by an object it sees for the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFirstSight {
    Trigger,
    /// For objects only the operator creates (its Secrets): their creation is its own doing,
    /// and their owners are reconciled anyway when the operator starts.
    Ignore,
}

/// The objects of a watch whose `hash` changed, and every deleted object. A re-list compares
/// with what was seen before it, so a restarted watch wakes only what changed meanwhile.
pub fn changes<K, S>(
    events: S,
    hash: fn(&K) -> u64,
    first_sight: OnFirstSight,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Send + 'static,
    S: Stream<Item = watcher::Result<Event<K>>> + Send + 'static,
{
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut relisted: Option<HashMap<String, u64>> = None;
    let key = |object: &K| {
        let meta = object.meta();
        meta.uid.clone().unwrap_or_else(|| {
            let namespace = meta.namespace.as_deref().unwrap_or_default();
            format!("{namespace}/{}", meta.name.as_deref().unwrap_or_default())
        })
    };
    events.filter_map(move |event| {
        let triggered = match event {
            Err(e) => Some(Err(e)),
            Ok(Event::Delete(object)) => {
                seen.remove(&key(&object));
                Some(Ok(object))
            }
            Ok(Event::Init) => {
                relisted = Some(HashMap::new());
                None
            }
            Ok(Event::InitDone) => {
                seen = relisted.take().unwrap_or_default();
                None
            }
            Ok(Event::Apply(object) | Event::InitApply(object)) => {
                let (key, now) = (key(&object), hash(&object));
                let before = match relisted.as_mut() {
                    Some(next) => {
                        next.insert(key.clone(), now);
                        seen.get(&key).copied()
                    }
                    None => seen.insert(key, now),
                };
                let wake = match before {
                    Some(before) => before != now,
                    None => first_sight == OnFirstSight::Trigger,
                };
                wake.then_some(Ok(object))
            }
        };
        std::future::ready(triggered)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Two passes (two tasks) that wait for the first list at the same time are both woken by
    /// it (kube's own wait wakes only the last to wait; the other would wait forever).
    #[tokio::test]
    async fn every_reader_waiting_for_the_first_list_is_woken() {
        let (stores, mut writers) = Stores::new();
        let mut readers = Vec::new();
        for _ in 0..2 {
            let stores = stores.clone();
            readers.push(tokio::spawn(async move {
                stores.broker("apps", "agents").await
            }));
            // The reader waits (this runtime has one thread: it runs now, until it waits).
            tokio::task::yield_now().await;
        }
        assert!(
            readers.iter().all(|r| !r.is_finished()),
            "nothing listed yet"
        );
        let broker: Broker = serde_json::from_value(serde_json::json!({
            "apiVersion": "mq9.io/v1alpha1", "kind": "Broker",
            "metadata": {"name": "agents", "namespace": "apps"}, "spec": {}}))
        .expect("a Broker");
        for event in [Event::Init, Event::InitApply(broker), Event::InitDone] {
            writers.brokers.apply_watcher_event(&event);
        }
        for reader in readers {
            let read = tokio::time::timeout(Duration::from_secs(5), reader)
                .await
                .expect("every reader is woken by the first list")
                .expect("the reader ran");
            assert!(read.is_some(), "it reads the listed Broker");
        }
    }
}
