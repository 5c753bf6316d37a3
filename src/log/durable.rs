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
    /// The last sync failed: writes are refused until one succeeds.
    failed: Cell<bool>,
    /// Syncs completed (for metrics and tests).
    pub syncs: Cell<u64>,
}

impl Durability {
    /// Returns once everything below `lsn` is durable (or the sync failed).
    pub async fn sync_to(&self, log: &RefCell<Option<ShardLog>>, lsn: u64) -> io::Result<()> {
        loop {
            if self.synced_lsn.get() >= lsn {
                return Ok(());
            }
            if self.syncing.get() {
                let (tx, rx) = oneshot::channel();
                self.waiters.borrow_mut().push(tx);
                let _ = rx.await;
                if self.failed.get() {
                    return Err(io::Error::other("log sync failed"));
                }
                continue;
            }
            self.sync_now(log).await?;
        }
    }

    /// Syncs everything appended so far (one sync, shared by all who wait).
    pub async fn sync_now(&self, log: &RefCell<Option<ShardLog>>) -> io::Result<()> {
        if self.syncing.get() {
            return Ok(());
        }
        let Some((files, target, token)) = log.borrow().as_ref().map(ShardLog::sync_targets) else {
            return Ok(());
        };
        if target <= self.synced_lsn.get() {
            return Ok(());
        }
        self.syncing.set(true);
        let result = glommio::executor()
            .spawn_blocking(move || -> io::Result<()> {
                for f in &files {
                    f.sync_data()?;
                }
                Ok(())
            })
            .await;
        self.syncing.set(false);
        match &result {
            Ok(()) => {
                if let Some(l) = log.borrow_mut().as_mut() {
                    l.mark_synced(token);
                }
                self.synced_lsn.set(self.synced_lsn.get().max(target));
                self.failed.set(false);
                self.syncs.set(self.syncs.get() + 1);
            }
            Err(_) => self.failed.set(true),
        }
        for w in self.waiters.borrow_mut().drain(..) {
            let _ = w.send(());
        }
        result
    }
}
