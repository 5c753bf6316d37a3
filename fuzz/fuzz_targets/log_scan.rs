//! The log frame reader (`log::frame::read_frame`) and the recovery scan of a shard's
//! segments (`log::scan::scan`), with what recovery does with each frame: decode its
//! records (sections: `event::compact::Section`, each record also read alone by its
//! LSN with `decode_at` as history does; fixed-layout `_V1` frames:
//! `event::Record::parse_stored`; intents: `log::txn::decode_intent`) and apply them to
//! a store (`state::Store::apply`), then render every entity as a read would.
//!
//! Input: `[flags][param][body...]`. The body becomes the frames area of one or two
//! segment files with valid headers, written to a scratch directory (on /dev/shm when
//! there is one). Flags:
//!
//! | bit | effect |
//! |---|---|
//! | 0 | frames get their LSN and CRC fixed up, so the fuzzer reaches payload decoding |
//! | 1 | two segments, the body split where `param` says |
//! | 2 | the second segment starts 8 bytes after the first ends (a gap) |
//! | 3 | `from_lsn` (a snapshot's replay point) is `8 * param` |
//! | 4 | the second segment belongs to another shard |
//! | 5 | the first segment starts at `8 * param`, not 0 |
//!
//! Each case is scanned in Strict and in Tolerate mode, each time from freshly written
//! files (a scan cuts a torn tail in place). Checked besides "never panics": Strict
//! either succeeds or returns an error; Tolerate refuses only what it documents
//! (another shard's segment, a log ending before `from_lsn`, I/O); when Strict
//! succeeds Tolerate finds the same frames and end; delivered frames rise, lie at or
//! above `from_lsn` and below the end; and a second scan of what the first left finds
//! the same frames and end and no torn tail (recovery is idempotent).
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flux::event::compact::{decode_at, Section};
use flux::event::Record;
use flux::log::frame::{claimed_extent, frame_crc, read_frame, FrameRead, FRAME_HEADER_BYTES};
use flux::log::naming::segment_file_name;
use flux::log::scan::{scan, RecoveryMode, ScanError};
use flux::log::segment::{SegmentHeader, SEGMENT_HEADER_BYTES, SEGMENT_SIZE_MIN_BYTES};
use flux::log::txn::{decode_intent, TXN_BYTES};
use flux::log::{
    FRAME_EVENTS, FRAME_EVENTS_V1, FRAME_INTENT, FRAME_INTENT_V1, FRAME_PART, FRAME_PART_V1,
};
use flux::state::{write_entity_json, Store};
use libfuzzer_sys::fuzz_target;

const SHARD: (u32, u32) = (1, 2);

fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("flux-fuzz-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    })
}

/// One segment file to write: its header and its bytes after the header.
struct SegmentFile {
    header: SegmentHeader,
    bytes: Vec<u8>,
}

fn segment(shard: (u32, u32), base_lsn: u64, body: &[u8], fix_frames: bool) -> SegmentFile {
    let size = ((SEGMENT_HEADER_BYTES + body.len()).next_multiple_of(8) as u64)
        .max(SEGMENT_SIZE_MIN_BYTES);
    let header = SegmentHeader {
        shard_id: shard.0,
        shard_count: shard.1,
        base_lsn,
        size_bytes: size,
    };
    let mut bytes = vec![0u8; size as usize];
    bytes[..SEGMENT_HEADER_BYTES].copy_from_slice(&header.encode());
    bytes[SEGMENT_HEADER_BYTES..SEGMENT_HEADER_BYTES + body.len()].copy_from_slice(body);
    if fix_frames {
        fix_up(&mut bytes, base_lsn);
    }
    SegmentFile { header, bytes }
}

/// Gives every frame whose length is plausible its own LSN and a correct CRC, walking
/// the segment the way the scan does.
fn fix_up(seg: &mut [u8], base_lsn: u64) {
    let mut off = SEGMENT_HEADER_BYTES;
    while let Some(extent) = claimed_extent(&seg[off..]) {
        let frame = &mut seg[off..off + extent];
        frame[8..16].copy_from_slice(&(base_lsn + off as u64).to_le_bytes());
        let crc = frame_crc(frame);
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
        off += extent;
    }
}

