//! One WebSocket connection, after the `101`: frames ↔ commands on the shard that
//! accepted it.
//!
//! Reading is async-tungstenite's, over the glommio `TcpStream` (client frames are
//! masked, may be fragmented, and must be checked). Writing bypasses it: messages are
//! queued already framed in the outbox, and the writer sends everything queued with
//! one write. What tungstenite itself writes (pongs, close frames) goes through [`Io`]
//! into the outbox too, at a frame boundary, so one writer orders every frame.
//!
//! A session is one task running two loops side by side: the reader (client frames →
//! subscribe / unsubscribe / error replies; tungstenite answers pings and the peer's
//! close) and the writer (the outbox → the socket). It ends when the
//! peer closes or vanishes, or when the server closes it (slow consumer, shutdown,
//! ping timeout, oversized or malformed frames): then the writer sends the close
//! frame and the reader waits for the peer's, each bounded by `CLOSE_TIMEOUT`.
//! Whatever the exit path, [`Registration`]'s `Drop` unregisters the connection and
//! its subscriptions, here and on the owning shards.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::{WebSocketReceiver, WebSocketSender, WebSocketStream};
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::StreamExt;
use glommio::net::TcpStream;

use super::outbox::{self, CloseReason, Next, Outbox};
use super::protocol::{self, Command, CLIENT_MESSAGE_BYTES_MAX};
use super::subs::Pattern;
use crate::auth::ReadScope;
use crate::limits::WRITE_TIMEOUT_MS;
use crate::shard::Shard;

/// How long a close handshake may take, each way (our close frame out, the peer's
/// back). A peer that does not read gets its TCP connection dropped after it.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        // Allocated eagerly per connection; client messages are small.
        .read_buffer_size(4 * 1024)
        // Only control frames are written through tungstenite (see `Io`).
        .write_buffer_size(0)
        .max_message_size(Some(CLIENT_MESSAGE_BYTES_MAX))
        .max_frame_size(Some(CLIENT_MESSAGE_BYTES_MAX))
}

/// The connection's registration with its shard; dropping it unregisters.
struct Registration {
    shard: Rc<Shard>,
    outbox: Rc<Outbox>,
}

