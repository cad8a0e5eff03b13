//! `mq9 mailbox | send | fetch | query | agents | subscribe | unsubscribe`: a command-line
//! client of the mq9 protocol, in the spirit of the `nats` CLI, for people trying mq9 by hand
//! and for shell scripts.
//!
//! Every command is one (or a few) NATS requests to the subjects of protocol.md, so the CLI is
//! also a worked example of the wire contract:
//!
//! - [`client`] connects (lazily, so bad arguments fail before any network I/O) and turns
//!   `{"error":"msg","code":"c"}` replies into errors;
//! - [`output`] prints either for humans or, with `--json`, the broker's reply object;
//! - one module per command group builds the typed request, which `protocol::encode` writes
//!   on the wire (only what differs from the protocol's defaults), and reads the reply.
//!
//! Error contract: every failure — bad arguments, connection refused, timeout, error reply —
//! ends the process with a non-zero status and exactly one line `mq9: <reason>` on stderr;
//! stdout then stays empty (exit status 2 for bad arguments, 1 for everything else).
//! Arguments that can be checked locally (mail addresses, topics, headers, JSON) are checked
//! before connecting, mostly by clap value parsers.

mod agents;
mod client;
mod delete;
mod fetch;
mod mailbox;
mod output;
mod query;
mod send;
mod subscribe;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use client::Client;
use output::Printer;

/// Options shared by every client command (they may stand before or after the command name).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Client options (mailbox, send, fetch, query, agents, subscribe)")]
pub struct ClientArgs {
    /// NATS server URL(s) where an mq9 broker listens, comma-separated.
    #[arg(
        long,
        short = 's',
        env = "MQ9_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub server: String,
    /// NATS credentials file (JWT + NKey seed), as issued for an agent.
    #[arg(long, env = "MQ9_CREDS", global = true)]
    pub creds: Option<PathBuf>,
    /// Print the broker's reply as one JSON document instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for the connection and for each reply (fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = seconds, global = true)]
    pub timeout: Duration,
}

/// The client commands, flattened into the binary's top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create, inspect, list and delete mailboxes.
    #[command(subcommand)]
    Mailbox(mailbox::MailboxCommand),
    /// Send one message to a mailbox.
    Send(send::SendArgs),
    /// Fetch messages from a mailbox (priority order), optionally as a consumer group.
    Fetch(fetch::FetchArgs),
    /// Read a mailbox's messages without consuming them, with filters.
    Query(query::QueryArgs),
    /// Delete one message: by msg_id, or a delayed one by `d` + its delay_id.
    Delete(delete::DeleteArgs),
    /// The agent registry: register, unregister, report, discover.
    #[command(subcommand)]
    Agents(agents::AgentsCommand),
    /// Store every broadcast on a topic in a mailbox, also while its agent is offline.
    Subscribe(subscribe::TopicArgs),
    /// Stop storing a topic's broadcasts in a mailbox.
    Unsubscribe(subscribe::TopicArgs),
}

/// What every command works with: the broker connection and the chosen output form.
struct Context {
    client: Client,
    out: Printer,
}

impl Context {
    /// One request whose success reply is printed: as JSON with `--json`, else as the text
    /// `human` makes of it.
    async fn call(
        &self,
        subject: &str,
        body: Vec<u8>,
        human: impl FnOnce(&Value) -> String,
    ) -> anyhow::Result<()> {
        let reply = self.client.request(subject, body).await?;
        self.out.print(&reply, || human(&reply))
    }
}

/// Runs one client command. The connection is opened by the first request.
pub async fn run(args: ClientArgs, command: Command) -> anyhow::Result<()> {
    let ctx = Context {
        out: Printer::new(args.json),
        client: Client::new(args),
    };
    match command {
        Command::Mailbox(command) => mailbox::run(command, &ctx).await,
        Command::Send(args) => send::run(args, &ctx).await,
        Command::Fetch(args) => fetch::run(args, &ctx).await,
        Command::Query(args) => query::run(args, &ctx).await,
        Command::Delete(args) => delete::run(args, &ctx).await,
        Command::Agents(command) => agents::run(command, &ctx).await,
        Command::Subscribe(args) => subscribe::run(args, true, &ctx).await,
        Command::Unsubscribe(args) => subscribe::run(args, false, &ctx).await,
    }
}

/// A clap error (bad arguments) as the one line the error contract allows: clap's message and
/// its hints (`[possible values: ...]`, `tip: ...`) joined, the usage block left out. A command
/// group named without its command (`mq9 mailbox`) says so instead of printing its help.
pub fn usage_error_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let lines = rendered
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    if error.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let usage = lines
            .clone()
            .find_map(|line| line.strip_prefix("Usage: "))
            .unwrap_or("mq9 <COMMAND>");
        return format!("incomplete command, usage: {usage} (see --help)");
    }
    let message: Vec<&str> = lines
        .filter(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    format!("{message} (see --help)")
}

/// Value parser for mail addresses: the grammar of protocol.md §2, checked before connecting.
fn address(text: &str) -> Result<String, String> {
    crate::protocol::address::validate(text)
        .map(|()| text.to_owned())
        .map_err(|e| e.message)
}

/// Value parser for JSON arguments (`--status`).
fn json_arg(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
}

/// Value parser for `--timeout`: positive, finite seconds.
fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|secs| *secs > 0.0)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| "must be a positive number of seconds".to_owned())
}

/// Reads a command's input argument: the text itself, or all of stdin (as bytes) for `-`.
fn read_input(argument: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    if argument != b"-" {
        return Ok(argument);
    }
    let mut input = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut input)
        .map_err(|e| anyhow::anyhow!("reading stdin: {e}"))?;
    Ok(input)
}
