//! HTTP/1.1 client framing: request bytes rendered into reused buffers, and
//! the fixed read buffer a connection's responses are decoded from. The
//! responses themselves are decoded by `flux_devclient::http::Decoder` (shared
//! with the integration tests): incremental, allocation-free on the load path,
//! never holding a whole body (a listing of a million entities streams through
//! the fixed buffer).

use flux_devclient::http::HEAD_BYTES_MAX;

/// Per-connection read buffer, allocated once: room for a full head
/// ([`HEAD_BYTES_MAX`]) plus one read.
pub const READ_BUF_BYTES: usize = 2 * HEAD_BYTES_MAX;

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

    use flux_devclient::http::Decoder;

    /// Pipelined responses fed through the fixed read buffer in pieces of
    /// `step` bytes, as the connection does; the bodies are only counted.
    #[test]
    fn responses_decode_through_the_read_buffer() {
        let input: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
            HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[{}\r\n1\r\n]\r\n0\r\n\r\n\
            HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}";
        for step in [1, 2, 7, 64, input.len()] {
            let mut dec = Decoder::new();
            let mut rb = ReadBuf::new();
            let mut got = Vec::new();
            for piece in input.chunks(step) {
                rb.spare()[..piece.len()].copy_from_slice(piece);
                rb.filled(piece.len());
                loop {
                    let (used, done) = dec.decode(rb.data()).unwrap();
                    rb.consume(used);
                    match done {
                        Some(r) => got.push((r.status, r.body_len, r.close)),
                        None if used == 0 => break,
                        None => {}
                    }
                }
            }
            assert_eq!(
                got,
                [(200, 5, false), (200, 4, false), (404, 2, true)],
                "step {step}"
            );
            assert!(rb.data().is_empty());
        }
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
}
