//! [`DpdkQueue`]: one RX/TX queue pair of a [`super::DpdkPort`], owned by one
//! worker. Bursts go straight between the worker's [`Burst`] and the PMD.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;

use scistream_sys::dpdk as sys;

use super::mbuf::Mbuf;
use super::packet_socket::PacketSocketDrops;
use super::port::PortShared;
use crate::backend::{Burst, PortQueue};
use crate::host_drops::{HostDrop, HostDropCounts, NetdevDrops};

/// An owned handle for one queue pair; move it into the worker thread that
/// polls it. It keeps the port open; dropping it gives the queue back.
pub struct DpdkQueue {
    port_id: u16,
    queue_id: u16,
    pool: NonNull<sys::rte_mempool>,
    rx_chain_drops: u64,
    /// The epoll instance the queue's RX interrupt is registered in, if the
    /// port has RX interrupts (adaptive workers sleep on it).
    rx_intr: Option<OwnedFd>,
    /// Queue 0 of a vdev on a kernel interface (net_af_packet, net_af_xdp):
    /// that interface's kernel drop counters.
    netdev: Option<NetdevDrops>,
    /// Queue 0 of a net_af_packet vdev: its sockets' receive-ring drops.
    packet_socket: Option<PacketSocketDrops>,
    port: Arc<PortShared>,
}

// SAFETY: the queue is claimed by this handle alone (PortShared::claim), so
// only the thread holding it calls the per-queue burst functions; the pool
// pointer is to a mempool that is safe to use from any thread and lives as
// long as `port`.
unsafe impl Send for DpdkQueue {}

impl DpdkQueue {
    /// A handle for queue `queue_id`, already claimed on `port`.
    pub(crate) fn new(port: Arc<PortShared>, queue_id: u16) -> Self {
        let rx_intr = if port.rx_interrupts {
            register_rx_interrupt(&port, queue_id)
        } else {
            None
        };
        // Queue 0 reports the kernel's drops under a vdev on a kernel interface.
        let kernel = if queue_id == 0 {
            kernel_vdev(&port.device)
        } else {
            None
        };
        DpdkQueue {
            port_id: port.port_id,
            queue_id,
            pool: port.pool,
            rx_chain_drops: 0,
            rx_intr,
            netdev: kernel.and_then(|(iface, _)| NetdevDrops::open(iface)),
            packet_socket: kernel
                .filter(|&(_, af_packet)| af_packet)
                .and_then(|(iface, _)| packet_socket_drops(&port.device, iface)),
            port,
        }
    }

    /// The queue sleeps on its RX interrupt in adaptive mode (else the
    /// worker backs off with short sleeps).
    pub fn has_rx_interrupt(&self) -> bool {
        self.rx_intr.is_some()
    }

    /// The queue index.
    pub fn queue_id(&self) -> u16 {
        self.queue_id
    }

    /// The ethdev port id.
    pub fn port_id(&self) -> u16 {
        self.port_id
    }

    /// Frames dropped on receive because they came as mbuf chains that did
    /// not fit one mbuf (see [`Mbuf`]: this backend is single-segment).
    pub fn rx_chain_drops(&self) -> u64 {
        self.rx_chain_drops
    }

    /// Linearises or drops the chained mbufs among the `n` at `slots`,
    /// compacting the rest to the front; returns how many remain.
    ///
    /// # Safety
    /// `slots` points to `n` owned, valid mbuf pointers.
    #[cold]
    unsafe fn linearize_chains(&mut self, slots: *mut *mut sys::rte_mbuf, n: usize) -> usize {
        let mut kept = 0;
        for i in 0..n {
            // SAFETY: i < n, per the contract.
            let m = unsafe { *slots.add(i) };
            // SAFETY: m is a valid mbuf we own; linearize copies the chain into
            // the first segment if it fits, and fails leaving it intact if not.
            let single = unsafe { (*m).nb_segs == 1 || sys::rte_pktmbuf_linearize(m) == 0 };
            if single {
                // SAFETY: kept <= i < n.
                unsafe { *slots.add(kept) = m };
                kept += 1;
            } else {
                // SAFETY: we own m and drop it here; its slot is overwritten or cut off.
                unsafe { sys::rte_pktmbuf_free(m) };
                self.rx_chain_drops += 1;
            }
        }
        kept
    }
}

