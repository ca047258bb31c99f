//! One AF_XDP socket: its four rings and the RX/TX burst paths, on a UMEM
//! of its own or shared with the worker's socket on the other port.
//!
//! Frame ownership: a UMEM frame is on a fill ring, an RX ring, lent to a
//! packet buffer, on a TX ring, on a completion ring, or free in the owner
//! thread's frame pool ([`super::frames`]). RX lends each frame to a
//! [`PoolBuf`] in place; TX sends a buffer lent by the same UMEM by
//! descriptor and copies any other buffer into a free frame. Refilling
//! always leaves [`Umem::tx_reserve`] frames in the pool, so frames the
//! gateway makes can be sent however far RX backs up.

use std::io;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use arrayvec::ArrayVec;
use scistream_sys::xdp as sys;

use super::frames::{self, FramePool};
use super::netns::NetNs;
use super::umem::Umem;
use super::{XdpConfig, XdpError, FRAME_SIZE};
use crate::backend::pool::{PoolBuf, CAPACITY, HEADROOM};
use crate::backend::tap::netdev::IfName;
use crate::backend::{Burst, PacketBuf, PortQueue, BURST};
use crate::host_drops::{HostDrop, HostDropCounts, NetdevDrops};

/// The four rings of one socket. libxdp keeps pointers to them from
/// creation until deletion, so they live at a fixed heap address.
#[derive(Default)]
struct Rings {
    fill: sys::xsk_ring_prod,
    comp: sys::xsk_ring_cons,
    rx: sys::xsk_ring_cons,
    tx: sys::xsk_ring_prod,
}

/// Heap-pinned [`Rings`], freed on drop (after the socket and UMEM are gone).
struct RingsAlloc(NonNull<Rings>);

impl RingsAlloc {
    fn new() -> Self {
        RingsAlloc(NonNull::from(Box::leak(Box::default())))
    }
    fn fill(&self) -> *mut sys::xsk_ring_prod {
        // SAFETY: the pointer is valid until drop; addr_of_mut creates no reference.
        unsafe { ptr::addr_of_mut!((*self.0.as_ptr()).fill) }
    }
    fn comp(&self) -> *mut sys::xsk_ring_cons {
        // SAFETY: as in `fill`.
        unsafe { ptr::addr_of_mut!((*self.0.as_ptr()).comp) }
    }
    fn rx(&self) -> *mut sys::xsk_ring_cons {
        // SAFETY: as in `fill`.
        unsafe { ptr::addr_of_mut!((*self.0.as_ptr()).rx) }
    }
    fn tx(&self) -> *mut sys::xsk_ring_prod {
        // SAFETY: as in `fill`.
        unsafe { ptr::addr_of_mut!((*self.0.as_ptr()).tx) }
    }
}

