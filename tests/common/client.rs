//! A raw HTTP/1.1 client over `std::net::TcpStream`: request bytes are built by hand,
//! and [`Conn`] reads exactly one response at a time (Content-Length, chunked or
//! close-delimited body), so keep-alive and pipelining can be checked byte for byte.
//! Every read has a timeout. The bytes are parsed by `flux_devclient::http` (the load
//! tester's reader too); this client is stricter than the load tester in one way: a
//! head line ending in a bare `\n` is an error, since Flux always sends `\r\n`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread::sleep;
use std::time::{Duration, Instant};

use flux_devclient::http::{parse_head, Decoder, Head, HttpError};
use serde_json::Value;

/// Default bound on every socket read and write of a test client.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Data chunks of a chunked body (0 when not chunked).
    pub chunks: usize,
    /// The head's bytes as received, blank line included.
    pub head: Vec<u8>,
}

impl Response {
    /// First value of a header, name case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("body is UTF-8")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    }

    /// The `Connection` header asks to close.
    pub fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Asserts the error shape every error response must have.
pub fn assert_json_error(r: &Response) {
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "error content type: {r:?}"
    );
    let v = r.json();
    let msg = v.get("error").and_then(Value::as_str);
    assert!(
        msg.is_some_and(|m| !m.is_empty()),
        "error body must be {{\"error\": string}}: {v}"
    );
}

