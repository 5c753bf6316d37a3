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
//! ping timeout, oversized or malformed frames).
//!
//! Closing, when the server starts it: the queue is dropped at once (`Outbox::close`);
//! a frame the writer had partly written is finished (bytes of two frames are never
//! interleaved), the close frame follows it, and the session waits for the peer's
//! close frame. The whole handshake has `CLOSE_HANDSHAKE_TIMEOUT`; past it the TCP
//! connection is reset. What can still come before the close frame is bounded:
//! the kernel holds at most `WS_UNSENT_BYTES_MAX` of unsent bytes per connection
//! (`TCP_NOTSENT_LOWAT`), plus what is in flight in the peer's receive window.
//! Whatever the exit path, [`Registration`]'s `Drop` unregisters the connection and
//! its subscriptions, here and on the owning shards.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::AsRawFd;
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

/// How long a close handshake may take in all: from the moment the server starts
/// closing (or the peer's close frame arrives) until the rest of a partly written
/// frame and our close frame are out and the peer's close frame is in. Past it the
/// TCP connection is reset (`SO_LINGER` 0), so the kernel drops what it still holds
/// for the peer too: a client that stops reading, or never answers the close, holds
/// nothing for longer than this.
pub const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// Unsent bytes the kernel may hold in one WebSocket connection's send buffer
/// (`TCP_NOTSENT_LOWAT`: the socket takes no more while this much is waiting to be
/// sent). Without it the kernel's send buffer grows to megabytes (`tcp_wmem`
/// autotuning; 2.8 MB measured for a subscriber with a 4 KiB receive buffer), all of
/// which a slow consumer would have to read before its close frame. Bytes in flight
/// (within the peer's receive window) are not counted, so a fast reader is not held
/// back: the writer is woken to refill whenever less than this is waiting.
pub const WS_UNSENT_BYTES_MAX: usize = 64 * 1024;

/// Best effort: a socket without the option still works, with the kernel's defaults.
fn set_sockopt<T>(stream: &TcpStream, level: libc::c_int, name: libc::c_int, v: &T) {
    // SAFETY: a valid descriptor (owned by `stream`) and a value of the size given.
    let _ = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
}

/// Makes dropping the socket reset the connection instead of closing it in order:
/// the kernel then frees its buffers at once rather than trying to deliver them.
fn reset_on_drop(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    set_sockopt(stream, libc::SOL_SOCKET, libc::SO_LINGER, &linger);
}

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
        let outbox = crate::ws::hub(shard).open(shard);
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
        crate::ws::hub(&self.shard).close(&self.shard, &self.outbox);
        self.shard.in_flight.set(self.shard.in_flight.get() - 1);
    }
}

/// The stream tungstenite works on: reads from the socket, writes into the outbox
/// (whole frames, at once: tungstenite writes its frames in one call, and a write
/// never waits), where the writer sends them in order with the messages.
struct Io {
    stream: Rc<RefCell<TcpStream>>,
    out: Rc<Outbox>,
    shard: Rc<Shard>,
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
        if self.out.control(buf).is_err() {
            // Pongs piling up for a client that sends pings and reads nothing.
            crate::ws::hub(&self.shard).close_slow(&self.shard, &self.out);
        }
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
    crate::ws::hub(&shard)
        .spawn(session(s, stream, early, scope))
        .await;
}

