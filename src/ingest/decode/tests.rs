use super::*;
use serde_json::{json, Value};

// ----------------------------------------------------------------- helpers

/// An owned copy of an [`EventRef`], so results can leave the callback and be compared.
#[derive(Debug, Clone, PartialEq)]
struct Owned {
    event_id: Option<String>,
    stream: String,
    source: String,
    timestamp_ms: Option<u64>,
    key: Option<Vec<u8>>,
    schema: Option<Vec<u8>>,
    entity_id: String,
    properties: Vec<(String, Vec<u8>)>,
}

impl Owned {
    fn of(e: &EventRef<'_>) -> Self {
        Self {
            event_id: e.event_id.map(str::to_owned),
            stream: e.stream.to_owned(),
            source: e.source.to_owned(),
            timestamp_ms: e.timestamp_ms,
            key: e.key.map(<[u8]>::to_vec),
            schema: e.schema.map(<[u8]>::to_vec),
            entity_id: e.entity_id.to_owned(),
            properties: e
                .properties
                .iter()
                .map(|p| (p.key.to_owned(), p.value.to_vec()))
                .collect(),
        }
    }

    fn prop(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| std::str::from_utf8(v).unwrap())
    }
}

fn decode(body: impl AsRef<[u8]>) -> Result<Owned, DecodeError> {
    Decoder::new().decode_single(body.as_ref(), Owned::of)
}

fn invalid(body: impl AsRef<[u8]>) -> String {
    match decode(body.as_ref()) {
        Err(DecodeError::Invalid(m)) => m,
        other => panic!(
            "expected Invalid for {:?}, got {other:?}",
            String::from_utf8_lossy(body.as_ref())
        ),
    }
}

fn invalid_json(body: impl AsRef<[u8]>) -> String {
    match decode(body.as_ref()) {
        Err(DecodeError::InvalidJson(m)) => m,
        other => panic!(
            "expected InvalidJson for {:?}, got {other:?}",
            String::from_utf8_lossy(body.as_ref())
        ),
    }
}

fn base_event() -> Value {
    json!({
        "eventId": "evt-1",
        "stream": "sensors.zone-1",
        "source": "agent-7",
        "timestamp": 1_707_900_000_000_u64,
        "payload": {
            "entity_id": "temp-01",
            "properties": {"temperature": 22.5, "unit": "celsius"}
        }
    })
}

/// The base event with one edit applied, serialized.
fn edited(edit: impl FnOnce(&mut Value)) -> String {
    let mut v = base_event();
    edit(&mut v);
    v.to_string()
}

/// An event whose `payload.properties` object is exactly `properties_text`.
fn event_with_properties(properties_text: &str) -> String {
    format!(
        r#"{{"stream":"s","source":"src","payload":{{"entity_id":"e","properties":{properties_text}}}}}"#
    )
}

fn assert_within(body: &[u8], value: &[u8]) {
    let range = body.as_ptr_range();
    assert!(
        range.contains(&value.as_ptr()) && value.as_ptr_range().end <= range.end,
        "value is not borrowed from the original body"
    );
}

// ------------------------------------- simd-json facts the span walker relies on

fn tokens_and_tape(doc: &str) -> (Vec<u32>, Vec<String>) {
    let mut scratch = doc.as_bytes().to_vec();
    scratch.resize(doc.len() + INPUT_PADDING, 0);
    let mut buffers = Buffers::new(0);
    let mut tape = Tape::null();
    fill_tape_padded(&mut scratch, doc.len(), &mut buffers, &mut tape).unwrap();
    let nodes = tape.0.iter().map(|n| format!("{n:?}")).collect();
    (buffers.structural_indexes().to_vec(), nodes)
}

#[test]
fn structural_indexes_have_no_root_entry_and_no_sentinel() {
    assert_eq!(tokens_and_tape("{}").0, [0, 1]);
    assert_eq!(tokens_and_tape(" [ ] ").0, [1, 3]);
    //                     0123456789012345678901234
    let (tokens, tape) = tokens_and_tape(r#"{"a" : [1, true,"x\"y"]}"#);
    // `{` `"a` `:` `[` `1` `,` `true` `,` `"x` `]` `}` -- closing quotes and the
    // escaped quote are not tokens.
    assert_eq!(tokens, [0, 1, 5, 7, 8, 9, 11, 15, 16, 22, 23]);
    // One tape node per key and value, in the order of their first tokens.
    assert_eq!(tape.len(), 6);
}

#[test]
fn top_level_scalars_have_exactly_one_token() {
    for (doc, offset) in [
        ("42", 0),
        ("  -1.5e3 ", 2),
        ("\"a\\\"b\"", 0),
        ("\ttrue", 1),
    ] {
        let (tokens, tape) = tokens_and_tape(doc);
        assert_eq!(tokens, [offset], "{doc:?}");
        assert_eq!(tape.len(), 1, "{doc:?}");
    }
}

#[test]
fn tokens_are_nodes_plus_separators_plus_closers() {
    // The lock-step walk depends on this count identity for every document.
    for doc in [
        r#"{"a":{"b":[1,{"c":null}],"d":"\"}"},"e":[[],{}]}"#,
        r#"[1 , 2,3 ,"x" , {"k" :[ true ]}]"#,
        "{ \"k\" :\n\t-0 }",
    ] {
        let (tokens, tape) = tokens_and_tape(doc);
        let mut in_string = false;
        let mut escaped = false;
        let mut punctuation = 0;
        for b in doc.bytes() {
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
            } else if b == b'"' {
                in_string = true;
            } else if matches!(b, b':' | b',' | b'}' | b']') {
                punctuation += 1;
            }
        }
        assert_eq!(tokens.len(), tape.len() + punctuation, "{doc:?}");
    }
}

