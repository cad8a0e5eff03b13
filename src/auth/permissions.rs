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
//!   uses for requests by default. Agents live in their namespace's *tenant account* (see
//!   [`super`]), so that is their own account's inbox space: the broker's answers travel back
//!   through nats-server's service import and never appear in another account. Within one
//!   namespace (one tenant) the agents can read each other's replies: the namespace is the
//!   unit of trust, as in Kubernetes.
//! - **`$mq9.ADMIN.>` is denied** for publish and subscribe explicitly, on top of not being
//!   allowed: since deny wins, no future widening of the allow list can reach it.
//! - Agents publish no replies (`_INBOX.>` is not publishable): they call the broker, they do
//!   not serve requests.

use std::time::Duration;

use super::AuthError;
use crate::protocol::encode::subjects;
use crate::protocol::subject::{ADMIN_WILDCARD, AI_WILDCARD};

/// The administration API: the broker serves it, the operator calls it, agents never see it.
const ADMIN: &str = ADMIN_WILDCARD;
/// The mq9 protocol: agents call it (through their tenant account's import), the broker serves it.
const PROTOCOL: &str = AI_WILDCARD;

/// Where NATS clients receive request replies, unless configured otherwise.
const REPLY_INBOXES: &str = "_INBOX.>";
/// nats-server's one-time reply subjects of requests that crossed an account import.
const RESPONSE_MAPPINGS: &str = "_R_.>";
/// The JetStream API of the client's account.
const JETSTREAM_API: &str = "$JS.API.>";
/// Where nats-server takes account JWTs at run time (the full resolver; system account only).
pub const CLAIMS_UPDATE: &str = "$SYS.REQ.CLAIMS.UPDATE";
/// How long the broker may take to answer a request: a long-poll FETCH waits up to 30 s and
/// then queues for the engine. Two minutes is also how long nats-server keeps the route back
/// to an importing account (a service export's default response threshold), so a later
/// answer could not be delivered anyway.
pub const RESPONSE_WINDOW: Duration = Duration::from_secs(120);

/// Allow and deny lists of subject patterns for publishing and subscribing; rendered into a
/// user JWT's `nats.pub` and `nats.sub` by [`super::user_jwt`]. Empty allow lists mean
/// unrestricted (`Permissions::default()` allows everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish_allow: Vec<String>,
    pub publish_deny: Vec<String>,
    pub subscribe_allow: Vec<String>,
    pub subscribe_deny: Vec<String>,
    /// Publishing to the reply subjects of requests received (a user JWT's `nats.resp`).
    pub responses: Option<Responses>,
}

/// nats-server's *response permission*: the user may publish up to `max` messages to the
/// reply subject of each request it received, within `ttl` of receiving it, whatever its
/// publish lists say (the check comes after `deny`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Responses {
    pub max: u32,
    pub ttl: Duration,
}

/// The `mq9 broker` process: subscribes to the protocol (`$mq9.AI.>`, through the service
/// export every tenant account imports) and the administration API, and publishes *only*
/// answers: one per request received, within [`RESPONSE_WINDOW`], to that request's reply
/// subject. It publishes nothing on its own today, so publish is denied everywhere else
/// (`deny: [">"]`; deny does not cover the response permission, which nats-server checks
/// after it). A bug in the broker, or a request whose reply subject names an mq9 subject (a
/// confused deputy: `$mq9.AI.MSG.DELETE.<victim>.0`), can therefore never make the broker
/// publish on a subject of its choosing: for a tenant's request the reply subject it sees is
/// nats-server's one-time `_R_.…` mapping, never the subject the client wrote.
pub fn broker_permissions() -> Permissions {
    Permissions {
        publish_deny: vec![">".into()],
        subscribe_allow: vec![PROTOCOL.into(), ADMIN.into()],
        responses: Some(Responses {
            max: 1,
            ttl: RESPONSE_WINDOW,
        }),
        ..Permissions::default()
    }
}

/// The `mq9 broker` of a replicated Broker (`--replication jetstream --cluster <cluster>`): what
/// [`broker_permissions`] allows, plus what replication uses, in its own (the broker) account:
///
/// - publish `$JS.API.>`: the JetStream API (streams, consumers, key-value buckets, direct
///   gets); only mq9's streams exist in the broker account;
/// - publish `$KV.MQ9_LEASES_<cluster>.>`: lease and live-broker writes;
/// - publish `$mq9.REPL.<cluster>.>`: appends to the shards' logs;
/// - publish and subscribe `$mq9.FWD.<cluster>.>`: requests forwarded to a shard's leader;
/// - publish `_R_.>` and `_INBOX.>`: a leader answers a forwarded request on the reply subject
///   the forward carries in a header (`broker/forward.rs`) — the client's, which for a tenant's
///   request is nats-server's one-time `_R_.…` mapping (no client may publish *with* such a
///   reply, so it cannot be the forward's own), or a gathering broker's inbox — not on the
///   forward's own reply subject, which the response permission covers;
/// - subscribe `_INBOX.>`: the answers of JetStream and of other brokers (gathered LIST and
///   STATS), and the log entries its consumers pull. Only the broker and the operator are
///   users of the broker account, so no agent's traffic is in that inbox space.
///
/// Publishing on the agent protocol and the administration API stays denied (deny wins): the
/// broker still answers those only through the response permission. Tenant accounts have no
/// JetStream and none of these subjects: an agent cannot reach the logs or the leases
/// (`tests/operator_replicated_auth.rs` attacks it).
pub fn replicated_broker_permissions(cluster: &str) -> Permissions {
    let forward = format!("{}.{cluster}.>", crate::replication::route::FORWARD_PREFIX);
    Permissions {
        publish_allow: vec![
            JETSTREAM_API.into(),
            format!("$KV.MQ9_LEASES_{cluster}.>"),
            format!("$mq9.REPL.{cluster}.>"),
            forward.clone(),
            RESPONSE_MAPPINGS.into(),
            REPLY_INBOXES.into(),
        ],
        publish_deny: vec![PROTOCOL.into(), ADMIN.into()],
        subscribe_allow: vec![PROTOCOL.into(), ADMIN.into(), forward, REPLY_INBOXES.into()],
        ..broker_permissions()
    }
}

