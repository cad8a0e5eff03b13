//! The operator's NATS side: requests to a Broker's administration API (`$mq9.ADMIN.>`) and
//! `MAILBOX.SUBSCRIBE`/`UNSUBSCRIBE` ([`Admin`], as the operator's user of the broker account),
//! and account JWT pushes to nats-server's resolver ([`Accounts`], as a system-account user),
//! over one cached connection per Broker and role. Subjects and bodies are
//! `protocol::encode`'s: this client spells no part of the wire itself.
//!
//! Replies from the broker may name a mail address; none of that text leaves this module:
//! errors carry only the protocol's error code, so nothing here can leak an address into a
//! status, an Event or a log line.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::protocol::admin::{EnsureRequest, ListRequest, MAX_LIST_LIMIT};
use crate::protocol::encode::{bodies, subjects};
use crate::protocol::request::SubscribeRequest;
use crate::protocol::subject::AdminVerb;
use crate::protocol::{ErrorCode, MailboxType};

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
    /// nats-server's account resolver refused an account JWT (its reason; no address in it).
    #[error("nats-server refused the account: {0}")]
    AccountRefused(String),
}

/// What `MAILBOX.INFO` says about an existing mailbox (the parts the operator uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    pub owner: Option<String>,
    pub subscriptions: Vec<String>,
}

/// The brokers' answer to `$mq9.ADMIN.SHARDS` (`{}`): how many shards, which node leads each
/// (a shard without a leader is absent), the brokers alive, and the shards whose log has no
/// JetStream quorum. A single-node broker answers one shard led by itself (or `"single"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct ShardsAnswer {
    pub shards: u32,
    /// Shard number (as text) → the node (pod) leading it.
    #[serde(default)]
    pub leaders: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub live: Vec<String>,
    #[serde(default)]
    pub without_quorum: Vec<u32>,
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

/// How long a pushed account JWT is taken as known to a server: the same JWT is not pushed
/// again to it within this time, so Mailbox reconciles do not repeat it. The Broker
/// controller pushes every tenant account on each pass (every minute), which, past this
/// time, really reaches the server again and repairs one that lost an account.
const PUSHED_FRESH_FOR: Duration = Duration::from_secs(60);

/// Who a cached connection logs in as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    /// The operator's user of the broker account.
    Admin,
    /// A system-account user that pushes account JWTs.
    Accounts,
}

/// One broker URL and role's connection: `None` until connected. Its lock is held while
/// connecting, so that the reconciles waiting for the same broker share one connect.
type Slot = Arc<Mutex<Option<async_nats::Client>>>;

/// Connections to brokers, by URL and role, reused across reconciles. Each URL has its own
/// lock, held across a connect (up to [`REQUEST_TIMEOUT`]): an unreachable Broker stalls only
/// its own reconciles, never those of the others. The map's lock is held only to find a slot.
#[derive(Default)]
pub struct BrokerClients {
    connections: std::sync::Mutex<HashMap<(String, Role), Slot>>,
    /// `(url, account JWT)` → when it was last pushed there successfully.
    pushed: Mutex<HashMap<(String, String), Instant>>,
}

impl BrokerClients {
    /// A client for the broker at `url`, authenticated with `creds` (a `.creds` file's text)
    /// when the broker requires it.
    pub async fn admin(&self, url: &str, creds: Option<&str>) -> Result<Admin, AdminError> {
        let creds = creds.map(str::to_owned);
        let client = self.connection(url, Role::Admin, || creds).await?;
        Ok(Admin { client })
    }

    /// A system-account client of the nats-server at `url`, logging in with `creds()` (called
    /// only when a new connection is needed).
    pub async fn accounts(
        &self,
        url: &str,
        creds: impl FnOnce() -> String,
    ) -> Result<Accounts<'_>, AdminError> {
        let client = self
            .connection(url, Role::Accounts, || Some(creds()))
            .await?;
        Ok(Accounts {
            client,
            url: url.to_owned(),
            pushed: &self.pushed,
        })
    }

    async fn connection(
        &self,
        url: &str,
        role: Role,
        creds: impl FnOnce() -> Option<String>,
    ) -> Result<async_nats::Client, AdminError> {
        let slot = {
            let mut connections = self
                .connections
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            connections
                .entry((url.to_owned(), role))
                .or_default()
                .clone()
        };
        let mut slot = slot.lock().await;
        if let Some(client) = slot.as_ref() {
            if client.connection_state() == async_nats::connection::State::Connected {
                return Ok(client.clone());
            }
        }
        let options = match creds() {
            Some(creds) => async_nats::ConnectOptions::with_credentials(&creds).map_err(|e| {
                AdminError::Unreachable(format!("invalid {role:?} credentials: {e}"))
            })?,
            None => async_nats::ConnectOptions::new(),
        };
        let client = options
            .name("mq9-operator")
            .connection_timeout(REQUEST_TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| AdminError::Unreachable(format!("cannot connect to {url}: {e}")))?;
        *slot = Some(client.clone());
        Ok(client)
    }
}

/// One nats-server's account resolver, as a system-account user.
pub struct Accounts<'a> {
    client: async_nats::Client,
    url: String,
    pushed: &'a Mutex<HashMap<(String, String), Instant>>,
}

