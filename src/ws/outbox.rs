//! A WebSocket connection's outgoing queue: bounded in bytes and in messages, filled
//! without ever waiting (by the shard's delivery task, the metrics ticker and the
//! session itself) and drained by the session's writer.
//!
//! The queue is one byte buffer of complete server frames (RFC 6455 §5.2: a 2–10
//! byte header, no mask, then the payload), so queueing a message is one copy and the
//! writer sends everything queued with one write. Messages are only ever appended
//! whole, and the writer swaps the whole buffer out, so the buffer always starts and
//! ends at a frame boundary: control frames (pings, and tungstenite's pongs and
//! close frames, see `session`) are inserted there.
//!
//! When a push would exceed a bound the connection is a slow consumer: the queue is
//! dropped and the connection closes with 1008 `slow consumer`. Nothing upstream ever
//! waits for a subscriber, so ingestion does not depend on any subscriber's speed.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::subs::{ConnId, Pattern};

/// Messages one connection may have queued, whatever their size. Together with the
/// byte bound (`FLUX_WS_QUEUE_BYTES`) it bounds the queue's bookkeeping; past it the
/// connection is closed as a slow consumer.
pub const WS_QUEUE_MESSAGES_MAX: usize = 65_536;

/// Why a connection is being closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    SlowConsumer,
    ShuttingDown,
    PingTimeout,
    TooBig,
    Protocol,
    InvalidUtf8,
    /// The connection's namespace was deleted (its token no longer exists).
    Revoked,
}

impl CloseReason {
    pub fn code(self) -> CloseCode {
        match self {
            CloseReason::SlowConsumer | CloseReason::Revoked => CloseCode::Policy,
            CloseReason::ShuttingDown | CloseReason::PingTimeout => CloseCode::Away,
            CloseReason::TooBig => CloseCode::Size,
            CloseReason::Protocol => CloseCode::Protocol,
            CloseReason::InvalidUtf8 => CloseCode::Invalid,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::ShuttingDown => "server shutting down",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::TooBig => "message too big",
            CloseReason::Protocol => "protocol error",
            CloseReason::InvalidUtf8 => "invalid UTF-8 in a text message",
            CloseReason::Revoked => "namespace deleted",
        }
    }
}

/// A push that did not fit: the caller closes the connection as a slow consumer.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;

