//! [`DpdkQueue`]: one RX/TX queue pair of a [`super::DpdkPort`], owned by one
//! worker. Bursts go straight between the worker's [`Burst`] and the PMD.

use std::ptr::NonNull;
use std::sync::Arc;

use scistream_sys::dpdk as sys;

use super::mbuf::Mbuf;
use super::port::PortShared;
use crate::backend::{Burst, PortQueue};
use crate::host_drops::{HostDrop, HostDropCounts};

/// An owned handle for one queue pair; move it into the worker thread that
/// polls it. It keeps the port open; dropping it gives the queue back.
pub struct DpdkQueue {
    port_id: u16,
    queue_id: u16,
    pool: NonNull<sys::rte_mempool>,
    rx_chain_drops: u64,
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
        DpdkQueue {
            port_id: port.port_id,
            queue_id,
            pool: port.pool,
            rx_chain_drops: 0,
            port,
        }
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

impl Drop for DpdkQueue {
    fn drop(&mut self) {
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
        Some(c)
    }
}
