//! What a replicated Broker's status says of its shards, from the brokers' answer to
//! `$mq9.ADMIN.SHARDS` ([`ShardsAnswer`]): a pure function, so every case is a unit test.
//!
//! - `status.shards` is `led/total`: the shards that have a leader, of all of them.
//! - `status.shardLeaders` counts the shards each pod leads, every live pod listed (0 too: a
//!   pod that leads nothing is worth seeing, e.g. after it rejoined).
//! - `Degraded` while a shard has no JetStream quorum (its log cannot take a write: its
//!   mailboxes answer `unavailable`) or no leader (its requests wait for one).
//!
//! No answer, or an error answer, is *unknown*: the shard fields are left out rather than kept
//! stale, and nothing is said about quorum (the pods' readiness still drives `Available`).

use std::collections::BTreeMap;

use super::immutable::Refusal;
use crate::operator::admin_client::ShardsAnswer;

/// Degraded reason: a shard's log has no JetStream quorum.
pub const SHARDS_WITHOUT_QUORUM: &str = "ShardsWithoutQuorum";
/// Degraded reason: a shard has no leader.
pub const SHARDS_WITHOUT_LEADER: &str = "ShardsWithoutLeader";

/// The status fields and problems that follow from one answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardHealth {
    /// `led/total`.
    pub led: String,
    /// Pod → how many shards it leads.
    pub leaders: BTreeMap<String, u32>,
    /// Quorum first, then leaders: what makes the Broker `Degraded`.
    pub problems: Vec<Refusal>,
}

/// The [`ShardHealth`] of `answer`. Leaders of shards outside `0..shards` (or not numbers)
/// are not counted: the answer names them, but no such shard exists.
pub fn health(answer: &ShardsAnswer) -> ShardHealth {
    let total = answer.shards;
    let mut leaders: BTreeMap<String, u32> = answer.live.iter().map(|n| (n.clone(), 0)).collect();
    let mut led = vec![false; total as usize];
    for (shard, node) in &answer.leaders {
        let Some(shard) = shard.parse::<u32>().ok().filter(|&s| s < total) else {
            continue;
        };
        led[shard as usize] = true;
        *leaders.entry(node.clone()).or_default() += 1;
    }
    let leaderless: Vec<u32> = (0..total).filter(|&s| !led[s as usize]).collect();
    let mut without_quorum: Vec<u32> = answer.without_quorum.clone();
    without_quorum.sort_unstable();
    without_quorum.dedup();
    let mut problems = Vec::new();
    if !without_quorum.is_empty() {
        problems.push(Refusal {
            reason: SHARDS_WITHOUT_QUORUM,
            message: format!(
                "{} of {total} shards have no quorum ({}): their logs cannot take a write, so their mailboxes answer unavailable until 2 of the 3 copies are back",
                without_quorum.len(),
                listed(&without_quorum)
            ),
        });
    }
    if !leaderless.is_empty() {
        problems.push(Refusal {
            reason: SHARDS_WITHOUT_LEADER,
            message: format!(
                "{} of {total} shards have no leader ({}): requests to their mailboxes wait for a broker to take them over",
                leaderless.len(),
                listed(&leaderless)
            ),
        });
    }
    ShardHealth {
        led: format!("{}/{total}", total as usize - leaderless.len()),
        leaders,
        problems,
    }
}

/// Shard numbers for a message: the first ten, then how many more.
fn listed(shards: &[u32]) -> String {
    const SHOWN: usize = 10;
    let mut text: Vec<String> = shards.iter().take(SHOWN).map(u32::to_string).collect();
    if shards.len() > SHOWN {
        text.push(format!("and {} more", shards.len() - SHOWN));
    }
    format!("shard {}", text.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(value: serde_json::Value) -> ShardsAnswer {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn every_shard_led_is_healthy_and_counted_per_pod() {
        let health = health(&answer(json!({
            "shards": 4,
            "leaders": {"0": "b1-0", "1": "b1-1", "2": "b1-0", "3": "b1-2"},
            "live": ["b1-0", "b1-1", "b1-2", "b1-3"],
            "without_quorum": []
        })));
        assert_eq!(health.led, "4/4");
        let counts: Vec<(&str, u32)> = health
            .leaders
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(counts, [("b1-0", 2), ("b1-1", 1), ("b1-2", 1), ("b1-3", 0)]);
        assert!(health.problems.is_empty());
    }

    #[test]
    fn a_shard_without_leader_or_quorum_degrades_naming_it() {
        let health = health(&answer(json!({
            "shards": 16,
            "leaders": {"0": "b1-0", "1": "b1-1", "99": "b1-1", "x": "b1-2"},
            "live": ["b1-0", "b1-1"],
            "without_quorum": [5, 3, 5]
        })));
        assert_eq!(health.led, "2/16", "shard 99 and x do not exist");
        let reasons: Vec<&str> = health.problems.iter().map(|p| p.reason).collect();
        assert_eq!(reasons, [SHARDS_WITHOUT_QUORUM, SHARDS_WITHOUT_LEADER]);
        assert!(
            health.problems[0]
                .message
                .starts_with("2 of 16 shards have no quorum (shard 3, 5)"),
            "{:?}",
            health.problems
        );
        let leaderless = &health.problems[1].message;
        assert!(
            leaderless.starts_with("14 of 16 shards have no leader (shard 2, 3,"),
            "{leaderless}"
        );
        assert!(leaderless.contains("and 4 more"), "{leaderless}");
    }

    #[test]
    fn a_single_node_answer_is_one_shard_led() {
        let health = health(&answer(json!({
            "shards": 1, "leaders": {"0": "single"}, "live": [], "without_quorum": []
        })));
        assert_eq!(health.led, "1/1");
        assert!(health.problems.is_empty());
    }
}
