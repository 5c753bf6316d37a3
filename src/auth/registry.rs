//! The namespace registry: names, ids and token hashes, shared by every shard and
//! kept in one small file that is replaced atomically.
//!
//! A registration writes the whole registry to `namespaces.tmp`, fsyncs it, renames it
//! over `namespaces` and fsyncs the directory; only then is the namespace visible and
//! its token returned. A crash before the rename leaves the old file (the namespace
//! does not exist and its token was never shown); after it, the namespace and its
//! token hash are there. So there is never a half-registered namespace nor a token
//! that was handed out but does not work after a restart.
//!
//! File format (text, one namespace per line, names are `[a-z0-9_-]`):
//!
//! ```text
//! flux-namespaces 1
//! <name> <namespace id> <sha-256 of the token, hex> <created, ms since epoch>
//! …
//! end <count> <crc32 of every byte before this line, hex>
//! ```
//!
//! Shards read the registry through per-shard caches (`auth::Local`) refreshed when
//! `version` moves, so a request never takes the lock.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::rate::Bucket;
use super::token::{self, TokenHash};

pub const FILE_NAME: &str = "namespaces";
const TMP_NAME: &str = "namespaces.tmp";
const MAGIC_LINE: &str = "flux-namespaces 1";

/// What the registry knows of one namespace.
pub struct Namespace {
    pub name: Box<str>,
    /// UUIDv7, fixed at registration.
    pub id: Box<str>,
    pub token_hash: TokenHash,
    pub created_ms: u64,
    /// The namespace's rate-limit state, shared by all shards.
    pub bucket: Bucket,
    /// A deletion is under way: the namespace no longer accepts anything.
    pub deleting: AtomicBool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RegisterError {
    Exists,
    Storage(String),
}

pub struct Registry {
    dir: PathBuf,
    map: RwLock<BTreeMap<Box<str>, Arc<Namespace>>>,
    /// Bumped after every change of `map` (or of a `deleting` flag).
    version: AtomicU64,
    /// Serialises writers of the file.
    write: Mutex<()>,
}

/// `[a-z0-9_-]{3,32}`.
pub fn valid_name(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Registry {
    /// Loads `dir/namespaces` (an absent file is an empty registry) and removes a
    /// leftover temporary file of an interrupted registration.
    pub fn open(dir: &Path) -> Result<Registry, String> {
        let path = dir.join(FILE_NAME);
        let _ = std::fs::remove_file(dir.join(TMP_NAME));
        let map = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).map_err(|e| format!("{} is damaged: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Registry {
            dir: dir.to_path_buf(),
            map: RwLock::new(map),
            version: AtomicU64::new(1),
            write: Mutex::new(()),
        })
    }

    /// A registry that is never loaded nor written (auth mode off).
    pub fn empty(dir: &Path) -> Registry {
        Registry {
            dir: dir.to_path_buf(),
            map: RwLock::new(BTreeMap::new()),
            version: AtomicU64::new(1),
            write: Mutex::new(()),
        }
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// The namespaces, in name order, with the version they belong to.
    pub fn snapshot(&self) -> (u64, Vec<Arc<Namespace>>) {
        let map = self.map.read().expect("registry lock");
        // Read under the lock: a writer bumps after changing the map, still holding it.
        let v = self.version();
        (v, map.values().cloned().collect())
    }

    pub fn get(&self, name: &str) -> Option<Arc<Namespace>> {
        self.map.read().expect("registry lock").get(name).cloned()
    }

    /// Registers `name` with a fresh token; returns the namespace and the token (the
    /// only time it exists outside the client). Blocking (file writes and fsyncs):
    /// run it off the event loop.
    pub fn register(
        &self,
        name: &str,
        id: String,
        now_ms: u64,
    ) -> Result<(Arc<Namespace>, String), RegisterError> {
        let _w = self.write.lock().expect("registry write lock");
        if self.get(name).is_some() {
            return Err(RegisterError::Exists);
        }
        let token = token::generate()
            .map_err(|e| RegisterError::Storage(format!("no random bytes from the OS: {e}")))?;
        let ns = Arc::new(Namespace {
            name: name.into(),
            id: id.into(),
            token_hash: token::hash(token.as_bytes()),
            created_ms: now_ms,
            bucket: Bucket::default(),
            deleting: AtomicBool::new(false),
        });
        let mut all: Vec<Arc<Namespace>> = self.snapshot().1;
        all.push(ns.clone());
        self.persist(&all).map_err(RegisterError::Storage)?;
        let mut map = self.map.write().expect("registry lock");
        map.insert(name.into(), ns.clone());
        self.bump();
        drop(map);
        Ok((ns, token))
    }

    /// Marks `name` as being deleted (it stops accepting anything at once). Returns
    /// false if there is no such namespace or a deletion is already under way.
    pub fn begin_delete(&self, name: &str) -> bool {
        let map = self.map.read().expect("registry lock");
        let Some(ns) = map.get(name) else {
            return false;
        };
        if ns.deleting.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.bump();
        true
    }

    /// Gives a namespace back after a deletion that could not finish.
    pub fn abort_delete(&self, name: &str) {
        if let Some(ns) = self.get(name) {
            ns.deleting.store(false, Ordering::Release);
            self.bump();
        }
    }

    /// Removes `name` from the file and the registry. Blocking.
    pub fn finish_delete(&self, name: &str) -> Result<(), String> {
        let _w = self.write.lock().expect("registry write lock");
        let all: Vec<Arc<Namespace>> = self
            .snapshot()
            .1
            .into_iter()
            .filter(|ns| &*ns.name != name)
            .collect();
        self.persist(&all)?;
        let mut map = self.map.write().expect("registry lock");
        map.remove(name);
        self.bump();
        Ok(())
    }

    /// The registry file's text for the namespaces held now (cluster mode: what the
    /// other nodes load, see [`Registry::replace_from`]).
    pub fn render_current(&self) -> String {
        render(&self.snapshot().1)
    }

    /// Replaces every namespace with those of `bytes` (a registry file written by
    /// another cluster node), durably. A namespace that stays (same name, id and
    /// token) keeps its rate-limit state. Returns the namespaces that went away (their
    /// connections are to be closed).
    pub fn replace_from(&self, bytes: &[u8]) -> Result<Vec<Arc<Namespace>>, String> {
        let incoming = parse_file(bytes)?;
        let _w = self.write.lock().expect("registry write lock");
        let (_, old) = self.snapshot();
        let mut next: BTreeMap<Box<str>, Arc<Namespace>> = BTreeMap::new();
        for (name, ns) in incoming {
            let kept = old
                .iter()
                .find(|o| o.name == name && o.id == ns.id && o.token_hash == ns.token_hash)
                .cloned();
            next.insert(name, kept.unwrap_or(ns));
        }
        let removed: Vec<Arc<Namespace>> = old
            .iter()
            .filter(|o| !next.get(&o.name).is_some_and(|n| Arc::ptr_eq(n, o)))
            .cloned()
            .collect();
        if removed.is_empty() && next.len() == old.len() {
            return Ok(removed);
        }
        self.persist(&next.values().cloned().collect::<Vec<_>>())?;
        let mut map = self.map.write().expect("registry lock");
        *map = next;
        self.bump();
        Ok(removed)
    }

    /// Replaces the file with `all`, durably (see the module doc).
    fn persist(&self, all: &[Arc<Namespace>]) -> Result<(), String> {
        let tmp = self.dir.join(TMP_NAME);
        let path = self.dir.join(FILE_NAME);
        let text = render(all);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })
    }
}