impl Drop for RingsAlloc {
    fn drop(&mut self) {
        // SAFETY: the pointer came from Box::leak in `new` and is freed only here.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// A libxdp socket handle, deleted explicitly (inside its namespace) or on drop.
/// How long `xsk_socket__create_shared` is retried on EBUSY (a queue still held by
/// the socket of a process that just exited).
const BUSY_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(5);
/// Pause between those retries.
const BUSY_RETRY_STEP: std::time::Duration = std::time::Duration::from_millis(100);

struct Socket(*mut sys::xsk_socket);

impl Socket {
    fn delete(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the handle came from xsk_socket__create_shared, its rings are
            // still allocated, and it is nulled so deletion happens once.
            unsafe { sys::xsk_socket__delete(self.0) };
            self.0 = ptr::null_mut();
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.delete();
    }
}

/// Which UMEM a new socket binds to.
#[derive(Clone, Copy)]
pub(super) enum UmemChoice<'a> {
    /// A new UMEM of `frames` frames with fill and completion rings of
    /// `ring_size` entries (this socket's and any socket that joins it).
    Create {
        /// Frames in the new UMEM.
        frames: u32,
        /// Entries of every fill and completion ring on it.
        ring_size: u32,
    },
    /// An existing UMEM, shared with the socket that created it.
    Join(&'a Arc<Umem>),
}

/// One AF_XDP socket (queue id `id` of its interface), owned by one worker
/// thread, on a UMEM of its own or shared with the worker's other socket.
///
/// RX lends each frame to a [`PoolBuf`] in place and refills the fill ring
/// from the frame pool; TX sends lent frames of this UMEM by descriptor and
/// copies other buffers into free frames; completed frames go back to the
/// pool on the next TX burst or idle call.
pub struct XdpQueue {
    // Field order is drop order: the socket before the UMEM (the last
    // socket's Arc deletes it), both before the rings they point into.
    xsk: Socket,
    umem: Arc<Umem>,
    rings: RingsAlloc,
    netns: NetNs,
    fd: libc::c_int,
    /// Entries of this socket's fill ring (what one refill tops up to).
    fill_size: u32,
    id: u16,
    rx_dropped: u64,
    /// Frames sent by copying a buffer of another origin into a free frame.
    tx_copied: u64,
    /// A burst came from a thread other than the UMEM's owner (logged once).
    foreign_logged: bool,
    /// Queue 0: the interface's kernel counters.
    netdev: Option<NetdevDrops>,
}

// SAFETY: the socket and rings are reachable only through this value
// (nothing else holds them once the port hands the queue out), libxdp has no
// thread affinity, the queue is used by one thread at a time, and the UMEM's
// frames are handed out only by its owner thread's pool.
unsafe impl Send for XdpQueue {}

impl XdpQueue {
    /// Makes this queue report `netdev`'s kernel drops with its own
    /// (one queue per port does).
    pub(super) fn set_netdev(&mut self, netdev: Option<NetdevDrops>) {
        self.netdev = netdev;
    }

    /// The UMEM this socket is bound to (for the other port's socket to join).
    pub(super) fn umem(&self) -> &Arc<Umem> {
        &self.umem
    }

    /// Creates the socket for queue `id` on the chosen UMEM and puts half of
    /// its `cfg.frame_count` frames on its fill ring.
    pub(super) fn open(
        name: &IfName,
        id: u16,
        cfg: &XdpConfig,
        choice: UmemChoice<'_>,
    ) -> Result<XdpQueue, XdpError> {
        let err = |call: &'static str| {
            move |source: io::Error| XdpError::Sys {
                interface: cfg.interface.clone(),
                queue: Some(id),
                call,
                source,
            }
        };
        let neg =
            |call: &'static str, rc: libc::c_int| err(call)(io::Error::from_raw_os_error(-rc));

        let netns = NetNs::current().map_err(err("open(/proc/thread-self/ns/net)"))?;
        let half = cfg.frame_count / 2;
        let rings = RingsAlloc::new();

        let umem = match choice {
            UmemChoice::Create { frames, ring_size } => {
                // SAFETY: the ring structs are heap-pinned in `rings`, which
                // outlives the socket bound below (field order) and, if
                // binding fails, the UMEM (dropped before `rings` on return).
                let umem = unsafe { Umem::create(frames, ring_size, rings.fill(), rings.comp()) }
                    .map_err(|(call, e)| err(call)(e))?;
                Arc::new(umem)
            }
            UmemChoice::Join(u) => u.clone(),
        };

        let copy_flag = if cfg.zero_copy {
            sys::XDP_ZEROCOPY
        } else {
            sys::XDP_COPY
        };
        let scfg = sys::xsk_socket_config {
            rx_size: half,
            tx_size: half,
            __bindgen_anon_1: sys::xsk_socket_config__bindgen_ty_1 { libxdp_flags: 0 },
            xdp_flags: cfg.mode.xdp_flags(),
            bind_flags: (copy_flag | sys::XDP_USE_NEED_WAKEUP) as u16,
        };
        let mut xsk_ptr = ptr::null_mut();
        // A socket of a gateway that just died (SIGKILL) is released by the
        // kernel asynchronously and keeps the queue busy for a moment:
        // EBUSY is retried for up to BUSY_RETRY_FOR before it is an error.
        let started = std::time::Instant::now();
        let mut busy_logged = false;
        loop {
            let _bind = umem.lock_sockets();
            // SAFETY: the name is NUL-terminated, the UMEM handle is live, the
            // ring structs are heap-pinned and outlive the socket, and
            // `scfg` is a valid config read during the call. The fill and
            // completion rings passed are this socket's own: for the UMEM's
            // creator they are the ones given to xsk_umem__create, for a
            // joining socket libxdp maps new ones into them.
            let rc = unsafe {
                sys::xsk_socket__create_shared(
                    &mut xsk_ptr,
                    name.as_cstr().as_ptr(),
                    u32::from(id),
                    umem.handle(),
                    rings.rx(),
                    rings.tx(),
                    rings.fill(),
                    rings.comp(),
                    &scfg,
                )
            };
            match rc {
                0 => break,
                rc if rc == -libc::EBUSY && started.elapsed() < BUSY_RETRY_FOR => {
                    if !busy_logged {
                        tracing::info!(queue = id, "AF_XDP queue busy (a previous socket is still being released); retrying");
                        busy_logged = true;
                    }
                    std::thread::sleep(BUSY_RETRY_STEP);
                }
                rc => return Err(neg("xsk_socket__create_shared", rc)),
            }
        }
        let xsk = Socket(xsk_ptr);
        // SAFETY: the socket handle is live.
        let fd = unsafe { sys::xsk_socket__fd(xsk.0) };
        // Every fill ring on a UMEM has the size the UMEM was made with.
        // SAFETY: the fill ring struct was set up by the socket creation above.
        let fill_size = unsafe { (*rings.fill()).size };

        let q = XdpQueue {
            xsk,
            umem,
            rings,
            netns,
            fd,
            fill_size,
            id,
            rx_dropped: 0,
            tx_copied: 0,
            foreign_logged: false,
            netdev: None,
        };
        let mut first = q.umem.take_seed(half as usize);
        fill_from(&q.rings, &mut first, q.fill_size, 0);
        q.umem.return_seed(first);
        Ok(q)
    }

    /// This queue's id on its interface.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Frames received but dropped because their descriptor was invalid.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_dropped
    }

