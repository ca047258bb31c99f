//! In-process ring ports for tests and benches: a net_ring ethdev built with
//! `rte_eth_from_rings` on two `rte_ring`s per queue. The test side injects
//! frames into the port's RX rings and drains what the port sent from its TX
//! rings; the port side is an ordinary [`DpdkPort`].

use std::ffi::{c_void, CString};
use std::ptr::NonNull;
use std::sync::Arc;

use scistream_sys::dpdk as sys;

use super::eal::{control_lock, Eal};
use super::error::{errno_text, rte_errno, DpdkError};
use super::mbuf::Mbuf;
use super::names::{next_seq, object_name, OBJECT_NAME_MAX};
use super::port::{DpdkPort, DpdkPortConfig, Hotplug, PortShared, Teardown};
use crate::backend::{PacketBuf, BURST};

/// `RING_F_EXACT_SZ`: the ring holds exactly the requested count.
const RING_F_EXACT_SZ: u32 = 0x0004;
/// Longest `name` part of the net_ring ethdev ("net_ring_" + name must fit 32 bytes).
const ETHDEV_TAIL_MAX: usize = 31 - "net_ring_".len();

/// Settings for a [`RingPort`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingPortConfig {
    /// Our name for the port (made unique for the ethdev, ring and pool names).
    pub name: String,
    /// Queue pairs (1 to 16).
    pub queues: u16,
    /// IP MTU; sizes the mbufs as for any port.
    pub mtu: u16,
    /// Capacity of each RX and TX ring, in frames (exact, not rounded).
    pub ring_size: u32,
    /// Mbufs in the port's pool.
    pub mempool_size: u32,
    /// Per-lcore mempool cache size.
    pub mempool_cache: u32,
    /// The port's MAC address (net_ring itself has none).
    pub mac: [u8; 6],
}

impl RingPortConfig {
    /// MTU 1500, rings of 1024 frames, a pool that can fill every ring, and
    /// a locally administered MAC 02:72:69:6e:xx:xx unique in the process.
    pub fn new(name: impl Into<String>, queues: u16) -> Self {
        let ring_size = 1024;
        let [.., hi, lo] = next_seq().to_be_bytes();
        RingPortConfig {
            name: name.into(),
            queues,
            mtu: 1500,
            ring_size,
            mempool_size: 2 * ring_size * u32::from(queues.max(1)) + 1024,
            mempool_cache: 64,
            mac: [0x02, b'r', b'i', b'n', hi, lo],
        }
    }
}

/// The rings of a ring port. Dropped only after the port is closed: frees
/// the mbufs still queued in them, then the rings.
struct Rings {
    rx: Vec<NonNull<sys::rte_ring>>,
    tx: Vec<NonNull<sys::rte_ring>>,
}

// SAFETY: rte_rings created with default flags are multi-producer and
// multi-consumer, safe to use from any thread.
unsafe impl Send for Rings {}
// SAFETY: as above.
unsafe impl Sync for Rings {}

impl Drop for Rings {
    fn drop(&mut self) {
        for r in self.rx.iter().chain(&self.tx) {
            drain_ring(*r, drop);
            // SAFETY: the ring was created by us, the port that used it is
            // closed, and no other handle to it remains (we are its last owner).
            unsafe { sys::rte_ring_free(r.as_ptr()) };
        }
    }
}

/// Dequeues everything in `ring`, handing each mbuf to `f`.
fn drain_ring(ring: NonNull<sys::rte_ring>, mut f: impl FnMut(Mbuf)) {
    let mut objs = [std::ptr::null_mut::<c_void>(); BURST];
    loop {
        // SAFETY: valid ring; objs has room for BURST pointers.
        let n = unsafe {
            sys::rte_ring_dequeue_burst(
                ring.as_ptr(),
                objs.as_mut_ptr(),
                BURST as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        for &o in &objs[..n] {
            if let Some(m) = NonNull::new(o.cast::<sys::rte_mbuf>()) {
                // SAFETY: the rings carry only mbufs we or the port enqueued,
                // each owned by the ring until dequeued.
                f(unsafe { Mbuf::from_raw(m) });
            }
        }
        if n < BURST {
            return;
        }
    }
}

/// A DPDK port built on `rte_ring`s with `rte_eth_from_rings`: the test
/// injects frames into the port's RX ring and drains what the port
/// transmitted from its TX ring. Queue *i* has its own pair of rings.
pub struct RingPort {
    rings: Arc<Rings>,
    port: Arc<PortShared>,
}

impl std::fmt::Debug for RingPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingPort")
            .field("name", &self.port.name)
            .field("ethdev", &self.port.ethdev)
            .field("queues", &self.rings.rx.len())
            .finish()
    }
}

