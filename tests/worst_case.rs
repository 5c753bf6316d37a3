//! Worst-shaped request bodies at the default limits (benches/worst_case.rs measures
//! them in-process): each is answered, and while it is being processed on one
//! connection, a request on another connection to the same shard (one shard here) is
//! answered too.
//!
//! The time bounds are generous on purpose (these tests run against the debug build,
//! on a shared machine): they catch work that grows quadratically with the body,
//! which took minutes, not a few milliseconds too many. The figures measured are
//! printed (`cargo test --test worst_case -- --nocapture`); tuning.md has release ones.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// How long the slowest accepted shape may take end to end against a debug build.
const REQUEST_BOUND: Duration = Duration::from_secs(20);

/// `{"k…":0,…}` with `n` properties, keys `key(i)`.
fn props(n: usize, key: impl Fn(usize) -> String) -> String {
    let mut s = String::from("{");
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&json_str(&key(i)));
        s.push_str(":0");
    }
    s.push('}');
    s
}

/// Events made by `ev(i)` joined into a batch body of at most 10 MiB.
fn batch_upto(n: usize, ev: impl Fn(usize) -> String) -> String {
    let mut events = Vec::new();
    let mut len = 16;
    for i in 0..n {
        let e = ev(i);
        len += e.len() + 1;
        if len > 10 * 1024 * 1024 {
            break;
        }
        events.push(e);
    }
    batch_body(&events)
}

/// Sends `body` to `path` on one connection and, until its answer arrives, `GET
/// /health` over and over on another. Returns the answer's status, how long it took,
/// the slowest health answer and how many there were.
fn while_busy(srv: &Server, path: &str, body: &str) -> (u16, Duration, Duration, usize) {
    let mut heavy = srv.connect();
    heavy.set_timeout(Duration::from_secs(120));
    let req = post_request(path, body);
    let mut probe = srv.connect();
    probe.set_timeout(Duration::from_secs(120));
    assert_eq!(probe.exchange(&get_request("/health")).status, 200);
    let started = Instant::now();
    let sender = thread::spawn(move || {
        heavy.send(&req);
        let r = heavy.read_response();
        (r.status, started.elapsed(), r)
    });
    let mut slowest = Duration::ZERO;
    let mut probes = 0;
    while !sender.is_finished() {
        let t = Instant::now();
        let r = probe.exchange(&get_request("/health"));
        assert_eq!(r.status, 200);
        slowest = slowest.max(t.elapsed());
        probes += 1;
        thread::sleep(Duration::from_millis(2));
    }
    let (status, took, r) = sender.join().expect("sender");
    if status != 200 {
        assert_json_error(&r);
    }
    (status, took, slowest, probes)
}

fn check(srv: &Server, name: &str, path: &str, body: &str, expect: u16) {
    let (status, took, slowest, probes) = while_busy(srv, path, body);
    eprintln!(
        "{name}: {} bytes -> {status} in {took:?}; {probes} health checks meanwhile, slowest {slowest:?}",
        body.len()
    );
    assert_eq!(status, expect, "{name}");
    assert!(took < REQUEST_BOUND, "{name} took {took:?}");
    assert!(
        slowest < REQUEST_BOUND,
        "{name}: a health check waited {slowest:?}"
    );
}

#[test]
fn wide_events_are_linear_and_others_are_served_meanwhile() {
    let srv = Server::start_with(&[("FLUX_SHARDS", "1")]);
    let prefix = "k".repeat(85);
    // 10,000 properties (the limit) with long shared key prefixes, in one event.
    let id = format!("wide-{}", unique());
    let at_limit = event(&id, &props(10_000, |i| format!("{prefix}{i:05}")));
    check(&srv, "single_props_at_limit", "/api/events", &at_limit, 200);
    // The same again: every key found and rewritten.
    check(&srv, "single_props_rewrite", "/api/events", &at_limit, 200);
    let e = srv.entity(&id).expect("stored").json();
    assert_eq!(e["properties"].as_object().unwrap().len(), 10_000);

    // As many properties as 1 MiB holds: refused, cheaply.
    let many = event(&id, &props(95_000, |i| format!("{i}")));
    assert!(many.len() < 1024 * 1024);
    check(&srv, "single_props_1mib", "/api/events", &many, 400);

    // 100,000 events on one entity, each adding a key: the entity ends with 100,000.
    let grow = format!("grow-{}", unique());
    let body = batch_upto(100_000, |i| event(&grow, &format!(r#"{{"k{i:06}":1}}"#)));
    check(
        &srv,
        "batch_one_entity_new_keys",
        "/api/events/batch",
        &body,
        200,
    );
    let e = srv.entity(&grow).expect("stored").json();
    let n = e["properties"].as_object().unwrap().len();
    assert!(n > 90_000, "{n} properties");

    // Events at the limit, all on one entity.
    let body = batch_upto(1000, |i| {
        event(&id, &props(10_000, |k| format!("p{k:05}-{}", i % 2)))
    });
    check(&srv, "batch_wide_events", "/api/events/batch", &body, 200);
    srv.assert_healthy();
}

#[test]
fn resizing_a_value_before_a_huge_one_is_linear() {
    let srv = Server::start_with(&[("FLUX_SHARDS", "1")]);
    let id = format!("big-{}", unique());
    let big = format!(
        r#"{{"a":1,"big":"{}"}}"#,
        "x".repeat(10 * 1024 * 1024 - 1000)
    );
    let r = srv.post("/api/events/batch", &batch_body(&[event(&id, &big)]));
    assert_eq!(r.status, 200, "{}", r.text());
    // Every event changes the length of the value before the 10 MB one.
    let body = batch_upto(100_000, |i| {
        event(
            &id,
            if i % 2 == 0 {
                r#"{"a":12}"#
            } else {
                r#"{"a":1}"#
            },
        )
    });
    check(
        &srv,
        "batch_resize_before_big_value",
        "/api/events/batch",
        &body,
        200,
    );
    let e = srv.entity(&id).expect("stored").json();
    assert_eq!(
        e["properties"]["big"].as_str().unwrap().len(),
        10 * 1024 * 1024 - 1000
    );
    srv.assert_healthy();
}

#[test]
fn many_tiny_events_and_long_ids() {
    let srv = Server::start_with(&[("FLUX_SHARDS", "1")]);
    let run = unique();
    let body = batch_upto(100_000, |i| event(&format!("t{run}-{i:06}"), r#"{"v":1}"#));
    check(&srv, "batch_tiny_events", "/api/events/batch", &body, 200);
    let prefix = "i".repeat(1000);
    let body = batch_upto(100_000, |i| {
        event(&format!("{prefix}{run}-{i:018}"), r#"{"v":1}"#)
    });
    check(&srv, "batch_long_ids", "/api/events/batch", &body, 200);
    srv.assert_healthy();
}
