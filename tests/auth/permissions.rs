//! What minted credentials may do once connected: an agent reaches its own mailbox through the
//! broker and nothing else, and publishes only where its `sendTo` patterns and topics allow.

use super::*;

#[tokio::test]
async fn agents_reach_their_own_mailbox_through_the_broker_and_nothing_else() {
    let nats = AuthNats::start();
    let broker = nats.broker();
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
