//! The subscriber's message scanner, pure and tested here: it classifies
//! Flux messages without building a JSON tree. (The WebSocket protocol
//! itself, handshake and frames, is `flux_devclient::ws`, shared with the
//! integration tests.)
//!
//! The scanner reads a subscriber's hot path: a `state_update` as the server
//! renders it (`{"type":"state_update","entity_id":"…","property":"…",
//! "value":…}`) is recognised by its fixed prefix and a few byte
//! comparisons; anything else falls back to a scan of the top-level members.

use crate::workload::SENT_US_PROPERTY;
use flux_devclient::json::{skip_ws, string_end, value_end};

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
