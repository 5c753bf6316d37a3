//! Recovery of one shard's log: open every segment in order, check it, replay its
//! frames, and find where appends continue.
//!
//! What recovery does with what it finds, case by case. "Zeros after" means every
//! byte from the end of the frame's claimed extent (or, when its length cannot be
//! trusted, from the end of its header) to the end of the segment is zero. Each case
//! is a test below.
//!
//! | found                                            | Strict                    | Tolerate                   | tests |
//! |--------------------------------------------------|---------------------------|----------------------------|-------|
//! | no segment                                       | empty log, end_lsn 0      | same                       | `empty_dir_is_an_empty_log` |
//! | `End`, zeros after, last segment                 | end of the log            | same                       | `one_segment_replays_every_frame`, `fresh_segment_*`, `exactly_full_*` |
//! | `End`, zeros after, earlier segment              | unused tail of a roll-over: next segment | same        | `roll_over_across_three_segments` |
//! | bad frame, zeros after, last segment             | torn tail: cut, reported, appends go there | same      | `torn_tail_*`, `torn_header_*` |
//! | bad frame, written bytes after (`End` included)  | `Corrupt`                 | rest of segment skipped, recorded; a damaged last segment is never appended to | `flipped_byte_mid_last_segment_*`, `zero_length_*`, `implausible_length_*` |
//! | bad frame, zeros after, earlier segment, next segment's seal expects more | torn tail: cut there, later segments set aside (`.lost`) | same | `log::tests::a_torn_frame_before_a_sealed_segment_*` |
//! | `End`, zeros after, earlier segment, next segment's seal expects more (the tail was lost) | same: the log ends there | same | `log::tests::a_lost_tail_before_a_sealed_segment_*` |
//! | bad frame, zeros after, earlier segment, next segment empty and last | torn tail: cut, the empty segment deleted | same | `log::tests::an_empty_segment_after_*` |
//! | written bytes where the next segment's seal says frames ended, or frames past it | `Corrupt` | recorded, go on | `log::tests::garbage_where_the_seal_*` |
//! | bad frame in an earlier segment (no seal after it)  | `Corrupt`                 | as above                   | `flipped_byte_in_an_earlier_segment_*` |
//! | bad header: magic, version, crc, name, length    | `BadHeader`               | segment skipped, recorded  | `truncated_*`, `bad_magic_and_bad_header_crc` |
//! | header of another shard or shard count           | `ShardMismatch`           | same                       | `segment_of_another_shard_*` |
//! | base LSN ≠ previous segment's end                | `Gap`                     | recorded, go on            | `missing_middle_segment_is_a_gap` |
//! | first segment starts above `from_lsn`            | `Gap`                     | recorded, go on            | `missing_first_segment_is_a_gap`, `retention_*` |
//! | log ends below `from_lsn`                        | `FromBeyondEnd`           | same                       | `from_lsn_beyond_the_end_is_refused` |
//!
//! Seals: a roll-over does not wait for the old segment to be synced, so a power loss
//! can leave the new segment on disk while the old one lost its tail. Each new
//! segment's first frame (`FRAME_SEAL`) records where the old one's frames ended, and
//! the rows above that mention a seal turn such a hole into the end of the log (see
//! `Prev`). Segments written before seals existed have none and follow the old rules.
//!
//! Segments wholly below `from_lsn` (the next segment starts at or below it) are not
//! opened, checked or returned: the snapshot covers them and retention deletes them.
//! Frames below `from_lsn` in the segments that are opened are checked like all
//! others but not passed to `on_frame`.
//!
//! On an error the caller must drop whatever `on_frame` already built: a state is
//! rebuilt only from an `Ok` scan.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::frame::{claimed_extent, read_frame, FrameRead, FRAME_ALIGN, FRAME_HEADER_BYTES};
use super::naming::list_segments;
use super::segment::{last_nonzero, OpenError, Segment, SEGMENT_HEADER_BYTES};

/// What to do about corruption before the tail of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Stop with an error: the operator decides. The default.
    Strict,
    /// Skip what is damaged, record it in the report, and go on (salvage).
    Tolerate,
}

/// What a successful scan found.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Where appends continue: the LSN of the next frame.
    pub end_lsn: u64,
    /// Frames passed to `on_frame` (those at or above `from_lsn`).
    pub frames: u64,
    /// The torn tail that was cut, if there was one.
    pub torn_tail: Option<TailCut>,
    /// Damage skipped over; only ever non-empty in Tolerate mode.
    pub skipped_corruption: Vec<Corruption>,
}

/// A torn tail cut off the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailCut {
    pub path: PathBuf,
    /// Where the torn frame started; appends continue here.
    pub lsn: u64,
    /// Bytes of written data dropped: from `lsn` to the last non-zero byte.
    pub dropped_bytes: u64,
    /// What was wrong with the torn frame.
    pub reason: &'static str,
}

/// Damage found in a segment: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    pub path: PathBuf,
    /// LSN of the bad frame; the base LSN for a bad header; the expected base LSN
    /// for a gap (with the path of the segment found after it).
    pub lsn: u64,
    pub reason: &'static str,
}

impl fmt::Display for TailCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segment {} at LSN {}: {} ({} bytes dropped)",
            self.path.display(),
            self.lsn,
            self.reason,
            self.dropped_bytes
        )
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segment {} at LSN {}: {}",
            self.path.display(),
            self.lsn,
            self.reason
        )
    }
}

/// Why a scan failed. `Io` is the machine's trouble; every other variant is about
/// what the files hold.
#[derive(Debug)]
pub enum ScanError {
    Io(io::Error),
    BadHeader {
        path: PathBuf,
        reason: &'static str,
    },
    /// Corruption before the tail of the log (Strict mode).
    Corrupt(Corruption),
    /// A segment is missing: `path` starts at `found_base_lsn` but the log needs one
    /// at `expected_base_lsn` (for the first segment: at or below `from_lsn`).
    Gap {
        path: PathBuf,
        expected_base_lsn: u64,
        found_base_lsn: u64,
    },
    /// A segment of another shard (or of another shard count) is in this directory.
    ShardMismatch {
        expected: (u32, u32),
        found: (u32, u32),
        path: PathBuf,
    },
    /// The log ends before `from_lsn`, e.g. its tail was lost after a snapshot was
    /// taken. Appending at `end_lsn` would write frames that the next recovery, from
    /// the same snapshot, skips.
    FromBeyondEnd {
        from_lsn: u64,
        end_lsn: u64,
    },
}

