//! The agent registry (protocol.md §3, `$mq9.AI.AGENT.*`): identity, replacement in place,
//! UNREGISTER/REPORT by either field, heartbeat expiry, DISCOVER's exact cards, ranked search,
//! paging, bad input and persistence across a broker restart.
mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// REGISTER with a raw body; returns the reply.
async fn register(env: &Env, card: &str) -> Value {
    env.request("$mq9.AI.AGENT.REGISTER", card).await
}

/// REGISTER expecting `{"error":""}`.
async fn register_ok(env: &Env, card: &str) {
    assert_eq!(register(env, card).await, json!({"error": ""}), "{card}");
}

/// An AGENT.{verb} request with a JSON body.
async fn agent(env: &Env, verb: &str, body: Value) -> Value {
    env.request(&format!("$mq9.AI.AGENT.{verb}"), &body.to_string())
        .await
}

/// The raw bytes of a DISCOVER reply.
async fn discover_raw(env: &Env, body: &str) -> String {
    let reply = env.request_raw("$mq9.AI.AGENT.DISCOVER", body).await;
    String::from_utf8(reply.payload.to_vec()).unwrap()
}

/// The `name` (else `mailbox`) of each card DISCOVER returns, in reply order.
async fn discover_ids(env: &Env, body: Value) -> Vec<String> {
    let reply = agent(env, "DISCOVER", body).await;
    assert_eq!(reply["error"], "", "discover failed: {reply}");
    reply["agents"]
        .as_array()
        .expect("agents array")
        .iter()
        .map(|card| {
            card.get("name")
                .or_else(|| card.get("mailbox"))
                .and_then(Value::as_str)
                .expect("card has name or mailbox")
                .to_owned()
        })
        .collect()
}

/// Whether DISCOVER lists an agent of this name.
async fn listed(env: &Env, name: &str) -> bool {
    discover_ids(env, json!({"limit": 1000}))
        .await
        .iter()
        .any(|n| n == name)
}

/// The expected DISCOVER reply for these raw cards.
fn agents_reply(cards: &[&str]) -> String {
    format!("{{\"error\":\"\",\"agents\":[{}]}}", cards.join(","))
}

const CARD_A: &str = r#"{"name":"zeta","mailbox":"inbox.zeta","version":"1.0.0","skills":[{"id":"fr-en","tags":["french","translation"],"examples":[]}],"meta":{"z":1,"a":null,"pi":3.25,"ok":true}}"#;
const CARD_B: &str = r#"{"mailbox":"only.a.mailbox","b":false,"a":[1,[2,{"x":"y"}]]}"#;
const CARD_C: &str = r#"{"url":"http://agent.example/a2a","name":"alpha","description":"Ünïcødé ✓ \"quoted\" \\ back"}"#;

#[tokio::test]
async fn discover_returns_every_card_byte_exact_in_registration_order() {
    let env = Env::start().await;
    assert_eq!(discover_raw(&env, "").await, agents_reply(&[]));
    for card in [CARD_A, CARD_B, CARD_C] {
        register_ok(&env, card).await;
    }
    let expected = agents_reply(&[CARD_A, CARD_B, CARD_C]);
    assert_eq!(discover_raw(&env, "").await, expected);
    assert_eq!(discover_raw(&env, "{}").await, expected);
    // Surrounding whitespace is not part of the card.
    register_ok(&env, &format!("\n  {CARD_C}  \n")).await;
    assert_eq!(discover_raw(&env, "{}").await, expected);
}

#[tokio::test]
async fn identity_is_the_name_else_the_mailbox_and_registering_again_replaces_in_place() {
    let env = Env::start().await;
    let a1 = r#"{"name":"a","mailbox":"box.a","note":"original"}"#;
    let b1 = r#"{"mailbox":"box.b","v":1}"#;
    let c1 = r#"{"name":"c","v":1}"#;
    for card in [a1, b1, c1] {
        register_ok(&env, card).await;
    }
    // Same name, another mailbox: the same agent.
    let a2 = r#"{"name":"a","mailbox":"box.a2","extra":{"k":["replacement"]}}"#;
    register_ok(&env, a2).await;
    // No name: the mailbox is the identity.
    let b2 = r#"{"mailbox":"box.b","v":2}"#;
    register_ok(&env, b2).await;
    assert_eq!(discover_raw(&env, "{}").await, agents_reply(&[a2, b2, c1]));
    // A new name with a known mailbox is a new agent, registered last.
    let d = r#"{"name":"d","mailbox":"box.x"}"#;
    register_ok(&env, d).await;
    assert_eq!(
        discover_raw(&env, "{}").await,
        agents_reply(&[a2, b2, c1, d])
    );
    // The replaced card is gone from search too; the new one is found.
    assert!(discover_ids(&env, json!({"text": "original"}))
        .await
        .is_empty());
    assert_eq!(
        discover_ids(&env, json!({"text": "replacement"})).await,
        ["a"]
    );
    // Lookups by mailbox follow the replacement.
    assert_eq!(
        agent(&env, "REPORT", json!({"mailbox": "box.a2"})).await,
        json!({"error": ""})
    );
    assert_error(
        &agent(&env, "REPORT", json!({"mailbox": "box.a"})).await,
        "not_found",
    );
}

