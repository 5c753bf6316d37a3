//! HTTP/1.x connection handling of the hand-written server: keep-alive, pipelining,
//! HTTP/1.0, `Connection: close`, chunked request bodies, `Expect: 100-continue`,
//! header-name case, and requests split into arbitrary reads.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn keep_alive_serves_many_requests_on_one_socket() {
    let srv = Server::start();
    let mut c = srv.connect();
    for i in 0..5 {
        let id = format!("ka-{i}");
        let r = c.exchange(&post_request(
            "/api/events",
            &event(&id, &format!(r#"{{"i":{i}}}"#)),
        ));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.header("connection").is_none(),
            "HTTP/1.1 keep-alive needs no Connection header"
        );
        let r = c.exchange(&get_request(&entity_path(&id)));
        assert_eq!(r.json()["properties"]["i"], i);
        let r = c.exchange(&get_request("/api/state/entities?prefix=ka-"));
        assert_eq!(r.json().as_array().unwrap().len(), i + 1);
        assert_eq!(c.exchange(&get_request("/nope")).status, 404);
        // An invalid event is an answer, not a protocol error: the connection stays.
        assert_eq!(c.exchange(&post_request("/api/events", "{}")).status, 400);
    }
    c.assert_quiet(Duration::from_millis(100));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let srv = Server::start();
    let mut c = srv.connect();
    let batch = batch_body(&[event("pipe-2", r#"{"b":1}"#), event("pipe-3", r#"{"b":2}"#)]);
    let requests: Vec<Vec<u8>> = vec![
        get_request("/health"),
        post_request("/api/events", &event("pipe-1", r#"{"v":1}"#)),
        get_request("/api/state/entities/pipe-1"),
        post_request("/api/events", &event("pipe-1", r#"{"v":2}"#)),
        get_request("/api/state/entities/pipe-1"),
        get_request("/api/state/entities?prefix=pipe-"),
        get_request("/nope"),
        build_request("PUT", "/health", &[], Some(b"")),
        post_request("/api/events/batch", &batch),
        get_request("/api/state/entities?prefix=pipe-"),
    ];
    c.send(&requests.concat());
    let r: Vec<Response> = (0..requests.len()).map(|_| c.read_response()).collect();
    assert_eq!(
        r.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 200, 200, 200, 200, 404, 405, 200, 200]
    );
    assert_eq!(r[0].text(), r#"{"status":"ok"}"#);
    assert_eq!(r[1].json()["stream"], "test");
    // Each read sees exactly the writes pipelined before it.
    assert_eq!(r[2].json()["properties"]["v"], 1);
    assert_eq!(r[4].json()["properties"]["v"], 2);
    assert!(r[5].is_chunked());
    assert_eq!(r[5].json().as_array().unwrap().len(), 1);
    assert_eq!(r[8].json()["successful"], 2);
    let list = r[9].json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["pipe-1", "pipe-2", "pipe-3"]);
    // Nothing extra, and the connection is still usable.
    c.assert_quiet(Duration::from_millis(100));
    assert_eq!(c.exchange(&get_request("/health")).status, 200);
}

#[test]
fn hundreds_of_pipelined_requests_beyond_one_read_buffer() {
    let srv = Server::start();
    let mut wire = Vec::new();
    for i in 0..300 {
        wire.extend(post_request(
            "/api/events",
            &event(&format!("many-{i}"), &format!(r#"{{"i":{i}}}"#)),
        ));
        wire.extend(get_request(&format!("/api/state/entities/many-{i}")));
    }
    assert!(wire.len() > 64 * 1024, "{} bytes", wire.len());
    let mut c = srv.connect();
    // Read while writing, so that neither side's socket buffer can fill up.
    let mut writer = c.stream().try_clone().expect("clone socket");
    let sender = std::thread::spawn(move || std::io::Write::write_all(&mut writer, &wire));
    for i in 0..300 {
        let ack = c.read_response();
        assert_eq!(ack.status, 200, "POST {i}: {}", ack.text());
        let e = c.read_response();
        assert_eq!(e.status, 200, "GET {i}");
        assert_eq!(e.json()["properties"]["i"], i);
    }
    sender.join().expect("sender").expect("write");
    c.assert_quiet(Duration::from_millis(100));
}

#[test]
fn http10_closes_unless_keep_alive_is_asked_for() {
    let srv = Server::start();
    let mut c = srv.connect();
    let r = c.exchange(b"GET /health HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(
        r.says_close() || r.header("connection").is_none(),
        "{:?}",
        r.headers
    );
    c.assert_closed();

    let mut c = srv.connect();
    for _ in 0..3 {
        let r = c.exchange(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("connection")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("keep-alive")
        );
    }
    let body = event("h10", "{}");
    let req = format!(
        "POST /api/events HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = c.exchange(req.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("keep-alive")
    );
    // The last request of a 1.0 keep-alive client without the header closes.
    let r = c.exchange(b"GET /api/state/entities/h10 HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    c.assert_closed();
}

#[test]
fn connection_close_on_http11_closes_after_the_response() {
    let srv = Server::start();
    for req in [
        &b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
        b"GET /health HTTP/1.1\r\nHost: x\r\nconnection: CLOSE\r\n\r\n",
        b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n",
    ] {
        let mut c = srv.connect();
        let r = c.exchange(req);
        assert!(r.says_close(), "{:?}", r.headers);
        c.assert_closed();
    }
    // Requests pipelined after the closing one are neither answered nor applied.
    let mut c = srv.connect();
    c.send(
        &[
            &b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
            &post_request("/api/events", &event("after-close", "{}")),
        ]
        .concat(),
    );
    assert_eq!(c.read_response().status, 200);
    c.assert_closed();
    assert!(
        srv.entity("after-close").is_none(),
        "a request after Connection: close was applied"
    );
}

#[test]
fn chunked_request_bodies_in_small_writes() {
    let srv = Server::start();
    let body = event("chunky", r#"{"text":"hello chunked world","n":[1,2,3]}"#);
    let b = body.as_bytes();
    let (a, rest) = b.split_at(10);
    let (m, z) = rest.split_at(25);
    let mut wire =
        b"POST /api/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    wire.extend(
        format!("{:x};name=val\r\n", a.len())
            .bytes()
            .chain(a.iter().copied())
            .chain(*b"\r\n"),
    );
    wire.extend(
        format!("{:X}; ext=\"quoted; value\"\r\n", m.len())
            .bytes()
            .chain(m.iter().copied())
            .chain(*b"\r\n"),
    );
    wire.extend(
        format!("{:04x}\r\n", z.len())
            .bytes()
            .chain(z.iter().copied())
            .chain(*b"\r\n"),
    );
    wire.extend_from_slice(b"0;last\r\nX-Trailer: yes\r\n\r\n");
    let mut c = srv.connect();
    c.send_slowly(&wire, 7, Duration::from_millis(2));
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    let e = srv.entity("chunky").expect("chunked body applied");
    assert!(
        e.text()
            .contains(r#""properties":{"text":"hello chunked world","n":[1,2,3]}"#),
        "{}",
        e.text()
    );

    // A chunked body followed by a pipelined request on the same socket.
    let body2 = event("chunky-2", "{}");
    let mut wire = format!(
        "POST /api/events HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body2}\r\n0\r\n\r\n",
        body2.len()
    )
    .into_bytes();
    wire.extend(get_request("/api/state/entities/chunky-2"));
    c.send(&wire);
    assert_eq!(c.read_response().status, 200);
    assert_eq!(c.read_response().json()["id"], "chunky-2");
}

#[test]
fn chunked_batch_with_sleeps_between_chunks() {
    let srv = Server::start();
    let events: Vec<String> = (0..20)
        .map(|i| event(&format!("cb-{i}"), &format!(r#"{{"i":{i}}}"#)))
        .collect();
    let body = batch_body(&events);
    let mut c = srv.connect();
    c.send(b"POST /api/events/batch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for part in body.as_bytes().chunks(97) {
        c.send(format!("{:x}\r\n", part.len()).as_bytes());
        std::thread::sleep(Duration::from_millis(3));
        c.send(part);
        c.send(b"\r\n");
    }
    c.send(b"0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["successful"], 20);
    assert_eq!(srv.list_ids("prefix=cb-").len(), 20);
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let srv = Server::start();
    let body = event("expect-1", r#"{"e":1}"#);
    let mut c = srv.connect();
    c.send(format!("POST /api/events HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    let interim = c.read_response();
    assert_eq!(interim.status, 100, "{interim:?}");
    assert!(interim.body.is_empty());
    c.send(body.as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(srv.entity("expect-1").is_some());

    // Also with a chunked body, and with the expectation's value in another case.
    let body = event("expect-2", "{}");
    c.send(b"POST /api/events HTTP/1.1\r\nHost: x\r\nexpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(c.read_response().status, 100);
    c.send(format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes());
    assert_eq!(c.read_response().status, 200);
    assert!(srv.entity("expect-2").is_some());

    // A client that sends the body anyway gets the final answer (a 100 before it is fine).
    let body = event("expect-3", "{}");
    c.send(
        format!(
            "POST /api/events HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let mut r = c.read_response();
    if r.status == 100 {
        r = c.read_response();
    }
    assert_eq!(r.status, 200);
    c.assert_quiet(Duration::from_millis(100));
}

#[test]
fn http10_expect_gets_no_100() {
    let srv = Server::start();
    let body = event("expect-10", "{}");
    let mut c = srv.connect();
    c.send(
        format!(
            "POST /api/events HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    // HTTP/1.0 has no 1xx: the server waits for the body.
    c.assert_quiet(Duration::from_millis(300));
    c.send(body.as_bytes());
    assert_eq!(c.read_response().status, 200);
}

#[test]
fn header_names_are_case_insensitive() {
    let srv = Server::start();
    for (i, name) in ["content-length", "CONTENT-LENGTH", "cOnTeNt-LeNgTh"]
        .iter()
        .enumerate()
    {
        let id = format!("case-{i}");
        let body = event(&id, "{}");
        let req = format!(
            "POST /api/events HTTP/1.1\r\nHOST: x\r\n{name}: {}\r\n\r\n{body}",
            body.len()
        );
        let mut c = srv.connect();
        let r = c.exchange(req.as_bytes());
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert!(srv.entity(&id).is_some(), "{name}");
        // The connection is at a request boundary: the body was consumed exactly.
        assert_eq!(c.exchange(&get_request("/health")).status, 200);
    }
    let body = event("case-te", "{}");
    let req = format!("POST /api/events HTTP/1.1\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    assert_eq!(srv.connect().exchange(req.as_bytes()).status, 200);
    assert!(srv.entity("case-te").is_some());
}

#[test]
fn requests_split_byte_by_byte() {
    let srv = Server::start();
    let mut wire = post_request("/api/events", &event("bytewise", r#"{"b":"split"}"#));
    wire.extend(get_request("/api/state/entities/bytewise"));
    let mut c = srv.connect();
    c.send_slowly(&wire, 1, Duration::from_micros(500));
    assert_eq!(c.read_response().status, 200);
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["properties"]["b"], "split");
    // A chunked request split the same way.
    let body = event("bytewise-2", "{}");
    let wire = format!("POST /api/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x};x=y\r\n{body}\r\n0\r\n\r\n", body.len());
    c.send_slowly(wire.as_bytes(), 1, Duration::from_micros(500));
    assert_eq!(c.read_response().status, 200);
    assert!(srv.entity("bytewise-2").is_some());
}

#[test]
fn request_target_forms_and_leading_empty_lines() {
    let srv = Server::start();
    let mut c = srv.connect();
    // Absolute-form (RFC 9112 §3.2.2: servers must accept it), a query and a fragment
    // on a path that takes none, and an empty line before the request line.
    for req in [
        &b"GET http://127.0.0.1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"[..],
        b"GET /health?x=1 HTTP/1.1\r\n\r\n",
        b"\r\nGET /health HTTP/1.1\r\n\r\n",
    ] {
        let r = c.exchange(req);
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(req));
    }
}

#[test]
fn responses_carry_date_server_and_exact_length() {
    let srv = Server::start();
    let mut c = srv.connect();
    c.send(&get_request("/health"));
    let r = c.read_response();
    assert_eq!(r.version, "HTTP/1.1");
    assert!(
        r.header("date").is_some_and(|d| d.ends_with(" GMT")),
        "{:?}",
        r.headers
    );
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    // Content-Length was exact: nothing trails the body.
    c.assert_quiet(Duration::from_millis(100));
}

#[test]
fn a_body_sent_to_a_405_or_404_is_consumed() {
    let srv = Server::start();
    let mut c = srv.connect();
    let wire = [
        build_request("POST", "/health", &[], Some(b"{\"junk\":1}")),
        build_request("POST", "/nope", &[], Some(b"GET /health HTTP/1.1\r\n\r\n")),
        get_request("/health"),
    ]
    .concat();
    c.send(&wire);
    assert_eq!(c.read_response().status, 405);
    assert_eq!(c.read_response().status, 404);
    assert_eq!(c.read_response().text(), r#"{"status":"ok"}"#);
    // The body that looked like a request was not answered as one.
    c.assert_quiet(Duration::from_millis(100));
}

/// RFC 9110 §9.3.2: a response to HEAD carries no content, whatever its status. The
/// client does not read one, so any body bytes corrupt the next response on the
/// connection.
#[test]
fn head_response_has_no_body() {
    let srv = Server::start();
    let mut c = srv.connect();
    c.send(
        &[
            &b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &get_request("/health"),
        ]
        .concat(),
    );
    let head = c.try_read_head().expect("response to HEAD");
    assert!(
        head.status == 200 || head.status == 405,
        "HEAD /health -> {}",
        head.status
    );
    match c.try_read_response() {
        Ok(r) => assert_eq!(
            r.status, 200,
            "the GET after HEAD was answered {}",
            r.status
        ),
        Err(e) => panic!("bytes after the HEAD response head are not the next response: {e}"),
    }
}

/// RFC 9110 §9.1: general-purpose servers must support HEAD wherever GET works.
#[test]
fn head_is_answered_like_get() {
    let srv = Server::start();
    srv.post_ok(&event("headed", r#"{"a":1}"#));
    for path in ["/health", "/api/state/entities/headed"] {
        let get = srv.get(path);
        let mut c = srv.connect();
        c.send(&build_request("HEAD", path, &[], None));
        let head = c.try_read_head().expect("response to HEAD");
        assert_eq!(head.status, get.status, "HEAD {path}");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "HEAD {path}"
        );
        assert_eq!(
            head.header("content-length"),
            get.header("content-length"),
            "HEAD {path}"
        );
    }
}