impl From<io::Error> for ScanError {
    fn from(e: io::Error) -> Self {
        ScanError::Io(e)
    }
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanError::Io(e) => write!(f, "log i/o error: {e}"),
            ScanError::BadHeader { path, reason } => {
                write!(f, "bad segment header in {}: {reason}", path.display())
            }
            ScanError::Corrupt(c) => write!(
                f,
                "corrupt log in {} at lsn {}: {}",
                c.path.display(),
                c.lsn,
                c.reason
            ),
            ScanError::Gap {
                path,
                expected_base_lsn,
                found_base_lsn,
            } => write!(
                f,
                "log gap: expected a segment at lsn {expected_base_lsn}, found {} at {found_base_lsn}",
                path.display()
            ),
            ScanError::ShardMismatch {
                expected,
                found,
                path,
            } => write!(
                f,
                "segment {} belongs to shard {}/{}, expected {}/{}",
                path.display(),
                found.0,
                found.1,
                expected.0,
                expected.1
            ),
            ScanError::FromBeyondEnd { from_lsn, end_lsn } => {
                write!(f, "log ends at lsn {end_lsn}, before the start lsn {from_lsn}")
            }
        }
    }
}

impl std::error::Error for ScanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ScanError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Opens every segment in `dir` in order, checks their headers (shard id and count
/// must be `shard`) and continuity, and calls `on_frame(lsn, kind, payload)` for
/// every valid frame with `lsn >= from_lsn`, in order. Returns the open segments,
/// the last one positioned for appends, and the report. See the module doc for the
/// table of cases.
pub fn scan(
    dir: &Path,
    shard: (u32, u32),
    from_lsn: u64,
    mode: RecoveryMode,
    mut on_frame: impl FnMut(u64, u8, &[u8]),
) -> Result<(Vec<Segment>, ScanReport), ScanError> {
    let listed = list_segments(dir)?;
    let mut report = ScanReport::default();
    let mut segments = Vec::with_capacity(listed.len());
    // Segment i ends where segment i+1 starts (checked for those we open): if that is
    // at or below from_lsn, nothing in segment i is wanted.
    let first = listed
        .windows(2)
        .take_while(|pair| pair[1].0 <= from_lsn)
        .count();
    let mut next_base = NextBase::AtOrBelow(from_lsn);
    // The segment opened before this one, for the seal check.
    let mut prev: Option<Prev> = None;
    // Bound: one turn per listed segment.
    for (index, (base_lsn, path)) in listed.iter().enumerate().skip(first) {
        let is_last = index + 1 == listed.len();
        if let Some(expected_base_lsn) = next_base.violated_by(*base_lsn) {
            let gap = ScanError::Gap {
                path: path.clone(),
                expected_base_lsn,
                found_base_lsn: *base_lsn,
            };
            let reason = "segment missing before this one";
            skip_or_fail(mode, gap, path, expected_base_lsn, reason, &mut report)?;
        }
        let mut segment = match Segment::open(path) {
            Ok(segment) => segment,
            Err(OpenError::Io(e)) => return Err(ScanError::Io(e)),
            Err(OpenError::BadHeader { path, reason }) => {
                if let Some(p) = prev.take() {
                    p.settle_unsealed(&segments, mode, &mut report)?;
                }
                let err = ScanError::BadHeader {
                    path: path.clone(),
                    reason,
                };
                skip_or_fail(mode, err, &path, *base_lsn, reason, &mut report)?;
                next_base = NextBase::Any;
                if is_last {
                    report.end_lsn = end_of_unreadable(*base_lsn, &path)?;
                }
                continue;
            }
        };
        let header = segment.header();
        let found = (header.shard_id, header.shard_count);
        if found != shard {
            return Err(ScanError::ShardMismatch {
                expected: shard,
                found,
                path: path.clone(),
            });
        }
        if let Some(p) = prev.take() {
            match p.check_seal(&mut segments, &segment, is_last, mode, &mut report)? {
                SealVerdict::Continue => {}
                SealVerdict::EndsBefore { dropped_bytes } => {
                    // The log ends in the previous segment: this segment and every
                    // later one are what a power loss tore off (see `Prev`).
                    drop(segment);
                    let mut dropped = dropped_bytes;
                    for (_, later) in &listed[index..] {
                        dropped += set_aside(later)?;
                    }
                    if let Some(cut) = report.torn_tail.as_mut() {
                        cut.dropped_bytes = dropped;
                    }
                    break;
                }
            }
        }
        let frames = scan_frames(
            &mut segment,
            is_last,
            from_lsn,
            mode,
            &mut on_frame,
            &mut report,
        )?;
        next_base = NextBase::Exactly(segment.end_lsn());
        if is_last {
            let end = frames.end_lsn();
            segment.set_write_offset(end);
            report.end_lsn = end;
        }
        segments.push(segment);
        prev = Some(Prev {
            index: segments.len() - 1,
            frames,
        });
    }
    if from_lsn > report.end_lsn {
        return Err(ScanError::FromBeyondEnd {
            from_lsn,
            end_lsn: report.end_lsn,
        });
    }
    Ok((segments, report))
}

/// Where the frames of a segment ended, as `scan_frames` found them.
#[derive(Debug, Clone, Copy)]
enum Frames {
    /// Valid frames up to this LSN, zeros (or the segment's end) after.
    Clean(u64),
    /// An earlier segment (not the last) whose frames stop at `lsn` with a bad frame
    /// and nothing written after it: a torn tail if the next segment's seal says the
    /// segment should hold more, corruption otherwise (`Prev::check_seal`).
    TornCandidate { lsn: u64, reason: &'static str },
    /// Damage skipped in Tolerate mode; the segment counts as full.
    Skipped(u64),
}

impl Frames {
    fn end_lsn(self) -> u64 {
        match self {
            Frames::Clean(lsn) | Frames::Skipped(lsn) => lsn,
            Frames::TornCandidate { lsn, .. } => lsn,
        }
    }
}

/// The segment before the one being opened. Every segment after a roll-over starts
/// with a seal frame (`FRAME_SEAL`) naming the LSN where the previous segment's frames
/// end. Roll-overs do not wait for the previous segment to be synced, so after a
/// power loss the old segment may have lost its tail while the new one reached the
/// disk; the seal tells that hole from the end of a segment, and the log then ends
/// where the old segment's frames do (nothing after a hole can be replayed in order,
/// and no sync ever covered it: syncs make the log durable oldest segment first).
struct Prev {
    index: usize,
    frames: Frames,
}

/// What the seal check decided.
enum SealVerdict {
    Continue,
    /// The log ends in the previous segment (now the last); `dropped_bytes` were cut
    /// from it.
    EndsBefore {
        dropped_bytes: u64,
    },
}

/// What the first frame of a segment is.
enum First {
    Seal(u64),
    /// Nothing written after the header.
    Empty,
    /// Anything else: a segment written before seals existed, or damage.
    Other,
}

fn first_frame(segment: &Segment) -> First {
    let bytes = segment.bytes();
    let at = SEGMENT_HEADER_BYTES;
    match read_frame(&bytes[at..], segment.base_lsn() + at as u64) {
        FrameRead::Frame { kind, payload, .. }
            if kind == super::FRAME_SEAL && payload.len() == super::SEAL_PAYLOAD_BYTES =>
        {
            First::Seal(u64::from_le_bytes(payload.try_into().expect("8 bytes")))
        }
        FrameRead::End if last_nonzero(&bytes[at..]).is_none() => First::Empty,
        _ => First::Other,
    }
}

impl Prev {
    /// Judges the previous segment's end against `next`'s seal.
    fn check_seal(
        self,
        segments: &mut [Segment],
        next: &Segment,
        next_is_last: bool,
        mode: RecoveryMode,
        report: &mut ScanReport,
    ) -> Result<SealVerdict, ScanError> {
        let prev = &mut segments[self.index];
        let (end, torn) = match self.frames {
            Frames::Skipped(_) => return Ok(SealVerdict::Continue),
            Frames::Clean(end) => (end, None),
            Frames::TornCandidate { lsn, reason } => (lsn, Some(reason)),
        };
        match first_frame(next) {
            First::Seal(sealed_end) if sealed_end == end => match torn {
                None => Ok(SealVerdict::Continue),
                // Nothing was ever appended at `end`: the bytes there are damage.
                Some(reason) => corrupt(prev, end, reason, mode, report),
            },
            First::Seal(sealed_end) if sealed_end > end => {
                let reason =
                    torn.unwrap_or("segment lost its tail (the next segment's seal expects more)");
                cut_tail(prev, end, reason, report)
                    .map(|dropped_bytes| SealVerdict::EndsBefore { dropped_bytes })
            }
            First::Seal(_) => corrupt(
                prev,
                end,
                "frames past the end the next segment's seal records",
                mode,
                report,
            ),
            // A roll-over's segment whose seal never reached the disk, and nothing
            // after it: the log ends in the previous segment.
            First::Empty if next_is_last => {
                let reason = torn.unwrap_or("empty segment after it");
                cut_tail(prev, end, reason, report).map(|dropped_bytes| {
                    if torn.is_none() {
                        report.torn_tail = None;
                    }
                    SealVerdict::EndsBefore { dropped_bytes }
                })
            }
            // Written before seals existed (or damaged): the old rule, a bad frame
            // before the last segment is corruption.
            _ => match torn {
                None => Ok(SealVerdict::Continue),
                Some(reason) => corrupt(prev, end, reason, mode, report),
            },
        }
    }

    /// The next segment could not be opened: a torn candidate is corruption.
    fn settle_unsealed(
        self,
        segments: &[Segment],
        mode: RecoveryMode,
        report: &mut ScanReport,
    ) -> Result<(), ScanError> {
        if let Frames::TornCandidate { lsn, reason } = self.frames {
            let c = Corruption {
                path: segments[self.index].path().to_path_buf(),
                lsn,
                reason,
            };
            let path = c.path.clone();
            skip_or_fail(mode, ScanError::Corrupt(c), &path, lsn, reason, report)?;
        }
        Ok(())
    }
}

/// Corruption at `lsn` of `segment`: an error (Strict) or recorded (Tolerate, the
/// scan goes on with the next segment).
fn corrupt(
    segment: &Segment,
    lsn: u64,
    reason: &'static str,
    mode: RecoveryMode,
    report: &mut ScanReport,
) -> Result<SealVerdict, ScanError> {
    let c = Corruption {
        path: segment.path().to_path_buf(),
        lsn,
        reason,
    };
    let path = c.path.clone();
    skip_or_fail(mode, ScanError::Corrupt(c), &path, lsn, reason, report)?;
    Ok(SealVerdict::Continue)
}

/// Makes `segment` the last one, its frames ending at `lsn`: zeroes what follows
/// (like a torn tail) and records the cut. Returns the written bytes dropped from it.
fn cut_tail(
    segment: &mut Segment,
    lsn: u64,
    reason: &'static str,
    report: &mut ScanReport,
) -> Result<u64, ScanError> {
    let offset = (lsn - segment.base_lsn()) as usize;
    let dropped_bytes = last_nonzero(&segment.bytes()[offset..]).map_or(0, |i| i as u64 + 1);
    segment.truncate_from(lsn)?;
    segment.set_write_offset(lsn);
    report.torn_tail = Some(TailCut {
        path: segment.path().to_path_buf(),
        lsn,
        dropped_bytes,
        reason,
    });
    report.end_lsn = lsn;
    Ok(dropped_bytes)
}

/// Moves a segment cut off the log out of the way: renamed with `.lost` (kept for an
/// operator to inspect; ignored by every later scan), or deleted when nothing was
/// written into it. Returns its written bytes.
fn set_aside(path: &Path) -> Result<u64, ScanError> {
    let written = fs::read(path)
        .map(|b| last_nonzero(&b[SEGMENT_HEADER_BYTES.min(b.len())..]).map_or(0, |i| i as u64 + 1))
        .unwrap_or(0);
    if written == 0 {
        fs::remove_file(path)?;
    } else {
        let mut lost = path.as_os_str().to_owned();
        lost.push(".lost");
        fs::rename(path, &lost)?;
    }
    if let Some(dir) = path.parent() {
        super::naming::sync_dir(dir)?;
    }
    Ok(written)
}

/// Which base LSN the next segment must have.
enum NextBase {
    /// The first segment opened must reach back to from_lsn.
    AtOrBelow(u64),
    /// The previous segment's end.
    Exactly(u64),
    /// Unknown: the previous segment's header was unreadable (Tolerate).
    Any,
}

impl NextBase {
    /// The expected base LSN when `base_lsn` does not meet it.
    fn violated_by(&self, base_lsn: u64) -> Option<u64> {
        match *self {
            NextBase::AtOrBelow(lsn) if base_lsn > lsn => Some(lsn),
            NextBase::Exactly(lsn) if base_lsn != lsn => Some(lsn),
            _ => None,
        }
    }
}

/// Strict: `err`. Tolerate: records the damage and lets the scan go on.
fn skip_or_fail(
    mode: RecoveryMode,
    err: ScanError,
    path: &Path,
    lsn: u64,
    reason: &'static str,
    report: &mut ScanReport,
) -> Result<(), ScanError> {
    match mode {
        RecoveryMode::Strict => Err(err),
        RecoveryMode::Tolerate => {
            report.skipped_corruption.push(Corruption {
                path: path.to_path_buf(),
                lsn,
                reason,
            });
            Ok(())
        }
    }
}

/// Where appends continue after a last segment whose header is unreadable
/// (Tolerate): past its file length, the only size left to trust, so that the new
/// segment's name sorts after it. Nothing valid was read from it, so its nominal
/// range overlapping the new segment's costs nothing.
fn end_of_unreadable(base_lsn: u64, path: &Path) -> io::Result<u64> {
    let file_bytes = fs::metadata(path)?.len().max(1);
    let extent = file_bytes.next_multiple_of(FRAME_ALIGN as u64);
    Ok(base_lsn.saturating_add(extent))
}

/// Where the frames of one segment stopped being valid.
struct Stop {
    offset: usize,
    reason: &'static str,
    /// Written bytes from here on mean the bad frame is not the last thing written.
    check_from: usize,
}

/// Reads the frames of `segment`, passing those at or above `from_lsn` on. Returns
/// where appends could continue: after the last valid frame, or the segment's end
/// when the rest of a corrupt segment is skipped (Tolerate).
fn scan_frames(
    segment: &mut Segment,
    is_last: bool,
    from_lsn: u64,
    mode: RecoveryMode,
    on_frame: &mut impl FnMut(u64, u8, &[u8]),
    report: &mut ScanReport,
) -> Result<Frames, ScanError> {
    match read_valid_frames(segment, from_lsn, on_frame, report) {
        Ok(end_lsn) => Ok(Frames::Clean(end_lsn)),
        Err(stop) => settle_bad_frame(segment, stop, is_last, mode, report),
    }
}

/// Reads valid frames up to a clean end (`Ok`: the LSN after the last frame, or the
/// segment's end) or to the first bad one (`Err`).
fn read_valid_frames(
    segment: &Segment,
    from_lsn: u64,
    on_frame: &mut impl FnMut(u64, u8, &[u8]),
    report: &mut ScanReport,
) -> Result<u64, Stop> {
    let base_lsn = segment.base_lsn();
    let bytes = segment.bytes();
    let size = bytes.len();
    let mut offset = SEGMENT_HEADER_BYTES;
    // Bound: every turn advances by a whole frame (>= 24 bytes) or leaves the loop.
    loop {
        if offset == size {
            return Ok(segment.end_lsn());
        }
        let lsn = base_lsn + offset as u64;
        match read_frame(&bytes[offset..], lsn) {
            FrameRead::Frame {
                kind, payload, len, ..
            } => {
                if lsn >= from_lsn {
                    on_frame(lsn, kind, payload);
                    report.frames += 1;
                }
                offset += len;
            }
            FrameRead::End => {
                if last_nonzero(&bytes[offset..]).is_none() {
                    return Ok(lsn);
                }
                // A zero length with written bytes after it: the frame's first bytes
                // never reached the disk, or its length was wiped. Judged like a bad
                // frame whose length cannot be trusted.
                return Err(Stop {
                    offset,
                    reason: "zero length followed by written bytes",
                    check_from: (offset + FRAME_HEADER_BYTES).min(size),
                });
            }
            FrameRead::Bad { reason } => {
                let claimed = claimed_extent(&bytes[offset..]).unwrap_or(FRAME_HEADER_BYTES);
                return Err(Stop {
                    offset,
                    reason,
                    check_from: (offset + claimed).min(size),
                });
            }
        }
    }
}

/// Decides what the bad frame at `stop` is: a torn tail (cut it) or corruption.
fn settle_bad_frame(
    segment: &mut Segment,
    stop: Stop,
    is_last: bool,
    mode: RecoveryMode,
    report: &mut ScanReport,
) -> Result<Frames, ScanError> {
    let lsn = segment.base_lsn() + stop.offset as u64;
    let bytes = segment.bytes();
    // Torn tail or corruption? Appends are sequential: a frame is written only after
    // every frame before it, and nothing is written after the newest one. A crash
    // while the newest frame was being written back (mmap pages reach the disk in
    // any order, and any subset of its pages may have made it) leaves a bad frame
    // with nothing but preallocated zeros after it. That frame was never
    // acknowledged (the caller syncs before acknowledging), so cutting it loses
    // nothing. A bad frame with written bytes after it, or anywhere but in the last
    // segment, was followed by more writes, so it was once whole: it is corruption.
    // The rule assumes the torn frame was the newest write; if a crash tears a batch
    // of several unsynced frames out of order, an older frame of the batch can be bad
    // with a newer one after it: that reads as corruption, a false alarm that stops
    // Strict recovery but never drops data silently.
    let written_after = last_nonzero(&bytes[stop.check_from..]).is_some();
    if !is_last && !written_after {
        // Decided by the next segment's seal (`Prev::check_seal`).
        return Ok(Frames::TornCandidate {
            lsn,
            reason: stop.reason,
        });
    }
    if is_last && !written_after {
        let dropped_bytes = last_nonzero(&bytes[stop.offset..]).map_or(0, |i| i as u64 + 1);
        // Zeroed rather than left: appends will land here, and the torn bytes (or a
        // stale frame behind them) must never be read as part of a later frame.
        segment.truncate_from(lsn)?;
        report.torn_tail = Some(TailCut {
            path: segment.path().to_path_buf(),
            lsn,
            dropped_bytes,
            reason: stop.reason,
        });
        return Ok(Frames::Clean(lsn));
    }
    let corruption = Corruption {
        path: segment.path().to_path_buf(),
        lsn,
        reason: stop.reason,
    };
    match mode {
        RecoveryMode::Strict => Err(ScanError::Corrupt(corruption)),
        RecoveryMode::Tolerate => {
            // The rest of the segment is left as it is (evidence; maybe data an
            // operator can salvage) and never appended to.
            report.skipped_corruption.push(corruption);
            Ok(Frames::Skipped(segment.end_lsn()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::naming::{remove_segments_below, segment_file_name};
    use super::super::segment::SegmentHeader;
    use super::*;
    use std::fs::OpenOptions;
    use std::os::unix::fs::FileExt;

    const SHARD: (u32, u32) = (1, 4);
    const SIZE_BYTES: u64 = 4096;
    /// 100-byte payloads make 120-byte frames: 33 per segment, 72 bytes unused.
    const PAYLOAD_BYTES: usize = 100;
    const FRAME_BYTES: u64 = 120;
    const PER_SEGMENT: u64 = 33;

    /// A shard's log being written: segments in a temp dir, rolled like the server
    /// will (sync the old one, then create the next at its end).
    struct Log {
        dir: tempfile::TempDir,
        segments: Vec<Segment>,
    }

    impl Log {
        fn new() -> Log {
            Log {
                dir: tempfile::tempdir().unwrap(),
                segments: Vec::new(),
            }
        }

        fn path(&self) -> &Path {
            self.dir.path()
        }

        fn seg_path(&self, base_lsn: u64) -> PathBuf {
            self.path().join(segment_file_name(base_lsn))
        }

        /// Appends a frame whose payload is `n` repeated; returns its LSN.
        fn append(&mut self, n: u64) -> u64 {
            let fill = |d: &mut [u8]| d.fill(n as u8);
            if let Some(lsn) = self
                .segments
                .last_mut()
                .and_then(|s| s.append(n as u8, PAYLOAD_BYTES, fill))
            {
                return lsn;
            }
            let base_lsn = match self.segments.last() {
                Some(last) => {
                    last.file().sync_data().unwrap();
                    last.end_lsn()
                }
                None => 0,
            };
            let header = SegmentHeader {
                shard_id: SHARD.0,
                shard_count: SHARD.1,
                base_lsn,
                size_bytes: SIZE_BYTES,
            };
            self.segments
                .push(Segment::create(self.path(), header).unwrap());
            self.segments
                .last_mut()
                .unwrap()
                .append(n as u8, PAYLOAD_BYTES, fill)
                .unwrap()
        }

        fn append_n(&mut self, count: u64) -> Vec<u64> {
            (0..count).map(|n| self.append(n)).collect()
        }

        /// Closes the log, as a crash (of the process) would.
        fn close(&mut self) {
            self.segments.clear();
        }
    }

    /// The frames `on_frame` saw: (lsn, kind, payload).
    type Replayed = Vec<(u64, u8, Vec<u8>)>;

    /// Everything a scan delivered, and its outcome.
    struct Scanned {
        frames: Replayed,
        result: Result<(Vec<Segment>, ScanReport), ScanError>,
    }

    fn scan_log(dir: &Path, from_lsn: u64, mode: RecoveryMode) -> Scanned {
        let mut frames = Vec::new();
        let result = scan(dir, SHARD, from_lsn, mode, |lsn, kind, payload| {
            frames.push((lsn, kind, payload.to_vec()))
        });
        Scanned { frames, result }
    }

    fn scan_ok(
        dir: &Path,
        from_lsn: u64,
        mode: RecoveryMode,
    ) -> (Replayed, Vec<Segment>, ScanReport) {
        let Scanned { frames, result } = scan_log(dir, from_lsn, mode);
        let (segments, report) = result.unwrap_or_else(|e| panic!("scan failed: {e}"));
        assert_eq!(report.frames, frames.len() as u64);
        (frames, segments, report)
    }

    fn scan_err(dir: &Path, from_lsn: u64, mode: RecoveryMode) -> ScanError {
        match scan_log(dir, from_lsn, mode).result {
            Ok((_, report)) => panic!("scan succeeded: {report:?}"),
            Err(e) => e,
        }
    }

    fn lsns(frames: &[(u64, u8, Vec<u8>)]) -> Vec<u64> {
        frames.iter().map(|f| f.0).collect()
    }

    fn patch(path: &Path, at: u64, bytes: &[u8]) {
        let file = OpenOptions::new().write(true).open(path).unwrap();
        file.write_all_at(bytes, at).unwrap();
    }

    fn flip(path: &Path, at: u64) {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut b = [0u8];
        file.read_exact_at(&mut b, at).unwrap();
        file.write_all_at(&[b[0] ^ 0x40], at).unwrap();
    }

    #[test]
    fn empty_dir_is_an_empty_log() {
        let log = Log::new();
        let (frames, segments, report) = scan_ok(log.path(), 0, RecoveryMode::Strict);
        assert!(frames.is_empty() && segments.is_empty());
        assert_eq!((report.end_lsn, report.frames), (0, 0));
        assert!(report.torn_tail.is_none() && report.skipped_corruption.is_empty());
    }

    #[test]
    fn fresh_segment_is_an_empty_log_at_its_first_frame() {
        let mut log = Log::new();
        log.append(0);
        log.segments[0].truncate_from(64).unwrap();
        log.close();
        let (frames, segments, report) = scan_ok(log.path(), 0, RecoveryMode::Strict);
        assert!(frames.is_empty());
        assert_eq!(report.end_lsn, 64);
        assert_eq!(segments[0].write_lsn(), 64);
    }

    #[test]
    fn one_segment_replays_every_frame() {
        let mut log = Log::new();
        let written = log.append_n(20);
        log.close();
        let (frames, mut segments, report) = scan_ok(log.path(), 0, RecoveryMode::Strict);
        assert_eq!(lsns(&frames), written);
        for (n, (_, kind, payload)) in frames.iter().enumerate() {
            assert_eq!(*kind, n as u8);
            assert!(payload.len() == PAYLOAD_BYTES && payload.iter().all(|&b| b == n as u8));
        }
        assert_eq!(report.end_lsn, 64 + 20 * FRAME_BYTES);
        assert!(report.torn_tail.is_none());
        // Positioned for appends, which a re-scan then finds.
        assert_eq!(segments.len(), 1);
        assert_eq!(segments[0].write_lsn(), report.end_lsn);
        assert_eq!(
            segments[0].append(7, 3, |d| d.fill(7)),
            Some(report.end_lsn)
        );
        drop(segments);
        let (frames, _, report) = scan_ok(log.path(), 0, RecoveryMode::Strict);
        assert_eq!(frames.len(), 21);
        assert_eq!(report.end_lsn, 64 + 20 * FRAME_BYTES + 24);
    }

    #[test]
    fn roll_over_across_three_segments() {
        let mut log = Log::new();
        let written = log.append_n(2 * PER_SEGMENT + 5);
        assert_eq!(log.segments.len(), 3);
        // The frame that did not fit the 72-byte tail of segment 0 opens segment 1.
        assert_eq!(
            written[PER_SEGMENT as usize - 1],
            64 + (PER_SEGMENT - 1) * FRAME_BYTES
        );
        assert_eq!(written[PER_SEGMENT as usize], SIZE_BYTES + 64);
        assert_eq!(written[2 * PER_SEGMENT as usize], 2 * SIZE_BYTES + 64);
        log.close();

        let (frames, segments, report) = scan_ok(log.path(), 0, RecoveryMode::Strict);
        assert_eq!(lsns(&frames), written);
        assert_eq!(report.end_lsn, 2 * SIZE_BYTES + 64 + 5 * FRAME_BYTES);
        let bases: Vec<u64> = segments.iter().map(|s| s.base_lsn()).collect();
        assert_eq!(bases, [0, SIZE_BYTES, 2 * SIZE_BYTES]);
        // Earlier segments stay full: appends only go to the last.
        assert_eq!(segments[0].write_lsn(), segments[0].end_lsn());
        assert_eq!(segments[2].write_lsn(), report.end_lsn);
    }

    #[test]
    fn exactly_full_last_segment_ends_at_its_end() {
        let mut log = Log::new();
        log.append(0);
        let seg = &mut log.segments[0];
        seg.truncate_from(64).unwrap();
        let max = seg.payload_bytes_max();
        seg.append(1, max, |d| d.fill(1)).unwrap();
        log.close();
        let (frames, mut segments, report) = scan_ok(log.path(), 0, RecoveryMode::Strict);
        assert_eq!(frames.len(), 1);
        assert_eq!(report.end_lsn, SIZE_BYTES);
        assert_eq!(segments[0].append(1, 0, |_| {}), None, "caller rolls");
    }

    /// Torn tail: the last frame is damaged in `damage`, then a scan must cut it,
    /// report it, append after the cut, and a re-scan must be clean.
    fn torn_tail_case(damage: impl FnOnce(&Path, u64), reason: &str) {
        let mut log = Log::new();
        let written = log.append_n(PER_SEGMENT + 4);
        let torn_lsn = *written.last().unwrap();
        let path = log.seg_path(SIZE_BYTES);
        log.close();
        damage(&path, torn_lsn - SIZE_BYTES);

        let (frames, mut segments, report) = scan_ok(log.path(), 0, RecoveryMode::Strict);
        assert_eq!(lsns(&frames), written[..written.len() - 1]);
        let cut = report.torn_tail.expect("torn tail reported");
        assert_eq!(cut.path, path);
        assert_eq!(cut.lsn, torn_lsn);
        assert_eq!(cut.reason, reason);
        assert!(
            cut.dropped_bytes > 0 && cut.dropped_bytes <= FRAME_BYTES,
            "{cut:?}"
        );
        assert_eq!(report.end_lsn, torn_lsn);
        assert!(report.skipped_corruption.is_empty());

        let last = segments.last_mut().unwrap();
        assert_eq!(last.append(42, 5, |d| d.fill(42)), Some(torn_lsn));
        drop(segments);
        let (frames, _, report) = scan_ok(log.path(), 0, RecoveryMode::Strict);
        assert!(report.torn_tail.is_none());
        assert_eq!(frames.len(), written.len());
        assert_eq!(frames.last().unwrap(), &(torn_lsn, 42, vec![42; 5]));
        assert_eq!(report.end_lsn, torn_lsn + 24);
    }

    #[test]
    fn torn_tail_with_zeroed_payload_is_cut() {
        // The frame's later bytes never reached the disk.
        torn_tail_case(|path, at| patch(path, at + 60, &[0; 60]), "crc mismatch");
    }

    #[test]
    fn torn_tail_with_bad_crc_is_cut() {
        torn_tail_case(|path, at| flip(path, at + 5), "crc mismatch");
    }

    #[test]
    fn torn_tail_with_implausible_length_is_cut() {
        // A garbage length and nothing after the header: nothing written after it.
        torn_tail_case(
            |path, at| {
                patch(path, at + 17, &[0; PAYLOAD_BYTES]);
                patch(path, at, &9999u32.to_le_bytes());
            },
            "frame extends past the end of the segment",
        );
    }

    #[test]
    fn implausible_length_with_bytes_after_the_header_is_corruption() {
        // The length cannot say where the frame ends, so any written byte after the
        // header (here the intact payload) may be a later frame: not provably torn.
        let mut log = Log::new();
        let written = log.append_n(5);
        log.close();
        patch(&log.seg_path(0), written[4], &9999u32.to_le_bytes());
        match scan_err(log.path(), 0, RecoveryMode::Strict) {
            ScanError::Corrupt(c) => assert_eq!(c.lsn, written[4]),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn torn_header_without_its_length_is_cut() {
        // Only header bytes after the length field made it: the length reads 0.
        torn_tail_case(
            |path, at| {
                patch(path, at, &[0; PAYLOAD_BYTES + 17]);
                patch(path, at + 4, &[0xAB; 13]);
            },
            "zero length followed by written bytes",
        );
    }

    #[test]
    fn zero_length_with_data_after_it_is_corruption() {
        let mut log = Log::new();
        let written = log.append_n(10);
        log.close();
        patch(&log.seg_path(0), written[4], &[0; 4]);
        match scan_err(log.path(), 0, RecoveryMode::Strict) {
            ScanError::Corrupt(c) => {
                assert_eq!(c.lsn, written[4]);
                assert_eq!(c.reason, "zero length followed by written bytes");
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn flipped_byte_mid_last_segment_is_corrupt_in_strict() {
        let mut log = Log::new();
        let written = log.append_n(PER_SEGMENT + 10);
        log.close();
        let path = log.seg_path(SIZE_BYTES);
        flip(&path, written[PER_SEGMENT as usize + 4] - SIZE_BYTES + 50);
        let err = scan_err(log.path(), 0, RecoveryMode::Strict);
        match &err {
            ScanError::Corrupt(c) => {
                assert_eq!(c.path, path);
                assert_eq!(c.lsn, written[PER_SEGMENT as usize + 4]);
                assert_eq!(c.reason, "crc mismatch");
            }
            e => panic!("{e:?}"),
        }
        assert!(err.to_string().contains("crc mismatch"));
    }

    #[test]
    fn flipped_byte_mid_last_segment_tolerate_skips_its_rest() {
        let mut log = Log::new();
        let written = log.append_n(PER_SEGMENT + 10);
        log.close();
        let path = log.seg_path(SIZE_BYTES);
        let bad_lsn = written[PER_SEGMENT as usize + 4];
        flip(&path, bad_lsn - SIZE_BYTES + 50);

        let (frames, mut segments, report) = scan_ok(log.path(), 0, RecoveryMode::Tolerate);
        assert_eq!(lsns(&frames), written[..PER_SEGMENT as usize + 4]);
        let expected = Corruption {
            path: path.clone(),
            lsn: bad_lsn,
            reason: "crc mismatch",
        };
        assert_eq!(report.skipped_corruption, std::slice::from_ref(&expected));
        assert!(report.torn_tail.is_none());
        // The damaged segment is never appended to: appends roll to a new one.
        assert_eq!(report.end_lsn, 2 * SIZE_BYTES);
        assert_eq!(segments.last_mut().unwrap().append(1, 1, |_| {}), None);
        drop(segments);
        log.segments.push(Segment::open(&path).unwrap());
        let new_lsn = log.append(77);
        assert_eq!(new_lsn, 2 * SIZE_BYTES + 64);
        log.close();

        let (frames, _, report) = scan_ok(log.path(), 0, RecoveryMode::Tolerate);
        assert_eq!(frames.last().unwrap().0, new_lsn);
        assert_eq!(report.skipped_corruption, [expected]);
        assert!(matches!(
            scan_err(log.path(), 0, RecoveryMode::Strict),
            ScanError::Corrupt(_)
        ));
    }

    #[test]
    fn flipped_byte_in_an_earlier_segment_is_corruption() {
        let mut log = Log::new();
        let written = log.append_n(2 * PER_SEGMENT + 3);
        log.close();
        // The last frame of segment 0: at the tail of its segment, but not of the log.
        let bad_lsn = written[PER_SEGMENT as usize - 1];
        let path = log.seg_path(0);
        flip(&path, bad_lsn + 30);

        match scan_err(log.path(), 0, RecoveryMode::Strict) {
            ScanError::Corrupt(c) => assert_eq!((c.path, c.lsn), (path.clone(), bad_lsn)),
            e => panic!("{e:?}"),
        }
        let (frames, _, report) = scan_ok(log.path(), 0, RecoveryMode::Tolerate);
        let mut expected = written.clone();
        expected.remove(PER_SEGMENT as usize - 1);
        assert_eq!(lsns(&frames), expected);
        assert_eq!(report.skipped_corruption.len(), 1);
        assert_eq!(report.end_lsn, 2 * SIZE_BYTES + 64 + 3 * FRAME_BYTES);
    }

    #[test]
    fn truncated_segment_file_is_a_bad_header() {
        let mut log = Log::new();
        let written = log.append_n(2 * PER_SEGMENT + 3);
        log.close();
        let path = log.seg_path(SIZE_BYTES);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(2000)
            .unwrap();

        match scan_err(log.path(), 0, RecoveryMode::Strict) {
            ScanError::BadHeader { path: p, reason } => {
                assert_eq!(p, path);
                assert_eq!(
                    reason,
                    "file length does not match the header's segment size"
                );
            }
            e => panic!("{e:?}"),
        }
        // Tolerate: the segment is skipped and the next one still read.
        let (frames, segments, report) = scan_ok(log.path(), 0, RecoveryMode::Tolerate);
        let mut expected = written[..PER_SEGMENT as usize].to_vec();
        expected.extend_from_slice(&written[2 * PER_SEGMENT as usize..]);
        assert_eq!(lsns(&frames), expected);
        assert_eq!(segments.len(), 2);
        assert_eq!(report.skipped_corruption.len(), 1);
        assert_eq!(report.skipped_corruption[0].lsn, SIZE_BYTES);
    }

    #[test]
    fn truncated_last_segment_tolerated_moves_appends_past_it() {
        let mut log = Log::new();
        log.append_n(PER_SEGMENT + 3);
        log.close();
        let path = log.seg_path(SIZE_BYTES);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(10)
            .unwrap();
        assert!(matches!(
            scan_err(log.path(), 0, RecoveryMode::Strict),
            ScanError::BadHeader { .. }
        ));
        let (frames, segments, report) = scan_ok(log.path(), 0, RecoveryMode::Tolerate);
        assert_eq!(frames.len(), PER_SEGMENT as usize);
        assert_eq!(segments.len(), 1);
        assert_eq!(report.end_lsn, SIZE_BYTES + 16);
        // A new segment there sorts after the damaged one and scans (tolerantly).
        let header = SegmentHeader {
            shard_id: 1,
            shard_count: 4,
            base_lsn: report.end_lsn,
            size_bytes: SIZE_BYTES,
        };
        let mut seg = Segment::create(log.path(), header).unwrap();
        seg.append(5, 5, |d| d.fill(5)).unwrap();
        drop(seg);
        let (frames, _, report) = scan_ok(log.path(), 0, RecoveryMode::Tolerate);
        assert_eq!(frames.last().unwrap().0, SIZE_BYTES + 16 + 64);
        assert_eq!(report.skipped_corruption.len(), 1);
    }

    #[test]
    fn bad_magic_and_bad_header_crc() {
        for (at, reason) in [
            (2, "bad magic: not a Flux segment"),
            (30, "header crc mismatch"),
        ] {
            let mut log = Log::new();
            log.append_n(PER_SEGMENT + 3);
            log.close();
            let path = log.seg_path(0);
            flip(&path, at);
            match scan_err(log.path(), 0, RecoveryMode::Strict) {
                ScanError::BadHeader { path: p, reason: r } => assert_eq!((p, r), (path, reason)),
                e => panic!("{e:?}"),
            }
        }
    }

    #[test]
    fn segment_of_another_shard_is_refused_in_both_modes() {
        let mut log = Log::new();
        log.append_n(PER_SEGMENT + 3);
        log.close();
        for mode in [RecoveryMode::Strict, RecoveryMode::Tolerate] {
            match scan(log.path(), (2, 4), 0, mode, |_, _, _| {}) {
                Err(ScanError::ShardMismatch {
                    expected,
                    found,
                    path,
                }) => {
                    assert_eq!((expected, found), ((2, 4), SHARD));
                    assert_eq!(path, log.seg_path(0));
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            scan(log.path(), (1, 8), 0, RecoveryMode::Strict, |_, _, _| {}),
            Err(ScanError::ShardMismatch { found: (1, 4), .. })
        ));
    }

    #[test]
    fn missing_middle_segment_is_a_gap() {
        let mut log = Log::new();
        let written = log.append_n(3 * PER_SEGMENT + 2);
        log.close();
        fs::remove_file(log.seg_path(SIZE_BYTES)).unwrap();
        match scan_err(log.path(), 0, RecoveryMode::Strict) {
            ScanError::Gap {
                path,
                expected_base_lsn,
                found_base_lsn,
            } => {
                assert_eq!(path, log.seg_path(2 * SIZE_BYTES));
                assert_eq!(
                    (expected_base_lsn, found_base_lsn),
                    (SIZE_BYTES, 2 * SIZE_BYTES)
                );
            }
            e => panic!("{e:?}"),
        }
        let (frames, _, report) = scan_ok(log.path(), 0, RecoveryMode::Tolerate);
        assert_eq!(frames.len(), written.len() - PER_SEGMENT as usize);
        assert_eq!(report.skipped_corruption[0].lsn, SIZE_BYTES);
        assert_eq!(
            report.skipped_corruption[0].reason,
            "segment missing before this one"
        );
    }

    #[test]
    fn missing_first_segment_is_a_gap() {
        let mut log = Log::new();
        log.append_n(PER_SEGMENT + 2);
        log.close();
        fs::remove_file(log.seg_path(0)).unwrap();
        assert!(matches!(
            scan_err(log.path(), 0, RecoveryMode::Strict),
            ScanError::Gap {
                expected_base_lsn: 0,
                found_base_lsn: SIZE_BYTES,
                ..
            }
        ));
        // From a snapshot inside the removed segment: still a hole.
        assert!(matches!(
            scan_err(log.path(), 100, RecoveryMode::Strict),
            ScanError::Gap {
                expected_base_lsn: 100,
                ..
            }
        ));
        // From a snapshot at its end: nothing is missing.
        let (frames, _, _) = scan_ok(log.path(), SIZE_BYTES, RecoveryMode::Strict);
        assert_eq!(frames.len(), 2);
    }

    #[test]
    fn from_lsn_filters_frames_but_checks_them() {
        let mut log = Log::new();
        let written = log.append_n(PER_SEGMENT + 10);
        log.close();
        let from = written[PER_SEGMENT as usize - 3];
        let (frames, segments, report) = scan_ok(log.path(), from, RecoveryMode::Strict);
        assert_eq!(lsns(&frames), written[PER_SEGMENT as usize - 3..]);
        assert_eq!(report.frames, 13);
        assert_eq!(segments.len(), 2);
        // A position inside a frame: that frame is before it.
        let (frames, _, _) = scan_ok(log.path(), from - 8, RecoveryMode::Strict);
        assert_eq!(frames[0].0, from);
        // Frames below from_lsn are still checked.
        flip(&log.seg_path(0), written[1] + 40);
        assert!(
            matches!(scan_err(log.path(), from, RecoveryMode::Strict), ScanError::Corrupt(c) if c.lsn == written[1])
        );
    }

    #[test]
    fn segments_wholly_below_from_lsn_are_not_opened() {
        let mut log = Log::new();
        let written = log.append_n(2 * PER_SEGMENT + 5);
        log.close();
        flip(&log.seg_path(0), 3); // bad magic: would fail if opened
        let from = written[2 * PER_SEGMENT as usize + 1];
        let (frames, segments, _) = scan_ok(log.path(), from, RecoveryMode::Strict);
        assert_eq!(lsns(&frames), written[2 * PER_SEGMENT as usize + 1..]);
        let bases: Vec<u64> = segments.iter().map(|s| s.base_lsn()).collect();
        assert_eq!(bases, [2 * SIZE_BYTES]);
        // Exactly at a segment's base: the one before it is not needed either.
        let (_, segments, _) = scan_ok(log.path(), SIZE_BYTES, RecoveryMode::Strict);
        assert_eq!(segments[0].base_lsn(), SIZE_BYTES);
    }

    #[test]
    fn from_lsn_beyond_the_end_is_refused() {
        let mut log = Log::new();
        let written = log.append_n(5);
        log.close();
        let end = written[4] + FRAME_BYTES;
        let (frames, _, report) = scan_ok(log.path(), end, RecoveryMode::Strict);
        assert!(frames.is_empty());
        assert_eq!(report.end_lsn, end);
        assert!(matches!(
            scan_err(log.path(), end + 8, RecoveryMode::Tolerate),
            ScanError::FromBeyondEnd { from_lsn, end_lsn } if from_lsn == end + 8 && end_lsn == end
        ));
        let empty = Log::new();
        assert!(matches!(
            scan_err(empty.path(), 64, RecoveryMode::Strict),
            ScanError::FromBeyondEnd { end_lsn: 0, .. }
        ));
    }

    #[test]
    fn retention_then_recovery_from_the_snapshot() {
        let mut log = Log::new();
        let written = log.append_n(3 * PER_SEGMENT + 4);
        log.close();
        let snapshot_lsn = written[2 * PER_SEGMENT as usize + 2];
        assert_eq!(remove_segments_below(log.path(), snapshot_lsn).unwrap(), 2);
        let (frames, segments, report) = scan_ok(log.path(), snapshot_lsn, RecoveryMode::Strict);
        assert_eq!(lsns(&frames), written[2 * PER_SEGMENT as usize + 2..]);
        assert_eq!(segments.len(), 2);
        assert_eq!(report.end_lsn, 3 * SIZE_BYTES + 64 + 4 * FRAME_BYTES);
        // Replaying from 0 is no longer possible, and says so.
        assert!(matches!(
            scan_err(log.path(), 0, RecoveryMode::Strict),
            ScanError::Gap { .. }
        ));
    }

    #[test]
    fn foreign_and_temporary_files_are_ignored() {
        let mut log = Log::new();
        log.append_n(PER_SEGMENT + 1);
        log.close();
        fs::write(
            log.path().join("00000000000000008192.seg.tmp"),
            b"half made",
        )
        .unwrap();
        fs::write(log.path().join("README"), b"hi").unwrap();
        let (frames, segments, _) = scan_ok(log.path(), 0, RecoveryMode::Strict);
        assert_eq!(
            (frames.len(), segments.len()),
            (PER_SEGMENT as usize + 1, 2)
        );
    }

    #[test]
    fn missing_dir_is_an_io_error() {
        let log = Log::new();
        let err = scan_err(&log.path().join("nope"), 0, RecoveryMode::Strict);
        assert!(matches!(err, ScanError::Io(ref e) if e.kind() == io::ErrorKind::NotFound));
    }
}
