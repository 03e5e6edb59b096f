//! go's `-idleTimeout`: the daemon exits once no persistent connection
//! has been open for a while.

use std::time::Duration;

use tokio::sync::watch;

/// Open persistent connections, counted for `-idleTimeout`.
pub fn persistent_counter() -> (watch::Sender<usize>, watch::Receiver<usize>) {
    watch::channel(0)
}

/// Completes once no persistent connection has been open for `timeout`
/// (go's `-idleTimeout`: a daemon whose client died without stopping it
/// does not linger). The clock starts at start-up and again each time the
/// last persistent connection closes.
pub async fn idle(mut open: watch::Receiver<usize>, timeout: Duration) {
    loop {
        while *open.borrow_and_update() > 0 {
            if open.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
        match tokio::time::timeout(timeout, open.changed()).await {
            Err(_) => return,
            Ok(Err(_)) => return std::future::pending().await,
            Ok(Ok(())) => continue,
        }
    }
}

/// Counts one persistent connection while it lives.
pub(super) struct OpenGuard(watch::Sender<usize>);

impl OpenGuard {
    pub(super) fn new(counter: &watch::Sender<usize>) -> Self {
        counter.send_modify(|n| *n += 1);
        OpenGuard(counter.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod idle_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_fires_only_after_a_whole_period_without_persistent_connections() {
        let (tx, rx) = persistent_counter();
        let watchdog = tokio::spawn(idle(rx, Duration::from_secs(30)));
        tokio::time::sleep(Duration::from_secs(20)).await;
        let guard = OpenGuard::new(&tx);
        // Open for longer than the timeout: no exit.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!watchdog.is_finished());
        drop(guard);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!watchdog.is_finished());
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(watchdog.is_finished());
    }
}
