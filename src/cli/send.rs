//! `mq9 send`: a request on `MSG.SEND.{addr}` whose payload is the message, stored as
//! sent, and whose options travel as `mq9-*` headers — set only when given, so that the
//! broker's defaults apply otherwise.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, Result};
use async_nats::header::{HeaderName, HeaderValue};
use clap::Args;

use super::{address, read_input, Context};
use crate::protocol::encode::subjects;
use crate::protocol::headers::SendOptions;
use crate::protocol::Priority;

#[derive(Args, Debug)]
pub struct SendArgs {
    /// The mailbox to send to.
    #[arg(value_parser = address)]
    address: String,
    /// The message: the argument's bytes, or `-` to read them from stdin (binary-safe).
    #[arg(value_name = "PAYLOAD|-")]
    payload: OsString,
    /// Delivery order: critical > urgent > normal (the broker's default) > notify.
    #[arg(long)]
    priority: Option<Priority>,
    /// Compaction key: the mailbox keeps only the newest message per key.
    #[arg(long, value_parser = header_value)]
    key: Option<String>,
    /// Seconds before the message becomes visible (its msg_id is assigned then).
    #[arg(long, value_name = "SECS")]
    delay: Option<u64>,
    /// Message lifetime in seconds from now.
    #[arg(long, value_name = "SECS")]
    ttl: Option<u64>,
    /// Tags, comma-separated (or repeated), for `mq9 query --tags`.
    #[arg(long, value_delimiter = ',', value_parser = header_value)]
    tags: Vec<String>,
    /// Any other header, stored and returned with the message (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = header)]
    headers: Vec<(String, String)>,
}

/// `--priority`: the protocol's own priorities, offered to clap by their wire names.
impl clap::ValueEnum for Priority {
    fn value_variants<'a>() -> &'a [Self] {
        &Priority::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

pub async fn run(args: SendArgs, ctx: &Context) -> Result<()> {
    let payload = read_input(args.payload.into_vec())?;
    let options = SendOptions {
        priority: args.priority,
        key: args.key,
        delay_secs: args.delay,
        ttl_secs: args.ttl,
        tags: args.tags,
        headers: args.headers,
        dedup_id: None,
    };
    let headers = options.to_headers().map_err(|e| anyhow!(e.message))?;
    let reply = ctx
        .client
        .send(
            &subjects::send(&args.address),
            headers,
            payload,
            Duration::ZERO,
        )
        .await?;
    ctx.out.print(&reply, || match reply["msg_id"].as_i64() {
        Some(-1) => format!(
            "sent: delayed, delay_id {} (its msg_id is assigned when it becomes visible)\n",
            reply["delay_id"]
        ),
        _ => format!("sent: msg_id {}\n", reply["msg_id"]),
    })
}

/// Value parser for header values (`--key`, `--tags`): no line breaks.
fn header_value(text: &str) -> Result<String, String> {
    HeaderValue::from_str(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

/// Value parser for `--header NAME=VALUE`: a name and a value NATS can carry.
fn header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| "expected NAME=VALUE".to_owned())?;
    let name = HeaderName::from_str(name.trim()).map_err(|e| e.to_string())?;
    header_value(value).map(|value| (name.to_string(), value))
}
