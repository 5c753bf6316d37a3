//! Batches that span shards tell the truth: a 200 means every event is applied, an
//! error means none of it is visible (to reads or subscribers), now or after a
//! restart. Each failure point of the protocol (`src/shard/txn.rs`) is driven by a
//! failpoint: the intent not written, a participant that cannot hold its part (gone,
//! or its disk full), a committed part its shard cannot log, and kill -9 between any
//! two steps.

mod common;

use std::time::Duration;

use common::*;

/// 40 ids under `prefix` owned by both shards, and a batch writing `i` into each.
fn batch(prefix: &str) -> (Vec<String>, String) {
    let ids: Vec<String> = (0..40).map(|i| format!("{prefix}{i:02}")).collect();
    assert_spans_two_shards(ids.iter().map(String::as_str));
    let events: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| event(id, &format!(r#"{{"i":{i}}}"#)))
        .collect();
    (ids, batch_body(&events))
}

fn post_batch(srv: &Server, body: &str) -> Response {
    srv.post("/api/events/batch", body)
}

/// Asserts that the batch under `prefix` is entirely present, with its values.
fn assert_present(srv: &Server, prefix: &str, ids: &[String]) {
    assert_eq!(srv.list_ids(&format!("prefix={prefix}")), ids);
    for (i, id) in ids.iter().enumerate() {
        let e = srv.entity(id).expect("present").json();
        assert_eq!(e["properties"]["i"], i);
    }
}

fn assert_absent(srv: &Server, prefix: &str, ids: &[String]) {
    let mut listed = srv.list_ids(&format!("prefix={prefix}"));
    listed.retain(|id| ids.contains(id));
    assert!(
        listed.is_empty(),
        "nothing of the batch may be visible: {listed:?}"
    );
    for id in ids {
        assert!(srv.entity(id).is_none(), "{id} is visible");
    }
}

/// A subscriber to `prefix*` sees nothing of a refused batch: after it, a marker
/// event under the same prefix is the first update it gets.
fn assert_subscriber_saw_nothing(srv: &Server, ws: &mut WsClient, prefix: &str) {
    let marker = format!("{prefix}marker");
    srv.post_ok(&event(&marker, r#"{"m":1}"#));
    let got = ws.updates(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "the marker's update arrives");
    assert_eq!(
        got[0].0, marker,
        "an update of the refused batch arrived first"
    );
}

/// A write to each shard succeeds (nothing was left held or failed).
fn assert_writes_work(srv: &Server, tag: &str) {
    let ids: Vec<String> = (0..8).map(|i| format!("after-{tag}-{i}")).collect();
    assert_spans_two_shards(ids.iter().map(String::as_str));
    let events: Vec<String> = ids.iter().map(|id| event(id, r#"{"ok":1}"#)).collect();
    srv.batch_ok(&events);
}

#[test]
fn a_batch_whose_intent_cannot_be_written_leaves_no_trace() {
    let mut srv = Server::start_with(&[("FLUX_FAILPOINT", "txn-intent-fails")]);
    let prefix = format!("nointent-{}-", unique());
    let (ids, body) = batch(&prefix);
    let mut ws = WsClient::connect(srv.port());
    ws.subscribe(&format!("{prefix}*"));
    let r = post_batch(&srv, &body);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("not applied"), "{}", r.text());
    assert_absent(&srv, &prefix, &ids);
    assert_subscriber_saw_nothing(&srv, &mut ws, &prefix);
    // Single-shard writes are untouched by the failpoint.
    srv.post_ok(&event(&format!("{prefix}single"), r#"{"s":1}"#));
    srv.stop();
    srv.restart_with(&[]);
    assert_absent(&srv, &prefix, &ids);
    assert_writes_work(&srv, "nointent");
}

#[test]
fn a_batch_with_an_unreachable_shard_is_refused_whole_and_its_holds_released() {
    // No participant answers a hold (as if its shard were gone).
    let mut srv = Server::start_with(&[("FLUX_FAILPOINT", "txn-unavailable")]);
    let prefix = format!("unavail-{}-", unique());
    let (ids, body) = batch(&prefix);
    let mut ws = WsClient::connect(srv.port());
    ws.subscribe(&format!("{prefix}*"));
    for _ in 0..4 {
        let r = post_batch(&srv, &body);
        assert_eq!(r.status, 503, "{}", r.text());
    }
    assert_absent(&srv, &prefix, &ids);
    assert_subscriber_saw_nothing(&srv, &mut ws, &prefix);
    srv.stop();
    srv.restart_with(&[]);
    assert_absent(&srv, &prefix, &ids);
    assert_writes_work(&srv, "unavail");
}

#[test]
fn a_batch_meeting_a_full_disk_on_one_shard_is_refused_whole_then_succeeds() {
    let env = [
        ("FLUX_BODY_LIMIT_BATCH_BYTES", "262144"),
        ("FLUX_BODY_LIMIT_SINGLE_BYTES", "65536"),
        ("FLUX_SEGMENT_BYTES", "1048576"),
    ];
    let mut srv =
        Server::start_with(&[env[0], env[1], env[2], ("FLUX_FAILPOINT", "enospc-marker")]);
    let tag = unique();
    let on = |shard: u64, prefix: &str, n: usize| -> Vec<String> {
        (0..)
            .map(|i| format!("{prefix}{i:05}"))
            .filter(|id| owner_shard(id, 2) == shard)
            .take(n)
            .collect()
    };
    let pad = "x".repeat(2000);
    let body_of = |ids: &[String]| -> String {
        let events: Vec<String> = ids
            .iter()
            .map(|id| event(id, &format!(r#"{{"pad":"{pad}"}}"#)))
            .collect();
        batch_body(&events)
    };
    // ~80 KiB batches for shard 1 alone.
    let fill_ids = on(1, &format!("fill-{tag}-"), 40);
    assert_eq!(post_batch(&srv, &body_of(&fill_ids)).status, 200);
    // From now on no segment can be created on shard 1: fill what it has.
    let marker = srv.data_dir().join("shard-1").join(".fail-enospc");
    std::fs::write(&marker, b"").expect("marker");
    let mut full = false;
    for _ in 0..64 {
        let r = post_batch(&srv, &body_of(&fill_ids));
        if r.status == 503 {
            assert!(r.text().contains("No space"), "{}", r.text());
            full = true;
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert!(full, "shard 1 never ran out of log space");
    // A cross-shard batch with more for shard 1 than the write that failed.
    let prefix = format!("fullx-{tag}-");
    let mut ids = on(0, &format!("{prefix}a-"), 4);
    ids.extend(on(1, &format!("{prefix}b-"), 60));
    let body = body_of(&ids);
    let mut ws = WsClient::connect(srv.port());
    ws.subscribe(&format!("{prefix}*"));
    for _ in 0..4 {
        // Whichever shard coordinates, shard 1 can neither hold its part nor log
        // the intent.
        let r = post_batch(&srv, &body);
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.text().contains("No space"), "{}", r.text());
    }
    assert_absent(&srv, &prefix, &ids);
    let marker_id = on(0, &format!("{prefix}m-"), 1).remove(0);
    srv.post_ok(&event(&marker_id, r#"{"m":1}"#));
    let got = ws.updates(1, Duration::from_secs(5));
    assert_eq!(
        got[0].0, marker_id,
        "an update of the refused batch arrived"
    );
    // Space returns: the same batch succeeds, whole, and survives a restart.
    std::fs::remove_file(&marker).expect("remove marker");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = post_batch(&srv, &body);
        if r.status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", r.text());
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut expected = ids.clone();
    expected.push(marker_id);
    expected.sort();
    assert_eq!(srv.list_ids(&format!("prefix={prefix}")), expected);
    srv.stop();
    srv.restart_with(&env);
    assert_eq!(srv.list_ids(&format!("prefix={prefix}")), expected);
}

/// kill -9 (an abort) at `step`; after the restart the batch is entirely `present`
/// or entirely absent, and stays so after a second restart.
fn crash_at(step: &str, present: bool) {
    let fp = format!("txn-abort:{step}");
    let mut srv = Server::start_with(&[("FLUX_FAILPOINT", &fp)]);
    let prefix = format!("crash-{step}-{}-", unique());
    let (ids, body) = batch(&prefix);
    let mut conn = srv.connect();
    conn.send(
        format!(
            "POST /api/events/batch HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert!(
        srv.wait_exit(Duration::from_secs(10)).is_some(),
        "the failpoint must abort the server"
    );
    assert!(
        srv.log().contains(&format!("failpoint {fp}")),
        "{}",
        srv.log()
    );
    for round in 0..2 {
        srv.restart_with(&[]);
        if present {
            assert_present(&srv, &prefix, &ids);
        } else {
            assert_absent(&srv, &prefix, &ids);
        }
        assert_writes_work(&srv, &format!("{step}{round}"));
        srv.kill9();
    }
}

#[test]
fn a_crash_after_the_holds_leaves_nothing() {
    crash_at("after-holds", false);
}

#[test]
fn a_crash_after_the_intent_completes_the_batch_at_recovery() {
    crash_at("after-intent", true);
}

#[test]
fn a_crash_after_the_parts_keeps_the_batch() {
    crash_at("after-parts", true);
}

#[test]
fn a_crash_after_done_keeps_the_batch() {
    crash_at("after-done", true);
}

#[test]
fn a_committed_part_its_shard_cannot_log_is_completed_and_fails_that_shard() {
    let mut srv = Server::start_with(&[("FLUX_FAILPOINT", "txn-part-append-fails")]);
    let prefix = format!("unlogged-{}-", unique());
    let (ids, body) = batch(&prefix);
    let mut ws = WsClient::connect(srv.port());
    ws.subscribe(&format!("{prefix}*"));
    let r = post_batch(&srv, &body);
    assert_eq!(r.status, 200, "committed: the answer is 200; {}", r.text());
    assert_present(&srv, &prefix, &ids);
    assert_eq!(ws.updates(40, Duration::from_secs(5)).len(), 40);
    let health = srv.get("/health");
    assert_eq!(health.status, 503);
    let h = health.json();
    assert_eq!(h["status"], "failed");
    let failed = h["failed_shards"][0]["shard"]
        .as_u64()
        .expect("a failed shard");
    assert!(h["failed_shards"][0]["error"]
        .as_str()
        .unwrap()
        .contains("txn-part-append-fails"));
    assert!(
        srv.log()
            .contains("recovered from its coordinator's intent"),
        "{}",
        srv.log()
    );
    // That shard refuses writes; the other takes them.
    let (on_failed, on_other): (Vec<String>, Vec<String>) = (0..20)
        .map(|i| format!("w-{prefix}{i}"))
        .partition(|id| owner_shard(id, 2) == failed);
    let r = srv.post("/api/events", &event(&on_failed[0], r#"{"x":1}"#));
    assert_eq!(r.status, 503, "{}", r.text());
    srv.post_ok(&event(&on_other[0], r#"{"x":1}"#));
    assert_eq!(metric(&srv, "flux_shards_failed"), 1.0);
    // The restart recovers the part from the intent, and the shard serves again.
    srv.stop();
    srv.restart_with(&[]);
    assert_present(&srv, &prefix, &ids);
    assert_eq!(srv.get("/health").status, 200);
    assert!(
        srv.log().contains("re-applied from their intent"),
        "{}",
        srv.log()
    );
    srv.post_ok(&event(&on_failed[0], r#"{"x":2}"#));
}

#[test]
fn acknowledged_cross_shard_batches_survive_kill_9() {
    let mut srv = Server::start();
    let tag = unique();
    let mut expected = Vec::new();
    for b in 0..20 {
        let events: Vec<String> = (0..25)
            .map(|i| {
                let id = format!("ack-{tag}-{b:02}-{i:02}");
                expected.push(id.clone());
                event(&id, &format!(r#"{{"b":{b},"i":{i}}}"#))
            })
            .collect();
        srv.batch_ok(&events);
    }
    srv.kill9();
    srv.restart();
    expected.sort();
    assert_eq!(srv.list_ids(&format!("prefix=ack-{tag}-")), expected);
}
