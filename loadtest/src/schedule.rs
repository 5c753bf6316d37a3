//! Open-loop pacing: when each request *should* be sent.
//!
//! The run is a list of constant-rate segments (the warmup at the first
//! stage's rate, then each `--stages` step). Load is counted in *units*: a
//! single event or a read is 1 unit, a batch of N events is N units. The
//! schedule maps a global unit position to its intended send time; connection
//! `j` of `C` sends the requests starting at global positions `k*C + j`, so
//! the connections together follow the global schedule exactly, evenly
//! staggered.
//!
//! Latency of an open-loop request is measured from its intended time, not
//! from when it actually went out: a server that stalls for a second makes
//! every request scheduled during that second late, and each of them reports
//! its lateness (coordinated-omission correction, as in wrk2). A request that
//! could not go out within `--max-lag` of its intended time is dropped and
//! counted, which keeps the backlog bounded when the offered rate exceeds what
//! the server (or the connection count) can carry.

use crate::config::Stage;
use std::time::Duration;

/// Nanoseconds since the start of the run (`t0`).
pub type Nanos = u64;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    start_s: f64,
    end_s: f64,
    /// Units per second.
    rate: f64,
    /// Units scheduled before this segment.
    units_before: f64,
}

/// The global open-loop schedule of a run.
#[derive(Debug, Clone)]
pub struct Schedule {
    segments: Vec<Segment>,
    total_units: f64,
}

impl Schedule {
    pub fn new(warmup: Duration, stages: &[Stage]) -> Schedule {
        assert!(!stages.is_empty(), "open loop without stages");
        let mut segments = Vec::with_capacity(stages.len() + 1);
        let mut t = 0.0;
        let mut units = 0.0;
        let mut push = |d: Duration, rate: f64| {
            let start = t;
            t += d.as_secs_f64();
            segments.push(Segment {
                start_s: start,
                end_s: t,
                rate,
                units_before: units,
            });
            units += rate * d.as_secs_f64();
        };
        if !warmup.is_zero() {
            push(warmup, stages[0].rate);
        }
        for s in stages {
            push(s.duration, s.rate);
        }
        Schedule {
            segments,
            total_units: units,
        }
    }

    #[cfg(test)]
    pub fn total_units(&self) -> f64 {
        self.total_units
    }

    /// Intended send time of the request starting at global unit position
    /// `u`, or `None` past the end of the schedule.
    pub fn time_at(&self, u: f64) -> Option<Nanos> {
        if u >= self.total_units {
            return None;
        }
        let seg = self
            .segments
            .iter()
            .rev()
            .find(|s| s.rate > 0.0 && s.units_before <= u)?;
        let t = seg.start_s + (u - seg.units_before) / seg.rate;
        // Rounding at a boundary may land a hair past the segment's end.
        Some((t.min(seg.end_s) * 1e9).round() as Nanos)
    }

    /// Rate in units/s at time `t` (for the progress line).
    pub fn rate_at(&self, t: Nanos) -> f64 {
        let s = t as f64 / 1e9;
        self.segments
            .iter()
            .find(|g| g.start_s <= s && s < g.end_s)
            .map_or(0.0, |g| g.rate)
    }
}

/// One connection's position in the schedule.
#[derive(Debug, Clone)]
pub struct Pacer {
    conn: usize,
    conns: usize,
    /// Units this connection has issued or dropped so far.
    units_done: f64,
}

impl Pacer {
    pub fn new(conn: usize, conns: usize) -> Pacer {
        assert!(conn < conns, "connection {conn} of {conns}");
        Pacer {
            conn,
            conns,
            units_done: 0.0,
        }
    }

    /// Intended send time of this connection's next request.
    pub fn next_intended(&self, schedule: &Schedule) -> Option<Nanos> {
        schedule.time_at(self.units_done * self.conns as f64 + self.conn as f64)
    }

    /// The next request (of `units` units) was issued or dropped.
    pub fn advance(&mut self, units: u64) {
        self.units_done += units as f64;
    }
}

/// What to do with a request whose intended time has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Not yet: wait until then.
    Later(Nanos),
    Send,
    /// More than `max_lag` late: count it and skip it.
    Drop,
}