fn write_files(dir: &Path, files: &[SegmentFile]) {
    for entry in std::fs::read_dir(dir).expect("read scratch dir") {
        std::fs::remove_file(entry.expect("entry").path()).expect("clean scratch dir");
    }
    for f in files {
        let path = dir.join(segment_file_name(f.header.base_lsn));
        std::fs::write(path, &f.bytes).expect("write segment");
    }
}

/// What recovery does with the records of one part: a section (this build's frame
/// kinds) or fixed-layout records (the `_V1` kinds). Every record of a section is also
/// read back alone by its LSN, as history does.
fn replay_part(store: &mut Store, part: &[u8], base: u64, v1: bool) {
    if v1 {
        return replay(store, part, base);
    }
    let Some(section) = Section::parse(part).filter(|s| s.len() == part.len()) else {
        return; // recovery stops with "passed its checksum but cannot be decoded"
    };
    let mut decoded = Vec::new();
    let mut offsets = Vec::new();
    let whole = section.decode(base, &mut decoded, |at, _| offsets.push(at));
    let mut off = 0;
    let mut one = Vec::new();
    for at in offsets {
        let (r, len) = Record::parse_stored(&decoded[off..]).expect("a decoded record is valid");
        let lsn = base + at as u64;
        one.clear();
        let section_of = |l: u64| part.get(usize::try_from(l.checked_sub(base)?).ok()?..);
        decode_at(&part[at..], lsn, section_of, &mut one).expect("decodes alone as in order");
        assert_eq!(one, decoded[off..off + len], "random access = sequential");
        store.apply(&r, lsn);
        off += len;
    }
    assert_eq!(off, decoded.len());
    let _ = whole;
}

/// What recovery does with fixed-layout records.
fn replay(store: &mut Store, records: &[u8], base: u64) {
    let mut off = 0;
    while off < records.len() {
        let Some((r, len)) = Record::parse_stored(&records[off..]) else {
            return; // recovery stops with "passed its checksum but cannot be decoded"
        };
        assert!(len > 0 && off + len <= records.len());
        store.apply(&r, base + off as u64);
        off += len;
    }
}

/// The outcome of a scan, comparable across modes and runs.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<(u64, u8, Vec<u8>)>,
    end_lsn: u64,
    torn_tail: Option<u64>,
    skipped: usize,
}

fn run(dir: &Path, from_lsn: u64, mode: RecoveryMode) -> Result<Outcome, ScanError> {
    let mut frames = Vec::new();
    let mut store = Store::default();
    let result = scan(dir, SHARD, from_lsn, mode, |lsn, kind, payload| {
        frames.push((lsn, kind, payload.to_vec()));
        let base = lsn + FRAME_HEADER_BYTES as u64;
        let v1 = matches!(kind, FRAME_EVENTS_V1 | FRAME_INTENT_V1 | FRAME_PART_V1);
        match kind {
            FRAME_EVENTS | FRAME_EVENTS_V1 => replay_part(&mut store, payload, base, v1),
            FRAME_INTENT | FRAME_INTENT_V1 => {
                if let Some((_, parts)) = decode_intent(payload) {
                    for (shard, at, bytes) in parts {
                        assert!(at + bytes.len() <= payload.len());
                        if u32::from(shard) == SHARD.0 {
                            replay_part(&mut store, bytes, base + at as u64, v1);
                        }
                    }
                }
            }
            FRAME_PART | FRAME_PART_V1 if payload.len() >= TXN_BYTES => {
                let at = base + TXN_BYTES as u64;
                replay_part(&mut store, &payload[TXN_BYTES..], at, v1)
            }
            _ => {}
        }
    });
    let mut out = Vec::new();
    for (id, e) in store.range(b"", None) {
        out.clear();
        write_entity_json(&mut out, id, e);
    }
    let (_segments, report) = result?;
    assert_eq!(report.frames as usize, frames.len());
    Ok(Outcome {
        frames,
        end_lsn: report.end_lsn,
        torn_tail: report.torn_tail.map(|t| t.lsn),
        skipped: report.skipped_corruption.len(),
    })
}

