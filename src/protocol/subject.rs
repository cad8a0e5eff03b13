//! Subjects under `$mq9.AI.` (agents) and `$mq9.ADMIN.` (the operator), and the command each
//! names.
//!
//! Addresses may contain dots, so a subject is read from both ends: the command words from the
//! front, then for `INBOX.{addr}.{priority}` and `MSG.DELETE.{addr}.{msg_id}` the last token, and
//! whatever lies between is the address.

use super::{address, Priority, ProtoError};

/// The prefix of every agent-facing subject.
pub const AI_PREFIX: &str = "$mq9.AI.";
/// The prefix of the operator's administration subjects.
pub const ADMIN_PREFIX: &str = "$mq9.ADMIN.";
/// The prefix of broadcast subjects; durable subscriptions' topics are relative to it.
pub const BROADCAST_PREFIX: &str = "$mq9.AI.BROADCAST.";

/// The subjects the broker subscribes to (with a queue group).
pub const AI_WILDCARD: &str = "$mq9.AI.>";
pub const ADMIN_WILDCARD: &str = "$mq9.ADMIN.>";

/// What a subject asks for. Addresses are validated against the grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    MailboxCreate,
    /// The original design's pull fallback: `MAILBOX.QUERY.{addr}`.
    MailboxQuery {
        address: String,
    },
    /// `MAILBOX.SUBSCRIBE` / `MAILBOX.UNSUBSCRIBE` (the mailbox is in the body).
    Subscribe {
        subscribe: bool,
    },
    /// `MSG.SEND.{addr}` (priority from the header) or `INBOX.{addr}.{priority}`.
    Send {
        address: String,
        priority: Option<Priority>,
    },
    Fetch {
        address: String,
    },
    Ack {
        address: String,
    },
    Query {
        address: String,
    },
    Delete {
        address: String,
        target: DeleteTarget,
    },
    /// `$mq9.AI.BROADCAST.{topic}`: plain pub/sub, answered by nobody.
    Broadcast {
        topic: String,
    },
    Agent(AgentVerb),
    Admin(AdminVerb),
}

/// What `MSG.DELETE.{addr}.{last}` deletes: a stored message by its msg_id, or a delayed
/// message that is not visible yet by `d` + the `delay_id` its SEND answered (an extension of
/// protocol.md: a non-numeric last token was a `bad_request` before, so no old client sends
/// it, and it stays inside the permission `$mq9.AI.MSG.DELETE.{addr}.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeleteTarget {
    Message(u64),
    Delayed(u64),
}

