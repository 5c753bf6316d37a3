//! The head of an HTTP/1.1 response, parsed by hand for the load path: a
//! Flux or nginx head is a status line and a handful of headers, and a
//! general parser (httparse) was most of the cost of decoding a response.
//! "Not yet" (an incomplete head) is `Ok(None)`.

use crate::http::{has_token, HttpError};

/// Headers parsed per response; more is an error.
pub const HEADERS_MAX: usize = 32;

/// What the decoder needs from a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head, blank line included.
    pub len: usize,
    pub status: u16,
    pub length: Option<u64>,
    pub chunked: bool,
    pub close: bool,
}

/// Parses a response head at the start of `buf`; `Ok(None)` while it is
/// incomplete. Hand-written for the hot path (a Flux or nginx head is a
/// status line and a handful of headers): one pass over the lines, eight
/// bytes at a time; the status line is checked, and of the headers only the
/// three that frame the body are read (and checked). Bare `\n` line ends are
/// accepted.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<Head>, HttpError> {
    let bad = |what: &str| Err(HttpError::Head(what.to_string()));
    let Some((line, mut at)) = next_line(buf, 0) else {
        return Ok(None);
    };
    // HTTP/1.x SP 3DIGIT [SP reason]
    let version_ok = line.len() >= 12
        && line.starts_with(b"HTTP/1.")
        && matches!(line[7], b'0' | b'1')
        && line[8] == b' '
        && line[9..12].iter().all(u8::is_ascii_digit)
        && (line.len() == 12 || line[12] == b' ');
    if !version_ok {
        return bad("invalid status line");
    }
    let status = line[9..12]
        .iter()
        .fold(0u16, |v, d| v * 10 + (d - b'0') as u16);
    let mut head = Head {
        len: 0,
        status,
        length: None,
        chunked: false,
        // HTTP/1.0 closes unless it says keep-alive.
        close: line[7] == b'0',
    };
    let mut headers = 0;
    loop {
        let Some((line, next)) = next_line(buf, at) else {
            return Ok(None);
        };
        at = next;
        if line.is_empty() {
            head.len = at;
            return Ok(Some(head));
        }
        headers += 1;
        if headers > HEADERS_MAX {
            return bad("too many headers");
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return bad("header line without a colon");
        };
        let name = &line[..colon];
        // Empty, or folded onto the previous line (obsolete, and refused by
        // servers): the rest of a name is only compared, never trusted.
        if name.is_empty() || matches!(name[0], b' ' | b'\t') {
            return bad("invalid header name");
        }
        // Only the three headers that frame the body are looked at.
        if !matches!(name.len(), 10 | 14 | 17) {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                return Err(HttpError::BadContentLength);
            }
            let v = value.iter().fold(0u64, |v, d| v * 10 + (d - b'0') as u64);
            if head.length.is_some_and(|l| l != v) {
                return Err(HttpError::BadContentLength);
            }
            head.length = Some(v);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            head.chunked = has_token(value, b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            if has_token(value, b"close") {
                head.close = true;
            } else if has_token(value, b"keep-alive") {
                head.close = false;
            }
        }
    }
}

/// The line starting at `at` without its `\r\n` (or `\n`), and where the
/// next one starts; `None` if it is not complete.
fn next_line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = &buf[at..];
    let n = memchr::memchr(b'\n', rest)?;
    let line = &rest[..n];
    Some((line.strip_suffix(b"\r").unwrap_or(line), at + n + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_parser_edge_cases() {
        let h = parse_response_head(b"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc")
            .unwrap()
            .unwrap();
        assert_eq!((h.status, h.length, h.len), (200, Some(3), 35));
        let h = parse_response_head(b"HTTP/1.0 200\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.close);
        let h = parse_response_head(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.close);
        for bad in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        ] {
            assert!(
                parse_response_head(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..=HEADERS_MAX {
            many.extend_from_slice(b"X: y\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert!(parse_response_head(&many).is_err());
        // Incomplete at every byte of a complete head.
        let full = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse_response_head(&full[..cut]), Ok(None), "cut {cut}");
        }
    }
}
