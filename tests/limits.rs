//! Limits and abuse: oversized heads, URIs and bodies, missing or bad framing,
//! malformed bytes, memory pinned by announced bodies. Every test ends by checking
//! that the server still serves normal requests.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn header_block_over_16k_is_431() {
    let srv = Server::start();
    // A head of exactly 16 KiB (request line to the final CRLF CRLF) is served; one
    // byte more is not.
    let head_of = |len: usize| {
        let fixed = "GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n".len();
        format!(
            "GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(len - fixed)
        )
    };
    assert_eq!(head_of(16 * 1024).len(), 16 * 1024);
    let r = srv.connect().exchange(head_of(16 * 1024).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    rejected_and_closed(&srv, head_of(16 * 1024 + 1).as_bytes(), 431);
    // Over it, as one big header and as many small ones.
    let pad = "p".repeat(17_000);
    let req = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\n\r\n");
    rejected_and_closed(&srv, req.as_bytes(), 431);
    let many: String = (0..60)
        .map(|i| format!("X-H{i}: {}\r\n", "v".repeat(300)))
        .collect();
    rejected_and_closed(
        &srv,
        format!("GET /health HTTP/1.1\r\n{many}\r\n").as_bytes(),
        431,
    );
    srv.assert_healthy();
}

#[test]
fn more_than_64_headers_is_431() {
    let srv = Server::start();
    let headers = |n: usize| -> String { (0..n).map(|i| format!("X-H{i}: v\r\n")).collect() };
    let ok = format!("GET /health HTTP/1.1\r\n{}\r\n", headers(64));
    assert_eq!(srv.connect().exchange(ok.as_bytes()).status, 200);
    rejected_and_closed(
        &srv,
        format!("GET /health HTTP/1.1\r\n{}\r\n", headers(65)).as_bytes(),
        431,
    );
    srv.assert_healthy();
}

#[test]
fn uri_over_8k_is_414() {
    let srv = Server::start();
    // A target of exactly 8 KiB is served; one byte more is not.
    let target = |len: usize| format!("/health?x={}", "a".repeat(len - "/health?x=".len()));
    let ok = format!("GET {} HTTP/1.1\r\n\r\n", target(8 * 1024));
    assert_eq!(srv.connect().exchange(ok.as_bytes()).status, 200);
    let over = format!("GET {} HTTP/1.1\r\n\r\n", target(8 * 1024 + 1));
    rejected_and_closed(&srv, over.as_bytes(), 414);
    rejected_and_closed(
        &srv,
        format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000)).as_bytes(),
        414,
    );
    rejected_and_closed(
        &srv,
        format!(
            "GET /health?q={} HTTP/1.1\r\nHost: x\r\n\r\n",
            "q".repeat(8200)
        )
        .as_bytes(),
        414,
    );
    // Without the rest of the request line: the long target alone is enough to answer.
    rejected_and_closed(&srv, format!("GET /{}", "a".repeat(8300)).as_bytes(), 414);
    srv.assert_healthy();
}

#[test]
fn post_without_length_is_411() {
    let srv = Server::start();
    rejected_and_closed(&srv, b"POST /api/events HTTP/1.1\r\nHost: x\r\n\r\n", 411);
    rejected_and_closed(
        &srv,
        b"POST /api/events/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n",
        411,
    );
    srv.assert_healthy();
}

#[test]
fn body_over_limit_is_413_without_reading_it() {
    let srv = Server::start();
    let two_mib = 2 * 1024 * 1024;
    // Only the head is sent: the answer must not wait for the body.
    let t = Instant::now();
    let head = format!("POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Length: {two_mib}\r\n\r\n");
    rejected_and_closed(&srv, head.as_bytes(), 413);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "413 took {:?}",
        t.elapsed()
    );
    // With Expect: 100-continue the first (and only) answer is the 413.
    let head = format!(
        "POST /api/events HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: {two_mib}\r\n\r\n"
    );
    rejected_and_closed(&srv, head.as_bytes(), 413);
    // The batch endpoint takes 2 MiB but not 11 MiB.
    let head = format!(
        "POST /api/events/batch HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        11 * 1024 * 1024
    );
    rejected_and_closed(&srv, head.as_bytes(), 413);
    // A chunk size line over the limit is refused before its data.
    let head =
        format!("POST /api/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{two_mib:x}\r\n");
    rejected_and_closed(&srv, head.as_bytes(), 413);
    srv.assert_healthy();
}

