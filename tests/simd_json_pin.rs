//! Guards the simd-json pin (Cargo.toml): the decoder's span walker
//! (`src/ingest/decode/spans.rs`) reads simd-json's internal structural indexes and
//! assumes how they line up with the tape. If simd-json changes, these tests fail with
//! a message naming the pinned version and what to re-check.

use flux::ingest::decode::Decoder;
use serde_json::Value;
use simd_json::{fill_tape_padded, Buffers, Node, Tape, INPUT_PADDING};

/// The version the span walker was written and checked against.
const PINNED: &str = "0.19.0";

fn recheck(what: &str) -> String {
    format!(
        "simd-json internals changed (span walker written against simd-json {PINNED}): {what}. \
         Re-check the assumptions in src/ingest/decode/mod.rs (\"How the spans are found\") \
         against the new simd-json sources before moving the pin in Cargo.toml."
    )
}

/// Cargo.lock resolves simd-json to exactly the pinned version.
#[test]
fn simd_json_is_the_pinned_version() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
        .expect("Cargo.lock at the workspace root");
    let versions: Vec<&str> = lock
        .split("[[package]]")
        .filter(|p| p.contains("\nname = \"simd-json\"\n"))
        .filter_map(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"'))
        .collect();
    assert_eq!(
        versions,
        [PINNED],
        "{}",
        recheck("Cargo.lock resolves a different simd-json")
    );
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("Cargo.toml");
    assert!(
        manifest.contains(&format!("simd-json = {{ version = \"={PINNED}\"")),
        "{}",
        recheck("Cargo.toml no longer pins simd-json exactly")
    );
}

/// Documents with escapes, nesting, empty containers, big numbers and odd whitespace.
const TRICKY: &[&str] = &[
    r#"{"a":1}"#,
    r#"  { "a" : [ ] , "b" : { } , "c" : [ { } , [ ] , "" ] }  "#,
    r#"{"s":"q\"uo\\te\u00e9\ud83d\ude00","n":-0.0e-0,"big":123456789012345678901234567890}"#,
    "{\"t\":true,\"f\":false,\"z\":null,\"ws\":\t[1 ,2\n,3\r]}",
    r#"{"deep":[[[[{"x":[[]]}]]]],"k}":"{[,:]}","":0}"#,
    r#"42"#,
    r#""just a string""#,
    r#"[]"#,
];

/// Tape nodes of a document's value at `index`, and how many of them are `{}` or `[]`.
fn count(tape: &[Node<'_>]) -> (usize, usize) {
    let empty = tape
        .iter()
        .filter(|n| matches!(n, Node::Object { len: 0, .. } | Node::Array { len: 0, .. }))
        .count();
    (tape.len(), empty)
}

/// The structural indexes hold exactly one entry per token: no root entry, no sentinel,
/// `2n - 1 + e` for `n` tape nodes with `e` empty containers, the first at the document's
/// first byte, rising strictly, each at a byte that starts a token.
#[test]
fn structural_indexes_line_up_with_the_tape() {
    let mut buffers = Buffers::new(64);
    for doc in TRICKY {
        let mut scratch = doc.as_bytes().to_vec();
        scratch.resize(doc.len() + INPUT_PADDING, 0);
        let mut tape = Tape(Vec::new());
        fill_tape_padded(&mut scratch, doc.len(), &mut buffers, &mut tape)
            .unwrap_or_else(|e| panic!("{}: {doc}: {e}", recheck("a valid document failed")));
        let tokens = buffers.structural_indexes().to_vec();
        let (n, e) = count(&tape.0);
        assert_eq!(
            tokens.len(),
            2 * n - 1 + e,
            "{} in {doc}: tokens {tokens:?}",
            recheck("token count is not 2n - 1 + e (root entry or sentinel?)")
        );
        let first = doc.bytes().position(|b| !b" \t\n\r".contains(&b)).unwrap();
        assert_eq!(
            tokens[0] as usize,
            first,
            "{} in {doc}",
            recheck("the first structural index is not the first byte")
        );
        assert!(
            tokens.windows(2).all(|w| w[0] < w[1]),
            "{} in {doc}",
            recheck("structural indexes do not rise strictly")
        );
        for &t in &tokens {
            let b = doc.as_bytes()[t as usize];
            assert!(
                b"{}[]:,\"-0123456789tfn".contains(&b),
                "{} in {doc}: byte {:?} at {t}",
                recheck("a structural index does not start a token"),
                b as char
            );
        }
    }
}

/// End to end through the decoder: every property value it hands out is the client's
/// text of that value, equal (as JSON) to what serde_json parses from the whole body.
#[test]
fn decoded_spans_match_serde_json() {
    let mut decoder = Decoder::new();
    for props in TRICKY.iter().filter(|d| d.trim_start().starts_with('{')) {
        let body = format!(
            r#"{{"stream":"s","source":"x","payload":{{"entity_id":"e","properties":{props}}}}}"#
        );
        let expected: Value = serde_json::from_str(&body).unwrap();
        let expected = expected["payload"]["properties"]
            .as_object()
            .unwrap()
            .clone();
        let got = decoder
            .decode_single(body.as_bytes(), |e| {
                e.properties
                    .iter()
                    .map(|p| (p.key.to_owned(), p.value.to_vec()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_else(|e| panic!("{}: {body}: {e}", recheck("the decoder refused")));
        // Duplicate keys: serde_json keeps the last, so compare against the last span.
        for (key, value) in &expected {
            let raw = got
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .unwrap_or_else(|| panic!("{}: key {key:?}", recheck("a property is missing")));
            let text = std::str::from_utf8(&raw.1).unwrap();
            assert!(
                body.contains(text),
                "{}",
                recheck("a span is not text of the body")
            );
            let parsed: Value = serde_json::from_str(text).unwrap_or_else(|e| {
                panic!(
                    "{}: {key:?} = {text:?}: {e}",
                    recheck("a span is not a whole value")
                )
            });
            assert_eq!(&parsed, value, "{}", recheck("a span holds another value"));
        }
    }
}
