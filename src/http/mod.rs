//! HTTP/1.1 by hand: `parse` (httparse → request head as offsets, or "not yet"),
//! `chunked` (streaming chunked-body decoder), `query` (percent-decoding and query
//! pairs), `route` (path → endpoint) and `respond` (response heads without `format!`).

pub mod chunked;
pub mod parse;
pub mod query;
pub mod respond;
pub mod route;
