//! TAP backend: a Linux TAP interface (`IFF_TAP | IFF_NO_PI`), one
//! non-blocking file descriptor per queue (`IFF_MULTI_QUEUE` when there is
//! more than one).
//!
//! The kernel side of the tap is an ordinary interface with its own MAC; the
//! gateway answers on a different MAC ([`TapConfig::mac`]), as a host at the
//! far end of a cable would. Each frame costs one `read()` or `write()`.

pub(crate) mod netdev;

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use thiserror::Error;

use super::pool::{PoolBuf, HEADROOM, MAX_FRAME};
use super::{Burst, PacketBuf, PortInfo, PortQueue};
use crate::host_drops::{HostDrop, HostDropCounts, NetdevDrops};
use netdev::{CtlSocket, IfName};

/// The clone device that creates and attaches TAP interfaces.
const TUN_DEVICE: &CStr = c"/dev/net/tun";
/// Most queues a multi-queue tap may have (the kernel's `MAX_TAP_QUEUES`).
pub const MAX_QUEUES: u16 = 256;
/// Smallest IP MTU accepted (the IPv4 minimum).
pub const MIN_MTU: u16 = 68;
/// Largest IP MTU accepted: what a [`PoolBuf`] holds after Ethernet and VLAN headers.
pub const MAX_MTU: u16 = (MAX_FRAME - 18) as u16;

/// Why a TAP port could not be opened.
#[derive(Debug, Error)]
pub enum TapError {
    /// The interface or bridge name is not a valid Linux interface name.
    #[error("tap: invalid interface name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A configuration value is out of range.
    #[error("tap {interface}: {reason}")]
    InvalidConfig {
        /// The interface being configured.
        interface: String,
        /// What is wrong.
        reason: String,
    },
    /// A system call failed.
    #[error("tap {interface}: {call} failed: {source}")]
    Sys {
        /// The interface being configured.
        interface: String,
        /// The failing call, e.g. `ioctl(TUNSETIFF)`.
        call: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
}

/// How to create (or attach to) a TAP interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapConfig {
    /// TAP interface to create, or to attach to if it exists (at most 15 bytes).
    pub interface: String,
    /// IP MTU, set with `SIOCSIFMTU` ([`MIN_MTU`]..=[`MAX_MTU`]; 9000 for jumbo frames).
    pub mtu: u16,
    /// The MAC the gateway uses on this port (not the kernel tap's own MAC);
    /// None picks a random locally administered unicast address.
    pub mac: Option<[u8; 6]>,
    /// Number of queues; more than one opens the tap with `IFF_MULTI_QUEUE`, one fd per queue.
    pub queues: u16,
    /// Existing bridge to enslave the tap to (`SIOCBRADDIF`), if any.
    pub bridge: Option<String>,
}

/// An open TAP interface, holding its queues until [`TapPort::take_queues`].
///
/// A tap that did not exist before is removed by the kernel when the last
/// queue is dropped.
pub struct TapPort {
    info: PortInfo,
    queues: Vec<TapQueue>,
}

impl TapPort {
    /// Creates (or attaches to) the TAP interface in the calling thread's
    /// network namespace, sets its MTU, enslaves it to the bridge if one is
    /// configured, and brings it up. Queue fds are non-blocking.
    pub fn open(cfg: &TapConfig) -> Result<TapPort, TapError> {
        let name = IfName::new(&cfg.interface).map_err(|reason| TapError::InvalidName {
            name: cfg.interface.clone(),
            reason,
        })?;
        let bridge = cfg
            .bridge
            .as_deref()
            .map(|b| {
                IfName::new(b).map_err(|reason| TapError::InvalidName {
                    name: b.to_owned(),
                    reason,
                })
            })
            .transpose()?;
        let invalid = |reason: String| TapError::InvalidConfig {
            interface: cfg.interface.clone(),
            reason,
        };
        if cfg.queues == 0 || cfg.queues > MAX_QUEUES {
            return Err(invalid(format!(
                "queues must be 1..={MAX_QUEUES}, got {}",
                cfg.queues
            )));
        }
        if !(MIN_MTU..=MAX_MTU).contains(&cfg.mtu) {
            return Err(invalid(format!(
                "mtu must be {MIN_MTU}..={MAX_MTU}, got {}",
                cfg.mtu
            )));
        }
        let mac = match cfg.mac {
            Some(mac) if mac[0] & 1 != 0 || mac == [0; 6] => {
                return Err(invalid(format!(
                    "mac {} is not a unicast address",
                    fmt_mac(&mac)
                )));
            }
            Some(mac) => mac,
            None => random_mac().map_err(sys(&cfg.interface, "getrandom"))?,
        };

        let queues = (0..cfg.queues)
            .map(|id| {
                let fd = attach_queue(&name, cfg.queues > 1)
                    .map_err(|(call, e)| sys(&cfg.interface, call)(e))?;
                Ok(TapQueue {
                    fd,
                    id,
                    rx_errors: 0,
                    netdev: None,
                })
            })
            .collect::<Result<Vec<_>, TapError>>()?;

        let ctl = CtlSocket::new().map_err(sys(&cfg.interface, "socket(AF_INET)"))?;
        ctl.set_mtu(&name, cfg.mtu)
            .map_err(sys(&cfg.interface, "ioctl(SIOCSIFMTU)"))?;
        if let Some(bridge) = &bridge {
            let index = ctl
                .ifindex(&name)
                .map_err(sys(&cfg.interface, "ioctl(SIOCGIFINDEX)"))?;
            ctl.bridge_add_if(bridge, index)
                .map_err(sys(&cfg.interface, "ioctl(SIOCBRADDIF)"))?;
        }
        ctl.set_up(&name)
            .map_err(sys(&cfg.interface, "ioctl(SIOCSIFFLAGS)"))?;
        // Queue 0 reports the device's kernel drop counters (per device).
        let mut queues = queues;
        queues[0].netdev = NetdevDrops::open(&cfg.interface);

        let info = PortInfo {
            name: cfg.interface.clone(),
            mac,
            mtu: cfg.mtu,
            queues: cfg.queues,
            driver: "tap".to_owned(),
        };
        Ok(TapPort { info, queues })
    }

