//! The admin client against real nats-servers.

use super::*;
use crate::natsd::{NatsServer, NatsServerOptions};

/// The operator's side of `$mq9.ADMIN.SHARDS` over a real nats-server, answered by a plain
/// subscriber speaking the contract (the brokers' side is tested with the brokers): an
/// answer parses; an error `code` and a body that is no answer are `Rejected` (unknown).
#[tokio::test(flavor = "multi_thread")]
async fn a_shards_answer_parses_and_an_error_is_unknown() {
    use futures::StreamExt;
    let dir = tempfile::TempDir::new().unwrap();
    let nats = NatsServer::start(&NatsServerOptions::new(dir.path())).expect("nats-server");
    let answers = [
        json!({"shards": 2, "leaders": {"0": "b1-0"}, "live": ["b1-0", "b1-1"],
               "without_quorum": [1]}),
        json!({"code": "bad_request", "error": "unknown admin request"}),
        json!({"leaders": "nobody"}),
    ];
    let responder = async_nats::connect(nats.url()).await.unwrap();
    let subject = subjects::admin(AdminVerb::Shards);
    let mut requests = responder.subscribe(subject).await.unwrap();
    responder.flush().await.unwrap();
    tokio::spawn(async move {
        for answer in answers {
            let request = requests.next().await.unwrap();
            assert_eq!(&request.payload[..], b"{}");
            let body = answer.to_string().into();
            responder
                .publish(request.reply.unwrap(), body)
                .await
                .unwrap();
            // Sent before the client is dropped with the task.
            responder.flush().await.unwrap();
        }
    });
    let admin = BrokerClients::default()
        .admin(nats.url(), None)
        .await
        .unwrap();
    let answer = admin.shards().await.unwrap();
    assert_eq!(
        answer,
        ShardsAnswer {
            shards: 2,
            leaders: [("0".to_owned(), "b1-0".to_owned())].into(),
            live: vec!["b1-0".into(), "b1-1".into()],
            without_quorum: vec![1],
        }
    );
    let refused = admin.shards().await;
    assert_eq!(
        refused,
        Err(AdminError::Rejected {
            code: "bad_request".into()
        })
    );
    let garbled = admin.shards().await;
    assert!(
        matches!(garbled, Err(AdminError::Rejected { .. })),
        "{garbled:?}"
    );
}

/// An unreachable broker (a port that accepts and never answers, so a connect waits for its
/// timeout) does not stall a connect to another broker.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_broker_does_not_stall_the_others() {
    let dir = tempfile::TempDir::new().unwrap();
    let nats = NatsServer::start(&NatsServerOptions::new(dir.path())).expect("nats-server");
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("nats://{}", silent.local_addr().unwrap());
    let clients = Arc::new(BrokerClients::default());
    let stalled = tokio::spawn({
        let clients = clients.clone();
        async move { clients.admin(&silent_url, None).await.map(drop) }
    });
    // The stalled connect has reached the silent broker: it holds that broker's lock.
    let (_held, _) = silent.accept().await.unwrap();
    clients
        .admin(nats.url(), None)
        .await
        .expect("the live broker connects");
    assert!(
        !stalled.is_finished(),
        "the live broker was reached only after the unreachable one gave up"
    );
    let refused = stalled.await.unwrap();
    assert!(
        matches!(refused, Err(AdminError::Unreachable(_))),
        "{refused:?}"
    );
}
