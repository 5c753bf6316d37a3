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
//!
//! Memory: the queue buffer never grows past the byte bound (growth is clamped, not
//! doubled beyond it), and the writer holds at most one more such buffer (the one it
//! is writing), so one connection's queue memory is at most 2 × `FLUX_WS_QUEUE_BYTES`
//! ([`Outbox::memory`] reports it). Both are freed the moment closing starts: the
//! writer keeps only the rest of a frame it had partly written.

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

/// The first frame boundary at or after `at`, in a buffer of complete server frames
/// starting at a frame boundary: where a write that stopped after `at` bytes may
/// stop without cutting a frame (`at` itself when it is a boundary).
pub fn frame_end(frames: &[u8], at: usize) -> usize {
    let mut off = 0;
    while off < frames.len() {
        if off >= at {
            return off;
        }
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
    }
    frames.len()
}

/// Makes room for `extra` more bytes, growing the capacity geometrically but never
/// past `cap_max` (unless `extra` itself needs more): a queue bounded in bytes is then
/// bounded in memory too, not in twice its bound.
#[inline]
fn reserve(buf: &mut Vec<u8>, extra: usize, cap_max: usize) {
    let need = buf.len() + extra;
    if need > buf.capacity() {
        let want = (buf.capacity() * 2).clamp(need, cap_max.max(need));
        buf.reserve_exact(want - buf.len());
    }
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
    /// Memory accounted to `subs` (`Pattern::cost_bytes`; at most
    /// `WS_SUBSCRIPTION_BYTES_PER_CONN_MAX`).
    pub sub_bytes: Cell<usize>,
    /// Capacity of the buffer the writer holds (the frames it is writing).
    writer_bytes: Cell<usize>,
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
            sub_bytes: Cell::new(0),
            writer_bytes: Cell::new(0),
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
        reserve(&mut buf, frames.len(), self.bytes_max);
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
        reserve(&mut buf, payload.len() + 10, self.bytes_max);
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
    /// while closing: it comes after what is queued. Bounded like messages: a client
    /// that sends pings without reading the pongs overflows the queue too (the frame
    /// is queued anyway, the caller closes the connection). While closing, only the
    /// close frame comes here (tungstenite answers no pings once it sent it).
    pub fn control(&self, frames: &[u8]) -> Result<(), Overflow> {
        self.buf.borrow_mut().extend_from_slice(frames);
        let bytes = self.bytes.get() + frames.len();
        self.bytes.set(bytes);
        self.wake();
        if bytes > self.bytes_max && !self.refuses() {
            return Err(Overflow);
        }
        Ok(())
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
        self.writer_bytes.set(into.capacity());
        self.msgs.replace(0)
    }

    /// The writer's buffer now has this capacity (it shrank or freed it).
    pub fn writer_holds(&self, capacity: usize) {
        self.writer_bytes.set(capacity);
    }

    /// Bytes of memory the queue holds: the queue buffer's capacity and the buffer
    /// the writer is writing (allocated, not just used).
    pub fn memory(&self) -> usize {
        self.buf.borrow().capacity() + self.writer_bytes.get()
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
            assert_eq!(frame_end(&b, 0), 0, "a boundary: nothing to finish");
            assert_eq!(frame_end(&b, 1), head + n);
            assert_eq!(frame_end(&b, head + n - 1), head + n);
            assert_eq!(frame_end(&b, head + n), head + n);
            assert_eq!(frame_end(&b, head + n + 1), head + n + 4);
            assert_eq!(frame_end(&b, b.len()), b.len());
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

    #[test]
    fn memory_stays_within_the_bound_and_is_freed_on_close() {
        let max = 64 * 1024;
        let o = Outbox::new(1, max);
        while o.push_text(&text(1000)).is_ok() {}
        assert!(o.queued().1 <= max);
        // Doubling would have reached 128 KiB; growth is clamped at the bound.
        assert!(o.memory() <= max, "{} > {max}", o.memory());
        let mut into = Vec::new();
        o.take(&mut into);
        assert_eq!(o.memory(), into.capacity());
        o.writer_holds(0);
        o.close(CloseReason::SlowConsumer);
        assert_eq!(o.memory(), 0);
    }

    #[test]
    fn control_frames_count_against_the_bound() {
        let o = Outbox::new(1, 100);
        for _ in 0..14 {
            assert_eq!(o.control(&[0x8A, 5, 1, 2, 3, 4, 5]), Ok(()));
        }
        assert_eq!(o.control(&[0x8A, 5, 1, 2, 3, 4, 5]), Err(Overflow));
        o.close(CloseReason::SlowConsumer);
        // The close frame itself is queued whatever the bound.
        assert_eq!(o.control(&[0x88, 2, 0x03, 0xF0]), Ok(()));
    }
}
