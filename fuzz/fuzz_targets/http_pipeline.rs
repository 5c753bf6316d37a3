//! The HTTP request path of a connection (`net::conn`), without the socket: every
//! pipelined head in the buffer is parsed (`http::parse::parse_head`), its path
//! percent-decoded and routed, and its body taken by Content-Length or decoded by the
//! chunked decoder (`http::chunked`) with the same buffer compaction the connection
//! does, the bytes arriving in pieces whose sizes the first input byte chooses.
//!
//! Checked besides "never panics": the same bytes give the same requests, bodies and
//! final error however they are split into reads (each run is compared with one that
//! gets everything at once), every range of a head lies inside the head and re-parses
//! to the same head from exactly its own bytes, and the decoded body is never over the
//! route's limit.
#![no_main]

use flux::api::history::HistoryQuery;
use flux::api::list::ListQuery;
use flux::auth::token;
use flux::http::chunked::ChunkedDecoder;
use flux::http::parse::{
    parse_head, range_slice, requires_body, BodyKind, Head, Method, MAX_HEADER_BYTES, MAX_URI_BYTES,
};
use flux::http::query::percent_decode;
use flux::http::route::{self, BodyClass, Endpoint, Route};
use flux::limits::{BODY_BATCH_BYTES_MAX, BODY_OTHER_BYTES_MAX, BODY_SINGLE_BYTES_MAX};
use flux::ws::upgrade;
use libfuzzer_sys::fuzz_target;

/// What the connection did with one request.
#[derive(Debug, PartialEq, Eq)]
struct Served {
    head: Head,
    path: Vec<u8>,
    route: Route,
    body: Vec<u8>,
    /// `ws::upgrade::check`: the accept key, or the refusal's status.
    upgrade: Option<Result<String, u16>>,
}

/// How the connection's loop ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Input exhausted while waiting for more (a head or a body not complete yet).
    NeedMore,
    /// Answered with this status and closed.
    Failed(u16),
    /// `Connection: close`, HTTP/1.0 without keep-alive, or a WebSocket upgrade.
    Closed,
}

/// Bytes handed out in pieces of pseudo-random sizes.
struct Reads<'a> {
    rest: &'a [u8],
    rng: u64,
    /// Largest piece; `usize::MAX` hands everything over in one read.
    max_piece: usize,
}

impl<'a> Reads<'a> {
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let n = if self.max_piece == usize::MAX {
            self.rest.len()
        } else {
            1 + (self.rng % self.max_piece as u64) as usize
        };
        let (piece, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        Some(piece)
    }
}

fn body_limit(route: Route) -> usize {
    match route.body_class() {
        BodyClass::Single => BODY_SINGLE_BYTES_MAX,
        BodyClass::Batch => BODY_BATCH_BYTES_MAX,
        BodyClass::Other => BODY_OTHER_BYTES_MAX,
    }
}

