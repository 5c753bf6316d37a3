//! One server per data directory: an exclusive `flock` on `FLUX_DATA_DIR/flux.lock`,
//! held for the life of the process.
//!
//! Two servers appending to the same mapped segments would corrupt the log, so the
//! lock is taken before anything in the directory is read or written. The kernel
//! releases a `flock` when its descriptor closes, so the lock goes with the process
//! however it ends (exit, crash, `kill -9`): there is never a stale lock to clean up.
//! The file holds the holder's PID, for the message a second server prints; the PID is
//! informational only (the lock, not the file's content, decides).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "flux.lock";

/// The held lock; dropping it (or ending the process) releases it.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it; its PID if the file names one.
    Held {
        dir: PathBuf,
        pid: Option<u32>,
    },
    Io {
        path: PathBuf,
        err: io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { dir, pid } => {
                write!(
                    f,
                    "the data directory {} is in use by another flux server",
                    dir.display()
                )?;
                if let Some(pid) = pid {
                    write!(f, " (PID {pid})")?;
                }
                write!(
                    f,
                    "; stop that server or start this one with another FLUX_DATA_DIR"
                )
            }
            LockError::Io { path, err } => write!(f, "cannot lock {}: {err}", path.display()),
        }
    }
}

/// Takes the exclusive lock of `dir` (which must exist) without waiting. On success
/// the lock file holds this process's PID; on `Held` nothing was written.
pub fn lock(dir: &Path) -> Result<DirLock, LockError> {
    let path = dir.join(LOCK_FILE);
    let io_err = |err| LockError::Io {
        path: path.clone(),
        err,
    };
    // Not truncated on open: the holder's PID must stay readable by a second server.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err)?;
    // SAFETY: flock on a descriptor we own; it has no memory effects.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(LockError::Held {
                dir: dir.to_path_buf(),
                pid,
            });
        }
        return Err(io_err(err));
    }
    let pid = std::process::id();
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{pid}"))
        .map_err(io_err)?;
    Ok(DirLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(held.path()).unwrap().trim(),
            std::process::id().to_string()
        );
        // flock conflicts between descriptions, even within one process.
        match lock(dir.path()) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(held);
        lock(dir.path()).expect("released when dropped");
    }
}
