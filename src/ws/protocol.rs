//! The JSON messages of `/api/ws`: what a client may send (parsed here, pure), and
//! what the server sends (rendered here with byte literals, like HTTP responses).
//!
//! Client → server:
//! ```text
//! {"type":"subscribe","entity_id":"sensor-01"}     exact id
//! {"type":"subscribe","entity_id":"*"}             every entity
//! {"type":"subscribe","entity_id":"host-*"}        ids starting with host-
//! {"type":"unsubscribe","entity_id": <same forms>}
//! ```
//! Server → client: `state_update`, `entity_deleted`, `metrics_update` (see
//! `metrics`), `subscribed` / `unsubscribed` (the acknowledgement: sent once the
//! subscription is in effect on every shard concerned, so an update applied after it
//! is delivered), and `error` for a message that was not understood.

use simd_json::prelude::*;

use crate::ingest::validate::{is_control_char, MAX_ENTITY_ID_BYTES};
use crate::json;
use crate::time;

/// Largest client message accepted (a subscribe with a 1 KiB id is far below it);
/// larger messages close the connection with 1009.
pub const CLIENT_MESSAGE_BYTES_MAX: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Subscribe,
    Unsubscribe,
}

impl Command {
    /// The `type` of the acknowledgement.
    pub fn ack_type(self) -> &'static [u8] {
        match self {
            Command::Subscribe => b"subscribed",
            Command::Unsubscribe => b"unsubscribed",
        }
    }
}

/// Parses a client text message into a command and its `entity_id` text (an id, `*`
/// or `prefix*`). `scratch` holds a copy for simd-json, which parses in place. The
/// error is the text of the `error` message sent back.
pub fn parse_command(text: &[u8], scratch: &mut Vec<u8>) -> Result<(Command, Vec<u8>), String> {
    scratch.clear();
    scratch.extend_from_slice(text);
    let v = simd_json::to_borrowed_value(scratch)
        .map_err(|_| "message is not valid JSON".to_string())?;
    let obj = v
        .as_object()
        .ok_or("message must be a JSON object with \"type\" and \"entity_id\"")?;
    let ty = match obj.get("type") {
        None => return Err("missing \"type\": expected subscribe or unsubscribe".into()),
        Some(t) => t
            .as_str()
            .ok_or("\"type\" must be a string: subscribe or unsubscribe")?,
    };
    let cmd = match ty {
        "subscribe" => Command::Subscribe,
        "unsubscribe" => Command::Unsubscribe,
        other => {
            return Err(format!(
                "unknown type {other:?}: expected subscribe or unsubscribe"
            ))
        }
    };
    let id = obj
        .get("entity_id")
        .and_then(|v| v.as_str())
        .ok_or("\"entity_id\" must be a string: an entity id, \"*\" or a prefix ending in *")?;
    if id.is_empty() {
        return Err("\"entity_id\" must not be empty".into());
    }
    // An id may be followed by the `*` of a prefix pattern.
    if id.len() > MAX_ENTITY_ID_BYTES + 1 {
        return Err(format!(
            "\"entity_id\" must be at most {MAX_ENTITY_ID_BYTES} bytes"
        ));
    }
    if id.chars().any(is_control_char) {
        return Err("\"entity_id\" must not contain control characters".into());
    }
    Ok((cmd, id.as_bytes().to_vec()))
}

/// `{"type":"state_update","entity_id":…,"property":…,"value":<raw>,"timestamp":"…"}`
#[inline]
pub fn write_state_update(out: &mut Vec<u8>, id: &[u8], key: &[u8], value: &[u8], ts_ms: u64) {
    out.extend_from_slice(b"{\"type\":\"state_update\",\"entity_id\":");
    json::write_str(out, id);
    out.extend_from_slice(b",\"property\":");
    json::write_str(out, key);
    out.extend_from_slice(b",\"value\":");
    out.extend_from_slice(value);
    out.extend_from_slice(b",\"timestamp\":\"");
    time::write_rfc3339_ms(out, ts_ms);
    out.extend_from_slice(b"\"}");
}

/// `{"type":"entity_deleted","entity_id":…,"timestamp":"…"}`
pub fn write_entity_deleted(out: &mut Vec<u8>, id: &[u8], ts_ms: u64) {
    out.extend_from_slice(b"{\"type\":\"entity_deleted\",\"entity_id\":");
    json::write_str(out, id);
    out.extend_from_slice(b",\"timestamp\":\"");
    time::write_rfc3339_ms(out, ts_ms);
    out.extend_from_slice(b"\"}");
}

