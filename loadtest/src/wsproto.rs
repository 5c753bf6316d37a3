//! WebSocket client protocol, pure and tested here: the upgrade request and
//! the check of its answer, server frames decoded from a byte buffer in place,
//! client frames encoded (masked), and the scanner that classifies Flux
//! messages without building a JSON tree.
//!
//! Frame layout (RFC 6455 §5.2), as decoded:
//! ```text
//!  byte 0: FIN(1) RSV(3) opcode(4)   byte 1: MASK(1) len(7)
//!  len 126: 2 more bytes of length; 127: 8 more; then (client frames only)
//!  a 4-byte mask key; then the payload.
//! ```
//!
//! The scanner reads a subscriber's hot path: a `state_update` as the server
//! renders it (`{"type":"state_update","entity_id":"…","property":"…",
//! "value":…}`) is recognised by its fixed prefix and a few byte
//! comparisons; anything else falls back to a scan of the top-level members.

use crate::workload::SENT_US_PROPERTY;

/// A server message larger than this is an error (Flux's own limit is far
/// lower); the read buffer grows up to it for one large frame.
pub const MESSAGE_BYTES_MAX: usize = 64 << 20;
/// Response heads of the upgrade larger than this are an error.
pub const HANDSHAKE_HEAD_BYTES_MAX: usize = 16 * 1024;
const HANDSHAKE_HEADERS_MAX: usize = 32;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// `GET <base>/api/ws` with the upgrade headers.
pub fn upgrade_request(
    authority: &str,
    base_path: &str,
    key: &str,
    token: Option<&str>,
) -> Vec<u8> {
    let mut r = Vec::with_capacity(256);
    for part in [
        "GET ",
        base_path,
        "/api/ws HTTP/1.1\r\nHost: ",
        authority,
        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
        key,
        "\r\n",
    ] {
        r.extend_from_slice(part.as_bytes());
    }
    if let Some(t) = token {
        r.extend_from_slice(b"Authorization: Bearer ");
        r.extend_from_slice(t.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"\r\n");
    r
}

/// The answer to the upgrade, once its head is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    /// `101` with the right accept key: frames start after `head_len` bytes.
    Accepted { head_len: usize },
    /// Another status: the caller reads up to `body_len` bytes of body to
    /// quote them.
    Refused {
        status: u16,
        reason: String,
        head_len: usize,
        body_len: usize,
    },
}

/// `Ok(None)`: the head is not complete yet.
pub fn parse_upgrade(buf: &[u8], accept_key: &str) -> Result<Option<Upgrade>, String> {
    let mut headers = [httparse::EMPTY_HEADER; HANDSHAKE_HEADERS_MAX];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= HANDSHAKE_HEAD_BYTES_MAX => {
            return Err("WebSocket upgrade response head too large".into())
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad WebSocket upgrade response: {e}")),
    };
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let status = resp.code.unwrap_or(0);
    if status != 101 {
        let body_len = header("content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
            .unwrap_or(0);
        return Ok(Some(Upgrade::Refused {
            status,
            reason: resp.reason.unwrap_or("").to_string(),
            head_len,
            body_len,
        }));
    }
    if header("sec-websocket-accept") != Some(accept_key.as_bytes()) {
        return Err("the server answered 101 without the right Sec-WebSocket-Accept".into());
    }
    Ok(Some(Upgrade::Accepted { head_len }))
}

/// A frame header, decoded; its payload is `buf[payload_at..payload_at + len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload_at: usize,
    pub len: usize,
}

impl Frame {
    /// Bytes of the whole frame.
    pub fn end(&self) -> usize {
        self.payload_at + self.len
    }
}

/// A frame at the start of `buf`: `Ok(None)` while its header is incomplete
/// (the payload may still be partial: compare [`Frame::end`] with the
/// buffer). Masked or oversized frames from the server are errors.
pub fn frame_header(buf: &[u8]) -> Result<Option<Frame>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err("WebSocket frame with reserved bits set (no extension was agreed)".into());
    }
    if b1 & 0x80 != 0 {
        return Err("masked WebSocket frame from the server".into());
    }
    let (len, payload_at) = match b1 & 0x7f {
        126 if buf.len() < 4 => return Ok(None),
        126 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
        127 if buf.len() < 10 => return Ok(None),
        127 => (
            u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")),
            10,
        ),
        n => (n as u64, 2),
    };
    if len > MESSAGE_BYTES_MAX as u64 {
        return Err(format!("WebSocket frame of {len} bytes"));
    }
    Ok(Some(Frame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        payload_at,
        len: len as usize,
    }))
}

