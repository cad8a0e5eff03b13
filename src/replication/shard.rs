//! Which shard a mailbox lives on.
//!
//! `shard_of(address, S)` is the 64-bit FNV-1a hash of the address's UTF-8 bytes, modulo `S`
//! (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`). It is part of the stored format:
//! every broker of a cluster, of any version, must place an address on the same shard, so this
//! function never changes. The shard count of a Broker is fixed when it is created.

/// The shard count when none is given (replication.md).
pub const DEFAULT_SHARDS: u32 = 16;

/// The most shards a Broker may have: each is a JetStream stream and a lease.
pub const MAX_SHARDS: u32 = 1024;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// The shard of `address` among `shards` (≥ 1).
pub fn shard_of(address: &str, shards: u32) -> u32 {
    (fnv1a(address.as_bytes()) % u64::from(shards.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published FNV-1a test vectors: the hash is the standard one.
    #[test]
    fn the_hash_is_standard_fnv1a() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    /// Pinned placements: a change here moves stored mailboxes to other shards.
    #[test]
    fn placements_never_change() {
        let placed: Vec<u32> = ["team.inbox", "agent.planner", "a", ""]
            .iter()
            .map(|address| shard_of(address, DEFAULT_SHARDS))
            .collect();
        let expected: Vec<u32> = ["team.inbox", "agent.planner", "a", ""]
            .iter()
            .map(|address| (fnv1a(address.as_bytes()) % 16) as u32)
            .collect();
        assert_eq!(placed, expected);
        assert_eq!(shard_of("a", 16), (0xaf63_dc4c_8601_ec8c_u64 % 16) as u32);
        assert_eq!(shard_of("anything", 1), 0);
    }

    #[test]
    fn addresses_spread_over_the_shards() {
        let mut counts = [0u32; DEFAULT_SHARDS as usize];
        for i in 0..16_000 {
            counts[shard_of(&format!("agent.{i}.inbox"), DEFAULT_SHARDS) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (800..=1200).contains(&n)),
            "{counts:?}"
        );
    }
}
