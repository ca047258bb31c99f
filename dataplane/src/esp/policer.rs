//! A per-SA rate policer: a token bucket shared by every worker that seals
//! with the SA, asked once per burst how many of the burst's packets may go.
//!
//! # Algorithm
//!
//! The bucket is kept as the generic cell rate algorithm (GCRA, the
//! "virtual scheduling" form of a token bucket, ITU-T I.371): one word, the
//! *theoretical arrival time* (TAT), the instant at which the bucket would be
//! full again. A packet of `b` bytes costs `b × 8 / rate` seconds; it
//! conforms when `max(TAT, now) + cost − now ≤ τ`, and then
//! `TAT ← max(TAT, now) + cost`. `τ`, the burst tolerance, is the time the
//! rate needs to fill the bucket's depth, so this admits exactly what a
//! token bucket of that depth refilled at `rate` admits — with one word of
//! state, updated by one compare-and-swap per burst, shared lock-free by
//! all workers (like [`super::OutboundSa::reserve`]).
//!
//! A burst asks once ([`Policer::admit`]) with the lengths of its packets in
//! order; the answer is how many of the first packets conform. The rest (the
//! later packets of the burst) are the caller's to drop. Lengths are those of
//! the inner packets (what the session carries), not the ESP packets.
//!
//! # Depth
//!
//! The depth is `max(rate × 5 ms, 3000 bytes)`:
//! - 5 ms of traffic is what the far side may see back to back above the
//!   rate. It covers the jitter of a busy-polling worker (a burst of 32 is
//!   collected well within that) and TCP's ACK-clocked bursts, so a TCP
//!   flow is shaped by the policer to near its rate instead of collapsing
//!   on drops of every second burst; yet it is small against WAN buffers.
//! - at low rates (below 4.8 Mb/s) 5 ms is less than two full-size packets,
//!   which would starve TCP (a window of one segment); the floor of two
//!   1500-byte packets keeps at least two in flight.
//! - a single packet larger than the whole depth (a jumbo frame at a low
//!   rate) is admitted when the bucket is full, and the bucket goes into
//!   debt for it, so it is neither starved forever nor exempt from the rate.
//!
//! # Time
//!
//! The caller passes the time in nanoseconds ([`Clock::now_ns`]), read once
//! per burst and only when the burst has a rate-limited SA: one vDSO
//! `clock_gettime` per burst for [`MonotonicClock`], no system call and
//! nothing per packet. Tests inject a [`ManualClock`]. Internally time is
//! kept in ticks of 1/64 ns, so the cost of a 64-byte packet at 100 Gb/s
//! (5.12 ns) is exact to 0.1 %; the tick counter lasts 9 years from the
//! clock's epoch (the process start for [`MonotonicClock`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Ticks per nanosecond of the internal time base.
const TICKS_PER_NS: u64 = 64;
/// Fractional bits of the fixed-point ticks-per-byte cost.
const COST_FRAC_BITS: u32 = 16;
/// Ticks per byte at 1 bit/s, shifted by [`COST_FRAC_BITS`]: 8 bits × 10⁹ ns × 64.
const COST_AT_1BPS: u128 = (8 * 1_000_000_000 * TICKS_PER_NS as u128) << COST_FRAC_BITS;
/// How much traffic the bucket holds, in time at the rate.
pub const DEPTH_NS: u64 = 5_000_000;
/// The smallest depth in bytes: two full-size Ethernet-MTU packets.
pub const MIN_DEPTH_BYTES: u64 = 2 * 1500;

/// A source of monotonic time in nanoseconds since a fixed epoch.
pub trait Clock {
    /// Nanoseconds since the clock's epoch; never decreases.
    fn now_ns(&self) -> u64;
}

/// The process's monotonic clock (`CLOCK_MONOTONIC` through
/// [`Instant`]), in nanoseconds since its first use in the process.
#[derive(Debug, Default, Clone, Copy)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        let epoch = EPOCH.get_or_init(Instant::now);
        u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to (tests and simulations); may be
/// shared between threads.
#[derive(Debug, Default)]
pub struct ManualClock {
    ns: AtomicU64,
}

