//! A WebSocket connection's outgoing queue: bounded in bytes and in messages, filled
//! without ever waiting (by the shard's delivery task, the metrics ticker and the
//! session itself) and drained by the session's writer.
//!
//! When a push would exceed a bound the connection is a slow consumer: the queue is
//! dropped and the connection closes with 1008 `slow consumer`. Nothing upstream ever
//! waits for a subscriber, so ingestion does not depend on any subscriber's speed.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::Message;

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

/// What the writer should do next.
#[derive(Debug)]
pub enum Next {
    Send(Message),
    Close(CloseReason),
}

pub struct Outbox {
    pub id: ConnId,
    queue: RefCell<VecDeque<Message>>,
    /// Payload bytes in `queue`.
    bytes: Cell<usize>,
    bytes_max: usize,
    closing: Cell<Option<CloseReason>>,
    /// The session task; every part of a session runs in that one task.
    waker: RefCell<Option<Waker>>,
    /// When the client last sent anything (ping replies included).
    pub last_rx: Cell<Instant>,
    /// Whether a server ping awaits being sent (not counted against the bounds).
    ping_due: Cell<bool>,
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
            queue: RefCell::new(VecDeque::new()),
            bytes: Cell::new(0),
            bytes_max,
            closing: Cell::new(None),
            waker: RefCell::new(None),
            last_rx: Cell::new(Instant::now()),
            ping_due: Cell::new(false),
            subs: RefCell::new(HashSet::new()),
            tenant: std::cell::OnceCell::new(),
        }
    }

    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Queues a text message. Dropped silently once the connection is closing.
    pub fn push(&self, msg: Message) -> Result<(), Overflow> {
        if self.closing.get().is_some() {
            return Ok(());
        }
        let len = msg.len();
        let mut q = self.queue.borrow_mut();
        if self.bytes.get() + len > self.bytes_max || q.len() >= WS_QUEUE_MESSAGES_MAX {
            return Err(Overflow);
        }
        let was_empty = q.is_empty();
        q.push_back(msg);
        self.bytes.set(self.bytes.get() + len);
        drop(q);
        if was_empty {
            self.wake();
        }
        Ok(())
    }

    /// Asks the writer to send a ping.
    pub fn ping(&self) {
        self.ping_due.set(true);
        self.wake();
    }

    /// Starts closing (the first reason wins): the queue is dropped and the writer
    /// sends a close frame. Returns whether this call started it.
    pub fn close(&self, why: CloseReason) -> bool {
        if self.closing.get().is_some() {
            return false;
        }
        self.closing.set(Some(why));
        self.queue.borrow_mut().clear();
        self.bytes.set(0);
        self.wake();
        true
    }

    pub fn closing(&self) -> Option<CloseReason> {
        self.closing.get()
    }

    pub fn queued(&self) -> (usize, usize) {
        (self.queue.borrow().len(), self.bytes.get())
    }

    /// The writer's next step; `Pending` (with the waker kept) when there is none.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Next> {
        if let Some(why) = self.closing.get() {
            return Poll::Ready(Next::Close(why));
        }
        if self.ping_due.replace(false) {
            return Poll::Ready(Next::Send(Message::Ping(Default::default())));
        }
        if let Some(m) = self.queue.borrow_mut().pop_front() {
            self.bytes.set(self.bytes.get() - m.len());
            return Poll::Ready(Next::Send(m));
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

    /// Whether more messages are queued right now (the writer flushes when not).
    pub fn has_more(&self) -> bool {
        !self.queue.borrow().is_empty() || self.ping_due.get()
    }

    fn register(&self, cx: &mut Context<'_>) {
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

    fn text(n: usize) -> Message {
        Message::text("x".repeat(n))
    }

    #[test]
    fn bounded_in_bytes_then_closes_and_drops_the_queue() {
        let o = Outbox::new(1, 100);
        assert_eq!(o.push(text(60)), Ok(()));
        assert_eq!(o.push(text(40)), Ok(()));
        assert_eq!(o.queued(), (2, 100));
        assert_eq!(o.push(text(1)), Err(Overflow));
        assert!(o.close(CloseReason::SlowConsumer));
        assert!(!o.close(CloseReason::ShuttingDown), "the first reason wins");
        assert_eq!(o.queued(), (0, 0));
        assert_eq!(o.push(text(1)), Ok(()), "dropped once closing");
        assert_eq!(o.queued(), (0, 0));
        let mut cx = Context::from_waker(Waker::noop());
        match o.poll_next(&mut cx) {
            Poll::Ready(Next::Close(CloseReason::SlowConsumer)) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(CloseReason::SlowConsumer.code(), CloseCode::Policy);
    }

    #[test]
    fn bounded_in_messages() {
        let o = Outbox::new(1, usize::MAX);
        for _ in 0..WS_QUEUE_MESSAGES_MAX {
            o.push(text(0)).unwrap();
        }
        assert_eq!(o.push(text(0)), Err(Overflow));
    }

    #[test]
    fn writer_gets_pings_first_then_messages_in_order() {
        let o = Outbox::new(1, 1000);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(o.poll_next(&mut cx).is_pending());
        o.push(text(1)).unwrap();
        o.push(text(2)).unwrap();
        o.ping();
        let mut got = Vec::new();
        while let Poll::Ready(Next::Send(m)) = o.poll_next(&mut cx) {
            got.push(m);
        }
        assert!(matches!(got[0], Message::Ping(_)));
        assert_eq!(got[1].len(), 1);
        assert_eq!(got[2].len(), 2);
        assert_eq!(o.queued(), (0, 0));
    }
}