async fn session(shard: Rc<Shard>, stream: TcpStream, early: Vec<u8>, scope: ReadScope) {
    let _ = stream.set_read_timeout(None);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(WRITE_TIMEOUT_MS)));
    let unsent = WS_UNSENT_BYTES_MAX as libc::c_int;
    set_sockopt(&stream, libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT, &unsent);
    let stream = Rc::new(RefCell::new(stream));
    let reg = Registration::new(&shard);
    let o = &reg.outbox;
    let io = Io {
        stream: stream.clone(),
        out: o.clone(),
        shard: shard.clone(),
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
    // Which loop ended first.
    let first = future::or(
        async {
            (&mut reader).await;
            None
        },
        async { Some((&mut writer).await) },
    )
    .await;
    // The close handshake (or what is left of it), within one deadline.
    let handshake = async {
        match first {
            None => {
                // The peer closed (tungstenite queued the answer to its close frame)
                // or the stream failed: the writer sends what is queued and ends. If
                // the reader asked to close (oversized or malformed frames), the
                // writer hands over the close frame.
                if o.closing().is_none() {
                    o.seal();
                }
                match writer.await {
                    WriterEnd::Done => true,
                    WriterEnd::Close(last) => write_all(o, &stream, &last).await.is_ok(),
                    WriterEnd::Failed => false,
                }
            }
            Some(WriterEnd::Close(last)) => {
                // Our close frame (after the rest of a partly written frame), then
                // the peer's answer.
                write_all(o, &stream, &last).await.is_ok() && {
                    drop(last);
                    o.writer_holds(0);
                    reader.await;
                    true
                }
            }
            Some(WriterEnd::Done | WriterEnd::Failed) => false,
        }
    };
    let finished = within(CLOSE_HANDSHAKE_TIMEOUT, handshake).await == Some(true);
    if !finished {
        reset_on_drop(&stream.borrow());
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
            Ok(Message::Binary(_)) => crate::ws::hub(shard).reply(
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
        Err(msg) => return crate::ws::hub(shard).reply(shard, o, protocol::error_message(&msg)),
    };
    let mut pattern = Pattern::parse(&id);
    if let Some(prefix) = scope.prefix() {
        match (pattern.confine(prefix), cmd) {
            (Some(p), _) => pattern = p,
            // Nothing outside the namespace was ever subscribed.
            (None, Command::Unsubscribe) => {
                return crate::ws::hub(shard).reply(shard, o, protocol::ack_message(cmd, &id))
            }
            (None, Command::Subscribe) => {
                let msg = "this token may subscribe only to its own namespace's entities";
                return crate::ws::hub(shard).reply(shard, o, protocol::error_message(msg));
            }
        }
    }
    match cmd {
        Command::Subscribe => {
            if let Err(msg) = crate::ws::hub(shard).subscribe(shard, o, pattern).await {
                return crate::ws::hub(shard).reply(shard, o, protocol::error_message(&msg));
            }
        }
        Command::Unsubscribe => crate::ws::hub(shard).unsubscribe(shard, o, &pattern),
    }
    crate::ws::hub(shard).reply(shard, o, protocol::ack_message(cmd, &id));
}

/// How the writer ended.
enum WriterEnd {
    /// The server is closing: these bytes (the rest of a frame that was partly
    /// written, then the close frame) go out next, and nothing after them.
    Close(Vec<u8>),
    /// Sealed (the peer closed) and everything queued was written.
    Done,
    /// Writing failed or timed out.
    Failed,
}

/// Sends queued frames until the connection closes.
async fn write_loop(
    shard: &Shard,
    o: &Outbox,
    stream: &RefCell<TcpStream>,
    tx: &mut WebSocketSender<Io>,
) -> WriterEnd {
    let mut chunk = Vec::new();
    // The unwritten rest of the frame being written when closing started.
    let mut rest = Vec::new();
    loop {
        match poll_fn(|cx| o.poll_next(cx, &mut chunk)).await {
            Next::Write(msgs) => {
                if msgs > 0 {
                    // Each message taken saw `msgs` queued.
                    let hist = &mut crate::metrics::local(shard).hist.borrow_mut().queue_depth;
                    let m = msgs as u64;
                    hist.h.saturating_record_n(m, m);
                    hist.sum = hist.sum.saturating_add(m * m);
                }
                let mut off = 0;
                if write(o, stream, &chunk, &mut off, true).await.is_err() {
                    return WriterEnd::Failed;
                }
                if off < chunk.len() {
                    // Closing started mid-write: the frame being written is finished
                    // (the close frame must follow a whole frame), the rest is
                    // dropped and its buffer freed now, not after the handshake.
                    rest.extend_from_slice(&chunk[off..outbox::frame_end(&chunk, off)]);
                    chunk = Vec::new();
                } else {
                    chunk.clear();
                    // A large buffer is not kept for an idle connection.
                    if chunk.capacity() > 1 << 20 {
                        chunk = Vec::new();
                    }
                }
                o.writer_holds(chunk.capacity() + rest.capacity());
            }
            Next::Close(why) => {
                crate::ws::hub(shard).release(shard, o);
                let frame = CloseFrame {
                    code: why.code(),
                    reason: why.text().into(),
                };
                // tungstenite queues the close frame in the outbox (and records that
                // we sent it); it fails when the peer's close came first, and then
                // its answer is queued already.
                let _ = tx.close(Some(frame)).await;
                o.take(&mut chunk);
                rest.extend_from_slice(&chunk);
                drop(chunk);
                o.writer_holds(rest.capacity());
                return WriterEnd::Close(rest);
            }
            Next::Done => return WriterEnd::Done,
        }
    }
}

/// Writes all of `buf` (closing: not interrupted by it).
async fn write_all(o: &Outbox, stream: &RefCell<TcpStream>, buf: &[u8]) -> io::Result<()> {
    let mut off = 0;
    write(o, stream, buf, &mut off, false).await
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
