//! Precise waiting for the open model's dispatcher thread.
//!
//! Tokio's timer has a resolution of one millisecond, so a schedule driven by
//! `sleep_until` alone starts requests up to a millisecond late, and that
//! lateness lands in latency measured from the intended start. The dispatcher
//! runs on its own OS thread instead: it sleeps with the kernel timer, with
//! the thread's timer slack lowered so the kernel does not delay the wake-up
//! by its default 50 µs, and yields in a loop for the last stretch.

use std::time::{Duration, Instant};

/// The stretch before a deadline spent yielding instead of sleeping.
const YIELD_WINDOW: Duration = Duration::from_micros(60);
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

/// Blocks the thread until `deadline`. Returns false, early, when
/// `stopped()` turns true.
pub fn wait_until(deadline: Instant, stopped: impl Fn() -> bool) -> bool {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        if stopped() {
            return false;
        }
        let left = deadline - now;
        if left > YIELD_WINDOW {
            std::thread::sleep((left - YIELD_WINDOW).min(MAX_SLEEP));
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_is_never_early() {
        use_precise_timers();
        for micros in [0, 30, 250, 1_500] {
            let deadline = Instant::now() + Duration::from_micros(micros);
            assert!(wait_until(deadline, || false));
            assert!(Instant::now() >= deadline);
        }
    }

    #[test]
    fn wait_until_stops_early() {
        let deadline = Instant::now() + Duration::from_secs(60);
        let started = Instant::now();
        assert!(!wait_until(deadline, || true));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
