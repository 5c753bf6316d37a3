//! A shard's durable log: append-only, memory-mapped, preallocated segment files under
//! `FLUX_DATA_DIR/shard-N/`.
//!
//! - `naming`: segment file names (zero-padded base LSN, so name order is log order)
//! - `frame`: one record on disk (`len | crc | lsn | kind | payload`, drawn in frame.rs)
//! - `segment`: one mapped file (header drawn in segment.rs), appends, reads by LSN
//! - `scan`: recovery of one shard's segments: replay, torn-tail cut, corruption
//! - this file: the shard-facing log (roll-over, durability) and frame kinds
//!
//! An LSN is a byte offset in the shard's whole log stream. A frame's records are a
//! section (`event::compact`): every event or tombstone of one request that this shard
//! owns, so a request's part is atomic within the shard (one CRC). A record's LSN is
//! where its bytes start.

pub mod backup;
pub mod durable;
pub mod frame;
pub mod naming;
pub mod scan;
pub mod segment;
pub mod snapshot;
pub mod txn;

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use frame::{frame_len, FRAME_HEADER_BYTES};
use scan::{RecoveryMode, ScanError, ScanReport};
use segment::{Segment, SegmentHeader};

// Frame kinds. A frame's kind says how its payload is laid out; the records in it
// are sections (`event::compact`) in this build's kinds and fixed-layout records in
// the `_V1` kinds of segment format 1, which are still read (old logs recover).
/// Records of one request that only this shard owns, one section: atomic as one frame.
pub const FRAME_EVENTS: u8 = 6;
/// A cross-shard batch as its coordinator logged it (`txn` module): every shard's
/// part, each a section.
pub const FRAME_INTENT: u8 = 7;
/// One participant's part of a cross-shard batch: `[txn u64]` then its section.
pub const FRAME_PART: u8 = 8;
/// The coordinator saw every part of `[txn u64]` applied.
pub const FRAME_DONE: u8 = 4;
/// One message of an ordered stream outside this log (cluster mode: a group's
/// JetStream message): `[key u16][seq u64][txn u64]` (see [`STREAM_HEAD_BYTES`]), then
/// its section. Recovery applies it like [`FRAME_EVENTS`] and reports where it came
/// from, so the layer above knows which stream position the state reflects.
pub const FRAME_STREAM: u8 = 9;
/// Bytes before a [`FRAME_STREAM`] frame's section.
pub const STREAM_HEAD_BYTES: usize = 2 + 8 + 8;
/// A note of the layers above, opaque to the log and the shard: recovery hands each
/// back in log order (cluster mode: `cluster::chain`).
pub const FRAME_NOTE: u8 = 10;
/// [`FRAME_EVENTS`] of segment format 1: fixed-layout records (`event.rs`).
pub const FRAME_EVENTS_V1: u8 = 1;
/// [`FRAME_INTENT`] of segment format 1.
pub const FRAME_INTENT_V1: u8 = 2;
/// [`FRAME_PART`] of segment format 1.
pub const FRAME_PART_V1: u8 = 3;

/// Default segment size: large enough that roll-overs are rare (one per ~300k small
/// events), small enough that retention can free space in useful steps.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
pub const SEGMENT_BYTES_MIN: u64 = 1024 * 1024;

/// A segment's first frame after a roll-over: `[prev_end_lsn u64]`, the LSN just past
/// the previous segment's last frame. Recovery compares it with where that segment's
/// frames really end, which tells a lost tail (a power loss before the old segment was
/// synced, while the new one already reached the disk) from the end of the log; see
/// `scan`.
pub const FRAME_SEAL: u8 = 5;
/// Payload bytes of a seal frame.
pub const SEAL_PAYLOAD_BYTES: usize = 8;

