//! NATS JWT authentication against a real nats-server 2.x in operator mode (and, where the
//! mq9 protocol is involved, the real `mq9 broker` binary logged in with broker
//! credentials): minted credentials connect, get exactly the permissions `mq9::auth` gives
//! them, and stop working at their expiry. No mocks.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::{ClientError, ConnectErrorKind, Event, ServerError};
use futures::StreamExt;
use mq9::auth::{
    broker_permissions, mailbox_permissions, mint_user, nats_auth_config, operator_permissions,
    Credentials, Permissions, SigningKeys, UserClaims,
};
use mq9::natsd::{NatsServer, NatsServerOptions};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// How long any single wait may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(15);

/// Unix seconds now: the unit of a JWT's `exp`.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

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
        options.extra_config = nats_auth_config(&keys, &resolver_dir, broker_users_revoked_at);
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

/// The real `mq9 broker`, logged in with broker credentials; killed when dropped.
struct BrokerProcess {
    child: Child,
    log: PathBuf,
}

impl BrokerProcess {
    fn spawn(nats: &AuthNats) -> BrokerProcess {
        let creds = nats.creds_path(&nats.mint(&broker_permissions(), None));
        let data_dir = nats.dir.path().join("data");
        let log = nats.dir.path().join("broker.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let http_addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mq9"))
            .arg("broker")
            .args(["--nats-url", nats.server.url()])
            .arg("--nats-creds")
            .arg(&creds)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--http-addr", &http_addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("mq9 binary starts");
        BrokerProcess { child, log }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$mq9.ADMIN.MAILBOX.ENSURE`, retried until the broker (still connecting) answers.
async fn ensure(operator: &Agent, broker: &BrokerProcess, name: &str) {
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
            std::fs::read_to_string(&broker.log).unwrap_or_default()
        );
        // "No responders" comes back at once while the broker is still connecting.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn none() -> Vec<String> {
    Vec::new()
}

#[tokio::test]
async fn agents_reach_their_own_mailbox_through_the_broker_and_nothing_else() {
    let nats = AuthNats::start();
    let broker = BrokerProcess::spawn(&nats);
    let mut operator = nats.connect_ok(&operator_permissions()).await;
    ensure(&operator, &broker, "alice").await;
    ensure(&operator, &broker, "bob").await;
    let mut alice = nats
        .connect_ok(&mailbox_permissions("alice", &none(), &none(), &none()).unwrap())
        .await;
    let bob = nats
        .connect_ok(&mailbox_permissions("bob", &none(), &none(), &none()).unwrap())
        .await;

    // Sending to anyone (empty sendTo), reading one's own mailbox.
    let sent = alice.request("$mq9.AI.MSG.SEND.bob", json!("hi")).await;
    assert_eq!(sent["error"], "", "{sent}");
    let fetched = bob.request("$mq9.AI.MSG.FETCH.bob", json!({})).await;
    assert_eq!(
        fetched["messages"].as_array().map(Vec::len),
        Some(1),
        "{fetched}"
    );

    // The original design's live path: bob watches its INBOX subject, alice publishes there.
    let mut live = bob.client.subscribe("$mq9.AI.INBOX.bob.*").await.unwrap();
    // A round trip on bob's connection: nats-server handles a connection's operations in
    // order, so once this is answered the subscription is in place (flush only empties the
    // client's buffer).
    bob.request("$mq9.AI.MSG.QUERY.bob", json!({})).await;
    alice.publish("$mq9.AI.INBOX.bob.urgent", "now").await;
    let delivered = tokio::time::timeout(DEADLINE, live.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivered.payload.as_ref(), b"now");

    // Everything else is refused by nats-server itself.
    alice.publish_refused("$mq9.AI.MSG.FETCH.bob").await;
    alice.publish_refused("$mq9.AI.MSG.DELETE.bob.0").await;
    alice.publish_refused("$mq9.ADMIN.MAILBOX.LIST").await;
    alice.publish_refused("$mq9.AI.MAILBOX.CREATE").await;
    alice.publish_refused("$mq9.AI.MAILBOX.SUBSCRIBE").await;
    alice.subscribe_refused("$mq9.AI.INBOX.bob.*").await;
    alice.subscribe_refused("$mq9.ADMIN.>").await;
    alice.subscribe_refused("$mq9.AI.>").await;

    // The operator administers mailboxes and nothing more.
    let listed = operator.request("$mq9.ADMIN.MAILBOX.LIST", json!({})).await;
    assert_eq!(listed["error"], "", "{listed}");
    operator.publish_refused("$mq9.AI.MSG.SEND.alice").await;
    operator.publish_refused("$mq9.AI.MSG.FETCH.alice").await;

    // bob's mailbox holds the SEND and the INBOX publish (stored by the broker too), and
    // alice's refused DELETE of message 0 never happened.
    let ids = |reply: &Value| -> Vec<u64> {
        let messages = reply["messages"].as_array().unwrap();
        messages
            .iter()
            .map(|m| m["msg_id"].as_u64().unwrap())
            .collect()
    };
    let deadline = Instant::now() + DEADLINE;
    loop {
        let stored = ids(&bob.request("$mq9.AI.MSG.QUERY.bob", json!({})).await);
        if stored == [0, 1] {
            break;
        }
        assert!(Instant::now() < deadline, "bob's mailbox holds {stored:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn send_to_patterns_and_broadcast_topics_bound_what_an_agent_may_publish() {
    let nats = AuthNats::start();
    // Broker credentials: subscribe to the whole agent namespace and answer requests, and
    // publish nothing else. The refusal of its own publish also proves the subscription is in
    // place on the server (one connection's operations are handled in order).
    let mut server = nats.connect_ok(&broker_permissions()).await;
    let mut requests = server.client.subscribe("$mq9.AI.>").await.unwrap();
    server.publish_refused("$mq9.AI.sync").await;
    let permissions = mailbox_permissions(
        "team.a",
        &["team.*".to_owned()],
        &["news.*".to_owned()],
        &["news.>".to_owned()],
    )
    .unwrap();
    let mut agent = nats.connect_ok(&permissions).await;

    // A denied publish is dropped: the next message the broker side sees is the allowed one
    // the agent published after it (one connection's messages arrive in order).
    agent.publish_refused("$mq9.AI.MSG.SEND.other").await;
    agent.publish_refused("$mq9.AI.INBOX.other.normal").await;
    agent.publish_refused("$mq9.AI.INBOX.team.b.c.normal").await;
    let reply = agent.client.request("$mq9.AI.MSG.SEND.team.b", "m".into());
    let serve = async {
        let request = requests.next().await.unwrap();
        assert_eq!(request.subject.as_str(), "$mq9.AI.MSG.SEND.team.b");
        let reply_to = request.reply.expect("a request has a reply subject");
        server
            .client
            .publish(reply_to, "{\"error\":\"\",\"msg_id\":0}".into())
            .await
            .unwrap();
        server.client.flush().await.unwrap();
    };
    let (reply, ()) = tokio::time::timeout(DEADLINE, futures::future::join(reply, serve))
        .await
        .expect("request served within the deadline");
    assert_eq!(
        reply.unwrap().payload.as_ref(),
        b"{\"error\":\"\",\"msg_id\":0}"
    );
    agent.publish("$mq9.AI.INBOX.team.b.urgent", "p").await;
    let next = tokio::time::timeout(DEADLINE, requests.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.subject.as_str(), "$mq9.AI.INBOX.team.b.urgent");

    // Broadcast: publish within the publish topics, subscribe within the subscribe topics.
    let mut news = agent
        .client
        .subscribe("$mq9.AI.BROADCAST.news.*")
        .await
        .unwrap();
    agent.client.flush().await.unwrap();
    agent
        .publish("$mq9.AI.BROADCAST.news.today", "headline")
        .await;
    let heard = tokio::time::timeout(DEADLINE, news.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(heard.payload.as_ref(), b"headline");
    agent.publish_refused("$mq9.AI.BROADCAST.sports").await;
    agent.subscribe_refused("$mq9.AI.BROADCAST.>").await;
    agent
        .subscribe_refused("$mq9.AI.BROADCAST.news.today.late")
        .await;
}

#[tokio::test]
async fn expired_and_foreign_credentials_are_refused_at_connect() {
    let nats = AuthNats::start();
    let permissions = mailbox_permissions("box", &none(), &none(), &none()).unwrap();
    let expired = nats.mint(&permissions, Some(now_secs() - 10));
    let refused = nats
        .connect(&expired)
        .await
        .err()
        .expect("expired credentials are refused");
    assert_eq!(refused.kind(), ConnectErrorKind::AuthorizationViolation);

    // Signed by another Broker's account: not in this server's chain of trust.
    let foreign = mint_user(SigningKeys::generate().account(), &user(&permissions, None));
    let refused = nats
        .connect(&foreign)
        .await
        .err()
        .expect("foreign credentials are refused");
    assert_eq!(refused.kind(), ConnectErrorKind::AuthorizationViolation);

    // The same permissions from this Broker's keys, unexpired, connect.
    let valid = nats.mint(&permissions, Some(now_secs() + 3600));
    nats.connect(&valid)
        .await
        .expect("valid credentials connect");
}

#[tokio::test]
async fn credentials_expiring_while_connected_are_cut_off_and_then_refused() {
    let nats = AuthNats::start();
    let permissions = mailbox_permissions("box", &none(), &none(), &none()).unwrap();
    let expires_at = now_secs() + 3;
    let credentials = nats.mint(&permissions, Some(expires_at));
    let mut agent = nats.connect(&credentials).await.expect("not yet expired");
    agent
        .wait_event("the expiry notice", |event| {
            matches!(event, Event::ServerError(ServerError::Other(text))
                if text.to_lowercase().contains("expired"))
        })
        .await;
    assert!(
        now_secs() >= expires_at,
        "cut off at the expiry, not before"
    );
    // The client reconnects on its own. nats-server treats `exp` as the last valid second,
    // so reconnects within that second are accepted and cut off at once; from the next
    // second on they are refused, which async-nats reports as a client error.
    agent
        .wait_event("the refused reconnect", |event| {
            matches!(event, Event::ClientError(ClientError::Other(text))
                if text.contains("authorization violation"))
        })
        .await;
    assert!(now_secs() > expires_at);
    let again = nats
        .connect(&credentials)
        .await
        .err()
        .expect("refused after expiry");
    assert_eq!(again.kind(), ConnectErrorKind::AuthorizationViolation);
}

#[tokio::test]
async fn a_cut_off_in_the_broker_account_refuses_its_earlier_users_only() {
    let keys = SigningKeys::generate();
    let permissions = mailbox_permissions("box", &none(), &none(), &none()).unwrap();
    let earlier = mint_user(keys.account(), &user(&permissions, None));
    let cut_off = now_secs();
    let nats = AuthNats::start_with(keys, Some(cut_off));
    let refused = nats
        .connect(&earlier)
        .await
        .err()
        .expect("a user issued at the cut-off is refused");
    assert_eq!(refused.kind(), ConnectErrorKind::AuthorizationViolation);
    // Users issued after the cut-off second are not affected.
    let deadline = Instant::now() + DEADLINE;
    while now_secs() <= cut_off {
        assert!(Instant::now() < deadline, "the clock stands still");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let later = nats.mint(&permissions, None);
    nats.connect(&later).await.expect("a later user connects");
}
