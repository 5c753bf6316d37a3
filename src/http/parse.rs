//! HTTP/1.1 request-head decoding for Flux (via `httparse`) and request-target splitting.
//! Its siblings are `query` (percent-decoding, query pairs) and `chunked` (the streaming
//! chunked-body decoder); the three belong together and refer to each other via `super::`.
//!
//! Everything here is pure: no I/O, no heap on the hot path (the only allocations happen in
//! `Vec`s the caller owns and reuses), and no panic on any bytes a client can send.
//! "Not complete yet" is `Ok(None)` / `Ok((n, false))`, never an error; protocol errors are
//! [`HttpError`] values that map 1:1 to a status code, so the connection can answer and close.

/// Upper bound for the request line plus all header lines, including the final CRLFCRLF.
/// 16 KiB is well above what browsers send (cookies included) and bounds what a slow or
/// hostile client can make a connection buffer before it has sent a request. Over → 431
/// (or 414 when it is the request line itself that is too long).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Upper bound for the raw request-target. Nothing Flux routes comes close; longer targets
/// are almost always abuse and would bloat logs. Over → 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Upper bound on the number of header lines. It is also the length of the stack array
/// handed to httparse (64 × 32 bytes = 2 KiB of stack, no heap). Over → 431.
pub const MAX_HEADERS: usize = 64;

/// Room for method, two spaces, `HTTP/1.1` and CRLF on top of [`MAX_URI_BYTES`] when an
/// overlong head is classified: no '\n' within `MAX_URI_BYTES + REQUEST_LINE_SLACK` bytes
/// means the request line alone is too long (414) rather than the headers (431).
const REQUEST_LINE_SLACK: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    /// Any other token (methods are case-sensitive, so `get` lands here too).
    Other,
}

/// Methods whose requests are expected to carry a body: with [`BodyKind::None`] the caller
/// answers 411 ([`HttpError::LengthRequired`]).
pub fn requires_body(method: Method) -> bool {
    matches!(method, Method::Post | Method::Put | Method::Patch)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No Content-Length and no Transfer-Encoding: the request has no body.
    None,
    /// `Content-Length: n` (n may be 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`: decode with [`ChunkedDecoder`].
    Chunked,
}

