//! Segment files of a stopped server, read and patched by their documented layout:
//! `src/log/segment.rs` (a 64-byte header) and `src/log/frame.rs` (`len u32 | crc u32 |
//! lsn u64 | kind u8 | payload`, padded to 8 bytes; a zero length ends the frames;
//! preallocated zeros follow). Names are the 20-digit base LSN plus `.seg`.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes of a segment header; the first frame follows it.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Frames start at multiples of this.
pub const FRAME_ALIGN: usize = 8;
/// Bytes of a frame before its payload.
pub const FRAME_HEADER_BYTES: usize = 17;

/// Segment files of `shard`, oldest first (zero-padded names sort in log order).
pub fn segments(data_dir: &Path, shard: u32) -> Vec<PathBuf> {
    let dir = data_dir.join(format!("shard-{shard}"));
    let mut segs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs
}

/// The file name of `path`, as text.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

/// The base LSN in a segment's name.
pub fn base_lsn(path: &Path) -> u64 {
    let name = file_name(path);
    let digits = name.strip_suffix(".seg").expect("segment name");
    assert_eq!(digits.len(), 20, "{name}");
    digits.parse().expect("segment name is a number")
}

/// A frame found in a segment: its offset in the file and its extent (padded).
#[derive(Debug, Clone, Copy)]
pub struct FrameAt {
    pub offset: usize,
    pub extent: usize,
}

/// Walks the frames of a segment by their length fields up to the first zero
/// length, and checks that everything after the last frame is zero (the write
/// position: the first aligned offset after which the file is zero).
pub fn frames(bytes: &[u8]) -> Vec<FrameAt> {
    let mut out = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    // Bound: every turn advances by at least one frame header.
    while offset + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        assert!(len >= FRAME_HEADER_BYTES, "frame length {len} at {offset}");
        let extent = len.next_multiple_of(FRAME_ALIGN);
        assert!(offset + extent <= bytes.len(), "frame past the segment end");
        out.push(FrameAt { offset, extent });
        offset += extent;
    }
    assert_eq!(
        write_offset(bytes),
        offset,
        "the frames do not end where the zeros begin"
    );
    out
}

/// The first 8-aligned offset after the header from which the file is all zeros.
pub fn write_offset(bytes: &[u8]) -> usize {
    let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    used.next_multiple_of(FRAME_ALIGN).max(SEGMENT_HEADER_BYTES)
}

/// Writes `bytes` at `offset` of the file at `path` and syncs it.
pub fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open segment");
    f.write_all_at(bytes, offset).expect("patch segment");
    f.sync_all().expect("sync segment");
}
