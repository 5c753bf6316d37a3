//! Writing a complete 200 JSON response into a reused buffer, per output byte.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flux::http::respond::{json, Persist};

fn bench(c: &mut Criterion) {
    // An ingest acknowledgement as `POST /api/events` answers it (flux-api.md).
    let body = br#"{"eventId":"0190d0c4-7a3b-7c2e-9f41-5e6d7c8b9a0f","stream":"sensors.zone-1"}"#;
    assert_eq!(body.len(), 76);
    let mut out = Vec::with_capacity(512);
    json(&mut out, 200, Persist::KeepAlive11, b"", body);
    let mut g = c.benchmark_group("respond");
    g.throughput(Throughput::Bytes(out.len() as u64));
    g.bench_function("json_200_76B", |b| {
        b.iter(|| {
            out.clear();
            json(&mut out, 200, Persist::KeepAlive11, b"", black_box(body));
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
