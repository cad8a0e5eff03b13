//! security.md §4, attacked: the broker learns who calls from nats-server, not from anything a
//! client writes. Here nats-server runs with two accounts, as the operator sets them up: the
//! broker's account exports the mq9 service and a tenant account imports it with `share: true`,
//! so every request carries the `Nats-Request-Info` header that nats-server writes. (Users are
//! config users here; the operator's JWT users add the `mq9-address:` tag on top.)

mod support;

use async_nats::HeaderMap;
use serde_json::json;
use support::*;

const ACCOUNTS: &str = r#"
accounts {
  BROKER: {
    users: [{user: broker, password: broker-secret}, {user: admin, password: admin-secret}]
    exports: [{service: "$mq9.AI.>", response_type: singleton}]
  }
  TEAM: {
    users: [{user: alice, password: alice-secret}, {user: mallory, password: mallory-secret}]
    imports: [{service: {account: BROKER, subject: "$mq9.AI.>"}, share: true}]
  }
  OTHER: {
    users: [{user: oscar, password: oscar-secret}]
    imports: [{service: {account: BROKER, subject: "$mq9.AI.>"}, share: true}]
  }
}
no_auth_user: alice
"#;

const BROKER_ARGS: [&str; 5] = [
    "--nats-user",
    "broker",
    "--nats-password",
    "broker-secret",
    "--trust-request-info",
];

/// The broker in its own account; `env.client` is alice, a tenant.
async fn start(extra: &[&str]) -> Env {
    let args: Vec<&str> = BROKER_ARGS.iter().chain(extra).copied().collect();
    Env::start_full(&args, ACCOUNTS).await
}

async fn connect(env: &Env, user: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), format!("{user}-secret"))
        .connect(env.nats.url())
        .await
        .unwrap()
}

