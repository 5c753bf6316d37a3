//! The per-request cost of auth mode: resolving a bearer token (SHA-256 and a lookup
//! in the shard's copy of the registry, or the connection's cache), checking a
//! written id against the token's namespace, and charging the rate limit from the
//! shard's lease.

use std::hint::black_box;
use std::sync::Arc;

use clap::Parser;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flux::auth::{Auth, Local, Principal, WriteScope};
use flux::config::Config;
use flux::runtime::RuntimeLimits;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let admin = "A".repeat(64);
    let cfg = Config::try_parse_from([
        "flux",
        "--auth-enabled",
        "true",
        "--admin-token",
        &admin,
        "--rate-limit-per-minute",
        "1000000000000",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ])
    .unwrap();
    let auth = Arc::new(Auth::open(&cfg).unwrap());
    // A registry of 1,000 namespaces.
    let mut token = String::new();
    for i in 0..1000 {
        let (_, t) = auth
            .registry
            .register(&format!("ns{i:04}"), "id".into(), 0)
            .unwrap();
        if i == 500 {
            token = t;
        }
    }
    let limits = RuntimeLimits::new(&cfg);
    let local = Local::new(auth);
    let header = format!("Bearer {token}").into_bytes();

    let mut g = c.benchmark_group("auth");
    g.throughput(Throughput::Elements(1));
    g.bench_function("resolve_sha256_and_lookup", |b| {
        b.iter(|| local.resolve(black_box(Some(&header)), None))
    });
    let mut cache = None;
    g.bench_function("resolve_cached_same_header", |b| {
        b.iter(|| local.resolve_cached(&mut cache, black_box(Some(&header))))
    });
    let Principal::Tenant(ns) = local.resolve(Some(&header), None) else {
        panic!("token must resolve");
    };
    let scope = WriteScope::Own(ns.clone());
    g.bench_function("check_write_own_namespace", |b| {
        b.iter(|| local.check_write(&scope, black_box(b"ns0500/sensor-00042")))
    });
    g.bench_function("check_write_admin_lookup", |b| {
        b.iter(|| local.check_write(&WriteScope::Registered, black_box(b"ns0500/sensor-00042")))
    });
    g.bench_function("rate_limit_spend_1", |b| {
        b.iter(|| local.spend(&limits, 2, &ns, black_box(1)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
