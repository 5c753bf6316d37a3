//! Response heads written with byte literals and `itoa`; no `format!` on the hot path.

use std::cell::RefCell;

use crate::json;
use crate::time;

/// The reason phrase of every status this server sends.
#[cold]
fn status_line(status: u16) -> &'static [u8] {
    match status {
        100 => b"HTTP/1.1 100 Continue\r\n",
        101 => b"HTTP/1.1 101 Switching Protocols\r\n",
        200 => b"HTTP/1.1 200 OK\r\n",
        201 => b"HTTP/1.1 201 Created\r\n",
        204 => b"HTTP/1.1 204 No Content\r\n",
        304 => b"HTTP/1.1 304 Not Modified\r\n",
        400 => b"HTTP/1.1 400 Bad Request\r\n",
        401 => b"HTTP/1.1 401 Unauthorized\r\n",
        403 => b"HTTP/1.1 403 Forbidden\r\n",
        404 => b"HTTP/1.1 404 Not Found\r\n",
        405 => b"HTTP/1.1 405 Method Not Allowed\r\n",
        408 => b"HTTP/1.1 408 Request Timeout\r\n",
        409 => b"HTTP/1.1 409 Conflict\r\n",
        411 => b"HTTP/1.1 411 Length Required\r\n",
        413 => b"HTTP/1.1 413 Content Too Large\r\n",
        414 => b"HTTP/1.1 414 URI Too Long\r\n",
        426 => b"HTTP/1.1 426 Upgrade Required\r\n",
        429 => b"HTTP/1.1 429 Too Many Requests\r\n",
        431 => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        501 => b"HTTP/1.1 501 Not Implemented\r\n",
        503 => b"HTTP/1.1 503 Service Unavailable\r\n",
        504 => b"HTTP/1.1 504 Gateway Timeout\r\n",
        505 => b"HTTP/1.1 505 HTTP Version Not Supported\r\n",
        _ => b"HTTP/1.1 500 Internal Server Error\r\n",
    }
}

struct DateCache {
    secs: u64,
    text: [u8; 29],
}

thread_local! {
    static DATE: RefCell<DateCache> = const { RefCell::new(DateCache { secs: u64::MAX, text: [b' '; 29] }) };
}

/// Appends `Date: <IMF-fixdate>\r\n`, formatting at most once per second per thread.
fn write_date(out: &mut Vec<u8>) {
    let secs = time::now_ms() / 1000;
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.secs != secs {
            d.secs = secs;
            time::write_http_date(&mut d.text, secs);
        }
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(&d.text);
        out.extend_from_slice(b"\r\n");
    });
}

/// How the connection continues after this response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persist {
    /// HTTP/1.1 keep-alive (the default: no header needed).
    KeepAlive11,
    /// HTTP/1.0 client that asked for keep-alive: must be confirmed in a header.
    KeepAlive10,
    /// `Connection: close`; the connection closes after the response.
    Close,
}

