//! The official SDKs' wire shapes (protocol.md §1, §3): each request as an SDK sends it gets a
//! reply the SDK decodes.
mod support;

use base64::Engine as _;
use serde_json::{json, Value};
use support::*;

/// The keys of a JSON object, in order.
fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// FETCH with a raw body, as an SDK serializes it.
async fn fetch_raw(env: &Env, address: &str, body: &str) -> Value {
    env.request(&format!("$mq9.AI.MSG.FETCH.{address}"), body)
        .await
}

/// The Go and JavaScript SDKs' FETCH body.
fn sdk_fetch_body(group: &str, num_msgs: u32) -> String {
    format!(
        r#"{{"group_name":"{group}","deliver":"earliest","from_time":0,"from_id":0,"force_deliver":false,"config":{{"num_msgs":{num_msgs},"max_wait_ms":500}}}}"#
    )
}

#[tokio::test]
async fn go_and_js_fetch_bodies_work_stateless_and_with_a_group() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_ok(&address, b"n", &[]).await;
    env.send_ok(&address, b"u", &[("mq9-priority", "urgent")])
        .await;
    env.send_ok(&address, b"l", &[("mq9-priority", "notify")])
        .await;
    let stateless = sdk_fetch_body("", 10);
    for _ in 0..2 {
        let reply = fetch_raw(&env, &address, &stateless).await;
        assert_eq!(keys(&reply), ["error", "messages"]);
        assert_eq!(texts(&reply), ["u", "n", "l"], "stateless: same every time");
        let item = &messages(&reply)[0];
        assert_eq!(
            keys(item),
            [
                "msg_id",
                "payload",
                "priority",
                "create_time",
                "delivery_count",
                "headers"
            ]
        );
        assert_eq!(item["headers"], json!({}));
    }
    let grouped = sdk_fetch_body("workers", 2);
    let first = fetch_raw(&env, &address, &grouped).await;
    assert_eq!(texts(&first), ["u", "n"]);
    assert_eq!(texts(&fetch_raw(&env, &address, &grouped).await), ["l"]);
    // The SDKs' ACK carries the address in the body too.
    for msg_id in ids(&first) {
        let body = json!({"group_name": "workers", "msg_id": msg_id, "mail_address": address});
        let reply = env
            .request(&format!("$mq9.AI.MSG.ACK.{address}"), &body.to_string())
            .await;
        assert_eq!(reply, json!({"error": ""}));
    }
    // Acked messages never come back; the unacked one is still leased.
    assert!(texts(&fetch_raw(&env, &address, &grouped).await).is_empty());
}

#[tokio::test]
async fn delete_accepts_every_sdk_body() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_many(&address, 3).await;
    // Python sends the JSON string "", Rust and JavaScript `{}`, Go nothing.
    for (msg_id, body) in [(0, r#""""#), (1, "{}"), (2, "")] {
        let reply = env
            .request(&format!("$mq9.AI.MSG.DELETE.{address}.{msg_id}"), body)
            .await;
        assert_eq!(
            reply,
            json!({"error": "", "deleted": true}),
            "body {body:?}"
        );
    }
    assert!(env.query_ids(&address).await.is_empty());
}

#[tokio::test]
async fn create_with_ttl_zero_never_expires() {
    let env = Env::start().await;
    for body in [
        json!({"ttl": 0}),
        json!({"name": "sdk.forever", "ttl": 0, "type": "standard", "desc": ""}),
    ] {
        let reply = env
            .request("$mq9.AI.MAILBOX.CREATE", &body.to_string())
            .await;
        assert_eq!(
            keys(&reply),
            [
                "error",
                "mail_address",
                "mail_id",
                "type",
                "ttl",
                "expires_at"
            ]
        );
        assert_eq!(reply["error"], "");
        assert_eq!(reply["mail_id"], reply["mail_address"]);
        assert_eq!(
            (&reply["ttl"], &reply["expires_at"]),
            (&json!(0), &json!(0))
        );
        assert_eq!(reply["type"], "standard");
    }
}