/// Appends a client frame (FIN set, payload masked with `mask`).
pub fn encode_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// The status code of a close frame's payload (1005 "no status" if none).
pub fn close_code(payload: &[u8]) -> u16 {
    match payload {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 1005,
    }
}

/// A server message, as far as the load tester cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsMsg {
    /// A `state_update`; `sent_us` when it is the `_lt_sent_us` property.
    StateUpdate { sent_us: Option<u64> },
    /// `metrics_update`, `entity_deleted`, `error`, ...
    Other,
    /// Not a JSON object with a `type`.
    Bad,
}

const UPDATE_PREFIX: &[u8] = b"{\"type\":\"state_update\",\"entity_id\":\"";
const PROPERTY_INFIX: &[u8] = b"\",\"property\":\"";

/// Classifies a text message: the fast path for `state_update`s as Flux
/// renders them, else the general member scan.
pub fn classify(text: &[u8]) -> WsMsg {
    fast_state_update(text).unwrap_or_else(|| classify_members(text))
}

/// `Some` only when the message has exactly the server's layout up to the
/// value: prefix, an id without escapes, `property`, then (for ours)
/// `"value":<digits>` followed by `,` or `}`.
fn fast_state_update(text: &[u8]) -> Option<WsMsg> {
    if text.last() != Some(&b'}') {
        return None;
    }
    let rest = text.strip_prefix(UPDATE_PREFIX)?;
    let id_len = memchr::memchr2(b'"', b'\\', rest)?;
    let rest = rest[id_len..].strip_prefix(PROPERTY_INFIX)?;
    let Some(rest) = rest
        .strip_prefix(SENT_US_PROPERTY.as_bytes())
        .and_then(|r| r.strip_prefix(b"\",\"value\":"))
    else {
        // Another property (or one that merely starts like ours): no time.
        return match memchr::memchr2(b'"', b'\\', rest) {
            Some(n) if rest[n] == b'"' => Some(WsMsg::StateUpdate { sent_us: None }),
            _ => None,
        };
    };
    // One pass over the digits: at most 19 (below 2^63), then `,` or `}`.
    let mut v = 0u64;
    for (i, &b) in rest.iter().enumerate().take(20) {
        match b {
            b'0'..=b'9' if i < 19 => v = v * 10 + (b - b'0') as u64,
            b',' | b'}' if i > 0 => return Some(WsMsg::StateUpdate { sent_us: Some(v) }),
            _ => return None,
        }
    }
    None
}

/// Any member order, any whitespace: looks at `type`, `property`, `value`.
fn classify_members(text: &[u8]) -> WsMsg {
    let mut ty = None;
    let mut property = None;
    let mut value = None;
    let well_formed = for_each_member(text, |k, v| match k {
        b"type" => ty = Some(v),
        b"property" => property = Some(v),
        b"value" => value = Some(v),
        _ => {}
    });
    match (well_formed, ty) {
        (true, Some(b"\"state_update\"")) => {
            let ours = property.is_some_and(|p| {
                p.len() == SENT_US_PROPERTY.len() + 2
                    && &p[1..p.len() - 1] == SENT_US_PROPERTY.as_bytes()
            });
            let sent_us = if ours {
                value.and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            } else {
                None
            };
            WsMsg::StateUpdate { sent_us }
        }
        (true, Some(t)) if t.first() == Some(&b'"') => WsMsg::Other,
        _ => WsMsg::Bad,
    }
}

