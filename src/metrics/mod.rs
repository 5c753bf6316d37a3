//! Live metrics: the totals of `metrics_update` (every WebSocket connection, every
//! `FLUX_METRICS_INTERVAL_MS`) and of `GET /metrics` (Prometheus text).
//!
//! Two kinds of state, both off the hot path:
//! - [`Registry`] (one per process, held by every shard's `Local`): per-shard counters
//!   and gauges in atomics, each written by its own shard only (a relaxed add or
//!   store) and summed by whichever shard reports; plus each shard's publisher
//!   sketches ([`hll`]). The log's counters are the shard layer's (`shard::LogStats`).
//! - [`Local`] (in each shard's `Services`): the latency and queue-depth histograms
//!   (hdrhistogram, not atomic) and the window of samples behind `rate_per_second`.
//!   `GET /metrics` (`api`) gathers every shard's histograms over the mesh.
//!
//! Counted where it happens: events and deletions by the owning shard when it applies
//! them (`ws::fanout`, the hook in `Shard::log_and_apply`); entities by a 100 ms
//! sampler on each shard; connections, subscriptions and slow consumers by `ws`.

pub mod hll;
pub mod prom;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::json;
use crate::shard::{Shard, ShardId};
use crate::time;

/// How often each shard publishes its entity count and samples the event total.
pub const SAMPLE_MS: u64 = 100;
/// `events.rate_per_second` is the growth of `events.total` over this window.
pub const RATE_WINDOW_MS: u64 = 5_000;
/// Samples kept: the window plus slack for a late timer.
const SAMPLES_MAX: usize = (RATE_WINDOW_MS / SAMPLE_MS) as usize + 20;

/// Counters and gauges of one shard. Only that shard writes them.
#[derive(Default)]
#[repr(align(128))] // its own cache lines: shards write these concurrently
pub struct ShardCounters {
    /// Events applied by this shard since the process started (replay not counted).
    pub events: AtomicU64,
    /// Tombstones applied (entities deleted) since start.
    pub deletions: AtomicU64,
    /// Entities stored (refreshed every `SAMPLE_MS`).
    pub entities: AtomicU64,
    /// Bytes of the shard's log segment files (refreshed every `SAMPLE_MS`).
    pub log_bytes: AtomicU64,
    /// Open WebSocket connections on this shard.
    pub ws_connections: AtomicU64,
    /// (connection, pattern) subscriptions of this shard's connections.
    pub ws_subscriptions: AtomicU64,
    /// (pattern, shard) interests registered with this shard as owner.
    pub ws_interests: AtomicU64,
    /// Memory accounted to this shard's connections' subscriptions
    /// (`ws::subs::Pattern::cost_bytes`).
    pub ws_subscription_bytes: AtomicU64,
    /// Connections closed with 1008 `slow consumer`.
    pub ws_slow_consumer_closes: AtomicU64,
    /// Updates (`state_update`, `entity_deleted`) queued to this shard's connections.
    pub ws_updates: AtomicU64,
    /// Deliveries to this shard dropped because its inbox was full.
    pub ws_delivery_gaps: AtomicU64,
    /// Bytes and deliveries waiting in this shard's inbox (see `ws::fanout`).
    pub ws_inbox_bytes: AtomicU64,
    pub ws_inbox_items: AtomicU64,
    /// Requests refused with 401 or 403 (auth mode), WebSocket upgrades included.
    pub auth_denied: AtomicU64,
    /// Requests refused with 429 (per-namespace rate limit).
    pub rate_limited: AtomicU64,
    /// Sources of the events applied here, per second.
    pub publishers: hll::Sketches,
}

impl ShardCounters {
    /// A relaxed add by the single writer: no read-modify-write needed.
    #[inline]
    pub fn bump(c: &AtomicU64, n: u64) {
        c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn drop_by(c: &AtomicU64, n: u64) {
        c.store(c.load(Relaxed).saturating_sub(n), Relaxed);
    }
}

pub struct Registry {
    shards: Box<[ShardCounters]>,
}

/// One shard's figures for `/metrics`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ShardFigures {
    pub events: u64,
    pub entities: u64,
    /// Fan-out deliveries waiting in the shard's inbox.
    pub inbox_items: u64,
    /// Bytes of log segment files held (refreshed every `SAMPLE_MS`).
    pub log_bytes: u64,
    /// Wall-clock ms of the last completed snapshot; 0 = none since start.
    pub last_snapshot_ms: u64,
}

