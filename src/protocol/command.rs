//! One typed value per request, whatever its command: what the broker reads off the wire, what
//! the engine applies, and what a replicated log will carry (`../shared/spec/replication.md`).
//!
//! [`Request::parse`] is the only translation from the wire to a command: the subject (already
//! read into a [`Route`]), the headers, the body, and the caller nats-server vouches for. The
//! broker parses once and hands the value to the engine untouched. Every type a request holds
//! is plain data that derives serde, so a request written to a log reads back equal; the engine
//! decides time and generated addresses when it applies one, never the request.

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::admin::{self, EnsureRequest, ListRequest};
use super::agents::{AgentLookup, DiscoverRequest, RegisterRequest};
use super::body::Body;
use super::headers::{self, SendOptions};
use super::identity::Caller;
use super::request::{AckRequest, CreateRequest, FetchRequest, QueryRequest, SubscribeRequest};
use super::subject::{AdminVerb, AgentVerb, DeleteTarget, Route};
use super::{Priority, ProtoError};

/// A request, parsed and validated: one variant per command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Create(CreateRequest),
    Send {
        address: String,
        /// From the INBOX subject; otherwise the header decides.
        priority: Option<Priority>,
        options: SendOptions,
        payload: Bytes,
    },
    Fetch {
        address: String,
        request: FetchRequest,
    },
    Ack {
        address: String,
        request: AckRequest,
    },
    Query {
        address: String,
        request: QueryRequest,
        /// `MAILBOX.QUERY` of the original design also answers `mail_id` and `unread`.
        with_unread: bool,
    },
    Delete {
        address: String,
        target: DeleteTarget,
    },
    Subscribe {
        request: SubscribeRequest,
        /// false for UNSUBSCRIBE.
        subscribe: bool,
    },
    /// A publish on `$mq9.AI.BROADCAST.{topic}`: stored in every durably subscribed mailbox.
    Broadcast {
        topic: String,
        options: SendOptions,
        payload: Bytes,
        /// The publisher's account, as nats-server reports it (`None`: anonymous): only
        /// subscriptions that admit it store the message (see `engine::mailbox::Subscription`).
        publisher: Option<String>,
    },
    /// The registry's writes carry the caller (absent: anonymous), who must own what it
    /// changes (see `engine::registry`).
    Register {
        request: RegisterRequest,
        caller: Option<Caller>,
    },
    Unregister {
        lookup: AgentLookup,
        caller: Option<Caller>,
    },
    Report {
        lookup: AgentLookup,
        /// The REPORT body as sent.
        status: String,
        caller: Option<Caller>,
    },
    Discover(DiscoverRequest),
    Ensure(EnsureRequest),
    AdminDelete {
        name: String,
    },
    Info {
        name: String,
    },
    List(ListRequest),
    Stats,
    Shards,
}

impl Request {
    /// Reads the request of one NATS message whose subject is `route`. The broker reads the
    /// subject first, on its own: the route's [`Route::kind`] labels the metrics of a request
    /// whose headers or body are then refused. Messages stored for a known `caller` carry its
    /// identity in `mq9-sender`.
    pub fn parse(
        route: Route,
        headers: Option<&HeaderMap>,
        payload: &Bytes,
        caller: Option<Caller>,
    ) -> Result<Request, ProtoError> {
        let body = || Body::parse(payload);
        let send_options = || {
            let mut options = headers::parse(headers)?;
            if let Some(caller) = &caller {
                options.set_sender(caller.sender());
            }
            Ok::<_, ProtoError>(options)
        };
        Ok(match route {
            Route::MailboxCreate => Request::Create(CreateRequest::parse(&body()?)?),
            Route::Send { address, priority } => Request::Send {
                address,
                priority,
                options: send_options()?,
                payload: payload.clone(),
            },
            Route::Fetch { address } => Request::Fetch {
                address,
                request: FetchRequest::parse(&body()?)?,
            },
            Route::Ack { address } => Request::Ack {
                address,
                request: AckRequest::parse(&body()?)?,
            },
            Route::Query { address } => Request::Query {
                address,
                request: QueryRequest::parse(&body()?)?,
                with_unread: false,
            },
            Route::MailboxQuery { address } => Request::Query {
                address,
                request: QueryRequest::parse(&body()?)?,
                with_unread: true,
            },
            // DELETE takes no body; SDKs send nothing, `""` or `{}`.
            Route::Delete { address, target } => Request::Delete { address, target },
            Route::Subscribe { subscribe } => Request::Subscribe {
                request: SubscribeRequest::parse(&body()?)?,
                subscribe,
            },
            Route::Broadcast { topic } => Request::Broadcast {
                topic,
                options: send_options()?,
                payload: payload.clone(),
                publisher: caller.as_ref().map(|c| c.account().to_owned()),
            },
            Route::Agent(AgentVerb::Register) => Request::Register {
                request: RegisterRequest::parse(payload)?,
                caller,
            },
            Route::Agent(AgentVerb::Unregister) => Request::Unregister {
                lookup: AgentLookup::parse(&body()?)?,
                caller,
            },
            Route::Agent(AgentVerb::Report) => Request::Report {
                lookup: AgentLookup::parse(&body()?)?,
                status: String::from_utf8_lossy(payload).trim().to_owned(),
                caller,
            },
            Route::Agent(AgentVerb::Discover) => {
                Request::Discover(DiscoverRequest::parse(&body()?)?)
            }
            Route::Admin(AdminVerb::Ensure) => Request::Ensure(EnsureRequest::parse(&body()?)?),
            Route::Admin(AdminVerb::Delete) => Request::AdminDelete {
                name: admin::name(&body()?)?,
            },
            Route::Admin(AdminVerb::Info) => Request::Info {
                name: admin::name(&body()?)?,
            },
            Route::Admin(AdminVerb::List) => Request::List(ListRequest::parse(&body()?)?),
            Route::Admin(AdminVerb::Stats) => Request::Stats,
            Route::Admin(AdminVerb::Shards) => Request::Shards,
        })
    }
}

#[cfg(test)]
mod tests;
