//! One daemon per data directory.
//!
//! Two daemons on one directory would be two nodes with one identity, and
//! two writers of one history: SQLite refuses the second writer's
//! transactions ("database is locked") and what they carried is not stored.
//! It happens without anyone meaning it: a host killed with SIGKILL is
//! restarted at once on its directory, while its old daemon, told by the
//! parent-death signal, still takes a moment to save and close. So a daemon
//! takes an exclusive `flock` on `<data-dir>/lock` before it opens anything
//! else there, and waits a bounded time for a predecessor to let go. The
//! kernel releases the lock when the process ends, however it ends, so a
//! crashed daemon never leaves a stale one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "lock";
/// How long a daemon waits for the one before it to exit (a stopping
/// daemon takes at most about 3 s; the host waits 30 s for the ready line).
pub const WAIT_LIMIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);

/// Held for the daemon's whole life; the lock goes with the file.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Take the data directory's lock, waiting up to `limit` for a daemon that
/// holds it to exit. Fails with the holder's pid when it does not.
pub async fn acquire(data_dir: &Path, limit: Duration) -> Result<DirLock> {
    let path = data_dir.join(LOCK_FILE);
    let mut file = open(&path)?;
    let deadline = tokio::time::Instant::now() + limit;
    let mut told = false;
    loop {
        if try_lock(&file).with_context(|| format!("cannot lock {}", path.display()))? {
            write_pid(&mut file).with_context(|| format!("cannot write {}", path.display()))?;
            return Ok(DirLock { _file: file });
        }
        let holder = holder(&mut file);
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the data directory {} is in use by another hive-p2pd ({}) and was not freed within {limit:?}; stop that daemon or pass another --data-dir",
                data_dir.display(),
                holder.as_deref().unwrap_or("pid unknown")
            );
        }
        if !told {
            told = true;
            tracing::warn!(dir = %data_dir.display(), holder = holder.as_deref().unwrap_or("pid unknown"), "data directory in use by another daemon; waiting for it to exit");
        }
        tokio::time::sleep(POLL).await;
    }
}

fn open(path: &PathBuf) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// `Ok(false)` when another process holds the lock.
fn try_lock(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        Some(libc::EINTR) => Ok(false),
        _ => Err(err),
    }
}

/// The pid in the file, for the holder's name in messages.
fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())
}

fn holder(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    Some(format!("pid {pid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_waits_and_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), WAIT_LIMIT).await.unwrap();
        // flock locks belong to the open file description: a second open in
        // this process conflicts just as another process would.
        let err = acquire(dir.path(), Duration::from_millis(300))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("in use by another hive-p2pd"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        acquire(dir.path(), Duration::ZERO).await.unwrap();
    }

    #[tokio::test]
    async fn the_lock_is_taken_as_soon_as_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), WAIT_LIMIT).await.unwrap();
        let path = dir.path().to_owned();
        let second = tokio::spawn(async move { acquire(&path, WAIT_LIMIT).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!second.is_finished(), "took a lock that was held");
        drop(first);
        second.await.unwrap().unwrap();
    }
}
