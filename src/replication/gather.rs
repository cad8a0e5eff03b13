//! Cluster-wide answers from every shard's (replication.md, "Cluster-wide commands"):
//! `MAILBOX.LIST` and `STATS` are asked of every shard and their replies merged here, so a
//! client of a replicated broker reads the same replies as from a single node.
//!
//! LIST: each shard answers its first `limit` mailboxes after `after`, in name order, saying
//! `more` and, if so, `next_after` (the last name it examined). The merged page holds the
//! names up to the smallest `next_after` of the shards that have more — beyond it a shard may
//! hold names it did not send — in name order, at most `limit` of them and within
//! `max_payload`; `next_after` continues from the page's last name (or from that smallest
//! `next_after` when the page is empty). STATS: the counts add up.

use serde_json::{json, Map, Value};

use crate::protocol::address::MAX_ADDRESS_LEN;

/// One page of LIST merged from the shards' `replies` (objects with `mailboxes`, `more`,
/// `next_after`), at most `limit` items and `max_payload` bytes.
pub fn list(replies: &[Value], limit: usize, max_payload: usize) -> Value {
    let cut: Option<&str> = replies
        .iter()
        .filter(|r| r["more"] == true)
        .filter_map(|r| r["next_after"].as_str())
        .min();
    let mut items: Vec<&Value> = replies
        .iter()
        .flat_map(|r| r["mailboxes"].as_array().into_iter().flatten())
        .filter(|item| cut.is_none_or(|cut| item["name"].as_str().unwrap_or_default() <= cut))
        .collect();
    items.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let mut room = max_payload.saturating_sub(128 + MAX_ADDRESS_LEN);
    let mut page = Vec::new();
    let mut truncated = false;
    for item in &items {
        let len = item.to_string().len() + 1;
        if page.len() == limit || (len > room && !page.is_empty()) {
            truncated = true;
            break;
        }
        room = room.saturating_sub(len);
        page.push((*item).clone());
    }
    let more = truncated || cut.is_some();
    let mut merged = json!({"mailboxes": page, "more": more});
    if more {
        let last = page.last().and_then(|item| item["name"].as_str());
        merged["next_after"] = json!(last.or(cut));
    }
    merged
}

/// STATS summed over the shards' `replies`.
pub fn stats(replies: &[Value]) -> Value {
    let mut merged = Map::new();
    for field in ["mailboxes", "messages", "bytes", "agents", "subscriptions"] {
        let total: u64 = replies.iter().filter_map(|r| r[field].as_u64()).sum();
        merged.insert(field.into(), json!(total));
    }
    for field in ["max_payload", "version"] {
        if let Some(value) = replies.iter().map(|r| &r[field]).find(|v| !v.is_null()) {
            merged.insert(field.into(), value.clone());
        }
    }
    Value::Object(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(names: &[&str], next_after: Option<&str>) -> Value {
        let items: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
        let mut reply = json!({"mailboxes": items, "more": next_after.is_some()});
        if let Some(next) = next_after {
            reply["next_after"] = json!(next);
        }
        reply
    }

    fn names(merged: &Value) -> Vec<&str> {
        let items = merged["mailboxes"].as_array().unwrap();
        items.iter().map(|i| i["name"].as_str().unwrap()).collect()
    }

    #[test]
    fn pages_merge_in_name_order_and_continue_where_they_stopped() {
        let shards = [page(&["a", "d", "g"], None), page(&["b", "e"], None)];
        let merged = list(&shards, 3, 1 << 20);
        assert_eq!(names(&merged), ["a", "b", "d"]);
        assert_eq!(merged["more"], true);
        assert_eq!(merged["next_after"], "d");
        let all = list(&shards, 10, 1 << 20);
        assert_eq!(names(&all), ["a", "b", "d", "e", "g"]);
        assert_eq!(all["more"], false);
        assert!(all.get("next_after").is_none());
    }

    /// A shard that stopped early (its scan budget) may hold names past where it stopped:
    /// the page ends there, so none is skipped.
    #[test]
    fn a_shard_that_stopped_early_bounds_the_page() {
        let shards = [page(&["a", "c"], Some("c")), page(&["b", "d", "f"], None)];
        let merged = list(&shards, 10, 1 << 20);
        assert_eq!(names(&merged), ["a", "b", "c"]);
        assert_eq!(merged["next_after"], "c");
        let nothing_yet = [page(&[], Some("m")), page(&["x"], None)];
        let merged = list(&nothing_yet, 10, 1 << 20);
        assert!(names(&merged).is_empty());
        assert_eq!(merged["next_after"], "m", "the next page starts after m");
    }

    #[test]
    fn stats_add_up() {
        let shards = [
            json!({"mailboxes": 2, "messages": 5, "bytes": 50, "agents": 3, "subscriptions": 1,
                   "max_payload": 1048576, "version": "0.1.0"}),
            json!({"mailboxes": 1, "messages": 1, "bytes": 7, "agents": 0, "subscriptions": 0,
                   "max_payload": 1048576, "version": "0.1.0"}),
        ];
        let merged = stats(&shards);
        assert_eq!(merged["mailboxes"], 3);
        assert_eq!(merged["messages"], 6);
        assert_eq!(merged["bytes"], 57);
        assert_eq!(merged["agents"], 3);
        assert_eq!(merged["version"], "0.1.0");
    }
}
