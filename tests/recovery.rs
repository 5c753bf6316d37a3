//! The durable log, black-box: kill -9 under load and restart on the same data
//! directory, byte-identical state after restarts, and the recovery cases of
//! `src/log/scan.rs` provoked by editing segment files between runs (torn tail,
//! flipped byte, truncated file; see `common/segfile.rs`), the shard-count guard and
//! `/health` while recovering.

mod common;

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::acked::{CycleStats, Writer};
use common::segfile::*;
use common::*;
use serde_json::Value;

/// Small segments for the fault tests: files are quick to read and patch, and a few
/// MiB of writes roll over. Each body limit must fit twice in a segment.
const SMALL_SEGMENTS: [(&str, &str); 3] = [
    ("FLUX_SEGMENT_BYTES", "1048576"),
    ("FLUX_BODY_LIMIT_BATCH_BYTES", "262144"),
    ("FLUX_BODY_LIMIT_SINGLE_BYTES", "262144"),
];
const TOLERATE: (&str, &str) = ("FLUX_RECOVERY", "tolerate");

// KILL_NOT_STOP: before damaging the log, the fault tests kill the server rather than
// stop it: a clean shutdown may write a snapshot, after which recovery no longer needs
// (or, for whole segments below it, even reads) the damaged log.

/// How long a refused start may take to exit.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------
// Ids, writes and reads
// ---------------------------------------------------------------------------------

/// `n` ids `prefix-i` owned by `shard` of 2.
fn ids_on_shard(prefix: &str, shard: u64, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .filter(|id| owner_shard(id, 2) == shard)
        .take(n)
        .collect()
}

/// Properties of an entity (None for 404).
fn props(srv: &Server, id: &str) -> Option<Value> {
    srv.entity(id).map(|r| r.json()["properties"].clone())
}

/// Asserts that the current process exits non-zero within [`REFUSAL_TIMEOUT`] and
/// returns its log.
fn assert_refused(srv: &mut Server) -> String {
    let status = srv
        .wait_exit(REFUSAL_TIMEOUT)
        .unwrap_or_else(|| panic!("start-up was not refused; log:\n{}", srv.log()));
    let log = srv.log();
    assert!(!status.success(), "exit {status:?}; log:\n{log}");
    log
}

/// Asserts that `log` names `path`'s file and the LSN `lsn`.
fn assert_names_segment_and_lsn(log: &str, path: &Path, lsn: u64) {
    assert!(
        log.contains(&file_name(path)),
        "the message does not name segment {}:\n{log}",
        file_name(path)
    );
    assert!(
        log.to_ascii_lowercase().contains(&format!("lsn {lsn}")),
        "the message does not name LSN {lsn}:\n{log}"
    );
}

// ---------------------------------------------------------------------------------
// 1. kill -9 during sustained ingest
// ---------------------------------------------------------------------------------

/// Writer threads per cycle: even ones send single events, odd ones batches.
const WRITERS: usize = 4;
/// Load before the kill.
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(1000);
const KILL_CYCLES: usize = 3;

