//! Start-up recovery of one shard: replay its log into a fresh store on glommio's
//! blocking pool (so the shard keeps answering `/health` with 503 and progress), then
//! install store and log. All shards recover in parallel; the server serves requests
//! once every shard has recovered.
//!
//! Two passes (see `log::txn`): the first reads which cross-shard intents and parts
//! the log holds and meets the other shards on the shared board; the second replays,
//! keeping a part only if its coordinator's intent exists, then appends and applies
//! the parts this shard is missing.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{log_and_apply, FrameShape, Shard};
use crate::event::compact::Section;
use crate::event::{EventBatch, Record};
use crate::log::scan::{self, RecoveryMode};
use crate::log::snapshot::{self, LoadError, SnapshotMeta};
use crate::log::txn::{self, PartRecords, TxnScan, TXN_BYTES};
use crate::log::{
    ShardLog, FRAME_DONE, FRAME_EVENTS, FRAME_EVENTS_V1, FRAME_INTENT, FRAME_INTENT_V1, FRAME_NOTE,
    FRAME_PART, FRAME_PART_V1, FRAME_STREAM, STREAM_HEAD_BYTES,
};
use crate::state::Store;

/// What a replay met besides records, in log order (`Shard::traces`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trace {
    /// A `FRAME_STREAM` frame: its records were message `seq` of stream `key` (with
    /// `txn`, 0 for none), and are applied.
    Stream { key: u16, seq: u64, txn: u64 },
    /// A `FRAME_NOTE` frame's payload.
    Note(Vec<u8>),
}

/// How many records between two updates of the shared progress counter.
const PROGRESS_EVERY_RECORDS: u64 = 65_536;

struct Replay<'a> {
    store: Store,
    records: u64,
    bad_record: Option<u64>,
    shared: &'a super::Shared,
    /// Where a section's property lists are decoded (reused).
    props: Vec<u8>,
    /// A section's records as decoded (reused).
    replayed: Vec<crate::event::compact::Replayed>,
}

impl Replay<'_> {
    /// Applies the records of `part` (of a frame of segment format `v1` or not), which
    /// starts at LSN `base`.
    fn part(&mut self, part: &[u8], base: u64, v1: bool) {
        if v1 {
            self.records(part, base);
        } else {
            self.section(part, base);
        }
    }

    /// Applies the records of the section `bytes` (the whole of them), at LSN `base`.
    /// The section is decoded first, so that each entity can be looked up a group of
    /// records ahead of its merge (as `apply_records` does live): the lookups' cache
    /// misses overlap.
    fn section(&mut self, bytes: &[u8], base: u64) {
        let Some(section) = Section::parse(bytes).filter(|s| s.len() == bytes.len()) else {
            self.bad_record.get_or_insert(base);
            return;
        };
        self.props.clear();
        self.replayed.clear();
        // Whatever decoded before a bad record is applied, as the fixed layout does.
        if section
            .replay(base, &mut self.props, &mut self.replayed)
            .is_none()
        {
            self.bad_record.get_or_insert(base);
        }
        let (props, replayed) = (&self.props, &self.replayed);
        let group = super::PREFETCH_GROUP;
        let prefetch = |store: &crate::state::Store, from: usize| {
            for ahead in replayed.iter().skip(from).take(group) {
                store.prefetch(&bytes[ahead.entity.clone()]);
            }
        };
        prefetch(&self.store, 0);
        for (i, r) in replayed.iter().enumerate() {
            if i % group == 0 {
                prefetch(&self.store, i + group);
            }
            self.store.apply_update(&section.update(r, props), r.lsn);
            self.records += 1;
            if self.records % PROGRESS_EVERY_RECORDS == 0 {
                self.shared
                    .replayed
                    .fetch_add(PROGRESS_EVERY_RECORDS, Ordering::Relaxed);
            }
        }
    }

    fn apply(&mut self, r: &Record<'_>, lsn: u64) {
        self.store.apply(r, lsn);
        self.records += 1;
        if self.records % PROGRESS_EVERY_RECORDS == 0 {
            self.shared
                .replayed
                .fetch_add(PROGRESS_EVERY_RECORDS, Ordering::Relaxed);
        }
    }

    /// Applies the fixed-layout records in `bytes`, which start at LSN `base`.
    fn records(&mut self, bytes: &[u8], base: u64) {
        let mut off = 0;
        while off < bytes.len() {
            // The frame's CRC matched, so a record that does not parse is a format
            // mismatch, not a torn write.
            let Some((r, len)) = Record::parse_stored(&bytes[off..]) else {
                self.bad_record.get_or_insert(base + off as u64);
                return;
            };
            self.apply(&r, base + off as u64);
            off += len;
        }
    }
}

