//! Subjects under `$mq9.AI.` and the command each names.
//!
//! Addresses may contain dots, so a subject is read from both ends: the command words from the
//! front, then for `INBOX.{addr}.{priority}` and `MSG.DELETE.{addr}.{msg_id}` the last token, and
//! whatever lies between is the address.

use super::{address, Priority, ProtoError};

/// The prefix of every agent-facing subject.
pub const AI_PREFIX: &str = "$mq9.AI.";

/// The subject the broker subscribes to (with a queue group).
pub const AI_WILDCARD: &str = "$mq9.AI.>";

/// What a subject asks for. Addresses are validated against the grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    MailboxCreate,
    /// The original design's pull fallback: `MAILBOX.QUERY.{addr}`.
    MailboxQuery {
        address: String,
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
        msg_id: u64,
    },
    /// `$mq9.AI.BROADCAST.{topic}`: plain pub/sub, answered by nobody.
    Broadcast {
        topic: String,
    },
}

impl Route {
    /// The command's name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::MailboxCreate => "mailbox_create",
            Route::MailboxQuery { .. } => "mailbox_query",
            Route::Send { .. } => "send",
            Route::Fetch { .. } => "fetch",
            Route::Ack { .. } => "ack",
            Route::Query { .. } => "query",
            Route::Delete { .. } => "delete",
            Route::Broadcast { .. } => "broadcast",
        }
    }
}

/// Parses a subject under `$mq9.AI.`.
pub fn parse(subject: &str) -> Result<Route, ProtoError> {
    let unknown = || ProtoError::bad_request(format!("unknown command: {subject}"));
    let rest = subject.strip_prefix(AI_PREFIX).ok_or_else(unknown)?;
    let (word, tail) = match rest.split_once('.') {
        Some((word, tail)) => (word, Some(tail)),
        None => (rest, None),
    };
    let (command, tail) = match (word, tail) {
        ("MAILBOX" | "MSG", Some(tail)) => match tail.split_once('.') {
            Some((command, tail)) => ((word, command), Some(tail)),
            None => ((word, tail), None),
        },
        _ => ((word, ""), tail),
    };
    match command {
        ("MAILBOX", "CREATE") if tail.is_none() => Ok(Route::MailboxCreate),
        ("MAILBOX", "QUERY") => Ok(Route::MailboxQuery {
            address: mailbox(tail)?,
        }),
        ("MSG", "SEND") => Ok(Route::Send {
            address: mailbox(tail)?,
            priority: None,
        }),
        ("MSG", "FETCH") => Ok(Route::Fetch {
            address: mailbox(tail)?,
        }),
        ("MSG", "ACK") => Ok(Route::Ack {
            address: mailbox(tail)?,
        }),
        ("MSG", "QUERY") => Ok(Route::Query {
            address: mailbox(tail)?,
        }),
        ("MSG", "DELETE") => {
            let (address, id) = split_last(tail, "MSG.DELETE.{mail_address}.{msg_id}")?;
            let msg_id = id.parse().map_err(|_| {
                ProtoError::bad_request(format!("msg_id in subject must be an integer, got {id:?}"))
            })?;
            Ok(Route::Delete { address, msg_id })
        }
        ("INBOX", "") => {
            let (address, last) = split_last(tail, "INBOX.{mail_address}.{priority}")?;
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
        ("BROADCAST", "") => match tail {
            Some(topic) if !topic.is_empty() => Ok(Route::Broadcast {
                topic: topic.to_owned(),
            }),
            _ => Err(unknown()),
        },
        _ => Err(unknown()),
    }
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

    #[test]
    fn commands_and_dotted_addresses() {
        assert_eq!(
            parse("$mq9.AI.MAILBOX.CREATE").unwrap(),
            Route::MailboxCreate
        );
        assert_eq!(
            parse("$mq9.AI.MSG.SEND.team.a1").unwrap(),
            Route::Send {
                address: "team.a1".into(),
                priority: None
            }
        );
        assert_eq!(
            parse("$mq9.AI.INBOX.team.a1.urgent").unwrap(),
            Route::Send {
                address: "team.a1".into(),
                priority: Some(Priority::Urgent)
            }
        );
        assert_eq!(
            parse("$mq9.AI.MSG.DELETE.team.a1.7").unwrap(),
            Route::Delete {
                address: "team.a1".into(),
                msg_id: 7
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
    }

    #[test]
    fn unknown_and_malformed_subjects() {
        for subject in [
            "$mq9.AI.NOPE",
            "$mq9.AI.MSG.PEEK.x",
            "$mq9.AI.MAILBOX.CREATE.x",
            "$mq9.AI.MSG",
        ] {
            let err = parse(subject).unwrap_err();
            assert_eq!(err.message, format!("unknown command: {subject}"));
        }
        assert!(parse("$mq9.AI.INBOX.x.loud").is_err());
        assert!(parse("$mq9.AI.INBOX.x.Urgent").is_err());
        assert!(parse("$mq9.AI.MSG.DELETE.x.seven").is_err());
        assert!(parse("$mq9.AI.MSG.SEND.Bad").is_err());
        assert!(parse("$mq9.AI.MSG.SEND").is_err());
    }
}
