//! Black-box tests of `GET /api/ws` (flux-api.md, DECISIONS.md "WebSocket"): the
//! handshake, subscriptions by id, prefix and `*` across shards, update order,
//! deletions, messages not understood, ping/pong and close, slow consumers, cleanup
//! after vanished clients, shutdown, and 1,000 concurrent subscribers.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(5);

/// `n` ids `<prefix><i>` that include ids owned by each of the 2 shards.
fn ids(prefix: &str, n: usize) -> Vec<String> {
    let v: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    assert_spans_two_shards(v.iter().map(String::as_str));
    v
}

fn types(msgs: &[Value]) -> Vec<&str> {
    msgs.iter()
        .map(|m| m["type"].as_str().unwrap_or("?"))
        .collect()
}

#[test]
fn upgrade_is_answered_101_and_bad_upgrades_are_refused() {
    let srv = Server::start();
    let _ok = WsClient::connect(srv.port());

    let plain = srv.get("/api/ws");
    assert_error(&plain, 426);
    assert_eq!(plain.header("upgrade"), Some("websocket"));

    let key = ws_key(1);
    fn upgrade<'a>(extra: &[(&'a str, &'a str)], version: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut h = vec![
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", version),
        ];
        h.extend_from_slice(extra);
        h
    }
    let r = srv.request(
        "GET",
        "/api/ws",
        &upgrade(&[("Sec-WebSocket-Key", &key)], "8"),
        None,
    );
    assert_error(&r, 426);
    assert_eq!(r.header("sec-websocket-version"), Some("13"));

    let r = srv.request("GET", "/api/ws", &upgrade(&[], "13"), None);
    assert!(assert_error(&r, 400).contains("Sec-WebSocket-Key"));
    let r = srv.request(
        "GET",
        "/api/ws",
        &upgrade(&[("Sec-WebSocket-Key", "not-base64-of-16")], "13"),
        None,
    );
    assert_error(&r, 400);

    let r = srv.request("POST", "/api/ws", &[], Some(b"{}"));
    assert_error(&r, 405);
    assert_eq!(r.header("allow"), Some("GET"));

    let http10 = upgrade_request(&key).replace("HTTP/1.1", "HTTP/1.0");
    match WsClient::upgrade_with(srv.port(), http10.as_bytes(), &key) {
        Err(r) => assert_eq!(r.status, 400),
        Ok(_) => panic!("HTTP/1.0 upgrade accepted"),
    }
    srv.assert_healthy();
}