/// Pass 1: the cross-shard intents and parts in this shard's log from `from`.
fn scan_txns(
    dir: &std::path::Path,
    ident: (u32, u32),
    from: u64,
    mode: RecoveryMode,
) -> Result<TxnScan, String> {
    let me = ident.0 as u16;
    let mut found = TxnScan::default();
    let (_, report) = scan::scan(dir, ident, from, mode, |_lsn, kind, payload| match kind {
        FRAME_INTENT | FRAME_INTENT_V1 => {
            if let Some((t, parts)) = txn::decode_intent(payload) {
                found.max_own_seq = found.max_own_seq.max(t & ((1 << 48) - 1));
                let others = parts
                    .iter()
                    .filter(|(s, _, _)| *s != me)
                    .map(|(s, _, b)| {
                        let b = b.to_vec();
                        let part = match kind {
                            FRAME_INTENT => PartRecords::Section(b),
                            _ => PartRecords::V1(b),
                        };
                        (*s, part)
                    })
                    .collect();
                found.intents.insert(t, others);
            }
        }
        FRAME_PART | FRAME_PART_V1 => {
            if let Some(t) = payload.get(..TXN_BYTES) {
                found
                    .parts
                    .insert(u64::from_le_bytes(t.try_into().expect("8 bytes")));
            }
        }
        FRAME_DONE => {
            if let Some(t) = payload.get(..TXN_BYTES) {
                found
                    .done
                    .insert(u64::from_le_bytes(t.try_into().expect("8 bytes")));
            }
        }
        _ => {}
    })
    .map_err(|e| e.to_string())?;
    // This pass is the one that finds (and cuts) a torn tail; the second sees a clean
    // log, so the operator hears about it from here.
    if let Some(cut) = &report.torn_tail {
        eprintln!("flux: shard {me}: cut a torn log tail: {cut}");
    }
    Ok(found)
}

