//! HTTP/1.1 client framing: request bytes into reused buffers, and an
//! incremental response decoder that never holds a whole body (a listing of a
//! million entities streams through a fixed buffer).
//!
//! Decoding is two-step: a complete head yet? (a small parser of our own,
//! see `head`; "not yet" is `Ok` with nothing done, never an error), then the body by its framing
//! (Content-Length, chunked, or until close).

use crate::head::parse_response_head;
use std::fmt;

/// A response head larger than this is an error (the server's own limit is far
/// lower); [`READ_BUF_BYTES`] leaves room for a full head plus one read.
pub const HEAD_BYTES_MAX: usize = 64 * 1024;
/// Per-connection read buffer, allocated once.
pub const READ_BUF_BYTES: usize = 2 * HEAD_BYTES_MAX;
/// A chunk-size line (hex size plus extensions) or trailer line longer than
/// this is an error.
const CHUNK_LINE_BYTES_MAX: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    Head(String),
    HeadTooLarge,
    BadContentLength,
    BadChunk,
    /// The connection closed in the middle of a response.
    Truncated,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Head(e) => write!(f, "bad response head: {e}"),
            HttpError::HeadTooLarge => write!(f, "response head over {HEAD_BYTES_MAX} bytes"),
            HttpError::BadContentLength => write!(f, "bad Content-Length"),
            HttpError::BadChunk => write!(f, "bad chunked encoding"),
            HttpError::Truncated => write!(f, "connection closed mid-response"),
        }
    }
}

/// A complete response (its body was consumed, or collected if asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The server will close the connection after this response.
    pub close: bool,
    /// Decoded body bytes (without chunk framing).
    pub body_len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body { remaining: u64 },
    ChunkSize,
    ChunkData { remaining: u64 },
    ChunkDataEnd,
    Trailer,
    UntilClose,
}

