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

fn scan_ok(dir: &Path, from_lsn: u64, mode: RecoveryMode) -> (Replayed, Vec<Segment>, ScanReport) {
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

/// Segments wholly below `from_lsn` (before a snapshot's replay point) are mapped for
/// history reads and retention but not scanned: damage inside them fails nothing, and
/// one that does not open only ends the run that history can read.
#[test]
fn segments_wholly_below_from_lsn_are_mapped_not_scanned() {
    let mut log = Log::new();
    let written = log.append_n(3 * PER_SEGMENT + 5);
    log.close();
    let in_segment = |n: u64| written.iter().position(|&l| l / SIZE_BYTES == n).unwrap();
    flip(&log.seg_path(0), 3); // bad magic: cannot be opened
    let bad = written[in_segment(1) + 1];
    flip(&log.seg_path(SIZE_BYTES), bad - SIZE_BYTES + 40); // a bad frame
    let first = in_segment(3) + 1;
    let (frames, segments, _) = scan_ok(log.path(), written[first], RecoveryMode::Strict);
    assert_eq!(lsns(&frames), written[first..]);
    let bases: Vec<u64> = segments.iter().map(|s| s.base_lsn()).collect();
    assert_eq!(bases, [SIZE_BYTES, 2 * SIZE_BYTES, 3 * SIZE_BYTES]);
    // Exactly at a segment's base: the ones before it are mapped likewise.
    let (_, segments, _) = scan_ok(log.path(), 2 * SIZE_BYTES, RecoveryMode::Strict);
    assert_eq!(segments[0].base_lsn(), SIZE_BYTES);
    assert_eq!(segments.len(), 3);
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
