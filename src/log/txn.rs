//! Atomic batches across shards.
//!
//! A batch whose events belong to several shards is made atomic by its coordinator
//! (the shard that parsed it) with an *intent*: before any other shard sees the batch,
//! the coordinator appends one `FRAME_INTENT` frame holding every shard's part, and
//! applies its own part from it. Then each other owner appends its part as a
//! `FRAME_PART` frame tagged with the intent's txn id and applies it. The batch is
//! acknowledged once every part is applied (and, with `FLUX_SYNC=always`, durable).
//!
//! Recovery decides each cross-shard batch from the intent alone:
//!
//! | coordinator's intent | a participant's part | after recovery |
//! |---|---|---|
//! | present | present | applied where it is in each log |
//! | present | missing (crash between appends) | the part is re-appended from the intent and applied: entirely present |
//! | missing (torn/lost) | present | the part is skipped: entirely absent |
//! | missing | missing | nothing |
//! | before the coordinator's snapshot point | present | kept (the intent was durable) |
//! | present with `FRAME_DONE` | anywhere | nothing to re-apply (every part was applied) |
//!
//! So a crash at any instant leaves a batch entirely present or entirely absent, and
//! an acknowledged batch (every part written after its intent) entirely present.
//! Recovery therefore runs in two passes: first every shard reads which intents and
//! parts its log holds and publishes them on a board shared by all shards; then each
//! replays its log, skipping parts without an intent, and finally appends and applies
//! the parts it is missing.
//!
//! Intent payload (LE):
//!
//! ```text
//! +---------+-----------+--------------------------------------------------+
//! | txn u64 | parts u16 | parts × [ shard u16 | len u32 | records (len B) ] |
//! +---------+-----------+--------------------------------------------------+
//! ```
//!
//! A txn id is `coordinator shard << 48 | coordinator's counter`, unique per log
//! lifetime: the counter restarts above the highest id found at recovery.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex};

pub const TXN_BYTES: usize = 8;

pub fn txn_id(coordinator: u16, seq: u64) -> u64 {
    (u64::from(coordinator) << 48) | (seq & ((1 << 48) - 1))
}

pub fn txn_coordinator(txn: u64) -> u16 {
    (txn >> 48) as u16
}

/// Bytes of an intent before its parts: txn and part count.
pub const INTENT_HEAD_BYTES: usize = 10;
/// Bytes before each part's records: shard and length.
pub const INTENT_PART_HEAD_BYTES: usize = 6;

/// Starts an intent of `parts` parts in `out`.
pub fn begin_intent(txn: u64, parts: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&txn.to_le_bytes());
    out.extend_from_slice(&(parts as u16).to_le_bytes());
}

/// Starts `shard`'s part: its records follow, then [`end_part`].
pub fn begin_part(shard: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&shard.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
}

/// Ends the part whose `len` bytes of records are the last of `out`.
pub fn end_part(out: &mut [u8], len: usize) {
    let at = out.len() - len - 4;
    let len = u32::try_from(len).expect("a part is smaller than a segment");
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Encodes an intent; returns the payload and, for each part, its byte offset in it.
pub fn encode_intent(txn: u64, parts: &[(u16, &[u8])], out: &mut Vec<u8>) -> Vec<usize> {
    begin_intent(txn, parts.len(), out);
    let mut offsets = Vec::with_capacity(parts.len());
    for (shard, bytes) in parts {
        begin_part(*shard, out);
        offsets.push(out.len());
        out.extend_from_slice(bytes);
        end_part(out, bytes.len());
    }
    offsets
}

/// One part inside an intent: (shard, offset of its records in the payload, records).
pub type IntentPart<'a> = (u16, usize, &'a [u8]);

/// Decodes an intent into its txn id and parts.
pub fn decode_intent(payload: &[u8]) -> Option<(u64, Vec<IntentPart<'_>>)> {
    let txn = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let n = u16::from_le_bytes(payload.get(8..10)?.try_into().ok()?) as usize;
    let mut off = 10;
    let mut parts = Vec::with_capacity(n);
    for _ in 0..n {
        let shard = u16::from_le_bytes(payload.get(off..off + 2)?.try_into().ok()?);
        let len = u32::from_le_bytes(payload.get(off + 2..off + 6)?.try_into().ok()?) as usize;
        off += 6;
        parts.push((shard, off, payload.get(off..off + len)?));
        off += len;
    }
    (off == payload.len()).then_some((txn, parts))
}

/// A shard's part as an intent holds it, in the layout of the intent's frame kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartRecords {
    /// A section (`event::compact`), from a `FRAME_INTENT`.
    Section(Vec<u8>),
    /// Fixed-layout records, from a `FRAME_INTENT_V1` (segment format 1).
    V1(Vec<u8>),
}

