//! `futures_timer::Delay` on tokio's timer.
//!
//! rust-libp2p times its pings, gossipsub heartbeats, score decay, idle
//! connections and request timeouts with futures-timer, whose timers live
//! on a thread of their own: each firing wakes that thread, which then
//! wakes the runtime's. With hundreds of idle daemons on one machine those
//! wake-ups were most of their CPU (the cost of a context switch, not of
//! work). Here the same API sleeps on the tokio runtime the daemon already
//! runs, so a timer is part of the runtime's own wait.
//!
//! The workspace puts this crate in place of futures-timer 3 with
//! `[patch.crates-io]`; its API is the one futures-timer 3 has had since
//! 2019 (`Delay::new`, `Delay::reset`, `Future<Output = ()>`), so upgrading
//! rust-libp2p does not touch it. Outside a tokio runtime (nothing in Hive
//! does that), a delay falls back to one thread per wait.
//!
//! A delay of [`GRID`] or more ends on the process's grid of whole
//! seconds ([`on_grid`]): then the gossipsub heartbeat, the score decay,
//! the pings of every connection and the node's own ticks (which start on
//! the grid too) share one wake-up a second instead of each waking the
//! process at a phase of its own. Such a delay may end up to [`EARLY`]
//! before its time or up to a second after it; the ones libp2p sets that
//! long are heartbeats, pings and timeouts, which a second does not hurt.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A future that completes once its time has come.
pub struct Delay {
    deadline: Instant,
    state: State,
}

enum State {
    /// Not polled yet and no runtime when created.
    Idle,
    /// Waiting on the runtime's timer.
    Tokio(Pin<Box<Sleep>>),
    /// Waiting on a thread of its own (no runtime at the first poll).
    Thread(Arc<Mutex<Fired>>),
}

/// What a waiting thread and its delay share.
#[derive(Default)]
struct Fired {
    done: bool,
    waker: Option<Waker>,
}

impl Delay {
    /// Completes `dur` from now.
    pub fn new(dur: Duration) -> Delay {
        let deadline = deadline_in(dur);
        Delay {
            deadline,
            state: sleep_until(deadline).map_or(State::Idle, State::Tokio),
        }
    }

    /// Completes `dur` from now instead, whether or not it completed.
    pub fn reset(&mut self, dur: Duration) {
        self.deadline = deadline_in(dur);
        match &mut self.state {
            State::Tokio(sleep) => sleep.as_mut().reset(self.deadline),
            _ => self.state = sleep_until(self.deadline).map_or(State::Idle, State::Tokio),
        }
    }
}

/// The spacing of the grid, and the shortest delay put on it.
pub const GRID: Duration = Duration::from_secs(1);
/// How early a delay on the grid may end: a timer that is reset when it
/// fires (a heartbeat) asks for `GRID` after a wake-up that came a little
/// late, and must land on the same grid point each time, not on the next.
pub const EARLY: Duration = Duration::from_millis(100);

/// `now + dur`, saturating far in the future (futures-timer accepts any
/// duration; tokio's `Instant` would overflow); on the grid from [`GRID`].
fn deadline_in(dur: Duration) -> Instant {
    let now = Instant::now();
    let deadline = now
        .checked_add(dur)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30));
    if dur >= GRID {
        on_grid(deadline)
    } else {
        deadline
    }
}

/// The grid point nearest after `deadline`, or the one at most [`EARLY`]
/// before it. The grid counts from the first time asked in this process:
/// each process has a phase of its own, so a machine of many daemons does
/// not wake them all at once.
pub fn on_grid(deadline: Instant) -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    snap(deadline, *ORIGIN.get_or_init(Instant::now))
}

fn snap(deadline: Instant, origin: Instant) -> Instant {
    let since = deadline.saturating_duration_since(origin);
    let past = Duration::from_nanos((since.as_nanos() % GRID.as_nanos()) as u64);
    if past <= EARLY {
        deadline - past
    } else {
        deadline + (GRID - past)
    }
}

/// A tokio sleep, when called inside a runtime with a timer.
fn sleep_until(deadline: Instant) -> Option<Pin<Box<Sleep>>> {
    tokio::runtime::Handle::try_current().ok()?;
    Some(Box::pin(tokio::time::sleep_until(deadline)))
}

