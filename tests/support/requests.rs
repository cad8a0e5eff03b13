//! The requests an agent makes, as [`Env`] methods that spell the wire by hand (on purpose: a
//! change of subject or field name in `src/` must break a test, not follow it silently).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use serde_json::{json, Value};

use super::{ids, metric_value, wait_until, Env, DEADLINE};

impl Env {
    /// A request with a JSON (or any) body; the reply parsed as JSON.
    pub async fn request(&self, subject: &str, body: &str) -> Value {
        self.request_with(subject, HeaderMap::new(), body.as_bytes().to_vec())
            .await
    }

    /// A request with headers and a raw payload.
    pub async fn request_with(&self, subject: &str, headers: HeaderMap, payload: Vec<u8>) -> Value {
        let request = self
            .client
            .request_with_headers(subject.to_owned(), headers, payload.into());
        let reply = tokio::time::timeout(DEADLINE, request)
            .await
            .unwrap_or_else(|_| panic!("no reply to {subject} within {DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("request {subject} failed: {e}"));
        serde_json::from_slice(&reply.payload)
            .unwrap_or_else(|e| panic!("reply to {subject} is not JSON ({e}): {:?}", reply.payload))
    }

    /// Creates a mailbox and returns its address; panics on an error reply.
    pub async fn create(&self, body: Value) -> String {
        let reply = self
            .request("$mq9.AI.MAILBOX.CREATE", &body.to_string())
            .await;
        assert_eq!(reply["error"], "", "create failed: {reply}");
        reply["mail_address"].as_str().unwrap().to_owned()
    }

    /// MSG.SEND with headers; returns the reply.
    pub async fn send(&self, address: &str, payload: &[u8], headers: &[(&str, &str)]) -> Value {
        self.request_with(
            &format!("$mq9.AI.MSG.SEND.{address}"),
            header_map(headers),
            payload.to_vec(),
        )
        .await
    }

    /// The original design's send: a request on `$mq9.AI.INBOX.{address}.{priority}`.
    pub async fn inbox(&self, address: &str, priority: &str, payload: &[u8]) -> Value {
        self.request_with(
            &format!("$mq9.AI.INBOX.{address}.{priority}"),
            HeaderMap::new(),
            payload.to_vec(),
        )
        .await
    }

    /// Sends `count` messages concurrently (payloads `m0`, `m1`, ...); returns their msg_ids.
    pub async fn send_many(&self, address: &str, count: usize) -> Vec<i64> {
        let payloads: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
        let sends = payloads
            .iter()
            .map(|p| self.send_ok(address, p.as_bytes(), &[]));
        futures::future::join_all(sends).await
    }

    /// A plain publish (no reply subject), flushed to the server.
    pub async fn publish(&self, subject: &str, headers: &[(&str, &str)], payload: &[u8]) {
        self.client
            .publish_with_headers(
                subject.to_owned(),
                header_map(headers),
                payload.to_vec().into(),
            )
            .await
            .unwrap();
        self.client.flush().await.unwrap();
    }

    /// A request whose raw reply is returned (to look at its size).
    pub async fn request_raw(&self, subject: &str, body: &str) -> async_nats::Message {
        let request = self
            .client
            .request(subject.to_owned(), body.as_bytes().to_vec().into());
        tokio::time::timeout(DEADLINE, request)
            .await
            .unwrap_or_else(|_| panic!("no reply to {subject} within {DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("request {subject} failed: {e}"))
    }

    /// MSG.FETCH, also returning how long the reply took.
    pub async fn fetch_timed(&self, address: &str, body: Value) -> (Value, Duration) {
        let started = Instant::now();
        let reply = self.fetch(address, body).await;
        (reply, started.elapsed())
    }

    /// MSG.QUERY; returns the reply.
    pub async fn query(&self, address: &str, body: Value) -> Value {
        self.request(&format!("$mq9.AI.MSG.QUERY.{address}"), &body.to_string())
            .await
    }

    /// The msg_ids an empty MSG.QUERY returns.
    pub async fn query_ids(&self, address: &str) -> Vec<u64> {
        ids(&self.query(address, json!({})).await)
    }

    /// MAILBOX.QUERY (the original design's pull); returns the reply.
    pub async fn mailbox_query(&self, address: &str, body: Value) -> Value {
        self.request(
            &format!("$mq9.AI.MAILBOX.QUERY.{address}"),
            &body.to_string(),
        )
        .await
    }

    /// MSG.DELETE with an empty body; returns the reply.
    pub async fn delete(&self, address: &str, msg_id: u64) -> Value {
        self.request(&format!("$mq9.AI.MSG.DELETE.{address}.{msg_id}"), "")
            .await
    }

    /// Waits until commands on the mailbox answer `not_found`.
    pub async fn wait_gone(&self, address: &str) {
        wait_until(&format!("mailbox {address} is gone"), || async {
            self.query(address, json!({})).await["code"] == "not_found"
        })
        .await;
    }

    /// The value of an unlabelled metric (a gauge) in `/metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        metric_value(&self.metrics().await, name)
    }

    /// MSG.SEND expecting success; returns the msg_id.
    pub async fn send_ok(&self, address: &str, payload: &[u8], headers: &[(&str, &str)]) -> i64 {
        let reply = self.send(address, payload, headers).await;
        assert_eq!(reply["error"], "", "send failed: {reply}");
        reply["msg_id"].as_i64().unwrap()
    }

    /// MSG.FETCH; returns the reply.
    pub async fn fetch(&self, address: &str, body: Value) -> Value {
        self.request(&format!("$mq9.AI.MSG.FETCH.{address}"), &body.to_string())
            .await
    }

    /// MSG.ACK; returns the reply.
    pub async fn ack(&self, address: &str, group: &str, msg_id: u64) -> Value {
        let body = json!({"group_name": group, "msg_id": msg_id});
        self.request(&format!("$mq9.AI.MSG.ACK.{address}"), &body.to_string())
            .await
    }

    /// MSG.ACK expecting success.
    pub async fn ack_ok(&self, address: &str, group: &str, msg_id: u64) {
        let reply = self.ack(address, group, msg_id).await;
        assert_eq!(
            reply,
            json!({"error": ""}),
            "ACK {msg_id} for group {group}"
        );
    }

    /// MSG.DELETE of a stored message expecting it deleted.
    pub async fn delete_ok(&self, address: &str, msg_id: u64) {
        let reply = self.delete(address, msg_id).await;
        assert_eq!(
            reply,
            json!({"error": "", "deleted": true}),
            "DELETE {msg_id}"
        );
    }

    /// The body of `/metrics`.
    pub async fn metrics(&self) -> String {
        http_get(self.broker.http_addr, "/metrics").await.1
    }
}

/// A request answered within a second, as JSON; `Err` when it is not (refused, no connection,
/// no responders), saying why.
pub async fn call(client: &async_nats::Client, subject: &str, body: &str) -> Result<Value, String> {
    let request = client.request(subject.to_owned(), body.to_owned().into());
    match tokio::time::timeout(Duration::from_secs(1), request).await {
        Ok(Ok(reply)) => serde_json::from_slice(&reply.payload).map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 1 s".into()),
    }
}

/// A minimal HTTP/1.1 GET: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path).await.expect("HTTP port open")
}

/// [`http_get`], or `None` while nothing listens on `addr` yet.
pub async fn try_http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// A header map from name/value pairs (a name may repeat).
pub fn header_map(headers: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(*name, *value);
    }
    map
}
