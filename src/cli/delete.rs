//! `mq9 delete <addr> <id>`: `MSG.DELETE.{addr}.{id}` — one stored message by its msg_id, or
//! one delayed message that is not visible yet by `d` + its delay_id (as `mq9 send --delay`
//! and `mq9 query --delayed` print it). DELETE takes no body.

use anyhow::Result;
use clap::Args;

use super::{address, Context};
use crate::protocol::encode::subjects;
use crate::protocol::subject::DeleteTarget;

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The mailbox holding the message.
    #[arg(value_parser = address)]
    address: String,
    /// A msg_id (`7`), or `d` and a delay_id (`d3`) for a delayed message.
    #[arg(value_parser = message_id)]
    id: DeleteTarget,
}

pub async fn run(args: DeleteArgs, ctx: &Context) -> Result<()> {
    let subject = subjects::delete(&args.address, args.id);
    ctx.call(&subject, Vec::new(), |_| {
        format!("deleted message {}\n", args.id)
    })
    .await
}

/// `7` or `d3`, read as the broker reads the DELETE subject's last token.
fn message_id(text: &str) -> Result<DeleteTarget, String> {
    DeleteTarget::parse(text).ok_or_else(|| {
        format!("{text:?} is not a message id: a msg_id (7) or d and a delay_id (d3)")
    })
}
