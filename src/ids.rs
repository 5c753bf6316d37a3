//! Event ids: UUIDv7 (RFC 9562) generated per shard without locks.
//!
//! ```text
//!  0                   1                   2                   3
//! +---------------------------------------------------------------+
//! |                     unix_ts_ms (48 bits)                      |
//! +-------------------------------+-------+-----------------------+
//! |     unix_ts_ms (cont.)        |  ver  |  rand_a: counter hi   |
//! +---+---------------+-----------+-------+-----------------------+
//! |var| shard (8 bits)|  counter lo (22 bits) | random (32 bits)  |
//! +---+---------------+-----------------------+-------------------+
//! ```
//!
//! Within a shard ids are strictly increasing (the 34-bit counter restarts from a
//! random point each millisecond and increments within it; should it ever run out, the
//! timestamp is advanced by one ms, RFC 9562 §6.2 method 1/3); the shard bits make ids
//! of different shards distinct; 32 random bits per id make them unguessable enough
//! for ids (they are not secrets). The `uuid` crate's `now_v7` takes a process-wide
//! lock per id, which showed as ~5% of the batch path.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

pub struct EventIdGen {
    shard: u8,
    last_ms: u64,
    counter: u64,
    rng: u64,
}

const COUNTER_BITS: u32 = 34;
const COUNTER_MAX: u64 = (1 << COUNTER_BITS) - 1;

impl EventIdGen {
    pub fn new(shard: u16) -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u16(shard);
        EventIdGen {
            shard: shard as u8,
            last_ms: 0,
            counter: 0,
            rng: h.finish() | 1,
        }
    }

    #[inline]
    fn next_random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The next id as a `u128`, for time `now_ms`.
    #[inline]
    pub fn next(&mut self, now_ms: u64) -> u128 {
        if now_ms > self.last_ms {
            self.last_ms = now_ms;
            // Start low in the counter space so increments rarely overflow.
            self.counter = self.next_random() >> (64 - (COUNTER_BITS - 4));
        } else if self.counter == COUNTER_MAX {
            self.last_ms += 1;
            self.counter = 0;
        } else {
            self.counter += 1;
        }
        let rand = self.next_random() as u32;
        let ts = u128::from(self.last_ms & ((1 << 48) - 1));
        let counter_hi = u128::from(self.counter >> 22) & 0xfff;
        let counter_lo = u128::from(self.counter & ((1 << 22) - 1));
        (ts << 80)
            | (0x7 << 76)
            | (counter_hi << 64)
            | (0b10 << 62)
            | (u128::from(self.shard) << 54)
            | (counter_lo << 32)
            | u128::from(rand)
    }

    /// Writes the next id in hyphenated lower-case form.
    #[inline]
    pub fn next_str<'a>(&mut self, now_ms: u64, buf: &'a mut [u8; 36]) -> &'a [u8] {
        let v = self.next(now_ms);
        uuid::Uuid::from_u128(v)
            .hyphenated()
            .encode_lower(buf)
            .as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_and_carry_the_time() {
        let mut g = EventIdGen::new(3);
        let id = uuid::Uuid::from_u128(g.next(1_707_900_000_000));
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
        assert_eq!(
            secs * 1000 + u64::from(nanos / 1_000_000),
            1_707_900_000_000
        );
    }

    #[test]
    fn strictly_increasing_within_a_shard_even_in_one_ms() {
        let mut g = EventIdGen::new(0);
        let mut last = 0u128;
        for i in 0..100_000u64 {
            let id = g.next(1_000 + i / 10_000);
            assert!(id > last);
            last = id;
        }
    }

    #[test]
    fn counter_overflow_moves_time_forward_not_backward() {
        let mut g = EventIdGen::new(0);
        let a = g.next(5_000);
        g.counter = COUNTER_MAX;
        let b = g.next(5_000);
        assert!(b > a);
        assert_eq!(g.last_ms, 5_001);
    }

    #[test]
    fn shards_never_collide() {
        let mut a = EventIdGen::new(0);
        let mut b = EventIdGen::new(1);
        a.rng = 42;
        b.rng = 42;
        assert_ne!(a.next(1), b.next(1));
    }

    #[test]
    fn text_form() {
        let mut g = EventIdGen::new(0);
        let mut buf = [0u8; 36];
        let s = std::str::from_utf8(g.next_str(1_707_900_000_000, &mut buf))
            .unwrap()
            .to_string();
        assert_eq!(uuid::Uuid::parse_str(&s).unwrap().get_version_num(), 7);
        assert_eq!(s.len(), 36);
    }
}
