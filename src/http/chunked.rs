//! Streaming decoder for `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).

use super::parse::{bad, header_too_large, payload_too_large, HttpError, MAX_HEADER_BYTES};
use super::query::hex_val;

/// Longest accepted chunk-size line, counting its extensions and its CRLF. Extensions are
/// ignored, so a longer line could only be a way to make us scan without progress. Over → 400.
pub const MAX_CHUNK_LINE_BYTES: usize = 1024;

/// RFC 9110 `tchar`, for trailer field names.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Bytes allowed in a chunk extension or a trailer value: HTAB, visible ASCII, SP, obs-text.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

const BAD_CHUNK_SIZE: &str = "invalid chunk size line";
const BAD_CHUNK_END: &str = "missing CRLF after chunk data";
const BAD_TRAILER: &str = "invalid trailer field";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Start of a size line, no hex digit yet.
    SizeStart,
    /// Inside the hex size.
    SizeDigits,
    /// Whitespace after the size; only valid before an extension (`5 ;ext`, RFC 9112 BWS).
    SizeSpace,
    /// Inside `;name=value` extensions, which are ignored.
    SizeExt,
    /// Saw the size line's CR, expecting LF.
    SizeLf,
    /// Copying chunk data; `size` bytes remain.
    Data,
    /// Expecting the CR that ends chunk data.
    DataCr,
    DataLf,
    /// Start of a trailer line, or of the empty line ending the body.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// Saw the CR of the final empty line, expecting LF.
    EndLf,
    Done,
    /// Sticky: the connection is going to be closed, further input is not framing.
    Failed(HttpError),
}

/// Streaming decoder for a chunked request body (RFC 9112 §7.1). It keeps its position
/// between calls, so each byte is looked at once however the body is split into reads
/// (re-scanning a 10 MiB body from the start on every read would be quadratic).
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: Chunk,
    max_body: u64,
    /// Data bytes announced by the size lines so far; never above `max_body`.
    total: u64,
    /// The size being parsed, then the data bytes left in the current chunk.
    size: u64,
    /// Bytes of the current size line, or of the whole trailer section.
    line: usize,
}

impl ChunkedDecoder {
    pub fn new(max_body: usize) -> Self {
        ChunkedDecoder {
            state: Chunk::SizeStart,
            max_body: max_body as u64,
            total: 0,
            size: 0,
            line: 0,
        }
    }