/// Each shard's own figures, in shard order (the labelled `flux_shard_*` series).
pub fn per_shard(shard: &Shard) -> Vec<ShardFigures> {
    registry(shard)
        .shards
        .iter()
        .zip(shard.shared.log_stats.iter())
        .map(|(s, l)| ShardFigures {
            events: s.events.load(Relaxed),
            entities: s.entities.load(Relaxed),
            inbox_items: s.ws_inbox_items.load(Relaxed),
            log_bytes: s.log_bytes.load(Relaxed),
            last_snapshot_ms: l.last_snapshot_ms.load(Relaxed),
        })
        .collect()
}

/// The totals over every shard.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Totals {
    pub entities: u64,
    pub events: u64,
    pub deletions: u64,
    pub publishers_active: u64,
    pub ws_connections: u64,
    pub ws_subscriptions: u64,
    pub ws_interests: u64,
    pub ws_subscription_bytes: u64,
    pub ws_slow_consumer_closes: u64,
    pub ws_updates: u64,
    pub ws_delivery_gaps: u64,
    pub ws_inbox_bytes: u64,
    /// The logs' counters (`shard::LogStats`, filled in by `current`).
    pub log_syncs: u64,
    pub log_sync_failures: u64,
    pub log_rolls: u64,
    pub log_rolls_without_spare: u64,
    /// Shards whose log failed (filled in by the caller from `Shared::failed`).
    pub shards_failed: u64,
    /// Shards whose executor is stalled (`Shared::stalled`, filled in by `current`).
    pub shards_stalled: u64,
    pub auth_denied: u64,
    pub rate_limited: u64,
}

impl Registry {
    pub fn new(shards: usize) -> Self {
        Registry {
            shards: (0..shards).map(|_| ShardCounters::default()).collect(),
        }
    }

    #[inline]
    pub fn shard(&self, id: ShardId) -> &ShardCounters {
        &self.shards[id.index()]
    }

    /// Events applied by all shards since start.
    pub fn events(&self) -> u64 {
        self.shards.iter().map(|s| s.events.load(Relaxed)).sum()
    }

    pub fn totals(&self, now_ms: u64) -> Totals {
        let mut t = Totals::default();
        let mut regs = [0u8; hll::REGISTERS];
        for s in self.shards.iter() {
            t.entities += s.entities.load(Relaxed);
            t.events += s.events.load(Relaxed);
            t.deletions += s.deletions.load(Relaxed);
            t.ws_connections += s.ws_connections.load(Relaxed);
            t.ws_subscriptions += s.ws_subscriptions.load(Relaxed);
            t.ws_interests += s.ws_interests.load(Relaxed);
            t.ws_subscription_bytes += s.ws_subscription_bytes.load(Relaxed);
            t.ws_slow_consumer_closes += s.ws_slow_consumer_closes.load(Relaxed);
            t.ws_updates += s.ws_updates.load(Relaxed);
            t.ws_delivery_gaps += s.ws_delivery_gaps.load(Relaxed);
            t.ws_inbox_bytes += s.ws_inbox_bytes.load(Relaxed);
            t.auth_denied += s.auth_denied.load(Relaxed);
            t.rate_limited += s.rate_limited.load(Relaxed);
            s.publishers.merge_window(now_ms / 1000, &mut regs);
        }
        t.publishers_active = hll::estimate(&regs);
        t
    }
}

/// Samples of the global event total, to compute the rate over the last 5 s.
#[derive(Debug)]
pub struct RateWindow {
    /// (ms, events total), oldest first.
    samples: VecDeque<(u64, u64)>,
}

impl RateWindow {
    pub fn new(start_ms: u64) -> Self {
        let mut samples = VecDeque::with_capacity(SAMPLES_MAX);
        // Before the start nothing was applied: the first 5 s count from zero.
        samples.push_back((start_ms, 0));
        RateWindow { samples }
    }

    pub fn sample(&mut self, now_ms: u64, total: u64) {
        if self.samples.len() == SAMPLES_MAX {
            self.samples.pop_front();
        }
        self.samples.push_back((now_ms, total));
    }

