//! HTTP/1.1 responses, as a client reads them: a head parser that borrows the
//! buffer ([`head`]) and an incremental decoder of a sequence of pipelined
//! responses ([`decoder`]). Nothing here reads a socket: callers hand over the
//! bytes they have and are told how many were used.

mod decoder;
mod head;

pub use decoder::{Decoder, Response};
pub use head::{parse_head, Framing, Head, Headers, HEADERS_MAX, HEAD_BYTES_MAX};

use std::fmt;

/// Why bytes are not a valid response. The offending input is not kept: the
/// caller has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The status line or a header line is malformed (which, in words).
    Head(&'static str),
    /// No complete head within [`HEAD_BYTES_MAX`] bytes.
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

impl std::error::Error for HttpError {}

impl From<HttpError> for std::io::Error {
    fn from(e: HttpError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests;