#[test]
fn configured_body_limits_are_exact() {
    let srv = Server::start_with(&[
        ("FLUX_BODY_LIMIT_SINGLE_BYTES", "1000"),
        ("FLUX_BODY_LIMIT_BATCH_BYTES", "5000"),
    ]);
    // JSON padded with whitespace to an exact size.
    let sized = |json: String, size: usize| -> String {
        assert!(json.len() <= size);
        format!("{json}{}", " ".repeat(size - json.len()))
    };
    let at = sized(event("lim-1000", "{}"), 1000);
    assert_eq!(srv.post("/api/events", &at).status, 200);
    let over = sized(event("lim-1001", "{}"), 1001);
    let req = post_request("/api/events", &over);
    rejected_and_closed(&srv, &req[..req.len() - over.len()], 413);
    assert!(srv.entity("lim-1001").is_none());
    // The batch endpoint has its own, larger limit.
    let events: Vec<String> = (0..30).map(|i| event(&format!("lim-b{i}"), "{}")).collect();
    let batch = batch_body(&events);
    assert!(batch.len() > 1000 && batch.len() < 5000, "{}", batch.len());
    assert_eq!(
        srv.post("/api/events/batch", &sized(batch, 5000)).status,
        200
    );
    let req = b"POST /api/events/batch HTTP/1.1\r\nContent-Length: 5001\r\n\r\n";
    rejected_and_closed(&srv, req, 413);
    // A chunked body is counted as it arrives.
    let body = sized(event("lim-chunked", "{}"), 1001);
    let (a, b) = body.split_at(600);
    let req = format!(
        "POST /api/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n",
        a.len(),
        b.len()
    );
    rejected_and_closed(&srv, req.as_bytes(), 413);
    assert!(srv.entity("lim-chunked").is_none());
    srv.assert_healthy();
}

#[test]
fn malformed_requests_get_400_or_505_and_close() {
    let srv = Server::start();
    let tls_client_hello: &[u8] = &[
        0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03, 0x5a, 0x5b, 0x5c, 0x5d,
        0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c,
        0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x00, 0x00,
        0x02, 0x13, 0x01, 0x01, 0x00, 0x00, 0x00,
    ];
    let junk: Vec<u8> = (0..=255u8).rev().collect();
    let cases: Vec<(&[u8], u16)> = vec![
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/9.9\r\n\r\n", 505),
        (b"GET /health HTTP/2.0\r\n\r\n", 505),
        (b"GET /health HTTP/1.1x\r\n\r\n", 400),
        (b"GET /health\r\n\r\n", 400),
        (b"GET /health FOO/1.1\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nNoColonHere\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nX-A: a\x01b\r\n\r\n", 400),
        (b"GET health HTTP/1.1\r\n\r\n", 400),
        (b"GET /he alth HTTP/1.1\r\n\r\n", 400),
        (b"GET /%zz HTTP/1.1\r\n\r\n", 400),
        (b"GET /%C3%28 HTTP/1.1\r\n\r\n", 400),
        (b"\x00\x01\x02\x03\r\n\r\n", 400),
        (&junk, 400),
        (tls_client_hello, 400),
        (b"GET /health HTTP/1.1\r\nX-A: a\r\n folded\r\n\r\n", 400),
        (b"CONNECT 127.0.0.1:443 HTTP/1.1\r\n\r\n", 400),
    ];
    for (req, status) in cases {
        rejected_and_closed(&srv, req, status);
    }
    // A good request pipelined before the bad one is still answered, in order.
    let mut c = srv.connect();
    c.send(&[&get_request("/health")[..], b"GARBAGE\r\n\r\n"].concat());
    assert_eq!(c.read_response().status, 200);
    assert_error(&c.read_response(), 400);
    c.assert_closed();
    // The server is fine, on fresh connections and for a pipelined good request too.
    srv.assert_healthy();
}