/// The kernel interface a `net_af_packet` or `net_af_xdp` vdev runs on
/// (its `iface=` argument), and whether it is `net_af_packet`; None for any
/// other device.
fn kernel_vdev(device: &str) -> Option<(&str, bool)> {
    let (name, args) = device.split_once(',')?;
    let af_packet = name.starts_with("net_af_packet");
    if !(af_packet || name.starts_with("net_af_xdp")) {
        return None;
    }
    let iface = args.split(',').find_map(|kv| kv.strip_prefix("iface="))?;
    Some((iface, af_packet))
}

/// The receive-ring drops of the sockets of `net_af_packet` vdev `device`
/// on `iface` (a warning if they cannot be found: its ring drops then go
/// uncounted).
fn packet_socket_drops(device: &str, iface: &str) -> Option<PacketSocketDrops> {
    let found = PacketSocketDrops::find(iface);
    match &found {
        Some(p) => tracing::debug!(device, sockets = p.sockets(), "AF_PACKET sockets found"),
        None => tracing::warn!(
            device,
            "no AF_PACKET socket of this process is bound to {iface}: \
             frames dropped on its receive ring will not be counted"
        ),
    }
    found
}

/// An epoll instance of the queue's own with its RX interrupt in it
/// (`rte_eth_dev_rx_intr_ctl_q`; DPDK's callback on the event clears the
/// interrupt's eventfd when [`rte_epoll_wait`](sys::rte_epoll_wait) reports
/// it). None, with a warning, if either step fails.
fn register_rx_interrupt(port: &PortShared, queue_id: u16) -> Option<OwnedFd> {
    // SAFETY: plain system call; a non-negative result is a new descriptor we own.
    let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if raw < 0 {
        tracing::warn!(port = %port.name, queue = queue_id, "epoll_create1: {}", std::io::Error::last_os_error());
        return None;
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let epfd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: started port with RX interrupts configured, valid queue, a
    // valid epoll descriptor; the data pointer is unused (null).
    let ret = unsafe {
        sys::rte_eth_dev_rx_intr_ctl_q(
            port.port_id,
            queue_id,
            epfd.as_raw_fd(),
            sys::RTE_INTR_EVENT_ADD as i32,
            std::ptr::null_mut(),
        )
    };
    if ret < 0 {
        tracing::warn!(port = %port.name, queue = queue_id, "rte_eth_dev_rx_intr_ctl_q: error {ret}; this queue backs off instead");
        return None;
    }
    Some(epfd)
}

impl Drop for DpdkQueue {
    fn drop(&mut self) {
        if let Some(epfd) = &self.rx_intr {
            // SAFETY: the registration made in new(), on the same port and queue.
            unsafe {
                sys::rte_eth_dev_rx_intr_ctl_q(
                    self.port_id,
                    self.queue_id,
                    epfd.as_raw_fd(),
                    sys::RTE_INTR_EVENT_DEL as i32,
                    std::ptr::null_mut(),
                )
            };
        }
        self.port.release(self.queue_id);
    }
}

impl std::fmt::Debug for DpdkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkQueue")
            .field("port", &self.port.name)
            .field("port_id", &self.port_id)
            .field("queue_id", &self.queue_id)
            .finish()
    }
}

impl PortQueue for DpdkQueue {
    type Buf = Mbuf;

    /// `rte_eth_rx_burst` straight into `out`'s spare capacity.
    fn rx_burst(&mut self, out: &mut Burst<Mbuf>) -> usize {
        let have = out.len();
        // The burst capacity (32) always fits the u16 count.
        let room = (out.capacity() - have) as u16;
        if room == 0 {
            return 0;
        }
        // SAFETY: `out`'s buffer has `room` unused slots after `have`; Mbuf is
        // repr(transparent) over NonNull<rte_mbuf>, so a slot holds exactly a
        // `*mut rte_mbuf`. The PMD writes at most `room` non-null pointers to
        // mbufs it hands over to us, and returns how many.
        let slots = unsafe { out.as_mut_ptr().add(have).cast::<*mut sys::rte_mbuf>() };
        // SAFETY: see above; this handle is the queue's only user.
        let n =
            usize::from(unsafe { sys::rte_eth_rx_burst(self.port_id, self.queue_id, slots, room) });
        let mut kept = n;
        for i in 0..n {
            // SAFETY: the PMD filled slots 0..n with valid mbufs.
            if unsafe { (**slots.add(i)).nb_segs } != 1 {
                // SAFETY: slots 0..n hold owned, valid mbufs.
                kept = unsafe { self.linearize_chains(slots, n) };
                break;
            }
        }
        // SAFETY: slots have..have+kept now hold owned, single-segment mbufs.
        unsafe { out.set_len(have + kept) };
        kept
    }

