//! The operator's API (protocol.md §6, `$mq9.ADMIN.>`): ENSURE, DELETE, INFO, LIST, STATS,
//! SHARDS.
mod support;

use serde_json::{json, Value};
use support::*;

/// An admin request with a JSON body.
async fn admin(env: &Env, verb: &str, body: Value) -> Value {
    env.request(&format!("$mq9.ADMIN.{verb}"), &body.to_string())
        .await
}

async fn ensure(env: &Env, body: Value) -> Value {
    admin(env, "MAILBOX.ENSURE", body).await
}

async fn info(env: &Env, name: &str) -> Value {
    admin(env, "MAILBOX.INFO", json!({"name": name})).await
}

/// The names of one LIST page and its `more` flag.
async fn list(env: &Env, body: Value) -> (Vec<String>, bool) {
    let reply = admin(env, "MAILBOX.LIST", body).await;
    assert_eq!(reply["error"], "", "{reply}");
    let names = reply["mailboxes"]
        .as_array()
        .expect("mailboxes array")
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    (names, reply["more"].as_bool().expect("more flag"))
}

/// Asserts a time in Unix seconds is `expected`, give or take the test's own runtime.
fn assert_about(actual: &Value, expected: u64, what: &str) {
    let actual = actual
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: {actual}"));
    assert!(
        actual + 2 >= expected && actual <= expected + 2,
        "{what}: {actual}, expected about {expected}"
    );
}

