//! One AF_XDP socket with its own UMEM: the four rings, the frame
//! bookkeeping and the RX/TX burst paths.
//!
//! Frame ownership: the UMEM's first half of frames circulates between the
//! fill ring, the RX ring and `rx_free`; the second half between `tx_free`,
//! the TX ring and the completion ring. Each ring is sized to hold every
//! frame of its half, so the free stacks never outgrow their capacity.

use std::io;
use std::ptr::{self, NonNull};

use scistream_sys::xdp as sys;

use super::netns::NetNs;
use super::{XdpConfig, XdpError, FRAME_SIZE};
use crate::backend::pool::{PoolBuf, CAPACITY, HEADROOM};
use crate::backend::tap::netdev::IfName;
use crate::backend::{Burst, PacketBuf, PortQueue};
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

/// Page-aligned anonymous memory backing a UMEM, unmapped on drop.
struct UmemArea {
    ptr: NonNull<u8>,
    len: usize,
}

impl UmemArea {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: an anonymous private mapping with no address hint touches
        // no existing memory; the result is checked.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast()).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok(UmemArea { ptr, len })
    }
}

impl Drop for UmemArea {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly the mapping made in `new`; the socket
        // and UMEM using it were deleted before (field order in XdpQueue), and
        // the kernel keeps its own pin on any pages it still references.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A libxdp UMEM handle, deleted on drop.
struct Umem(*mut sys::xsk_umem);

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: the handle came from xsk_umem__create and its socket was
        // deleted first; deletion happens once.
        let rc = unsafe { sys::xsk_umem__delete(self.0) };
        if rc != 0 {
            tracing::warn!(
                "af_xdp: xsk_umem__delete failed: {}",
                io::Error::from_raw_os_error(-rc)
            );
        }
    }
}

/// A libxdp socket handle, deleted explicitly (inside its namespace) or on drop.
/// How long `xsk_socket__create` is retried on EBUSY (a queue still held by
/// the socket of a process that just exited).
const BUSY_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(5);
/// Pause between those retries.
const BUSY_RETRY_STEP: std::time::Duration = std::time::Duration::from_millis(100);

struct Socket(*mut sys::xsk_socket);

