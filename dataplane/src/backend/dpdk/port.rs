//! [`DpdkPort`]: one ethdev (attached by device string or port id),
//! configured with one RX/TX queue pair per worker, its own mbuf pool, and
//! stopped and closed when the last handle to it goes.

use std::ffi::{c_char, CStr, CString};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scistream_sys::dpdk as sys;

use super::eal::{control_lock, Eal};
use super::error::{errno_text, rte_errno, DpdkError};
use super::names::{next_seq, object_name, OBJECT_NAME_MAX};
use super::queue::DpdkQueue;
use crate::backend::{PortInfo, BURST};

/// Bytes on top of the IP MTU for the Ethernet header and one VLAN tag.
pub const L2_OVERHEAD: u16 = 18;
/// Bytes kept free after the largest frame in every mbuf (ESP trailer, ICV).
pub const TAILROOM: u16 = 64;

// RSS hash types (RTE_ETH_RSS_IP/UDP/TCP are function-like macros upstream).
const RSS_IPV4: u64 = 1 << 2;
const RSS_FRAG_IPV4: u64 = 1 << 3;
const RSS_NONFRAG_IPV4_TCP: u64 = 1 << 4;
const RSS_NONFRAG_IPV4_UDP: u64 = 1 << 5;
const RSS_NONFRAG_IPV4_OTHER: u64 = 1 << 7;
const RSS_IPV6: u64 = 1 << 8;
const RSS_FRAG_IPV6: u64 = 1 << 9;
const RSS_NONFRAG_IPV6_TCP: u64 = 1 << 10;
const RSS_NONFRAG_IPV6_UDP: u64 = 1 << 11;
const RSS_NONFRAG_IPV6_OTHER: u64 = 1 << 13;
const RSS_IPV6_EX: u64 = 1 << 15;
const RSS_IPV6_TCP_EX: u64 = 1 << 16;
const RSS_IPV6_UDP_EX: u64 = 1 << 17;
/// `RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_TCP`.
const RSS_WANTED: u64 = RSS_IPV4
    | RSS_FRAG_IPV4
    | RSS_NONFRAG_IPV4_OTHER
    | RSS_IPV6
    | RSS_FRAG_IPV6
    | RSS_NONFRAG_IPV6_OTHER
    | RSS_IPV6_EX
    | RSS_NONFRAG_IPV4_UDP
    | RSS_NONFRAG_IPV6_UDP
    | RSS_IPV6_UDP_EX
    | RSS_NONFRAG_IPV4_TCP
    | RSS_NONFRAG_IPV6_TCP
    | RSS_IPV6_TCP_EX;

/// `SOCKET_ID_ANY`.
const SOCKET_ID_ANY: i32 = -1;

/// Settings for one DPDK port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkPortConfig {
    /// Our name for the port ("lan", "wan"); used in pool names and errors.
    pub name: String,
    /// Which device: a vdev string (`net_af_packet0,iface=lan0`, hot-plugged
    /// with `rte_vdev_init`), a PCI address (`0000:03:00.0`, probed with
    /// `rte_dev_probe` unless already present), or the name of an ethdev that
    /// already exists (e.g. one given to EAL with `--vdev`).
    pub device: String,
    /// RX/TX queue pairs, one per worker. With more than one, RSS spreads
    /// flows over IP/UDP/TCP hashes (as far as the PMD supports them).
    pub queues: u16,
    /// IP MTU. Every mbuf holds `mtu + 18` bytes of frame plus
    /// `RTE_PKTMBUF_HEADROOM` before and [`TAILROOM`] after it, in one segment.
    pub mtu: u16,
    /// RX descriptors per queue (0: the PMD's default); clamped to the PMD's limits.
    pub rx_desc: u16,
    /// TX descriptors per queue (0: the PMD's default); clamped to the PMD's limits.
    pub tx_desc: u16,
    /// Mbufs in the port's pool.
    pub mempool_size: u32,
    /// Per-lcore mempool cache size (at most 512 and at most `mempool_size / 1.5`).
    pub mempool_cache: u32,
    /// Ask the PMD for RX queue interrupts (`intr_conf.rxq`), for workers in
    /// `poll_mode = "adaptive"`, which then sleep until a frame arrives (as
    /// DPDK's l3fwd-power does). A PMD that refuses them at configure time is
    /// configured without; one that ignores them reports no interrupt
    /// descriptor. Either way [`DpdkPort::rx_interrupts`] says false and
    /// the worker backs off with short sleeps instead.
    pub rx_interrupts: bool,
}

impl DpdkPortConfig {
    /// A configuration with common defaults: 1 queue, MTU 1500, 1024
    /// descriptors each way, 8191 mbufs with a cache of 256.
    pub fn new(name: impl Into<String>, device: impl Into<String>) -> Self {
        DpdkPortConfig {
            name: name.into(),
            device: device.into(),
            queues: 1,
            mtu: 1500,
            rx_desc: 1024,
            tx_desc: 1024,
            mempool_size: 8191,
            mempool_cache: 256,
            rx_interrupts: false,
        }
    }

