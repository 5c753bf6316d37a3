//! A failed fdatasync is never a durable acknowledgement, and never forgotten: the
//! shard fails (writes 503 with the cause until a restart, `/health` 503 naming the
//! shard, reads go on, `/metrics` counts it), in every `FLUX_SYNC` mode and with
//! `X-Flux-Sync: always`. The failpoint `sync-fails:0` fails shard 0's next sync once.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// `n` ids owned by shard `shard` (of 2).
fn ids_on(shard: u64, tag: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("sf-{tag}-{i}"))
        .filter(|id| owner_shard(id, 2) == shard)
        .take(n)
        .collect()
}

fn post_durable(srv: &Server, body: &str) -> Response {
    srv.request(
        "POST",
        "/api/events",
        &[
            ("Content-Type", "application/json"),
            ("X-Flux-Sync", "always"),
        ],
        Some(body.as_bytes()),
    )
}

/// Waits (bounded) until `/health` reports shard 0 failed; returns the body.
fn wait_failed(srv: &Server) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = srv.get("/health");
        if r.status == 503 {
            let h = r.json();
            assert_eq!(h["status"], "failed", "{h}");
            assert_eq!(h["failed_shards"][0]["shard"], 0, "{h}");
            let err = h["failed_shards"][0]["error"].as_str().unwrap().to_string();
            assert!(err.contains("fdatasync"), "{err}");
            return h;
        }
        assert_eq!(r.status, 200);
        assert!(Instant::now() < deadline, "shard 0 never reported failed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What every mode shares once shard 0 failed: its writes are refused with the
/// cause, shard 1 takes writes, reads of shard 0 go on, metrics count it; after a
/// restart (recovery from the disk) everything works again.
fn assert_failed_then_recovers(mut srv: Server, tag: &str, written: &str) {
    wait_failed(&srv);
    let zero = ids_on(0, &format!("{tag}x"), 2);
    let one = ids_on(1, &format!("{tag}x"), 1);
    let r = srv.post("/api/events", &event(&zero[0], r#"{"v":2}"#));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("fdatasync"), "{}", r.text());
    // A batch touching shard 0 is refused whole.
    let r = srv.post(
        "/api/events/batch",
        &batch_body(&[event(&zero[1], "{}"), event(&one[0], "{}")]),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        srv.entity(&one[0]).is_none(),
        "nothing of the batch applied"
    );
    srv.post_ok(&event(&one[0], r#"{"v":1}"#));
    assert_eq!(srv.entity(written).expect("reads go on").status, 200);
    assert_eq!(metric(&srv, "flux_log_sync_failures_total"), 1.0);
    assert_eq!(metric(&srv, "flux_shards_failed"), 1.0);
    srv.stop();
    srv.restart_with(&[]);
    assert_eq!(srv.get("/health").status, 200);
    srv.post_ok(&event(&zero[0], r#"{"v":3}"#));
    assert_eq!(metric(&srv, "flux_shards_failed"), 0.0);
}

#[test]
fn always_mode_answers_500_for_the_write_whose_sync_failed() {
    let srv = Server::start_with(&[("FLUX_SYNC", "always"), ("FLUX_FAILPOINT", "sync-fails:0")]);
    let id = ids_on(0, "always", 1).remove(0);
    let r = srv.post("/api/events", &event(&id, r#"{"v":1}"#));
    // Applied, durability unknown: not 503 ("not applied").
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.text().contains("could not be made durable"),
        "{}",
        r.text()
    );
    assert_failed_then_recovers(srv, "always", &id);
}

#[test]
fn interval_mode_fails_the_shard_on_its_background_sync() {
    let srv = Server::start_with(&[
        ("FLUX_SYNC", "interval:20"),
        ("FLUX_FAILPOINT", "sync-fails:0"),
    ]);
    let id = ids_on(0, "interval", 1).remove(0);
    // Acknowledged once in the mapped log, as interval mode promises; the sync
    // that follows fails.
    srv.post_ok(&event(&id, r#"{"v":1}"#));
    assert_failed_then_recovers(srv, "interval", &id);
}

#[test]
fn the_sync_header_in_interval_mode_answers_500_when_its_sync_fails() {
    // A long interval: the header's own sync is the first one.
    let srv = Server::start_with(&[
        ("FLUX_SYNC", "interval:60000"),
        ("FLUX_FAILPOINT", "sync-fails:0"),
    ]);
    let id = ids_on(0, "hdr", 1).remove(0);
    let r = post_durable(&srv, &event(&id, r#"{"v":1}"#));
    // Applied, durability unknown: not 503 ("not applied").
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.text().contains("could not be made durable"),
        "{}",
        r.text()
    );
    assert_failed_then_recovers(srv, "hdr", &id);
}

#[test]
fn none_mode_with_the_sync_header_answers_500_when_its_sync_fails() {
    let srv = Server::start_with(&[("FLUX_SYNC", "none"), ("FLUX_FAILPOINT", "sync-fails:0")]);
    let id = ids_on(0, "none", 1).remove(0);
    // Without the header nothing syncs: the write is acknowledged.
    srv.post_ok(&event(&id, r#"{"v":1}"#));
    assert_eq!(srv.get("/health").status, 200);
    let r = post_durable(&srv, &event(&id, r#"{"v":2}"#));
    // Applied, durability unknown: not 503 ("not applied").
    assert_eq!(r.status, 500, "{}", r.text());
    assert_failed_then_recovers(srv, "none", &id);
}

#[test]
fn none_mode_fails_the_shard_when_a_snapshot_sync_fails() {
    let srv = Server::start_with(&[
        ("FLUX_SYNC", "none"),
        ("FLUX_SNAPSHOT_INTERVAL_S", "1"),
        ("FLUX_FAILPOINT", "sync-fails:0"),
    ]);
    let id = ids_on(0, "snap", 1).remove(0);
    srv.post_ok(&event(&id, r#"{"v":1}"#));
    assert_failed_then_recovers(srv, "snap", &id);
}