/// Asserts `status`, the JSON error shape, and returns the message.
pub fn assert_error(r: &Response, status: u16) -> String {
    assert_eq!(
        r.status,
        status,
        "expected {status}, got {}: {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    assert_json_error(r);
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

/// How waiting for the server to close a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum CloseWait {
    /// EOF or reset.
    Closed,
    /// The server sent more bytes.
    Data(Vec<u8>),
    /// Still open when the time ran out.
    Open,
}

/// One client socket with a read buffer.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(port: u16) -> Conn {
        Conn::try_open(port, IO_TIMEOUT).unwrap_or_else(|e| panic!("connect to port {port}: {e}"))
    }

    pub fn try_open(port: u16, timeout: Duration) -> io::Result<Conn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Connects with the socket's receive buffer set to `rcvbuf_bytes` before the
    /// connection exists (so the window the server sees is small from the start):
    /// a client that cannot take much at once.
    pub fn open_with_rcvbuf(port: u16, rcvbuf_bytes: usize) -> Conn {
        use std::os::fd::FromRawFd;
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        // Owned from here on, so the descriptor is closed on every path.
        let stream = unsafe { TcpStream::from_raw_fd(fd) };
        let size = rcvbuf_bytes as libc::c_int;
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_RCVBUF: {}", io::Error::last_os_error());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = unsafe {
            libc::connect(
                fd,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        assert_eq!(
            rc,
            0,
            "connect to port {port}: {}",
            io::Error::last_os_error()
        );
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn set_timeout(&self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set_read_timeout");
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write: {e}"));
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes `bytes` in pieces of `piece` bytes with `pause` between them.
    pub fn send_slowly(&mut self, bytes: &[u8], piece: usize, pause: Duration) {
        for part in bytes.chunks(piece) {
            self.send(part);
            sleep(pause);
        }
    }

    /// Bytes read past the last parsed response (e.g. WebSocket frames after a 101).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// The socket, for protocols that take over after an upgrade.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Half-closes the sending side.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads more bytes into the buffer; Ok(0) at EOF.
    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 64 * 1024];
        let n = self.stream.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Reads exactly one response (a `100 Continue` counts as one).
    pub fn read_response(&mut self) -> Response {
        self.try_read_response().unwrap_or_else(|e| {
            panic!(
                "reading a response: {e}; buffered: {:?}",
                String::from_utf8_lossy(&self.buf)
            )
        })
    }

    pub fn try_read_response(&mut self) -> io::Result<Response> {
        let mut dec = Decoder::collecting();
        let (mut resp, done) = self.read_head_with(|head| dec.begin(head))?;
        if done.is_some() {
            return Ok(resp);
        }
        loop {
            let (used, done) = dec.decode(&self.buf)?;
            self.buf.drain(..used);
            // Without a response, the decoder used every byte it could.
            let done = match done {
                Some(r) => r,
                None if self.fill()? > 0 => continue,
                None => match dec.eof() {
                    Ok(Some(r)) => r,
                    Ok(None) | Err(HttpError::Truncated) => return Err(closed_mid_response()),
                    Err(e) => return Err(e.into()),
                },
            };
            resp.body = dec.take_body();
            resp.chunks = done.chunks as usize;
            return Ok(resp);
        }
    }

    /// Reads a response head only (as for a response to HEAD, which has no body).
    pub fn try_read_head(&mut self) -> io::Result<Response> {
        Ok(self.read_head_with(|_| ())?.0)
    }

    /// Reads and consumes one response head; `then` sees it before it is consumed.
    fn read_head_with<T>(
        &mut self,
        then: impl FnOnce(&Head<'_>) -> T,
    ) -> io::Result<(Response, T)> {
        loop {
            if let Some(head) = parse_head(&self.buf)? {
                let resp = owned_head(&head)?;
                let len = head.len();
                let t = then(&head);
                self.buf.drain(..len);
                return Ok((resp, t));
            }
            if self.fill()? == 0 {
                return Err(closed_mid_response());
            }
        }
    }

    /// Sends a request and reads one response, without panicking.
    pub fn try_exchange(&mut self, req: &[u8]) -> io::Result<Response> {
        self.try_send(req)?;
        self.try_read_response()
    }

    /// Sends a request and reads one response.
    pub fn exchange(&mut self, req: &[u8]) -> Response {
        self.send(req);
        self.read_response()
    }

    /// Waits up to `within` for the server to close the connection. Bytes still
    /// buffered from earlier reads count as data.
    pub fn wait_closed(&mut self, within: Duration) -> CloseWait {
        if !self.buf.is_empty() {
            return CloseWait::Data(std::mem::take(&mut self.buf));
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return CloseWait::Open;
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("set_read_timeout");
            let mut tmp = [0u8; 4096];
            let got = self.stream.read(&mut tmp);
            self.stream
                .set_read_timeout(Some(IO_TIMEOUT))
                .expect("set_read_timeout");
            match got {
                Ok(0) => return CloseWait::Closed,
                Ok(n) => return CloseWait::Data(tmp[..n].to_vec()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return CloseWait::Open
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return CloseWait::Closed,
            }
        }
    }

    /// Asserts that the server closes the connection within 2 s.
    pub fn assert_closed(&mut self) {
        match self.wait_closed(Duration::from_secs(2)) {
            CloseWait::Closed => {}
            other => panic!("expected the server to close the connection, got {other:?}"),
        }
    }

    /// Asserts that nothing arrives and the connection stays open for `d`.
    pub fn assert_quiet(&mut self, d: Duration) {
        match self.wait_closed(d) {
            CloseWait::Open => {}
            other => panic!("expected an open, quiet connection, got {other:?}"),
        }
    }
}

fn bad_data(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn closed_mid_response() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed mid-response",
    )
}

/// The owned form of a head: UTF-8 names and values, and only `\r\n` line ends.
fn owned_head(head: &Head<'_>) -> io::Result<Response> {
    if head.bare_lf {
        return Err(bad_data("a line of the response head ends in a bare LF"));
    }
    let text = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| bad_data("head is not UTF-8"))
    };
    let headers = head
        .headers()
        .map(|(k, v)| Ok((text(k)?, text(v)?)))
        .collect::<io::Result<_>>()?;
    Ok(Response {
        version: head.version().to_string(),
        status: head.status,
        headers,
        body: Vec::new(),
        chunks: 0,
        head: head.raw().to_vec(),
    })
}

/// Raw request bytes: request line, `Host`, the given headers, and Content-Length
/// when there is a body.
pub fn build_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        out.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    bytes
}

/// `GET path` as raw bytes.
pub fn get_request(path: &str) -> Vec<u8> {
    build_request("GET", path, &[], None)
}

/// `POST path` with a JSON body as raw bytes.
pub fn post_request(path: &str, body: &str) -> Vec<u8> {
    build_request(
        "POST",
        path,
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    )
}
