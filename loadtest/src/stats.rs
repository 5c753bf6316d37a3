//! Counters and latency histograms of one worker (or, merged, of the run).
//!
//! Workers fill a `Stats` per one-second interval and hand it to the main
//! thread, which merges intervals into the run's totals; nothing is shared
//! between threads while requests are in flight.

use crate::config::Op;
use crate::schedule::Nanos;
use hdrhistogram::Histogram;

/// Histograms record microseconds from 1 µs to one hour with 3 significant
/// digits; a longer value is clamped to an hour (and still counted).
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
const SIGFIG: u8 = 3;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGFIG).expect("static histogram bounds")
}

/// Why a request got no HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Connect,
    /// Reset, closed or other socket error with the request in flight.
    Io,
    /// The response could not be parsed.
    Protocol,
}

#[derive(Debug, Clone)]
pub struct Stats {
    /// From intended send time (open loop) or actual send time (closed loop).
    pub latency: Histogram<u64>,
    /// Always from the actual send time.
    pub service: Histogram<u64>,
    pub op_latency: [Histogram<u64>; 4],
    /// Responses per op (any status).
    pub responses: [u64; 4],
    /// 2xx, and 404 of a `get` (an entity not written yet is an answer).
    pub ok: u64,
    pub not_found: u64,
    /// Events acknowledged with a 2xx.
    pub events_ok: u64,
    /// Count per HTTP status, small and unsorted.
    pub status: Vec<(u16, u64)>,
    pub timeouts: u64,
    pub connect_errors: u64,
    pub io_errors: u64,
    pub protocol_errors: u64,
    /// Open loop: requests more than `--max-lag` late, never sent.
    pub dropped: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Responses and failures during the warmup (not in the figures above).
    pub warmup_requests: u64,
    /// Events acknowledged (warmup included) that subscribers should see.
    pub acked_subscribed: u64,
    pub ws: WsStats,
}

