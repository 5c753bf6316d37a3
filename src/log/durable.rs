//! Durability: when is an appended frame on stable storage, and who waits for it.
//!
//! Appends go into the mapped segment (they survive a process crash at once). Making
//! them survive a power loss takes an fdatasync, which runs on glommio's blocking pool
//! so a shard's event loop never waits on the disk. Group commit: one sync covers
//! every frame appended before it started; requests that need durability (`always`)
//! wait for the first sync that covers their frame, and at most one sync per shard is
//! in flight, so throughput holds up as concurrency grows.

use std::cell::{Cell, RefCell};
use std::io;

use futures_channel::oneshot;

use super::ShardLog;

#[derive(Default)]
pub struct Durability {
    /// Everything below this LSN is on stable storage.
    synced_lsn: Cell<u64>,
    syncing: Cell<bool>,
    /// Tasks waiting for the sync in flight to finish.
    waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// Syncs completed (for metrics and tests).
    pub syncs: Cell<u64>,
    /// Test hook (`FLUX_FAILPOINT=sync-fails`): the next sync fails, once.
    pub fail_next: Cell<bool>,
}

/// A failed fdatasync is final: Linux may have dropped the dirty pages it could not
/// write (and cleared the error), so a later sync that succeeds proves nothing about
/// them (PostgreSQL's "fsyncgate"). The log is marked failed (`ShardLog::fail`), which
/// refuses every append until a restart rebuilds the state from what is on disk.
pub const SYNC_FAILED: &str = "log sync (fdatasync) failed";

impl Durability {
    /// Everything below this LSN is durable.
    pub fn synced_lsn(&self) -> u64 {
        self.synced_lsn.get()
    }

    /// Returns once everything below `lsn` is durable; an error if a sync failed
    /// (now or before) while `lsn` was not yet durable.
    pub async fn sync_to(&self, log: &RefCell<Option<ShardLog>>, lsn: u64) -> io::Result<()> {
        loop {
            if self.synced_lsn.get() >= lsn {
                return Ok(());
            }
            if let Some(cause) = log.borrow().as_ref().and_then(ShardLog::failed) {
                return Err(io::Error::other(cause.to_string()));
            }
            if self.syncing.get() {
                let (tx, rx) = oneshot::channel();
                self.waiters.borrow_mut().push(tx);
                let _ = rx.await;
                continue;
            }
            self.sync_now(log).await?;
        }
    }

    /// Syncs everything appended so far (one sync, shared by all who wait). On failure
    /// the log is marked failed (see [`SYNC_FAILED`]).
    pub async fn sync_now(&self, log: &RefCell<Option<ShardLog>>) -> io::Result<()> {
        if self.syncing.get() {
            return Ok(());
        }
        let job = {
            let log = log.borrow();
            let Some(log) = log.as_ref() else {
                return Ok(());
            };
            if let Some(cause) = log.failed() {
                return Err(io::Error::other(cause.to_string()));
            }
            log.sync_targets()
        };
        if job.target_lsn <= self.synced_lsn.get() && job.dir.is_none() {
            return Ok(());
        }
        self.syncing.set(true);
        let inject = self.fail_next.replace(false);
        let (job, result) = glommio::executor()
            .spawn_blocking(move || {
                let r = if inject {
                    Err(io::Error::from_raw_os_error(libc::EIO))
                } else {
                    job.run()
                };
                (job, r)
            })
            .await;
        self.syncing.set(false);
        match &result {
            Ok(()) => {
                if let Some(l) = log.borrow_mut().as_mut() {
                    l.mark_synced(&job);
                }
                self.synced_lsn
                    .set(self.synced_lsn.get().max(job.target_lsn));
                self.syncs.set(self.syncs.get() + 1);
            }
            Err(e) => {
                if let Some(l) = log.borrow_mut().as_mut() {
                    l.fail(&format!("{SYNC_FAILED}: {e}"));
                }
            }
        }
        for w in self.waiters.borrow_mut().drain(..) {
            let _ = w.send(());
        }
        result
    }
}
