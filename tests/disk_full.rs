//! A full disk: writes are refused with 503 and a clear error, reads keep working, the
//! log stays intact, and writes resume once space returns. The full disk is simulated
//! by the `enospc-marker` failpoint (segment creation fails with ENOSPC while a marker
//! file exists), so the test runs anywhere without privileges.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// A batch of `n` events with ~2 KiB of properties each.
fn big_batch(tag: &str, start: usize, n: usize) -> String {
    let pad = "x".repeat(2000);
    let events: Vec<String> = (start..start + n)
        .map(|i| {
            event(
                &format!("{tag}-{i:05}"),
                &format!(r#"{{"i":{i},"pad":"{pad}"}}"#),
            )
        })
        .collect();
    batch_body(&events)
}

#[test]
fn full_disk_refuses_writes_keeps_reads_and_recovers() {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().to_str().unwrap().to_string();
    let env = [
        ("FLUX_DATA_DIR", dir.as_str()),
        ("FLUX_SHARDS", "1"),
        ("FLUX_FAILPOINT", "enospc-marker"),
        ("FLUX_BODY_LIMIT_BATCH_BYTES", "1048576"),
        ("FLUX_SEGMENT_BYTES", "3145728"),
    ];
    let mut srv = Server::start_with(&env);
    let tag = format!("df{}", unique());
    // The first write creates the first segment; from then on no new one can be made.
    srv.post_ok(&event(&format!("{tag}-first"), "{}"));
    std::fs::write(Path::new(&dir).join(".fail-enospc"), b"").unwrap();
    let mut acked = 0;
    let mut refused = None;
    for round in 0..20 {
        let r = srv.post("/api/events/batch", &big_batch(&tag, round * 200, 200));
        match r.status {
            200 => acked = (round + 1) * 200,
            503 => {
                refused = Some(r);
                break;
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    let refused = refused.expect("a 3 MiB segment must fill up within 20 batches of 400 KiB");
    assert!(acked > 0, "the first segment takes writes");
    let msg = refused.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("storage unavailable") && msg.contains("No space"),
        "{msg}"
    );
    assert!(refused.header("retry-after").is_some());
    // A single event is refused too (it would need a new segment as well)...
    let single = srv.post(
        "/api/events",
        &event(
            &format!("{tag}-single"),
            &format!(r#"{{"pad":"{}"}}"#, "y".repeat(600_000)),
        ),
    );
    assert_eq!(single.status, 503, "{}", single.text());
    // ...while reads go on.
    assert!(srv.entity(&format!("{tag}-00000")).is_some());
    assert_eq!(srv.list_ids(&format!("prefix={tag}-0")).len(), acked);
    assert_eq!(srv.get("/health").status, 200);

    // Space returns: writes resume without a restart.
    std::fs::remove_file(Path::new(&dir).join(".fail-enospc")).unwrap();
    let r = srv.post("/api/events/batch", &big_batch(&tag, 10_000, 200));
    assert_eq!(r.status, 200, "{}", r.text());

    // The log is intact: everything acknowledged is there after a crash.
    srv.signal("KILL");
    srv.wait_exit(Duration::from_secs(5)).expect("killed");
    let srv = Server::start_with(&env);
    let ids = srv.list_ids(&format!("prefix={tag}-"));
    assert_eq!(ids.len(), acked + 200 + 1, "acknowledged writes survive");
    assert!(!srv.log().contains("corrupt"), "{}", srv.log());
}

/// `X-Flux-Sync: always` makes one request durable under `FLUX_SYNC=none`: the log's
/// sync counter moves for it, and not for a request without the header.
#[test]
fn sync_header_asks_for_a_durable_acknowledgement() {
    let srv = Server::start_with(&[("FLUX_SYNC", "none"), ("FLUX_SHARDS", "1")]);
    let syncs = |srv: &Server| -> u64 {
        let text = srv.get("/metrics").text().to_string();
        let line = text
            .lines()
            .find(|l| l.starts_with("flux_log_syncs_total "))
            .expect("metric present");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let tag = unique();
    srv.post_ok(&event(&format!("sh-{tag}-a"), r#"{"a":1}"#));
    let before = syncs(&srv);
    srv.post_ok(&event(&format!("sh-{tag}-b"), r#"{"a":2}"#));
    assert_eq!(
        syncs(&srv),
        before,
        "FLUX_SYNC=none: no sync without the header"
    );
    let r = srv.request(
        "POST",
        "/api/events",
        &[
            ("Content-Type", "application/json"),
            ("X-Flux-Sync", "always"),
        ],
        Some(event(&format!("sh-{tag}-c"), r#"{"a":3}"#).as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        syncs(&srv) > before,
        "the header must cause a sync before the answer"
    );
}
