//! The subject of each command, under [`AI_PREFIX`] or [`ADMIN_PREFIX`]: what
//! [`subject::parse`](crate::protocol::subject::parse) reads back as the command's `Route`.
//!
//! Where a builder takes an address it also takes a NATS address pattern (`team.*`, `>`):
//! the permission builder allows exactly the subjects the clients use, made by the same
//! functions. The `*_all` builders are the patterns no single command uses.

use std::fmt;

use crate::protocol::subject::{
    AdminVerb, AgentVerb, DeleteTarget, ADMIN_PREFIX, AI_PREFIX, BROADCAST_PREFIX,
};
use crate::protocol::Priority;

/// `MAILBOX.CREATE`.
pub fn mailbox_create() -> String {
    format!("{AI_PREFIX}MAILBOX.CREATE")
}

/// `MAILBOX.QUERY.{address}`, the original design's pull fallback.
pub fn mailbox_query(address: &str) -> String {
    format!("{AI_PREFIX}MAILBOX.QUERY.{address}")
}

/// `MAILBOX.SUBSCRIBE`: durable broadcast membership (the mailbox is in the body).
pub fn subscribe() -> String {
    format!("{AI_PREFIX}MAILBOX.SUBSCRIBE")
}

/// `MAILBOX.UNSUBSCRIBE`.
pub fn unsubscribe() -> String {
    format!("{AI_PREFIX}MAILBOX.UNSUBSCRIBE")
}

/// `MSG.SEND.{address}`: a SEND whose priority, if any, travels in a header.
pub fn send(address: &str) -> String {
    format!("{AI_PREFIX}MSG.SEND.{address}")
}

/// `INBOX.{address}.{priority}`: the original design's SEND, a plain publish works too.
pub fn inbox(address: &str, priority: Priority) -> String {
    format!("{AI_PREFIX}INBOX.{address}.{priority}")
}

/// Every priority of `INBOX.{pattern}`: the live path's subscription and a sender's
/// permission. A pattern ending in `>` already covers the priority token.
pub fn inbox_all(pattern: &str) -> String {
    if pattern.ends_with('>') {
        format!("{AI_PREFIX}INBOX.{pattern}")
    } else {
        format!("{AI_PREFIX}INBOX.{pattern}.*")
    }
}

/// `MSG.FETCH.{address}`.
pub fn fetch(address: &str) -> String {
    format!("{AI_PREFIX}MSG.FETCH.{address}")
}

/// `MSG.ACK.{address}`.
pub fn ack(address: &str) -> String {
    format!("{AI_PREFIX}MSG.ACK.{address}")
}

/// `MSG.QUERY.{address}`.
pub fn query(address: &str) -> String {
    format!("{AI_PREFIX}MSG.QUERY.{address}")
}

/// `MSG.DELETE.{address}.{msg_id}` or `.d{delay_id}`.
pub fn delete(address: &str, target: DeleteTarget) -> String {
    format!("{AI_PREFIX}MSG.DELETE.{address}.{target}")
}

/// Every DELETE in one mailbox, and no other: `*` is one token, so the pattern of `a` cannot
/// reach `a.b.7` (a message of mailbox `a.b`).
pub fn delete_all(address: &str) -> String {
    format!("{AI_PREFIX}MSG.DELETE.{address}.*")
}

/// `BROADCAST.{topic}` (a topic pattern, for permissions).
pub fn broadcast(topic: &str) -> String {
    format!("{BROADCAST_PREFIX}{topic}")
}

/// `AGENT.REGISTER | UNREGISTER | REPORT | DISCOVER`.
pub fn agent(verb: AgentVerb) -> String {
    let verb = match verb {
        AgentVerb::Register => "REGISTER",
        AgentVerb::Unregister => "UNREGISTER",
        AgentVerb::Report => "REPORT",
        AgentVerb::Discover => "DISCOVER",
    };
    format!("{AI_PREFIX}AGENT.{verb}")
}

/// Every command of the agent registry.
pub fn agent_all() -> String {
    format!("{AI_PREFIX}AGENT.>")
}