#[test]
fn span_walker_spans_every_node_of_a_document() {
    let doc = r#" { "a" : [ 1 , "two" , { } , [ ] , null ] , "b" : -2.5e1 } "#;
    let mut scratch = doc.as_bytes().to_vec();
    scratch.resize(doc.len() + INPUT_PADDING, 0);
    let mut buffers = Buffers::new(0);
    let mut tape = Tape::null();
    fill_tape_padded(&mut scratch, doc.len(), &mut buffers, &mut tape).unwrap();
    let mut spans = vec![Span::default(); tape.0.len()];
    SpanWalker {
        tape: &tape.0,
        tokens: buffers.structural_indexes(),
        body: doc.as_bytes(),
        spans: &mut spans,
        next_node: 0,
        next_token: 0,
    }
    .walk_document()
    .unwrap();
    let texts: Vec<&str> = spans
        .iter()
        .map(|s| &doc[s.start as usize..s.end as usize])
        .collect();
    assert_eq!(
        texts,
        [
            r#"{ "a" : [ 1 , "two" , { } , [ ] , null ] , "b" : -2.5e1 }"#,
            r#""a""#,
            r#"[ 1 , "two" , { } , [ ] , null ]"#,
            "1",
            r#""two""#,
            "{ }",
            "[ ]",
            "null",
            r#""b""#,
            "-2.5e1",
        ]
    );
}

#[test]
fn span_walker_refuses_tokens_that_do_not_line_up() {
    let doc = r#"{"a":[1,true],"b":"x"}"#;
    let mut scratch = doc.as_bytes().to_vec();
    scratch.resize(doc.len() + INPUT_PADDING, 0);
    let mut buffers = Buffers::new(0);
    let mut tape = Tape::null();
    fill_tape_padded(&mut scratch, doc.len(), &mut buffers, &mut tape).unwrap();
    let good = buffers.structural_indexes().to_vec();

    let walk = |tokens: &[u32]| {
        let mut spans = vec![Span::default(); tape.0.len()];
        SpanWalker {
            tape: &tape.0,
            tokens,
            body: doc.as_bytes(),
            spans: &mut spans,
            next_node: 0,
            next_token: 0,
        }
        .walk_document()
        .is_ok()
    };
    assert!(walk(&good));
    let mut tampered = Vec::new();
    // Drop each token in turn, shift each one, add a trailing sentinel: all refused.
    for i in 0..good.len() {
        let mut t = good.clone();
        t.remove(i);
        tampered.push(t);
        let mut t = good.clone();
        t[i] += 1;
        tampered.push(t);
    }
    let mut t = good.clone();
    t.push(doc.len() as u32);
    tampered.push(t);
    for t in tampered {
        assert!(!walk(&t), "tampered tokens accepted: {t:?}");
    }
    // A tape that disagrees with the text is refused as well.
    let mut wrong_tape = tape.0.clone();
    wrong_tape[4] = Node::Static(StaticNode::Bool(false));
    let mut spans = vec![Span::default(); wrong_tape.len()];
    let ok = SpanWalker {
        tape: &wrong_tape,
        tokens: &good,
        body: doc.as_bytes(),
        spans: &mut spans,
        next_node: 0,
        next_token: 0,
    }
    .walk_document()
    .is_ok();
    assert!(!ok);
}

