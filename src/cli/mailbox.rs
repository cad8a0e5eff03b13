//! `mq9 mailbox create | info | list | delete`.
//!
//! `create` is the agents' own `$mq9.AI.MAILBOX.CREATE`; `info`, `list` and `delete` use the
//! administration API `$mq9.ADMIN.MAILBOX.*` (protocol.md §6), which needs credentials with
//! permission on `$mq9.ADMIN.>` when the server enforces them.

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::{json, Value};

use super::output::{expiry, fields, lifetime, list_or_none, table, text, time};
use super::{address, Context};
use crate::protocol::admin::{ListRequest, MAX_LIST_LIMIT};
use crate::protocol::encode::{bodies, subjects};
use crate::protocol::request::CreateRequest;
use crate::protocol::subject::AdminVerb;
use crate::protocol::MailboxType;

#[derive(Subcommand, Debug)]
pub enum MailboxCommand {
    /// Create a mailbox; prints its address.
    Create {
        /// The address to create (default: an unguessable generated one).
        #[arg(long, value_parser = address)]
        name: Option<String>,
        /// Lifetime in seconds; 0 = never expires (default: the broker's, 86400 out of the box).
        #[arg(long, value_name = "SECS")]
        ttl: Option<u64>,
        /// `standard` keeps every message, `latest` only the newest.
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<MailboxType>,
        /// A description, kept with the mailbox.
        #[arg(long)]
        desc: Option<String>,
    },
    /// Show a mailbox: type, lifetime, owner, messages, bytes, groups, subscriptions.
    Info {
        #[arg(value_parser = address)]
        address: String,
    },
    /// List mailboxes in name order.
    List {
        /// Only names starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Most mailboxes to list (asked for page by page).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
    },
    /// Delete a mailbox with everything it holds.
    Delete {
        #[arg(value_parser = address)]
        address: String,
    },
}

/// `--type standard|latest`: the protocol's own type, offered to clap by its wire names.
impl clap::ValueEnum for MailboxType {
    fn value_variants<'a>() -> &'a [Self] {
        &[MailboxType::Standard, MailboxType::Latest]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

pub async fn run(command: MailboxCommand, ctx: &Context) -> Result<()> {
    match command {
        MailboxCommand::Create {
            name,
            ttl,
            kind,
            desc,
        } => {
            let request = CreateRequest {
                name,
                ttl,
                kind: kind.unwrap_or(MailboxType::Standard),
                desc,
            };
            ctx.call(&subjects::mailbox_create(), request.encode(), |reply| {
                fields(&[
                    ("mail address", text(&reply["mail_address"])),
                    ("type", text(&reply["type"])),
                    ("ttl", lifetime(reply)),
                ])
            })
            .await
        }
        MailboxCommand::Info { address } => {
            let reply = admin(ctx, AdminVerb::Info, &address).await?;
            if reply["exists"] != true {
                bail!("mailbox {address} does not exist (not_found)");
            }
            ctx.out.print(&reply, || info(&reply))
        }
        MailboxCommand::List { prefix, limit } => {
            let listing = list(ctx, prefix.unwrap_or_default(), limit).await?;
            ctx.out.print(&listing, || listing_text(&listing))
        }
        MailboxCommand::Delete { address } => {
            let reply = admin(ctx, AdminVerb::Delete, &address).await?;
            ctx.out.print(&reply, || {
                if reply["deleted"] == true {
                    format!("deleted mailbox {address}\n")
                } else {
                    format!("mailbox {address} did not exist: nothing deleted\n")
                }
            })
        }
    }
}

/// `MAILBOX.INFO` or `MAILBOX.DELETE` of one mailbox.
async fn admin(ctx: &Context, verb: AdminVerb, address: &str) -> Result<Value> {
    ctx.client
        .request(&subjects::admin(verb), bodies::mailbox_name(address))
        .await
}

/// Pages through `MAILBOX.LIST` with `after` = the last name seen while the broker says
/// `more`, until `limit` mailboxes are collected. The result has the reply's shape, with
/// `more` telling whether mailboxes beyond `limit` exist.
async fn list(ctx: &Context, prefix: String, limit: u64) -> Result<Value> {
    let mut mailboxes: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let remaining = limit - mailboxes.len() as u64;
        let request = ListRequest {
            prefix: prefix.clone(),
            after,
            limit: remaining.min(MAX_LIST_LIMIT) as usize,
            owner: None,
        };
        let reply = ctx
            .client
            .request(&subjects::admin(AdminVerb::List), request.encode())
            .await?;
        let page = reply["mailboxes"].as_array().cloned().unwrap_or_default();
        let more = reply["more"] == true;
        after = page
            .last()
            .and_then(|m| m["name"].as_str())
            .map(str::to_owned);
        mailboxes.extend(page);
        if !more || after.is_none() || mailboxes.len() as u64 >= limit {
            return Ok(json!({"error": "", "mailboxes": mailboxes, "more": more}));
        }
    }
}

fn listing_text(listing: &Value) -> String {
    list_or_none(&listing["mailboxes"], "mailboxes", |mailboxes| {
        mailbox_table(mailboxes, listing["more"] == true)
    })
}

fn mailbox_table(mailboxes: &[Value], more: bool) -> String {
    let header = ["NAME", "TYPE", "TTL", "EXPIRES", "OWNER", "MESSAGES"];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    rows.extend(mailboxes.iter().map(|m| {
        vec![
            text(&m["name"]),
            text(&m["type"]),
            format!("{}s", m["ttl"]),
            expiry(&m["expires_at"]),
            text(&m["owner"]),
            m["messages"].to_string(),
        ]
    }));
    let mut text = table(&rows);
    if more {
        text.push_str("... more mailboxes exist: raise --limit or narrow --prefix\n");
    }
    text
}

fn info(reply: &Value) -> String {
    let subscriptions: Vec<String> = reply["subscriptions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let subscriptions = if subscriptions.is_empty() {
        "none".to_owned()
    } else {
        subscriptions.join(", ")
    };
    fields(&[
        ("mail address", text(&reply["name"])),
        ("type", text(&reply["type"])),
        ("ttl", lifetime(reply)),
        ("created", time(reply["created_at"].as_u64().unwrap_or(0))),
        ("owner", text(&reply["owner"])),
        ("messages", reply["messages"].to_string()),
        ("bytes", reply["bytes"].to_string()),
        ("groups", reply["groups"].to_string()),
        ("subscriptions", subscriptions),
    ])
}
