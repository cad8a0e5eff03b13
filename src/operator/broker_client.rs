//! The operator's NATS side: requests to a Broker's `$mq9.ADMIN.>` API and
//! `MAILBOX.SUBSCRIBE`/`UNSUBSCRIBE`, over one cached connection per Broker.
//!
//! Replies from the broker may name a mail address; none of that text leaves this module:
//! errors carry only the protocol's error code, so nothing here can leak an address into a
//! status, an Event or a log line.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Mutex;

/// How long one admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an admin request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// NATS or the broker could not be reached (or did not answer in time).
    #[error("broker unreachable: {0}")]
    Unreachable(String),
    /// The broker refused the request; `code` is the protocol's error code.
    #[error("broker refused the request ({code})")]
    Rejected { code: String },
}

/// What `MAILBOX.INFO` says about an existing mailbox (the parts the operator uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    pub owner: Option<String>,
    pub subscriptions: Vec<String>,
}

/// What to ensure on the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsureMailbox<'a> {
    pub address: &'a str,
    pub kind: &'a str,
    pub ttl_secs: u64,
    /// Unix seconds; set when re-creating a lost mailbox so it keeps its original expiry.
    pub expires_at: Option<i64>,
    pub owner: &'a str,
}

/// Connections to brokers, by URL, reused across reconciles.
#[derive(Default)]
pub struct BrokerClients {
    connections: Mutex<HashMap<String, async_nats::Client>>,
}

impl BrokerClients {
    /// A client for the broker at `url`, authenticated with `creds` (a `.creds` file's text)
    /// when the broker requires it.
    pub async fn admin(&self, url: &str, creds: Option<&str>) -> Result<Admin, AdminError> {
        let mut connections = self.connections.lock().await;
        if let Some(client) = connections.get(url) {
            if client.connection_state() == async_nats::connection::State::Connected {
                return Ok(Admin {
                    client: client.clone(),
                });
            }
        }
        let options = match creds {
            Some(creds) => async_nats::ConnectOptions::with_credentials(creds).map_err(|e| {
                AdminError::Unreachable(format!("invalid operator credentials: {e}"))
            })?,
            None => async_nats::ConnectOptions::new(),
        };
        let client = options
            .name("mq9-operator")
            .connection_timeout(REQUEST_TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| AdminError::Unreachable(format!("cannot connect to {url}: {e}")))?;
        connections.insert(url.to_owned(), client.clone());
        Ok(Admin { client })
    }
}

/// One broker's admin API.
pub struct Admin {
    client: async_nats::Client,
}

impl Admin {
    async fn call(&self, subject: &str, body: Value) -> Result<Value, AdminError> {
        let request = self
            .client
            .request(subject.to_owned(), body.to_string().into());
        let reply = tokio::time::timeout(REQUEST_TIMEOUT, request)
            .await
            .map_err(|_| {
                AdminError::Unreachable(format!(
                    "no answer to {subject} within {REQUEST_TIMEOUT:?}"
                ))
            })?
            .map_err(|e| AdminError::Unreachable(format!("{subject}: {e}")))?;
        let value: Value =
            serde_json::from_slice(&reply.payload).map_err(|_| AdminError::Rejected {
                code: "internal".into(),
            })?;
        match value["code"].as_str() {
            Some(code) => Err(AdminError::Rejected {
                code: code.to_owned(),
            }),
            None => Ok(value),
        }
    }

    /// Creates or confirms the mailbox; `Ok(true)` when it was (re)created now.
    pub async fn ensure(&self, mailbox: &EnsureMailbox<'_>) -> Result<bool, AdminError> {
        let mut body = json!({
            "name": mailbox.address,
            "type": mailbox.kind,
            "ttl": mailbox.ttl_secs,
            "owner": mailbox.owner,
        });
        if let Some(at) = mailbox.expires_at {
            body["expires_at"] = json!(at);
        }
        let reply = self.call("$mq9.ADMIN.MAILBOX.ENSURE", body).await?;
        Ok(reply["created"].as_bool().unwrap_or(false))
    }

    /// Deletes the mailbox; `Ok(false)` when there was none.
    pub async fn delete(&self, address: &str) -> Result<bool, AdminError> {
        let reply = self
            .call("$mq9.ADMIN.MAILBOX.DELETE", json!({"name": address}))
            .await?;
        Ok(reply["deleted"].as_bool().unwrap_or(false))
    }

    pub async fn info(&self, address: &str) -> Result<Option<MailboxInfo>, AdminError> {
        let reply = self
            .call("$mq9.ADMIN.MAILBOX.INFO", json!({"name": address}))
            .await?;
        if reply["exists"] != Value::Bool(true) {
            return Ok(None);
        }
        let subscriptions = reply["subscriptions"]
            .as_array()
            .map(|topics| {
                topics
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(MailboxInfo {
            owner: reply["owner"].as_str().map(str::to_owned),
            subscriptions,
        }))
    }

    /// `MAILBOX.SUBSCRIBE` (or UNSUBSCRIBE when `subscribe` is false); idempotent.
    pub async fn subscribe(
        &self,
        address: &str,
        topic: &str,
        subscribe: bool,
    ) -> Result<(), AdminError> {
        let subject = if subscribe {
            "$mq9.AI.MAILBOX.SUBSCRIBE"
        } else {
            "$mq9.AI.MAILBOX.UNSUBSCRIBE"
        };
        self.call(subject, json!({"mail_address": address, "topic": topic}))
            .await
            .map(drop)
    }
}
