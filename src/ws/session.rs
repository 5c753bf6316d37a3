//! One WebSocket connection, after the `101`: frames ↔ commands on the shard that
//! accepted it. async-tungstenite does the framing over the glommio `TcpStream`.
//!
//! A session is one task running two loops side by side: the reader (client frames →
//! subscribe / unsubscribe / error replies; tungstenite answers pings and the peer's
//! close) and the writer (the outbox → frames, one flush per burst). It ends when the
//! peer closes or vanishes, or when the server closes it (slow consumer, shutdown,
//! ping timeout, oversized or malformed frames): then the writer sends the close
//! frame and the reader waits for the peer's, each bounded by `CLOSE_TIMEOUT`.
//! Whatever the exit path, [`Registration`]'s `Drop` unregisters the connection and
//! its subscriptions, here and on the owning shards.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::{WebSocketReceiver, WebSocketSender, WebSocketStream};
use futures_lite::future;
use futures_lite::StreamExt;
use futures_util::SinkExt;
use glommio::net::TcpStream;

use super::outbox::{CloseReason, Next, Outbox};
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
        // Frames are written out once this much is buffered, and at every flush.
        .write_buffer_size(16 * 1024)
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

/// `f`, unless `d` passes first.
async fn within<T>(d: Duration, f: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(f.await) }, async {
        glommio::timer::sleep(d).await;
        None
    })
    .await
}

/// `f`, unless the connection starts closing first.
async fn unless_closing<T>(o: &Outbox, f: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(f.await) }, async {
        poll_fn(|cx| o.poll_closing(cx)).await;
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
    let ws =
        WebSocketStream::from_partially_read(stream, early, Role::Server, Some(ws_config())).await;
    let (mut tx, mut rx) = ws.split();
    let reg = Registration::new(&shard);
    let o = &reg.outbox;
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
    let mut reader = pin!(read_loop(&shard, o, &mut rx, &scope));
    let mut writer = pin!(write_loop(&shard, o, &mut tx));
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
        // The peer closed (tungstenite answered its close frame) or the stream
        // failed. If the reader asked to close (oversized or malformed frames), let
        // the writer send the close frame.
        if o.closing().is_some() {
            within(CLOSE_TIMEOUT, writer).await;
        }
    } else if first == Some(true) {
        // Our close frame went out: wait for the peer's answer.
        within(CLOSE_TIMEOUT, reader).await;
    }
    // `reg` drops last (after the loops borrowing its outbox): unregistration.
}

async fn read_loop(
    shard: &Shard,
    o: &Outbox,
    rx: &mut WebSocketReceiver<TcpStream>,
    scope: &ReadScope,
) {
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

/// Sends queued messages until the connection closes; returns whether a close frame
/// went out (false: writing failed or timed out).
async fn write_loop(shard: &Shard, o: &Outbox, tx: &mut WebSocketSender<TcpStream>) -> bool {
    loop {
        let depth = o.queued().0 as u64;
        match poll_fn(|cx| o.poll_next(cx)).await {
            Next::Send(m) => {
                if matches!(m, Message::Text(_)) {
                    shard.metrics.hist.borrow_mut().queue_depth.record(depth);
                }
                match unless_closing(o, tx.feed(m)).await {
                    Some(Ok(())) => {}
                    Some(Err(_)) => return false,
                    None => continue,
                }
                if !o.has_more() {
                    match unless_closing(o, tx.flush()).await {
                        Some(Ok(())) | None => {}
                        Some(Err(_)) => return false,
                    }
                }
                // A long queue on a fast socket never waits: let other tasks run.
                glommio::yield_if_needed().await;
            }
            Next::Close(why) => {
                shard.ws.release(shard, o);
                let frame = CloseFrame {
                    code: why.code(),
                    reason: why.text().into(),
                };
                return matches!(
                    within(CLOSE_TIMEOUT, tx.close(Some(frame))).await,
                    Some(Ok(()))
                );
            }
        }
    }
}
