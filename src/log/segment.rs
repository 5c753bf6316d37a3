//! One segment file: a fixed-size, preallocated, memory-mapped piece of a shard's log.
//!
//! A segment with base LSN `b` and size `s` holds the LSNs `[b + 64, b + s)`: LSN
//! `b + o` is byte `o` of the file. The first 64 bytes are the header, drawn above
//! [`SegmentHeader`]; frames (see `frame`) follow it back to back, and the zeros the
//! file was preallocated with mark where writing stopped.
//!
//! Durability is the caller's: `append` only writes into the mapping, and the caller
//! fdatasyncs [`Segment::file`] before acknowledging. A roll-over need not wait for
//! the old segment's sync: the new segment's seal frame lets recovery tell a tail the
//! old one lost from corruption (see `scan`).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use super::frame::{
    frame_len_checked, read_frame, write_frame, FrameRead, FRAME_ALIGN, FRAME_BYTES_MAX,
    FRAME_HEADER_BYTES,
};
use super::naming::{
    parse_segment_file_name, segment_file_name, spare_file_name, spare_nonce, sync_dir,
};

/// Bytes of the segment header; the first frame starts right after it.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FLUXSEG1";
/// The segment format written: 2, whose event records are in the compact form
/// (`event::compact`). Format 1 (the fixed record layout of `event.rs`) is still read;
/// a log never mixes the two within a segment (see `ShardLog::reserve`). Any other
/// version is a bad header.
pub const SEGMENT_VERSION: u32 = 2;
/// The oldest segment format read.
pub const SEGMENT_VERSION_OLDEST: u32 = 1;
/// Smallest segment size accepted, one page; a header claiming less is bad. It holds
/// a payload of up to 4015 bytes.
pub const SEGMENT_SIZE_MIN_BYTES: u64 = 4096;

const _: () = assert!(SEGMENT_HEADER_BYTES % FRAME_ALIGN == 0);
const _: () = assert!(SEGMENT_SIZE_MIN_BYTES % FRAME_ALIGN as u64 == 0);
const _: () =
    assert!(SEGMENT_SIZE_MIN_BYTES as usize >= SEGMENT_HEADER_BYTES + 2 * FRAME_HEADER_BYTES);

const CRC_AT: usize = 60;

/// The fixed facts of a segment, kept in its first 64 bytes (all integers LE):
///
/// ```text
///  offset  bytes  field
///  0       8      magic        "FLUXSEG1"
///  8       4      version      u32, 2 (1: records in the fixed layout)
///  12      4      shard_id     u32, < shard_count
///  16      4      shard_count  u32, > 0
///  20      4      reserved     u32, zero
///  24      8      base_lsn     u64, 8-aligned; equals the number in the file name
///  32      8      size_bytes   u64, 8-aligned, >= 4096; equals the file length
///  40      20     reserved     zeros
///  60      4      crc          u32, crc32 of bytes [0, 60)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub shard_id: u32,
    pub shard_count: u32,
    pub base_lsn: u64,
    pub size_bytes: u64,
}

impl SegmentHeader {
    /// The 64 header bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut b = [0u8; SEGMENT_HEADER_BYTES];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.shard_id.to_le_bytes());
        b[16..20].copy_from_slice(&self.shard_count.to_le_bytes());
        b[24..32].copy_from_slice(&self.base_lsn.to_le_bytes());
        b[32..40].copy_from_slice(&self.size_bytes.to_le_bytes());
        let crc = crc32fast::hash(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks the 64 header bytes; the error says what is wrong.
    pub fn decode(b: &[u8; SEGMENT_HEADER_BYTES]) -> Result<SegmentHeader, &'static str> {
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| u64::from(u32_at(at)) | u64::from(u32_at(at + 4)) << 32;
        if b[0..8] != SEGMENT_MAGIC {
            return Err("bad magic: not a Flux segment");
        }
        if crc32fast::hash(&b[..CRC_AT]) != u32_at(CRC_AT) {
            return Err("header crc mismatch");
        }
        if !(SEGMENT_VERSION_OLDEST..=SEGMENT_VERSION).contains(&u32_at(8)) {
            return Err("unsupported segment format version");
        }
        if u32_at(20) != 0 || b[40..CRC_AT].iter().any(|&x| x != 0) {
            return Err("reserved header bytes are not zero");
        }
        let header = SegmentHeader {
            shard_id: u32_at(12),
            shard_count: u32_at(16),
            base_lsn: u64_at(24),
            size_bytes: u64_at(32),
        };
        header.check()?;
        Ok(header)
    }