/// 3 cycles of: 4 writers under load, kill -9 after ~1 s, restart on the same data,
/// every acknowledged write still there.
fn kill9_under_load(prefix: &str, env: &[(&str, &str)]) {
    let mut srv = Server::start_with(env);
    let mut writers: Vec<Writer> = (0..WRITERS).map(|i| Writer::new(prefix, i)).collect();
    assert_spans_two_shards(
        writers
            .iter()
            .flat_map(|w| w.ids.iter().map(String::as_str)),
    );
    for cycle in 0..KILL_CYCLES {
        let killing = AtomicBool::new(false);
        let stop = AtomicBool::new(false);
        let port = srv.port();
        let stats: Vec<CycleStats> = thread::scope(|s| {
            let handles: Vec<_> = writers
                .iter_mut()
                .map(|w| {
                    let (killing, stop) = (&killing, &stop);
                    s.spawn(move || w.run(port, killing, stop))
                })
                .collect();
            thread::sleep(LOAD_BEFORE_KILL);
            killing.store(true, Ordering::SeqCst);
            srv.kill9();
            stop.store(true, Ordering::SeqCst);
            handles
                .into_iter()
                .map(|h| h.join().expect("writer thread"))
                .collect()
        });
        for (w, st) in writers.iter().zip(&stats) {
            assert!(
                st.unexpected.is_none(),
                "cycle {cycle}, writer {}: {:?}",
                w.index,
                st.unexpected
            );
            assert!(
                st.acked_requests >= 3,
                "cycle {cycle}, writer {} made no progress: {st:?}",
                w.index
            );
        }
        assert!(
            stats.iter().any(|s| s.interrupted),
            "cycle {cycle}: the kill interrupted no request: {stats:?}"
        );
        srv.restart();
        let mut failures = Vec::new();
        let unacked_present: usize = writers
            .iter_mut()
            .map(|w| w.verify(&srv, &mut failures))
            .sum();
        assert!(
            failures.is_empty(),
            "cycle {cycle} ({env:?}): {} entities lost acknowledged writes, e.g.:\n{}\nlog:\n{}",
            failures.len(),
            failures[..failures.len().min(10)].join("\n"),
            srv.log()
        );
        eprintln!(
            "cycle {cycle}: acked requests per writer {:?}; {unacked_present} entities hold \
             the write in flight at the kill",
            stats.iter().map(|s| s.acked_requests).collect::<Vec<_>>()
        );
    }
    srv.assert_healthy();
}

#[test]
fn kill9_under_load_keeps_every_acknowledged_write_default_sync() {
    kill9_under_load("k9d", &[]);
}

#[test]
fn kill9_under_load_keeps_every_acknowledged_write_sync_always() {
    kill9_under_load("k9a", &[("FLUX_SYNC", "always")]);
}

// ---------------------------------------------------------------------------------
// 2. byte-identical state after restarts
// ---------------------------------------------------------------------------------

