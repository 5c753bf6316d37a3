//! A backup directory: the files of a data directory copied out of a running server,
//! with a manifest that names each file's size and SHA-256, and its verification and
//! restore.
//!
//! Files are opaque bytes here (segments, snapshots, the namespace registry,
//! `flux.meta`): a restore is a data directory that the normal recovery reads. The
//! shard layer (`shard::backup`) decides *what* to copy (one consistent cut); this
//! module copies, checks and restores.
//!
//! Layout of a backup directory:
//!
//! ```text
//! DIR/MANIFEST.json            written last (temp name, fsync, rename, dir fsync)
//! DIR/flux.meta
//! DIR/namespaces               (auth mode, when the registry exists)
//! DIR/shard-N/snapshot.snap    (when the shard had one)
//! DIR/shard-N/<base>.seg       each segment up to the shard's cut LSN
//! ```
//!
//! Every file is written as `NAME.partial` and renamed once complete and synced; the
//! manifest comes last, so a backup without `MANIFEST.json` (an interrupted one) is
//! refused by `verify`. A segment is stored only up to the cut (`bytes`); the
//! manifest's `size` is the length it is restored to (zeros after the cut, allocated
//! with `posix_fallocate` so that the restored server can append to it).
//!
//! Manifest (JSON, format 1):
//!
//! ```text
//! {"flux_backup":1,"created_unix_ms":…,"shards":2,
//!  "shard_cuts":[{"shard":0,"lsn":…},…],
//!  "files":[{"path":"shard-0/….seg","bytes":…,"size":…,"sha256":"…"},…]}
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub const MANIFEST_FILE: &str = "MANIFEST.json";
pub const PARTIAL_SUFFIX: &str = ".partial";
pub const FORMAT: u64 = 1;
const COPY_CHUNK: usize = 1 << 20;

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative to the backup (and data) directory, `/`-separated.
    pub path: String,
    /// Bytes stored in the backup.
    pub bytes: u64,
    /// Length of the restored file (`>= bytes`; zeros after `bytes`).
    pub size: u64,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub created_unix_ms: u64,
    pub shards: u32,
    /// Per shard: the LSN its log was copied up to.
    pub shard_cuts: Vec<u64>,
    pub files: Vec<FileEntry>,
}

/// How a backup copies: at most `max_bytes_per_s` (0: unbounded), and synced every
/// `SYNC_EVERY_BYTES`, so the copy never piles up dirty pages that the kernel would
/// then make every writer (the server's log too) wait for.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub max_bytes_per_s: u64,
    pub started: std::time::Instant,
    pub copied: u64,
}

/// Dirty data a copy leaves before it syncs.
const SYNC_EVERY_BYTES: u64 = 8 << 20;

impl Pace {
    pub fn new(max_bytes_per_s: u64) -> Pace {
        Pace {
            max_bytes_per_s,
            started: std::time::Instant::now(),
            copied: 0,
        }
    }

    /// Counts `n` bytes copied and sleeps while ahead of the rate.
    fn step(&mut self, n: u64) {
        self.copied += n;
        if self.max_bytes_per_s == 0 {
            return;
        }
        let due =
            std::time::Duration::from_secs_f64(self.copied as f64 / self.max_bytes_per_s as f64);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

/// Copies the first `bytes` bytes of `src` to `backup/rel` (through a `.partial` name,
/// synced, renamed) and returns its entry; `size` is what a restore extends it to.
/// Blocking.
pub fn copy_in(
    src: &Path,
    backup: &Path,
    rel: &str,
    (bytes, size): (u64, u64),
    pace: &mut Pace,
) -> io::Result<FileEntry> {
    let dst = backup.join(rel);
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent)?;
    }
    let partial = partial_name(&dst);
    let mut from = File::open(src)?.take(bytes);
    let mut to = File::create(&partial)?;
    let mut unsynced = 0u64;
    let (copied, sha256) = copy_hashing(&mut from, &mut to, |to, n| {
        pace.step(n);
        unsynced += n;
        if unsynced >= SYNC_EVERY_BYTES {
            unsynced = 0;
            to.sync_data()?;
        }
        Ok(())
    })?;
    if copied != bytes {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{} ended after {copied} of {bytes} bytes", src.display()),
        ));
    }
    to.sync_all()?;
    drop(to);
    fs::rename(&partial, &dst)?;
    Ok(FileEntry {
        path: rel.to_string(),
        bytes,
        size: size.max(bytes),
        sha256,
    })
}

fn partial_name(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(PARTIAL_SUFFIX);
    PathBuf::from(s)
}