/// The log of one shard.
///
/// Roll-over does not wait on the disk: the next segment is prepared ahead of need on
/// the blocking pool (`spare_job` / `install_spare`: posix_fallocate, header, fsync)
/// under a name recovery ignores, and rolling renames it into place and writes its
/// seal frame. The old segment is synced by the next regular sync with everything
/// else (`sync_targets`), the new name by a directory fsync in the same sync. Only
/// when no spare is ready (the pool fell behind, or creating it failed) does a
/// roll-over create the segment on the event loop, as the last resort
/// (`rolls_without_spare` counts them).
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
    /// Segments taken out of the front by retention since open: a sync job names
    /// segments by `detached + index`, which retention running during the sync does
    /// not shift.
    detached: usize,
    /// Segment names made (by roll-overs) since the last directory fsync started.
    names_unsynced: u64,
    /// The next segment, prepared off the event loop; `None` until it is ready.
    spare: Option<Segment>,
    /// Set once the log can no longer be trusted to hold what was acknowledged (a
    /// failed fdatasync, or a committed part that could not be appended): every
    /// append is refused from then on. Only a restart (recovery from what is really on
    /// disk) clears it.
    failed: Option<Arc<str>>,
    /// Test hook (`FLUX_FAILPOINT=enospc-marker`): while one of these files exists,
    /// creating a segment fails with ENOSPC, as on a full disk.
    enospc_markers: Vec<PathBuf>,
    /// New segments start at or above this: past a damaged last segment that a
    /// tolerant recovery skipped (its file keeps its name).
    base_floor: u64,
    /// Roll-overs that had to create their segment on the event loop.
    pub rolls_without_spare: u64,
    /// Roll-overs in all.
    pub rolls: u64,
    /// When each segment stopped taking appends (its last write), by index; the active
    /// one is `None`. Retention by age reads these instead of the file's mtime.
    sealed_at: Vec<Option<std::time::SystemTime>>,
}

/// Why an append could not be made.
#[derive(Debug)]
pub enum AppendError {
    /// No space for a new segment (ENOSPC) or another I/O error creating one.
    Io(io::Error),
    /// The payload is larger than a segment can hold.
    TooLarge,
    /// The log failed earlier (see `ShardLog::fail`); the cause.
    Failed(Arc<str>),
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::Io(e) => write!(f, "cannot create a log segment: {e}"),
            AppendError::TooLarge => f.write_str("request part larger than a log segment"),
            AppendError::Failed(cause) => write!(
                f,
                "this shard's log failed ({cause}); it refuses writes until the server is \
                 restarted"
            ),
        }
    }
}

/// Deletes segments taken out of a log (`ShardLog::detach_covered`, a stale spare):
/// unmaps them, removes their files, and makes the removal durable. Blocking: run it
/// on the blocking pool. Returns how many were deleted.
pub fn delete_segments(dir: &Path, segments: Vec<Segment>) -> io::Result<usize> {
    let n = segments.len();
    for seg in segments {
        let path = seg.path().to_path_buf();
        drop(seg);
        std::fs::remove_file(&path)?;
    }
    if n > 0 {
        naming::sync_dir(dir)?;
    }
    Ok(n)
}

/// A spare segment to create on the blocking pool (`ShardLog::spare_job`).
pub struct SpareJob {
    dir: PathBuf,
    header: SegmentHeader,
    enospc_markers: Vec<PathBuf>,
}

impl SpareJob {
    /// Creates the spare (blocking: posix_fallocate and fsync). Its pages are not
    /// faulted in ahead (tuning.md, "Page faults in a fresh segment").
    pub fn run(self) -> io::Result<Segment> {
        if self.enospc_markers.iter().any(|m| m.exists()) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Segment::create_spare(&self.dir, self.header)
    }
}

/// What `sync_targets` asks the blocking pool to make durable.
pub struct SyncJob {
    pub files: Vec<Arc<File>>,
    /// Fsync this directory too (a roll-over made a new segment name).
    pub dir: Option<PathBuf>,
    /// Everything below this LSN is durable once the job succeeded.
    pub target_lsn: u64,
    token: (usize, u64),
}

