//! Fault injection for tests ("failpoints"), compiled in only with the cargo feature
//! `failpoints` (the test command enables it; a release build has none: every call
//! below is then a constant `None`/`false` that the optimiser removes).
//!
//! `FLUX_FAILPOINT=name[:arg][,name[:arg]…]` arms failpoints for the whole process;
//! code asks [`on`] or [`arg`] at the point where it would fail. The names:
//!
//! | name | where | effect |
//! |---|---|---|
//! | `mesh-join-stall` | start-up | shard 0 never joins the mesh (the start fails, naming the stall) |
//! | `enospc-marker` | segment creation | fails with ENOSPC while `FLUX_DATA_DIR/.fail-enospc` (all shards) or `shard-N/.fail-enospc` exists |
//! | `ws-inbox-full` | fan-out | every other shard's WebSocket inbox looks full |
//! | `txn-abort:<step>` | cross-shard batch | the process aborts at `<step>` (see `shard::txn`) |
//! | `txn-intent-fails` | cross-shard batch | the coordinator's intent append fails (as on a full disk) |
//! | `txn-unavailable:<shard>` | cross-shard batch | shard `<shard>` does not answer a hold (as if gone) |
//! | `shard-stall` | heartbeat | a shard's thread blocks (its executor runs nothing) while `shard-N/.stall` exists |
//! | `sync-fails[:<shard>]` | log sync | the next fdatasync of that shard (any shard without arg) fails once |
//! | `cluster-fanout-drop` | cluster fan-out | an owner sends no fan-out while `FLUX_DATA_DIR/.fanout-drop` exists (a lost core NATS message) |
//! | `backup-slow` | backup copy | each file's copy starts 300 ms late (a kill in the middle of a backup) |
//! | `backup-cut-delay:<shard>` | backup cut | the cut of that shard waits 300 ms (after the others before it) |

#[cfg(feature = "failpoints")]
mod imp {
    use std::sync::OnceLock;

    static ARMED: OnceLock<Vec<(String, String)>> = OnceLock::new();

    fn armed() -> &'static [(String, String)] {
        ARMED.get_or_init(|| {
            let list: Vec<(String, String)> = std::env::var("FLUX_FAILPOINT")
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| match s.trim().split_once(':') {
                    Some((n, a)) => (n.to_string(), a.to_string()),
                    None => (s.trim().to_string(), String::new()),
                })
                .collect();
            if !list.is_empty() {
                eprintln!("flux: failpoints armed: {list:?}");
            }
            list
        })
    }

    pub fn arg(name: &str) -> Option<&'static str> {
        armed()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.as_str())
    }
}

/// The argument of failpoint `name` if it is armed (`""` when it has none).
#[cfg(feature = "failpoints")]
pub fn arg(name: &str) -> Option<&'static str> {
    imp::arg(name)
}

/// The argument of failpoint `name` if it is armed: never, in this build.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn arg(_name: &str) -> Option<&'static str> {
    None
}

/// Whether failpoint `name` is armed.
#[inline(always)]
pub fn on(name: &str) -> bool {
    arg(name).is_some()
}

/// Whether failpoint `name` is armed with `value` as its argument.
#[inline(always)]
pub fn on_with(name: &str, value: &str) -> bool {
    arg(name) == Some(value)
}
