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
//! | last segment's first frame (its seal) bad, zeros after | the log ends in the previous segment (its tail cut like a torn one), the segment set aside (`.lost`) | same | `log::tests::a_torn_seal_*` |
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
    // Segments wholly before `from_lsn` hold nothing to replay, but history still
    // reads them and retention deletes them in turn: they are mapped, not scanned
    // (their frames were checked when the snapshot's log was replayed). Only the run
    // that leads without a gap to where the scan starts is kept; a segment that does
    // not open ends history there (a warning, not a failed start).
    for (base_lsn, path) in &listed[..first] {
        match Segment::open(path) {
            Ok(seg) if (seg.header().shard_id, seg.header().shard_count) == shard => {
                if segments
                    .last()
                    .is_some_and(|l: &Segment| l.end_lsn() != *base_lsn)
                {
                    segments.clear();
                }
                segments.push(seg);
            }
            Ok(_) | Err(_) => {
                eprintln!(
                    "flux: {} cannot be opened as a segment of this shard; history reads \
                     end after it",
                    path.display()
                );
                segments.clear();
            }
        }
    }
    let mut next_base = NextBase::AtOrBelow(from_lsn);
    // The segment opened before this one, for the seal check.
    let mut prev: Option<Prev> = None;
    // Bound: one turn per listed segment.
    for (index, (base_lsn, path)) in listed.iter().enumerate().skip(first) {
        let is_last = index + 1 == listed.len();
        if index == first && segments.last().is_some_and(|l| l.end_lsn() != *base_lsn) {
            segments.clear();
        }
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
    /// A bad first frame (or a zero length with bytes after it) and nothing written
    /// after it: a seal torn by a crash (the roll-over's first write), judged like
    /// `Empty`.
    Torn,
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
        // What `read_valid_frames` would stop at, with nothing written after it: in
        // the last segment, `settle_bad_frame` would cut it and leave the segment
        // empty, so it is judged as `Empty` would be on the next scan.
        stop @ (FrameRead::End | FrameRead::Bad { .. }) => {
            let claimed = match stop {
                FrameRead::Bad { .. } => claimed_extent(&bytes[at..]).unwrap_or(FRAME_HEADER_BYTES),
                _ => FRAME_HEADER_BYTES,
            };
            match last_nonzero(&bytes[(at + claimed).min(bytes.len())..]) {
                None => First::Torn,
                Some(_) => First::Other,
            }
        }
        FrameRead::Frame { .. } => First::Other,
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
            // A roll-over's segment whose seal never reached the disk (or was torn),
            // and nothing after it: the log ends in the previous segment. Cutting
            // the torn seal instead would end this scan inside the new segment and
            // the next scan (which finds it empty) in the previous one: recovery
            // must end the log at the same LSN however often it runs.
            first @ (First::Empty | First::Torn) if next_is_last => {
                let seal_torn = matches!(first, First::Torn);
                let reason = torn.unwrap_or(if seal_torn {
                    "the next segment's seal is torn"
                } else {
                    "empty segment after it"
                });
                cut_tail(prev, end, reason, report).map(|dropped_bytes| {
                    if torn.is_none() && !seal_torn {
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
mod tests;
