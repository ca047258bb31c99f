//! Native AF_XDP backend through libxdp: one XDP socket per queue on a UMEM
//! of [`FRAME_SIZE`]-byte frames. libxdp attaches its default XSK redirect
//! program when the first socket binds and detaches it when the last one is
//! deleted.
//!
//! Received frames are lent to [`PoolBuf`](super::pool::PoolBuf)s in place.
//! When both ports of a gateway are AF_XDP ([`XdpPort::open_pair`]), worker
//! *i*'s LAN and WAN sockets share one UMEM, so a frame received on one port
//! leaves the other by descriptor, never copied in user space. Buffers of
//! another origin (TAP, frames the gateway makes) are copied into a free
//! frame, so AF_XDP ports still mix freely with TAP ports.

mod frames;
mod netns;
mod queue;
mod umem;

use std::io;

use thiserror::Error;

use super::tap::netdev::{CtlSocket, IfName};
use super::PortInfo;
use crate::host_drops::NetdevDrops;
use queue::UmemChoice;
pub use queue::XdpQueue;

/// A lent UMEM frame's buffer was dropped: its frame goes back to the pool
/// of the thread that owns its UMEM (called by `PoolBuf`'s drop).
pub(crate) fn release_frame(umem: u64, frame: u64) {
    frames::release(umem, frame);
}

/// UMEM frame size in bytes (libxdp's default, one page).
pub const FRAME_SIZE: u32 = scistream_sys::xdp::XSK_UMEM__DEFAULT_FRAME_SIZE;
/// Largest IP MTU a [`FRAME_SIZE`] frame carries in native mode: the page
/// minus XDP headroom (256), `skb_shared_info` (320) and the Ethernet header with VLAN tag (22).
pub const MAX_MTU: u32 = 3498;
/// Default UMEM frames per socket.
pub const DEFAULT_FRAME_COUNT: u32 = 4096;
/// Fewest UMEM frames per socket.
pub const MIN_FRAME_COUNT: u32 = 64;
/// Most UMEM frames per socket (1 GiB of UMEM).
pub const MAX_FRAME_COUNT: u32 = 1 << 18;

/// Why an AF_XDP port could not be opened.
#[derive(Debug, Error)]
pub enum XdpError {
    /// The interface name is not a valid Linux interface name.
    #[error("af_xdp: invalid interface name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No interface of that name in the calling thread's network namespace.
    #[error("af_xdp {interface}: no such interface")]
    NoSuchInterface {
        /// The missing interface.
        interface: String,
    },
    /// The interface MTU does not fit a UMEM frame.
    #[error("af_xdp {interface}: MTU {mtu} is too large for {FRAME_SIZE}-byte AF_XDP frames (at most {MAX_MTU})")]
    MtuTooLarge {
        /// The interface.
        interface: String,
        /// Its MTU.
        mtu: u32,
    },
    /// A configuration value is out of range.
    #[error("af_xdp {interface}: {reason}")]
    InvalidConfig {
        /// The interface being configured.
        interface: String,
        /// What is wrong.
        reason: String,
    },
    /// A system or libxdp call failed.
    #[error("af_xdp {interface}{}: {call} failed: {source}", queue.map(|q| format!(" queue {q}")).unwrap_or_default())]
    Sys {
        /// The interface being configured.
        interface: String,
        /// The queue being set up, if the failure was per queue.
        queue: Option<u16>,
        /// The failing call, e.g. `xsk_socket__create_shared`.
        call: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
}

/// XDP attach mode of libxdp's redirect program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// Let the kernel choose (native if the driver supports it).
    #[default]
    Auto,
    /// Driver (native) mode, `XDP_FLAGS_DRV_MODE`.
    Native,
    /// Generic (SKB) mode, `XDP_FLAGS_SKB_MODE`: works on any interface, copies.
    Skb,
}

impl XdpMode {
    fn xdp_flags(self) -> u32 {
        use scistream_sys::xdp::{XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
        match self {
            XdpMode::Auto => 0,
            XdpMode::Native => XDP_FLAGS_DRV_MODE,
            XdpMode::Skb => XDP_FLAGS_SKB_MODE,
        }
    }
}

/// How to open AF_XDP sockets on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpConfig {
    /// The interface, in the calling thread's network namespace.
    pub interface: String,
    /// Number of sockets, bound to queue ids `0..queues`.
    pub queues: u16,
    /// XDP attach mode.
    pub mode: XdpMode,
    /// Bind with `XDP_ZEROCOPY` (fails if the driver cannot), else `XDP_COPY`.
    pub zero_copy: bool,
    /// UMEM frames per socket: a power of two in
    /// [`MIN_FRAME_COUNT`]..=[`MAX_FRAME_COUNT`]; half feed RX, half TX.
    pub frame_count: u32,
}

impl XdpConfig {
    /// One queue, automatic mode, copy binding and [`DEFAULT_FRAME_COUNT`] frames.
    pub fn new(interface: impl Into<String>) -> Self {
        XdpConfig {
            interface: interface.into(),
            queues: 1,
            mode: XdpMode::Auto,
            zero_copy: false,
            frame_count: DEFAULT_FRAME_COUNT,
        }
    }
}

/// AF_XDP sockets on one interface, holding its queues until [`XdpPort::take_queues`].
pub struct XdpPort {
    info: PortInfo,
    queues: Vec<XdpQueue>,
}

