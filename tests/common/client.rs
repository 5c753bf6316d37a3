//! A raw HTTP/1.1 client over `std::net::TcpStream`: request bytes are built by hand,
//! and [`Conn`] reads exactly one response at a time (Content-Length, chunked or
//! close-delimited body), so keep-alive and pipelining can be checked byte for byte.
//! Every read has a timeout.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread::sleep;
use std::time::{Duration, Instant};

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

    /// Makes sure at least `n` bytes are buffered.
    fn fill_to(&mut self, n: usize) -> io::Result<()> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed mid-response",
                ));
            }
        }
        Ok(())
    }

    /// Reads until `pat` is buffered; returns the offset just past it.
    fn fill_until(&mut self, from: usize, pat: &[u8]) -> io::Result<usize> {
        loop {
            if let Some(i) = find(&self.buf[from.min(self.buf.len())..], pat) {
                return Ok(from + i + pat.len());
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed mid-response",
                ));
            }
        }
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
        let mut resp = self.try_read_head()?;
        let status = resp.status;
        if (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(resp);
        }
        if resp.is_chunked() {
            self.read_chunked(&mut resp)?;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().map_err(|_| bad_data("bad Content-Length"))?;
            self.fill_to(len)?;
            resp.body = self.buf.drain(..len).collect();
        } else {
            // Close-delimited (HTTP/1.0 listing).
            while self.fill()? > 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    /// Reads a response head only (as for a response to HEAD, which has no body).
    pub fn try_read_head(&mut self) -> io::Result<Response> {
        let head_end = self.fill_until(0, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&self.buf[..head_end - 4])
            .map_err(|_| bad_data("head is not UTF-8"))?
            .to_string();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad_data(&format!("bad status line {status_line:?}")))?;
        if !version.starts_with("HTTP/1.") {
            return Err(bad_data(&format!("bad status line {status_line:?}")));
        }
        let mut headers = Vec::new();
        for line in lines {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| bad_data(&format!("bad header line {line:?}")))?;
            headers.push((k.to_string(), v.trim().to_string()));
        }
        self.buf.drain(..head_end);
        Ok(Response {
            version,
            status,
            headers,
            body: Vec::new(),
            chunks: 0,
        })
    }

    fn read_chunked(&mut self, resp: &mut Response) -> io::Result<()> {
        loop {
            let line_end = self.fill_until(0, b"\r\n")?;
            let line = std::str::from_utf8(&self.buf[..line_end - 2])
                .map_err(|_| bad_data("chunk line"))?
                .to_string();
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| bad_data(&format!("chunk size {line:?}")))?;
            self.buf.drain(..line_end);
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    let end = self.fill_until(0, b"\r\n")?;
                    let empty = end == 2;
                    self.buf.drain(..end);
                    if empty {
                        return Ok(());
                    }
                }
            }
            self.fill_to(size + 2)?;
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(bad_data("chunk data not followed by CRLF"));
            }
            resp.body.extend_from_slice(&self.buf[..size]);
            resp.chunks += 1;
            self.buf.drain(..size + 2);
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

fn find(hay: &[u8], pat: &[u8]) -> Option<usize> {
    hay.windows(pat.len()).position(|w| w == pat)
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
