//! Snapshots: a shard's state written to one checksummed file, so that a restart
//! replays only the log after it.
//!
//! A snapshot is *fuzzy*: entities are written in id order in chunks while the shard
//! goes on serving, so each entity is captured at some moment between the start and the
//! end of the snapshot. Recovery loads it and replays the log from `replay_from_lsn`,
//! the write position when the snapshot started (or an older in-flight cross-shard
//! intent). That is exact because replaying a suffix of an entity's events on top of
//! any state that already contains a prefix of that suffix gives the final state:
//! every key written in the suffix ends with its last value, keys not written keep
//! theirs, a tombstone in the suffix resets the entity, and a key's position is its
//! first insertion, which the captured state already has if it has the key.
//!
//! File layout (LE), written to `snapshot.tmp`, fsynced, renamed to `snapshot.snap`,
//! directory fsynced:
//!
//! ```text
//! +----------+---------+----------+-------------+-----------------+-------------+
//! | FLUXSNP1 | ver u32 | shard u32| shards u32  | replay_from u64 | txn_hw u64  |
//! +----------+---------+----------+-------------+-----------------+-------------+
//! | entities × [ idl u16 | id | last_updated_ms u64 | last_lsn u64 | pl u32 | props ] |
//! +------------------------------------------------------------------------------+
//! | end marker idl = 0xFFFF | entity count u64 | crc32 of every byte before it u32 |
//! +------------------------------------------------------------------------------+
//! ```
//!
//! `txn_hw` is the highest cross-shard txn counter of this shard whose intent lies
//! before `replay_from` (see `txn`).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::event::valid_property_list;
use crate::state::{Entity, Props, Store};

pub const SNAPSHOT_FILE: &str = "snapshot.snap";
pub const SNAPSHOT_TMP: &str = "snapshot.tmp";
const MAGIC: &[u8; 8] = b"FLUXSNP1";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 8 + 4 + 4 + 4 + 8 + 8;
const END_MARKER: u16 = 0xFFFF;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub shard: u32,
    pub shards: u32,
    pub replay_from_lsn: u64,
    pub txn_hw: u64,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(SNAPSHOT_FILE)
}

/// Encodes the header into `out`.
pub fn write_header(out: &mut Vec<u8>, m: &SnapshotMeta) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&m.shard.to_le_bytes());
    out.extend_from_slice(&m.shards.to_le_bytes());
    out.extend_from_slice(&m.replay_from_lsn.to_le_bytes());
    out.extend_from_slice(&m.txn_hw.to_le_bytes());
}

/// Encodes one entity into `out`.
pub fn write_entity(out: &mut Vec<u8>, id: &[u8], e: &Entity) {
    debug_assert!(id.len() < END_MARKER as usize);
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(&e.last_updated_ms.to_le_bytes());
    out.extend_from_slice(&e.last_lsn.to_le_bytes());
    out.extend_from_slice(&(e.props.flat_len() as u32).to_le_bytes());
    e.props.write_flat(out);
}

/// The end marker and count; the caller appends the CRC of everything before it.
pub fn write_trailer(out: &mut Vec<u8>, entities: u64) {
    out.extend_from_slice(&END_MARKER.to_le_bytes());
    out.extend_from_slice(&entities.to_le_bytes());
}

/// Why a snapshot was not used.
#[derive(Debug)]
pub enum LoadError {
    Missing,
    Io(io::Error),
    Corrupt(&'static str),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Missing => f.write_str("no snapshot"),
            LoadError::Io(e) => write!(f, "cannot read the snapshot: {e}"),
            LoadError::Corrupt(why) => write!(f, "the snapshot is corrupt: {why}"),
        }
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LoadError> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or(LoadError::Corrupt("truncated"))?;
        self.at += n;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, LoadError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, LoadError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, LoadError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
}

/// Reads and verifies `dir/snapshot.snap` into a store.
pub fn load(dir: &Path) -> Result<(SnapshotMeta, Store), LoadError> {
    let mut f = match std::fs::File::open(path(dir)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(LoadError::Missing),
        Err(e) => return Err(LoadError::Io(e)),
    };
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(LoadError::Io)?;
    decode(&bytes)
}