    /// Whether the final chunk and trailer section have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Consumes as much of `input` as possible, appending chunk data to `out`. Returns the
    /// number of bytes of `input` consumed, and whether the body (including the final 0-chunk
    /// and trailers ending with CRLF) is complete. Until complete all of `input` is consumed;
    /// once complete the rest (a pipelined request) is left alone and later calls return
    /// `(0, true)`. Err(PayloadTooLarge) as soon as a size line would take the decoded total
    /// over `max_body`, before its data is read; Err(BadRequest) on bad framing (strict CRLF
    /// everywhere); Err(HeaderTooLarge) for a trailer section over MAX_HEADER_BYTES. After an
    /// error every call returns the same error.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), HttpError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                Chunk::Done => break,
                Chunk::Data => {
                    // The data itself is copied in bulk: only framing is examined per byte.
                    let avail = input.len() - i;
                    let n = usize::try_from(self.size).map_or(avail, |s| s.min(avail));
                    out.extend_from_slice(&input[i..i + n]);
                    i += n;
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = Chunk::DataCr;
                    }
                }
                Chunk::Failed(e) => return Err(e),
                _ => {
                    let b = input[i];
                    i += 1;
                    if let Err(e) = self.step(b) {
                        self.state = Chunk::Failed(e);
                        return Err(e);
                    }
                }
            }
        }
        if let Chunk::Failed(e) = self.state {
            return Err(e);
        }
        Ok((i, self.state == Chunk::Done))
    }

    /// Advances the framing state machine by one byte.
    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        use Chunk::*;
        match self.state {
            SizeStart | SizeDigits | SizeSpace | SizeExt | SizeLf => {
                self.line += 1;
                if self.line > MAX_CHUNK_LINE_BYTES {
                    return Err(bad("chunk size line too long"));
                }
            }
            TrailerStart | TrailerName | TrailerValue | TrailerLf | EndLf => {
                self.line += 1;
                if self.line > MAX_HEADER_BYTES {
                    return Err(header_too_large());
                }
            }
            Data | DataCr | DataLf | Done | Failed(_) => {}
        }
        self.state = match (self.state, b) {
            (SizeStart, _) => {
                self.size = u64::from(hex_val(b).ok_or_else(|| bad(BAD_CHUNK_SIZE))?);
                SizeDigits
            }
            (SizeDigits, b';') => SizeExt,
            (SizeDigits, b' ' | b'\t') => SizeSpace,
            (SizeDigits, b'\r') => SizeLf,
            (SizeDigits, _) => {
                let digit = hex_val(b).ok_or_else(|| bad(BAD_CHUNK_SIZE))?;
                // checked_mul catches the overflow; the low nibble is then zero, so `|` is `+`.
                let size = self
                    .size
                    .checked_mul(16)
                    .ok_or_else(|| bad("chunk size too large"))?;
                self.size = size | u64::from(digit);
                SizeDigits
            }
            (SizeSpace, b' ' | b'\t') => SizeSpace,
            (SizeSpace, b';') => SizeExt,
            (SizeExt, b'\r') => SizeLf,
            (SizeExt, _) if is_field_byte(b) => SizeExt,
            (SizeLf, b'\n') => {
                self.line = 0;
                self.start_chunk()?
            }
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => SizeStart,
            (DataCr | DataLf, _) => return Err(bad(BAD_CHUNK_END)),
            (TrailerStart, b'\r') => EndLf,
            (TrailerStart | TrailerName, _) if is_tchar(b) => TrailerName,
            (TrailerName, b':') => TrailerValue,
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, _) if is_field_byte(b) => TrailerValue,
            (TrailerLf, b'\n') => TrailerStart,
            (EndLf, b'\n') => Done,
            (TrailerStart | TrailerName | TrailerValue | TrailerLf | EndLf, _) => {
                return Err(bad(BAD_TRAILER))
            }
            (SizeSpace | SizeExt | SizeLf, _) => return Err(bad(BAD_CHUNK_SIZE)),
            // Handled by `feed` before it calls `step`; kept as no-ops so nothing can panic.
            (Data | Done | Failed(_), _) => self.state,
        };
        Ok(())
    }

    /// A complete size line has been read: size 0 starts the trailers, anything else data.
    fn start_chunk(&mut self) -> Result<Chunk, HttpError> {
        if self.size == 0 {
            return Ok(Chunk::TrailerStart);
        }
        // Refused on the size line, before any of the chunk is read or buffered.
        if self.size > self.max_body - self.total {
            return Err(payload_too_large());
        }
        self.total += self.size;
        Ok(Chunk::Data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    /// Feeds `input` in one call: (body, consumed, done).
    fn decode(input: &[u8], max_body: usize) -> Result<(Vec<u8>, usize, bool), HttpError> {
        let mut out = Vec::new();
        let (n, done) = ChunkedDecoder::new(max_body).feed(input, &mut out)?;
        Ok((out, n, done))
    }

    /// Feeds `input` in pieces of the given sizes (cycled), stopping at done or error.
    fn decode_in_pieces(
        input: &[u8],
        max_body: usize,
        sizes: &mut dyn FnMut() -> usize,
    ) -> Result<(Vec<u8>, usize, bool), HttpError> {
        let mut dec = ChunkedDecoder::new(max_body);
        let mut out = Vec::new();
        let mut consumed = 0;
        let mut pos = 0;
        loop {
            let end = (pos + sizes()).min(input.len());
            let (n, done) = dec.feed(&input[pos..end], &mut out)?;
            consumed += n;
            if done || end == input.len() {
                return Ok((out, consumed, done));
            }
            assert_eq!(n, end - pos, "an unfinished body consumes all input");
            pos = end;
        }
    }

    fn err(input: &[u8]) -> HttpError {
        decode(input, MAX).expect_err("should fail")
    }

    /// Checks that one call, one byte per call, every two-way split and pseudo-random
    /// splits all agree, and returns the body.
    fn body_every_way(input: &[u8]) -> Vec<u8> {
        let (body, used, done) = decode(input, MAX).unwrap();
        assert!(done);
        assert_eq!(used, input.len());
        assert_eq!(
            decode_in_pieces(input, MAX, &mut || 1),
            Ok((body.clone(), used, true))
        );
        for k in 0..=input.len() {
            let mut first = true;
            let mut sizes = || {
                if std::mem::take(&mut first) {
                    k
                } else {
                    usize::MAX / 2
                }
            };
            assert_eq!(
                decode_in_pieces(input, MAX, &mut sizes),
                Ok((body.clone(), used, true)),
                "split at {k}"
            );
        }
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..50 {
            let mut sizes = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 9) as usize
            };
            assert_eq!(
                decode_in_pieces(input, MAX, &mut sizes),
                Ok((body.clone(), used, true))
            );
        }
        body
    }

    #[test]
    fn simple_body() {
        assert_eq!(body_every_way(b"5\r\nhello\r\n0\r\n\r\n"), b"hello");
        assert_eq!(body_every_way(b"0\r\n\r\n"), b"");
        assert_eq!(
            body_every_way(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            b"hello world"
        );
    }

    #[test]
    fn hex_sizes() {
        let data = "x".repeat(0x1f);
        let input = format!("1F\r\n{data}\r\n1f\r\n{data}\r\n0\r\n\r\n");
        assert_eq!(body_every_way(input.as_bytes()).len(), 2 * 0x1f);
        // Leading zeros are just zeros.
        assert_eq!(body_every_way(b"0005\r\nhello\r\n000\r\n\r\n"), b"hello");
        // Data may contain CRLF and anything else: it is counted, not scanned.
        assert_eq!(body_every_way(b"4\r\n\r\n\r\n\r\n0\r\n\r\n"), b"\r\n\r\n");
        assert_eq!(body_every_way(b"3\r\n\x00\xff0\r\n0\r\n\r\n"), b"\x00\xff0");
    }

    #[test]
    fn extensions_are_ignored() {
        assert_eq!(
            body_every_way(b"5;name=val\r\nhello\r\n0\r\n\r\n"),
            b"hello"
        );
        assert_eq!(
            body_every_way(b"5;a;b=\"q s\";c\r\nhello\r\n0;last=1\r\n\r\n"),
            b"hello"
        );
        assert_eq!(body_every_way(b"5 ;a\r\nhello\r\n0\t; b\r\n\r\n"), b"hello");
        assert_eq!(body_every_way(b"5;\r\nhello\r\n0\r\n\r\n"), b"hello");
        assert_eq!(
            body_every_way("5;n=\u{e9}\r\nhello\r\n0\r\n\r\n".as_bytes()),
            b"hello"
        );
    }

    #[test]
    fn trailers_are_consumed() {
        assert_eq!(
            body_every_way(b"5\r\nhello\r\n0\r\nX-A: 1\r\nX-B: two words\r\n\r\n"),
            b"hello"
        );
        assert_eq!(body_every_way(b"0\r\nChecksum:abc\r\n\r\n"), b"");
        assert_eq!(body_every_way(b"0\r\nEmpty:\r\n\r\n"), b"");
    }

    #[test]
    fn stops_at_the_end_of_the_body() {
        let input = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let mut dec = ChunkedDecoder::new(MAX);
        let mut out = Vec::new();
        assert_eq!(dec.feed(input, &mut out), Ok((input.len() - 18, true)));
        assert!(dec.is_done());
        assert_eq!(out, b"abc");
        // The pipelined request is left for the caller, however often it asks.
        assert_eq!(dec.feed(b"GET / HTTP/1.1\r\n\r\n", &mut out), Ok((0, true)));
        assert_eq!(dec.feed(b"", &mut out), Ok((0, true)));
        assert_eq!(out, b"abc");
    }

    #[test]
    fn incomplete_input_is_consumed_and_waits() {
        let mut dec = ChunkedDecoder::new(MAX);
        let mut out = Vec::new();
        assert_eq!(dec.feed(b"", &mut out), Ok((0, false)));
        assert_eq!(dec.feed(b"5\r\nhel", &mut out), Ok((6, false)));
        assert_eq!(out, b"hel");
        assert!(!dec.is_done());
        assert_eq!(dec.feed(b"lo\r\n0\r\n", &mut out), Ok((7, false)));
        assert_eq!(dec.feed(b"\r", &mut out), Ok((1, false)));
        assert_eq!(dec.feed(b"\n", &mut out), Ok((1, true)));
        assert_eq!(out, b"hello");
    }

    #[test]
    fn appends_to_existing_output() {
        let mut out = b"prefix:".to_vec();
        let (_, done) = ChunkedDecoder::new(MAX)
            .feed(b"2\r\nok\r\n0\r\n\r\n", &mut out)
            .unwrap();
        assert!(done);
        assert_eq!(out, b"prefix:ok");
    }

    #[test]
    fn body_limit() {
        // Exactly at the limit is fine, in one chunk or several.
        assert_eq!(
            decode(b"a\r\n0123456789\r\n0\r\n\r\n", 10).map(|r| r.0.len()),
            Ok(10)
        );
        assert_eq!(
            decode(b"5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n", 10).map(|r| r.0.len()),
            Ok(10)
        );
        assert!(decode(b"0\r\n\r\n", 0).is_ok());
        // One byte over: refused on the size line, before any of the data has arrived.
        assert_eq!(decode(b"b\r\n", 10), Err(HttpError::PayloadTooLarge));
        assert_eq!(decode(b"1\r\n", 0), Err(HttpError::PayloadTooLarge));
        // Cumulative over several chunks.
        let mut dec = ChunkedDecoder::new(10);
        let mut out = Vec::new();
        assert_eq!(dec.feed(b"6\r\nabcdef\r\n", &mut out), Ok((11, false)));
        assert_eq!(
            dec.feed(b"5\r\n", &mut out),
            Err(HttpError::PayloadTooLarge)
        );
        assert_eq!(out, b"abcdef");
        // The largest 16-digit size is a 413, not an overflow.
        assert_eq!(
            decode(b"ffffffffffffffff\r\n", MAX),
            Err(HttpError::PayloadTooLarge)
        );
        // Fed byte by byte too.
        assert_eq!(
            decode_in_pieces(b"6\r\nabcdef\r\n5\r\nabcde\r\n0\r\n\r\n", 10, &mut || 1),
            Err(HttpError::PayloadTooLarge)
        );
    }

    #[test]
    fn size_overflow_is_400() {
        assert_eq!(
            err(b"10000000000000000\r\n"),
            HttpError::BadRequest("chunk size too large")
        );
        assert_eq!(
            err(b"fffffffffffffffff\r\n"),
            HttpError::BadRequest("chunk size too large")
        );
        // Leading zeros do not overflow.
        assert_eq!(
            decode(b"00000000000000000001\r\nx\r\n0\r\n\r\n", MAX).map(|r| r.0),
            Ok(b"x".to_vec())
        );
    }

    #[test]
    fn malformed_size_lines_are_400() {
        for input in [
            &b"x\r\n"[..],
            b"\r\n",
            b";ext\r\n",
            b" 5\r\n",
            b"-5\r\n",
            b"+5\r\n",
            b"0x5\r\n",
            b"5\n",
            b"5\rX",
            b"5 \r\n",
            b"5 x\r\n",
            b"5\x00\r\n",
            b"5;a\x01b\r\n",
            b"5;a\x7f\r\n",
            b"5;\n",
            b"5g\r\n",
            b"\xff\r\n",
        ] {
            assert_eq!(
                err(input),
                HttpError::BadRequest(BAD_CHUNK_SIZE),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn size_line_length_limit() {
        // Exactly MAX_CHUNK_LINE_BYTES including the CRLF is accepted.
        let ext = "a".repeat(MAX_CHUNK_LINE_BYTES - 4);
        let at = format!("5;{ext}\r\nhello\r\n0\r\n\r\n");
        assert_eq!(
            decode(at.as_bytes(), MAX).map(|r| r.0),
            Ok(b"hello".to_vec())
        );
        let over = format!("5;{ext}a\r\nhello\r\n0\r\n\r\n");
        assert_eq!(
            err(over.as_bytes()),
            HttpError::BadRequest("chunk size line too long")
        );
        // Refused while it is still arriving.
        let endless = format!("5;{}", "a".repeat(2 * MAX_CHUNK_LINE_BYTES));
        assert_eq!(
            err(endless.as_bytes()),
            HttpError::BadRequest("chunk size line too long")
        );
        let zeros = "0".repeat(MAX_CHUNK_LINE_BYTES + 1);
        assert_eq!(
            err(zeros.as_bytes()),
            HttpError::BadRequest("chunk size line too long")
        );
        // The limit is per line, not per body.
        let line = format!("1;{}\r\nx\r\n", "e".repeat(MAX_CHUNK_LINE_BYTES - 6));
        let many = format!("{}0\r\n\r\n", line.repeat(10));
        assert_eq!(decode(many.as_bytes(), MAX).map(|r| r.0.len()), Ok(10));
    }

    #[test]
    fn missing_crlf_after_data_is_400() {
        for input in [
            &b"5\r\nhelloX\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\r",
            b"5\r\nhello\r0",
            b"5\r\nhello world\r\n",
        ] {
            assert_eq!(
                err(input),
                HttpError::BadRequest(BAD_CHUNK_END),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn malformed_trailers_are_400() {
        for input in [
            &b"0\r\n: x\r\n\r\n"[..],
            b"0\r\nNoColon\r\n\r\n",
            b"0\r\nX : a\r\n\r\n",
            b"0\r\n X: a\r\n\r\n",
            b"0\r\nX: a\nb\r\n\r\n",
            b"0\r\nX: a\x00\r\n\r\n",
            b"0\r\nX: a\r\r\n",
            b"0\r\n\n",
            b"0\r\n\r\r",
            b"0\r\n\rX",
        ] {
            assert_eq!(
                err(input),
                HttpError::BadRequest(BAD_TRAILER),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn trailer_section_limit() {
        // The whole section after the last-chunk line, final CRLF included, may be MAX_HEADER_BYTES.
        let fixed = "X: \r\n\r\n".len();
        let at = format!("0\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEADER_BYTES - fixed));
        assert_eq!(decode(at.as_bytes(), MAX).map(|r| r.2), Ok(true));
        let over = format!(
            "0\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEADER_BYTES - fixed + 1)
        );
        assert_eq!(err(over.as_bytes()), HttpError::HeaderTooLarge);
        // Many small trailers add up; refused while still arriving, also fed in pieces.
        let many = format!("0\r\n{}", "T: v\r\n".repeat(MAX_HEADER_BYTES / 6 + 1));
        assert_eq!(err(many.as_bytes()), HttpError::HeaderTooLarge);
        assert_eq!(
            decode_in_pieces(many.as_bytes(), MAX, &mut || 7),
            Err(HttpError::HeaderTooLarge)
        );
    }

    #[test]
    fn errors_are_sticky() {
        let mut dec = ChunkedDecoder::new(MAX);
        let mut out = Vec::new();
        let e = HttpError::BadRequest(BAD_CHUNK_SIZE);
        assert_eq!(dec.feed(b"zz", &mut out), Err(e));
        assert_eq!(dec.feed(b"5\r\nhello\r\n0\r\n\r\n", &mut out), Err(e));
        assert_eq!(dec.feed(b"", &mut out), Err(e));
        assert!(!dec.is_done());
        assert!(out.is_empty());
    }

    #[test]
    fn large_body_in_reads() {
        // 10 MiB in 64 KiB chunks, read in 4000-byte pieces that never line up with chunks.
        let chunk = vec![b'z'; 64 * 1024];
        let mut input = Vec::new();
        for _ in 0..160 {
            input.extend_from_slice(b"10000\r\n");
            input.extend_from_slice(&chunk);
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b"0\r\n\r\n");
        let limit = 10 * 1024 * 1024;
        let (body, used, done) = decode_in_pieces(&input, limit, &mut || 4000).unwrap();
        assert!(done);
        assert_eq!((body.len(), used), (limit, input.len()));
        assert!(body.iter().all(|&b| b == b'z'));
        assert_eq!(
            decode_in_pieces(&input, limit - 1, &mut || 4000),
            Err(HttpError::PayloadTooLarge)
        );
    }
}