impl Accounts<'_> {
    /// Pushes an account JWT on `$SYS.REQ.CLAIMS.UPDATE` and checks the server's answer
    /// (`{"data": {"code": 200, …}}`, or `{"error": {"description": …}}`). The full resolver
    /// stores it and applies it at once: a new account becomes usable, revoked users are
    /// disconnected. Skipped when this exact JWT went to this server less than a minute ago.
    pub async fn push(&self, account_jwt: &str) -> Result<(), AdminError> {
        let key = (self.url.clone(), account_jwt.to_owned());
        let fresh = |at: &Instant| at.elapsed() < PUSHED_FRESH_FOR;
        if self.pushed.lock().await.get(&key).is_some_and(fresh) {
            return Ok(());
        }
        let subject = crate::auth::CLAIMS_UPDATE;
        let request = self.client.request(subject, account_jwt.to_owned().into());
        let reply = tokio::time::timeout(REQUEST_TIMEOUT, request)
            .await
            .map_err(|_| AdminError::Unreachable(format!("no answer to {subject}")))?
            .map_err(|e| AdminError::Unreachable(format!("{subject}: {e}")))?;
        let answer: Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
        if answer["data"]["code"] != json!(200) {
            let why = answer["error"]["description"]
                .as_str()
                .unwrap_or("no data in the answer");
            return Err(AdminError::AccountRefused(why.to_owned()));
        }
        let mut pushed = self.pushed.lock().await;
        pushed.retain(|_, at| fresh(at));
        pushed.insert(key, Instant::now());
        Ok(())
    }
}

/// One broker's admin API.
pub struct Admin {
    client: async_nats::Client,
}

impl Admin {
    async fn call(&self, subject: String, body: Vec<u8>) -> Result<Value, AdminError> {
        let request = self.client.request(subject.clone(), body.into());
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
        // A kind the protocol does not know is refused here, as the broker would.
        let kind = MailboxType::parse(mailbox.kind).ok_or_else(|| AdminError::Rejected {
            code: ErrorCode::BadRequest.as_str().into(),
        })?;
        let request = EnsureRequest {
            name: mailbox.address.to_owned(),
            ttl: Some(mailbox.ttl_secs),
            // Before 1970 cannot be recorded; the broker reads 0 as "not given" too.
            expires_at: mailbox.expires_at.and_then(|at| u64::try_from(at).ok()),
            kind,
            owner: Some(mailbox.owner.to_owned()),
            desc: None,
        };
        let reply = self
            .call(subjects::admin(AdminVerb::Ensure), request.encode())
            .await?;
        Ok(reply["created"].as_bool().unwrap_or(false))
    }

    /// Who leads which shard ([`ShardsAnswer`]). An answer that is not one (an older broker
    /// that does not know the request answers an error `code`, which is `Rejected`) is
    /// `Rejected` too: the caller takes both as "unknown".
    pub async fn shards(&self) -> Result<ShardsAnswer, AdminError> {
        let reply = self
            .call(subjects::admin(AdminVerb::Shards), b"{}".to_vec())
            .await?;
        serde_json::from_value(reply).map_err(|_| AdminError::Rejected {
            code: ErrorCode::Internal.as_str().into(),
        })
    }

    /// Deletes the mailbox; `Ok(false)` when there was none.
    pub async fn delete(&self, address: &str) -> Result<bool, AdminError> {
        let reply = self
            .call(
                subjects::admin(AdminVerb::Delete),
                bodies::mailbox_name(address),
            )
            .await?;
        Ok(reply["deleted"].as_bool().unwrap_or(false))
    }

    pub async fn info(&self, address: &str) -> Result<Option<MailboxInfo>, AdminError> {
        let reply = self
            .call(
                subjects::admin(AdminVerb::Info),
                bodies::mailbox_name(address),
            )
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

    /// The addresses of the live mailboxes ENSUREd with `owner` (a Mailbox's uid), in name
    /// order: `MAILBOX.LIST` filtered by owner, followed page by page (each page examines at
    /// most the broker's `--max-scan` records) to the end. What finds a mailbox whose address
    /// no Secret records any more.
    pub async fn owned(&self, owner: &str) -> Result<Vec<String>, AdminError> {
        let mut owned = Vec::new();
        let mut request = ListRequest {
            prefix: String::new(),
            after: None,
            limit: MAX_LIST_LIMIT as usize,
            owner: Some(owner.to_owned()),
        };
        loop {
            let reply = self
                .call(subjects::admin(AdminVerb::List), request.encode())
                .await?;
            let page = reply["mailboxes"].as_array().into_iter().flatten();
            owned.extend(page.filter_map(|m| m["name"].as_str().map(str::to_owned)));
            match reply["next_after"].as_str() {
                Some(next) if reply["more"] == true => request.after = Some(next.to_owned()),
                _ => return Ok(owned),
            }
        }
    }

    /// `MAILBOX.SUBSCRIBE` for the publishes of `account` (`None`: every publisher);
    /// idempotent, and subscribing again with another account changes it.
    pub async fn subscribe(
        &self,
        address: &str,
        topic: &str,
        account: Option<&str>,
    ) -> Result<(), AdminError> {
        let request = SubscribeRequest {
            address: address.to_owned(),
            topic: topic.to_owned(),
            account: account.map(str::to_owned),
        };
        self.call(subjects::subscribe(), request.encode())
            .await
            .map(drop)
    }

    /// `MAILBOX.UNSUBSCRIBE`; idempotent.
    pub async fn unsubscribe(&self, address: &str, topic: &str) -> Result<(), AdminError> {
        let request = SubscribeRequest {
            address: address.to_owned(),
            topic: topic.to_owned(),
            account: None,
        };
        self.call(subjects::unsubscribe(), request.encode())
            .await
            .map(drop)
    }
}

#[cfg(test)]
#[path = "admin_client_tests.rs"]
mod tests;