impl Registration {
    fn new(shard: &Rc<Shard>) -> Self {
        let outbox = shard.ws.open(shard);
        // Shutdown waits (within its grace period) for sessions to finish closing.
        shard.in_flight.set(shard.in_flight.get() + 1);
        Registration {
            shard: shard.clone(),
            outbox,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shard.ws.close(&self.shard, &self.outbox);
        self.shard.in_flight.set(self.shard.in_flight.get() - 1);
    }
}

/// The stream tungstenite works on: reads from the socket, writes into the outbox
/// (whole frames, at once: tungstenite writes its frames in one call, and a write
/// never waits), where the writer sends them in order with the messages.
struct Io {
    stream: Rc<RefCell<TcpStream>>,
    out: Rc<Outbox>,
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.stream.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.out.control(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The reader's own wakeups (see [`gated`]).
struct Gate {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(w) = self.task.lock().expect("gate lock").as_ref() {
            w.wake_by_ref();
        }
    }
}

/// `f`, polled only when something it waits for woke it (or on the first poll). The
/// reader and the writer share the session's task, and the writer is woken for every
/// burst of messages: polling the reader each time would cost a read attempt (and
/// tungstenite zeroes its read buffer for each).
async fn gated<F: Future>(f: F) -> F::Output {
    let gate = Arc::new(Gate {
        woken: AtomicBool::new(true),
        task: Mutex::new(None),
    });
    let waker = Waker::from(gate.clone());
    let mut f = pin!(f);
    poll_fn(|cx| {
        {
            let mut task = gate.task.lock().expect("gate lock");
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        if !gate.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        f.as_mut().poll(&mut Context::from_waker(&waker))
    })
    .await
}

/// `f`, unless `d` passes first.
async fn within<T>(d: Duration, f: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(f.await) }, async {
        glommio::timer::sleep(d).await;
        None
    })
    .await
}

/// Runs the session in the WebSocket task queue (see `ws::WS_TASK_QUEUE_SHARES`).
/// `early` holds bytes the client sent right after its upgrade request (already read
/// from the socket by the HTTP layer).
/// `scope` confines the connection's subscriptions (a namespace token's connection
/// sees its namespace only).
pub async fn run(shard: Rc<Shard>, stream: TcpStream, early: Vec<u8>, scope: ReadScope) {
    let s = shard.clone();
    shard.ws.spawn(session(s, stream, early, scope)).await;
}

async fn session(shard: Rc<Shard>, stream: TcpStream, early: Vec<u8>, scope: ReadScope) {
    let _ = stream.set_read_timeout(None);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(WRITE_TIMEOUT_MS)));
    let stream = Rc::new(RefCell::new(stream));
    let reg = Registration::new(&shard);
    let o = &reg.outbox;
    let io = Io {
        stream: stream.clone(),
        out: o.clone(),
    };
    let ws = WebSocketStream::from_partially_read(io, early, Role::Server, Some(ws_config())).await;
    let (mut tx, mut rx) = ws.split();
    if shard.shutting_down() {
        o.close(CloseReason::ShuttingDown);
    }
    if let ReadScope::Own(ns) = &scope {
        let _ = o.tenant.set(ns.ns.clone());
        // Deleted between the upgrade and now: `revoke_everywhere` may have missed
        // this connection, so it closes itself.
        if ns.ns.deleting.load(std::sync::atomic::Ordering::Acquire) {
            o.close(CloseReason::Revoked);
        }
    }
    let mut reader = pin!(gated(read_loop(&shard, o, &mut rx, &scope)));
    let mut writer = pin!(write_loop(&shard, o, &stream, &mut tx));
    // Which loop ended first; the writer says whether its close frame went out.
    let first = future::or(
        async {
            (&mut reader).await;
            None
        },
        async { Some((&mut writer).await) },
    )
    .await;
    if first.is_none() {
        // The peer closed (tungstenite queued the answer to its close frame) or the
        // stream failed: the writer sends what is queued and ends. If the reader
        // asked to close (oversized or malformed frames), the writer sends the close
        // frame.
        if o.closing().is_none() {
            o.seal();
        }
        within(CLOSE_TIMEOUT, writer).await;
    } else if first == Some(true) {
        // Our close frame went out: wait for the peer's answer.
        within(CLOSE_TIMEOUT, reader).await;
    }
    // `reg` drops last (after the loops borrowing its outbox): unregistration.
}

async fn read_loop(shard: &Shard, o: &Outbox, rx: &mut WebSocketReceiver<Io>, scope: &ReadScope) {
    let mut scratch = Vec::new();
    while let Some(item) = rx.next().await {
        o.last_rx.set(Instant::now());
        match item {
            Ok(Message::Text(text)) => {
                if o.closing().is_none() {
                    command(shard, o, text.as_bytes(), &mut scratch, scope).await;
                }
            }
            Ok(Message::Binary(_)) => shard.ws.reply(
                shard,
                o,
                protocol::error_message("binary messages are not supported: send JSON text"),
            ),
            // Pings are answered by tungstenite, the peer's close frame too (the next
            // read then ends the stream).
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_)) => {}
            Err(e) => {
                match e {
                    WsError::Capacity(_) => {
                        o.close(CloseReason::TooBig);
                    }
                    WsError::Utf8(_) => {
                        o.close(CloseReason::InvalidUtf8);
                    }
                    WsError::Protocol(_) => {
                        o.close(CloseReason::Protocol);
                    }
                    _ => {}
                }
                return;
            }
        }
    }
}

