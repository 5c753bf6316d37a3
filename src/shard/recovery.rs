//! Start-up recovery of one shard: replay its log into a fresh store on glommio's
//! blocking pool (so the shard keeps answering `/health` with 503 and progress), then
//! install store and log. All shards recover in parallel; the server serves requests
//! once every shard has recovered.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Shard;
use crate::event::Record;
use crate::log::{ShardLog, FRAME_EVENTS};
use crate::state::Store;

/// How many records between two updates of the shared progress counter.
const PROGRESS_EVERY_RECORDS: u64 = 65_536;

/// Replays the log; `Err` is a message for the operator (start-up stops).
pub async fn recover(shard: &Rc<Shard>) -> Result<(), String> {
    let cfg = shard.config.clone();
    let id = shard.id;
    let dir = cfg.data_dir.join(format!("shard-{}", id.0));
    let ident = (u32::from(id.0), shard.count as u32);
    let shared = shard.shared.clone();
    let started = Instant::now();
    let (segment_bytes, mode) = (cfg.segment_bytes, cfg.recovery_mode());
    let outcome = glommio::executor()
        .spawn_blocking(move || {
            let mut store = Store::default();
            let mut records = 0u64;
            let mut bad_record: Option<u64> = None;
            let opened =
                ShardLog::open(&dir, ident, segment_bytes, 0, mode, |lsn, kind, payload| {
                    if kind != FRAME_EVENTS {
                        return;
                    }
                    let base = lsn + ShardLog::PAYLOAD_OFFSET;
                    let mut off = 0;
                    while off < payload.len() {
                        // The frame's CRC matched, so a record that does not parse is a
                        // format mismatch, not a torn write.
                        let Some((r, len)) = Record::parse(&payload[off..]) else {
                            bad_record.get_or_insert(base + off as u64);
                            break;
                        };
                        store.apply(&r, base + off as u64);
                        off += len;
                        records += 1;
                        if records % PROGRESS_EVERY_RECORDS == 0 {
                            shared
                                .replayed
                                .fetch_add(PROGRESS_EVERY_RECORDS, Ordering::Relaxed);
                        }
                    }
                });
            shared
                .replayed
                .fetch_add(records % PROGRESS_EVERY_RECORDS, Ordering::Relaxed);
            match (opened, bad_record) {
                (Ok(_), Some(lsn)) => Err(format!(
                    "a record at LSN {lsn} passed its checksum but cannot be decoded \
                     (data written by an incompatible version?)"
                )),
                (Ok((log, report)), None) => Ok((store, log, report, records)),
                (Err(e), _) => Err(e.to_string()),
            }
        })
        .await;
    let (store, log, report, records) =
        outcome.map_err(|e| format!("shard {}: recovery failed: {e}", id.0))?;
    if let Some(cut) = &report.torn_tail {
        eprintln!("flux: shard {}: cut a torn log tail: {cut}", id.0);
    }
    for c in &report.skipped_corruption {
        eprintln!(
            "flux: shard {}: skipped corrupt log data (FLUX_RECOVERY=tolerate): {c}",
            id.0
        );
    }
    let entities = store.len();
    *shard.store.borrow_mut() = store;
    *shard.log.borrow_mut() = Some(log);
    eprintln!(
        "flux: shard {}: recovered {records} records, {entities} entities in {} ms",
        id.0,
        started.elapsed().as_millis()
    );
    Ok(())
}
