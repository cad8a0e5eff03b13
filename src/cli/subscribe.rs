//! `mq9 subscribe | unsubscribe <addr> <topic>`: `MAILBOX.SUBSCRIBE` / `UNSUBSCRIBE`. While
//! subscribed, every message published on `BROADCAST.{topic}` is also stored in the mailbox —
//! broadcast that reaches agents which were offline.

use anyhow::Result;
use clap::Args;

use super::{address, Context};
use crate::protocol::encode::subjects;
use crate::protocol::request::SubscribeRequest;

#[derive(Args, Debug)]
pub struct TopicArgs {
    /// The mailbox that stores the broadcasts.
    #[arg(value_parser = address)]
    address: String,
    /// A subject pattern relative to `$mq9.AI.BROADCAST.`: `task.available`, `task.*`,
    /// `system.>`.
    #[arg(value_parser = topic)]
    topic: String,
}

pub async fn run(args: TopicArgs, subscribe: bool, ctx: &Context) -> Result<()> {
    let (address, topic) = (&args.address, &args.topic);
    let (subject, done) = if subscribe {
        (
            subjects::subscribe(),
            format!("subscribed mailbox {address} to topic {topic}\n"),
        )
    } else {
        (
            subjects::unsubscribe(),
            format!("unsubscribed mailbox {address} from topic {topic}\n"),
        )
    };
    let request = SubscribeRequest {
        address: args.address.clone(),
        topic: args.topic.clone(),
        account: None,
    };
    ctx.call(&subject, request.encode(), |_| done).await
}

/// Value parser for topics: the pattern rules the broker applies (protocol.md §3).
fn topic(text: &str) -> Result<String, String> {
    crate::protocol::subject::validate_topic(text)
        .map(|()| text.to_owned())
        .map_err(|e| e.message)
}
