//! The state of one consumer group on one mailbox (stateful FETCH, protocol.md §3).
//!
//! A group remembers where it started, which messages it acknowledged and which it holds under
//! lease. Acknowledgements are kept compactly: per priority a *floor* below which every message
//! is done, plus inclusive ranges of acknowledged ids above the floors. Consumption is mostly in
//! id order within a priority, so the ranges stay few and FETCH seeks straight to the floor.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::protocol::request::Deliver;

/// Where reading starts: messages below `min_id` or created before `min_time_ms` are not
/// delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    pub min_id: u64,
    pub min_time_ms: u64,
}

impl Start {
    /// Resolves a deliver policy against a mailbox whose next msg_id is `next_msg_id`.
    pub fn resolve(deliver: Deliver, next_msg_id: u64) -> Start {
        match deliver {
            Deliver::Earliest => Start::default(),
            Deliver::Latest => Start {
                min_id: next_msg_id,
                min_time_ms: 0,
            },
            Deliver::FromId(id) => Start {
                min_id: id,
                min_time_ms: 0,
            },
            Deliver::FromTime(secs) => Start {
                min_id: 0,
                min_time_ms: crate::time::secs_to_ms(secs),
            },
        }
    }

    /// Whether a message is at or after the start.
    pub fn admits(&self, msg_id: u64, create_time_ms: u64) -> bool {
        msg_id >= self.min_id && create_time_ms >= self.min_time_ms
    }
}

/// A delivered, not yet acknowledged message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// How many times it was delivered to this group.
    pub count: u32,
    pub lease_until_ms: u64,
    /// Which FETCH reply carried it last, and where in it: ACK of a message acknowledges the
    /// ones before it in the same reply.
    pub batch: u64,
    pub position: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    pub start: Start,
    /// Indexed by priority: every message of that priority below its floor is done.
    pub floors: [u64; 4],
    /// Acknowledged ids above the floors: inclusive ranges, start → end.
    pub acked: BTreeMap<u64, u64>,
    pub delivered: BTreeMap<u64, Delivery>,
    pub next_batch: u64,
}

impl GroupState {
    pub fn new(start: Start) -> GroupState {
        GroupState {
            start,
            floors: [start.min_id; 4],
            acked: BTreeMap::new(),
            delivered: BTreeMap::new(),
            next_batch: 0,
        }
    }

    pub fn is_acked(&self, msg_id: u64) -> bool {
        self.acked
            .range(..=msg_id)
            .next_back()
            .is_some_and(|(_, end)| *end >= msg_id)
    }

    /// Whether another consumer of the group holds the message under an unexpired lease.
    pub fn is_leased(&self, msg_id: u64, now_ms: u64) -> bool {
        self.delivered
            .get(&msg_id)
            .is_some_and(|d| d.lease_until_ms > now_ms)
    }

    /// Opens a new FETCH reply.
    pub fn begin_batch(&mut self) -> u64 {
        self.next_batch += 1;
        self.next_batch
    }

    /// Leases a message to the group and returns its delivery count.
    pub fn lease(&mut self, msg_id: u64, lease_until_ms: u64, batch: u64, position: u32) -> u32 {
        let delivery = self.delivered.entry(msg_id).or_insert(Delivery {
            count: 0,
            lease_until_ms,
            batch,
            position,
        });
        delivery.count += 1;
        delivery.lease_until_ms = lease_until_ms;
        delivery.batch = batch;
        delivery.position = position;
        delivery.count
    }

    /// Acknowledges `msg_id` and every message delivered before it in the same FETCH reply.
    /// Ids at or beyond `next_msg_id` never existed and are ignored, so a stray ACK cannot
    /// hide a message that has not arrived yet.
    pub fn ack(&mut self, msg_id: u64, next_msg_id: u64) {
        let batch_mates: Vec<u64> = match self.delivered.get(&msg_id) {
            Some(acked) => self
                .delivered
                .iter()
                .filter(|(_, d)| d.batch == acked.batch && d.position <= acked.position)
                .map(|(id, _)| *id)
                .collect(),
            None if msg_id < next_msg_id => vec![msg_id],
            None => Vec::new(),
        };
        for id in batch_mates {
            self.delivered.remove(&id);
            self.mark_acked(id);
        }
    }

    /// Forgets a message that no longer exists (deleted, compacted away, expired).
    pub fn forget(&mut self, msg_id: u64) {
        self.delivered.remove(&msg_id);
    }

    /// The earliest moment a lease ends, when a waiting FETCH may find a message again.
    pub fn earliest_lease_end(&self) -> Option<u64> {
        self.delivered.values().map(|d| d.lease_until_ms).min()
    }

    /// Raises the floor of a priority after a FETCH saw that everything below `floor` is done,
    /// and drops acknowledgement ranges that every floor has passed.
    pub fn raise_floor(&mut self, priority: usize, floor: u64) {
        if floor > self.floors[priority] {
            self.floors[priority] = floor;
        }
        let lowest = self.floors.iter().copied().min().unwrap_or(0);
        while let Some((&start, &end)) = self.acked.first_key_value() {
            if end >= lowest {
                break;
            }
            self.acked.remove(&start);
        }
    }

    fn mark_acked(&mut self, msg_id: u64) {
        if self.is_acked(msg_id) {
            return;
        }
        let mut start = msg_id;
        let mut end = msg_id;
        if let Some((&s, &e)) = self.acked.range(..msg_id).next_back() {
            if e + 1 == msg_id {
                start = s;
            }
        }
        if let Some(&e) = self.acked.get(&(msg_id + 1)) {
            self.acked.remove(&(msg_id + 1));
            end = e;
        }
        self.acked.insert(start, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_merge_into_ranges() {
        let mut group = GroupState::new(Start::default());
        for id in [3, 1, 2, 7] {
            group.ack(id, 100);
        }
        assert_eq!(group.acked, BTreeMap::from([(1, 3), (7, 7)]));
        assert!(group.is_acked(2) && group.is_acked(7) && !group.is_acked(5));
        group.ack(500, 100);
        assert!(
            !group.is_acked(500),
            "ids that never existed are not acknowledged"
        );
    }

    #[test]
    fn ack_of_the_last_message_acks_its_batch_only() {
        let mut group = GroupState::new(Start::default());
        let first = group.begin_batch();
        for (position, id) in [4u64, 5, 6].into_iter().enumerate() {
            group.lease(id, 1_000, first, position as u32);
        }
        let second = group.begin_batch();
        group.lease(9, 1_000, second, 0);
        group.ack(5, 10);
        assert!(group.is_acked(4) && group.is_acked(5) && !group.is_acked(6));
        assert!(group.delivered.contains_key(&6) && group.delivered.contains_key(&9));
    }

    #[test]
    fn leases_expire_and_count_deliveries() {
        let mut group = GroupState::new(Start::default());
        let batch = group.begin_batch();
        assert_eq!(group.lease(1, 100, batch, 0), 1);
        assert!(group.is_leased(1, 99) && !group.is_leased(1, 100));
        assert_eq!(group.lease(1, 200, group.next_batch + 1, 0), 2);
    }

    #[test]
    fn floors_prune_ranges() {
        let mut group = GroupState::new(Start::default());
        group.ack(0, 10);
        group.ack(1, 10);
        group.ack(5, 10);
        for priority in 0..4 {
            group.raise_floor(priority, 2);
        }
        assert_eq!(group.acked, BTreeMap::from([(5, 5)]));
    }
}
