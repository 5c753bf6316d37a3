//! One client connection: read → decode every complete pipelined request → dispatch
//! → write all their responses with one write.
//!
//! Buffers are allocated once per connection and reused for every request: `rbuf`
//! holds raw bytes (requests borrow from it), `out` the responses not yet written, and
//! `body` a de-chunked body. A buffer that one large request grew past
//! `BUF_RETAIN_BYTES_MAX` is shrunk back afterwards.

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::api::{self, Reply, Request};
use crate::http::chunked::ChunkedDecoder;
use crate::http::parse::{self, range_slice, BodyKind, Head, Method};
use crate::http::query::percent_decode;
use crate::http::respond::{self, Persist};
use crate::http::route::{self, BodyClass};
use crate::limits::{BODY_OTHER_BYTES_MAX, BUF_RETAIN_BYTES_MAX, READ_BUF_BYTES, WRITE_TIMEOUT_MS};
use crate::shard::Shard;

/// Per-connection scratch buffers handed to handlers.
#[derive(Default)]
pub struct Scratch {
    /// Percent-decoded path.
    pub path: Vec<u8>,
    /// Response body under construction.
    pub body: Vec<u8>,
    /// Results array of a batch.
    pub results: Vec<u8>,
}

pub struct Conn {
    shard: Rc<Shard>,
    stream: TcpStream,
    /// Raw bytes read; `rbuf[start..end]` are not consumed yet.
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    /// Responses not yet written to the socket.
    out: Vec<u8>,
    /// De-chunked request body.
    body: Vec<u8>,
    scratch: Scratch,
    /// A WebSocket upgrade was accepted (with what the client may read): after the
    /// `101` the socket goes to a session.
    upgraded: Option<crate::auth::ReadScope>,
    /// The last `Authorization` header and who it named (auth mode).
    auth_cache: Option<crate::auth::Cached>,
}

/// How reading more bytes ended, when it did not deliver any.
enum ReadEnd {
    Eof,
    TimedOut,
    Error,
}