/// Calls `f(key, raw_value)` for each member of the top-level JSON object in
/// `s` (keys without quotes, escapes left as they are). False if `s` is not
/// a well-formed object as far as the scan can tell.
fn for_each_member<'a>(s: &'a [u8], mut f: impl FnMut(&'a [u8], &'a [u8])) -> bool {
    let mut i = skip_ws(s, 0);
    if s.get(i) != Some(&b'{') {
        return false;
    }
    i = skip_ws(s, i + 1);
    if s.get(i) == Some(&b'}') {
        return skip_ws(s, i + 1) == s.len();
    }
    loop {
        if s.get(i) != Some(&b'"') {
            return false;
        }
        let Some(key_end) = string_end(s, i) else {
            return false;
        };
        let key = &s[i + 1..key_end - 1];
        i = skip_ws(s, key_end);
        if s.get(i) != Some(&b':') {
            return false;
        }
        i = skip_ws(s, i + 1);
        let Some(value_end) = value_end(s, i) else {
            return false;
        };
        f(key, &s[i..value_end]);
        i = skip_ws(s, value_end);
        match s.get(i) {
            Some(b',') => i = skip_ws(s, i + 1),
            Some(b'}') => return skip_ws(s, i + 1) == s.len(),
            _ => return false,
        }
    }
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// `s[i]` is `"`: index just past the closing quote.
fn string_end(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// Index just past the JSON value starting at `i`.
fn value_end(s: &[u8], i: usize) -> Option<usize> {
    match *s.get(i)? {
        b'"' => string_end(s, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < s.len() {
                match s[j] {
                    b'"' => {
                        j = string_end(s, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < s.len() && !matches!(s[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// The subscribe message for `id` (`*`, `prefix*` or an exact id).
pub fn subscribe_message(id: &str) -> String {
    let id = serde_json::Value::from(id);
    format!("{{\"type\":\"subscribe\",\"entity_id\":{id}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_state_updates() {
        let m = br#"{"type":"state_update","entity_id":"lt-000001","property":"_lt_sent_us","value":1700000000123456,"timestamp":"2026-02-14T12:00:00.000Z"}"#;
        assert_eq!(fast_state_update(m), Some(classify_members(m)));
        assert_eq!(
            classify(m),
            WsMsg::StateUpdate {
                sent_us: Some(1_700_000_000_123_456)
            }
        );
        let m = br#"{"type":"state_update","entity_id":"lt-000001","property":"p0","value":"abc","timestamp":"t"}"#;
        assert_eq!(
            fast_state_update(m),
            Some(WsMsg::StateUpdate { sent_us: None })
        );
        let m = br#"{ "type" : "state_update", "entity_id": "a\"b", "property": "p0", "value": {"x":[1,"}"]}, "timestamp": "t" }"#;
        assert_eq!(classify(m), WsMsg::StateUpdate { sent_us: None });
        // Order of members does not matter.
        let m = br#"{"value":5,"property":"_lt_sent_us","type":"state_update"}"#;
        assert_eq!(classify(m), WsMsg::StateUpdate { sent_us: Some(5) });
        // A string value is not a send time.
        let m = br#"{"type":"state_update","property":"_lt_sent_us","value":"5"}"#;
        assert_eq!(classify(m), WsMsg::StateUpdate { sent_us: None });
        let m = br#"{"type":"state_update","entity_id":"x","property":"_lt_sent_us","value":"5"}"#;
        assert_eq!(classify(m), WsMsg::StateUpdate { sent_us: None });
        // A property that only starts like ours.
        let m = br#"{"type":"state_update","entity_id":"x","property":"_lt_sent_us_2","value":5}"#;
        assert_eq!(classify(m), WsMsg::StateUpdate { sent_us: None });
        // Ids with escapes take the general path, with the same answer.
        let m = br#"{"type":"state_update","entity_id":"a\"b","property":"_lt_sent_us","value":7}"#;
        assert_eq!(fast_state_update(m), None);
        assert_eq!(classify(m), WsMsg::StateUpdate { sent_us: Some(7) });
    }

    #[test]
    fn fast_path_never_disagrees_with_the_member_scan() {
        let base = br#"{"type":"state_update","entity_id":"lt-000042","property":"_lt_sent_us","value":1700000000000001,"timestamp":"2026-02-14T12:00:00.000Z"}"#;
        // Every truncation and every single-byte corruption.
        for cut in 0..base.len() {
            let m = &base[..cut];
            if let Some(fast) = fast_state_update(m) {
                assert_eq!(fast, classify_members(m), "{}", String::from_utf8_lossy(m));
            }
        }
        for at in 0..base.len() {
            for b in [b'"', b'\\', b'}', b',', b'x', b' '] {
                let mut m = base.to_vec();
                m[at] = b;
                if let Some(fast) = fast_state_update(&m) {
                    // The fast path does not check the timestamp's syntax.
                    if classify_members(&m) != WsMsg::Bad {
                        assert_eq!(
                            fast,
                            classify_members(&m),
                            "{}",
                            String::from_utf8_lossy(&m)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn classifies_other_and_bad_messages() {
        let m = br#"{"type":"metrics_update","timestamp":"t","entities":{"total":15},"events":{"total":5,"rate_per_second":1.5}}"#;
        assert_eq!(classify(m), WsMsg::Other);
        assert_eq!(classify(br#"{"type":"error","error":"bad"}"#), WsMsg::Other);
        assert_eq!(classify(b"not json"), WsMsg::Bad);
        assert_eq!(classify(br#"{"type":"state_update""#), WsMsg::Bad);
        assert_eq!(classify(br#"{"entity_id":"x"}"#), WsMsg::Bad);
        assert_eq!(classify(br#"{"type":"state_update"} trailing"#), WsMsg::Bad);
        assert_eq!(classify(b"{}"), WsMsg::Bad);
    }

    #[test]
    fn subscribe_messages() {
        assert_eq!(
            subscribe_message("*"),
            r#"{"type":"subscribe","entity_id":"*"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&subscribe_message("lt-*")).unwrap();
        assert_eq!(v["type"], "subscribe");
        assert_eq!(v["entity_id"], "lt-*");
    }

    #[test]
    fn frames_decode_at_every_length_encoding() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 100_000] {
            let payload = vec![b'a'; len];
            let mut f = Vec::new();
            // A server frame: like a client frame without the mask.
            f.push(0x80 | OP_TEXT);
            match len {
                n if n < 126 => f.push(n as u8),
                n if n <= 65_535 => {
                    f.push(126);
                    f.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    f.push(127);
                    f.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            let header = f.len();
            f.extend_from_slice(&payload);
            for cut in 0..header {
                assert_eq!(frame_header(&f[..cut]), Ok(None), "len {len} cut {cut}");
            }
            let h = frame_header(&f).unwrap().unwrap();
            assert_eq!(
                (h.fin, h.opcode, h.payload_at, h.len),
                (true, OP_TEXT, header, len)
            );
            assert_eq!(h.end(), f.len());
        }
        // Fragment (FIN clear), continuation, close with a code.
        let h = frame_header(&[OP_TEXT, 1, b'x']).unwrap().unwrap();
        assert!(!h.fin);
        let h = frame_header(&[0x80, 0]).unwrap().unwrap();
        assert_eq!(h.opcode, OP_CONTINUATION);
        assert_eq!(close_code(&[0x03, 0xF0, b'x']), 1008);
        assert_eq!(close_code(&[]), 1005);
    }

    #[test]
    fn bad_frames_are_errors() {
        assert!(
            frame_header(&[0x81, 0x80 | 1, 0, 0, 0, 0, b'x']).is_err(),
            "masked"
        );
        assert!(frame_header(&[0xC1, 1, b'x']).is_err(), "RSV1");
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(u64::MAX).to_be_bytes());
        assert!(frame_header(&huge).is_err());
    }

    #[test]
    fn client_frames_are_masked() {
        let mask = [1, 2, 3, 4];
        for len in [0usize, 5, 126, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            encode_client_frame(&mut out, OP_PONG, &payload, mask);
            assert_eq!(out[0], 0x80 | OP_PONG);
            assert_eq!(out[1] & 0x80, 0x80);
            // Unmask as a server would and read it back.
            let mut server_view = out.clone();
            server_view[1] &= 0x7f;
            let h = frame_header(&server_view).unwrap().unwrap();
            let at = h.payload_at + 4;
            let unmasked: Vec<u8> = out[at..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(unmasked, payload);
        }
    }

    #[test]
    fn upgrade_answers() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        let req = upgrade_request("h:1", "/base", key, Some("tok"));
        let req = String::from_utf8(req).unwrap();
        assert!(req.starts_with("GET /base/api/ws HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(req.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
        assert!(req.ends_with("Authorization: Bearer tok\r\n\r\n"));
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n\x01\x02hi"
        );
        let head_len = ok.len() - 4;
        assert_eq!(parse_upgrade(&ok.as_bytes()[..20], accept), Ok(None));
        assert_eq!(
            parse_upgrade(ok.as_bytes(), accept),
            Ok(Some(Upgrade::Accepted { head_len }))
        );
        assert!(parse_upgrade(ok.as_bytes(), "wrong").is_err());
        let no = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found";
        assert_eq!(
            parse_upgrade(no, accept),
            Ok(Some(Upgrade::Refused {
                status: 404,
                reason: "Not Found".into(),
                head_len: no.len() - 9,
                body_len: 9
            }))
        );
    }

    /// Not a check: classifying Flux `state_update`s of `_lt_sent_us`.
    #[test]
    #[ignore]
    fn classify_throughput() {
        let msgs: Vec<Vec<u8>> = (0..1000)
            .map(|i| format!("{{\"type\":\"state_update\",\"entity_id\":\"lt-{i:06}\",\"property\":\"_lt_sent_us\",\"value\":{},\"timestamp\":\"2026-11-29T00:00:00.000Z\"}}", 1_764_374_400_000_000u64 + i).into_bytes())
            .collect();
        let rounds = 5_000;
        let start = std::time::Instant::now();
        let mut sum = 0u64;
        for _ in 0..rounds {
            for m in &msgs {
                if let WsMsg::StateUpdate { sent_us: Some(v) } = classify(m) {
                    sum = sum.wrapping_add(v);
                }
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / (rounds * msgs.len()) as f64;
        println!("classify_throughput: {ns:.1} ns/message ({sum})");
    }
}
