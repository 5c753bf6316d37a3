//! The event decoder (`ingest::decode::Decoder`, with `ingest::validate` behind it):
//! every body is decoded as a single event and as a batch, by one decoder reused
//! across inputs as a shard reuses its own, and cross-checked against serde_json (with
//! `arbitrary_precision`, a plain grammar oracle that keeps numbers as text):
//!
//! * serde_json says it is not JSON ⇒ our decoder rejects it;
//! * serde_json says it is JSON, nested no deeper than `MAX_DEPTH`, with every number
//!   within f64's range ⇒ our decoder does not call it invalid JSON (it may still
//!   refuse it as an invalid event);
//! * a successful decode agrees with serde_json on every field: `eventId`, `stream`,
//!   `source`, `timestamp`, `payload.entity_id`, the property keys (duplicates: the
//!   last one wins, as for a consumer of the list), and every raw value text (`key`,
//!   `schema`, each property value) parses to the same `serde_json::Value` as the
//!   document holds there; a batch's element count and every accepted element too.
#![no_main]

use std::cell::RefCell;
use std::collections::BTreeMap;

use flux::ingest::decode::{DecodeError, Decoder, EventRef, MAX_DEPTH};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

thread_local! {
    static DECODER: RefCell<Decoder> = RefCell::new(Decoder::new());
}

/// For a body serde_json accepted: the deepest nesting of objects and arrays (the
/// outermost counting 1, as `MAX_DEPTH` counts), and whether every number is within
/// f64's range. simd-json refuses the others ("number out of range", like serde_json
/// without `arbitrary_precision`); that limit is known and reported. Read from the
/// text, not from a `Value`: a duplicate key hides the earlier value from a `Value`,
/// but not from our decoder.
fn depth_and_finite(body: &[u8]) -> (usize, bool) {
    let (mut depth, mut deepest, mut finite) = (0usize, 0usize, true);
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while body[i] != b'"' {
                    i += if body[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth -= 1,
            b'-' | b'0'..=b'9' => {
                let len = body[i..]
                    .iter()
                    .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                    .unwrap_or(body.len() - i);
                let text = std::str::from_utf8(&body[i..i + len]).expect("ASCII");
                finite &= text.parse::<f64>().is_ok_and(f64::is_finite);
                i += len - 1;
            }
            _ => {}
        }
        i += 1;
    }
    (deepest, finite)
}

/// `raw` is one JSON value, the same as `want`.
fn same_value(raw: &[u8], want: &Value, what: &str) {
    let got: Value = serde_json::from_slice(raw)
        .unwrap_or_else(|e| panic!("{what}: raw text {:?} is not JSON: {e}", lossy(raw)));
    assert_eq!(&got, want, "{what}: raw text {:?}", lossy(raw));
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An optional field that Flux treats as absent when missing or `null`.
fn absent_or_null(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

/// `ev`, which our decoder accepted, is what serde_json read as `doc`.
fn agrees(ev: &EventRef<'_>, doc: &Value) {
    let obj = doc.as_object().expect("an accepted event is a JSON object");
    match ev.event_id {
        Some(id) => assert_eq!(obj.get("eventId").and_then(Value::as_str), Some(id)),
        None => assert!(match obj.get("eventId") {
            None => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        }),
    }
    assert_eq!(obj.get("stream").and_then(Value::as_str), Some(ev.stream));
    assert_eq!(obj.get("source").and_then(Value::as_str), Some(ev.source));
    match ev.timestamp_ms {
        Some(ms) => assert_eq!(obj.get("timestamp").and_then(Value::as_u64), Some(ms)),
        None => assert!(absent_or_null(obj.get("timestamp"))),
    }
    for (field, raw) in [("key", ev.key), ("schema", ev.schema)] {
        match raw {
            Some(raw) => same_value(raw, &obj[field], field),
            None => assert!(absent_or_null(obj.get(field)), "{field}"),
        }
    }
    let payload = obj["payload"].as_object().expect("payload is an object");
    assert_eq!(
        payload.get("entity_id").and_then(Value::as_str),
        Some(ev.entity_id)
    );
    let props = payload["properties"]
        .as_object()
        .expect("payload.properties is an object");
    // Duplicate keys are all kept in body order; the last one is the one that counts.
    let mut last: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for p in ev.properties {
        last.insert(p.key, p.value);
    }
    assert_eq!(last.len(), props.len(), "property keys");
    for (key, raw) in last {
        let want = props
            .get(key)
            .unwrap_or_else(|| panic!("property {key:?} is not in the document"));
        same_value(raw, want, "property value");
    }
}

fuzz_target!(|body: &[u8]| {
    let oracle: Option<Value> = serde_json::from_slice(body).ok();
    // JSON that our decoder must take (as JSON; it may still be an invalid event).
    let acceptable = oracle.is_some() && {
        let (depth, finite) = depth_and_finite(body);
        depth <= MAX_DEPTH && finite
    };
    DECODER.with(|d| {
        let mut d = d.borrow_mut();

        let single = d.decode_single(body, |ev| {
            let doc = oracle.as_ref().expect("accepted a body serde_json rejects");
            agrees(ev, doc);
        });
        if let Err(DecodeError::InvalidJson(why)) = &single {
            assert!(!acceptable, "valid JSON called invalid: {why}");
        }

        let mut accepted = Vec::new();
        let batch = d.decode_batch(body, |index, ev| {
            if let Ok(ev) = ev {
                let doc = oracle
                    .as_ref()
                    .expect("accepted a batch serde_json rejects");
                agrees(ev, &doc["events"][index]);
                accepted.push(index);
            }
        });
        match &batch {
            Ok(count) => {
                let doc = oracle
                    .as_ref()
                    .expect("accepted a batch serde_json rejects");
                let events = doc["events"].as_array().expect("events is an array");
                assert_eq!(*count, events.len());
                assert!(accepted.iter().all(|&i| i < *count));
            }
            Err(DecodeError::InvalidJson(why)) => {
                assert!(!acceptable, "valid JSON called invalid: {why}");
            }
            Err(DecodeError::Invalid(_)) => {}
        }
    });
});
