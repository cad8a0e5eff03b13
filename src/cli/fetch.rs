//! `mq9 fetch`: `MSG.FETCH.{addr}`, stateless or as a consumer group, then with
//! `--ack` one `MSG.ACK.{addr}` for the last message of the reply — which acknowledges
//! the whole batch (protocol.md §3, MSG.ACK).

use std::time::Duration;

use anyhow::Result;
use async_nats::HeaderMap;
use clap::{Args, ValueEnum};

use super::output::messages;
use super::{address, Context};
use crate::protocol::encode::subjects;
use crate::protocol::request::{
    self as protocol, AckRequest, FetchRequest, DEFAULT_ACK_WAIT_MS, DEFAULT_MAX_WAIT_MS,
    DEFAULT_NUM_MSGS, MAX_ACK_WAIT_MS, MAX_MAX_WAIT_MS, MAX_NUM_MSGS,
};

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// The mailbox to fetch from.
    #[arg(value_parser = address)]
    address: String,
    /// Consumer group: the broker remembers what the group has seen and leases what it
    /// returns until acknowledged. Without it the fetch is stateless.
    #[arg(long)]
    group: Option<String>,
    /// Where to start (for a group: only while it has no state yet, or with --force).
    /// The broker's default is earliest.
    #[arg(long)]
    deliver: Option<Deliver>,
    /// Unix seconds: start at the first message created at or after it (implies --deliver
    /// from_time).
    #[arg(
        long,
        value_name = "T",
        conflicts_with = "from_id",
        required_if_eq("deliver", "from_time")
    )]
    from_time: Option<u64>,
    /// Start at this msg_id (implies --deliver from_id).
    #[arg(long, value_name = "N", required_if_eq("deliver", "from_id"))]
    from_id: Option<u64>,
    /// Most messages in the reply (broker default 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_NUM_MSGS))]
    num: Option<u64>,
    /// Milliseconds the broker may hold the request while the mailbox is empty (long-poll;
    /// broker default 500).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(..=MAX_MAX_WAIT_MS))]
    wait: Option<u64>,
    /// Milliseconds a group's lease lasts before unacknowledged messages are redelivered
    /// (broker default 30000).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=MAX_ACK_WAIT_MS))]
    ack_wait: Option<u64>,
    /// Start the group at --deliver even if it has state.
    #[arg(long)]
    force: bool,
    /// Acknowledge everything returned (needs --group).
    #[arg(long, requires = "group")]
    ack: bool,
}

/// FETCH's `deliver` policies, by their wire names (the protocol's [`protocol::Deliver`]
/// carries the start value too, which clap takes from its own flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
enum Deliver {
    Earliest,
    Latest,
    FromTime,
    FromId,
}

pub async fn run(args: FetchArgs, ctx: &Context) -> Result<()> {
    let request = request(&args);
    let linger = Duration::from_millis(request.max_wait_ms);
    let reply = ctx
        .client
        .send(
            &subjects::fetch(&args.address),
            HeaderMap::new(),
            request.encode(),
            linger,
        )
        .await?;
    let last = reply["messages"]
        .as_array()
        .and_then(|items| items.last())
        .and_then(|item| item["msg_id"].as_u64());
    let acked = match (args.ack, request.group, last) {
        (true, Some(group), Some(msg_id)) => {
            let ack = AckRequest { group, msg_id };
            let subject = subjects::ack(&args.address);
            ctx.client
                .request(&subject, ack.encode())
                .await
                .map_err(|e| {
                    e.context(
                        "fetched messages but could not acknowledge them (they will be redelivered)",
                    )
                })?;
            Some(ack.group)
        }
        _ => None,
    };
    ctx.out.print(&reply, || {
        let mut text = messages(&reply);
        if let Some(group) = acked {
            text.push_str(&format!("(acknowledged for group {group})\n"));
        }
        text
    })
}

/// The FETCH the user asked for. `--from-time` / `--from-id` imply their `deliver` policy
/// when `--deliver` is not given (clap makes sure the one `--deliver` names is there).
fn request(args: &FetchArgs) -> FetchRequest {
    let policy = args.deliver.or(match (args.from_time, args.from_id) {
        (Some(_), _) => Some(Deliver::FromTime),
        (_, Some(_)) => Some(Deliver::FromId),
        _ => None,
    });
    let deliver = match policy {
        None | Some(Deliver::Earliest) => protocol::Deliver::Earliest,
        Some(Deliver::Latest) => protocol::Deliver::Latest,
        Some(Deliver::FromTime) => protocol::Deliver::FromTime(args.from_time.unwrap_or_default()),
        Some(Deliver::FromId) => protocol::Deliver::FromId(args.from_id.unwrap_or_default()),
    };
    FetchRequest {
        group: args.group.clone(),
        deliver,
        force_deliver: args.force,
        num_msgs: args.num.unwrap_or(DEFAULT_NUM_MSGS) as usize,
        max_wait_ms: args.wait.unwrap_or(DEFAULT_MAX_WAIT_MS),
        ack_wait_ms: args.ack_wait.unwrap_or(DEFAULT_ACK_WAIT_MS),
    }
}