fn render(all: &[Arc<Namespace>]) -> String {
    let mut s = String::with_capacity(64 + all.len() * 128);
    s.push_str(MAGIC_LINE);
    s.push('\n');
    for ns in all {
        s.push_str(&ns.name);
        s.push(' ');
        s.push_str(&ns.id);
        s.push(' ');
        token::push_hex(&mut s, &ns.token_hash);
        s.push(' ');
        s.push_str(&ns.created_ms.to_string());
        s.push('\n');
    }
    let crc = crc32fast::hash(s.as_bytes());
    s.push_str(&format!("end {} {crc:08x}\n", all.len()));
    s
}

/// Parses the bytes of a registry file (what [`Registry::open`] reads) into the
/// namespaces it holds; the error says what is wrong. Never panics, whatever the bytes
/// (the fuzz target `registry_file` checks that).
pub fn parse_file(bytes: &[u8]) -> Result<BTreeMap<Box<str>, Arc<Namespace>>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the file is not UTF-8".to_string())?;
    parse(text)
}

fn parse(text: &str) -> Result<BTreeMap<Box<str>, Arc<Namespace>>, String> {
    let body_end = text
        .trim_end_matches('\n')
        .rfind('\n')
        .map(|i| i + 1)
        .ok_or("no end line")?;
    let (body, end) = text.split_at(body_end);
    let end: Vec<&str> = end.trim_end().split(' ').collect();
    let [tag, count, crc] = end[..] else {
        return Err("malformed end line".into());
    };
    if tag != "end" || u32::from_str_radix(crc, 16).ok() != Some(crc32fast::hash(body.as_bytes())) {
        return Err("checksum mismatch (truncated or altered)".into());
    }
    let mut lines = body.lines();
    if lines.next() != Some(MAGIC_LINE) {
        return Err(format!("first line is not `{MAGIC_LINE}`"));
    }
    let mut map = BTreeMap::new();
    for (i, line) in lines.enumerate() {
        let bad = || format!("line {} is malformed", i + 2);
        let f: Vec<&str> = line.split(' ').collect();
        let [name, id, hash, created] = f[..] else {
            return Err(bad());
        };
        if !valid_name(name) {
            return Err(bad());
        }
        let ns = Namespace {
            name: name.into(),
            id: id.into(),
            token_hash: token::parse_hex32(hash).ok_or_else(bad)?,
            created_ms: created.parse().map_err(|_| bad())?,
            bucket: Bucket::default(),
            deleting: AtomicBool::new(false),
        };
        map.insert(name.into(), Arc::new(ns));
    }
    if count.parse::<usize>().ok() != Some(map.len()) {
        return Err("the namespace count does not match".into());
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(dir: &Path) -> Registry {
        Registry::open(dir).unwrap()
    }

    #[test]
    fn names() {
        for ok in [
            "abc",
            "a-b_c",
            "x0123456789012345678901234567890",
            "sandbox",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            "",
            "Upper",
            "has space",
            "bad/slash",
            "bad.dot",
            &"x".repeat(33),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn registrations_survive_reopen_and_tokens_are_stored_as_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let r = reg(dir.path());
        let (ns, tok) = r.register("alpha", "id-1".into(), 5).unwrap();
        assert_eq!(ns.token_hash, token::hash(tok.as_bytes()));
        assert_eq!(
            r.register("alpha", "id-2".into(), 6).err(),
            Some(RegisterError::Exists)
        );
        r.register("beta", "id-3".into(), 7).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(
            !text.contains(&tok),
            "the token itself must never be stored"
        );
        let again = reg(dir.path());
        let (_, all) = again.snapshot();
        let names: Vec<&str> = all.iter().map(|n| &*n.name).collect();
        assert_eq!(names, ["alpha", "beta"]);
        let a = again.get("alpha").unwrap();
        assert_eq!((&*a.id, a.created_ms), ("id-1", 5));
        assert!(token::same(&a.token_hash, &token::hash(tok.as_bytes())));
    }

    #[test]
    fn deletion_is_two_phase() {
        let dir = tempfile::tempdir().unwrap();
        let r = reg(dir.path());
        r.register("alpha", "i".into(), 1).unwrap();
        let v = r.version();
        assert!(r.begin_delete("alpha"));
        assert!(r.version() > v);
        assert!(!r.begin_delete("alpha"), "one deletion at a time");
        assert!(!r.begin_delete("nope"));
        r.abort_delete("alpha");
        assert!(!r.get("alpha").unwrap().deleting.load(Ordering::Acquire));
        assert!(r.begin_delete("alpha"));
        r.finish_delete("alpha").unwrap();
        assert!(r.get("alpha").is_none());
        assert!(reg(dir.path()).get("alpha").is_none());
    }

    #[test]
    fn interrupted_registration_leaves_the_old_registry() {
        let dir = tempfile::tempdir().unwrap();
        let r = reg(dir.path());
        r.register("alpha", "i".into(), 1).unwrap();
        // A crash after writing the temporary file, before the rename.
        std::fs::write(dir.path().join(TMP_NAME), "flux-namespaces 1\ngarbage").unwrap();
        let again = reg(dir.path());
        assert_eq!(again.snapshot().1.len(), 1);
        assert!(!dir.path().join(TMP_NAME).exists());
    }

    #[test]
    fn damaged_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let r = reg(dir.path());
        r.register("alpha", "i".into(), 1).unwrap();
        r.register("bravo", "j".into(), 2).unwrap();
        let path = dir.path().join(FILE_NAME);
        let good = std::fs::read(&path).unwrap();
        // Every truncation and every single flipped byte is detected.
        for cut in 0..good.len() - 1 {
            std::fs::write(&path, &good[..cut]).unwrap();
            assert!(Registry::open(dir.path()).is_err(), "cut at {cut}");
        }
        for i in 0..good.len() - 1 {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            let err = Registry::open(dir.path()).err();
            assert!(err.is_some(), "flip at {i}");
            assert!(err.unwrap().contains("damaged"));
        }
        std::fs::write(&path, &good).unwrap();
        assert_eq!(reg(dir.path()).snapshot().1.len(), 2);
    }
}