/// Appends the header of a final, unmasked server frame with `len` payload bytes.
#[inline]
pub fn put_header(buf: &mut Vec<u8>, opcode: u8, len: usize) {
    if len < 126 {
        buf.extend_from_slice(&[0x80 | opcode, len as u8]);
    } else if len <= 0xFFFF {
        let l = (len as u16).to_be_bytes();
        buf.extend_from_slice(&[0x80 | opcode, 126, l[0], l[1]]);
    } else {
        buf.extend_from_slice(&[0x80 | opcode, 127]);
        buf.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Appends a text frame.
#[inline]
pub fn put_text(buf: &mut Vec<u8>, payload: &[u8]) {
    put_header(buf, OP_TEXT, payload.len());
    buf.extend_from_slice(payload);
}

/// Where the frame containing byte `at` ends, in a buffer of complete server frames
/// starting at a frame boundary.
pub fn frame_end(frames: &[u8], at: usize) -> usize {
    let mut off = 0;
    while off < frames.len() {
        let b = &frames[off..];
        let (head, len) = match b[1] & 0x7F {
            126 => (4, u16::from_be_bytes([b[2], b[3]]) as usize),
            127 => (
                10,
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
            ),
            l => (2, l as usize),
        };
        off += head + len;
        if off > at {
            return off.min(frames.len());
        }
    }
    frames.len()
}

/// What the writer should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Frames were moved into the writer's buffer; this many of them are messages.
    Write(usize),
    Close(CloseReason),
    /// Sealed (the peer closed) and everything queued was taken: nothing more to do.
    Done,
}

pub struct Outbox {
    pub id: ConnId,
    /// Complete frames waiting for the writer.
    buf: RefCell<Vec<u8>>,
    /// Messages (text frames) in `buf`.
    msgs: Cell<usize>,
    /// Bytes queued and not yet written: `buf`, and what remains of the chunk the
    /// writer is writing.
    bytes: Cell<usize>,
    bytes_max: usize,
    closing: Cell<Option<CloseReason>>,
    /// The peer closed: no more messages are queued, what is queued still goes out.
    sealed: Cell<bool>,
    /// The session task; every part of a session runs in that one task.
    waker: RefCell<Option<Waker>>,
    /// When the client last sent anything (ping replies included).
    pub last_rx: Cell<Instant>,
    /// This connection's subscriptions (at most `WS_SUBSCRIPTIONS_PER_CONN_MAX`).
    pub subs: RefCell<HashSet<Pattern>>,
    /// The namespace a namespace token's connection is confined to: deleting it
    /// closes the connection (`Hub::revoke`).
    pub tenant: std::cell::OnceCell<std::sync::Arc<crate::auth::registry::Namespace>>,
}

impl Outbox {
    pub fn new(id: ConnId, bytes_max: usize) -> Self {
        Outbox {
            id,
            buf: RefCell::new(Vec::new()),
            msgs: Cell::new(0),
            bytes: Cell::new(0),
            bytes_max,
            closing: Cell::new(None),
            sealed: Cell::new(false),
            waker: RefCell::new(None),
            last_rx: Cell::new(Instant::now()),
            subs: RefCell::new(HashSet::new()),
            tenant: std::cell::OnceCell::new(),
        }
    }

    #[inline]
    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Whether messages are dropped (closing, or the peer closed).
    #[inline]
    pub fn refuses(&self) -> bool {
        self.closing.get().is_some() || self.sealed.get()
    }

    /// Queues `msgs` messages already framed (`put_text`), in order. Dropped silently
    /// once the connection is closing.
    #[inline]
    pub fn push_frames(&self, frames: &[u8], msgs: usize) -> Result<(), Overflow> {
        if self.refuses() {
            return Ok(());
        }
        let bytes = self.bytes.get() + frames.len();
        if bytes > self.bytes_max || self.msgs.get() + msgs > WS_QUEUE_MESSAGES_MAX {
            return Err(Overflow);
        }
        let mut buf = self.buf.borrow_mut();
        let was_empty = buf.is_empty();
        buf.extend_from_slice(frames);
        drop(buf);
        self.bytes.set(bytes);
        self.msgs.set(self.msgs.get() + msgs);
        if was_empty {
            self.wake();
        }
        Ok(())
    }

    /// Queues one text message. Dropped silently once the connection is closing.
    pub fn push_text(&self, payload: &[u8]) -> Result<(), Overflow> {
        if self.refuses() {
            return Ok(());
        }
        let bytes = self.bytes.get() + payload.len() + 10;
        if bytes > self.bytes_max || self.msgs.get() >= WS_QUEUE_MESSAGES_MAX {
            return Err(Overflow);
        }
        let mut buf = self.buf.borrow_mut();
        let was_empty = buf.is_empty();
        let before = buf.len();
        put_text(&mut buf, payload);
        let added = buf.len() - before;
        drop(buf);
        self.bytes.set(self.bytes.get() + added);
        self.msgs.set(self.msgs.get() + 1);
        if was_empty {
            self.wake();
        }
        Ok(())
    }

    /// Queues a control frame written by tungstenite (pongs, close frames), even
    /// while closing: it comes after what is queued. Not bounded (a few bytes, at the
    /// pace the client sends pings), but counted, so that a client sending pings
    /// without reading is still a slow consumer.
    pub fn control(&self, frames: &[u8]) {
        self.buf.borrow_mut().extend_from_slice(frames);
        self.bytes.set(self.bytes.get() + frames.len());
        self.wake();
    }

    /// Asks the writer to send a ping, ahead of the queued messages.
    pub fn ping(&self) {
        if self.refuses() {
            return;
        }
        let mut buf = self.buf.borrow_mut();
        buf.splice(0..0, [0x80 | OP_PING, 0]);
        drop(buf);
        self.bytes.set(self.bytes.get() + 2);
        self.wake();
    }

    /// Starts closing (the first reason wins): the queue is dropped and the writer
    /// sends a close frame. Returns whether this call started it.
    pub fn close(&self, why: CloseReason) -> bool {
        if self.closing.get().is_some() {
            return false;
        }
        self.closing.set(Some(why));
        // Keep the allocation only if small: a closing connection queues little.
        let mut buf = self.buf.borrow_mut();
        if buf.capacity() > 4096 {
            *buf = Vec::new();
        } else {
            buf.clear();
        }
        drop(buf);
        self.msgs.set(0);
        self.bytes.set(0);
        self.wake();
        true
    }

    /// The peer closed: messages are no longer queued, the writer sends what is
    /// queued (the close reply last) and then ends.
    pub fn seal(&self) {
        self.sealed.set(true);
        self.wake();
    }

    pub fn closing(&self) -> Option<CloseReason> {
        self.closing.get()
    }

    /// Messages and bytes queued (bytes include frames the writer is writing).
    pub fn queued(&self) -> (usize, usize) {
        (self.msgs.get(), self.bytes.get())
    }

    /// The writer wrote `n` bytes of what it took.
    #[inline]
    pub fn written(&self, n: usize) {
        self.bytes.set(self.bytes.get().saturating_sub(n));
    }

    /// Moves every queued frame into `into` (empty; buffers are swapped, not copied).
    pub fn take(&self, into: &mut Vec<u8>) -> usize {
        debug_assert!(into.is_empty());
        std::mem::swap(&mut *self.buf.borrow_mut(), into);
        self.msgs.replace(0)
    }

    /// The writer's next step; `Pending` (with the waker kept) when there is none.
    pub fn poll_next(&self, cx: &mut Context<'_>, into: &mut Vec<u8>) -> Poll<Next> {
        if let Some(why) = self.closing.get() {
            return Poll::Ready(Next::Close(why));
        }
        if !self.buf.borrow().is_empty() {
            return Poll::Ready(Next::Write(self.take(into)));
        }
        if self.sealed.get() {
            return Poll::Ready(Next::Done);
        }
        self.register(cx);
        Poll::Pending
    }

    /// Ready once closing has started.
    pub fn poll_closing(&self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        match self.closing.get() {
            Some(why) => Poll::Ready(why),
            None => {
                self.register(cx);
                Poll::Pending
            }
        }
    }

    pub fn register(&self, cx: &mut Context<'_>) {
        let mut w = self.waker.borrow_mut();
        match &*w {
            Some(old) if old.will_wake(cx.waker()) => {}
            _ => *w = Some(cx.waker().clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn text(n: usize) -> Vec<u8> {
        "x".repeat(n).into_bytes()
    }

    #[test]
    fn bounded_in_bytes_then_closes_and_drops_the_queue() {
        let o = Outbox::new(1, 100);
        assert_eq!(o.push_text(&text(58)), Ok(()));
        assert_eq!(o.push_text(&text(28)), Ok(()));
        assert_eq!(o.queued(), (2, 90));
        assert_eq!(o.push_text(&text(1)), Err(Overflow));
        assert!(o.close(CloseReason::SlowConsumer));
        assert!(!o.close(CloseReason::ShuttingDown), "the first reason wins");
        assert_eq!(o.queued(), (0, 0));
        assert_eq!(o.push_text(&text(1)), Ok(()), "dropped once closing");
        assert_eq!(o.queued(), (0, 0));
        let mut cx = Context::from_waker(Waker::noop());
        let mut into = Vec::new();
        match o.poll_next(&mut cx, &mut into) {
            Poll::Ready(Next::Close(CloseReason::SlowConsumer)) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(CloseReason::SlowConsumer.code(), CloseCode::Policy);
    }

    #[test]
    fn bounded_in_messages() {
        let o = Outbox::new(1, usize::MAX);
        for _ in 0..WS_QUEUE_MESSAGES_MAX {
            o.push_text(b"").unwrap();
        }
        assert_eq!(o.push_text(b""), Err(Overflow));
        assert_eq!(o.push_frames(&[0x81, 0], 1), Err(Overflow));
    }

    #[test]
    fn frames_are_encoded_with_the_shortest_length() {
        for (n, head) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let mut b = Vec::new();
            put_text(&mut b, &text(n));
            assert_eq!(b.len(), head + n);
            assert_eq!(b[0], 0x81);
            put_text(&mut b, b"ab");
            assert_eq!(frame_end(&b, 0), head + n);
            assert_eq!(frame_end(&b, head + n - 1), head + n);
            assert_eq!(frame_end(&b, head + n), head + n + 4);
        }
    }

    #[test]
    fn writer_gets_pings_first_then_messages_in_order() {
        let o = Outbox::new(1, 1000);
        let mut cx = Context::from_waker(Waker::noop());
        let mut into = Vec::new();
        assert!(o.poll_next(&mut cx, &mut into).is_pending());
        o.push_text(b"a").unwrap();
        o.push_text(b"bc").unwrap();
        o.ping();
        assert_eq!(o.poll_next(&mut cx, &mut into), Poll::Ready(Next::Write(2)));
        assert_eq!(into, [0x89, 0, 0x81, 1, b'a', 0x81, 2, b'b', b'c']);
        assert_eq!(o.queued(), (0, 9));
        o.written(9);
        assert_eq!(o.queued(), (0, 0));
        into.clear();
        o.seal();
        assert_eq!(o.push_text(b"d"), Ok(()), "dropped once sealed");
        assert_eq!(o.poll_next(&mut cx, &mut into), Poll::Ready(Next::Done));
    }
}
