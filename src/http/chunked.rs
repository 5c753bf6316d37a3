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
