//! A whole mq9 installation for the operator's end-to-end tests: the fake Kubernetes API server
//! (see [`super::apiserver`]), a real nats-server and `mq9 broker` (the Broker's data plane, as
//! its pod would run it), and the real `mq9 operator` binary as a child process, pointed at both
//! (`--api-server`, `--nats-url-override`). The tests play the parts of Kubernetes that the fake
//! does not run: the StatefulSet controller (`broker_pods_ready`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use serde_json::{json, Value};
use tempfile::TempDir;

use super::apiserver::FakeApiServer;
use super::{free_port, Env};

pub const BROKERS: &str = "mq9.io/v1alpha1/brokers";
pub const MAILBOXES: &str = "mq9.io/v1alpha1/mailboxes";
pub const BROADCASTS: &str = "mq9.io/v1alpha1/broadcasts";
pub const SECRETS: &str = "v1/secrets";
pub const CONFIG_MAPS: &str = "v1/configmaps";
pub const STATEFULSETS: &str = "apps/v1/statefulsets";
pub const EVENTS: &str = "events.k8s.io/v1/events";
pub const NS: &str = "apps";

/// The `mq9 operator` child process; killed when dropped.
pub struct Operator {
    child: Child,
    pub http_addr: SocketAddr,
    pub log: PathBuf,
    _dir: TempDir,
}

impl Operator {
    /// Starts the operator against `api`, reaching every Broker's NATS at `nats_url`, checking
    /// Ready Mailboxes against the broker every `resync` seconds.
    pub fn start(api: &FakeApiServer, nats_url: &str, resync: u64) -> Operator {
        Operator::start_with(api, nats_url, resync, &[])
    }

    /// As [`Operator::start`], with more `mq9 operator` flags (`--identity` defaults to
    /// `test-operator`).
    pub fn start_with(
        api: &FakeApiServer,
        nats_url: &str,
        resync: u64,
        extra: &[&str],
    ) -> Operator {
        let dir = TempDir::new().unwrap();
        let log = dir.path().join("operator.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let http_addr = free_port();
        let identity: &[&str] = match extra.contains(&"--identity") {
            true => &[],
            false => &["--identity", "test-operator"],
        };
        let child = Command::new(env!("CARGO_BIN_EXE_mq9"))
            .args([
                "operator",
                "--api-server",
                &api.url(),
                "--nats-url-override",
                nats_url,
            ])
            .args([
                "--http-addr",
                &http_addr.to_string(),
                "--namespace",
                "mq9-system",
            ])
            .args(["--resync-interval", &resync.to_string()])
            .args(identity)
            .args(extra)
            .env("MQ9_LOG", "mq9=debug,info")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("mq9 binary starts");
        Operator {
            child,
            http_addr,
            log,
            _dir: dir,
        }
    }

    /// The operator's process id (for its memory use).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many reconcile passes `controller` (`broker`, `mailbox`, `broadcast`) has made, from
    /// the operator's `/metrics`.
    pub async fn passes(&self, controller: &str) -> f64 {
        let (_, metrics) = super::http_get(self.http_addr, "/metrics").await;
        let name = format!("mq9_operator_reconciles_total{{controller=\"{controller}\"}}");
        super::metric_value(&metrics, &name).unwrap_or_default()
    }

    /// A description of what a test waits for that, when a wait times out and prints it,
    /// ends with the operator's log as it is then.
    pub fn waiting_for(&self, what: impl Into<String>) -> Waiting<'_> {
        Waiting {
            what: what.into(),
            operator: self,
        }
    }
}

/// See [`Operator::waiting_for`].
pub struct Waiting<'a> {
    what: String,
    operator: &'a Operator,
}

impl std::fmt::Display for Waiting<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}; operator log:\n{}",
            self.what,
            self.operator.log_text()
        )
    }
}

impl Operator {
    /// Kills the operator process: nothing reacts to what the test does next until a new
    /// operator is started (so several changes land as one step, as a garbage collector's do).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Fake API server + nats-server and broker + operator.
pub struct Cluster {
    pub api: FakeApiServer,
    pub env: Env,
    pub operator: Operator,
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(&[]).await
    }

    /// As [`Cluster::start`], with more `mq9 operator` flags.
    pub async fn start_with(operator_flags: &[&str]) -> Cluster {
        let api = FakeApiServer::start().await;
        let env = Env::start().await;
        let operator = Operator::start_with(&api, env.nats.url(), 2, operator_flags);
        Cluster { api, env, operator }
    }

