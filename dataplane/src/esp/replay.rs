//! Anti-replay: an RFC 6479 window and RFC 4303 Appendix A2 ESN inference.
//!
//! The window is a ring of 64-bit words indexed by the sequence number itself,
//! so it never shifts: advancing clears only the words the top moves across.
//! One word is always the one being recycled, so of the `WORDS * 64` bits,
//! `(WORDS - 1) * 64` are a usable window ([`ReplayWindow::SIZE`] = 1984).
//! A window belongs to the single worker that receives its SA's packets (RSS
//! keeps an SA's one outer 5-tuple on one queue), so it needs no atomics.

use super::EspError;

/// Words in the bitmap ring (a power of two).
const WORDS: usize = 32;
/// Bits in the ring.
const BITS: u64 = (WORDS * 64) as u64;

/// The anti-replay state of one inbound SA.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// Highest sequence number accepted so far (0: none).
    top: u64,
    /// Bit `seq % BITS` is set once `seq` has been accepted.
    ring: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// Packets the window covers: sequence numbers down to `top - SIZE + 1` are
    /// checked for duplicates; older ones are refused as too old.
    pub const SIZE: u64 = BITS - 64;

    /// An empty window (nothing received; the next accepted number may be any >= 1).
    pub const fn new() -> Self {
        ReplayWindow {
            top: 0,
            ring: [0; WORDS],
        }
    }

    /// The highest sequence number accepted so far (0 if none).
    pub fn top(&self) -> u64 {
        self.top
    }

    /// The full 64-bit sequence number for a received low half.
    ///
    /// With `esn`, the high half is inferred from the window as in RFC 4303
    /// Appendix A2.2: a low half at or above the window's bottom belongs to the
    /// window's subspace, one below it to the next (the counter wrapped ahead);
    /// when the window straddles a 2^32 boundary, a low half in the upper part
    /// belongs to the previous subspace. The ICV (computed over the high half
    /// too) is what finally proves the guess. Without `esn` the high half is 0.
    pub fn infer(&self, seq_low: u32, esn: bool) -> u64 {
        if !esn {
            return u64::from(seq_low);
        }
        const W: u32 = ReplayWindow::SIZE as u32;
        let tl = self.top as u32;
        let th = (self.top >> 32) as u32;
        let bottom = tl.wrapping_sub(W - 1);
        let high = if tl >= W - 1 {
            // Case A: the window lies within one 2^32 subspace.
            if seq_low >= bottom {
                th
            } else {
                th.wrapping_add(1)
            }
        } else if seq_low >= bottom {
            // Case B: the window straddles a subspace boundary; this is in its older half.
            th.saturating_sub(1)
        } else {
            th
        };
        (u64::from(high) << 32) | u64::from(seq_low)
    }

    /// Before decrypting: `Err(Replay)` if `seq` was already accepted,
    /// `Err(TooOld)` if it is left of the window (or 0, which is never sent).
    #[inline]
    pub fn check(&self, seq: u64) -> Result<(), EspError> {
        if seq > self.top {
            return Ok(());
        }
        if seq == 0 || self.top - seq >= Self::SIZE {
            return Err(EspError::TooOld);
        }
        let (word, bit) = Self::position(seq);
        if self.ring[word] & bit != 0 {
            Err(EspError::Replay)
        } else {
            Ok(())
        }
    }

    /// After the ICV verified: records `seq`, advancing the window if it is
    /// beyond the top. Checks again (two copies of one packet may be in the same
    /// burst, both passing [`ReplayWindow::check`] before either is recorded) and
    /// records nothing on error.
    #[inline]
    pub fn accept(&mut self, seq: u64) -> Result<(), EspError> {
        self.check(seq)?;
        if seq > self.top {
            self.advance(seq);
        }
        let (word, bit) = Self::position(seq);
        self.ring[word] |= bit;
        Ok(())
    }

    /// Moves the top to `seq`, clearing the words the window moves across.
    fn advance(&mut self, seq: u64) {
        let old_word = self.top / 64;
        let new_word = seq / 64;
        let crossed = new_word - old_word;
        if crossed >= WORDS as u64 {
            self.ring = [0; WORDS];
        } else {
            for w in old_word + 1..=new_word {
                self.ring[(w % WORDS as u64) as usize] = 0;
            }
        }
        self.top = seq;
    }

    #[inline]
    fn position(seq: u64) -> (usize, u64) {
        let idx = seq % BITS;
        ((idx / 64) as usize, 1u64 << (idx % 64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = ReplayWindow::SIZE;

    fn accept_all(w: &mut ReplayWindow, seqs: impl IntoIterator<Item = u64>) {
        for s in seqs {
            assert_eq!(w.check(s), Ok(()), "check {s}");
            assert_eq!(w.accept(s), Ok(()), "accept {s}");
        }
    }

    #[test]
    fn window_is_at_least_1024() {
        assert_eq!(W, 1984);
    }

    #[test]
    fn in_order_then_every_duplicate_is_a_replay() {
        let mut w = ReplayWindow::new();
        accept_all(&mut w, 1..=5000);
        assert_eq!(w.top(), 5000);
        for s in 5000 - W + 1..=5000 {
            assert_eq!(w.check(s), Err(EspError::Replay), "{s}");
        }
        assert_eq!(w.check(5000 - W), Err(EspError::TooOld));
        assert_eq!(w.check(1), Err(EspError::TooOld));
        assert_eq!(w.check(0), Err(EspError::TooOld));
        assert_eq!(w.check(5001), Ok(()));
    }

    #[test]
    fn reordered_inside_the_window_is_accepted_once() {
        let mut w = ReplayWindow::new();
        accept_all(&mut w, [100, 98, 99, 50, 97]);
        assert_eq!(w.top(), 100);
        for s in [50, 97, 98, 99, 100] {
            assert_eq!(w.check(s), Err(EspError::Replay));
            assert_eq!(w.accept(s), Err(EspError::Replay));
        }
        for s in (1..100).filter(|s| ![50, 97, 98, 99].contains(s)) {
            assert_eq!(w.check(s), Ok(()), "{s}");
        }
        // The oldest number still inside the window, then one just outside it.
        let mut w = ReplayWindow::new();
        accept_all(&mut w, [W + 10]);
        assert_eq!(w.check(11), Ok(()));
        assert_eq!(w.accept(11), Ok(()));
        assert_eq!(w.check(10), Err(EspError::TooOld));
        assert_eq!(w.accept(10), Err(EspError::TooOld));
    }

    #[test]
    fn duplicate_in_one_burst_is_caught_at_accept() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(7), Ok(()));
        assert_eq!(w.check(7), Ok(()));
        assert_eq!(w.accept(7), Ok(()));
        assert_eq!(w.accept(7), Err(EspError::Replay));
    }

    #[test]
    fn a_large_jump_clears_the_old_bits() {
        let mut w = ReplayWindow::new();
        accept_all(&mut w, 1..=3000);
        // Jump by less than the ring: recycled words must be clear.
        accept_all(&mut w, [3000 + 1500]);
        for s in 3001..4500 {
            assert_eq!(w.check(s), Ok(()), "{s}");
        }
        for s in 4500 - W + 1..=3000 {
            assert_eq!(w.check(s), Err(EspError::Replay), "{s}");
        }
        // Jump by far more than the ring.
        accept_all(&mut w, [1_000_000]);
        for s in 1_000_000 - W + 1..1_000_000 {
            assert_eq!(w.check(s), Ok(()), "{s}");
        }
        assert_eq!(w.check(1_000_000 - W), Err(EspError::TooOld));
        assert_eq!(w.check(4500), Err(EspError::TooOld));
        // Every single-step and word-boundary advance keeps exactly the accepted set.
        let mut w = ReplayWindow::new();
        let mut s = 1;
        let mut accepted = Vec::new();
        for step in [1u64, 63, 64, 65, 127, 128, 1983, 1984, 2047, 2048, 2049, 5] {
            s += step;
            accept_all(&mut w, [s]);
            accepted.push(s);
            for a in &accepted {
                let expect = if s - a >= W {
                    Err(EspError::TooOld)
                } else {
                    Err(EspError::Replay)
                };
                assert_eq!(w.check(*a), expect, "after {s}: {a}");
            }
            for gap in s.saturating_sub(W - 1).max(1)..s {
                if !accepted.contains(&gap) {
                    assert_eq!(w.check(gap), Ok(()), "after {s}: gap {gap}");
                }
            }
        }
    }

    #[test]
    fn infers_the_high_half_without_esn_as_zero() {
        let mut w = ReplayWindow::new();
        accept_all(&mut w, [0xffff_fff0]);
        assert_eq!(w.infer(5, false), 5);
        assert_eq!(w.infer(0xffff_fff1, false), 0xffff_fff1);
    }

    #[test]
    fn esn_inference_across_the_2_pow_32_wrap() {
        let wrap = 1u64 << 32;
        let mut w = ReplayWindow::new();
        // From the start: small numbers are in subspace 0, large ones too (no subspace -1).
        assert_eq!(w.infer(1, true), 1);
        assert_eq!(w.infer(0xffff_fff0, true), 0xffff_fff0);

        // Top just below the wrap (case A): low halves below the window bottom are the next subspace.
        accept_all(&mut w, [wrap - 10]);
        assert_eq!(w.infer(0xffff_fff0, true), wrap - 16);
        assert_eq!(w.infer(0xffff_fffa, true), wrap - 6);
        assert_eq!(w.infer(0, true), wrap);
        assert_eq!(w.infer(5, true), wrap + 5);
        assert_eq!(w.infer((wrap - 10 - W + 1) as u32, true), wrap - 10 - W + 1);

        // Low half wraps while the high half increments.
        let seqs: Vec<u64> = (wrap - 5..wrap + 5).collect();
        for s in &seqs {
            let inferred = w.infer(*s as u32, true);
            assert_eq!(inferred, *s);
            assert_eq!(w.accept(inferred), Ok(()));
        }
        assert_eq!(w.top(), wrap + 4);

        // Top just above the wrap (case B): late packets from before the wrap
        // map back to subspace 0 and are checked against the same window.
        assert_eq!(w.infer(0xffff_fffe, true), wrap - 2);
        assert_eq!(w.check(w.infer(0xffff_fffe, true)), Err(EspError::Replay));
        assert_eq!(w.infer(0xffff_fff0, true), wrap - 16);
        assert_eq!(w.check(w.infer(0xffff_fff0, true)), Ok(()));
        assert_eq!(w.infer(3, true), wrap + 3);
        assert_eq!(w.check(wrap + 3), Err(EspError::Replay));
        assert_eq!(w.infer(100, true), wrap + 100);
        // Below the window bottom on the old side: RFC 4303 A2.2 takes it as the
        // current subspace (far ahead); only the ICV can tell, and it will fail.
        let far = (wrap + 4 - W - 100) as u32;
        assert_eq!(w.infer(far, true), wrap + u64::from(far));
        assert_eq!(w.check(wrap + u64::from(far)), Ok(()));
    }

    #[test]
    fn esn_inference_deep_in_a_high_subspace() {
        let mut w = ReplayWindow::new();
        let top = (7u64 << 32) | 0x8000_0000;
        accept_all(&mut w, [top]);
        assert_eq!(w.infer(0x8000_0001, true), top + 1);
        assert_eq!(w.infer(0x7fff_ffff, true), top - 1);
        assert_eq!(w.infer((top - W + 1) as u32, true), top - W + 1);
        // Below the window: taken as the next subspace (the sender wrapped), as RFC 4303 A2.2 says.
        assert_eq!(
            w.infer((top - W) as u32, true),
            (8u64 << 32) | ((top - W) & 0xffff_ffff)
        );
    }
}