/// Everything the connection needs about a request head, as offsets into the buffer it
/// was parsed from (so the caller can keep it while the buffer grows). Copy, no heap.
/// Ranges are `(start, end)` byte offsets, end exclusive; read them with [`range_slice`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    /// The raw request-target.
    pub target: (u32, u32),
    /// The path part (before '?' and '#'), raw, not decoded. `*` for asterisk-form. Empty for
    /// an absolute-form target without a path (`http://host`), which means `/`.
    pub path: (u32, u32),
    /// The query string (after '?', without `#fragment`), raw. `Some` but empty for `/p?`.
    pub query: Option<(u32, u32)>,
    /// 0 or 1.
    pub minor_version: u8,
    /// Bytes of request line + headers including the final CRLFCRLF (and any empty lines
    /// httparse skipped before the request line): the body or the next request starts here.
    pub header_len: u32,
    pub body: BodyKind,
    /// HTTP/1.1: true unless `Connection: close`; HTTP/1.0: true only with
    /// `Connection: keep-alive` (and no `close`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` (case-insensitive). Always false for HTTP/1.0, which has no
    /// 100 status (RFC 9110 §10.1.1: such an expectation must be ignored).
    pub expect_continue: bool,
    /// The Authorization header value, OWS-trimmed.
    pub authorization: Option<(u32, u32)>,
    /// The first If-None-Match header value, OWS-trimmed (the console's assets answer
    /// 304 when it names their ETag).
    pub if_none_match: Option<(u32, u32)>,
    /// `Upgrade: websocket` (case-insensitive, may be one item of a list) and `Connection`
    /// contains the token `upgrade`. Method and version checks (GET, HTTP/1.1) are left to the
    /// WebSocket handshake code, which has to answer them with its own status anyway.
    pub upgrade_websocket: bool,
    /// The Sec-WebSocket-Key value.
    pub ws_key: Option<(u32, u32)>,
    /// `Sec-WebSocket-Version: 13`.
    pub ws_version_13: bool,
    /// `X-Flux-Sync: always`: acknowledge this request's writes only once they are on
    /// stable storage, whatever `FLUX_SYNC` says.
    pub sync_always: bool,
    /// `X-Flux-Forwarded` (any value): sent by another cluster node; answered here,
    /// never sent on.
    pub forwarded: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// 400, with the message for the JSON error body.
    BadRequest(&'static str),
    /// 414
    UriTooLong,
    /// 431
    HeaderTooLarge,
    /// 411: returned by the caller (see [`requires_body`]), never by the parser.
    LengthRequired,
    /// 413, from the chunked decoder when the body goes over its limit.
    PayloadTooLarge,
    /// 501, e.g. a Transfer-Encoding other than chunked.
    NotImplemented(&'static str),
    /// 505, for `HTTP/2.0` etc. in an HTTP/1 request line.
    VersionNotSupported,
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::LengthRequired => 411,
            HttpError::PayloadTooLarge => 413,
            HttpError::UriTooLong => 414,
            HttpError::HeaderTooLarge => 431,
            HttpError::NotImplemented(_) => 501,
            HttpError::VersionNotSupported => 505,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            HttpError::BadRequest(msg) | HttpError::NotImplemented(msg) => msg,
            HttpError::LengthRequired => "length required",
            HttpError::PayloadTooLarge => "payload too large",
            HttpError::UriTooLong => "request-target too long",
            HttpError::HeaderTooLarge => "request header fields too large",
            HttpError::VersionNotSupported => "HTTP version not supported",
        }
    }
}

// Error constructors are #[cold] so the compiler lays out the accept path as the straight
// line and moves every rejection out of the way.
#[cold]
pub(crate) fn bad(msg: &'static str) -> HttpError {
    HttpError::BadRequest(msg)
}

#[cold]
fn uri_too_long() -> HttpError {
    HttpError::UriTooLong
}

#[cold]
pub(crate) fn header_too_large() -> HttpError {
    HttpError::HeaderTooLarge
}

#[cold]
pub(crate) fn payload_too_large() -> HttpError {
    HttpError::PayloadTooLarge
}

#[cold]
fn not_implemented(msg: &'static str) -> HttpError {
    HttpError::NotImplemented(msg)
}

#[cold]
fn version_not_supported() -> HttpError {
    HttpError::VersionNotSupported
}

const MALFORMED: &str = "malformed request";
const BAD_CONTENT_LENGTH: &str = "invalid Content-Length";

/// The bytes of `range` in `buf`; empty if the range does not fit (a stale `Head` applied to
/// the wrong buffer must not be able to panic the connection).
pub fn range_slice(buf: &[u8], range: (u32, u32)) -> &[u8] {
    buf.get(range.0 as usize..range.1 as usize).unwrap_or(&[])
}

/// Parses one request head from the start of `buf`. Ok(None) = not complete yet (caller
/// reads more), unless buf is already over the limits, which is an error immediately.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, HttpError> {
    // httparse only ever sees the first MAX_HEADER_BYTES: a head that fits is found there,
    // and one that does not is an error either way. This bounds the work per call (the
    // caller re-parses on every read until the head is complete) and keeps every offset
    // <= MAX_HEADER_BYTES, so the u32 ranges in Head cannot truncate.
    let window = &buf[..buf.len().min(MAX_HEADER_BYTES)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let status = req.parse(window);

    // httparse fills in `path` as soon as the target's closing space arrives, also when the
    // result is Partial or a later error. Checking it first gives a too-long target 414
    // however the bytes were split into reads.
    if req.path.is_some_and(|p| p.len() > MAX_URI_BYTES) {
        return Err(uri_too_long());
    }
    match status {
        Ok(httparse::Status::Complete(header_len)) => {
            build_head(window, &req, header_len).map(Some)
        }
        Ok(httparse::Status::Partial) => partial(buf.len(), window, req.path.is_some()),
        Err(e) => Err(map_httparse_error(e, window, req.path)),
    }
}

