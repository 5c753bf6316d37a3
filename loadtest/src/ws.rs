//! WebSocket subscribers: connect to `/api/ws`, subscribe, and time every
//! `state_update` of `_lt_sent_us` against the send time it carries.
//!
//! Messages are classified by a small scanner of the top-level JSON members
//! (no tree is built): a subscriber may receive hundreds of thousands of
//! updates per second, and only `type`, `property` and `value` matter.

use crate::config::Config;
use crate::conn::Shared;
use crate::schedule::Nanos;
use crate::stats::Stats;
use crate::workload::SENT_US_PROPERTY;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use futures_lite::StreamExt;
use glommio::net::TcpStream;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a subscriber checks whether the run asked it to stop.
const STOP_POLL: Duration = Duration::from_millis(50);
/// Bytes of a refused upgrade's body quoted in the error.
const REFUSAL_BODY_QUOTE_MAX: usize = 200;

pub type Ws = WebSocketStream<TcpStream>;

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

pub fn classify(text: &[u8]) -> WsMsg {
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

/// The subscribe messages for `ids` (`*`, `prefix*` or exact ids).
pub fn subscribe_message(id: &str) -> String {
    let id = serde_json::Value::from(id);
    format!("{{\"type\":\"subscribe\",\"entity_id\":{id}}}")
}

/// Opens a subscriber and sends its subscriptions. A refused upgrade (for
/// example a 404 from a server without WebSocket support) is an error whose
/// text says so.
pub async fn connect(
    cfg: &Config,
    addr: SocketAddr,
    subscriptions: &[String],
) -> Result<Ws, String> {
    let url = format!(
        "ws://{}{}/api/ws",
        cfg.target.authority, cfg.target.base_path
    );
    let stream = TcpStream::connect_timeout(addr, cfg.timeout)
        .await
        .map_err(|e| format!("WebSocket connect to {url} failed: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad WebSocket URL {url}: {e}"))?;
    if let Some(token) = &cfg.token {
        let v = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "--token is not a valid header value".to_string())?;
        request.headers_mut().insert("authorization", v);
    }
    let handshake = async_tungstenite::client_async(request, stream);
    let timeout = async {
        glommio::timer::sleep(cfg.timeout).await;
        Err(WsError::Io(std::io::ErrorKind::TimedOut.into()))
    };
    let (mut ws, _) = match futures_lite::future::or(handshake, timeout).await {
        Ok(pair) => pair,
        Err(WsError::Http(resp)) => {
            let body = resp.body().as_deref().unwrap_or_default();
            let quote = String::from_utf8_lossy(&body[..body.len().min(REFUSAL_BODY_QUOTE_MAX)]);
            return Err(format!(
                "the server refused the WebSocket upgrade of {url}: HTTP {} {}",
                resp.status(),
                quote.trim()
            ));
        }
        Err(e) => return Err(format!("WebSocket handshake with {url} failed: {e}")),
    };
    for id in subscriptions {
        ws.send(Message::text(subscribe_message(id)))
            .await
            .map_err(|e| format!("sending subscribe to {url} failed: {e}"))?;
    }
    Ok(ws)
}

/// Reads updates until the server closes or `stop` is set.
pub async fn run(sh: &Shared, mut ws: Ws, stop: Arc<AtomicBool>) {
    let mut stop_poll = Box::pin(async {
        while !stop.load(Ordering::Acquire) {
            glommio::timer::sleep(STOP_POLL).await;
        }
    });
    loop {
        let next = futures_lite::future::or(async { Some(ws.next().await) }, async {
            (&mut stop_poll).await;
            None
        })
        .await;
        let msg = match next {
            None => break,
            Some(None) => {
                sh.stats.borrow_mut().ws.other_closes += 1;
                break;
            }
            Some(Some(Err(_))) => {
                sh.stats.borrow_mut().ws.errors += 1;
                break;
            }
            Some(Some(Ok(m))) => m,
        };
        match msg {
            Message::Text(t) => on_text(sh, t.as_bytes()),
            Message::Close(frame) => {
                let mut st = sh.stats.borrow_mut();
                match frame {
                    Some(f) if f.code == CloseCode::Policy => st.ws.slow_consumer_closes += 1,
                    _ => st.ws.other_closes += 1,
                }
                break;
            }
            _ => {}
        }
    }
    let _ = ws.close(None).await;
}

fn on_text(sh: &Shared, text: &[u8]) {
    let now = sh.clock.now();
    let mut st = sh.stats.borrow_mut();
    st.ws.bytes += text.len() as u64;
    match classify(text) {
        WsMsg::StateUpdate { sent_us } => {
            st.ws.updates += 1;
            if let Some(sent_us) = sent_us {
                record_latency(sh, &mut st, sent_us, now);
            }
        }
        WsMsg::Other => st.ws.other_messages += 1,
        WsMsg::Bad => st.ws.bad_messages += 1,
    }
}

fn record_latency(sh: &Shared, st: &mut Stats, sent_us: u64, now: Nanos) {
    // Updates from before this run (another publisher's) are not ours.
    let Some(sent) = sh.clock.run_time_of_unix_us(sent_us) else {
        return;
    };
    st.ws.tagged_updates += 1;
    if sh.measured(sent) {
        st.ws
            .latency
            .saturating_record(now.saturating_sub(sent) / 1_000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_state_updates() {
        let m = br#"{"type":"state_update","entity_id":"lt-000001","property":"_lt_sent_us","value":1700000000123456,"timestamp":"2026-02-14T12:00:00.000Z"}"#;
        assert_eq!(
            classify(m),
            WsMsg::StateUpdate {
                sent_us: Some(1_700_000_000_123_456)
            }
        );
        let m = br#"{ "type" : "state_update", "entity_id": "a\"b", "property": "p0", "value": {"x":[1,"}"]}, "timestamp": "t" }"#;
        assert_eq!(classify(m), WsMsg::StateUpdate { sent_us: None });
        // Order of members does not matter.
        let m = br#"{"value":5,"property":"_lt_sent_us","type":"state_update"}"#;
        assert_eq!(classify(m), WsMsg::StateUpdate { sent_us: Some(5) });
        // A string value is not a send time.
        let m = br#"{"type":"state_update","property":"_lt_sent_us","value":"5"}"#;
        assert_eq!(classify(m), WsMsg::StateUpdate { sent_us: None });
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
}