impl SyncJob {
    /// fdatasync of every file, then the directory (blocking).
    pub fn run(&self) -> io::Result<()> {
        for f in &self.files {
            f.sync_data()?;
        }
        if let Some(dir) = &self.dir {
            naming::sync_dir(dir)?;
        }
        Ok(())
    }
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
        naming::remove_spares(dir).map_err(ScanError::Io)?;
        let (segments, report) = scan::scan(dir, shard, from_lsn, mode, on_frame)?;
        let sync_files = segments
            .iter()
            .map(|s| s.file().try_clone().map(Arc::new))
            .collect::<io::Result<Vec<_>>>()
            .map_err(ScanError::Io)?;
        let sealed_at = segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (i + 1 < segments.len())
                    .then(|| s.file().metadata().and_then(|m| m.modified()).ok())
                    .flatten()
            })
            .collect();
        let unsynced_from = segments.len().saturating_sub(1);
        Ok((
            ShardLog {
                dir: dir.to_path_buf(),
                shard,
                segment_bytes,
                segments,
                sync_files,
                unsynced_from,
                detached: 0,
                names_unsynced: 0,
                spare: None,
                failed: None,
                enospc_markers: Vec::new(),
                base_floor: report.end_lsn,
                rolls_without_spare: 0,
                rolls: 0,
                sealed_at,
            },
            report,
        ))
    }

    /// LSN where the next frame goes.
    pub fn write_lsn(&self) -> u64 {
        self.segments.last().map_or(0, Segment::write_lsn)
    }

    /// The cause, once the log has failed.
    pub fn failed(&self) -> Option<&Arc<str>> {
        self.failed.as_ref()
    }

    /// Marks the log failed: every later append is refused with `cause`.
    pub fn fail(&mut self, cause: &str) {
        if self.failed.is_none() {
            self.failed = Some(cause.into());
        }
    }

    /// Base LSN of the segment that follows the active one.
    fn next_base(&self) -> u64 {
        self.segments
            .last()
            .map_or(0, Segment::end_lsn)
            .max(self.base_floor)
    }

    /// Bytes a fresh segment has for frames (after its header and seal frame).
    fn fresh_room(&self) -> u64 {
        self.segment_bytes
            - segment::SEGMENT_HEADER_BYTES as u64
            - frame_len(SEAL_PAYLOAD_BYTES) as u64
    }

    /// Room left in the active segment; none in a segment of an older format, so
    /// that the first append after an upgrade rolls to a new one (a segment's records
    /// are all of one format, which is how a record read by its LSN is decoded).
    fn active_room(&self) -> u64 {
        self.segments
            .last()
            .filter(|s| s.format() == segment::SEGMENT_VERSION)
            .map_or(0, |s| s.end_lsn() - s.write_lsn())
    }

    /// Makes room for a frame with `payload_len` bytes of payload and returns the LSN
    /// it will get; rolls to a new segment when the active one is full.
    pub fn reserve(&mut self, payload_len: usize) -> Result<u64, AppendError> {
        if let Some(cause) = &self.failed {
            return Err(AppendError::Failed(cause.clone()));
        }
        let need = frame_len(payload_len) as u64;
        if need > self.fresh_room() {
            return Err(AppendError::TooLarge);
        }
        if self.segments.is_empty() || need > self.active_room() {
            self.roll()?;
        }
        Ok(self.write_lsn())
    }

    /// Switches appends to the next segment: the spare if one is ready, else one
    /// created here (blocking). Writes the new segment's seal frame.
    fn roll(&mut self) -> Result<(), AppendError> {
        let base = self.next_base();
        let seg = match self.spare.take() {
            Some(mut spare) if spare.base_lsn() == base => {
                spare.promote().map_err(AppendError::Io)?;
                self.names_unsynced += 1;
                spare
            }
            stale => {
                if let Some(stale) = stale {
                    // Cannot happen while spares are made for `next_base`; harmless.
                    let _ = std::fs::remove_file(stale.path());
                }
                if self.enospc_markers.iter().any(|m| m.exists()) {
                    return Err(AppendError::Io(io::Error::from_raw_os_error(libc::ENOSPC)));
                }
                self.rolls_without_spare += 1;
                Segment::create(&self.dir, self.header_for(base)).map_err(AppendError::Io)?
            }
        };
        let f = seg.file().try_clone().map_err(AppendError::Io)?;
        let prev_end = self.segments.last().map(Segment::write_lsn);
        if let Some(at) = self.sealed_at.last_mut() {
            *at = Some(std::time::SystemTime::now());
        }
        self.segments.push(seg);
        self.sync_files.push(Arc::new(f));
        self.sealed_at.push(None);
        self.rolls += 1;
        if let Some(prev_end) = prev_end {
            self.append(FRAME_SEAL, &prev_end.to_le_bytes());
        }
        Ok(())
    }

    fn header_for(&self, base: u64) -> SegmentHeader {
        SegmentHeader {
            shard_id: self.shard.0,
            shard_count: self.shard.1,
            base_lsn: base,
            size_bytes: self.segment_bytes,
        }
    }

    /// The spare segment to prepare, if none is ready for the next roll-over (and the
    /// log has not failed).
    pub fn spare_job(&self) -> Option<SpareJob> {
        let base = self.next_base();
        let ready = self.spare.as_ref().is_some_and(|s| s.base_lsn() == base);
        (!ready && self.failed.is_none()).then(|| SpareJob {
            dir: self.dir.clone(),
            header: self.header_for(base),
            enospc_markers: self.enospc_markers.clone(),
        })
    }

    /// Installs a spare made by a `SpareJob`; gives it back when it is no longer the
    /// next segment (the caller deletes it off the event loop).
    pub fn install_spare(&mut self, seg: Segment) -> Option<Segment> {
        if seg.base_lsn() != self.next_base() || self.spare.is_some() {
            return Some(seg);
        }
        self.spare = Some(seg);
        None
    }

    /// Whether a spare is ready for the next roll-over.
    pub fn spare_ready(&self) -> bool {
        self.spare
            .as_ref()
            .is_some_and(|s| s.base_lsn() == self.next_base())
    }

    /// Frame bytes this log can take without creating a segment on the event loop:
    /// what the active segment has left, or a fresh segment's room when a spare is
    /// ready (a roll-over into it cannot fail); 0 once the log has failed. Cross-shard
    /// batches hold room against it before they commit (`shard::txn`).
    pub fn capacity(&self) -> u64 {
        if self.failed.is_some() {
            return 0;
        }
        let active = self.active_room();
        if self.spare_ready() {
            active.max(self.fresh_room())
        } else {
            active
        }
    }

    /// Makes [`capacity`](Self::capacity) at least a frame of `payload_len` bytes:
    /// when neither the active segment nor a spare has room, the spare is made now (on
    /// the caller's thread; the log keeper normally has one ready). The error says why
    /// the room cannot be had (a failed log, no space, a part larger than a segment).
    pub fn ensure_room(&mut self, payload_len: usize) -> Result<(), AppendError> {
        if let Some(cause) = &self.failed {
            return Err(AppendError::Failed(cause.clone()));
        }
        let need = frame_len(payload_len) as u64;
        if need > self.fresh_room() {
            return Err(AppendError::TooLarge);
        }
        if self.capacity() >= need {
            return Ok(());
        }
        if self.enospc_markers.iter().any(|m| m.exists()) {
            return Err(AppendError::Io(io::Error::from_raw_os_error(libc::ENOSPC)));
        }
        let base = self.next_base();
        let seg =
            Segment::create_spare(&self.dir, self.header_for(base)).map_err(AppendError::Io)?;
        self.rolls_without_spare += 1;
        if let Some(stale) = self.spare.replace(seg) {
            let _ = std::fs::remove_file(stale.path());
        }
        Ok(())
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

    /// Bytes of the segment files the log holds (each is preallocated to its size);
    /// the spare being prepared is not counted.
    pub fn held_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes().len() as u64).sum()
    }

    /// What to make durable so that everything appended so far is: the segments that
    /// may hold unsynced data (oldest first) and, after a roll-over, the directory.
    pub fn sync_targets(&self) -> SyncJob {
        SyncJob {
            files: self.sync_files[self.unsynced_from..].to_vec(),
            dir: (self.names_unsynced > 0).then(|| self.dir.clone()),
            target_lsn: self.write_lsn(),
            token: (self.detached + self.segments.len(), self.names_unsynced),
        }
    }

    /// After `job` succeeded: only the then-active segment (and newer ones) can still
    /// hold unsynced data, and the names it covered are durable.
    pub fn mark_synced(&mut self, job: &SyncJob) {
        let (segments, names) = job.token;
        // The job's segment count, in today's indexes (retention may have detached
        // segments while the job ran off the event loop).
        let segments = segments.saturating_sub(self.detached);
        self.unsynced_from = self.unsynced_from.max(segments.saturating_sub(1));
        if job.dir.is_some() {
            self.names_unsynced -= names.min(self.names_unsynced);
        }
    }

    /// The bytes from `lsn` to the end of its segment (a record inside a frame, for
    /// history); callers bound-check what they parse.
    pub fn bytes_at(&self, lsn: u64) -> Option<&[u8]> {
        let i = self.segments.partition_point(|s| s.end_lsn() <= lsn);
        let seg = self.segments.get(i)?;
        let off = lsn.checked_sub(seg.base_lsn())? as usize;
        seg.bytes().get(off..)
    }

    /// Decodes the event record at `lsn` (history) into `out` in the in-memory layout
    /// (`event.rs`), whichever format its segment has; `None` if the log no longer
    /// holds it or it does not decode.
    pub fn read_record(&self, lsn: u64, out: &mut Vec<u8>) -> Option<()> {
        let i = self.segments.partition_point(|s| s.end_lsn() <= lsn);
        let seg = self.segments.get(i)?;
        let at = seg
            .bytes()
            .get(usize::try_from(lsn.checked_sub(seg.base_lsn())?).ok()?..)?;
        if seg.format() == segment::SEGMENT_VERSION {
            let section_of = |section_lsn: u64| {
                let off = section_lsn.checked_sub(seg.base_lsn())?;
                seg.bytes().get(usize::try_from(off).ok()?..)
            };
            crate::event::compact::decode_at(at, lsn, section_of, out)
        } else {
            let (_, len) = crate::event::Record::parse_stored(at)?;
            out.extend_from_slice(&at[..len]);
            Some(())
        }
    }

    /// Byte offset of a frame's payload relative to its LSN.
    pub const PAYLOAD_OFFSET: u64 = FRAME_HEADER_BYTES as u64;

    /// Takes out of the log the segments that end at or before `covered` (a
    /// snapshot's replay point), oldest first, while what remains after them is at
    /// least `keep_bytes` or while they stopped taking appends longer than `keep_age`
    /// ago. Never the active one. The caller deletes their files off the event loop
    /// (`delete_segments`); history reads stop at the first LSN they no longer hold.
    pub fn detach_covered(
        &mut self,
        covered: u64,
        keep_bytes: u64,
        keep_age: Option<std::time::Duration>,
    ) -> Vec<Segment> {
        let mut detached = Vec::new();
        while self.segments.len() > 1 {
            let first = &self.segments[0];
            if first.end_lsn() > covered {
                break;
            }
            let newer_bytes = self.write_lsn() - first.end_lsn();
            let old = keep_age.is_some_and(|age| {
                self.sealed_at[0]
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|e| e > age)
            });
            if newer_bytes < keep_bytes && !old {
                break;
            }
            detached.push(self.segments.remove(0));
            self.sync_files.remove(0);
            self.sealed_at.remove(0);
            self.unsynced_from = self.unsynced_from.saturating_sub(1);
            self.detached += 1;
        }
        detached
    }

    /// Arms the ENOSPC test hook (see `enospc_markers`).
    pub fn set_enospc_markers(&mut self, markers: Vec<PathBuf>) {
        self.enospc_markers = markers;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The segment files in log order, with their base LSNs (a backup's cut).
    pub fn segment_files(&self) -> Vec<(PathBuf, u64)> {
        self.segments
            .iter()
            .map(|s| (s.path().to_path_buf(), s.base_lsn()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! The writer (`ShardLog`: spares, seals, holds, retention) paired with the reader
    //! (`scan`), including what a power loss can leave behind a roll-over.

    use super::*;
    use std::os::unix::fs::FileExt;

    const SEGMENT_BYTES: u64 = 4096;
    /// 100-byte payloads: 120-byte frames.
    const PAYLOAD_BYTES: usize = 100;
    const SHARD: (u32, u32) = (0, 1);

    fn open(dir: &Path) -> (ShardLog, Vec<u64>, ScanReport) {
        let mut lsns = Vec::new();
        let (log, report) = ShardLog::open(
            dir,
            SHARD,
            SEGMENT_BYTES,
            0,
            RecoveryMode::Strict,
            |lsn, kind, _| {
                if kind != FRAME_SEAL {
                    lsns.push(lsn);
                }
            },
        )
        .unwrap_or_else(|e| panic!("open failed: {e}"));
        (log, lsns, report)
    }

    /// Appends `n` frames; returns their LSNs.
    fn append_n(log: &mut ShardLog, n: usize) -> Vec<u64> {
        (0..n)
            .map(|i| {
                let lsn = log.reserve(PAYLOAD_BYTES).unwrap();
                log.append(FRAME_EVENTS, &[i as u8; PAYLOAD_BYTES]);
                lsn
            })
            .collect()
    }

    fn prepare_spare(log: &mut ShardLog) {
        let job = log.spare_job().expect("a spare is wanted");
        assert!(log.install_spare(job.run().unwrap()).is_none());
    }

    /// A log in `dir` that rolled over into a spare: 34 frames, the LSNs written and
    /// how many of them are in segment 0. The log is closed.
    fn rolled_once(dir: &Path) -> (Vec<u64>, usize) {
        let (mut log, _, _) = open(dir);
        prepare_spare(&mut log);
        let written = append_n(&mut log, 34);
        let in_seg0 = written.iter().filter(|l| **l < SEGMENT_BYTES).count();
        assert!(in_seg0 < written.len(), "rolled");
        (written, in_seg0)
    }

    /// Where the frames of segment 0 end, given the LSNs of every frame written.
    fn segment0_end(written: &[u64]) -> u64 {
        let last = written.iter().copied().filter(|l| *l < SEGMENT_BYTES).max();
        last.expect("frames in segment 0") + frame_len(PAYLOAD_BYTES) as u64
    }

    fn spares(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(naming::SPARE_SUFFIX)
            })
            .count()
    }

    fn seg_path(dir: &Path, base: u64) -> PathBuf {
        dir.join(naming::segment_file_name(base))
    }

    #[test]
    fn a_roll_over_takes_the_prepared_spare_and_seals_the_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = open(dir.path());
        let mut written = append_n(&mut log, 1);
        prepare_spare(&mut log);
        assert_eq!(spares(dir.path()), 1);
        written.extend(append_n(&mut log, 40));
        // The first segment was made on the first append (no spare yet); the roll
        // into segment 1 took the spare.
        assert_eq!((log.rolls, log.rolls_without_spare), (2, 1));
        assert_eq!(spares(dir.path()), 0);
        // The new segment opens with a seal naming where segment 0's frames end.
        let seg0_end = segment0_end(&written);
        let job = log.sync_targets();
        assert!(job.dir.is_some(), "the new name needs a directory fsync");
        job.run().unwrap();
        log.mark_synced(&job);
        assert!(log.sync_targets().dir.is_none());
        let seg1 = std::fs::read(seg_path(dir.path(), SEGMENT_BYTES)).unwrap();
        match frame::read_frame(&seg1[64..], SEGMENT_BYTES + 64) {
            frame::FrameRead::Frame { kind, payload, .. } => {
                assert_eq!(kind, FRAME_SEAL);
                assert_eq!(payload, seg0_end.to_le_bytes());
            }
            _ => panic!("no seal frame"),
        }
        drop(log);
        let (_, replayed, report) = open(dir.path());
        assert_eq!(replayed, written);
        assert!(report.torn_tail.is_none());
        // A leftover spare is deleted by the next open.
        let (mut log, _, _) = open(dir.path());
        prepare_spare(&mut log);
        drop(log);
        assert_eq!(spares(dir.path()), 1);
        open(dir.path());
        assert!(naming::list_segments(dir.path()).unwrap().len() == 2);
        assert_eq!(spares(dir.path()), 0);
    }

    #[test]
    fn without_a_spare_a_roll_over_still_works_and_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = open(dir.path());
        let written = append_n(&mut log, 80);
        assert_eq!(log.rolls, log.rolls_without_spare);
        assert!(log.rolls >= 2);
        drop(log);
        let (_, replayed, _) = open(dir.path());
        assert_eq!(replayed, written);
    }

    /// Two segments written, then segment 0 loses what a power loss can take before
    /// it was synced: its frames from `keep` on. The new segment (with its seal)
    /// reached the disk. `damage` writes what is left at the first lost frame.
    fn lost_tail_case(damage: impl FnOnce(&Path, u64), reason_part: &str) {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = open(dir.path());
        prepare_spare(&mut log);
        let written = append_n(&mut log, 40);
        let in_seg0 = written.iter().filter(|l| **l < SEGMENT_BYTES).count();
        drop(log);
        let keep = in_seg0 - 3;
        let cut_lsn = written[keep];
        let seg0 = seg_path(dir.path(), 0);
        let f = std::fs::OpenOptions::new().write(true).open(&seg0).unwrap();
        f.write_all_at(&vec![0u8; (SEGMENT_BYTES - cut_lsn) as usize], cut_lsn)
            .unwrap();
        damage(&seg0, cut_lsn);

        let (mut log, replayed, report) = open(dir.path());
        assert_eq!(
            replayed,
            written[..keep],
            "the log ends where segment 0 does"
        );
        let cut = report.torn_tail.expect("the cut is reported");
        assert_eq!((cut.path, cut.lsn), (seg0.clone(), cut_lsn));
        assert!(cut.reason.contains(reason_part), "{}", cut.reason);
        assert!(cut.dropped_bytes > 0);
        assert_eq!(report.end_lsn, cut_lsn);
        assert!(!seg_path(dir.path(), SEGMENT_BYTES).exists());
        assert!(dir
            .path()
            .join(format!("{}.lost", naming::segment_file_name(SEGMENT_BYTES)))
            .exists());
        // Appends continue at the cut and roll into a new segment 1, cleanly.
        let more = append_n(&mut log, 40);
        assert_eq!(more[0], cut_lsn);
        drop(log);
        let (_, replayed, report) = open(dir.path());
        assert!(report.torn_tail.is_none());
        let mut all = written[..keep].to_vec();
        all.extend(more);
        assert_eq!(replayed, all);
    }

    #[test]
    fn a_lost_tail_before_a_sealed_segment_ends_the_log_there() {
        lost_tail_case(|_, _| {}, "seal expects more");
    }

    #[test]
    fn a_torn_frame_before_a_sealed_segment_is_a_torn_tail() {
        // Half of the first lost frame reached the disk: a bad frame, zeros after.
        lost_tail_case(
            |seg0, lsn| {
                let f = std::fs::OpenOptions::new().write(true).open(seg0).unwrap();
                let mut half = vec![0u8; 60];
                half[..4].copy_from_slice(&120u32.to_le_bytes());
                half[4..].fill(7);
                f.write_all_at(&half, lsn).unwrap();
            },
            "",
        );
    }

    #[test]
    fn garbage_where_the_seal_says_the_segment_ended_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = open(dir.path());
        prepare_spare(&mut log);
        let written = append_n(&mut log, 40);
        let seg0_end = segment0_end(&written);
        drop(log);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(seg_path(dir.path(), 0))
            .unwrap();
        f.write_all_at(&[9u8; 8], seg0_end).unwrap();
        let r = ShardLog::open(
            dir.path(),
            SHARD,
            SEGMENT_BYTES,
            0,
            RecoveryMode::Strict,
            |_, _, _| {},
        );
        match r {
            Err(ScanError::Corrupt(c)) => assert_eq!(c.lsn, seg0_end),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn an_empty_segment_after_a_torn_tail_is_dropped_and_the_tail_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (written, in_seg0) = rolled_once(dir.path());
        // Nothing of segment 1 reached the disk but its header; segment 0's last
        // frame is torn.
        let seg1 = seg_path(dir.path(), SEGMENT_BYTES);
        let f = std::fs::OpenOptions::new().write(true).open(&seg1).unwrap();
        f.write_all_at(&vec![0u8; SEGMENT_BYTES as usize - 64], 64)
            .unwrap();
        let last = written[in_seg0 - 1];
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(seg_path(dir.path(), 0))
            .unwrap();
        f.write_all_at(&[0u8; 50], last + 70).unwrap();
        let (_, replayed, report) = open(dir.path());
        assert_eq!(replayed, written[..in_seg0 - 1]);
        assert_eq!(report.torn_tail.unwrap().lsn, last);
        assert!(!seg1.exists(), "the empty segment is deleted");
    }

    #[test]
    fn a_torn_seal_ends_the_log_in_the_previous_segment_on_every_scan() {
        // Found by the log_scan fuzz target: a roll-over whose seal frame is torn and
        // nothing after it. Recovery used to cut the torn seal and end the log inside
        // the new segment, and the next recovery (which found that segment empty)
        // ended it in the previous one: a snapshot taken in between would have
        // pointed past the end of the log. Torn two ways: a checksum that does not
        // match, and only the header's checksum and LSN on disk (its length and
        // payload never made it: a zero length, written bytes within the header).
        let payload_at = FRAME_HEADER_BYTES as u64;
        for tears in [
            vec![(4, vec![0xff; 4])],
            vec![(0, vec![0; 4]), (payload_at, vec![0; 8])],
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (written, in_seg0) = rolled_once(dir.path());
            let seg1 = seg_path(dir.path(), SEGMENT_BYTES);
            let seal = frame_len(SEAL_PAYLOAD_BYTES) as u64;
            let f = std::fs::OpenOptions::new().write(true).open(&seg1).unwrap();
            // Only the seal reached the disk, torn.
            f.write_all_at(&vec![0u8; (SEGMENT_BYTES - 64 - seal) as usize], 64 + seal)
                .unwrap();
            for (at, bytes) in &tears {
                f.write_all_at(bytes, 64 + at).unwrap();
            }
            drop(f);
            let (_, replayed, first) = open(dir.path());
            assert_eq!(replayed, written[..in_seg0]);
            let end = first.end_lsn;
            assert!(end < SEGMENT_BYTES, "the log ends in segment 0, at {end}");
            assert_eq!(first.torn_tail.as_ref().unwrap().lsn, end);
            assert!(!seg1.exists(), "the torn segment is set aside");
            let (_, replayed, second) = open(dir.path());
            assert_eq!(replayed, written[..in_seg0]);
            assert_eq!(second.end_lsn, end, "the same end on every scan");
            assert!(second.torn_tail.is_none());
        }
    }

    #[test]
    fn capacity_counts_the_spare_and_ensure_room_makes_one_or_says_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = open(dir.path());
        append_n(&mut log, 1);
        let active = log.capacity();
        assert_eq!(active, SEGMENT_BYTES - 64 - frame_len(PAYLOAD_BYTES) as u64);
        // Room in the active segment: nothing to do.
        log.ensure_room(PAYLOAD_BYTES).unwrap();
        assert!(!log.spare_ready());
        // More than the active segment has: a spare is made, and counts.
        log.ensure_room(3900).unwrap();
        assert!(log.spare_ready());
        assert_eq!(log.capacity(), log.fresh_room());
        // A full disk: no room, no spare, and none can be made.
        let marker = dir.path().join(".fail-enospc");
        std::fs::write(&marker, b"").unwrap();
        log.set_enospc_markers(vec![marker]);
        log.spare = None;
        match log.ensure_room(3900) {
            Err(AppendError::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENOSPC)),
            other => panic!("{other:?}"),
        }
        // Too large for any segment.
        assert!(matches!(log.ensure_room(5000), Err(AppendError::TooLarge)));
    }

    #[test]
    fn a_failed_log_refuses_appends_and_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = open(dir.path());
        append_n(&mut log, 1);
        log.fail("log sync (fdatasync) failed: EIO");
        assert!(matches!(log.reserve(10), Err(AppendError::Failed(_))));
        assert!(matches!(log.ensure_room(10), Err(AppendError::Failed(_))));
        assert_eq!(log.capacity(), 0);
        assert!(log.spare_job().is_none());
    }

    #[test]
    fn retention_detaches_covered_segments_and_deletes_them_off_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = open(dir.path());
        append_n(&mut log, 100);
        let segments = naming::list_segments(dir.path()).unwrap().len();
        assert!(segments >= 3);
        let covered = log.write_lsn();
        let detached = log.detach_covered(covered, 0, None);
        assert_eq!(detached.len(), segments - 1, "all but the active one");
        assert_eq!(delete_segments(dir.path(), detached).unwrap(), segments - 1);
        assert_eq!(naming::list_segments(dir.path()).unwrap().len(), 1);
        // Kept by size: nothing when the rest is smaller than keep_bytes.
        append_n(&mut log, 100);
        assert!(log
            .detach_covered(log.write_lsn(), u64::MAX, None)
            .is_empty());
    }

    /// Regression: a sync job that retention overtook (segments detached between
    /// `sync_targets` and `mark_synced`, as when a snapshot's retention runs while an
    /// fdatasync is on the blocking pool) left `unsynced_from` past the end of
    /// `sync_files`, and the next `sync_targets` panicked (seen under a 600k events/s
    /// batch load with 64 MiB segments).
    #[test]
    fn a_sync_overtaken_by_retention_keeps_its_bookkeeping_in_range() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = open(dir.path());
        append_n(&mut log, 100);
        let job = log.sync_targets();
        assert!(job.files.len() >= 3, "the job covers the rolled segments");
        let detached = log.detach_covered(log.write_lsn(), 0, None);
        assert!(!detached.is_empty());
        log.mark_synced(&job);
        let next = log.sync_targets();
        assert_eq!(
            next.files.len(),
            1,
            "only the active segment may be unsynced"
        );
        // And it goes on: more roll-overs, another overtaken sync.
        append_n(&mut log, 100);
        let job = log.sync_targets();
        log.detach_covered(log.write_lsn(), 0, None);
        log.mark_synced(&job);
        assert_eq!(log.sync_targets().files.len(), 1);
        // A job that retention did not overtake still advances as before.
        append_n(&mut log, 100);
        let job = log.sync_targets();
        log.mark_synced(&job);
        assert_eq!(log.sync_targets().files.len(), 1);
    }
}
