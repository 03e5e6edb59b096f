//! Exiting when the parent process dies.
//!
//! A daemon must never outlive its host, even when the host is killed with
//! SIGKILL and gets no chance to clean up. Two mechanisms, because each alone
//! has a gap: the kernel's parent-death signal (`PR_SET_PDEATHSIG`) fires when
//! the *thread* that forked us exits, and is lost if the parent died before we
//! set it; the watchdog notices the parent's exit whatever the cause.
//!
//! The watchdog waits on a pidfd of the parent (readable once it exits), so
//! an idle daemon is not woken to look: with hundreds of daemons under one
//! host, a check every half second each was hundreds of wake-ups a second.
//! Where pidfds are missing (Linux before 5.3, other systems) it falls back
//! to checking for re-parenting every half second.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

/// Arm the parent-death signal and return the parent pid to watch.
/// Returns `None` when the parent is already gone.
pub fn arm() -> Option<i32> {
    // SAFETY: getppid and prctl with these arguments have no memory effects.
    let parent = unsafe { libc::getppid() };
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGTERM as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    // The parent may have died between fork and prctl: then we were
    // re-parented already and no signal will ever come.
    if parent <= 1 {
        return None;
    }
    Some(parent)
}

/// Resolves when the process `parent` is no longer our parent.
pub async fn watch(parent: i32) {
    match open_pidfd(parent) {
        // Readable once the process exits; an error means the same.
        Pidfd::Open(fd) => drop(fd.readable().await),
        Pidfd::Gone => {}
        Pidfd::Unavailable => poll(parent).await,
    }
}

enum Pidfd {
    Open(AsyncFd<OwnedFd>),
    /// We were re-parented already.
    Gone,
    /// No pidfds here: poll instead.
    Unavailable,
}

/// A pidfd of `parent`, registered with the runtime.
fn open_pidfd(parent: i32) -> Pidfd {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, parent, 0) };
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != parent {
            // Re-parented, before or after the fd was opened: `parent`
            // is gone, and the pid may be someone else's by now.
            if raw >= 0 {
                // SAFETY: a new descriptor that nothing else owns.
                drop(unsafe { OwnedFd::from_raw_fd(raw as i32) });
            }
            return Pidfd::Gone;
        }
        if raw < 0 {
            return Pidfd::Unavailable;
        }
        // SAFETY: a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        // SAFETY: an OwnedFd's descriptor stays open, and the same, until
        // it is dropped, which the AsyncFd that owns it does last.
        match unsafe { AsyncFd::register(fd) } {
            Ok(fd) => Pidfd::Open(fd),
            Err(_) => Pidfd::Unavailable,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = parent;
        Pidfd::Unavailable
    }
}

/// Resolves when our parent pid is no longer `parent`, checking every half
/// second.
async fn poll(parent: i32) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != parent {
            return;
        }
    }
}
