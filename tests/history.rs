//! `GET /api/events?entity=…`: an entity's stored events, newest first, across shards
//! and across a restart.

mod common;

use common::*;
use serde_json::Value;

fn history(srv: &Server, query: &str) -> (u16, Value) {
    let r = srv.get(&format!("/api/events?{query}"));
    (r.status, r.json())
}

#[test]
fn history_is_newest_first_with_every_field_and_limit() {
    let srv = Server::start();
    // Ids on both shards, so both the local and the cross-shard path are used.
    let ids: Vec<String> = (0..8).map(|i| format!("hist/{}-{i}", unique())).collect();
    assert_spans_two_shards(ids.iter().map(String::as_str));
    for id in &ids {
        for n in 1..=4 {
            let body = format!(
                r#"{{"eventId":"ev-{n}","stream":"h.s","source":"src-{n}","timestamp":{n}000,"key":"k{n}","schema":{{"v":{n}}},"payload":{{"entity_id":{},"properties":{{"n":{n}.50,"only{n}":true}}}}}}"#,
                json_str(id)
            );
            srv.post_ok(&body);
        }
        let (status, v) = history(&srv, &format!("entity={}", pct(id)));
        assert_eq!(status, 200);
        let evs = v.as_array().expect("array");
        assert_eq!(evs.len(), 4);
        for (i, ev) in evs.iter().enumerate() {
            let n = 4 - i;
            assert_eq!(ev["eventId"], format!("ev-{n}"));
            assert_eq!(ev["stream"], "h.s");
            assert_eq!(ev["source"], format!("src-{n}"));
            assert_eq!(ev["timestamp"], n as u64 * 1000);
            assert_eq!(ev["key"], format!("k{n}"));
            assert_eq!(ev["schema"]["v"], n);
            assert_eq!(ev["payload"]["entity_id"], id.as_str());
            assert_eq!(ev["payload"]["properties"][format!("only{n}")], true);
        }
        // Raw text keeps the number as sent.
        let raw = srv.get(&format!("/api/events?entity={}&limit=1", pct(id)));
        assert!(raw.text().contains(r#""n":4.50"#), "{}", raw.text());
        assert_eq!(raw.json().as_array().unwrap().len(), 1);
    }
}

#[test]
fn history_since_and_errors() {
    let srv = Server::start();
    let id = format!("hs-{}", unique());
    srv.post_ok(&event(&id, r#"{"a":1}"#));
    std::thread::sleep(std::time::Duration::from_millis(30));
    let mid = now_ms();
    std::thread::sleep(std::time::Duration::from_millis(30));
    srv.post_ok(&event(&id, r#"{"a":2}"#));
    let since = mid;
    let r = srv.get(&format!("/api/events?entity={id}&since={}", rfc3339(since)));
    assert_eq!(r.status, 200, "{}", r.text());
    let evs = r.json();
    assert_eq!(evs.as_array().unwrap().len(), 1, "{evs}");
    assert_eq!(evs[0]["payload"]["properties"]["a"], 2);

    let (s, _) = history(&srv, "limit=3");
    assert_eq!(s, 400, "entity is required");
    let (s, _) = history(&srv, &format!("entity={id}&since=yesterday"));
    assert_eq!(s, 400);
    // Well formed but no such day: refused, not rolled over into March.
    let (s, v) = history(&srv, &format!("entity={id}&since=2026-02-31T00:00:00Z"));
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("since"), "{v}");
    let (s, _) = history(&srv, &format!("entity={id}&limit=0"));
    assert_eq!(s, 400);
    let (s, v) = history(&srv, "entity=never-written");
    assert_eq!(s, 404);
    assert!(v["error"].is_string());
    let r = srv.request("DELETE", "/api/events", &[], None);
    assert_eq!(r.status, 405);
    assert!(r.header("allow").unwrap().contains("GET"));
}

#[test]
fn history_survives_a_restart() {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().to_str().unwrap().to_string();
    let mut srv = Server::start_with(&[("FLUX_DATA_DIR", &dir)]);
    let id = format!("hr-{}", unique());
    for n in 0..5 {
        srv.post_ok(&event(&id, &format!(r#"{{"n":{n}}}"#)));
    }
    let before = srv.get(&format!("/api/events?entity={id}")).body;
    srv.signal("KILL");
    srv.wait_exit(std::time::Duration::from_secs(5))
        .expect("killed");
    let srv = Server::start_with(&[("FLUX_DATA_DIR", &dir)]);
    let after = srv.get(&format!("/api/events?entity={id}")).body;
    assert_eq!(
        String::from_utf8_lossy(&after).matches("eventId").count(),
        5
    );
    assert_eq!(
        String::from_utf8_lossy(&before),
        String::from_utf8_lossy(&after)
    );
}

/// History reaches segments that lie wholly before the snapshot's replay point after a
/// restart from that snapshot. Until the compact-log work such segments were not
/// opened at start-up, so every answer ended at the oldest segment the replay needed
/// (and retention never deleted them).
#[test]
fn history_reaches_segments_before_the_snapshot_after_a_restart() {
    // One shard: no cross-shard intent holds the snapshot's replay point back.
    let env = [
        ("FLUX_SHARDS", "1"),
        ("FLUX_SEGMENT_BYTES", "1048576"),
        ("FLUX_BODY_LIMIT_BATCH_BYTES", "262144"),
        ("FLUX_BODY_LIMIT_SINGLE_BYTES", "65536"),
    ];
    let mut srv = Server::start_with(&env);
    let id = format!("hseg-{}", unique());
    srv.post_ok(&event(&id, r#"{"first":true}"#));
    // Several segments of other entities after it, then a newer event of `id`.
    let filler = format!(r#"{{"pad":"{}"}}"#, "x".repeat(900));
    for b in 0..12 {
        let events: Vec<String> = (0..200)
            .map(|i| event(&format!("hseg-fill-{b}-{i}"), &filler))
            .collect();
        srv.batch_ok(&events);
    }
    srv.post_ok(&event(&id, r#"{"last":true}"#));
    let before = srv.get(&format!("/api/events?entity={id}")).body;
    assert_eq!(
        String::from_utf8_lossy(&before).matches("eventId").count(),
        2
    );
    // A clean stop writes the snapshot whose replay point lies past the first segments.
    srv.stop();
    srv.restart_with(&env);
    let log = srv.log();
    let from: u64 = log
        .split("replaying the log from LSN ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("started from a snapshot: {log}"));
    assert!(
        from > 1048576,
        "the replay point {from} lies past the first segment"
    );
    let after = srv.get(&format!("/api/events?entity={id}")).body;
    assert_eq!(
        String::from_utf8_lossy(&after),
        String::from_utf8_lossy(&before),
        "both events, the first one in a segment before the replay point"
    );
}

/// An answer longer than a page (256 KiB of events) is streamed page by page, and is
/// the same answer: every event, newest first, bytes intact, `limit` and `since`
/// applied across pages. A short answer keeps its Content-Length.
#[test]
fn long_history_is_streamed_whole() {
    let srv = Server::start();
    let run = unique();
    // Two ids per shard, so both the local and the cross-shard path stream.
    let mut ids: Vec<String> = Vec::new();
    for shard in 0..2 {
        ids.extend(
            (0..)
                .map(|i| format!("long/{run}-{i}"))
                .filter(|id| owner_shard(id, 2) == shard)
                .take(2),
        );
    }
    assert_spans_two_shards(ids.iter().map(String::as_str));
    let value = |n: usize| format!("v{n}-{}", "x".repeat(100_000));
    let mut mids = Vec::new();
    for id in &ids {
        for n in 0..12 {
            if n == 4 {
                std::thread::sleep(std::time::Duration::from_millis(20));
                mids.push(now_ms());
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            srv.post_ok(&event(id, &format!(r#"{{"n":{n},"blob":"{}"}}"#, value(n))));
        }
    }
    for (id, mid) in ids.iter().zip(mids) {
        let r = srv.get(&format!("/api/events?entity={}&limit=500", pct(id)));
        assert_eq!(r.status, 200);
        assert!(r.is_chunked(), "1.2 MB of history is streamed");
        assert!(r.chunks >= 4, "in pages: {} chunks", r.chunks);
        let v = r.json();
        let evs = v.as_array().expect("array");
        assert_eq!(evs.len(), 12);
        for (i, ev) in evs.iter().enumerate() {
            let n = 11 - i;
            assert_eq!(ev["payload"]["entity_id"], id.as_str());
            assert_eq!(ev["payload"]["properties"]["n"], n);
            assert_eq!(ev["payload"]["properties"]["blob"], value(n));
        }
        // `limit` across pages.
        let r = srv.get(&format!("/api/events?entity={}&limit=7", pct(id)));
        let evs = r.json();
        let evs = evs.as_array().unwrap();
        assert_eq!(evs.len(), 7);
        assert_eq!(evs[6]["payload"]["properties"]["n"], 5);
        // `since` across pages: the 8 events written after `mid`.
        let r = srv.get(&format!(
            "/api/events?entity={}&since={}",
            pct(id),
            rfc3339(mid)
        ));
        let evs = r.json();
        let evs = evs.as_array().unwrap();
        assert_eq!(evs.len(), 8);
        assert_eq!(evs[7]["payload"]["properties"]["n"], 4);
        // A short answer is sent whole.
        let r = srv.get(&format!("/api/events?entity={}&limit=2", pct(id)));
        assert!(!r.is_chunked());
        assert!(r.header("content-length").is_some());
        assert_eq!(r.json().as_array().unwrap().len(), 2);
    }
    // HTTP/1.0 gets the long answer close-delimited.
    let mut c = srv.connect();
    c.send(format!("GET /api/events?entity={} HTTP/1.0\r\n\r\n", pct(&ids[0])).as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(!r.is_chunked());
    assert_eq!(r.json().as_array().unwrap().len(), 12);
    // Pipelined after a long answer, the next request is answered in order.
    let mut c = srv.connect();
    let long = get_request(&format!("/api/events?entity={}", pct(&ids[1])));
    let mut both = long.clone();
    both.extend_from_slice(&get_request("/health"));
    c.send(&both);
    assert_eq!(c.read_response().json().as_array().unwrap().len(), 12);
    assert_eq!(c.read_response().status, 200);
    srv.assert_healthy();
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix milliseconds.
fn rfc3339(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil_from_days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        ms % 1000
    )
}
