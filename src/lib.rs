//! Flux: an event-sourced entity state server on thread-per-core shards.
//!
//! See ARCHITECTURE.md for how a request and an event flow through these modules.
//!
//! | module | concern |
//! |---|---|
//! | [`config`] | environment variables and flags |
//! | [`dirlock`] | one server per data directory (`flock` on `flux.lock`) |
//! | [`failpoint`] | fault-injection hooks, only with the `failpoints` feature (tests) |
//! | [`limits`] | every named bound and what hitting it does |
//! | [`shard`] | executors (`placement`), id → shard (`router`), cross-shard messages (`mesh`) |
//! | [`net`] | per-shard listener and the connection loop |
//! | [`http`] | request parsing, routing, response writing |
//! | [`api`] | endpoint handlers |
//! | [`ingest`] | JSON event decoding and validation |
//! | [`ids`] | UUIDv7 event ids, per shard, lock-free |
//! | [`event`] | the binary record an event travels and is logged as |
//! | [`log`] | a shard's memory-mapped segment log, durability, recovery scan |
//! | [`state`] | a shard's entity store |
//! | [`ws`] | WebSocket `/api/ws`: handshake, sessions, subscriptions, cross-shard fan-out |
//! | [`auth`] | auth mode: namespace registry, bearer tokens, per-namespace rate limits |
//! | [`runtime`] | limits changeable at run time (`/api/admin/config`) |
//! | [`metrics`] | per-shard counters and histograms, `metrics_update`, `GET /metrics` |
//! | [`json`], [`time`] | output helpers |

pub mod api;
pub mod auth;
pub mod config;
pub mod dirlock;
pub mod event;
pub mod failpoint;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod json;
pub mod limits;
pub mod log;
pub mod metrics;
pub mod net;
pub mod runtime;
pub mod shard;
pub mod state;
pub mod time;
pub mod ws;
