//! The client side of Flux's wire protocols, for the programs that talk to a
//! server from outside: the integration tests (`tests/common`, blocking
//! `std::net` sockets), the `flux` binary's operator commands (`src/tools.rs`:
//! backup, export, import) and the load tester (`loadtest`, nonblocking sockets on
//! an epoll loop, hundreds of thousands of responses a second). Both read the
//! same bytes, so they read them with the same code; this crate owns no socket.
//!
//! - [`http`]: HTTP/1.1 responses. [`http::parse_head`] asks "is a whole head
//!   here?" and answers with a [`http::Head`] that borrows the buffer (status,
//!   version, the three framing headers, every other header on demand), never
//!   allocating; [`http::Decoder`] follows a sequence of pipelined responses
//!   through their bodies (Content-Length, chunked, until close) a buffer at a
//!   time, keeping a body only when asked.
//! - [`json`]: where JSON values start and end, to copy them untouched.
//! - [`ws`]: WebSocket (RFC 6455) as a client: the upgrade request and the check
//!   of its answer, server frame headers decoded in place, masked client frames
//!   encoded, close codes.
//!
//! "Not yet" (an incomplete head or frame) is `Ok(None)`, never an error; bad
//! bytes are an error value, never a panic.

pub mod http;
pub mod json;
pub mod ws;
