//! No tenant can hurt another (security.md §6). Each test is an attack by one agent with its own
//! mailbox's rights — filling its mailbox with delayed messages, creating groups, parking
//! long-polls, hiding bytes in headers, forcing huge scans — and checks the bound that stops it.
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// One week, the default `--max-delay`.
const MAX_DELAY: u64 = 7 * 86_400;

async fn admin(env: &Env, verb: &str, body: Value) -> Value {
    env.request(&format!("$mq9.ADMIN.{verb}"), &body.to_string())
        .await
}

/// The pending delayed messages of a mailbox, as QUERY `delayed` lists them.
async fn delayed(env: &Env, address: &str) -> Vec<Value> {
    let reply = env.query(address, json!({"delayed": true})).await;
    assert_eq!(reply["error"], "", "{reply}");
    messages(&reply)
}

/// SEND with `mq9-delay` expecting success; returns the delay_id.
async fn send_delayed(env: &Env, address: &str, payload: &[u8], headers: &[(&str, &str)]) -> u64 {
    let reply = env.send(address, payload, headers).await;
    assert_eq!(reply["msg_id"], -1, "{reply}");
    reply["delay_id"].as_u64().expect("delay_id")
}

async fn delete_delayed(env: &Env, address: &str, delay_id: u64) -> Value {
    env.request(&format!("$mq9.AI.MSG.DELETE.{address}.d{delay_id}"), "")
        .await
}

