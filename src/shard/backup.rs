//! Online backup: one consistent cut of every shard's snapshot and log, copied off the
//! event loops into a backup directory (`log::backup` writes and checks it).
//!
//! **The cut.** A backup restores like a crash recovery of the copied logs, so what it
//! copies must be a state a crash could have left, with every shard's log cut at one
//! moment as far as cross-shard batches are concerned. Per-shard cuts taken one after
//! the other are not enough on their own: a coordinator's intent and `FRAME_DONE`
//! could fall before its cut while a participant's part falls after the
//! participant's, and recovery, seeing DONE, would not re-apply the part (a partial
//! batch). So the backup closes a *gate* first: cross-shard batches not yet past their
//! start wait at it (`Gate::enter`, in `txn::apply_across`), and the backup waits
//! until every batch already inside has applied all its parts. With no batch between
//! its intent and its last part, every shard's cut (its log's write position and a
//! hard link of each segment and of its snapshot, taken on the shard in one step) holds
//! every batch either whole or not at all. The gate is then reopened: it is closed
//! for the mesh round trips of the cuts and the batches in flight (milliseconds);
//! single-shard writes never wait. Everything acknowledged before the backup started
//! is before every cut.
//!
//! **Pinning.** The hard links (in `DATA/.backup-staging/`, on the data directory's
//! file system) keep the cut's segments and snapshot alive while they are copied, even
//! if retention deletes a segment or a new snapshot replaces the file meanwhile. Only
//! the copy reads the data, on a thread of its own (not the shard's blocking pool, which
//! runs the log's syncs), up to the cut: the active segment goes on taking appends
//! past it in the same inode.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{Shard, ShardId};
use crate::log::backup::{self as files, Manifest};
use crate::log::snapshot::SNAPSHOT_FILE;

/// Where the cut's hard links live while they are copied (inside the data directory).
pub const STAGING_DIR: &str = ".backup-staging";
/// How long the backup waits for the cross-shard batches already in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The gate cross-shard batches pass while no backup is cutting (see the module doc).
#[derive(Default)]
pub struct Gate {
    closed: AtomicBool,
    /// Cross-shard batches between the gate and their last part applied.
    inside: AtomicUsize,
    /// A backup is running (one at a time).
    running: AtomicBool,
}

/// A batch inside the gate; leaving is dropping it.
pub struct Entered<'a>(&'a Gate);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gate {
    /// Waits while a backup is cutting (polled every millisecond; it is closed for
    /// milliseconds, a few times a day), then counts the batch in.
    pub async fn enter(&self) -> Entered<'_> {
        loop {
            // Count in before looking at the gate: a backup that closes it after this
            // sees the batch inside and waits for it.
            self.inside.fetch_add(1, Ordering::SeqCst);
            if !self.closed.load(Ordering::SeqCst) {
                return Entered(self);
            }
            self.inside.fetch_sub(1, Ordering::SeqCst);
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Reopens the gate and frees the backup slot when the backup ends, however it ends.
struct Running<'a>(&'a Gate);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.closed.store(false, Ordering::SeqCst);
        self.0.running.store(false, Ordering::SeqCst);
    }
}

#[derive(Debug)]
pub enum BackupError {
    /// Another backup is running.
    Busy,
    /// The target directory cannot be used (the client's mistake).
    Target(String),
    /// Reading or writing failed, or the shards could not be cut.
    Failed(String),
}

/// What a finished backup reports.
#[derive(Debug)]
pub struct Report {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Bytes written into the backup.
    pub bytes: u64,
    /// How long cross-shard batches were held at the gate.
    pub gate: Duration,
    pub took: Duration,
}

/// What the operator chose for one backup.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Copy the log kept for history (`FLUX_RETENTION`) too, not only what recovery
    /// needs from each snapshot's replay point on.
    pub history: bool,
    /// Copy at most this many bytes per second (0: as fast as the disks go).
    pub max_bytes_per_s: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            history: true,
            max_bytes_per_s: 0,
        }
    }
}

/// One shard's cut: its write position and the names hard-linked into the staging
/// directory.
struct Cut {
    shard: u16,
    lsn: u64,
    snapshot: bool,
    /// (file name, base LSN), log order.
    segments: Vec<(String, u64)>,
}

