//! Tenants are namespaces (security.md §1–§3, §5), end to end: the real operator binary against
//! the fake API server, a real nats-server configured from the operator's ConfigMap (its full
//! account resolver taking the tenant accounts the operator pushes at run time) and the real
//! broker with the broker credentials. Each test attacks with one agent's credentials, through
//! a plain async-nats client with its default inbox prefix, as the SDKs do.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{FutureExt, StreamExt};
use kube::api::{Patch, PatchParams};
use serde_json::{json, Value};
use support::apiserver::FakeApiServer;
use support::cluster::*;
use support::data_plane::DataPlane;

/// The Broker's namespace: also a tenant (its agents are not in the broker account).
const TEAM_A: &str = "team-a";
const TEAM_B: &str = "team-b";
/// Revocation must reach nats-server within this (security.md §5: "within seconds").
const REVOKED_WITHIN: Duration = Duration::from_secs(5);

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
        let port = support::free_port().port();
        let url = format!("nats://127.0.0.1:{port}");
        let operator = Operator::start(&api, &url, 2);
        let broker = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Broker",
            "metadata": {"name": "agents", "namespace": TEAM_A},
            "spec": {"allowedNamespaces": [TEAM_B]}});
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

/// A request answered within a second, as JSON; `Err` when it is not (refused, no connection).
async fn call(client: &async_nats::Client, subject: &str, body: &str) -> Result<Value, String> {
    let request = client.request(subject.to_owned(), body.to_owned().into());
    match tokio::time::timeout(Duration::from_secs(1), request).await {
        Ok(Ok(reply)) => serde_json::from_slice(&reply.payload).map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 1 s".into()),
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

fn unix_now() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap().as_secs()
}

/// Waits until `refused` holds, failing after [`REVOKED_WITHIN`] since `since`.
async fn refused_within(what: &str, since: Instant, mut refused: impl AsyncFnMut() -> bool) {
    loop {
        if refused().await {
            return;
        }
        assert!(
            since.elapsed() < REVOKED_WITHIN,
            "{what} still works {REVOKED_WITHIN:?} after the change"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_sees_nothing_of_another_tenants_replies_nor_of_the_admin_traffic() {
    let t = Tenancy::start().await;
    let creds_a = t.mailbox(TEAM_A, "alpha", "alpha.box", json!([])).await;
    let creds_b = t.mailbox(TEAM_B, "beta", "beta.box", json!([])).await;
    let agent_a = t.agent(&creds_a).await;
    let agent_b = t.agent(&creds_b).await;

    // B listens to every reply inbox, and tries every subject (its permissions refuse `>`:
    // should they ever allow it, it must still see nothing of A).
    let mut everything = agent_b.subscribe(">").await.unwrap();
    let mut inboxes = agent_b.subscribe("_INBOX.>").await.unwrap();
    // One connection's operations are handled in order: once this is answered, the
    // subscriptions are in place.
    ok(&agent_b, "$mq9.AI.MSG.QUERY.beta.box", "{}").await;

    // A stores a secret and fetches it back (default inbox prefix, as every SDK).
    let secret = "for-alpha-only-7d1f";
    ok(&agent_a, "$mq9.AI.MSG.SEND.alpha.box", secret).await;
    let fetched = ok(&agent_a, "$mq9.AI.MSG.FETCH.alpha.box", "{}").await;
    let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
    assert_eq!(fetched["messages"][0]["payload"], encoded.as_str());
    // The operator's admin traffic: a reply that names A's address and owner.
    let admin = t.agent(&t.data_plane.operator_creds).await;
    let info = ok(&admin, "$mq9.ADMIN.MAILBOX.INFO", r#"{"name":"alpha.box"}"#).await;
    assert_eq!(info["exists"], true, "{info}");
    // The broker answers in order: once B's next request is answered, every earlier answer
    // (A's, the operator's) has been published, and would have reached B's subscriptions.
    ok(&agent_b, "$mq9.AI.MSG.QUERY.beta.box", "{}").await;

    let seen: Vec<async_nats::Message> = [drain(&mut inboxes), drain(&mut everything)].concat();
    let own_replies = seen
        .iter()
        .filter(|m| m.subject.starts_with("_INBOX.") && m.payload.starts_with(b"{"))
        .count();
    assert!(
        own_replies >= 2,
        "B's `_INBOX.>` subscription works: it sees B's own replies ({own_replies})"
    );
    for message in &seen {
        let text = format!(
            "{} {}",
            message.subject,
            String::from_utf8_lossy(&message.payload)
        );
        for leak in ["alpha", secret, &encoded, "owner"] {
            assert!(!text.contains(leak), "B saw {leak:?} in {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn narrowed_and_deleted_mailboxes_lose_their_old_credentials_within_seconds() {
    let t = Tenancy::start().await;
    let old_creds = t.mailbox(TEAM_B, "beta", "beta.box", json!([])).await;
    let open = t.agent(&old_creds).await;
    let anywhere = call(&open, "$mq9.AI.MSG.SEND.other.box", "x").await;
    assert_eq!(
        anywhere.unwrap()["code"],
        "not_found",
        "sendTo [] reaches any address"
    );

    // Narrow sendTo: the credentials are re-minted, the old ones revoked.
    let mailboxes: kube::Api<mq9::crd::Mailbox> = kube::Api::namespaced(t.api.client(), TEAM_B);
    let narrowed = json!({"spec": {"sendTo": ["beta.*"]}});
    let changed = Instant::now();
    mailboxes
        .patch("beta", &PatchParams::default(), &Patch::Merge(&narrowed))
        .await
        .unwrap();
    let what = t.operator.waiting_for("re-minted credentials");
    let new_creds = t
        .api
        .wait_for(&what, |_| {
            t.creds(TEAM_B, "beta").filter(|creds| *creds != old_creds)
        })
        .await;
    refused_within(
        "a new connection with the old credentials",
        changed,
        async || t.connect(&old_creds).await.is_err(),
    )
    .await;
    refused_within(
        "the open connection of the old credentials",
        changed,
        async || {
            call(&open, "$mq9.AI.MSG.QUERY.beta.box", "{}")
                .await
                .is_err()
        },
    )
    .await;
    let agent = t.agent(&new_creds).await;
    ok(&agent, "$mq9.AI.MSG.SEND.beta.box", "to myself").await;
    ok(&agent, "$mq9.AI.MSG.QUERY.beta.box", "{}").await;
    assert!(
        call(&agent, "$mq9.AI.MSG.SEND.other.box", "x")
            .await
            .is_err(),
        "the new credentials carry the narrowed sendTo: nats-server drops the publish"
    );

    // Delete the Mailbox: its credentials die with it, Secret or not.
    let deleted = Instant::now();
    t.api.delete(MAILBOXES, TEAM_B, "beta");
    refused_within("the deleted Mailbox's credentials", deleted, async || {
        t.connect(&new_creds).await.is_err()
    })
    .await;
    refused_within(
        "the deleted Mailbox's open connection",
        deleted,
        async || {
            call(&agent, "$mq9.AI.MSG.QUERY.beta.box", "{}")
                .await
                .is_err()
        },
    )
    .await;
    let tenants = t
        .api
        .get(CONFIG_MAPS, TEAM_A, "agents-tenants")
        .expect("the revocations are recorded");
    let record: Value = serde_json::from_str(tenants["data"][TEAM_B].as_str().unwrap()).unwrap();
    assert_eq!(record["revoked"].as_object().unwrap().len(), 2, "{record}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_subject_naming_another_mailbox_makes_the_broker_act_on_nothing() {
    let t = Tenancy::start().await;
    let creds_a = t.mailbox(TEAM_A, "alpha", "alpha.box", json!([])).await;
    let creds_b = t.mailbox(TEAM_B, "beta", "beta.box", json!([])).await;
    let attacker = t.agent(&creds_a).await;
    let victim = t.agent(&creds_b).await;
    ok(&victim, "$mq9.AI.MSG.SEND.beta.box", "keep me").await;

    // A asks a question it may ask, naming the victim's mailbox as where the answer goes: a
    // broker publishing there with its own rights would delete B's message 0, or store the
    // answer in B's mailbox.
    for reply_to in ["$mq9.AI.MSG.DELETE.beta.box.0", "$mq9.AI.MSG.SEND.beta.box"] {
        attacker
            .publish_with_reply("$mq9.AI.MSG.QUERY.alpha.box", reply_to, "{}".into())
            .await
            .unwrap();
    }
    // The broker takes requests in order: once this is answered, the two above were handled.
    ok(&attacker, "$mq9.AI.MSG.QUERY.alpha.box", "{}").await;

    let stored = ok(&victim, "$mq9.AI.MSG.QUERY.beta.box", "{}").await;
    let messages = stored["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        1,
        "nothing stored for the attacker: {stored}"
    );
    let keep = base64::engine::general_purpose::STANDARD.encode("keep me");
    assert_eq!(
        messages[0]["payload"],
        keep.as_str(),
        "B's message is still there"
    );
    assert_eq!(messages[0]["msg_id"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn mailboxes_deleted_together_are_all_revoked() {
    let t = Tenancy::start().await;
    let names = ["one", "two", "three", "four"];
    let mut creds = Vec::new();
    for name in names {
        let address = format!("{name}.box");
        creds.push(t.mailbox(TEAM_B, name, &address, json!([])).await);
    }
    // Four finalizers record a revocation in the same ConfigMap entry at the same time: each
    // write carries the resourceVersion it read, so none overwrites another.
    let deleted = Instant::now();
    for name in names {
        t.api.delete(MAILBOXES, TEAM_B, name);
    }
    for (name, creds) in names.iter().zip(&creds) {
        refused_within(&format!("the credentials of {name}"), deleted, async || {
            t.connect(creds).await.is_err()
        })
        .await;
    }
    let tenants = t.api.get(CONFIG_MAPS, TEAM_A, "agents-tenants").unwrap();
    let record: Value = serde_json::from_str(tenants["data"][TEAM_B].as_str().unwrap()).unwrap();
    assert_eq!(record["revoked"].as_object().unwrap().len(), 4, "{record}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgraded_broker_ends_the_users_of_the_single_account_design() {
    use mq9::auth::{mailbox_permissions, mint_user, operator_permissions, Permissions};
    use mq9::auth::{SigningKeys, UserClaims};
    let api = FakeApiServer::start().await;
    let port = support::free_port().port();
    let url = format!("nats://127.0.0.1:{port}");
    // The auth Secret as the single-account operator left it: a broker allowed everything, and
    // agents were users of the broker account like the broker and the operator.
    let keys = SigningKeys::generate();
    let everything = Permissions {
        publish_allow: vec![">".into()],
        subscribe_allow: vec![">".into()],
        ..Permissions::default()
    };
    let mint = |permissions: &Permissions| {
        let user = UserClaims {
            name: "before-tenancy",
            permissions,
            tags: &[],
            expires_at: None,
        };
        mint_user(keys.account(), &user).creds_file_text
    };
    let none: &[String] = &[];
    let old_agent = mint(&mailbox_permissions("old.box", none, none, none).unwrap());
    let old_broker = mint(&everything);
    let old_operator = mint(&operator_permissions());
    // Read after minting: every `iat` above is at or before it, even when a second boundary
    // fell between the mints.
    let minted_at = unix_now();
    let base64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "agents-auth", "namespace": TEAM_A},
        "data": {"signing-keys.json": base64(&serde_json::to_string(&keys).unwrap()),
                 "broker.creds": base64(&old_broker), "operator.creds": base64(&old_operator)}});
    api.create(SECRETS, secret);
    // The cut-off is the second before the upgrade: let the second of the minting pass.
    while unix_now() <= minted_at {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let operator = Operator::start(&api, &url, 2);
    let broker = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Broker",
        "metadata": {"name": "agents", "namespace": TEAM_A}, "spec": {}});
    api.create(BROKERS, broker);
    let data_plane = DataPlane::start(&api, &operator, TEAM_A, "agents", port).await;
    broker_pods_ready(&api, TEAM_A, "agents", 1).await;

    let t = Tenancy {
        api,
        operator,
        data_plane,
        url,
    };
    // (Compared, never printed: credentials hold a seed.)
    assert!(t.data_plane.operator_creds != old_operator, "re-issued");
    for (who, creds) in [
        ("agent", &old_agent),
        ("broker", &old_broker),
        ("operator", &old_operator),
    ] {
        assert!(
            t.connect(creds).await.is_err(),
            "the {who} credentials of before are refused"
        );
    }
    let admin = t.agent(&t.data_plane.operator_creds).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while call(&admin, "$mq9.ADMIN.MAILBOX.LIST", "{}").await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the re-issued broker never answered"
        );
    }
    let creds = t.mailbox(TEAM_A, "alpha", "alpha.box", json!([])).await;
    ok(&t.agent(&creds).await, "$mq9.AI.MSG.QUERY.alpha.box", "{}").await;
}

/// security.md §4 with the operator's credentials: the broker names the sender of every
/// stored message from its signed `mq9-address:` tag, and an agent's registry card may name
/// only its own mailbox and is its alone.
#[tokio::test(flavor = "multi_thread")]
async fn the_broker_knows_each_agent_by_its_signed_address() {
    let t = Tenancy::start().await;
    let alpha = t
        .agent(&t.mailbox(TEAM_A, "alpha", "alpha.box", json!([])).await)
        .await;
    let beta = t
        .agent(&t.mailbox(TEAM_B, "beta", "beta.box", json!([])).await)
        .await;

    let mut forged = async_nats::HeaderMap::new();
    forged.insert("mq9-sender", "beta.box");
    let sent = alpha
        .request_with_headers("$mq9.AI.MSG.SEND.beta.box", forged, "hello".into())
        .await
        .unwrap();
    let sent: Value = serde_json::from_slice(&sent.payload).unwrap();
    assert_eq!(sent["error"], "", "{sent}");
    let fetched = ok(&beta, "$mq9.AI.MSG.FETCH.beta.box", "{}").await;
    assert_eq!(
        fetched["messages"][0]["headers"],
        json!({"mq9-sender": "alpha.box"}),
        "the sender is the signed identity, not the forged header"
    );

    let card = |mailbox: &str| json!({"name": "translator", "mailbox": mailbox}).to_string();
    let pointed = call(&alpha, "$mq9.AI.AGENT.REGISTER", &card("beta.box"))
        .await
        .unwrap();
    assert_eq!(pointed["code"], "forbidden", "{pointed}");
    ok(&alpha, "$mq9.AI.AGENT.REGISTER", &card("alpha.box")).await;
    let hijack = call(
        &beta,
        "$mq9.AI.AGENT.REGISTER",
        &json!({"name": "translator"}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(hijack["code"], "forbidden", "{hijack}");
    let removal = call(
        &beta,
        "$mq9.AI.AGENT.UNREGISTER",
        r#"{"name":"translator"}"#,
    )
    .await
    .unwrap();
    assert_eq!(removal["code"], "forbidden", "{removal}");
}

/// Two namespaces each declare a Broadcast on the same topic: each namespace's publisher
/// reaches its own members' mailboxes only. (The operator subscribes each member for its own
/// namespace's account; the broker stores a publish only where its account is admitted.)
#[tokio::test(flavor = "multi_thread")]
async fn same_named_broadcast_topics_stay_within_their_namespace() {
    let t = &Tenancy::start().await;
    for (namespace, prefix) in [(TEAM_A, "a"), (TEAM_B, "b")] {
        for role in ["pub", "member"] {
            t.mailbox(
                namespace,
                &format!("{prefix}-{role}"),
                &format!("{prefix}.{role}"),
                json!([]),
            )
            .await;
        }
        let broadcast = json!({"apiVersion": "mq9.io/v1alpha1", "kind": "Broadcast",
            "metadata": {"name": "tasks", "namespace": namespace},
            "spec": {"brokerRef": {"name": "agents", "namespace": TEAM_A}, "topic": "tasks",
                     "members": {"mailboxRefs": [format!("{prefix}-member")]},
                     "publishers": [format!("{prefix}-pub")]}});
        t.api.create(BROADCASTS, broadcast);
    }
    // What a member's mailbox holds, read with its current credentials (they are re-minted,
    // and the old ones revoked, when the Broadcast makes it a member).
    let stored = |namespace: &'static str, name: &'static str, address: &'static str| async move {
        let creds = t.creds(namespace, name)?;
        let client = t.connect(&creds).await.ok()?;
        let reply = call(&client, &format!("$mq9.AI.MSG.QUERY.{address}"), "{}").await;
        reply
            .ok()
            .filter(|r| r["error"] == "")
            .map(|r| support::texts(&r))
    };
    // Each publisher publishes (with its credentials as they are re-minted for the Broadcast)
    // until its own namespace's member has stored it.
    for (namespace, prefix, text) in [(TEAM_A, "a", "from a"), (TEAM_B, "b", "from b")] {
        let (publisher, member) = match prefix {
            "a" => (("a-pub", "a-member"), "a.member"),
            _ => (("b-pub", "b-member"), "b.member"),
        };
        let what = format!("{}'s broadcast stored for its own member", publisher.0);
        support::wait_until(&what, || async move {
            if let Some(creds) = t.creds(namespace, publisher.0) {
                if let Ok(client) = t.connect(&creds).await {
                    let _ = client.publish("$mq9.AI.BROADCAST.tasks", text.into()).await;
                    let _ = client.flush().await;
                }
            }
            stored(namespace, publisher.1, member)
                .await
                .is_some_and(|texts| texts.iter().any(|t| t == text))
        })
        .await;
    }
    let a_texts = stored(TEAM_A, "a-member", "a.member").await.unwrap();
    let b_texts = stored(TEAM_B, "b-member", "b.member").await.unwrap();
    assert!(a_texts.iter().all(|t| t == "from a"), "{a_texts:?}");
    assert!(b_texts.iter().all(|t| t == "from b"), "{b_texts:?}");
}
