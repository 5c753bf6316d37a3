//! A minimal WebSocket client over `std::net::TcpStream` for black-box tests: the
//! opening handshake built by hand, masked client frames, and server frames read one
//! at a time (text, binary, ping, pong, close). Every read has a deadline, so no test
//! can hang; nothing is answered automatically unless asked ([`WsClient::next_json`]
//! answers pings), so tests can also play a client that never reads or never pongs.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use flux_devclient::ws::{self as codec, Sequence, Upgrade};
use serde_json::Value;

use super::{Conn, Response, IO_TIMEOUT};

// Not every test binary names every opcode.
#[allow(unused_imports)]
pub use flux_devclient::ws::{
    OP_BINARY, OP_CLOSE, OP_CONTINUATION as OP_CONT, OP_PING, OP_PONG, OP_TEXT,
};

/// One frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.payload).expect("text frame is UTF-8")
    }

    /// Close code and reason of a close frame that has a code.
    pub fn close(&self) -> Option<(u16, String)> {
        (self.opcode == OP_CLOSE && self.payload.len() >= 2).then(|| {
            (
                codec::close_code(&self.payload),
                String::from_utf8_lossy(codec::close_reason(&self.payload)).into_owned(),
            )
        })
    }
}

/// What waiting for a frame gave.
#[derive(Debug)]
pub enum Recv {
    Frame(Frame),
    Timeout,
    /// EOF or reset.
    Closed,
}

/// A `Sec-WebSocket-Key`: base64 of 16 bytes.
pub fn ws_key(seed: u64) -> String {
    codec::key_from_seed(seed)
}

/// The raw upgrade request for `/api/ws` with `key`.
pub fn upgrade_request(key: &str) -> String {
    String::from_utf8(codec::upgrade_request("127.0.0.1", "", key, None)).expect("ASCII")
}

/// A client frame: FIN set unless `fin` is false, payload masked with `mask`.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    codec::encode_client_frame(&mut f, fin, opcode, payload, mask);
    f
}

pub struct WsClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// JSON messages read while waiting for something else, oldest first.
    pub backlog: VecDeque<Value>,
    /// The close frame the server sent, once seen.
    pub closed_with: Option<(u16, String)>,
    mask_seed: u32,
    /// Where the server's frames stand among fragmented messages.
    seq: Sequence,
}

impl WsClient {
    /// Connects and upgrades, panicking unless the answer is a correct `101`.
    pub fn connect(port: u16) -> WsClient {
        WsClient::try_connect(port).unwrap_or_else(|r| panic!("upgrade refused: {r:?}"))
    }

    /// Connects and upgrades; a non-101 answer is returned as the error.
    pub fn try_connect(port: u16) -> Result<WsClient, Response> {
        let key = ws_key(super::unique() ^ u64::from(port));
        WsClient::upgrade_with(port, upgrade_request(&key).as_bytes(), &key)
    }

    /// Connects with a receive buffer of `rcvbuf_bytes` (see
    /// [`Conn::open_with_rcvbuf`]) and upgrades.
    pub fn connect_with_rcvbuf(port: u16, rcvbuf_bytes: usize) -> WsClient {
        let key = ws_key(super::unique() ^ u64::from(port));
        let conn = Conn::open_with_rcvbuf(port, rcvbuf_bytes);
        WsClient::upgrade_on(conn, upgrade_request(&key).as_bytes(), &key)
            .unwrap_or_else(|r| panic!("upgrade refused: {r:?}"))
    }

    /// Sends `request` (an upgrade request using `key`, plus anything after it) and
    /// reads the response head.
    pub fn upgrade_with(port: u16, request: &[u8], key: &str) -> Result<WsClient, Response> {
        WsClient::upgrade_on(Conn::open(port), request, key)
    }

