//! Black-box tests of the live metrics (DECISIONS.md "WebSocket", `metrics_update`)
//! and of `GET /metrics`, checked against a known workload.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn sourced_event(entity: &str, source: &str, props: &str) -> String {
    format!(
        r#"{{"stream":"m","source":"{source}","payload":{{"entity_id":"{entity}","properties":{props}}}}}"#
    )
}

#[test]
fn metrics_match_a_known_workload() {
    let srv = Server::start_with(&[("FLUX_METRICS_INTERVAL_MS", "250")]);
    let mut a = WsClient::connect(srv.port());
    let _b = WsClient::connect(srv.port());
    let ids: Vec<String> = (0..20).map(|i| format!("m-{i}")).collect();
    assert_spans_two_shards(ids.iter().map(String::as_str));

    // 60 events from 3 sources (each writing to entities of both shards): 30 single
    // requests and one batch of 30; then 2 deletions.
    let started = Instant::now();
    for i in 0..30 {
        srv.post_ok(&sourced_event(
            &ids[i % 20],
            &format!("src-{}", i % 3),
            r#"{"v":1}"#,
        ));
    }
    let batch: Vec<String> = (0..30)
        .map(|i| sourced_event(&ids[(i + 7) % 20], &format!("src-{}", i % 3), r#"{"w":2}"#))
        .collect();
    srv.batch_ok(&batch);
    assert_eq!(
        srv.request("DELETE", &entity_path(&ids[0]), &[], None)
            .status,
        200
    );
    let r = srv.post(
        "/api/state/entities/delete",
        &format!(r#"{{"entity_ids":["{}"]}}"#, ids[1]),
    );
    assert_eq!(r.json()["deleted"], 1);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "workload too slow"
    );

    let want = |m: &Value| m["events"]["total"] == 60 && m["entities"]["total"] == 18;
    let got = a.collect(Duration::from_secs(3), true, |g| g.iter().any(want));
    let m = got
        .iter()
        .find(|m| want(m))
        .unwrap_or_else(|| panic!("no metrics_update with the workload's totals: {got:?}"));
    assert_eq!(m["type"], "metrics_update");
    assert_eq!(m["websocket"]["connections"], 2, "{m}");
    assert_eq!(m["publishers"]["active"], 3, "{m}");
    // All 60 events lie within the last 5 s: 60 / 5.
    assert_eq!(m["events"]["rate_per_second"], 12.0, "{m}");
    let ts = parse_rfc3339_ms(m["timestamp"].as_str().unwrap()).expect("timestamp");
    assert!(ts.abs_diff(now_ms()) < 5_000);

    assert_eq!(metric(&srv, "flux_events_total"), 60.0);
    assert_eq!(metric(&srv, "flux_entities"), 18.0);
    assert_eq!(metric(&srv, "flux_deletions_total"), 2.0);
    assert_eq!(metric(&srv, "flux_publishers_active"), 3.0);
    assert_eq!(metric(&srv, "flux_ws_connections"), 2.0);
    // 30 single events and one batch (deletes are not ingest requests).
    assert_eq!(metric(&srv, "flux_ingest_latency_seconds_count"), 31.0);
    assert!(metric(&srv, "flux_ingest_latency_seconds_sum") > 0.0);
    assert_eq!(
        metric(&srv, "flux_ingest_latency_seconds_bucket{le=\"+Inf\"}"),
        31.0
    );
    assert_eq!(metric(&srv, "flux_ws_slow_consumer_closes_total"), 0.0);

    // Five seconds after the last event the rate is back to 0; totals stay.
    let quiet = a.collect(Duration::from_secs(9), true, |g| {
        g.iter().any(|m| m["events"]["rate_per_second"] == 0.0)
    });
    let last = quiet.last().expect("metrics updates");
    assert_eq!(last["events"]["rate_per_second"], 0.0, "{quiet:?}");
    assert_eq!(last["events"]["total"], 60);
    // /metrics may be answered by the other shard, whose rate window is sampled on its
    // own ticks: it reaches 0 within one sampling period as well.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut rate = metric(&srv, "flux_events_rate_per_second");
    while rate != 0.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        rate = metric(&srv, "flux_events_rate_per_second");
    }
    assert_eq!(rate, 0.0);
}

#[test]
fn fan_out_and_queue_depth_are_measured() {
    let srv = Server::start();
    let mut c = WsClient::connect(srv.port());
    c.subscribe("*");
    let ids: Vec<String> = (0..10).map(|i| format!("f-{i}")).collect();
    assert_spans_two_shards(ids.iter().map(String::as_str));
    for id in &ids {
        srv.post_ok(&event(id, r#"{"a":1,"b":2}"#));
    }
    assert_eq!(c.updates(20, Duration::from_secs(5)).len(), 20);
    // Requests sent one after another: one delivery each (the flush task ran between
    // them), each to the subscriber's home shard.
    wait_metric(
        &srv,
        "flux_ws_fanout_latency_seconds_count",
        10.0,
        Duration::from_secs(2),
    );
    assert_eq!(metric(&srv, "flux_ws_updates_total"), 20.0);
    // 20 updates and the subscribe acknowledgement passed through the queue.
    assert!(metric(&srv, "flux_ws_queue_depth_messages_count") >= 21.0);
    assert_eq!(metric(&srv, "flux_ws_subscriptions"), 1.0);
}

/// Requests applied back to back (pipelined on one connection) reach a subscriber's
/// shard as a few deliveries, not one per request: the owner's flush task ships what
/// the runnable ingestion work applied. Order and completeness are unchanged.
#[test]
fn back_to_back_requests_share_deliveries() {
    const N: usize = 50;
    let srv = Server::start_with(&[("FLUX_SHARDS", "1")]);
    let mut ws = WsClient::connect(srv.port());
    ws.subscribe("*");
    let mut pipelined = Vec::new();
    for i in 0..N {
        pipelined.extend(post_request(
            "/api/events",
            &event("bb-1", &format!(r#"{{"seq":{i}}}"#)),
        ));
    }
    let mut c = srv.connect();
    c.send(&pipelined);
    for _ in 0..N {
        assert_eq!(c.read_response().status, 200);
    }
    let got = ws.updates(N, Duration::from_secs(5));
    let seqs: Vec<i64> = got.iter().map(|(_, _, v)| v.as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (0..N as i64).collect::<Vec<_>>(),
        "every update, in order"
    );
    let deliveries = metric(&srv, "flux_ws_fanout_latency_seconds_count");
    assert!(
        (1.0..=5.0).contains(&deliveries),
        "{N} pipelined requests took {deliveries} deliveries"
    );
}

#[test]
fn metrics_endpoint_speaks_prometheus_text() {
    let srv = Server::start();
    srv.post_ok(&event("p-1", r#"{"a":1}"#));
    let r = srv.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    let mut last_bucket: Option<(String, f64)> = None;
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP flux_") || line.starts_with("# TYPE flux_"));
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            text.contains(&format!(
                "# TYPE {} ",
                name.trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count")
            )),
            "{line}"
        );
        // Buckets are cumulative.
        if let Some(hist) = name.strip_suffix("_bucket") {
            if let Some((prev_hist, prev)) = &last_bucket {
                if prev_hist == hist {
                    assert!(v >= *prev, "{line}");
                }
            }
            last_bucket = Some((hist.to_string(), v));
        }
    }
    let mut c = srv.connect();
    c.send(&build_request("HEAD", "/metrics", &[], None));
    let head = c.try_read_head().expect("HEAD answer");
    assert_eq!(head.status, 200);
    c.assert_quiet(Duration::from_millis(200));
    let r = srv.post("/metrics", "{}");
    assert_error(&r, 405);
}