    /// Creates a Broker without auth (the data plane here has none) and plays the StatefulSet
    /// controller until the Broker is Available.
    pub async fn ready_broker(&self, name: &str) {
        let broker = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Broker",
            "metadata": {"name": name, "namespace": NS}, "spec": {"auth": {"mode": "none"}}});
        self.api.create(BROKERS, broker);
        // The operator's log goes with a timeout here (broker_pods_ready has none to show).
        let what = self.operator.waiting_for("the Broker's StatefulSet");
        self.api
            .wait_for(&what, |api| api.get(STATEFULSETS, NS, name))
            .await;
        broker_pods_ready(&self.api, NS, name, 1).await;
        self.wait_condition(BROKERS, name, "Available", "True")
            .await;
    }

    /// Creates a Mailbox from `spec` (brokerRef defaults to `agents`).
    pub fn create_mailbox(&self, name: &str, labels: Value, mut spec: Value) {
        if spec.get("brokerRef").is_none() {
            spec["brokerRef"] = json!({"name": "agents"});
        }
        let mailbox = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Mailbox",
            "metadata": {"name": name, "namespace": NS, "labels": labels}, "spec": spec});
        self.api.create(MAILBOXES, mailbox);
    }

    /// Waits until the object's condition `type_` has `status`; returns the object.
    pub async fn wait_condition(
        &self,
        resource: &str,
        name: &str,
        type_: &str,
        status: &str,
    ) -> Value {
        self.wait_condition_field(resource, NS, name, type_, ("status", status))
            .await
    }

    /// Waits until a Mailbox's Ready condition has `reason`; returns the Mailbox.
    pub async fn wait_reason(&self, name: &str, reason: &str) -> Value {
        self.wait_reason_in(MAILBOXES, NS, name, reason).await
    }

    /// Waits until the Ready condition of `resource` `namespace/name` has `reason`.
    pub async fn wait_reason_in(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        reason: &str,
    ) -> Value {
        self.wait_condition_field(resource, namespace, name, "Ready", ("reason", reason))
            .await
    }

    /// Waits until the object's condition `type_` has `field` = `value`; returns the object.
    async fn wait_condition_field(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        type_: &str,
        (field, value): (&str, &str),
    ) -> Value {
        let what = self.operator.waiting_for(format!(
            "{resource} {namespace}/{name}: {type_} {field}={value}"
        ));
        self.api
            .wait_for(&what, |api| {
                let object = api.get(resource, namespace, name)?;
                condition(&object, type_).filter(|c| c[field] == value)?;
                Some(object)
            })
            .await
    }

    /// Waits until the object is gone from the API server.
    pub async fn wait_gone(&self, resource: &str, name: &str) {
        let what = self
            .operator
            .waiting_for(format!("{resource} {name} to be gone"));
        self.api
            .wait_for(&what, |api| {
                api.get(resource, NS, name).is_none().then_some(())
            })
            .await;
    }

    /// The address recorded in the Mailbox's Secret `secret`.
    pub fn address(&self, secret: &str) -> String {
        let secret = self
            .api
            .get(SECRETS, NS, secret)
            .expect("the Secret exists");
        secret_text(&secret, "mail_address").expect("the Secret has mail_address")
    }

    /// `$mq9.ADMIN.MAILBOX.INFO` for `address`.
    pub async fn info(&self, address: &str) -> Value {
        self.env
            .request(
                "$mq9.ADMIN.MAILBOX.INFO",
                &json!({"name": address}).to_string(),
            )
            .await
    }

    /// Reasons of the Events recorded about the object `name`.
    pub fn event_reasons(&self, name: &str) -> Vec<String> {
        self.api
            .list(EVENTS, None)
            .iter()
            .filter(|e| e["regarding"]["name"] == name)
            .filter_map(|e| e["reason"].as_str().map(str::to_owned))
            .collect()
    }

    /// Fails when `address` appears in any status, Event or operator log line.
    pub fn assert_address_never_shown(&self, address: &str) {
        for resource in [BROKERS, MAILBOXES, BROADCASTS] {
            for object in self.api.list(resource, None) {
                assert!(
                    !object["status"].to_string().contains(address),
                    "address in the status of {}",
                    object["metadata"]["name"]
                );
            }
        }
        for event in self.api.list(EVENTS, None) {
            assert!(
                !event.to_string().contains(address),
                "address in an Event: {event}"
            );
        }
        assert!(
            !self.operator.log_text().contains(address),
            "address in the operator's log"
        );
    }
}

/// The condition `type_` of an object's status.
pub fn condition(object: &Value, type_: &str) -> Option<Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

/// A Secret's `data[key]`, decoded.
pub fn secret_text(secret: &Value, key: &str) -> Option<String> {
    let encoded = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Plays the StatefulSet controller: waits for the Broker's StatefulSet and reports `ready`
/// pods ready and updated.
pub async fn broker_pods_ready(api: &FakeApiServer, namespace: &str, name: &str, ready: i64) {
    api.wait_for("the Broker's StatefulSet", |api| {
        api.get(STATEFULSETS, namespace, name)
    })
    .await;
    let status = json!({"replicas": ready, "readyReplicas": ready, "updatedReplicas": ready, "availableReplicas": ready});
    api.patch_status(STATEFULSETS, namespace, name, status);
}