/// Removes a staging directory left by an interrupted backup (at start-up and before
/// each backup). Blocking.
pub fn clear_staging(data_dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(data_dir.join(STAGING_DIR)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Takes the cut on `shard`: one synchronous step on its event loop (a few `link`
/// calls), so no append, roll-over or retention falls in between.
fn cut(shard: &Shard, staging: &Path) -> io::Result<Cut> {
    let log = shard.log.borrow();
    let log = log
        .as_ref()
        .ok_or_else(|| io::Error::other("the shard has not recovered yet"))?;
    let lsn = log.write_lsn();
    let dir = staging.join(format!("shard-{}", shard.id.0));
    std::fs::create_dir_all(&dir)?;
    let snapshot = match std::fs::hard_link(log.dir().join(SNAPSHOT_FILE), dir.join(SNAPSHOT_FILE))
    {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    let mut segments = Vec::new();
    for (path, base) in log.segment_files() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| io::Error::other("segment name is not UTF-8"))?
            .to_string();
        std::fs::hard_link(&path, dir.join(&name))?;
        segments.push((name, base));
    }
    Ok(Cut {
        shard: shard.id.0,
        lsn,
        snapshot,
        segments,
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    glommio::executor().spawn_blocking(f).await
}

/// Writes a backup of the whole server into `to` (absolute; absent or empty). Runs on
/// the shard that received the request; the copy runs on its blocking pool.
pub async fn take(shard: &Shard, to: PathBuf, opts: Options) -> Result<Report, BackupError> {
    let started = Instant::now();
    let created_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let gate = &shard.shared.backup_gate;
    if gate
        .running
        .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return Err(BackupError::Busy);
    }
    let running = Running(gate);
    if !to.is_absolute() {
        return Err(BackupError::Target(format!(
            "the backup directory must be an absolute path on the server's host, not {}",
            to.display()
        )));
    }
    let data_dir = shard.config.data_dir.clone();
    let (t, d) = (to.clone(), data_dir.clone());
    blocking(move || prepare(&t, &d))
        .await
        .map_err(BackupError::Target)?;

    // The cut: gate closed, batches inside drained, every shard cut, gate open.
    let gate_closed = Instant::now();
    gate.closed.store(true, Ordering::SeqCst);
    while gate.inside.load(Ordering::SeqCst) > 0 {
        if gate_closed.elapsed() > DRAIN_TIMEOUT {
            return Err(BackupError::Failed(format!(
                "cross-shard batches in flight did not finish within {} s",
                DRAIN_TIMEOUT.as_secs()
            )));
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    let staging = data_dir.join(STAGING_DIR);
    let mut cuts = Vec::with_capacity(shard.count);
    for i in 0..shard.count {
        // Test hook: a slow cut of one shard, the window in which a batch that got
        // past a missing gate would end up in part (`tests/backup.rs`).
        if crate::failpoint::arg("backup-cut-delay").is_some_and(|a| a == i.to_string()) {
            glommio::timer::sleep(Duration::from_millis(300)).await;
        }
        let s = staging.clone();
        let c = if i == shard.id.index() {
            cut(shard, &s).map_err(|e| e.to_string())
        } else {
            shard
                .mesh
                .ask(ShardId(i as u16), move |peer| {
                    cut(peer, &s).map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|_| Err("the shard is shutting down".into()))
        };
        cuts.push(c.map_err(|e| BackupError::Failed(format!("shard {i}: cut: {e}")))?);
    }
    gate.closed.store(false, Ordering::SeqCst);
    let gate_time = gate_closed.elapsed();

    // The copy runs on a thread of its own, not on the shard's blocking pool: that
    // pool also runs the log's syncs and prepares its spare segments, which must not
    // wait seconds behind a copy.
    let shards = shard.count as u32;
    let (t, d) = (to.clone(), data_dir.clone());
    let (tx, rx) = futures_channel::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("flux-backup".into())
        .spawn(move || {
            let r = copy_out(&d, &t, (created_unix_ms, shards), &cuts, opts);
            let _ = clear_staging(&d);
            let _ = tx.send(r.map_err(|e| e.to_string()));
        });
    let copied = match spawned {
        Ok(_) => rx
            .await
            .unwrap_or_else(|_| Err("the copy thread ended without an answer".into())),
        Err(e) => Err(format!("cannot start the copy thread: {e}")),
    };
    drop(running);
    let (manifest, bytes) = copied.map_err(BackupError::Failed)?;
    Ok(Report {
        dir: to,
        manifest,
        bytes,
        gate: gate_time,
        took: started.elapsed(),
    })
}

/// Checks and creates the target, and clears a stale staging directory. Blocking.
fn prepare(to: &Path, data_dir: &Path) -> Result<(), String> {
    // Compared as canonical paths: the data directory may be relative or a symlink.
    let data = std::fs::canonicalize(data_dir)
        .map_err(|e| format!("cannot resolve the data directory: {e}"))?;
    let nearest = to.ancestors().find_map(|a| std::fs::canonicalize(a).ok());
    if nearest.is_some_and(|p| p.starts_with(&data)) {
        return Err(format!(
            "{} is inside the data directory; keep backups elsewhere",
            to.display()
        ));
    }
    match std::fs::read_dir(to) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!(
                    "{} exists and is not empty; back up into a new directory",
                    to.display()
                ));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir_all(to)
            .map_err(|e| format!("cannot create {}: {e}", to.display()))?,
        Err(e) => return Err(format!("{}: {e}", to.display())),
    }
    clear_staging(data_dir).map_err(|e| format!("cannot clear the staging directory: {e}"))?;
    std::fs::create_dir_all(data_dir.join(STAGING_DIR))
        .map_err(|e| format!("cannot create the staging directory: {e}"))
}

/// Test hook (`FLUX_FAILPOINT=backup-slow`): each file's copy starts 300 ms late, so a
/// test can kill the server in the middle of a backup.
fn slow_down() {
    if crate::failpoint::on("backup-slow") {
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Copies the cut's files into `to` and seals it with the manifest. Blocking.
fn copy_out(
    data_dir: &Path,
    to: &Path,
    (created_unix_ms, shards): (u64, u32),
    cuts: &[Cut],
    opts: Options,
) -> io::Result<(Manifest, u64)> {
    let staging = data_dir.join(STAGING_DIR);
    let mut entries = Vec::new();
    let mut pace = files::Pace::new(opts.max_bytes_per_s);
    let whole = |src: &Path, rel: &str, pace: &mut files::Pace| {
        let len = std::fs::metadata(src)?.len();
        slow_down();
        files::copy_in(src, to, rel, (len, len), pace)
    };
    entries.push(whole(&data_dir.join("flux.meta"), "flux.meta", &mut pace)?);
    // The namespace registry is replaced by rename: one open file is one version.
    let registry = data_dir.join("namespaces");
    if registry.exists() {
        entries.push(whole(&registry, "namespaces", &mut pace)?);
    }
    for c in cuts {
        let shard_dir = format!("shard-{}", c.shard);
        let from = staging.join(&shard_dir);
        // Without history, the segments wholly before the snapshot's replay point stay
        // out: recovery never reads them (retention could have deleted them too).
        let mut skip_below = 0;
        if c.snapshot {
            let snap = from.join(SNAPSHOT_FILE);
            if !opts.history {
                skip_below = crate::log::snapshot::read_meta(&snap)
                    .map_err(|e| io::Error::other(format!("shard {}: {e}", c.shard)))?
                    .replay_from_lsn;
            }
            entries.push(whole(
                &snap,
                &format!("{shard_dir}/{SNAPSHOT_FILE}"),
                &mut pace,
            )?);
        }
        for (i, (name, base)) in c.segments.iter().enumerate() {
            let next_base = c.segments.get(i + 1).map(|(_, b)| *b);
            if next_base.is_some_and(|next| next <= skip_below) {
                continue;
            }
            let src = from.join(name);
            let size = std::fs::metadata(&src)?.len();
            let bytes = size.min(c.lsn.saturating_sub(*base));
            slow_down();
            entries.push(files::copy_in(
                &src,
                to,
                &format!("{shard_dir}/{name}"),
                (bytes, size),
                &mut pace,
            )?);
        }
    }
    let manifest = Manifest {
        created_unix_ms,
        shards,
        shard_cuts: cuts.iter().map(|c| c.lsn).collect(),
        files: entries,
    };
    files::seal(to, &manifest)?;
    let bytes = manifest.files.iter().map(|f| f.bytes).sum();
    Ok((manifest, bytes))
}
