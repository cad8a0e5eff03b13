//! A replicated Broker's JWT auth, on a real nats-server with JetStream configured with what the
//! operator mints for it (the trust block with the broker account's JetStream, the broker's and
//! the operator's credentials from its Secret, a tenant account pushed as the operator pushes
//! it, an agent's Mailbox credentials) and the real `mq9 broker` in replicated mode logged in
//! with the minted broker credentials:
//!
//! - the broker's user reaches what replication needs (its log streams, its lease bucket, the
//!   JetStream API): an agent's SEND is stored and FETCHed back through it;
//! - an attacker holding the agent's credentials cannot read or write the shard logs or the
//!   leases, nor use JetStream at all; nor can a user of the tenant account allowed every
//!   subject (what a mistake in the agents' permissions would give): tenant accounts have no
//!   JetStream, and the broker account's subjects are not theirs.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use futures::{FutureExt, StreamExt};
use mq9::auth::{mint_user, Permissions, SigningKeys, Tenant, UserClaims};
use mq9::natsd::{NatsServer, NatsServerOptions};
use mq9::operator::admin_client::{BrokerClients, EnsureMailbox, ShardsAnswer};
use mq9::operator::builders::{self, Layout};
use mq9::operator::credentials::{self, BrokerAuth, Grant, SIGNING_KEYS_KEY};
use serde_json::Value;
use support::requests::call;
use support::Broker;
use tempfile::TempDir;

const NAMESPACE: &str = "team-a";
const ADDRESS: &str = "alpha.box";
/// The Broker's name: the replicated cluster's, in its streams', bucket's and subjects' names.
const CLUSTER: &str = "b1";

/// One text of the operator's auth Secret.
fn secret_text(secret: &k8s_openapi::api::core::v1::Secret, key: &str) -> String {
    let bytes = &secret.data.as_ref().unwrap()[key];
    String::from_utf8(bytes.0.clone()).unwrap()
}

/// `nodes` nats-servers with the operator's trust block for a replicated Broker and JetStream
/// (one server alone, or a loopback cluster), a broker in replicated mode on each, logged in with
/// the minted broker credentials, the tenant account pushed and the agent's mailbox ensured
/// with the operator's users.
struct Replicated {
    servers: Vec<NatsServer>,
    brokers: Vec<Broker>,
    keys: SigningKeys,
    operator_creds: String,
    agent_creds: String,
    _dir: TempDir,
}