#[tokio::test]
async fn unregister_and_report_find_the_agent_by_name_or_by_mailbox() {
    let env = Env::start().await;
    let a = r#"{"name":"a","mailbox":"box.a"}"#;
    let b = r#"{"name":"b","mailbox":"box.b"}"#;
    let c = r#"{"mailbox":"box.c"}"#;
    for card in [a, b, c] {
        register_ok(&env, card).await;
    }
    let ok = json!({"error": ""});
    for lookup in [
        json!({"mailbox": "box.a", "status": "busy"}),
        json!({"name": "b", "load": 0.5}),
        json!({"mailbox": "box.c"}),
    ] {
        assert_eq!(agent(&env, "REPORT", lookup).await, ok);
    }
    // REPORT stores a status; DISCOVER still returns the cards as registered.
    assert_eq!(discover_raw(&env, "{}").await, agents_reply(&[a, b, c]));
    assert_eq!(
        agent(&env, "UNREGISTER", json!({"mailbox": "box.a"})).await,
        ok
    );
    assert_eq!(agent(&env, "UNREGISTER", json!({"name": "b"})).await, ok);
    assert_eq!(discover_raw(&env, "{}").await, agents_reply(&[c]));
    for (verb, lookup) in [
        ("UNREGISTER", json!({"name": "b"})),
        ("UNREGISTER", json!({"mailbox": "box.a"})),
        ("REPORT", json!({"name": "a"})),
        ("REPORT", json!({"mailbox": "ghost"})),
    ] {
        assert_error_says(
            &agent(&env, verb, lookup).await,
            "not_found",
            "agent not found",
        );
    }
    assert_eq!(
        agent(&env, "UNREGISTER", json!({"mailbox": "box.c"})).await,
        ok
    );
    assert_eq!(discover_raw(&env, "{}").await, agents_reply(&[]));
}

