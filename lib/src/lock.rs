//! Exclusive locks on local resources (a backup of one env, a deploy), so two cron runs or
//! an operator and cron never work on the same thing at once.
//!
//! The lock *is* an exclusive `flock(2)` on `<dir>/<resource>.lock`; the kernel drops it when
//! the holder's file descriptor closes, so a holder that dies (even by `kill -9`) releases it
//! and the next run simply takes it over: there is no stale lock to clean up. The JSON
//! written into the file after locking (pid, host, since, purpose) only makes the "held by"
//! message useful.
//!
//! The file is never unlinked. Removing it on release would let a waiter lock the old,
//! unlinked inode while a newcomer locks a fresh file at the same path, and both would
//! believe they hold the lock. The descriptor is close-on-exec, so child processes
//! (restic, mariabackup) do not keep the lock alive after the holder exits.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Who holds a lock, as written into the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// RFC 3339, UTC.
    pub since: String,
    /// What the holder is doing: `backup-run db`.
    pub purpose: String,
}

impl Holder {
    fn this_process(purpose: &str) -> Holder {
        Holder {
            pid: std::process::id(),
            host: hostname(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            purpose: purpose.to_string(),
        }
    }
}

/// Entry points for taking a lock.
pub struct Lock;

/// A held lock; released when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
    holder: Holder,
}

impl Lock {
    /// Take the lock now or fail with a [`Temporary`](crate::ErrorKind::Temporary) error
    /// (exit 75) naming the holder.
    ///
    /// `dir_or_path` is a directory (the lock file is `<dir>/<resource>.lock`) or the lock
    /// file itself. The directory must exist.
    pub fn acquire(dir_or_path: &Path, resource: &str, purpose: &str) -> Result<LockGuard> {
        let path = lock_path(dir_or_path, resource)?;
        let file = open(&path)?;
        match try_lock(&file, &path)? {
            true => LockGuard::claim(file, path, purpose),
            false => Err(held_error(&path, &file, None)),
        }
    }

    /// Like [`Lock::acquire`], but keep trying for up to `timeout` before giving up.
    pub fn acquire_wait(
        dir_or_path: &Path,
        resource: &str,
        purpose: &str,
        timeout: Duration,
    ) -> Result<LockGuard> {
        let path = lock_path(dir_or_path, resource)?;
        let file = open(&path)?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            if try_lock(&file, &path)? {
                return LockGuard::claim(file, path, purpose);
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(held_error(&path, &file, Some(waited)));
            }
            std::thread::sleep(pause.min(timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Who holds the lock file at `path`, if its holder info can be read.
    pub fn holder(path: &Path) -> Option<Holder> {
        let mut text = String::new();
        File::open(path).ok()?.read_to_string(&mut text).ok()?;
        serde_json::from_str(&text).ok()
    }
}

impl LockGuard {
    fn claim(mut file: File, path: PathBuf, purpose: &str) -> Result<LockGuard> {
        let holder = Holder::this_process(purpose);
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            let mut line = serde_json::to_vec(&holder).map_err(std::io::Error::other)?;
            line.push(b'\n');
            f.write_all(&line)?;
            f.sync_data()
        };
        write(&mut file)
            .map_err(|e| Error::io(format!("writing holder info to {}", path.display()), e))?;
        Ok(LockGuard { file, path, holder })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn holder(&self) -> &Holder {
        &self.holder
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Still holding the lock here, so nobody else's holder info can be erased. Closing
        // the descriptor right after releases the flock.
        let _ = self.file.set_len(0);
        let _ = flock(&self.file, FlockOperation::Unlock);
    }
}

fn lock_path(dir_or_path: &Path, resource: &str) -> Result<PathBuf> {
    if dir_or_path.is_dir() {
        if resource.is_empty() || resource.contains(['/', '\0']) || resource.starts_with('.') {
            return Err(Error::failed(format!(
                "lock resource name {resource:?} is not a plain file name"
            )));
        }
        return Ok(dir_or_path.join(format!("{resource}.lock")));
    }
    match dir_or_path.parent() {
        Some(p) if !p.as_os_str().is_empty() && !p.is_dir() => Err(Error::failed(format!(
            "lock directory {} does not exist",
            p.display()
        ))),
        _ => Ok(dir_or_path.to_path_buf()),
    }
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .map_err(|e| Error::io(format!("opening lock file {}", path.display()), e))
}

/// True when the lock was taken, false when someone else holds it.
fn try_lock(file: &File, path: &Path) -> Result<bool> {
    loop {
        match flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(true),
            Err(Errno::WOULDBLOCK) => return Ok(false),
            Err(Errno::INTR) => continue,
            Err(e) => {
                return Err(Error::failed(format!(
                    "locking {}: {}",
                    path.display(),
                    std::io::Error::from(e)
                )))
            }
        }
    }
}

fn held_error(path: &Path, file: &File, waited: Option<Duration>) -> Error {
    let mut text = String::new();
    let holder = (&*file)
        .read_to_string(&mut text)
        .ok()
        .and_then(|_| serde_json::from_str::<Holder>(&text).ok());
    let who = match holder {
        Some(h) => {
            let mut s = format!(
                "held by pid {} on {} since {} ({})",
                h.pid, h.host, h.since, h.purpose
            );
            if h.host == hostname() && !pid_alive(h.pid) {
                s.push_str(&format!(
                    "; pid {} is gone, so a process it started still holds the lock",
                    h.pid
                ));
            }
            s
        }
        // Locked by something that wrote no holder info (yet): flock(1), or a holder
        // between locking and writing.
        None => "held by another process".to_string(),
    };
    let waited = waited
        .map(|w| format!(" (waited {:.1}s)", w.as_secs_f64()))
        .unwrap_or_default();
    Error::temporary(format!("lock {} is {who}{waited}", path.display()))
}

fn pid_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // EPERM means it exists but belongs to someone else.
    !matches!(rustix::process::test_kill_process(pid), Err(Errno::SRCH))
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
