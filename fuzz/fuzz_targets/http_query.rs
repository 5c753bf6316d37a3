//! Percent-decoding (`http::query::percent_decode`), query pairs (`query_pairs`),
//! routing (`http::route::route`) and the handlers' query parsers (`ListQuery`,
//! `HistoryQuery`, with `time::parse_rfc3339_ms` behind `since=`), plus the bearer
//! token parser, on a raw request-target `path?query`.
//!
//! Checked besides "never panics": decoding agrees exactly with a plain reference
//! decoder written here, query pairs with a reference splitter, and what the query
//! parsers return keeps their documented bounds.
#![no_main]

use flux::api::history::{HistoryQuery, HISTORY_LIMIT_MAX};
use flux::api::list::ListQuery;
use flux::auth::token;
use flux::http::parse::Method;
use flux::http::query::{percent_decode, query_pairs};
use flux::http::route::{route, Route};
use libfuzzer_sys::fuzz_target;

/// The reference: `%XX` (hex, either case) is one byte, '+' a space in query values,
/// anything else itself; a '%' not followed by two hex digits, or a result that is not
/// UTF-8, is an error.
fn reference_decode(raw: &[u8], plus_as_space: bool) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let hi = hex(*raw.get(i + 1)?)?;
                let lo = hex(*raw.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&out).ok()?;
    Some(out)
}

fn check_decode(raw: &[u8], out: &mut Vec<u8>) {
    for plus_as_space in [false, true] {
        let got = percent_decode(raw, plus_as_space, out)
            .ok()
            .map(|()| out.clone());
        assert_eq!(
            got,
            reference_decode(raw, plus_as_space),
            "plus={plus_as_space}"
        );
        if let Some(decoded) = got {
            assert!(decoded.len() <= raw.len());
        }
    }
}

const METHODS: [Method; 8] = [
    Method::Get,
    Method::Head,
    Method::Post,
    Method::Put,
    Method::Delete,
    Method::Options,
    Method::Patch,
    Method::Other,
];

fuzz_target!(|data: &[u8]| {
    let (path, query) = match data.iter().position(|&b| b == b'?') {
        Some(q) => (&data[..q], Some(&data[q + 1..])),
        None => (data, None),
    };
    let mut out = Vec::new();
    check_decode(path, &mut out);
    if percent_decode(path, false, &mut out).is_ok() {
        for m in METHODS {
            if let Route::MethodNotAllowed(allow) = route(m, &out) {
                assert!(allow.starts_with(b"Allow: ") && allow.ends_with(b"\r\n"));
            }
        }
    }

    let raw = query.unwrap_or(b"");
    let reference: Vec<(&[u8], &[u8])> = raw
        .split(|&b| b == b'&')
        .filter(|s| !s.is_empty())
        .map(|s| match s.iter().position(|&b| b == b'=') {
            Some(eq) => (&s[..eq], &s[eq + 1..]),
            None => (s, &s[s.len()..]),
        })
        .collect();
    let pairs: Vec<(&[u8], &[u8])> = query_pairs(raw).collect();
    assert_eq!(pairs, reference);
    for (k, v) in pairs {
        check_decode(k, &mut out);
        check_decode(v, &mut out);
    }

    if let Ok(q) = ListQuery::parse(query) {
        if let Some(after) = &q.after {
            let _ = after.len();
        }
        let mut restricted = q.clone();
        restricted.restrict(b"scope/");
        assert!(restricted.empty || restricted.prefix.starts_with(b"scope/"));
    }
    if let Ok(q) = HistoryQuery::parse(query) {
        assert!(!q.entity.is_empty());
        assert!((1..=HISTORY_LIMIT_MAX).contains(&q.limit));
    }
    if let Some(t) = token::bearer(data) {
        assert!(!t.is_empty() && t.len() <= data.len());
    }
});