    /// The invariants every header keeps, whether we write it or read it.
    fn check(&self) -> Result<(), &'static str> {
        if self.shard_id >= self.shard_count {
            return Err("shard id not below shard count");
        }
        if self.base_lsn % FRAME_ALIGN as u64 != 0 {
            return Err("base lsn not 8-byte aligned");
        }
        if self.size_bytes % FRAME_ALIGN as u64 != 0 || self.size_bytes < SEGMENT_SIZE_MIN_BYTES {
            return Err("segment size not a multiple of 8 of at least 4096 bytes");
        }
        if usize::try_from(self.size_bytes).is_err() {
            return Err("segment size beyond the address space");
        }
        if self.base_lsn.checked_add(self.size_bytes).is_none() {
            return Err("segment ends beyond the largest lsn");
        }
        Ok(())
    }
}

/// The largest payload one frame can carry in segments of `size_bytes`. A caller must
/// refuse larger records before `append` (which asserts it): rolling would not help.
pub fn payload_bytes_max(size_bytes: u64) -> usize {
    let frame_bytes_max = usize::try_from(size_bytes)
        .unwrap_or(usize::MAX)
        .saturating_sub(SEGMENT_HEADER_BYTES)
        .min(FRAME_BYTES_MAX);
    frame_bytes_max.saturating_sub(FRAME_HEADER_BYTES)
}

/// Why [`Segment::open`] failed: the file could not be read (I/O), or what it holds is
/// not a valid segment of that name (corruption or a foreign file).
#[derive(Debug)]
pub enum OpenError {
    Io(io::Error),
    BadHeader { path: PathBuf, reason: &'static str },
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Io(e) => write!(f, "segment i/o error: {e}"),
            OpenError::BadHeader { path, reason } => {
                write!(f, "bad segment header in {}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Io(e) => Some(e),
            OpenError::BadHeader { .. } => None,
        }
    }
}

/// An open, mapped segment file.
pub struct Segment {
    path: PathBuf,
    header: SegmentHeader,
    /// The whole file, `header.size_bytes` long. Sound to map because this shard is
    /// the only one that touches its directory and nothing shortens the file while it
    /// is mapped (that would turn reads into SIGBUS).
    mmap: MmapMut,
    file: File,
    /// Where the next frame goes, in bytes from the start of the file; 8-aligned,
    /// within [SEGMENT_HEADER_BYTES, size].
    write_offset: usize,
    /// The header's format version: how its records are laid out.
    format: u32,
}

impl Segment {
    /// Creates the segment file of `h.base_lsn` in `dir`, preallocated to its full
    /// size, with its header written and synced, its name made durable, and maps it.
    ///
    /// The file is built under a temporary name and linked into place only once its
    /// header is durable, so a crash never leaves a segment name on a file without a
    /// header (which recovery would have to call corrupt). posix_fallocate reserves
    /// every block now, so that writes into the mapping can never meet ENOSPC (which
    /// would be a SIGBUS); that ENOSPC comes back here as an io::Error whose
    /// `raw_os_error()` is ENOSPC (kind `StorageFull`). On any failure no file is left.
    /// An existing segment of that name is an `AlreadyExists` error, never replaced.
    ///
    /// # Panics
    /// If `h` breaks the header invariants (shard id < count, 8-aligned base LSN and
    /// size, size >= [`SEGMENT_SIZE_MIN_BYTES`]): the caller's configuration is checked
    /// before this.
    pub fn create(dir: &Path, h: SegmentHeader) -> io::Result<Segment> {
        if let Err(reason) = h.check() {
            panic!("Segment::create with an invalid header {h:?}: {reason}");
        }
        let name = segment_file_name(h.base_lsn);
        let path = dir.join(&name);
        let tmp_path = dir.join(format!("{name}.tmp"));
        let built = build_file(&tmp_path, &h)
            // hard_link never replaces an existing name, unlike rename.
            .and_then(|file| fs::hard_link(&tmp_path, &path).map(|()| file));
        let removed = fs::remove_file(&tmp_path);
        let file = built?;
        removed?;
        sync_dir(dir)?;
        Segment::map(path, h, file, SEGMENT_HEADER_BYTES)
    }

