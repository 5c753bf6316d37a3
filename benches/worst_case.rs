//! The worst-shaped request bodies at the default limits (1 MiB single body, 10 MiB
//! batch body, 10,000 properties per event, 100,000 events per batch): how long the
//! whole server-side work of one request holds a shard.
//!
//! "One request" here is what `api::events` and `Shard::log_and_apply` do between the
//! body being complete and the response being queued, on one shard: decode and validate
//! (simd-json tape, spans, field rules), give every event its id and render the
//! acknowledgements, encode the records, apply them to the store (`apply_records`,
//! the live path, which also encodes each record for the log) and write the log frame (`write_frame`:
//! the CRC and the copy into the segment; here into a reused buffer, so the page faults
//! of a fresh mapping, ~1 ms per 10 MiB, are not counted). HTTP parsing, the socket and
//! fan-out to subscribers (none here) are left out. `replay/…` applies the same records
//! to the same starting state the way recovery does.
//!
//! Two ways to run it:
//! - `cargo bench --bench worst_case`: criterion, per shape.
//! - `WORST_CASE_ONCE=1 cargo bench --bench worst_case`: times every shape a few
//!   times without criterion (one run when a run takes over a second) and prints a
//!   table (bytes, events, status, request ms, replay ms). Slow shapes of an old build
//!   finish in bounded time this way; tuning.md's table comes from it.
//!   `WORST_CASE_ONLY=<part of a name>` runs only the matching shapes.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use flux::event::compact::{section_bound, SectionWriter};
use flux::event::EventBatch;
use flux::ids::EventIdGen;
use flux::ingest::decode::{DecodeError, Decoder};
use flux::json;
use flux::log::frame::{frame_len, write_frame};
use flux::log::FRAME_EVENTS;
use flux::shard::{apply_records, ApplyTo};
use flux::state::Store;

const SINGLE_BYTES_MAX: usize = flux::limits::BODY_SINGLE_BYTES_MAX;
const BATCH_BYTES_MAX: usize = flux::limits::BODY_BATCH_BYTES_MAX;
const BATCH_EVENTS_MAX: usize = flux::limits::BATCH_EVENTS_MAX;
/// The default properties-per-event limit (DECISIONS.md).
const PROPS_MAX: usize = 10_000;
const NOW_MS: u64 = 1_707_900_000_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Single,
    Batch,
}

struct Shape {
    name: &'static str,
    endpoint: Endpoint,
    body: Vec<u8>,
    /// A batch body applied before (not measured): the state the request meets.
    before: Option<Vec<u8>>,
}

// ------------------------------------------------------------------ bodies

fn event(id: &str, props: &str) -> String {
    format!(
        r#"{{"stream":"s","source":"x","payload":{{"entity_id":"{id}","properties":{{{props}}}}}}}"#
    )
}

/// Joins `n` properties made by `prop(i)`, as many as fit in `budget` bytes.
fn props_upto(n: usize, budget: usize, prop: impl Fn(usize) -> String) -> String {
    let mut out = String::new();
    for i in 0..n {
        let p = prop(i);
        if out.len() + p.len() + 1 > budget {
            break;
        }
        if i > 0 {
            out.push(',');
        }
        out.push_str(&p);
    }
    out
}