impl XdpPort {
    /// Reads the interface's MAC and MTU and creates one AF_XDP socket per
    /// queue, each on a UMEM of its own of `cfg.frame_count` frames, in the
    /// calling thread's network namespace.
    pub fn open(cfg: &XdpConfig) -> Result<XdpPort, XdpError> {
        let name = validate(cfg)?;
        let create = UmemChoice::Create {
            frames: cfg.frame_count,
            ring_size: cfg.frame_count / 2,
        };
        Self::open_with(cfg, &name, |_| Ok(create))
    }

    /// Opens the LAN and WAN ports of one gateway with the same number of
    /// queues and the same `zero_copy`, queue *i* of both on one shared UMEM (`lan.frame_count +
    /// wan.frame_count` frames), so frames cross between them by descriptor.
    pub fn open_pair(lan: &XdpConfig, wan: &XdpConfig) -> Result<(XdpPort, XdpPort), XdpError> {
        let lan_name = validate(lan)?;
        let wan_name = validate(wan)?;
        if lan.queues != wan.queues {
            return Err(XdpError::InvalidConfig {
                interface: wan.interface.clone(),
                reason: format!(
                    "a shared UMEM needs as many queues as {} ({}), got {}",
                    lan.interface, lan.queues, wan.queues
                ),
            });
        }
        if lan.zero_copy != wan.zero_copy {
            // A socket joining a UMEM is bound in the first socket's mode.
            return Err(XdpError::InvalidConfig {
                interface: wan.interface.clone(),
                reason: format!(
                    "a shared UMEM binds both sockets alike: zero_copy must match {}'s ({})",
                    lan.interface, lan.zero_copy
                ),
            });
        }
        let create = UmemChoice::Create {
            frames: lan.frame_count + wan.frame_count,
            ring_size: lan.frame_count.max(wan.frame_count) / 2,
        };
        let lan_port = Self::open_with(lan, &lan_name, |_| Ok(create))?;
        let umems: Vec<_> = lan_port.queues.iter().map(|q| q.umem().clone()).collect();
        let wan_port = Self::open_with(wan, &wan_name, |i| {
            Ok(UmemChoice::Join(umems.get(i as usize).ok_or_else(
                || XdpError::InvalidConfig {
                    interface: wan.interface.clone(),
                    reason: format!("no UMEM for queue {i}"),
                },
            )?))
        })?;
        Ok((lan_port, wan_port))
    }

    /// Opens `cfg`'s queues on interface `name` (validated), queue *i* on
    /// `umem_for(i)`'s UMEM.
    fn open_with<'u>(
        cfg: &XdpConfig,
        name: &IfName,
        umem_for: impl Fn(u16) -> Result<UmemChoice<'u>, XdpError>,
    ) -> Result<XdpPort, XdpError> {
        let iface = &cfg.interface;
        let sys = |call: &'static str| {
            move |source: io::Error| XdpError::Sys {
                interface: iface.clone(),
                queue: None,
                call,
                source,
            }
        };
        let ctl = CtlSocket::new().map_err(sys("socket(AF_INET)"))?;
        let no_such = |e: io::Error| {
            if e.raw_os_error() == Some(libc::ENODEV) {
                XdpError::NoSuchInterface {
                    interface: iface.clone(),
                }
            } else {
                sys("ioctl(SIOCGIFINDEX)")(e)
            }
        };
        ctl.ifindex(name).map_err(no_such)?;
        let mtu = ctl.mtu(name).map_err(sys("ioctl(SIOCGIFMTU)"))?;
        if mtu > MAX_MTU {
            return Err(XdpError::MtuTooLarge {
                interface: iface.clone(),
                mtu,
            });
        }
        let mac = ctl.hwaddr(name).map_err(sys("ioctl(SIOCGIFHWADDR)"))?;

        let mut queues = (0..cfg.queues)
            .map(|id| XdpQueue::open(name, id, cfg, umem_for(id)?))
            .collect::<Result<Vec<_>, _>>()?;
        // Queue 0 also reports the interface's kernel drop counters (per device).
        if let Some(q) = queues.first_mut() {
            q.set_netdev(NetdevDrops::open(iface));
        }

        let info = PortInfo {
            name: iface.clone(),
            mac,
            // MAX_MTU < u16::MAX, checked above.
            mtu: mtu as u16,
            queues: cfg.queues,
            driver: "af_xdp".to_owned(),
        };
        Ok(XdpPort { info, queues })
    }

    /// What the gateway needs to know about this port (driver "af_xdp").
    pub fn info(&self) -> PortInfo {
        self.info.clone()
    }

    /// Hands out the queues, one per worker; later calls return an empty Vec.
    pub fn take_queues(&mut self) -> Vec<XdpQueue> {
        std::mem::take(&mut self.queues)
    }
}

/// Checks what can be checked before touching the kernel; the interface's name.
fn validate(cfg: &XdpConfig) -> Result<IfName, XdpError> {
    let invalid = |reason: String| XdpError::InvalidConfig {
        interface: cfg.interface.clone(),
        reason,
    };
    let name = IfName::new(&cfg.interface).map_err(|reason| XdpError::InvalidName {
        name: cfg.interface.clone(),
        reason,
    })?;
    if cfg.queues == 0 {
        return Err(invalid("queues must be at least 1".to_owned()));
    }
    if !cfg.frame_count.is_power_of_two()
        || !(MIN_FRAME_COUNT..=MAX_FRAME_COUNT).contains(&cfg.frame_count)
    {
        return Err(invalid(format!(
            "frame_count must be a power of two in {MIN_FRAME_COUNT}..={MAX_FRAME_COUNT}, got {}",
            cfg.frame_count
        )));
    }
    Ok(name)
}
