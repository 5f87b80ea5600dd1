//! Precise waiting for the open model's dispatcher thread.
//!
//! Tokio's timer has a resolution of one millisecond, so a schedule driven by
//! `sleep_until` alone starts requests up to a millisecond late, and that
//! lateness lands in latency measured from the intended start. The dispatcher
//! runs on its own OS thread instead: it sleeps with the kernel timer, with
//! the thread's timer slack lowered so the kernel does not delay the wake-up
//! by its default 50 µs, and yields in a loop for the last stretch. That
//! stretch follows how late the kernel's wake-ups have recently been, so a
//! quiet machine spends little CPU on it and a busy one stays on time. The
//! caller can bound it, so that dense arrivals do not keep the thread
//! yielding all the time.

use std::time::{Duration, Instant};

/// The shortest and longest stretch before a deadline spent yielding.
const MIN_YIELD_WINDOW: Duration = Duration::from_micros(10);
const MAX_YIELD_WINDOW: Duration = Duration::from_micros(500);
/// The longest single sleep, so that a stop request is seen quickly.
const MAX_SLEEP: Duration = Duration::from_millis(20);

/// Lowers the calling thread's timer slack to 1 ns (Linux only; elsewhere a no-op).
pub fn use_precise_timers() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument and only changes
    // the calling thread's timer slack; it touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// A sleeper for one thread that waits until deadlines, precisely.
#[derive(Debug)]
pub struct Waiter {
    /// How long before a deadline the sleeping stops and the yielding starts.
    yield_window: Duration,
}

impl Default for Waiter {
    fn default() -> Self {
        Waiter {
            yield_window: Duration::from_micros(60),
        }
    }
}

impl Waiter {
    /// Blocks the thread until `deadline`, yielding for at most `max_yield`
    /// of the wait. Returns false, early, when `stopped()` turns true.
    pub fn wait_until(
        &mut self,
        deadline: Instant,
        max_yield: Duration,
        stopped: impl Fn() -> bool,
    ) -> bool {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            if stopped() {
                return false;
            }
            match self.nap(deadline - now, max_yield) {
                Some(nap) => {
                    std::thread::sleep(nap);
                    self.learn(now.elapsed().saturating_sub(nap));
                }
                None => std::thread::yield_now(),
            }
        }
    }

    /// Returns how long to sleep when `left` remains before the deadline,
    /// or `None` once the rest is the yield window, which is capped by
    /// `max_yield`. The window is read anew each time, because every late
    /// wake-up widens it.
    fn nap(&self, left: Duration, max_yield: Duration) -> Option<Duration> {
        let window = self.yield_window.min(max_yield);
        (left > window).then(|| (left - window).min(MAX_SLEEP))
    }

    /// Widens the window at once to twice a late wake-up (plus 5 µs), and
    /// narrows it by 1 % per sleep otherwise, within the bounds.
    fn learn(&mut self, late: Duration) {
        let window = late * 2 + Duration::from_micros(5);
        self.yield_window = window
            .max(self.yield_window.mul_f64(0.99))
            .clamp(MIN_YIELD_WINDOW, MAX_YIELD_WINDOW);
    }

    pub fn yield_window(&self) -> Duration {
        self.yield_window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_is_never_early() {
        use_precise_timers();
        let mut waiter = Waiter::default();
        for micros in [0, 30, 250, 1_500, 40, 3_000] {
            for max_yield in [Duration::ZERO, Duration::from_micros(20), Duration::MAX] {
                let deadline = Instant::now() + Duration::from_micros(micros);
                assert!(waiter.wait_until(deadline, max_yield, || false));
                assert!(Instant::now() >= deadline);
            }
        }
    }

    #[test]
    fn wait_until_stops_early() {
        let deadline = Instant::now() + Duration::from_secs(60);
        let started = Instant::now();
        assert!(!Waiter::default().wait_until(deadline, Duration::MAX, || true));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn nap_leaves_the_capped_window() {
        let waiter = Waiter::default();
        let micros = Duration::from_micros;
        assert_eq!(waiter.nap(micros(50), Duration::MAX), None);
        assert_eq!(waiter.nap(micros(50), micros(20)), Some(micros(30)));
        assert_eq!(waiter.nap(micros(500), Duration::MAX), Some(micros(440)));
        assert_eq!(waiter.nap(micros(20), micros(20)), None);
        assert_eq!(
            waiter.nap(Duration::from_secs(10), Duration::ZERO),
            Some(MAX_SLEEP)
        );
    }

    #[test]
    fn yield_window_follows_late_wake_ups() {
        let mut waiter = Waiter::default();
        waiter.learn(Duration::from_micros(100));
        assert_eq!(waiter.yield_window(), Duration::from_micros(205));
        // On time from now on: the window shrinks by 1 % per sleep.
        waiter.learn(Duration::ZERO);
        assert_eq!(waiter.yield_window(), Duration::from_nanos(202_950));
        for _ in 0..1_000 {
            waiter.learn(Duration::ZERO);
        }
        assert_eq!(waiter.yield_window(), MIN_YIELD_WINDOW);
        waiter.learn(Duration::from_millis(5));
        assert_eq!(waiter.yield_window(), MAX_YIELD_WINDOW);
    }
}