/// Copies `from` to `to` in chunks, calling `after(to, n)` after each; the byte count
/// and the SHA-256 (hex) of what went.
fn copy_hashing<W: Write>(
    from: &mut impl Read,
    to: &mut W,
    mut after: impl FnMut(&mut W, u64) -> io::Result<()>,
) -> io::Result<(u64, String)> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut n = 0u64;
    loop {
        let got = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hash.update(&buf[..got]);
        to.write_all(&buf[..got])?;
        after(to, got as u64)?;
        n += got as u64;
    }
    Ok((n, hex(&hash.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fsyncs every directory of the backup, then writes the manifest (temp name, fsync,
/// rename, directory fsync): from then on the backup is complete. Blocking.
pub fn seal(backup: &Path, m: &Manifest) -> io::Result<()> {
    let mut dirs: Vec<PathBuf> = m
        .files
        .iter()
        .filter_map(|f| backup.join(&f.path).parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        File::open(d)?.sync_all()?;
    }
    let path = backup.join(MANIFEST_FILE);
    let partial = partial_name(&path);
    let mut f = File::create(&partial)?;
    f.write_all(m.to_json().as_bytes())?;
    f.sync_all()?;
    drop(f);
    fs::rename(&partial, &path)?;
    File::open(backup)?.sync_all()
}

impl Manifest {
    pub fn to_json(&self) -> String {
        let mut s = format!(
            "{{\"flux_backup\":{FORMAT},\"created_unix_ms\":{},\"shards\":{},\"shard_cuts\":[",
            self.created_unix_ms, self.shards
        );
        for (i, lsn) in self.shard_cuts.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            s.push_str(&format!("{sep}\n  {{\"shard\":{i},\"lsn\":{lsn}}}"));
        }
        s.push_str("],\"files\":[");
        for (i, f) in self.files.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let mut path = Vec::new();
            crate::json::write_str(&mut path, f.path.as_bytes());
            s.push_str(&format!(
                "{sep}\n  {{\"path\":{},\"bytes\":{},\"size\":{},\"sha256\":\"{}\"}}",
                String::from_utf8_lossy(&path),
                f.bytes,
                f.size,
                f.sha256
            ));
        }
        s.push_str("]}\n");
        s
    }

    pub fn parse(text: &[u8]) -> Result<Manifest, String> {
        use simd_json::prelude::*;
        let mut copy = text.to_vec();
        let v = simd_json::to_borrowed_value(&mut copy).map_err(|e| format!("not JSON: {e}"))?;
        let num = |v: &simd_json::BorrowedValue<'_>, k: &str| {
            v.get(k)
                .and_then(|x| x.as_u64())
                .ok_or_else(|| format!("field {k:?} missing or not a number"))
        };
        let format = num(&v, "flux_backup")?;
        if format != FORMAT {
            return Err(format!(
                "backup format {format}; this build reads format {FORMAT}"
            ));
        }
        let shards = u32::try_from(num(&v, "shards")?).map_err(|_| "bad shard count")?;
        let cuts = v
            .get("shard_cuts")
            .and_then(|c| c.as_array())
            .ok_or("field \"shard_cuts\" missing")?;
        let mut shard_cuts = vec![None; shards as usize];
        for c in cuts {
            let i = num(c, "shard")? as usize;
            let slot = shard_cuts
                .get_mut(i)
                .ok_or_else(|| format!("cut of shard {i} of {shards}"))?;
            *slot = Some(num(c, "lsn")?);
        }
        let shard_cuts = shard_cuts
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.ok_or_else(|| format!("no cut for shard {i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut files = Vec::new();
        for f in v
            .get("files")
            .and_then(|f| f.as_array())
            .ok_or("field \"files\" missing")?
        {
            let path = f
                .get("path")
                .and_then(|p| p.as_str())
                .ok_or("a file without \"path\"")?
                .to_string();
            if !safe_relative(&path) {
                return Err(format!("file path {path:?} leaves the backup directory"));
            }
            let sha256 = f
                .get("sha256")
                .and_then(|p| p.as_str())
                .ok_or_else(|| format!("{path}: no \"sha256\""))?
                .to_string();
            files.push(FileEntry {
                bytes: num(f, "bytes")?,
                size: num(f, "size")?,
                path,
                sha256,
            });
        }
        Ok(Manifest {
            created_unix_ms: num(&v, "created_unix_ms")?,
            shards,
            shard_cuts,
            files,
        })
    }
}

/// A relative path of plain names (no `..`, no root, no empty parts).
fn safe_relative(p: &str) -> bool {
    !p.is_empty()
        && p.split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// Checks a backup: the manifest, and every file's presence, length and SHA-256. The
/// error names the file found wrong. Blocking (reads every byte).
pub fn verify(backup: &Path) -> Result<Manifest, String> {
    let mpath = backup.join(MANIFEST_FILE);
    let text = match fs::read(&mpath) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "{} is missing: {} is not a complete backup (an interrupted backup has no \
                 manifest)",
                mpath.display(),
                backup.display()
            ))
        }
        Err(e) => return Err(format!("cannot read {}: {e}", mpath.display())),
    };
    let m = Manifest::parse(&text).map_err(|e| format!("{}: {e}", mpath.display()))?;
    if !m.files.iter().any(|f| f.path == "flux.meta") {
        return Err(format!("{}: no flux.meta listed", mpath.display()));
    }
    for f in &m.files {
        let p = backup.join(&f.path);
        let mut file = File::open(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let len = file
            .metadata()
            .map_err(|e| format!("{}: {e}", p.display()))?
            .len();
        if len != f.bytes {
            return Err(format!(
                "{}: {len} bytes, the manifest says {}",
                p.display(),
                f.bytes
            ));
        }
        let (_, sha) = copy_hashing(&mut file, &mut io::sink(), |_, _| Ok(()))
            .map_err(|e| format!("{}: {e}", p.display()))?;
        if sha != f.sha256 {
            return Err(format!(
                "{}: checksum mismatch (SHA-256 {sha}, the manifest says {})",
                p.display(),
                f.sha256
            ));
        }
    }
    Ok(m)
}

/// Verifies `backup` and makes `data_dir` from it: files are copied into a sibling
/// temporary directory, extended to their size, synced, and the directory renamed to
/// `data_dir` (which must not exist, or be empty). Blocking.
pub fn restore(backup: &Path, data_dir: &Path) -> Result<Manifest, String> {
    let m = verify(backup)?;
    match fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!(
                    "{} exists and is not empty; restore into a new directory",
                    data_dir.display()
                ));
            }
            fs::remove_dir(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", data_dir.display())),
    }
    let name = data_dir
        .file_name()
        .ok_or_else(|| format!("{}: not a directory name", data_dir.display()))?;
    let mut tmp_name = name.to_owned();
    tmp_name.push(".restoring");
    let tmp = data_dir.with_file_name(tmp_name);
    let _ = fs::remove_dir_all(&tmp);
    let result = (|| -> io::Result<()> {
        fs::create_dir_all(&tmp)?;
        for f in &m.files {
            let dst = tmp.join(&f.path);
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent)?;
            }
            let mut from = File::open(backup.join(&f.path))?;
            let mut to = OpenOptions::new().write(true).create_new(true).open(&dst)?;
            io::copy(&mut from, &mut to)?;
            if f.size > f.bytes {
                allocate(&to, f.size)?;
            }
            to.sync_all()?;
        }
        let mut dirs: Vec<PathBuf> = m
            .files
            .iter()
            .filter_map(|f| tmp.join(&f.path).parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        for d in dirs {
            File::open(d)?.sync_all()?;
        }
        fs::rename(&tmp, data_dir)?;
        if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(parent)?.sync_all()?;
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_dir_all(&tmp);
        format!("restoring into {}: {e}", data_dir.display())
    })?;
    Ok(m)
}

