//! JSON event decoding: a typical single event, a wide one, and a 1000-event batch.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flux::ingest::decode::Decoder;

/// A typical telemetry event: three small properties, ~180 bytes.
fn typical_event(i: usize) -> String {
    format!(
        r#"{{"eventId":"evt-{i:06}","stream":"sensors.zone-1","source":"agent-7","timestamp":{ts},"payload":{{"entity_id":"temp-{i:05}","properties":{{"temperature":22.5,"unit":"celsius","ok":true}}}}}}"#,
        ts = 1_707_900_000_000_u64 + i as u64
    )
}

/// An event with 20 properties of every JSON type, two of them nested.
fn wide_event() -> String {
    let mut props = Vec::new();
    for i in 0..20 {
        let value = match i % 10 {
            0 => format!("{i}"),
            1 => format!("{i}.25"),
            2 => format!("\"value-{i}\""),
            3 => "true".to_owned(),
            4 => "null".to_owned(),
            5 => "-1.5e3".to_owned(),
            6 => r#""esc\u00e9\"q""#.to_owned(),
            7 => r#"{"lat":52.52,"lon":13.405}"#.to_owned(),
            8 => "[1,2,3]".to_owned(),
            _ => "false".to_owned(),
        };
        props.push(format!("\"prop_{i}\":{value}"));
    }
    format!(
        r#"{{"eventId":"evt-1","stream":"sensors.zone-1","source":"agent-7","timestamp":1707900000000,"payload":{{"entity_id":"temp-01","properties":{{{}}}}}}}"#,
        props.join(",")
    )
}

const BATCH_EVENTS: usize = 1000;

fn bench(c: &mut Criterion) {
    let mut decoder = Decoder::new();
    let mut g = c.benchmark_group("decode");
    for (name, body) in [
        ("single_typical", typical_event(1)),
        ("single_20_props", wide_event()),
    ] {
        let props = decoder.decode_single(body.as_bytes(), |e| e.properties.len());
        assert!(matches!(props, Ok(3 | 20)), "{name}: {props:?}");
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| decoder.decode_single(black_box(body.as_bytes()), |e| e.properties.len()))
        });
    }

    let events: Vec<String> = (0..BATCH_EVENTS).map(typical_event).collect();
    let batch = format!("{{\"events\":[{}]}}", events.join(","));
    let count = decoder.decode_batch(batch.as_bytes(), |_, r| assert!(r.is_ok()));
    assert_eq!(count, Ok(BATCH_EVENTS));
    g.throughput(Throughput::Elements(BATCH_EVENTS as u64));
    g.bench_function("batch_1000", |b| {
        b.iter(|| {
            let mut props = 0;
            let n = decoder.decode_batch(black_box(batch.as_bytes()), |_, r| {
                props += r.map_or(0, |e| e.properties.len());
            });
            (n, props)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
