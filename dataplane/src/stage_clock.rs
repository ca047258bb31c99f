//! Per-stage cycle accounting of a worker (`[workers] stage_cycles = true`),
//! in the manner of VPP's `show runtime`: how many frames each stage of the
//! poll loop handled and how many CPU clock cycles it spent on them, so that
//! `s2ds stats` can show cycles per packet for receive, classification,
//! sealing, opening and transmit.
//!
//! The clock is read at stage boundaries, once per burst and stage (never
//! per packet), with the CPU's time-stamp counter through `quanta` (its
//! monotonic fallback, in nanoseconds, where the CPU has no invariant TSC).
//! Off by default: a worker without it does one predictable branch per
//! stage and reads no clock.

use serde::{Deserialize, Serialize};

/// A stage of the poll loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Receive bursts that returned frames (the driver or the kernel ring).
    Rx,
    /// Parsing and classifying each received frame (forwarded frames are
    /// rewritten here too).
    Classify,
    /// ESP encapsulation and sealing of a burst (LAN → WAN).
    Seal,
    /// Anti-replay check, opening and decapsulation of a burst (WAN → LAN).
    Open,
    /// The poll's transmit bursts. A transmit forced early by a full burst
    /// counts in the stage that filled it.
    Tx,
}

impl Stage {
    /// Number of stages.
    pub const COUNT: usize = 5;
    /// Every stage, in loop order (the index of each is `stage as usize`).
    pub const ALL: [Stage; Stage::COUNT] = [
        Stage::Rx,
        Stage::Classify,
        Stage::Seal,
        Stage::Open,
        Stage::Tx,
    ];

    /// The name used in counter names and by `s2ds stats`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Rx => "rx",
            Stage::Classify => "classify",
            Stage::Seal => "seal",
            Stage::Open => "open",
            Stage::Tx => "tx",
        }
    }
}

/// Frames and clock cycles per stage, indexed by `Stage as usize`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageCounts {
    /// Frames each stage handled.
    pub packets: [u64; Stage::COUNT],
    /// Clock cycles each stage spent (see the module documentation).
    pub cycles: [u64; Stage::COUNT],
}

impl StageCounts {
    /// Cycles per frame of `stage` between `prev` and `self` (`None` if
    /// the stage handled no frame in between).
    pub fn cycles_per_packet_since(&self, prev: &StageCounts, stage: Stage) -> Option<f64> {
        let i = stage as usize;
        let packets = self.packets[i].checked_sub(prev.packets[i])?;
        let cycles = self.cycles[i].saturating_sub(prev.cycles[i]);
        (packets > 0).then(|| cycles as f64 / packets as f64)
    }
}

/// A worker's stage clock: the last boundary read, and the counts since the
/// worker last folded them into its counter block.
#[derive(Debug, Default)]
pub struct StageClock {
    clock: Option<quanta::Clock>,
    last: u64,
    counts: StageCounts,
}

impl StageClock {
    /// A clock that counts if `on` (calibrating the TSC against the
    /// monotonic clock here, not on the hot path), or one that reads
    /// nothing and counts nothing.
    pub fn new(on: bool) -> Self {
        StageClock {
            clock: on.then(quanta::Clock::new),
            ..StageClock::default()
        }
    }

    /// Whether stages are being counted.
    pub fn enabled(&self) -> bool {
        self.clock.is_some()
    }

    /// Starts a stage: the cycles from here to the next [`StageClock::lap`]
    /// go to that lap's stage.
    #[inline]
    pub fn mark(&mut self) {
        if let Some(c) = &self.clock {
            self.last = c.raw();
        }
    }

    /// Ends a stage that handled `packets` frames and starts the next one.
    #[inline]
    pub fn lap(&mut self, stage: Stage, packets: usize) {
        if let Some(c) = &self.clock {
            let now = c.raw();
            let i = stage as usize;
            self.counts.packets[i] += packets as u64;
            self.counts.cycles[i] += now.saturating_sub(self.last);
            self.last = now;
        }
    }

    /// Hands over the counts since the last call and starts again from zero.
    #[inline]
    pub fn take(&mut self) -> StageCounts {
        std::mem::take(&mut self.counts)
    }
}

/// Clock cycles per second of the stage clock on this machine (the TSC's
/// rate, or 10⁹ where quanta falls back to the monotonic clock), for
/// turning cycles into time.
pub fn cycles_per_second() -> u64 {
    const TICKS: u64 = 1 << 32;
    let clock = quanta::Clock::new();
    let ns = clock.delta_as_nanos(0, TICKS).max(1);
    (u128::from(TICKS) * 1_000_000_000 / u128::from(ns)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_off_clock_counts_nothing() {
        let mut c = StageClock::new(false);
        c.mark();
        c.lap(Stage::Rx, 32);
        assert!(!c.enabled());
        assert_eq!(c.take(), StageCounts::default());
    }

    #[test]
    fn laps_go_to_their_stage_and_take_starts_again() {
        let mut c = StageClock::new(true);
        c.mark();
        c.lap(Stage::Rx, 32);
        // Some work between two boundaries, so that the clock moves.
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        c.lap(Stage::Seal, 30);
        c.mark();
        c.lap(Stage::Tx, 30);
        let got = c.take();
        assert_eq!(got.packets, [32, 0, 30, 0, 30]);
        assert!(got.cycles[Stage::Seal as usize] > 0, "{got:?}");
        assert_eq!(got.cycles[Stage::Classify as usize], 0);
        assert_eq!(got.cycles[Stage::Open as usize], 0);
        assert_eq!(c.take(), StageCounts::default());
    }

    #[test]
    fn cycles_per_packet_are_deltas() {
        let prev = StageCounts {
            packets: [10, 0, 0, 0, 0],
            cycles: [1000, 0, 0, 0, 0],
        };
        let cur = StageCounts {
            packets: [30, 0, 0, 0, 0],
            cycles: [5000, 0, 0, 0, 0],
        };
        assert_eq!(cur.cycles_per_packet_since(&prev, Stage::Rx), Some(200.0));
        assert_eq!(cur.cycles_per_packet_since(&prev, Stage::Seal), None);
    }

    #[test]
    fn the_clock_rate_is_plausible() {
        // Between 100 MHz and 10 GHz: a TSC, or the nanosecond fallback.
        let hz = cycles_per_second();
        assert!((100_000_000..=10_000_000_000).contains(&hz), "{hz}");
    }
}
