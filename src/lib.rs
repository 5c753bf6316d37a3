//! Flux: an event-sourced entity state server on thread-per-core shards.
//!
//! See ARCHITECTURE.md for how a request and an event flow through these modules.
//!
//! Layers, top to bottom; a module names only modules below it (`tests/layers.rs`):
//!
//! | layer | module | concern |
//! |---|---|---|
//! | start-up | [`server`] | executors, the channel mesh, each shard's feature state and tasks |
//! | | [`tools`] | operator commands: `flux backup`, `restore`, `export`, `import` |
//! | connections | [`net`] | per-shard listener and the connection loop |
//! | features | [`api`] | endpoint handlers |
//! | | [`cluster`] | cluster mode on NATS JetStream: groups, leases, the NATS bridge thread, owners' appends, requests to other nodes |
//! | | [`ui`] | the browser console: embedded static assets with ETags and a strict CSP |
//! | | [`ws`] | WebSocket `/api/ws`: handshake, sessions, subscriptions, cross-shard fan-out |
//! | | [`metrics`] | per-shard counters and histograms, `metrics_update`, Prometheus text |
//! | | [`auth`] | auth mode: namespace registry, bearer tokens, per-namespace rate limits |
//! | shard | [`shard`] | a shard's store, log and mesh; id → shard (`router`); cross-shard batches (`txn`); recovery, snapshots |
//! | settings | [`runtime`] | limits changeable at run time (`/api/admin/config`) |
//! | | [`config`] | environment variables and flags |
//! | storage | [`log`] | a shard's memory-mapped segment log, durability, recovery scan |
//! | | [`state`] | a shard's entity store |
//! | | [`event`] | the binary record an event travels and is logged as |
//! | | [`ingest`] | JSON event decoding and validation |
//! | protocol | [`http`] | request parsing, routing, response writing |
//! | leaves | [`ids`] | UUIDv7 event ids, per shard, lock-free |
//! | | [`json`], [`time`] | output helpers |
//! | | [`bytes`] | byte-string comparison for the hot paths |
//! | | [`limits`] | every named bound and what hitting it does |
//! | | [`failpoint`] | fault-injection hooks, only with the `failpoints` feature (tests) |
//! | | [`dirlock`] | one server per data directory (`flock` on `flux.lock`) |

pub mod api;
pub mod auth;
pub mod bytes;
pub mod cluster;
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
pub mod server;
pub mod shard;
pub mod state;
pub mod time;
pub mod tools;
pub mod ui;
pub mod ws;
