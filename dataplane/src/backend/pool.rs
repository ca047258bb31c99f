//! Packet buffers for the native (non-DPDK) backends: heap buffers recycled
//! through a per-thread free list, so the steady state allocates nothing,
//! or AF_XDP UMEM frames lent in place by the socket that received them.

use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

use super::PacketBuf;

/// Bytes reserved before the packet for headers added later (ESP in UDP in IPv4 in Ethernet).
pub const HEADROOM: usize = 128;
/// Largest frame a buffer holds: a 9000-byte jumbo IP packet, Ethernet header and VLAN tag.
pub const MAX_FRAME: usize = 9216 + 18;
/// Bytes reserved after the largest frame (ESP trailer and ICV).
pub const TAILROOM: usize = 64;
/// Total size of one heap buffer.
pub const CAPACITY: usize = HEADROOM + MAX_FRAME + TAILROOM;
/// Buffers kept on a thread's free list at most; more are released to the allocator.
const FREE_LIST_MAX: usize = 4096;

thread_local! {
    static FREE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// Where a buffer's storage comes from, and where it goes on drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A boxed `[u8; CAPACITY]`, back to the dropping thread's free list.
    Heap,
    /// Frame `frame` of UMEM `umem`, back to its owner thread's frame pool.
    Umem { umem: u64, frame: u64 },
}

/// A packet in a heap buffer of [`CAPACITY`] bytes, or in an AF_XDP UMEM
/// frame. Dropping it returns the storage where it came from.
pub struct PoolBuf {
    /// Start of the storage, `cap` bytes, owned by this buffer alone.
    base: NonNull<u8>,
    cap: usize,
    start: usize,
    end: usize,
    origin: Origin,
}

// SAFETY: a PoolBuf owns its storage exclusively (a heap box, or a UMEM frame
// lent to it alone and kept mapped while lent); dropped on another thread, a
// heap box goes to that thread's free list and a UMEM frame is leaked, never
// handed back to a pool it does not belong to (afxdp::frames).
unsafe impl Send for PoolBuf {}

impl PoolBuf {
    /// An empty packet with [`HEADROOM`] bytes of headroom, in a heap buffer.
    pub fn new() -> Self {
        let storage = FREE
            .try_with(|f| f.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_else(|| vec![0u8; CAPACITY].into_boxed_slice());
        debug_assert_eq!(storage.len(), CAPACITY);
        let base = NonNull::from(Box::leak(storage)).cast::<u8>();
        PoolBuf {
            base,
            cap: CAPACITY,
            start: HEADROOM,
            end: HEADROOM,
            origin: Origin::Heap,
        }
    }

    /// A packet holding a copy of `frame`, or None if it is longer than [`MAX_FRAME`] + [`TAILROOM`].
    pub fn from_slice(frame: &[u8]) -> Option<Self> {
        let mut b = Self::new();
        if !b.append(frame.len()) {
            return None;
        }
        b.data_mut().copy_from_slice(frame);
        Some(b)
    }

    /// A packet in UMEM frame `frame` of UMEM `umem`, at `frame_ptr`
    /// (`cap` bytes), holding bytes `start..end` of it.
    ///
    /// # Safety
    /// `frame_ptr` must point to `cap` bytes that nothing else reads or
    /// writes until this buffer is dropped or sent by descriptor, that stay
    /// mapped until then, and `start <= end <= cap`.
    pub(crate) unsafe fn lend_umem_frame(
        frame_ptr: NonNull<u8>,
        cap: usize,
        umem: u64,
        frame: u64,
        start: usize,
        end: usize,
    ) -> Self {
        debug_assert!(start <= end && end <= cap);
        PoolBuf {
            base: frame_ptr,
            cap,
            start,
            end,
            origin: Origin::Umem { umem, frame },
        }
    }

    /// True if the packet sits in an AF_XDP UMEM frame lent in place by the
    /// socket that received it (no copy was made).
    pub fn in_umem(&self) -> bool {
        matches!(self.origin, Origin::Umem { .. })
    }

    /// The UMEM this buffer's frame belongs to, if it is a lent UMEM frame.
    pub(crate) fn umem(&self) -> Option<u64> {
        match self.origin {
            Origin::Umem { umem, .. } => Some(umem),
            Origin::Heap => None,
        }
    }

    /// Gives a frame lent by UMEM `umem` up to a TX descriptor on it: the
    /// UMEM address of the packet's first byte and the packet length. The
    /// frame is the kernel's now (it comes back on a completion ring); any
    /// other buffer is returned unchanged.
    pub(crate) fn into_umem_desc(self, umem: u64) -> Result<(u64, u32), Self> {
        match self.origin {
            Origin::Umem { umem: u, frame } if u == umem => {
                let b = ManuallyDrop::new(self);
                Ok((frame + b.start as u64, (b.end - b.start) as u32))
            }
            _ => Err(self),
        }
    }

    /// Fills this thread's free list with `n` buffers, so the first bursts allocate nothing.
    pub fn warm_thread_pool(n: usize) {
        FREE.with(|f| {
            let mut f = f.borrow_mut();
            while f.len() < n.min(FREE_LIST_MAX) {
                f.push(vec![0u8; CAPACITY].into_boxed_slice());
            }
        });
    }

    /// The whole storage and the packet's range in it, for backends that
    /// receive straight into the buffer: write into `storage[HEADROOM..]`,
    /// then call [`PoolBuf::set_range`].
    pub fn storage_mut(&mut self) -> &mut [u8] {
        // SAFETY: `base` points to `cap` bytes owned by this buffer alone
        // (struct invariant), borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.cap) }
    }

    /// Sets the packet to `storage[start..end]`. Returns false if out of bounds.
    pub fn set_range(&mut self, start: usize, end: usize) -> bool {
        if start > end || end > self.cap {
            return false;
        }
        self.start = start;
        self.end = end;
        true
    }
}

impl Default for PoolBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        match self.origin {
            Origin::Heap => {
                let raw = std::ptr::slice_from_raw_parts_mut(self.base.as_ptr(), self.cap);
                // SAFETY: a heap buffer's base and cap came from Box::leak of
                // a boxed slice of exactly `cap` bytes in `new`, reclaimed once.
                let storage = unsafe { Box::from_raw(raw) };
                // try_with: during thread teardown the free list may be gone; then just free.
                let _ = FREE.try_with(|f| {
                    let mut f = f.borrow_mut();
                    if f.len() < FREE_LIST_MAX {
                        f.push(storage);
                    }
                });
            }
            Origin::Umem { umem, frame } => super::afxdp::release_frame(umem, frame),
        }
    }
}