async fn command(shard: &Shard, o: &Outbox, text: &[u8], scratch: &mut Vec<u8>, scope: &ReadScope) {
    let (cmd, id) = match protocol::parse_command(text, scratch) {
        Ok(c) => c,
        Err(msg) => return shard.ws.reply(shard, o, protocol::error_message(&msg)),
    };
    let mut pattern = Pattern::parse(&id);
    if let Some(prefix) = scope.prefix() {
        match (pattern.confine(prefix), cmd) {
            (Some(p), _) => pattern = p,
            // Nothing outside the namespace was ever subscribed.
            (None, Command::Unsubscribe) => {
                return shard.ws.reply(shard, o, protocol::ack_message(cmd, &id))
            }
            (None, Command::Subscribe) => {
                let msg = "this token may subscribe only to its own namespace's entities";
                return shard.ws.reply(shard, o, protocol::error_message(msg));
            }
        }
    }
    match cmd {
        Command::Subscribe => {
            if let Err(msg) = shard.ws.subscribe(shard, o, pattern).await {
                return shard.ws.reply(shard, o, protocol::error_message(&msg));
            }
        }
        Command::Unsubscribe => shard.ws.unsubscribe(shard, o, &pattern),
    }
    shard.ws.reply(shard, o, protocol::ack_message(cmd, &id));
}

/// Sends queued frames until the connection closes; returns whether a close frame
/// went out (false: writing failed or timed out, or the peer closed first).
async fn write_loop(
    shard: &Shard,
    o: &Outbox,
    stream: &RefCell<TcpStream>,
    tx: &mut WebSocketSender<Io>,
) -> bool {
    let mut chunk = Vec::new();
    loop {
        match poll_fn(|cx| o.poll_next(cx, &mut chunk)).await {
            Next::Write(msgs) => {
                if msgs > 0 {
                    // Each message taken saw `msgs` queued.
                    let hist = &mut shard.metrics.hist.borrow_mut().queue_depth;
                    let m = msgs as u64;
                    hist.h.saturating_record_n(m, m);
                    hist.sum = hist.sum.saturating_add(m * m);
                }
                let mut off = 0;
                match write(o, stream, &chunk, &mut off, true).await {
                    Ok(()) => {}
                    Err(_) => return false,
                }
                if off < chunk.len() {
                    // Closing started mid-write: finish the frame being written (the
                    // close frame must follow a whole frame), drop the rest.
                    let end = outbox::frame_end(&chunk, off);
                    chunk.truncate(end);
                    chunk.drain(..off);
                } else {
                    chunk.clear();
                }
                // A large buffer is not kept for an idle connection.
                if chunk.capacity() > 1 << 20 && chunk.is_empty() {
                    chunk = Vec::new();
                }
            }
            Next::Close(why) => {
                shard.ws.release(shard, o);
                let frame = CloseFrame {
                    code: why.code(),
                    reason: why.text().into(),
                };
                // tungstenite queues the close frame (and records that we sent it).
                let queued = tx.close(Some(frame)).await.is_ok();
                let mut rest = Vec::new();
                o.take(&mut rest);
                chunk.extend_from_slice(&rest);
                let mut off = 0;
                let sent = within(CLOSE_TIMEOUT, write(o, stream, &chunk, &mut off, false)).await;
                return queued && matches!(sent, Some(Ok(())));
            }
            Next::Done => return false,
        }
    }
}

/// Writes `buf[*off..]`; with `interruptible`, stops early (Ok, `*off` short) once
/// the connection starts closing.
async fn write(
    o: &Outbox,
    stream: &RefCell<TcpStream>,
    buf: &[u8],
    off: &mut usize,
    interruptible: bool,
) -> io::Result<()> {
    poll_fn(|cx| loop {
        if *off == buf.len() || (interruptible && o.closing().is_some()) {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut *stream.borrow_mut()).poll_write(cx, &buf[*off..]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                *off += n;
                o.written(n);
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {
                if interruptible {
                    o.register(cx);
                }
                return Poll::Pending;
            }
        }
    })
    .await
}