#[test]
fn invalid_framing_headers() {
    let srv = Server::start();
    for cl in [
        "abc",
        "-1",
        "1.5",
        "",
        "1, 1",
        "+5",
        " 5 5",
        "0x10",
        "99999999999999999999999",
    ] {
        let req = format!("POST /api/events HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
        rejected_and_closed(&srv, req.as_bytes(), 400);
    }
    // Conflicting repeated Content-Length; both TE and CL (request smuggling shapes).
    rejected_and_closed(
        &srv,
        b"POST /api/events HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        400,
    );
    rejected_and_closed(
        &srv,
        b"POST /api/events HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
    rejected_and_closed(
        &srv,
        b"POST /api/events HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        400,
    );
    rejected_and_closed(
        &srv,
        b"POST /api/events HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
    // Codings the server does not implement.
    rejected_and_closed(
        &srv,
        b"POST /api/events HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
    );
    rejected_and_closed(
        &srv,
        b"POST /api/events HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        501,
    );
    // Broken chunk framing; an endless chunk-size line.
    let long_ext = format!(
        "POST /api/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;{}\r\n",
        "e".repeat(2000)
    );
    rejected_and_closed(&srv, long_ext.as_bytes(), 400);
    rejected_and_closed(
        &srv,
        b"POST /api/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    );
    rejected_and_closed(
        &srv,
        b"POST /api/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
    );
    rejected_and_closed(
        &srv,
        b"POST /api/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX",
        400,
    );
    // Identical repeated Content-Length is harmless.
    let body = event("dup-cl", "{}");
    let req = format!(
        "POST /api/events HTTP/1.1\r\nContent-Length: {0}\r\nContent-Length: {0}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(srv.connect().exchange(req.as_bytes()).status, 200);
    srv.assert_healthy();
}

/// Resident anonymous memory of a process in KiB (Linux): the heap that buffers live
/// in. Not VmRSS, which also counts the pages of the mapped log segments that the
/// process has touched (page cache, not what this test is about).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .expect("RssAnon line");
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("RssAnon value")
}

/// A declared Content-Length is a promise, not data: memory must follow the bytes that
/// actually arrive, or a few sockets that announce 10 MiB bodies and send one byte pin
/// gigabytes (the default cap allows 10,000 connections per shard).
#[test]
fn announced_but_unsent_bodies_do_not_pin_memory() {
    let srv = Server::start();
    let before = rss_kib(srv.pid());
    let mut conns = Vec::new();
    for _ in 0..30 {
        let mut c = srv.connect();
        c.send(
            format!(
                "POST /api/events/batch HTTP/1.1\r\nContent-Length: {}\r\n\r\n{{",
                10 * 1024 * 1024
            )
            .as_bytes(),
        );
        conns.push(c);
    }
    // Give the server time to read every head; stop early once growth is obvious.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut grown = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        grown = rss_kib(srv.pid()).saturating_sub(before);
        if grown > 64 * 1024 {
            break;
        }
    }
    assert!(
        grown <= 64 * 1024,
        "30 connections that sent 1 body byte each grew the server by {} MiB",
        grown / 1024
    );
    drop(conns);
    srv.assert_healthy();
}

#[test]
fn one_server_survives_every_abuse_in_turn() {
    let srv = Server::start_with(&[
        ("FLUX_HEADER_TIMEOUT_MS", "300"),
        ("FLUX_BODY_TIMEOUT_MS", "300"),
    ]);
    rejected_and_closed(&srv, b"GARBAGE\r\n\r\n", 400);
    rejected_and_closed(
        &srv,
        format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000)).as_bytes(),
        414,
    );
    rejected_and_closed(
        &srv,
        format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(17_000)).as_bytes(),
        431,
    );
    rejected_and_closed(
        &srv,
        b"POST /api/events HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
        413,
    );
    rejected_and_closed(&srv, b"POST /api/events HTTP/1.1\r\n\r\n", 411);
    rejected_and_closed(&srv, b"GET /health HTTP/1.1\r\nHost: x", 408);
    rejected_and_closed(
        &srv,
        b"POST /api/events HTTP/1.1\r\nContent-Length: 10\r\n\r\n{",
        408,
    );
    // Clients that vanish mid-request.
    for partial in [
        &b"GET /hea"[..],
        b"POST /api/events HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"a\"",
    ] {
        let mut c = srv.connect();
        c.send(partial);
        c.shutdown_write();
        let mut rest = Vec::new();
        let _ = c.stream().try_clone().map(|mut s| s.read_to_end(&mut rest));
    }
    let mut c = srv.connect();
    c.send(b"POST /api/events HTTP/1.1\r\nContent-Length: 30\r\n\r\n{");
    drop(c);
    srv.assert_healthy();
}

