//! The WebSocket client message parser (`ws::protocol::parse_command`) and what the
//! session does with its result: the subscription pattern (`ws::subs::Pattern`),
//! confined to a namespace as a namespace token's session does, and the `subscribed`
//! or `error` message sent back.
//!
//! Checked besides "never panics": a message serde_json calls invalid JSON is
//! refused; an accepted one is a JSON object with `type` and `entity_id`, its id keeps
//! the documented rules; the pattern confined to a namespace matches nothing outside
//! it; every reply is valid JSON that carries the id or the error text unchanged.
#![no_main]

use flux::ingest::validate::{is_control_char, MAX_ENTITY_ID_BYTES};
use flux::ws::protocol::{ack_message, error_message, parse_command, CLIENT_MESSAGE_BYTES_MAX};
use flux::ws::subs::Pattern;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SCOPE: &[u8] = b"ns/";

fuzz_target!(|text: &[u8]| {
    // Longer messages close the connection (1009) before they are parsed.
    if text.len() > CLIENT_MESSAGE_BYTES_MAX {
        return;
    }
    let oracle: Option<Value> = serde_json::from_slice(text).ok();
    let mut scratch = Vec::new();
    let (cmd, id) = match parse_command(text, &mut scratch) {
        Ok(parsed) => parsed,
        Err(why) => {
            let reply: Value = serde_json::from_str(&error_message(&why)).expect("error is JSON");
            assert_eq!(reply["error"].as_str(), Some(why.as_str()));
            return;
        }
    };
    let doc = oracle.expect("accepted a message serde_json rejects");
    let obj = doc.as_object().expect("an accepted message is an object");
    assert!(obj.contains_key("type") && obj.contains_key("entity_id"));

    let id_text = std::str::from_utf8(&id).expect("ids are UTF-8");
    assert!(!id.is_empty() && id.len() <= MAX_ENTITY_ID_BYTES + 1);
    assert!(!id_text.chars().any(is_control_char));
    let reply: Value = serde_json::from_str(&ack_message(cmd, &id)).expect("ack is JSON");
    assert_eq!(reply["entity_id"].as_str(), Some(id_text));

    let pattern = Pattern::parse(&id);
    match &pattern {
        Pattern::Prefix(p) => {
            assert_eq!(id.last(), Some(&b'*'));
            assert_eq!(&p[..], &id[..id.len() - 1]);
            assert!(pattern.matches(p));
        }
        Pattern::Exact(e) => {
            assert_eq!(&e[..], &id[..]);
            assert!(pattern.matches(&id));
        }
    }
    if let Some(confined) = pattern.clone().confine(SCOPE) {
        match &confined {
            Pattern::Exact(e) => assert!(e.len() > SCOPE.len() && e.starts_with(SCOPE)),
            Pattern::Prefix(p) => assert!(p.starts_with(SCOPE)),
        }
        // Nothing outside the namespace matches; what matched the confined pattern
        // matched the original one.
        assert!(!confined.matches(b"other/x"));
        let probe = [SCOPE, b"x"].concat();
        if confined.matches(&probe) {
            assert!(pattern.matches(&probe));
        }
    }
});