/// The snapshot to start from, if any. A corrupt or foreign snapshot is ignored with
/// a warning when the whole log is still there (full replay), and stops start-up
/// otherwise unless `FLUX_RECOVERY=tolerate`.
fn load_snapshot(
    dir: &std::path::Path,
    ident: (u32, u32),
    mode: RecoveryMode,
) -> Result<(Option<SnapshotMeta>, Store), String> {
    let why = match snapshot::load(dir) {
        Ok((m, store)) if (m.shard, m.shards) == ident => return Ok((Some(m), store)),
        Ok((m, _)) => format!("it belongs to shard {} of {}", m.shard, m.shards),
        Err(LoadError::Missing) => return Ok((None, Store::default())),
        Err(e) => e.to_string(),
    };
    let log_complete = crate::log::naming::list_segments(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .first()
        .is_none_or(|(base, _)| *base == 0);
    if log_complete {
        eprintln!(
            "flux: ignoring the snapshot in {} ({why}); replaying the whole log",
            dir.display()
        );
        return Ok((None, Store::default()));
    }
    match mode {
        RecoveryMode::Tolerate => {
            eprintln!(
                "flux: ignoring the snapshot in {} ({why}); the log before it was deleted, so \
                 entities last written before it are lost (FLUX_RECOVERY=tolerate)",
                dir.display()
            );
            Ok((None, Store::default()))
        }
        RecoveryMode::Strict => Err(format!(
            "the snapshot in {} cannot be used ({why}) and the log before it was deleted; \
             start with FLUX_RECOVERY=tolerate to recover what the remaining log holds",
            dir.display()
        )),
    }
}

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
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let (snap, base) = load_snapshot(&dir, ident, mode)?;
            let from = snap.map_or(0, |m| m.replay_from_lsn);
            let scanned = scan_txns(&dir, ident, from, mode).map(|mut t| {
                t.txn_hw = snap.map_or(0, |m| m.txn_hw);
                t
            });
            // Publish even on failure, so that the other shards are not left waiting.
            let (max_own_seq, scan_err) = match &scanned {
                Ok(s) => (s.max_own_seq.max(s.txn_hw), None),
                Err(e) => (0, Some(e.clone())),
            };
            let decisions = shared.board.exchange(id.0, scanned.unwrap_or_default());
            if let Some(e) = scan_err {
                return Err(e);
            }
            let entities_from_snapshot = base.len();
            let mut replay = Replay {
                store: base,
                records: 0,
                bad_record: None,
                shared: &shared,
                props: Vec::new(),
                replayed: Vec::new(),
            };
            let mut dropped = 0u64;
            let mut traces = Vec::new();
            let opened = ShardLog::open(
                &dir,
                ident,
                segment_bytes,
                from,
                mode,
                |lsn, kind, payload| {
                    let base = lsn + ShardLog::PAYLOAD_OFFSET;
                    let v1 = matches!(kind, FRAME_EVENTS_V1 | FRAME_INTENT_V1 | FRAME_PART_V1);
                    match kind {
                        FRAME_EVENTS | FRAME_EVENTS_V1 => replay.part(payload, base, v1),
                        FRAME_INTENT | FRAME_INTENT_V1 => {
                            if let Some((_, parts)) = txn::decode_intent(payload) {
                                for (s, at, bytes) in parts {
                                    if s == id.0 {
                                        replay.part(bytes, base + at as u64, v1);
                                    }
                                }
                            }
                        }
                        FRAME_STREAM if payload.len() >= STREAM_HEAD_BYTES => {
                            let (head, section) = payload.split_at(STREAM_HEAD_BYTES);
                            let u64_at = |i: usize| {
                                u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"))
                            };
                            traces.push(Trace::Stream {
                                key: u16::from_le_bytes([head[0], head[1]]),
                                seq: u64_at(2),
                                txn: u64_at(10),
                            });
                            replay.part(section, base + STREAM_HEAD_BYTES as u64, false);
                        }
                        FRAME_STREAM => {
                            replay.bad_record.get_or_insert(base);
                        }
                        FRAME_NOTE => traces.push(Trace::Note(payload.to_vec())),
                        FRAME_PART | FRAME_PART_V1 if payload.len() >= TXN_BYTES => {
                            let t = u64::from_le_bytes(
                                payload[..TXN_BYTES].try_into().expect("8 bytes"),
                            );
                            if decisions.keeps(t) {
                                let at = base + TXN_BYTES as u64;
                                replay.part(&payload[TXN_BYTES..], at, v1);
                            } else {
                                dropped += 1;
                            }
                        }
                        _ => {}
                    }
                },
            );
            shared
                .replayed
                .fetch_add(replay.records % PROGRESS_EVERY_RECORDS, Ordering::Relaxed);
            if let Some(lsn) = replay.bad_record {
                return Err(format!(
                    "a record at LSN {lsn} passed its checksum but cannot be decoded \
                     (data written by an incompatible version?)"
                ));
            }
            let (mut log, report) = opened.map_err(|e| e.to_string())?;
            // Parts whose coordinator logged the intent but which never reached us.
            let redone = decisions.redo.len();
            for (t, part) in decisions.redo {
                let batch = match &part {
                    PartRecords::Section(b) => Section::parse(b)
                        .filter(|s| s.len() == b.len())
                        .and_then(|s| s.to_batch(0)),
                    PartRecords::V1(b) => crate::event::valid_stored_records(b).then(|| {
                        let mut batch = EventBatch::default();
                        for r in crate::event::Records::new(b) {
                            batch.count += 1;
                            batch.props += crate::event::Properties(r.properties).count() as u32;
                        }
                        batch.buf = b.clone();
                        batch
                    }),
                };
                let Some(batch) = batch else {
                    return Err(format!(
                        "the intent of cross-shard batch {t:#x} passed its checksum but its \
                         part for this shard cannot be decoded (data written by an \
                         incompatible version?)"
                    ));
                };
                let mut scratch = Vec::new();
                let shape = FrameShape::Part { txn: t };
                log_and_apply(
                    &mut log,
                    &mut replay.store,
                    &mut scratch,
                    shape,
                    &batch,
                    |_| {},
                )
                .map_err(|e| format!("cannot append a recovered part: {e}"))?;
            }
            if snap.is_some() {
                eprintln!(
                    "flux: shard {}: loaded a snapshot of {entities_from_snapshot} entities, \
                     replaying the log from LSN {from}",
                    id.0
                );
            }
            Ok((
                replay.store,
                log,
                report,
                replay.records,
                dropped,
                redone,
                max_own_seq,
                traces,
            ))
        })
        .await;
    let (store, log, report, records, dropped, redone, max_own_seq, traces) =
        outcome.map_err(|e: String| format!("shard {}: recovery failed: {e}", id.0))?;
    if let Some(cut) = &report.torn_tail {
        eprintln!("flux: shard {}: cut a torn log tail: {cut}", id.0);
    }
    for c in &report.skipped_corruption {
        eprintln!(
            "flux: shard {}: skipped corrupt log data (FLUX_RECOVERY=tolerate): {c}",
            id.0
        );
    }
    if dropped > 0 || redone > 0 {
        eprintln!(
            "flux: shard {}: cross-shard batches cut by a crash: {dropped} part(s) without an \
             intent dropped, {redone} missing part(s) re-applied from their intent",
            id.0
        );
    }
    let mut log = log;
    if crate::failpoint::on("enospc-marker") {
        let own = cfg
            .data_dir
            .join(format!("shard-{}", id.0))
            .join(".fail-enospc");
        log.set_enospc_markers(vec![cfg.data_dir.join(".fail-enospc"), own]);
    }
    let entities = store.len();
    *shard.store.borrow_mut() = store;
    *shard.log.borrow_mut() = Some(log);
    shard.txn_seq.set(max_own_seq);
    *shard.traces.borrow_mut() = traces;
    eprintln!(
        "flux: shard {}: recovered {records} records, {entities} entities in {} ms",
        id.0,
        started.elapsed().as_millis()
    );
    Ok(())
}
