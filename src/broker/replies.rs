//! Where the broker may answer: reply inboxes, and nothing else (security.md §2).
//!
//! A NATS request names its own reply subject, and the broker publishes its answer there with
//! the broker's rights. Without a check, a request to `$mq9.AI.MSG.QUERY.<own>` whose reply
//! subject is `$mq9.AI.MSG.DELETE.<victim>.0` makes the broker delete another tenant's message
//! (and a reply subject of `$mq9.AI.MSG.SEND.<victim>` stores the reply JSON in the victim's
//! mailbox): the classic *confused deputy*. So the broker answers only subjects that start
//! with a configured reply-inbox prefix and drops every other request unexecuted, counting it.
//!
//! The defaults are the two prefixes replies really use:
//! - `_INBOX.`: the default inbox prefix of every NATS client library and mq9 SDK;
//! - `_R_.`: the one-time subjects nats-server substitutes for the reply subject of a request
//!   that crosses an account import (tenant accounts import the mq9 service from the broker's
//!   account, and their replies arrive as `_R_.…`, mapped back to the requester's `_INBOX.…`).
//!
//! Clients configured with a custom inbox prefix need it added (`--reply-prefix`). Prefixes
//! that start with `$` (the `$mq9.` command space, `$SYS.`, `$JS.`) are refused at start-up:
//! no configuration can turn the broker back into a deputy. Two further layers stand behind
//! this check: the broker's NATS connection does not receive its own publications (`no_echo`),
//! and the broker's user minted by the operator may publish only responses to requests it
//! received (nats-server's `allow_responses`).

/// The prefixes the broker answers to unless configured otherwise.
pub const DEFAULT_REPLY_PREFIXES: [&str; 2] = ["_INBOX.", "_R_."];

/// Validates one `--reply-prefix` value (a clap value parser).
pub fn parse_prefix(prefix: &str) -> Result<String, String> {
    if prefix.is_empty() {
        return Err("a reply prefix cannot be empty".into());
    }
    if prefix.starts_with('$') {
        return Err(format!(
            "reply prefix {prefix:?} is in a system subject space (`$…`); the broker must never \
             answer there"
        ));
    }
    if prefix.contains(['*', '>']) || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "reply prefix {prefix:?} must be literal subject text: no wildcards, no whitespace"
        ));
    }
    if !prefix.ends_with('.') {
        return Err(format!(
            "reply prefix {prefix:?} must end with `.` (e.g. `_INBOX.`), so that it names whole \
             subject tokens"
        ));
    }
    Ok(prefix.to_owned())
}

/// The reply subjects the broker may publish to.
#[derive(Debug, Clone)]
pub struct ReplyPolicy {
    prefixes: Vec<String>,
}

impl ReplyPolicy {
    /// `prefixes` as validated by [`parse_prefix`].
    pub fn new(prefixes: &[String]) -> ReplyPolicy {
        ReplyPolicy {
            prefixes: prefixes.to_vec(),
        }
    }

    /// Whether an answer may be published on `subject`: it starts with a reply prefix and has
    /// at least one token after it.
    pub fn allows(&self, subject: &str) -> bool {
        self.prefixes
            .iter()
            .any(|prefix| subject.len() > prefix.len() && subject.starts_with(prefix.as_str()))
    }
}

impl Default for ReplyPolicy {
    fn default() -> Self {
        ReplyPolicy::new(&DEFAULT_REPLY_PREFIXES.map(str::to_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::subject::{ADMIN_PREFIX, AI_PREFIX};

    #[test]
    fn inboxes_are_allowed_and_command_subjects_are_not() {
        let policy = ReplyPolicy::default();
        for allowed in ["_INBOX.abc.1", "_INBOX.x", "_R_.a1b2.c3"] {
            assert!(policy.allows(allowed), "{allowed}");
        }
        let commands = [
            format!("{AI_PREFIX}MSG.DELETE.victim.0"),
            format!("{AI_PREFIX}MSG.SEND.victim"),
            format!("{AI_PREFIX}MAILBOX.CREATE"),
            format!("{ADMIN_PREFIX}MAILBOX.DELETE"),
        ];
        let others = [
            "$SYS.REQ.SERVER.PING",
            "_INBOX.",
            "_INBOX",
            "_INBOXES.x",
            "orders.new",
            "",
        ];
        for refused in commands.iter().map(String::as_str).chain(others) {
            assert!(!policy.allows(refused), "{refused}");
        }
    }

    #[test]
    fn custom_prefixes_replace_the_defaults() {
        let policy = ReplyPolicy::new(&["_MY.".to_owned()]);
        assert!(policy.allows("_MY.inbox.1"));
        assert!(!policy.allows("_INBOX.x"));
    }

    #[test]
    fn prefixes_that_could_reach_commands_are_refused() {
        for bad in [
            "",
            ADMIN_PREFIX,
            AI_PREFIX,
            "$SYS.",
            "_INBOX.*.",
            "_IN BOX.",
            "_INBOX",
        ] {
            assert!(parse_prefix(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_prefix("_INBOX_team."), Ok("_INBOX_team.".to_owned()));
    }
}
