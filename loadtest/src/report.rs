//! What the user reads: the live progress line, the final summary, the
//! `--json` report and the `--hdr` percentile distribution.

use crate::config::{Config, Op};
use crate::stats::Stats;
use crate::verify::VerifyReport;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::Duration;

/// Percentiles of every latency summary.
pub const PERCENTILES: [f64; 5] = [50.0, 90.0, 99.0, 99.9, 99.99];

/// Everything the final report shows.
pub struct Summary<'a> {
    pub cfg: &'a Config,
    pub url: &'a str,
    pub stats: &'a Stats,
    /// Updates each subscriber should have seen (acked events it subscribed to).
    pub ws_expected_per_subscriber: u64,
    pub verify: Option<(&'a VerifyReport, u64)>,
    pub violations: &'a [String],
}

pub fn ms(us: u64) -> String {
    format!("{:.3}ms", us as f64 / 1000.0)
}

fn per_s(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// One line per second on stderr.
/// `elapsed` is the end of the one-second interval that `window` covers.
pub fn progress_line(
    elapsed: Duration,
    cfg: &Config,
    window: &Stats,
    target_rate: Option<f64>,
) -> String {
    let phase = if elapsed <= cfg.warmup {
        " warmup"
    } else if elapsed > cfg.total() + Duration::from_millis(999) {
        " drain"
    } else {
        ""
    };
    let reqs = window.attempts() + window.warmup_requests;
    let mut line = format!(
        "[{:>5.1}s{phase}] {:>8} req/s {:>8} ev/s  err {:>5}",
        elapsed.as_secs_f64(),
        reqs,
        window.events_ok,
        window.errors(),
    );
    if window.latency.is_empty() {
        line.push_str("  p50 -  p99 -");
    } else {
        let _ = write!(
            line,
            "  p50 {}  p99 {}",
            ms(window.latency.value_at_quantile(0.5)),
            ms(window.latency.value_at_quantile(0.99))
        );
    }
    if let Some(r) = target_rate {
        let _ = write!(line, "  target {r:.0} ev/s  dropped {}", window.dropped);
    }
    if cfg.subscribers > 0 {
        let _ = write!(line, "  ws {}/s", window.ws.updates);
        if !window.ws.latency.is_empty() {
            let _ = write!(
                line,
                " p99 {}",
                ms(window.ws.latency.value_at_quantile(0.99))
            );
        }
    }
    line
}

fn latency_lines(out: &mut String, h: &Histogram<u64>) {
    if h.is_empty() {
        out.push_str("    (no samples)\n");
        return;
    }
    for p in PERCENTILES {
        let _ = writeln!(out, "    p{:<6} {:>12}", p, ms(h.value_at_percentile(p)));
    }
    let _ = writeln!(out, "    max     {:>12}", ms(h.max()));
    let _ = writeln!(
        out,
        "    mean    {:>12}  stdev {}",
        ms(h.mean() as u64),
        ms(h.stdev() as u64)
    );
}

fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    let mut o = serde_json::Map::new();
    o.insert("count".into(), h.len().into());
    for (k, p) in ["p50", "p90", "p99", "p99_9", "p99_99"]
        .iter()
        .zip(PERCENTILES)
    {
        o.insert(format!("{k}_us"), h.value_at_percentile(p).into());
    }
    o.insert("max_us".into(), h.max().into());
    o.insert("min_us".into(), h.min().into());
    o.insert("mean_us".into(), h.mean().into());
    o.insert("stdev_us".into(), h.stdev().into());
    Value::Object(o)
}

