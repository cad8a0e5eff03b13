//! The dispatcher's logs, read as an attacker would: every request leaves a line with its
//! command and outcome, and none of them shows the mail address its subject or body carried.

use std::io::Write;
use std::sync::{Arc, Mutex};

use async_nats::{HeaderMap, Message, Subject};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::*;
use crate::broker::Health;
use crate::protocol::encode::subjects;
use crate::protocol::subject::{DeleteTarget, AI_PREFIX};

/// The address every request below names: it must never reach the logs.
const SECRET: &str = "secret.mailbox7";

/// Log output, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn message(subject: &str, reply: &str, headers: &[(&str, &str)], payload: &str) -> Message {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(*name, *value);
    }
    Message {
        subject: Subject::from(subject),
        reply: Some(Subject::from(reply)),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        headers: Some(map),
        status: None,
        description: None,
        length: 0,
    }
}

#[tokio::test]
async fn each_request_logs_its_command_and_outcome_and_never_an_address() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let (jobs, queued) = flume::bounded(8);
    let (out, mut replies) = mpsc::unbounded_channel();
    let dispatcher = Dispatcher {
        queue: super::Queue::Engine(jobs),
        rejects: BrokerSink {
            out,
            health: Arc::new(Health::default()),
        },
        replies: ReplyPolicy::default(),
        trust_request_info: true,
    };
    let send = subjects::send(SECRET);
    let body = format!(r#"{{"reply_to":"{SECRET}"}}"#);
    let info = format!(r#"{{"acc":"ATENANT","user":"UAGENT","tags":["mq9-address:{SECRET}"]}}"#);
    let requests = [
        message(&send, "_INBOX.1", &[("Nats-Request-Info", &info)], &body),
        message(&subjects::fetch(SECRET), "_INBOX.2", &[], &body[1..]),
        message(&format!("{AI_PREFIX}NOPE.{SECRET}"), "_INBOX.3", &[], &body),
        message(
            &send,
            &subjects::delete(SECRET, DeleteTarget::Message(1)),
            &[],
            &body,
        ),
        message(
            &subjects::broadcast("news"),
            "_INBOX.4",
            &[("mq9-ttl", SECRET)],
            &body,
        ),
    ];
    for request in requests {
        dispatcher.dispatch(request, None).await;
    }

    let job = queued.try_recv().expect("the SEND is queued");
    assert!(matches!(job.command, Request::Send { .. }) && job.kind == "send");
    assert!(
        queued.try_recv().is_err(),
        "nothing else reaches the engine"
    );
    for inbox in ["_INBOX.2", "_INBOX.3"] {
        let reply = replies.try_recv().expect("the refusals are answered");
        assert_eq!(reply.subject.as_str(), inbox);
    }
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for (command, outcome) in [
        ("send", "queued"),
        ("fetch", "bad_request"),
        ("unknown", "bad_request"),
        ("send", "dropped"),
        ("broadcast", "not_stored"),
    ] {
        let span = format!("request{{command=\"{command}\" outcome=\"{outcome}\"}}");
        assert!(logs.contains(&span), "no {span} in:\n{logs}");
    }
    assert!(!logs.contains("secret"), "an address in the logs:\n{logs}");
}