impl PacketBuf for PoolBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        // SAFETY: start <= end <= cap (every setter checks), and `base` points
        // to `cap` bytes owned by this buffer (struct invariant).
        unsafe {
            std::slice::from_raw_parts(self.base.as_ptr().add(self.start), self.end - self.start)
        }
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, borrowed mutably through `self`.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.base.as_ptr().add(self.start),
                self.end - self.start,
            )
        }
    }
    fn headroom(&self) -> usize {
        self.start
    }
    fn tailroom(&self) -> usize {
        self.cap - self.end
    }
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }
    fn adj(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.start += n;
        true
    }
    fn append(&mut self, n: usize) -> bool {
        if n > self.cap - self.end {
            return false;
        }
        self.end += n;
        true
    }
    fn trim(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.end -= n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_shrinks_within_bounds() {
        let mut b = PoolBuf::from_slice(&[1, 2, 3, 4]).unwrap();
        assert_eq!(b.data(), &[1, 2, 3, 4]);
        assert!(b.prepend(2));
        b.data_mut()[..2].copy_from_slice(&[9, 9]);
        assert_eq!(b.data(), &[9, 9, 1, 2, 3, 4]);
        assert!(b.adj(3));
        assert!(b.trim(1));
        assert_eq!(b.data(), &[2, 3]);
        assert!(!b.trim(3));
        assert!(!b.adj(3));
        assert!(!b.prepend(HEADROOM + 10));
        assert_eq!(b.data(), &[2, 3]);
        assert!(b.set_len(5));
        assert_eq!(b.len(), 5);
    }

    #[test]
    fn rejects_frames_larger_than_a_buffer() {
        assert!(PoolBuf::from_slice(&vec![0u8; MAX_FRAME + TAILROOM + 1]).is_none());
        assert!(PoolBuf::from_slice(&vec![0u8; MAX_FRAME]).is_some());
    }

    #[test]
    fn storage_is_recycled_on_the_same_thread() {
        let a = PoolBuf::new();
        let p = a.base;
        drop(a);
        let b = PoolBuf::new();
        assert_eq!(b.base, p);
    }
}