/// `"p0":0,"p1":1,…` with `n` properties (`dup`: every key the same).
fn props_json(n: usize, dup: bool) -> String {
    let mut s = String::from("{");
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        if dup {
            s.push_str(&format!(r#""k":{i}"#));
        } else {
            s.push_str(&format!(r#""p{i}":{i}"#));
        }
    }
    s.push('}');
    s
}

#[test]
fn properties_per_event_default_limit_is_10000() {
    let srv = Server::start();
    // At the limit: accepted whole, every property stored.
    let id = format!("wide-{}", unique());
    srv.post_ok(&event(&id, &props_json(10_000, false)));
    let e = srv.entity(&id).expect("stored").json();
    let props = e["properties"].as_object().expect("properties");
    assert_eq!(props.len(), 10_000);
    assert_eq!(props["p9999"], 9999);

    // One more: 400 naming the limit, nothing applied.
    let over = format!("over-{}", unique());
    let r = srv.post("/api/events", &event(&over, &props_json(10_001, false)));
    let msg = assert_error(&r, 400);
    assert!(msg.contains("10000"), "the message names the limit: {msg}");
    assert!(srv.entity(&over).is_none(), "nothing applied");
    // Duplicate keys count too (each one is applied).
    let r = srv.post("/api/events", &event(&over, &props_json(10_001, true)));
    assert_error(&r, 400);
    assert!(srv.entity(&over).is_none());

    // In a batch: the event's own error, and nothing of the batch applied.
    let ok_id = format!("batch-ok-{}", unique());
    let body = batch_body(&[
        event(&ok_id, r#"{"a":1}"#),
        event(&over, &props_json(10_001, false)),
        event(&ok_id, &props_json(10_000, false)),
    ]);
    let r = srv.post("/api/events/batch", &body);
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["successful"], 0);
    assert_eq!(v["failed"], 1);
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    assert!(results[0]["eventId"].is_string());
    let err = results[1]["error"].as_str().expect("per-event error");
    assert!(err.contains("10000"), "{err}");
    assert!(results[2]["eventId"].is_string(), "at the limit is valid");
    assert!(v["error"].as_str().unwrap().contains("event 1"), "{v}");
    assert!(srv.entity(&ok_id).is_none(), "nothing of the batch applied");
    assert!(srv.entity(&over).is_none());
    srv.assert_healthy();
}

#[test]
fn properties_per_event_limit_is_configurable() {
    let srv = Server::start_with(&[("FLUX_MAX_PROPERTIES_PER_EVENT", "3")]);
    let id = format!("three-{}", unique());
    srv.post_ok(&event(&id, r#"{"a":1,"b":2,"c":3}"#));
    let r = srv.post("/api/events", &event(&id, r#"{"a":1,"b":2,"c":3,"d":4}"#));
    let msg = assert_error(&r, 400);
    assert!(msg.contains("at most 3 properties"), "{msg}");
    let e = srv.entity(&id).expect("first write").json();
    assert!(
        e["properties"].get("d").is_none(),
        "the refused event left no trace"
    );
    // Merged entities may grow past it: the limit is per event.
    srv.post_ok(&event(&id, r#"{"d":4,"e":5}"#));
    let e = srv.entity(&id).expect("entity").json();
    assert_eq!(e["properties"].as_object().unwrap().len(), 5);

    // Out of range settings refuse to start, naming the variable.
    for bad in ["0", "1000001", "many"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (status, err) = run_bounded(
            flux_command()
                .env("FLUX_MAX_PROPERTIES_PER_EVENT", bad)
                .env("FLUX_LISTEN", "127.0.0.1:0")
                .env("FLUX_DATA_DIR", dir.path()),
            Duration::from_secs(10),
        );
        let status = status.expect("exits by itself");
        assert!(!status.success(), "{bad}: {err}");
        assert!(
            err.contains("FLUX_MAX_PROPERTIES_PER_EVENT")
                || err.contains("max-properties-per-event"),
            "{bad}: {err}"
        );
    }
}
