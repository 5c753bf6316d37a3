//! Decoding and validation of event request bodies.
//!
//! # Why raw spans
//!
//! Property values must be stored exactly as the client sent them (`22.50` stays `22.50`,
//! `"\u00e9"` stays escaped, nested key order and inner whitespace are kept) so they can be
//! written back byte for byte. simd-json unescapes strings in place and converts numbers,
//! so its tape cannot give the text back. We therefore parse a *copy* of the body and map
//! every tape node back to a byte span of the *original* body.
//!
//! # How the spans are found
//!
//! simd-json's stage 1 ([`Buffers::structural_indexes`]) records, in document order, the
//! byte offset of every token start: each `{ } [ ] : ,` outside strings, the opening quote
//! of every string (stage 1 clears closing quotes), and the first byte of every number and
//! literal (the "pseudo-structural" bytes that follow whitespace or a structural byte).
//! Checked against the simd-json 0.19.0 sources:
//!
//! * there is no leading root entry and no trailing sentinel: stage 2 starts reading at
//!   index 0 and succeeds only when it has consumed exactly `structural_indexes().len()`
//!   entries, so a document's tokens are the whole slice;
//! * a top-level scalar (`42`, `"x"`, `true`) has exactly one entry; nothing follows it,
//!   so its span runs to the end of the body;
//! * the tape is a pre-order walk that emits one node per key and per value, in the same
//!   order as their first tokens.
//!
//! [`SpanWalker`] replays the JSON grammar over the tape, which alone says which token
//! belongs to which node: a container's members are values, or `key : value` pairs,
//! separated by `,` and followed by its closing bracket, so a value of `n` nodes with `e`
//! empty objects and arrays in it takes exactly `2n - 1 + e` tokens. A node's span starts
//! at its first token; a container's ends after its closing bracket, a scalar's where the
//! next token starts, minus the JSON whitespace in between.
//!
//! The decoder wants only the spans it hands out (the values of an event's fields, for
//! `key` and `schema`, and of its properties), so only their tokens are read, and a nested
//! property value is spanned from its brackets without walking inside it. What is read is
//! checked against the tape (`{` where an object starts, a quote at both ends of a string,
//! the closing bracket where a container ends, a separator after a value, ...), token
//! offsets must rise strictly, and the token count must come out exact, so a token too
//! many or too few anywhere is caught. Any disagreement found is returned as an error,
//! never turned into a span. (The walk can also span every node and check every token;
//! the tests use that to pin down the correspondence.)
//!
//! # Allocation
//!
//! A [`Decoder`] owns every buffer it needs (the padded copy, simd-json's buffers, the
//! tape, the span table and the property list) and reuses them, so once they have grown to
//! the largest body seen, decoding a valid event allocates nothing. Only the error path
//! allocates (the `String` inside [`DecodeError`]).

use simd_json::{fill_tape_padded, Buffers, ErrorType, Node, StaticNode, Tape, INPUT_PADDING};

use super::validate;

mod spans;

use spans::{is_json_whitespace, Span, SpanMismatch, SpanWalker, Wanted};

/// Maximum nesting of objects and arrays in a request body, counting the outermost object
/// (so a single event's property values may nest 61 further levels, a batch's 59).
///
/// Enforced by simd-json's stage 2 before any node of a deeper container is written, so a
/// hostile `[[[[...` costs a bounded stack and tape; it also bounds the recursion of
/// [`SpanWalker`].
pub const MAX_DEPTH: usize = 64;

/// One property of `payload.properties`, in the order it appeared in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Property<'a> {
    /// The key with JSON escapes decoded.
    pub key: &'a str,
    /// The value's JSON text exactly as sent, borrowed from the original body.
    pub value: &'a [u8],
}

/// A validated event, borrowing from the request body and the decoder's scratch copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// Decoded `eventId`; `None` when absent or `""`.
    pub event_id: Option<&'a str>,
    /// `stream`; valid stream names are plain ASCII, so decoded and raw text agree.
    pub stream: &'a str,
    /// Decoded `source`.
    pub source: &'a str,
    /// `timestamp` in milliseconds; `None` when absent or `null`.
    pub timestamp_ms: Option<u64>,
    /// Raw JSON text of `key`; `None` when absent or `null`.
    pub key: Option<&'a [u8]>,
    /// Raw JSON text of `schema`; `None` when absent or `null`.
    pub schema: Option<&'a [u8]>,
    /// Decoded `payload.entity_id`.
    pub entity_id: &'a str,
    /// `payload.properties` in body order; duplicate keys are all kept (last one wins for
    /// the consumer that merges them).
    pub properties: &'a [Property<'a>],
}