    /// Creates the segment of `h.base_lsn` ahead of need, under its spare name
    /// (`naming::spare_file_name`, which recovery ignores): preallocated, header
    /// written and synced. This is the slow part of a roll-over (posix_fallocate,
    /// fsync), done on the blocking pool; [`Segment::promote`] later gives it its
    /// segment name. Appends must not be made before that.
    ///
    /// # Panics
    /// As [`Segment::create`], on a header that breaks the invariants.
    pub fn create_spare(dir: &Path, h: SegmentHeader) -> io::Result<Segment> {
        if let Err(reason) = h.check() {
            panic!("Segment::create_spare with an invalid header {h:?}: {reason}");
        }
        let path = dir.join(spare_file_name(h.base_lsn, spare_nonce()));
        match build_file(&path, &h) {
            Ok(file) => Segment::map(path, h, file, SEGMENT_HEADER_BYTES),
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Gives a spare its segment name: a hard link (which, unlike rename, never
    /// replaces an existing segment) and the removal of the spare name. Two metadata
    /// operations that do not wait for the disk; the caller makes the new name durable
    /// (fsync of the directory) before it counts a frame of this segment as durable.
    pub fn promote(&mut self) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let path = dir.join(segment_file_name(self.header.base_lsn));
        if path == self.path {
            return Ok(());
        }
        fs::hard_link(&self.path, &path)?;
        fs::remove_file(&self.path)?;
        self.path = path;
        Ok(())
    }

    /// Opens and maps an existing segment after checking its header: magic, version,
    /// crc, base LSN equal to the file name's, size equal to the file length.
    ///
    /// Until [`Segment::set_write_offset`] is called the segment counts as full
    /// (appends return `None`): only a scan knows where its frames end.
    pub fn open(path: &Path) -> Result<Segment, OpenError> {
        let bad = |reason| OpenError::BadHeader {
            path: path.to_path_buf(),
            reason,
        };
        let name_base_lsn = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_segment_file_name)
            .ok_or_else(|| bad("file name is not a segment name"))?;
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let file_bytes = file.metadata()?.len();
        if file_bytes < SEGMENT_HEADER_BYTES as u64 {
            return Err(bad("file shorter than a segment header"));
        }
        let mut raw = [0u8; SEGMENT_HEADER_BYTES];
        file.read_exact_at(&mut raw, 0)?;
        let header = SegmentHeader::decode(&raw).map_err(bad)?;
        if header.base_lsn != name_base_lsn {
            return Err(bad("header base lsn does not match the file name"));
        }
        if header.size_bytes != file_bytes {
            return Err(bad("file length does not match the header's segment size"));
        }
        let full = header.size_bytes as usize;
        let mut seg = Segment::map(path.to_path_buf(), header, file, full)?;
        seg.format = u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]);
        Ok(seg)
    }

    fn map(
        path: PathBuf,
        header: SegmentHeader,
        file: File,
        write_offset: usize,
    ) -> io::Result<Segment> {
        // SAFETY: see the `mmap` field: the file is this shard's alone and is never
        // shortened while mapped; its length is the header's size, checked or set.
        let mmap = unsafe { MmapMut::map_mut(&file)? };
        assert_eq!(mmap.len() as u64, header.size_bytes);
        Ok(Segment {
            path,
            header,
            mmap,
            file,
            write_offset,
            format: SEGMENT_VERSION,
        })
    }