    /// Events per second over the window ending now: the growth since the newest
    /// sample at least `RATE_WINDOW_MS` old (or the oldest kept), over 5 s.
    pub fn rate(&self, now_ms: u64, total: u64) -> f64 {
        let cutoff = now_ms.saturating_sub(RATE_WINDOW_MS);
        let base = self
            .samples
            .iter()
            .rev()
            .find(|(t, _)| *t <= cutoff)
            .or(self.samples.front())
            .map_or(0, |(_, n)| *n);
        total.saturating_sub(base) as f64 * 1000.0 / RATE_WINDOW_MS as f64
    }
}

/// Histogram range: 1 µs .. 60 s (and 1 .. 60 M messages for depths), 2 significant
/// digits (~20 KiB each).
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds")
}

/// One histogram with the exact sum of what it recorded (hdrhistogram has none).
#[derive(Clone)]
pub struct Hist {
    pub h: Histogram<u64>,
    pub sum: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            h: histogram(),
            sum: 0,
        }
    }
}

impl Hist {
    #[inline]
    pub fn record(&mut self, v: u64) {
        self.h.saturating_record(v);
        self.sum = self.sum.saturating_add(v);
    }

    pub fn add(&mut self, other: &Hist) {
        // Same bounds on every shard, so adding cannot fail.
        let _ = self.h.add(&other.h);
        self.sum = self.sum.saturating_add(other.sum);
    }
}

/// A shard's histograms, as sent to the shard rendering `/metrics`.
#[derive(Clone, Default)]
pub struct Snapshot {
    /// `POST /api/events` and `/batch`: head parsed → response queued, µs.
    pub ingest_us: Hist,
    /// Applied on the owning shard → queued to the subscribers' connections, µs.
    pub fanout_us: Hist,
    /// Messages waiting in a connection's queue when its writer takes the next one.
    pub queue_depth: Hist,
    /// Bytes of memory held by WebSocket connections' outgoing queues, now.
    pub ws_queue_bytes: u64,
}

impl Snapshot {
    pub fn add(&mut self, o: &Snapshot) {
        self.ingest_us.add(&o.ingest_us);
        self.fanout_us.add(&o.fanout_us);
        self.queue_depth.add(&o.queue_depth);
        self.ws_queue_bytes += o.ws_queue_bytes;
    }
}

/// This shard's metrics state (installed in its `shard::Services`).
#[inline]
pub fn local(shard: &Shard) -> &Local {
    shard.services.get()
}

/// The process-wide counters, as seen from `shard`.
#[inline]
pub fn registry(shard: &Shard) -> &Registry {
    &local(shard).registry
}

/// Metrics state of one shard.
pub struct Local {
    /// Every shard's counters (process-wide, shared by every shard's `Local`).
    pub registry: Arc<Registry>,
    pub hist: RefCell<Snapshot>,
    pub rate: RefCell<RateWindow>,
}

impl Local {
    pub fn new(registry: Arc<Registry>) -> Self {
        Local {
            registry,
            hist: RefCell::new(Snapshot::default()),
            rate: RefCell::new(RateWindow::new(time::now_ms())),
        }
    }

    #[inline]
    pub fn ingest(&self, d: Duration) {
        self.hist
            .borrow_mut()
            .ingest_us
            .record(d.as_micros() as u64);
    }
}

/// Starts the shard's sampler: every `SAMPLE_MS` it publishes the shard's entity
/// count and samples the global event total for the rate.
pub fn start(shard: &Rc<Shard>) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        while !shard.shutting_down() {
            let entities = shard.store.borrow().len() as u64;
            let counters = registry(&shard).shard(shard.id);
            counters.entities.store(entities, Relaxed);
            let log_bytes = shard.log.borrow().as_ref().map_or(0, |l| l.held_bytes());
            counters.log_bytes.store(log_bytes, Relaxed);
            let total = registry(&shard).events();
            local(&shard)
                .rate
                .borrow_mut()
                .sample(time::now_ms(), total);
            glommio::timer::sleep(Duration::from_millis(SAMPLE_MS)).await;
        }
    })
    .detach();
}

/// The current totals and rate as seen from `shard`.
pub fn current(shard: &Shard) -> (Totals, f64) {
    let now = time::now_ms();
    let mut t = registry(shard).totals(now);
    for l in shard.shared.log_stats.iter() {
        t.log_syncs += l.syncs.load(Relaxed);
        t.log_sync_failures += l.sync_failures.load(Relaxed);
        t.log_rolls += l.rolls.load(Relaxed);
        t.log_rolls_without_spare += l.rolls_without_spare.load(Relaxed);
    }
    t.shards_failed = shard.shared.failed_shards().len() as u64;
    t.shards_stalled = shard.shared.stalled_shards().len() as u64;
    let rate = local(shard).rate.borrow().rate(now, t.events);
    (t, rate)
}

