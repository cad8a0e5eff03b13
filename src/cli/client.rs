//! The connection to the broker and the request helper every command goes through.
//!
//! An mq9 command is a NATS request; the broker answers with a JSON object whose `"error"` is
//! `""` on success and otherwise a message, with a `"code"` (protocol.md §1). [`Client::send`]
//! turns everything that is not a success reply — no connection, no responder, no reply in
//! time, an error reply — into one error whose text is the line the user will read.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use async_nats::{ConnectOptions, HeaderMap, RequestErrorKind};
use serde_json::Value;
use tokio::sync::OnceCell;

use super::ClientArgs;

/// The hint every "nothing answers" error ends with.
const HINT: &str = "is `mq9 dev` running?";

/// A broker connection, opened by the first request.
pub struct Client {
    args: ClientArgs,
    connection: OnceCell<async_nats::Client>,
}

impl Client {
    pub fn new(args: ClientArgs) -> Client {
        Client {
            args,
            connection: OnceCell::new(),
        }
    }

    /// A request with a body (as `protocol::encode` writes it); returns the success reply.
    pub async fn request(&self, subject: &str, body: Vec<u8>) -> Result<Value> {
        self.send(subject, HeaderMap::new(), body, Duration::ZERO)
            .await
    }

    /// A request with headers and a raw payload; returns the success reply.
    ///
    /// `linger` is how long the broker may hold the request on purpose (a FETCH long-poll): the
    /// reply is awaited for `--timeout` plus that.
    pub async fn send(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: Vec<u8>,
        linger: Duration,
    ) -> Result<Value> {
        let timeout = self.args.timeout + linger;
        let request = async_nats::Request::new()
            .headers(headers)
            .payload(payload.into())
            .timeout(Some(timeout));
        let server = redact(&self.args.server);
        let message = self
            .connection()
            .await?
            .send_request(subject.to_owned(), request)
            .await
            .map_err(|e| match e.kind() {
                RequestErrorKind::TimedOut => anyhow!("no reply to {subject} within {timeout:?}"),
                RequestErrorKind::NoResponders => {
                    anyhow!("no mq9 broker answers on {server} ({HINT})")
                }
                _ => anyhow!("request {subject} failed: {e}"),
            })?;
        let reply: Value = serde_json::from_slice(&message.payload).map_err(|_| {
            anyhow!("the reply to {subject} is not JSON: is {server} an mq9 broker?")
        })?;
        match reply.get("error").and_then(Value::as_str) {
            Some("") => Ok(reply),
            Some(error) => {
                let code = reply
                    .get("code")
                    .and_then(Value::as_str)
                    .unwrap_or("no code");
                bail!("{error} ({code})")
            }
            None => {
                bail!("the reply to {subject} has no `error` field: is {server} an mq9 broker?")
            }
        }
    }

    async fn connection(&self) -> Result<&async_nats::Client> {
        self.connection
            .get_or_try_init(|| connect(&self.args))
            .await
    }
}

/// Connects once, without retrying: a CLI should fail fast and say where it tried.
async fn connect(args: &ClientArgs) -> Result<async_nats::Client> {
    let options = match &args.creds {
        Some(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| anyhow!("--creds {}: {e}", path.display()))?,
        None => ConnectOptions::new(),
    };
    let servers: Vec<&str> = args.server.split(',').map(str::trim).collect();
    options
        .name("mq9-cli")
        .connection_timeout(args.timeout)
        .request_timeout(Some(args.timeout))
        .connect(servers)
        .await
        .map_err(|e| anyhow!("cannot connect to {}: {e} ({HINT})", redact(&args.server)))
}

/// The server list as it may be printed: a `user:password@` (or token) in a URL becomes `***@`.
fn redact(servers: &str) -> String {
    let redact_one = |url: &str| {
        let authority_start = url.find("://").map_or(0, |i| i + 3);
        let authority_end = url[authority_start..]
            .find('/')
            .map_or(url.len(), |i| authority_start + i);
        match url[authority_start..authority_end].rfind('@') {
            Some(at) => format!(
                "{}***{}",
                &url[..authority_start],
                &url[authority_start + at..]
            ),
            None => url.to_owned(),
        }
    };
    servers
        .split(',')
        .map(redact_one)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_in_urls_are_never_printed() {
        assert_eq!(
            redact("nats://alice:s3cret@10.0.0.1:4222,tls://tok@h/x"),
            "nats://***@10.0.0.1:4222,tls://***@h/x"
        );
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact("u:p@host:4222"), "***@host:4222");
    }
}
