//! What a broker's HTTP endpoints report: `/metrics`, `/healthz` (the process is sound) and
//! `/readyz` (it can serve now).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use super::Metrics;

/// What `/metrics`, `/healthz` and `/readyz` show.
#[derive(Default)]
pub struct Health {
    pub(super) metrics: Metrics,
    pub(super) client: OnceLock<async_nats::Client>,
    pub(super) engine_running: AtomicBool,
    /// Whether the request subscriptions are in place on nats-server: until then a request
    /// would be answered "no responders", so the pod must not be counted ready.
    pub(super) subscribed: AtomicBool,
    /// A replicated broker: why this pod's copies of the logs are not current (see
    /// [`super::replica_check`]); `None` when they are, or on a single node.
    pub(super) replicas_behind: Mutex<Option<String>>,
    /// Why the engine can no longer serve (a failed write or sync, a panic): fails `/healthz`
    /// for good, so that Kubernetes restarts the pod. The first reason wins.
    failure: OnceLock<String>,
}

impl Health {
    pub(super) fn fail(&self, reason: &str) {
        if self.failure.set(reason.to_owned()).is_ok() {
            tracing::error!(reason, "the broker failed: /healthz now answers 503");
        }
    }
}

impl crate::http::Probe for Health {
    fn metrics(&self) -> String {
        if let Some(client) = self.client.get() {
            self.metrics.nats_client(&client.statistics());
        }
        self.metrics.encode()
    }

    fn not_live_reason(&self) -> Option<String> {
        self.failure.get().cloned()
    }

    fn not_ready_reason(&self) -> Option<String> {
        if let Some(failure) = self.failure.get() {
            return Some(failure.clone());
        }
        match self.client.get() {
            None => return Some("not connected to NATS yet".into()),
            Some(client)
                if client.connection_state() != async_nats::connection::State::Connected =>
            {
                return Some(format!("NATS connection is {}", client.connection_state()))
            }
            Some(_) => {}
        }
        if !self.engine_running.load(Ordering::Acquire) {
            return Some("mailbox store is not open".into());
        }
        if !self.subscribed.load(Ordering::Acquire) {
            return Some("not subscribed to requests yet".into());
        }
        self.replicas_behind.lock().ok()?.clone()
    }
}

/// A broker that is not the active pod's: always ready (its pod's nats-server serves clients),
/// nothing to measure.
pub(super) struct Standby;

impl crate::http::Probe for Standby {
    fn metrics(&self) -> String {
        "# this broker stands by: the active pod's broker serves mailboxes\n# EOF\n".into()
    }

    fn not_ready_reason(&self) -> Option<String> {
        None
    }
}
