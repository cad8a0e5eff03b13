//! `mq9 delete <addr> <id>`: `$mq9.AI.MSG.DELETE.{addr}.{id}` — one stored message by its
//! msg_id, or one delayed message that is not visible yet by `d` + its delay_id (as `mq9 send
//! --delay` and `mq9 query --delayed` print it).

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::{address, Context};

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The mailbox holding the message.
    #[arg(value_parser = address)]
    address: String,
    /// A msg_id (`7`), or `d` and a delay_id (`d3`) for a delayed message.
    #[arg(value_parser = message_id)]
    id: String,
}

pub async fn run(args: DeleteArgs, ctx: &Context) -> Result<()> {
    let subject = format!("$mq9.AI.MSG.DELETE.{}.{}", args.address, args.id);
    let reply = ctx.client.request(&subject, &json!({})).await?;
    ctx.out
        .print(&reply, || format!("deleted message {}\n", args.id))
}

/// `7` or `d3`: what the broker's DELETE subject takes as its last token.
fn message_id(text: &str) -> Result<String, String> {
    let digits = text.strip_prefix('d').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a message id: a msg_id (7) or d and a delay_id (d3)"
        ))
    }
}