    /// The mbuf data room this MTU needs on a PMD that receives at
    /// `RTE_PKTMBUF_HEADROOM` (headroom + frame + tailroom, at least DPDK's
    /// default 2176), or None if it exceeds a 16-bit mbuf. Some PMDs need
    /// more (net_af_xdp: see [`AF_XDP_RX_HEADROOM`]).
    pub fn data_room(&self) -> Option<u16> {
        data_room_for(self.mtu, 0)
    }

    /// Checks what can be checked without a device.
    pub(crate) fn validate(&self) -> Result<(), DpdkError> {
        let bad = |reason: String| DpdkError::Config {
            port: self.name.clone(),
            reason,
        };
        if self.name.is_empty() {
            return Err(bad("the port name is empty".into()));
        }
        if self.queues == 0 {
            return Err(bad("at least one queue is needed".into()));
        }
        if u32::from(self.mtu) < sys::RTE_ETHER_MIN_MTU {
            return Err(bad(format!(
                "MTU {} is below the minimum {}",
                self.mtu,
                sys::RTE_ETHER_MIN_MTU
            )));
        }
        if self.data_room().is_none() {
            return Err(bad(format!(
                "MTU {} does not fit a single-segment mbuf (64 KiB data room)",
                self.mtu
            )));
        }
        if self.mempool_size == 0 {
            return Err(bad("the mempool size is 0".into()));
        }
        // DPDK's rule: cache <= RTE_MEMPOOL_CACHE_MAX_SIZE and 1.5 * cache <= size.
        if self.mempool_cache > sys::RTE_MEMPOOL_CACHE_MAX_SIZE
            || u64::from(self.mempool_cache) * 3 / 2 > u64::from(self.mempool_size)
        {
            return Err(bad(format!(
                "mempool cache {} is too large (at most {} and at most 2/3 of the {} mbufs)",
                self.mempool_cache,
                sys::RTE_MEMPOOL_CACHE_MAX_SIZE,
                self.mempool_size
            )));
        }
        Ok(())
    }
}

/// Extra headroom net_af_xdp leaves in every received mbuf: the kernel writes
/// the frame after `XDP_PACKET_HEADROOM` (256) bytes of the UMEM frame, and
/// the PMD uses mbufs as UMEM frames.
pub const AF_XDP_RX_HEADROOM: u32 = 256;
/// net_af_xdp puts each mbuf's whole mempool object (header, `rte_mbuf`,
/// data room, padding) into one UMEM chunk, which the kernel limits to a 4 KiB page.
const AF_XDP_CHUNK_MAX: u32 = 4096;

/// Bytes one mbuf with `data_room` takes in a pktmbuf pool (flags 0), as
/// `rte_mempool_calc_obj_size` computes it: header, mbuf, data, padding.
fn mbuf_object_size(data_room: u16) -> u32 {
    let elt = std::mem::size_of::<sys::rte_mbuf>() as u32 + u32::from(data_room);
    // SAFETY: a pure computation; a NULL objsz pointer is allowed.
    unsafe { sys::rte_mempool_calc_obj_size(elt, 0, std::ptr::null_mut()) }
}

/// Whether net_af_xdp can use mbufs sized for `mtu` (one UMEM chunk each).
fn fits_af_xdp(mtu: u16) -> bool {
    data_room_for(mtu, AF_XDP_RX_HEADROOM)
        .is_some_and(|room| mbuf_object_size(room) <= AF_XDP_CHUNK_MAX)
}

/// Data room for `mtu` with `extra` bytes of PMD headroom on top of
/// `RTE_PKTMBUF_HEADROOM`; None if it exceeds a 16-bit mbuf.
fn data_room_for(mtu: u16, extra: u32) -> Option<u16> {
    let need = sys::RTE_PKTMBUF_HEADROOM
        + extra
        + u32::from(mtu)
        + u32::from(L2_OVERHEAD)
        + u32::from(TAILROOM);
    u16::try_from(need.max(sys::RTE_MBUF_DEFAULT_BUF_SIZE)).ok()
}

/// Hardware counters of a port (`rte_eth_stats_get`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortHwStats {
    /// Frames received.
    pub ipackets: u64,
    /// Frames sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Frames the hardware dropped because RX queues were full.
    pub imissed: u64,
    /// Erroneous frames received.
    pub ierrors: u64,
    /// Frames that failed to send.
    pub oerrors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// A device this backend brought into existence, to remove on close.
pub(crate) enum Hotplug {
    /// The ethdev existed before (EAL `--vdev`, PCI probed at start, a port id).
    None,
    /// A vdev created with `rte_vdev_init`; removed with `rte_vdev_uninit`.
    Vdev(CString),
    /// A device probed with `rte_dev_probe`; removed with `rte_dev_remove`.
    Probed(NonNull<sys::rte_device>),
}