/// Why a body was rejected. The message is meant for the client's 400 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The body is not JSON at all, or nests deeper than [`MAX_DEPTH`].
    InvalidJson(String),
    /// The body is JSON but not a valid event (or not a valid batch envelope).
    Invalid(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::InvalidJson(m) | DecodeError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Message for a top-level value or batch element that is not an object.
const NOT_AN_OBJECT: &str = "event must be a JSON object";
/// Returned when the tape and the token offsets disagree. That would be a bug in this
/// module or in simd-json, never the client's fault, but refusing the body is the only
/// answer that cannot store a corrupted value.
const SPAN_MISMATCH: &str =
    "internal decoder error: could not locate JSON values in the request body";

/// The nodes whose spans `build_event` reads in a single event: the values of the event's
/// fields (level 2; `key` and `schema` are kept raw) and of its properties (level 4, below
/// the event object, `payload` and `properties`). Everything else is only counted, and
/// what is nested in a property value is not even walked.
const SINGLE_SPANS: Wanted = Wanted {
    levels: 1 << 2 | 1 << 4,
    keys: false,
};
/// The same for a batch, whose events sit two levels down, in `{"events":[...]}`.
const BATCH_SPANS: Wanted = Wanted {
    levels: 1 << 4 | 1 << 6,
    keys: false,
};

/// Reusable decoder; one per worker thread. See the module docs for the design.
pub struct Decoder {
    /// Copy of the body followed by `INPUT_PADDING` bytes; simd-json unescapes strings in
    /// place here, which is why the body itself is never handed to it.
    scratch: Vec<u8>,
    /// simd-json's stage 1/2 buffers (token offsets, string scratch, depth stack).
    buffers: Buffers,
    /// Tape storage, always empty between calls (see [`Tape::reset`]) so that it can carry
    /// `'static` while its allocation is reused for each body's lifetime.
    tape: Tape<'static>,
    /// `spans[i]` is the text of tape node `i`.
    spans: Vec<Span>,
    /// Property list storage, always empty between calls, like `tape`.
    props: Vec<Property<'static>>,
    /// Most properties one event may have (`FLUX_MAX_PROPERTIES_PER_EVENT`).
    max_properties: usize,
    /// The error for an event with more, naming the limit (built once).
    too_many_properties: String,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// Creates a decoder with empty buffers (they grow to the largest body seen) and
    /// the default properties-per-event limit.
    pub fn new() -> Self {
        Self::with_max_properties(crate::limits::PROPERTIES_PER_EVENT_DEFAULT)
    }

    /// A decoder that refuses events with more than `max_properties` properties
    /// (duplicate keys count: each is applied).
    pub fn with_max_properties(max_properties: usize) -> Self {
        Self {
            scratch: Vec::new(),
            // The size hint only pre-sizes buffers; they are grown on demand.
            buffers: Buffers::with_max_depth(0, MAX_DEPTH),
            tape: Tape(Vec::new()),
            spans: Vec::new(),
            props: Vec::new(),
            max_properties,
            too_many_properties: format!(
                "payload.properties must have at most {max_properties} properties \
                 (the limit per event)"
            ),
        }
    }

    /// Validates a single-event body. On success calls `f` exactly once with the event and
    /// returns its result; on failure `f` is not called.
    pub fn decode_single<R>(
        &mut self,
        body: &[u8],
        f: impl FnOnce(&EventRef<'_>) -> R,
    ) -> Result<R, DecodeError> {
        // Give the stored (empty) tape and property list the lifetimes of this call; they
        // are emptied and handed back below on every path, keeping their allocations.
        let mut tape = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let mut props = recycle(std::mem::take(&mut self.props));

        let result = parse_body(
            &mut self.scratch,
            &mut self.buffers,
            &mut tape,
            &mut self.spans,
            body,
            SINGLE_SPANS,
        )
        .and_then(|()| {
            let limit = PropsLimit {
                max: self.max_properties,
                message: &self.too_many_properties,
            };
            build_event(&tape.0, &self.spans, body, 0, &mut props, &limit)
                .map(|event| f(&event))
                .map_err(|msg| DecodeError::Invalid(msg.to_owned()))
        });

        self.props = recycle(props);
        self.tape = tape.reset();
        result
    }

    /// Validates a batch body `{"events":[...]}`.
    ///
    /// The envelope must be an object with an `events` array (other keys are ignored; if
    /// `events` appears twice the last one wins), otherwise the whole body is rejected.
    /// Then `f(index, Ok(&event))` or `f(index, Err(message))` is called for every element
    /// in order; an element that is not an object gets `Err`. Returns the element count.
    pub fn decode_batch(
        &mut self,
        body: &[u8],
        mut f: impl FnMut(usize, Result<&EventRef<'_>, &str>),
    ) -> Result<usize, DecodeError> {
        let mut tape = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let mut props = recycle(std::mem::take(&mut self.props));

        let result = parse_body(
            &mut self.scratch,
            &mut self.buffers,
            &mut tape,
            &mut self.spans,
            body,
            BATCH_SPANS,
        )
        .and_then(|()| {
            let nodes = &tape.0;
            let events = find_events_array(nodes).map_err(|m| DecodeError::Invalid(m.into()))?;
            let limit = PropsLimit {
                max: self.max_properties,
                message: &self.too_many_properties,
            };
            let mut count = 0;
            for (index, element) in Elements::of(nodes, events).enumerate() {
                match build_event(nodes, &self.spans, body, element, &mut props, &limit) {
                    Ok(event) => f(index, Ok(&event)),
                    Err(msg) => f(index, Err(msg)),
                }
                count += 1;
            }
            Ok(count)
        });

        self.props = recycle(props);
        self.tape = tape.reset();
        result
    }
}

/// Re-types an emptied property list so its allocation can be reused for borrows of a
/// different lifetime.
///
/// The vector is cleared first, so the closure never runs. Collecting a `vec::IntoIter`
/// through `map` into a `Vec` whose element has the same size and alignment reuses the
/// source allocation (std's in-place collect), so this neither allocates nor frees; the
/// `reuse_keeps_allocations` test pins that. It avoids `unsafe` lifetime transmutes.
fn recycle<'to>(mut v: Vec<Property<'_>>) -> Vec<Property<'to>> {
    v.clear();
    v.into_iter()
        .map(|_| Property {
            key: "",
            value: &[],
        })
        .collect()
}

/// Copies `body` into the padded scratch buffer, parses it into `tape` and fills `spans`
/// for the `wanted` nodes (see [`SpanWalker::walk`]).
fn parse_body<'s>(
    scratch: &'s mut Vec<u8>,
    buffers: &mut Buffers,
    tape: &mut Tape<'s>,
    spans: &mut Vec<Span>,
    body: &[u8],
    wanted: Wanted,
) -> Result<(), DecodeError> {
    if body.iter().all(is_json_whitespace) {
        // simd-json reports this as a bare `Eof`; say what actually happened.
        return Err(DecodeError::InvalidJson(
            "request body is empty (expected a JSON object)".to_owned(),
        ));
    }
    scratch.clear();
    scratch.extend_from_slice(body);
    // fill_tape_padded requires INPUT_PADDING bytes after the document for its SIMD
    // over-reads; their content does not matter and is left unchanged by the parser.
    scratch.resize(body.len() + INPUT_PADDING, 0);
    fill_tape_padded(scratch.as_mut_slice(), body.len(), buffers, tape).map_err(json_error)?;

    let tokens = buffers.structural_indexes();
    spans.clear();
    spans.resize(tape.0.len(), Span::default());
    let mut walker = SpanWalker {
        tape: &tape.0,
        tokens,
        body,
        spans: spans.as_mut_slice(),
        next_node: 0,
        next_token: 0,
    };
    walker
        .walk(wanted)
        .map_err(|SpanMismatch| DecodeError::InvalidJson(SPAN_MISMATCH.to_owned()))
}