impl DeleteTarget {
    /// Reads the last token of a DELETE subject: `7`, or `d3` for a delayed message.
    pub fn parse(token: &str) -> Option<DeleteTarget> {
        match token.strip_prefix('d') {
            Some(delay_id) => delay_id.parse().ok().map(DeleteTarget::Delayed),
            None => token.parse().ok().map(DeleteTarget::Message),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentVerb {
    Register,
    Unregister,
    Report,
    Discover,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminVerb {
    Ensure,
    Delete,
    Info,
    List,
    Stats,
    /// Who leads each shard of a replicated broker (the operator's status).
    Shards,
}

impl Route {
    /// The command's name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::MailboxCreate => "mailbox_create",
            Route::MailboxQuery { .. } => "mailbox_query",
            Route::Subscribe { subscribe: true } => "subscribe",
            Route::Subscribe { subscribe: false } => "unsubscribe",
            Route::Send { .. } => "send",
            Route::Fetch { .. } => "fetch",
            Route::Ack { .. } => "ack",
            Route::Query { .. } => "query",
            Route::Delete { .. } => "delete",
            Route::Broadcast { .. } => "broadcast",
            Route::Agent(AgentVerb::Register) => "agent_register",
            Route::Agent(AgentVerb::Unregister) => "agent_unregister",
            Route::Agent(AgentVerb::Report) => "agent_report",
            Route::Agent(AgentVerb::Discover) => "agent_discover",
            Route::Admin(AdminVerb::Ensure) => "admin_mailbox_ensure",
            Route::Admin(AdminVerb::Delete) => "admin_mailbox_delete",
            Route::Admin(AdminVerb::Info) => "admin_mailbox_info",
            Route::Admin(AdminVerb::List) => "admin_mailbox_list",
            Route::Admin(AdminVerb::Stats) => "admin_stats",
            Route::Admin(AdminVerb::Shards) => "admin_shards",
        }
    }
}

/// Parses a subject under `$mq9.AI.` or `$mq9.ADMIN.`.
pub fn parse(subject: &str) -> Result<Route, ProtoError> {
    let unknown = || ProtoError::bad_request(format!("unknown command: {subject}"));
    if let Some(rest) = subject.strip_prefix(ADMIN_PREFIX) {
        return Ok(Route::Admin(match rest {
            "MAILBOX.ENSURE" => AdminVerb::Ensure,
            "MAILBOX.DELETE" => AdminVerb::Delete,
            "MAILBOX.INFO" => AdminVerb::Info,
            "MAILBOX.LIST" => AdminVerb::List,
            "STATS" => AdminVerb::Stats,
            "SHARDS" => AdminVerb::Shards,
            _ => return Err(unknown()),
        }));
    }
    let rest = subject.strip_prefix(AI_PREFIX).ok_or_else(unknown)?;
    let mut words = rest.splitn(3, '.');
    let first = words.next().unwrap_or_default();
    let second = words.next();
    let tail = words.next();
    // Everything after the first word, for the commands of one word.
    let after_first = rest.split_once('.').map(|(_, t)| t);
    match (first, second) {
        ("MAILBOX", Some("CREATE")) if tail.is_none() => Ok(Route::MailboxCreate),
        ("MAILBOX", Some("QUERY")) => Ok(Route::MailboxQuery {
            address: mailbox(tail)?,
        }),
        ("MAILBOX", Some("SUBSCRIBE")) if tail.is_none() => {
            Ok(Route::Subscribe { subscribe: true })
        }
        ("MAILBOX", Some("UNSUBSCRIBE")) if tail.is_none() => {
            Ok(Route::Subscribe { subscribe: false })
        }
        ("MSG", Some("SEND")) => Ok(Route::Send {
            address: mailbox(tail)?,
            priority: None,
        }),
        ("MSG", Some("FETCH")) => Ok(Route::Fetch {
            address: mailbox(tail)?,
        }),
        ("MSG", Some("ACK")) => Ok(Route::Ack {
            address: mailbox(tail)?,
        }),
        ("MSG", Some("QUERY")) => Ok(Route::Query {
            address: mailbox(tail)?,
        }),
        ("MSG", Some("DELETE")) => {
            let (address, id) = split_last(tail, "MSG.DELETE.{mail_address}.{msg_id}")?;
            let target = DeleteTarget::parse(&id).ok_or_else(|| {
                ProtoError::bad_request(format!(
                    "the last token must be a msg_id, or d followed by a delay_id, got {id:?}"
                ))
            })?;
            Ok(Route::Delete { address, target })
        }
        ("INBOX", Some(_)) => {
            let (address, last) = split_last(after_first, "INBOX.{mail_address}.{priority}")?;
            let priority = Priority::parse(&last)
                .filter(|p| p.as_str() == last)
                .ok_or_else(|| {
                    ProtoError::bad_request(format!(
                    "INBOX subject must end in critical, urgent, normal or notify, got {last:?}"
                ))
                })?;
            Ok(Route::Send {
                address,
                priority: Some(priority),
            })
        }
        ("BROADCAST", Some(_)) => Ok(Route::Broadcast {
            topic: after_first.unwrap_or_default().to_owned(),
        }),
        ("AGENT", Some(verb)) if tail.is_none() => Ok(Route::Agent(match verb {
            "REGISTER" => AgentVerb::Register,
            "UNREGISTER" => AgentVerb::Unregister,
            "REPORT" => AgentVerb::Report,
            "DISCOVER" => AgentVerb::Discover,
            _ => return Err(unknown()),
        })),
        _ => Err(unknown()),
    }
}

/// Checks a durable-subscription topic: a NATS subject pattern relative to
/// `$mq9.AI.BROADCAST.` — non-empty tokens, `*` only as a whole token, `>` only as the last.
pub fn validate_topic(topic: &str) -> Result<(), ProtoError> {
    let tokens: Vec<&str> = topic.split('.').collect();
    let bad = |why: &str| ProtoError::bad_request(format!("field `topic` {why}, got {topic:?}"));
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err(bad("must be dot-separated non-empty tokens"));
        }
        if token.chars().any(|c| c.is_whitespace()) {
            return Err(bad("must not contain whitespace"));
        }
        if (token.contains('*') && *token != "*") || (token.contains('>') && *token != ">") {
            return Err(bad("may use * and > only as whole tokens"));
        }
        if *token == ">" && i + 1 != tokens.len() {
            return Err(bad("may use > only as the last token"));
        }
    }
    Ok(())
}

