//! A batch of the load tester's default events from request bytes to state and log,
//! without sockets: what one shard does per event of `POST /api/events/batch`, stage by
//! stage, so that the cost per event is visible without this machine's network noise
//! (issue #13). Every stage is the server's own code, called as `api::events::post_batch`
//! and `Shard::log_and_apply` call it (one shard, so every event is local):
//!
//! | bench | what it runs per iteration (1000 events) |
//! |---|---|
//! | `decode` | `Decoder::decode_batch`, the callback only counts |
//! | `front` | decode + event id (UUIDv7 text) + its ack JSON + owner + `EventBatch::push_event` |
//! | `apply` | `shard::apply_records` of an encoded batch into a store holding its entities, nothing logged |
//! | `log` | the log's part alone: each record encoded in the compact form (`event::compact`) and the frame appended into the mapped segment (`ShardLog::reserve` + `append_with`) |
//! | `end_to_end` | front + `shard::log_and_apply` (apply, encode, append), as one request |
//!
//! `cargo bench --bench ingest_batch`. The same path in the running server, with
//! sockets and the keeper, profiled by symbol: `loadtest/reference/profile-batch.sh`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flux::event::compact::{section_bound, SectionWriter};
use flux::event::EventBatch;
use flux::ids::EventIdGen;
use flux::ingest::decode::Decoder;
use flux::log::scan::RecoveryMode;
use flux::log::{ShardLog, FRAME_EVENTS};
use flux::shard::{apply_records, log_and_apply, router, ApplyTo, FrameShape};
use flux::state::Store;

const EVENTS: usize = 1000;
/// Distinct entities the batches cycle through (the load tester's default key space
/// is larger; 10,000 keeps the store warm in cache like a busy shard's hot set).
const ENTITIES: usize = 10_000;
const NOW_MS: u64 = 1_707_900_000_123;
const SEGMENT_BYTES: u64 = 64 << 20;