/// What must be undone for a port, in order: stop, close, unplug, drop the
/// objects the port refers to (rings), free the pool.
pub(crate) struct Teardown {
    port_id: u16,
    label: String,
    started: bool,
    close: bool,
    hotplug: Hotplug,
    keep_alive: Option<Box<dyn Send + Sync>>,
    pool: Option<NonNull<sys::rte_mempool>>,
}

impl Teardown {
    /// Nothing to undo yet for `port_id` but the hot-plug, if any. `label` names it in logs.
    pub(crate) fn new(port_id: u16, label: String, hotplug: Hotplug) -> Self {
        Teardown {
            port_id,
            label,
            started: false,
            close: false,
            hotplug,
            keep_alive: None,
            pool: None,
        }
    }

    /// Keeps `objects` (e.g. the rings a net_ring port uses) alive until the
    /// port is closed, and drops them before the pool is freed.
    pub(crate) fn with_keep_alive(mut self, objects: Box<dyn Send + Sync>) -> Self {
        self.keep_alive = Some(objects);
        self
    }

    /// Undoes everything recorded so far. The caller holds the control lock.
    fn run(&mut self) {
        let port = self.port_id;
        if std::mem::take(&mut self.started) {
            // SAFETY: the port was started by us; no queue handle is left
            // (they hold the Arc whose drop brought us here, or never existed).
            let ret = unsafe { sys::rte_eth_dev_stop(port) };
            if ret < 0 {
                tracing::warn!(port = %self.label, "rte_eth_dev_stop: {}", errno_text(ret));
            }
        }
        if std::mem::take(&mut self.close) {
            // SAFETY: stopped above; closing releases the PMD's queues and mbufs.
            let ret = unsafe { sys::rte_eth_dev_close(port) };
            if ret < 0 {
                tracing::warn!(port = %self.label, "rte_eth_dev_close: {}", errno_text(ret));
            }
        }
        match std::mem::replace(&mut self.hotplug, Hotplug::None) {
            Hotplug::None => {}
            Hotplug::Vdev(name) => {
                // SAFETY: name is a valid C string; the vdev was created by us.
                let ret = unsafe { sys::rte_vdev_uninit(name.as_ptr()) };
                if ret < 0 {
                    tracing::warn!(port = %self.label, "rte_vdev_uninit({name:?}): {}", errno_text(ret));
                }
            }
            Hotplug::Probed(dev) => {
                // SAFETY: dev is the rte_device we probed; it stays on its bus until removed.
                let ret = unsafe { sys::rte_dev_remove(dev.as_ptr()) };
                if ret < 0 {
                    tracing::warn!(port = %self.label, "rte_dev_remove: {}", errno_text(ret));
                }
            }
        }
        drop(self.keep_alive.take());
        if let Some(pool) = self.pool.take() {
            // SAFETY: the pool is valid until freed here; counting is safe at any time.
            let in_use = unsafe { sys::rte_mempool_in_use_count(pool.as_ptr()) };
            if in_use == 0 {
                // SAFETY: no mbuf of the pool is held anywhere (in_use == 0),
                // the port that used it is closed, and nothing else refers to it.
                unsafe { sys::rte_mempool_free(pool.as_ptr()) };
            } else {
                tracing::warn!(
                    port = %self.label,
                    in_use,
                    "mbufs of the port's pool are still held; leaving the pool allocated"
                );
            }
        }
    }
}

/// State shared by a [`DpdkPort`], its [`DpdkQueue`]s and a ring port's
/// test handle; the port is torn down when the last of them goes.
pub(crate) struct PortShared {
    pub(crate) port_id: u16,
    pub(crate) name: String,
    pub(crate) device: String,
    pub(crate) ethdev: String,
    pub(crate) driver: String,
    pub(crate) queues: u16,
    pub(crate) pool: NonNull<sys::rte_mempool>,
    /// RX queue interrupts are configured and every queue has a descriptor.
    pub(crate) rx_interrupts: bool,
    claimed: Box<[AtomicBool]>,
    teardown: Teardown,
}

// SAFETY: the raw pointers are DPDK objects that are safe to use from any
// thread for what we do with them: mempool get/put (multi-producer,
// multi-consumer), and per-queue ethdev calls, which `claimed` restricts to
// one DpdkQueue per queue. Control calls are serialised by the control lock.
unsafe impl Send for PortShared {}
// SAFETY: as above; shared access only reads immutable fields or goes through atomics.
unsafe impl Sync for PortShared {}

impl PortShared {
    /// Marks queue `q` as handed out; false if it was already.
    fn claim(&self, q: u16) -> bool {
        !self.claimed[usize::from(q)].swap(true, Ordering::AcqRel)
    }

    /// Gives queue `q` back (its DpdkQueue was dropped).
    pub(crate) fn release(&self, q: u16) {
        self.claimed[usize::from(q)].store(false, Ordering::Release);
    }
}

impl Drop for PortShared {
    fn drop(&mut self) {
        let _guard = control_lock();
        tracing::debug!(port = %self.name, ethdev = %self.ethdev, "closing DPDK port");
        self.teardown.run();
    }
}

