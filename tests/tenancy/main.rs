//! Tenants are namespaces (security.md §1–§3, §5), end to end: the real operator binary against
//! the fake API server, a real nats-server configured from the operator's ConfigMap (its full
//! account resolver taking the tenant accounts the operator pushes at run time) and the real
//! broker with the broker credentials. Each test attacks with one agent's credentials, through
//! a plain async-nats client with its default inbox prefix, as the SDKs do.

#[path = "../support/mod.rs"]
mod support;

mod isolation;
mod revocation;

use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{FutureExt, StreamExt};
use kube::api::{Patch, PatchParams};
use serde_json::{json, Value};
use support::apiserver::FakeApiServer;
use support::cluster::*;
use support::data_plane::DataPlane;
use support::requests::call;

/// The Broker's namespace: also a tenant (its agents are not in the broker account).
const TEAM_A: &str = "team-a";
const TEAM_B: &str = "team-b";

/// A Broker `agents` in `team-a` with its data plane, run by the operator.
struct Tenancy {
    api: FakeApiServer,
    operator: Operator,
    data_plane: DataPlane,
    url: String,
}

impl Tenancy {
    async fn start() -> Tenancy {
        let api = FakeApiServer::start().await;
        Tenancy::run(api, json!({"allowedNamespaces": [TEAM_B]})).await
    }

    /// Starts the operator on `api` (which may hold objects already), creates the Broker
    /// `agents` with `spec` and starts its data plane.
    async fn run(api: FakeApiServer, spec: Value) -> Tenancy {
        let port = support::free_port().port();
        let url = format!("nats://127.0.0.1:{port}");
        let operator = Operator::start(&api, &url, 2);
        let broker = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Broker",
            "metadata": {"name": "agents", "namespace": TEAM_A}, "spec": spec});
        api.create(BROKERS, broker);
        let data_plane = DataPlane::start(&api, &operator, TEAM_A, "agents", port).await;
        broker_pods_ready(&api, TEAM_A, "agents", 1).await;
        Tenancy {
            api,
            operator,
            data_plane,
            url,
        }
    }

    /// Creates a Mailbox with an explicit address and waits until its credentials are written
    /// and it exists on the broker; returns its `user.creds`.
    async fn mailbox(&self, namespace: &str, name: &str, address: &str, send_to: Value) -> String {
        let mailbox = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Mailbox",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"brokerRef": {"name": "agents", "namespace": TEAM_A}, "address": address,
                     "sendTo": send_to, "ttl": "1h"}});
        self.api.create(MAILBOXES, mailbox);
        let what = self
            .operator
            .waiting_for(format!("Mailbox {namespace}/{name} Created"));
        self.api
            .wait_for(&what, |api| {
                let mailbox = api.get(MAILBOXES, namespace, name)?;
                condition(&mailbox, "Ready").filter(|c| c["reason"] == "Created")
            })
            .await;
        self.creds(namespace, name)
            .expect("a Ready Mailbox has credentials")
    }

    fn creds(&self, namespace: &str, name: &str) -> Option<String> {
        let secret = self.api.get(SECRETS, namespace, &format!("{name}-mq9"))?;
        secret_text(&secret, "user.creds")
    }

    async fn connect(&self, creds: &str) -> Result<async_nats::Client, String> {
        let options = async_nats::ConnectOptions::with_credentials(creds).unwrap();
        options.connect(&self.url).await.map_err(|e| e.to_string())
    }

    async fn agent(&self, creds: &str) -> async_nats::Client {
        self.connect(creds).await.expect("the credentials log in")
    }
}

/// A request that must be answered without a protocol error.
async fn ok(client: &async_nats::Client, subject: &str, body: &str) -> Value {
    let reply = call(client, subject, body)
        .await
        .unwrap_or_else(|e| panic!("{subject}: {e}"));
    assert_eq!(reply["error"], "", "{subject}: {reply}");
    reply
}

/// Everything a subscription has already received, without waiting.
fn drain(subscription: &mut async_nats::Subscriber) -> Vec<async_nats::Message> {
    std::iter::from_fn(|| subscription.next().now_or_never().flatten()).collect()
}