impl ManualClock {
    /// A clock reading `ns`.
    pub fn new(ns: u64) -> Self {
        ManualClock {
            ns: AtomicU64::new(ns),
        }
    }

    /// Sets the time to `ns`.
    pub fn set(&self, ns: u64) {
        self.ns.store(ns, Ordering::Relaxed);
    }

    /// Moves the time forward by `ns` and returns the new time.
    pub fn advance(&self, ns: u64) -> u64 {
        self.ns.fetch_add(ns, Ordering::Relaxed) + ns
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        self.ns.load(Ordering::Relaxed)
    }
}

/// A token bucket of [`Policer::depth_bytes`] refilled at
/// [`Policer::rate_bps`], shared by all workers (see the module
/// documentation). A rate of 0 means unlimited: everything is admitted.
#[derive(Debug)]
pub struct Policer {
    /// Theoretical arrival time, in ticks since the clock's epoch.
    tat: AtomicU64,
    /// Ticks per byte with [`COST_FRAC_BITS`] fractional bits; 0: unlimited.
    /// Stored last (Release) by [`Policer::set_rate`], loaded first (Acquire).
    cost_per_byte: AtomicU64,
    /// Burst tolerance τ in ticks.
    tau: AtomicU64,
    /// The configured rate in bits per second (0: unlimited).
    rate_bps: AtomicU64,
}

impl Default for Policer {
    fn default() -> Self {
        Policer::new(0)
    }
}

impl Policer {
    /// A policer of `rate_bps` bits per second (0: unlimited) whose bucket
    /// starts full.
    pub fn new(rate_bps: u64) -> Self {
        let (cost, tau) = params(rate_bps);
        Policer {
            tat: AtomicU64::new(0),
            cost_per_byte: AtomicU64::new(cost),
            tau: AtomicU64::new(tau),
            rate_bps: AtomicU64::new(rate_bps),
        }
    }

    /// The rate in bits per second (0: unlimited).
    #[inline]
    pub fn rate_bps(&self) -> u64 {
        self.rate_bps.load(Ordering::Relaxed)
    }

    /// True when a rate is set: [`Policer::admit`] needs the time.
    #[inline]
    pub fn is_limited(&self) -> bool {
        self.cost_per_byte.load(Ordering::Relaxed) != 0
    }

    /// The bucket depth in bytes for the current rate (0 when unlimited):
    /// `max(rate × 5 ms, 3000 bytes)`.
    pub fn depth_bytes(&self) -> u64 {
        depth_bytes(self.rate_bps())
    }

    /// Changes the rate (0: unlimited), keeping the bucket's state: a
    /// worker's next burst uses the new rate. Callable while workers admit;
    /// a burst that races the change may see the new depth with the old
    /// per-byte cost (never the reverse), which errs by at most one depth.
    pub fn set_rate(&self, rate_bps: u64) {
        if self.rate_bps.swap(rate_bps, Ordering::Relaxed) == rate_bps {
            return;
        }
        let (cost, tau) = params(rate_bps);
        self.tau.store(tau, Ordering::Relaxed);
        self.cost_per_byte.store(cost, Ordering::Release);
    }

