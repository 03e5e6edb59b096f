//! Exiting when the parent process dies.
//!
//! A daemon must never outlive its host, even when the host is killed with
//! SIGKILL and gets no chance to clean up. Two mechanisms, because each alone
//! has a gap: the kernel's parent-death signal (`PR_SET_PDEATHSIG`) fires when
//! the *thread* that forked us exits, and is lost if the parent died before we
//! set it; the watchdog notices re-parenting (our parent pid changes) within
//! half a second whatever the cause.

use std::time::Duration;

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

/// Resolves when our parent pid is no longer `parent`.
pub async fn watch(parent: i32) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != parent {
            return;
        }
    }
}