#[tokio::test]
async fn delayed_messages_cannot_fill_a_mailbox_for_good() {
    let env = Env::start_with(&[
        "--max-messages-per-mailbox",
        "10",
        "--max-delayed-per-mailbox",
        "4",
    ])
    .await;
    let address = env.create(json!({"ttl": 3600})).await;
    // The attack of old: twelve SENDs delayed for a century.
    for _ in 0..12 {
        let reply = env
            .send(&address, b"squat", &[("mq9-delay", "3000000000")])
            .await;
        assert_error_says(&reply, "bad_request", "mq9-delay");
        assert_error_says(&reply, "bad_request", &MAX_DELAY.to_string());
    }
    assert!(delayed(&env, &address).await.is_empty());
    // Allowed delays stop at the per-mailbox count; visible messages keep the rest of the room.
    let mut delay_ids = Vec::new();
    for i in 0..4 {
        let payload = format!("later{i}");
        delay_ids
            .push(send_delayed(&env, &address, payload.as_bytes(), &[("mq9-delay", "3600")]).await);
    }
    let reply = env
        .send(&address, b"one more", &[("mq9-delay", "60")])
        .await;
    assert_error_says(&reply, "full", "4 delayed messages");
    env.send_many(&address, 6).await;
    assert_error(&env.send(&address, b"eleventh", &[]).await, "full");
    let info = admin(&env, "MAILBOX.INFO", json!({"name": address})).await;
    assert_eq!(
        (info["messages"].as_u64(), info["delayed"].as_u64()),
        (Some(6), Some(4)),
        "{info}"
    );

    // The owner sees what holds the room...
    let pending = delayed(&env, &address).await;
    let listed: Vec<u64> = pending
        .iter()
        .map(|m| m["delay_id"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, delay_ids, "in delay_id order");
    let soon = now_secs() + 3600;
    for (i, message) in pending.iter().enumerate() {
        assert_eq!(message["msg_id"], -1);
        assert_eq!(payload(message), format!("later{i}").into_bytes());
        let visible_at = message["visible_at"].as_u64().unwrap();
        assert!(
            visible_at + 2 >= soon && visible_at <= soon + 2,
            "{message}"
        );
    }
    assert_eq!(
        env.query_ids(&address).await.len(),
        6,
        "visible messages only"
    );

    // ...another mailbox cannot touch it, under its own address or the victim's delay_ids...
    let other = env.create(json!({"ttl": 3600})).await;
    for delay_id in &delay_ids {
        assert_error(&delete_delayed(&env, &other, *delay_id).await, "not_found");
    }
    assert_eq!(delayed(&env, &address).await.len(), 4);

    // ...and the owner takes it back, after which SENDs get in again.
    for delay_id in &delay_ids {
        assert_eq!(
            delete_delayed(&env, &address, *delay_id).await,
            json!({"error": "", "deleted": true})
        );
    }
    assert_error(
        &delete_delayed(&env, &address, delay_ids[0]).await,
        "not_found",
    );
    assert!(delayed(&env, &address).await.is_empty());
    for i in 0..4 {
        env.send_ok(&address, format!("room{i}").as_bytes(), &[])
            .await;
    }
    assert_error(&env.send(&address, b"full again", &[]).await, "full");
    assert_eq!(env.metric("mq9_stored_messages").await, Some(10.0));
}

#[tokio::test]
async fn a_delayed_message_whose_ttl_ends_first_never_shows_and_frees_its_room() {
    let mut env = Env::start_with(&["--max-messages-per-mailbox", "1"]).await;
    let address = env.create(json!({"ttl": 3600})).await;
    send_delayed(
        &env,
        &address,
        b"stale",
        &[("mq9-delay", "3600"), ("mq9-ttl", "2")],
    )
    .await;
    assert_error(&env.send(&address, b"no room", &[]).await, "full");
    // The timer survives a restart (the index is rebuilt from the store).
    env.restart_broker().await;
    assert_eq!(delayed(&env, &address).await.len(), 1);
    wait_until("the delayed message expires", || async {
        delayed(&env, &address).await.is_empty()
    })
    .await;
    assert_eq!(env.send_ok(&address, b"fits now", &[]).await, 0);
    assert_eq!(
        texts(&env.query(&address, json!({})).await),
        vec!["fits now"]
    );
}

#[tokio::test]
async fn groups_per_mailbox_are_bounded() {
    let env = Env::start_with(&["--max-groups-per-mailbox", "2"]).await;
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_ok(&address, b"m", &[]).await;
    let fetch = |group: &str| {
        env.fetch(
            &address,
            json!({"group_name": group, "config": {"max_wait_ms": 0}}),
        )
    };
    assert_eq!(ids(&fetch("a").await), vec![0]);
    assert_eq!(ids(&fetch("b").await), vec![0]);
    assert_error_says(&fetch("c").await, "full", "2 consumer groups");
    // Existing groups keep working, and a stateless FETCH needs no group.
    assert_eq!(fetch("a").await["error"], "");
    assert_eq!(
        ids(&env
            .fetch(&address, json!({"config": {"max_wait_ms": 0}}))
            .await),
        vec![0]
    );
}

/// Parks `count` long-poll FETCHes (`body`) on `address` and waits until the broker holds
/// `already + count`; each handle gives its reply and how long it took.
async fn park(
    env: &Env,
    address: &str,
    body: &Value,
    count: u64,
    already: u64,
) -> Vec<tokio::task::JoinHandle<(Value, Duration)>> {
    let waiters = (0..count)
        .map(|_| {
            let client = env.client.clone();
            let subject = format!("$mq9.AI.MSG.FETCH.{address}");
            let body = body.to_string();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let reply = client.request(subject, body.into()).await.unwrap();
                let reply = serde_json::from_slice(&reply.payload).unwrap();
                (reply, started.elapsed())
            })
        })
        .collect();
    env.wait_for_waiting_fetches(already + count).await;
    waiters
}

