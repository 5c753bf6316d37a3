//! Applying event records to a shard's entity store, and encoding an entity as JSON.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use flux::event::EventBatch;
use flux::ingest::decode::{EventRef, Property};
use flux::state::{write_entity_json, Store};

/// Entities in the store the update bench works on.
const ENTITIES: usize = 100_000;
/// Records per measured batch.
const UPDATES: usize = 1_000;
const INSERTS: usize = 10_000;
const INGEST_MS: u64 = 1_707_900_000_123;

/// One record per id, each setting three small properties to values derived from `seed`.
fn batch_for(ids: impl Iterator<Item = usize>, seed: usize) -> EventBatch {
    let mut batch = EventBatch::default();
    for i in ids {
        let entity_id = format!("temp-{i:06}");
        let temperature = format!("{}.5", (i + seed) % 40);
        let props = [
            Property {
                key: "temperature",
                value: temperature.as_bytes(),
            },
            Property {
                key: "unit",
                value: br#""celsius""#,
            },
            Property {
                key: "ok",
                value: b"true",
            },
        ];
        let event = EventRef {
            event_id: None,
            stream: "sensors.zone-1",
            source: "agent-7",
            timestamp_ms: None,
            key: None,
            schema: None,
            entity_id: &entity_id,
            properties: &props,
        };
        batch.push_event(
            &event,
            b"0190d0c4-7a3b-7c2e-9f41-5e6d7c8b9a0f",
            INGEST_MS - 5,
        );
    }
    batch.stamp_ingest(INGEST_MS);
    batch
}

fn apply_all(store: &mut Store, batch: &EventBatch) -> usize {
    batch.records().filter(|r| store.apply(r, 0)).count()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("state_apply");

    // (a) Updates: every record hits an existing entity; ids are spread over the store.
    let mut store = Store::default();
    assert_eq!(apply_all(&mut store, &batch_for(0..ENTITIES, 0)), ENTITIES);
    let updates = batch_for((0..UPDATES).map(|i| i * 97 % ENTITIES), 1);
    g.throughput(Throughput::Elements(UPDATES as u64));
    g.bench_function("update_100k_entities", |b| {
        b.iter(|| apply_all(&mut store, black_box(&updates)))
    });

    // (b) Inserts: a fresh store per batch, so every record creates an entity. The store
    // is returned so that dropping it is not measured.
    let inserts = batch_for(0..INSERTS, 0);
    g.throughput(Throughput::Elements(INSERTS as u64));
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("insert_10k_new", |b| {
        b.iter_batched(
            Store::default,
            |mut fresh| {
                apply_all(&mut fresh, black_box(&inserts));
                fresh
            },
            BatchSize::PerIteration,
        )
    });
    g.sampling_mode(SamplingMode::Auto);

    // Response encoding of one 3-property entity.
    let id = b"temp-000042";
    let entity = store.get(id).expect("entity exists");
    let mut out = Vec::with_capacity(256);
    write_entity_json(&mut out, id, entity);
    g.throughput(Throughput::Bytes(out.len() as u64));
    g.bench_function("write_entity_json", |b| {
        b.iter(|| {
            out.clear();
            write_entity_json(&mut out, black_box(id), black_box(entity));
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