/// The operator's short-lived system-account user: it pushes tenant account JWTs to
/// nats-server's resolver ([`CLAIMS_UPDATE`]) and reads the answers, nothing else.
pub fn account_push_permissions() -> Permissions {
    Permissions {
        publish_allow: vec![CLAIMS_UPDATE.into()],
        subscribe_allow: vec![REPLY_INBOXES.into()],
        ..Permissions::default()
    }
}

/// The operator: requests on the administration API (`$mq9.ADMIN.>`: ENSURE, DELETE, INFO,
/// LIST, STATS) and on durable broadcast membership (`$mq9.AI.MAILBOX.SUBSCRIBE`,
/// `UNSUBSCRIBE`), with their replies. Nothing else: it never reads or sends mail.
pub fn operator_permissions() -> Permissions {
    Permissions {
        publish_allow: vec![ADMIN.into(), subjects::subscribe(), subjects::unsubscribe()],
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
        subjects::fetch(address),
        subjects::ack(address),
        subjects::query(address),
        subjects::delete_all(address),
        subjects::mailbox_query(address),
        subjects::agent_all(),
    ];
    let any = [">".to_owned()];
    let send_to = if send_to.is_empty() {
        &any[..]
    } else {
        send_to
    };
    for pattern in send_to {
        validate_pattern("sendTo address pattern", pattern, is_address_token)?;
        push_unique(&mut publish, subjects::send(pattern));
        push_unique(&mut publish, subjects::inbox_all(pattern));
    }
    for topic in publish_topics {
        validate_pattern("broadcast topic", topic, is_subject_token)?;
        push_unique(&mut publish, subjects::broadcast(topic));
    }
    let mut subscribe = vec![REPLY_INBOXES.to_owned(), subjects::inbox_all(address)];
    for topic in subscribe_topics {
        validate_pattern("broadcast topic", topic, is_subject_token)?;
        push_unique(&mut subscribe, subjects::broadcast(topic));
    }
    Ok(Permissions {
        publish_allow: publish,
        publish_deny: vec![ADMIN.into()],
        subscribe_allow: subscribe,
        subscribe_deny: vec![ADMIN.into()],
        responses: None,
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
            [
                subjects::fetch("box1"),
                subjects::ack("box1"),
                subjects::query("box1"),
                subjects::delete_all("box1"),
                subjects::mailbox_query("box1"),
                subjects::agent_all(),
                subjects::send(">"),
                subjects::inbox_all(">"),
            ]
        );
        assert_eq!(
            p.subscribe_allow,
            ["_INBOX.>".to_owned(), subjects::inbox_all("box1")]
        );
        assert_eq!(p.publish_deny, strings(&[ADMIN]));
        assert_eq!(p.subscribe_deny, strings(&[ADMIN]));
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
                &subjects::send("team.*"),
                &subjects::inbox_all("team.*"),
                &subjects::send("billing.>"),
                &subjects::inbox_all("billing.>"),
                &subjects::broadcast("tasks.>"),
            ]
        );
        assert!(p.publish_allow.contains(&subjects::delete_all("team.a")));
        assert_eq!(
            p.subscribe_allow,
            [
                "_INBOX.>".to_owned(),
                subjects::inbox_all("team.a"),
                subjects::broadcast("news.*"),
            ]
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
        assert!(operator.publish_allow.contains(&ADMIN.into()));
        assert!(!operator.publish_allow.iter().any(|s| s.contains("MSG")));
        assert_eq!(operator.subscribe_allow, strings(&["_INBOX.>"]));
    }

    #[test]
    fn the_broker_publishes_only_answers() {
        let broker = broker_permissions();
        assert!(broker.publish_allow.is_empty());
        assert_eq!(broker.publish_deny, strings(&[">"]));
        assert_eq!(broker.subscribe_allow, strings(&[PROTOCOL, ADMIN]));
        let responses = broker.responses.unwrap();
        assert_eq!(responses.max, 1, "one answer per request");
        assert!(
            responses.ttl >= Duration::from_secs(60),
            "a long-poll answers up to 30 s later"
        );
        let replicated = replicated_broker_permissions("b1");
        assert_eq!(
            replicated.publish_allow,
            strings(&[
                "$JS.API.>",
                "$KV.MQ9_LEASES_b1.>",
                "$mq9.REPL.b1.>",
                "$mq9.FWD.b1.>",
                "_R_.>",
                "_INBOX.>"
            ])
        );
        assert_eq!(replicated.publish_deny, strings(&[PROTOCOL, ADMIN]));
        assert_eq!(
            replicated.subscribe_allow,
            strings(&[PROTOCOL, ADMIN, "$mq9.FWD.b1.>", "_INBOX.>"])
        );
        assert_eq!(replicated.responses, broker.responses);
        let push = account_push_permissions();
        assert_eq!(push.publish_allow, strings(&["$SYS.REQ.CLAIMS.UPDATE"]));
        assert_eq!(push.subscribe_allow, strings(&["_INBOX.>"]));
    }
}
