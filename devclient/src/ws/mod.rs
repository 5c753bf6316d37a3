//! WebSocket (RFC 6455) as a client speaks it: the opening handshake, server
//! frames decoded in place from a byte buffer, client frames encoded masked.
//! Pure functions over buffers: the blocking test client and the load
//! tester's nonblocking subscribers read and write their sockets themselves.
//!
//! Frame layout (RFC 6455 §5.2):
//! ```text
//!  byte 0: FIN(1) RSV(3) opcode(4)   byte 1: MASK(1) len(7)
//!  len 126: 2 more bytes of length; 127: 8 more; then (client frames only)
//!  a 4-byte mask key; then the payload (client frames: XORed with the key).
//! ```
//! Message assembly (fragments, control frames between them) is the caller's:
//! the test client keeps every frame to check the server's framing, the load
//! tester assembles in place.

use crate::http::{parse_head, HttpError};
use std::fmt;

/// A server frame longer than this is an error (Flux's own messages are far
/// smaller); a reader grows its buffer up to this for one large frame.
pub const MESSAGE_BYTES_MAX: usize = 64 << 20;
/// An answer to the upgrade whose head is not complete within this many bytes
/// is an error.
pub const UPGRADE_HEAD_BYTES_MAX: usize = 16 * 1024;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close code for "no status code was present" (RFC 6455 §7.1.5); never sent.
pub const CLOSE_NO_STATUS: u16 = 1005;

/// Why bytes from the server are not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// RSV1-3 set: no extension was agreed.
    ReservedBits,
    /// Server frames are never masked (RFC 6455 §5.1).
    Masked,
    /// Longer than [`MESSAGE_BYTES_MAX`].
    TooLong(u64),
    /// A reserved opcode (0x3-0x7, 0xB-0xF).
    BadOpcode(u8),
    /// A control frame that is fragmented or longer than 125 bytes.
    BadControl,
    /// A continuation outside a message, or a new message inside one.
    BadSequence,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::ReservedBits => {
                write!(
                    f,
                    "WebSocket frame with reserved bits set (no extension was agreed)"
                )
            }
            FrameError::Masked => write!(f, "masked WebSocket frame from the server"),
            FrameError::TooLong(n) => write!(f, "WebSocket frame of {n} bytes"),
            FrameError::BadOpcode(op) => write!(f, "WebSocket frame with reserved opcode {op:#x}"),
            FrameError::BadControl => {
                write!(f, "fragmented or over-long WebSocket control frame")
            }
            FrameError::BadSequence => write!(f, "WebSocket fragments out of sequence"),
        }
    }
}

impl std::error::Error for FrameError {}

/// A frame header, decoded; its payload is `buf[payload_at..payload_at + len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: u8,
    pub payload_at: usize,
    pub len: usize,
}

impl FrameHeader {
    /// Bytes of the whole frame.
    pub fn end(&self) -> usize {
        self.payload_at + self.len
    }

    /// Close, ping and pong (opcodes 0x8 and up).
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// The header of a server frame at the start of `buf`: `Ok(None)` while the
/// header is incomplete (the payload may still be partial: compare
/// [`FrameHeader::end`] with the buffer). Masked, extended or oversized frames
/// are errors, and so are reserved opcodes and control frames that are
/// fragmented or longer than 125 bytes.
pub fn frame_header(buf: &[u8]) -> Result<Option<FrameHeader>, FrameError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (len, payload_at) = match b1 & 0x7f {
        126 if buf.len() < 4 => return Ok(None),
        126 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
        127 if buf.len() < 10 => return Ok(None),
        127 => (
            u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")),
            10,
        ),
        n => (n as u64, 2),
    };
    if len > MESSAGE_BYTES_MAX as u64 {
        return Err(FrameError::TooLong(len));
    }
    let h = FrameHeader {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        payload_at,
        len: len as usize,
    };
    match h.opcode {
        OP_CONTINUATION | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG if h.fin && h.len <= 125 => {}
        OP_CLOSE | OP_PING | OP_PONG => return Err(FrameError::BadControl),
        op => return Err(FrameError::BadOpcode(op)),
    }
    Ok(Some(h))
}

/// Where a frame stands among the frames of messages (RFC 6455 §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Close, ping or pong: may come between the fragments of a message.
    Control,
    /// A text or binary frame that is a whole message.
    Whole,
    /// The first fragment of a text or binary message.
    First,
    /// A continuation of the message that started with `opcode`; `last` ends it.
    Continuation { opcode: u8, last: bool },
}

/// Follows the fragments of messages across frames: which [`Part`] a frame
/// is, and whether it may come now. Assembling the payloads is the caller's.
#[derive(Debug, Clone, Default)]
pub struct Sequence {
    /// The opcode of the message whose fragments are arriving.
    open: Option<u8>,
}

impl Sequence {
    pub fn new() -> Sequence {
        Sequence::default()
    }

    /// The next frame's part; `BadSequence` for a continuation outside a
    /// message or a new message before the last one ended.
    pub fn next(&mut self, h: &FrameHeader) -> Result<Part, FrameError> {
        match (h.opcode, self.open) {
            _ if h.is_control() => Ok(Part::Control),
            (OP_CONTINUATION, Some(opcode)) => {
                if h.fin {
                    self.open = None;
                }
                Ok(Part::Continuation {
                    opcode,
                    last: h.fin,
                })
            }
            (OP_TEXT | OP_BINARY, None) if h.fin => Ok(Part::Whole),
            (OP_TEXT | OP_BINARY, None) => {
                self.open = Some(h.opcode);
                Ok(Part::First)
            }
            _ => Err(FrameError::BadSequence),
        }
    }

