//! A UMEM: the mapped frame memory and its libxdp handle, shared by every
//! socket bound to it (one socket, or a worker's LAN and WAN sockets, each
//! with its own fill and completion rings).
//!
//! The frames a UMEM starts with that are not on a fill ring wait in its
//! seed until the worker's first burst moves them into that thread's frame
//! pool ([`super::frames`]). The mapping is unmapped when the UMEM goes,
//! unless frames are still lent out to packet buffers: then the thread's
//! pool unmaps it when the last one comes back, and a mapping whose frames
//! went to another thread is left mapped rather than freed under them.

use std::io;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread::ThreadId;

use scistream_sys::xdp as sys;

use super::frames;
use super::FRAME_SIZE;

/// Page-aligned anonymous memory backing a UMEM, unmapped on drop.
pub(super) struct UmemArea {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the area is plain memory owned by this value; who may touch which
// frame is decided by the frame pools (one owner thread per UMEM).
unsafe impl Send for UmemArea {}
// SAFETY: shared references only read the pointer and length.
unsafe impl Sync for UmemArea {}

/// Transparent huge page size the area is aligned to (x86-64).
const HUGE_PAGE: usize = 2 << 20;

impl UmemArea {
    /// Maps `len` bytes aligned to [`HUGE_PAGE`] and asks for transparent
    /// huge pages (THP in `madvise` mode, Debian's default), then faults
    /// every page in: with 4 KiB pages every UMEM frame is a page of its
    /// own, and each frame the worker reads would be a TLB miss.
    fn new(len: usize) -> io::Result<Self> {
        let map_len = len + HUGE_PAGE;
        // SAFETY: an anonymous private mapping with no address hint touches
        // no existing memory; the result is checked.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let raw = p as usize;
        let start = (raw + HUGE_PAGE - 1) & !(HUGE_PAGE - 1);
        let (head, tail) = (start - raw, raw + map_len - (start + len));
        // SAFETY: [raw, start) and [start + len, raw + map_len) are the
        // unused ends of the mapping just made (page-aligned: `len` is a
        // multiple of the frame size, a page); nothing refers to them.
        unsafe {
            if head > 0 {
                libc::munmap(p, head);
            }
            if tail > 0 {
                libc::munmap((start + len) as *mut libc::c_void, tail);
            }
        }
        let ptr = NonNull::new(start as *mut u8)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        let area = UmemArea { ptr, len };
        // SAFETY: madvise on the area just mapped; a refusal (THP off, or a
        // kernel without MADV_POPULATE_WRITE) only loses the hint, so the
        // pages are then faulted in by writing to them.
        unsafe {
            libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_HUGEPAGE);
            if libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_POPULATE_WRITE) != 0 {
                ptr::write_bytes(ptr.as_ptr(), 0, len);
            }
        }
        Ok(area)
    }
}

impl Drop for UmemArea {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly the mapping made in `new`. An area is
        // dropped only when no packet buffer points into it (Umem's drop and
        // the frame pools decide), and the kernel keeps its own pin on any
        // pages its sockets still reference.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Source of process-unique UMEM ids (never reused, so a stale id matches nothing).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A UMEM of `frame_count` frames of [`FRAME_SIZE`] bytes.
pub(super) struct Umem {
    id: u64,
    handle: *mut sys::xsk_umem,
    /// Always `Some` until drop hands it to [`frames::retire`].
    area: Option<UmemArea>,
    frame_count: u32,
    /// Frames on no ring yet, until the owner thread's first burst takes them.
    seed: Mutex<Vec<u64>>,
    /// The one thread whose frame pool serves this UMEM, set on first use.
    owner: OnceLock<ThreadId>,
    /// Held around binding and deleting sockets: libxdp updates the UMEM's
    /// socket count and context list without a lock of its own.
    sockets: Mutex<()>,
}

// SAFETY: the libxdp handle is used only to bind sockets (under `&self`,
// from the thread opening the port, which libxdp allows) and is deleted
// once in drop; the area's frames are handed out by one owner thread's pool.
unsafe impl Send for Umem {}
// SAFETY: as above; the mutable state (seed, owner) is behind a Mutex and a OnceLock.
unsafe impl Sync for Umem {}

impl Umem {
    /// Maps `frame_count` frames and registers them with the kernel, the
    /// fill and completion rings of `ring_size` entries set up in `fill`
    /// and `comp` (the first socket's rings).
    ///
    /// # Safety
    /// `fill` and `comp` must stay valid and unmoved until the first socket
    /// bound to this UMEM is deleted, or, if none is ever bound, until the
    /// UMEM is dropped.
    pub(super) unsafe fn create(
        frame_count: u32,
        ring_size: u32,
        fill: *mut sys::xsk_ring_prod,
        comp: *mut sys::xsk_ring_cons,
    ) -> Result<Umem, (&'static str, io::Error)> {
        let area = UmemArea::new(frame_count as usize * FRAME_SIZE as usize)
            .map_err(|e| ("mmap(umem)", e))?;
        let ucfg = sys::xsk_umem_config {
            fill_size: ring_size,
            comp_size: ring_size,
            frame_size: FRAME_SIZE,
            frame_headroom: 0,
            flags: 0,
        };
        let mut handle = ptr::null_mut();
        // SAFETY: the area is a page-aligned mapping of the given size that
        // outlives the handle (drop deletes the handle first); the caller
        // keeps the ring structs valid; `ucfg` is read during the call.
        let rc = unsafe {
            sys::xsk_umem__create(
                &mut handle,
                area.ptr.as_ptr().cast(),
                area.len as u64,
                fill,
                comp,
                &ucfg,
            )
        };
        if rc != 0 {
            return Err(("xsk_umem__create", io::Error::from_raw_os_error(-rc)));
        }
        let frame = u64::from(FRAME_SIZE);
        let mut seed = Vec::with_capacity(frame_count as usize);
        seed.extend((0..u64::from(frame_count)).rev().map(|i| i * frame));
        Ok(Umem {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            handle,
            area: Some(area),
            frame_count,
            seed: Mutex::new(seed),
            owner: OnceLock::new(),
            sockets: Mutex::new(()),
        })
    }

