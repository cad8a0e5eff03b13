//! The operator's Prometheus metrics: reconciles, failures by reason, durations, mailboxes by
//! condition reason, expiries.

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    controller: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    reason: String,
}

type Durations = Family<ControllerLabels, Histogram, fn() -> Histogram>;

pub struct OperatorMetrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    durations: Durations,
    mailboxes: Family<ConditionLabels, Gauge<i64, AtomicI64>>,
    expiries: Counter,
    /// The Ready reason of every Mailbox seen, by uid, for the `mailboxes` gauge.
    reasons: Mutex<HashMap<String, String>>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mq9_operator");
        let reconciles = Family::default();
        let failures = Family::default();
        let durations = Durations::new_with_constructor(duration_histogram as fn() -> Histogram);
        let mailboxes = Family::default();
        let expiries = Counter::default();
        registry.register(
            "reconciles",
            "Reconcile passes, by controller",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Failed reconcile passes, by controller and reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconcile passes",
            durations.clone(),
        );
        registry.register(
            "mailboxes",
            "Mailboxes by the reason of their Ready condition",
            mailboxes.clone(),
        );
        registry.register(
            "mailbox_expiries",
            "Mailboxes that reached their TTL",
            expiries.clone(),
        );
        OperatorMetrics {
            registry,
            reconciles,
            failures,
            durations,
            mailboxes,
            expiries,
            reasons: Mutex::default(),
        }
    }
}

impl OperatorMetrics {
    pub fn reconciled(
        &self,
        controller: &'static str,
        took: Duration,
        failure: Option<&'static str>,
    ) {
        self.reconciles
            .get_or_create(&ControllerLabels { controller })
            .inc();
        self.durations
            .get_or_create(&ControllerLabels { controller })
            .observe(took.as_secs_f64());
        if let Some(reason) = failure {
            self.failures
                .get_or_create(&FailureLabels { controller, reason })
                .inc();
        }
    }

    /// Records a Mailbox's current Ready reason (`None` once it is gone).
    pub fn mailbox_reason(&self, uid: &str, reason: Option<&str>) {
        let mut reasons = self.reasons.lock().expect("metrics lock");
        match reason {
            Some(reason) => reasons.insert(uid.to_owned(), reason.to_owned()),
            None => reasons.remove(uid),
        };
        self.mailboxes.clear();
        for reason in reasons.values() {
            self.mailboxes
                .get_or_create(&ConditionLabels {
                    reason: reason.clone(),
                })
                .inc();
        }
    }

    pub fn expired(&self) {
        self.expiries.inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
