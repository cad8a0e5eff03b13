//! What one tenant can reach of another: replies, admin traffic, reply subjects naming another
//! mailbox, the sender and registry identity, broadcast topics of the same name.

use super::*;

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
