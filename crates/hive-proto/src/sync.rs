//! The one poisoned-mutex policy of the host and the daemon.

use std::sync::{Mutex, MutexGuard};

/// Lock `m`, carrying on past a panic in another holder: every value Hive
/// keeps behind a mutex stays consistent between statements, so a poisoned
/// lock holds nothing half-written worth dying for (or worth no longer
/// serving).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
