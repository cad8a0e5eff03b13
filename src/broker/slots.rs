//! A replicated broker's leader slots: how many shards it may lead (replication.md, "Balance").
//!
//! A broker leads (or is taking over) at most `ceil(S / live brokers)` shards, so leaders spread
//! over the brokers: a dead broker's shards go to the others once its announcement ages out,
//! and a broker that leads more than its share (one joined or came back) hands the extra ones
//! off — it steps down from them and releases their leases, which a broker with room takes.
//! Claiming and giving back are atomic: the shards' tasks ask at the same moments, and a check
//! before acting would let them all through.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

/// How long a broker leads a shard before it may hand it off: leaders move for a broker that
/// stays, not for one whose announcement flickered.
pub const HAND_OFF_AFTER: Duration = Duration::from_secs(10);

pub struct LeaderSlots {
    shards: u32,
    /// How many brokers are alive (announced within a lease), kept by the broker.
    live: AtomicU32,
    /// How many shards this broker leads or is taking over.
    claimed: AtomicUsize,
}

impl LeaderSlots {
    /// Slots for `shards` shards among `peers` brokers, until they are counted.
    pub fn new(shards: u32, peers: u32) -> LeaderSlots {
        LeaderSlots {
            shards,
            live: AtomicU32::new(peers),
            claimed: AtomicUsize::new(0),
        }
    }

    /// How many brokers were seen alive.
    pub fn set_live(&self, live: u32) {
        self.live.store(live, Ordering::Release);
    }

    fn share(&self) -> usize {
        let live = self.live.load(Ordering::Acquire).max(1);
        self.shards.div_ceil(live) as usize
    }

    /// Claims a slot, if one is free.
    pub fn claim(&self) -> bool {
        let share = self.share();
        let claimed = self
            .claimed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < share).then_some(n + 1)
            });
        claimed.is_ok()
    }

    /// Gives a claimed slot back (a shard not taken after all, or no longer led).
    pub fn release(&self) {
        self.claimed.fetch_sub(1, Ordering::AcqRel);
    }

    /// Gives a slot back when this broker holds more than its share, so that one of its shards
    /// is handed off: of the shards that ask at once, exactly the excess go.
    pub fn give_back_extra(&self) -> bool {
        let share = self.share();
        let given = self
            .claimed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n > share).then(|| n - 1)
            });
        given.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_holds_its_share_and_gives_back_the_excess_when_one_joins() {
        let slots = LeaderSlots::new(6, 2);
        let claimed = (0..6).filter(|_| slots.claim()).count();
        assert_eq!(claimed, 3, "ceil(6 / 2)");
        assert!(!slots.give_back_extra(), "nothing extra among two");
        slots.set_live(3);
        assert!(slots.give_back_extra(), "one extra among three");
        assert!(!slots.give_back_extra(), "exactly the excess");
        assert!(!slots.claim(), "at its share");
        slots.release();
        assert!(slots.claim(), "room again");
    }
}