/// An ethdev configured and started by us, owning its mbuf pool. Dropping
/// the port (and every [`DpdkQueue`] taken from it) stops and closes it,
/// removes a device it hot-plugged, and frees the pool once no mbuf of it is
/// held any more (otherwise the pool is left allocated, with a warning).
pub struct DpdkPort {
    shared: Arc<PortShared>,
}

impl std::fmt::Debug for DpdkPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkPort")
            .field("name", &self.shared.name)
            .field("port_id", &self.shared.port_id)
            .field("ethdev", &self.shared.ethdev)
            .field("driver", &self.shared.driver)
            .field("queues", &self.shared.queues)
            .finish()
    }
}

impl DpdkPort {
    /// Attaches `cfg.device` (see [`DpdkPortConfig::device`]), then
    /// configures it: queues, pool, MTU, start, promiscuous mode.
    pub fn open(eal: &Eal, cfg: &DpdkPortConfig) -> Result<DpdkPort, DpdkError> {
        cfg.validate()?;
        let _guard = control_lock();
        let (port_id, hotplug) = attach(cfg)?;
        let td = Teardown::new(port_id, cfg.name.clone(), hotplug);
        Self::configure_locked(eal, port_id, cfg, td)
    }

    /// Configures and starts the existing ethdev `port_id` as [`DpdkPort::open`]
    /// does; `cfg.device` only labels it in errors (the ethdev name if empty).
    pub fn from_port_id(
        eal: &Eal,
        port_id: u16,
        cfg: &DpdkPortConfig,
    ) -> Result<DpdkPort, DpdkError> {
        cfg.validate()?;
        let _guard = control_lock();
        let td = Teardown::new(port_id, cfg.name.clone(), Hotplug::None);
        Self::configure_locked(eal, port_id, cfg, td)
    }

    /// Configures and starts `port_id`, which `td` says how to undo; on
    /// failure undoes it. The caller holds the control lock.
    pub(crate) fn configure_locked(
        _eal: &Eal,
        port_id: u16,
        cfg: &DpdkPortConfig,
        mut td: Teardown,
    ) -> Result<DpdkPort, DpdkError> {
        match bring_up(port_id, cfg, &mut td) {
            Ok(up) => {
                tracing::info!(
                    port = %cfg.name,
                    ethdev = %up.ethdev,
                    driver = %up.driver,
                    port_id,
                    queues = cfg.queues,
                    mtu = cfg.mtu,
                    rx_interrupts = up.rx_interrupts,
                    "DPDK port started"
                );
                let claimed = (0..cfg.queues).map(|_| AtomicBool::new(false)).collect();
                let device = if cfg.device.is_empty() {
                    up.ethdev.clone()
                } else {
                    cfg.device.clone()
                };
                Ok(DpdkPort {
                    shared: Arc::new(PortShared {
                        port_id,
                        name: cfg.name.clone(),
                        device,
                        ethdev: up.ethdev,
                        driver: up.driver,
                        queues: cfg.queues,
                        pool: up.pool,
                        rx_interrupts: up.rx_interrupts,
                        claimed,
                        teardown: td,
                    }),
                })
            }
            Err(e) => {
                td.run();
                Err(e)
            }
        }
    }

    /// The ethdev port id.
    pub fn port_id(&self) -> u16 {
        self.shared.port_id
    }

    /// Our name for the port.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The device string the port was opened with (the ethdev name for `from_port_id`).
    pub fn device(&self) -> &str {
        &self.shared.device
    }

    /// Number of RX/TX queue pairs.
    pub fn queues(&self) -> u16 {
        self.shared.queues
    }

    /// RX queue interrupts are on: the port was asked for them
    /// ([`DpdkPortConfig::rx_interrupts`]) and the PMD gave every queue a
    /// descriptor ([`DpdkQueue`](super::DpdkQueue)'s `wait_fd`).
    pub fn rx_interrupts(&self) -> bool {
        self.shared.rx_interrupts
    }

    /// Name, MAC, MTU, queues and driver. `name` is the ethdev name.
    pub fn info(&self) -> PortInfo {
        let s = &self.shared;
        let mut mac = sys::rte_ether_addr::default();
        // SAFETY: valid port id (we hold it open), mac is a valid out-pointer.
        let ret = unsafe { sys::rte_eth_macaddr_get(s.port_id, &mut mac) };
        if ret < 0 {
            tracing::warn!(port = %s.name, "rte_eth_macaddr_get: {}", errno_text(ret));
        }
        PortInfo {
            name: s.ethdev.clone(),
            mac: mac.addr_bytes,
            mtu: current_mtu(s.port_id).unwrap_or(0),
            queues: s.queues,
            driver: s.driver.clone(),
        }
    }

    /// Hands out queue pair `i`, to be moved into the worker that polls it.
    ///
    /// # Panics
    /// If `i >= self.queues()` or queue `i` is already held by another
    /// [`DpdkQueue`]: two handles on one DPDK queue would race inside the
    /// PMD. [`DpdkPort::try_queue`] returns an error instead.
    pub fn queue(&self, i: u16) -> DpdkQueue {
        match self.try_queue(i) {
            Ok(q) => q,
            Err(e) => panic!("{e}"),
        }
    }