fn mailbox(tail: Option<&str>) -> Result<String, ProtoError> {
    let address =
        tail.ok_or_else(|| ProtoError::bad_request("the subject names no mail address"))?;
    address::validate(address)?;
    Ok(address.to_owned())
}

fn split_last(tail: Option<&str>, form: &str) -> Result<(String, String), ProtoError> {
    let (address, last) = tail
        .and_then(|t| t.rsplit_once('.'))
        .ok_or_else(|| ProtoError::bad_request(format!("subject must have the form {form}")))?;
    address::validate(address)?;
    Ok((address.to_owned(), last.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(address: &str, priority: Option<Priority>) -> Route {
        Route::Send {
            address: address.into(),
            priority,
        }
    }

    #[test]
    fn commands_and_dotted_addresses() {
        assert_eq!(
            parse("$mq9.AI.MAILBOX.CREATE").unwrap(),
            Route::MailboxCreate
        );
        assert_eq!(
            parse("$mq9.AI.MSG.SEND.team.a1").unwrap(),
            send("team.a1", None)
        );
        assert_eq!(
            parse("$mq9.AI.INBOX.team.a1.urgent").unwrap(),
            send("team.a1", Some(Priority::Urgent))
        );
        assert_eq!(
            parse("$mq9.AI.MSG.DELETE.team.a1.7").unwrap(),
            Route::Delete {
                address: "team.a1".into(),
                target: DeleteTarget::Message(7)
            }
        );
        assert_eq!(
            parse("$mq9.AI.MAILBOX.QUERY.x").unwrap(),
            Route::MailboxQuery {
                address: "x".into()
            }
        );
        assert_eq!(
            parse("$mq9.AI.BROADCAST.task.available").unwrap(),
            Route::Broadcast {
                topic: "task.available".into()
            }
        );
        assert_eq!(
            parse("$mq9.AI.MAILBOX.SUBSCRIBE").unwrap(),
            Route::Subscribe { subscribe: true }
        );
        assert_eq!(
            parse("$mq9.AI.AGENT.DISCOVER").unwrap(),
            Route::Agent(AgentVerb::Discover)
        );
        assert_eq!(
            parse("$mq9.ADMIN.MAILBOX.ENSURE").unwrap(),
            Route::Admin(AdminVerb::Ensure)
        );
        assert_eq!(
            parse("$mq9.ADMIN.STATS").unwrap(),
            Route::Admin(AdminVerb::Stats)
        );
    }

    #[test]
    fn unknown_and_malformed_subjects() {
        for subject in [
            "$mq9.AI.NOPE",
            "$mq9.AI.MSG.PEEK.x",
            "$mq9.AI.MAILBOX.CREATE.x",
            "$mq9.AI.MSG",
            "$mq9.AI.AGENT.HUG",
            "$mq9.ADMIN.MAILBOX.EXPLODE",
            "$mq9.AI.BROADCAST",
        ] {
            let err = parse(subject).unwrap_err();
            assert_eq!(err.message, format!("unknown command: {subject}"));
        }
        assert!(parse("$mq9.AI.INBOX.x.loud").is_err());
        assert!(parse("$mq9.AI.INBOX.x.Urgent").is_err());
        assert!(parse("$mq9.AI.INBOX.urgent").is_err());
        assert!(parse("$mq9.AI.MSG.DELETE.x.seven").is_err());
        assert!(parse("$mq9.AI.MSG.DELETE.x.d").is_err());
        assert!(parse("$mq9.AI.MSG.DELETE.x.d-1").is_err());
        assert_eq!(
            parse("$mq9.AI.MSG.DELETE.x.d12").unwrap(),
            Route::Delete {
                address: "x".into(),
                target: DeleteTarget::Delayed(12)
            }
        );
        assert!(parse("$mq9.AI.MSG.SEND.Bad").is_err());
        assert!(parse("$mq9.AI.MSG.SEND").is_err());
    }

    #[test]
    fn topics() {
        for ok in ["task.available", "task.*", "system.>", ">", "*.x"] {
            assert!(validate_topic(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a..b", "a.>.b", "ta*", "a b", "x>"] {
            assert!(validate_topic(bad).is_err(), "{bad}");
        }
    }
}