/// Decides between "read more" and "over a limit" for an incomplete head.
fn partial(buf_len: usize, window: &[u8], target_done: bool) -> Result<Option<Head>, HttpError> {
    // The target is still arriving: once it alone is over the limit, more reads cannot help.
    if !target_done && pending_target_len(window) > MAX_URI_BYTES {
        return Err(uri_too_long());
    }
    if buf_len > MAX_HEADER_BYTES {
        return Err(head_over_limit(window, target_done));
    }
    Ok(None)
}

/// Classifies an incomplete head that already fills MAX_HEADER_BYTES.
#[cold]
fn head_over_limit(window: &[u8], target_done: bool) -> HttpError {
    let line = &window[..window.len().min(MAX_URI_BYTES + REQUEST_LINE_SLACK)];
    if !target_done && !line.contains(&b'\n') {
        uri_too_long()
    } else {
        header_too_large()
    }
}

/// Length of a request-target that has started but not ended (no closing space yet).
fn pending_target_len(window: &[u8]) -> usize {
    // httparse skips empty lines before the request line; the method ends at the first space.
    let start = window.iter().position(|&b| b != b'\r' && b != b'\n');
    let line = start.map_or(&[][..], |s| &window[s..]);
    line.iter()
        .position(|&b| b == b' ')
        .map_or(0, |sp| line.len() - sp - 1)
}

#[cold]
fn map_httparse_error(e: httparse::Error, window: &[u8], target: Option<&str>) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => header_too_large(),
        // httparse knows HTTP/1.0 and HTTP/1.1 only; a well-formed HTTP/<digit> that is
        // neither (HTTP/2.0, HTTP/1.2, HTTP/3) deserves 505, anything else is garbage.
        httparse::Error::Version if target.is_some_and(|t| is_other_http_version(window, t)) => {
            version_not_supported()
        }
        _ => bad(MALFORMED),
    }
}

/// Whether the token after the target looks like `HTTP/<digit>...`.
fn is_other_http_version(window: &[u8], target: &str) -> bool {
    let version_start = span(window, target.as_bytes()).1 as usize + 1;
    let rest = window.get(version_start..).unwrap_or(&[]);
    rest.starts_with(b"HTTP/") && rest.get(5).is_some_and(u8::is_ascii_digit)
}

/// The offsets of `part`, a sub-slice of `base` (httparse hands out sub-slices of its input).
fn span(base: &[u8], part: &[u8]) -> (u32, u32) {
    let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    // Cannot fail for httparse's slices; checked so a broken invariant yields an empty range
    // rather than offsets pointing anywhere. `base` is at most MAX_HEADER_BYTES, so u32 fits.
    if start <= base.len() && part.len() <= base.len() - start {
        (start as u32, (start + part.len()) as u32)
    } else {
        (0, 0)
    }
}

fn method_of(m: &str) -> Method {
    match m {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        "PATCH" => Method::Patch,
        _ => Method::Other,
    }
}

