//! Taking a shard's snapshot without stopping it, and deleting the log it covers.
//!
//! Entities are serialized on the shard thread in chunks of `CHUNK_ENTITIES` (the
//! store is borrowed only while one chunk is encoded) and written on glommio's
//! blocking pool, so a snapshot of millions of entities never holds the event loop for
//! more than one chunk. See `log::snapshot` for why a fuzzy snapshot is exact.

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::Shard;
use crate::log::snapshot::{self, SnapshotMeta, Writer};
use crate::log::{delete_segments, ShardLog};

/// The least time between two snapshots asked for with `Shard::snapshot_wanted`.
const WANTED_GAP: Duration = Duration::from_secs(10);

/// Entities encoded per turn of the event loop.
const CHUNK_ENTITIES: usize = 4096;

#[derive(Debug, Clone, Copy)]
pub struct SnapshotStats {
    pub entities: u64,
    pub replay_from_lsn: u64,
    /// The write position just after the snapshot's cut (and its note): the log
    /// grown past it is what the next snapshot would cover.
    pub cut_lsn: u64,
    pub bytes: u64,
    pub segments_deleted: usize,
    pub took: Duration,
}

/// The replay point and txn high-water mark a snapshot may claim now. `quiescent`:
/// every shard has drained (clean shutdown), so no cross-shard batch is open anywhere
/// and recent parts need no replay.
fn replay_point(shard: &Shard, quiescent: bool) -> (u64, u64) {
    let write_lsn = shard.log.borrow().as_ref().map_or(0, ShardLog::write_lsn);
    let mut from = write_lsn;
    let mut txn_hw = shard.txn_seq.get();
    if quiescent && shard.open_intents.borrow().is_empty() {
        return (from, txn_hw);
    }
    if let Some((&txn, &lsn)) = shard.open_intents.borrow().iter().next() {
        // Txn ids grow with their intents' LSNs: everything before the oldest open
        // intent is closed.
        from = from.min(lsn);
        txn_hw = (txn & ((1 << 48) - 1)).saturating_sub(1);
    }
    let now = Instant::now();
    if let Some((_, lsn)) = shard
        .recent_parts
        .borrow()
        .iter()
        .find(|(t, _)| now.duration_since(*t) <= shard.part_window())
    {
        from = from.min(*lsn);
    }
    (from, txn_hw)
}

/// Writes a snapshot of `shard`, then deletes log segments that it covers and that lie
/// outside the history retention.
pub async fn take(shard: &Rc<Shard>, quiescent: bool) -> io::Result<SnapshotStats> {
    let started = Instant::now();
    let dir = shard.config.data_dir.join(format!("shard-{}", shard.id.0));
    // The layer above's note of what the store reflects now, first in the replay.
    let note = shard.cut_note.get().and_then(|f| f(shard));
    let note_lsn = match note {
        Some(n) => Some(shard.append_note(&n).map_err(|e| {
            io::Error::other(format!(
                "cannot log the snapshot's note: {}",
                super::describe(&e)
            ))
        })?),
        None => None,
    };
    let cut_lsn = shard.log.borrow().as_ref().map_or(0, ShardLog::write_lsn);
    let (from, txn_hw) = replay_point(shard, quiescent);
    let from = note_lsn.map_or(from, |n| from.min(n));
    // The log before the replay point must be durable before a snapshot replaces it.
    shard.sync_now().await?;
    let meta = SnapshotMeta {
        shard: u32::from(shard.id.0),
        shards: shard.count as u32,
        replay_from_lsn: from,
        txn_hw,
    };
    let d = dir.clone();
    let mut writer: Writer = blocking(move || Writer::create(&d)).await?;
    let mut after: Option<Vec<u8>> = None;
    let mut entities = 0u64;
    let mut bytes = 0u64;
    let mut first = true;
    let mut encoder = snapshot::EntityWriter::default();
    loop {
        let mut buf = Vec::with_capacity(256 * 1024);
        if first {
            snapshot::write_header(&mut buf, &meta);
            first = false;
        }
        let done = {
            let store = shard.store.borrow();
            let mut n = 0;
            let mut last: Option<&[u8]> = None;
            for (id, e) in store.range(b"", after.as_deref()) {
                if n == CHUNK_ENTITIES {
                    break;
                }
                encoder.write(&mut buf, id, e);
                last = Some(id);
                n += 1;
            }
            entities += n as u64;
            if let Some(id) = last {
                after = Some(id.to_vec());
            }
            n < CHUNK_ENTITIES
        };
        if done {
            snapshot::EntityWriter::finish(&mut buf, entities);
        }
        bytes += buf.len() as u64;
        writer = blocking(move || writer.write(&buf).map(|()| writer)).await?;
        if done {
            break;
        }
    }
    blocking(move || writer.finish()).await?;
    shard.shared.log_stats[shard.id.index()]
        .last_snapshot_ms
        .store(crate::time::now_ms(), std::sync::atomic::Ordering::Relaxed);
    let segments_deleted = retain(shard, from).await;
    Ok(SnapshotStats {
        entities,
        replay_from_lsn: from,
        cut_lsn,
        bytes: bytes + 4,
        segments_deleted,
        took: started.elapsed(),
    })
}

/// Deletes segments wholly before `covered` that fall outside the history retention:
/// they leave the log on the event loop, their files are deleted on the blocking pool.
async fn retain(shard: &Shard, covered: u64) -> usize {
    let keep_bytes = shard.config.retention.bytes;
    let keep_age = shard.config.retention.age;
    let (dir, detached) = {
        let mut log = shard.log.borrow_mut();
        let Some(log) = log.as_mut() else { return 0 };
        (
            log.dir().to_path_buf(),
            log.detach_covered(covered, keep_bytes, keep_age),
        )
    };
    if detached.is_empty() {
        return 0;
    }
    match blocking(move || delete_segments(&dir, detached)).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!(
                "flux: shard {}: could not delete old log segments: {e}",
                shard.id.0
            );
            0
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    glommio::executor().spawn_blocking(f).await
}

/// Takes snapshots while the shard runs: every `FLUX_SNAPSHOT_INTERVAL_S` if anything
/// was logged since the last one, or as soon as `FLUX_SNAPSHOT_LOG_BYTES` of log have
/// accumulated.
pub async fn run(shard: Rc<Shard>) {
    let interval = Duration::from_secs(shard.config.snapshot_interval_s);
    let mut last_at = Instant::now();
    let mut last_lsn = shard.log.borrow().as_ref().map_or(0, ShardLog::write_lsn);
    while !shard.shutting_down() {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        let lsn = shard.log.borrow().as_ref().map_or(0, ShardLog::write_lsn);
        let grown = lsn.saturating_sub(last_lsn);
        let due = (grown > 0 && last_at.elapsed() >= interval)
            || grown >= shard.config.snapshot_log_bytes
            || (shard.snapshot_wanted.get() && last_at.elapsed() >= WANTED_GAP);
        if !due || shard.shutting_down() {
            continue;
        }
        shard.snapshot_wanted.set(false);
        match take(&shard, false).await {
            Ok(st) => {
                last_at = Instant::now();
                last_lsn = st.cut_lsn.max(lsn);
                eprintln!(
                    "flux: shard {}: snapshot of {} entities ({} bytes) in {} ms, replay from LSN {}, {} segment(s) deleted",
                    shard.id.0,
                    st.entities,
                    st.bytes,
                    st.took.as_millis(),
                    st.replay_from_lsn,
                    st.segments_deleted
                );
            }
            Err(e) => eprintln!("flux: shard {}: snapshot failed: {e}", shard.id.0),
        }
    }
}