impl Replicated {
    async fn start(nodes: usize) -> Replicated {
        let spec = serde_json::from_value(serde_json::json!({"replicas": 3})).unwrap();
        let mut broker_object = mq9::crd::Broker::new(CLUSTER, spec);
        broker_object.metadata.namespace = Some(NAMESPACE.into());
        broker_object.metadata.uid = Some("uid-b1".into());
        let secret = credentials::new_auth_secret(&broker_object);
        let auth = BrokerAuth::from_secret(&secret).unwrap();
        let keys: SigningKeys =
            serde_json::from_str(&secret_text(&secret, SIGNING_KEYS_KEY)).unwrap();
        let dir = TempDir::new().unwrap();
        let layout = Layout::for_new(&broker_object);
        assert!(layout.is_replicated());
        let mut options = match nodes {
            1 => {
                let mut alone = NatsServerOptions::new(dir.path().join("n0"));
                let store = alone.work_dir.join("jetstream");
                alone.extra_config = format!("jetstream {{ store_dir: {store:?} }}\n");
                vec![alone]
            }
            _ => mq9::natsd::cluster_options(dir.path(), nodes, None, false).unwrap(),
        };
        let servers: Vec<NatsServer> = options
            .iter_mut()
            .map(|options| {
                let resolver_dir = options.work_dir.join("accounts");
                let trust = auth.server_config(layout).replace(
                    mq9::operator::names::RESOLVER_DIR,
                    &resolver_dir.display().to_string(),
                );
                options.extra_config.push_str(&trust);
                NatsServer::start(options).expect("nats-server runs the minted trust block")
            })
            .collect();

        let broker_creds = dir.path().join("broker.creds");
        std::fs::write(
            &broker_creds,
            secret_text(&secret, builders::BROKER_CREDS_KEY),
        )
        .unwrap();
        let copies = if nodes >= 3 { "3" } else { "1" };
        let brokers: Vec<Broker> = servers
            .iter()
            .enumerate()
            .map(|(i, server)| {
                let node = format!("{CLUSTER}-{i}");
                let args = [
                    "--nats-creds",
                    &broker_creds.display().to_string(),
                    "--trust-request-info",
                    "--replication",
                    "jetstream",
                    "--shards",
                    "4",
                    "--cluster",
                    CLUSTER,
                    "--node",
                    &node,
                    "--peers",
                    &nodes.to_string(),
                    "--log-replicas",
                    copies,
                    "--lease-secs",
                    "2",
                ]
                .map(str::to_owned);
                Broker::spawn(server.url(), &dir.path().join(&node), &args)
            })
            .collect();
        for broker in &brokers {
            broker.wait_ready().await;
        }

        let clients = BrokerClients::default();
        let accounts = clients
            .accounts(servers[0].url(), || auth.account_push_credentials())
            .await
            .expect("the operator's system user connects");
        let tenant = auth.tenant_account_jwt(NAMESPACE, &Tenant::default());
        accounts
            .push(&tenant)
            .await
            .expect("the tenant account is taken");
        let admin = clients
            .admin(servers[0].url(), Some(auth.operator_credentials()))
            .await
            .expect("the operator's user connects");
        let ensure = EnsureMailbox {
            address: ADDRESS,
            kind: "standard",
            ttl_secs: 3600,
            expires_at: None,
            owner: "uid-1",
        };
        let ensured = tokio::time::timeout(support::DEADLINE, async {
            loop {
                match admin.ensure(&ensure).await {
                    Ok(_) => return,
                    // Until a broker leads the mailbox's shard, a request may go unanswered.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        ensured.await.unwrap_or_else(|_| {
            let logs: Vec<String> = brokers.iter().map(Broker::log_text).collect();
            panic!(
                "the operator cannot ENSURE; broker logs:\n{}",
                logs.join("\n")
            )
        });
        let topics = BTreeSet::new();
        let grant = Grant {
            user: "team-a/alpha",
            address: ADDRESS,
            send_to: &[],
            subscribe: &topics,
            publish: &[],
            expires_at: None,
            signer: None,
        };
        let agent_creds = auth
            .mailbox_credentials(NAMESPACE, &grant)
            .unwrap()
            .creds_file_text;
        Replicated {
            servers,
            brokers,
            keys,
            operator_creds: auth.operator_credentials().to_owned(),
            agent_creds,
            _dir: dir,
        }
    }

    fn logs(&self) -> String {
        let logs: Vec<String> = self.brokers.iter().map(Broker::log_text).collect();
        logs.join("\n")
    }

    /// A connection of the tenant account, and the errors nats-server sends on it.
    async fn connect(
        &self,
        node: usize,
        creds: &str,
    ) -> (
        async_nats::Client,
        tokio::sync::mpsc::UnboundedReceiver<String>,
    ) {
        let (errors, server_errors) = tokio::sync::mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::with_credentials(creds)
            .unwrap()
            .event_callback(move |event| {
                let errors = errors.clone();
                async move {
                    if let async_nats::Event::ServerError(error) = event {
                        let _ = errors.send(error.to_string());
                    }
                }
            })
            .connect(self.servers[node].url())
            .await
            .expect("the credentials log in");
        (client, server_errors)
    }

    /// A user of the tenant account allowed every subject.
    fn unrestricted_tenant_user(&self) -> String {
        let everything = Permissions::default();
        let claims = UserClaims {
            name: "attacker",
            permissions: &everything,
            tags: &[],
            expires_at: None,
        };
        mint_user(&self.keys.tenant_account(NAMESPACE), &claims).creds_file_text
    }
}

/// The payload of the message FETCHed first, decoded.
fn first_payload(fetched: &Value) -> String {
    let encoded = fetched["messages"][0]["payload"]
        .as_str()
        .unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded);
    String::from_utf8(bytes.unwrap_or_default()).unwrap_or_default()
}

/// Waits for nats-server's `Permissions Violation for {operation} to "{subject}"`.
async fn violation(
    errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    operation: &str,
    subject: &str,
) {
    let expected = format!("Permissions Violation for {operation} to \"{subject}\"");
    let seen = tokio::time::timeout(support::DEADLINE, async {
        while let Some(error) = errors.recv().await {
            if error.contains(&expected) {
                return;
            }
        }
    });
    seen.await
        .unwrap_or_else(|_| panic!("no {expected:?} within the deadline"));
}

/// The log and lease subjects of the cluster, and the JetStream API.
fn replication_subjects() -> [String; 4] {
    [
        format!("$mq9.REPL.{CLUSTER}.0"),
        format!("$KV.MQ9_LEASES_{CLUSTER}.shard.0"),
        format!("$mq9.FWD.{CLUSTER}.0"),
        "$JS.API.STREAM.LIST".to_owned(),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_broker_replicates_and_agents_cannot_reach_the_logs_or_the_leases() {
    let env = Replicated::start(1).await;
    let (agent, mut agent_errors) = env.connect(0, &env.agent_creds).await;

    // The broker's minted user is enough for replication: a SEND goes through the shard's log
    // (appended before the answer) and is FETCHed back.
    let sent = call(&agent, &format!("$mq9.AI.MSG.SEND.{ADDRESS}"), "keep me").await;
    let sent = sent.unwrap_or_else(|e| panic!("SEND: {e}; log:\n{}", env.logs()));
    assert_eq!(sent["error"], "", "{sent}");
    let fetched = call(&agent, &format!("$mq9.AI.MSG.FETCH.{ADDRESS}"), "{}").await;
    let fetched = fetched.unwrap();
    assert_eq!(first_payload(&fetched), "keep me", "{fetched}");

    // With the agent's own credentials: every replication subject refused by nats-server.
    for subject in replication_subjects() {
        let mut sub = agent.subscribe(subject.clone()).await.unwrap();
        violation(&mut agent_errors, "Subscription", &subject).await;
        agent
            .publish(subject.clone(), "forged".into())
            .await
            .unwrap();
        agent.flush().await.unwrap();
        violation(&mut agent_errors, "Publish", &subject).await;
        assert!(sub.next().now_or_never().flatten().is_none());
    }

    // With every subject of the tenant account: still no JetStream, and the broker account's
    // log, lease and forward traffic never appears, however much the agent writes.
    let (attacker, _) = env.connect(0, &env.unrestricted_tenant_user()).await;
    let mut everything = attacker.subscribe(">").await.unwrap();
    attacker.flush().await.unwrap();
    let info = call(&attacker, "$JS.API.INFO", "").await;
    match &info {
        Ok(reply) => assert!(
            reply["error"]["code"] == 503,
            "JetStream answered a tenant: {reply}"
        ),
        Err(no_answer) => assert!(
            no_answer.contains("no responders") || no_answer.contains("within"),
            "{no_answer}"
        ),
    }
    for subject in replication_subjects() {
        attacker.publish(subject, "forged".into()).await.unwrap();
    }
    attacker.flush().await.unwrap();
    for n in 0..5 {
        let body = format!("message {n}");
        let sent = call(&agent, &format!("$mq9.AI.MSG.SEND.{ADDRESS}"), &body).await;
        assert_eq!(sent.unwrap()["error"], "");
    }
    let fetched = call(&agent, &format!("$mq9.AI.MSG.FETCH.{ADDRESS}"), "{}").await;
    assert_eq!(
        fetched.unwrap()["error"],
        "",
        "the forged publishes broke nothing"
    );
    // Every append was made before its SEND was answered, so anything of it routed to the
    // attacker is queued before this marker, which comes back on the same connection.
    attacker.publish("marker", "".into()).await.unwrap();
    let mut seen = Vec::new();
    let until_marker = async {
        while let Some(message) = everything.next().await {
            if message.subject.as_str() == "marker" {
                return;
            }
            seen.push(message.subject.to_string());
        }
    };
    tokio::time::timeout(support::DEADLINE, until_marker)
        .await
        .expect("the marker comes back");
    let leaked: Vec<&String> = seen
        .iter()
        .filter(|s| {
            ["$mq9.REPL.", "$KV.", "$mq9.FWD.", "$JS.ACK", "$JS.FC"]
                .iter()
                .any(|p| s.starts_with(p))
                && !replication_subjects().contains(s)
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "the tenant saw replication traffic: {leaked:?}"
    );
}

/// Three brokers on a three-server JetStream cluster, each logged in with the minted broker
/// user: the operator's requests through every pod are answered (a pod that does not lead the
/// mailbox's shard forwards on its `$mq9.FWD` subjects, the leader answers through its response
/// permission), and its LIST is gathered from every shard.
#[tokio::test(flavor = "multi_thread")]
async fn three_replicated_brokers_forward_and_gather_the_operators_requests() {
    let env = Replicated::start(3).await;
    for node in 0..3 {
        let (operator, _) = env.connect(node, &env.operator_creds).await;
        let body = format!(r#"{{"name":"{ADDRESS}"}}"#);
        let info = call(&operator, "$mq9.ADMIN.MAILBOX.INFO", &body).await;
        let info = info.unwrap_or_else(|e| panic!("INFO via {node}: {e}; logs:\n{}", env.logs()));
        assert_eq!(info["exists"], true, "{info}");
        let listed = call(&operator, "$mq9.ADMIN.MAILBOX.LIST", "{}").await;
        let listed =
            listed.unwrap_or_else(|e| panic!("LIST via {node}: {e}; logs:\n{}", env.logs()));
        let names: Vec<&str> = listed["mailboxes"]
            .as_array()
            .unwrap_or_else(|| panic!("{listed}"))
            .iter()
            .filter_map(|m| m["name"].as_str())
            .collect();
        assert_eq!(names, [ADDRESS], "{listed}");
        // The operator's shard status: every shard led, every broker alive, read as the
        // operator reads it.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let answer = call(&operator, "$mq9.ADMIN.SHARDS", "{}").await;
            let answer = answer.and_then(|a| {
                serde_json::from_value::<ShardsAnswer>(a.clone()).map_err(|e| format!("{e}: {a}"))
            });
            match answer {
                Ok(shards) if shards.leaders.len() == 4 && shards.live.len() == 3 => {
                    assert_eq!(shards.shards, 4);
                    assert_eq!(shards.without_quorum, Vec::<u32>::new());
                    break;
                }
                other => assert!(
                    std::time::Instant::now() < deadline,
                    "SHARDS via {node}: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// An agent's requests through every pod. They reach the broker account through the tenant's
/// service import, so their reply subject there is nats-server's reserved `_R_.…`, which no
/// client may publish *with* (`Permissions Violation for Publish with Reply of "_R_.…"`): a
/// forward carries it in a header and the leader publishes the answer *to* it.
#[tokio::test(flavor = "multi_thread")]
async fn three_replicated_brokers_answer_an_agent_through_every_pod() {
    let env = Replicated::start(3).await;
    for node in 0..3 {
        let (agent, _) = env.connect(node, &env.agent_creds).await;
        let body = format!("through pod {node}");
        let sent = call(&agent, &format!("$mq9.AI.MSG.SEND.{ADDRESS}"), &body).await;
        let sent = sent.unwrap_or_else(|e| panic!("SEND via {node}: {e}; logs:\n{}", env.logs()));
        assert_eq!(sent["error"], "", "{sent}");
    }
    let (agent, _) = env.connect(2, &env.agent_creds).await;
    let fetched = call(
        &agent,
        &format!("$mq9.AI.MSG.FETCH.{ADDRESS}"),
        r#"{"max": 10}"#,
    )
    .await;
    let fetched = fetched.unwrap();
    assert_eq!(
        fetched["messages"].as_array().map(Vec::len),
        Some(3),
        "{fetched}"
    );
}