impl Conn {
    pub fn new(shard: Rc<Shard>, stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(Duration::from_millis(WRITE_TIMEOUT_MS)));
        Conn {
            shard,
            stream,
            rbuf: vec![0; READ_BUF_BYTES],
            start: 0,
            end: 0,
            out: Vec::with_capacity(READ_BUF_BYTES),
            body: Vec::new(),
            scratch: Scratch::default(),
            upgraded: None,
            auth_cache: None,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Makes room for at least `need` more bytes after `end` (compacting first, then
    /// growing). The caller has already bounded `need` by the request limits.
    fn reserve(&mut self, need: usize) {
        if self.rbuf.len() - self.end >= need {
            return;
        }
        if self.start > 0 {
            self.rbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.rbuf.len() - self.end < need {
            let want = (self.end + need).max(self.rbuf.len() * 2);
            self.rbuf.resize(want, 0);
        }
    }

    /// Reads more bytes, giving up at `deadline`. Returns the count read (> 0).
    async fn fill(&mut self, deadline: Instant, at_least: usize) -> Result<usize, ReadEnd> {
        self.reserve(at_least.max(1));
        let now = Instant::now();
        if now >= deadline {
            return Err(ReadEnd::TimedOut);
        }
        let _ = self.stream.set_read_timeout(Some(deadline - now));
        match self.stream.read(&mut self.rbuf[self.end..]).await {
            Ok(0) => Err(ReadEnd::Eof),
            Ok(n) => {
                self.end += n;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(ReadEnd::TimedOut),
            Err(_) => Err(ReadEnd::Error),
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.rbuf[self.start..self.end]
    }

    /// Answers a request that cannot be served and closes: the connection can no
    /// longer be trusted to be at a request boundary.
    async fn fail(&mut self, status: u16, msg: &str) {
        respond::error(&mut self.out, status, Persist::Close, b"", msg);
        let _ = self.flush().await;
    }

    fn shrink_if_large(&mut self) {
        if self.rbuf.len() > BUF_RETAIN_BYTES_MAX && self.end - self.start <= READ_BUF_BYTES {
            self.rbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            self.rbuf.truncate(READ_BUF_BYTES);
            self.rbuf.shrink_to_fit();
        }
        if self.out.capacity() > BUF_RETAIN_BYTES_MAX && self.out.len() <= READ_BUF_BYTES {
            self.out.shrink_to(READ_BUF_BYTES);
        }
        if self.body.capacity() > BUF_RETAIN_BYTES_MAX {
            self.body = Vec::new();
        }
    }

    /// Serves requests until the client closes, a timeout, an error or shutdown.
    pub async fn run(mut self) {
        let cfg = self.shard.config.clone();
        let header_timeout = Duration::from_millis(cfg.header_timeout_ms);
        let body_timeout = Duration::from_millis(cfg.body_timeout_ms);
        let idle_timeout = Duration::from_millis(cfg.idle_timeout_ms);
        // When the first byte of the request being read arrived.
        let mut head_started: Option<Instant> = None;
        loop {
            let head = match parse::parse_head(self.buffered()) {
                Ok(Some(head)) => head,
                Ok(None) => {
                    if self.flush().await.is_err() {
                        return;
                    }
                    if self.start == self.end {
                        self.start = 0;
                        self.end = 0;
                        head_started = None;
                        if self.shard.shutting_down() {
                            return;
                        }
                        self.shrink_if_large();
                    }
                    let deadline = match head_started {
                        Some(t) => t + header_timeout,
                        None => Instant::now() + idle_timeout,
                    };
                    match self.fill(deadline, 1).await {
                        Ok(_) => {
                            head_started.get_or_insert_with(Instant::now);
                            continue;
                        }
                        Err(ReadEnd::TimedOut) if head_started.is_some() => {
                            self.fail(408, "timed out reading the request head").await;
                            return;
                        }
                        Err(_) => return,
                    }
                }
                Err(e) => {
                    self.fail(e.status(), e.message()).await;
                    return;
                }
            };
            let shard = self.shard.clone();
            shard.in_flight.set(shard.in_flight.get() + 1);
            let keep = self.serve_one(head, body_timeout).await;
            shard.in_flight.set(shard.in_flight.get() - 1);
            // Bytes left behind a pipelined request are the start of the next head:
            // its header timeout runs from now, not the idle timeout.
            head_started = (self.start < self.end).then(Instant::now);
            if !keep {
                let flushed = self.flush().await.is_ok();
                if let (Some(scope), true) = (self.upgraded.take(), flushed) {
                    self.into_session(scope).await;
                }
                return;
            }
        }
    }

    /// Reads the body of the request whose head was parsed, dispatches it, and queues
    /// the response. Returns false when the connection must close.
    async fn serve_one(&mut self, head: Head, body_timeout: Duration) -> bool {
        // Decode the path now: the route decides the body limit.
        let raw_path =
            &self.rbuf[self.start + head.path.0 as usize..self.start + head.path.1 as usize];
        if let Err(e) = percent_decode(raw_path, false, &mut self.scratch.path) {
            self.fail(e.status(), e.message()).await;
            return false;
        }
        // HEAD is answered like GET, without the body (RFC 9110 §9.3.2).
        let is_head = head.method == Method::Head;
        let method = if is_head { Method::Get } else { head.method };
        let route = route::route(method, &self.scratch.path);
        if route == route::Route::Found(route::Endpoint::WebSocket) && !is_head {
            return self.upgrade(&head);
        }
        // Runtime limits (`PUT /api/admin/config` changes them on every shard).
        let limits = &self.shard.shared.limits;
        let limit = match route.body_class() {
            BodyClass::Single => limits.body_single(),
            BodyClass::Batch => limits.body_batch(),
            BodyClass::Other => BODY_OTHER_BYTES_MAX,
        };
        let header_len = head.header_len as usize;
        let body_deadline = Instant::now() + body_timeout;

        // Where the body is: in rbuf (Content-Length) or de-chunked into self.body.
        let (body_in_rbuf, consumed) = match head.body {
            BodyKind::None => {
                if parse::requires_body(head.method) && matches!(route, route::Route::Found(_)) {
                    self.fail(
                        411,
                        "a request body needs Content-Length or chunked encoding",
                    )
                    .await;
                    return false;
                }
                (true, header_len)
            }
            BodyKind::Length(n) => {
                if n > limit as u64 {
                    self.fail(413, "request body is larger than the limit")
                        .await;
                    return false;
                }
                let total = header_len + n as usize;
                if self.end - self.start < total {
                    if head.expect_continue {
                        self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        if self.flush().await.is_err() {
                            return false;
                        }
                    }
                    while self.end - self.start < total {
                        // Grow with the bytes that actually arrive (at most doubling),
                        // never to the declared length up front: an announced but
                        // unsent 10 MiB body must not pin 10 MiB.
                        let want = (total - (self.end - self.start))
                            .min((self.end - self.start).max(READ_BUF_BYTES));
                        match self.fill(body_deadline, want).await {
                            Ok(_) => {}
                            Err(ReadEnd::TimedOut) => {
                                self.fail(408, "timed out reading the request body").await;
                                return false;
                            }
                            Err(_) => return false,
                        }
                    }
                }
                (true, total)
            }
            BodyKind::Chunked => {
                let mut dec = ChunkedDecoder::new(limit);
                let mut continue_sent = false;
                self.body.clear();
                let mut pos = self.start + header_len;
                loop {
                    match dec.feed(&self.rbuf[pos..self.end], &mut self.body) {
                        Ok((used, done)) => {
                            pos += used;
                            if done {
                                break;
                            }
                        }
                        Err(e) => {
                            self.fail(e.status(), e.message()).await;
                            return false;
                        }
                    }
                    if head.expect_continue && !continue_sent {
                        self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        continue_sent = true;
                        if self.flush().await.is_err() {
                            return false;
                        }
                    }
                    // Everything before `pos` is consumed framing: drop it so the
                    // buffer never holds more than one read's worth of chunk data.
                    let keep_head = self.start;
                    self.rbuf.copy_within(pos..self.end, keep_head + header_len);
                    self.end = keep_head + header_len + (self.end - pos);
                    pos = keep_head + header_len;
                    match self.fill(body_deadline, READ_BUF_BYTES).await {
                        Ok(_) => {}
                        Err(ReadEnd::TimedOut) => {
                            self.fail(408, "timed out reading the request body").await;
                            return false;
                        }
                        Err(_) => return false,
                    }
                }
                (false, pos - self.start)
            }
        };

        let persist = if !head.keep_alive || self.shard.shutting_down() {
            Persist::Close
        } else if head.minor_version == 0 {
            Persist::KeepAlive10
        } else {
            Persist::KeepAlive11
        };
        let buf = &self.rbuf[self.start..self.end];
        let body: &[u8] = if body_in_rbuf {
            &buf[header_len..consumed]
        } else {
            &self.body
        };
        let query = head.query.map(|(a, b)| &buf[a as usize..b as usize]);
        let principal = crate::auth::local(&self.shard).resolve_cached(
            &mut self.auth_cache,
            head.authorization
                .map(|(a, b)| &buf[a as usize..b as usize]),
        );
        let req = Request {
            principal,
            route,
            path: &self.scratch.path,
            query,
            body,
            persist,
            http10: head.minor_version == 0,
            if_none_match: head
                .if_none_match
                .map(|(a, b)| &buf[a as usize..b as usize]),
            sync_always: head.sync_always,
            forwarded: head.forwarded,
            authorization: head.authorization.map(|r| range_slice(buf, r)),
        };
        let mark = self.out.len();
        let dispatched = Instant::now();
        let reply = api::dispatch(
            &self.shard,
            &req,
            &mut self.out,
            &mut self.scratch.body,
            &mut self.scratch.results,
        )
        .await;
        if matches!(
            route,
            route::Route::Found(route::Endpoint::PostEvent | route::Endpoint::PostBatch)
        ) {
            crate::metrics::local(&self.shard).ingest(dispatched.elapsed());
        }
        match reply {
            Reply::Done => {
                if is_head {
                    strip_body(&mut self.out, mark);
                }
            }
            Reply::Stream(_) | Reply::History(_) if is_head => {
                respond::stream_head(&mut self.out, persist, req.http10);
                if req.http10 {
                    return false;
                }
            }
            Reply::Stream(list) => {
                let http10 = req.http10;
                let forwarded = req.forwarded;
                if api::list::stream(
                    &self.shard,
                    list,
                    persist,
                    http10,
                    forwarded,
                    &mut self.out,
                    &mut self.stream,
                )
                .await
                .is_err()
                {
                    return false;
                }
                if http10 {
                    return false;
                }
            }
            Reply::History(rest) => {
                let http10 = req.http10;
                if api::history::stream(
                    &self.shard,
                    rest,
                    persist,
                    http10,
                    &mut self.out,
                    &mut self.stream,
                )
                .await
                .is_err()
                {
                    return false;
                }
                if http10 {
                    return false;
                }
            }
        }
        self.start += consumed;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if persist == Persist::Close {
            return false;
        }
        if self.out.len() >= crate::limits::WRITE_FLUSH_BYTES && self.flush().await.is_err() {
            return false;
        }
        true
    }
}

impl Conn {
    /// Answers a WebSocket upgrade request (`ws::upgrade`). Returns false: either the
    /// connection becomes a session after the `101` (see `into_session`), or the
    /// refusal closes it (the request may carry a body we did not read).
    fn upgrade(&mut self, head: &Head) -> bool {
        let checked = if self.shard.shutting_down() || !self.shard.ready() {
            Err(crate::ws::upgrade::Refusal {
                status: 503,
                extra: b"Retry-After: 1\r\n",
                message: "not accepting WebSocket connections now",
            })
        } else {
            crate::ws::upgrade::check(head, self.buffered())
        };
        // Auth: the token comes from the Authorization header or `?token=`.
        let scope = checked.as_ref().ok().map(|_| {
            let buf = self.buffered();
            let header = head.authorization.map(|r| range_slice(buf, r));
            let mut token = Vec::new();
            let query = head.query.map(|r| range_slice(buf, r));
            let has_token = query.is_some_and(|q| query_token(q, &mut token));
            let principal =
                crate::auth::local(&self.shard).resolve(header, has_token.then_some(&token[..]));
            principal.read_scope(crate::auth::local(&self.shard).shared().public_reads)
        });
        match (checked, scope) {
            (Ok(accept), Some(Ok(scope))) => {
                crate::ws::upgrade::write_101(&mut self.out, &accept);
                self.start += head.header_len as usize;
                self.upgraded = Some(scope);
            }
            (Ok(_), Some(Err(d))) => {
                crate::metrics::ShardCounters::bump(
                    &crate::metrics::registry(&self.shard)
                        .shard(self.shard.id)
                        .auth_denied,
                    1,
                );
                respond::error(
                    &mut self.out,
                    d.0,
                    Persist::Close,
                    crate::auth::WWW_AUTHENTICATE,
                    d.1,
                )
            }
            (Err(r), _) => {
                respond::error(&mut self.out, r.status, Persist::Close, r.extra, r.message)
            }
            (Ok(_), None) => unreachable!("a scope is resolved for every accepted upgrade"),
        }
        false
    }

    /// Hands the socket, with any bytes the client sent after its upgrade request, to
    /// a WebSocket session on this shard.
    async fn into_session(self, scope: crate::auth::ReadScope) {
        let early = self.rbuf[self.start..self.end].to_vec();
        crate::ws::session::run(self.shard, self.stream, early, scope).await;
    }
}

/// The percent-decoded `token` parameter of a query string, into `out`.
fn query_token(query: &[u8], out: &mut Vec<u8>) -> bool {
    crate::http::query::query_pairs(query)
        .find(|(k, _)| *k == b"token")
        .is_some_and(|(_, v)| percent_decode(v, true, out).is_ok())
}

/// Cuts the body off the response that starts at `mark` (for HEAD).
fn strip_body(out: &mut Vec<u8>, mark: usize) {
    if let Some(i) = out[mark..].windows(4).position(|w| w == b"\r\n\r\n") {
        out.truncate(mark + i + 4);
    }
}

/// Tells a connection over the shard's cap to go away.
pub async fn reject_over_capacity(mut stream: TcpStream) {
    let mut out = Vec::with_capacity(256);
    respond::error(
        &mut out,
        503,
        Persist::Close,
        b"Retry-After: 1\r\n",
        "too many connections",
    );
    let _ = stream.set_write_timeout(Some(Duration::from_millis(1000)));
    let _ = stream.write_all(&out).await;
    let _ = stream.close().await;
}