    /// How many of the packets whose inner lengths `lens` gives, in order,
    /// may go at time `now_ns`: the longest conforming prefix, whose cost is
    /// taken from the bucket with one atomic update. Unlimited: all of them.
    ///
    /// `lens` may be walked more than once (when another worker updates the
    /// bucket at the same moment); it must yield the same lengths each time.
    pub fn admit<I>(&self, now_ns: u64, lens: I) -> usize
    where
        I: Iterator<Item = usize> + Clone,
    {
        let cost_per_byte = self.cost_per_byte.load(Ordering::Acquire);
        if cost_per_byte == 0 {
            return lens.count();
        }
        let tau = self.tau.load(Ordering::Relaxed);
        let now = now_ns.saturating_mul(TICKS_PER_NS);
        // The common case, the whole burst conforming, costs one sum.
        let (n, total) = lens.clone().fold((0usize, 0u64), |(n, b), len| {
            (n + 1, b.saturating_add(len as u64))
        });
        let total_cost = cost_of(total, cost_per_byte);
        let mut admitted = 0;
        // An error only means nothing conformed: the bucket is left alone.
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                let start = tat.max(now);
                let backlog = start - now;
                // A packet larger than the whole depth goes alone, when the bucket is full.
                let oversized_alone = |k: usize| k == 0 && backlog == 0;
                if backlog.saturating_add(total_cost) <= tau || (n == 1 && oversized_alone(0)) {
                    admitted = n;
                    return (n > 0).then(|| start.saturating_add(total_cost));
                }
                let (mut k, mut bytes, mut cost) = (0usize, 0u64, 0u64);
                for len in lens.clone() {
                    let b = bytes.saturating_add(len as u64);
                    let c = cost_of(b, cost_per_byte);
                    if backlog.saturating_add(c) > tau && !oversized_alone(k) {
                        break;
                    }
                    (k, bytes, cost) = (k + 1, b, c);
                }
                admitted = k;
                (k > 0).then(|| start.saturating_add(cost))
            });
        admitted
    }
}

/// Ticks that `bytes` bytes cost at `cost_per_byte` (fixed point), rounded
/// up (the policer errs below the rate, never above), saturating.
#[inline]
fn cost_of(bytes: u64, cost_per_byte: u64) -> u64 {
    let frac = (1u128 << COST_FRAC_BITS) - 1;
    let c = (u128::from(bytes) * u128::from(cost_per_byte) + frac) >> COST_FRAC_BITS;
    u64::try_from(c).unwrap_or(u64::MAX)
}

/// The bucket depth in bytes for `rate_bps` (0: unlimited, no bucket).
fn depth_bytes(rate_bps: u64) -> u64 {
    if rate_bps == 0 {
        return 0;
    }
    let by_time = u128::from(rate_bps) * u128::from(DEPTH_NS) / 8 / 1_000_000_000;
    u64::try_from(by_time)
        .unwrap_or(u64::MAX)
        .max(MIN_DEPTH_BYTES)
}

