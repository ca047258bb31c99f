//! Security associations: the per-direction state the data path needs.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{EspError, Policer};
use crate::crypto::SaKey;

/// An outbound SA: SPI, prepared key, and the sequence-number counter and
/// rate policer shared by every worker that sends on it.
#[derive(Debug)]
pub struct OutboundSa {
    /// The SPI the peer chose for this SA (never 0).
    pub spi: u32,
    /// The prepared key and salt.
    pub key: SaKey,
    /// Extended (64-bit) sequence numbers (RFC 4303 §2.2.1); false: 32-bit.
    pub esn: bool,
    /// The last sequence number handed out (0: none yet; the first is 1).
    last: AtomicU64,
    /// Inner bytes sealed so far (for byte-count rekeying).
    bytes: AtomicU64,
    /// Hard packet lifetime: no sequence number above it is handed out.
    hard_packets: u64,
    /// The session's rate limit (unlimited unless set).
    policer: Policer,
}

impl OutboundSa {
    /// A new SA whose first sequence number is 1.
    pub fn new(spi: u32, key: SaKey, esn: bool) -> Self {
        Self::with_next_seq(spi, key, esn, 1)
    }

    /// An SA whose next sequence number is `next` (>= 1). For tests of
    /// exhaustion, and to resume an SA; the gateway itself uses [`OutboundSa::new`].
    #[doc(hidden)]
    pub fn with_next_seq(spi: u32, key: SaKey, esn: bool, next: u64) -> Self {
        OutboundSa {
            spi,
            key,
            esn,
            last: AtomicU64::new(next.saturating_sub(1)),
            bytes: AtomicU64::new(0),
            hard_packets: u64::MAX,
            policer: Policer::default(),
        }
    }

    /// Sets the hard packet lifetime: after `packets` packets the SA seals
    /// nothing more ([`EspError::SeqExhausted`]) until it is replaced.
    /// 0 means no limit beyond the sequence space.
    pub fn with_hard_packets(mut self, packets: u64) -> Self {
        self.hard_packets = if packets == 0 { u64::MAX } else { packets };
        self
    }

    /// Sets the rate limit in bits per second of inner packets (0: unlimited);
    /// see [`Policer`].
    pub fn with_rate(self, rate_bps: u64) -> Self {
        self.policer.set_rate(rate_bps);
        self
    }

    /// Changes the rate limit of an SA in use (0: unlimited), keeping its
    /// sequence numbers and its bucket: a table rebuild that reuses the SA
    /// applies a changed rate this way.
    pub fn set_rate(&self, rate_bps: u64) {
        self.policer.set_rate(rate_bps);
    }

    /// The rate limit in bits per second (0: unlimited).
    pub fn rate_bps(&self) -> u64 {
        self.policer.rate_bps()
    }

    /// The SA's policer, asked once per burst before [`OutboundSa::reserve`].
    #[inline]
    pub fn policer(&self) -> &Policer {
        &self.policer
    }

    /// The highest sequence number this SA may use: 2^32 − 1 without ESN;
    /// with ESN 2^64 − 2, so the end of a reserved range still fits a `u64`
    /// (RFC 4303 §3.3.3 forbids cycling; an SA is rekeyed long before either).
    pub fn max_seq(&self) -> u64 {
        if self.esn {
            u64::MAX - 1
        } else {
            u64::from(u32::MAX)
        }
    }

