//! The browser console: `GET /` and `GET /ui/…` answer hand-written static assets
//! (`src/ui/assets/`) embedded in the binary. The page talks to the server only
//! through the public API (same-origin fetch and `/api/ws`), so it sees exactly what
//! its token may read; nothing here touches a shard or the ingest path.
//!
//! Each asset carries an ETag computed at compile time (FNV-1a of its bytes), answers
//! `If-None-Match` with 304, and is sent with a strict Content-Security-Policy: scripts
//! and styles only from this origin, no inline code, no frames, no third party.

use crate::http::respond::{self, Persist};

/// One embedded file.
struct Asset {
    path: &'static [u8],
    content_type: &'static [u8],
    body: &'static [u8],
    /// `ETag: "…"\r\n`, whole.
    etag_line: &'static [u8],
}

/// FNV-1a, 64 bits: a content hash for the ETag, evaluated by the compiler.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

/// `ETag: "<16 hex digits>"\r\n` (26 bytes).
const fn etag_line(bytes: &[u8]) -> [u8; 26] {
    let mut out = *b"ETag: \"0000000000000000\"\r\n";
    let h = fnv1a(bytes);
    let mut i = 0;
    while i < 16 {
        out[7 + i] = b"0123456789abcdef"[((h >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!("assets/", $file));
        const ETAG: [u8; 26] = etag_line(BODY);
        Asset {
            path: $path,
            content_type: $type,
            body: BODY,
            etag_line: &ETAG,
        }
    }};
}

const ASSETS: &[Asset] = &[
    asset!(b"/", "index.html", b"text/html; charset=utf-8"),
    asset!(
        b"/ui/console.js",
        "console.js",
        b"text/javascript; charset=utf-8"
    ),
    asset!(
        b"/ui/console.css",
        "console.css",
        b"text/css; charset=utf-8"
    ),
];

/// Headers of every asset answer. `connect-src 'self'` covers the same-origin
/// WebSocket (`ws:`/`wss:` of this host) in CSP Level 3 browsers.
const SECURITY_HEADERS: &[u8] = b"Content-Security-Policy: default-src 'none'; \
script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n\
X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
Cache-Control: no-cache\r\n";

/// Answers `GET path` (`/` or `/ui/…`; `/ui/` and `/ui/index.html` are the page too).
pub fn serve(path: &[u8], if_none_match: Option<&[u8]>, persist: Persist, out: &mut Vec<u8>) {
    let path = match path {
        b"/ui" | b"/ui/" | b"/ui/index.html" => b"/",
        p => p,
    };
    let Some(a) = ASSETS.iter().find(|a| a.path == path) else {
        respond::error(out, 404, persist, b"", "not found");
        return;
    };
    let extra: [&[u8]; 2] = [a.etag_line, SECURITY_HEADERS];
    let fresh = if_none_match.is_some_and(|v| etag_matches(v, etag_value(a.etag_line)));
    respond::asset(
        out,
        persist,
        a.content_type,
        &extra,
        (!fresh).then_some(a.body),
    );
}

/// The quoted tag inside an `ETag: …\r\n` line.
fn etag_value(line: &[u8]) -> &[u8] {
    &line[b"ETag: ".len()..line.len() - 2]
}

/// If-None-Match's weak comparison (RFC 9110 §13.1.2): `*`, or any listed tag equal to
/// ours once a `W/` prefix is dropped.
fn etag_matches(header: &[u8], ours: &[u8]) -> bool {
    header.split(|&b| b == b',').any(|item| {
        let item = item.trim_ascii();
        item == b"*" || item.strip_prefix(b"W/").unwrap_or(item) == ours
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(path: &[u8], inm: Option<&[u8]>) -> String {
        let mut out = Vec::new();
        serve(path, inm, Persist::KeepAlive11, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn etag_is_the_content_hash() {
        let line = etag_line(b"abc");
        assert_eq!(&line[..], b"ETag: \"e71fa2190541574b\"\r\n");
        assert_eq!(etag_value(&line), b"\"e71fa2190541574b\"");
    }

    #[test]
    fn conditional_get_answers_304_without_a_body() {
        let first = answer(b"/", None);
        assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
        assert!(first.contains("Content-Type: text/html; charset=utf-8\r\n"));
        assert!(first.contains("Content-Security-Policy: default-src 'none';"));
        let tag = first
            .lines()
            .find_map(|l| l.strip_prefix("ETag: "))
            .unwrap()
            .to_string();
        let again = answer(b"/", Some(tag.as_bytes()));
        assert!(
            again.starts_with("HTTP/1.1 304 Not Modified\r\n"),
            "{again}"
        );
        assert!(again.ends_with("\r\n\r\n") && !again.contains("Content-Length"));
        assert!(again.contains(&format!("ETag: {tag}\r\n")));
        let list = format!("\"x\", W/{tag}");
        assert!(answer(b"/", Some(list.as_bytes())).starts_with("HTTP/1.1 304"));
        assert!(answer(b"/", Some(b"\"other\"")).starts_with("HTTP/1.1 200"));
        assert!(answer(b"/ui/console.js", Some(tag.as_bytes())).starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn every_asset_and_aliases_resolve() {
        for (path, ty) in [
            (&b"/ui/console.js"[..], "text/javascript"),
            (b"/ui/console.css", "text/css"),
            (b"/ui/", "text/html"),
            (b"/ui/index.html", "text/html"),
        ] {
            let a = answer(path, None);
            assert!(a.contains(&format!("Content-Type: {ty}")), "{a}");
        }
        assert!(answer(b"/ui/nope.js", None).starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        // No inline script or style (the CSP forbids them) and nothing from elsewhere.
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(!html.contains("<script>") && !html.contains("style="));
        assert!(!html.contains("http://") && !html.contains("https://"));
        let js = std::str::from_utf8(ASSETS[1].body).unwrap();
        assert!(!js.contains("localStorage") && !js.contains("sessionStorage"));
        assert!(
            !js.contains("innerHTML"),
            "untrusted text must go through textContent"
        );
    }
}
