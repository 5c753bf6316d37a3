//! Requests to other nodes: a small HTTP/1.1 client on the shard's own executor
//! (glommio sockets), keep-alive connections pooled per node and shard. Responses are
//! read with `flux-devclient`'s decoder (Content-Length or chunked).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

/// Idle connections kept per node on each shard.
const IDLE_PER_NODE: usize = 16;
/// A request to another node that takes longer fails (503 to the client).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from another node.
const ANSWER_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Marks a request sent by another node: answered here or refused, never sent on.
pub const FORWARDED: &str = "X-Flux-Forwarded";

/// The headers of a request to another node: marked forwarded by `node`, with
/// `authorization` (the client's, or the nodes' shared admin token) if any.
pub fn headers<'a>(
    node: &'a str,
    authorization: Option<&'a [u8]>,
) -> Vec<(&'static str, &'a [u8])> {
    let mut h = vec![(FORWARDED, node.as_bytes())];
    if let Some(a) = authorization {
        h.push(("Authorization", a));
    }
    h
}

#[derive(Default)]
pub struct Pool {
    idle: RefCell<HashMap<String, Vec<TcpStream>>>,
    addrs: RefCell<HashMap<String, SocketAddr>>,
}

/// A node's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Pool {
    fn addr(&self, url: &str) -> Result<SocketAddr, String> {
        if let Some(a) = self.addrs.borrow().get(url) {
            return Ok(*a);
        }
        let hostport = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("not an http:// URL: {url}"))?
            .trim_end_matches('/');
        let a = hostport
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {url}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url} resolves to nothing"))?;
        self.addrs.borrow_mut().insert(url.to_string(), a);
        Ok(a)
    }

    /// Sends one request to the node at `url` and reads its answer.
    pub async fn request(
        &self,
        url: &str,
        method: &str,
        target: &[u8],
        headers: &[(&str, &[u8])],
        body: &[u8],
    ) -> Result<Answer, String> {
        let mut req = Vec::with_capacity(256 + body.len());
        req.extend_from_slice(method.as_bytes());
        req.push(b' ');
        req.extend_from_slice(target);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: flux\r\nContent-Length: ");
        req.extend_from_slice(body.len().to_string().as_bytes());
        req.extend_from_slice(b"\r\n");
        for (name, value) in headers {
            req.extend_from_slice(name.as_bytes());
            req.extend_from_slice(b": ");
            req.extend_from_slice(value);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        // A pooled connection may have been closed by the other side while idle: one
        // retry on a fresh connection (requests to nodes are idempotent: parts are
        // deduplicated by their message id, reads are reads).
        let pooled = self.idle.borrow_mut().get_mut(url).and_then(|v| v.pop());
        if let Some(conn) = pooled {
            if let Ok(a) = self.exchange(url, conn, &req).await {
                return Ok(a);
            }
        }
        let addr = self.addr(url)?;
        let conn = glommio::timer::timeout(PEER_TIMEOUT, async {
            TcpStream::connect(addr)
                .await
                .map_err(|e| glommio::GlommioError::IoError(std::io::Error::other(e.to_string())))
        })
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        let _ = conn.set_nodelay(true);
        self.exchange(url, conn, &req).await
    }

    async fn exchange(&self, url: &str, mut conn: TcpStream, req: &[u8]) -> Result<Answer, String> {
        let r = glommio::timer::timeout(PEER_TIMEOUT, async {
            conn.write_all(req).await.map_err(|e| {
                glommio::GlommioError::IoError(std::io::Error::other(e.to_string()))
            })?;
            let mut dec = flux_devclient::http::Decoder::collecting();
            let mut buf = Vec::with_capacity(16 * 1024);
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = conn.read(&mut chunk).await?;
                if n == 0 {
                    return Err(glommio::GlommioError::IoError(std::io::Error::other(
                        "connection closed before the answer",
                    )));
                }
                buf.extend_from_slice(&chunk[..n]);
                let mut used = 0;
                loop {
                    let (u, done) = dec.decode(&buf[used..]).map_err(|e| {
                        glommio::GlommioError::IoError(std::io::Error::other(format!("{e:?}")))
                    })?;
                    used += u;
                    if let Some(resp) = done {
                        return Ok((resp, dec.take_body()));
                    }
                    if u == 0 {
                        break;
                    }
                }
                buf.drain(..used);
                if buf.len() > ANSWER_BYTES_MAX {
                    return Err(glommio::GlommioError::IoError(std::io::Error::other(
                        "answer too large",
                    )));
                }
            }
        })
        .await;
        match r {
            Ok((resp, body)) => {
                if !resp.close {
                    let mut idle = self.idle.borrow_mut();
                    let v = idle.entry(url.to_string()).or_default();
                    if v.len() < IDLE_PER_NODE {
                        v.push(conn);
                    }
                }
                Ok(Answer {
                    status: resp.status,
                    body,
                })
            }
            Err(e) => Err(format!("request to {url} failed: {e}")),
        }
    }
}

/// Percent-encodes `s` for a URL path segment or query value (everything but
/// unreserved characters).
pub fn encode_component(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
    }
}
