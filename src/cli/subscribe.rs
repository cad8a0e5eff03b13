//! `mq9 subscribe | unsubscribe <addr> <topic>`: `$mq9.AI.MAILBOX.SUBSCRIBE` /
//! `UNSUBSCRIBE`. While subscribed, every message published on `$mq9.AI.BROADCAST.{topic}`
//! is also stored in the mailbox — broadcast that reaches agents which were offline.

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::{address, Context};

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
    let (verb, done) = if subscribe {
        (
            "SUBSCRIBE",
            format!("subscribed mailbox {address} to topic {topic}\n"),
        )
    } else {
        (
            "UNSUBSCRIBE",
            format!("unsubscribed mailbox {address} from topic {topic}\n"),
        )
    };
    let request = json!({"mail_address": address, "topic": topic});
    let reply = ctx
        .client
        .request(&format!("$mq9.AI.MAILBOX.{verb}"), &request)
        .await?;
    ctx.out.print(&reply, || done)
}

/// Value parser for topics: the pattern rules the broker applies (protocol.md §3).
fn topic(text: &str) -> Result<String, String> {
    crate::protocol::subject::validate_topic(text)
        .map(|()| text.to_owned())
        .map_err(|e| e.message)
}
