//! `mq9 query`: `MSG.QUERY.{addr}` — read a mailbox's newest matching messages without
//! consuming them (no group state changes, `delivery_count` stays 0).

use anyhow::Result;
use clap::Args;

use super::output::messages;
use super::{address, Context};
use crate::protocol::encode::subjects;
use crate::protocol::request::{QueryRequest, DEFAULT_QUERY_LIMIT, MAX_QUERY_LIMIT};

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The mailbox to read.
    #[arg(value_parser = address)]
    address: String,
    /// Only the message stored under this compaction key.
    #[arg(long)]
    key: Option<String>,
    /// Only messages carrying every one of these tags (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    /// Only messages created at or after these Unix seconds.
    #[arg(long, value_name = "T")]
    since: Option<u64>,
    /// The newest N matching messages (broker default 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_QUERY_LIMIT))]
    limit: Option<u64>,
    /// Continue an earlier query below this msg_id (delay_id with `--delayed`), as its
    /// `more: --before N` line says.
    #[arg(long, value_name = "ID")]
    before: Option<u64>,
    /// List the delayed messages that are not visible yet (each deletable with
    /// `mq9 delete ADDR d<delay_id>`).
    #[arg(long)]
    delayed: bool,
}

pub async fn run(args: QueryArgs, ctx: &Context) -> Result<()> {
    let request = QueryRequest {
        key: args.key,
        tags: args.tags,
        since: args.since,
        limit: args.limit.unwrap_or(DEFAULT_QUERY_LIMIT) as usize,
        before: args.before,
        delayed: args.delayed,
    };
    let subject = subjects::query(&args.address);
    ctx.call(&subject, request.encode(), |reply| {
        let mut text = messages(reply);
        if let Some(before) = reply["next_before"].as_u64() {
            text.push_str(&format!("more: --before {before}\n"));
        }
        text
    })
    .await
}
