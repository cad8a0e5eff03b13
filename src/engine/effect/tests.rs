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

/// The effects are everything a store needs: applied, after a trip through their serialized
/// form, to an empty store, they give an engine that answers every read as the engine that
/// made them, and that has the same timers to run. Without the clock: the replay runs no job.
#[test]
fn effects_replayed_on_an_empty_store_rebuild_the_same_mailboxes() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = engine(dir_a.path(), 600);
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
