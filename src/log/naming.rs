//! Segment file names and the directory that holds them.
//!
//! A segment is named after its base LSN, zero-padded to 20 digits (the width of
//! `u64::MAX`), so that name order is log order: `00000000000000000000.seg`,
//! `00000000000067108864.seg`, ... Anything else in the directory (temporary files of
//! a segment being created, editor droppings, sub-directories) is ignored.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Suffix of every segment file.
pub const SEGMENT_SUFFIX: &str = ".seg";
/// Digits of the base LSN in a segment name: enough for `u64::MAX`.
pub const BASE_LSN_DIGITS: usize = 20;

/// `segment_file_name(0) == "00000000000000000000.seg"`.
pub fn segment_file_name(base_lsn: u64) -> String {
    format!(
        "{base_lsn:0width$}{SEGMENT_SUFFIX}",
        width = BASE_LSN_DIGITS
    )
}

/// Suffix of a segment prepared ahead of need (`Segment::create_spare`), followed by a
/// number unique in the process: ignored by [`list_segments`], renamed into place by
/// a roll-over, deleted by recovery. Unique, because two spares of one base can be in
/// the making at once (the log keeper's, and one a roll-over needed sooner): neither
/// may truncate or delete the other's file.
pub const SPARE_SUFFIX: &str = ".spare";

/// `spare_file_name(0, 7) == "00000000000000000000.seg.spare7"`.
pub fn spare_file_name(base_lsn: u64, nonce: u64) -> String {
    format!("{}{SPARE_SUFFIX}{nonce}", segment_file_name(base_lsn))
}

/// A number for [`spare_file_name`] that no other call in this process got.
pub fn spare_nonce() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Deletes spare segments left in `dir` by an earlier run (they hold no frames: a
/// spare becomes a segment, by rename, before anything is written into it).
pub fn remove_spares(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let is_spare = entry
            .file_name()
            .to_str()
            .and_then(|n| n.rsplit_once(SPARE_SUFFIX))
            .filter(|(_, nonce)| nonce.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|(name, _)| parse_segment_file_name(name))
            .is_some();
        if is_spare && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The base LSN of a segment file name, or `None` for any other name. Only the exact
/// form written by [`segment_file_name`] is accepted (20 ASCII digits, `.seg`), so a
/// name and its LSN map one to one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != BASE_LSN_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // 20 digits can exceed u64::MAX ("99999999999999999999"): parse rejects those.
    digits.parse().ok()
}

/// The segments in `dir` as `(base_lsn, path)`, sorted by base LSN. Files whose name
/// is not a segment name, and directories, are ignored.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(base_lsn) = entry.file_name().to_str().and_then(parse_segment_file_name) else {
            continue;
        };
        if entry.file_type()?.is_file() {
            segments.push((base_lsn, entry.path()));
        }
    }
    segments.sort_unstable_by_key(|&(base_lsn, _)| base_lsn);
    Ok(segments)
}