/// Appends a number with one decimal (rates are multiples of 0.2 events/s).
pub fn write_decimal(out: &mut Vec<u8>, v: f64) {
    let tenths = (v * 10.0).round().max(0.0) as u64;
    json::write_u64(out, tenths / 10);
    out.push(b'.');
    out.push(b'0' + (tenths % 10) as u8);
}

/// The `metrics_update` message.
pub fn write_update(out: &mut Vec<u8>, t: &Totals, rate: f64, now_ms: u64) {
    out.extend_from_slice(b"{\"type\":\"metrics_update\",\"timestamp\":\"");
    time::write_rfc3339_ms(out, now_ms);
    out.extend_from_slice(b"\",\"entities\":{\"total\":");
    json::write_u64(out, t.entities);
    out.extend_from_slice(b"},\"events\":{\"total\":");
    json::write_u64(out, t.events);
    out.extend_from_slice(b",\"rate_per_second\":");
    write_decimal(out, rate);
    out.extend_from_slice(b"},\"websocket\":{\"connections\":");
    json::write_u64(out, t.ws_connections);
    out.extend_from_slice(b"},\"publishers\":{\"active\":");
    json::write_u64(out, t.publishers_active);
    out.extend_from_slice(b"}}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_growth_over_the_last_five_seconds() {
        let mut w = RateWindow::new(0);
        assert_eq!(w.rate(0, 0), 0.0);
        // 50 events in the first second after start: 10/s until they leave the window.
        let mut rates = Vec::new();
        for t in (100..=20_000).step_by(100) {
            let total = if t <= 1_000 { t / 20 } else { 50 };
            w.sample(t, total);
            rates.push((t, w.rate(t, total)));
        }
        let at = |ms: u64| rates.iter().find(|(t, _)| *t == ms).unwrap().1;
        assert_eq!(at(1_000), 10.0);
        assert_eq!(at(4_900), 10.0);
        assert_eq!(at(5_500), 5.0, "the 25 events after 0.5 s remain");
        assert_eq!(at(6_000), 0.0);
        assert_eq!(at(20_000), 0.0);
        assert_eq!(w.rate(20_000, 51), 0.2);
    }

    #[test]
    fn update_message_has_the_spec_shape() {
        let t = Totals {
            entities: 15,
            events: 50_000,
            ws_connections: 3,
            publishers_active: 5,
            ..Totals::default()
        };
        let mut out = Vec::new();
        write_update(&mut out, &t, 120.5, 1_707_912_000_000);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["type"], "metrics_update");
        assert_eq!(v["timestamp"], "2024-02-14T12:00:00.000Z");
        assert_eq!(v["entities"]["total"], 15);
        assert_eq!(v["events"]["total"], 50_000);
        assert_eq!(v["events"]["rate_per_second"], 120.5);
        assert_eq!(v["websocket"]["connections"], 3);
        assert_eq!(v["publishers"]["active"], 5);
    }

    #[test]
    fn decimals() {
        let s = |v: f64| {
            let mut o = Vec::new();
            write_decimal(&mut o, v);
            String::from_utf8(o).unwrap()
        };
        assert_eq!(s(0.0), "0.0");
        assert_eq!(s(10.0), "10.0");
        assert_eq!(s(0.2), "0.2");
        assert_eq!(s(1234.56), "1234.6");
    }

    #[test]
    fn registry_sums_shards() {
        let r = Registry::new(2);
        ShardCounters::bump(&r.shard(ShardId(0)).events, 3);
        ShardCounters::bump(&r.shard(ShardId(1)).events, 4);
        r.shard(ShardId(1)).entities.store(9, Relaxed);
        r.shard(ShardId(0)).publishers.add(hll::hash(b"a"), 1);
        r.shard(ShardId(1)).publishers.add(hll::hash(b"a"), 1);
        r.shard(ShardId(1)).publishers.add(hll::hash(b"b"), 1);
        let t = r.totals(1_500);
        assert_eq!((t.events, t.entities, t.publishers_active), (7, 9, 2));
        assert_eq!(r.events(), 7);
    }
}
