//! DPDK ethdev backend: any PMD (real NICs, or vdevs such as net_af_packet,
//! net_af_xdp, net_memif, net_ring, net_null) with zero-copy mbufs.
//!
//! - [`eal`]: EAL initialisation (once per process) and worker thread registration.
//! - [`port`]: one ethdev with its queues and mbuf pool, torn down on drop.
//! - [`queue`]: a queue pair as a [`crate::backend::PortQueue`] for one worker.
//! - [`mbuf`]: [`Mbuf`], the single-segment [`crate::backend::PacketBuf`].
//! - [`ring`]: in-process ring ports for tests and benches.
//!
//! Notes on the vdevs of DPDK 22.11, measured on veth pairs:
//! - `net_af_packet0,iface=IF` and `net_af_xdp0,iface=IF` both work with
//!   `--no-huge -m 512 --no-shconf` and with hugepages
//!   (`--in-memory --huge-dir DIR`); neither needs hugepages. Both take the
//!   interface down and up when they start: wait for the link.
//! - net_af_packet reports a 1518-byte frame limit whatever its `framesz`,
//!   so its MTU is at most 1500 (jumbo needs another PMD or a native backend).
//! - net_af_xdp uses mbufs as UMEM frames of at most 4 KiB and receives
//!   256 bytes further in; ports on it get a larger data room, and MTUs above
//!   about 3370 are refused with the exact limit.

pub mod eal;
pub mod error;
pub mod mbuf;
mod names;
mod packet_socket;
pub mod port;
pub mod queue;
pub mod ring;

pub use eal::Eal;
pub use error::DpdkError;
pub use mbuf::Mbuf;
pub use port::{DpdkPort, DpdkPortConfig, PortHwStats, L2_OVERHEAD, TAILROOM};
pub use queue::DpdkQueue;
pub use ring::{RingPort, RingPortConfig};
