//! Per-namespace rate limiting: a token bucket of `limit` events refilled at
//! `limit` per minute, kept as GCRA's one number (the theoretical arrival time, TAT)
//! in an atomic shared by all shards, so the limit holds across shards.
//!
//! Touching a shared cache line on every request would make the shards contend, so a
//! shard takes tokens from the bucket in *leases* (`lease_size`: about 1/64 of a
//! minute's budget per shard, at most 1,024) and spends them locally. Leased tokens are
//! already counted against the namespace, so the limit is never exceeded; at worst a
//! shard holds one unspent lease while another is refused (bounded by `lease_size`).

use std::sync::atomic::{AtomicU64, Ordering};

pub const NANOS_PER_MINUTE: u128 = 60_000_000_000;
/// The largest lease a shard takes at once.
pub const LEASE_MAX: u64 = 1024;

/// A namespace's shared bucket. `tat` is in nanoseconds since `Auth::epoch`.
#[derive(Default)]
pub struct Bucket {
    tat: AtomicU64,
}

/// Why tokens were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Enough tokens will be there after this many seconds (at least 1).
    RetryAfter(u64),
    /// More events than the bucket holds: never admissible under this limit.
    TooLarge,
}

impl Bucket {
    /// Takes `n` tokens at time `now_ns` under `per_minute`, or says when they will be
    /// there.
    pub fn take(&self, n: u64, per_minute: u64, now_ns: u64) -> Result<(), Refused> {
        let per_minute = per_minute.max(1);
        if n > per_minute {
            return Err(Refused::TooLarge);
        }
        // Burst tolerance: a whole minute's budget may be spent at once.
        let tau = NANOS_PER_MINUTE as u64;
        let cost = (n as u128 * NANOS_PER_MINUTE / per_minute as u128) as u64;
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let new = tat.max(now_ns) + cost;
            if new > now_ns + tau {
                let wait = new - tau - now_ns;
                return Err(Refused::RetryAfter(wait.div_ceil(1_000_000_000).max(1)));
            }
            match self
                .tat
                .compare_exchange_weak(tat, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(seen) => tat = seen,
            }
        }
    }
}

impl Bucket {
    /// Returns `n` tokens taken earlier (a request refused after all). The bucket
    /// never holds more than its capacity: `take` starts from `max(tat, now)`.
    pub fn give_back(&self, n: u64, per_minute: u64) {
        let cost = (n as u128 * NANOS_PER_MINUTE / per_minute.max(1) as u128) as u64;
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(cost))
            });
    }
}

/// Tokens one shard leases at a time for a namespace.
pub fn lease_size(per_minute: u64, shards: usize) -> u64 {
    (per_minute / (64 * shards.max(1) as u64)).clamp(1, LEASE_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_full_minute_may_burst_then_refills_at_the_rate() {
        let b = Bucket::default();
        let t0 = 10 * S;
        for _ in 0..60 {
            assert_eq!(b.take(1, 60, t0), Ok(()));
        }
        assert_eq!(b.take(1, 60, t0), Err(Refused::RetryAfter(1)));
        assert_eq!(b.take(5, 60, t0), Err(Refused::RetryAfter(5)));
        // One per second comes back.
        assert_eq!(b.take(1, 60, t0 + S), Ok(()));
        assert_eq!(b.take(1, 60, t0 + S), Err(Refused::RetryAfter(1)));
        // After a whole window the bucket is full again, and no fuller.
        let t1 = t0 + 120 * S;
        assert_eq!(b.take(60, 60, t1), Ok(()));
        assert_eq!(b.take(1, 60, t1), Err(Refused::RetryAfter(1)));
    }

    #[test]
    fn more_than_a_minute_of_budget_is_never_admissible() {
        let b = Bucket::default();
        assert_eq!(b.take(61, 60, 0), Err(Refused::TooLarge));
        assert_eq!(b.take(60, 60, 0), Ok(()));
    }

    #[test]
    fn retry_after_is_exact_for_fractional_rates() {
        let b = Bucket::default();
        // 10,000 per minute: 6 ms per event.
        assert_eq!(b.take(10_000, 10_000, 0), Ok(()));
        assert_eq!(b.take(1, 10_000, 0), Err(Refused::RetryAfter(1)));
        assert_eq!(b.take(1, 10_000, 6_000_000), Ok(()));
        // 5,000 events take 30 s to come back.
        assert_eq!(
            b.take(5_000, 10_000, 6_000_000),
            Err(Refused::RetryAfter(30))
        );
    }

    #[test]
    fn concurrent_takers_never_exceed_the_limit() {
        let b = std::sync::Arc::new(Bucket::default());
        let granted = std::sync::Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (b, granted) = (b.clone(), granted.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if b.take(3, 9_000, 0).is_ok() {
                            granted.fetch_add(3, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(granted.load(Ordering::Relaxed), 9_000);
    }

    #[test]
    fn given_back_tokens_can_be_taken_again_but_never_overfill() {
        let b = Bucket::default();
        assert_eq!(b.take(60, 60, 0), Ok(()));
        b.give_back(10, 60);
        assert_eq!(b.take(10, 60, 0), Ok(()));
        assert!(b.take(1, 60, 0).is_err());
        // Giving back more than was taken does not raise the capacity.
        b.give_back(1000, 60);
        assert_eq!(b.take(60, 60, 0), Ok(()));
        assert!(b.take(1, 60, 0).is_err());
    }

    #[test]
    fn lease_sizes() {
        assert_eq!(lease_size(10_000, 2), 78);
        assert_eq!(lease_size(60, 2), 1);
        assert_eq!(lease_size(u64::MAX, 2), LEASE_MAX);
        assert_eq!(lease_size(0, 0), 1);
    }
}
