//! Sockets: the per-shard listener (accept, connection cap, shutdown) and the
//! connection loop.

pub mod conn;
pub mod listener;
