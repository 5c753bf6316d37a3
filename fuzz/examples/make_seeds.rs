//! Writes the seed corpus of every fuzz target into `fuzz/seeds/TARGET/`: real
//! requests, events and batches, WebSocket messages, and log frames, a snapshot and a
//! registry file written by Flux's own encoders. Run it after a format changes:
//!
//!     cd fuzz && cargo run --example make_seeds
//!
//! (a plain build, no sanitizer flags). Seeds are small on purpose: the fuzzer finds
//! its way from them; what it finds stays in fuzz/corpus, which is not checked in.

use std::path::{Path, PathBuf};

use flux::event::EventBatch;
use flux::ingest::decode::Decoder;
use flux::log::segment::{Segment, SegmentHeader, SEGMENT_HEADER_BYTES};
use flux::log::snapshot::{self, SnapshotMeta};
use flux::log::txn::{encode_intent, txn_id};
use flux::event::compact::SectionWriter;
use flux::log::{
    FRAME_DONE, FRAME_EVENTS, FRAME_EVENTS_V1, FRAME_INTENT, FRAME_INTENT_V1, FRAME_PART,
    FRAME_PART_V1,
};
use flux::state::Store;

const EVENT: &str = r#"{"stream":"sensors.zone-1","source":"gw-7","timestamp":1707912000000,"payload":{"entity_id":"temp-01","properties":{"temperature":22.50,"unit":"celsius"}}}"#;
const EVENT_FULL: &str = r#"{"eventId":"0190a5b2-7c3e-7000-8000-000000000001","stream":"s","source":"\u00e9x","timestamp":null,"key":{"k":[1,2]},"schema":"v1","payload":{"entity_id":"ns/a b","properties":{"n":-1.5E-7,"big":18446744073709551616,"s":"a\"b\\c\u00e9\n","o":{"b":1,"a":[1e3,[],{}]},"t":true,"z":null,"n":2}}}"#;
const BATCH: &str = r#"{"events":[{"stream":"s","source":"a","payload":{"entity_id":"e1","properties":{"x":1}}},{"stream":"s","source":"a","timestamp":1707912000001,"payload":{"entity_id":"e2","properties":{"y":"two","z":[3]}}},42]}"#;

fn main() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    http_pipeline(&seeds.join("http_pipeline"));
    http_query(&seeds.join("http_query"));
    ingest_decode(&seeds.join("ingest_decode"));
    ws_message(&seeds.join("ws_message"));
    log_scan(&seeds.join("log_scan"));
    snapshot_load(&seeds.join("snapshot_load"));
    registry_file(&seeds.join("registry_file"));
}

