//! Black-box tests of auth mode (DECISIONS.md "Namespaces and auth"): registering,
//! reading and deleting namespaces; writes, deletes and reads per token (no token, an
//! unknown or malformed one, another namespace's, the namespace's own, the admin's) with
//! the default token-scoped reads and with `FLUX_PUBLIC_READS=true`; WebSocket
//! subscriptions confined to a namespace; per-namespace rate limits enforced across
//! shards; `/api/admin/config` applied on every shard at once; tokens never leaking;
//! the registry across restarts, kill -9 and damage; start-up checks; open mode.
//!
//! The shared conformance suite covers auth with public reads on; these tests cover
//! the default (reads need a token) and one server with public reads.
//!
//! One test binary; each section of the suite is a module, sharing `fixture`.

#[path = "../common/mod.rs"]
mod common;
mod fixture;

mod backup;

mod namespaces;
mod persistence;
mod rate_limits;
mod reads;
mod runtime_config;
mod token_secrecy;
mod websocket;
mod writes;