    /// Hands out queue pair `i`. Each queue can be held by one [`DpdkQueue`]
    /// at a time (DPDK queues are not thread-safe); it is given back when
    /// that handle is dropped.
    pub fn try_queue(&self, i: u16) -> Result<DpdkQueue, DpdkError> {
        let s = &self.shared;
        if i >= s.queues {
            return Err(DpdkError::Queue {
                port: s.name.clone(),
                queue: i,
                reason: "no such queue",
            });
        }
        if !s.claim(i) {
            return Err(DpdkError::Queue {
                port: s.name.clone(),
                queue: i,
                reason: "already handed out",
            });
        }
        Ok(DpdkQueue::new(Arc::clone(&self.shared), i))
    }

    /// Whether the link is up now.
    pub fn link_up(&self) -> bool {
        let mut link = sys::rte_eth_link::default();
        // SAFETY: valid port id, valid out-pointer; the nowait variant does not block.
        let ret = unsafe { sys::rte_eth_link_get_nowait(self.shared.port_id, &mut link) };
        ret == 0 && u32::from(link.link_status()) == sys::RTE_ETH_LINK_UP
    }

    /// Polls the link every 10 ms until it is up or `timeout` has passed.
    pub fn wait_link_up(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.link_up() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10).min(deadline - now));
        }
    }

    /// The port's hardware counters; all zero if the PMD cannot report them.
    pub fn stats(&self) -> PortHwStats {
        let mut st = sys::rte_eth_stats::default();
        // SAFETY: valid port id, valid out-pointer.
        let ret = unsafe { sys::rte_eth_stats_get(self.shared.port_id, &mut st) };
        if ret < 0 {
            tracing::debug!(port = %self.shared.name, "rte_eth_stats_get: {}", errno_text(ret));
            return PortHwStats::default();
        }
        PortHwStats {
            ipackets: st.ipackets,
            opackets: st.opackets,
            ibytes: st.ibytes,
            obytes: st.obytes,
            imissed: st.imissed,
            ierrors: st.ierrors,
            oerrors: st.oerrors,
            rx_nombuf: st.rx_nombuf,
        }
    }

    /// Mbufs of the port's pool that are free (in the pool or a per-lcore cache).
    pub fn mempool_available(&self) -> u32 {
        // SAFETY: the pool lives as long as self.shared.
        unsafe { sys::rte_mempool_avail_count(self.shared.pool.as_ptr()) }
    }

    /// Mbufs of the port's pool that are in use (in queues, rings or held by us).
    pub fn mempool_in_use(&self) -> u32 {
        // SAFETY: the pool lives as long as self.shared.
        unsafe { sys::rte_mempool_in_use_count(self.shared.pool.as_ptr()) }
    }

    pub(crate) fn shared(&self) -> &Arc<PortShared> {
        &self.shared
    }
}

/// What [`bring_up`] learnt and made.
struct Up {
    ethdev: String,
    driver: String,
    pool: NonNull<sys::rte_mempool>,
    rx_interrupts: bool,
}

