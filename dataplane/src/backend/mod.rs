//! Packet I/O backends behind one interface.
//!
//! A port has one RX/TX queue pair per worker; worker *i* owns queue *i* on
//! both ports, as a [`PortQueue`]. Frames move in bursts of up to [`BURST`]
//! buffers of the backend's [`PacketBuf`] type.
//!
//! - `dpdk`: DPDK ethdev, any PMD (feature `dpdk`). Zero-copy mbufs.
//! - `afxdp`: native AF_XDP sockets through libxdp.
//! - `tap`: a Linux TAP device.
//!
//! The native backends share [`pool::PoolBuf`], so a gateway may mix them.

pub mod mem;
pub mod pool;

#[cfg(feature = "dpdk")]
pub mod dpdk;

pub mod afxdp;
pub mod native;
pub mod tap;
pub mod wait;

use arrayvec::ArrayVec;

/// Frames per burst, as in DPDK's l3fwd.
pub const BURST: usize = 32;

/// A burst of packet buffers: a fixed-capacity array, never allocated per packet.
pub type Burst<B> = ArrayVec<B, BURST>;

/// One packet in a buffer the backend owns, with room before and after the data
/// for headers added later (ESP encapsulation).
pub trait PacketBuf: Send + 'static {
    /// The packet bytes.
    fn data(&self) -> &[u8];
    /// The packet bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Bytes free before the packet.
    fn headroom(&self) -> usize;
    /// Bytes free after the packet.
    fn tailroom(&self) -> usize;
    /// Grows the packet by `n` bytes at the front (uninitialised contents).
    /// Returns false, changing nothing, if the headroom is too small.
    fn prepend(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the front. Returns false, changing nothing, if the packet is shorter.
    fn adj(&mut self, n: usize) -> bool;
    /// Grows the packet by `n` bytes at the end. Returns false, changing nothing, if the tailroom is too small.
    fn append(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the end. Returns false, changing nothing, if the packet is shorter.
    fn trim(&mut self, n: usize) -> bool;

    /// Packet length in bytes.
    fn len(&self) -> usize {
        self.data().len()
    }
    /// True for a zero-length packet.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Sets the packet to exactly `len` bytes, growing or shrinking at the end.
    fn set_len(&mut self, len: usize) -> bool {
        let cur = self.len();
        if len >= cur {
            self.append(len - cur)
        } else {
            self.trim(cur - len)
        }
    }
}

/// What a backend knows about a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// Device or interface name, for logs and stats.
    pub name: String,
    /// The MAC address the gateway uses on this port.
    pub mac: [u8; 6],
    /// IP MTU of the port (the largest IP packet it carries).
    pub mtu: u16,
    /// Number of RX/TX queue pairs.
    pub queues: u16,
    /// Driver or backend name ("net_af_packet", "af_xdp", "tap", ...).
    pub driver: String,
}

/// One RX/TX queue pair of a port, owned by exactly one worker thread.
pub trait PortQueue: Send {
    /// The buffer type this queue receives into and transmits from.
    type Buf: PacketBuf;

    /// Receives frames, appending up to `out.remaining_capacity()` of them.
    /// Returns how many were received. Never blocks.
    fn rx_burst(&mut self, out: &mut Burst<Self::Buf>) -> usize;

    /// Transmits the frames in `bufs`, leaving it empty. Returns how many the
    /// device accepted; the rest are freed here and the caller counts them as
    /// TX drops. Never blocks.
    fn tx_burst(&mut self, bufs: &mut Burst<Self::Buf>) -> usize;

    /// Allocates an empty (zero-length) buffer from this queue's pool, for
    /// frames the gateway originates (ARP, ICMP). None if the pool is empty.
    fn alloc(&mut self) -> Option<Self::Buf>;

    /// Does the housekeeping a backend needs when a worker is idle (e.g. a
    /// TX wakeup for AF_XDP). Default: nothing.
    fn idle(&mut self) {}

    /// What the host lost on this queue below the gateway, cumulative
    /// ([`HostDrop`](crate::host_drops::HostDrop) order): the AF_XDP
    /// socket's statistics, or, on one queue of a DPDK port, the port's
    /// drop counters. A system call or a driver call: called about twice
    /// a second, never per packet. Default: nothing to report.
    fn host_drops(&mut self) -> Option<crate::host_drops::HostDropCounts> {
        None
    }

    /// A descriptor that becomes readable when this queue has frames to
    /// receive (`poll_mode = "adaptive"` sleeps on it); `None` if the
    /// backend has none (the worker then backs off with short sleeps).
    fn wait_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }

    /// Adaptive mode, just before the worker sleeps on [`wait_fd`]: turns
    /// on what makes the descriptor readable when a frame arrives (a DPDK
    /// queue's RX interrupt). Default: nothing (AF_XDP and TAP descriptors
    /// always are).
    ///
    /// [`wait_fd`]: PortQueue::wait_fd
    fn arm_wait(&mut self) {}

    /// Adaptive mode, after the sleep: clears what woke the worker and
    /// turns [`arm_wait`](PortQueue::arm_wait)'s interrupt off again, back
    /// to polling. Default: nothing.
    fn disarm_wait(&mut self) {}
}
