//! Heap packet buffers for the native (non-DPDK) backends, recycled through a
//! per-thread free list so the steady state allocates nothing.

use std::cell::RefCell;

use super::PacketBuf;

/// Bytes reserved before the packet for headers added later (ESP in UDP in IPv4 in Ethernet).
pub const HEADROOM: usize = 128;
/// Largest frame a buffer holds: a 9000-byte jumbo IP packet, Ethernet header and VLAN tag.
pub const MAX_FRAME: usize = 9216 + 18;
/// Bytes reserved after the largest frame (ESP trailer and ICV).
pub const TAILROOM: usize = 64;
/// Total size of one buffer.
pub const CAPACITY: usize = HEADROOM + MAX_FRAME + TAILROOM;
/// Buffers kept on a thread's free list at most; more are released to the allocator.
const FREE_LIST_MAX: usize = 4096;

thread_local! {
    static FREE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A packet in a heap buffer of [`CAPACITY`] bytes. Dropping it returns the
/// storage to the dropping thread's free list.
pub struct PoolBuf {
    storage: Option<Box<[u8]>>,
    start: usize,
    end: usize,
}

impl PoolBuf {
    /// An empty packet with [`HEADROOM`] bytes of headroom.
    pub fn new() -> Self {
        let storage = FREE
            .with(|f| f.borrow_mut().pop())
            .unwrap_or_else(|| vec![0u8; CAPACITY].into_boxed_slice());
        PoolBuf {
            storage: Some(storage),
            start: HEADROOM,
            end: HEADROOM,
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
        self.storage
            .as_deref_mut()
            .expect("storage present until drop")
    }

    /// Sets the packet to `storage[start..end]`. Returns false if out of bounds.
    pub fn set_range(&mut self, start: usize, end: usize) -> bool {
        if start > end || end > CAPACITY {
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
        if let Some(s) = self.storage.take() {
            // try_with: during thread teardown the free list may be gone; then just free.
            let _ = FREE.try_with(|f| {
                let mut f = f.borrow_mut();
                if f.len() < FREE_LIST_MAX {
                    f.push(s);
                }
            });
        }
    }
}

impl PacketBuf for PoolBuf {
    fn data(&self) -> &[u8] {
        &self.storage.as_deref().expect("storage present until drop")[self.start..self.end]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        let (s, e) = (self.start, self.end);
        &mut self.storage_mut()[s..e]
    }
    fn headroom(&self) -> usize {
        self.start
    }
    fn tailroom(&self) -> usize {
        CAPACITY - self.end
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
        if n > CAPACITY - self.end {
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
        let p = a.storage.as_ref().unwrap().as_ptr();
        drop(a);
        let b = PoolBuf::new();
        assert_eq!(b.storage.as_ref().unwrap().as_ptr(), p);
    }
}