#[test]
fn entities_are_byte_identical_after_kill9_and_after_sigterm() {
    let mut srv = Server::start();
    let mut ids: Vec<String> = Vec::new();
    let odd = [
        r#"{"t":22.50,"e":1e3,"E":-1.25E-7,"z":-0,"big":123456789012345678901234567890}"#,
        r#"{"s":"\u00e9\n\"q\"\/","u":"é☕","nul":null,"f":false,"eo":{},"ea":[]}"#,
        r#"{"n":{"z":1,"a":[1, 2,{"y":null,"b":true}],"m":{ "k" : "v" }}}"#,
        r#"{}"#,
    ];
    for (i, p) in odd.iter().enumerate() {
        for id in [format!("bi-odd-{i}"), format!("bi/ü {i}?&")] {
            srv.post_ok(&event(&id, p));
            ids.push(id);
        }
    }
    // Merges: overwrite in place, splice new keys, store null.
    for i in 0..40 {
        let id = format!("bi-m-{i}");
        srv.post_ok(&event(&id, r#"{"a":1,"b":"two","c":[3]}"#));
        srv.post_ok(&event(
            &id,
            &format!(r#"{{"b":{i}.50,"d":{{"x":"{i}"}},"a":null}}"#),
        ));
        ids.push(id);
    }
    // Batches touching both shards, several events per entity in one batch.
    for b in 0..5 {
        let events: Vec<String> = (0..60)
            .map(|i| {
                event(
                    &format!("bi-b-{}", i % 20),
                    &format!(
                        r#"{{"batch":{b},"i":{i},"v{}":"{}"}}"#,
                        i % 3,
                        "y".repeat(i)
                    ),
                )
            })
            .collect();
        srv.batch_ok(&events);
    }
    ids.extend((0..20).map(|i| format!("bi-b-{i}")));
    assert_spans_two_shards(ids.iter().map(String::as_str));

    let before = raw_entities(&srv, &ids);
    assert!(before.iter().all(Option::is_some));
    let list_before = srv.get("/api/state/entities").body;
    for how in ["kill -9", "SIGTERM"] {
        if how == "kill -9" {
            srv.kill9();
        } else {
            srv.stop();
        }
        srv.restart();
        let after = raw_entities(&srv, &ids);
        for ((id, b), a) in ids.iter().zip(&before).zip(&after) {
            assert_eq!(
                a.as_deref().map(String::from_utf8_lossy),
                b.as_deref().map(String::from_utf8_lossy),
                "entity {id:?} after {how} and restart"
            );
        }
        let list_after = srv.get("/api/state/entities").body;
        assert!(
            list_after == list_before,
            "listing after {how}:\n{}\nbefore:\n{}",
            String::from_utf8_lossy(&list_after),
            String::from_utf8_lossy(&list_before)
        );
    }
}

// ---------------------------------------------------------------------------------
// 3. torn tail
// ---------------------------------------------------------------------------------

#[test]
fn torn_tail_is_cut_reported_and_writes_continue() {
    let mut srv = Server::start_with(&SMALL_SEGMENTS);
    let ids0 = ids_on_shard("torn", 0, 10);
    let ids1 = ids_on_shard("torn", 1, 10);
    for (i, id) in ids0.iter().chain(&ids1).enumerate() {
        srv.post_ok(&event(id, &format!(r#"{{"v":{i}}}"#)));
    }
    srv.stop();

    let seg = segments(&srv.data_dir(), 0)
        .pop()
        .expect("a segment of shard 0");
    let bytes = fs::read(&seg).unwrap();
    let end = frames(&bytes).last().map(|f| f.offset + f.extent).unwrap();
    assert_eq!(end, write_offset(&bytes));
    // A frame that claims 40 bytes of payload, of which only its first 16 header
    // bytes reached the disk: the claimed extent is all zeros.
    let mut torn = Vec::new();
    torn.extend_from_slice(&((FRAME_HEADER_BYTES + 40) as u32).to_le_bytes());
    torn.extend_from_slice(&[
        0x5a, 0xc3, 0x19, 0xe7, 0x01, 0x77, 0x00, 0x42, 0x9d, 0x2e, 0x11, 0x08,
    ]);
    patch(&seg, end as u64, &torn);
    let torn_lsn = base_lsn(&seg) + end as u64;

    srv.restart_with(&SMALL_SEGMENTS);
    // Checked last, so that the data checks below run whatever it says.
    let cut_log = srv.log();
    for (i, id) in ids0.iter().chain(&ids1).enumerate() {
        assert_eq!(props(&srv, id), Some(serde_json::json!({ "v": i })), "{id}");
    }
    // The torn bytes were zeroed and new frames go where the torn one started.
    srv.post_ok(&event(&ids0[0], r#"{"v":"new"}"#));
    srv.post_ok(&event("torn-new", r#"{"v":"fresh"}"#));
    srv.stop();
    let bytes = fs::read(&seg).unwrap();
    let after = frames(&bytes);
    assert!(
        after.iter().any(|f| f.offset == end),
        "no frame starts at the cut position {end}"
    );

    srv.restart_with(&SMALL_SEGMENTS);
    let log = srv.log();
    assert!(!log.contains("torn"), "a torn tail again:\n{log}");
    assert_eq!(props(&srv, &ids0[0]), Some(serde_json::json!({"v": "new"})));
    assert_eq!(
        props(&srv, "torn-new"),
        Some(serde_json::json!({"v": "fresh"}))
    );
    for (i, id) in ids0.iter().chain(&ids1).enumerate().skip(1) {
        assert_eq!(props(&srv, id), Some(serde_json::json!({ "v": i })), "{id}");
    }

    // The cut was reported on stderr: shard, segment and LSN.
    assert!(
        cut_log.contains("torn") && cut_log.contains("shard 0"),
        "no torn-tail report for shard 0:\n{cut_log}"
    );
    assert_names_segment_and_lsn(&cut_log, &seg, torn_lsn);
}

// ---------------------------------------------------------------------------------
// 4. a flipped byte before the tail
// ---------------------------------------------------------------------------------

/// Flips one payload byte of frame `index` of `seg`; returns the frame's LSN.
fn flip_frame(seg: &Path, index: usize) -> u64 {
    let bytes = fs::read(seg).unwrap();
    let f = frames(&bytes)[index];
    let at = f.offset + FRAME_HEADER_BYTES + 3;
    patch(seg, at as u64, &[bytes[at] ^ 0x20]);
    base_lsn(seg) + f.offset as u64
}

#[test]
fn flipped_byte_mid_segment_is_refused_strict_and_skipped_tolerate() {
    let mut srv = Server::start_with(&SMALL_SEGMENTS);
    let ids0 = ids_on_shard("flip", 0, 20);
    let ids1 = ids_on_shard("flip", 1, 5);
    // One request, one entity, one frame each: frame i of shard 0 is ids0[i].
    for (i, id) in ids0.iter().enumerate() {
        srv.post_ok(&event(id, &format!(r#"{{"v":{i}}}"#)));
    }
    for id in &ids1 {
        srv.post_ok(&event(id, r#"{"v":"one"}"#));
    }
    srv.kill9(); // see KILL_NOT_STOP
    let segs = segments(&srv.data_dir(), 0);
    assert_eq!(segs.len(), 1, "{segs:?}");
    let seg = &segs[0];
    assert_eq!(frames(&fs::read(seg).unwrap()).len(), ids0.len());
    let bad_lsn = flip_frame(seg, 10);

    srv.respawn_with(&SMALL_SEGMENTS);
    let log = assert_refused(&mut srv);
    assert_names_segment_and_lsn(&log, seg, bad_lsn);

    let tolerant = [
        SMALL_SEGMENTS[0],
        SMALL_SEGMENTS[1],
        SMALL_SEGMENTS[2],
        TOLERATE,
    ];
    srv.restart_with(&tolerant);
    let log = srv.log();
    assert_names_segment_and_lsn(&log, seg, bad_lsn);
    for (i, id) in ids0.iter().enumerate() {
        let want = (i < 10).then(|| serde_json::json!({ "v": i }));
        assert_eq!(
            props(&srv, id),
            want,
            "{id} (frame {i}; frame 10 is damaged)"
        );
    }
    for id in &ids1 {
        assert_eq!(props(&srv, id), Some(serde_json::json!({"v": "one"})));
    }
    // Writes go on (into a new segment: the damaged one is never appended to) and
    // survive a restart.
    srv.post_ok(&event(&ids0[15], r#"{"v":"again"}"#));
    srv.post_ok(&event(&ids0[2], r#"{"w":2}"#));
    srv.kill9();
    srv.restart_with(&tolerant);
    assert_eq!(
        props(&srv, &ids0[15]),
        Some(serde_json::json!({"v": "again"}))
    );
    assert_eq!(
        props(&srv, &ids0[2]),
        Some(serde_json::json!({"v": 2, "w": 2}))
    );
    assert_eq!(props(&srv, &ids0[16]), None);
    srv.kill9(); // see KILL_NOT_STOP
    assert!(segments(&srv.data_dir(), 0).len() >= 2);

    // The damage is still there: strict still refuses.
    srv.respawn_with(&SMALL_SEGMENTS);
    let log = assert_refused(&mut srv);
    assert_names_segment_and_lsn(&log, seg, bad_lsn);
}

#[test]
fn flipped_byte_in_an_earlier_segment_is_refused_strict_and_skipped_tolerate() {
    let mut srv = Server::start_with(&SMALL_SEGMENTS);
    // ~200 KiB batches to shard 0 only, so that its log rolls over; each batch
    // writes a fresh range of entities.
    let pad = "p".repeat(1000);
    let mut batches: Vec<Vec<String>> = Vec::new();
    for b in 0..8 {
        let ids = ids_on_shard(&format!("early-{b}"), 0, 180);
        let events: Vec<String> = ids
            .iter()
            .map(|id| event(id, &format!(r#"{{"b":{b},"pad":"{pad}"}}"#)))
            .collect();
        srv.batch_ok(&events);
        batches.push(ids);
    }
    let ids1 = ids_on_shard("early-s1", 1, 5);
    for id in &ids1 {
        srv.post_ok(&event(id, r#"{"v":1}"#));
    }
    srv.kill9(); // see KILL_NOT_STOP
    let segs = segments(&srv.data_dir(), 0);
    assert!(segs.len() >= 2, "shard 0 did not roll over: {segs:?}");
    // One batch, one frame. Damage the second frame of the first segment.
    let first = fs::read(&segs[0]).unwrap();
    let in_first = frames(&first).len();
    assert!(in_first >= 3, "{in_first} frames in the first segment");
    let bad_lsn = flip_frame(&segs[0], 1);

    srv.respawn_with(&SMALL_SEGMENTS);
    let log = assert_refused(&mut srv);
    assert_names_segment_and_lsn(&log, &segs[0], bad_lsn);

    let tolerant = [
        SMALL_SEGMENTS[0],
        SMALL_SEGMENTS[1],
        SMALL_SEGMENTS[2],
        TOLERATE,
    ];
    srv.restart_with(&tolerant);
    // Frame 0 of the first segment is kept, the rest of that segment is skipped,
    // and every later segment is replayed.
    for (b, ids) in batches.iter().enumerate() {
        let present = b == 0 || b >= in_first;
        for id in [&ids[0], &ids[ids.len() - 1]] {
            let p = props(&srv, id);
            assert_eq!(
                p.is_some(),
                present,
                "batch {b} ({in_first} frames in segment 0): {id}"
            );
            if let Some(p) = p {
                assert_eq!(p["b"], b, "{id}");
            }
        }
    }
    for id in &ids1 {
        assert_eq!(props(&srv, id), Some(serde_json::json!({"v": 1})));
    }
    srv.assert_healthy();
}

// ---------------------------------------------------------------------------------
// 5. truncated segment file
// ---------------------------------------------------------------------------------

/// A server with a few entities on each shard, stopped, whose (only) segment of
/// shard 0 was then cut to half its size.
fn with_truncated_segment(prefix: &str) -> (Server, PathBuf, Vec<String>, Vec<String>) {
    let mut srv = Server::start_with(&SMALL_SEGMENTS);
    let ids0 = ids_on_shard(prefix, 0, 5);
    let ids1 = ids_on_shard(prefix, 1, 5);
    for id in ids0.iter().chain(&ids1) {
        srv.post_ok(&event(id, r#"{"v":1}"#));
    }
    srv.kill9(); // see KILL_NOT_STOP
    let segs = segments(&srv.data_dir(), 0);
    assert_eq!(segs.len(), 1, "{segs:?}");
    let seg = segs[0].clone();
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len / 2).unwrap();
    f.sync_all().unwrap();
    (srv, seg, ids0, ids1)
}

#[test]
fn truncated_segment_is_refused_in_strict_mode() {
    let (mut srv, seg, _, _) = with_truncated_segment("trs");
    srv.respawn_with(&SMALL_SEGMENTS);
    let log = assert_refused(&mut srv);
    assert!(
        log.contains(&file_name(&seg)) && log.contains("length"),
        "the message must name the segment and its wrong length:\n{log}"
    );
}

#[test]
fn truncated_last_segment_tolerated_then_writes_continue() {
    let (mut srv, seg, ids0, ids1) = with_truncated_segment("trt");
    let tolerant = [
        SMALL_SEGMENTS[0],
        SMALL_SEGMENTS[1],
        SMALL_SEGMENTS[2],
        TOLERATE,
    ];
    srv.restart_with(&tolerant);
    assert!(
        srv.log().contains(&file_name(&seg)),
        "the skipped segment is not reported:\n{}",
        srv.log()
    );
    for id in &ids1 {
        assert_eq!(props(&srv, id), Some(serde_json::json!({"v": 1})), "{id}");
    }
    // The shard whose segment was skipped must take writes again.
    let r = srv.post("/api/events", &event(&ids0[0], r#"{"v":2}"#));
    assert_eq!(
        r.status,
        200,
        "a write to shard 0 after tolerating its truncated segment: {}\nlog:\n{}",
        r.text(),
        srv.log()
    );
    srv.kill9();
    srv.restart_with(&tolerant);
    assert_eq!(props(&srv, &ids0[0]), Some(serde_json::json!({"v": 2})));
}

// ---------------------------------------------------------------------------------
// 6. shard count
// ---------------------------------------------------------------------------------

#[test]
fn a_different_shard_count_is_refused_and_the_old_one_works() {
    let mut srv = Server::start();
    let ids = ids_on_shard("cnt", 0, 3)
        .into_iter()
        .chain(ids_on_shard("cnt", 1, 3))
        .collect::<Vec<_>>();
    for id in &ids {
        srv.post_ok(&event(id, r#"{"n":2}"#));
    }
    srv.stop();
    srv.respawn_with(&[("FLUX_SHARDS", "1")]);
    let log = assert_refused(&mut srv);
    assert!(
        log.contains("written with 2 shards") && log.contains("FLUX_SHARDS is 1"),
        "the message must give both shard counts:\n{log}"
    );
    srv.restart_with(&[("FLUX_SHARDS", "2")]);
    for id in &ids {
        assert_eq!(props(&srv, id), Some(serde_json::json!({"n": 2})), "{id}");
    }
    srv.assert_healthy();
}

// ---------------------------------------------------------------------------------
// 7. /health while recovering
// ---------------------------------------------------------------------------------

/// Events written before the restart.
const RECOVERY_EVENTS: usize = 200_000;
/// Distinct entities they update (each one RECOVERY_EVENTS / this times).
const RECOVERY_ENTITIES: usize = 20_000;
const RECOVERY_BATCH_EVENTS: usize = 5_000;
const _: () = assert!(RECOVERY_EVENTS % RECOVERY_BATCH_EVENTS == 0 && 7 < RECOVERY_ENTITIES);

#[test]
fn health_reports_recovery_and_data_is_complete_once_ok() {
    let mut srv = Server::start();
    let started = Instant::now();
    let mut c = srv.connect();
    for b in 0..RECOVERY_EVENTS / RECOVERY_BATCH_EVENTS {
        let events: Vec<String> = (0..RECOVERY_BATCH_EVENTS)
            .map(|i| {
                let n = b * RECOVERY_BATCH_EVENTS + i;
                event(
                    &format!("rec-{}", n % RECOVERY_ENTITIES),
                    &format!(r#"{{"n":{n}}}"#),
                )
            })
            .collect();
        let r = c.exchange(&post_request("/api/events/batch", &batch_body(&events)));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    eprintln!("wrote {RECOVERY_EVENTS} events in {:?}", started.elapsed());
    srv.kill9();
    srv.respawn_with(&[]);
    let probe = "rec-7";
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut recovering_seen = 0;
    // Bound: the deadline.
    loop {
        assert!(
            Instant::now() < deadline,
            "not ready in 30 s; log:\n{}",
            srv.log()
        );
        assert!(srv.try_exit().is_none(), "exited; log:\n{}", srv.log());
        let Ok(mut c) = Conn::try_open(srv.port(), Duration::from_millis(200)) else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        let Ok(h) = c.try_exchange(&get_request("/health")) else {
            continue;
        };
        if h.status == 200 {
            break;
        }
        assert_eq!(h.status, 503, "{}", h.text());
        let v = h.json();
        assert_eq!(v["status"], "recovering", "{v}");
        assert_eq!(v["shards"], 2, "{v}");
        assert!(v["records_replayed"].as_u64().is_some(), "{v}");
        recovering_seen += 1;
        // A read meanwhile is refused, never answered from a half-built state.
        if let Ok(r) = c.try_exchange(&get_request(&entity_path(probe))) {
            // 200 only once recovery has just finished: then with the final value.
            let last = RECOVERY_EVENTS - RECOVERY_ENTITIES + 7;
            assert!(
                r.status == 503 || (r.status == 200 && r.json()["properties"]["n"] == last),
                "GET during recovery: {} {}",
                r.status,
                r.text()
            );
        }
        thread::sleep(Duration::from_millis(5));
    }
    eprintln!("saw {recovering_seen} recovering answers");
    // Every entity holds its last event.
    let listed = srv.list("prefix=rec-");
    assert_eq!(listed.len(), RECOVERY_ENTITIES);
    for e in &listed {
        let id = e["id"].as_str().expect("id");
        let k: usize = id["rec-".len()..].parse().expect("rec-<n>");
        let last = (RECOVERY_EVENTS - RECOVERY_ENTITIES) + k;
        assert_eq!(e["properties"]["n"], last, "{id}");
    }
}
