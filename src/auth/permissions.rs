//! What each kind of client may publish and subscribe to.
//!
//! NATS permissions are lists of subject patterns (`*` = one token, `>` = the rest). A
//! publish or subscribe is allowed when it matches an `allow` pattern and no `deny` pattern;
//! deny always wins. An *empty* allow list means "everything", which is why every restricted
//! set below allows at least one subject. nats-server enforces them on every message: a
//! refused publish is dropped and the client gets `-ERR 'Permissions Violation for Publish
//! to "<subject>"'` (the connection stays open); a refused subscription likewise.
//!
//! # Decisions for agent credentials ([`mailbox_permissions`])
//!
//! - **Own mailbox only** for reading: FETCH, ACK, QUERY, DELETE and MAILBOX.QUERY name one
//!   exact address. `$mq9.AI.MSG.DELETE.{addr}.*` matches `{addr}.{msg_id}` only: `*` is one
//!   token, so the holder of `a` cannot reach `a.b.7` (a message of mailbox `a.b`).
//! - **Sending** follows `sendTo` (address patterns; empty = any): for each pattern `p`,
//!   `$mq9.AI.MSG.SEND.{p}` and the original design's `$mq9.AI.INBOX.{p}.*` (`.{priority}`;
//!   a pattern ending in `>` already covers the priority token).
//! - **No `MAILBOX.CREATE`.** A mailbox created with these credentials could not be read by
//!   them (FETCH is scoped to one address), so CREATE would only let an agent squat names
//!   the operator will later ENSURE (turning them into `AddressConflict`) and use up the
//!   broker's `maxMailboxes`. On Kubernetes mailboxes are declared as Mailbox objects.
//! - **No `MAILBOX.SUBSCRIBE`/`UNSUBSCRIBE`.** Durable broadcast membership is the operator's
//!   (Broadcast `members`); an agent that could subscribe its own mailbox to any topic would
//!   read topics its credentials may not subscribe to, through the durable copy.
//! - **`$mq9.AI.AGENT.>` is allowed**: the registry is shared and advisory (an agent can
//!   register, report and discover; it can also overwrite or unregister another agent's
//!   entry, since the protocol has no ownership of entries).
//! - **Live path**: subscribe `$mq9.AI.INBOX.{addr}.*`, the original design's real-time
//!   delivery of sends to this mailbox.
//! - **Broadcast**: publish `$mq9.AI.BROADCAST.{t}` for each topic the mailbox publishes
//!   (Broadcast `publishers`), subscribe for each topic it is a member of.
//! - **Replies**: subscribe `_INBOX.>`, the reply prefix every NATS client (and every mq9 SDK)
//!   uses for requests by default. Trade-off, stated plainly: any holder of agent credentials
//!   can therefore also subscribe to the replies meant for *other* clients of the account,
//!   FETCH replies included. Scoping replies (`_INBOX.{user}.>` plus a custom inbox prefix in
//!   the client) would close that, at the price of configuring every agent's client.
//! - **`$mq9.ADMIN.>` is denied** for publish and subscribe explicitly, on top of not being
//!   allowed: since deny wins, no future widening of the allow list can reach it.
//! - Agents publish no replies (`_INBOX.>` is not publishable): they call the broker, they do
//!   not serve requests.

use super::AuthError;

/// The administration API: the broker serves it, the operator calls it, agents never see it.
const ADMIN: &str = "$mq9.ADMIN.>";
/// Where NATS clients receive request replies, unless configured otherwise.
const REPLY_INBOXES: &str = "_INBOX.>";

/// Allow and deny lists of subject patterns for publishing and subscribing; rendered into a
/// user JWT's `nats.pub` and `nats.sub` by [`super::user_jwt`]. Empty allow lists mean
/// unrestricted (`Permissions::default()` allows everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish_allow: Vec<String>,
    pub publish_deny: Vec<String>,
    pub subscribe_allow: Vec<String>,
    pub subscribe_deny: Vec<String>,
}

/// The `mq9 broker` process: everything. It subscribes to `$mq9.AI.>` and `$mq9.ADMIN.>`,
/// publishes replies to whatever reply subject a client chose, and holds every mailbox's
/// data anyway, so narrowing its permissions would protect nothing.
pub fn broker_permissions() -> Permissions {
    Permissions {
        publish_allow: vec![">".into()],
        subscribe_allow: vec![">".into()],
        ..Permissions::default()
    }
}

