//! The broker's front door: each NATS message becomes an engine [`Job`], or is answered (or
//! dropped) right here — a reply subject that is not a reply inbox (see [`super::replies`]), a
//! caller nats-server vouches for (see [`crate::protocol::identity`]), a malformed request.

use std::time::Instant;

use super::{BrokerSink, ReplyPolicy};
use crate::engine::{Command, Job, Outgoing, Sink};
use crate::protocol::admin::{self, EnsureRequest, ListRequest};
use crate::protocol::agents::{AgentLookup, DiscoverRequest, RegisterRequest};
use crate::protocol::body::Body;
use crate::protocol::identity::{self, Caller};
use crate::protocol::request::{
    AckRequest, CreateRequest, FetchRequest, QueryRequest, SubscribeRequest,
};
use crate::protocol::subject::{self, AdminVerb, AgentVerb, Route};
use crate::protocol::{headers, ProtoError};

/// Turns requests into engine jobs: the broker's front door.
pub(super) struct Dispatcher {
    pub(super) jobs: flume::Sender<Job>,
    /// Where requests refused before the engine are answered and counted.
    pub(super) rejects: BrokerSink,
    pub(super) replies: ReplyPolicy,
    /// Read callers from `Nats-Request-Info` (see `protocol::identity`).
    pub(super) trust_request_info: bool,
}

impl Dispatcher {
    /// Parses one request and queues it for the engine; malformed requests are answered here.
    /// A request whose reply subject is not a reply inbox is dropped unexecuted.
    pub(super) async fn dispatch(&self, message: async_nats::Message) {
        let received = Instant::now();
        let route = subject::parse(&message.subject);
        let kind = route.as_ref().map_or("unknown", Route::kind);
        // A request on a broadcast subject is for the live subscribers (a queue group of
        // workers, say): the broker stores it but must not race them with a reply, so its
        // reply subject is theirs, not the broker's to check.
        let answers = !matches!(route, Ok(Route::Broadcast { .. }));
        let reply_to = message.reply.clone().filter(|_| answers);
        if let Some(reply) = &reply_to {
            if !self.replies.allows(reply) {
                tracing::warn!(
                    command = kind,
                    "request dropped: its reply subject is not a reply inbox"
                );
                self.rejects.health.metrics.refused_reply();
                return;
            }
        }
        let parsed = self
            .caller(&message)
            .and_then(|caller| route.and_then(|route| command(route, &message, caller)));
        match parsed {
            Ok(Some(command)) => {
                let job = Job {
                    command,
                    reply_to,
                    kind,
                    received,
                };
                // Only a dead engine thread drops its receiver while requests still come in.
                if let Err(flume::SendError(job)) = self.jobs.send_async(job).await {
                    let stopped =
                        ProtoError::internal("the mailbox engine stopped; the broker must restart");
                    if let Some(subject) = job.reply_to {
                        self.rejects.reply(Outgoing {
                            subject,
                            body: stopped.to_reply(),
                        });
                    }
                    self.rejects
                        .finished(kind, stopped.code.as_str(), received.elapsed());
                }
            }
            Ok(None) => {}
            Err(error) => {
                if let Some(subject) = reply_to {
                    self.rejects.reply(Outgoing {
                        subject,
                        body: error.to_reply(),
                    });
                }
                self.rejects
                    .finished(kind, error.code.as_str(), received.elapsed());
            }
        }
    }

    /// Who sent `message`, when the broker trusts nats-server's word for it; `None` for an
    /// anonymous caller.
    fn caller(&self, message: &async_nats::Message) -> Result<Option<Caller>, ProtoError> {
        if !self.trust_request_info {
            return Ok(None);
        }
        match message
            .headers
            .as_ref()
            .and_then(|h| h.get(identity::REQUEST_INFO_HEADER))
        {
            Some(info) => Caller::from_request_info(info.as_str()).map(Some),
            None => Ok(None),
        }
    }
}

/// The engine command for a route, or `None` for publishes nobody answers. Messages stored for
/// a known `caller` carry its identity in `mq9-sender`.
fn command(
    route: Route,
    message: &async_nats::Message,
    caller: Option<Caller>,
) -> Result<Option<Command>, ProtoError> {
    let body = || Body::parse(&message.payload);
    let send_options = || {
        let mut options = headers::parse(message.headers.as_ref())?;
        if let Some(caller) = &caller {
            options.set_sender(caller.sender());
        }
        Ok::<_, ProtoError>(options)
    };
    Ok(Some(match route {
        Route::MailboxCreate => Command::Create(CreateRequest::parse(&body()?)?),
        Route::Send { address, priority } => Command::Send {
            address,
            priority,
            options: send_options()?,
            payload: message.payload.clone(),
        },
        Route::Fetch { address } => Command::Fetch {
            address,
            request: FetchRequest::parse(&body()?)?,
        },
        Route::Ack { address } => Command::Ack {
            address,
            request: AckRequest::parse(&body()?)?,
        },
        Route::Query { address } => Command::Query {
            address,
            request: QueryRequest::parse(&body()?)?,
            with_unread: false,
        },
        Route::MailboxQuery { address } => Command::Query {
            address,
            request: QueryRequest::parse(&body()?)?,
            with_unread: true,
        },
        // DELETE takes no body; SDKs send nothing, `""` or `{}`.
        Route::Delete { address, target } => Command::Delete { address, target },
        Route::Subscribe { subscribe } => Command::Subscribe {
            request: SubscribeRequest::parse(&body()?)?,
            subscribe,
        },
        Route::Broadcast { topic } => match send_options() {
            Ok(options) => Command::Broadcast {
                topic,
                options,
                payload: message.payload.clone(),
                publisher: caller.as_ref().map(|c| c.account().to_owned()),
            },
            Err(e) => {
                tracing::warn!(topic, error = %e.message, "broadcast not stored durably: bad headers");
                return Ok(None);
            }
        },
        Route::Agent(AgentVerb::Register) => Command::Register {
            request: RegisterRequest::parse(&message.payload)?,
            caller,
        },
        Route::Agent(AgentVerb::Unregister) => Command::Unregister {
            lookup: AgentLookup::parse(&body()?)?,
            caller,
        },
        Route::Agent(AgentVerb::Report) => Command::Report {
            lookup: AgentLookup::parse(&body()?)?,
            status: String::from_utf8_lossy(&message.payload).trim().to_owned(),
            caller,
        },
        Route::Agent(AgentVerb::Discover) => Command::Discover(DiscoverRequest::parse(&body()?)?),
        Route::Admin(AdminVerb::Ensure) => Command::Ensure(EnsureRequest::parse(&body()?)?),
        Route::Admin(AdminVerb::Delete) => Command::AdminDelete {
            name: admin::name(&body()?)?,
        },
        Route::Admin(AdminVerb::Info) => Command::Info {
            name: admin::name(&body()?)?,
        },
        Route::Admin(AdminVerb::List) => Command::List(ListRequest::parse(&body()?)?),
        Route::Admin(AdminVerb::Stats) => Command::Stats,
    }))
}