/// Turns a simd-json error into a client-facing message. simd-json's own `Display` names
/// internal enum variants (`InternalError at character 0`), which means nothing to a client.
#[cold]
fn json_error(e: simd_json::Error) -> DecodeError {
    let what = match e.error() {
        ErrorType::DepthLimitExceeded => {
            return DecodeError::InvalidJson(format!(
                "request body nests JSON deeper than {MAX_DEPTH} levels"
            ));
        }
        ErrorType::InputTooLarge => {
            return DecodeError::InvalidJson("request body is too large".to_owned());
        }
        ErrorType::InvalidUtf8 => {
            return DecodeError::InvalidJson("request body is not valid UTF-8".to_owned());
        }
        ErrorType::ExpectedTrue | ErrorType::ExpectedFalse | ErrorType::ExpectedNull => {
            "invalid literal (expected true, false or null)"
        }
        ErrorType::InvalidNumber | ErrorType::InvalidExponent => "invalid number",
        ErrorType::InvalidEscape
        | ErrorType::InvalidUnicodeEscape
        | ErrorType::InvalidUnicodeCodepoint => "invalid escape sequence in a string",
        ErrorType::TrailingData => "unexpected data after the top-level value",
        ErrorType::ExpectedObjectColon => "expected ':' after an object key",
        ErrorType::ExpectedObjectKey | ErrorType::ExpectedObjectContent => {
            "malformed object (expected a quoted key, ',' or '}')"
        }
        ErrorType::ExpectedArrayContent => "malformed array (expected a value, ',' or ']')",
        ErrorType::Eof => "unexpected end of input",
        _ => "syntax error (malformed or truncated)",
    };
    DecodeError::InvalidJson(format!(
        "request body is not valid JSON: {what} near byte {}",
        e.index()
    ))
}