/// Configures, sets up queues and pool, sets the MTU, starts, and turns on
/// promiscuous mode, recording in `td` what to undo. Control lock held.
fn bring_up(port_id: u16, cfg: &DpdkPortConfig, td: &mut Teardown) -> Result<Up, DpdkError> {
    // SAFETY: any port id may be checked.
    if unsafe { sys::rte_eth_dev_is_valid_port(port_id) } == 0 {
        return Err(DpdkError::Device {
            port: cfg.name.clone(),
            device: cfg.device.clone(),
            op: "rte_eth_dev_is_valid_port",
            errno: libc::ENODEV,
            reason: format!("no ethdev with port id {port_id}"),
        });
    }
    let ethdev = ethdev_name(port_id);
    let device = if cfg.device.is_empty() {
        ethdev.clone()
    } else {
        cfg.device.clone()
    };
    let dev_err = |op: &'static str, ret: i32| DpdkError::Device {
        port: cfg.name.clone(),
        device: device.clone(),
        op,
        errno: ret.abs(),
        reason: errno_text(ret),
    };
    let unsupported = |reason: String| DpdkError::Unsupported {
        port: cfg.name.clone(),
        device: device.clone(),
        reason,
    };

    let mut info = sys::rte_eth_dev_info::default();
    // SAFETY: valid port id, valid out-pointer.
    let ret = unsafe { sys::rte_eth_dev_info_get(port_id, &mut info) };
    if ret < 0 {
        return Err(dev_err("rte_eth_dev_info_get", ret));
    }
    let driver = if info.driver_name.is_null() {
        String::from("unknown")
    } else {
        // SAFETY: the PMD's driver name, a static NUL-terminated string.
        unsafe { CStr::from_ptr(info.driver_name) }
            .to_string_lossy()
            .into_owned()
    };

    if cfg.queues > info.max_rx_queues || cfg.queues > info.max_tx_queues {
        return Err(unsupported(format!(
            "{} queues requested, {driver} supports {} RX and {} TX queues",
            cfg.queues, info.max_rx_queues, info.max_tx_queues
        )));
    }
    let frame = u32::from(cfg.mtu) + u32::from(L2_OVERHEAD);
    if info.max_rx_pktlen < frame {
        return Err(unsupported(format!(
            "MTU {} needs {frame}-byte frames, {driver} receives at most {} bytes",
            cfg.mtu, info.max_rx_pktlen
        )));
    }
    if cfg.mtu > info.max_mtu || cfg.mtu < info.min_mtu {
        return Err(unsupported(format!(
            "MTU {} is outside {driver}'s range {}..={}",
            cfg.mtu, info.min_mtu, info.max_mtu
        )));
    }
    let extra = if driver == "net_af_xdp" {
        AF_XDP_RX_HEADROOM
    } else {
        0
    };
    let data_room = data_room_for(cfg.mtu, extra).ok_or_else(|| {
        unsupported(format!(
            "MTU {} does not fit a single-segment mbuf with {driver}'s headroom",
            cfg.mtu
        ))
    })?;
    if driver == "net_af_xdp" && !fits_af_xdp(cfg.mtu) {
        let max = (1..cfg.mtu).rev().find(|&m| fits_af_xdp(m)).unwrap_or(0);
        return Err(unsupported(format!(
            "MTU {} is too large for net_af_xdp, which fits each mbuf into one 4 KiB UMEM frame \
             (largest MTU with {} bytes of tailroom: {max})",
            cfg.mtu, TAILROOM
        )));
    }
    let buf = u32::from(data_room) - sys::RTE_PKTMBUF_HEADROOM - extra;
    if info.min_rx_bufsize > buf {
        return Err(unsupported(format!(
            "{driver} needs RX buffers of at least {} bytes, the mbufs have {buf}",
            info.min_rx_bufsize
        )));
    }

    let mut conf = sys::rte_eth_conf::default();
    conf.rxmode.mtu = u32::from(cfg.mtu);
    if cfg.queues > 1 {
        let hf = RSS_WANTED & info.flow_type_rss_offloads;
        if hf != 0 {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = hf;
        } else {
            tracing::warn!(
                port = %cfg.name,
                %driver,
                "the PMD offers no IP/UDP/TCP RSS; it alone decides how frames spread over the {} queues",
                cfg.queues
            );
        }
    }
    td.close = true;
    let mut rxq_intr = cfg.rx_interrupts;
    conf.intr_conf.set_rxq(u32::from(rxq_intr));
    // SAFETY: valid port, not started; conf is a valid rte_eth_conf.
    let mut ret = unsafe { sys::rte_eth_dev_configure(port_id, cfg.queues, cfg.queues, &conf) };
    if ret < 0 && rxq_intr {
        // e.g. net_virtio on uio_pci_generic (no MSI-X vectors to give out).
        tracing::info!(
            port = %cfg.name,
            %driver,
            "the PMD refuses RX interrupts ({}); configured without them, adaptive workers back off",
            errno_text(ret)
        );
        rxq_intr = false;
        conf.intr_conf.set_rxq(0);
        // SAFETY: as above.
        ret = unsafe { sys::rte_eth_dev_configure(port_id, cfg.queues, cfg.queues, &conf) };
    }
    if ret < 0 {
        return Err(dev_err("rte_eth_dev_configure", ret));
    }

    let (mut nb_rx, mut nb_tx) = (cfg.rx_desc, cfg.tx_desc);
    // SAFETY: valid port, valid out-pointers.
    let ret = unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &mut nb_rx, &mut nb_tx) };
    if ret < 0 {
        return Err(dev_err("rte_eth_dev_adjust_nb_rx_tx_desc", ret));
    }
    let needed = u64::from(cfg.queues) * (u64::from(nb_rx) + u64::from(nb_tx) + BURST as u64);
    if u64::from(cfg.mempool_size) < needed {
        tracing::warn!(
            port = %cfg.name,
            mempool_size = cfg.mempool_size,
            needed,
            "the mbuf pool is smaller than the descriptor rings; RX may run out of mbufs"
        );
    }

    // SAFETY: valid port id.
    let socket = unsafe { sys::rte_eth_dev_socket_id(port_id) };
    let socket = if socket < 0 { SOCKET_ID_ANY } else { socket };
    let pool_name = object_name("mb", next_seq(), &cfg.name, OBJECT_NAME_MAX);
    let c_pool_name = CString::new(pool_name.as_str()).expect("object names have no NUL");
    // SAFETY: valid name; DPDK validates the sizes and returns NULL with rte_errno on failure.
    let pool = unsafe {
        sys::rte_pktmbuf_pool_create(
            c_pool_name.as_ptr(),
            cfg.mempool_size,
            cfg.mempool_cache,
            0,
            data_room,
            socket,
        )
    };
    let Some(pool) = NonNull::new(pool) else {
        let errno = rte_errno();
        return Err(DpdkError::Mempool {
            port: cfg.name.clone(),
            pool: pool_name,
            count: cfg.mempool_size,
            data_room,
            errno,
            reason: errno_text(errno),
        });
    };
    td.pool = Some(pool);

    // SOCKET_ID_ANY is passed to the queue setup functions as (unsigned)-1, as in C.
    let queue_socket = socket as u32;
    for q in 0..cfg.queues {
        // SAFETY: configured port, q < configured queues, default rxconf, valid pool.
        let ret = unsafe {
            sys::rte_eth_rx_queue_setup(
                port_id,
                q,
                nb_rx,
                queue_socket,
                std::ptr::null(),
                pool.as_ptr(),
            )
        };
        if ret < 0 {
            return Err(dev_err("rte_eth_rx_queue_setup", ret));
        }
        // SAFETY: configured port, q < configured queues, default txconf.
        let ret = unsafe {
            sys::rte_eth_tx_queue_setup(port_id, q, nb_tx, queue_socket, std::ptr::null())
        };
        if ret < 0 {
            return Err(dev_err("rte_eth_tx_queue_setup", ret));
        }
    }

    // SAFETY: configured port.
    let ret = unsafe { sys::rte_eth_dev_set_mtu(port_id, cfg.mtu) };
    if ret == -libc::ENOTSUP {
        // The PMD has no MTU setter; ethdev took rxmode.mtu at configure time.
        let now = current_mtu(port_id);
        if now != Some(cfg.mtu) {
            return Err(unsupported(format!(
                "{driver} cannot set MTU {} (it is {now:?})",
                cfg.mtu
            )));
        }
    } else if ret < 0 {
        return Err(dev_err("rte_eth_dev_set_mtu", ret));
    }

    // SAFETY: configured port with all queues set up.
    let ret = unsafe { sys::rte_eth_dev_start(port_id) };
    if ret < 0 {
        return Err(dev_err("rte_eth_dev_start", ret));
    }
    td.started = true;

    // SAFETY: started port.
    let ret = unsafe { sys::rte_eth_promiscuous_enable(port_id) };
    if ret == -libc::ENOTSUP {
        tracing::debug!(port = %cfg.name, %driver, "the PMD has no promiscuous mode");
    } else if ret < 0 {
        return Err(dev_err("rte_eth_promiscuous_enable", ret));
    }
    // PMDs that ignore intr_conf.rxq (net_af_packet, net_memif, net_ring,
    // ...) have no interrupt descriptor for their queues.
    let rx_interrupts = rxq_intr
        && (0..cfg.queues).all(|q| {
            // SAFETY: started port, valid queue index.
            unsafe { sys::rte_eth_dev_rx_intr_ctl_q_get_fd(port_id, q) >= 0 }
        });
    Ok(Up {
        ethdev,
        driver,
        pool,
        rx_interrupts,
    })
}