fn build_head(
    window: &[u8],
    req: &httparse::Request<'_, '_>,
    header_len: usize,
) -> Result<Head, HttpError> {
    // Always Some on Complete; matched rather than unwrapped so no path can panic.
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(bad(MALFORMED));
    };
    // header_len <= window.len() <= MAX_HEADER_BYTES: an over-limit head never completes here.
    let target_span = span(window, target.as_bytes());
    let (path, query) = split_target(target.as_bytes())?;
    let at = |(s, e): (usize, usize)| (target_span.0 + s as u32, target_span.0 + e as u32);

    let mut facts = HeaderFacts::default();
    for h in req.headers.iter() {
        facts.add(window, h.name.as_bytes(), h.value)?;
    }
    let http11 = minor_version == 1;

    let body = if facts.transfer_encoding {
        // A message with both is the classic request-smuggling vector (RFC 9112 §6.1): the
        // two ends of a proxy may disagree on where it ends, so refuse instead of picking one.
        if facts.content_length.is_some() {
            return Err(bad("both Transfer-Encoding and Content-Length"));
        }
        // HTTP/1.0 has no Transfer-Encoding; a 1.0 message with one is faulty (RFC 9112 §6.1).
        if !http11 {
            return Err(bad("Transfer-Encoding in HTTP/1.0 request"));
        }
        if facts.other_coding {
            return Err(not_implemented("unsupported transfer-encoding"));
        }
        // chunked must appear exactly once (an empty value or `chunked, chunked` is invalid).
        if facts.chunked != 1 {
            return Err(bad("invalid Transfer-Encoding"));
        }
        BodyKind::Chunked
    } else {
        facts
            .content_length
            .map_or(BodyKind::None, BodyKind::Length)
    };

    Ok(Head {
        method: method_of(method),
        target: target_span,
        path: at(path),
        query: query.map(at),
        minor_version,
        header_len: header_len as u32,
        body,
        keep_alive: !facts.close && (http11 || facts.keep_alive),
        expect_continue: http11 && facts.expect_continue,
        authorization: facts.authorization,
        if_none_match: facts.if_none_match,
        upgrade_websocket: facts.upgrade_websocket && facts.connection_upgrade,
        ws_key: facts.ws_key,
        ws_version_13: facts.ws_version_13 == Some(true),
        sync_always: facts.sync_always,
        forwarded: facts.forwarded,
    })
}

/// What the headers Flux cares about said, gathered in one pass.
#[derive(Default)]
struct HeaderFacts {
    content_length: Option<u64>,
    transfer_encoding: bool,
    /// How often `chunked` appeared across all Transfer-Encoding values.
    chunked: u8,
    /// Some coding other than `chunked` appeared.
    other_coding: bool,
    close: bool,
    keep_alive: bool,
    connection_upgrade: bool,
    upgrade_websocket: bool,
    expect_continue: bool,
    authorization: Option<(u32, u32)>,
    if_none_match: Option<(u32, u32)>,
    ws_key: Option<(u32, u32)>,
    ws_version_13: Option<bool>,
    sync_always: bool,
    forwarded: bool,
}