/// The operator: requests on the administration API (`$mq9.ADMIN.>`: ENSURE, DELETE, INFO,
/// LIST, STATS) and on durable broadcast membership (`$mq9.AI.MAILBOX.SUBSCRIBE`,
/// `UNSUBSCRIBE`), with their replies. Nothing else: it never reads or sends mail.
pub fn operator_permissions() -> Permissions {
    Permissions {
        publish_allow: vec![
            ADMIN.into(),
            "$mq9.AI.MAILBOX.SUBSCRIBE".into(),
            "$mq9.AI.MAILBOX.UNSUBSCRIBE".into(),
        ],
        subscribe_allow: vec![REPLY_INBOXES.into()],
        ..Permissions::default()
    }
}

/// An agent holding the mailbox `address` (see the module documentation for each choice).
///
/// - `send_to`: address patterns it may send to (`team.*`, `billing.>`); empty = any address.
/// - `subscribe_topics`: broadcast topics (relative to `$mq9.AI.BROADCAST.`) it may receive live.
/// - `publish_topics`: broadcast topics it may publish on.
///
/// Refuses an address outside the protocol's grammar and patterns that are not NATS subject
/// patterns (empty tokens, whitespace, wildcards inside tokens, `>` before the end):
/// nats-server rejects a user JWT with an invalid permission subject at connect, so a bad
/// pattern would otherwise surface as credentials that never work.
pub fn mailbox_permissions(
    address: &str,
    send_to: &[String],
    subscribe_topics: &[String],
    publish_topics: &[String],
) -> Result<Permissions, AuthError> {
    crate::protocol::address::validate(address)
        .map_err(|e| AuthError::InvalidSubject(e.message))?;
    let mut publish = vec![
        format!("$mq9.AI.MSG.FETCH.{address}"),
        format!("$mq9.AI.MSG.ACK.{address}"),
        format!("$mq9.AI.MSG.QUERY.{address}"),
        format!("$mq9.AI.MSG.DELETE.{address}.*"),
        format!("$mq9.AI.MAILBOX.QUERY.{address}"),
        "$mq9.AI.AGENT.>".to_owned(),
    ];
    let any = [">".to_owned()];
    let send_to = if send_to.is_empty() {
        &any[..]
    } else {
        send_to
    };
    for pattern in send_to {
        validate_pattern("sendTo address pattern", pattern, is_address_token)?;
        push_unique(&mut publish, format!("$mq9.AI.MSG.SEND.{pattern}"));
        let inbox = if pattern.ends_with('>') {
            format!("$mq9.AI.INBOX.{pattern}")
        } else {
            format!("$mq9.AI.INBOX.{pattern}.*")
        };
        push_unique(&mut publish, inbox);
    }
    for topic in publish_topics {
        validate_pattern("broadcast topic", topic, is_subject_token)?;
        push_unique(&mut publish, format!("$mq9.AI.BROADCAST.{topic}"));
    }
    let mut subscribe = vec![
        REPLY_INBOXES.to_owned(),
        format!("$mq9.AI.INBOX.{address}.*"),
    ];
    for topic in subscribe_topics {
        validate_pattern("broadcast topic", topic, is_subject_token)?;
        push_unique(&mut subscribe, format!("$mq9.AI.BROADCAST.{topic}"));
    }
    Ok(Permissions {
        publish_allow: publish,
        publish_deny: vec![ADMIN.into()],
        subscribe_allow: subscribe,
        subscribe_deny: vec![ADMIN.into()],
    })
}

fn push_unique(list: &mut Vec<String>, subject: String) {
    if !list.contains(&subject) {
        list.push(subject);
    }
}

