//! HTTP/1.1 by hand: `parse` (httparse → request head as offsets, or "not yet"),
//! `chunked` (streaming chunked-body decoder), `query` (percent-decoding and query
//! pairs), `route` (path → endpoint) and `respond` (response heads without `format!`).

pub mod chunked;
pub mod parse;
pub mod query;
pub mod respond;
pub mod route;

/// Whether `token` is a non-empty RFC 6750 `b64token` (what a bearer token may hold:
/// letters, digits and `-._~+/=`).
pub fn is_b64token(token: &[u8]) -> bool {
    let b64 = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(b);
    !token.is_empty() && token.iter().all(b64)
}