    /// The segment's format version (`SEGMENT_VERSION` for one made by this build).
    pub fn format(&self) -> u32 {
        self.format
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    pub fn base_lsn(&self) -> u64 {
        self.header.base_lsn
    }

    /// One past the last LSN this segment can hold: the next segment's base LSN.
    pub fn end_lsn(&self) -> u64 {
        self.header.base_lsn + self.header.size_bytes
    }

    /// LSN of the next frame to be appended.
    pub fn write_lsn(&self) -> u64 {
        self.header.base_lsn + self.write_offset as u64
    }

    /// The largest payload a frame in this segment can carry.
    pub fn payload_bytes_max(&self) -> usize {
        payload_bytes_max(self.header.size_bytes)
    }

    /// Sets where appends continue (after recovery), as an LSN.
    ///
    /// # Panics
    /// If `lsn` is not an 8-aligned LSN within `[base + 64, end]`.
    pub fn set_write_offset(&mut self, lsn: u64) {
        self.write_offset = self.offset_of(lsn);
    }

    /// Appends one frame whose payload `fill` writes in place; returns its LSN, or
    /// `None` when it does not fit in what is left (the caller rolls to a new segment
    /// and appends there).
    ///
    /// # Panics
    /// If `payload_len` exceeds [`Segment::payload_bytes_max`]: no segment could take
    /// it, so the caller must refuse it first.
    pub fn append(
        &mut self,
        kind: u8,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Option<u64> {
        let extent = frame_len_checked(payload_len)
            .filter(|_| payload_len <= self.payload_bytes_max())
            .unwrap_or_else(|| {
                panic!("payload of {payload_len} bytes exceeds the segment's maximum")
            });
        let end = self.write_offset + extent;
        if end > self.mmap.len() {
            return None;
        }
        let lsn = self.write_lsn();
        write_frame(
            &mut self.mmap[self.write_offset..end],
            lsn,
            kind,
            payload_len,
            fill,
        );
        self.write_offset = end;
        Some(lsn)
    }

    /// The whole mapping, header included; byte `o` is LSN `base_lsn + o`.
    pub fn bytes(&self) -> &[u8] {
        &self.mmap
    }

    /// The frame at `lsn`, for history reads. `End` at or past the write position
    /// (so also at `end_lsn`, where the next segment takes over); `Bad` outside the
    /// segment or where the bytes are not a frame at that LSN.
    pub fn read_at(&self, lsn: u64) -> FrameRead<'_> {
        let first_lsn = self.base_lsn() + SEGMENT_HEADER_BYTES as u64;
        if lsn < first_lsn || lsn > self.end_lsn() {
            return FrameRead::Bad {
                reason: "lsn outside this segment",
            };
        }
        if lsn >= self.write_lsn() {
            return FrameRead::End;
        }
        let offset = (lsn - self.base_lsn()) as usize;
        read_frame(&self.mmap[offset..self.write_offset], lsn)
    }

    /// The file, for the caller's fdatasync.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Zeroes `[lsn, end)` and msyncs it: cuts a torn tail so that neither it nor
    /// stale frames behind it can be read back after later appends. Appends continue
    /// at `lsn` if they were past it. Only bytes up to the last non-zero one are
    /// written, so cutting near the start of a mostly empty segment stays cheap.
    ///
    /// # Panics
    /// If `lsn` is not an 8-aligned LSN within `[base + 64, end]`.
    pub fn truncate_from(&mut self, lsn: u64) -> io::Result<()> {
        let offset = self.offset_of(lsn);
        if let Some(last) = last_nonzero(&self.mmap[offset..]) {
            let dirty_bytes = last + 1;
            self.mmap[offset..offset + dirty_bytes].fill(0);
            self.mmap.flush_range(offset, dirty_bytes)?;
        }
        self.write_offset = self.write_offset.min(offset);
        Ok(())
    }

    fn offset_of(&self, lsn: u64) -> usize {
        let first_lsn = self.base_lsn() + SEGMENT_HEADER_BYTES as u64;
        assert!(
            (first_lsn..=self.end_lsn()).contains(&lsn) && lsn % FRAME_ALIGN as u64 == 0,
            "lsn {lsn} is not a frame position of segment [{first_lsn}, {})",
            self.end_lsn()
        );
        (lsn - self.base_lsn()) as usize
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.path)
            .field("header", &self.header)
            .field("write_lsn", &self.write_lsn())
            .finish()
    }
}