#[tokio::test]
async fn waiting_fetches_are_bounded_per_mailbox_and_in_total() {
    let env = Env::start_with(&["--max-waiters-per-mailbox", "3", "--max-waiters", "5"]).await;
    let first = env.create(json!({"ttl": 3600})).await;
    let second = env.create(json!({"ttl": 3600})).await;
    let third = env.create(json!({"ttl": 3600})).await;
    let long_poll = json!({"config": {"max_wait_ms": 10_000}});
    let mut parked = park(&env, &first, &long_poll, 3, 0).await;
    let (reply, waited) = env.fetch_timed(&first, long_poll.clone()).await;
    assert_error_says(&reply, "full", "3 waiting FETCHes");
    assert!(
        waited < Duration::from_secs(5),
        "refused at once, not at the deadline"
    );
    parked.extend(park(&env, &second, &long_poll, 2, 3).await);
    let (reply, _) = env.fetch_timed(&third, long_poll.clone()).await;
    assert_error_says(&reply, "full", "the broker already has its maximum of 5");
    // A FETCH that does not wait is never refused, and the parked ones are answered.
    assert_eq!(
        env.fetch(&third, json!({"config": {"max_wait_ms": 0}}))
            .await["error"],
        ""
    );
    let wake = async {
        env.send_ok(&first, b"wake", &[]).await;
        env.send_ok(&second, b"wake", &[]).await;
    };
    let (answered, ()) = env
        .woken_by(5, futures::future::join_all(parked), wake)
        .await;
    for reply in answered {
        assert_eq!(texts(&reply.unwrap().0), vec!["wake"]);
    }
    assert_eq!(env.metric("mq9_waiting_fetches").await, Some(0.0));
}

#[tokio::test]
async fn headers_key_and_tags_count_against_the_byte_limit() {
    let env = Env::start_with(&["--max-bytes-per-mailbox", "100"]).await;
    let address = env.create(json!({"ttl": 3600})).await;
    let big = "h".repeat(80);
    let payload = [b'p'; 50];
    let reply = env.send(&address, &payload, &[("x-big", &big)]).await;
    assert_error_says(&reply, "full", "100 bytes");
    let tags = ["t".repeat(30), "u".repeat(30)].join(",");
    assert_error(
        &env.send(&address, &payload, &[("mq9-tags", &tags)]).await,
        "full",
    );
    assert_error(
        &env.send(&address, &payload, &[("mq9-key", &big)]).await,
        "full",
    );
    assert!(env.query_ids(&address).await.is_empty());
    // The payload alone fits, and the gauge counts what is stored: 50 + 7 + 10.
    env.send_ok(&address, &payload, &[("x-small", "0123456789")])
        .await;
    assert_eq!(env.metric("mq9_stored_bytes").await, Some(67.0));
}

