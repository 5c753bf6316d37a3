//! `GET /metrics`: the totals of `metrics_update` and more, plus the ingest latency,
//! fan-out latency and queue-depth histograms of every shard, in the Prometheus text
//! exposition format (version 0.0.4).

use std::fmt::Write;

use super::{Hist, ShardFigures, Snapshot, Totals};

/// Bucket bounds of the latency histograms, in µs (rendered in seconds).
const LATENCY_BUCKETS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000,
];
/// Bucket bounds of the queue-depth histogram, in messages.
const DEPTH_BUCKETS: [u64; 12] = [0, 1, 2, 4, 8, 16, 64, 256, 1_024, 4_096, 16_384, 65_536];

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn scalar(out: &mut String, name: &str, kind: &str, help: &str, v: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {v}");
}

/// A histogram with cumulative `le` buckets. `scale` divides bounds and the sum
/// (1e6 turns µs into seconds).
fn histogram(out: &mut String, name: &str, help: &str, h: &Hist, bounds: &[u64], scale: f64) {
    header(out, name, "histogram", help);
    for &b in bounds {
        let n = if h.h.is_empty() {
            0
        } else {
            h.h.count_between(0, b)
        };
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {n}", b as f64 / scale);
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.h.len());
    let _ = writeln!(out, "{name}_sum {}", h.sum as f64 / scale);
    let _ = writeln!(out, "{name}_count {}", h.h.len());
}

/// One labelled series per shard: `name{shard="i"} v`.
fn per_shard<T: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    v: impl Iterator<Item = T>,
) {
    header(out, name, kind, help);
    for (i, v) in v.enumerate() {
        let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {v}");
    }
}

