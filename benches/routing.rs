//! Entity id → shard placement, per id byte.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flux::shard::router::{hash_id, shard_for};

const SHARDS: usize = 8;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("routing");
    let short = b"sensor-00042"; // 12 bytes, a typical device id
    let long = [b'u'; 64]; // 64 bytes, e.g. a hex digest or a long path-like id
    for (name, id) in [("12B", &short[..]), ("64B", &long[..])] {
        g.throughput(Throughput::Bytes(id.len() as u64));
        g.bench_function(format!("hash_id_{name}"), |b| {
            b.iter(|| hash_id(black_box(id)))
        });
        g.bench_function(format!("shard_for_{name}"), |b| {
            b.iter(|| shard_for(black_box(id), SHARDS))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