/// `{"type":"error","error":"…"}`
pub fn error_message(msg: &str) -> String {
    let mut out = Vec::with_capacity(msg.len() + 32);
    out.extend_from_slice(b"{\"type\":\"error\",\"error\":");
    json::write_str(&mut out, msg.as_bytes());
    out.push(b'}');
    String::from_utf8(out).expect("JSON of UTF-8 text is UTF-8")
}

/// `{"type":"subscribed","entity_id":…}` (or `unsubscribed`).
pub fn ack_message(cmd: Command, entity_id: &[u8]) -> String {
    let mut out = Vec::with_capacity(entity_id.len() + 48);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(cmd.ack_type());
    out.extend_from_slice(b"\",\"entity_id\":");
    json::write_str(&mut out, entity_id);
    out.push(b'}');
    // Client ids are checked UTF-8 (they came from a text frame through simd-json).
    String::from_utf8(out).expect("JSON of UTF-8 text is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(Command, String), String> {
        parse_command(s.as_bytes(), &mut Vec::new())
            .map(|(c, id)| (c, String::from_utf8(id).unwrap()))
    }

    #[test]
    fn commands() {
        assert_eq!(
            parse(r#"{"type":"subscribe","entity_id":"sensor-01"}"#),
            Ok((Command::Subscribe, "sensor-01".into()))
        );
        assert_eq!(
            parse(r#" { "entity_id" : "host-*", "type" : "unsubscribe", "extra": [1] } "#),
            Ok((Command::Unsubscribe, "host-*".into()))
        );
        assert_eq!(
            parse(r#"{"type":"subscribe","entity_id":"ns\/a\u00e9"}"#),
            Ok((Command::Subscribe, "ns/aé".into()))
        );
    }

    #[test]
    fn garbage_is_an_error_with_a_reason() {
        for (msg, want) in [
            ("not json", "not valid JSON"),
            ("{", "not valid JSON"),
            ("[]", "JSON object"),
            ("42", "JSON object"),
            (
                r#"{"type":"bogus","entity_id":"x"}"#,
                "unknown type \"bogus\"",
            ),
            (r#"{"type":"subscribe"}"#, "\"entity_id\" must be a string"),
            (
                r#"{"type":"subscribe","entity_id":5}"#,
                "\"entity_id\" must be a string",
            ),
            (
                r#"{"type":"subscribe","entity_id":""}"#,
                "must not be empty",
            ),
            (
                r#"{"type":"subscribe","entity_id":"a\nb"}"#,
                "control characters",
            ),
            (r#"{"entity_id":"x"}"#, "missing \"type\""),
            (r#"{"type":null}"#, "\"type\" must be a string"),
        ] {
            let err = parse(msg).expect_err(msg);
            assert!(err.contains(want), "{msg}: {err}");
        }
        let long = format!(
            r#"{{"type":"subscribe","entity_id":"{}"}}"#,
            "x".repeat(1026)
        );
        assert!(parse(&long).is_err());
        let ok = format!(
            r#"{{"type":"subscribe","entity_id":"{}*"}}"#,
            "x".repeat(1024)
        );
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn rendered_messages_are_valid_json_with_raw_values() {
        let mut out = Vec::new();
        write_state_update(&mut out, b"s\"1", b"temp", b"22.50", 1_707_912_000_000);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains("\"value\":22.50,"), "{text}");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["type"], "state_update");
        assert_eq!(v["entity_id"], "s\"1");
        assert_eq!(v["property"], "temp");
        assert_eq!(v["timestamp"], "2024-02-14T12:00:00.000Z");

        let mut out = Vec::new();
        write_state_update(&mut out, b"e", b"o", br#"{"k": [1, "}"]}"#, 0);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["value"]["k"][1], "}");

        let mut out = Vec::new();
        write_entity_deleted(&mut out, b"e/1", 1_707_912_000_001);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["type"], "entity_deleted");
        assert_eq!(v["entity_id"], "e/1");
        assert_eq!(v["timestamp"], "2024-02-14T12:00:00.001Z");

        let v: serde_json::Value = serde_json::from_str(&error_message("bad \"x\"")).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["error"].as_str()),
            (Some("error"), Some("bad \"x\""))
        );
        let v: serde_json::Value =
            serde_json::from_str(&ack_message(Command::Unsubscribe, b"h*")).unwrap();
        assert_eq!(v["type"], "unsubscribed");
        assert_eq!(v["entity_id"], "h*");
    }
}