/// `(level, is a key)` of every tape node, worked out from the tape alone.
fn node_roles(tape: &[Node<'_>]) -> Vec<(usize, bool)> {
    fn visit(tape: &[Node<'_>], i: usize, role: (usize, bool), out: &mut [(usize, bool)]) -> usize {
        out[i] = role;
        let (len, object) = match tape[i] {
            Node::Object { len, .. } => (len, true),
            Node::Array { len, .. } => (len, false),
            _ => return i + 1,
        };
        let mut next = i + 1;
        for _ in 0..len {
            if object {
                next = visit(tape, next, (role.0 + 1, true), out);
            }
            next = visit(tape, next, (role.0 + 1, false), out);
        }
        next
    }
    let mut out = vec![(0, false); tape.len()];
    assert_eq!(visit(tape, 0, (1, false), &mut out), tape.len());
    out
}

/// Runs a walk for `wanted` over `tokens`; the spans if it succeeded.
fn walk_spans(doc: &str, tape: &[Node<'_>], tokens: &[u32], wanted: Wanted) -> Option<Vec<Span>> {
    let mut spans = vec![Span::default(); tape.len()];
    let mut walker = SpanWalker {
        tape,
        tokens,
        body: doc.as_bytes(),
        spans: &mut spans,
        next_node: 0,
        next_token: 0,
    };
    walker.walk(wanted).ok().map(|()| spans)
}

/// Level sets for values-only walks, from none to all, including the decoder's own.
const LEVEL_SETS: &[u64] = &[
    0,
    1 << 1,
    1 << 2,
    1 << 3,
    1 << 2 | 1 << 4,
    1 << 4 | 1 << 6,
    u64::MAX,
];

#[test]
fn wanted_values_get_the_spans_of_a_full_walk_and_nothing_else() {
    for doc in [
        r#"{"a":{"b":[1,{"c":null}],"d":"\"}"},"e":[[],{}],"f":{"g":{}}}"#,
        r#"[1 , 2,3 ,"x" , {"k" :[ true ]}, [[[]]], {"z": [false, -0.5e3]}]"#,
        " { \"k\" :\n\t-10 , \"n\" : { \"m\" : [ { } , [ 1 ] , \"]\" ] } } ",
        r#"{"events":[{"payload":{"properties":{"p":[1,[2,{}]],"q":"}"}}},{"key":{"a":[]}}]}"#,
        "\"top\"",
        " 12 ",
    ] {
        let mut scratch = doc.as_bytes().to_vec();
        scratch.resize(doc.len() + INPUT_PADDING, 0);
        let mut buffers = Buffers::new(0);
        let mut tape = Tape::null();
        fill_tape_padded(&mut scratch, doc.len(), &mut buffers, &mut tape).unwrap();
        let tokens = buffers.structural_indexes();
        let full = walk_spans(doc, &tape.0, tokens, Wanted::EVERY_TOKEN).unwrap();
        let roles = node_roles(&tape.0);
        for &levels in LEVEL_SETS {
            let wanted = Wanted {
                levels,
                keys: false,
            };
            let spans = walk_spans(doc, &tape.0, tokens, wanted).unwrap();
            for (i, &(level, key)) in roles.iter().enumerate() {
                let expected = if !key && wanted.spans(level) {
                    full[i]
                } else {
                    Span::default()
                };
                assert_eq!(spans[i], expected, "node {i} for {levels:#b} in {doc:?}");
            }
        }
    }
}

#[test]
fn wanted_values_refuse_tokens_that_do_not_line_up_or_keep_every_span_right() {
    let doc = r#"{"a":[12,true],"b":"x,y","c":{"d":[]},"e":-7 }"#;
    let mut scratch = doc.as_bytes().to_vec();
    scratch.resize(doc.len() + INPUT_PADDING, 0);
    let mut buffers = Buffers::new(0);
    let mut tape = Tape::null();
    fill_tape_padded(&mut scratch, doc.len(), &mut buffers, &mut tape).unwrap();
    let good = buffers.structural_indexes().to_vec();

    let mut missing_or_extra = Vec::new();
    let mut moved = Vec::new();
    for i in 0..good.len() {
        let mut t = good.clone();
        t.remove(i);
        missing_or_extra.push(t);
        for delta in [-2, -1, 1, 2] {
            let mut t = good.clone();
            t[i] = t[i].saturating_add_signed(delta);
            moved.push(t);
        }
    }
    let mut t = good.clone();
    t.push(doc.len() as u32);
    missing_or_extra.push(t);
    let mut t = good.clone();
    t.insert(3, good[3]);
    missing_or_extra.push(t);

    let values = LEVEL_SETS.iter().map(|&levels| Wanted {
        levels,
        keys: false,
    });
    for wanted in values.chain([Wanted::EVERY_TOKEN]) {
        let right = walk_spans(doc, &tape.0, &good, wanted).unwrap();
        for t in &missing_or_extra {
            assert_eq!(
                walk_spans(doc, &tape.0, t, wanted),
                None,
                "{wanted:?}: {t:?}"
            );
        }
        // A moved token is either never read (no span depends on it) or refused.
        for t in &moved {
            if let Some(spans) = walk_spans(doc, &tape.0, t, wanted) {
                assert_eq!(spans, right, "{wanted:?}: {t:?}");
            }
        }
    }
}

// ------------------------------------------------------------------ round trip

/// Property values whose text must survive byte for byte.
const RAW_VALUES: &[&str] = &[
    "22.50",
    "-0",
    "0",
    "-0.0",
    "1e3",
    "1E+3",
    "2e-3",
    "-1.5E-7",
    "12345678901234567890123",
    "-12345678901234567890123",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "0.1000000000000000000000001",
    r#""a\"b\\c\u00e9\n""#,
    r#""plain""#,
    r#""""#,
    r#""\ud83d\ude00 \/ \b\f\r\t""#,
    "\"h\u{e9}llo w\u{f6}rld \u{4e2d}\u{6587} \u{1f642}\"",
    r#""ends with backslash \\""#,
    r#""ends with quote \"""#,
    r#""looks like json: {\"a\":[1,2]}""#,
    "{}",
    "[]",
    "{ }",
    "[\n]",
    "true",
    "false",
    "null",
    r#"{"b":1,"a":[1e3]}"#,
    "{ \"z\" : [ 1 , 2 ,\n\t3 ] , \"a\" : { } }",
    r#"[[],[[]],{"k":[{}]}]"#,
    "[\r\n  1,\r\n  \"two\"\r\n]",
    r#"{"nested":{"deeper":{"deepest":[true,false,null,-0.5]}}}"#,
    r#"{"dup":1,"dup":2}"#,
];

/// Whitespace placed around every token of the properties object.
const WHITESPACE: &[&str] = &["", " ", "\n\t ", "\r\n", "  \t\t\n"];

/// Checks every property of `body` against the expected raw texts and serde_json.
fn assert_round_trip(body: &str, expected: &[(&str, &str)]) {
    let event = Decoder::new()
        .decode_single(body.as_bytes(), |e| {
            for p in e.properties {
                assert_within(body.as_bytes(), p.value);
            }
            Owned::of(e)
        })
        .unwrap_or_else(|e| panic!("{e} for {body:?}"));
    let whole: Value = serde_json::from_str(body).unwrap();
    let serde_props = whole["payload"]["properties"].as_object().unwrap();

    assert_eq!(event.properties.len(), expected.len(), "{body:?}");
    for ((key, raw), (want_key, want_raw)) in event.properties.iter().zip(expected) {
        assert_eq!(key, want_key);
        assert_eq!(std::str::from_utf8(raw).unwrap(), *want_raw, "in {body:?}");
        let parsed: Value = serde_json::from_slice(raw).unwrap();
        assert_eq!(&parsed, &serde_props[key.as_str()], "{key} in {body:?}");
    }
}

#[test]
fn each_value_alone_round_trips_with_any_whitespace() {
    for ws in WHITESPACE {
        for raw in RAW_VALUES {
            let props = format!("{{{ws}\"v\"{ws}:{ws}{raw}{ws}}}");
            assert_round_trip(&event_with_properties(&props), &[("v", raw)]);
        }
    }
}

#[test]
fn all_values_together_round_trip() {
    let keys: Vec<String> = (0..RAW_VALUES.len()).map(|i| format!("k{i}")).collect();
    let expected: Vec<(&str, &str)> = keys
        .iter()
        .map(String::as_str)
        .zip(RAW_VALUES.iter().copied())
        .collect();
    for ws in WHITESPACE {
        let members: Vec<String> = expected
            .iter()
            .map(|(k, v)| format!("{ws}\"{k}\"{ws}:{ws}{v}{ws}"))
            .collect();
        let props = format!("{{{}}}", members.join(","));
        // Properties last in the body, and (below) first, so that the value after the
        // last property is followed by `}` of payload, `,` or the body's end.
        assert_round_trip(&event_with_properties(&props), &expected);
        let body = format!(
            "{ws}{{{ws}\"payload\"{ws}:{ws}{{\"properties\":{props},\"entity_id\":\"e\"}},\
                 \"stream\":\"s\",\"source\":\"x\"}}{ws}"
        );
        assert_round_trip(&body, &expected);
    }
}

#[test]
fn sample_event_from_the_spec_round_trips() {
    let body = r#"{"eventId":"optional","stream":"sensors.zone-1","source":"agent-7","timestamp":1707900000000,"key":"opt","schema":"opt",
 "payload":{"entity_id":"temp-01","properties":{"temperature":22.50,"unit":"celsius","nested":{"b":1,"a":[1e3]}}}}"#;
    let e = decode(body).unwrap();
    assert_eq!(
        e,
        Owned {
            event_id: Some("optional".into()),
            stream: "sensors.zone-1".into(),
            source: "agent-7".into(),
            timestamp_ms: Some(1_707_900_000_000),
            key: Some(br#""opt""#.to_vec()),
            schema: Some(br#""opt""#.to_vec()),
            entity_id: "temp-01".into(),
            properties: vec![
                ("temperature".into(), b"22.50".to_vec()),
                ("unit".into(), br#""celsius""#.to_vec()),
                ("nested".into(), br#"{"b":1,"a":[1e3]}"#.to_vec()),
            ],
        }
    );
}

#[test]
fn property_keys_are_decoded() {
    let props = r#"{"t\u0065mp":1,"a\\b":2,"\"q\"":3,"\u00e9t\u00e9":4,"":5,"\ud83d\ude00":6}"#;
    let e = decode(event_with_properties(props)).unwrap();
    let keys: Vec<&str> = e.properties.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["temp", "a\\b", "\"q\"", "été", "", "😀"]);
    assert_eq!(e.prop("temp"), Some("1"));
}

#[test]
fn envelope_strings_are_decoded() {
    let body = r#"{"eventId":"id\u002d1","stream":"s","source":"agent\/7 \u00e9","payload":{"entity_id":"dev\/\u0041","properties":{}}}"#;
    let e = decode(body).unwrap();
    assert_eq!(e.event_id.as_deref(), Some("id-1"));
    assert_eq!(e.source, "agent/7 é");
    assert_eq!(e.entity_id, "dev/A");
}

#[test]
fn duplicate_property_keys_are_all_kept_in_order() {
    let e = decode(event_with_properties(r#"{"a":1,"b":2,"a":"x"}"#)).unwrap();
    assert_eq!(
        e.properties,
        [
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
            ("a".to_string(), br#""x""#.to_vec()),
        ]
    );
}

#[test]
fn key_and_schema_are_raw_json_of_any_type() {
    for raw in [
        r#""k""#,
        "12.0",
        r#"{"b": [1, 2], "a": "\u00e9"}"#,
        "[ ]",
        "true",
    ] {
        let body = format!(
            r#"{{"stream":"s","source":"x","key":{raw},"schema":{raw},"payload":{{"entity_id":"e","properties":{{}}}}}}"#
        );
        let e = decode(&body).unwrap();
        assert_eq!(e.key.as_deref(), Some(raw.as_bytes()));
        assert_eq!(e.schema.as_deref(), Some(raw.as_bytes()));
    }
    let e = decode(edited(|v| {
        v["key"] = Value::Null;
        v["schema"] = Value::Null;
    }))
    .unwrap();
    assert_eq!((e.key, e.schema), (None, None));
    let e = decode(base_event().to_string()).unwrap();
    assert_eq!((e.key, e.schema), (None, None));
}

// ------------------------------------------------------------------ validation

#[test]
fn base_event_is_valid() {
    let e = decode(base_event().to_string()).unwrap();
    assert_eq!(e.event_id.as_deref(), Some("evt-1"));
    assert_eq!(e.stream, "sensors.zone-1");
    assert_eq!(e.source, "agent-7");
    assert_eq!(e.timestamp_ms, Some(1_707_900_000_000));
    assert_eq!(e.entity_id, "temp-01");
    assert_eq!(e.prop("temperature"), Some("22.5"));
}

#[test]
fn callback_runs_once_on_success_and_never_on_error() {
    let mut decoder = Decoder::new();
    let mut calls = 0;
    let r = decoder.decode_single(base_event().to_string().as_bytes(), |_| {
        calls += 1;
        "done"
    });
    assert_eq!(r, Ok("done"));
    assert_eq!(calls, 1);
    let r = decoder.decode_single(b"{}", |_| calls += 1);
    assert!(r.is_err());
    let r = decoder.decode_single(b"nope", |_| calls += 1);
    assert!(r.is_err());
    assert_eq!(calls, 1);
}

#[test]
fn body_must_be_json() {
    for body in [
        &b"hello world"[..],
        b"",
        b"   \n",
        br#"{"stream":"s","source":"x","payload":{"entity_id":"e","properties":{"a":1}"#,
        br#"{"stream":"s","#,
        b"{'stream':'s','source':'x'}",
        br#"{"stream":"s"} trailing"#,
        br#"{"a":tru}"#,
        br#"{"a":01}"#,
        br#"{"a":1.}"#,
        br#"{"a":"\x"}"#,
        b"{\"a\":\"raw\ncontrol\"}",
        b"{\"a\":\"\xff\"}",
        br#"{"a":"\ud800"}"#,
        br#"{"a":1,}"#,
        br#"{"a" 1}"#,
    ] {
        let msg = invalid_json(body);
        assert!(!msg.is_empty());
    }
    assert_eq!(
        invalid_json(""),
        "request body is empty (expected a JSON object)"
    );
    assert!(invalid_json("plain text").starts_with("request body is not valid JSON: "));
    assert_eq!(
        invalid_json(r#"{"a":01}"#),
        "request body is not valid JSON: invalid number near byte 6"
    );
    assert_eq!(
        invalid_json(b"{\"a\":\"\xff\"}"),
        "request body is not valid UTF-8"
    );
}

#[test]
fn top_level_must_be_an_object() {
    for body in [
        "[]",
        r#"[{"stream":"s"}]"#,
        r#""str""#,
        "42",
        "-1.5",
        "null",
        "true",
        "false",
    ] {
        assert_eq!(invalid(body), "event must be a JSON object", "{body}");
    }
}

#[test]
fn unknown_fields_are_ignored() {
    let e = decode(edited(|v| {
        v["extra"] = json!({"anything": [1, 2]});
        v["payload"]["other"] = json!("ignored");
    }))
    .unwrap();
    assert_eq!(e.entity_id, "temp-01");
}

#[test]
fn event_id_rules() {
    let no_id = decode(edited(|v| {
        v.as_object_mut().unwrap().remove("eventId");
    }))
    .unwrap();
    assert_eq!(no_id.event_id, None);
    let empty = decode(edited(|v| v["eventId"] = json!(""))).unwrap();
    assert_eq!(empty.event_id, None);
    let max = decode(edited(|v| v["eventId"] = json!("i".repeat(128)))).unwrap();
    assert_eq!(max.event_id.unwrap().len(), 128);
    assert_eq!(
        invalid(edited(|v| v["eventId"] = json!("i".repeat(129)))),
        "eventId must be at most 128 bytes"
    );
    for wrong in [
        json!(5),
        json!(null),
        json!(["a"]),
        json!({"a": 1}),
        json!(true),
    ] {
        assert_eq!(
            invalid(edited(|v| v["eventId"] = wrong)),
            "eventId must be a string"
        );
    }
}

#[test]
fn stream_rules() {
    assert_eq!(
        invalid(edited(|v| {
            v.as_object_mut().unwrap().remove("stream");
        })),
        "stream is required"
    );
    for wrong in [
        json!(5),
        json!(null),
        json!(["s"]),
        json!({"s": 1}),
        json!(false),
    ] {
        assert_eq!(
            invalid(edited(|v| v["stream"] = wrong)),
            "stream must be a string"
        );
    }
    for bad in [
        String::new(),
        "Sensors".into(),
        "has space".into(),
        "a/b".into(),
        ".a".into(),
        "a.".into(),
        "a..b".into(),
        "s".repeat(256),
    ] {
        assert_eq!(
            invalid(edited(|v| v["stream"] = json!(bad))),
            validate::STREAM_RULE
        );
    }
    for good in ["sensors", "a.b.c", "data123", "zone-1.temp", "my_stream"] {
        assert_eq!(
            decode(edited(|v| v["stream"] = json!(good)))
                .unwrap()
                .stream,
            good
        );
    }
    let long = "s".repeat(255);
    assert_eq!(
        decode(edited(|v| v["stream"] = json!(long)))
            .unwrap()
            .stream,
        long
    );
    // An escaped but otherwise valid name is decoded before it is checked.
    let body = base_event()
        .to_string()
        .replace("sensors.zone-1", r"sensors\u002ezone-1");
    assert_eq!(decode(body).unwrap().stream, "sensors.zone-1");
}

#[test]
fn source_rules() {
    assert_eq!(
        invalid(edited(|v| {
            v.as_object_mut().unwrap().remove("source");
        })),
        "source is required"
    );
    assert_eq!(
        invalid(edited(|v| v["source"] = json!(""))),
        "source must not be empty"
    );
    for wrong in [json!(7), json!(null), json!([]), json!({})] {
        assert_eq!(
            invalid(edited(|v| v["source"] = wrong)),
            "source must be a string"
        );
    }
    assert_eq!(
        invalid(edited(|v| v["source"] = json!("s".repeat(256)))),
        "source must be at most 255 bytes"
    );
    let ok = decode(edited(|v| v["source"] = json!("Any Thing/ é"))).unwrap();
    assert_eq!(ok.source, "Any Thing/ é");
}

#[test]
fn timestamp_rules() {
    let absent = decode(edited(|v| {
        v.as_object_mut().unwrap().remove("timestamp");
    }))
    .unwrap();
    assert_eq!(absent.timestamp_ms, None);
    let null = decode(edited(|v| v["timestamp"] = Value::Null)).unwrap();
    assert_eq!(null.timestamp_ms, None);
    let one = decode(edited(|v| v["timestamp"] = json!(1))).unwrap();
    assert_eq!(one.timestamp_ms, Some(1));
    let max = decode(edited(|v| v["timestamp"] = json!(u64::MAX))).unwrap();
    assert_eq!(max.timestamp_ms, Some(u64::MAX));

    assert_eq!(
        invalid(edited(|v| v["timestamp"] = json!("yesterday"))),
        "timestamp must be a number, not a string"
    );
    assert_eq!(
        invalid(edited(|v| v["timestamp"] = json!("1707900000000"))),
        "timestamp must be a number, not a string"
    );
    for raw in [
        "1.5",
        "0",
        "-0",
        "-5",
        "1707900000000.0",
        "1.7079e12",
        "18446744073709551616",
        "true",
        "[1]",
        "{}",
    ] {
        let body = base_event().to_string().replace("1707900000000", raw);
        assert_eq!(
            invalid(&body),
            "timestamp must be a positive integer (milliseconds since the Unix epoch)",
            "{raw}"
        );
    }
}

#[test]
fn payload_rules() {
    assert_eq!(
        invalid(edited(|v| {
            v.as_object_mut().unwrap().remove("payload");
        })),
        "payload is required"
    );
    for wrong in [
        json!("p"),
        json!(1),
        json!(null),
        json!([]),
        json!([{}]),
        json!(true),
    ] {
        assert_eq!(
            invalid(edited(|v| v["payload"] = wrong)),
            "payload must be a JSON object"
        );
    }
    // An empty payload fails on its first required member.
    assert_eq!(
        invalid(edited(|v| v["payload"] = json!({}))),
        "payload.entity_id is required"
    );
}

#[test]
fn entity_id_rules() {
    assert_eq!(
        invalid(edited(|v| {
            v["payload"].as_object_mut().unwrap().remove("entity_id");
        })),
        "payload.entity_id is required"
    );
    assert_eq!(
        invalid(edited(|v| v["payload"]["entity_id"] = json!(""))),
        "payload.entity_id must not be empty"
    );
    for wrong in [json!(42), json!(null), json!(["e"]), json!({})] {
        assert_eq!(
            invalid(edited(|v| v["payload"]["entity_id"] = wrong)),
            "payload.entity_id must be a string"
        );
    }
    for ctl in ["a\u{1}b", "line\nbreak", "tab\t", "del\u{7f}", "c1\u{85}"] {
        assert_eq!(
            invalid(edited(|v| v["payload"]["entity_id"] = json!(ctl))),
            "payload.entity_id must not contain control characters",
            "{ctl:?}"
        );
    }
    assert_eq!(
        invalid(edited(
            |v| v["payload"]["entity_id"] = json!("e".repeat(1025))
        )),
        "payload.entity_id must be at most 1024 bytes"
    );
    // The limit applies to decoded bytes: 1024 bytes sent as 6-byte escapes is fine.
    let escaped = base_event()
        .to_string()
        .replace("temp-01", &r"\u0061".repeat(1024));
    assert_eq!(decode(escaped).unwrap().entity_id, "a".repeat(1024));
    let escaped = base_event()
        .to_string()
        .replace("temp-01", &r"\u0061".repeat(1025));
    assert_eq!(
        invalid(escaped),
        "payload.entity_id must be at most 1024 bytes"
    );
    for ok in ["a/b/c", "émoji 🙂", "with space", "\u{a0}"] {
        assert_eq!(
            decode(edited(|v| v["payload"]["entity_id"] = json!(ok)))
                .unwrap()
                .entity_id,
            ok
        );
    }
}

#[test]
fn properties_rules() {
    assert_eq!(
        invalid(edited(|v| {
            v["payload"].as_object_mut().unwrap().remove("properties");
        })),
        "payload.properties is required"
    );
    for wrong in [
        json!([1, 2]),
        json!([]),
        json!("s"),
        json!(3),
        json!(null),
        json!(false),
    ] {
        assert_eq!(
            invalid(edited(|v| v["payload"]["properties"] = wrong)),
            "payload.properties must be a JSON object"
        );
    }
    let empty = decode(edited(|v| v["payload"]["properties"] = json!({}))).unwrap();
    assert!(empty.properties.is_empty());

    let key_1024 = "k".repeat(1024);
    let ok = decode(edited(|v| {
        v["payload"]["properties"] = json!({ key_1024.clone(): 1 })
    }))
    .unwrap();
    assert_eq!(ok.properties[0].0, key_1024);
    assert_eq!(
        invalid(edited(
            |v| v["payload"]["properties"] = json!({ "k".repeat(1025): 1 })
        )),
        "property keys must be at most 1024 bytes"
    );
}

#[test]
fn duplicate_envelope_keys_last_wins() {
    let body = r#"{"stream":"first","stream":"second","source":"a","source":"b",
            "payload":{"entity_id":"x","properties":{"old":1}},
            "payload":{"entity_id":"y","entity_id":"z","properties":{"new":2}}}"#;
    let e = decode(body).unwrap();
    assert_eq!(e.stream, "second");
    assert_eq!(e.source, "b");
    assert_eq!(e.entity_id, "z");
    assert_eq!(e.properties, [("new".to_string(), b"2".to_vec())]);
    // Last wins even when the earlier value was the valid one.
    let body = r#"{"stream":"ok","stream":"Bad","source":"a","payload":{"entity_id":"x","properties":{}}}"#;
    assert_eq!(invalid(body), validate::STREAM_RULE);
}

/// `depth` nested arrays around `1`.
fn nested(depth: usize) -> String {
    "[".repeat(depth) + "1" + &"]".repeat(depth)
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let body = event_with_properties(&format!(r#"{{"deep":{}}}"#, nested(1000)));
    let msg = invalid_json(body);
    assert_eq!(msg, "request body nests JSON deeper than 64 levels");
    // Also far beyond, and without closing brackets.
    invalid_json(event_with_properties(&"[".repeat(100_000)));
    invalid_json("{".repeat(100_000));
}

#[test]
fn depth_limit_counts_every_level() {
    // event object, payload, properties = 3 levels before the value.
    let at_limit = event_with_properties(&format!(r#"{{"v":{}}}"#, nested(MAX_DEPTH - 3)));
    let e = decode(&at_limit).unwrap();
    assert_eq!(e.prop("v"), Some(nested(MAX_DEPTH - 3).as_str()));
    let over = event_with_properties(&format!(r#"{{"v":{}}}"#, nested(MAX_DEPTH - 2)));
    invalid_json(over);
}

// --------------------------------------------------------------------- batches

/// Runs `decode_batch`, collecting owned results.
fn batch(decoder: &mut Decoder, body: &[u8]) -> Result<Vec<Result<Owned, String>>, DecodeError> {
    let mut out = Vec::new();
    let n = decoder.decode_batch(body, |i, r| {
        assert_eq!(i, out.len(), "callbacks must come in index order");
        if let Ok(e) = r {
            for p in e.properties {
                assert_within(body, p.value);
            }
        }
        out.push(r.map(Owned::of).map_err(str::to_owned));
    })?;
    assert_eq!(n, out.len());
    Ok(out)
}

fn event_n(i: usize) -> String {
    format!(
        r#"{{"stream":"s.n{i}","source":"src","timestamp":{ts},"payload":{{"entity_id":"e{i}",
               "properties":{{"n": {i}.50 , "s":"v\u00e9{i}", "o":{{"i":[{i}, "x"]}} }}}}}}"#,
        ts = i + 1
    )
}

#[test]
fn valid_batch_gives_every_event_in_order() {
    let events: Vec<String> = (0..25).map(event_n).collect();
    let body = format!("{{\"events\":[{}]}}", events.join(" ,\n"));
    let results = batch(&mut Decoder::new(), body.as_bytes()).unwrap();
    assert_eq!(results.len(), 25);
    for (i, r) in results.iter().enumerate() {
        let e = r.as_ref().unwrap();
        assert_eq!(e.stream, format!("s.n{i}"));
        assert_eq!(e.entity_id, format!("e{i}"));
        assert_eq!(e.timestamp_ms, Some(i as u64 + 1));
        assert_eq!(e.prop("n"), Some(format!("{i}.50").as_str()));
        assert_eq!(e.prop("s"), Some(format!(r#""v\u00e9{i}""#).as_str()));
        assert_eq!(e.prop("o"), Some(format!(r#"{{"i":[{i}, "x"]}}"#).as_str()));
        // Each batch element must equal decoding the same event alone.
        assert_eq!(e, &decode(&events[i]).unwrap());
    }
}

#[test]
fn invalid_elements_fail_alone() {
    let body = format!(
        r#"{{"other":1,"events":[{}, {}, 42, {}, {{"stream":"s"}}, {}]}}"#,
        event_n(0),
        edited(|v| v["stream"] = json!("Bad Stream")),
        event_n(3),
        event_n(5)
    );
    let results = batch(&mut Decoder::new(), body.as_bytes()).unwrap();
    assert_eq!(results.len(), 6);
    assert_eq!(results[0].as_ref().unwrap().entity_id, "e0");
    assert_eq!(results[1], Err(validate::STREAM_RULE.to_string()));
    assert_eq!(results[2], Err("event must be a JSON object".to_string()));
    assert_eq!(results[3].as_ref().unwrap().entity_id, "e3");
    assert_eq!(results[4], Err("source is required".to_string()));
    assert_eq!(results[5].as_ref().unwrap().entity_id, "e5");
}

#[test]
fn batch_envelope_rules() {
    let mut d = Decoder::new();
    assert_eq!(
        d.decode_batch(br#"{"events":[]}"#, |_, _| panic!("no elements")),
        Ok(0)
    );
    assert_eq!(
        batch(&mut d, b"{}"),
        Err(DecodeError::Invalid(
            "batch must contain an \"events\" array".into()
        ))
    );
    for wrong in [
        &br#"{"events":{}}"#[..],
        br#"{"events":null}"#,
        br#"{"events":"x"}"#,
    ] {
        assert_eq!(
            batch(&mut d, wrong),
            Err(DecodeError::Invalid("events must be a JSON array".into()))
        );
    }
    let array_body = format!("[{}]", event_n(0));
    for top in [array_body.as_bytes(), b"\"events\"", b"null", b"7"] {
        assert_eq!(
            batch(&mut d, top),
            Err(DecodeError::Invalid(
                "batch must be a JSON object with an \"events\" array".into()
            ))
        );
    }
    for not_json in [&b"events"[..], b"", br#"{"events":[1,"#, b"{'events':[]}"] {
        assert!(matches!(
            batch(&mut d, not_json),
            Err(DecodeError::InvalidJson(_))
        ));
    }
    // A duplicated `events` key: the last one wins.
    let body = format!(r#"{{"events":[1,2,3],"events":[{}]}}"#, event_n(9));
    let r = batch(&mut d, body.as_bytes()).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].as_ref().unwrap().entity_id, "e9");
    // Nesting inside batch elements is limited like anywhere else.
    let deep = format!(
        "{{\"events\":[{}]}}",
        event_with_properties(&format!(r#"{{"d":{}}}"#, nested(1000)))
    );
    assert!(matches!(
        batch(&mut d, deep.as_bytes()),
        Err(DecodeError::InvalidJson(_))
    ));
}

// ------------------------------------------------------------------ properties limit

fn n_props(n: usize, dup: bool) -> String {
    let members: Vec<String> = (0..n)
        .map(|i| {
            if dup {
                format!(r#""k":{i}"#)
            } else {
                format!(r#""p{i}":{i}"#)
            }
        })
        .collect();
    event_with_properties(&format!("{{{}}}", members.join(",")))
}

#[test]
fn properties_per_event_limit_is_exact_and_names_itself() {
    let mut d = Decoder::with_max_properties(5);
    assert_eq!(
        d.decode_single(n_props(5, false).as_bytes(), |e| e.properties.len()),
        Ok(5)
    );
    assert_eq!(
        d.decode_single(n_props(0, false).as_bytes(), |e| e.properties.len()),
        Ok(0)
    );
    for dup in [false, true] {
        match d.decode_single(n_props(6, dup).as_bytes(), |_| ()) {
            Err(DecodeError::Invalid(m)) => assert!(m.contains("at most 5 properties"), "{m}"),
            other => panic!("6 properties (dup {dup}): {other:?}"),
        }
    }
    // In a batch, the event's own error; the others are decoded.
    let body = format!(
        r#"{{"events":[{},{},{}]}}"#,
        n_props(5, false),
        n_props(6, false),
        n_props(1, false)
    );
    let r = batch(&mut d, body.as_bytes()).unwrap();
    assert!(r[0].is_ok() && r[2].is_ok());
    assert!(r[1].as_ref().unwrap_err().contains("at most 5 properties"));
    // The default is DECISIONS.md's 10,000.
    let mut d = Decoder::new();
    assert_eq!(
        d.decode_single(n_props(10_000, false).as_bytes(), |e| e.properties.len()),
        Ok(10_000)
    );
    assert!(d
        .decode_single(n_props(10_001, false).as_bytes(), |_| ())
        .is_err());
}

// ------------------------------------------------------------------ reuse

#[test]
fn one_decoder_handles_tiny_huge_tiny() {
    // ~13,000 properties in the huge event: above the default limit.
    let mut d = Decoder::with_max_properties(100_000);
    let tiny = event_n(1);
    let check_tiny = |d: &mut Decoder| {
        assert_eq!(d.decode_single(tiny.as_bytes(), Owned::of), decode(&tiny));
        assert_eq!(decode(&tiny).unwrap().entity_id, "e1");
    };
    check_tiny(&mut d);

    // ~1 MB single event: many properties with varied values.
    let mut members = Vec::new();
    let mut expected = Vec::new();
    let mut size = 0;
    let mut i = 0;
    while size < 1 << 20 {
        let raw = format!(
            r#"{{"i":{i},"f":{i}.250,"s":"x\"{i}\u00e9","a":[true,null,{{}}],"e":1e{e}}}"#,
            e = i % 300
        );
        size += raw.len() + 12;
        members.push(format!("\"p{i}\" : {raw}"));
        expected.push((format!("p{i}"), raw));
        i += 1;
    }
    let huge = event_with_properties(&format!("{{{}}}", members.join(",\n")));
    assert!(huge.len() >= 1 << 20);
    let got = d.decode_single(huge.as_bytes(), Owned::of).unwrap();
    assert_eq!(got.properties.len(), expected.len());
    for ((k, v), (want_k, want_v)) in got.properties.iter().zip(&expected) {
        assert_eq!(k, want_k);
        assert_eq!(v, want_v.as_bytes());
    }

    // ~1 MB batch, then tiny again.
    let events: Vec<String> = (0..8000).map(event_n).collect();
    let big_batch = format!("{{\"events\":[{}]}}", events.join(","));
    assert!(big_batch.len() >= 1 << 20);
    let results = batch(&mut d, big_batch.as_bytes()).unwrap();
    assert_eq!(results.len(), 8000);
    assert_eq!(results[7999].as_ref().unwrap().entity_id, "e7999");
    check_tiny(&mut d);
    assert_eq!(batch(&mut d, br#"{"events":[]}"#), Ok(vec![]));
    assert!(d.decode_single(b"[]", Owned::of).is_err());
    check_tiny(&mut d);
}

#[test]
fn reuse_keeps_allocations() {
    let mut d = Decoder::new();
    let single = event_n(7);
    let events: Vec<String> = (0..10).map(event_n).collect();
    let batch_body = format!("{{\"events\":[{}]}}", events.join(","));
    // Warm up on the largest body, then on the others.
    batch(&mut d, batch_body.as_bytes()).unwrap();
    d.decode_single(single.as_bytes(), |_| ()).unwrap();

    let snapshot = |d: &Decoder| {
        (
            d.scratch.as_ptr(),
            d.scratch.capacity(),
            d.tape.0.as_ptr(),
            d.tape.0.capacity(),
            d.spans.as_ptr(),
            d.spans.capacity(),
            d.props.as_ptr(),
            d.props.capacity(),
        )
    };
    let before = snapshot(&d);
    assert!(before.7 > 0, "property storage should have been kept");
    for _ in 0..50 {
        d.decode_single(single.as_bytes(), |e| assert_eq!(e.entity_id, "e7"))
            .unwrap();
        assert_eq!(
            d.decode_batch(batch_body.as_bytes(), |_, r| assert!(r.is_ok())),
            Ok(10)
        );
        // Error paths must hand the buffers back too.
        assert!(d.decode_single(b"{}", |_| ()).is_err());
        assert!(d.decode_single(b"not json", |_| ()).is_err());
        assert_eq!(snapshot(&d), before);
        assert!(d.tape.0.is_empty() && d.props.is_empty());
    }
}

// ------------------------------------------------------------- randomized

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes that tend to turn valid JSON into interesting almost-valid JSON.
const INTERESTING: &[u8] = b"{}[]:,\"\\ \t\n\r0123456789-+.eEtrufalsn/u\x00\x1f\x7f\xc3\xa9\xff";

fn mutate(rng: &mut XorShift, body: &mut Vec<u8>) {
    for _ in 0..=rng.below(3) {
        let len = body.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                body[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                body[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                body.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
            3 if len > 0 => {
                body.remove(rng.below(len));
            }
            4 if len > 1 => {
                // Duplicate a short range somewhere else.
                let a = rng.below(len);
                let b = (a + 1 + rng.below(16)).min(len);
                let chunk = body[a..b].to_vec();
                let at = rng.below(body.len() + 1);
                body.splice(at..at, chunk);
            }
            5 if len > 1 => {
                // Truncate.
                body.truncate(rng.below(len));
            }
            6 if len > 0 => {
                // Whitespace next to punctuation keeps the body valid JSON (inside a
                // string it just changes the text) but moves every later span.
                let i = rng.below(len);
                if let Some(p) = body[i..].iter().position(|b| b",:[]{}".contains(b)) {
                    let at = i + p + rng.below(2);
                    let ws = [b" ", b"\n", b"\t", b"\r"][rng.below(4)];
                    body.splice(at..at, ws.iter().copied());
                }
            }
            7 if len > 0 => {
                // Swap a digit for another: mostly keeps numbers valid.
                let i = rng.below(len);
                if let Some(p) = body[i..].iter().position(u8::is_ascii_digit) {
                    body[i + p] = b'0' + rng.below(10) as u8;
                }
            }
            _ => body.push(b' '),
        }
    }
}

fn assert_props_parse(e: &EventRef<'_>, body: &[u8]) {
    for p in e.properties {
        assert_within(body, p.value);
        if let Err(err) = serde_json::from_slice::<Value>(p.value) {
            panic!(
                "span {:?} does not parse ({err}) in body {:?}",
                String::from_utf8_lossy(p.value),
                String::from_utf8_lossy(body)
            );
        }
    }
    for raw in [e.key, e.schema].into_iter().flatten() {
        assert!(serde_json::from_slice::<Value>(raw).is_ok());
    }
}

#[test]
fn randomized_mutations_never_panic_and_ok_spans_parse() {
    let seeds: Vec<Vec<u8>> = {
        let mut v: Vec<Vec<u8>> = vec![
                base_event().to_string().into_bytes(),
                event_n(3).into_bytes(),
                event_with_properties(&format!(
                    "{{{}}}",
                    RAW_VALUES
                        .iter()
                        .enumerate()
                        .map(|(i, r)| format!("\"k{i}\" :{r}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .into_bytes(),
                format!("{{\"events\":[{},{}]}}", event_n(1), event_n(2)).into_bytes(),
                br#"{"stream":"s","source":"x","key":[1,{"a":"b"}],"schema":"\u00e9","payload":{"entity_id":"e","properties":{"a":[[[]]],"b":{"c":{}}}}}"#.to_vec(),
            ];
        v.push(
            format!(
                "{{\"events\":[{}]}}",
                String::from_utf8(v[2].clone()).unwrap()
            )
            .into_bytes(),
        );
        v
    };
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut decoder = Decoder::new();
    let mut ok_singles = 0;
    let mut ok_elements = 0;
    for _ in 0..20_000 {
        let mut body = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut body);

        let single = decoder.decode_single(&body, |e| {
            assert_props_parse(e, &body);
            Owned::of(e)
        });
        let batch = decoder.decode_batch(&body, |_, r| {
            if let Ok(e) = r {
                assert_props_parse(e, &body);
                ok_elements += 1;
            }
        });
        if single.is_ok() || batch.is_ok() {
            // Whatever simd-json accepted must be JSON for serde_json too.
            let whole: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!(
                    "accepted non-JSON ({e}): {:?}",
                    String::from_utf8_lossy(&body)
                )
            });
            if let Ok(event) = single {
                ok_singles += 1;
                // Each span must hold the value serde_json finds under that key (the
                // last occurrence, as serde_json keeps the last duplicate).
                let expected = whole["payload"]["properties"].as_object().unwrap();
                for (i, (key, raw)) in event.properties.iter().enumerate() {
                    if event.properties[i + 1..].iter().any(|(k, _)| k == key) {
                        continue;
                    }
                    let got: Value = serde_json::from_slice(raw).unwrap();
                    assert_eq!(&got, &expected[key.as_str()], "{key} in {whole}");
                }
            }
        }
    }
    // The mutations must leave enough bodies valid for the Ok checks to mean something.
    assert!(ok_singles > 500, "only {ok_singles} single bodies decoded");
    assert!(
        ok_elements > 200,
        "only {ok_elements} batch elements decoded"
    );
}