#[tokio::test]
async fn a_query_over_many_non_matching_messages_stops_at_the_scan_bound() {
    let env = Env::start_with(&["--max-scan", "100"]).await;
    let address = env.create(json!({"ttl": 3600})).await;
    assert_eq!(
        env.send_ok(&address, b"needle", &[("mq9-tags", "needle")])
            .await,
        0
    );
    for i in 0..250 {
        let priority = ["critical", "urgent", "normal", "notify"][i % 4];
        env.send_ok(&address, b"hay", &[("mq9-priority", priority)])
            .await;
    }
    let filter = json!({"tags": ["needle"]});
    let first = env.query(&address, filter.clone()).await;
    assert_eq!(
        (messages(&first).len(), &first["next_before"]),
        (0, &json!(151)),
        "{first}"
    );
    let mut before = first["next_before"].clone();
    let mut pages = 1;
    let found = loop {
        let mut body = filter.clone();
        body["before"] = before;
        let page = env.query(&address, body).await;
        pages += 1;
        if page.get("next_before").is_none() {
            break page;
        }
        assert!(messages(&page).is_empty(), "{page}");
        before = page["next_before"].clone();
    };
    assert_eq!((texts(&found), pages), (vec!["needle".to_owned()], 3));
    // Without a filter the newest come first as always, and the cursor pages through the rest.
    let newest = env.query(&address, json!({"limit": 10})).await;
    assert_eq!(ids(&newest), (241..=250).collect::<Vec<u64>>());
    assert_eq!(newest["next_before"], 241);
    let next = env
        .query(&address, json!({"limit": 10, "before": 241}))
        .await;
    assert_eq!(ids(&next), (231..=240).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_group_fetch_examines_at_most_the_scan_bound() {
    let env = Env::start_with(&["--max-scan", "10"]).await;
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_many(&address, 30).await;
    let fetch = || {
        env.fetch(
            &address,
            json!({"group_name": "g", "config": {"num_msgs": 25, "max_wait_ms": 0}}),
        )
    };
    let first = ids(&fetch().await);
    assert_eq!(first, (0..10).collect::<Vec<u64>>());
    // Ten leased messages ahead of the rest use up the bound: nothing new until they are done.
    assert!(ids(&fetch().await).is_empty());
    assert_eq!(env.ack(&address, "g", 9).await["error"], "");
    // Skipping the acknowledged ones uses the bound once more; the group's floor moved past
    // them, so the FETCH after goes on from there.
    assert!(ids(&fetch().await).is_empty());
    assert_eq!(ids(&fetch().await), (10..20).collect::<Vec<u64>>());
}

#[tokio::test]
async fn admin_list_examines_at_most_the_scan_bound_and_says_where_to_go_on() {
    let env = Env::start_with(&["--max-scan", "3"]).await;
    for i in 0..7 {
        let reply = admin(&env, "MAILBOX.ENSURE", json!({"name": format!("box.{i}")})).await;
        assert_eq!(reply["error"], "", "{reply}");
    }
    let mut names = Vec::new();
    let mut body = json!({"limit": 100});
    loop {
        let page = admin(&env, "MAILBOX.LIST", body.clone()).await;
        let got = page["mailboxes"].as_array().unwrap();
        assert!(got.len() <= 3, "{page}");
        names.extend(got.iter().map(|m| m["name"].as_str().unwrap().to_owned()));
        if page["more"] == false {
            break;
        }
        body["after"] = page["next_after"].clone();
    }
    let all: Vec<String> = (0..7).map(|i| format!("box.{i}")).collect();
    assert_eq!(names, all);
}

#[tokio::test]
async fn discover_replies_stay_within_max_payload() {
    let max_payload = 65_536;
    let env = Env::start_full(&[], &format!("max_payload: {max_payload}")).await;
    let filler = "x".repeat(8_000);
    for i in 0..20 {
        let card = json!({"name": format!("big{i}"), "desc": format!("translator {filler}")});
        let reply = env
            .request("$mq9.AI.AGENT.REGISTER", &card.to_string())
            .await;
        assert_eq!(reply["error"], "", "{reply}");
    }
    for body in [
        json!({"limit": 100}),
        json!({"text": "translator", "limit": 100}),
    ] {
        let raw = env
            .request_raw("$mq9.AI.AGENT.DISCOVER", &body.to_string())
            .await;
        assert!(
            raw.payload.len() <= max_payload,
            "{} bytes",
            raw.payload.len()
        );
        let reply: Value = serde_json::from_slice(&raw.payload).unwrap();
        let cards = reply["agents"].as_array().unwrap().len();
        assert!((1..20).contains(&cards), "{cards} cards");
    }
}

/// The retries a SEND triggers share one scan budget per mailbox: with `--max-scan 4`, a message
/// wakes four waiting FETCHes at once (each examines one record); the fifth is not retried in
/// that round and finds the message at its own deadline instead.
#[tokio::test]
async fn waiters_woken_by_one_send_share_one_scan_budget() {
    let env = Env::start_with(&["--max-scan", "4"]).await;
    let address = env.create(json!({"ttl": 3600})).await;
    let body = json!({"deliver": "latest", "config": {"max_wait_ms": 3_000}});
    let mut waiters = Vec::new();
    // Park them one by one, so that their order is the order of the test.
    for parked in 0..5 {
        waiters.extend(park(&env, &address, &body, 1, parked).await);
    }
    env.send_ok(&address, b"news", &[]).await;
    let mut at_once = 0;
    for waiter in waiters {
        let (reply, took) = waiter.await.unwrap();
        assert_eq!(texts(&reply), vec!["news"]);
        at_once += usize::from(took < Duration::from_millis(2_500));
    }
    assert_eq!(at_once, 4, "four answered by the wake, one at its deadline");
}
