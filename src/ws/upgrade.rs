//! The WebSocket opening handshake (RFC 6455 §4.2), answered by our own HTTP layer:
//! `http::parse` has already extracted the facts (`upgrade_websocket`, `ws_key`,
//! `ws_version_13`); this module decides between `101 Switching Protocols` and an
//! error, purely.

use async_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::http::parse::{range_slice, BodyKind, Head, Method};

/// Why an upgrade request is refused: status, extra header lines, message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub extra: &'static [u8],
    pub message: &'static str,
}

const fn refuse(status: u16, extra: &'static [u8], message: &'static str) -> Refusal {
    Refusal {
        status,
        extra,
        message,
    }
}

/// A `Sec-WebSocket-Key` is the base64 of 16 bytes: 22 characters and `==`.
fn valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && key[22..] == *b"=="
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Checks the upgrade request whose head was parsed from `buf`; on success returns the
/// `Sec-WebSocket-Accept` value.
pub fn check(head: &Head, buf: &[u8]) -> Result<String, Refusal> {
    if head.method != Method::Get {
        return Err(refuse(
            405,
            b"Allow: GET\r\n",
            "a WebSocket upgrade must use GET",
        ));
    }
    if !head.upgrade_websocket {
        return Err(refuse(
            426,
            b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
            "this endpoint needs a WebSocket upgrade (Upgrade: websocket, Connection: Upgrade)",
        ));
    }
    if head.minor_version == 0 {
        return Err(refuse(400, b"", "a WebSocket upgrade needs HTTP/1.1"));
    }
    if !matches!(head.body, BodyKind::None | BodyKind::Length(0)) {
        return Err(refuse(400, b"", "a WebSocket upgrade request has no body"));
    }
    let key = head.ws_key.map(|k| range_slice(buf, k)).unwrap_or_default();
    if !valid_key(key) {
        return Err(refuse(
            400,
            b"",
            "missing or invalid Sec-WebSocket-Key (base64 of 16 bytes)",
        ));
    }
    if !head.ws_version_13 {
        return Err(refuse(
            426,
            b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
            "unsupported WebSocket version: Sec-WebSocket-Version must be 13",
        ));
    }
    Ok(derive_accept_key(key))
}

/// The `101 Switching Protocols` response.
pub fn write_101(out: &mut Vec<u8>, accept: &str) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nServer: flux\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::parse_head;

    fn run(req: &str) -> Result<String, Refusal> {
        let head = parse_head(req.as_bytes()).unwrap().unwrap();
        check(&head, req.as_bytes())
    }

    const GOOD: &str = "GET /api/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn accepts_the_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(run(GOOD).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let mut out = Vec::new();
        write_101(&mut out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn refusals() {
        let status = |req: String| run(&req).unwrap_err().status;
        assert_eq!(
            status("GET /api/ws HTTP/1.1\r\nHost: x\r\n\r\n".into()),
            426
        );
        assert_eq!(status(GOOD.replace("GET", "POST")), 405);
        assert_eq!(status(GOOD.replace("HTTP/1.1", "HTTP/1.0")), 400);
        assert_eq!(status(GOOD.replace("Version: 13", "Version: 8")), 426);
        assert_eq!(
            status(GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "short")),
            400
        );
        assert_eq!(
            status(GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")),
            400
        );
        assert_eq!(
            status(GOOD.replace("\r\n\r\n", "\r\nContent-Length: 3\r\n\r\n")),
            400
        );
        let r = run(&GOOD.replace("Version: 13", "Version: 8")).unwrap_err();
        assert!(r
            .extra
            .windows(25)
            .any(|w| w == b"Sec-WebSocket-Version: 13"));
    }
}