#[test]
fn frames_sent_together_with_the_upgrade_request_are_not_lost() {
    let srv = Server::start();
    let key = ws_key(7);
    let mut bytes = upgrade_request(&key).into_bytes();
    bytes.extend(client_frame(
        true,
        OP_TEXT,
        br#"{"type":"subscribe","entity_id":"early-1"}"#,
        [1, 2, 3, 4],
    ));
    let mut c = WsClient::upgrade_with(srv.port(), &bytes, &key).expect("101");
    let ack = c.wait_for("subscribed", T);
    assert_eq!(ack, json!({"type": "subscribed", "entity_id": "early-1"}));
    srv.post_ok(&event("early-1", r#"{"v":1}"#));
    assert_eq!(c.updates(1, T)[0].0, "early-1");
}

#[test]
fn one_update_per_property_written_in_order_with_the_ingest_time() {
    let srv = Server::start();
    let mut c = WsClient::connect(srv.port());
    c.subscribe("temp-01");
    srv.post_ok(&event("other-01", r#"{"x":1}"#));
    srv.post_ok(&event("temp-01", r#"{"a":1,"b":"two","c":true}"#));
    // An unchanged value is still a write, and raw number text is kept.
    srv.post_ok(&event("temp-01", r#"{"b":"two"}"#));
    srv.post_ok(&event(
        "temp-01",
        r#"{"a":22.50,"o":{"k":[1,"}"]},"n":null}"#,
    ));
    let raw: Vec<String> = c
        .collect(T, false, |got| got.len() >= 7)
        .iter()
        .map(|v| v.to_string())
        .collect();
    let got: Vec<(String, Value)> = raw
        .iter()
        .map(|t| serde_json::from_str::<Value>(t).unwrap())
        .map(|v| {
            assert_eq!(v["type"], "state_update", "{v}");
            assert_eq!(v["entity_id"], "temp-01", "{v}");
            (
                v["property"].as_str().unwrap().to_string(),
                v["value"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("a".into(), json!(1)),
            ("b".into(), json!("two")),
            ("c".into(), json!(true)),
            ("b".into(), json!("two")),
            ("a".into(), json!(22.5)),
            ("o".into(), json!({"k": [1, "}"]})),
            ("n".into(), Value::Null),
        ]
    );
    c.assert_no_updates(Duration::from_millis(500));

    // The value is the exact JSON text sent, and the timestamp is lastUpdated.
    srv.post_ok(&event("temp-01", r#"{"exact":1.50e1}"#));
    let deadline = Instant::now() + T;
    let frame = loop {
        match c.recv_until(deadline) {
            Recv::Frame(f) if f.opcode == OP_TEXT && f.text().contains("state_update") => break f,
            Recv::Frame(_) => {}
            other => panic!("no update: {other:?}"),
        }
    };
    assert!(
        frame.text().contains(r#""value":1.50e1,"#),
        "{}",
        frame.text()
    );
    let update: Value = serde_json::from_slice(&frame.payload).unwrap();
    let entity = srv.entity("temp-01").expect("entity").json();
    assert_eq!(update["timestamp"], entity["lastUpdated"]);
    assert!(parse_rfc3339_ms(update["timestamp"].as_str().unwrap()).is_some());
}

#[test]
fn updates_of_an_entity_arrive_in_its_apply_order() {
    let srv = Server::start();
    let mut c = WsClient::connect(srv.port());
    c.subscribe("ordered");
    // Three concurrent publishers: the owner's apply order decides.
    let port = srv.port();
    let writers: Vec<_> = (0..3)
        .map(|w| {
            thread::spawn(move || {
                let mut conn = Conn::open(port);
                for i in 0..40 {
                    let body = event("ordered", &format!(r#"{{"seq":"{w}-{i}"}}"#));
                    let r = conn.exchange(&post_request("/api/events", &body));
                    assert_eq!(r.status, 200);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    // A batch applies in batch order.
    let batch: Vec<String> = (0..30)
        .map(|i| event("ordered", &format!(r#"{{"seq":"b-{i}"}}"#)))
        .collect();
    srv.batch_ok(&batch);
    let got: Vec<String> = c
        .updates(150, Duration::from_secs(10))
        .into_iter()
        .map(|(_, _, v)| v.as_str().unwrap().to_string())
        .collect();
    // The history, newest first, is the apply order reversed.
    let history = srv.get("/api/events?entity=ordered&limit=500").json();
    let mut applied: Vec<String> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["payload"]["properties"]["seq"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    applied.reverse();
    assert_eq!(applied.len(), 150);
    assert_eq!(got, applied);
    for w in 0..3 {
        let mine: Vec<&String> = got
            .iter()
            .filter(|s| s.starts_with(&format!("{w}-")))
            .collect();
        let want: Vec<String> = (0..40).map(|i| format!("{w}-{i}")).collect();
        assert_eq!(mine, want.iter().collect::<Vec<_>>());
    }
}

#[test]
fn wildcard_prefix_and_exact_subscriptions_span_both_shards() {
    let srv = Server::start();
    let pre = ids("pre-", 12);
    let other = ids("oth-", 12);
    let mut all = WsClient::connect(srv.port());
    all.subscribe("*");
    let mut prefix = WsClient::connect(srv.port());
    prefix.subscribe("pre-*");
    let mut exact = WsClient::connect(srv.port());
    exact.subscribe(&other[3]);
    // Overlapping patterns deliver each update once per connection.
    let mut overlap = WsClient::connect(srv.port());
    overlap.subscribe("pre-*");
    overlap.subscribe("pre-1*");
    overlap.subscribe(&pre[1]);
    overlap.subscribe("*");

    for id in pre.iter().chain(&other) {
        srv.post_ok(&event(id, r#"{"v":1}"#));
    }
    let n = pre.len() + other.len();
    let ids_of = |c: &mut WsClient, n: usize| -> Vec<String> {
        let mut v: Vec<String> = c.updates(n, T).into_iter().map(|u| u.0).collect();
        v.sort();
        v
    };
    let mut want_all: Vec<String> = pre.iter().chain(&other).cloned().collect();
    want_all.sort();
    let mut want_pre = pre.clone();
    want_pre.sort();
    assert_eq!(ids_of(&mut all, n), want_all);
    assert_eq!(ids_of(&mut overlap, n), want_all);
    assert_eq!(ids_of(&mut prefix, pre.len()), want_pre);
    assert_eq!(ids_of(&mut exact, 1), vec![other[3].clone()]);
    for c in [&mut all, &mut prefix, &mut exact, &mut overlap] {
        c.assert_no_updates(Duration::from_millis(300));
    }
}

#[test]
fn unsubscribe_stops_updates_while_other_subscriptions_go_on() {
    let srv = Server::start();
    let ids = ids("u-", 6);
    let mut c = WsClient::connect(srv.port());
    c.subscribe(&ids[0]);
    c.subscribe("u-*");
    c.subscribe(&ids[1]);
    c.unsubscribe("u-*");
    c.unsubscribe(&ids[0]);
    // Unsubscribing what is not subscribed is acknowledged too.
    c.unsubscribe("never");
    for id in &ids {
        srv.post_ok(&event(id, r#"{"v":2}"#));
    }
    let got = c.updates(1, T);
    assert_eq!(got, vec![(ids[1].clone(), "v".into(), json!(2))]);
    c.assert_no_updates(Duration::from_millis(500));
}

#[test]
fn deletions_reach_id_prefix_and_wildcard_subscribers_once() {
    let srv = Server::start();
    let ids = ids("del-", 8);
    for id in &ids {
        srv.post_ok(&event(id, r#"{"a":1}"#));
    }
    let mut by_id = WsClient::connect(srv.port());
    by_id.subscribe(&ids[0]);
    let mut by_prefix = WsClient::connect(srv.port());
    by_prefix.subscribe("del-*");
    let mut all = WsClient::connect(srv.port());
    all.subscribe("*");
    all.subscribe(&ids[0]);

    let r = srv.request("DELETE", &entity_path(&ids[0]), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    for c in [&mut by_id, &mut by_prefix, &mut all] {
        let m = c.wait_for("entity_deleted", T);
        assert_eq!(m["entity_id"], ids[0].as_str());
        let ts = parse_rfc3339_ms(m["timestamp"].as_str().unwrap()).expect("timestamp");
        assert!(ts.abs_diff(now_ms()) < 60_000);
        c.assert_no_updates(Duration::from_millis(300));
    }
    // A batch delete sends one entity_deleted per deleted entity.
    let r = srv.post("/api/state/entities/delete", r#"{"prefix":"del-"}"#);
    assert_eq!(r.json()["deleted"], 7, "{}", r.text());
    let got = by_prefix.collect(T, false, |g| g.len() >= 7);
    assert_eq!(types(&got), vec!["entity_deleted"; 7]);
    let mut deleted: Vec<&str> = got
        .iter()
        .map(|m| m["entity_id"].as_str().unwrap())
        .collect();
    deleted.sort();
    let mut want: Vec<&str> = ids[1..].iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(deleted, want);
    by_id.assert_no_updates(Duration::from_millis(300));
}

#[test]
fn messages_not_understood_get_an_error_and_the_connection_stays_open() {
    let srv = Server::start();
    let mut c = WsClient::connect(srv.port());
    let garbage = [
        "not json",
        "{",
        "[]",
        "42",
        r#"{"type":"bogus","entity_id":"x"}"#,
        r#"{"type":"subscribe"}"#,
        r#"{"type":"subscribe","entity_id":5}"#,
        r#"{"type":"subscribe","entity_id":""}"#,
        r#"{"entity_id":"x"}"#,
        r#"{"type":null}"#,
    ];
    for g in garbage {
        c.send_text(g);
    }
    c.send_frame(true, OP_BINARY, b"\x00\x01binary");
    // A fragmented text message is one message.
    c.send_frame(false, OP_TEXT, b"{\"type\":\"subscr");
    c.send_frame(true, OP_CONT, b"ibe\",\"entity_id\":\"frag\"}");
    let got = c.collect(T, false, |g| g.len() >= garbage.len() + 2);
    let errors: Vec<&Value> = got.iter().filter(|m| m["type"] == "error").collect();
    assert_eq!(errors.len(), garbage.len() + 1, "{got:?}");
    for e in &errors {
        assert!(!e["error"].as_str().unwrap().is_empty());
    }
    assert_eq!(got.last().unwrap()["type"], "subscribed");
    c.subscribe("after-garbage");
    srv.post_ok(&event("after-garbage", r#"{"ok":true}"#));
    srv.post_ok(&event("frag", r#"{"ok":1}"#));
    let mut u = c.updates(2, T);
    u.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(u[0], ("after-garbage".into(), "ok".into(), json!(true)));
    assert_eq!(u[1].0, "frag");
}

#[test]
fn oversized_and_invalid_frames_close_the_connection() {
    let srv = Server::start();
    let mut big = WsClient::connect(srv.port());
    let text = format!(
        r#"{{"type":"subscribe","entity_id":"{}"}}"#,
        "x".repeat(20_000)
    );
    big.send_text(&text);
    assert_eq!(big.read_until_close(T).map(|c| c.0), Some(1009));

    let mut bad = WsClient::connect(srv.port());
    bad.send_frame(true, OP_TEXT, b"\xff\xfe not utf-8");
    assert_eq!(bad.read_until_close(T).map(|c| c.0), Some(1007));

    // An unmasked client frame is a protocol error.
    let mut unmasked = WsClient::connect(srv.port());
    unmasked.send_raw(b"\x81\x02{}");
    assert_eq!(unmasked.read_until_close(T).map(|c| c.0), Some(1002));
    srv.assert_healthy();
    wait_metric(&srv, "flux_ws_connections", 0.0, T);
}

#[test]
fn ping_is_answered_and_the_close_handshake_completes() {
    let srv = Server::start();
    let mut c = WsClient::connect(srv.port());
    c.send_frame(true, OP_PING, b"hello");
    let deadline = Instant::now() + T;
    loop {
        match c.recv_until(deadline) {
            Recv::Frame(f) if f.opcode == OP_PONG => {
                assert_eq!(f.payload, b"hello");
                break;
            }
            Recv::Frame(_) => {}
            other => panic!("no pong: {other:?}"),
        }
    }
    c.send_close(1000, "bye");
    assert_eq!(c.read_until_close(T).map(|c| c.0), Some(1000));
    assert!(
        c.eof_within(T),
        "the server closes the TCP connection after the handshake"
    );
    wait_metric(&srv, "flux_ws_connections", 0.0, T);
}

#[test]
fn server_pings_and_closes_clients_that_stop_answering() {
    // Short enough for a test, long enough for a loaded CI machine to answer in time.
    let srv = Server::start_with(&[("FLUX_WS_PING_INTERVAL_MS", "500")]);
    let mut alive = WsClient::connect(srv.port());
    let mut silent = WsClient::connect(srv.port());
    // `alive` answers pings (next_json does) and sees them.
    let deadline = Instant::now() + Duration::from_millis(2600);
    let mut pings = 0;
    while Instant::now() < deadline {
        match alive.recv_until(deadline) {
            Recv::Frame(f) if f.opcode == OP_PING => {
                pings += 1;
                alive.send_frame(true, OP_PONG, &f.payload);
            }
            Recv::Frame(_) | Recv::Timeout => {}
            Recv::Closed => panic!("an answering client was closed"),
        }
    }
    assert!(pings >= 2, "{pings} pings in 2.6 s at 500 ms");
    let closed = silent.read_until_close(T);
    assert_eq!(closed, Some((1001, "ping timeout".to_string())));
    alive.subscribe("still-here");
}

#[test]
fn vanished_clients_leave_no_subscriptions_behind() {
    let srv = Server::start();
    let ids = ids("gone-", 6);
    let mut clients: Vec<WsClient> = (0..20).map(|_| WsClient::connect(srv.port())).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.subscribe(&ids[i % ids.len()]);
        c.subscribe(&ids[(i + 1) % ids.len()]);
        c.subscribe("*");
        c.subscribe("gone-*");
    }
    wait_metric(&srv, "flux_ws_connections", 20.0, T);
    assert_eq!(metric(&srv, "flux_ws_subscriptions"), 80.0);
    assert!(metric(&srv, "flux_ws_interests") > 0.0);
    // Some vanish without a close frame, some half-way through a frame, some close.
    for (i, mut c) in clients.into_iter().enumerate() {
        match i % 3 {
            0 => drop(c),
            1 => {
                c.send_raw(&client_frame(true, OP_TEXT, b"{\"type\":\"subscribe\"", [9; 4])[..6]);
                drop(c);
            }
            _ => c.send_close(1000, ""),
        }
    }
    wait_metric(&srv, "flux_ws_connections", 0.0, T);
    wait_metric(&srv, "flux_ws_subscriptions", 0.0, T);
    // The owning shards forget the interest too (both shards, exact ids and patterns).
    wait_metric(&srv, "flux_ws_interests", 0.0, T);
    let mut c = WsClient::connect(srv.port());
    c.subscribe(&ids[0]);
    srv.post_ok(&event(&ids[0], r#"{"v":1}"#));
    assert_eq!(c.updates(1, T).len(), 1);
    assert_eq!(metric(&srv, "flux_ws_interests"), 1.0);
}

#[test]
fn slow_consumer_is_closed_with_1008_while_a_fast_one_gets_everything() {
    // One round below fans out ~105 KB per subscriber: the bound holds several.
    let srv = Server::start_with(&[("FLUX_WS_QUEUE_BYTES", "1048576")]);
    let mut slow = WsClient::connect(srv.port());
    slow.subscribe("*");
    let mut fast = WsClient::connect(srv.port());
    fast.subscribe("*");

    let done = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = {
        let done = done.clone();
        let seen = seen.clone();
        thread::spawn(move || {
            // (entity → last seq) to check order and completeness.
            let mut last: HashMap<String, i64> = HashMap::new();
            let mut updates = 0u64;
            let idle_after_done = Duration::from_millis(1500);
            let mut idle_since = Instant::now();
            loop {
                match fast.next_json(Duration::from_millis(200)) {
                    Some(m) if m["type"] == "state_update" => {
                        idle_since = Instant::now();
                        if m["property"] == "seq" {
                            let id = m["entity_id"].as_str().unwrap().to_string();
                            let seq = m["value"].as_i64().unwrap();
                            let prev = last.insert(id, seq).unwrap_or(-1);
                            assert!(seq > prev, "out of order: {seq} after {prev}");
                        }
                        updates += 1;
                        seen.store(updates as usize, Ordering::SeqCst);
                    }
                    Some(_) => {}
                    None => {
                        assert!(fast.closed_with.is_none(), "fast consumer closed");
                        if done.load(Ordering::SeqCst) && idle_since.elapsed() > idle_after_done {
                            return (updates, last);
                        }
                    }
                }
            }
        })
    };

    let pad = "x".repeat(2000);
    let ids = ids("slow-", 50);
    let mut events = 0usize;
    let mut slowest = Duration::ZERO;
    let mut conn = srv.connect();
    for round in 0..400 {
        // The fast consumer reads as fast as it can; the test only keeps the publisher
        // within two rounds of it, so that it is fast by construction on any machine.
        let behind = Instant::now();
        while seen.load(Ordering::SeqCst) + 4 * ids.len() < 2 * events {
            assert!(behind.elapsed() < T, "the fast consumer stalled");
            thread::sleep(Duration::from_millis(1));
        }
        let batch: Vec<String> = ids
            .iter()
            .map(|id| event(id, &format!(r#"{{"seq":{round},"pad":"{pad}"}}"#)))
            .collect();
        let t = Instant::now();
        let r = conn.exchange(&post_request("/api/events/batch", &batch_body(&batch)));
        slowest = slowest.max(t.elapsed());
        assert_eq!(r.status, 200);
        events += batch.len();
        if round % 10 == 9 && metric(&srv, "flux_ws_slow_consumer_closes_total") >= 1.0 {
            break;
        }
    }
    wait_metric(&srv, "flux_ws_slow_consumer_closes_total", 1.0, T);
    // Its subscription is dropped at once, not after the close handshake.
    wait_metric(&srv, "flux_ws_subscriptions", 1.0, T);
    done.store(true, Ordering::SeqCst);
    // The slow client now reads what the kernel buffered, then the close frame.
    let closed = slow.read_until_close(Duration::from_secs(30));
    assert_eq!(closed, Some((1008, "slow consumer".to_string())));
    let (updates, last) = reader.join().unwrap();
    assert_eq!(
        updates as usize,
        2 * events,
        "the fast consumer got every update"
    );
    assert_eq!(last.len(), ids.len());
    assert!(
        slowest < Duration::from_secs(5),
        "a slow subscriber must not hold up ingestion (slowest batch {slowest:?})"
    );
    assert_eq!(metric(&srv, "flux_ws_connections"), 1.0);
    assert_eq!(metric(&srv, "flux_ws_delivery_gaps_total"), 0.0);
}

#[test]
fn dropped_cross_shard_deliveries_close_the_subscribers_that_missed_them() {
    // The failpoint makes every other shard's inbox look full.
    let srv = Server::start_with(&[("FLUX_FAILPOINT", "ws-inbox-full")]);
    let ids = ids("gap-", 8);
    let mut c = WsClient::connect(srv.port());
    c.subscribe("gap-*");
    for id in &ids {
        srv.post_ok(&event(id, r#"{"v":1}"#));
    }
    // The updates of the other shard's entities were dropped: rather than leave a
    // hole in the stream, the server closes the connection as a slow consumer.
    assert_eq!(
        c.read_until_close(T),
        Some((1008, "slow consumer".to_string()))
    );
    assert!(metric(&srv, "flux_ws_delivery_gaps_total") >= 1.0);
    assert_eq!(metric(&srv, "flux_ws_slow_consumer_closes_total"), 1.0);
    srv.assert_healthy();
}

#[test]
fn a_thousand_concurrent_subscribers_each_get_every_update() {
    let started = Instant::now();
    let srv = Server::start();
    const N: usize = 1000;
    let mut clients: Vec<WsClient> = (0..N).map(|_| WsClient::connect(srv.port())).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let pattern = if i % 2 == 0 { "*" } else { "k-*" };
        c.send_text(&json!({"type": "subscribe", "entity_id": pattern}).to_string());
    }
    for c in clients.iter_mut() {
        c.wait_for("subscribed", Duration::from_secs(20));
    }
    wait_metric(&srv, "flux_ws_subscriptions", N as f64, T);
    assert_eq!(metric(&srv, "flux_ws_connections"), N as f64);
    // One registration per (pattern, home shard) on each owner: 2 × 2 × 2.
    assert_eq!(metric(&srv, "flux_ws_interests"), 8.0);
    let ids = ids("k-", 10);
    let batch: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| event(id, &format!(r#"{{"n":{i}}}"#)))
        .collect();
    srv.batch_ok(&batch);
    for id in &ids {
        srv.post_ok(&event(id, r#"{"m":true}"#));
    }
    let chunks: Vec<Vec<WsClient>> = {
        let mut chunks: Vec<Vec<WsClient>> = (0..8).map(|_| Vec::new()).collect();
        for (i, c) in clients.into_iter().enumerate() {
            chunks[i % 8].push(c);
        }
        chunks
    };
    let ids = &ids;
    let results: Vec<usize> = thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|mut chunk| {
                s.spawn(move || {
                    let mut complete = 0;
                    for c in chunk.iter_mut() {
                        let got = c.updates(20, Duration::from_secs(20));
                        let per_id = ids
                            .iter()
                            .all(|id| got.iter().filter(|u| &u.0 == id).count() == 2);
                        if got.len() == 20 && per_id {
                            complete += 1;
                        }
                    }
                    complete
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().sum::<usize>(), N);
    assert_eq!(metric(&srv, "flux_ws_slow_consumer_closes_total"), 0.0);
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn metrics_updates_arrive_every_interval_on_every_connection() {
    let srv = Server::start_with(&[("FLUX_METRICS_INTERVAL_MS", "300")]);
    let mut cs: Vec<WsClient> = (0..3).map(|_| WsClient::connect(srv.port())).collect();
    for c in cs.iter_mut() {
        let got = c.collect(Duration::from_millis(2500), true, |g| g.len() >= 4);
        assert!(
            got.len() >= 3,
            "{} metrics updates in 2.5 s at 300 ms",
            got.len()
        );
        let last = got.last().unwrap();
        assert_eq!(last["type"], "metrics_update");
        assert_eq!(last["websocket"]["connections"], 3);
    }
}

#[test]
fn shutdown_closes_websockets_with_1001() {
    let mut srv = Server::start();
    let mut c = WsClient::connect(srv.port());
    c.subscribe("*");
    srv.signal("TERM");
    let closed = c.read_until_close(T);
    assert_eq!(closed, Some((1001, "server shutting down".to_string())));
    c.send_close(1001, "");
    let status = srv.wait_exit(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}\n{}", srv.log());
}