/// Extends `f` to `size` bytes with allocated zeros (a restored segment is appended to
/// through a memory map: a sparse file could fail those writes with SIGBUS on a full
/// disk).
fn allocate(f: &File, size: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len =
        libc::off_t::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid open descriptor; posix_fallocate only reads its arguments.
    let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, len) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> Manifest {
        let src = dir.join("src");
        fs::write(&src, b"hello world, this is a segment").unwrap();
        fs::write(dir.join("meta"), b"format=1\nshards=1\n").unwrap();
        let b = dir.join("b");
        let mut pace = Pace::new(1 << 20);
        let files = vec![
            copy_in(&dir.join("meta"), &b, "flux.meta", (18, 18), &mut pace).unwrap(),
            copy_in(&src, &b, "shard-0/00.seg", (11, 4096), &mut pace).unwrap(),
        ];
        assert_eq!(pace.copied, 29);
        let m = Manifest {
            created_unix_ms: 1,
            shards: 1,
            shard_cuts: vec![11],
            files,
        };
        seal(&b, &m).unwrap();
        m
    }

    #[test]
    fn a_backup_round_trips_and_restores_with_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample(dir.path());
        let b = dir.path().join("b");
        assert_eq!(verify(&b).unwrap(), m);
        assert_eq!(Manifest::parse(m.to_json().as_bytes()).unwrap(), m);
        let data = dir.path().join("data");
        restore(&b, &data).unwrap();
        let seg = fs::read(data.join("shard-0/00.seg")).unwrap();
        assert_eq!(seg.len(), 4096);
        assert_eq!(&seg[..11], b"hello world");
        assert!(seg[11..].iter().all(|b| *b == 0));
        let err = restore(&b, &data).unwrap_err();
        assert!(err.contains("not empty"), "{err}");
    }

    #[test]
    fn damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path());
        let b = dir.path().join("b");
        let seg = b.join("shard-0/00.seg");
        let mut bytes = fs::read(&seg).unwrap();
        bytes[3] ^= 1;
        fs::write(&seg, &bytes).unwrap();
        let err = verify(&b).unwrap_err();
        assert!(err.contains("00.seg") && err.contains("checksum"), "{err}");
        fs::remove_file(&seg).unwrap();
        let err = verify(&b).unwrap_err();
        assert!(err.contains("00.seg"), "{err}");
        fs::remove_file(b.join(MANIFEST_FILE)).unwrap();
        assert!(verify(&b).unwrap_err().contains("MANIFEST.json"));
    }

    #[test]
    fn manifest_paths_stay_inside() {
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
            assert!(!safe_relative(bad), "{bad}");
        }
        assert!(safe_relative("shard-0/snapshot.snap"));
    }
}