/// The whole exposition.
pub fn render(t: &Totals, rate: f64, s: &Snapshot, shards: &[ShardFigures]) -> String {
    let mut o = String::with_capacity(8 * 1024);
    scalar(
        &mut o,
        "flux_entities",
        "gauge",
        "Entities stored.",
        t.entities,
    );
    scalar(
        &mut o,
        "flux_events_total",
        "counter",
        "Events applied since the server started.",
        t.events,
    );
    scalar(
        &mut o,
        "flux_events_rate_per_second",
        "gauge",
        "Events applied per second over the last 5 s.",
        rate,
    );
    scalar(
        &mut o,
        "flux_deletions_total",
        "counter",
        "Entities deleted since the server started.",
        t.deletions,
    );
    scalar(
        &mut o,
        "flux_publishers_active",
        "gauge",
        "Distinct event sources in the last 10 s (HyperLogLog estimate).",
        t.publishers_active,
    );
    scalar(
        &mut o,
        "flux_log_syncs_total",
        "counter",
        "fdatasync calls of the shards' logs that completed.",
        t.log_syncs,
    );
    scalar(
        &mut o,
        "flux_log_sync_failures_total",
        "counter",
        "fdatasync calls that failed; each one fails its shard's log (writes refused until restart).",
        t.log_sync_failures,
    );
    scalar(
        &mut o,
        "flux_log_rolls_total",
        "counter",
        "Roll-overs to a new log segment.",
        t.log_rolls,
    );
    scalar(
        &mut o,
        "flux_log_rolls_without_spare_total",
        "counter",
        "Roll-overs that found no segment prepared ahead and created one on the event loop.",
        t.log_rolls_without_spare,
    );
    scalar(
        &mut o,
        "flux_shards_failed",
        "gauge",
        "Shards whose log failed (a failed fdatasync or a committed part that could not be logged): they refuse writes until restart.",
        t.shards_failed,
    );
    scalar(
        &mut o,
        "flux_shards_stalled",
        "gauge",
        "Shards whose executor has not run its heartbeat for over 2 s (a blocked thread, a task that never yields, a lost wake-up).",
        t.shards_stalled,
    );
    scalar(
        &mut o,
        "flux_auth_denied_total",
        "counter",
        "Requests and WebSocket upgrades refused with 401 or 403 (auth mode).",
        t.auth_denied,
    );
    scalar(
        &mut o,
        "flux_rate_limited_total",
        "counter",
        "Requests refused with 429 by the per-namespace rate limit.",
        t.rate_limited,
    );
    scalar(
        &mut o,
        "flux_ws_connections",
        "gauge",
        "Open WebSocket connections.",
        t.ws_connections,
    );
    scalar(
        &mut o,
        "flux_ws_subscriptions",
        "gauge",
        "Subscriptions (connection, pattern) of open connections.",
        t.ws_subscriptions,
    );
    scalar(
        &mut o,
        "flux_ws_interests",
        "gauge",
        "Patterns registered with owning shards, counted once per subscribing shard.",
        t.ws_interests,
    );
    scalar(
        &mut o,
        "flux_ws_slow_consumer_closes_total",
        "counter",
        "Connections closed with 1008 slow consumer.",
        t.ws_slow_consumer_closes,
    );
    scalar(
        &mut o,
        "flux_ws_updates_total",
        "counter",
        "state_update and entity_deleted messages queued to WebSocket connections.",
        t.ws_updates,
    );
    scalar(
        &mut o,
        "flux_ws_delivery_gaps_total",
        "counter",
        "Cross-shard deliveries dropped because the receiving shard's inbox was full.",
        t.ws_delivery_gaps,
    );
    scalar(
        &mut o,
        "flux_ws_inbox_bytes",
        "gauge",
        "Bytes of updates waiting in shards' delivery inboxes.",
        t.ws_inbox_bytes,
    );
    scalar(
        &mut o,
        "flux_ws_subscription_bytes",
        "gauge",
        "Memory accounted to WebSocket subscriptions (connection sets, home registries and owners' interest registrations).",
        t.ws_subscription_bytes,
    );
    scalar(
        &mut o,
        "flux_ws_queue_bytes",
        "gauge",
        "Memory held by WebSocket connections' outgoing queues (queued frames and writes in progress).",
        s.ws_queue_bytes,
    );
    histogram(
        &mut o,
        "flux_ingest_latency_seconds",
        "Event and batch requests: request head parsed to response queued.",
        &s.ingest_us,
        &LATENCY_BUCKETS_US,
        1e6,
    );
    histogram(
        &mut o,
        "flux_ws_fanout_latency_seconds",
        "Updates: applied on the owning shard to queued on the subscribers' connections.",
        &s.fanout_us,
        &LATENCY_BUCKETS_US,
        1e6,
    );
    histogram(
        &mut o,
        "flux_ws_queue_depth_messages",
        "Messages waiting in a connection's queue when its writer takes the next one.",
        &s.queue_depth,
        &DEPTH_BUCKETS,
        1.0,
    );
    per_shard(
        &mut o,
        "flux_shard_events_total",
        "counter",
        "Events applied by each shard since the server started.",
        shards.iter().map(|f| f.events),
    );
    per_shard(
        &mut o,
        "flux_shard_entities",
        "gauge",
        "Entities stored by each shard.",
        shards.iter().map(|f| f.entities),
    );
    per_shard(
        &mut o,
        "flux_shard_ws_inbox_items",
        "gauge",
        "Fan-out deliveries waiting in each shard's inbox.",
        shards.iter().map(|f| f.inbox_items),
    );
    per_shard(
        &mut o,
        "flux_shard_log_bytes",
        "gauge",
        "Bytes of each shard's log segment files (preallocated; the spare being prepared not counted).",
        shards.iter().map(|f| f.log_bytes),
    );
    per_shard(
        &mut o,
        "flux_shard_last_snapshot_timestamp_seconds",
        "gauge",
        "Unix time of each shard's last completed snapshot (0: none since the server started).",
        shards.iter().map(|f| f.last_snapshot_ms as f64 / 1000.0),
    );
    o
}
