use super::super::chunked::ChunkedDecoder;
use super::*;

fn lossy(buf: &[u8]) -> String {
    String::from_utf8_lossy(&buf[..buf.len().min(200)]).into_owned()
}

fn ok(buf: &[u8]) -> Head {
    match parse_head(buf) {
        Ok(Some(h)) => h,
        other => panic!("expected a head, got {other:?} for {:?}", lossy(buf)),
    }
}

fn err(buf: &[u8]) -> HttpError {
    match parse_head(buf) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?} for {:?}", lossy(buf)),
    }
}

fn text(buf: &[u8], r: (u32, u32)) -> &str {
    std::str::from_utf8(range_slice(buf, r)).unwrap()
}

/// `GET / HTTP/1.x` with a Host header and the given extra header lines.
fn get_with(version: &str, headers: &[&str]) -> Vec<u8> {
    let mut s = format!("GET / {version}\r\nHost: example.com\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

fn get11(headers: &[&str]) -> Vec<u8> {
    get_with("HTTP/1.1", headers)
}

fn body_of(headers: &[&str]) -> Result<BodyKind, HttpError> {
    let req = get11(headers);
    parse_head(&req).map(|h| h.expect("complete").body)
}

// ---- typical requests, every field ----

#[test]
fn typical_get_every_field() {
    let buf = b"GET /users/42?x=1&y=%20#top HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\nAccept: */*\r\n\r\n";
    let h = ok(buf);
    assert_eq!(h.method, Method::Get);
    assert_eq!(h.target, (4, 27));
    assert_eq!(text(buf, h.target), "/users/42?x=1&y=%20#top");
    assert_eq!(text(buf, h.path), "/users/42");
    assert_eq!(h.query.map(|q| text(buf, q)), Some("x=1&y=%20"));
    assert_eq!(h.minor_version, 1);
    assert_eq!(h.header_len as usize, buf.len());
    assert_eq!(h.body, BodyKind::None);
    assert!(h.keep_alive);
    assert!(!h.expect_continue);
    assert_eq!(h.authorization, None);
    assert!(!h.upgrade_websocket);
    assert_eq!(h.ws_key, None);
    assert!(!h.ws_version_13);
}

#[test]
fn typical_post_every_field() {
    let buf = b"POST /api/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
            Content-Length: 13\r\nAuthorization:   Bearer abc.def  \r\nExpect: 100-continue\r\n\r\n\
            {\"a\":[1,2,3]}";
    let h = ok(buf);
    assert_eq!(h.method, Method::Post);
    assert_eq!(text(buf, h.target), "/api/items");
    assert_eq!(text(buf, h.path), "/api/items");
    assert_eq!(h.query, None);
    assert_eq!(h.minor_version, 1);
    assert_eq!(h.header_len as usize, buf.len() - 13);
    assert_eq!(&buf[h.header_len as usize..], b"{\"a\":[1,2,3]}");
    assert_eq!(h.body, BodyKind::Length(13));
    assert!(h.keep_alive);
    assert!(h.expect_continue);
    assert_eq!(
        h.authorization.map(|a| text(buf, a)),
        Some("Bearer abc.def")
    );
    assert!(!h.upgrade_websocket);
    assert_eq!(h.ws_key, None);
    assert!(!h.ws_version_13);
}

#[test]
fn websocket_handshake_every_field() {
    let buf =
        b"GET /ws?room=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let h = ok(buf);
    assert_eq!(h.method, Method::Get);
    assert_eq!(text(buf, h.path), "/ws");
    assert_eq!(h.query.map(|q| text(buf, q)), Some("room=1"));
    assert_eq!(h.header_len as usize, buf.len());
    assert_eq!(h.body, BodyKind::None);
    assert!(h.keep_alive);
    assert!(!h.expect_continue);
    assert_eq!(h.authorization, None);
    assert!(h.upgrade_websocket);
    assert_eq!(
        h.ws_key.map(|k| text(buf, k)),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );
    assert!(h.ws_version_13);
}

#[test]
fn http10_request_fields() {
    let buf = b"HEAD /index.html HTTP/1.0\r\n\r\n";
    let h = ok(buf);
    assert_eq!(h.method, Method::Head);
    assert_eq!(h.minor_version, 0);
    assert_eq!(text(buf, h.path), "/index.html");
    assert!(!h.keep_alive);
    assert_eq!(h.body, BodyKind::None);
}

#[test]
fn methods() {
    for (m, want) in [
        ("GET", Method::Get),
        ("HEAD", Method::Head),
        ("POST", Method::Post),
        ("PUT", Method::Put),
        ("DELETE", Method::Delete),
        ("OPTIONS", Method::Options),
        ("PATCH", Method::Patch),
        ("PROPFIND", Method::Other),
        ("TRACE", Method::Other),
        // Methods are case-sensitive (RFC 9110 §9.1).
        ("get", Method::Other),
        ("Post", Method::Other),
    ] {
        let req = format!("{m} / HTTP/1.1\r\n\r\n");
        assert_eq!(ok(req.as_bytes()).method, want, "{m}");
    }
}

#[test]
fn requires_body_for_post_put_patch_only() {
    for m in [Method::Post, Method::Put, Method::Patch] {
        assert!(requires_body(m));
    }
    for m in [
        Method::Get,
        Method::Head,
        Method::Delete,
        Method::Options,
        Method::Other,
    ] {
        assert!(!requires_body(m));
    }
}

#[test]
fn error_status_and_message() {
    let cases = [
        (HttpError::BadRequest("x"), 400, "x"),
        (HttpError::LengthRequired, 411, "length required"),
        (HttpError::PayloadTooLarge, 413, "payload too large"),
        (HttpError::UriTooLong, 414, "request-target too long"),
        (
            HttpError::HeaderTooLarge,
            431,
            "request header fields too large",
        ),
        (HttpError::NotImplemented("y"), 501, "y"),
        (
            HttpError::VersionNotSupported,
            505,
            "HTTP version not supported",
        ),
    ];
    for (e, status, message) in cases {
        assert_eq!(e.status(), status);
        assert_eq!(e.message(), message);
    }
}

#[test]
fn range_slice_out_of_bounds_is_empty() {
    assert_eq!(range_slice(b"abc", (1, 3)), b"bc");
    assert_eq!(range_slice(b"abc", (2, 9)), b"");
    assert_eq!(range_slice(b"abc", (3, 1)), b"");
}

// ---- headers ----

#[test]
fn header_names_are_case_insensitive() {
    let buf =
        b"POST / HTTP/1.1\r\ncOnTeNt-LeNgTh: 3\r\nCONNECTION: CLOSE\r\nEXPECT: 100-CONTINUE\r\n\
            authorization: Basic eA==\r\n\r\nabc";
    let h = ok(buf);
    assert_eq!(h.body, BodyKind::Length(3));
    assert!(!h.keep_alive);
    assert!(h.expect_continue);
    assert_eq!(h.authorization.map(|a| text(buf, a)), Some("Basic eA=="));

    let buf = b"GET / HTTP/1.1\r\nUPGRADE: WebSocket\r\nconnection: UPGRADE\r\n\
            SEC-WEBSOCKET-KEY: k\r\nsec-websocket-version: 13\r\n\r\n";
    let h = ok(buf);
    assert!(h.upgrade_websocket);
    assert_eq!(h.ws_key.map(|k| text(buf, k)), Some("k"));
    assert!(h.ws_version_13);

    assert_eq!(
        body_of(&["TRANSFER-ENCODING: Chunked"]),
        Ok(BodyKind::Chunked)
    );
}

#[test]
fn http10_keep_alive_rules() {
    let ka = |headers: &[&str]| ok(&get_with("HTTP/1.0", headers)).keep_alive;
    assert!(!ka(&[]));
    assert!(ka(&["Connection: keep-alive"]));
    assert!(ka(&["Connection: Keep-Alive"]));
    assert!(!ka(&["Connection: close"]));
    assert!(!ka(&["Connection: keep-alive, close"]));
    assert!(!ka(&["Connection: keep-alive", "Connection: close"]));
    assert!(!ka(&["Connection: keepalive"]));
}

#[test]
fn http11_keep_alive_rules() {
    let ka = |headers: &[&str]| ok(&get11(headers)).keep_alive;
    assert!(ka(&[]));
    assert!(ka(&["Connection: keep-alive"]));
    assert!(!ka(&["Connection: close"]));
    assert!(!ka(&["Connection: CLOSE"]));
    assert!(!ka(&["Connection: Close"]));
    // Token match, not substring match.
    assert!(ka(&["Connection: closed"]));
    assert!(ka(&["Connection: x-close"]));
}

#[test]
fn connection_lists() {
    let h = ok(&get11(&[
        "Connection: keep-alive, Upgrade",
        "Upgrade: websocket",
    ]));
    assert!(h.keep_alive);
    assert!(h.upgrade_websocket);

    assert!(!ok(&get11(&["Connection: , close ,,"])).keep_alive);
    assert!(!ok(&get11(&["Connection: foo,\tclose"])).keep_alive);
    assert!(!ok(&get11(&["Connection: Upgrade,close", "Upgrade: websocket"])).keep_alive);
    // Repeated headers are one list.
    let h = ok(&get11(&[
        "Connection: keep-alive",
        "Connection: upgrade",
        "Upgrade: websocket",
    ]));
    assert!(h.keep_alive && h.upgrade_websocket);
    let h = ok(&get_with(
        "HTTP/1.0",
        &["Connection: foo", "Connection: Keep-Alive"],
    ));
    assert!(h.keep_alive);
}

#[test]
fn websocket_needs_upgrade_and_connection_token() {
    let ws = |headers: &[&str]| ok(&get11(headers)).upgrade_websocket;
    assert!(ws(&["Upgrade: websocket", "Connection: upgrade"]));
    assert!(ws(&["Upgrade: foo, WebSocket", "Connection: upgrade"]));
    assert!(!ws(&["Upgrade: websocket"]));
    assert!(!ws(&["Connection: upgrade"]));
    assert!(!ws(&["Upgrade: h2c", "Connection: upgrade"]));
    assert!(!ws(&["Upgrade: websockets", "Connection: upgrade"]));
    assert!(!ws(&["Upgrade: websocket", "Connection: upgraded"]));
    assert!(!ok(&get11(&["Sec-WebSocket-Version: 8"])).ws_version_13);
    assert!(!ok(&get11(&["Sec-WebSocket-Version: 130"])).ws_version_13);
    assert!(ok(&get11(&["Sec-WebSocket-Version:  13 "])).ws_version_13);
}

#[test]
fn single_valued_headers_must_not_repeat() {
    for headers in [
        ["Authorization: a", "Authorization: b"],
        ["Sec-WebSocket-Key: a", "Sec-WebSocket-Key: a"],
        ["Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 13"],
    ] {
        assert!(
            matches!(err(&get11(&headers)), HttpError::BadRequest(_)),
            "{headers:?}"
        );
    }
}

#[test]
fn authorization_is_trimmed_and_optional() {
    let buf = get11(&["Authorization: \t Bearer  two words \t"]);
    let h = ok(&buf);
    assert_eq!(
        h.authorization.map(|a| text(&buf, a)),
        Some("Bearer  two words")
    );
    let buf = get11(&["Authorization:"]);
    assert_eq!(ok(&buf).authorization.map(|a| text(&buf, a)), Some(""));
    assert_eq!(ok(&get11(&[])).authorization, None);
}

#[test]
fn expect_continue() {
    assert!(ok(&get11(&["Expect: 100-continue"])).expect_continue);
    assert!(ok(&get11(&["Expect: 100-Continue"])).expect_continue);
    assert!(!ok(&get11(&["Expect: 200-ok"])).expect_continue);
    assert!(!ok(&get11(&[])).expect_continue);
    // HTTP/1.0 has no 100 status; the expectation is ignored (RFC 9110 §10.1.1).
    assert!(!ok(&get_with("HTTP/1.0", &["Expect: 100-continue"])).expect_continue);
}

#[test]
fn unrelated_headers_are_ignored() {
    let h = ok(&get11(&[
        "Content-Lengthy: x",
        "X-Content-Length: nope",
        "Transfer-Encodings: gzip",
        "Cookie: a=b; c=d",
        "X-Empty:",
    ]));
    assert_eq!(h.body, BodyKind::None);
}

// ---- request-target forms ----

#[test]
fn target_forms() {
    // (target, path, query)
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("/", "/", None),
        ("/a/b", "/a/b", None),
        ("/p?", "/p", Some("")),
        ("/p?q=1", "/p", Some("q=1")),
        ("/p#frag", "/p", None),
        ("/p?q=1#frag", "/p", Some("q=1")),
        ("/p#frag?notquery", "/p", None),
        ("/a?b?c", "/a", Some("b?c")),
        ("/a%2Fb+c", "/a%2Fb+c", None),
        ("//double", "//double", None),
        ("http://example.com/p?q", "/p", Some("q")),
        ("https://u@example.com:8443/a/b#f", "/a/b", None),
        ("http://example.com", "", None),
        ("http://example.com?x=1", "", Some("x=1")),
        ("http://example.com#f", "", None),
        ("*", "*", None),
    ];
    for &(target, path, query) in cases {
        let req = format!("OPTIONS {target} HTTP/1.1\r\nHost: example.com\r\n\r\n");
        let buf = req.as_bytes();
        let h = ok(buf);
        assert_eq!(text(buf, h.target), target);
        assert_eq!(text(buf, h.path), path, "{target}");
        assert_eq!(h.query.map(|q| text(buf, q)), query, "{target}");
    }
}

#[test]
fn invalid_targets() {
    for target in [
        "foo",
        "example.com:443",
        "**",
        "*/x",
        "http:/x",
        "http:x",
        "://x/y",
        "1http://x/",
        "ht tp",
        "http:///p",
        "?q",
        "#f",
    ] {
        let req = format!("GET {target} HTTP/1.1\r\n\r\n");
        assert_eq!(
            parse_head(req.as_bytes()),
            Err(HttpError::BadRequest(if target == "ht tp" {
                MALFORMED
            } else {
                "invalid request-target"
            })),
            "{target}"
        );
    }
    assert!(matches!(
        err(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n"),
        HttpError::BadRequest(_)
    ));
    // httparse rejects targets that are not UTF-8 or contain controls.
    assert!(matches!(
        err(b"GET /\xff HTTP/1.1\r\n\r\n"),
        HttpError::BadRequest(_)
    ));
    assert!(matches!(
        err(b"GET /a\x01b HTTP/1.1\r\n\r\n"),
        HttpError::BadRequest(_)
    ));
    // Non-ASCII UTF-8 is passed through raw.
    let buf = "GET /caf\u{e9} HTTP/1.1\r\n\r\n".as_bytes();
    assert_eq!(text(buf, ok(buf).path), "/caf\u{e9}");
}

// ---- framing: Content-Length / Transfer-Encoding ----

#[test]
fn content_length_valid() {
    assert_eq!(body_of(&["Content-Length: 0"]), Ok(BodyKind::Length(0)));
    assert_eq!(body_of(&["Content-Length: 42"]), Ok(BodyKind::Length(42)));
    assert_eq!(
        body_of(&["Content-Length:  \t7\t "]),
        Ok(BodyKind::Length(7))
    );
    assert_eq!(
        body_of(&["Content-Length: 00042"]),
        Ok(BodyKind::Length(42))
    );
    assert_eq!(
        body_of(&["Content-Length: 18446744073709551615"]),
        Ok(BodyKind::Length(u64::MAX))
    );
    // Identical repeats are allowed.
    assert_eq!(
        body_of(&["Content-Length: 5", "content-length: 5"]),
        Ok(BodyKind::Length(5))
    );
    assert_eq!(
        body_of(&["Content-Length: 5", "content-length: 005"]),
        Ok(BodyKind::Length(5))
    );
}

#[test]
fn content_length_invalid_is_400() {
    for v in [
        "-1",
        "+5",
        "1 2",
        "abc",
        "0x10",
        "1_000",
        "1.0",
        "5,5",
        "5, 5",
        "",
        "99999999999999999999999",
        "18446744073709551616",
        "\u{665}", // Arabic-Indic digit five: not ASCII
    ] {
        let header = format!("Content-Length: {v}");
        assert_eq!(
            body_of(&[header.as_str()]),
            Err(HttpError::BadRequest("invalid Content-Length")),
            "{v:?}"
        );
    }
    assert_eq!(
        body_of(&["Content-Length: 5", "Content-Length: 6"]),
        Err(HttpError::BadRequest("conflicting Content-Length headers"))
    );
    assert!(body_of(&["Content-Length: 5", "Content-Length: x"]).is_err());
}

#[test]
fn transfer_encoding() {
    let chunked = Ok(BodyKind::Chunked);
    assert_eq!(body_of(&["Transfer-Encoding: chunked"]), chunked);
    assert_eq!(body_of(&["Transfer-Encoding: CHUNKED"]), chunked);
    assert_eq!(body_of(&["Transfer-Encoding:  chunked\t"]), chunked);
    assert_eq!(body_of(&["Transfer-Encoding: , chunked ,"]), chunked);

    let unsupported = Err(HttpError::NotImplemented("unsupported transfer-encoding"));
    for te in [
        &["Transfer-Encoding: gzip"][..],
        &["Transfer-Encoding: identity"],
        &["Transfer-Encoding: gzip, chunked"],
        &["Transfer-Encoding: chunked, gzip"],
        &["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"],
        &["Transfer-Encoding: chunked;q=1"],
    ] {
        assert_eq!(body_of(te), unsupported, "{te:?}");
    }

    let invalid = Err(HttpError::BadRequest("invalid Transfer-Encoding"));
    assert_eq!(body_of(&["Transfer-Encoding: chunked, chunked"]), invalid);
    assert_eq!(
        body_of(&["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"]),
        invalid
    );
    assert_eq!(body_of(&["Transfer-Encoding:"]), invalid);
    assert_eq!(body_of(&["Transfer-Encoding: ,"]), invalid);
}

#[test]
fn transfer_encoding_with_content_length_is_400() {
    let smuggle = Err(HttpError::BadRequest(
        "both Transfer-Encoding and Content-Length",
    ));
    assert_eq!(
        body_of(&["Transfer-Encoding: chunked", "Content-Length: 5"]),
        smuggle
    );
    assert_eq!(
        body_of(&["Content-Length: 5", "Transfer-Encoding: chunked"]),
        smuggle
    );
    assert_eq!(
        body_of(&["Content-Length: 0", "Transfer-Encoding: gzip"]),
        smuggle
    );
}

#[test]
fn transfer_encoding_in_http10_is_400() {
    for te in ["Transfer-Encoding: chunked", "Transfer-Encoding: gzip"] {
        let req = get_with("HTTP/1.0", &[te]);
        assert_eq!(
            err(&req),
            HttpError::BadRequest("Transfer-Encoding in HTTP/1.0 request")
        );
    }
    // Content-Length is fine in 1.0.
    assert_eq!(
        ok(&get_with("HTTP/1.0", &["Content-Length: 3"])).body,
        BodyKind::Length(3)
    );
}

// ---- versions ----

#[test]
fn versions() {
    assert_eq!(ok(b"GET / HTTP/1.0\r\n\r\n").minor_version, 0);
    assert_eq!(ok(b"GET / HTTP/1.1\r\n\r\n").minor_version, 1);
    for req in [
        &b"GET / HTTP/2.0\r\n\r\n"[..],
        b"GET / HTTP/2",
        b"GET / HTTP/3\r\n",
        b"GET / HTTP/1.2\r\n\r\n",
        b"GET / HTTP/10.0\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        assert_eq!(
            parse_head(req),
            Err(HttpError::VersionNotSupported),
            "{:?}",
            lossy(req)
        );
    }
    for req in [
        &b"GET / HTTX/1.1\r\n\r\n"[..],
        b"GET / http/1.1\r\n\r\n",
        b"GET / HTTP/x\r\n\r\n",
        b"GET / HTTP/\r\n\r\n",
        b"GET /  HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 \r\n\r\n",
        b"GET /\r\n\r\n",
    ] {
        assert_eq!(
            parse_head(req),
            Err(HttpError::BadRequest(MALFORMED)),
            "{:?}",
            lossy(req)
        );
    }
    let full = b"GET / HTTP/1.1\r\n\r\n";
    for n in 0..full.len() {
        assert_eq!(parse_head(&full[..n]), Ok(None), "prefix {n}");
    }
}

// ---- lenient/strict line handling ----

#[test]
fn leading_empty_lines_are_skipped_and_counted() {
    let buf = b"\r\n\r\nGET /x HTTP/1.1\r\n\r\n";
    let h = ok(buf);
    assert_eq!(h.header_len as usize, buf.len());
    assert_eq!(h.target, (8, 10));
    assert_eq!(text(buf, h.path), "/x");
    assert_eq!(parse_head(b"\r\n"), Ok(None));
    assert_eq!(parse_head(b"\r\n\r\n\r\n"), Ok(None));
}

#[test]
fn bare_lf_line_endings_are_accepted_in_the_head() {
    // httparse follows RFC 9112 §2.2 here (a recipient MAY accept a lone LF).
    let buf = b"GET /a HTTP/1.1\nHost: x\nContent-Length: 2\n\nhi";
    let h = ok(buf);
    assert_eq!(h.header_len as usize, buf.len() - 2);
    assert_eq!(h.body, BodyKind::Length(2));
}

#[test]
fn smuggling_shaped_headers_are_rejected() {
    for req in [
        // Whitespace between name and colon (RFC 9112 §5.1: MUST reject).
        &b"GET / HTTP/1.1\r\nContent-Length : 5\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nTransfer-Encoding\t: chunked\r\n\r\n",
        // Obsolete line folding.
        b"GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n",
        // Whitespace before the first header.
        b"GET / HTTP/1.1\r\n Host: x\r\n\r\n",
        // CR without LF.
        b"GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\rHost: x\r\n\r\n",
    ] {
        assert_eq!(
            parse_head(req),
            Err(HttpError::BadRequest(MALFORMED)),
            "{:?}",
            lossy(req)
        );
    }
}

#[test]
fn garbage_is_bad_request() {
    let garbage: &[&[u8]] = &[
        b"\x00\x01",
        b"\x00",
        b"\x16\x03\x01",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x9c\x8f",
        b"\xff\xfe\xfd\xfc",
        b" GET / HTTP/1.1\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost\r\n\r\n",
        b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
        b"GET / HTTP/1.1\r\n: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX\x80: a\r\n\r\n",
        b"{\"json\": true}",
        b"<html>",
    ];
    for g in garbage {
        assert!(
            matches!(parse_head(g), Err(HttpError::BadRequest(_))),
            "{:?}",
            lossy(g)
        );
        // No prefix of garbage may panic either.
        for n in 0..g.len() {
            let _ = parse_head(&g[..n]);
        }
    }
}

// ---- limits ----

#[test]
fn long_target_is_414_at_every_stage() {
    let over = "a".repeat(MAX_URI_BYTES); // "/" + this = MAX_URI_BYTES + 1
    let complete = format!("GET /{over} HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(err(complete.as_bytes()), HttpError::UriTooLong);
    // The request line has arrived, the headers have not.
    let line_only = format!("GET /{over} HTTP/1.1\r\n");
    assert_eq!(err(line_only.as_bytes()), HttpError::UriTooLong);
    // The target is still arriving and already over the limit.
    let pending = format!("GET /{over}");
    assert_eq!(err(pending.as_bytes()), HttpError::UriTooLong);
    // Every prefix is "wait" until it is provably too long, then 414, never anything else.
    let mut seen_error = false;
    for n in 0..=complete.len() {
        match parse_head(&complete.as_bytes()[..n]) {
            Ok(None) => assert!(!seen_error && n <= 4 + MAX_URI_BYTES, "prefix {n}"),
            Err(HttpError::UriTooLong) => seen_error = true,
            other => panic!("prefix {n}: {other:?}"),
        }
    }
    // With lots of headers after it, still 414 (not 431) whether complete or not.
    let big = format!(
        "GET /{over} HTTP/1.1\r\nX: {}\r\n\r\n",
        "b".repeat(MAX_HEADER_BYTES)
    );
    assert_eq!(err(big.as_bytes()), HttpError::UriTooLong);
    assert_eq!(
        err(&big.as_bytes()[..MAX_HEADER_BYTES + 1]),
        HttpError::UriTooLong
    );
    // Absolute-form targets are measured the same way.
    let abs = format!(
        "GET http://h/{} HTTP/1.1\r\n\r\n",
        "a".repeat(MAX_URI_BYTES)
    );
    assert_eq!(err(abs.as_bytes()), HttpError::UriTooLong);
}

#[test]
fn target_at_the_limit_is_accepted() {
    let path = format!("/{}", "a".repeat(MAX_URI_BYTES - 1));
    let req = format!("GET {path} HTTP/1.1\r\n\r\n");
    let h = ok(req.as_bytes());
    assert_eq!(text(req.as_bytes(), h.path), path);
    assert_eq!((h.target.1 - h.target.0) as usize, MAX_URI_BYTES);
    // And while it is still arriving it is waited for.
    assert_eq!(parse_head(format!("GET {path}").as_bytes()), Ok(None));
}

#[test]
fn request_line_without_newline_over_head_limit_is_414() {
    // No space either, so not even the method has ended.
    assert_eq!(parse_head(&[b'A'; MAX_HEADER_BYTES]), Ok(None));
    assert_eq!(err(&[b'A'; MAX_HEADER_BYTES + 1]), HttpError::UriTooLong);
    assert_eq!(
        err(&vec![b'A'; 3 * MAX_HEADER_BYTES]),
        HttpError::UriTooLong
    );
}

/// A complete head of exactly `len` bytes, padded with one header.
fn head_of_len(len: usize) -> Vec<u8> {
    let fixed = "GET / HTTP/1.1\r\nX-Pad: \r\n\r\n".len();
    format!(
        "GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(len - fixed)
    )
    .into_bytes()
}

#[test]
fn head_size_limit_is_exact() {
    let at = head_of_len(MAX_HEADER_BYTES);
    assert_eq!(ok(&at).header_len as usize, MAX_HEADER_BYTES);
    // Bytes after the head (a body) do not count.
    let mut with_body = at.clone();
    with_body.extend_from_slice(b"trailing body bytes");
    assert_eq!(ok(&with_body).header_len as usize, MAX_HEADER_BYTES);
    // One byte more is 431, complete or not.
    let over = head_of_len(MAX_HEADER_BYTES + 1);
    assert_eq!(err(&over), HttpError::HeaderTooLarge);
    assert_eq!(
        err(&over[..MAX_HEADER_BYTES + 1]),
        HttpError::HeaderTooLarge
    );
    // At MAX_HEADER_BYTES and incomplete: it might still end exactly here, so wait.
    assert_eq!(parse_head(&over[..MAX_HEADER_BYTES]), Ok(None));
}

#[test]
fn huge_header_is_431_partial_and_complete() {
    let value = "v".repeat(MAX_HEADER_BYTES);
    let complete = format!("GET / HTTP/1.1\r\nX-Big: {value}\r\n\r\n");
    assert_eq!(err(complete.as_bytes()), HttpError::HeaderTooLarge);
    let partial = format!("GET / HTTP/1.1\r\nX-Big: {value}");
    assert_eq!(err(partial.as_bytes()), HttpError::HeaderTooLarge);
    assert_eq!(
        parse_head(&partial.as_bytes()[..MAX_HEADER_BYTES]),
        Ok(None)
    );
    // Many moderate headers that add up count the same.
    let mut many = String::from("GET / HTTP/1.1\r\n");
    for i in 0..40 {
        many.push_str(&format!("X-{i}: {}\r\n", "c".repeat(500)));
    }
    assert_eq!(err(many.as_bytes()), HttpError::HeaderTooLarge);
    // A request line that is long only because of its method, with a target within the
    // limit, followed by too many header bytes: the headers are the problem, so 431.
    let method = "M".repeat(64);
    let target = format!("/{}", "t".repeat(MAX_URI_BYTES - 1));
    let req = format!("{method} {target} HTTP/1.1\r\nX: {value}\r\n\r\n");
    assert_eq!(err(req.as_bytes()), HttpError::HeaderTooLarge);
    assert_eq!(
        err(&req.as_bytes()[..MAX_HEADER_BYTES + 1]),
        HttpError::HeaderTooLarge
    );
    // A flood of empty lines before the request line is no way around the limit.
    assert_eq!(
        err(&b"\r\n".repeat(MAX_HEADER_BYTES)),
        HttpError::HeaderTooLarge
    );
}

fn with_n_headers(n: usize, complete: bool) -> Vec<u8> {
    let mut s = String::from("GET / HTTP/1.1\r\n");
    for i in 0..n {
        s.push_str(&format!("X-{i}: {i}\r\n"));
    }
    if complete {
        s.push_str("\r\n");
    }
    s.into_bytes()
}

#[test]
fn header_count_limit() {
    assert_eq!(ok(&with_n_headers(MAX_HEADERS, true)).body, BodyKind::None);
    assert_eq!(parse_head(&with_n_headers(MAX_HEADERS, false)), Ok(None));
    assert_eq!(
        err(&with_n_headers(MAX_HEADERS + 1, true)),
        HttpError::HeaderTooLarge
    );
    // Already an error before the head is complete.
    assert_eq!(
        err(&with_n_headers(MAX_HEADERS + 1, false)),
        HttpError::HeaderTooLarge
    );
    assert_eq!(err(&with_n_headers(1000, true)), HttpError::HeaderTooLarge);
}

// ---- pipelining and split input ----

#[test]
fn pipelined_requests() {
    let stream = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nPOST /second?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloDELETE /third HTTP/1.1\r\nConnection: close\r\n\r\n";
    let first = ok(stream);
    assert_eq!(text(stream, first.path), "/first");
    let rest = &stream[first.header_len as usize..];
    let second = ok(rest);
    assert_eq!(second.method, Method::Post);
    assert_eq!(text(rest, second.path), "/second");
    assert_eq!(second.query.map(|q| text(rest, q)), Some("x=1"));
    assert_eq!(second.body, BodyKind::Length(5));
    let body_start = second.header_len as usize;
    assert_eq!(&rest[body_start..body_start + 5], b"hello");
    let rest = &rest[body_start + 5..];
    let third = ok(rest);
    assert_eq!(third.method, Method::Delete);
    assert_eq!(text(rest, third.path), "/third");
    assert!(!third.keep_alive);
    assert_eq!(third.header_len as usize, rest.len());
}

/// Decodes a chunked body all at once, one byte at a time and split at every position,
/// checks all agree, and returns (body, bytes consumed).
fn decode_every_split(input: &[u8]) -> (Vec<u8>, usize) {
    let mut whole = Vec::new();
    let (used, done) = ChunkedDecoder::new(1 << 20)
        .feed(input, &mut whole)
        .unwrap();
    assert!(done);

    let mut dec = ChunkedDecoder::new(1 << 20);
    let mut bytewise = Vec::new();
    let mut consumed = 0;
    for i in 0..input.len() {
        let (n, done) = dec.feed(&input[i..=i], &mut bytewise).unwrap();
        consumed += n;
        assert_eq!(done, consumed == used);
    }
    assert_eq!((&bytewise, consumed), (&whole, used));

    for k in 0..=used {
        let mut dec = ChunkedDecoder::new(1 << 20);
        let mut out = Vec::new();
        let (a, done_a) = dec.feed(&input[..k], &mut out).unwrap();
        assert_eq!((a, done_a), (k, k == used));
        let (b, done_b) = dec.feed(&input[a..], &mut out).unwrap();
        assert!(done_b);
        assert_eq!((a + b, &out), (used, &whole), "split at {k}");
    }
    (whole, used)
}

/// Parses a stream of pipelined requests, checking that every prefix of each head gives
/// Ok(None) until it is complete and then always the same Head; returns heads and bodies.
fn parse_stream_every_split(stream: &[u8]) -> Vec<(Head, Vec<u8>)> {
    let mut requests = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        let rest = &stream[pos..];
        let head = ok(rest);
        let head_len = head.header_len as usize;
        for n in 0..head_len {
            assert_eq!(
                parse_head(&rest[..n]),
                Ok(None),
                "prefix {n} of {:?}",
                lossy(rest)
            );
        }
        for n in head_len..=rest.len() {
            assert_eq!(parse_head(&rest[..n]), Ok(Some(head)), "prefix {n}");
        }
        let after = &rest[head_len..];
        let (body, body_len) = match head.body {
            BodyKind::None => (Vec::new(), 0),
            BodyKind::Length(n) => (after[..n as usize].to_vec(), n as usize),
            BodyKind::Chunked => decode_every_split(after),
        };
        requests.push((head, body));
        pos += head_len + body_len;
    }
    requests
}

#[test]
fn input_split_at_every_byte() {
    let get = b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
    let got = parse_stream_every_split(get);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.header_len as usize, get.len());

    let post = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world";
    let got = parse_stream_every_split(post);
    assert_eq!(got[0].1, b"hello world");

    let chunked = b"PUT /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n";
    let got = parse_stream_every_split(chunked);
    assert_eq!(got[0].0.body, BodyKind::Chunked);
    assert_eq!(got[0].1, b"hello world");

    let ws =
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert!(parse_stream_every_split(ws)[0].0.upgrade_websocket);
}

#[test]
fn pipeline_split_at_every_byte() {
    let mut stream = Vec::new();
    stream.extend_from_slice(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.extend_from_slice(b"POST /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    stream.extend_from_slice(
            b"POST /3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\nA\r\n0123456789\r\n0\r\n\r\n",
        );
    stream.extend_from_slice(b"GET /4 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    stream.extend_from_slice(b"GET /5 HTTP/1.1\r\nConnection: close\r\n\r\n");
    let got = parse_stream_every_split(&stream);
    let summary: Vec<_> = got
        .iter()
        .map(|(h, body)| (h.method, h.body, h.keep_alive, body.as_slice()))
        .collect();
    assert_eq!(
        summary,
        [
            (Method::Get, BodyKind::None, true, &b""[..]),
            (Method::Post, BodyKind::Length(3), true, b"abc"),
            (Method::Post, BodyKind::Chunked, true, b"xyz0123456789"),
            (Method::Get, BodyKind::None, true, b""),
            (Method::Get, BodyKind::None, false, b""),
        ]
    );
}

// ---- randomized: never panic, invariants hold ----

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SEEDS: &[&[u8]] = &[
        b"GET /a/b?c=d&e#f HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
        b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;e=v\r\nhello\r\n0\r\nT: v\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: a\r\nSec-WebSocket-Version: 13\r\n\r\n",
        b"OPTIONS * HTTP/1.0\r\nAuthorization: Basic x\r\n\r\n",
        b"GET http://h:80/p?q HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
        b"1a;x=\"y z\"\r\n0123456789abcdefghijklmnop\r\n0\r\nA: b\r\nC: d\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ];

const INTERESTING: &[u8] = b" \t\r\n:;,=?#%/*0123456789abcdefABCDEF-+\x00\x7f\x80\xff";

fn random_input(rng: &mut XorShift) -> Vec<u8> {
    let mut v = match rng.below(5) {
        0 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
        1 => (0..rng.below(300))
            .map(|_| INTERESTING[rng.below(INTERESTING.len())])
            .collect(),
        _ => SEEDS[rng.below(SEEDS.len())].to_vec(),
    };
    for _ in 0..rng.below(5) {
        let pos = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if pos < v.len() => v[pos] = rng.next() as u8,
            1 => v.insert(pos, INTERESTING[rng.below(INTERESTING.len())]),
            2 if pos < v.len() => {
                v.remove(pos);
            }
            3 => v.truncate(pos),
            4 => {
                let end = (pos + rng.below(24)).min(v.len());
                let piece = v[pos..end].to_vec();
                v.splice(pos..pos, piece);
            }
            _ if pos < v.len() => v[pos] = INTERESTING[rng.below(INTERESTING.len())],
            _ => {}
        }
    }
    // Now and then blow a piece up past the limits.
    if rng.below(100) == 0 && !v.is_empty() {
        let pos = rng.below(v.len());
        let piece = v[pos..].to_vec();
        while v.len() <= MAX_HEADER_BYTES + 64 {
            v.extend_from_slice(&piece);
        }
    }
    v
}

fn check_head_invariants(input: &[u8]) {
    match parse_head(input) {
        Ok(Some(h)) => {
            let head_len = h.header_len as usize;
            assert!(head_len <= input.len() && head_len <= MAX_HEADER_BYTES);
            let ranges = [
                Some(h.target),
                Some(h.path),
                h.query,
                h.authorization,
                h.ws_key,
            ];
            for r in ranges.into_iter().flatten() {
                assert!(r.0 <= r.1 && r.1 as usize <= head_len, "{r:?} in {h:?}");
            }
            assert!(h.target.0 <= h.path.0 && h.path.1 <= h.target.1);
            if let Some(q) = h.query {
                assert!(q.0 == h.path.1 + 1 && q.1 <= h.target.1);
            }
            assert!((h.target.1 - h.target.0) as usize <= MAX_URI_BYTES);
            assert!(h.minor_version <= 1);
            if h.body == BodyKind::Chunked {
                assert_eq!(h.minor_version, 1);
            }
            // The head alone decides; what follows it does not matter.
            assert_eq!(parse_head(&input[..head_len]), Ok(Some(h)));
        }
        Ok(None) => assert!(input.len() <= MAX_HEADER_BYTES),
        Err(e) => {
            assert!(matches!(e.status(), 400 | 414 | 431 | 501 | 505), "{e:?}");
            assert!(!e.message().is_empty());
        }
    }
}

const FUZZ_MAX_BODY: usize = 64;

/// Feeding in random pieces must give exactly what feeding at once gives.
fn check_chunked_invariants(input: &[u8], rng: &mut XorShift) {
    let mut whole = Vec::new();
    let at_once = ChunkedDecoder::new(FUZZ_MAX_BODY).feed(input, &mut whole);
    if let Ok((used, done)) = at_once {
        assert!(used <= input.len() && (done || used == input.len()));
    }
    assert!(whole.len() <= FUZZ_MAX_BODY);

    let mut dec = ChunkedDecoder::new(FUZZ_MAX_BODY);
    let mut pieces = Vec::new();
    let mut consumed = 0;
    let mut pos = 0;
    let in_pieces = loop {
        let end = (pos + rng.below(12)).min(input.len());
        match dec.feed(&input[pos..end], &mut pieces) {
            Err(e) => break Err(e),
            Ok((n, done)) => {
                consumed += n;
                if done || end == input.len() {
                    break Ok((consumed, done));
                }
            }
        }
        pos = end;
    };
    assert_eq!(in_pieces, at_once, "{:?}", lossy(input));
    if at_once.is_ok() {
        assert_eq!(pieces, whole);
    }
}

#[test]
fn random_inputs_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..10_000 {
        let input = random_input(&mut rng);
        check_head_invariants(&input);
        check_chunked_invariants(&input, &mut rng);
    }
}