    /// [`WsClient::upgrade_with`] on a connection already open.
    pub fn upgrade_on(mut conn: Conn, request: &[u8], key: &str) -> Result<WsClient, Response> {
        conn.send(request);
        let head = conn
            .try_read_head()
            .expect("response to the upgrade request");
        match codec::parse_upgrade(&head.head, &codec::accept_key(key)) {
            Ok(Some(Upgrade::Accepted { .. })) => {}
            Ok(Some(Upgrade::Refused { body_len, .. })) => {
                let mut full = head;
                let mut have = conn.take_buffered();
                let mut tmp = vec![0u8; body_len];
                while have.len() < body_len {
                    let n = conn.stream().read(&mut tmp).expect("error body");
                    if n == 0 {
                        break;
                    }
                    have.extend_from_slice(&tmp[..n]);
                }
                have.truncate(body_len);
                full.body = have;
                return Err(full);
            }
            Ok(None) => unreachable!("a whole head was read"),
            Err(e) => panic!("{e}: {head:?}"),
        }
        let buf = conn.take_buffered();
        let stream = conn.into_stream();
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        Ok(WsClient {
            stream,
            buf,
            backlog: VecDeque::new(),
            closed_with: None,
            mask_seed: 0x1234_5678,
            seq: Sequence::new(),
        })
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn peer(&self) -> SocketAddr {
        self.stream.peer_addr().expect("peer")
    }

    fn mask(&mut self) -> [u8; 4] {
        self.mask_seed = self
            .mask_seed
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        self.mask_seed.to_be_bytes()
    }

    pub fn try_send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mask = self.mask();
        self.stream
            .write_all(&client_frame(fin, opcode, payload, mask))
    }

    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.try_send_frame(fin, opcode, payload)
            .unwrap_or_else(|e| panic!("send frame: {e}"));
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_frame(true, OP_TEXT, text.as_bytes());
    }

    pub fn send_close(&mut self, code: u16, reason: &str) {
        let mut f = Vec::new();
        let mask = self.mask();
        codec::encode_close(&mut f, code, reason.as_bytes(), mask);
        self.send_raw(&f);
    }

    /// Reads one frame, waiting until `deadline`.
    pub fn recv_until(&mut self, deadline: Instant) -> Recv {
        loop {
            if let Some(f) = self.parse_frame() {
                if let Some(c) = f.close() {
                    self.closed_with = Some(c);
                }
                return Recv::Frame(f);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Recv::Timeout;
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("set_read_timeout");
            let mut tmp = [0u8; 64 * 1024];
            match self.stream.read(&mut tmp) {
                Ok(0) => return Recv::Closed,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Recv::Timeout
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Recv::Closed,
            }
        }
    }

    pub fn recv(&mut self, timeout: Duration) -> Recv {
        self.recv_until(Instant::now() + timeout)
    }

    /// A whole frame from the buffer, if one is there. A frame the server must not
    /// send (masked, reserved bits or opcode, fragments out of order) fails the test.
    fn parse_frame(&mut self) -> Option<Frame> {
        let h = match codec::frame_header(&self.buf) {
            Ok(Some(h)) if h.end() <= self.buf.len() => h,
            Ok(_) => return None,
            Err(e) => panic!("the server sent a bad frame: {e}"),
        };
        if let Err(e) = self.seq.next(&h) {
            panic!("the server sent a bad frame: {e}");
        }
        let f = Frame {
            fin: h.fin,
            opcode: h.opcode,
            payload: self.buf[h.payload_at..h.end()].to_vec(),
        };
        self.buf.drain(..h.end());
        Some(f)
    }

    /// The next JSON text message (from the backlog first), answering pings; None
    /// on timeout or once the server closed.
    pub fn next_json(&mut self, timeout: Duration) -> Option<Value> {
        if let Some(v) = self.backlog.pop_front() {
            return Some(v);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv_until(deadline) {
                Recv::Frame(f) => match f.opcode {
                    OP_TEXT => {
                        return Some(serde_json::from_slice(&f.payload).unwrap_or_else(|e| {
                            panic!("server sent invalid JSON ({e}): {}", f.text())
                        }))
                    }
                    OP_PING => {
                        let _ = self.try_send_frame(true, OP_PONG, &f.payload);
                    }
                    OP_CLOSE => return None,
                    _ => {}
                },
                Recv::Timeout | Recv::Closed => return None,
            }
        }
    }

    /// Reads until a message of type `ty` arrives (others go to the backlog).
    pub fn wait_for(&mut self, ty: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        let found = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_json(left) {
                Some(v) if v["type"] == ty => break v,
                Some(v) => skipped.push(v),
                None => panic!(
                    "no {ty} within {timeout:?} (closed: {:?}); got {skipped:?}",
                    self.closed_with
                ),
            }
        };
        for v in skipped.into_iter().rev() {
            self.backlog.push_front(v);
        }
        found
    }

    /// Subscribes and waits for the acknowledgement.
    pub fn subscribe(&mut self, pattern: &str) {
        self.command("subscribe", pattern);
    }

    pub fn unsubscribe(&mut self, pattern: &str) {
        self.command("unsubscribe", pattern);
    }

    fn command(&mut self, ty: &str, pattern: &str) {
        let msg = serde_json::json!({ "type": ty, "entity_id": pattern });
        self.send_text(&msg.to_string());
        let ack = self.wait_for(&format!("{ty}d"), Duration::from_secs(5));
        assert_eq!(ack["entity_id"], pattern, "{ack}");
    }

    /// Collects JSON messages until `done` says so or `timeout` passes; metrics
    /// updates are dropped unless `keep_metrics`.
    pub fn collect(
        &mut self,
        timeout: Duration,
        keep_metrics: bool,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.next_json(left) {
                Some(v) if !keep_metrics && v["type"] == "metrics_update" => {}
                Some(v) => got.push(v),
                None => break,
            }
        }
        got
    }

    /// `state_update` messages until `n` arrived (or the timeout): (entity, property, value).
    pub fn updates(&mut self, n: usize, timeout: Duration) -> Vec<(String, String, Value)> {
        let msgs = self.collect(timeout, false, |got| {
            got.iter().filter(|m| m["type"] == "state_update").count() >= n
        });
        msgs.iter()
            .filter(|m| m["type"] == "state_update")
            .map(|m| {
                (
                    m["entity_id"].as_str().expect("entity_id").to_string(),
                    m["property"].as_str().expect("property").to_string(),
                    m["value"].clone(),
                )
            })
            .collect()
    }

    /// Asserts that no message other than metrics arrives for `d`.
    pub fn assert_no_updates(&mut self, d: Duration) {
        let got = self.collect(d, false, |got| !got.is_empty());
        assert!(got.is_empty(), "unexpected messages: {got:?}");
    }

    /// Reads and discards frames until the server's close frame (returned) or EOF.
    pub fn read_until_close(&mut self, timeout: Duration) -> Option<(u16, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv_until(deadline) {
                Recv::Frame(f) if f.opcode == OP_CLOSE => return f.close(),
                Recv::Frame(_) => {}
                Recv::Timeout | Recv::Closed => return None,
            }
        }
    }

    /// Reads like a slow consumer (at most `piece` bytes per read, then `pause`) until
    /// the server's close frame, discarding other frames. Returns the close (None on
    /// timeout or EOF) and how many bytes came before it.
    pub fn read_slowly_until_close(
        &mut self,
        piece: usize,
        pause: Duration,
        timeout: Duration,
    ) -> (Option<(u16, String)>, usize) {
        let deadline = Instant::now() + timeout;
        let mut before = 0;
        let mut tmp = vec![0u8; piece];
        loop {
            while let Some(f) = self.parse_frame() {
                if f.opcode == OP_CLOSE {
                    self.closed_with = f.close();
                    return (f.close(), before);
                }
                // Header bytes are not counted: a lower bound is enough here.
                before += f.payload.len();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (None, before);
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("set_read_timeout");
            match self.stream.read(&mut tmp) {
                Ok(0) => return (None, before),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return (None, before),
            }
            std::thread::sleep(pause);
        }
    }

    /// Whether the server has closed the TCP connection within `d` (frames before the
    /// EOF are discarded).
    pub fn eof_within(&mut self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        loop {
            match self.recv_until(deadline) {
                Recv::Frame(_) => {}
                Recv::Closed => return true,
                Recv::Timeout => return false,
            }
        }
    }
}

/// One series of `GET /metrics` (`flux_events_total`, `x_bucket{le="1"}`).
pub fn metric(srv: &super::Server, series: &str) -> f64 {
    let r = srv.get("/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{series} not in /metrics:\n{}", r.text()))
        .parse()
        .expect("metric value")
}

/// Polls `/metrics` until `series` equals `want` (panics with the last value after
/// `timeout`).
pub fn wait_metric(srv: &super::Server, series: &str, want: f64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let v = metric(srv, series);
        if v == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {v}, expected {want} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