/// `{"events":[…]}` of events made by `ev(i)`, as many as fit in the batch limit.
fn batch_upto(n: usize, ev: impl Fn(usize) -> String) -> Vec<u8> {
    let mut out = String::from(r#"{"events":["#);
    for i in 0..n {
        let e = ev(i);
        if out.len() + e.len() + 3 > BATCH_BYTES_MAX {
            break;
        }
        if i > 0 {
            out.push(',');
        }
        out.push_str(&e);
    }
    out.push_str("]}");
    out.into_bytes()
}

/// Room for properties in a single body, leaving space for the envelope.
const SINGLE_PROPS_BUDGET: usize = SINGLE_BYTES_MAX - 200;

fn shapes() -> Vec<Shape> {
    let long_prefix = "k".repeat(1000);
    let id_prefix = "i".repeat(1000);
    let single = |name, props: String| Shape {
        name,
        endpoint: Endpoint::Single,
        body: event("e", &props).into_bytes(),
        before: None,
    };
    let batch = |name, body| Shape {
        name,
        endpoint: Endpoint::Batch,
        body,
        before: None,
    };
    let mut v = vec![
        // 10,000 distinct keys of ~90 bytes sharing a long prefix (every comparison of a
        // linear key search runs through it), values padding the body to ~1 MiB.
        single(
            "single_props_at_limit",
            props_upto(PROPS_MAX, SINGLE_PROPS_BUDGET, |i| {
                format!(r#""{}{i:05}":0"#, &long_prefix[..85])
            }),
        ),
        // As many distinct short keys as 1 MiB holds (~95,000): over the limit.
        single(
            "single_props_1mib",
            props_upto(usize::MAX, SINGLE_PROPS_BUDGET, |i| format!(r#""{i}":0"#)),
        ),
        // ~1,000 keys of 1,024 bytes (the longest allowed) differing only at the end.
        single(
            "single_long_keys",
            props_upto(usize::MAX, SINGLE_PROPS_BUDGET, |i| {
                format!(r#""{}{i:024}":0"#, &long_prefix[..1000])
            }),
        ),
        // One key 10,000 times (duplicates: the last one wins), ~100-byte values.
        single(
            "single_dup_keys",
            props_upto(PROPS_MAX, SINGLE_PROPS_BUDGET, |i| {
                format!(r#""k":"{i:0>96}""#)
            }),
        ),
        // Every property a value nested as deep as allowed (the body may nest 64).
        single(
            "single_deep_nesting",
            props_upto(PROPS_MAX, SINGLE_PROPS_BUDGET, |i| {
                format!(r#""d{i}":{}{i}{}"#, "[".repeat(60), "]".repeat(60))
            }),
        ),
        // One ~1 MiB string full of escapes.
        single(
            "single_huge_string",
            format!(
                r#""s":"{}""#,
                r#"\"\u00e9\\"#.repeat(SINGLE_PROPS_BUDGET / 10)
            ),
        ),
        // One property holding an array of ~200,000 numbers (a long tape).
        single("single_big_array", {
            let mut a = String::from(r#""a":["#);
            let mut i = 0;
            while a.len() < SINGLE_PROPS_BUDGET - 8 {
                if i > 0 {
                    a.push(',');
                }
                a.push_str(&(i % 100_000).to_string());
                i += 1;
            }
            a.push(']');
            a
        }),
        // 100,000 minimal events, each creating an entity.
        batch(
            "batch_tiny_events",
            batch_upto(BATCH_EVENTS_MAX, |i| event(&format!("e{i:06}"), r#""v":1"#)),
        ),
        // 100,000 events on one entity, each adding a new key: the entity ends with
        // 100,000 properties.
        batch(
            "batch_one_entity_new_keys",
            batch_upto(BATCH_EVENTS_MAX, |i| event("e", &format!(r#""k{i:06}":1"#))),
        ),
        // Events at the properties limit, all on one entity, each rewriting its keys.
        batch(
            "batch_wide_events",
            batch_upto(BATCH_EVENTS_MAX, |i| {
                event(
                    "e",
                    &props_upto(PROPS_MAX, usize::MAX, |k| format!(r#""p{k:05}":{i}"#)),
                )
            }),
        ),
        // ~9,500 events whose 1,024-byte ids differ only at the end.
        batch(
            "batch_long_ids",
            batch_upto(BATCH_EVENTS_MAX, |i| {
                event(&format!("{}{i:024}", &id_prefix[..1000]), r#""v":1"#)
            }),
        ),
    ];
    // An entity that already holds a ~10 MB value after a small one, then 100,000
    // events that rewrite the small one with values of alternating length.
    let big = format!(r#""a":1,"big":"{}""#, "x".repeat(BATCH_BYTES_MAX - 1000));
    v.push(Shape {
        name: "batch_resize_before_big_value",
        endpoint: Endpoint::Batch,
        body: batch_upto(BATCH_EVENTS_MAX, |i| {
            event("e", if i % 2 == 0 { r#""a":12"# } else { r#""a":1"# })
        }),
        before: Some(format!(r#"{{"events":[{}]}}"#, event("e", &big)).into_bytes()),
    });
    for s in &v {
        let limit = match s.endpoint {
            Endpoint::Single => SINGLE_BYTES_MAX,
            Endpoint::Batch => BATCH_BYTES_MAX,
        };
        assert!(s.body.len() <= limit, "{}: {} bytes", s.name, s.body.len());
        serde_json::from_slice::<serde_json::Value>(&s.body).expect("shape bodies are JSON");
    }
    v
}

// ------------------------------------------------------------------ the request

/// The per-shard state a request uses (all reused, as in the server).
struct Server {
    decoder: Decoder,
    ids: EventIdGen,
    results: Vec<u8>,
    body: Vec<u8>,
    log: Vec<u8>,
    lsn: u64,
}

struct Outcome {
    status: u16,
    events: usize,
    /// Time spent applying the records to the store (the rest is decoding, validating,
    /// encoding, acknowledging and framing).
    apply: Duration,
    /// The applied records (for the replay measurement).
    batch: EventBatch,
}

fn write_ack(out: &mut Vec<u8>, event_id: &[u8], stream: &str) {
    out.extend_from_slice(b"{\"eventId\":");
    json::write_str(out, event_id);
    out.extend_from_slice(b",\"stream\":");
    json::write_str(out, stream.as_bytes());
    out.push(b'}');
}

impl Server {
    fn new() -> Self {
        Server {
            decoder: Decoder::new(),
            ids: EventIdGen::new(0),
            results: Vec::new(),
            body: Vec::new(),
            log: Vec::new(),
            lsn: 64,
        }
    }

    /// Everything `api::events` and `Shard::log_and_apply` do with one request body.
    fn serve(&mut self, store: &mut Store, endpoint: Endpoint, req: &[u8]) -> Outcome {
        let mut batch = EventBatch::default();
        let ids = &mut self.ids;
        let (results, body) = (&mut self.results, &mut self.body);
        results.clear();
        body.clear();
        let decoded: Result<(usize, usize), DecodeError> = match endpoint {
            Endpoint::Single => self.decoder.decode_single(req, |ev| {
                let mut id_buf = [0u8; 36];
                let id = ids.next_str(NOW_MS, &mut id_buf);
                write_ack(body, id, ev.stream);
                batch.buf.reserve(req.len() + 64);
                batch.push_event(ev, id, ev.timestamp_ms.unwrap_or(NOW_MS));
                (1, 0)
            }),
            Endpoint::Batch => {
                let mut failed = 0;
                self.decoder
                    .decode_batch(req, |idx, ev| {
                        if idx > 0 {
                            results.push(b',');
                        }
                        match ev {
                            Ok(ev) => {
                                let mut id_buf = [0u8; 36];
                                let id = ids.next_str(NOW_MS, &mut id_buf);
                                write_ack(results, id, ev.stream);
                                batch.push_event(ev, id, ev.timestamp_ms.unwrap_or(NOW_MS));
                            }
                            Err(msg) => {
                                failed += 1;
                                json::write_error(results, msg);
                            }
                        }
                    })
                    .map(|n| (n, failed))
            }
        };
        let events = match decoded {
            Ok((n, 0)) if n <= BATCH_EVENTS_MAX => n,
            Ok((n, _)) => {
                body.extend_from_slice(results);
                return Outcome {
                    status: 400,
                    events: n,
                    apply: Duration::ZERO,
                    batch,
                };
            }
            Err(e) => {
                json::write_error(body, &e.to_string());
                return Outcome {
                    status: 400,
                    events: 0,
                    apply: Duration::ZERO,
                    batch,
                };
            }
        };
        if endpoint == Endpoint::Batch {
            body.extend_from_slice(b"{\"successful\":");
            json::write_u64(body, events as u64);
            body.extend_from_slice(b",\"failed\":0,\"results\":[");
            body.extend_from_slice(results);
            body.extend_from_slice(b"]}");
        }
        batch.stamp_ingest(NOW_MS);
        let base = self.lsn + flux::log::ShardLog::PAYLOAD_OFFSET;
        let applying = Instant::now();
        let mut payload = Vec::with_capacity(section_bound(&batch));
        let mut w = SectionWriter::new(&mut payload, base, SectionWriter::base_ms_of(&batch.buf));
        apply_records(store, &batch.buf, ApplyTo::Log(&mut w), |_| {});
        w.finish();
        let apply = applying.elapsed();
        let len = payload.len();
        let extent = frame_len(len);
        if self.log.len() < extent {
            self.log.resize(extent, 0);
        }
        write_frame(&mut self.log, self.lsn, FRAME_EVENTS, len, |dst| {
            dst.copy_from_slice(&payload)
        });
        self.lsn += extent as u64;
        Outcome {
            status: 200,
            events,
            apply,
            batch,
        }
    }
}

/// The store a shape's request meets.
fn starting_store(server: &mut Server, s: &Shape) -> Store {
    let mut store = Store::default();
    if let Some(before) = &s.before {
        let o = server.serve(&mut store, Endpoint::Batch, before);
        assert_eq!(o.status, 200, "{}: the state before is applied", s.name);
    }
    store
}

/// Recovery's replay of the records: `Store::apply` per record.
fn replay(store: &mut Store, batch: &EventBatch) -> usize {
    batch.records().filter(|r| store.apply(r, 64)).count()
}

// ------------------------------------------------------------------ runners

fn criterion_run(shapes: &[Shape]) {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut server = Server::new();
    let mut g = c.benchmark_group("worst_case");
    for s in shapes {
        g.bench_function(s.name, |b| {
            b.iter_batched(
                || starting_store(&mut server_for_setup(), s),
                |mut store| {
                    let o = server.serve(&mut store, s.endpoint, black_box(&s.body));
                    (store, o.status)
                },
                BatchSize::PerIteration,
            )
        });
        let mut probe = starting_store(&mut server, s);
        let o = server.serve(&mut probe, s.endpoint, &s.body);
        if o.status == 200 {
            g.bench_function(format!("replay/{}", s.name), |b| {
                b.iter_batched(
                    || starting_store(&mut server_for_setup(), s),
                    |mut store| {
                        let n = replay(&mut store, black_box(&o.batch));
                        (store, n)
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    g.finish();
    c.final_summary();
}

fn server_for_setup() -> Server {
    Server::new()
}

/// Times `f` up to `runs` times (once when a run takes over a second); the median.
fn time_runs(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    let mut times = vec![f()];
    while times.len() < runs && times[0] < Duration::from_secs(1) {
        times.push(f());
    }
    times.sort();
    times[times.len() / 2]
}

fn once_run(shapes: &[Shape]) {
    let mut server = Server::new();
    println!(
        "| shape | body bytes | events | status | request ms | of it: parse ms | apply ms | replay ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for s in shapes {
        let mut last = None;
        let request = time_runs(5, || {
            let mut store = starting_store(&mut server, s);
            let t = Instant::now();
            let o = server.serve(&mut store, s.endpoint, black_box(&s.body));
            let d = t.elapsed();
            last = Some(o);
            drop(store);
            d
        });
        let o = last.expect("ran");
        let apply_ms = o.apply.as_secs_f64() * 1e3;
        // simd-json and the span walk alone, with the field checks (no ids, no encoding).
        let parse = time_runs(5, || {
            let t = Instant::now();
            let r = match s.endpoint {
                Endpoint::Single => server.decoder.decode_single(&s.body, |_| 1),
                Endpoint::Batch => server.decoder.decode_batch(&s.body, |_, _| {}),
            };
            let d = t.elapsed();
            black_box(r.ok());
            d
        });
        let parse_ms = parse.as_secs_f64() * 1e3;
        let replay_ms = if o.status == 200 {
            let d = time_runs(5, || {
                let mut store = starting_store(&mut server, s);
                let t = Instant::now();
                black_box(replay(&mut store, &o.batch));
                t.elapsed()
            });
            format!("{:.1}", d.as_secs_f64() * 1e3)
        } else {
            "-".into()
        };
        println!(
            "| {} | {} | {} | {} | {:.1} | {parse_ms:.1} | {apply_ms:.1} | {} |",
            s.name,
            s.body.len(),
            o.events,
            o.status,
            request.as_secs_f64() * 1e3,
            replay_ms
        );
    }
}

fn main() {
    let mut shapes = shapes();
    if let Ok(only) = std::env::var("WORST_CASE_ONLY") {
        shapes.retain(|s| s.name.contains(only.as_str()));
    }
    if std::env::var_os("WORST_CASE_ONCE").is_some() {
        once_run(&shapes);
    } else {
        criterion_run(&shapes);
    }
}
