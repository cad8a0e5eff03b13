//! `mq9 agents register | unregister | report | discover`: the agent registry,
//! `$mq9.AI.AGENT.*`. An agent is a JSON object — an A2A AgentCard or anything — identified by
//! its `name`, else its `mailbox`; DISCOVER returns the objects as registered.

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::output::{table, text};
use super::{body, json_arg, read_input, Context};
use crate::protocol::agents::MAX_DISCOVER_LIMIT;

#[derive(Subcommand, Debug)]
pub enum AgentsCommand {
    /// Register an agent (replacing any entry of the same identity).
    ///
    /// The JSON object needs `name` and/or `mailbox`; with `ttl` (seconds) the entry expires
    /// unless reported within that time.
    Register {
        /// The agent's JSON object, or `-` to read it from stdin.
        #[arg(value_name = "JSON|-")]
        card: String,
    },
    /// Remove an agent from the registry.
    Unregister(AgentRef),
    /// Tell the registry an agent is alive (refreshing its ttl), with an optional status.
    Report {
        #[command(flatten)]
        agent: AgentRef,
        /// Any JSON, stored as the agent's latest status.
        #[arg(long, value_parser = json_arg)]
        status: Option<Value>,
    },
    /// Find agents: ranked full-text search over their objects, or all of them.
    Discover {
        /// Words to search for.
        #[arg(long)]
        text: Option<String>,
        /// A description of what is needed (ranked like --text until embeddings exist).
        #[arg(long)]
        semantic: Option<String>,
        /// Agents per page (broker default 20).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_DISCOVER_LIMIT))]
        limit: Option<u64>,
        /// Page number, from 1.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=u64::from(u32::MAX)))]
        page: Option<u64>,
    },
}

/// Which agent: by `--name` or by `--mailbox`, exactly one.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct AgentRef {
    /// The agent's name.
    #[arg(long)]
    name: Option<String>,
    /// The agent's mailbox (for agents registered without a name).
    #[arg(long)]
    mailbox: Option<String>,
}

impl AgentRef {
    /// The request fields naming the agent, plus `extra`.
    fn body(&self, extra: Option<Value>) -> Value {
        body([
            ("name", self.name.clone().map(Value::from)),
            ("mailbox", self.mailbox.clone().map(Value::from)),
            ("status", extra),
        ])
    }

    fn describe(&self) -> String {
        match (&self.name, &self.mailbox) {
            (Some(name), _) => format!("agent {name}"),
            (_, mailbox) => format!("agent with mailbox {}", mailbox.as_deref().unwrap_or("")),
        }
    }
}

pub async fn run(command: AgentsCommand, ctx: &Context) -> Result<()> {
    match command {
        AgentsCommand::Register { card } => {
            let card = card_object(&read_input(card.into_bytes())?)?;
            let identity = ["name", "mailbox"]
                .into_iter()
                .find_map(|field| card[field].as_str().filter(|s| !s.is_empty()))
                .ok_or_else(|| {
                    anyhow!("the agent's JSON object needs a `name` or `mailbox` string")
                })?
                .to_owned();
            let reply = ctx.client.request("$mq9.AI.AGENT.REGISTER", &card).await?;
            ctx.out
                .print(&reply, || format!("registered agent {identity}\n"))
        }
        AgentsCommand::Unregister(agent) => {
            let reply = ctx
                .client
                .request("$mq9.AI.AGENT.UNREGISTER", &agent.body(None))
                .await?;
            ctx.out
                .print(&reply, || format!("unregistered {}\n", agent.describe()))
        }
        AgentsCommand::Report { agent, status } => {
            let reply = ctx
                .client
                .request("$mq9.AI.AGENT.REPORT", &agent.body(status))
                .await?;
            ctx.out
                .print(&reply, || format!("reported {}\n", agent.describe()))
        }
        AgentsCommand::Discover {
            text,
            semantic,
            limit,
            page,
        } => {
            let request = body([
                ("text", text.map(Value::from)),
                ("semantic", semantic.map(Value::from)),
                ("limit", limit.map(Value::from)),
                ("page", page.map(Value::from)),
            ]);
            let reply = ctx
                .client
                .request("$mq9.AI.AGENT.DISCOVER", &request)
                .await?;
            let agents = reply.get("agents").cloned().unwrap_or_else(|| json!([]));
            ctx.out.print(&agents, || discovered(&agents))
        }
    }
}

/// The user's JSON for REGISTER, checked to be an object before it goes on the wire.
fn card_object(input: &[u8]) -> Result<Value> {
    let card: Value =
        serde_json::from_slice(input).map_err(|e| anyhow!("the agent's JSON is not valid: {e}"))?;
    if !card.is_object() {
        bail!("the agent's JSON must be an object, like {{\"name\":\"translator\"}}");
    }
    Ok(card)
}

/// One line per agent: name, mailbox, and a short summary from its description.
fn discovered(agents: &Value) -> String {
    let agents = agents.as_array().map(Vec::as_slice).unwrap_or(&[]);
    if agents.is_empty() {
        return "no agents\n".to_owned();
    }
    let mut rows = vec![vec!["NAME".into(), "MAILBOX".into(), "SUMMARY".into()]];
    rows.extend(agents.iter().map(|agent| {
        vec![
            text(&agent["name"]),
            text(&agent["mailbox"]),
            summary(agent),
        ]
    }));
    table(&rows)
}

/// The agent's `description` (or `desc`), cut to 60 characters; else its other fields.
fn summary(agent: &Value) -> String {
    let full = match ["description", "desc"]
        .into_iter()
        .find_map(|field| agent[field].as_str())
    {
        Some(description) => description.to_owned(),
        None => {
            let mut rest = agent.as_object().cloned().unwrap_or_default();
            rest.remove("name");
            rest.remove("mailbox");
            Value::Object(rest).to_string()
        }
    };
    let line = full.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(60) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}