/// The mix in percent: `ingest=90,get=10`.
fn mix_text(cfg: &Config) -> String {
    let total: u32 = cfg.mix.iter().sum();
    Op::ALL
        .iter()
        .filter(|o| cfg.mix[o.index()] > 0)
        .map(|o| {
            let pct = cfg.mix[o.index()] as f64 * 100.0 / total as f64;
            format!("{}={}", o.name(), (pct * 10.0).round() / 10.0)
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `1s`, `1.5s`, `250ms`.
pub fn duration_text(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

fn model_text(cfg: &Config) -> String {
    match &cfg.stages {
        None => format!(
            "closed loop, {} connections x pipeline {}",
            cfg.connections, cfg.pipeline
        ),
        Some(st) => {
            let stages: Vec<String> = st
                .iter()
                .map(|s| format!("{}@{}", duration_text(s.duration), s.rate))
                .collect();
            format!(
                "open loop {} ev/s, {} connections x pipeline {}, max lag {}",
                stages.join(","),
                cfg.connections,
                cfg.pipeline,
                duration_text(cfg.max_lag)
            )
        }
    }
}

pub fn summary_text(s: &Summary) -> String {
    let (cfg, st) = (s.cfg, s.stats);
    let d = cfg.duration;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "flux-loadtest {}  {}, {} threads",
        s.url,
        model_text(cfg),
        cfg.threads
    );
    let _ = writeln!(
        o,
        "workload {}  {} entities ({}), {} props x {} B{}{}",
        mix_text(cfg),
        cfg.entities,
        cfg.dist,
        cfg.props,
        cfg.value_size,
        if cfg.mix[Op::Batch.index()] > 0 {
            format!(", batch {}", cfg.batch)
        } else {
            String::new()
        },
        if cfg.namespaces.is_empty() {
            String::new()
        } else {
            format!(", namespaces {}", cfg.namespaces.join(","))
        }
    );
    let _ = writeln!(
        o,
        "measured {} after {} warmup ({} warmup requests not counted)\n",
        duration_text(d),
        duration_text(cfg.warmup),
        st.warmup_requests
    );
    let _ = writeln!(
        o,
        "  requests   {:>12}  {:>12.1}/s",
        st.attempts(),
        per_s(st.attempts(), d)
    );
    let _ = writeln!(
        o,
        "  responses  {:>12}  {:>12.1}/s",
        st.responses_total(),
        per_s(st.responses_total(), d)
    );
    let _ = writeln!(
        o,
        "  events     {:>12}  {:>12.1}/s  (acknowledged)",
        st.events_ok,
        per_s(st.events_ok, d)
    );
    let _ = writeln!(
        o,
        "  sent       {:>12}  {:>12}/s\n  received   {:>12}  {:>12}/s",
        bytes(st.bytes_sent as f64),
        bytes(per_s(st.bytes_sent, d)),
        bytes(st.bytes_received as f64),
        bytes(per_s(st.bytes_received, d))
    );
    let _ = writeln!(
        o,
        "  errors     {:>12}  {:>11.3}%",
        st.errors(),
        st.error_rate_pct()
    );
    let mut statuses = st.status.clone();
    statuses.sort_unstable();
    for (code, n) in statuses.iter().filter(|(c, _)| !(200..300).contains(c)) {
        let note = if *code == 404 && st.not_found > 0 {
            " (get of an unwritten entity: not an error)"
        } else {
            ""
        };
        let _ = writeln!(o, "    HTTP {code}   {n:>10}{note}");
    }
    for (name, n) in [
        ("timeout", st.timeouts),
        ("connect", st.connect_errors),
        ("io", st.io_errors),
        ("protocol", st.protocol_errors),
        ("dropped", st.dropped),
    ] {
        if n > 0 {
            let _ = writeln!(o, "    {name:<10} {n:>10}");
        }
    }
    let from = if cfg.open_loop() {
        "from intended send time"
    } else {
        "from send"
    };
    let _ = writeln!(o, "\nlatency ({from})");
    latency_lines(&mut o, &st.latency);
    if cfg.open_loop() {
        let _ = writeln!(
            o,
            "service time (from actual send; hides queueing, for comparison)"
        );
        latency_lines(&mut o, &st.service);
    }
    let ops: Vec<Op> = Op::ALL
        .into_iter()
        .filter(|op| cfg.mix[op.index()] > 0)
        .collect();
    if ops.len() > 1 {
        let _ = writeln!(o, "per op");
        for op in ops {
            let h = &st.op_latency[op.index()];
            if h.is_empty() {
                let _ = writeln!(o, "    {:<7} 0 responses", op.name());
                continue;
            }
            let _ = writeln!(
                o,
                "    {:<7} {:>10} responses  p50 {}  p99 {}  max {}",
                op.name(),
                st.responses[op.index()],
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99)),
                ms(h.max())
            );
        }
    }
    if cfg.subscribers > 0 {
        ws_text(&mut o, s);
    }
    if let Some((v, skipped)) = s.verify {
        verify_text(&mut o, v, skipped);
    }
    if !s.violations.is_empty() {
        let _ = writeln!(o, "\nFAILED");
        for v in s.violations {
            let _ = writeln!(o, "  {v}");
        }
    }
    o
}

fn ws_missed(s: &Summary) -> (u64, u64, u64) {
    let expected = s.ws_expected_per_subscriber * s.cfg.subscribers as u64;
    let got = s.stats.ws.tagged_updates;
    (
        expected,
        expected.saturating_sub(got),
        got.saturating_sub(expected),
    )
}

fn ws_text(o: &mut String, s: &Summary) {
    let ws = &s.stats.ws;
    let (expected, missed, extra) = ws_missed(s);
    let _ = writeln!(
        o,
        "\nsubscribers {} (subscribed to {})\n  state_update {}  (timed: {} of {} expected, missed {}, extra {})",
        s.cfg.subscribers, s.cfg.subscribe, ws.updates, ws.tagged_updates, expected, missed, extra
    );
    let _ = writeln!(
        o,
        "  slow-consumer closes (1008) {}  other closes {}  errors {}  other messages {}  unparsable {}",
        ws.slow_consumer_closes, ws.other_closes, ws.errors, ws.other_messages, ws.bad_messages
    );
    let _ = writeln!(
        o,
        "  publish -> state_update latency (from intended send time)"
    );
    latency_lines(o, &ws.latency);
}

fn verify_text(o: &mut String, v: &VerifyReport, skipped: u64) {
    let _ = writeln!(
        o,
        "\nverify: {} entities checked, {} ok ({} matched a write whose ack was lost), {} mismatches, {} read errors, {} skipped (never acknowledged)",
        v.checked,
        v.ok,
        v.ok_unacknowledged,
        v.mismatches.len(),
        v.read_errors.len(),
        skipped
    );
    for m in &v.mismatches {
        let _ = writeln!(o, "  MISMATCH {}: {}", m.id, m.detail);
    }
    for (id, e) in &v.read_errors {
        let _ = writeln!(o, "  READ ERROR {id}: {e}");
    }
}

pub fn summary_json(s: &Summary) -> Value {
    let (cfg, st) = (s.cfg, s.stats);
    let d = cfg.duration;
    let mut statuses = st.status.clone();
    statuses.sort_unstable();
    let status: serde_json::Map<String, Value> = statuses
        .iter()
        .map(|(c, n)| (c.to_string(), (*n).into()))
        .collect();
    let per_op: serde_json::Map<String, Value> = Op::ALL
        .iter()
        .filter(|op| cfg.mix[op.index()] > 0)
        .map(|op| {
            let mut l = latency_json(&st.op_latency[op.index()]);
            l["responses"] = st.responses[op.index()].into();
            (op.name().to_string(), l)
        })
        .collect();
    let mut j = json!({
        "url": s.url,
        "config": {
            "model": if cfg.open_loop() { "open" } else { "closed" },
            "connections": cfg.connections,
            "pipeline": cfg.pipeline,
            "threads": cfg.threads,
            "duration_s": d.as_secs_f64(),
            "warmup_s": cfg.warmup.as_secs_f64(),
            "stages": cfg.stages.as_ref().map(|st| st.iter().map(|s| json!({"duration_s": s.duration.as_secs_f64(), "rate": s.rate})).collect::<Vec<_>>()),
            "max_lag_s": cfg.max_lag.as_secs_f64(),
            "timeout_s": cfg.timeout.as_secs_f64(),
            "mix": mix_text(cfg),
            "batch": cfg.batch,
            "entities": cfg.entities,
            "props": cfg.props,
            "value_size": cfg.value_size,
            "streams": cfg.streams,
            "sources": cfg.sources,
            "dist": cfg.dist.to_string(),
            "prefix": cfg.prefix,
            "namespaces": cfg.namespaces,
            "seed": cfg.seed,
            "subscribers": cfg.subscribers,
        },
        "requests": st.attempts(),
        "responses": st.responses_total(),
        "requests_per_s": per_s(st.attempts(), d),
        "responses_per_s": per_s(st.responses_total(), d),
        "events": st.events_ok,
        "events_per_s": per_s(st.events_ok, d),
        "bytes_sent": st.bytes_sent,
        "bytes_received": st.bytes_received,
        "bytes_sent_per_s": per_s(st.bytes_sent, d),
        "bytes_received_per_s": per_s(st.bytes_received, d),
        "warmup_requests": st.warmup_requests,
        "errors": {
            "total": st.errors(),
            "rate_pct": st.error_rate_pct(),
            "status": status,
            "get_not_found": st.not_found,
            "timeout": st.timeouts,
            "connect": st.connect_errors,
            "io": st.io_errors,
            "protocol": st.protocol_errors,
            "dropped": st.dropped,
        },
        "latency": latency_json(&st.latency),
        "latency_from": if cfg.open_loop() { "intended_send_time" } else { "send_time" },
        "service_time": latency_json(&st.service),
        "per_op": per_op,
        "passed": s.violations.is_empty(),
        "violations": s.violations,
    });
    if cfg.subscribers > 0 {
        let ws = &st.ws;
        let (expected, missed, extra) = ws_missed(s);
        j["subscribers"] = json!({
            "count": cfg.subscribers,
            "state_updates": ws.updates,
            "timed_updates": ws.tagged_updates,
            "expected_timed_updates": expected,
            "missed": missed,
            "extra": extra,
            "slow_consumer_closes": ws.slow_consumer_closes,
            "other_closes": ws.other_closes,
            "errors": ws.errors,
            "other_messages": ws.other_messages,
            "unparsable_messages": ws.bad_messages,
            "bytes": ws.bytes,
            "latency": latency_json(&ws.latency),
        });
    }
    if let Some((v, skipped)) = s.verify {
        j["verify"] = json!({
            "checked": v.checked,
            "ok": v.ok,
            "ok_unacknowledged": v.ok_unacknowledged,
            "skipped": skipped,
            "passed": v.passed(),
            "mismatches": v.mismatches.iter().map(|m| json!({
                "id": m.id,
                "detail": m.detail,
                "expected": m.expected,
                "actual": m.actual,
            })).collect::<Vec<_>>(),
            "read_errors": v.read_errors.iter().map(|(id, e)| json!({"id": id, "error": e})).collect::<Vec<_>>(),
        });
    }
    j
}

/// The histogram as HdrHistogram's `outputPercentileDistribution` text (5
/// ticks per half distance, values in milliseconds), which the HdrHistogram
/// plotter and wrk2's tooling read.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    const SCALE: f64 = 1000.0; // µs → ms
    let mut o = String::new();
    let _ = write!(
        o,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    o,
                    "{value:>12.3} {q:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(o, "{value:>12.3} {q:>2.12} {total:>10}");
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / SCALE,
            h.stdev() / SCALE,
            h.highest_equivalent(h.max()) as f64 / SCALE,
        )
    };
    let sub_buckets = (2.0 * 10f64.powi(h.sigfig() as i32)).log2().ceil().exp2() as u64;
    let _ = writeln!(
        o,
        "#[Mean    = {mean:>12.3}, StdDeviation   = {stdev:>12.3}]"
    );
    let _ = writeln!(
        o,
        "#[Max     = {max:>12.3}, Total count    = {:>12}]",
        h.len()
    );
    let _ = writeln!(
        o,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn percentile_distribution_format() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
        }
        let text = percentile_distribution(&h);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines.next().unwrap(), "");
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0][0], "0.010");
        assert_eq!(rows[0][2], "1");
        let last = rows.last().unwrap();
        assert_eq!(
            last.len(),
            3,
            "the 100% row has no 1/(1-p) column: {last:?}"
        );
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "1000");
        let values: Vec<f64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
        assert!(values.windows(2).all(|w| w[0] <= w[1]));
        assert!((values.last().unwrap() - 10.0).abs() < 0.01);
        assert!(
            text.contains("#[Max     =       10.007, Total count    =         1000]"),
            "{text}"
        );
        assert!(text.contains("SubBuckets     =         2048]"));
    }

    #[test]
    fn ms_format() {
        assert_eq!(ms(1234), "1.234ms");
        assert_eq!(ms(0), "0.000ms");
    }
}