    /// What the gateway needs to know about this port (driver "tap").
    pub fn info(&self) -> PortInfo {
        self.info.clone()
    }

    /// Hands out the queues, one per worker; later calls return an empty Vec.
    pub fn take_queues(&mut self) -> Vec<TapQueue> {
        std::mem::take(&mut self.queues)
    }
}

/// Builds the `map_err` closure for a failed system call on `interface`.
fn sys<'a>(interface: &'a str, call: &'static str) -> impl FnOnce(io::Error) -> TapError + 'a {
    move |source| TapError::Sys {
        interface: interface.to_owned(),
        call,
        source,
    }
}

/// Opens `/dev/net/tun` and attaches the fd to the tap `name` (creating it).
/// The error names the failing call.
fn attach_queue(name: &IfName, multi_queue: bool) -> Result<OwnedFd, (&'static str, io::Error)> {
    // SAFETY: TUN_DEVICE is a NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            TUN_DEVICE.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(("open(/dev/net/tun)", io::Error::last_os_error()));
    }
    // SAFETY: fd is a freshly opened descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = name.ifreq();
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if multi_queue {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`; `req` is valid
    // and exclusively borrowed for the call.
    if unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETIFF,
            &mut req as *mut libc::ifreq,
        )
    } < 0
    {
        return Err(("ioctl(TUNSETIFF)", io::Error::last_os_error()));
    }
    Ok(fd)
}

/// A random locally administered unicast MAC.
fn random_mac() -> io::Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut filled = 0;
    while filled < mac.len() {
        let rest = &mut mac[filled..];
        // SAFETY: `rest` is a valid writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}

fn fmt_mac(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// One queue of a TAP port: a non-blocking tap fd, owned by one worker.
pub struct TapQueue {
    fd: OwnedFd,
    id: u16,
    rx_errors: u64,
    /// Queue 0: the TAP device's kernel counters.
    netdev: Option<NetdevDrops>,
}

impl TapQueue {
    /// This queue's index within its port.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Frames lost on receive: larger than a buffer, or a failed `read()`.
    pub fn rx_errors(&self) -> u64 {
        self.rx_errors
    }
}

impl PortQueue for TapQueue {
    type Buf = PoolBuf;

    /// The TAP descriptor: readable when the kernel has a frame for us.
    fn wait_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.fd.as_raw_fd())
    }

    /// Queue 0: the TAP device's kernel drops (`tx_dropped` is what the
    /// kernel sent toward the gateway while the queue was full).
    fn host_drops(&mut self) -> Option<HostDropCounts> {
        let netdev = self.netdev.as_mut()?;
        let mut c = [0u64; HostDrop::COUNT];
        netdev.add_to(&mut c);
        Some(c)
    }

    fn rx_burst(&mut self, out: &mut Burst<PoolBuf>) -> usize {
        let mut received = 0;
        while !out.is_full() {
            let mut buf = PoolBuf::new();
            let room = &mut buf.storage_mut()[HEADROOM..];
            // SAFETY: `room` is a writable buffer of `room.len()` bytes that
            // outlives the call; the fd is open for the queue's lifetime.
            let n =
                unsafe { libc::read(self.fd.as_raw_fd(), room.as_mut_ptr().cast(), room.len()) };
            if n < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN) => break,
                    Some(libc::EINTR) => continue,
                    // EFAULT/EINVAL: the frame did not fit the buffer and the
                    // kernel dropped it. Anything else (e.g. EBADFD: the
                    // device went away) ends this burst.
                    Some(libc::EFAULT) | Some(libc::EINVAL) => {
                        self.rx_errors += 1;
                        continue;
                    }
                    _ => {
                        self.rx_errors += 1;
                        break;
                    }
                }
            }
            let n = n as usize;
            if n == 0 {
                break;
            }
            // Longer than MAX_FRAME would eat the tailroom kept for ESP trailers.
            if n > MAX_FRAME {
                self.rx_errors += 1;
                continue;
            }
            if !buf.set_range(HEADROOM, HEADROOM + n) {
                self.rx_errors += 1;
                continue;
            }
            out.push(buf);
            received += 1;
        }
        received
    }

    fn tx_burst(&mut self, bufs: &mut Burst<PoolBuf>) -> usize {
        let mut sent = 0;
        let mut blocked = false;
        for buf in bufs.drain(..) {
            if blocked {
                continue;
            }
            let data = buf.data();
            loop {
                // SAFETY: `data` is a readable buffer of `data.len()` bytes
                // that outlives the call; the fd is open.
                let n =
                    unsafe { libc::write(self.fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n >= 0 {
                    // The tap takes whole frames or fails; a short count cannot happen.
                    if n as usize == data.len() {
                        sent += 1;
                    }
                    break;
                }
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => blocked = true,
                    // The frame was refused (malformed, device down): drop it.
                    _ => {}
                }
                break;
            }
        }
        sent
    }

    fn alloc(&mut self) -> Option<PoolBuf> {
        Some(PoolBuf::new())
    }
}
