//! Garbage on the wire (security.md §7). Any client may publish to `$mq9.AI.>` bytes no SDK
//! would produce: subjects that are not UTF-8, broken header blocks, oversized or deeply nested
//! bodies. The broker refuses or ignores them; it never loses its NATS connection (checked on
//! nats-server's side: the broker's connection keeps its `cid` in `/connz`), never panics and
//! never loses another client's request.
mod support;

use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// nats-server configuration that serves `/connz` on a free loopback port.
const MONITORING: &str = "http: \"127.0.0.1:-1\"";

/// Publishes nats-server routes to the broker byte for byte, each of which ended the broker's
/// connection with async-nats 0.51.0 as published (the last one panicked its connection task):
/// the patch in `patches/async-nats` skips them. (what it is, the protocol bytes)
fn malformed_publishes(address: &str) -> Vec<(&'static str, Vec<u8>)> {
    let send = format!("$mq9.AI.MSG.SEND.{address}");
    let send = send.as_bytes();
    vec![
        (
            "a subject that is not UTF-8",
            publish(b"$mq9.AI.MSG.SEND.\xff\xfe", None, b"hello"),
        ),
        (
            "a reply subject that is not UTF-8",
            publish(send, Some(b"_INBOX.\xc3\x28"), b"hello"),
        ),
        (
            "a header block on a subject that is not UTF-8",
            hpublish(b"$mq9.AI.MSG.SEND.\xff", b"NATS/1.0\r\nA: b\r\n\r\n", b"hi"),
        ),
        (
            "a header line without a colon",
            hpublish(send, b"NATS/1.0\r\nno colon here\r\n\r\n", b"hi"),
        ),
        (
            "a header block that is not UTF-8",
            hpublish(send, b"NATS/1.0\r\nA: \xff\xfe\r\n\r\n", b"hi"),
        ),
        (
            "a header block without its NATS/1.0 line",
            hpublish(send, b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n", b"hi"),
        ),
        (
            "an invalid header name",
            hpublish(send, b"NATS/1.0\r\nBad Name: b\r\n\r\n", b"hi"),
        ),
        (
            "a status that is not a number",
            hpublish(send, b"NATS/1.0 OK!\r\n\r\n", b"hi"),
        ),
        (
            "a carriage return inside a header value",
            hpublish(send, b"NATS/1.0\r\nA: b\rc\r\n\r\n", b"hi"),
        ),
    ]
}

#[tokio::test]
async fn garbage_never_costs_the_broker_its_connection_nor_a_request() {
    let env = Env::start_full(&[], MONITORING).await;
    let address = env.create(json!({})).await;
    let cid = broker_cid(&env).await;
    let mut attacker = RawClient::connect(&env).await;

    let malformed = malformed_publishes(&address);
    // Valid UTF-8, but async-nats 0.51.0 split HMSG arguments at Unicode spaces (nats-server
    // splits only at ASCII ones): a well-formed message the broker reads and refuses.
    let unicode_space = hpublish(
        b"$mq9.AI.MSG.SEND.a\xe2\x80\x83b",
        b"NATS/1.0\r\nA: b\r\n\r\n",
        b"hi",
    );
    let attacks = malformed
        .iter()
        .map(|(what, bytes)| (*what, bytes.as_slice()))
        .chain([("a Unicode space in a subject", unicode_space.as_slice())]);
    for (what, bytes) in attacks {
        attacker.send(bytes).await;
        // nats-server has queued the garbage to the broker: the next request comes after it.
        let reply = env.send(&address, what.as_bytes(), &[]).await;
        assert_eq!(reply["error"], "", "a SEND right after {what}: {reply}");
        assert_eq!(
            broker_cid(&env).await,
            cid,
            "the broker's NATS connection survives {what}"
        );
    }

    let ids = env.send_many(&address, 1000).await;
    // msg_ids are dense: one per good SEND above, then these 1,000; no garbage was stored.
    let good_sends = malformed.len() as i64 + 1;
    assert_eq!(ids.iter().max(), Some(&(good_sends + 999)));
    assert_eq!(broker_cid(&env).await, cid, "the broker never reconnected");
    assert_eq!(
        env.metric("mq9_nats_malformed_messages_total").await,
        Some(malformed.len() as f64),
        "every skipped message is counted"
    );
    let exposition = env.metrics().await;
    assert!(
        exposition.contains(r#"mq9_commands_total{command="unknown",outcome="bad_request"} 1"#),
        "the Unicode-space subject reached the broker and was refused: {exposition}"
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_by_nats_server() {
    let env = Env::start_full(&[], MONITORING).await;
    let cid = broker_cid(&env).await;
    let max_payload = env.client.server_info().max_payload;
    let mut attacker = RawClient::connect(&env).await;
    // The control line alone: nats-server refuses the size before reading the body.
    attacker
        .write(format!("PUB $mq9.AI.MAILBOX.CREATE {}\r\n", max_payload + 1).as_bytes())
        .await;
    assert_eq!(
        attacker.read_line().await.as_deref(),
        Some("-ERR 'Maximum Payload Violation'")
    );
    assert_eq!(
        attacker.read_line().await,
        None,
        "nats-server closes the connection"
    );
    env.create(json!({})).await;
    assert_eq!(broker_cid(&env).await, cid);
}

#[tokio::test]
async fn deeply_nested_bodies_are_bad_requests() {
    let env = Env::start().await;
    let address = env.create(json!({})).await;
    let depth = 100_000;
    // Both are valid JSON; only their depth is refused (serde_json's recursion limit, 128).
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    let subjects = [
        "$mq9.AI.MAILBOX.CREATE".to_owned(),
        format!("$mq9.AI.MSG.FETCH.{address}"),
        format!("$mq9.AI.MSG.ACK.{address}"),
        format!("$mq9.AI.MSG.QUERY.{address}"),
        format!("$mq9.AI.MAILBOX.QUERY.{address}"),
        "$mq9.AI.MAILBOX.SUBSCRIBE".to_owned(),
        "$mq9.AI.AGENT.REGISTER".to_owned(),
        "$mq9.AI.AGENT.REPORT".to_owned(),
        "$mq9.AI.AGENT.DISCOVER".to_owned(),
        "$mq9.ADMIN.MAILBOX.ENSURE".to_owned(),
        "$mq9.ADMIN.MAILBOX.LIST".to_owned(),
    ];
    for subject in &subjects {
        for body in [&arrays, &objects] {
            let reply = env.request(subject, body).await;
            assert_error_says(&reply, "bad_request", "recursion limit");
        }
    }
    env.send_ok(&address, b"still serving", &[]).await;
}

#[tokio::test]
async fn a_huge_number_of_headers_is_stored_or_refused_whole() {
    let env = Env::start().await;
    let address = env.create(json!({})).await;

    let names: Vec<String> = (0..40_000).map(|i| format!("h{i:05}")).collect();
    let many: Vec<(&str, &str)> = names[..20_000].iter().map(|n| (n.as_str(), "v")).collect();
    assert_eq!(env.send_ok(&address, b"many", &many).await, 0);
    let fetched = env.fetch(&address, json!({})).await;
    let headers = messages(&fetched)[0]["headers"].as_object().unwrap().len();
    assert_eq!(headers, 20_000);

    // ~800 KB on the wire, but ~1.3 MB once each `"` is escaped in a FETCH reply: SEND refuses
    // it, since nobody could ever read it back.
    let quotes = "\"".repeat(10);
    let escaped: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), quotes.as_str()))
        .collect();
    assert_error(&env.send(&address, b"escaped", &escaped).await, "too_large");
    assert_eq!(env.query_ids(&address).await, [0], "nothing half-written");
    env.send_ok(&address, b"still serving", &[]).await;
}

/// An attacker speaking the NATS protocol by hand, so that it can write what no SDK would.
struct RawClient {
    stream: BufReader<TcpStream>,
}

impl RawClient {
    async fn connect(env: &Env) -> RawClient {
        let address = env.nats.url().trim_start_matches("nats://");
        let stream = TcpStream::connect(address).await.unwrap();
        let mut client = RawClient {
            stream: BufReader::new(stream),
        };
        let info = client.read_line().await.unwrap_or_default();
        assert!(info.starts_with("INFO "), "nats-server greets: {info:?}");
        client
            .write(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\n")
            .await;
        client
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).await.unwrap();
    }

    /// Writes `bytes`, then waits until nats-server has processed them: it answers a PING only
    /// after the operations before it, whose messages are by then queued to their subscribers.
    async fn send(&mut self, bytes: &[u8]) {
        self.write(bytes).await;
        self.write(b"PING\r\n").await;
        loop {
            match self.read_line().await.as_deref() {
                Some("PONG") => return,
                Some("PING") => self.write(b"PONG\r\n").await,
                // An update of the server's INFO (it sends one after CONNECT).
                Some(info) if info.starts_with("INFO ") => {}
                other => panic!("nats-server answered {other:?}"),
            }
        }
    }

    /// The next line from nats-server without its CRLF; `None` once it closed the connection.
    async fn read_line(&mut self) -> Option<String> {
        let mut line = String::new();
        let read = tokio::time::timeout(DEADLINE, self.stream.read_line(&mut line))
            .await
            .expect("nats-server answers within the deadline")
            .unwrap();
        (read > 0).then(|| line.trim_end().to_owned())
    }
}

/// `PUB <subject> [reply] <#bytes>` and its payload; subjects as raw bytes.
fn publish(subject: &[u8], reply: Option<&[u8]>, payload: &[u8]) -> Vec<u8> {
    let mut op = b"PUB ".to_vec();
    op.extend_from_slice(subject);
    if let Some(reply) = reply {
        op.push(b' ');
        op.extend_from_slice(reply);
    }
    op.extend_from_slice(format!(" {}\r\n", payload.len()).as_bytes());
    op.extend_from_slice(payload);
    op.extend_from_slice(b"\r\n");
    op
}

/// `HPUB <subject> <#header bytes> <#total bytes>` with a header block given as raw bytes.
fn hpublish(subject: &[u8], header_block: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut op = b"HPUB ".to_vec();
    op.extend_from_slice(subject);
    let total = header_block.len() + payload.len();
    op.extend_from_slice(format!(" {} {total}\r\n", header_block.len()).as_bytes());
    op.extend_from_slice(header_block);
    op.extend_from_slice(payload);
    op.extend_from_slice(b"\r\n");
    op
}

/// The `cid` nats-server gave the broker's connection (named `mq9-broker`): a reconnect gets
/// a new one.
async fn broker_cid(env: &Env) -> u64 {
    let monitoring = env.nats.monitoring_addr().expect("monitoring enabled");
    let (status, body) = http_get(monitoring, "/connz").await;
    assert_eq!(status, 200, "{body}");
    let connz: Value = serde_json::from_str(&body).unwrap();
    let brokers: Vec<u64> = connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|connection| connection["name"] == "mq9-broker")
        .map(|connection| connection["cid"].as_u64().unwrap())
        .collect();
    assert_eq!(brokers.len(), 1, "one broker connection: {connz}");
    brokers[0]
}
