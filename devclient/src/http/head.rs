//! A response head, parsed in one pass over its lines without allocating.
//!
//! ```text
//!  HTTP/1.x SP 3DIGIT [SP reason] CRLF      status line (checked)
//!  name ":" OWS value OWS CRLF              ≤ HEADERS_MAX header lines (each checked
//!  ...                                      for a colon; only the three that frame
//!  CRLF                                     the body are read while parsing)
//! ```
//!
//! The hot path (the load tester decodes hundreds of thousands of heads a
//! second) reads the status and the framing headers (`Content-Length`,
//! `Transfer-Encoding`, `Connection`) and nothing else; any other header is
//! found on demand by [`Head::header`] / [`Head::headers`], which walk the
//! borrowed head bytes again. A bare `\n` line end is accepted (some servers
//! send one) and reported in [`Head::bare_lf`], so a strict client can refuse it.

use super::{has_token, HttpError};

/// Header lines in one head; more is an error.
pub const HEADERS_MAX: usize = 32;
/// No complete head within this many bytes is an error (Flux's own heads are a
/// few hundred bytes); a reader's buffer needs room for one head this large.
pub const HEAD_BYTES_MAX: usize = 64 * 1024;

/// A parsed response head, borrowing the buffer it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head<'a> {
    /// The head's bytes, from the status line to the blank line included.
    raw: &'a [u8],
    /// Bytes of the status line, line end excluded.
    status_line_len: usize,
    pub status: u16,
    /// The `x` of `HTTP/1.x`: 0 or 1.
    pub minor_version: u8,
    /// `Content-Length`, when present (repeated values must agree).
    pub content_length: Option<u64>,
    /// `Transfer-Encoding` lists `chunked`.
    pub chunked: bool,
    /// The server closes after this response: `Connection: close`, or HTTP/1.0
    /// without `Connection: keep-alive`.
    pub close: bool,
    /// Some line of the head ended with a bare `\n` instead of `\r\n`.
    pub bare_lf: bool,
}

/// How the body after a head ends (for a response to anything but `HEAD`,
/// whose answer has no body whatever its headers say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// 1xx, 204 and 304 have no body.
    Empty,
    Length(u64),
    Chunked,
    /// Neither length nor chunked: the body ends when the connection does.
    UntilClose,
}

impl<'a> Head<'a> {
    /// Bytes of the head, blank line included: where the body starts.
    #[allow(clippy::len_without_is_empty)] // a head is never empty
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// The head's bytes, blank line included.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// `HTTP/1.0` or `HTTP/1.1`.
    pub fn version(&self) -> &'a str {
        // Checked by the parser: eight ASCII bytes.
        std::str::from_utf8(&self.raw[..8]).unwrap_or("HTTP/1.?")
    }

    /// The reason phrase (may be empty).
    pub fn reason(&self) -> &'a [u8] {
        self.raw.get(13..self.status_line_len).unwrap_or_default()
    }

    pub fn framing(&self) -> Framing {
        if (100..200).contains(&self.status) || self.status == 204 || self.status == 304 {
            Framing::Empty
        } else if self.chunked {
            Framing::Chunked
        } else if let Some(n) = self.content_length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        }
    }

    /// Every header line as (name, value without surrounding white space), in order.
    pub fn headers(&self) -> Headers<'a> {
        Headers {
            rest: &self.raw[self.status_line_len..],
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
}

/// The header lines of a [`Head`], walked again from its bytes.
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    /// From a line end on.
    rest: &'a [u8],
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        // `rest` starts at the line end of the previous line.
        let start = memchr::memchr(b'\n', self.rest)? + 1;
        let (line, _) = next_line(self.rest, start)?;
        self.rest = &self.rest[start + line.len()..];
        if line.is_empty() {
            self.rest = &[];
            return None;
        }
        // Every line was checked for a colon by the parser.
        let colon = memchr::memchr(b':', line)?;
        Some((&line[..colon], line[colon + 1..].trim_ascii()))
    }
}

/// Parses a response head at the start of `buf`; `Ok(None)` while it is
/// incomplete (and shorter than [`HEAD_BYTES_MAX`]). The status line is checked,
/// every header line must have a name and a colon, and the three framing
/// headers are read and checked.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head<'_>>, HttpError> {
    let Some((line, mut at)) = next_line(buf, 0) else {
        return incomplete(buf);
    };
    // HTTP/1.x SP 3DIGIT [SP reason]
    let version_ok = line.len() >= 12
        && line.starts_with(b"HTTP/1.")
        && matches!(line[7], b'0' | b'1')
        && line[8] == b' '
        && line[9..12].iter().all(u8::is_ascii_digit)
        && (line.len() == 12 || line[12] == b' ');
    if !version_ok {
        return Err(HttpError::Head("invalid status line"));
    }
    let status = line[9..12]
        .iter()
        .fold(0u16, |v, d| v * 10 + (d - b'0') as u16);
    let mut head = Head {
        raw: &[],
        status_line_len: line.len(),
        status,
        minor_version: line[7] - b'0',
        content_length: None,
        chunked: false,
        // HTTP/1.0 closes unless it says keep-alive.
        close: line[7] == b'0',
        // The line end took one byte, not two.
        bare_lf: at == line.len() + 1,
    };
    let mut headers = 0;
    loop {
        let Some((line, next)) = next_line(buf, at) else {
            return incomplete(buf);
        };
        head.bare_lf |= next == at + line.len() + 1;
        at = next;
        if line.is_empty() {
            head.raw = &buf[..at];
            return Ok(Some(head));
        }
        headers += 1;
        if headers > HEADERS_MAX {
            return Err(HttpError::Head("too many headers"));
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return Err(HttpError::Head("header line without a colon"));
        };
        let name = &line[..colon];
        // Empty, or folded onto the previous line (obsolete, and refused by
        // servers): the rest of a name is only compared, never trusted.
        if name.is_empty() || matches!(name[0], b' ' | b'\t') {
            return Err(HttpError::Head("invalid header name"));
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
            if head.content_length.is_some_and(|l| l != v) {
                return Err(HttpError::BadContentLength);
            }
            head.content_length = Some(v);
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

/// "Not yet", unless the head already had all the room it may take.
fn incomplete<'a>(buf: &[u8]) -> Result<Option<Head<'a>>, HttpError> {
    if buf.len() >= HEAD_BYTES_MAX {
        return Err(HttpError::HeadTooLarge);
    }
    Ok(None)
}

/// The line starting at `at` without its `\r\n` (or `\n`), and where the
/// next one starts; `None` if it is not complete.
fn next_line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = &buf[at..];
    let n = memchr::memchr(b'\n', rest)?;
    let line = &rest[..n];
    Some((line.strip_suffix(b"\r").unwrap_or(line), at + n + 1))
}