async fn request(
    client: &async_nats::Client,
    subject: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let reply = client
        .request(subject.to_owned(), body.to_string().into())
        .await
        .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

#[tokio::test]
async fn a_registry_entry_belongs_to_its_registrant() {
    let env = start(&[]).await;
    let mallory = connect(&env, "mallory").await;
    let card = json!({"name": "translator", "skills": ["french"]});
    let ok = env
        .request("$mq9.AI.AGENT.REGISTER", &card.to_string())
        .await;
    assert_eq!(ok["error"], "", "{ok}");

    let hijack = json!({"name": "translator", "skills": ["phishing"]});
    for (subject, body) in [
        ("$mq9.AI.AGENT.REGISTER", hijack),
        ("$mq9.AI.AGENT.UNREGISTER", json!({"name": "translator"})),
        (
            "$mq9.AI.AGENT.REPORT",
            json!({"name": "translator", "load": 0}),
        ),
    ] {
        let reply = request(&mallory, subject, body).await;
        assert_error_says(&reply, "forbidden", "another identity");
    }
    let found = env
        .request("$mq9.AI.AGENT.DISCOVER", r#"{"text":"translator"}"#)
        .await;
    assert_eq!(found["agents"], json!([card]), "alice's card is untouched");

    // Its owner keeps full control.
    let report = env
        .request("$mq9.AI.AGENT.REPORT", r#"{"name":"translator","load":1}"#)
        .await;
    assert_eq!(report["error"], "", "{report}");
    let gone = env
        .request("$mq9.AI.AGENT.UNREGISTER", r#"{"name":"translator"}"#)
        .await;
    assert_eq!(gone["error"], "", "{gone}");
    // A freed name can be taken by anyone.
    let taken = request(
        &mallory,
        "$mq9.AI.AGENT.REGISTER",
        json!({"name": "translator"}),
    )
    .await;
    assert_eq!(taken["error"], "", "{taken}");
}

#[tokio::test]
async fn ownership_survives_a_broker_restart() {
    let mut env = start(&[]).await;
    let ok = env
        .request("$mq9.AI.AGENT.REGISTER", r#"{"name":"planner"}"#)
        .await;
    assert_eq!(ok["error"], "", "{ok}");
    env.restart_broker().await;
    let mallory = connect(&env, "mallory").await;
    let reply = request(
        &mallory,
        "$mq9.AI.AGENT.UNREGISTER",
        json!({"name": "planner"}),
    )
    .await;
    assert_error(&reply, "forbidden");
}

#[tokio::test]
async fn each_identity_holds_a_bounded_number_of_entries() {
    let env = start(&["--max-agents-per-identity", "2"]).await;
    for name in ["a1", "a2"] {
        let ok = env
            .request("$mq9.AI.AGENT.REGISTER", &json!({"name": name}).to_string())
            .await;
        assert_eq!(ok["error"], "", "{ok}");
    }
    let third = env
        .request("$mq9.AI.AGENT.REGISTER", r#"{"name":"a3"}"#)
        .await;
    assert_error_says(&third, "full", "2 agent entries");
    // Re-registering an entry it holds is not a new entry; others are not affected.
    let again = env
        .request("$mq9.AI.AGENT.REGISTER", r#"{"name":"a1","v":2}"#)
        .await;
    assert_eq!(again["error"], "", "{again}");
    let mallory = connect(&env, "mallory").await;
    let theirs = request(&mallory, "$mq9.AI.AGENT.REGISTER", json!({"name": "m1"})).await;
    assert_eq!(theirs["error"], "", "{theirs}");
}

#[tokio::test]
async fn a_huge_card_is_refused() {
    let env = start(&["--max-card-bytes", "1024"]).await;
    let card = json!({"name": "big", "blob": "x".repeat(2000)});
    let reply = env
        .request("$mq9.AI.AGENT.REGISTER", &card.to_string())
        .await;
    assert_error_says(&reply, "too_large", "1024");
}

#[tokio::test]
async fn stored_messages_carry_the_sender_nats_server_names() {
    let env = start(&[]).await;
    let mallory = connect(&env, "mallory").await;
    let inbox = env.create(json!({})).await;
    let mut headers = HeaderMap::new();
    headers.insert("mq9-sender", "alice");
    headers.insert("Nats-Request-Info", r#"{"acc":"TEAM","user":"alice"}"#);
    headers.insert("trace-id", "t1");
    let reply = mallory
        .request_with_headers(format!("$mq9.AI.MSG.SEND.{inbox}"), headers, "hi".into())
        .await
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["error"], "", "{reply}");
    let stored = messages(&env.fetch(&inbox, json!({})).await);
    assert_eq!(
        stored[0]["headers"],
        json!({"mq9-sender": "mallory", "trace-id": "t1"}),
        "the sender is who nats-server says, and its request info is not stored"
    );
}

#[tokio::test]
async fn without_trust_the_request_info_header_is_ignored() {
    let env = Env::start().await;
    let inbox = env.create(json!({})).await;
    env.send_ok(
        &inbox,
        b"hi",
        &[
            ("Nats-Request-Info", r#"{"acc":"AX","user":"UFORGED"}"#),
            ("mq9-sender", "forged"),
        ],
    )
    .await;
    let stored = messages(&env.fetch(&inbox, json!({})).await);
    assert_eq!(stored[0]["headers"], json!({}), "no identity without auth");
    let card = json!({"name": "x"}).to_string();
    assert_eq!(
        env.request("$mq9.AI.AGENT.REGISTER", &card).await["error"],
        ""
    );
    let other = async_nats::connect(env.nats.url()).await.unwrap();
    let gone = request(&other, "$mq9.AI.AGENT.UNREGISTER", json!({"name": "x"})).await;
    assert_eq!(
        gone["error"], "",
        "anonymous callers share anonymous entries, as before"
    );
}

/// Durable broadcast topics belong to tenants: a subscription made for one account (as the
/// operator makes them, with the mailbox's namespace account) stores only that account's
/// publishes, however the other tenant names its topic; one made without an account (no auth)
/// stores everyone's.
#[tokio::test]
async fn durable_broadcasts_stay_within_the_publishers_tenant() {
    let mut env = start(&[]).await;
    let admin = connect(&env, "admin").await;
    let team_box = env.create(json!({})).await;
    let other_box = env.create(json!({})).await;
    let open_box = env.create(json!({})).await;
    for (address, account) in [
        (&team_box, Some("TEAM")),
        (&other_box, Some("OTHER")),
        (&open_box, None),
    ] {
        let mut body = json!({"mail_address": address, "topic": "tasks.*"});
        if let Some(account) = account {
            body["account"] = json!(account);
        }
        let reply = request(&admin, "$mq9.AI.MAILBOX.SUBSCRIBE", body).await;
        assert_eq!(reply["error"], "", "{reply}");
    }
    let oscar = connect(&env, "oscar").await;
    for (client, text) in [(&env.client, "from team"), (&oscar, "from other")] {
        client
            .publish("$mq9.AI.BROADCAST.tasks.new", text.into())
            .await
            .unwrap();
        client.flush().await.unwrap();
    }
    wait_until("the open subscription stored both publishes", || async {
        texts(&env.query(&open_box, json!({})).await).len() == 2
    })
    .await;
    assert_eq!(texts(&env.query(&team_box, json!({})).await), ["from team"]);
    assert_eq!(
        texts(&env.query(&other_box, json!({})).await),
        ["from other"]
    );
    let stored = messages(&env.query(&team_box, json!({})).await);
    assert_eq!(
        stored[0]["headers"]["mq9-sender"], "alice",
        "the publisher is named"
    );

    // The subscriptions' accounts are stored: a restarted broker scopes them the same way.
    env.restart_broker().await;
    oscar
        .publish("$mq9.AI.BROADCAST.tasks.new", "again".into())
        .await
        .unwrap();
    oscar.flush().await.unwrap();
    wait_until("the open subscription stored the third publish", || async {
        texts(&env.query(&open_box, json!({})).await).len() == 3
    })
    .await;
    assert_eq!(texts(&env.query(&team_box, json!({})).await), ["from team"]);
    assert_eq!(
        texts(&env.query(&other_box, json!({})).await),
        ["from other", "again"]
    );
}