/// Retention: deletes, oldest first, the segments whose whole LSN range lies below
/// `lsn` (end_lsn <= lsn), and returns how many were deleted. The last segment is
/// never deleted, so the log keeps its end position.
///
/// A segment's end is taken as the next segment's base LSN (the log is contiguous;
/// with a gap, the next base is past the end, so this never deletes more than the
/// headers would allow) and no header is read: retention works even on a segment
/// whose header is damaged. Deleting oldest first means a crash part-way leaves a
/// contiguous log. Segments of this directory that the caller has open should be
/// dropped; their mappings would stay valid, but pointless.
pub fn remove_segments_below(dir: &Path, lsn: u64) -> io::Result<usize> {
    let segments = list_segments(dir)?;
    let mut removed = 0;
    for pair in segments.windows(2) {
        let (_, ref path) = pair[0];
        let (next_base_lsn, _) = pair[1];
        if next_base_lsn > lsn {
            break;
        }
        fs::remove_file(path)?;
        removed += 1;
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Makes the creation, renaming or removal of entries of `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_format_and_parse_round_trip() {
        assert_eq!(segment_file_name(0), "00000000000000000000.seg");
        assert_eq!(segment_file_name(67_108_864), "00000000000067108864.seg");
        assert_eq!(segment_file_name(u64::MAX), "18446744073709551615.seg");
        for base_lsn in [0, 1, 4096, 67_108_864, 1 << 40, u64::MAX - 1, u64::MAX] {
            let name = segment_file_name(base_lsn);
            assert_eq!(name.len(), BASE_LSN_DIGITS + SEGMENT_SUFFIX.len());
            assert_eq!(parse_segment_file_name(&name), Some(base_lsn));
        }
    }

    #[test]
    fn parse_rejects_every_other_name() {
        for name in [
            "",
            ".seg",
            "0.seg",
            "0000000000000000000.seg",   // 19 digits
            "000000000000000000000.seg", // 21 digits
            "99999999999999999999.seg",  // > u64::MAX
            "0000000000000000000a.seg",
            "+0000000000000000001.seg",
            "00000000000000000000.seg.tmp",
            "00000000000000000000.SEG",
            "00000000000000000000",
            "00000000000000000000.log",
            " 0000000000000000000.seg",
        ] {
            assert_eq!(parse_segment_file_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn spares_have_unique_names_and_only_they_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            spare_file_name(4096, spare_nonce()),
            spare_file_name(4096, spare_nonce()),
        );
        assert_ne!(a, b);
        assert!(a.starts_with("00000000000000004096.seg.spare"));
        for name in [
            &a[..],
            &b[..],
            "00000000000000004096.seg.spareX",
            "x.seg.spare1",
        ] {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        fs::write(dir.path().join(segment_file_name(0)), b"x").unwrap();
        assert_eq!(remove_spares(dir.path()).unwrap(), 2);
        assert!(!dir.path().join(&a).exists() && !dir.path().join(&b).exists());
        assert!(dir.path().join(segment_file_name(0)).exists());
        assert!(dir.path().join("00000000000000004096.seg.spareX").exists());
    }

    #[test]
    fn list_is_sorted_and_ignores_foreign_entries() {
        let dir = tempfile::tempdir().unwrap();
        for base_lsn in [8192_u64, 0, 4096] {
            fs::write(dir.path().join(segment_file_name(base_lsn)), b"x").unwrap();
        }
        fs::write(dir.path().join("00000000000000012288.seg.tmp"), b"x").unwrap();
        fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        fs::write(dir.path().join("123.seg"), b"x").unwrap();
        fs::create_dir(dir.path().join(segment_file_name(16384))).unwrap();

        let listed = list_segments(dir.path()).unwrap();
        let bases: Vec<u64> = listed.iter().map(|&(b, _)| b).collect();
        assert_eq!(bases, [0, 4096, 8192]);
        for (base_lsn, path) in listed {
            assert_eq!(path, dir.path().join(segment_file_name(base_lsn)));
        }
    }

    #[test]
    fn list_of_missing_dir_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = list_segments(&dir.path().join("absent")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn remove_below_deletes_oldest_first_and_never_the_last() {
        let dir = tempfile::tempdir().unwrap();
        for base_lsn in [0_u64, 4096, 8192, 12288] {
            fs::write(dir.path().join(segment_file_name(base_lsn)), b"x").unwrap();
        }
        fs::write(dir.path().join("keep.txt"), b"x").unwrap();
        let bases = |d: &Path| -> Vec<u64> {
            list_segments(d)
                .unwrap()
                .into_iter()
                .map(|(b, _)| b)
                .collect()
        };

        // 4095 is inside segment 0: nothing ends at or below it.
        assert_eq!(remove_segments_below(dir.path(), 4095).unwrap(), 0);
        // Segment 0 ends at 4096 exactly.
        assert_eq!(remove_segments_below(dir.path(), 4096).unwrap(), 1);
        assert_eq!(bases(dir.path()), [4096, 8192, 12288]);
        // Inside segment 2: segment 1 goes.
        assert_eq!(remove_segments_below(dir.path(), 9000).unwrap(), 1);
        // Everything: all but the last.
        assert_eq!(remove_segments_below(dir.path(), u64::MAX).unwrap(), 1);
        assert_eq!(bases(dir.path()), [12288]);
        assert_eq!(remove_segments_below(dir.path(), u64::MAX).unwrap(), 0);
        assert!(dir.path().join("keep.txt").exists());
    }

    #[test]
    fn remove_below_on_empty_dir_removes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(remove_segments_below(dir.path(), u64::MAX).unwrap(), 0);
    }
}
