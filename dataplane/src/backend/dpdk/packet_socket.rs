//! Frames the kernel dropped in front of a `net_af_packet` port.
//!
//! DPDK 22.11's af_packet PMD counts no receive drops (its `rte_eth_stats`
//! have no `imissed`): a frame that arrives while the socket's receive ring
//! is full is dropped by the kernel and counted only in that socket's
//! `PACKET_STATISTICS` (`tp_drops`), not in the interface's counters
//! either. So the port's queue 0 finds the PMD's sockets among this
//! process's descriptors (AF_PACKET sockets bound to the port's interface),
//! keeps a duplicate of each, and reads their statistics. The kernel resets
//! them on every read; nothing else reads them, so the sum kept here is the
//! socket's drop count since it was found.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The receive-ring drops of the AF_PACKET sockets under one interface.
#[derive(Debug)]
pub struct PacketSocketDrops {
    sockets: Vec<OwnedFd>,
    dropped: u64,
}

impl PacketSocketDrops {
    /// The AF_PACKET sockets this process has bound to `interface` (an
    /// interface of the calling thread's network namespace). None if it has
    /// no such interface or no such socket.
    pub fn find(interface: &str) -> Option<Self> {
        let name = std::ffi::CString::new(interface).ok()?;
        // SAFETY: a valid NUL-terminated name; no other effect.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return None;
        }
        let sockets: Vec<OwnedFd> = std::fs::read_dir("/proc/self/fd")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
            // Duplicated first, so another thread closing and reusing the
            // number cannot swap the socket between the check and the dup.
            .filter_map(duplicate)
            .filter(|fd| bound_to(fd.as_raw_fd(), index))
            .collect();
        (!sockets.is_empty()).then_some(PacketSocketDrops {
            sockets,
            dropped: 0,
        })
    }

    /// The sockets found.
    pub fn sockets(&self) -> usize {
        self.sockets.len()
    }

    /// Frames the kernel dropped on these sockets' receive rings since they
    /// were found (read now).
    pub fn dropped(&mut self) -> u64 {
        for s in &self.sockets {
            let mut st = libc::tpacket_stats {
                tp_packets: 0,
                tp_drops: 0,
            };
            let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
            // SAFETY: a socket descriptor we own, an out-buffer of `len` bytes.
            let ret = unsafe {
                libc::getsockopt(
                    s.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_STATISTICS,
                    std::ptr::addr_of_mut!(st).cast(),
                    &mut len,
                )
            };
            if ret == 0 {
                self.dropped += u64::from(st.tp_drops);
            }
        }
        self.dropped
    }
}

/// Whether `fd` is an AF_PACKET socket bound to interface `index`.
fn bound_to(fd: RawFd, index: u32) -> bool {
    // SAFETY: sockaddr_ll is plain data, valid when zeroed.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: an out-buffer of `len` bytes; on a descriptor that is no
    // socket (or closed meanwhile) the call fails and nothing is written.
    let ret = unsafe { libc::getsockname(fd, std::ptr::addr_of_mut!(addr).cast(), &mut len) };
    ret == 0
        && i32::from(addr.sll_family) == libc::AF_PACKET
        && u32::try_from(addr.sll_ifindex) == Ok(index)
}

/// A descriptor of our own for whatever `fd` refers to.
fn duplicate(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor (or fails) and
    // leaves `fd` as it is.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    // SAFETY: a fresh descriptor that nothing else owns.
    (dup >= 0).then(|| unsafe { OwnedFd::from_raw_fd(dup) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_interface_or_no_packet_socket_is_none() {
        assert!(PacketSocketDrops::find("s2-no-such-if").is_none());
        // lo exists everywhere, and this test process binds no packet socket to it.
        assert!(PacketSocketDrops::find("lo").is_none());
    }
}