pub fn due(intended: Nanos, now: Nanos, max_lag: Duration) -> Due {
    if intended > now {
        Due::Later(intended)
    } else if now - intended > max_lag.as_nanos() as u64 {
        Due::Drop
    } else {
        Due::Send
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Op;
    use crate::stats::Stats;

    fn st(secs: f64, rate: f64) -> Stage {
        Stage {
            duration: Duration::from_secs_f64(secs),
            rate,
        }
    }

    #[test]
    fn constant_rate_intended_times() {
        let s = Schedule::new(Duration::ZERO, &[st(1.0, 10.0)]);
        let times: Vec<_> = (0..10).map(|k| s.time_at(k as f64).unwrap()).collect();
        let expected: Vec<Nanos> = (0..10).map(|k| k * 100_000_000).collect();
        assert_eq!(times, expected);
        assert_eq!(s.time_at(10.0), None);
        assert_eq!(s.total_units(), 10.0);
    }

    #[test]
    fn warmup_runs_at_first_rate_and_stages_step() {
        let s = Schedule::new(Duration::from_secs(1), &[st(1.0, 10.0), st(1.0, 20.0)]);
        assert_eq!(s.total_units(), 40.0);
        assert_eq!(s.time_at(10.0), Some(1_000_000_000));
        assert_eq!(s.time_at(20.0), Some(2_000_000_000));
        assert_eq!(s.time_at(21.0), Some(2_050_000_000));
        assert_eq!(s.rate_at(2_500_000_000), 20.0);
    }

    #[test]
    fn zero_rate_stage_is_a_pause() {
        let s = Schedule::new(
            Duration::ZERO,
            &[st(1.0, 10.0), st(1.0, 0.0), st(1.0, 10.0)],
        );
        assert_eq!(s.time_at(9.0), Some(900_000_000));
        assert_eq!(s.time_at(10.0), Some(2_000_000_000));
        assert_eq!(s.time_at(19.0), Some(2_900_000_000));
        assert_eq!(s.time_at(20.0), None);
    }

    #[test]
    fn connections_interleave_into_the_global_schedule() {
        let s = Schedule::new(Duration::ZERO, &[st(1.0, 1000.0)]);
        let conns = 3;
        let mut all = Vec::new();
        for c in 0..conns {
            let mut p = Pacer::new(c, conns);
            while let Some(t) = p.next_intended(&s) {
                all.push(t);
                p.advance(1);
            }
        }
        all.sort_unstable();
        let expected: Vec<Nanos> = (0..1000).map(|k| k * 1_000_000).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn batches_advance_by_their_events() {
        // 100 events/s in batches of 10: a request every 100 ms.
        let s = Schedule::new(Duration::ZERO, &[st(1.0, 100.0)]);
        let mut p = Pacer::new(0, 1);
        let mut times = Vec::new();
        while let Some(t) = p.next_intended(&s) {
            times.push(t);
            p.advance(10);
        }
        assert_eq!(times.len(), 10);
        assert_eq!(times[3], 300_000_000);
    }

    #[test]
    fn due_decisions() {
        let lag = Duration::from_millis(10);
        assert_eq!(due(100, 50, lag), Due::Later(100));
        assert_eq!(due(100, 100, lag), Due::Send);
        assert_eq!(due(100, 100 + 10_000_000, lag), Due::Send);
        assert_eq!(due(100, 100 + 10_000_001, lag), Due::Drop);
    }

    /// One connection, pipeline 1, 100 req/s for 10 s, a server answering in
    /// 1 ms except for a 1 s stall at t = 2 s. Runs the same pacing and
    /// recording code as the real connection, on simulated time.
    fn simulate(max_lag: Duration) -> Stats {
        let schedule = Schedule::new(Duration::ZERO, &[st(10.0, 100.0)]);
        let mut pacer = Pacer::new(0, 1);
        let mut stats = Stats::new();
        let ms = 1_000_000;
        let (stall_from, stall_to) = (2_000 * ms, 3_000 * ms);
        let mut now: Nanos = 0;
        while let Some(intended) = pacer.next_intended(&schedule) {
            match due(intended, now, max_lag) {
                Due::Later(t) => {
                    now = t;
                    continue;
                }
                Due::Drop => {
                    stats.dropped += 1;
                    pacer.advance(1);
                    continue;
                }
                Due::Send => {}
            }
            let sent = now;
            let done = if (stall_from..stall_to).contains(&sent) {
                stall_to + ms
            } else {
                sent + ms
            };
            stats.record_response(Op::Ingest, intended, sent, done, 200, 1, true);
            pacer.advance(1);
            now = done;
        }
        stats
    }

    #[test]
    fn stall_shows_in_latency_from_intended_time() {
        let stats = simulate(Duration::from_secs(5));
        assert_eq!(stats.dropped, 0);
        assert_eq!(stats.latency.len(), 1000);
        // ~100 requests were scheduled during the stall; measured from their
        // intended times their latencies spread from ~1 s down to ~0.
        let p99_us = stats.latency.value_at_quantile(0.99);
        let p80_us = stats.latency.value_at_quantile(0.80);
        assert!(p99_us > 800_000, "p99 {p99_us} us should include the stall");
        // ~110 requests (the stall plus the catch-up after it) are late; the
        // rest took the 1 ms service time.
        assert!(p80_us > 900 && p80_us < 1_200, "p80 {p80_us} us");
        assert!(stats.latency.max() >= 1_000_000);
        // Service time (from the actual send) hides it: only one request
        // saw the stall, so p99 stays at ~1 ms. That is what a closed-loop
        // tool would have reported.
        let svc_p99 = stats.service.value_at_quantile(0.99);
        assert!(svc_p99 < 1_100, "service p99 {svc_p99} us");
    }

    #[test]
    fn requests_later_than_max_lag_are_dropped_and_counted() {
        let stats = simulate(Duration::from_millis(500));
        // Scheduled in [2.0, 2.5) s: more than 500 ms late at 3.001 s.
        assert!(
            (49..=51).contains(&stats.dropped),
            "dropped {}",
            stats.dropped
        );
        assert_eq!(stats.latency.len() + stats.dropped, 1000);
        assert!(stats.latency.value_at_quantile(0.99) > 400_000);
    }
}