impl RingPort {
    /// A ring port with [`RingPortConfig::new`]'s defaults. The returned
    /// [`DpdkPort`] is configured and started (through `from_port_id`).
    pub fn new(eal: &Eal, name: &str, queues: u16) -> Result<(RingPort, DpdkPort), DpdkError> {
        Self::with_config(eal, &RingPortConfig::new(name, queues))
    }

    /// A ring port as `cfg` says.
    pub fn with_config(eal: &Eal, cfg: &RingPortConfig) -> Result<(RingPort, DpdkPort), DpdkError> {
        let bad = |reason: String| DpdkError::Config {
            port: cfg.name.clone(),
            reason,
        };
        if cfg.queues == 0 || u32::from(cfg.queues) > sys::RTE_PMD_RING_MAX_RX_RINGS {
            return Err(bad(format!(
                "a ring port has 1 to {} queues, not {}",
                sys::RTE_PMD_RING_MAX_RX_RINGS,
                cfg.queues
            )));
        }
        if cfg.ring_size == 0 {
            return Err(bad("the ring size is 0".into()));
        }
        let desc = u16::try_from(cfg.ring_size).unwrap_or(u16::MAX);
        let seq = next_seq();
        let tail = object_name("r", seq, &cfg.name, ETHDEV_TAIL_MAX);
        let ethdev = format!("net_ring_{tail}");
        let port_cfg = DpdkPortConfig {
            name: cfg.name.clone(),
            device: ethdev.clone(),
            queues: cfg.queues,
            mtu: cfg.mtu,
            rx_desc: desc,
            tx_desc: desc,
            mempool_size: cfg.mempool_size,
            mempool_cache: cfg.mempool_cache,
            rx_interrupts: false,
        };
        port_cfg.validate()?;

        let _guard = control_lock();
        let mut rings = Rings {
            rx: Vec::new(),
            tx: Vec::new(),
        };
        for q in 0..cfg.queues {
            rings
                .rx
                .push(create_ring(cfg, &format!("rx{q}r"), seq, cfg.ring_size)?);
            rings
                .tx
                .push(create_ring(cfg, &format!("tx{q}r"), seq, cfg.ring_size)?);
        }
        let rings = Arc::new(rings);
        let c_tail = CString::new(tail).expect("object names have no NUL");
        let n = u32::from(cfg.queues);
        // SAFETY: valid name; the ring arrays hold n valid rings each (NonNull
        // has the layout of a raw pointer), and `rings` keeps them alive until
        // the port is closed (Teardown keep-alive). Control lock held.
        let ret = unsafe {
            sys::rte_eth_from_rings(
                c_tail.as_ptr(),
                rings.rx.as_ptr().cast::<*mut sys::rte_ring>(),
                n,
                rings.tx.as_ptr().cast::<*mut sys::rte_ring>(),
                n,
                sys::rte_socket_id(),
            )
        };
        let Ok(port_id) = u16::try_from(ret) else {
            let errno = rte_errno();
            return Err(DpdkError::Device {
                port: cfg.name.clone(),
                device: ethdev,
                op: "rte_eth_from_rings",
                errno,
                reason: errno_text(errno),
            });
        };
        let hotplug = Hotplug::Vdev(CString::new(ethdev).expect("object names have no NUL"));
        let td = Teardown::new(port_id, cfg.name.clone(), hotplug)
            .with_keep_alive(Box::new(Arc::clone(&rings)));
        let port = DpdkPort::configure_locked(eal, port_id, &port_cfg, td)?;
        set_mac(port_id, &cfg.name, cfg.mac);
        Ok((
            RingPort {
                rings,
                port: Arc::clone(port.shared()),
            },
            port,
        ))
    }

    /// The net_ring ethdev's name.
    pub fn ethdev(&self) -> &str {
        &self.port.ethdev
    }