    /// Whether a fragmented message has started and not ended.
    pub fn mid_message(&self) -> bool {
        self.open.is_some()
    }
}

/// Appends a client frame: FIN as given (false for all but the last fragment
/// of a message), payload masked with `mask`.
pub fn encode_client_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: u8,
    payload: &[u8],
    mask: [u8; 4],
) {
    push_client_header(out, fin, opcode, payload.len(), mask);
    push_masked(out, payload, mask, 0);
}

/// Appends a client close frame with `code` and `reason` (the reason is cut to
/// the 123 bytes a control frame has room for).
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &[u8], mask: [u8; 4]) {
    let reason = &reason[..reason.len().min(123)];
    push_client_header(out, true, OP_CLOSE, 2 + reason.len(), mask);
    push_masked(out, &code.to_be_bytes(), mask, 0);
    push_masked(out, reason, mask, 2);
}

fn push_client_header(out: &mut Vec<u8>, fin: bool, opcode: u8, len: usize, mask: [u8; 4]) {
    out.push((u8::from(fin) << 7) | opcode);
    match len {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
}

/// Appends `bytes` XORed with `mask`, as payload bytes from offset `at` on.
fn push_masked(out: &mut Vec<u8>, bytes: &[u8], mask: [u8; 4], at: usize) {
    out.extend(
        bytes
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[(at + i) % 4]),
    );
}

/// The status code of a close frame's payload ([`CLOSE_NO_STATUS`] if none).
pub fn close_code(payload: &[u8]) -> u16 {
    match payload {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => CLOSE_NO_STATUS,
    }
}

/// The reason of a close frame's payload (empty if none).
pub fn close_reason(payload: &[u8]) -> &[u8] {
    payload.get(2..).unwrap_or_default()
}

/// `GET <base_path>/api/ws` with the upgrade headers (and a bearer token).
pub fn upgrade_request(
    authority: &str,
    base_path: &str,
    key: &str,
    token: Option<&str>,
) -> Vec<u8> {
    let mut r = Vec::with_capacity(256);
    for part in [
        "GET ",
        base_path,
        "/api/ws HTTP/1.1\r\nHost: ",
        authority,
        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ",
        key,
        "\r\nSec-WebSocket-Version: 13\r\n",
    ] {
        r.extend_from_slice(part.as_bytes());
    }
    if let Some(t) = token {
        r.extend_from_slice(b"Authorization: Bearer ");
        r.extend_from_slice(t.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"\r\n");
    r
}

/// A `Sec-WebSocket-Key` (base64 of 16 bytes) drawn from `seed`: keys need to
/// differ between connections, not to be secret (RFC 6455 §10.3 is about
/// browsers' masking, not this nonce).
pub fn key_from_seed(seed: u64) -> String {
    let mut bytes = [0u8; 16];
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    for b in bytes.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    base64(&bytes)
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `Sec-WebSocket-Accept` a server must answer to `key`.
pub fn accept_key(key: &str) -> String {
    async_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())
}

/// The answer to the upgrade, once its head is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    /// `101` with `Upgrade: websocket` and the right accept key: frames start
    /// after `head_len` bytes.
    Accepted { head_len: usize },
    /// Another status: the caller reads up to `body_len` bytes of body (its
    /// Content-Length, 0 if none) to quote them.
    Refused {
        status: u16,
        reason: String,
        head_len: usize,
        body_len: usize,
    },
}

/// Why an answer to the upgrade is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeError {
    Http(HttpError),
    /// No complete head within [`UPGRADE_HEAD_BYTES_MAX`] bytes.
    HeadTooLarge,
    /// A 101 without `Upgrade: websocket`.
    NotWebSocket,
    /// A 101 without the right `Sec-WebSocket-Accept`.
    WrongAccept,
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::Http(e) => write!(f, "bad WebSocket upgrade response: {e}"),
            UpgradeError::HeadTooLarge => write!(f, "WebSocket upgrade response head too large"),
            UpgradeError::NotWebSocket => {
                write!(f, "the server answered 101 without Upgrade: websocket")
            }
            UpgradeError::WrongAccept => {
                write!(
                    f,
                    "the server answered 101 without the right Sec-WebSocket-Accept"
                )
            }
        }
    }
}

impl std::error::Error for UpgradeError {}

/// Checks the answer to an upgrade request at the start of `buf`, `accept`
/// being [`accept_key`] of the key sent; `Ok(None)`: the head is not complete
/// yet.
pub fn parse_upgrade(buf: &[u8], accept: &str) -> Result<Option<Upgrade>, UpgradeError> {
    let head = match parse_head(buf) {
        Ok(Some(h)) => h,
        Ok(None) if buf.len() >= UPGRADE_HEAD_BYTES_MAX => return Err(UpgradeError::HeadTooLarge),
        Ok(None) => return Ok(None),
        Err(e) => return Err(UpgradeError::Http(e)),
    };
    if head.status != 101 {
        return Ok(Some(Upgrade::Refused {
            status: head.status,
            reason: String::from_utf8_lossy(head.reason()).into_owned(),
            head_len: head.len(),
            body_len: head.content_length.unwrap_or(0).min(usize::MAX as u64) as usize,
        }));
    }
    if !head
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"))
    {
        return Err(UpgradeError::NotWebSocket);
    }
    if head.header("sec-websocket-accept") != Some(accept.as_bytes()) {
        return Err(UpgradeError::WrongAccept);
    }
    Ok(Some(Upgrade::Accepted {
        head_len: head.len(),
    }))
}

#[cfg(test)]
mod tests;
