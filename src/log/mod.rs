//! A shard's durable log: append-only, memory-mapped, preallocated segment files under
//! `FLUX_DATA_DIR/shard-N/`.
//!
//! - `naming`: segment file names (zero-padded base LSN, so name order is log order)
//! - `frame`: one record on disk (`len | crc | lsn | kind | payload`, drawn in frame.rs)
//! - `segment`: one mapped file (header drawn in segment.rs), appends, reads by LSN
//! - `scan`: recovery of one shard's segments: replay, torn-tail cut, corruption
//! - this file: the shard-facing log (roll-over, durability) and frame kinds
//!
//! An LSN is a byte offset in the shard's whole log stream. A frame's payload is an
//! `EventBatch` buffer (`event.rs`): every event or tombstone of one request that this
//! shard owns, so a request's part is atomic within the shard (one CRC).

pub mod durable;
pub mod frame;
pub mod naming;
pub mod scan;
pub mod segment;
pub mod snapshot;
pub mod txn;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use frame::{frame_len, FRAME_HEADER_BYTES};
use scan::{RecoveryMode, ScanError, ScanReport};
use segment::{Segment, SegmentHeader};

/// Frame kinds.
/// Records of one request that only this shard owns: atomic as one frame.
pub const FRAME_EVENTS: u8 = 1;
/// A cross-shard batch as its coordinator logged it (`txn` module): every shard's part.
pub const FRAME_INTENT: u8 = 2;
/// One participant's part of a cross-shard batch: `[txn u64]` then records.
pub const FRAME_PART: u8 = 3;
/// The coordinator saw every part of `[txn u64]` applied.
pub const FRAME_DONE: u8 = 4;

/// Default segment size: large enough that roll-overs are rare (one per ~300k small
/// events), small enough that retention can free space in useful steps.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
pub const SEGMENT_BYTES_MIN: u64 = 1024 * 1024;

/// The log of one shard.
pub struct ShardLog {
    dir: PathBuf,
    shard: (u32, u32),
    segment_bytes: u64,
    /// Open segments, oldest first; the last one takes appends.
    segments: Vec<Segment>,
    /// A duplicate descriptor per segment, for fdatasync on the blocking pool.
    sync_files: Vec<Arc<File>>,
    /// Index of the oldest segment that may hold data not yet synced.
    unsynced_from: usize,
    /// Test hook (`FLUX_FAILPOINT=enospc-marker`): while this file exists, creating a
    /// segment fails with ENOSPC, as on a full disk.
    enospc_marker: Option<PathBuf>,
    /// New segments start at or above this: past a damaged last segment that a
    /// tolerant recovery skipped (its file keeps its name).
    base_floor: u64,
}

/// Why an append could not be made.
#[derive(Debug)]
pub enum AppendError {
    /// No space for a new segment (ENOSPC) or another I/O error creating one.
    Io(io::Error),
    /// The payload is larger than a segment can hold.
    TooLarge,
}

impl ShardLog {
    /// Opens (recovers) the log in `dir`, calling `on_frame(lsn, kind, payload)` for
    /// every frame at or after `from_lsn`.
    pub fn open(
        dir: &Path,
        shard: (u32, u32),
        segment_bytes: u64,
        from_lsn: u64,
        mode: RecoveryMode,
        on_frame: impl FnMut(u64, u8, &[u8]),
    ) -> Result<(ShardLog, ScanReport), ScanError> {
        std::fs::create_dir_all(dir).map_err(ScanError::Io)?;
        let (segments, report) = scan::scan(dir, shard, from_lsn, mode, on_frame)?;
        let sync_files = segments
            .iter()
            .map(|s| s.file().try_clone().map(Arc::new))
            .collect::<io::Result<Vec<_>>>()
            .map_err(ScanError::Io)?;
        let unsynced_from = segments.len().saturating_sub(1);
        Ok((
            ShardLog {
                dir: dir.to_path_buf(),
                shard,
                segment_bytes,
                segments,
                sync_files,
                unsynced_from,
                enospc_marker: None,
                base_floor: report.end_lsn,
            },
            report,
        ))
    }

    /// LSN where the next frame goes.
    pub fn write_lsn(&self) -> u64 {
        self.segments.last().map_or(0, Segment::write_lsn)
    }