    /// `rte_eth_tx_burst` from `bufs`'s own array; the mbufs the PMD did not
    /// take are freed in one `rte_pktmbuf_free_bulk`.
    fn tx_burst(&mut self, bufs: &mut Burst<Mbuf>) -> usize {
        let n = bufs.len();
        if n == 0 {
            return 0;
        }
        let pkts = bufs.as_mut_ptr().cast::<*mut sys::rte_mbuf>();
        // SAFETY: ownership of all n mbufs moves out of `bufs` first (length 0,
        // so none is freed twice); the array stays valid as ArrayVec storage.
        // Mbuf is repr(transparent), so it is an array of `*mut rte_mbuf`.
        unsafe { bufs.set_len(0) };
        // SAFETY: n <= 32 valid mbufs; this handle is the queue's only user.
        let sent = usize::from(unsafe {
            sys::rte_eth_tx_burst(self.port_id, self.queue_id, pkts, n as u16)
        });
        if sent < n {
            // SAFETY: the PMD took the first `sent`; the rest are still ours to free.
            unsafe { sys::rte_pktmbuf_free_bulk(pkts.add(sent), (n - sent) as u32) };
        }
        sent
    }

    /// `rte_pktmbuf_alloc` from the port's pool.
    fn alloc(&mut self) -> Option<Mbuf> {
        // SAFETY: the pool lives as long as self.port.
        let m = NonNull::new(unsafe { sys::rte_pktmbuf_alloc(self.pool.as_ptr()) })?;
        // SAFETY: a fresh single-segment mbuf, refcnt 1, owned by nobody else;
        // its pool outlives it unless the caller keeps it past the port (then
        // the pool is deliberately leaked, see DpdkPort).
        Some(unsafe { Mbuf::from_raw(m) })
    }

    /// The queue's epoll instance, readable once its RX interrupt fired
    /// (after [`arm_wait`](PortQueue::arm_wait)).
    fn wait_fd(&self) -> Option<RawFd> {
        self.rx_intr.as_ref().map(|fd| fd.as_raw_fd())
    }

    /// `rte_eth_dev_rx_intr_enable`: the next frame raises the interrupt.
    /// A frame that came between the last empty poll and this call may not
    /// (the PMD decides); the worker's sleep is at most 1 ms for that.
    fn arm_wait(&mut self) {
        if self.rx_intr.is_some() {
            // SAFETY: valid port and queue with RX interrupts; this handle
            // is the queue's only user.
            unsafe { sys::rte_eth_dev_rx_intr_enable(self.port_id, self.queue_id) };
        }
    }

    /// Clears what fired (DPDK's callback reads the interrupt's eventfd
    /// inside `rte_epoll_wait`, timeout 0) and turns the interrupt off:
    /// back to polling.
    fn disarm_wait(&mut self) {
        let Some(epfd) = &self.rx_intr else { return };
        let mut events = [sys::rte_epoll_event::default(); 2];
        // SAFETY: a valid epoll descriptor and an array of 2 events; timeout
        // 0 never blocks.
        unsafe { sys::rte_epoll_wait(epfd.as_raw_fd(), events.as_mut_ptr(), 2, 0) };
        // SAFETY: as in arm_wait.
        unsafe { sys::rte_eth_dev_rx_intr_disable(self.port_id, self.queue_id) };
    }

    /// Queue 0 reports the port's drop counters (`rte_eth_stats`: the
    /// device counts per port, not per queue); the others nothing.
    fn host_drops(&mut self) -> Option<HostDropCounts> {
        if self.queue_id != 0 {
            return None;
        }
        let mut st = sys::rte_eth_stats::default();
        // SAFETY: a valid port id (the port outlives its queues) and a
        // valid out-pointer; rte_eth_stats_get may run on any lcore.
        let ret = unsafe { sys::rte_eth_stats_get(self.port_id, &mut st) };
        if ret < 0 {
            return None;
        }
        let mut c = [0u64; HostDrop::COUNT];
        c[HostDrop::NicRxMissed as usize] = st.imissed;
        c[HostDrop::NicRxErrors as usize] = st.ierrors;
        c[HostDrop::NicRxNoBuffer as usize] = st.rx_nombuf;
        c[HostDrop::NicTxErrors as usize] = st.oerrors;
        if let Some(netdev) = &mut self.netdev {
            netdev.add_to(&mut c);
        }
        if let Some(sockets) = &mut self.packet_socket {
            c[HostDrop::PacketRxDropped as usize] = sockets.dropped();
        }
        Some(c)
    }
}
