//! `mq9 agents register | unregister | report | discover`: the agent registry,
//! `$mq9.AI.AGENT.*`. An agent is a JSON object — an A2A AgentCard or anything — identified by
//! its `name`, else its `mailbox`; DISCOVER returns the objects as registered.

use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::output::{list_or_none, table, text};
use super::{json_arg, read_input, Context};
use crate::protocol::agents::{
    AgentLookup, DiscoverRequest, RegisterRequest, DEFAULT_DISCOVER_LIMIT, MAX_DISCOVER_LIMIT,
};
use crate::protocol::encode::subjects;
use crate::protocol::subject::AgentVerb;

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
    fn lookup(&self) -> AgentLookup {
        AgentLookup {
            name: self.name.clone(),
            mailbox: self.mailbox.clone(),
        }
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
            // The broker's own reading, before connecting: JSON, an object, a name or mailbox.
            let request = RegisterRequest::parse(&read_input(card.into_bytes())?)
                .map_err(|e| anyhow!("the agent's JSON is not valid: {}", e.message))?;
            let subject = subjects::agent(AgentVerb::Register);
            ctx.call(&subject, request.encode(), |_| {
                format!("registered agent {}\n", request.identity)
            })
            .await
        }
        AgentsCommand::Unregister(agent) => {
            let subject = subjects::agent(AgentVerb::Unregister);
            ctx.call(&subject, agent.lookup().encode(), |_| {
                format!("unregistered {}\n", agent.describe())
            })
            .await
        }
        AgentsCommand::Report { agent, status } => {
            let subject = subjects::agent(AgentVerb::Report);
            ctx.call(&subject, agent.lookup().encode_report(status), |_| {
                format!("reported {}\n", agent.describe())
            })
            .await
        }
        AgentsCommand::Discover {
            text,
            semantic,
            limit,
            page,
        } => {
            let request = DiscoverRequest {
                // The broker's precedence: a non-blank text, else a non-blank semantic.
                query: [text, semantic]
                    .into_iter()
                    .flatten()
                    .find(|query| !query.trim().is_empty()),
                limit: limit.unwrap_or(DEFAULT_DISCOVER_LIMIT) as usize,
                page: page.unwrap_or(1) as usize,
            };
            let reply = ctx
                .client
                .request(&subjects::agent(AgentVerb::Discover), request.encode())
                .await?;
            let agents = reply.get("agents").cloned().unwrap_or_else(|| json!([]));
            ctx.out.print(&agents, || discovered(&agents))
        }
    }
}

/// One line per agent: name, mailbox, and a short summary from its description.
fn discovered(agents: &Value) -> String {
    list_or_none(agents, "agents", agent_table)
}

fn agent_table(agents: &[Value]) -> String {
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
