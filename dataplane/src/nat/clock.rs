//! A coarse seconds clock shared by the workers and the slow path.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Instant;

/// Whole seconds since the clock was made, in an `AtomicU32`: the slow path
/// calls [`tick`](Self::tick) about once a second and workers read
/// [`now`](Self::now) once per burst (one Relaxed load, no system call).
///
/// Nothing is published through the clock, so Relaxed is enough: a worker
/// that reads a value a tick old only makes an entry look one second younger.
#[derive(Debug)]
pub struct CoarseClock {
    start: Instant,
    secs: AtomicU32,
}

impl CoarseClock {
    /// A clock reading 0 now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            secs: AtomicU32::new(0),
        }
    }

    /// The current coarse time in seconds.
    #[inline]
    pub fn now(&self) -> u32 {
        self.secs.load(Relaxed)
    }

    /// Advances the clock to the monotonic time elapsed since [`new`](Self::new)
    /// and returns it. Called by one thread (the slow path); wraps after
    /// 136 years, which the connection table's wrapping arithmetic tolerates.
    pub fn tick(&self) -> u32 {
        let secs = self.start.elapsed().as_secs() as u32;
        self.secs.store(secs, Relaxed);
        secs
    }

    /// Sets the clock (tests and simulations).
    pub fn set(&self, secs: u32) {
        self.secs.store(secs, Relaxed);
    }
}

impl Default for CoarseClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_zero_and_follows_set_and_tick() {
        let c = CoarseClock::new();
        assert_eq!(c.now(), 0);
        c.set(42);
        assert_eq!(c.now(), 42);
        // Less than a second has passed since `new`.
        assert_eq!(c.tick(), 0);
        assert_eq!(c.now(), 0);
    }
}