    /// Copies `frame` into a fresh mbuf of the port's pool and enqueues it on
    /// the RX ring of `queue`, for the port's `rx_burst` to receive.
    pub fn inject(&self, queue: u16, frame: &[u8]) -> Result<(), DpdkError> {
        let port = || self.port.name.clone();
        let ring = *self
            .rings
            .rx
            .get(usize::from(queue))
            .ok_or_else(|| DpdkError::Queue {
                port: port(),
                queue,
                reason: "no such queue",
            })?;
        // SAFETY: the pool lives as long as self.port.
        let m = NonNull::new(unsafe { sys::rte_pktmbuf_alloc(self.port.pool.as_ptr()) })
            .ok_or_else(|| DpdkError::PoolExhausted { port: port() })?;
        // SAFETY: a fresh mbuf, refcnt 1, ours alone; its pool outlives it.
        let mut mbuf = unsafe { Mbuf::from_raw(m) };
        if !mbuf.append(frame.len()) {
            return Err(DpdkError::FrameTooLarge {
                port: port(),
                len: frame.len(),
                room: mbuf.tailroom(),
            });
        }
        mbuf.data_mut().copy_from_slice(frame);
        let raw = mbuf.into_raw();
        // SAFETY: valid ring; on success the ring owns the mbuf.
        if unsafe { sys::rte_ring_enqueue(ring.as_ptr(), raw.as_ptr().cast()) } != 0 {
            // SAFETY: not enqueued, so still ours; this frees it.
            drop(unsafe { Mbuf::from_raw(raw) });
            return Err(DpdkError::RingFull {
                port: port(),
                queue,
            });
        }
        Ok(())
    }

    /// Dequeues everything the port transmitted on `queue`, copies the bytes
    /// out and frees the mbufs. Empty for a queue that does not exist.
    pub fn drain(&self, queue: u16) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if let Some(&ring) = self.rings.tx.get(usize::from(queue)) {
            drain_ring(ring, |m| out.push(frame_bytes(&m)));
        }
        out
    }

    /// Frames waiting in the RX ring of `queue` (injected, not yet received).
    pub fn rx_pending(&self, queue: u16) -> u32 {
        // SAFETY: valid ring.
        self.rings
            .rx
            .get(usize::from(queue))
            .map_or(0, |r| unsafe { sys::rte_ring_count(r.as_ptr()) })
    }

    /// Frames waiting in the TX ring of `queue` (transmitted, not yet drained).
    pub fn tx_pending(&self, queue: u16) -> u32 {
        // SAFETY: valid ring.
        self.rings
            .tx
            .get(usize::from(queue))
            .map_or(0, |r| unsafe { sys::rte_ring_count(r.as_ptr()) })
    }
}

/// Gives the port `mac`. net_ring has no MAC setter and starts with the
/// all-zero address in its single slot; that zero slot counts as free, so
/// `rte_eth_dev_mac_addr_add` fills it, making `mac` the default address.
fn set_mac(port_id: u16, name: &str, mac: [u8; 6]) {
    let mut addr = sys::rte_ether_addr { addr_bytes: mac };
    // SAFETY: valid, started port; addr is a valid rte_ether_addr. Control lock held.
    let mut ret = unsafe { sys::rte_eth_dev_default_mac_addr_set(port_id, &mut addr) };
    if ret == -libc::ENOTSUP {
        // SAFETY: as above.
        ret = unsafe { sys::rte_eth_dev_mac_addr_add(port_id, &mut addr, 0) };
    }
    if ret < 0 {
        tracing::warn!(port = %name, "cannot set the ring port's MAC: {}", errno_text(ret));
    }
}

/// All bytes of a frame, following the segment chain if there is one.
fn frame_bytes(m: &Mbuf) -> Vec<u8> {
    if m.segments() == 1 {
        return m.data().to_vec();
    }
    let mut out = Vec::new();
    let mut seg = m.as_ptr();
    while !seg.is_null() {
        // SAFETY: seg is a segment of the chain m owns; its data_len bytes at
        // mtod lie in its buffer. `next` is NULL after the last segment.
        unsafe {
            let len = usize::from((*seg).data_len);
            out.extend_from_slice(std::slice::from_raw_parts(
                sys::scistream_pktmbuf_mtod(seg),
                len,
            ));
            seg = (*seg).next;
        }
    }
    out
}

/// Creates one ring of exactly `size` slots for port `cfg.name`.
fn create_ring(
    cfg: &RingPortConfig,
    tag: &str,
    seq: u32,
    size: u32,
) -> Result<NonNull<sys::rte_ring>, DpdkError> {
    let name = object_name(tag, seq, &cfg.name, OBJECT_NAME_MAX);
    let c_name = CString::new(name.as_str()).expect("object names have no NUL");
    // SAFETY: valid name; DPDK returns NULL with rte_errno on failure.
    let r = unsafe {
        sys::rte_ring_create(
            c_name.as_ptr(),
            size,
            sys::rte_socket_id() as i32,
            RING_F_EXACT_SZ,
        )
    };
    NonNull::new(r).ok_or_else(|| {
        let errno = rte_errno();
        DpdkError::Ring {
            port: cfg.name.clone(),
            ring: name,
            errno,
            reason: errno_text(errno),
        }
    })
}