/// (fixed-point ticks per byte, τ in ticks) for `rate_bps`; (0, 0) for unlimited.
fn params(rate_bps: u64) -> (u64, u64) {
    if rate_bps == 0 {
        return (0, 0);
    }
    let r = u128::from(rate_bps);
    // Rounded up (never above the rate); at least 1, so any rate stays "limited".
    let cost = u64::try_from(COST_AT_1BPS.div_ceil(r))
        .unwrap_or(u64::MAX)
        .max(1);
    (cost, cost_of(depth_bytes(rate_bps), cost))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;

    /// Offers `len`-byte packets in bursts of `burst`, one burst every
    /// `interval` ns, for `duration` ns; returns the bytes admitted.
    fn offer(
        p: &Policer,
        clock: &ManualClock,
        len: usize,
        burst: usize,
        interval: u64,
        duration: u64,
    ) -> u64 {
        let start = clock.now_ns();
        let mut admitted = 0u64;
        while clock.now_ns() - start < duration {
            let k = p.admit(clock.now_ns(), std::iter::repeat_n(len, burst));
            admitted += (k * len) as u64;
            clock.advance(interval);
        }
        admitted
    }

    #[test]
    fn admits_the_configured_rate_within_one_percent() {
        for (rate, len) in [
            (10_000_000u64, 1400usize),
            (100_000_000, 64),
            (1_000_000_000, 1400),
            (40_000_000_000, 1400),
            (100_000_000_000, 64),
            (123_456_789, 777),
        ] {
            let p = Policer::new(rate);
            let clock = ManualClock::new(1_000 * SEC);
            // Offer twice the rate at an even interval, in bursts of up to 32
            // that fit the depth twice (a worker polls far more often than
            // every 5 ms: at low rates its bursts are short).
            let burst = (p.depth_bytes() as usize / 2 / len).clamp(1, 32);
            let burst_bits = (burst * len * 8) as u128;
            let interval = (burst_bits * u128::from(SEC) / u128::from(2 * rate)) as u64;
            let bytes_in =
                |ns: u64| (u128::from(rate) * u128::from(ns) / 8 / u128::from(SEC)) as u64;
            // From a full bucket, long enough to drain it: the rate for the time plus the depth.
            let warm = (20_000 * interval).max(2 * DEPTH_NS);
            let got = offer(&p, &clock, len, burst, interval, warm);
            let (want, depth) = (bytes_in(warm), p.depth_bytes());
            assert!(
                got <= want + depth,
                "rate {rate} len {len}: {got} > {want} + {depth}"
            );
            // Costs round up (at most 1/64 ns per burst): below the rate by < 0.01 %.
            let slack = (burst * len) as u64 + want / 10_000;
            assert!(
                got + slack >= want + depth,
                "rate {rate} len {len}: {got} < {want} + {depth}"
            );
            // Steady state (the bucket drained): the rate alone.
            let secs = 20_000 * interval;
            let want = bytes_in(secs);
            let got = offer(&p, &clock, len, burst, interval, secs);
            let err = (got as f64 - want as f64).abs() / want as f64;
            assert!(
                err < 0.01,
                "rate {rate} len {len}: admitted {got} B, want {want} B ({err:.4})"
            );
            assert!(
                got <= want + (burst * len) as u64,
                "rate {rate} len {len}: {got} > {want}"
            );
        }
    }

    #[test]
    fn a_full_bucket_admits_its_depth_at_once_and_then_refills_at_the_rate() {
        let rate = 80_000_000; // 10 MB/s: depth 50 000 B (5 ms)
        let p = Policer::new(rate);
        assert_eq!(p.depth_bytes(), 50_000);
        let clock = ManualClock::new(SEC);
        // 100 packets of 1000 B offered at one instant: exactly the depth goes.
        let mut got = 0;
        for _ in 0..4 {
            got += p.admit(clock.now_ns(), std::iter::repeat_n(1000, 32));
        }
        assert_eq!(got, 50);
        assert_eq!(p.admit(clock.now_ns(), std::iter::once(1)), 0);
        // 1 ms refills 10 000 B: ten packets, not eleven.
        clock.advance(MS);
        assert_eq!(p.admit(clock.now_ns(), std::iter::repeat_n(1000, 32)), 10);
        // An idle second refills only up to the depth.
        clock.advance(SEC);
        assert_eq!(p.admit(clock.now_ns(), std::iter::repeat_n(1000, 80)), 50);
    }

    #[test]
    fn the_later_packets_of_a_burst_are_the_ones_refused() {
        let p = Policer::new(8_000_000); // 1 MB/s: depth 5000 B
        let clock = ManualClock::new(SEC);
        // 3000 + 1500 fit, the third (1000) would exceed 5000, so the fourth (100) is not asked.
        let lens = [3000usize, 1500, 1000, 100];
        assert_eq!(p.admit(clock.now_ns(), lens.iter().copied()), 2);
        // 500 B of depth left: a 500-byte packet goes.
        assert_eq!(p.admit(clock.now_ns(), [500usize, 1].into_iter()), 1);
    }

    #[test]
    fn the_depth_has_a_floor_of_two_full_size_packets() {
        let p = Policer::new(64_000); // 5 ms is 40 B
        assert_eq!(p.depth_bytes(), MIN_DEPTH_BYTES);
        let clock = ManualClock::new(SEC);
        assert_eq!(p.admit(clock.now_ns(), std::iter::repeat_n(1500, 3)), 2);
        // The next 1500 B take 1500 × 8 / 64 000 s = 187.5 ms.
        clock.advance(187 * MS);
        assert_eq!(p.admit(clock.now_ns(), std::iter::once(1500)), 0);
        clock.advance(MS);
        assert_eq!(p.admit(clock.now_ns(), std::iter::once(1500)), 1);
    }

    #[test]
    fn a_packet_larger_than_the_depth_goes_alone_from_a_full_bucket_and_is_paid_for() {
        let p = Policer::new(800_000); // 100 kB/s, depth 3000 B
        let clock = ManualClock::new(SEC);
        assert_eq!(p.admit(clock.now_ns(), [9000usize, 64].into_iter()), 1);
        // 9000 B at 100 kB/s take 90 ms, 60 ms more than the 30 ms depth:
        // nothing goes for 60 ms.
        clock.advance(60 * MS);
        assert_eq!(p.admit(clock.now_ns(), std::iter::once(64)), 0);
        clock.advance(MS);
        assert_eq!(p.admit(clock.now_ns(), std::iter::once(64)), 1);
        // Another jumbo waits for a full bucket: 29.64 ms from here.
        assert_eq!(p.admit(clock.now_ns(), std::iter::once(9000)), 0);
        clock.advance(29 * MS);
        assert_eq!(p.admit(clock.now_ns(), std::iter::once(9000)), 0);
        clock.advance(MS);
        assert_eq!(p.admit(clock.now_ns(), std::iter::once(9000)), 1);
    }

    #[test]
    fn rate_zero_is_unlimited_and_needs_no_time() {
        let p = Policer::new(0);
        assert!(!p.is_limited());
        assert_eq!(p.depth_bytes(), 0);
        for _ in 0..1000 {
            assert_eq!(p.admit(0, std::iter::repeat_n(9000, 32)), 32);
        }
        assert_eq!(Policer::default().rate_bps(), 0);
    }

    #[test]
    fn a_rate_change_applies_to_the_next_burst() {
        let p = Policer::new(8_000_000); // 1 MB/s
        let clock = ManualClock::new(SEC);
        let got = offer(&p, &clock, 1000, 32, MS, SEC);
        assert!((995_000..=1_006_000).contains(&got), "{got}");
        p.set_rate(80_000_000); // 10 MB/s
        assert_eq!(p.rate_bps(), 80_000_000);
        let got = offer(&p, &clock, 1000, 32, MS, SEC);
        // The deeper bucket starts from where the old one was (empty).
        assert!((9_950_000..=10_050_000).contains(&got), "{got}");
        p.set_rate(0);
        assert!(!p.is_limited());
        assert_eq!(offer(&p, &clock, 1000, 32, MS, 10 * MS), 320_000);
        p.set_rate(8_000_000);
        assert!(p.is_limited());
        // Back to limited after an unlimited spell: the bucket is full.
        assert_eq!(p.admit(clock.now_ns(), std::iter::repeat_n(1000, 32)), 5);
    }

    #[test]
    fn concurrent_workers_never_exceed_rate_times_time_plus_depth() {
        let rate = 800_000_000; // 100 MB/s, depth 500 000 B
        let p = Arc::new(Policer::new(rate));
        let clock = Arc::new(ManualClock::new(SEC));
        let start = clock.now_ns();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (p, clock) = (Arc::clone(&p), Arc::clone(&clock));
                std::thread::spawn(move || {
                    let mut admitted = 0u64;
                    for i in 0..20_000usize {
                        // Each thread moves the shared clock on a little, like time passing.
                        let now = if i % 4 == t {
                            clock.advance(1_000)
                        } else {
                            clock.now_ns()
                        };
                        let lens = (0..32).map(move |k| 64 + (k * 37 + i) % 1400);
                        let k = p.admit(now, lens.clone());
                        admitted += lens.take(k).map(|l| l as u64).sum::<u64>();
                    }
                    admitted
                })
            })
            .collect();
        let admitted: u64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
        let elapsed = clock.now_ns() - start;
        let bound =
            (u128::from(rate) * u128::from(elapsed) / 8 / u128::from(SEC)) as u64 + p.depth_bytes();
        assert!(
            admitted <= bound,
            "admitted {admitted} B > bound {bound} B over {elapsed} ns"
        );
        // The offered load (~45 GB/s simulated) is far above the rate: the bucket was kept busy.
        assert!(
            admitted >= bound - bound / 50,
            "admitted {admitted} B, bound {bound} B"
        );
    }

    #[test]
    fn the_monotonic_clock_moves_forward() {
        let c = MonotonicClock;
        let a = c.now_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = c.now_ns();
        assert!(b >= a + 2 * MS, "{a} {b}");
    }
}
