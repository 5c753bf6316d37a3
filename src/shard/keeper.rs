//! The log keeper: one task per shard that keeps the next log segment ready, so a
//! roll-over never waits on the disk (see `log::ShardLog`).
//!
//! Creating a segment (posix_fallocate of `FLUX_SEGMENT_BYTES`, the header, an fsync)
//! runs on glommio's blocking pool. The keeper sleeps until a roll-over (or a hold)
//! used the spare, then makes the next one. When creating fails (a full disk) it says
//! so once and tries again every `RETRY_MS`; writes go on into the active segment
//! until it is full, and a roll-over without a spare then tries on the event loop
//! (and answers 503 with the cause if that fails too).

use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use super::Shard;
use crate::log::{delete_segments, ShardLog};

/// Pause before trying again after a spare could not be created.
const RETRY_MS: u64 = 1_000;
/// The keeper looks at the log at least this often, even without a wake-up (to
/// notice shutdown).
const IDLE_CHECK_MS: u64 = 1_000;

/// Wakes the keeper of `shard` (a spare was used or is wanted).
pub fn wake(shard: &Shard) {
    if let Some(w) = shard.keeper_wake.borrow_mut().take() {
        w.wake();
    }
}

/// Runs until shutdown.
pub async fn run(shard: Rc<Shard>) {
    let mut failing: Option<String> = None;
    while !shard.shutting_down() {
        let job = shard.log.borrow().as_ref().and_then(ShardLog::spare_job);
        let Some(job) = job else {
            wait_for_wake(&shard, Duration::from_millis(IDLE_CHECK_MS)).await;
            continue;
        };
        match glommio::executor().spawn_blocking(move || job.run()).await {
            Ok(seg) => {
                if failing.take().is_some() {
                    eprintln!(
                        "flux: shard {}: log segments can be created again",
                        shard.id.0
                    );
                }
                let stale = shard
                    .log
                    .borrow_mut()
                    .as_mut()
                    .and_then(|log| log.install_spare(seg));
                shard.publish_room();
                if let Some(stale) = stale {
                    // The log moved on while it was made (a roll-over without it).
                    let dir = stale.path().parent().map(|p| p.to_path_buf());
                    if let Some(dir) = dir {
                        let _ = glommio::executor()
                            .spawn_blocking(move || delete_segments(&dir, vec![stale]))
                            .await;
                    }
                }
            }
            Err(e) => {
                let msg = e.to_string();
                if failing.as_deref() != Some(msg.as_str()) {
                    eprintln!(
                        "flux: shard {}: cannot prepare the next log segment: {msg}; retrying \
                         every {RETRY_MS} ms",
                        shard.id.0
                    );
                    failing = Some(msg);
                }
                glommio::timer::sleep(Duration::from_millis(RETRY_MS)).await;
            }
        }
    }
}

/// Returns after `wake` or after `timeout`, whichever comes first.
async fn wait_for_wake(shard: &Shard, timeout: Duration) {
    let mut registered = false;
    let woken = poll_fn(|cx| {
        if registered && shard.keeper_wake.borrow().is_none() {
            return Poll::Ready(());
        }
        *shard.keeper_wake.borrow_mut() = Some(cx.waker().clone());
        registered = true;
        Poll::Pending
    });
    futures_lite::future::or(woken, glommio::timer::sleep(timeout)).await;
    shard.keeper_wake.borrow_mut().take();
}