impl Socket {
    fn delete(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the handle came from xsk_socket__create, its rings are
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

/// One AF_XDP socket (queue id `id` of its interface) with its own UMEM,
/// owned by one worker thread.
///
/// RX copies each frame out of the UMEM into a [`PoolBuf`] and returns the
/// frame to the fill ring at once; TX copies into a free UMEM frame, and
/// completed frames are reaped on the next TX burst or idle call.
pub struct XdpQueue {
    // Field order is drop order: the socket before the UMEM, both before the
    // rings they point into and the memory they map.
    xsk: Socket,
    /// Held for its Drop, which must follow the socket's.
    _umem: Umem,
    rings: RingsAlloc,
    area: UmemArea,
    netns: NetNs,
    fd: libc::c_int,
    frame_count: u32,
    /// RX-half frames not yet on the fill ring.
    rx_free: Vec<u64>,
    /// TX-half frames ready to carry a packet.
    tx_free: Vec<u64>,
    id: u16,
    rx_dropped: u64,
    /// Queue 0: the interface's kernel counters.
    netdev: Option<NetdevDrops>,
}

// SAFETY: the socket, UMEM, rings and memory are reachable only through this
// value (nothing else holds them once the port hands the queue out), libxdp
// has no thread affinity, and the queue is used by one thread at a time.
unsafe impl Send for XdpQueue {}

impl XdpQueue {
    /// Makes this queue report `netdev`'s kernel drops with its own
    /// (one queue per port does).
    pub(super) fn set_netdev(&mut self, netdev: Option<NetdevDrops>) {
        self.netdev = netdev;
    }

    /// Creates the UMEM and socket for queue `id` and fills the fill ring.
    pub(super) fn open(name: &IfName, id: u16, cfg: &XdpConfig) -> Result<XdpQueue, XdpError> {
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
        let frame_count = cfg.frame_count;
        let half = frame_count / 2;
        let area =
            UmemArea::new(frame_count as usize * FRAME_SIZE as usize).map_err(err("mmap(umem)"))?;
        let rings = RingsAlloc::new();

        let ucfg = sys::xsk_umem_config {
            fill_size: half,
            comp_size: half,
            frame_size: FRAME_SIZE,
            frame_headroom: 0,
            flags: 0,
        };
        let mut umem_ptr = ptr::null_mut();
        // SAFETY: the area is a page-aligned mapping of the given size that
        // outlives the UMEM (drop order); the ring structs are heap-pinned
        // and outlive it too; `ucfg` is a valid config read during the call.
        let rc = unsafe {
            sys::xsk_umem__create(
                &mut umem_ptr,
                area.ptr.as_ptr().cast(),
                area.len as u64,
                rings.fill(),
                rings.comp(),
                &ucfg,
            )
        };
        if rc != 0 {
            return Err(neg("xsk_umem__create", rc));
        }
        let umem = Umem(umem_ptr);

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
            // SAFETY: the name is NUL-terminated, the UMEM handle is live, the
            // rx/tx ring structs are heap-pinned and outlive the socket, and
            // `scfg` is a valid config read during the call.
            let rc = unsafe {
                sys::xsk_socket__create(
                    &mut xsk_ptr,
                    name.as_cstr().as_ptr(),
                    u32::from(id),
                    umem.0,
                    rings.rx(),
                    rings.tx(),
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
                rc => return Err(neg("xsk_socket__create", rc)),
            }
        }
        let xsk = Socket(xsk_ptr);
        // SAFETY: the socket handle is live.
        let fd = unsafe { sys::xsk_socket__fd(xsk.0) };

        let frame = u64::from(FRAME_SIZE);
        let mut rx_free = Vec::with_capacity(half as usize);
        rx_free.extend((0..u64::from(half)).rev().map(|i| i * frame));
        let mut tx_free = Vec::with_capacity(half as usize);
        tx_free.extend(
            (u64::from(half)..u64::from(frame_count))
                .rev()
                .map(|i| i * frame),
        );

        let mut q = XdpQueue {
            xsk,
            _umem: umem,
            rings,
            area,
            netns,
            fd,
            frame_count,
            rx_free,
            tx_free,
            id,
            rx_dropped: 0,
            netdev: None,
        };
        q.refill();
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

    /// Base address of the frame holding UMEM offset `addr`, if it is inside the UMEM.
    fn frame_base(&self, addr: u64) -> Option<u64> {
        // SAFETY: a pure arithmetic helper from libxdp.
        let addr = unsafe { sys::xsk_umem__extract_addr(addr) };
        let base = addr & !(u64::from(FRAME_SIZE) - 1);
        (base < u64::from(self.frame_count) * u64::from(FRAME_SIZE)).then_some(base)
    }

    /// Puts as many `rx_free` frames on the fill ring as it has room for.
    fn refill(&mut self) {
        let want = self.rx_free.len() as u32;
        if want == 0 {
            return;
        }
        let fill = self.rings.fill();
        let mut idx = 0;
        // SAFETY: the fill ring is live and only this queue produces on it.
        let n = unsafe {
            let free = sys::xsk_prod_nb_free(fill, want).min(want);
            if free == 0 {
                return;
            }
            sys::xsk_ring_prod__reserve(fill, free, &mut idx)
        };
        for i in 0..n {
            let Some(addr) = self.rx_free.pop() else {
                break;
            };
            // SAFETY: slot idx+i was reserved above; the ring masks the index.
            unsafe { *sys::xsk_ring_prod__fill_addr(fill, idx.wrapping_add(i)) = addr };
        }
        // SAFETY: exactly n slots were reserved and written (rx_free held at least `want` >= n).
        unsafe { sys::xsk_ring_prod__submit(fill, n) };
    }

    /// Moves completed TX frames back to `tx_free`.
    fn reap_completions(&mut self) {
        let comp = self.rings.comp();
        let mut idx = 0;
        let max = self.frame_count / 2;
        // SAFETY: the completion ring is live and only this queue consumes it.
        let n = unsafe { sys::xsk_ring_cons__peek(comp, max, &mut idx) };
        if n == 0 {
            return;
        }
        for i in 0..n {
            // SAFETY: slot idx+i was peeked above and is valid until release.
            let addr = unsafe { *sys::xsk_ring_cons__comp_addr(comp, idx.wrapping_add(i)) };
            if let Some(base) = self.frame_base(addr) {
                if self.tx_free.len() < self.tx_free.capacity() {
                    self.tx_free.push(base);
                }
            }
        }
        // SAFETY: n entries were peeked and are released once.
        unsafe { sys::xsk_ring_cons__release(comp, n) };
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

impl PortQueue for XdpQueue {
    type Buf = PoolBuf;

    fn rx_burst(&mut self, out: &mut Burst<PoolBuf>) -> usize {
        let want = out.remaining_capacity() as u32;
        if want == 0 {
            return 0;
        }
        let rx = self.rings.rx();
        let mut idx = 0;
        // SAFETY: the RX ring is live and only this queue consumes it.
        let n = unsafe { sys::xsk_ring_cons__peek(rx, want, &mut idx) };
        if n == 0 {
            self.kick_rx();
            return 0;
        }
        let umem_len = self.area.len as u64;
        let mut received = 0;
        for i in 0..n {
            // SAFETY: slot idx+i was peeked above and is valid until release.
            let desc = unsafe { *sys::xsk_ring_cons__rx_desc(rx, idx.wrapping_add(i)) };
            // SAFETY: a pure arithmetic helper from libxdp.
            let addr = unsafe { sys::xsk_umem__add_offset_to_addr(desc.addr) };
            let len = desc.len as usize;
            let Some(base) = self.frame_base(desc.addr) else {
                self.rx_dropped += 1;
                continue;
            };
            if self.rx_free.len() < self.rx_free.capacity() {
                self.rx_free.push(base);
            }
            if addr + len as u64 > umem_len || len > CAPACITY - HEADROOM {
                self.rx_dropped += 1;
                continue;
            }
            let mut buf = PoolBuf::new();
            // SAFETY: [addr, addr+len) lies inside the UMEM (checked above),
            // and the kernel has handed this frame to us until release.
            let src = unsafe {
                std::slice::from_raw_parts(self.area.ptr.as_ptr().add(addr as usize), len)
            };
            buf.storage_mut()[HEADROOM..HEADROOM + len].copy_from_slice(src);
            buf.set_range(HEADROOM, HEADROOM + len);
            out.push(buf);
            received += 1;
        }
        // SAFETY: n entries were peeked and are released once, after the copies.
        unsafe { sys::xsk_ring_cons__release(rx, n) };
        self.refill();
        received
    }

    fn tx_burst(&mut self, bufs: &mut Burst<PoolBuf>) -> usize {
        self.reap_completions();
        let fits = |b: &PoolBuf| !b.is_empty() && b.len() <= FRAME_SIZE as usize;
        let valid = bufs.iter().filter(|b| fits(b)).count() as u32;
        let want = valid.min(self.tx_free.len() as u32);
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
        for buf in bufs.drain(..) {
            if filled == reserved || !fits(&buf) {
                continue;
            }
            let Some(frame) = self.tx_free.pop() else {
                break;
            };
            let data = buf.data();
            // SAFETY: `frame` is a free TX-half frame of FRAME_SIZE bytes
            // inside the UMEM that the kernel does not own, and data.len() <= FRAME_SIZE.
            unsafe {
                ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    self.area.ptr.as_ptr().add(frame as usize),
                    data.len(),
                );
                let desc = sys::xsk_ring_prod__tx_desc(tx, idx.wrapping_add(filled));
                (*desc).addr = frame;
                (*desc).len = data.len() as u32;
                (*desc).options = 0;
            }
            filled += 1;
        }
        debug_assert_eq!(filled, reserved);
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
        self.reap_completions();
        self.kick_tx();
        self.refill();
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