/// A literal token of a mail address: what an address pattern may contain besides wildcards.
fn is_address_token(token: &str) -> bool {
    token
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A literal token of a NATS subject: no whitespace, no wildcard characters.
fn is_subject_token(token: &str) -> bool {
    !token.contains(['*', '>']) && !token.chars().any(char::is_whitespace)
}

/// Dot-separated non-empty tokens, each `*`, `>` (last only) or a literal `literal` accepts.
fn validate_pattern(what: &str, pattern: &str, literal: fn(&str) -> bool) -> Result<(), AuthError> {
    let tokens: Vec<&str> = pattern.split('.').collect();
    let valid = tokens.iter().enumerate().all(|(i, token)| match *token {
        "" => false,
        "*" => true,
        ">" => i + 1 == tokens.len(),
        _ => literal(token),
    });
    if valid {
        Ok(())
    } else {
        Err(AuthError::InvalidSubject(format!(
            "{what} {pattern:?}: expected dot-separated tokens, wildcards `*` and `>` \
             (last) as whole tokens"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_mailbox_with_defaults_reads_its_own_box_and_sends_anywhere() {
        let p = mailbox_permissions("box1", &[], &[], &[]).unwrap();
        assert_eq!(
            p.publish_allow,
            strings(&[
                "$mq9.AI.MSG.FETCH.box1",
                "$mq9.AI.MSG.ACK.box1",
                "$mq9.AI.MSG.QUERY.box1",
                "$mq9.AI.MSG.DELETE.box1.*",
                "$mq9.AI.MAILBOX.QUERY.box1",
                "$mq9.AI.AGENT.>",
                "$mq9.AI.MSG.SEND.>",
                "$mq9.AI.INBOX.>",
            ])
        );
        assert_eq!(
            p.subscribe_allow,
            strings(&["_INBOX.>", "$mq9.AI.INBOX.box1.*"])
        );
        assert_eq!(p.publish_deny, strings(&["$mq9.ADMIN.>"]));
        assert_eq!(p.subscribe_deny, strings(&["$mq9.ADMIN.>"]));
        let everything = [p.publish_allow, p.subscribe_allow].concat();
        assert!(!everything.iter().any(|s| s.contains("MAILBOX.CREATE")));
        assert!(!everything.iter().any(|s| s.contains("MAILBOX.SUBSCRIBE")));
    }

    #[test]
    fn send_to_patterns_and_topics_become_subjects() {
        let p = mailbox_permissions(
            "team.a",
            &strings(&["team.*", "billing.>", "team.*"]),
            &strings(&["news.*"]),
            &strings(&["tasks.>"]),
        )
        .unwrap();
        let sends: Vec<&String> = p
            .publish_allow
            .iter()
            .filter(|s| s.contains(".SEND.") || s.contains(".INBOX.") || s.contains("BROADCAST"))
            .collect();
        assert_eq!(
            sends,
            [
                "$mq9.AI.MSG.SEND.team.*",
                "$mq9.AI.INBOX.team.*.*",
                "$mq9.AI.MSG.SEND.billing.>",
                "$mq9.AI.INBOX.billing.>",
                "$mq9.AI.BROADCAST.tasks.>",
            ]
        );
        assert!(p
            .publish_allow
            .contains(&"$mq9.AI.MSG.DELETE.team.a.*".into()));
        assert_eq!(
            p.subscribe_allow,
            strings(&[
                "_INBOX.>",
                "$mq9.AI.INBOX.team.a.*",
                "$mq9.AI.BROADCAST.news.*"
            ])
        );
    }

    #[test]
    fn invalid_addresses_and_patterns_are_refused() {
        let none: &[String] = &[];
        assert!(mailbox_permissions("Bad", none, none, none).is_err());
        assert!(mailbox_permissions("a.>", none, none, none).is_err());
        for bad in ["", "a..b", "a.>.b", "a b", "a*", "A"] {
            let patterns = strings(&[bad]);
            let err = mailbox_permissions("box", &patterns, none, none).unwrap_err();
            assert!(matches!(err, AuthError::InvalidSubject(_)), "{bad:?}");
        }
        for bad in ["", "x..y", "x.>.y", "x y", "x*", "q\tq"] {
            let topics = strings(&[bad]);
            assert!(
                mailbox_permissions("box", none, &topics, none).is_err(),
                "{bad:?}"
            );
            assert!(
                mailbox_permissions("box", none, none, &topics).is_err(),
                "{bad:?}"
            );
        }
        let fine = strings(&["Task-Available", "*", ">"]);
        assert!(mailbox_permissions("box", none, &fine, &fine).is_ok());
    }

    #[test]
    fn operator_and_broker_permissions() {
        let operator = operator_permissions();
        assert!(operator.publish_allow.contains(&"$mq9.ADMIN.>".into()));
        assert!(!operator.publish_allow.iter().any(|s| s.contains("MSG")));
        assert_eq!(operator.subscribe_allow, strings(&["_INBOX.>"]));
        let broker = broker_permissions();
        assert_eq!(
            (broker.publish_allow, broker.subscribe_allow),
            (strings(&[">"]), strings(&[">"]))
        );
        assert!(broker.publish_deny.is_empty() && broker.subscribe_deny.is_empty());
    }
}