/// The header of the snapshot file at `file` (a backup reads where its replay starts).
/// Only the header is read and checked; [`decode`] checks the rest.
pub fn read_meta(file: &Path) -> Result<SnapshotMeta, LoadError> {
    let mut head = [0u8; HEADER_BYTES];
    std::fs::File::open(file)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(LoadError::Io)?;
    let mut c = Cursor { b: &head, at: 0 };
    if c.take(8)? != MAGIC || c.u32()? != VERSION {
        return Err(LoadError::Corrupt("bad magic or version"));
    }
    Ok(SnapshotMeta {
        shard: c.u32()?,
        shards: c.u32()?,
        replay_from_lsn: c.u64()?,
        txn_hw: c.u64()?,
    })
}

/// Verifies and decodes the bytes of a snapshot file (what [`load`] read) into a store.
/// Never panics, whatever the bytes (the fuzz target `snapshot_load` checks that).
pub fn decode(bytes: &[u8]) -> Result<(SnapshotMeta, Store), LoadError> {
    if bytes.len() < HEADER_BYTES + 2 + 8 + 4 {
        return Err(LoadError::Corrupt("truncated"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4")) {
        return Err(LoadError::Corrupt("checksum mismatch"));
    }
    let mut c = Cursor { b: body, at: 0 };
    if c.take(8)? != MAGIC {
        return Err(LoadError::Corrupt("bad magic"));
    }
    if c.u32()? != VERSION {
        return Err(LoadError::Corrupt("unknown version"));
    }
    let meta = SnapshotMeta {
        shard: c.u32()?,
        shards: c.u32()?,
        replay_from_lsn: c.u64()?,
        txn_hw: c.u64()?,
    };
    let mut store = Store::default();
    let mut n = 0u64;
    loop {
        let idl = c.u16()?;
        if idl == END_MARKER {
            break;
        }
        let id = c.take(idl as usize)?;
        let last_updated_ms = c.u64()?;
        let last_lsn = c.u64()?;
        let pl = c.u32()? as usize;
        let props = c.take(pl)?;
        // The CRC only says the file is what was written; the store relies on the list
        // being well formed (merging into it slices by the lengths it holds).
        if !valid_property_list(props) {
            return Err(LoadError::Corrupt("malformed property list"));
        }
        let props = Props::from_flat(props.to_vec());
        store.insert(
            id,
            Entity {
                last_updated_ms,
                last_lsn,
                props,
            },
        );
        n += 1;
    }
    if c.u64()? != n || c.at != body.len() {
        return Err(LoadError::Corrupt("entity count mismatch"));
    }
    Ok((meta, store))
}

/// Streams a snapshot to `dir/snapshot.tmp` and finally renames it into place.
pub struct Writer {
    dir: PathBuf,
    file: std::fs::File,
    crc: crc32fast::Hasher,
}

impl Writer {
    pub fn create(dir: &Path) -> io::Result<Writer> {
        let file = std::fs::File::create(dir.join(SNAPSHOT_TMP))?;
        Ok(Writer {
            dir: dir.to_path_buf(),
            file,
            crc: crc32fast::Hasher::new(),
        })
    }

    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.crc.update(chunk);
        self.file.write_all(chunk)
    }

    /// Appends the CRC, syncs, renames over the old snapshot and syncs the directory.
    pub fn finish(mut self) -> io::Result<()> {
        let crc = self.crc.clone().finalize();
        self.file.write_all(&crc.to_le_bytes())?;
        self.file.sync_all()?;
        std::fs::rename(self.dir.join(SNAPSHOT_TMP), path(&self.dir))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::push_property;

    fn sample_store() -> Store {
        let mut s = Store::default();
        for i in 0..100u64 {
            let mut props = Vec::new();
            push_property(&mut props, b"t", format!("{i}.50").as_bytes());
            s.insert(
                format!("e-{i:03}").as_bytes(),
                Entity {
                    last_updated_ms: i,
                    last_lsn: i * 7,
                    props: Props::from_flat(props),
                },
            );
        }
        s
    }

    fn write(dir: &Path, store: &Store, meta: &SnapshotMeta) {
        let mut w = Writer::create(dir).unwrap();
        let mut buf = Vec::new();
        write_header(&mut buf, meta);
        for (id, e) in store.range(b"", None) {
            write_entity(&mut buf, id, e);
        }
        write_trailer(&mut buf, store.len() as u64);
        w.write(&buf[..10]).unwrap();
        w.write(&buf[10..]).unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn write_then_load_gives_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = sample_store();
        let meta = SnapshotMeta {
            shard: 1,
            shards: 2,
            replay_from_lsn: 4096,
            txn_hw: 9,
        };
        write(dir.path(), &store, &meta);
        let (m, loaded) = load(dir.path()).unwrap();
        assert_eq!(m, meta);
        assert_eq!(loaded.len(), 100);
        for (id, e) in store.range(b"", None) {
            let l = loaded.get(id).unwrap();
            assert_eq!(
                (l.last_updated_ms, l.last_lsn, &l.props),
                (e.last_updated_ms, e.last_lsn, &e.props)
            );
        }
        assert!(!dir.path().join(SNAPSHOT_TMP).exists());
    }

    /// Found by the fuzz target `snapshot_load` (the input is kept in
    /// fuzz/regressions/snapshot_load/): a property list whose entry claims more bytes
    /// than the list holds passed the CRC and was loaded; rendering the entity then hit
    /// an assertion, and replaying an event for it sliced past the list and panicked.
    #[test]
    fn a_malformed_property_list_is_corrupt_even_with_a_valid_crc() {
        let input = include_bytes!("../../fuzz/regressions/snapshot_load/malformed-property-list");
        // The target's first byte says "append the CRC"; the rest is the file.
        assert_eq!(input[0] & 1, 1);
        let mut file = input[1..].to_vec();
        file.extend_from_slice(&crc32fast::hash(&file).to_le_bytes());
        assert!(
            matches!(
                decode(&file),
                Err(LoadError::Corrupt("malformed property list"))
            ),
            "{:?}",
            decode(&file).map(|(m, s)| (m, s.len()))
        );

        // The smallest case: one entry claiming a 5-byte key of which 2 bytes are there.
        let mut buf = Vec::new();
        let meta = SnapshotMeta {
            shard: 0,
            shards: 1,
            replay_from_lsn: 64,
            txn_hw: 0,
        };
        write_header(&mut buf, &meta);
        let e = Entity {
            last_updated_ms: 1,
            last_lsn: 64,
            props: Props::from_flat(vec![1, 0, 1, 0, 0, 0, b'k', b'v']),
        };
        write_entity(&mut buf, b"e", &e);
        let at = buf
            .windows(8)
            .position(|w| w == [1, 0, 1, 0, 0, 0, b'k', b'v'])
            .expect("the list is in the file");
        buf[at] = 5;
        write_trailer(&mut buf, 1);
        buf.extend_from_slice(&crc32fast::hash(&buf).to_le_bytes());
        assert!(matches!(
            decode(&buf),
            Err(LoadError::Corrupt("malformed property list"))
        ));
    }

    #[test]
    fn wide_entities_round_trip_in_the_same_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::default();
        let mut updates = Vec::new();
        for i in 0..500 {
            push_property(
                &mut updates,
                format!("k{i}").as_bytes(),
                format!("{i}.0").as_bytes(),
            );
        }
        let mut props = Props::default();
        props.merge(&updates);
        assert!(props.is_wide());
        let flat_len = props.flat_len();
        store.insert(
            b"wide",
            Entity {
                last_updated_ms: 1,
                last_lsn: 2,
                props,
            },
        );
        let meta = SnapshotMeta {
            shard: 0,
            shards: 1,
            replay_from_lsn: 64,
            txn_hw: 0,
        };
        write(dir.path(), &store, &meta);
        let (_, loaded) = load(dir.path()).unwrap();
        let l = loaded.get(b"wide").unwrap();
        assert!(l.props.is_wide());
        assert_eq!(l.props, store.get(b"wide").unwrap().props);
        // The file holds the plain property list, whatever the layout in memory.
        let mut flat = Vec::new();
        l.props.write_flat(&mut flat);
        assert_eq!(flat, updates);
        assert_eq!(flat.len(), flat_len);
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SnapshotMeta {
            shard: 0,
            shards: 1,
            replay_from_lsn: 64,
            txn_hw: 0,
        };
        write(dir.path(), &sample_store(), &meta);
        let good = std::fs::read(path(dir.path())).unwrap();
        for i in (0..good.len()).step_by(7) {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            std::fs::write(path(dir.path()), &bad).unwrap();
            assert!(
                matches!(load(dir.path()), Err(LoadError::Corrupt(_))),
                "flip at {i}"
            );
        }
        for cut in [0, 1, HEADER_BYTES, good.len() / 2, good.len() - 1] {
            std::fs::write(path(dir.path()), &good[..cut]).unwrap();
            assert!(
                matches!(load(dir.path()), Err(LoadError::Corrupt(_))),
                "cut at {cut}"
            );
        }
        std::fs::remove_file(path(dir.path())).unwrap();
        assert!(matches!(load(dir.path()), Err(LoadError::Missing)));
    }
}