#[tokio::test]
async fn ensure_creates_then_confirms_for_the_same_owner_and_refuses_another() {
    let env = Env::start().await;
    let body =
        json!({"name": "orders.a1", "ttl": 60, "type": "latest", "owner": "uid-1", "desc": "d"});
    let created = ensure(&env, body.clone()).await;
    assert_eq!(created["error"], "", "{created}");
    assert_eq!(created["created"], true);
    let mailbox = created["mailbox"].clone();
    assert_about(&mailbox["expires_at"], now_secs() + 60, "expires_at");
    assert_about(&mailbox["created_at"], now_secs(), "created_at");
    let mut expected = json!({
        "name": "orders.a1", "type": "latest", "ttl": 60,
        "expires_at": mailbox["expires_at"], "created_at": mailbox["created_at"],
        "owner": "uid-1", "messages": 0, "delayed": 0, "bytes": 0, "groups": 0,
        "subscriptions": [],
    });
    assert_eq!(mailbox, expected);
    // Agents use it like any mailbox; the agent's CREATE finds it taken.
    env.send_ok("orders.a1", b"hello", &[]).await;
    assert_error(
        &env.request("$mq9.AI.MAILBOX.CREATE", r#"{"name":"orders.a1"}"#)
            .await,
        "already_exists",
    );
    // Ensuring again confirms it unchanged, whatever else the request asks.
    let again = ensure(
        &env,
        json!({"name": "orders.a1", "ttl": 5, "owner": "uid-1"}),
    )
    .await;
    expected["messages"] = json!(1);
    expected["bytes"] = json!(5);
    assert_eq!(
        again,
        json!({"error": "", "created": false, "mailbox": expected})
    );
    for other in [json!("uid-2"), json!(null), json!("")] {
        let reply = ensure(&env, json!({"name": "orders.a1", "owner": other})).await;
        assert_error_says(&reply, "conflict", "orders.a1");
    }
    assert_eq!(
        env.query_ids("orders.a1").await,
        [0],
        "nothing was replaced"
    );
}

#[tokio::test]
async fn ensure_conflicts_with_a_mailbox_an_agent_created() {
    let env = Env::start().await;
    let name = env.create(json!({"name": "agent.box", "ttl": 3600})).await;
    env.send_ok(&name, b"mine", &[]).await;
    let reply = ensure(&env, json!({"name": name, "ttl": 3600, "owner": "uid-9"})).await;
    assert_error_says(&reply, "conflict", "agent.box");
    assert_eq!(texts(&env.query(&name, json!({})).await), ["mine"]);
    assert_eq!(info(&env, &name).await["owner"], Value::Null);
}

#[tokio::test]
async fn ensure_with_expires_at_keeps_that_expiry() {
    let env = Env::start().await;
    let at = now_secs() + 500;
    let reply = ensure(
        &env,
        json!({"name": "restored", "ttl": 3600, "expires_at": at}),
    )
    .await;
    assert_eq!(reply["created"], true, "{reply}");
    assert_eq!(reply["mailbox"]["expires_at"], at);
    assert_eq!(info(&env, "restored").await["expires_at"], at);
    for past in [now_secs() - 10, 1] {
        let reply = ensure(&env, json!({"name": "late", "expires_at": past})).await;
        assert_error_says(&reply, "bad_request", "expires_at");
    }
    assert_eq!(
        info(&env, "late").await,
        json!({"error": "", "exists": false})
    );
    // A near expiry is honoured like a ttl.
    let soon = ensure(&env, json!({"name": "soon", "expires_at": now_secs() + 2})).await;
    assert_eq!(soon["created"], true, "{soon}");
    env.wait_gone("soon").await;
    assert_eq!(info(&env, "soon").await["exists"], false);
}

#[tokio::test]
async fn delete_is_idempotent_and_a_recreated_mailbox_starts_empty() {
    let env = Env::start().await;
    ensure(&env, json!({"name": "doomed", "owner": "o"})).await;
    env.send_ok("doomed", b"x", &[]).await;
    let delete = || admin(&env, "MAILBOX.DELETE", json!({"name": "doomed"}));
    assert_eq!(delete().await, json!({"error": "", "deleted": true}));
    assert_eq!(delete().await, json!({"error": "", "deleted": false}));
    assert_eq!(
        info(&env, "doomed").await,
        json!({"error": "", "exists": false})
    );
    assert_error(&env.send("doomed", b"y", &[]).await, "not_found");
    assert_error_says(
        &admin(&env, "MAILBOX.DELETE", json!({})).await,
        "bad_request",
        "name",
    );
    assert_error_says(
        &admin(&env, "MAILBOX.INFO", json!({"name": "Bad Name"})).await,
        "bad_request",
        "name",
    );
    let again = ensure(&env, json!({"name": "doomed", "owner": "o"})).await;
    assert_eq!(
        (&again["created"], &again["mailbox"]["messages"]),
        (&json!(true), &json!(0))
    );
    assert!(env.query_ids("doomed").await.is_empty());
}

#[tokio::test]
async fn info_counts_messages_bytes_groups_and_subscriptions() {
    let env = Env::start().await;
    let name = env.create(json!({"name": "busy.box", "ttl": 3600})).await;
    for size in [1, 10, 100] {
        env.send_ok(&name, &vec![b'x'; size], &[]).await;
    }
    env.send_ok(&name, b"later", &[("mq9-delay", "600")]).await;
    for group in ["g1", "g2"] {
        env.fetch(&name, json!({"group_name": group})).await;
    }
    for topic in ["a.b", "c.*"] {
        let body = json!({"mail_address": name, "topic": topic}).to_string();
        let reply = env.request("$mq9.AI.MAILBOX.SUBSCRIBE", &body).await;
        assert_eq!(reply, json!({"error": ""}));
    }
    let reply = info(&env, &name).await;
    assert_about(&reply["expires_at"], now_secs() + 3600, "expires_at");
    assert_eq!(
        reply,
        json!({
            "error": "", "exists": true, "name": name, "type": "standard", "ttl": 3600,
            "expires_at": reply["expires_at"], "created_at": reply["created_at"],
            "owner": null, "messages": 3, "delayed": 1, "bytes": 116, "groups": 2,
            "subscriptions": ["a.b", "c.*"],
        })
    );
    assert_eq!(env.delete(&name, 2).await["deleted"], true);
    let reply = info(&env, &name).await;
    assert_eq!(
        (&reply["messages"], &reply["bytes"]),
        (&json!(2), &json!(16))
    );
}

#[tokio::test]
async fn list_pages_through_live_mailboxes_in_name_order() {
    let env = Env::start().await;
    env.create(json!({"name": "a.expired", "ttl": 1})).await;
    for name in ["b.2", "a.3", "c", "a.1", "b.1", "a.2"] {
        env.create(json!({"name": name, "ttl": 0})).await;
    }
    ensure(
        &env,
        json!({"name": "a.0", "owner": "op", "ttl": 60, "type": "latest"}),
    )
    .await;
    env.send_ok("a.0", b"status", &[]).await;
    env.wait_gone("a.expired").await;
    let all = ["a.0", "a.1", "a.2", "a.3", "b.1", "b.2", "c"];
    assert_eq!(list(&env, json!({})).await, (strings(&all), false));
    let reply = admin(&env, "MAILBOX.LIST", json!({"limit": 1})).await;
    let entry = &reply["mailboxes"][0];
    assert_about(&entry["expires_at"], now_secs() + 60, "expires_at");
    assert_eq!(
        reply,
        json!({"error": "", "more": true, "next_after": "a.0", "mailboxes": [{"name": "a.0",
            "type": "latest", "ttl": 60, "expires_at": entry["expires_at"], "owner": "op",
            "messages": 1}]})
    );
    for (body, names, more) in [
        (json!({"limit": 2}), &all[..2], true),
        (json!({"limit": 2, "after": "a.1"}), &all[2..4], true),
        (json!({"limit": 2, "after": "b.1"}), &all[5..], false),
        (json!({"after": "c"}), &[][..], false),
        (json!({"prefix": "a."}), &all[..4], false),
        (json!({"prefix": "a.", "limit": 3}), &all[..3], true),
        (
            json!({"prefix": "a.", "after": "a.1", "limit": 2}),
            &all[2..4],
            false,
        ),
        (json!({"prefix": "b", "after": "a.9"}), &all[4..6], false),
        (json!({"prefix": "zz"}), &[][..], false),
    ] {
        assert_eq!(
            list(&env, body.clone()).await,
            (strings(names), more),
            "{body}"
        );
    }
    // Following `more` and `after` visits every mailbox once.
    let (mut seen, mut after) = (Vec::new(), String::new());
    loop {
        let (page, more) = list(&env, json!({"limit": 3, "after": after})).await;
        seen.extend(page);
        after = seen.last().unwrap().clone();
        if !more {
            break;
        }
    }
    assert_eq!(seen, strings(&all));
    for bad in [
        json!({"limit": 0}),
        json!({"limit": 1001}),
        json!({"prefix": 1}),
    ] {
        let reply = admin(&env, "MAILBOX.LIST", bad.clone()).await;
        assert_error(&reply, "bad_request");
    }
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[tokio::test]
async fn stats_count_what_was_created_and_sent() {
    let env = Env::start().await;
    let stats = || admin(&env, "STATS", json!({}));
    let expect = |mailboxes: u64, messages: u64, bytes: u64, agents: u64, subs: u64| {
        json!({"error": "", "mailboxes": mailboxes, "messages": messages, "bytes": bytes,
            "agents": agents, "subscriptions": subs, "max_payload": 1048576,
            "version": env!("CARGO_PKG_VERSION")})
    };
    assert_eq!(stats().await, expect(0, 0, 0, 0, 0));
    let a = env.create(json!({"ttl": 3600})).await;
    let b = env.create(json!({"ttl": 3600})).await;
    ensure(&env, json!({"name": "c", "owner": "op"})).await;
    env.send_ok(&a, b"12345", &[]).await;
    env.send_ok(&a, b"678", &[]).await;
    env.send_ok(&b, b"9", &[("mq9-delay", "600")]).await;
    env.send_ok("c", b"", &[]).await;
    for card in [r#"{"name":"x"}"#, r#"{"mailbox":"y"}"#] {
        env.request("$mq9.AI.AGENT.REGISTER", card).await;
    }
    for (address, topic) in [(&a, "t.1"), (&a, "t.*"), (&b, "t.1")] {
        let body = json!({"mail_address": address, "topic": topic}).to_string();
        env.request("$mq9.AI.MAILBOX.SUBSCRIBE", &body).await;
    }
    assert_eq!(stats().await, expect(3, 4, 9, 2, 3));
    assert_eq!(env.delete(&a, 0).await["deleted"], true);
    admin(&env, "MAILBOX.DELETE", json!({"name": b})).await;
    env.request("$mq9.AI.AGENT.UNREGISTER", r#"{"name":"x"}"#)
        .await;
    assert_eq!(stats().await, expect(2, 2, 3, 1, 2));
}

/// A single node is one shard it leads itself: the operator's status reads "1/1".
#[tokio::test]
async fn shards_of_a_single_node_is_one_led_shard() {
    let env = Env::start().await;
    assert_eq!(
        admin(&env, "SHARDS", json!({})).await,
        json!({"error": "", "shards": 1, "leaders": {"0": "single"}, "live": ["single"],
               "without_quorum": []})
    );
}

/// Every mailbox of `owner`, following LIST's `next_after` cursor to the end.
async fn owned(env: &Env, owner: &str) -> Vec<String> {
    let (mut names, mut after) = (Vec::new(), String::new());
    loop {
        let reply = admin(env, "MAILBOX.LIST", json!({"owner": owner, "after": after})).await;
        assert_eq!(reply["error"], "", "{reply}");
        let page = reply["mailboxes"].as_array().expect("mailboxes array");
        names.extend(page.iter().map(|m| {
            assert_eq!(m["owner"], owner, "{reply}");
            m["name"].as_str().unwrap().to_owned()
        }));
        match reply["next_after"].as_str() {
            Some(next) if reply["more"] == true => after = next.to_owned(),
            _ => return names,
        }
    }
}

/// The operator finds a Mailbox's mailboxes by its uid when no Secret records the address:
/// LIST by owner returns those and only those, a page of at most `--max-scan` examined records
/// at a time, and an empty owner is refused rather than read as "every mailbox".
#[tokio::test]
async fn list_by_owner_finds_what_ensure_recorded_and_nothing_else() {
    let env = Env::start_with(&["--max-scan", "3"]).await;
    for (name, owner) in [
        ("a.1", "uid-1"),
        ("b.1", "uid-2"),
        ("c.1", "uid-1"),
        ("e.1", "uid-1"),
        ("e.2", "uid-10"),
    ] {
        let reply = ensure(&env, json!({"name": name, "owner": owner})).await;
        assert_eq!(reply["created"], true, "{reply}");
    }
    env.create(json!({"name": "d.1", "ttl": 0})).await;
    // The first page examines a.1, b.1 and c.1 only: the cursor says where to go on.
    let first = admin(&env, "MAILBOX.LIST", json!({"owner": "uid-1"})).await;
    assert_eq!(
        (&first["more"], &first["next_after"]),
        (&json!(true), &json!("c.1")),
        "{first}"
    );
    assert_eq!(owned(&env, "uid-1").await, strings(&["a.1", "c.1", "e.1"]));
    assert_eq!(owned(&env, "uid-2").await, strings(&["b.1"]));
    assert_eq!(owned(&env, "uid-10").await, strings(&["e.2"]));
    assert!(owned(&env, "uid-9").await.is_empty());
    assert!(owned(&env, "uid").await.is_empty(), "owners match whole");
    admin(&env, "MAILBOX.DELETE", json!({"name": "c.1"})).await;
    assert_eq!(owned(&env, "uid-1").await, strings(&["a.1", "e.1"]));
    for bad in [json!(""), json!(1), json!(null)] {
        let body = json!({"owner": bad});
        let reply = admin(&env, "MAILBOX.LIST", body.clone()).await;
        match bad.is_null() {
            // null is "not given", as for every optional field: no filter.
            true => assert_eq!(reply["error"], "", "{reply}"),
            false => assert_error_says(&reply, "bad_request", "owner"),
        }
    }
}