/// `flux-loadtest`'s default event: stream and source, an `lt-` id, four properties
/// (even ones 16-byte strings, odd ones integers).
fn body(batch: usize) -> Vec<u8> {
    let mut s = String::from(r#"{"events":["#);
    for i in 0..EVENTS {
        if i > 0 {
            s.push(',');
        }
        let n = batch * EVENTS + i;
        let e = n % ENTITIES;
        s.push_str(&format!(
            r#"{{"stream":"loadtest","source":"lt-0","payload":{{"entity_id":"lt-{e:06}","properties":{{"p0":"{v:0>16}","p1":{n},"p2":"{w:0>16}","p3":{m}}}}}}}"#,
            v = n % 99_991,
            w = n % 7_919,
            m = n % 1_000,
        ));
    }
    s.push_str("]}");
    s.into_bytes()
}

/// What `post_batch` does with a decoded batch before it is applied: ids, acks,
/// routing, records. Returns the events encoded.
fn front(
    decoder: &mut Decoder,
    ids: &mut EventIdGen,
    body: &[u8],
    acks: &mut Vec<u8>,
    batch: &mut EventBatch,
) -> usize {
    acks.clear();
    *batch = EventBatch {
        buf: std::mem::take(&mut batch.buf),
        ..EventBatch::default()
    };
    batch.buf.clear();
    decoder
        .decode_batch(body, |idx, ev| {
            let ev = ev.expect("valid events");
            if idx > 0 {
                acks.push(b',');
            }
            let mut id_buf = [0u8; 36];
            let id = match ev.event_id {
                Some(id) => id.as_bytes(),
                None => ids.next_str(NOW_MS, &mut id_buf),
            };
            acks.extend_from_slice(b"{\"eventId\":");
            flux::json::write_str(acks, id);
            acks.extend_from_slice(b",\"stream\":");
            flux::json::write_str(acks, ev.stream.as_bytes());
            acks.push(b'}');
            let owner =
                router::shard_of_partition(router::partition_of(ev.entity_id.as_bytes()), 1);
            debug_assert_eq!(owner.index(), 0);
            batch.push_event(ev, id, ev.timestamp_ms.unwrap_or(NOW_MS));
        })
        .expect("a valid batch")
}

/// What the shard's keeper does between requests, off the clock: a spare segment made
/// by `SpareJob` (created on the blocking pool in the server), then room
/// for `need` bytes (a roll-over into that spare when the active segment is full).
fn keep(log: &mut ShardLog, need: usize) {
    if let Some(job) = log.spare_job() {
        let spare = job.run().expect("spare segment");
        assert!(
            log.install_spare(spare).is_none(),
            "spare is the next segment"
        );
    }
    log.ensure_room(need).expect("room");
}

/// Encodes `batch` as one section (no links: the store is not consulted) and appends
/// it as one frame (the caller made room: `ShardLog::ensure_room`).
fn log_frame(log: &mut ShardLog, batch: &EventBatch, payload: &mut Vec<u8>) -> u64 {
    let lsn = log.reserve(section_bound(batch)).expect("reserve");
    payload.clear();
    let mut w = SectionWriter::new(payload, lsn + ShardLog::PAYLOAD_OFFSET, NOW_MS);
    for r in batch.records() {
        w.push(&r, 0);
    }
    w.finish();
    log.append_with(FRAME_EVENTS, payload.len(), |dst| {
        dst.copy_from_slice(payload)
    });
    lsn
}

fn bench(c: &mut Criterion) {
    let bodies: Vec<Vec<u8>> = (0..ENTITIES / EVENTS).map(body).collect();
    let bytes_per_event = bodies[0].len() / EVENTS;
    let mut decoder = Decoder::new();
    let mut ids = EventIdGen::new(0);
    let mut acks = Vec::new();
    let mut batch = EventBatch::default();

    // Encoded batches and a store that already holds every entity.
    let encoded: Vec<EventBatch> = bodies
        .iter()
        .map(|b| {
            let mut batch = EventBatch::default();
            front(&mut decoder, &mut ids, b, &mut acks, &mut batch);
            batch.stamp_ingest(NOW_MS);
            batch
        })
        .collect();
    let mut store = Store::default();
    for b in &encoded {
        apply_records(&mut store, &b.buf, ApplyTo::Unlogged { base: 64 }, |_| {});
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = ShardLog::open(
        dir.path(),
        (0, 1),
        SEGMENT_BYTES,
        0,
        RecoveryMode::Strict,
        |_, _, _| {},
    )
    .expect("open the log");
    let mut payload = Vec::new();
    let mut w = SectionWriter::new(&mut payload, 64, NOW_MS);
    for r in encoded[0].records() {
        w.push(&r, 0);
    }
    w.finish();
    eprintln!(
        "ingest_batch: {EVENTS} events of {bytes_per_event} request bytes, {} record bytes \
         each in memory, {} in the log",
        encoded[0].buf.len() / EVENTS,
        payload.len() as f64 / EVENTS as f64
    );

    let mut g = c.benchmark_group("ingest_batch");
    g.throughput(Throughput::Elements(EVENTS as u64));
    let mut turn = 0usize;
    g.bench_function("decode", |b| {
        b.iter(|| {
            turn += 1;
            let mut n = 0;
            decoder
                .decode_batch(black_box(&bodies[turn % bodies.len()]), |_, ev| {
                    n += ev.is_ok() as usize;
                })
                .expect("valid");
            n
        })
    });
    g.bench_function("front", |b| {
        b.iter(|| {
            turn += 1;
            front(
                &mut decoder,
                &mut ids,
                black_box(&bodies[turn % bodies.len()]),
                &mut acks,
                &mut batch,
            )
        })
    });
    let mut lsn = 64u64;
    g.bench_function("apply", |b| {
        b.iter(|| {
            turn += 1;
            let records = &encoded[turn % encoded.len()].buf;
            lsn += records.len() as u64 + 64;
            let to = ApplyTo::Unlogged { base: lsn };
            apply_records(&mut store, black_box(records), to, |_| {});
        })
    });
    // Making a fresh segment when the active one is full is the keeper's job, off the
    // event loop: not timed here either.
    g.bench_function("log", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                turn += 1;
                let part = &encoded[turn % encoded.len()];
                keep(&mut log, section_bound(part));
                let t = Instant::now();
                black_box(log_frame(&mut log, black_box(part), &mut payload));
                took += t.elapsed();
            }
            took
        })
    });
    g.bench_function("end_to_end", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                turn += 1;
                // The largest batch fits: room is made before the clock starts.
                keep(&mut log, section_bound(&encoded[0]));
                let t = Instant::now();
                front(
                    &mut decoder,
                    &mut ids,
                    black_box(&bodies[turn % bodies.len()]),
                    &mut acks,
                    &mut batch,
                );
                batch.stamp_ingest(NOW_MS);
                let shape = FrameShape::Events;
                black_box(
                    log_and_apply(&mut log, &mut store, &mut payload, shape, &batch, |_| {})
                        .expect("room was made"),
                );
                took += t.elapsed();
            }
            took
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
