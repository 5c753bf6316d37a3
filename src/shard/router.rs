//! Pure placement of entity ids: id → partition → shard.
//!
//! The hash is part of the on-disk contract (it decides which shard's log holds an
//! entity), so it is written out here rather than taken from a crate whose output could
//! change between versions:
//!
//! ```text
//! h         = FNV-1a 64 over the id's UTF-8 bytes
//!             (offset basis 0xcbf29ce484222325, prime 0x100000001b3)
//! h         = murmur3 fmix64(h)      // spreads FNV's weak low/high bits
//! partition = h >> 52                // top 12 bits: 0..4096
//! shard     = partition * shards / 4096   // contiguous partition ranges per shard
//! ```
//!
//! `tests::partitions_are_pinned` fixes the partition of a handful of ids; it must
//! never be edited to make a change pass.

use crate::limits::PARTITIONS;

/// Index of a shard, `0..shard_count`. Also the shard's channel-mesh peer id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub u16);

impl ShardId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One of [`PARTITIONS`] fixed slices of the id space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition(pub u16);

const PARTITION_BITS: u32 = PARTITIONS.trailing_zeros();
const _: () = assert!(PARTITIONS.is_power_of_two());

/// FNV-1a 64 followed by the murmur3 finaliser.
#[inline]
pub fn hash_id(id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fmix64(h)
}

#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[inline]
pub fn partition_of(id: &[u8]) -> Partition {
    Partition((hash_id(id) >> (64 - PARTITION_BITS)) as u16)
}

/// Partitions map to shards in contiguous ranges, so each shard owns one hash range.
#[inline]
pub fn shard_of_partition(p: Partition, shard_count: usize) -> ShardId {
    debug_assert!(shard_count > 0 && shard_count <= PARTITIONS as usize);
    ShardId(((p.0 as usize * shard_count) / PARTITIONS as usize) as u16)
}

#[inline]
pub fn shard_for(id: &[u8], shard_count: usize) -> ShardId {
    shard_of_partition(partition_of(id), shard_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned forever: changing any of these moves entities between logs. The values
    /// were also computed by an independent Python transcription of the doc above.
    #[test]
    fn partitions_are_pinned() {
        let pinned: &[(&str, u16)] = &[
            ("", 3837),
            ("temp-sensor-01", 3098),
            ("host-1", 650),
            ("ns/sensor-1", 1402),
            ("lt-000042", 2088),
            ("ünïcødé", 3147),
        ];
        let got: Vec<(&str, u16)> = pinned
            .iter()
            .map(|(id, _)| (*id, partition_of(id.as_bytes()).0))
            .collect();
        assert_eq!(got, pinned.to_vec());
    }

    #[test]
    fn shard_ranges_are_contiguous_and_cover_all_partitions() {
        for n in [1usize, 2, 3, 4, 7, 16, 256] {
            let mut last = 0u16;
            let mut seen = vec![false; n];
            for p in 0..PARTITIONS as u16 {
                let s = shard_of_partition(Partition(p), n);
                assert!(s.0 >= last, "ranges must be contiguous");
                assert!((s.0 as usize) < n);
                last = s.0;
                seen[s.index()] = true;
            }
            assert!(seen.iter().all(|&x| x), "every shard owns a range (n={n})");
        }
    }

    #[test]
    fn one_shard_owns_everything() {
        for id in ["a", "b", "zzz", "ns/x"] {
            assert_eq!(shard_for(id.as_bytes(), 1), ShardId(0));
        }
    }

    #[test]
    fn spreads_sequential_ids_evenly() {
        let n = 4;
        let mut counts = [0usize; 4];
        for i in 0..100_000 {
            let id = format!("lt-{i:06}");
            counts[shard_for(id.as_bytes(), n).index()] += 1;
        }
        for c in counts {
            assert!((23_000..27_000).contains(&c), "uneven: {counts:?}");
        }
    }
}