/// Incremental decoder of a sequence of responses on one connection.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    status: u16,
    close: bool,
    body_len: u64,
    /// Collect bodies here (verification); `None` on the load path.
    body: Option<Vec<u8>>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            state: State::Head,
            status: 0,
            close: false,
            body_len: 0,
            body: None,
        }
    }

    /// A decoder that keeps each body, for [`Decoder::take_body`].
    pub fn collecting() -> Decoder {
        Decoder {
            body: Some(Vec::new()),
            ..Decoder::new()
        }
    }

    pub fn take_body(&mut self) -> Vec<u8> {
        self.body.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Whether a response is partly decoded.
    #[cfg(test)]
    pub fn mid_response(&self) -> bool {
        self.state != State::Head
    }

    /// Consumes bytes from `buf`: returns how many, and the response that
    /// completed, if one did. `(0, None)` means "need more bytes". Stops after
    /// one response so the caller can match it to its request.
    pub fn decode(&mut self, buf: &[u8]) -> Result<(usize, Option<Response>), HttpError> {
        let mut used = 0;
        loop {
            let rest = &buf[used..];
            match self.state {
                State::Head => {
                    // A finished response returns before the next head.
                    debug_assert_eq!(used, 0);
                    match self.parse_head(rest)? {
                        None => return Ok((0, None)),
                        Some(n) => used += n,
                    }
                    if let Some(r) = self.finish_if_empty() {
                        return Ok((used, Some(r)));
                    }
                }
                State::Body { remaining } => {
                    let n = remaining.min(rest.len() as u64) as usize;
                    self.take(&rest[..n]);
                    used += n;
                    let remaining = remaining - n as u64;
                    if remaining == 0 {
                        return Ok((used, Some(self.finish())));
                    }
                    self.state = State::Body { remaining };
                    return Ok((used, None));
                }
                State::UntilClose => {
                    self.take(rest);
                    return Ok((buf.len(), None));
                }
                State::ChunkSize => match line(rest)? {
                    None => return Ok((used, None)),
                    Some((text, n)) => {
                        used += n;
                        let size = parse_chunk_size(text)?;
                        self.state = if size == 0 {
                            State::Trailer
                        } else {
                            State::ChunkData { remaining: size }
                        };
                    }
                },
                State::ChunkData { remaining } => {
                    let n = remaining.min(rest.len() as u64) as usize;
                    self.take(&rest[..n]);
                    used += n;
                    let remaining = remaining - n as u64;
                    if remaining > 0 {
                        self.state = State::ChunkData { remaining };
                        return Ok((used, None));
                    }
                    self.state = State::ChunkDataEnd;
                }
                State::ChunkDataEnd => {
                    if rest.len() < 2 {
                        return Ok((used, None));
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(HttpError::BadChunk);
                    }
                    used += 2;
                    self.state = State::ChunkSize;
                }
                State::Trailer => match line(rest)? {
                    None => return Ok((used, None)),
                    Some((text, n)) => {
                        used += n;
                        if text.is_empty() {
                            return Ok((used, Some(self.finish())));
                        }
                    }
                },
            }
        }
    }

    /// The connection reached end of file: completes a read-until-close body,
    /// or reports a truncated response.
    pub fn eof(&mut self) -> Result<Option<Response>, HttpError> {
        match self.state {
            State::Head => Ok(None),
            State::UntilClose => Ok(Some(self.finish())),
            _ => Err(HttpError::Truncated),
        }
    }

    fn parse_head(&mut self, buf: &[u8]) -> Result<Option<usize>, HttpError> {
        let Some(head) = parse_response_head(buf)? else {
            if buf.len() >= HEAD_BYTES_MAX {
                return Err(HttpError::HeadTooLarge);
            }
            return Ok(None);
        };
        let status = head.status;
        self.status = status;
        self.close = head.close;
        self.body_len = 0;
        if let Some(b) = self.body.as_mut() {
            b.clear();
        }
        self.state = if (100..200).contains(&status) || status == 204 || status == 304 {
            State::Body { remaining: 0 }
        } else if head.chunked {
            State::ChunkSize
        } else if let Some(len) = head.length {
            State::Body { remaining: len }
        } else {
            self.close = true;
            State::UntilClose
        };
        Ok(Some(head.len))
    }

    fn finish_if_empty(&mut self) -> Option<Response> {
        (self.state == State::Body { remaining: 0 }).then(|| self.finish())
    }

    fn finish(&mut self) -> Response {
        self.state = State::Head;
        Response {
            status: self.status,
            close: self.close,
            body_len: self.body_len,
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        self.body_len += bytes.len() as u64;
        if let Some(b) = self.body.as_mut() {
            b.extend_from_slice(bytes);
        }
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

/// A CRLF-terminated line at the start of `buf`: (line without CRLF, bytes
/// including CRLF), or `None` if incomplete.
fn line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, HttpError> {
    match memchr::memmem::find(buf, b"\r\n") {
        Some(i) if i <= CHUNK_LINE_BYTES_MAX => Ok(Some((&buf[..i], i + 2))),
        Some(_) => Err(HttpError::BadChunk),
        None if buf.len() > CHUNK_LINE_BYTES_MAX => Err(HttpError::BadChunk),
        None => Ok(None),
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    let hex = line.split(|&b| b == b';').next().unwrap_or(b"");
    let hex = hex.trim_ascii();
    if hex.is_empty() || hex.len() > 15 {
        return Err(HttpError::BadChunk);
    }
    let mut v = 0u64;
    for &b in hex {
        let d = (b as char).to_digit(16).ok_or(HttpError::BadChunk)?;
        v = v * 16 + d as u64;
    }
    Ok(v)
}

pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// A fixed read buffer: bytes `[start, end)` are unconsumed.
#[derive(Debug)]
pub struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    pub fn new() -> ReadBuf {
        ReadBuf {
            buf: vec![0; READ_BUF_BYTES],
            start: 0,
            end: 0,
        }
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.end - self.start, "consumed past the data");
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space to read into; moves unconsumed bytes to the front first.
    /// The decoder consumes all but at most a partial head
    /// (< `HEAD_BYTES_MAX`), so at least half the buffer is free.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    pub fn filled(&mut self, n: usize) {
        assert!(self.end + n <= self.buf.len(), "filled past the buffer");
        self.end += n;
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
}

impl Default for ReadBuf {
    fn default() -> Self {
        Self::new()
    }
}

/// Header lines sent with every request of a connection (`Host`, and
/// `Authorization` in auth mode), rendered once.
pub fn common_headers(authority: &str, token: Option<&str>) -> Vec<u8> {
    let mut h = Vec::with_capacity(128);
    h.extend_from_slice(b"Host: ");
    h.extend_from_slice(authority.as_bytes());
    h.extend_from_slice(b"\r\n");
    if let Some(t) = token {
        h.extend_from_slice(b"Authorization: Bearer ");
        h.extend_from_slice(t.as_bytes());
        h.extend_from_slice(b"\r\n");
    }
    h
}

/// `POST <path>` with a JSON body already rendered (the reference that
/// [`write_post_with`] must match).
#[cfg(test)]
pub fn write_post(out: &mut Vec<u8>, path: &[u8], common: &[u8], body: &[u8]) {
    let mut len = itoa::Buffer::new();
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    out.extend_from_slice(common);
    out.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
    out.extend_from_slice(len.format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// `POST <path>` whose JSON body `body` renders straight into `out`, after
/// the head: no copy of the body. The head leaves room for a Content-Length
/// of as many digits as `len_guess` has (the previous body's length: bodies
/// of one connection have similar sizes); when the real length has another
/// number of digits the body is shifted once. Returns the body's length.
pub fn write_post_with(
    out: &mut Vec<u8>,
    path: &[u8],
    common: &[u8],
    len_guess: usize,
    body: impl FnOnce(&mut Vec<u8>),
) -> usize {
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    out.extend_from_slice(common);
    out.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
    let digits_at = out.len();
    let guessed = num.format(len_guess).len();
    out.resize(digits_at + guessed, b'0');
    out.extend_from_slice(b"\r\n\r\n");
    let body_at = out.len();
    body(out);
    let len = out.len() - body_at;
    let digits = num.format(len).as_bytes();
    if digits.len() != guessed {
        // Move the blank line and the body together (memmove).
        let end = body_at + len;
        let shifted_end = end + digits.len() - guessed;
        if shifted_end > end {
            out.resize(shifted_end, 0);
        }
        out.copy_within(digits_at + guessed..end, digits_at + digits.len());
        out.truncate(shifted_end);
    }
    out[digits_at..digits_at + digits.len()].copy_from_slice(digits);
    len
}

/// `GET <path>`; the path is already percent-encoded.
pub fn write_get(out: &mut Vec<u8>, path: &[u8], common: &[u8]) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    out.extend_from_slice(common);
    out.extend_from_slice(b"\r\n");
}

/// Appends `segment` percent-encoded for a URL path (`/` becomes `%2F`).
pub fn push_encoded(out: &mut Vec<u8>, segment: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in segment {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes, as a socket would.
    fn decode_all(input: &[u8], step: usize, collect: bool) -> Vec<(Response, Vec<u8>)> {
        let mut dec = if collect {
            Decoder::collecting()
        } else {
            Decoder::new()
        };
        let mut rb = ReadBuf::new();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            rb.spare()[..piece.len()].copy_from_slice(piece);
            rb.filled(piece.len());
            loop {
                let (used, done) = dec.decode(rb.data()).unwrap();
                rb.consume(used);
                match done {
                    Some(r) => out.push((r, dec.take_body())),
                    None if used == 0 => break,
                    None => {}
                }
            }
        }
        if let Some(r) = dec.eof().unwrap() {
            out.push((r, dec.take_body()));
        }
        out
    }

    const PIPELINED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
        HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\nContent-Length: 21\r\n\r\n{\"error\":\"not found\"}\
        HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\n[{}\r\n1\r\n]\r\n0\r\nX-T: 1\r\n\r\n\
        HTTP/1.1 204 No Content\r\n\r\n\
        HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn pipelined_responses_in_any_split() {
        for step in [1, 2, 3, 7, 64, PIPELINED.len()] {
            let got = decode_all(PIPELINED, step, true);
            let statuses: Vec<u16> = got.iter().map(|(r, _)| r.status).collect();
            assert_eq!(statuses, [200, 404, 200, 204, 200], "step {step}");
            assert_eq!(got[0].1, b"hello");
            assert_eq!(got[1].0.body_len, 21);
            assert_eq!(got[2].1, b"[{}]");
            assert!(!got[3].0.close);
            assert!(got[4].0.close);
        }
    }

    #[test]
    fn partial_head_is_not_an_error() {
        let mut dec = Decoder::new();
        assert_eq!(
            dec.decode(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap(),
            (0, None)
        );
        assert!(!dec.mid_response());
    }

    #[test]
    fn read_until_close_and_truncation() {
        let got = decode_all(b"HTTP/1.0 200 OK\r\n\r\nabc", 2, true);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, b"abc");
        assert!(got[0].0.close);
        let mut dec = Decoder::new();
        dec.decode(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .unwrap();
        assert!(dec.mid_response());
        assert_eq!(dec.eof(), Err(HttpError::Truncated));
    }

    #[test]
    fn malformed_input_is_an_error() {
        let mut dec = Decoder::new();
        assert!(dec.decode(b"HTTX/1.1 200 OK\r\n\r\n").is_err());
        let mut dec = Decoder::new();
        assert_eq!(
            dec.decode(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Err(HttpError::BadContentLength)
        );
        let mut dec = Decoder::new();
        let r = dec.decode(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        assert_eq!(r, Err(HttpError::BadChunk));
        let mut dec = Decoder::new();
        let mut big = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        big.resize(HEAD_BYTES_MAX, b'a');
        assert_eq!(dec.decode(&big), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn post_rendered_in_place_whatever_the_guess() {
        let common = common_headers("h", None);
        for body in [&b""[..], b"{}", b"0123456789", &[b'x'; 1234][..]] {
            let mut want = b"junk".to_vec();
            write_post(&mut want, b"/p", &common, body);
            for guess in [0, 1, 9, 10, 99, 5000, 123_456_789] {
                let mut got = b"junk".to_vec();
                let n = write_post_with(&mut got, b"/p", &common, guess, |o| {
                    o.extend_from_slice(body)
                });
                assert_eq!(n, body.len());
                assert_eq!(got, want, "guess {guess}");
            }
        }
    }

    #[test]
    fn request_bytes() {
        let common = common_headers("127.0.0.1:3000", Some("tok"));
        let mut out = Vec::new();
        write_post(&mut out, b"/api/events", &common, b"{}");
        assert_eq!(
            out,
            b"POST /api/events HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nAuthorization: Bearer tok\r\n\
              Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
        out.clear();
        let mut path = b"/api/state/entities/".to_vec();
        push_encoded(&mut path, b"ns/lt-000001 x");
        write_get(&mut out, &path, &common_headers("h", None));
        assert_eq!(
            out,
            b"GET /api/state/entities/ns%2Flt-000001%20x HTTP/1.1\r\nHost: h\r\n\r\n"
        );
    }

    /// Not a check: decoding nginx-like responses, 64 per read.
    #[test]
    #[ignore]
    fn decode_throughput() {
        let one = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 29 Nov 2026 00:03:56 GMT\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: keep-alive\r\n\r\n{\"ok\":true}";
        let input: Vec<u8> = one.iter().copied().cycle().take(one.len() * 64).collect();
        let mut dec = Decoder::new();
        let rounds = 50_000;
        let start = std::time::Instant::now();
        let mut n = 0u64;
        for _ in 0..rounds {
            let mut at = 0;
            loop {
                let (used, done) = dec.decode(&input[at..]).unwrap();
                at += used;
                if done.is_some() {
                    n += 1;
                } else if used == 0 {
                    break;
                }
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        println!("decode_throughput: {ns:.1} ns/response ({n} responses)");
    }
}
