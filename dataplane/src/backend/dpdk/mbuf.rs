//! [`Mbuf`]: an owned DPDK packet buffer, the DPDK backend's [`PacketBuf`].
//!
//! This backend works with single-segment mbufs only: ports are configured
//! without scattered RX and with a data room that fits a whole frame, and
//! [`super::DpdkQueue::rx_burst`] linearises (or, if that fails, drops) any
//! chained mbuf a PMD still hands over. The [`PacketBuf`] methods therefore
//! act on the first (only) segment and keep `pkt_len == data_len`.

use std::ptr::NonNull;

use scistream_sys::dpdk as sys;

use crate::backend::PacketBuf;

/// An owned `rte_mbuf` (reference count 1). Dropping it frees the mbuf back
/// to its mempool (`rte_pktmbuf_free`).
///
/// `repr(transparent)` over a non-null pointer, so a `[Mbuf]` is a
/// `[*mut rte_mbuf]` that `rte_eth_rx_burst`/`rte_eth_tx_burst` use in place.
#[repr(transparent)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an Mbuf is the only owner of its mbuf; mbufs are not tied to a
// thread, and freeing one back to its mempool is safe from any thread.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `m` must point to a valid, single-segment mbuf whose only reference
    /// the caller hands over (refcnt 1, not referenced anywhere else), and
    /// whose mempool outlives the returned `Mbuf`.
    pub unsafe fn from_raw(m: NonNull<sys::rte_mbuf>) -> Mbuf {
        Mbuf(m)
    }

    /// Gives up ownership, returning the raw mbuf; the caller must free it.
    pub fn into_raw(self) -> NonNull<sys::rte_mbuf> {
        let m = self.0;
        std::mem::forget(self);
        m
    }

    /// The raw mbuf, still owned by `self`.
    pub fn as_ptr(&self) -> *mut sys::rte_mbuf {
        self.0.as_ptr()
    }

    /// Total packet length over all segments (`pkt_len`); equal to
    /// [`PacketBuf::len`] for the single-segment mbufs of this backend.
    pub fn pkt_len(&self) -> u32 {
        self.header().pkt_len
    }

    /// Number of segments (1 for every mbuf this backend hands out).
    pub fn segments(&self) -> u16 {
        self.header().nb_segs
    }

    fn header(&self) -> &sys::rte_mbuf {
        // SAFETY: self owns a valid mbuf for as long as it lives.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: self owns the mbuf (and every segment chained to it).
        unsafe { sys::rte_pktmbuf_free(self.0.as_ptr()) };
    }
}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbuf")
            .field("ptr", &self.0)
            .field("len", &self.len())
            .field("headroom", &self.headroom())
            .field("tailroom", &self.tailroom())
            .finish()
    }
}

/// Converts a length to the mbuf's 16-bit length type; None if it cannot fit.
fn len16(n: usize) -> Option<u16> {
    u16::try_from(n).ok()
}

// The accessors below do DPDK's single-segment mbuf arithmetic (what the
// static inline rte_pktmbuf_mtod/headroom/prepend/adj/append/trim do) on the
// bindgen fields directly: the generated wrappers for static inline
// functions are real calls that cannot be inlined across the FFI boundary,
// and these run several times per packet. This backend keeps every mbuf a
// single segment with pkt_len == data_len (see the module docs).
impl Mbuf {
    /// The header, writable.
    fn header_mut(&mut self) -> &mut sys::rte_mbuf {
        // SAFETY: self owns a valid mbuf; &mut self makes this the only reference.
        unsafe { self.0.as_mut() }
    }

    /// Start of the packet data: buf_addr + data_off.
    #[inline]
    fn data_ptr(&self) -> *mut u8 {
        let h = self.header();
        // SAFETY: data_off <= buf_len, so the result stays inside the buffer.
        unsafe { h.buf_addr.cast::<u8>().add(usize::from(h.data_off)) }
    }
}

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let len = usize::from(self.header().data_len);
        // SAFETY: the first segment's data_len bytes from buf_addr + data_off
        // lie inside the mbuf's buffer, which self owns and which is not
        // written while this shared borrow lives.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), len) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.header().data_len);
        // SAFETY: as in data(); the exclusive borrow of self makes this the
        // only live reference to those bytes (refcnt 1, nobody else holds it).
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), len) }
    }

    #[inline]
    fn headroom(&self) -> usize {
        usize::from(self.header().data_off)
    }

    #[inline]
    fn tailroom(&self) -> usize {
        let h = self.header();
        usize::from(h.buf_len) - usize::from(h.data_off) - usize::from(h.data_len)
    }

    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        let Some(n) = len16(n) else { return false };
        let h = self.header_mut();
        if n > h.data_off {
            return false;
        }
        h.data_off -= n;
        h.data_len += n;
        h.pkt_len += u32::from(n);
        true
    }

    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        let Some(n) = len16(n) else { return false };
        let h = self.header_mut();
        if n > h.data_len {
            return false;
        }
        h.data_off += n;
        h.data_len -= n;
        h.pkt_len -= u32::from(n);
        true
    }

    #[inline]
    fn append(&mut self, n: usize) -> bool {
        if n > self.tailroom() {
            return false;
        }
        let Some(n) = len16(n) else { return false };
        let h = self.header_mut();
        h.data_len += n;
        h.pkt_len += u32::from(n);
        true
    }

    #[inline]
    fn trim(&mut self, n: usize) -> bool {
        let Some(n) = len16(n) else { return false };
        let h = self.header_mut();
        if n > h.data_len {
            return false;
        }
        h.data_len -= n;
        h.pkt_len -= u32::from(n);
        true
    }

    fn len(&self) -> usize {
        usize::from(self.header().data_len)
    }
}