/// `$mq9.ADMIN.MAILBOX.ENSURE | DELETE | INFO | LIST`, `$mq9.ADMIN.STATS` and `SHARDS`.
pub fn admin(verb: AdminVerb) -> String {
    let command = match verb {
        AdminVerb::Ensure => "MAILBOX.ENSURE",
        AdminVerb::Delete => "MAILBOX.DELETE",
        AdminVerb::Info => "MAILBOX.INFO",
        AdminVerb::List => "MAILBOX.LIST",
        AdminVerb::Stats => "STATS",
        AdminVerb::Shards => "SHARDS",
    };
    format!("{ADMIN_PREFIX}{command}")
}

/// The last token of a DELETE subject: `7`, or `d3` for a delayed message.
impl fmt::Display for DeleteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeleteTarget::Message(msg_id) => write!(f, "{msg_id}"),
            DeleteTarget::Delayed(delay_id) => write!(f, "d{delay_id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::subject::{parse, Route};

    /// NATS subject matching: `*` is one token, `>` the rest (one token at least).
    fn matches(pattern: &str, subject: &str) -> bool {
        let (mut pattern, mut subject) = (pattern.split('.'), subject.split('.'));
        loop {
            match (pattern.next(), subject.next()) {
                (Some(">"), Some(_)) => return true,
                (Some(p), Some(s)) if p == "*" || p == s => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    #[test]
    fn every_builder_parses_back_to_its_command() {
        let address = || "team.a1".to_owned();
        let cases = [
            (mailbox_create(), Route::MailboxCreate),
            (
                mailbox_query("team.a1"),
                Route::MailboxQuery { address: address() },
            ),
            (subscribe(), Route::Subscribe { subscribe: true }),
            (unsubscribe(), Route::Subscribe { subscribe: false }),
            (
                send("team.a1"),
                Route::Send {
                    address: address(),
                    priority: None,
                },
            ),
            (fetch("team.a1"), Route::Fetch { address: address() }),
            (ack("team.a1"), Route::Ack { address: address() }),
            (query("team.a1"), Route::Query { address: address() }),
            (
                broadcast("task.available"),
                Route::Broadcast {
                    topic: "task.available".into(),
                },
            ),
        ];
        for (subject, route) in cases {
            assert_eq!(parse(&subject).unwrap(), route, "{subject}");
        }
        for priority in Priority::ALL {
            let route = Route::Send {
                address: address(),
                priority: Some(priority),
            };
            assert_eq!(parse(&inbox("team.a1", priority)).unwrap(), route);
        }
        for target in [DeleteTarget::Message(7), DeleteTarget::Delayed(3)] {
            let route = Route::Delete {
                address: address(),
                target,
            };
            assert_eq!(parse(&delete("team.a1", target)).unwrap(), route);
        }
        for verb in [
            AgentVerb::Register,
            AgentVerb::Unregister,
            AgentVerb::Report,
            AgentVerb::Discover,
        ] {
            assert_eq!(parse(&agent(verb)).unwrap(), Route::Agent(verb));
        }
        for verb in [
            AdminVerb::Ensure,
            AdminVerb::Delete,
            AdminVerb::Info,
            AdminVerb::List,
            AdminVerb::Stats,
            AdminVerb::Shards,
        ] {
            assert_eq!(parse(&admin(verb)).unwrap(), Route::Admin(verb));
        }
    }

    #[test]
    fn patterns_cover_their_commands_and_nothing_beside() {
        for priority in Priority::ALL {
            assert!(matches(&inbox_all("team.a"), &inbox("team.a", priority)));
            assert!(matches(&inbox_all("team.*"), &inbox("team.a", priority)));
            assert!(matches(&inbox_all("team.>"), &inbox("team.a.b", priority)));
            assert!(!matches(&inbox_all("team.a"), &inbox("team.a.b", priority)));
            assert!(!matches(&inbox_all("team.*"), &inbox("team.a.b", priority)));
        }
        for target in [DeleteTarget::Message(7), DeleteTarget::Delayed(3)] {
            assert!(matches(&delete_all("a"), &delete("a", target)));
            assert!(!matches(&delete_all("a"), &delete("a.b", target)));
        }
        assert!(matches(&agent_all(), &agent(AgentVerb::Discover)));
        assert!(!matches(&agent_all(), &admin(AdminVerb::Stats)));
    }
}
