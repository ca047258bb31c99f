//! The native backends (AF_XDP, TAP) behind one queue type, so that one
//! gateway can use either on each port: both carry [`PoolBuf`]s.

use super::afxdp::{XdpConfig, XdpPort, XdpQueue};
use super::pool::PoolBuf;
use super::tap::{TapConfig, TapPort, TapQueue};
use super::{Burst, PortInfo, PortQueue};

/// An open native port.
pub enum NativePort {
    /// An AF_XDP port.
    Xdp(XdpPort),
    /// A TAP port.
    Tap(TapPort),
}

/// Why a native port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    /// AF_XDP failed.
    #[error(transparent)]
    Xdp(#[from] super::afxdp::XdpError),
    /// TAP failed.
    #[error(transparent)]
    Tap(#[from] super::tap::TapError),
}

impl NativePort {
    /// Opens an AF_XDP port.
    pub fn open_xdp(cfg: &XdpConfig) -> Result<Self, NativeError> {
        Ok(NativePort::Xdp(XdpPort::open(cfg)?))
    }

    /// Opens a TAP port.
    pub fn open_tap(cfg: &TapConfig) -> Result<Self, NativeError> {
        Ok(NativePort::Tap(TapPort::open(cfg)?))
    }

    /// The port's description.
    pub fn info(&self) -> PortInfo {
        match self {
            NativePort::Xdp(p) => p.info(),
            NativePort::Tap(p) => p.info(),
        }
    }

    /// The port's queues, one per worker, to move into the worker threads.
    pub fn take_queues(&mut self) -> Vec<NativeQueue> {
        match self {
            NativePort::Xdp(p) => p.take_queues().into_iter().map(NativeQueue::Xdp).collect(),
            NativePort::Tap(p) => p.take_queues().into_iter().map(NativeQueue::Tap).collect(),
        }
    }
}

/// A queue of either native backend.
pub enum NativeQueue {
    /// An AF_XDP socket.
    Xdp(XdpQueue),
    /// A TAP queue.
    Tap(TapQueue),
}

impl PortQueue for NativeQueue {
    type Buf = PoolBuf;

    #[inline]
    fn rx_burst(&mut self, out: &mut Burst<PoolBuf>) -> usize {
        match self {
            NativeQueue::Xdp(q) => q.rx_burst(out),
            NativeQueue::Tap(q) => q.rx_burst(out),
        }
    }

    #[inline]
    fn tx_burst(&mut self, bufs: &mut Burst<PoolBuf>) -> usize {
        match self {
            NativeQueue::Xdp(q) => q.tx_burst(bufs),
            NativeQueue::Tap(q) => q.tx_burst(bufs),
        }
    }

    fn alloc(&mut self) -> Option<PoolBuf> {
        match self {
            NativeQueue::Xdp(q) => q.alloc(),
            NativeQueue::Tap(q) => q.alloc(),
        }
    }

    fn idle(&mut self) {
        match self {
            NativeQueue::Xdp(q) => q.idle(),
            NativeQueue::Tap(q) => q.idle(),
        }
    }

    fn host_drops(&mut self) -> Option<crate::host_drops::HostDropCounts> {
        match self {
            NativeQueue::Xdp(q) => q.host_drops(),
            NativeQueue::Tap(q) => q.host_drops(),
        }
    }

    fn wait_fd(&self) -> Option<std::os::fd::RawFd> {
        match self {
            NativeQueue::Xdp(q) => q.wait_fd(),
            NativeQueue::Tap(q) => q.wait_fd(),
        }
    }
}
