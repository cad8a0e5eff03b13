use bytes::Bytes;
use serde_json::Value;

use super::Effect;
use crate::engine::testing::{engine, job, RecordingSink};
use crate::engine::{Command, Engine};
use crate::protocol::body::Body;
use crate::protocol::headers::SendOptions;
use crate::protocol::request::{AckRequest, CreateRequest, FetchRequest, QueryRequest};
use crate::protocol::subject::DeleteTarget;
use crate::store::Store;

fn body(json: &str) -> Body {
    Body::parse(json.as_bytes()).unwrap()
}

fn send(payload: &'static [u8], options: SendOptions) -> Command {
    Command::Send {
        address: "box".into(),
        priority: None,
        options,
        payload: Bytes::from_static(payload),
    }
}

/// Every reply an engine gives to the reads that show a mailbox: its messages, its delayed
/// messages, its INFO and the broker's STATS.
fn reads(engine: &mut Engine) -> Vec<Value> {
    let query = |json| QueryRequest::parse(&body(json)).unwrap();
    let replies = [
        engine.query("box", &query("{}"), true),
        engine.query("box", &query(r#"{"delayed":true}"#), false),
        engine.info("box"),
        engine.stats(),
    ];
    replies
        .into_iter()
        .map(|reply| serde_json::from_slice(&reply.unwrap()).unwrap())
        .collect()
}

/// A session of commands on `a` (an engine on an empty store): the serialized effect of each
/// job, in order, and the replies `a` gave.
fn session(a: &mut Engine) -> (Vec<Vec<u8>>, Vec<(String, Value)>) {
    let commands = [
        Command::Create(CreateRequest::parse(&body(r#"{"name":"box","ttl":3600}"#)).unwrap()),
        send(b"first", SendOptions::default()),
        send(
            b"expiring, compacted, sent once",
            SendOptions {
                ttl_secs: Some(600),
                key: Some("k".into()),
                dedup_id: Some("id-1".into()),
                ..SendOptions::default()
            },
        ),
        send(b"third", SendOptions::default()),
        send(
            b"delayed",
            SendOptions {
                delay_secs: Some(3600),
                ..SendOptions::default()
            },
        ),
        Command::Fetch {
            address: "box".into(),
            request: FetchRequest::parse(&body(r#"{"group_name":"g","num_msgs":2}"#)).unwrap(),
        },
        Command::Ack {
            address: "box".into(),
            request: AckRequest::parse(&body(r#"{"group_name":"g","msg_id":0}"#)).unwrap(),
        },
        Command::Delete {
            address: "box".into(),
            target: DeleteTarget::Message(2),
        },
    ];
    let sink = RecordingSink::default();
    let mut log = Vec::new();
    for (i, command) in commands.into_iter().enumerate() {
        a.execute(job(command, &format!("reply.{i}")));
        let effect = a.seal_batch();
        log.push(postcard::to_allocvec(&effect).unwrap());
        a.apply_batch(effect, &sink);
    }
    let answered = sink.replies(log.len());
    assert!(
        answered.iter().all(|(_, reply)| reply["error"] == ""),
        "{answered:?}"
    );

    (log, answered)
}

/// The effects are everything a store needs: applied, after a trip through their serialized
/// form, to an empty store, they give an engine that answers every read as the engine that
/// made them, and that has the same timers to run. Without the clock: the replay runs no job.
#[test]
fn effects_replayed_on_an_empty_store_rebuild_the_same_mailboxes() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = engine(dir_a.path(), 600);
    let (log, answered) = session(&mut a);
    let store_b = Store::open(dir_b.path()).unwrap();
    let mut replayed = Vec::new();
    for entry in &log {
        let effect: Effect = postcard::from_bytes(entry).unwrap();
        replayed.extend(effect.replies);
        store_b.write(effect.writes, effect.sync).unwrap();
    }
    let mut b = Engine::open(store_b, a.config.clone()).unwrap();

    let replayed: Vec<(String, Value)> = replayed
        .into_iter()
        .map(|r| {
            (
                r.subject.to_string(),
                serde_json::from_slice(&r.body).unwrap(),
            )
        })
        .collect();
    assert_eq!(replayed, answered, "the effects carry the replies");
    let (read_a, read_b) = (reads(&mut a), reads(&mut b));
    assert_eq!(
        read_a[2]["messages"], 2,
        "the DELETE took one of three: {read_a:?}"
    );
    assert_eq!(read_a, read_b);
    assert_eq!(a.timers.next_due(), b.timers.next_due());
    assert!(a.timers.next_due().is_some());
}

/// The same effects through a shard's log on a real three-server JetStream cluster (R3): a
/// follower that reads the log from another server and applies it to an empty store gets an
/// engine that answers every read as the leader's; reading the log again from the start (a
/// restarted follower) applies nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_follower_applying_the_shard_log_rebuilds_the_same_mailboxes() {
    use std::time::Duration;

    use futures::StreamExt;

    use crate::natsd::{self, NatsServer};
    use crate::replication::follower;
    use crate::replication::log::ShardLog;

    let base = tempfile::tempdir().unwrap();
    let servers = natsd::start_cluster(base.path(), 3, None, None, false)
        .await
        .unwrap();
    let jetstream = |server: &NatsServer| {
        let url = server.url().to_owned();
        async move { async_nats::jetstream::new(async_nats::connect(url).await.unwrap()) }
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = engine(dir_a.path(), 600);
    let (entries, _) = session(&mut a);

    let leader = ShardLog::open(&jetstream(&servers[0]).await, "test", 0, 3)
        .await
        .unwrap();
    let mut last = 0;
    for entry in entries {
        last = leader.append(entry.into(), last).await.unwrap();
    }
    let follower_log = ShardLog::open(&jetstream(&servers[2]).await, "test", 0, 3)
        .await
        .unwrap();
    assert_eq!(follower_log.last_sequence().await.unwrap(), last);
    let store_b = Store::open(dir_b.path()).unwrap();
    for expected in [last, 0] {
        let mut read = follower_log.read(1).await.unwrap();
        let mut applied = 0;
        for _ in 0..last {
            let next = tokio::time::timeout(Duration::from_secs(10), read.next()).await;
            let entry = next.expect("the log is read").unwrap().unwrap();
            applied +=
                u64::from(follower::apply(&store_b, entry.sequence, &entry.payload).unwrap());
        }
        assert_eq!(applied, expected, "applied once, in order");
        assert_eq!(follower::applied(&store_b).unwrap(), last);
    }
    let mut b = Engine::open(store_b, a.config.clone()).unwrap();
    assert_eq!(reads(&mut a), reads(&mut b));
    assert_eq!(a.timers.next_due(), b.timers.next_due());
}