/// What one shard's first recovery pass found.
#[derive(Default, Debug)]
pub struct TxnScan {
    /// Intents this shard coordinated: txn → parts for other shards (shard, records).
    pub intents: HashMap<u64, Vec<(u16, PartRecords)>>,
    /// Parts of other coordinators' batches present in this shard's log.
    pub parts: HashSet<u64>,
    /// Highest txn counter this shard used as coordinator.
    pub max_own_seq: u64,
    /// Intents whose parts were all applied (`FRAME_DONE`): nothing to re-apply.
    pub done: HashSet<u64>,
    /// From this shard's snapshot: every own txn with a counter up to this has its
    /// intent before the snapshot's replay point (durable, not scanned).
    pub txn_hw: u64,
}

/// Where the shards meet between the two recovery passes.
pub struct Board {
    shards: usize,
    scans: Mutex<Vec<Option<TxnScan>>>,
    all_in: Condvar,
}

/// The decisions one shard needs for its second pass.
#[derive(Default, Debug)]
pub struct Decisions {
    /// Txns whose intent was scanned: their parts are kept.
    pub committed: HashSet<u64>,
    /// Per coordinator shard: txns up to this counter have an intent before that
    /// shard's snapshot replay point, so their parts are kept too.
    pub txn_hw: Vec<u64>,
    /// Parts this shard lacks and must append (txn, records).
    pub redo: Vec<(u64, PartRecords)>,
}

impl Decisions {
    /// Whether a part of `txn` found in a log is kept.
    pub fn keeps(&self, txn: u64) -> bool {
        let coord = txn_coordinator(txn) as usize;
        self.committed.contains(&txn)
            || self
                .txn_hw
                .get(coord)
                .is_some_and(|hw| txn & ((1 << 48) - 1) <= *hw)
    }
}

impl Board {
    pub fn new(shards: usize) -> Self {
        Board {
            shards,
            scans: Mutex::new((0..shards).map(|_| None).collect()),
            all_in: Condvar::new(),
        }
    }

    /// Publishes `scan` for `shard`, waits (blocking: this runs on the recovery thread)
    /// until every shard has published, and returns this shard's decisions.
    pub fn exchange(&self, shard: u16, scan: TxnScan) -> Decisions {
        let mut scans = self.scans.lock().unwrap_or_else(|p| p.into_inner());
        scans[shard as usize] = Some(scan);
        self.all_in.notify_all();
        while scans.iter().any(Option::is_none) {
            scans = self.all_in.wait(scans).unwrap_or_else(|p| p.into_inner());
        }
        let mine = scans[shard as usize].as_ref().expect("published above");
        let mut d = Decisions {
            txn_hw: scans
                .iter()
                .map(|s| s.as_ref().map_or(0, |s| s.txn_hw))
                .collect(),
            ..Decisions::default()
        };
        for s in scans.iter().flatten() {
            for (txn, parts) in &s.intents {
                d.committed.insert(*txn);
                if s.done.contains(txn) {
                    continue;
                }
                for (p, records) in parts {
                    if *p == shard && !mine.parts.contains(txn) {
                        d.redo.push((*txn, records.clone()));
                    }
                }
            }
        }
        debug_assert_eq!(scans.len(), self.shards);
        d.redo.sort_by_key(|(txn, _)| *txn);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_round_trip() {
        let mut out = Vec::new();
        let offs = encode_intent(txn_id(1, 7), &[(0, b"aaa"), (1, b""), (3, b"zz")], &mut out);
        let (txn, parts) = decode_intent(&out).unwrap();
        assert_eq!(txn, txn_id(1, 7));
        assert_eq!(txn_coordinator(txn), 1);
        assert_eq!(
            parts,
            vec![
                (0, offs[0], &b"aaa"[..]),
                (1, offs[1], &b""[..]),
                (3, offs[2], &b"zz"[..])
            ]
        );
        for cut in 0..out.len() {
            assert!(decode_intent(&out[..cut]).is_none());
        }
    }

    #[test]
    fn board_decides_commit_and_redo_from_intents() {
        let board = std::sync::Arc::new(Board::new(2));
        let t_ok = txn_id(0, 1);
        let t_missing_part = txn_id(0, 2);
        let t_no_intent = txn_id(0, 3);
        let b2 = board.clone();
        let other = std::thread::spawn(move || {
            let mut scan = TxnScan::default();
            scan.parts.insert(t_ok);
            scan.parts.insert(t_no_intent);
            b2.exchange(1, scan)
        });
        let mut scan0 = TxnScan::default();
        scan0
            .intents
            .insert(t_ok, vec![(1, PartRecords::Section(b"x".to_vec()))]);
        scan0
            .intents
            .insert(t_missing_part, vec![(1, PartRecords::V1(b"y".to_vec()))]);
        let d0 = board.exchange(0, scan0);
        let d1 = other.join().unwrap();
        assert!(d0.redo.is_empty());
        assert!(d1.committed.contains(&t_ok));
        assert!(
            !d1.committed.contains(&t_no_intent),
            "a part without intent is dropped"
        );
        assert_eq!(
            d1.redo,
            vec![(t_missing_part, PartRecords::V1(b"y".to_vec()))]
        );
    }
}
