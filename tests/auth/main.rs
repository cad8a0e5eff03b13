//! NATS JWT authentication against a real nats-server 2.x in operator mode (and, where the
//! mq9 protocol is involved, the real `mq9 broker` binary logged in with broker
//! credentials): minted credentials connect, get exactly the permissions `mq9::auth` gives
//! them, and stop working at their expiry. No mocks.
#[path = "../support/mod.rs"]
mod support;

mod expiry;
mod permissions;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::{ClientError, ConnectErrorKind, Event, ServerError};
use futures::StreamExt;
use mq9::auth::{
    broker_permissions, mailbox_permissions, mint_user, nats_auth_config, operator_permissions,
    Credentials, Permissions, SigningKeys, UserClaims,
};
use mq9::natsd::{NatsServer, NatsServerOptions};
use serde_json::{json, Value};
use support::{now_secs, wait_past_second, Broker, DEADLINE};
use tempfile::TempDir;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

fn user(permissions: &Permissions, expires_at: Option<u64>) -> UserClaims<'_> {
    UserClaims {
        name: "test",
        permissions,
        tags: &[],
        expires_at,
    }
}

/// A nats-server in operator mode, trusting one Broker's freshly generated keys.
struct AuthNats {
    server: NatsServer,
    keys: SigningKeys,
    dir: TempDir,
}

impl AuthNats {
    fn start() -> AuthNats {
        AuthNats::start_with(SigningKeys::generate(), None)
    }

    /// With `broker_users_revoked_at`: every user of the broker account issued at or before
    /// that second is revoked.
    fn start_with(keys: SigningKeys, broker_users_revoked_at: Option<u64>) -> AuthNats {
        let dir = TempDir::new().unwrap();
        let mut options = NatsServerOptions::new(dir.path().join("nats"));
        let resolver_dir = dir.path().join("accounts").display().to_string();
        options.extra_config =
            nats_auth_config(&keys, &resolver_dir, broker_users_revoked_at, false);
        let server = NatsServer::start(&options).expect("nats-server starts in operator mode");
        AuthNats { server, keys, dir }
    }

    fn mint(&self, permissions: &Permissions, expires_at: Option<u64>) -> Credentials {
        mint_user(self.keys.account(), &user(permissions, expires_at))
    }

    /// Writes the `.creds` file into the temp dir, as the operator's Secret mount would.
    fn creds_path(&self, credentials: &Credentials) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("{}.creds", credentials.public_key));
        std::fs::write(&path, &credentials.creds_file_text).unwrap();
        path
    }

    /// Connects with a creds file, recording the connection's events.
    async fn connect(&self, credentials: &Credentials) -> Result<Agent, async_nats::ConnectError> {
        let (events_tx, events) = unbounded_channel();
        let client =
            async_nats::ConnectOptions::with_credentials_file(self.creds_path(credentials))
                .await
                .expect("the creds file parses")
                .event_callback(move |event| {
                    let events_tx = events_tx.clone();
                    async move {
                        let _ = events_tx.send(event);
                    }
                })
                .connect(self.server.url())
                .await?;
        Ok(Agent { client, events })
    }

    /// Connects with credentials nats-server must refuse as an authorization violation;
    /// `expected` says which and why.
    async fn refused(&self, credentials: &Credentials, expected: &str) {
        let refused = self.connect(credentials).await.err().expect(expected);
        assert_eq!(refused.kind(), ConnectErrorKind::AuthorizationViolation);
    }

    /// The real `mq9 broker`, logged in with broker credentials (killed when dropped).
    fn broker(&self) -> Broker {
        let creds = self.creds_path(&self.mint(&broker_permissions(), None));
        let args = ["--nats-creds".to_owned(), creds.display().to_string()];
        Broker::spawn(self.server.url(), &self.dir.path().join("data"), &args)
    }

    async fn connect_ok(&self, permissions: &Permissions) -> Agent {
        let credentials = self.mint(permissions, None);
        self.connect(&credentials)
            .await
            .expect("valid credentials connect")
    }
}

/// A client and the events nats-server caused on its connection.
struct Agent {
    client: async_nats::Client,
    events: UnboundedReceiver<Event>,
}

impl Agent {
    /// Waits for an event the predicate accepts, skipping others, failing at the deadline.
    async fn wait_event(&mut self, what: &str, accept: impl Fn(&Event) -> bool) {
        let waited = tokio::time::timeout(DEADLINE, async {
            while let Some(event) = self.events.recv().await {
                if accept(&event) {
                    return;
                }
            }
            panic!("the connection's event stream ended before {what}");
        });
        waited
            .await
            .unwrap_or_else(|_| panic!("no {what} within {DEADLINE:?}"));
    }

    /// Waits until nats-server reports `Permissions Violation for {operation} to "{subject}"`.
    async fn wait_violation(&mut self, operation: &str, subject: &str) {
        let expected = format!("Permissions Violation for {operation} to \"{subject}\"");
        self.wait_event(&expected.clone(), |event| {
            matches!(event, Event::ServerError(ServerError::Other(text)) if text.contains(&expected))
        })
        .await;
    }

    /// Publishes and flushes; refusals arrive as events.
    async fn publish(&self, subject: &str, payload: &str) {
        self.client
            .publish(subject.to_owned(), payload.to_owned().into())
            .await
            .unwrap();
        self.client.flush().await.unwrap();
    }

    async fn publish_refused(&mut self, subject: &str) {
        self.publish(subject, "{}").await;
        self.wait_violation("Publish", subject).await;
    }

    async fn subscribe_refused(&mut self, subject: &str) {
        let _subscription = self.client.subscribe(subject.to_owned()).await.unwrap();
        self.client.flush().await.unwrap();
        self.wait_violation("Subscription", subject).await;
    }

    /// A request answered within the deadline, its reply as JSON.
    async fn request(&self, subject: &str, body: Value) -> Value {
        let request = self
            .client
            .request(subject.to_owned(), body.to_string().into());
        let reply = tokio::time::timeout(DEADLINE, request)
            .await
            .unwrap_or_else(|_| panic!("no reply to {subject}"))
            .unwrap_or_else(|e| panic!("request {subject} failed: {e}"));
        serde_json::from_slice(&reply.payload).unwrap()
    }
}

/// `$mq9.ADMIN.MAILBOX.ENSURE`, retried until the broker (still connecting) answers.
async fn ensure(operator: &Agent, broker: &Broker, name: &str) {
    let deadline = Instant::now() + DEADLINE;
    let body = json!({"name": name, "ttl": 0, "owner": "test"}).to_string();
    loop {
        let request = operator
            .client
            .request("$mq9.ADMIN.MAILBOX.ENSURE", body.clone().into());
        if let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_millis(500), request).await {
            let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
            assert_eq!(reply["error"], "", "ENSURE {name}: {reply}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the broker never answered ENSURE; log: {}",
            broker.log_text()
        );
        // "No responders" comes back at once while the broker is still connecting.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn none() -> Vec<String> {
    Vec::new()
}