/// Finds or brings up the ethdev `cfg.device` names. Control lock held.
fn attach(cfg: &DpdkPortConfig) -> Result<(u16, Hotplug), DpdkError> {
    let (name, args) = match cfg.device.split_once(',') {
        Some((n, a)) => (n, Some(a)),
        None => (cfg.device.as_str(), None),
    };
    let nul = |_| DpdkError::Nul {
        what: "device",
        value: cfg.device.clone(),
    };
    let dev_err = |op: &'static str, ret: i32, reason: String| DpdkError::Device {
        port: cfg.name.clone(),
        device: cfg.device.clone(),
        op,
        errno: ret.abs(),
        reason,
    };
    if name.is_empty() {
        return Err(DpdkError::Config {
            port: cfg.name.clone(),
            reason: "the device string is empty".into(),
        });
    }
    if args.is_none() {
        if let Some(id) = port_by_name(name) {
            return Ok((id, Hotplug::None));
        }
    }

    if let Some(pci) = pci_name(name) {
        let devargs = CString::new(cfg.device.as_str()).map_err(nul)?;
        // SAFETY: valid devargs string; probing runs under the control lock.
        let ret = unsafe { sys::rte_dev_probe(devargs.as_ptr()) };
        if ret < 0 && ret != -libc::EEXIST {
            return Err(dev_err("rte_dev_probe", ret, errno_text(ret)));
        }
        let id = port_by_name(&pci).ok_or_else(|| DpdkError::NotFound {
            port: cfg.name.clone(),
            device: cfg.device.clone(),
            ethdev: pci.clone(),
            how: "rte_dev_probe",
        })?;
        if ret == -libc::EEXIST {
            return Ok((id, Hotplug::None));
        }
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: valid port id, valid out-pointer.
        let ok = unsafe { sys::rte_eth_dev_info_get(id, &mut info) } == 0;
        let hotplug = match NonNull::new(info.device) {
            Some(dev) if ok => Hotplug::Probed(dev),
            _ => Hotplug::None,
        };
        return Ok((id, hotplug));
    }

    let c_name = CString::new(name).map_err(nul)?;
    let c_args = args.map(CString::new).transpose().map_err(nul)?;
    // SAFETY: valid C strings (or NULL args); hot-plug runs under the control lock.
    let ret = unsafe {
        sys::rte_vdev_init(
            c_name.as_ptr(),
            c_args.as_ref().map_or(std::ptr::null(), |a| a.as_ptr()),
        )
    };
    if ret < 0 {
        let reason = match -ret {
            libc::EEXIST => format!("a device named {name:?} already exists"),
            libc::EPERM => {
                "no driver accepted it (unknown vdev driver or bad arguments; see the EAL log)"
                    .into()
            }
            _ => errno_text(ret),
        };
        return Err(dev_err("rte_vdev_init", ret, reason));
    }
    match port_by_name(name) {
        Some(id) => Ok((id, Hotplug::Vdev(c_name))),
        None => {
            // SAFETY: the vdev we just created; it is not an ethdev, remove it again.
            unsafe { sys::rte_vdev_uninit(c_name.as_ptr()) };
            Err(DpdkError::NotFound {
                port: cfg.name.clone(),
                device: cfg.device.clone(),
                ethdev: name.to_owned(),
                how: "rte_vdev_init",
            })
        }
    }
}