#[tokio::test]
async fn sends_without_headers_are_normal_and_headers_are_read_case_insensitively() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    let plain = env.send(&address, b"plain", &[]).await;
    assert_eq!(plain, json!({"error": "", "msg_id": 0}));
    env.send_ok(&address, b"loud", &[("MQ9-Priority", "critical")])
        .await;
    env.send_ok(
        &address,
        b"tagged",
        &[("mq9-tags", "a,b"), ("mq9-key", "k")],
    )
    .await;
    let reply = env.query(&address, json!({})).await;
    let items = messages(&reply);
    let fields: Vec<(&str, &Value)> = items
        .iter()
        .map(|m| (m["priority"].as_str().unwrap(), &m["headers"]))
        .collect();
    assert_eq!(
        fields,
        [
            ("normal", &json!({})),
            ("critical", &json!({})),
            ("normal", &json!({}))
        ]
    );
    assert_eq!(
        (&items[2]["key"], &items[2]["tags"]),
        (&json!("k"), &json!(["a", "b"]))
    );
    assert!(items[0].get("key").is_none() && items[0].get("tags").is_none());
}

#[tokio::test]
async fn registry_calls_as_the_sdks_make_them() {
    let env = Env::start().await;
    let mailbox = env.create(json!({"ttl": 3600})).await;
    let card = json!({"name": "sdk.agent", "mailbox": mailbox, "description": "summarizes text"});
    let ok = json!({"error": ""});
    assert_eq!(
        env.request("$mq9.AI.AGENT.REGISTER", &card.to_string())
            .await,
        ok
    );
    let by_mailbox = json!({"mailbox": mailbox}).to_string();
    assert_eq!(env.request("$mq9.AI.AGENT.REPORT", &by_mailbox).await, ok);
    for body in [
        r#"{"limit":20,"page":1}"#,
        r#"{"text":"summarizes","limit":20,"page":1}"#,
        r#"{"semantic":"summarizes","limit":20,"page":1}"#,
        r#"{"text":null,"semantic":null,"limit":20,"page":1}"#,
        "",
    ] {
        let reply = env.request("$mq9.AI.AGENT.DISCOVER", body).await;
        assert_eq!(reply, json!({"error": "", "agents": [card]}), "{body:?}");
    }
    assert_eq!(
        env.request("$mq9.AI.AGENT.UNREGISTER", &by_mailbox).await,
        ok
    );
    let reply = env
        .request("$mq9.AI.AGENT.DISCOVER", r#"{"limit":20,"page":1}"#)
        .await;
    assert_eq!(reply, json!({"error": "", "agents": []}));
}

#[tokio::test]
async fn binary_payloads_read_back_byte_exact_with_standard_base64() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    let every_byte: Vec<u8> = (0..=255).collect();
    let mut reversed = every_byte.clone();
    reversed.reverse();
    let payloads: Vec<Vec<u8>> = vec![every_byte, Vec::new(), vec![0xff], reversed, vec![0, 0]];
    for p in &payloads {
        env.send_ok(&address, p, &[]).await;
    }
    // The original design's send path too.
    assert_eq!(
        env.inbox(&address, "normal", &payloads[0]).await["msg_id"],
        5
    );
    let mut expected = payloads.clone();
    expected.push(payloads[0].clone());
    let standard = base64::engine::general_purpose::STANDARD;
    for reply in [
        env.fetch(&address, json!({})).await,
        env.query(&address, json!({})).await,
        env.mailbox_query(&address, json!({})).await,
    ] {
        let items = messages(&reply);
        let got: Vec<Vec<u8>> = items.iter().map(payload).collect();
        assert_eq!(got, expected);
        for (item, bytes) in items.iter().zip(&expected) {
            assert_eq!(
                item["payload"],
                standard.encode(bytes),
                "padded standard base64"
            );
        }
    }
}