    /// Frames sent by copy: buffers that were not lent by this queue's UMEM
    /// (frames the gateway made, or from a TAP or unshared port). Frames
    /// forwarded between the two sockets of a shared UMEM are not copied.
    pub fn tx_copied(&self) -> u64 {
        self.tx_copied
    }

    /// Logs, once, that this queue was used from a thread that does not own its UMEM.
    fn foreign_thread(&mut self) {
        if !self.foreign_logged {
            tracing::error!(
                queue = self.id,
                "af_xdp: queue used from a thread other than the one that first used its UMEM; it moves no frames there"
            );
            self.foreign_logged = true;
        }
    }

    /// Wakes the kernel to transmit what the TX ring holds, if it asked for it.
    fn kick_tx(&self) {
        // SAFETY: the TX ring is live.
        if unsafe { sys::xsk_ring_prod__needs_wakeup(self.rings.tx()) } == 0 {
            return;
        }
        // Errors (EAGAIN, EBUSY, ENOBUFS, ENETDOWN) are transient: the frames
        // stay on the ring and the next kick sends them.
        // SAFETY: a zero-length sendto on our own socket; no buffers are passed.
        unsafe { libc::sendto(self.fd, ptr::null(), 0, libc::MSG_DONTWAIT, ptr::null(), 0) };
    }

