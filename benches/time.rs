//! Formatting a timestamp as RFC 3339 with milliseconds (`2026-02-14T12:00:00.000Z`,
//! written for every entity read, listing entry and WebSocket update): Flux's
//! fixed-width formatter against the `time` crate's formatter with the same format
//! description. Parsing (`since=`, once per request) uses `time` and is not benched.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use time::macros::format_description;

fn bench(c: &mut Criterion) {
    let ms: u64 = 1_707_912_000_123;
    let mut out = Vec::with_capacity(64);
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    // Both write the same bytes.
    flux::time::write_rfc3339_ms(&mut out, ms);
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    let mut theirs = Vec::new();
    t.format_into(&mut theirs, fmt).unwrap();
    assert_eq!(out, theirs);

    let mut g = c.benchmark_group("rfc3339_ms");
    g.bench_function("flux_write_rfc3339_ms", |b| {
        b.iter(|| {
            out.clear();
            flux::time::write_rfc3339_ms(&mut out, black_box(ms));
            out.len()
        })
    });
    g.bench_function("time_format_into", |b| {
        b.iter(|| {
            out.clear();
            let t = time::OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(black_box(ms)) * 1_000_000,
            )
            .unwrap();
            t.format_into(&mut out, fmt).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
