//! What every controller shares: the Kubernetes client, the watch caches, connections to
//! brokers, the Event recorder, metrics and settings.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::Controller;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::admin_client::BrokerClients;
use super::error::{Error, Result};
use super::known::KnownBrokers;
use super::metrics::OperatorMetrics;
use super::triggers::Stores;

/// Operator settings that controllers read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often a Ready Mailbox is checked against its broker (drift repair).
    pub resync: Duration,
    /// Reach every Broker's NATS at this URL instead of its in-cluster Service (development
    /// outside the cluster, tests).
    pub nats_url_override: Option<String>,
    /// The operator's own namespace: each Broker's NetworkPolicy admits its admin connection.
    pub operator_namespace: String,
    /// How long an `auto` Mailbox may wait for its pod before it is deleted as an orphan.
    pub auto_mailbox_grace: Duration,
    /// The images of a Broker's containers when its spec names none.
    pub images: super::builders::Images,
}

pub struct Context {
    pub client: Client,
    /// The watch caches: what a pass reads instead of the API server.
    pub stores: Stores,
    /// The operator's own latest writes, for reading them back from the caches.
    pub own_writes: OwnWrites,
    pub brokers: BrokerClients,
    /// Each Broker's keys and tenant records, as last read or written.
    pub known: KnownBrokers,
    pub recorder: Recorder,
    pub metrics: Arc<OperatorMetrics>,
    pub settings: Settings,
}

impl Context {
    pub fn new(
        client: Client,
        stores: Stores,
        metrics: Arc<OperatorMetrics>,
        settings: Settings,
    ) -> Context {
        let reporter = Reporter {
            controller: "mq9-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            stores,
            own_writes: OwnWrites::default(),
            brokers: BrokerClients::default(),
            known: KnownBrokers::default(),
            metrics,
            settings,
        }
    }

    /// Where the operator reaches `broker`'s NATS: its in-cluster Service, unless overridden.
    pub fn nats_url(&self, broker: &crate::crd::Broker) -> String {
        self.settings
            .nats_url_override
            .clone()
            .unwrap_or_else(|| super::builders::broker_url(broker))
    }

    /// Publishes an Event about `object`. Failing to record an Event never fails a reconcile.
    /// Notes must never contain a mail address.
    pub async fn event(
        &self,
        object: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, object).await {
            tracing::warn!(error = %e, reason, "could not record an Event");
        }
    }
}

/// An Event a plan asks for, as a value: the controller publishes it about its object once
/// the plan's writes are done. Notes never carry a mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

impl Note {
    pub fn normal(reason: &str, message: impl Into<String>) -> Note {
        let (type_, reason, message) = (EventType::Normal, reason.to_owned(), message.into());
        Note {
            type_,
            reason,
            message,
        }
    }

    pub fn warning(reason: &str, message: impl Into<String>) -> Note {
        let (type_, reason, message) = (EventType::Warning, reason.to_owned(), message.into());
        Note {
            type_,
            reason,
            message,
        }
    }
}

impl Context {
    /// Publishes every note of a pass about `object`, in order.
    pub async fn emit<K: Resource<DynamicType = ()>>(&self, object: &K, notes: Vec<Note>) {
        let reference = object.object_ref(&());
        for note in notes {
            self.event(&reference, note.type_, &note.reason, note.message)
                .await;
        }
    }

    /// Writes `status` as a merge patch of the status subresource, for controllers that are
    /// their object's only status writer: there is no lost update to guard against with a
    /// resourceVersion (the cached object may lag, which a replace would trip on).
    pub async fn patch_status<K>(&self, object: &K, status: &impl serde::Serialize) -> Result<()>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let namespace = object.namespace().unwrap_or_default();
        let api = kube::Api::<K>::namespaced(self.client.clone(), &namespace);
        let patch = kube::api::Patch::Merge(serde_json::json!({ "status": status }));
        let params = kube::api::PatchParams::default();
        api.patch_status(&object.name_any(), &params, &patch)
            .await?;
        Ok(())
    }
}

/// The resourceVersion of the operator's latest write to each object it writes itself (by
/// uid): a watch cache lags behind the operator's own writes, and a pass that decided on the
/// state before its last write would decide again what it already did (a `createdAt` set
/// once, set twice). Instead of reading every object afresh from the API server on every
/// pass, a pass reads it afresh only when the cache has not shown the last write yet.
#[derive(Default)]
pub struct OwnWrites(std::sync::Mutex<HashMap<String, String>>);

impl OwnWrites {
    /// Records a write's answer (the object as written).
    pub fn wrote<K: Resource>(&self, written: &K) {
        let meta = written.meta();
        if let (Some(uid), Some(version)) = (&meta.uid, &meta.resource_version) {
            self.lock().insert(uid.clone(), version.clone());
        }
    }

    /// Whether `cached` shows the operator's latest write to it (or there was none since the
    /// last check). `false`: read it afresh. Either way the record is done with.
    pub fn shown_in<K: Resource>(&self, cached: &K) -> bool {
        let meta = cached.meta();
        let Some(uid) = &meta.uid else { return true };
        match self.lock().remove(uid) {
            Some(written) => meta.resource_version.as_ref() == Some(&written),
            None => true,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How many passes of one controller run at once. Bounded so that a burst of thousands of
/// objects (an operator start, a Broker turning Available) queues instead of opening thousands
/// of requests at once; the same object is never reconciled twice at once anyway.
pub fn bounded(concurrency: u16) -> controller::Config {
    controller::Config::default().concurrency(concurrency)
}

/// How soon a failed reconcile pass is tried again.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(10);

impl Context {
    /// Runs one reconcile pass of `controller`, counting it, its duration and its failure
    /// reason in `/metrics`.
    pub async fn measured(
        &self,
        controller: &'static str,
        pass: impl Future<Output = Result<Action>>,
    ) -> Result<Action> {
        let started = Instant::now();
        let result = pass.await;
        let failure = result.as_ref().err().map(Error::reason);
        self.metrics
            .reconciled(controller, started.elapsed(), failure);
        result
    }
}

/// Every controller's error policy: log the failure (kind, name, reason; never an address:
/// no error message carries one) and try again soon.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    _ctx: Arc<Context>,
) -> Action {
    let kind = K::kind(&());
    tracing::warn!(%kind, name = object.name_any(), reason = error.reason(), %error, "reconcile failed");
    Action::requeue(RETRY_AFTER_ERROR)
}

/// Runs a controller until `shutdown` completes: every pass through `reconcile`, every failure
/// through [`error_policy`].
pub async fn drive<K, R, F>(
    controller: Controller<K>,
    reconcile: R,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    R: FnMut(Arc<K>, Arc<Context>) -> F,
    F: Future<Output = Result<Action>> + Send + 'static,
{
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// The objects in a controller's `store` that `wanted` selects: whom a change of a watched
/// object concerns.
pub fn selected<K>(store: &Store<K>, wanted: impl Fn(&K) -> bool) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let state = store.state().into_iter();
    state
        .filter(|o| wanted(o))
        .map(|o| ObjectRef::from_obj(&*o))
        .collect()
}