/// Creates (or reuses a stale) `tmp_path`, preallocates it and writes the header,
/// durably.
fn build_file(tmp_path: &Path, h: &SegmentHeader) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp_path)?;
    let size = libc::off_t::try_from(h.size_bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment size beyond off_t"))?;
    // SAFETY: a valid open descriptor; posix_fallocate returns an errno, not -1.
    let err = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size) };
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    file.write_all_at(&h.encode(), 0)?;
    file.sync_all()?;
    Ok(file)
}

/// Index of the last non-zero byte of `bytes`.
pub(super) fn last_nonzero(bytes: &[u8]) -> Option<usize> {
    // Whole chunks first: comparing 64 bytes at a time vectorizes, and recovery runs
    // this over the unused rest of a segment.
    const CHUNK_BYTES: usize = 64;
    let mut end = bytes.len();
    while end >= CHUNK_BYTES && bytes[end - CHUNK_BYTES..end].iter().all(|&b| b == 0) {
        end -= CHUNK_BYTES;
    }
    bytes[..end].iter().rposition(|&b| b != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE_BYTES: u64 = 4096;

    fn header(base_lsn: u64) -> SegmentHeader {
        SegmentHeader {
            shard_id: 2,
            shard_count: 4,
            base_lsn,
            size_bytes: SIZE_BYTES,
        }
    }

    fn open_err(path: &Path) -> &'static str {
        match Segment::open(path) {
            Err(OpenError::BadHeader { path: p, reason }) => {
                assert_eq!(p, path);
                reason
            }
            other => panic!("{other:?}"),
        }
    }

    fn patch(path: &Path, at: u64, bytes: &[u8]) {
        let file = OpenOptions::new().write(true).open(path).unwrap();
        file.write_all_at(bytes, at).unwrap();
    }

    #[test]
    fn header_round_trip_and_layout() {
        let h = SegmentHeader {
            shard_id: 3,
            shard_count: 8,
            base_lsn: 1 << 33,
            size_bytes: 1 << 26,
        };
        let b = h.encode();
        assert_eq!(&b[0..8], b"FLUXSEG1");
        assert_eq!(b[8..12], 2u32.to_le_bytes());
        assert_eq!(b[24..32], (1u64 << 33).to_le_bytes());
        assert_eq!(b[32..40], (1u64 << 26).to_le_bytes());
        assert!(b[40..60].iter().all(|&x| x == 0));
        assert_eq!(b[60..64], crc32fast::hash(&b[..60]).to_le_bytes());
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
    }

    #[test]
    fn header_decode_names_each_fault() {
        let good = header(4096).encode();
        let with = |at: usize, bytes: &[u8], fix_crc: bool| {
            let mut b = good;
            b[at..at + bytes.len()].copy_from_slice(bytes);
            if fix_crc {
                let crc = crc32fast::hash(&b[..60]);
                b[60..].copy_from_slice(&crc.to_le_bytes());
            }
            SegmentHeader::decode(&b).unwrap_err()
        };
        assert_eq!(with(0, b"FLUXSEG2", true), "bad magic: not a Flux segment");
        assert_eq!(with(33, &[9], false), "header crc mismatch");
        assert_eq!(with(61, &[9], false), "header crc mismatch");
        for unknown in [0u32, 3, u32::MAX] {
            assert_eq!(
                with(8, &unknown.to_le_bytes(), true),
                "unsupported segment format version"
            );
        }
        assert_eq!(with(20, &[1], true), "reserved header bytes are not zero");
        assert_eq!(with(50, &[1], true), "reserved header bytes are not zero");
        assert_eq!(
            with(12, &4u32.to_le_bytes(), true),
            "shard id not below shard count"
        );
        assert_eq!(
            with(24, &4100u64.to_le_bytes(), true),
            "base lsn not 8-byte aligned"
        );
        assert_eq!(
            with(32, &4092u64.to_le_bytes(), true),
            "segment size not a multiple of 8 of at least 4096 bytes"
        );
        assert_eq!(
            with(32, &2048u64.to_le_bytes(), true),
            "segment size not a multiple of 8 of at least 4096 bytes"
        );
    }

    #[test]
    fn create_then_open_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let seg = Segment::create(dir.path(), header(8192)).unwrap();
        let path = dir.path().join("00000000000000008192.seg");
        assert_eq!(seg.path(), path);
        assert_eq!(fs::metadata(&path).unwrap().len(), SIZE_BYTES);
        assert_eq!((seg.base_lsn(), seg.end_lsn()), (8192, 8192 + SIZE_BYTES));
        assert_eq!(seg.write_lsn(), 8192 + 64);
        assert_eq!(&seg.bytes()[..64], &header(8192).encode());
        assert!(seg.bytes()[64..].iter().all(|&b| b == 0));
        drop(seg);
        // Only the segment is left: the temporary file is gone.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["00000000000000008192.seg"]);

        let seg = Segment::open(&path).unwrap();
        assert_eq!(*seg.header(), header(8192));
        // Full until a scan says where the frames end.
        assert_eq!(seg.write_lsn(), seg.end_lsn());
    }

    #[test]
    fn create_never_replaces_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), header(0)).unwrap();
        seg.append(1, 3, |d| d.copy_from_slice(b"abc")).unwrap();
        let err = Segment::create(dir.path(), header(0)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(matches!(
            seg.read_at(64),
            FrameRead::Frame {
                payload: b"abc",
                ..
            }
        ));
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn create_reuses_a_stale_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("00000000000000000000.seg.tmp"),
            b"junk from a crash",
        )
        .unwrap();
        let seg = Segment::create(dir.path(), header(0)).unwrap();
        assert_eq!(&seg.bytes()[..64], &header(0).encode());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_preallocation_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        // 1 PiB: beyond the largest file ext4 (EFBIG) or tmpfs (ENOSPC) allows.
        let huge = SegmentHeader {
            size_bytes: 1 << 50,
            ..header(0)
        };
        assert!(Segment::create(dir.path(), huge).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn enospc_keeps_its_os_error() {
        let err = io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    }

    #[test]
    #[should_panic(expected = "invalid header")]
    fn create_refuses_an_invalid_header() {
        let dir = tempfile::tempdir().unwrap();
        let _ = Segment::create(
            dir.path(),
            SegmentHeader {
                size_bytes: 4100,
                ..header(0)
            },
        );
    }

    #[test]
    fn open_refuses_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        drop(Segment::create(dir.path(), header(0)).unwrap());
        let path = dir.path().join(segment_file_name(0));

        let renamed = dir.path().join(segment_file_name(4096));
        fs::copy(&path, &renamed).unwrap();
        assert_eq!(
            open_err(&renamed),
            "header base lsn does not match the file name"
        );

        let foreign = dir.path().join("segment.bin");
        fs::copy(&path, &foreign).unwrap();
        assert_eq!(open_err(&foreign), "file name is not a segment name");

        let short = dir.path().join(segment_file_name(8192));
        fs::write(&short, &header(8192).encode()[..40]).unwrap();
        assert_eq!(open_err(&short), "file shorter than a segment header");

        let truncated = dir.path().join(segment_file_name(12288));
        drop(Segment::create(dir.path(), header(12288)).unwrap());
        OpenOptions::new()
            .write(true)
            .open(&truncated)
            .unwrap()
            .set_len(2048)
            .unwrap();
        assert_eq!(
            open_err(&truncated),
            "file length does not match the header's segment size"
        );

        patch(&path, 0, b"X");
        assert_eq!(open_err(&path), "bad magic: not a Flux segment");
        patch(&path, 0, b"F");
        Segment::open(&path).unwrap();
        patch(&path, 13, &[7]);
        assert_eq!(open_err(&path), "header crc mismatch");

        let missing = dir.path().join(segment_file_name(1 << 20));
        assert!(
            matches!(Segment::open(&missing), Err(OpenError::Io(e)) if e.kind() == io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn append_until_full_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), header(4096)).unwrap();
        let mut lsns = Vec::new();
        // 100-byte payloads take 120 bytes: 33 of them fit in 4032.
        while let Some(lsn) = seg.append(9, 100, |d| d.fill(lsns.len() as u8)) {
            lsns.push(lsn);
        }
        assert_eq!(lsns.len(), 33);
        assert_eq!(lsns[0], 4096 + 64);
        assert!(lsns.windows(2).all(|w| w[1] - w[0] == 120));
        assert_eq!(seg.write_lsn(), 4096 + 64 + 33 * 120);
        // A smaller frame still fits in the 72 bytes left.
        assert_eq!(seg.append(1, 40, |d| d.fill(1)), Some(4096 + 64 + 33 * 120));
        assert_eq!(seg.append(1, 0, |_| {}), None);

        for (n, &lsn) in lsns.iter().enumerate() {
            match seg.read_at(lsn) {
                FrameRead::Frame {
                    lsn: got,
                    kind: 9,
                    payload,
                    len: 120,
                } => {
                    assert_eq!(got, lsn);
                    assert!(payload.len() == 100 && payload.iter().all(|&b| b == n as u8));
                }
                other => panic!("{lsn}: {other:?}"),
            }
        }
        assert_eq!(seg.read_at(seg.end_lsn()), FrameRead::End);
        assert!(matches!(seg.read_at(4096), FrameRead::Bad { .. }));
        assert!(matches!(
            seg.read_at(seg.end_lsn() + 8),
            FrameRead::Bad { .. }
        ));
        assert!(matches!(seg.read_at(4096 + 64 + 8), FrameRead::Bad { .. }));
        assert!(matches!(seg.read_at(4096 + 64 + 1), FrameRead::Bad { .. }));
    }

    #[test]
    fn read_at_stops_at_the_write_position() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), header(0)).unwrap();
        let lsn = seg.append(1, 8, |d| d.fill(1)).unwrap();
        assert!(matches!(seg.read_at(lsn), FrameRead::Frame { .. }));
        assert_eq!(seg.read_at(seg.write_lsn()), FrameRead::End);
        seg.set_write_offset(lsn);
        assert_eq!(seg.read_at(lsn), FrameRead::End);
    }

    #[test]
    fn largest_payload_fits_an_empty_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), header(0)).unwrap();
        assert_eq!(seg.payload_bytes_max(), 4096 - 64 - 17);
        assert_eq!(
            payload_bytes_max(1 << 40),
            FRAME_BYTES_MAX - FRAME_HEADER_BYTES
        );
        let max = seg.payload_bytes_max();
        assert_eq!(seg.append(1, max, |d| d.fill(3)), Some(64));
        assert_eq!(seg.write_lsn(), seg.end_lsn());
    }

    #[test]
    #[should_panic(expected = "exceeds the segment's maximum")]
    fn append_refuses_a_payload_no_segment_can_hold() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), header(0)).unwrap();
        let too_big = seg.payload_bytes_max() + 1;
        seg.append(1, too_big, |_| {});
    }

    #[test]
    fn truncate_zeroes_the_tail_durably() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), header(0)).unwrap();
        let lsns: Vec<u64> = (0..5)
            .map(|_| seg.append(1, 30, |d| d.fill(0xFF)).unwrap())
            .collect();
        seg.truncate_from(lsns[2]).unwrap();
        assert_eq!(seg.write_lsn(), lsns[2]);
        assert!(seg.bytes()[lsns[2] as usize..].iter().all(|&b| b == 0));
        assert!(matches!(seg.read_at(lsns[1]), FrameRead::Frame { .. }));
        // Cutting past the write position leaves it alone.
        seg.truncate_from(seg.end_lsn()).unwrap();
        assert_eq!(seg.write_lsn(), lsns[2]);
        let path = seg.path().to_path_buf();
        drop(seg);
        let on_disk = fs::read(&path).unwrap();
        assert!(on_disk[lsns[2] as usize..].iter().all(|&b| b == 0));
        assert_ne!(on_disk[lsns[1] as usize], 0);
    }

    #[test]
    #[should_panic(expected = "is not a frame position")]
    fn set_write_offset_refuses_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), header(0)).unwrap();
        seg.set_write_offset(8);
    }

    #[test]
    fn last_nonzero_finds_the_last_written_byte() {
        assert_eq!(last_nonzero(&[]), None);
        assert_eq!(last_nonzero(&[0; 1000]), None);
        for at in [0, 1, 63, 64, 65, 500, 999] {
            let mut b = [0u8; 1000];
            b[at] = 1;
            b[0] = 1;
            assert_eq!(last_nonzero(&b), Some(at), "{at}");
        }
    }
}