#[derive(Debug, Clone)]
pub struct WsStats {
    /// Publish (intended send time) → `state_update` receipt, µs.
    pub latency: Histogram<u64>,
    /// All `state_update` messages.
    pub updates: u64,
    /// `state_update`s of `_lt_sent_us` (one per event), warmup included.
    pub tagged_updates: u64,
    pub other_messages: u64,
    pub bytes: u64,
    pub slow_consumer_closes: u64,
    pub other_closes: u64,
    pub errors: u64,
    /// Messages that did not parse as a Flux message.
    pub bad_messages: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            latency: new_histogram(),
            service: new_histogram(),
            op_latency: std::array::from_fn(|_| new_histogram()),
            responses: [0; 4],
            ok: 0,
            not_found: 0,
            events_ok: 0,
            status: Vec::new(),
            timeouts: 0,
            connect_errors: 0,
            io_errors: 0,
            protocol_errors: 0,
            dropped: 0,
            bytes_sent: 0,
            bytes_received: 0,
            warmup_requests: 0,
            acked_subscribed: 0,
            ws: WsStats {
                latency: new_histogram(),
                updates: 0,
                tagged_updates: 0,
                other_messages: 0,
                bytes: 0,
                slow_consumer_closes: 0,
                other_closes: 0,
                errors: 0,
                bad_messages: 0,
            },
        }
    }

    /// A response arrived. Times are nanoseconds since t0; `measured` is false
    /// for requests that started during the warmup.
    #[allow(clippy::too_many_arguments)]
    pub fn record_response(
        &mut self,
        op: Op,
        intended: Nanos,
        sent: Nanos,
        done: Nanos,
        status: u16,
        events: u64,
        measured: bool,
    ) {
        if !measured {
            self.warmup_requests += 1;
            return;
        }
        let latency_us = done.saturating_sub(intended) / 1_000;
        let service_us = done.saturating_sub(sent) / 1_000;
        self.latency.saturating_record(latency_us);
        self.service.saturating_record(service_us);
        self.op_latency[op.index()].saturating_record(latency_us);
        self.responses[op.index()] += 1;
        self.count_status(status);
        if (200..300).contains(&status) {
            self.ok += 1;
            if op.writes() {
                self.events_ok += events;
            }
        } else if status == 404 && op == Op::Get {
            self.ok += 1;
            self.not_found += 1;
        }
    }

    /// `count` requests got no response.
    pub fn record_failure(&mut self, why: Failure, count: u64, measured: bool) {
        if !measured {
            self.warmup_requests += count;
            return;
        }
        match why {
            Failure::Timeout => self.timeouts += count,
            Failure::Connect => self.connect_errors += count,
            Failure::Io => self.io_errors += count,
            Failure::Protocol => self.protocol_errors += count,
        }
    }

    fn count_status(&mut self, status: u16) {
        match self.status.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => self.status.push((status, 1)),
        }
    }

    /// Responses with a status (measured part).
    pub fn responses_total(&self) -> u64 {
        self.responses.iter().sum()
    }

    /// Requests that failed: error statuses, no response, dropped.
    pub fn errors(&self) -> u64 {
        (self.responses_total() - self.ok)
            + self.timeouts
            + self.connect_errors
            + self.io_errors
            + self.protocol_errors
            + self.dropped
    }

    /// Requests attempted or dropped in the measured part.
    pub fn attempts(&self) -> u64 {
        self.responses_total()
            + self.timeouts
            + self.connect_errors
            + self.io_errors
            + self.protocol_errors
            + self.dropped
    }

    /// Errors in percent of attempts (0 when nothing was attempted).
    pub fn error_rate_pct(&self) -> f64 {
        let n = self.attempts();
        if n == 0 {
            0.0
        } else {
            self.errors() as f64 * 100.0 / n as f64
        }
    }

    pub fn merge(&mut self, o: &Stats) {
        // Same bounds on both sides: adding cannot fail.
        self.latency.add(&o.latency).expect("same histogram bounds");
        self.service.add(&o.service).expect("same histogram bounds");
        for (a, b) in self.op_latency.iter_mut().zip(&o.op_latency) {
            a.add(b).expect("same histogram bounds");
        }
        for (a, b) in self.responses.iter_mut().zip(&o.responses) {
            *a += b;
        }
        self.ok += o.ok;
        self.not_found += o.not_found;
        self.events_ok += o.events_ok;
        for &(s, n) in &o.status {
            match self.status.iter_mut().find(|(x, _)| *x == s) {
                Some((_, m)) => *m += n,
                None => self.status.push((s, n)),
            }
        }
        self.timeouts += o.timeouts;
        self.connect_errors += o.connect_errors;
        self.io_errors += o.io_errors;
        self.protocol_errors += o.protocol_errors;
        self.dropped += o.dropped;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.warmup_requests += o.warmup_requests;
        self.acked_subscribed += o.acked_subscribed;
        let (w, v) = (&mut self.ws, &o.ws);
        w.latency.add(&v.latency).expect("same histogram bounds");
        w.updates += v.updates;
        w.tagged_updates += v.tagged_updates;
        w.other_messages += v.other_messages;
        w.bytes += v.bytes;
        w.slow_consumer_closes += v.slow_consumer_closes;
        w.other_closes += v.other_closes;
        w.errors += v.errors;
        w.bad_messages += v.bad_messages;
    }

    /// Hands out the counts gathered so far and starts afresh.
    pub fn take(&mut self) -> Stats {
        std::mem::take(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses() {
        let mut s = Stats::new();
        s.record_response(Op::Ingest, 0, 0, 2_000_000, 200, 1, true);
        s.record_response(Op::Batch, 0, 0, 1_000_000, 200, 10, true);
        s.record_response(Op::Get, 0, 0, 1_000_000, 404, 0, true);
        s.record_response(Op::Ingest, 0, 0, 1_000_000, 400, 1, true);
        s.record_response(Op::Ingest, 0, 0, 1_000_000, 503, 1, false);
        s.record_failure(Failure::Timeout, 2, true);
        s.dropped = 1;
        assert_eq!(s.events_ok, 11);
        assert_eq!((s.ok, s.not_found), (3, 1));
        assert_eq!(s.errors(), 1 + 2 + 1);
        assert_eq!(s.attempts(), 4 + 2 + 1);
        assert_eq!(s.warmup_requests, 1);
        assert_eq!(s.latency.max(), s.latency.highest_equivalent(2_000));
        let mut t = Stats::new();
        t.merge(&s);
        t.merge(&s);
        assert_eq!(t.errors(), 2 * s.errors());
        assert_eq!(t.status.iter().find(|x| x.0 == 200).unwrap().1, 4);
        assert_eq!(t.latency.len(), 8);
    }
}