#[tokio::test]
async fn bad_requests_name_the_field_and_change_nothing() {
    let env = Env::start().await;
    for (body, field) in [
        (r#"{"desc":"no identity"}"#, "name"),
        (r#"{"name":"","mailbox":""}"#, "mailbox"),
        (r#"{"name":7}"#, "name"),
        (r#"{"mailbox":["m"]}"#, "mailbox"),
        (r#"{"name":"a","ttl":"soon"}"#, "ttl"),
        (r#"["name","a"]"#, "object"),
        (r#"{"name":"a""#, "JSON"),
    ] {
        assert_error_says(&register(&env, body).await, "bad_request", field);
    }
    for verb in ["UNREGISTER", "REPORT"] {
        assert_error_says(&agent(&env, verb, json!({})).await, "bad_request", "name");
    }
    for (body, field) in [
        (json!({"limit": 0}), "limit"),
        (json!({"limit": 1001}), "limit"),
        (json!({"limit": "5"}), "limit"),
        (json!({"page": 0}), "page"),
        (json!({"page": -1}), "page"),
        (json!({"text": 5}), "text"),
        (json!({"text": ["a"]}), "text"),
        (json!({"semantic": {"q": 1}}), "semantic"),
    ] {
        assert_error_says(&agent(&env, "DISCOVER", body).await, "bad_request", field);
    }
    assert_eq!(discover_raw(&env, "{}").await, agents_reply(&[]));
}

#[tokio::test]
async fn text_and_semantic_search_rank_the_more_relevant_card_first() {
    let env = Env::start().await;
    for card in [
        r#"{"name":"weather","description":"weather forecast for any city"}"#,
        r#"{"name":"painter","description":"paints images, has a french accent in its docs and many other words here"}"#,
        r#"{"name":"translator","description":"French to English translation","skills":[{"id":"translation","tags":["french"]}]}"#,
        r#"{"name":"numbers","french":42,"translation":true}"#,
    ] {
        register_ok(&env, card).await;
    }
    for field in ["text", "semantic"] {
        assert_eq!(
            discover_ids(&env, json!({field: "french translation"})).await,
            ["translator", "painter"],
            "{field} search ranks by relevance over string values only"
        );
        assert_eq!(
            discover_ids(&env, json!({field: "FORECAST"})).await,
            ["weather"]
        );
        assert!(discover_ids(&env, json!({field: "submarine"}))
            .await
            .is_empty());
    }
}

#[tokio::test]
async fn limit_and_page_split_the_listing_and_the_search() {
    let env = Env::start().await;
    for i in 0..25 {
        register_ok(&env, &format!(r#"{{"name":"n{i:02}","role":"worker"}}"#)).await;
    }
    let names = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|i| format!("n{i:02}")).collect()
    };
    for query in [
        json!({}),
        json!({"text": "worker"}),
        json!({"semantic": "worker"}),
    ] {
        let with = |extra: Value| {
            let mut body = query.clone();
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            body
        };
        assert_eq!(
            discover_ids(&env, query.clone()).await,
            names(0..20),
            "{query}"
        );
        assert_eq!(
            discover_ids(&env, with(json!({"page": 2}))).await,
            names(20..25)
        );
        assert_eq!(
            discover_ids(&env, with(json!({"limit": 2, "page": 3}))).await,
            names(4..6)
        );
        assert_eq!(
            discover_ids(&env, with(json!({"limit": 10, "page": 3}))).await,
            names(20..25)
        );
        assert!(discover_ids(&env, with(json!({"limit": 5, "page": 6})))
            .await
            .is_empty());
        assert_eq!(
            discover_ids(&env, with(json!({"limit": 1000}))).await,
            names(0..25)
        );
    }
}

#[tokio::test]
async fn reports_keep_a_ttl_entry_alive_and_it_expires_once_they_stop() {
    let env = Env::start().await;
    register_ok(&env, r#"{"name":"forever"}"#).await;
    register_ok(&env, r#"{"name":"silent","ttl":1}"#).await;
    let registered = Instant::now();
    register_ok(&env, r#"{"name":"beating","mailbox":"box.beat","ttl":2}"#).await;
    wait_until("the unreported ttl entry expires", || async {
        !listed(&env, "silent").await
    })
    .await;
    // Heartbeats every 0.7 s, by name and by mailbox, for well past the 2 s ttl.
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let lookup = if i % 2 == 0 {
            json!({"name": "beating", "status": "ok"})
        } else {
            json!({"mailbox": "box.beat", "status": "ok"})
        };
        assert_eq!(agent(&env, "REPORT", lookup).await, json!({"error": ""}));
        assert!(listed(&env, "beating").await, "alive after heartbeat {i}");
    }
    assert!(registered.elapsed() > Duration::from_secs(4));
    let stopped = Instant::now();
    wait_until("the entry expires once heartbeats stop", || async {
        !listed(&env, "beating").await
    })
    .await;
    assert!(
        stopped.elapsed() > Duration::from_millis(1500),
        "expired {:?} after the last report, ttl is 2 s",
        stopped.elapsed()
    );
    assert_eq!(discover_ids(&env, json!({})).await, ["forever"]);
    assert_error_says(
        &agent(&env, "REPORT", json!({"name": "beating"})).await,
        "not_found",
        "agent not found",
    );
}

#[tokio::test]
async fn the_registry_survives_a_restart_and_ttl_entries_keep_their_expiry() {
    let mut env = Env::start().await;
    let a = r#"{"name":"a","mailbox":"box.a","skills":[{"id":"s1"}]}"#;
    let gone = r#"{"name":"gone"}"#;
    let b = r#"{"mailbox":"box.b","desc":"durable mailbox agent"}"#;
    let temp = r#"{"name":"temp","ttl":5}"#;
    for card in [a, gone, b, temp] {
        register_ok(&env, card).await;
    }
    let registered = Instant::now();
    assert_eq!(
        agent(&env, "UNREGISTER", json!({"name": "gone"})).await,
        json!({"error": ""})
    );
    // Let part of temp's ttl pass, so that a restart that reset it would be seen.
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.restart_broker().await;
    assert_eq!(discover_raw(&env, "{}").await, agents_reply(&[a, b, temp]));
    assert_eq!(
        discover_ids(&env, json!({"text": "durable"})).await,
        ["box.b"],
        "the search index is rebuilt"
    );
    // Order and identities survive: re-registering replaces in place, new entries go last.
    let a2 = r#"{"name":"a","v":2}"#;
    let c = r#"{"name":"c"}"#;
    register_ok(&env, a2).await;
    register_ok(&env, c).await;
    assert_eq!(
        agent(&env, "REPORT", json!({"mailbox": "box.b"})).await,
        json!({"error": ""})
    );
    wait_until("temp expires after restart", || async {
        !listed(&env, "temp").await
    })
    .await;
    let lived = registered.elapsed();
    assert!(
        lived < Duration::from_millis(6500),
        "temp lived {lived:?}: its 5 s ttl restarted with the broker"
    );
    assert_eq!(discover_raw(&env, "{}").await, agents_reply(&[a2, b, c]));
}
