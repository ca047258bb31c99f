//! Per-thread frame pools: the free UMEM frames of the UMEMs a worker
//! thread owns, and how many of their frames are lent to packet buffers.
//!
//! A received frame is lent to a [`PoolBuf`](crate::backend::pool::PoolBuf)
//! in place (no copy); the buffer goes out by descriptor on a socket of the
//! same UMEM, or its frame comes back here when it is dropped. Only the
//! owner thread's pool knows a UMEM, so a buffer dropped on another thread
//! leaks its frame instead of racing the owner, and a UMEM mapping is
//! unmapped only when its owner's pool has every lent frame back. No lock or
//! atomic: one thread-local lookup per burst, and per dropped lent buffer.

use std::cell::RefCell;
use std::thread::ThreadId;

use super::umem::{Umem, UmemArea};

/// The free frames of one UMEM on its owner thread.
pub(super) struct FramePool {
    id: u64,
    /// Free frame addresses, capacity = the UMEM's frame count (never grows).
    pub(super) free: Vec<u64>,
    /// Frames now held by packet buffers.
    pub(super) lent: usize,
    /// The UMEM went while frames were lent: unmap this when the last returns.
    orphan: Option<UmemArea>,
}

impl FramePool {
    /// Returns a frame to the free list (never grows the list past its capacity).
    pub(super) fn give(&mut self, addr: u64) {
        debug_assert!(
            self.free.len() < self.free.capacity(),
            "more frames returned than the UMEM has"
        );
        if self.free.len() < self.free.capacity() {
            self.free.push(addr);
        }
    }
}

impl Drop for FramePool {
    fn drop(&mut self) {
        if let Some(area) = self.orphan.take() {
            if self.lent == 0 {
                drop(area);
            } else {
                // Buffers still point into it (held past this thread's end).
                std::mem::forget(area);
            }
        }
    }
}

thread_local! {
    static POOLS: RefCell<Vec<FramePool>> = const { RefCell::new(Vec::new()) };
    static ME: ThreadId = std::thread::current().id();
}

/// Runs `f` on this thread's pool of `umem`, creating it (with the UMEM's
/// seed frames) on the first call. `None` if another thread owns the UMEM
/// or this thread is shutting down.
pub(super) fn with_pool<R>(umem: &Umem, f: impl FnOnce(&mut FramePool) -> R) -> Option<R> {
    POOLS
        .try_with(|pools| {
            let mut pools = pools.try_borrow_mut().ok()?;
            if let Some(i) = pools.iter().position(|p| p.id == umem.id()) {
                return Some(f(&mut pools[i]));
            }
            let me = ME.try_with(|id| *id).ok()?;
            let seed = umem.claim(me)?;
            let mut free = Vec::with_capacity(umem.frame_count() as usize);
            free.extend(seed);
            pools.push(FramePool {
                id: umem.id(),
                free,
                lent: 0,
                orphan: None,
            });
            pools.last_mut().map(f)
        })
        .ok()
        .flatten()
}

/// A lent buffer of UMEM `id` is done with frame `addr`: back to the free
/// list if this thread owns the UMEM, else leaked (the mapping stays).
pub(crate) fn release(id: u64, addr: u64) {
    let _ = POOLS.try_with(|pools| {
        let Ok(mut pools) = pools.try_borrow_mut() else {
            debug_assert!(false, "a lent buffer dropped inside with_pool");
            return;
        };
        let Some(i) = pools.iter().position(|p| p.id == id) else {
            return;
        };
        let p = &mut pools[i];
        p.give(addr);
        p.lent = p.lent.saturating_sub(1);
        if p.lent == 0 && p.orphan.is_some() {
            // The UMEM is gone and this was its last lent frame: unmap.
            pools.swap_remove(i);
        }
    });
}

/// The UMEM `id` is being dropped: unmap its `area` now if no buffer can
/// point into it, hand it to the owner's pool until the lent frames are
/// back, or leak it if they were lent on another thread.
pub(super) fn retire(id: u64, area: UmemArea, owner: Option<ThreadId>) {
    let Some(owner) = owner else {
        // Never lent a frame: nothing points into it.
        drop(area);
        return;
    };
    let mut area = Some(area);
    let _ = POOLS.try_with(|pools| {
        if ME.try_with(|me| *me != owner).unwrap_or(true) {
            return;
        }
        let Ok(mut pools) = pools.try_borrow_mut() else {
            return;
        };
        let Some(i) = pools.iter().position(|p| p.id == id) else {
            return;
        };
        if pools[i].lent == 0 {
            pools.swap_remove(i);
            drop(area.take());
        } else {
            pools[i].orphan = area.take();
        }
    });
    if let Some(area) = area {
        tracing::warn!(
            umem = id,
            "af_xdp: UMEM dropped away from the thread that used it; its memory stays mapped"
        );
        std::mem::forget(area);
    }
}
