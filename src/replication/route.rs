//! Which shard serves a request (replication.md, "Routing"). Any broker receives any request
//! (the queue group); the one that does not lead the request's shard forwards it to the
//! leader, keeping the client's reply subject, so the leader answers the client directly.
//!
//! - A command on one mailbox goes to the mailbox's shard ([`shard_of`] its address).
//! - CREATE without a name goes to any shard: the leader makes an address of its own shard.
//! - A durable broadcast goes to every shard: each stores it into its own subscribed
//!   mailboxes.
//! - `MAILBOX.LIST` and `STATS` are asked of every shard and the replies merged
//!   ([`super::gather`]).
//! - The agent registry lives in shard 0.
//! - `SHARDS` (who leads what) is answered by the receiving broker itself.

use super::shard::shard_of;
use crate::protocol::Request;

/// The subject prefix of forwarded requests: `$mq9.FWD.<cluster>.<shard>`. Only brokers
/// publish there (agents' permissions name `$mq9.AI.>` only).
pub const FORWARD_PREFIX: &str = "$mq9.FWD";

/// The header that carries a forwarded request's original subject.
pub const FORWARDED_SUBJECT: &str = "Mq9-Forwarded-Subject";

/// The header that carries a forwarded request's reply subject (the client's): the forward's
/// own reply subject is the forwarding broker's, for the leader's acknowledgement.
pub const FORWARDED_REPLY: &str = "Mq9-Forwarded-Reply";

/// The shard the registry and the cluster-wide admin commands live in.
pub const REGISTRY_SHARD: u32 = 0;

/// Where a request is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Shard(u32),
    /// Any shard will do (CREATE without a name): the receiving broker's own, if it leads one.
    AnyShard,
    EveryShard,
    /// Every shard answers; the replies are merged into one ([`super::gather`]).
    Gather,
    /// The receiving broker answers from the leases and the logs' state (SHARDS).
    Here,
}

/// Where `request` is served among `shards` shards.
pub fn target(request: &Request, shards: u32) -> Target {
    let of = |address: &str| Target::Shard(shard_of(address, shards));
    match request {
        Request::Create(create) => create.name.as_deref().map_or(Target::AnyShard, of),
        Request::Send { address, .. }
        | Request::Fetch { address, .. }
        | Request::Ack { address, .. }
        | Request::Query { address, .. }
        | Request::Delete { address, .. } => of(address),
        Request::Subscribe { request, .. } => of(&request.address),
        Request::Ensure(ensure) => of(&ensure.name),
        Request::AdminDelete { name } | Request::Info { name } => of(name),
        Request::Broadcast { .. } => Target::EveryShard,
        Request::List(_) | Request::Stats => Target::Gather,
        Request::Shards => Target::Here,
        Request::Register { .. }
        | Request::Unregister { .. }
        | Request::Report { .. }
        | Request::Discover(_) => Target::Shard(REGISTRY_SHARD),
    }
}

/// The subject requests forwarded to `shard` of `cluster` are published on.
pub fn forward_subject(cluster: &str, shard: u32) -> String {
    format!("{FORWARD_PREFIX}.{cluster}.{shard}")
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::subject;

    fn request(subject_text: &str, body: &str) -> Request {
        let route = subject::parse(subject_text).unwrap();
        Request::parse(route, None, &Bytes::from(body.to_owned()), None).unwrap()
    }

    #[test]
    fn a_mailbox_is_served_by_its_shard_whatever_the_command() {
        let shard = Target::Shard(shard_of("team.inbox", 16));
        for (subject, body) in [
            ("$mq9.AI.MSG.SEND.team.inbox", "hi"),
            ("$mq9.AI.MSG.FETCH.team.inbox", "{}"),
            (
                "$mq9.AI.MSG.ACK.team.inbox",
                r#"{"group_name":"g","msg_id":1}"#,
            ),
            ("$mq9.AI.MSG.QUERY.team.inbox", "{}"),
            ("$mq9.AI.MSG.DELETE.team.inbox.3", ""),
            ("$mq9.AI.MAILBOX.CREATE", r#"{"name":"team.inbox"}"#),
            (
                "$mq9.AI.MAILBOX.SUBSCRIBE",
                r#"{"mail_address":"team.inbox","topic":"t"}"#,
            ),
            ("$mq9.ADMIN.MAILBOX.INFO", r#"{"name":"team.inbox"}"#),
        ] {
            assert_eq!(target(&request(subject, body), 16), shard, "{subject}");
        }
    }

    #[test]
    fn unnamed_creates_broadcasts_and_the_registry() {
        assert_eq!(
            target(&request("$mq9.AI.MAILBOX.CREATE", "{}"), 16),
            Target::AnyShard
        );
        let broadcast = request("$mq9.AI.BROADCAST.jobs", "work");
        assert_eq!(target(&broadcast, 16), Target::EveryShard);
        let discover = request("$mq9.AI.AGENT.DISCOVER", "{}");
        assert_eq!(target(&discover, 16), Target::Shard(REGISTRY_SHARD));
        let list = request("$mq9.ADMIN.MAILBOX.LIST", "{}");
        assert_eq!(target(&list, 16), Target::Gather);
    }
}
