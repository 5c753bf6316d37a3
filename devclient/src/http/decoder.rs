//! An incremental decoder of the responses on one connection, pipelined or
//! not: a head (see [`parse_head`]), then the body by its framing, a buffer at
//! a time. It never holds a whole body unless asked ([`Decoder::collecting`]):
//! a listing of a million entities streams through a fixed read buffer.
//!
//! ```text
//!  Head ─┬─ Length ──────────────────────────────────────────┐
//!        ├─ ChunkSize ─ ChunkData ─ ChunkDataEnd ─ ChunkSize │ … size 0 ─ Trailer ┐
//!        └─ UntilClose (ends at EOF, see `eof`)               ├────────────────────┴─ done
//! ```

use super::{parse_head, Framing, Head, HttpError};

/// A chunk-size line (hex size plus extensions) or trailer line longer than
/// this is an error.
const CHUNK_LINE_BYTES_MAX: usize = 4096;

/// A complete response (its body was consumed, or collected if asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The server will close the connection after this response.
    pub close: bool,
    /// Decoded body bytes (without chunk framing).
    pub body_len: u64,
    /// Data chunks of a chunked body (0 when not chunked).
    pub chunks: u64,
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
    chunks: u64,
    /// Collect bodies here; `None` on the load path.
    body: Option<Vec<u8>>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            state: State::Head,
            status: 0,
            close: false,
            body_len: 0,
            chunks: 0,
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

    /// The body of the response that completed last (empty unless collecting).
    pub fn take_body(&mut self) -> Vec<u8> {
        self.body.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Whether a response is partly decoded.
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
                    let Some(head) = parse_head(rest)? else {
                        return Ok((0, None));
                    };
                    used += head.len();
                    if let Some(done) = self.begin(&head) {
                        return Ok((used, Some(done)));
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
                            self.chunks += 1;
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

    /// Starts the response of `head`, whose bytes the caller consumed itself
    /// (a client that parsed the head to keep its headers): the next
    /// [`Decoder::decode`] reads its body. A body-less response is complete at
    /// once and returned.
    pub fn begin(&mut self, head: &Head<'_>) -> Option<Response> {
        self.status = head.status;
        self.close = head.close;
        self.body_len = 0;
        self.chunks = 0;
        if let Some(b) = self.body.as_mut() {
            b.clear();
        }
        self.state = match head.framing() {
            Framing::Empty => State::Body { remaining: 0 },
            Framing::Chunked => State::ChunkSize,
            Framing::Length(n) => State::Body { remaining: n },
            Framing::UntilClose => {
                self.close = true;
                State::UntilClose
            }
        };
        (self.state == State::Body { remaining: 0 }).then(|| self.finish())
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

    fn finish(&mut self) -> Response {
        self.state = State::Head;
        Response {
            status: self.status,
            close: self.close,
            body_len: self.body_len,
            chunks: self.chunks,
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
    let window = &buf[..buf.len().min(CHUNK_LINE_BYTES_MAX + 2)];
    match memchr::memmem::find(window, b"\r\n") {
        Some(i) => Ok(Some((&buf[..i], i + 2))),
        None if buf.len() >= CHUNK_LINE_BYTES_MAX + 2 => Err(HttpError::BadChunk),
        None => Ok(None),
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    let hex = line.split(|&b| b == b';').next().unwrap_or(b"");
    let hex = hex.trim_ascii();
    // 15 hex digits: below 2^60, so the sum cannot overflow.
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