impl Future for Delay {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Tokio(sleep) => return sleep.as_mut().poll(cx),
                State::Thread(fired) => {
                    let mut fired = fired.lock().unwrap_or_else(|e| e.into_inner());
                    if fired.done {
                        return Poll::Ready(());
                    }
                    fired.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                State::Idle => match sleep_until(this.deadline) {
                    Some(sleep) => this.state = State::Tokio(sleep),
                    None => {
                        let left = this.deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Poll::Ready(());
                        }
                        let fired = Arc::new(Mutex::new(Fired::default()));
                        let shared = fired.clone();
                        std::thread::spawn(move || {
                            std::thread::sleep(left);
                            let mut fired = shared.lock().unwrap_or_else(|e| e.into_inner());
                            fired.done = true;
                            if let Some(waker) = fired.waker.take() {
                                waker.wake();
                            }
                        });
                        this.state = State::Thread(fired);
                    }
                },
            }
        }
    }
}

impl fmt::Debug for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delay")
            .field("deadline", &self.deadline)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within what the grid allows of `want`.
    fn about(elapsed: Duration, want: Duration) -> bool {
        elapsed + EARLY >= want && elapsed <= want + GRID
    }

    #[tokio::test(start_paused = true)]
    async fn completes_on_time_and_again_after_a_reset() {
        let start = Instant::now();
        let mut delay = Delay::new(Duration::from_secs(5));
        (&mut delay).await;
        let first = start.elapsed();
        assert!(about(first, Duration::from_secs(5)), "{first:?}");
        delay.reset(Duration::from_secs(3));
        (&mut delay).await;
        let second = start.elapsed() - first;
        assert!(about(second, Duration::from_secs(3)), "{second:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn counts_from_creation_not_from_the_first_poll() {
        let start = Instant::now();
        let delay = Delay::new(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(4)).await;
        delay.await;
        assert!(about(start.elapsed(), Duration::from_secs(5)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_delay_is_not_moved() {
        let start = Instant::now();
        Delay::new(Duration::from_millis(230)).await;
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(230) && elapsed < Duration::from_millis(240));
    }

    /// Two heartbeats started apart, each reset when it fires and woken a
    /// little late each time, meet on one grid point and stay there, one
    /// second apart: one wake-up a second for both.
    #[test]
    fn timers_reset_as_they_fire_share_grid_points_and_keep_their_period() {
        let origin = Instant::now();
        let at = |ms: u64| origin + Duration::from_millis(ms);
        assert_eq!(snap(at(3_000), origin), at(3_000));
        assert_eq!(
            snap(at(3_080), origin),
            at(3_000),
            "a little late: same point"
        );
        assert_eq!(snap(at(3_101), origin), at(4_000));
        assert_eq!(snap(at(2_999), origin), at(3_000));
        let (mut a, mut b) = (snap(at(1_430), origin), snap(at(1_910), origin));
        assert_eq!((a, b), (at(2_000), at(2_000)));
        for late_ms in [3, 40, 0, 95, 17] {
            a = snap(a + Duration::from_millis(late_ms) + GRID, origin);
            b = snap(b + Duration::from_millis(late_ms / 2) + GRID, origin);
            assert_eq!(a, b);
        }
        assert_eq!(a, at(7_000), "five periods of one second");
        assert_eq!(snap(origin, origin + GRID), origin, "before the origin");
    }

    #[test]
    fn works_without_a_runtime() {
        let delay = Delay::new(Duration::from_millis(20));
        let start = std::time::Instant::now();
        futures_block_on(delay);
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn a_huge_duration_does_not_overflow() {
        let mut delay = Delay::new(Duration::MAX);
        delay.reset(Duration::MAX);
    }

    /// A minimal executor: poll, park until woken.
    fn futures_block_on(fut: impl Future<Output = ()>) {
        use std::task::Wake;
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Arc::new(Unpark(std::thread::current())).into();
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        while fut.as_mut().poll(&mut cx).is_pending() {
            std::thread::park();
        }
    }
}