/// Number of tape nodes taken by the value at a node, including the node itself.
fn subtree_len(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// `(decoded key, tape index of value)` pairs of the object at a tape index, in order.
/// Yields nothing if that node is not an object.
struct Entries<'t, 'de> {
    tape: &'t [Node<'de>],
    next: usize,
    remaining: usize,
}

impl<'t, 'de> Entries<'t, 'de> {
    fn of(tape: &'t [Node<'de>], object: usize) -> Self {
        let remaining = match tape.get(object) {
            Some(Node::Object { len, .. }) => *len,
            _ => 0,
        };
        Self {
            tape,
            next: object + 1,
            remaining,
        }
    }
}

impl<'de> Iterator for Entries<'_, 'de> {
    type Item = (&'de str, usize);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let Some(Node::String(key)) = self.tape.get(self.next) else {
            // Cannot happen on a tape the span walker accepted; stop rather than guess.
            self.remaining = 0;
            return None;
        };
        let value = self.next + 1;
        self.next = value + subtree_len(self.tape.get(value)?);
        Some((key, value))
    }
}

/// Tape indexes of the elements of the array at a tape index, in order.
struct Elements<'t, 'de> {
    tape: &'t [Node<'de>],
    next: usize,
    remaining: usize,
}

impl<'t, 'de> Elements<'t, 'de> {
    fn of(tape: &'t [Node<'de>], array: usize) -> Self {
        let remaining = match tape.get(array) {
            Some(Node::Array { len, .. }) => *len,
            _ => 0,
        };
        Self {
            tape,
            next: array + 1,
            remaining,
        }
    }
}

impl Iterator for Elements<'_, '_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let element = self.next;
        self.next = element + subtree_len(self.tape.get(element)?);
        Some(element)
    }
}

/// Finds the `events` array of a batch envelope (tape index of the array node).
fn find_events_array(tape: &[Node<'_>]) -> Result<usize, &'static str> {
    if !matches!(tape.first(), Some(Node::Object { .. })) {
        return Err("batch must be a JSON object with an \"events\" array");
    }
    // Last `events` wins, like every duplicated envelope key.
    let events = Entries::of(tape, 0)
        .filter(|(key, _)| *key == "events")
        .last()
        .map(|(_, value)| value)
        .ok_or("batch must contain an \"events\" array")?;
    match tape.get(events) {
        Some(Node::Array { .. }) => Ok(events),
        _ => Err("events must be a JSON array"),
    }
}

/// The decoded string at a tape index, if that node is a string.
fn string_at<'de>(tape: &[Node<'de>], index: usize) -> Option<&'de str> {
    match tape.get(index) {
        Some(Node::String(s)) => Some(s),
        _ => None,
    }
}

/// The original text of the value at a tape index.
fn raw_at<'b>(spans: &[Span], body: &'b [u8], index: usize) -> Result<&'b [u8], &'static str> {
    let span = spans.get(index).ok_or(SPAN_MISMATCH)?;
    // Every JSON value is at least one byte, so an empty span was never filled in.
    if span.end <= span.start {
        return Err(SPAN_MISMATCH);
    }
    body.get(span.start as usize..span.end as usize)
        .ok_or(SPAN_MISMATCH)
}

/// Raw text of an optional "any JSON" field; `null` counts as absent.
fn optional_raw<'b>(
    tape: &[Node<'_>],
    spans: &[Span],
    body: &'b [u8],
    index: Option<usize>,
) -> Result<Option<&'b [u8]>, &'static str> {
    match index {
        None => Ok(None),
        Some(i) if matches!(tape.get(i), Some(Node::Static(StaticNode::Null))) => Ok(None),
        Some(i) => raw_at(spans, body, i).map(Some),
    }
}

/// A required string field: `missing` when absent, `wrong_type` when not a string.
fn required_str<'de>(
    tape: &[Node<'de>],
    index: Option<usize>,
    missing: &'static str,
    wrong_type: &'static str,
) -> Result<&'de str, &'static str> {
    let index = index.ok_or(missing)?;
    string_at(tape, index).ok_or(wrong_type)
}