    /// Wakes the kernel to fill RX frames, if it asked for it.
    fn kick_rx(&self) {
        // SAFETY: the fill ring is live.
        if unsafe { sys::xsk_ring_prod__needs_wakeup(self.rings.fill()) } == 0 {
            return;
        }
        // SAFETY: a zero-length recvfrom on our own socket; no buffers are passed.
        unsafe {
            libc::recvfrom(
                self.fd,
                ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
    }
}

/// Starts loading a received frame's first two cache lines (the headers
/// classification reads), so a burst's cache misses overlap instead of
/// stalling one packet at a time (the kernel wrote the frame, often on the
/// other CPU).
#[inline(always)]
fn prefetch_headers(data: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = data.as_ptr().cast::<i8>();
        // SAFETY: prefetch is a hint that never faults; SSE is part of the
        // x86-64 baseline. The addresses are inside (or one line past) the frame.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Puts as many of `free`'s frames on the fill ring as it has room for
/// (a ring of `size` entries), leaving at least `keep` of them in `free`.
fn fill_from(rings: &RingsAlloc, free: &mut Vec<u64>, size: u32, keep: usize) {
    let want = (free.len().saturating_sub(keep) as u32).min(size);
    if want == 0 {
        return;
    }
    let fill = rings.fill();
    let mut idx = 0;
    // SAFETY: the fill ring is live and only this queue produces on it.
    let n = unsafe {
        let room = sys::xsk_prod_nb_free(fill, want).min(want);
        if room == 0 {
            return;
        }
        sys::xsk_ring_prod__reserve(fill, room, &mut idx)
    };
    for i in 0..n {
        let Some(addr) = free.pop() else { break };
        // SAFETY: slot idx+i was reserved above; the ring masks the index.
        unsafe { *sys::xsk_ring_prod__fill_addr(fill, idx.wrapping_add(i)) = addr };
    }
    // SAFETY: exactly n slots were reserved and written (`free` held at least `want` >= n).
    unsafe { sys::xsk_ring_prod__submit(fill, n) };
}

/// Moves completed TX frames from the completion ring to the frame pool.
fn reap_completions(rings: &RingsAlloc, umem: &Umem, pool: &mut FramePool) {
    let comp = rings.comp();
    let mut idx = 0;
    // SAFETY: the completion ring is live and only this queue consumes it.
    let n = unsafe { sys::xsk_ring_cons__peek(comp, umem.frame_count(), &mut idx) };
    if n == 0 {
        return;
    }
    for i in 0..n {
        // SAFETY: slot idx+i was peeked above and is valid until release.
        let addr = unsafe { *sys::xsk_ring_cons__comp_addr(comp, idx.wrapping_add(i)) };
        if let Some(base) = umem.frame_base(addr) {
            pool.give(base);
        }
    }
    // SAFETY: n entries were peeked and are released once.
    unsafe { sys::xsk_ring_cons__release(comp, n) };
}

impl PortQueue for XdpQueue {
    type Buf = PoolBuf;

    fn rx_burst(&mut self, out: &mut Burst<PoolBuf>) -> usize {
        let want = out.remaining_capacity() as u32;
        if want == 0 {
            return 0;
        }
        let (umem, rings) = (&*self.umem, &self.rings);
        let rx_dropped = &mut self.rx_dropped;
        let fill_size = self.fill_size;
        let received = frames::with_pool(umem, |pool| {
            let rx = rings.rx();
            let mut idx = 0;
            // SAFETY: the RX ring is live and only this queue consumes it.
            let n = unsafe { sys::xsk_ring_cons__peek(rx, want, &mut idx) };
            if n == 0 {
                fill_from(rings, &mut pool.free, fill_size, umem.tx_reserve());
                return None;
            }
            let umem_len = umem.len() as u64;
            let frame_len = FRAME_SIZE as usize;
            let mut received = 0;
            for i in 0..n {
                // SAFETY: slot idx+i was peeked above and is valid until release.
                let desc = unsafe { *sys::xsk_ring_cons__rx_desc(rx, idx.wrapping_add(i)) };
                // SAFETY: a pure arithmetic helper from libxdp.
                let addr = unsafe { sys::xsk_umem__add_offset_to_addr(desc.addr) };
                let len = desc.len as usize;
                let Some(base) = umem.frame_base(desc.addr) else {
                    *rx_dropped += 1;
                    continue;
                };
                let offset = (addr - base) as usize;
                if addr + len as u64 > umem_len || offset + len > frame_len {
                    *rx_dropped += 1;
                    pool.give(base);
                    continue;
                }
                // SAFETY: the frame lies inside the UMEM mapping (frame_base
                // checked it), and the kernel has handed it to us.
                let frame_ptr = unsafe { umem.base().add(base as usize) };
                if offset < HEADROOM || len > CAPACITY - HEADROOM {
                    // Too little headroom for the headers the gateway adds
                    // (a driver that leaves less than ours): copy out.
                    let mut buf = PoolBuf::new();
                    // SAFETY: [offset, offset+len) is inside the frame (checked above).
                    let src =
                        unsafe { std::slice::from_raw_parts(frame_ptr.as_ptr().add(offset), len) };
                    buf.storage_mut()[HEADROOM..HEADROOM + len].copy_from_slice(src);
                    buf.set_range(HEADROOM, HEADROOM + len);
                    out.push(buf);
                    pool.give(base);
                } else {
                    // SAFETY: the frame is ours until the buffer returns it
                    // (drop, or a TX descriptor), the pool counts it as lent
                    // so the mapping stays while the buffer lives, and
                    // offset + len <= FRAME_SIZE (checked above).
                    let buf = unsafe {
                        PoolBuf::lend_umem_frame(
                            frame_ptr,
                            frame_len,
                            umem.id(),
                            base,
                            offset,
                            offset + len,
                        )
                    };
                    pool.lent += 1;
                    prefetch_headers(buf.data());
                    out.push(buf);
                }
                received += 1;
            }
            // SAFETY: n entries were peeked and are released once; the frames
            // are now lent, free or copied out.
            unsafe { sys::xsk_ring_cons__release(rx, n) };
            fill_from(rings, &mut pool.free, fill_size, umem.tx_reserve());
            Some(received)
        });
        match received {
            Some(Some(n)) => n,
            Some(None) => {
                self.kick_rx();
                0
            }
            None => {
                self.foreign_thread();
                0
            }
        }
    }

    fn tx_burst(&mut self, bufs: &mut Burst<PoolBuf>) -> usize {
        let own = self.umem.id();
        let fits = |b: &PoolBuf| !b.is_empty() && b.len() <= FRAME_SIZE as usize;
        let (mut lent_here, mut to_copy) = (0u32, 0usize);
        for b in bufs.iter().filter(|b| fits(b)) {
            if b.umem() == Some(own) {
                lent_here += 1;
            } else {
                to_copy += 1;
            }
        }
        // Completed frames back to the pool, and free frames for the copies.
        let mut spare = ArrayVec::<u64, BURST>::new();
        let (umem, rings) = (&*self.umem, &self.rings);
        let home = frames::with_pool(umem, |pool| {
            reap_completions(rings, umem, pool);
            while spare.len() < to_copy {
                let Some(f) = pool.free.pop() else { break };
                spare.push(f);
            }
        });
        if home.is_none() {
            self.foreign_thread();
            bufs.clear();
            return 0;
        }
        let want = lent_here + spare.len() as u32;
        let tx = self.rings.tx();
        let mut idx = 0;
        let reserved = if want == 0 {
            0
        } else {
            // SAFETY: the TX ring is live and only this queue produces on it.
            unsafe {
                let k = sys::xsk_prod_nb_free(tx, want).min(want);
                if k == 0 {
                    0
                } else {
                    sys::xsk_ring_prod__reserve(tx, k, &mut idx)
                }
            }
        };
        let mut filled = 0u32;
        let mut sent_lent = 0usize;
        let base = self.umem.base();
        for buf in bufs.drain(..) {
            // Anything not sent is dropped here (a lent frame goes back to the pool).
            if filled == reserved || !fits(&buf) {
                continue;
            }
            let (addr, len) = match buf.into_umem_desc(own) {
                Ok(desc) => {
                    sent_lent += 1;
                    desc
                }
                Err(buf) => {
                    let Some(frame) = spare.pop() else { continue };
                    let data = buf.data();
                    // SAFETY: `frame` is a free frame of FRAME_SIZE bytes inside
                    // the UMEM that nothing else owns, and data.len() <= FRAME_SIZE.
                    unsafe {
                        ptr::copy_nonoverlapping(
                            data.as_ptr(),
                            base.as_ptr().add(frame as usize),
                            data.len(),
                        );
                    }
                    (frame, data.len() as u32)
                }
            };
            // SAFETY: slot idx+filled was reserved above (filled < reserved).
            unsafe {
                let desc = sys::xsk_ring_prod__tx_desc(tx, idx.wrapping_add(filled));
                (*desc).addr = addr;
                (*desc).len = len;
                (*desc).options = 0;
            }
            filled += 1;
        }
        debug_assert_eq!(filled, reserved);
        self.tx_copied += u64::from(filled) - sent_lent as u64;
        // The sent lent frames are the kernel's now; unused spares go back.
        frames::with_pool(&self.umem, |pool| {
            pool.lent = pool.lent.saturating_sub(sent_lent);
            for f in spare {
                pool.give(f);
            }
        });
        if filled > 0 {
            // SAFETY: `filled` <= reserved slots were written, in order.
            unsafe { sys::xsk_ring_prod__submit(tx, filled) };
            self.kick_tx();
        }
        filled as usize
    }

    fn alloc(&mut self) -> Option<PoolBuf> {
        Some(PoolBuf::new())
    }

    fn idle(&mut self) {
        let (umem, rings, fill_size) = (&*self.umem, &self.rings, self.fill_size);
        let home = frames::with_pool(umem, |pool| {
            reap_completions(rings, umem, pool);
            fill_from(rings, &mut pool.free, fill_size, umem.tx_reserve());
        });
        if home.is_none() {
            self.foreign_thread();
        }
        self.kick_tx();
        self.kick_rx();
    }

    /// The socket: readable when its RX ring has descriptors (the kernel
    /// wakes a `poll()` on it; with need_wakeup, the poll also kicks the
    /// driver's RX).
    fn wait_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.fd)
    }

    /// The socket's `XDP_STATISTICS`; `None` if the kernel refuses.
    fn host_drops(&mut self) -> Option<HostDropCounts> {
        let mut st = sys::xdp_statistics::default();
        let mut len = std::mem::size_of::<sys::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `fd` is this queue's live AF_XDP socket; `st` and `len`
        // are valid out-pointers sized for the structure the kernel fills
        // (it writes at most `len` bytes and updates `len`).
        let rc = unsafe {
            libc::getsockopt(
                self.fd,
                libc::SOL_XDP,
                sys::XDP_STATISTICS as libc::c_int,
                (&mut st as *mut sys::xdp_statistics).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return None;
        }
        let mut c = [0u64; HostDrop::COUNT];
        c[HostDrop::XskRxDropped as usize] = st.rx_dropped;
        c[HostDrop::XskRxInvalid as usize] = st.rx_invalid_descs + self.rx_dropped;
        c[HostDrop::XskTxInvalid as usize] = st.tx_invalid_descs;
        c[HostDrop::XskRxRingFull as usize] = st.rx_ring_full;
        c[HostDrop::XskFillRingEmpty as usize] = st.rx_fill_ring_empty_descs;
        c[HostDrop::XskTxRingEmpty as usize] = st.tx_ring_empty_descs;
        if let Some(netdev) = &mut self.netdev {
            netdev.add_to(&mut c);
        }
        Some(c)
    }
}

impl Drop for XdpQueue {
    fn drop(&mut self) {
        // libxdp detaches its program by ifindex over netlink in the calling
        // thread's namespace: run the deletion where the socket was made.
        // The lock: the other socket on this UMEM may be deleted at once
        // from another thread.
        let _delete = self.umem.lock_sockets();
        let xsk = &mut self.xsk;
        if let Err(e) = self.netns.run_in(|| xsk.delete()) {
            tracing::warn!(
                "af_xdp queue {}: cannot enter the socket's network namespace ({e}); deleting from here",
                self.id
            );
            self.xsk.delete();
        }
    }
}