    /// Reserves `n` consecutive sequence numbers with one atomic update (one per
    /// burst, shared by all workers): never hands out a number twice, leaves no
    /// gap between callers. Errors, reserving nothing, when the SA's sequence
    /// space cannot hold `n` more numbers: the SA must then be rekeyed.
    pub fn reserve(&self, n: u64) -> Result<Range<u64>, EspError> {
        let max = self.max_seq().min(self.hard_packets);
        let prev = self
            .last
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                last.checked_add(n).filter(|&end| end <= max)
            })
            .map_err(|_| EspError::SeqExhausted)?;
        Ok(prev + 1..prev + 1 + n)
    }

    /// Counts `n` inner bytes sealed (once per burst, with the reservation).
    #[inline]
    pub fn account_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Packets sealed (sequence numbers handed out) and inner bytes counted.
    pub fn usage(&self) -> (u64, u64) {
        (
            self.last.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// The next sequence number [`OutboundSa::reserve`] would hand out (for stats).
    pub fn next_seq(&self) -> u64 {
        self.last.load(Ordering::Relaxed).saturating_add(1)
    }
}

/// An inbound SA: what a worker needs to open packets carrying `spi`. Its
/// anti-replay window ([`super::ReplayWindow`]) is owned by the worker that
/// receives the SA's packets.
#[derive(Debug)]
pub struct InboundSa {
    /// The SPI we chose for this SA (never 0).
    pub spi: u32,
    /// The prepared key and salt.
    pub key: SaKey,
    /// Extended (64-bit) sequence numbers; false: 32-bit.
    pub esn: bool,
    /// Check the anti-replay window (the default). Off only for a manually
    /// keyed SA with `anti_replay = false` (RFC 4303 §3.4.3), for
    /// benchmarks that replay a captured packet; never with ESN.
    pub anti_replay: bool,
}

impl InboundSa {
    /// An inbound SA, replay-checked.
    pub fn new(spi: u32, key: SaKey, esn: bool) -> Self {
        InboundSa {
            spi,
            key,
            esn,
            anti_replay: true,
        }
    }

    /// This SA with the anti-replay check on (`true`) or off.
    pub fn with_anti_replay(self, on: bool) -> Self {
        debug_assert!(
            on || !self.esn,
            "anti-replay off needs 32-bit sequence numbers"
        );
        InboundSa {
            anti_replay: on,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Algorithm, EngineKind};
    use std::sync::Arc;

    fn key() -> SaKey {
        SaKey::new(EngineKind::Ring, Algorithm::Aes128Gcm, &[1; 16], [2; 4]).unwrap()
    }

    #[test]
    fn starts_at_one_and_hands_out_consecutive_ranges() {
        let sa = OutboundSa::new(0x100, key(), true);
        assert_eq!(sa.next_seq(), 1);
        assert_eq!(sa.reserve(32).unwrap(), 1..33);
        assert_eq!(sa.reserve(0).unwrap(), 33..33);
        assert_eq!(sa.reserve(1).unwrap(), 33..34);
        assert_eq!(sa.next_seq(), 34);
    }

    #[test]
    fn concurrent_reservations_are_disjoint_and_cover_everything() {
        let sa = Arc::new(OutboundSa::new(0x100, key(), true));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sa = Arc::clone(&sa);
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    for i in 0..5000u64 {
                        got.push(sa.reserve(1 + (i + t) % 32).unwrap());
                    }
                    got
                })
            })
            .collect();
        let mut ranges: Vec<Range<u64>> = threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let asked: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        ranges.sort_by_key(|r| r.start);
        let mut expect = 1;
        for r in &ranges {
            assert_eq!(r.start, expect, "gap or overlap at {r:?}");
            expect = r.end;
        }
        assert_eq!(expect - 1, asked);
        assert_eq!(sa.next_seq(), expect);
    }

    #[test]
    fn a_rate_change_keeps_the_sequence_numbers() {
        let sa = OutboundSa::new(0x100, key(), true);
        assert_eq!(sa.rate_bps(), 0);
        assert!(!sa.policer().is_limited());
        let sa = sa.with_rate(1_000_000);
        assert_eq!(sa.rate_bps(), 1_000_000);
        assert!(sa.policer().is_limited());
        assert_eq!(sa.reserve(5).unwrap(), 1..6);
        sa.set_rate(2_000_000);
        assert_eq!(sa.rate_bps(), 2_000_000);
        assert_eq!(sa.reserve(1).unwrap(), 6..7);
        sa.set_rate(0);
        assert!(!sa.policer().is_limited());
        assert_eq!(sa.next_seq(), 7);
    }

    #[test]
    fn exhaustion_without_esn_is_at_2_pow_32() {
        let sa = OutboundSa::with_next_seq(0x100, key(), false, u64::from(u32::MAX) - 9);
        assert_eq!(
            sa.reserve(8).unwrap(),
            u64::from(u32::MAX) - 9..u64::from(u32::MAX) - 1
        );
        assert_eq!(sa.reserve(3), Err(EspError::SeqExhausted));
        // A failed reservation takes nothing: the last two numbers are still there.
        assert_eq!(
            sa.reserve(2).unwrap(),
            u64::from(u32::MAX) - 1..u64::from(u32::MAX) + 1
        );
        assert_eq!(sa.reserve(1), Err(EspError::SeqExhausted));
    }

    #[test]
    fn exhaustion_with_esn_never_wraps() {
        let sa = OutboundSa::with_next_seq(0x100, key(), true, u64::MAX - 10);
        assert_eq!(sa.reserve(9).unwrap(), u64::MAX - 10..u64::MAX - 1);
        assert_eq!(sa.reserve(2), Err(EspError::SeqExhausted));
        assert_eq!(sa.reserve(u64::MAX), Err(EspError::SeqExhausted));
        assert_eq!(sa.next_seq(), u64::MAX - 1);
    }

    #[test]
    fn exhaustion_under_contention_hands_out_exactly_the_rest() {
        let start = u64::from(u32::MAX) - 10_000;
        let sa = Arc::new(OutboundSa::with_next_seq(0x100, key(), false, start));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let sa = Arc::clone(&sa);
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while let Ok(r) = sa.reserve(1) {
                        n += r.end - r.start;
                    }
                    n
                })
            })
            .collect();
        let total: u64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, u64::from(u32::MAX) - start + 1);
    }
}