/// Reads `timestamp`: a JSON integer > 0, or `null`/absent.
///
/// Floats are refused even when integral (`1707900000000.0`): the contract says integer,
/// and accepting integral floats would make acceptance depend on f64 rounding
/// (`1707900000000.0000001` rounds to an integer). Integers beyond `u64` (which simd-json
/// turns into floats) are refused as out of range.
fn timestamp_at(tape: &[Node<'_>], index: Option<usize>) -> Result<Option<u64>, &'static str> {
    const MUST_BE_INTEGER: &str =
        "timestamp must be a positive integer (milliseconds since the Unix epoch)";
    let Some(index) = index else {
        return Ok(None);
    };
    match tape.get(index) {
        Some(Node::Static(StaticNode::Null)) => Ok(None),
        Some(Node::Static(StaticNode::U64(ms))) => validate::valid_timestamp_ms(*ms).map(Some),
        Some(Node::String(_)) => Err("timestamp must be a number, not a string"),
        _ => Err(MUST_BE_INTEGER),
    }
}

/// The properties-per-event limit and its error message.
struct PropsLimit<'m> {
    max: usize,
    message: &'m str,
}

/// Validates the event object at tape index `event` and collects its properties into
/// `props` (cleared first). Envelope and payload keys that appear twice: the last wins.
/// More than `limit.max` properties (the object's member count, read from the tape
/// before any is looked at) is an error.
fn build_event<'p, 'a: 'p, 'm>(
    tape: &[Node<'a>],
    spans: &[Span],
    body: &'a [u8],
    event: usize,
    props: &'p mut Vec<Property<'a>>,
    limit: &PropsLimit<'m>,
) -> Result<EventRef<'p>, &'m str> {
    props.clear();
    if !matches!(tape.get(event), Some(Node::Object { .. })) {
        return Err(NOT_AN_OBJECT);
    }

    let mut event_id = None;
    let mut stream = None;
    let mut source = None;
    let mut timestamp = None;
    let mut key = None;
    let mut schema = None;
    let mut payload = None;
    for (name, value) in Entries::of(tape, event) {
        match name {
            "eventId" => event_id = Some(value),
            "stream" => stream = Some(value),
            "source" => source = Some(value),
            "timestamp" => timestamp = Some(value),
            "key" => key = Some(value),
            "schema" => schema = Some(value),
            "payload" => payload = Some(value),
            _ => {} // unknown envelope fields are ignored
        }
    }

    let event_id = match event_id {
        None => None,
        Some(i) => match string_at(tape, i) {
            Some("") => None,
            Some(id) => {
                validate::valid_event_id(id)?;
                Some(id)
            }
            None => return Err("eventId must be a string"),
        },
    };
    let stream = required_str(
        tape,
        stream,
        "stream is required",
        "stream must be a string",
    )?;
    if !validate::valid_stream(stream) {
        return Err(validate::STREAM_RULE);
    }
    let source = required_str(
        tape,
        source,
        "source is required",
        "source must be a string",
    )?;
    validate::valid_source(source)?;
    let timestamp_ms = timestamp_at(tape, timestamp)?;
    let key = optional_raw(tape, spans, body, key)?;
    let schema = optional_raw(tape, spans, body, schema)?;

    let payload = payload.ok_or("payload is required")?;
    if !matches!(tape.get(payload), Some(Node::Object { .. })) {
        return Err("payload must be a JSON object");
    }
    let mut entity_id = None;
    let mut properties = None;
    for (name, value) in Entries::of(tape, payload) {
        match name {
            "entity_id" => entity_id = Some(value),
            "properties" => properties = Some(value),
            _ => {} // unknown payload fields are ignored
        }
    }
    let entity_id = required_str(
        tape,
        entity_id,
        "payload.entity_id is required",
        "payload.entity_id must be a string",
    )?;
    validate::valid_entity_id(entity_id)?;
    let properties = properties.ok_or("payload.properties is required")?;
    match tape.get(properties) {
        Some(Node::Object { len, .. }) if *len > limit.max => return Err(limit.message),
        Some(Node::Object { .. }) => {}
        _ => return Err("payload.properties must be a JSON object"),
    }
    for (name, value) in Entries::of(tape, properties) {
        validate::valid_property_key(name)?;
        props.push(Property {
            key: name,
            value: raw_at(spans, body, value)?,
        });
    }

    Ok(EventRef {
        event_id,
        stream,
        source,
        timestamp_ms,
        key,
        schema,
        entity_id,
        properties: props.as_slice(),
    })
}

#[cfg(test)]
mod tests;