/// The port id of the ethdev called `name`, if there is one.
fn port_by_name(name: &str) -> Option<u16> {
    let c = CString::new(name).ok()?;
    let mut id = 0u16;
    // SAFETY: valid C string and out-pointer.
    (unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) } == 0).then_some(id)
}

/// The ethdev name of `port_id` (empty if it has none).
pub(crate) fn ethdev_name(port_id: u16) -> String {
    let mut buf = [0 as c_char; sys::RTE_ETH_NAME_MAX_LEN as usize];
    // SAFETY: buf has RTE_ETH_NAME_MAX_LEN bytes, as the function requires.
    if unsafe { sys::rte_eth_dev_get_name_by_port(port_id, buf.as_mut_ptr()) } != 0 {
        return String::new();
    }
    // SAFETY: the function wrote a NUL-terminated string into buf.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// The port's current MTU.
fn current_mtu(port_id: u16) -> Option<u16> {
    let mut mtu = 0u16;
    // SAFETY: valid out-pointer; invalid port ids are rejected by DPDK.
    (unsafe { sys::rte_eth_dev_get_mtu(port_id, &mut mtu) } == 0).then_some(mtu)
}

/// `name` as DPDK names a PCI device (`0000:03:00.0`), if it is a PCI address
/// (`DDDD:BB:DD.F` or `BB:DD.F`).
fn pci_name(name: &str) -> Option<String> {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = name.split(':').collect();
    let (domain, bus, devfn) = match parts.as_slice() {
        [d, b, df] => (*d, *b, *df),
        [b, df] => ("0000", *b, *df),
        _ => return None,
    };
    let (dev, func) = devfn.split_once('.')?;
    let func_ok = func.len() == 1 && matches!(func.as_bytes()[0], b'0'..=b'7');
    (hex(domain, 4) && hex(bus, 2) && hex(dev, 2) && func_ok)
        .then(|| format!("{domain}:{bus}:{dev}.{func}").to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses_are_recognised_and_canonicalised() {
        assert_eq!(pci_name("0000:03:00.0").as_deref(), Some("0000:03:00.0"));
        assert_eq!(pci_name("03:00.1").as_deref(), Some("0000:03:00.1"));
        assert_eq!(pci_name("0000:AF:1F.7").as_deref(), Some("0000:af:1f.7"));
        assert_eq!(pci_name("net_null0"), None);
        assert_eq!(pci_name("net_af_packet0"), None);
        assert_eq!(pci_name("03:00.8"), None);
        assert_eq!(pci_name("3:00.0"), None);
    }

    #[test]
    fn data_room_fits_mtu_headroom_and_tailroom() {
        let mut cfg = DpdkPortConfig::new("lan", "net_null0");
        assert_eq!(cfg.data_room(), Some(sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16));
        cfg.mtu = 9000;
        assert_eq!(cfg.data_room(), Some(128 + 9000 + 18 + 64));
        cfg.mtu = u16::MAX;
        assert_eq!(cfg.data_room(), None);
        assert!(matches!(cfg.validate(), Err(DpdkError::Config { .. })));
    }

    #[test]
    fn af_xdp_mbufs_fit_one_umem_page() {
        assert!(fits_af_xdp(1500));
        assert!(fits_af_xdp(3000));
        assert!(!fits_af_xdp(9000));
        let max = (1..u16::MAX).rev().find(|&m| fits_af_xdp(m)).unwrap();
        assert!((3300..3500).contains(&max), "{max}");
        let room = data_room_for(max, AF_XDP_RX_HEADROOM).unwrap();
        assert!(mbuf_object_size(room) <= AF_XDP_CHUNK_MAX);
    }

    #[test]
    fn oversized_mempool_cache_is_rejected() {
        let mut cfg = DpdkPortConfig::new("lan", "net_null0");
        cfg.mempool_size = 300;
        cfg.mempool_cache = 256;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("lan") && err.contains("cache"), "{err}");
    }
}