fn write_common(out: &mut Vec<u8>, status: u16, persist: Persist) {
    if status == 200 {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(status_line(status));
    }
    out.extend_from_slice(b"Server: flux\r\n");
    write_date(out);
    match persist {
        Persist::KeepAlive11 => {}
        Persist::KeepAlive10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persist::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
}

/// A complete JSON response. `extra` holds whole header lines (`Allow: GET\r\n`).
pub fn json(out: &mut Vec<u8>, status: u16, persist: Persist, extra: &[u8], body: &[u8]) {
    write_common(out, status, persist);
    out.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
    json::write_u64(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// `204 No Content`: no body and, as RFC 9110 (§8.6) requires, no Content-Length.
pub fn no_content(out: &mut Vec<u8>, persist: Persist) {
    write_common(out, 204, persist);
    out.extend_from_slice(b"\r\n");
}

/// A complete response with a body of `content_type` (such as Prometheus text).
pub fn body(out: &mut Vec<u8>, status: u16, persist: Persist, content_type: &[u8], body: &[u8]) {
    write_common(out, status, persist);
    typed_body(out, content_type, body);
}

/// `Content-Type`, `Content-Length`, the blank line and the body.
fn typed_body(out: &mut Vec<u8>, content_type: &[u8], body: &[u8]) {
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(content_type);
    out.extend_from_slice(b"\r\nContent-Length: ");
    json::write_u64(out, body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// A static asset: `extra` holds whole header lines (ETag, caching, security policy).
/// `body: None` is a `304 Not Modified`, which has no body and no Content-Length.
pub fn asset(
    out: &mut Vec<u8>,
    persist: Persist,
    content_type: &[u8],
    extra: &[&[u8]],
    body: Option<&[u8]>,
) {
    write_common(out, if body.is_some() { 200 } else { 304 }, persist);
    for line in extra {
        out.extend_from_slice(line);
    }
    if let Some(body) = body {
        typed_body(out, content_type, body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

/// `{"error": msg}` with the given status.
#[cold]
pub fn error(out: &mut Vec<u8>, status: u16, persist: Persist, extra: &[u8], msg: &str) {
    let mut body = Vec::with_capacity(msg.len() + 16);
    json::write_error(&mut body, msg);
    json(out, status, persist, extra, &body);
}

/// Head of a streamed JSON response: chunked for HTTP/1.1, close-delimited for 1.0.
pub fn stream_head(out: &mut Vec<u8>, persist: Persist, http10: bool) {
    if http10 {
        write_common(out, 200, Persist::Close);
        out.extend_from_slice(b"Content-Type: application/json\r\n\r\n");
    } else {
        write_common(out, 200, persist);
        out.extend_from_slice(
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
    }
}

/// Frames `data` as one chunk (or passes it through for a close-delimited body).
pub fn chunk(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if data.is_empty() {
        return;
    }
    if chunked {
        let mut hex = [0u8; 16];
        let mut n = data.len();
        let mut i = hex.len();
        while n > 0 {
            i -= 1;
            hex[i] = b"0123456789abcdef"[n & 0xf];
            n >>= 4;
        }
        out.extend_from_slice(&hex[i..]);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

/// Starts a chunk whose data the caller appends to `out` in place (no copy through a
/// buffer of its own); [`end_chunk`] writes its size. Returns where it starts. The size
/// goes in as 8 hex digits with leading zeros (RFC 9112: `chunk-size = 1*HEXDIG`), so
/// its room is known before the data.
pub fn begin_chunk(out: &mut Vec<u8>, chunked: bool) -> usize {
    let at = out.len();
    if chunked {
        out.extend_from_slice(b"00000000\r\n");
    }
    at
}

/// Ends the chunk [`begin_chunk`] started at `at`: writes its size, or removes it when
/// no data followed (a zero-size chunk would end the body).
///
/// # Panics
/// If the chunk holds 4 GiB or more (callers flush far below that).
pub fn end_chunk(out: &mut Vec<u8>, at: usize, chunked: bool) {
    if !chunked {
        return;
    }
    let len = out.len() - at - CHUNK_HEAD_BYTES;
    if len == 0 {
        out.truncate(at);
        return;
    }
    let len = u32::try_from(len).expect("chunks are flushed well below 4 GiB");
    for (i, d) in out[at..at + 8].iter_mut().enumerate() {
        *d = b"0123456789abcdef"[(len >> (28 - 4 * i)) as usize & 0xf];
    }
    out.extend_from_slice(b"\r\n");
}

const CHUNK_HEAD_BYTES: usize = 10;

/// The terminating zero-length chunk.
pub fn last_chunk(out: &mut Vec<u8>, chunked: bool) {
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_written_in_place() {
        let mut out = b"HEAD".to_vec();
        let at = begin_chunk(&mut out, true);
        out.extend_from_slice(&[b'x'; 300]);
        end_chunk(&mut out, at, true);
        let at = begin_chunk(&mut out, true);
        end_chunk(&mut out, at, true);
        last_chunk(&mut out, true);
        let mut want = b"HEAD0000012c\r\n".to_vec();
        want.extend_from_slice(&[b'x'; 300]);
        want.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(out, want);
        let mut plain = Vec::new();
        let at = begin_chunk(&mut plain, false);
        plain.extend_from_slice(b"[]");
        end_chunk(&mut plain, at, false);
        assert_eq!(plain, b"[]");
    }

    #[test]
    fn json_response_is_well_formed() {
        let mut out = Vec::new();
        json(&mut out, 200, Persist::KeepAlive11, b"", b"{}");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.contains("\r\nDate: "));
        assert!(text.ends_with("\r\n\r\n{}"));
        assert!(!text.contains("Connection"));
    }

    #[test]
    fn error_has_json_body_and_extra_headers() {
        let mut out = Vec::new();
        error(
            &mut out,
            405,
            Persist::Close,
            b"Allow: GET\r\n",
            "method not allowed",
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("Allow: GET\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("{\"error\":\"method not allowed\"}"));
    }

    #[test]
    fn chunk_framing() {
        let mut out = Vec::new();
        chunk(&mut out, &[b'x'; 26], true);
        last_chunk(&mut out, true);
        assert_eq!(
            out,
            [&b"1a\r\n"[..], &[b'x'; 26], b"\r\n0\r\n\r\n"].concat()
        );
    }
}