/// The invariants of a complete head parsed from `buf`.
fn check_head(buf: &[u8], h: &Head) {
    let head_len = h.header_len as usize;
    assert!(head_len <= buf.len() && head_len <= MAX_HEADER_BYTES);
    for r in [
        Some(h.target),
        Some(h.path),
        h.query,
        h.authorization,
        h.ws_key,
    ]
    .into_iter()
    .flatten()
    {
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
    if h.minor_version == 0 {
        assert!(!h.expect_continue);
    }
    // The head alone decides: its own bytes give the same head.
    assert_eq!(parse_head(&buf[..head_len]), Ok(Some(*h)));
}

/// What the handlers parse from the head before touching state.
fn handler_inputs(buf: &[u8], head: &Head, route: Route) {
    let query = head.query.map(|q| range_slice(buf, q));
    match route {
        Route::Found(Endpoint::ListEntities) => {
            let _ = ListQuery::parse(query);
        }
        Route::Found(Endpoint::History) => {
            if let Ok(q) = HistoryQuery::parse(query) {
                assert!(!q.entity.is_empty() && (1..=500).contains(&q.limit));
            }
        }
        _ => {}
    }
    if let Some(a) = head.authorization {
        if let Some(t) = token::bearer(range_slice(buf, a)) {
            assert!(!t.is_empty());
        }
    }
}

/// Runs the connection's read → parse → body loop over `reads`.
fn serve(mut reads: Reads<'_>) -> (Vec<Served>, End) {
    let mut rbuf: Vec<u8> = Vec::new();
    let mut start = 0;
    let mut served = Vec::new();
    let mut path = Vec::new();
    loop {
        let head = match parse_head(&rbuf[start..]) {
            Ok(Some(head)) => head,
            Ok(None) => match reads.next() {
                Some(piece) => {
                    rbuf.extend_from_slice(piece);
                    continue;
                }
                None => return (served, End::NeedMore),
            },
            Err(e) => return (served, End::Failed(e.status())),
        };
        check_head(&rbuf[start..], &head);
        let header_len = head.header_len as usize;
        if let Err(e) = percent_decode(range_slice(&rbuf[start..], head.path), false, &mut path) {
            return (served, End::Failed(e.status()));
        }
        assert!(std::str::from_utf8(&path).is_ok());
        let is_head = head.method == Method::Head;
        let method = if is_head { Method::Get } else { head.method };
        let route = route::route(method, &path);
        if let Route::MethodNotAllowed(allow) = route {
            assert!(allow.starts_with(b"Allow: ") && allow.ends_with(b"\r\n"));
        }
        if route == Route::Found(Endpoint::WebSocket) && !is_head {
            let checked = upgrade::check(&head, &rbuf[start..]).map_err(|r| r.status);
            if let Ok(accept) = &checked {
                // base64 of a SHA-1: 28 characters.
                assert_eq!(accept.len(), 28, "{accept:?}");
            }
            served.push(Served {
                head,
                path: path.clone(),
                route,
                body: Vec::new(),
                upgrade: Some(checked),
            });
            return (served, End::Closed);
        }
        let limit = body_limit(route);
        let mut body = Vec::new();
        let consumed = match head.body {
            BodyKind::None => {
                if requires_body(head.method) && matches!(route, Route::Found(_)) {
                    return (served, End::Failed(411));
                }
                header_len
            }
            BodyKind::Length(n) => {
                if n > limit as u64 {
                    return (served, End::Failed(413));
                }
                let total = header_len + n as usize;
                while rbuf.len() - start < total {
                    match reads.next() {
                        Some(piece) => rbuf.extend_from_slice(piece),
                        None => return (served, End::NeedMore),
                    }
                }
                body.extend_from_slice(&rbuf[start + header_len..start + total]);
                total
            }
            BodyKind::Chunked => {
                let mut dec = ChunkedDecoder::new(limit);
                let mut pos = start + header_len;
                loop {
                    match dec.feed(&rbuf[pos..], &mut body) {
                        Ok((used, done)) => {
                            assert!(pos + used <= rbuf.len());
                            pos += used;
                            if done {
                                assert!(dec.is_done());
                                break;
                            }
                            assert_eq!(pos, rbuf.len(), "all input is consumed until done");
                        }
                        Err(e) => {
                            // Sticky: the same error again.
                            assert_eq!(dec.feed(b"0\r\n\r\n", &mut Vec::new()), Err(e));
                            return (served, End::Failed(e.status()));
                        }
                    }
                    assert!(body.len() <= limit);
                    // The connection drops consumed framing behind the head.
                    let keep = start + header_len;
                    rbuf.copy_within(pos.., keep);
                    rbuf.truncate(keep + (rbuf.len() - pos));
                    pos = keep;
                    match reads.next() {
                        Some(piece) => rbuf.extend_from_slice(piece),
                        None => return (served, End::NeedMore),
                    }
                }
                assert!(body.len() <= limit);
                pos - start
            }
        };
        handler_inputs(&rbuf[start..], &head, route);
        let keep_alive = head.keep_alive;
        served.push(Served {
            head,
            path: path.clone(),
            route,
            body,
            upgrade: None,
        });
        if !keep_alive {
            return (served, End::Closed);
        }
        start += consumed;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let at_once = serve(Reads {
        rest: stream,
        rng: 1,
        max_piece: usize::MAX,
    });
    // Pieces of 1 byte up to 1..=256 bytes, as the seed says.
    let max_piece = [1, 2, 3, 5, 8, 16, 64, 256][usize::from(seed & 7)];
    let in_pieces = serve(Reads {
        rest: stream,
        rng: u64::from(seed) | 0x9E37_79B9_7F4A_7C00,
        max_piece,
    });
    assert_eq!(
        at_once, in_pieces,
        "split into pieces of at most {max_piece}"
    );
});