fn check_outcome(o: &Outcome, from_lsn: u64) {
    let mut prev_end = None;
    for (lsn, _, payload) in &o.frames {
        assert!(lsn % 8 == 0 && *lsn >= from_lsn, "frame at {lsn}");
        if let Some(end) = prev_end {
            assert!(*lsn >= end, "frames overlap at {lsn}");
        }
        let end = lsn + (FRAME_HEADER_BYTES + payload.len()).next_multiple_of(8) as u64;
        assert!(
            end <= o.end_lsn,
            "frame at {lsn} ends past the log's end {}",
            o.end_lsn
        );
        prev_end = Some(end);
    }
}

/// The frame reader alone, on the raw body at an 8-aligned LSN.
fn check_read_frame(body: &[u8], lsn: u64) {
    match read_frame(body, lsn) {
        FrameRead::Frame {
            lsn: got,
            payload,
            len,
            ..
        } => {
            assert_eq!(got, lsn);
            assert!(len % 8 == 0 && len <= body.len());
            assert_eq!(
                len,
                (FRAME_HEADER_BYTES + payload.len()).next_multiple_of(8)
            );
            assert_eq!(claimed_extent(body), Some(len));
        }
        FrameRead::End => assert!(body.len() < 4 || body[..4] == [0; 4]),
        FrameRead::Bad { reason } => assert!(!reason.is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, param, body @ ..] = data else {
        return;
    };
    let (flags, param) = (*flags, u64::from(*param));
    check_read_frame(body, 8 * param);

    let fix = flags & 1 != 0;
    let first_base = if flags & 32 != 0 { 8 * param } else { 0 };
    let from_lsn = if flags & 8 != 0 { 8 * param } else { 0 };
    let mut files = Vec::new();
    if flags & 2 != 0 {
        let split = (body.len() * param as usize / 255) & !7;
        let first = segment(SHARD, first_base, &body[..split], fix);
        let mut second_base = first.header.base_lsn + first.header.size_bytes;
        if flags & 4 != 0 {
            second_base += 8;
        }
        let shard = if flags & 16 != 0 { (0, 2) } else { SHARD };
        files.push(first);
        files.push(segment(shard, second_base, &body[split..], fix));
    } else {
        files.push(segment(SHARD, first_base, body, fix));
    }

    let dir = scratch_dir();
    let mut outcomes = Vec::new();
    for mode in [RecoveryMode::Strict, RecoveryMode::Tolerate] {
        write_files(dir, &files);
        let first = run(dir, from_lsn, mode);
        match &first {
            Ok(o) => {
                check_outcome(o, from_lsn);
                if mode == RecoveryMode::Strict {
                    assert_eq!(o.skipped, 0);
                }
                // What the first scan left (a cut tail) scans clean to the same place.
                let again = run(dir, from_lsn, mode).expect("a recovered log scans again");
                assert_eq!(again.torn_tail, None);
                assert_eq!(
                    (&again.frames, again.end_lsn),
                    (&o.frames, o.end_lsn),
                    "second scan in {mode:?}"
                );
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                if mode == RecoveryMode::Tolerate {
                    assert!(
                        matches!(
                            e,
                            ScanError::ShardMismatch { .. } | ScanError::FromBeyondEnd { .. }
                        ),
                        "Tolerate refused: {e}"
                    );
                }
            }
        }
        outcomes.push(first);
    }
    if let [Ok(strict), tolerate] = &outcomes[..] {
        let tolerate = tolerate
            .as_ref()
            .expect("Tolerate fails where Strict succeeds");
        assert_eq!(strict, tolerate);
    }
});
