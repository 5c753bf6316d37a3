//! A shard whose executor stops running tasks is detected: each shard's heartbeat task
//! publishes the time every 100 ms, the main thread watches, and a shard silent for
//! more than 2 s turns `/health` to 503 naming it, shows in `/metrics`
//! (`flux_shards_stalled`) and is logged; once it runs again all of that clears. The
//! failpoint `shard-stall` blocks shard N's thread while `shard-N/.stall` exists.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// `GET path` on a fresh connection that answers within `within`; connections the
/// kernel hands to the stalled shard never answer, so a few attempts may be needed.
fn get_answered(srv: &Server, path: &str, within: Duration) -> Response {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(mut c) = Conn::try_open(srv.port(), Duration::from_millis(500)) {
            c.set_timeout(Duration::from_millis(400));
            if let Ok(r) = c.try_exchange(&get_request(path)) {
                return r;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no shard answered {path}; log:\n{}",
            srv.log()
        );
    }
}

#[test]
fn a_stalled_shard_turns_health_to_503_and_back() {
    let srv = Server::start_with(&[("FLUX_FAILPOINT", "shard-stall"), ("FLUX_SHARDS", "2")]);
    srv.assert_healthy();
    // Let the heartbeats start (they begin after recovery).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(srv.get("/health").status, 200);

    let marker = srv.data_dir().join("shard-1").join(".stall");
    std::fs::write(&marker, b"").unwrap();
    let stalled_at = Instant::now();
    let seen = loop {
        let r = get_answered(&srv, "/health", Duration::from_secs(10));
        if r.status == 503 {
            break r;
        }
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            stalled_at.elapsed() < Duration::from_secs(6),
            "shard 1 was not reported stalled within 6 s; log:\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = stalled_at.elapsed();
    let h = seen.json();
    assert_eq!(h["status"], "stalled", "{h}");
    assert_eq!(h["failed_shards"], serde_json::json!([]), "{h}");
    assert_eq!(h["stalled_shards"][0]["shard"], 1, "{h}");
    assert!(
        h["stalled_shards"][0]["silent_ms"].as_u64().unwrap() > 2_000,
        "{h}"
    );
    assert!(
        took >= Duration::from_secs(2),
        "reported after {took:?}, before the 2 s threshold"
    );
    let metrics = get_answered(&srv, "/metrics", Duration::from_secs(10));
    assert!(
        metrics.text().contains("\nflux_shards_stalled 1\n"),
        "{}",
        metrics.text()
    );
    assert!(
        srv.log().contains("shard 1 has not run a task for"),
        "{}",
        srv.log()
    );

    // The shard runs again: health clears within a few watch periods.
    std::fs::remove_file(&marker).unwrap();
    let resumed = Instant::now();
    loop {
        let r = get_answered(&srv, "/health", Duration::from_secs(10));
        if r.status == 200 {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(5),
            "still reported stalled: {}",
            r.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The watch logs it at its next look (every 250 ms).
    let logged = Instant::now();
    while !srv.log().contains("shard 1 runs again") {
        assert!(
            logged.elapsed() < Duration::from_secs(3),
            "no \"runs again\" line; log:\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = get_answered(&srv, "/metrics", Duration::from_secs(10));
    assert!(
        metrics.text().contains("\nflux_shards_stalled 0\n"),
        "{}",
        metrics.text()
    );
    srv.assert_healthy();
}