    /// The libxdp handle, to bind sockets to.
    pub(super) fn handle(&self) -> *mut sys::xsk_umem {
        self.handle
    }

    /// This UMEM's process-unique id (what lent packet buffers name).
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// Number of frames.
    pub(super) fn frame_count(&self) -> u32 {
        self.frame_count
    }

    /// Frames the fill rings leave in the pool for TX copies (frames the
    /// gateway makes, buffers from TAP ports), however much RX backs up.
    pub(super) fn tx_reserve(&self) -> usize {
        (2 * crate::backend::BURST).min(self.frame_count as usize / 4)
    }

    /// Serialises socket creation and deletion on this UMEM (not the hot path).
    pub(super) fn lock_sockets(&self) -> MutexGuard<'_, ()> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes mapped.
    pub(super) fn len(&self) -> usize {
        self.area().len
    }

    /// Start of the mapping.
    pub(super) fn base(&self) -> NonNull<u8> {
        self.area().ptr
    }

    fn area(&self) -> &UmemArea {
        self.area.as_ref().expect("area present until drop")
    }

    /// Base address of the frame holding UMEM offset `addr`, if it is inside the UMEM.
    pub(super) fn frame_base(&self, addr: u64) -> Option<u64> {
        // SAFETY: a pure arithmetic helper from libxdp.
        let addr = unsafe { sys::xsk_umem__extract_addr(addr) };
        let base = addr & !(u64::from(FRAME_SIZE) - 1);
        (base < u64::from(self.frame_count) * u64::from(FRAME_SIZE)).then_some(base)
    }

    /// Takes up to `n` seed frames (a socket's first fill, at open).
    pub(super) fn take_seed(&self, n: usize) -> Vec<u64> {
        let mut seed = self.seed.lock().unwrap_or_else(|e| e.into_inner());
        let keep = seed.len().saturating_sub(n);
        seed.split_off(keep)
    }

    /// Gives the seed frames back (a fill ring that took fewer than offered).
    pub(super) fn return_seed(&self, frames: Vec<u64>) {
        self.seed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(frames);
    }

    /// Claims this UMEM for the calling thread's frame pool: the seed frames
    /// it starts with if the thread is (now) its owner, else None.
    pub(super) fn claim(&self, me: ThreadId) -> Option<Vec<u64>> {
        if *self.owner.get_or_init(|| me) != me {
            return None;
        }
        Some(std::mem::take(
            &mut *self.seed.lock().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: the handle came from xsk_umem__create; every socket bound
        // to it was deleted first (each holds an Arc of this UMEM and deletes
        // its socket before dropping it); deletion happens once.
        let rc = unsafe { sys::xsk_umem__delete(self.handle) };
        if rc != 0 {
            tracing::warn!(
                "af_xdp: xsk_umem__delete failed: {}",
                io::Error::from_raw_os_error(-rc)
            );
        }
        if let Some(area) = self.area.take() {
            frames::retire(self.id, area, self.owner.get().copied());
        }
    }
}
