//! `mq9 fetch`: `$mq9.AI.MSG.FETCH.{addr}`, stateless or as a consumer group, then with
//! `--ack` one `$mq9.AI.MSG.ACK.{addr}` for the last message of the reply — which acknowledges
//! the whole batch (protocol.md §3, MSG.ACK).

use std::time::Duration;

use anyhow::Result;
use async_nats::HeaderMap;
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use super::output::messages;
use super::{address, body, Context};
use crate::protocol::request::{
    DEFAULT_MAX_WAIT_MS, MAX_ACK_WAIT_MS, MAX_MAX_WAIT_MS, MAX_NUM_MSGS,
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

/// FETCH's `deliver` policies, by their wire names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
enum Deliver {
    Earliest,
    Latest,
    FromTime,
    FromId,
}

impl Deliver {
    fn wire_name(self) -> Value {
        let name = self.to_possible_value().expect("no variant is skipped");
        Value::from(name.get_name())
    }
}

pub async fn run(args: FetchArgs, ctx: &Context) -> Result<()> {
    let request = request(&args);
    let linger = Duration::from_millis(args.wait.unwrap_or(DEFAULT_MAX_WAIT_MS));
    let subject = format!("$mq9.AI.MSG.FETCH.{}", args.address);
    let reply = ctx
        .client
        .send(
            &subject,
            HeaderMap::new(),
            request.to_string().into_bytes(),
            linger,
        )
        .await?;
    let last = reply["messages"]
        .as_array()
        .and_then(|items| items.last())
        .map(|item| item["msg_id"].clone());
    let acked = match (args.ack, args.group.as_deref(), last) {
        (true, Some(group), Some(msg_id)) => {
            let subject = format!("$mq9.AI.MSG.ACK.{}", args.address);
            let ack = json!({"group_name": group, "msg_id": msg_id});
            ctx.client.request(&subject, &ack).await.map_err(|e| {
                e.context(
                    "fetched messages but could not acknowledge them (they will be redelivered)",
                )
            })?;
            Some(group)
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

/// The FETCH body: only the fields the user set. `--from-time` / `--from-id` imply their
/// `deliver` policy when `--deliver` is not given.
fn request(args: &FetchArgs) -> Value {
    let deliver = args.deliver.or(match (args.from_time, args.from_id) {
        (Some(_), _) => Some(Deliver::FromTime),
        (_, Some(_)) => Some(Deliver::FromId),
        _ => None,
    });
    let config = body([
        ("num_msgs", args.num.map(Value::from)),
        ("max_wait_ms", args.wait.map(Value::from)),
        ("ack_wait_ms", args.ack_wait.map(Value::from)),
    ]);
    body([
        ("group_name", args.group.clone().map(Value::from)),
        ("deliver", deliver.map(Deliver::wire_name)),
        ("from_time", args.from_time.map(Value::from)),
        ("from_id", args.from_id.map(Value::from)),
        ("force_deliver", args.force.then_some(Value::Bool(true))),
        ("config", (config != json!({})).then_some(config)),
    ])
}