    /// Makes room for a frame with `payload_len` bytes of payload and returns the LSN
    /// it will get; rolls to a new segment when the active one is full.
    pub fn reserve(&mut self, payload_len: usize) -> Result<u64, AppendError> {
        let need = frame_len(payload_len) as u64;
        if need + segment::SEGMENT_HEADER_BYTES as u64 > self.segment_bytes {
            return Err(AppendError::TooLarge);
        }
        let fits = self
            .segments
            .last()
            .is_some_and(|s| s.write_lsn() + need <= s.end_lsn());
        if !fits {
            // Torn tails are only cut in the last segment, so the one being left must
            // be complete on disk before another follows it. This blocks the shard for
            // one fdatasync per segment (every `segment_bytes` of log).
            if let Some(last) = self.segments.last() {
                last.file().sync_data().map_err(AppendError::Io)?;
            }
            if self.enospc_marker.as_ref().is_some_and(|m| m.exists()) {
                return Err(AppendError::Io(io::Error::from_raw_os_error(libc::ENOSPC)));
            }
            let base = self
                .segments
                .last()
                .map_or(0, Segment::end_lsn)
                .max(self.base_floor);
            let seg = Segment::create(
                &self.dir,
                SegmentHeader {
                    shard_id: self.shard.0,
                    shard_count: self.shard.1,
                    base_lsn: base,
                    size_bytes: self.segment_bytes,
                },
            )
            .map_err(AppendError::Io)?;
            let f = seg.file().try_clone().map_err(AppendError::Io)?;
            self.segments.push(seg);
            self.sync_files.push(Arc::new(f));
        }
        Ok(self.write_lsn())
    }

    /// Appends a frame; `reserve` must have been called for this payload length just
    /// before. Returns the LSN just past the frame (what a sync must cover).
    pub fn append(&mut self, kind: u8, payload: &[u8]) -> u64 {
        self.append_with(kind, payload.len(), |dst| dst.copy_from_slice(payload))
    }

    /// Appends a frame whose payload `fill` writes in place; `reserve(len)` must have
    /// been called just before. Returns the LSN just past the frame.
    pub fn append_with(&mut self, kind: u8, len: usize, fill: impl FnOnce(&mut [u8])) -> u64 {
        let seg = self
            .segments
            .last_mut()
            .expect("reserve() creates a segment");
        let lsn = seg.append(kind, len, fill);
        assert!(lsn.is_some(), "append after reserve must fit");
        seg.write_lsn()
    }

    /// Descriptors to fdatasync so that everything appended so far is durable, the
    /// LSN that syncing them covers, and a token for `mark_synced`.
    pub fn sync_targets(&self) -> (Vec<Arc<File>>, u64, usize) {
        let files = self.sync_files[self.unsynced_from..].to_vec();
        (files, self.write_lsn(), self.segments.len())
    }

    /// After a successful sync of `sync_targets`: only the then-active segment (and
    /// newer ones) can still hold unsynced data.
    pub fn mark_synced(&mut self, token: usize) {
        self.unsynced_from = self.unsynced_from.max(token.saturating_sub(1));
    }

    /// The bytes from `lsn` to the end of its segment (a record inside a frame, for
    /// history); callers bound-check what they parse.
    pub fn bytes_at(&self, lsn: u64) -> Option<&[u8]> {
        let i = self.segments.partition_point(|s| s.end_lsn() <= lsn);
        let seg = self.segments.get(i)?;
        let off = lsn.checked_sub(seg.base_lsn())? as usize;
        seg.bytes().get(off..)
    }

    /// Byte offset of a frame's payload relative to its LSN.
    pub const PAYLOAD_OFFSET: u64 = FRAME_HEADER_BYTES as u64;

    /// Deletes segments that end at or before `covered` (a snapshot's replay point),
    /// oldest first, while what remains after them is at least `keep_bytes` or while
    /// they are older than `keep_age` (by modification time). Never the active one.
    pub fn remove_covered(
        &mut self,
        covered: u64,
        keep_bytes: u64,
        keep_age: Option<std::time::Duration>,
    ) -> io::Result<usize> {
        let mut removed = 0;
        while self.segments.len() > 1 {
            let first = &self.segments[0];
            if first.end_lsn() > covered {
                break;
            }
            let newer_bytes = self.write_lsn() - first.end_lsn();
            let old = keep_age.is_some_and(|age| {
                std::fs::metadata(first.path())
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|e| e > age)
            });
            if newer_bytes < keep_bytes && !old {
                break;
            }
            let path = first.path().to_path_buf();
            std::fs::remove_file(&path)?;
            self.segments.remove(0);
            self.sync_files.remove(0);
            self.unsynced_from = self.unsynced_from.saturating_sub(1);
            removed += 1;
        }
        if removed > 0 {
            std::fs::File::open(&self.dir)?.sync_all()?;
        }
        Ok(removed)
    }

    /// Arms the ENOSPC test hook (see `enospc_marker`).
    pub fn set_enospc_marker(&mut self, marker: PathBuf) {
        self.enospc_marker = Some(marker);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