impl HeaderFacts {
    fn add(&mut self, window: &[u8], name: &[u8], value: &[u8]) -> Result<(), HttpError> {
        // httparse trims OWS already; trimming again costs nothing and keeps this self-evident.
        let value = trim_ows(value);
        // Dispatching on length first means most headers (Host, Accept, Cookie...) cost one
        // integer compare; names are case-insensitive (RFC 9110 §5.1).
        match name.len() {
            6 if name.eq_ignore_ascii_case(b"expect") => {
                self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
            }
            7 if name.eq_ignore_ascii_case(b"upgrade") => {
                self.upgrade_websocket |=
                    list_items(value).any(|p| p.eq_ignore_ascii_case(b"websocket"));
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in list_items(value) {
                    self.close |= token.eq_ignore_ascii_case(b"close");
                    self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                    self.connection_upgrade |= token.eq_ignore_ascii_case(b"upgrade");
                }
            }
            11 if name.eq_ignore_ascii_case(b"x-flux-sync") => {
                self.sync_always |= value.eq_ignore_ascii_case(b"always");
            }
            16 if name.eq_ignore_ascii_case(b"x-flux-forwarded") => self.forwarded = true,
            13 if name.eq_ignore_ascii_case(b"authorization") => {
                // Not a list header: two credentials are ambiguous, so refuse rather than
                // guess which one a proxy in front of us checked.
                set_once(
                    &mut self.authorization,
                    span(window, value),
                    "duplicate Authorization header",
                )?;
            }
            // A list header; a repeat only costs the 304, so the first one is kept.
            13 if name.eq_ignore_ascii_case(b"if-none-match") && self.if_none_match.is_none() => {
                self.if_none_match = Some(span(window, value));
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let n = parse_content_length(value)?;
                // Identical repeats are harmless (RFC 9110 §8.6); different ones are smuggling.
                if self.content_length.is_some_and(|prev| prev != n) {
                    return Err(bad("conflicting Content-Length headers"));
                }
                self.content_length = Some(n);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                // Repeated headers form one list, so `TE: gzip` + `TE: chunked` is `gzip, chunked`.
                self.transfer_encoding = true;
                for coding in list_items(value) {
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        self.chunked = self.chunked.saturating_add(1);
                    } else {
                        self.other_coding = true;
                    }
                }
            }
            17 if name.eq_ignore_ascii_case(b"sec-websocket-key") => {
                // RFC 6455 §11.3.1: must not appear more than once in a request.
                set_once(
                    &mut self.ws_key,
                    span(window, value),
                    "duplicate Sec-WebSocket-Key",
                )?;
            }
            21 if name.eq_ignore_ascii_case(b"sec-websocket-version") => {
                set_once(
                    &mut self.ws_version_13,
                    value == b"13",
                    "duplicate Sec-WebSocket-Version",
                )?;
            }
            _ => {}
        }
        Ok(())
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, duplicate: &'static str) -> Result<(), HttpError> {
    if slot.is_some() {
        return Err(bad(duplicate));
    }
    *slot = Some(value);
    Ok(())
}

/// Content-Length is `1*DIGIT` (RFC 9110 §8.6): no sign, no inner spaces, no list.
fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    if value.is_empty() {
        return Err(bad(BAD_CONTENT_LENGTH));
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(bad(BAD_CONTENT_LENGTH));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or_else(|| bad(BAD_CONTENT_LENGTH))?;
    }
    Ok(n)
}

/// Strips optional whitespace (SP / HTAB) from both ends.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The non-empty, trimmed items of a comma-separated header list (RFC 9110 §5.6.1 allows
/// empty items such as `a, , b`, which recipients must ignore).
fn list_items(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|item| !item.is_empty())
}

type Range = (usize, usize);

/// Splits a request-target into path and query, as ranges relative to the target.
fn split_target(t: &[u8]) -> Result<(Range, Option<Range>), HttpError> {
    let path_start = match t {
        [b'/', ..] => 0,
        // asterisk-form, for `OPTIONS *`; whether the method fits is the router's business.
        [b'*'] => return Ok(((0, 1), None)),
        // authority-form (CONNECT) and anything else is not something Flux serves.
        _ => absolute_form_path_start(t).ok_or_else(|| bad("invalid request-target"))?,
    };
    // The fragment is client-side only and should never be sent; if it is, drop it.
    let end = t[path_start..]
        .iter()
        .position(|&b| b == b'#')
        .map_or(t.len(), |i| path_start + i);
    match t[path_start..end].iter().position(|&b| b == b'?') {
        Some(q) => Ok((
            (path_start, path_start + q),
            Some((path_start + q + 1, end)),
        )),
        None => Ok(((path_start, end), None)),
    }
}

/// For `scheme://authority[/path][?query]` returns where the path starts (which is the end of
/// the target, or a '?', when there is no path); `None` if `t` is not in absolute-form.
fn absolute_form_path_start(t: &[u8]) -> Option<usize> {
    let colon = t.iter().position(|&b| b == b':')?;
    let scheme = &t[..colon];
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let authority_start = colon + 3;
    if !scheme_ok || t.get(colon + 1..authority_start)? != b"//" {
        return None;
    }
    let rest = &t[authority_start..];
    let authority_len = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    // `http:///x` has no host; RFC 3986 allows an empty authority but HTTP does not.
    (authority_len > 0).then_some(authority_start + authority_len)
}

#[cfg(test)]
mod tests;
