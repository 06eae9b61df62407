//! When each open-loop send goes out. tokio's timer ticks in whole milliseconds, too
//! coarse for sends due every few milliseconds; on Linux the pacer sleeps on a
//! `timerfd` instead, registered with the runtime's own event loop: it wakes within
//! tens of microseconds of the due time, on the runtime worker that then starts the
//! request, with no thread of its own and no hand-over between threads (one wake-up
//! per send, as a plain tokio sleep would cost). Where a `timerfd` is not available
//! (other systems, or the call fails) it falls back to tokio's timer. The timer's
//! wake-up is seen when a worker next looks at I/O readiness: [`runtime`] builds the
//! runtime that looks often enough.

use std::time::Instant;

/// How many tasks a busy worker runs between two looks at I/O readiness (tokio's
/// default is 61). A due send waits at most that long behind other work: at 200
/// requests/s with the simulator in the same process the send error's p99 was
/// 1.4–2.3 ms at 61 and 0.5–1.0 ms at 4. An idle worker waits on I/O anyway, so
/// this costs nothing when the process is not busy.
pub const EVENT_INTERVAL: u32 = 4;

/// The multi-threaded Tokio runtime kabench runs on (all drivers enabled), tuned for
/// precise sends ([`EVENT_INTERVAL`]).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(EVENT_INTERVAL)
        .build()
}

/// Sleeps until given instants, as precisely as the system allows.
pub struct Pacer {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    timer: Option<tokio::io::unix::AsyncFd<linux::Timer>>,
}

impl Pacer {
    /// A pacer for the current runtime (needs a Tokio runtime with I/O enabled).
    pub fn new() -> Pacer {
        Pacer {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            timer: linux::Timer::new().and_then(linux::Timer::register),
        }
    }

    /// Returns at `at` (at once when it has passed).
    pub async fn until(&mut self, at: Instant) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(timer) = &self.timer {
            if linux::sleep_until(timer, at).await.is_ok() {
                return;
            }
            // A failing timerfd is not used again.
            self.timer = None;
        }
        tokio::time::sleep_until(at.into()).await;
    }
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new()
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux {
    use std::os::fd::{AsFd, AsRawFd, RawFd};
    use std::time::Instant;

    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
    use tokio::io::unix::AsyncFd;

    /// A non-blocking monotonic `timerfd`.
    pub struct Timer(TimerFd);

    impl Timer {
        pub fn new() -> Option<Timer> {
            TimerFd::new(
                ClockId::CLOCK_MONOTONIC,
                TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
            )
            .ok()
            .map(Timer)
        }
    }

    impl Timer {
        /// Registers the timer with the current runtime's event loop.
        pub fn register(self) -> Option<AsyncFd<Timer>> {
            // SAFETY: the `TimerFd` owns its file descriptor, which nothing else
            // closes or replaces while the `AsyncFd` owns the timer.
            unsafe { AsyncFd::register(self) }.ok()
        }
    }

    impl AsRawFd for Timer {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_fd().as_raw_fd()
        }
    }

    /// Arms the timer for `at` and waits until it fires. The expiry count is never
    /// read: arming the timer again resets it, and the runtime's edge-triggered event
    /// loop reports each expiry once. A readiness seen before `at` (from an earlier
    /// arming) arms the timer again for what is left.
    pub async fn sleep_until(timer: &AsyncFd<Timer>, at: Instant) -> std::io::Result<()> {
        loop {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            timer.get_ref().0.set(
                Expiration::OneShot(TimeSpec::from_duration(left)),
                TimerSetTimeFlags::empty(),
            )?;
            let mut ready = timer.readable().await?;
            ready.clear_ready();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn returns_at_the_instant_not_before() {
        let mut pacer = Pacer::new();
        for step in [3u64, 1, 7, 0] {
            let at = Instant::now() + Duration::from_millis(step);
            pacer.until(at).await;
            assert!(Instant::now() >= at, "woke before a {step} ms deadline");
        }
        // An instant in the past returns at once.
        let before = Instant::now();
        pacer.until(before - Duration::from_millis(5)).await;
        assert!(before.elapsed() < Duration::from_millis(50));
    }
}