fn put(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("seed dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// `[split seed][stream]`.
fn http_pipeline(dir: &Path) {
    let chunked = {
        let (a, b) = BATCH.split_at(40);
        format!(
            "POST /api/events/batch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n{:x};ext=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nX-Trailer: t\r\n\r\n",
            a.len(),
            b.len()
        )
    };
    let seeds: [(&str, String); 8] = [
        ("get", "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n".into()),
        ("post-event", post("/api/events", EVENT)),
        ("post-batch-chunked", chunked),
        (
            "pipelined",
            format!(
                "GET /api/state/entities/temp-01 HTTP/1.1\r\nHost: x\r\n\r\n{}HEAD /api/state/entities?prefix=t&limit=2 HTTP/1.1\r\nAuthorization: Bearer abc.DEF-1\r\n\r\nDELETE /api/state/entities/a%20b HTTP/1.1\r\nConnection: close\r\n\r\n",
                post("/api/events", EVENT)
            ),
        ),
        (
            "websocket",
            "GET /api/ws?token=t%2B1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".into(),
        ),
        (
            "http10-history",
            "GET /api/events?entity=temp-01&since=2026-02-14T12:00:00Z&limit=5 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET http://h:80/metrics HTTP/1.1\r\n\r\n".into(),
        ),
        (
            "admin",
            "PUT /api/admin/config HTTP/1.1\r\nX-Flux-Sync: always\r\nContent-Length: 25\r\n\r\n{\"rateLimitEnabled\":true}".into(),
        ),
        (
            "smuggling",
            "POST /api/events HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
        ),
    ];
    for (i, (name, stream)) in seeds.iter().enumerate() {
        let mut bytes = vec![i as u8];
        bytes.extend_from_slice(stream.as_bytes());
        put(dir, name, &bytes);
    }
}

fn http_query(dir: &Path) {
    for (name, target) in [
        (
            "list",
            "/api/state/entities?prefix=a%2Fb&namespace=ns&limit=10&after=x+y",
        ),
        (
            "history",
            "/api/events?entity=s%C3%A9&since=2026-02-14T12:00:00.123Z&limit=500",
        ),
        ("entity", "/api/state/entities/a%20b%2F%E2%82%AC"),
        ("namespace", "/api/namespaces/sandbox?&&a=b=c&flag"),
        ("bearer", "Bearer abc.DEF-_~+/=="),
    ] {
        put(dir, name, target.as_bytes());
    }
}

fn ingest_decode(dir: &Path) {
    put(dir, "event", EVENT.as_bytes());
    put(dir, "event-full", EVENT_FULL.as_bytes());
    put(dir, "batch", BATCH.as_bytes());
    put(
        dir,
        "not-an-event",
        b" [1, {\"a\": \"\\ud83d\\ude00\"}, -0.0e+5] ",
    );
}

fn ws_message(dir: &Path) {
    for (name, msg) in [
        (
            "subscribe",
            r#"{"type":"subscribe","entity_id":"sensor-01"}"#,
        ),
        ("all", r#"{"type":"subscribe","entity_id":"*"}"#),
        (
            "prefix",
            r#" { "entity_id" : "ns/host-*", "type" : "unsubscribe", "x": [1] } "#,
        ),
        (
            "escaped",
            r#"{"type":"subscribe","entity_id":"ns\/a\u00e9"}"#,
        ),
    ] {
        put(dir, name, msg.as_bytes());
    }
}

/// Records of `events` (JSON events) as the routing shard encodes them.
fn records(events: &[&str]) -> Vec<u8> {
    let mut decoder = Decoder::new();
    let mut batch = EventBatch::default();
    for (i, json) in events.iter().enumerate() {
        decoder
            .decode_single(json.as_bytes(), |ev| {
                batch.push_event(
                    ev,
                    format!("id-{i}").as_bytes(),
                    1_707_912_000_000 + i as u64,
                )
            })
            .expect("seed event decodes");
    }
    batch.push_tombstone(b"gone", b"id-t", 1_707_912_000_009);
    batch.stamp_ingest(1_707_912_000_010);
    batch.buf
}

/// `records` (fixed layout) as a section at `lsn`, as the log writes them (links: the
/// record 100 bytes back, where there is one).
fn section(records: &[u8], lsn: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = SectionWriter::new(&mut out, lsn, SectionWriter::base_ms_of(records));
    for r in flux::event::Records::new(records) {
        let prev = w.next_lsn().saturating_sub(100);
        w.push(&r, prev);
    }
    w.finish();
    out
}

/// A 4 KiB segment of shard 1 of 2 with `frames` appended by the real encoder; returns
/// the bytes after its header, trailing zeros cut.
fn segment_body(base_lsn: u64, frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let dir = tempdir("seg");
    let header = SegmentHeader {
        shard_id: 1,
        shard_count: 2,
        base_lsn,
        size_bytes: 4096,
    };
    let mut seg = Segment::create(&dir, header).expect("create segment");
    for (kind, payload) in frames {
        seg.append(*kind, payload.len(), |dst| dst.copy_from_slice(payload))
            .expect("frame fits");
    }
    let mut body = seg.bytes()[SEGMENT_HEADER_BYTES..].to_vec();
    drop(seg);
    std::fs::remove_dir_all(&dir).expect("clean up");
    while body.last() == Some(&0) {
        body.pop();
    }
    body.resize(body.len().next_multiple_of(8), 0);
    body
}

/// `[flags][param][body]`, see fuzz_targets/log_scan.rs.
fn log_scan(dir: &Path) {
    let events = records(&[EVENT, EVENT_FULL]);
    let t = txn_id(1, 7);
    let mut intent = Vec::new();
    encode_intent(t, &[(1, &events), (0, &records(&[EVENT]))], &mut intent);
    let mut part = t.to_le_bytes().to_vec();
    part.extend_from_slice(&records(&[EVENT_FULL]));
    // This build's frames hold sections; the `_V1` kinds (old logs) fixed-layout records.
    let mut c_intent = Vec::new();
    encode_intent(
        t,
        &[(1, &section(&events, 64)), (0, &section(&records(&[EVENT]), 0))],
        &mut c_intent,
    );
    let mut c_part = t.to_le_bytes().to_vec();
    c_part.extend_from_slice(&section(&records(&[EVENT_FULL]), 0));
    let frames = vec![
        (FRAME_EVENTS, section(&events, 64)),
        (FRAME_INTENT, c_intent),
        (FRAME_PART, c_part),
        (FRAME_DONE, t.to_le_bytes().to_vec()),
        (FRAME_EVENTS_V1, events.clone()),
        (FRAME_INTENT_V1, intent),
        (FRAME_PART_V1, part),
    ];
    let body = segment_body(0, &frames);
    let with = |flags: u8, param: u8, body: &[u8]| [&[flags, param][..], body].concat();
    put(dir, "frames", &with(0, 0, &body));
    // A torn tail: the last frame cut short.
    put(dir, "torn-tail", &with(0, 0, &body[..body.len() - 12]));
    // A flipped byte in the first frame, with the frames after it intact.
    let mut flipped = body.clone();
    flipped[40] ^= 0x20;
    put(dir, "corrupt", &with(0, 0, &flipped));
    // Two segments, the second continuing at the end of the first (4096); from a
    // replay point inside the first.
    let second = segment_body(4096, &[(FRAME_EVENTS, section(&events, 4160))]);
    let split = body.len();
    let both = [body, second].concat();
    let param = (split * 255).div_ceil(both.len()) as u8;
    put(dir, "two-segments", &with(2 | 8, param, &both));
}

fn snapshot_load(dir: &Path) {
    let mut store = Store::default();
    let records = records(&[EVENT, EVENT_FULL]);
    let mut off = 0;
    while let Some((r, len)) = flux::event::Record::parse(&records[off..]) {
        store.apply(&r, 64 + off as u64);
        off += len;
        if off == records.len() {
            break;
        }
    }
    let meta = SnapshotMeta {
        shard: 1,
        shards: 2,
        replay_from_lsn: 4096,
        txn_hw: 7,
    };
    let tmp = tempdir("snap");
    let mut w = snapshot::Writer::create(&tmp).expect("snapshot writer");
    let mut buf = Vec::new();
    snapshot::write_header(&mut buf, &meta);
    let mut enc = snapshot::EntityWriter::default();
    for (id, e) in store.range(b"", None) {
        enc.write(&mut buf, id, e);
    }
    snapshot::EntityWriter::finish(&mut buf, store.len() as u64);
    w.write(&buf).expect("write snapshot");
    w.finish().expect("finish snapshot");
    let file = std::fs::read(snapshot::path(&tmp)).expect("read snapshot");
    std::fs::remove_dir_all(&tmp).expect("clean up");
    // Mode 0: the file as written; mode 1: the same without its CRC (the target adds it).
    put(dir, "snapshot", &[&[0u8][..], &file].concat());
    put(
        dir,
        "snapshot-no-crc",
        &[&[1u8][..], &file[..file.len() - 4]].concat(),
    );
}

fn registry_file(dir: &Path) {
    let tmp = tempdir("reg");
    let reg = flux::auth::registry::Registry::open(&tmp).expect("open registry");
    reg.register(
        "alpha",
        "0190a5b2-7c3e-7000-8000-000000000001".into(),
        1_707_912_000_000,
    )
    .expect("register");
    reg.register(
        "bravo_2",
        "0190a5b2-7c3e-7000-8000-000000000002".into(),
        1_707_912_000_001,
    )
    .expect("register");
    let file = std::fs::read(tmp.join(flux::auth::registry::FILE_NAME)).expect("read registry");
    std::fs::remove_dir_all(&tmp).expect("clean up");
    // Mode 0: the file as written; mode 1: its body (the target appends the end line).
    put(dir, "registry", &[&[0u8][..], &file].concat());
    let body_end = file[..file.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("end line")
        + 1;
    put(
        dir,
        "registry-body",
        &[&[1u8][..], &file[..body_end]].concat(),
    );
}

fn tempdir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flux-seeds-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
