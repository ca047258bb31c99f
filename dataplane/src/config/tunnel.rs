//! The tunnel sections of the configuration: `[tunnel]`, `[[peers]]`,
//! `[[sas]]` (manual keying, as in DPDK's ipsec-secgw) and
//! `[[tunnel_routes]]` (routed mode: an inner destination prefix → an
//! outbound SA).

use std::fmt;
use std::net::SocketAddr;

use ipnet::{Ipv4Net, Ipv6Net};
use zeroize::Zeroizing;

use crate::crypto::{Algorithm, EngineKind};

/// Default first mapped source port of the producer-side NAT.
pub const DEFAULT_NAT_PORT_BASE: u16 = 32768;
/// Default number of connection-tracking slots.
pub const DEFAULT_NAT_SLOTS: usize = 16384;

/// Default UDP port of ESP-in-UDP (RFC 3948).
pub const DEFAULT_UDP_PORT: u16 = 4500;
/// SPIs 1..=255 are reserved by IANA (RFC 4303 §2.1); 0 is never an SPI.
pub use scistream_region::MIN_SPI;
/// Which way an SA protects traffic, and which side a listener serves:
/// defined with the region's entries, which carry them.
pub use scistream_region::{Direction, ListenerRole};

/// Everything about the encrypted tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSection {
    /// The AEAD engine.
    pub engine: EngineKind,
    /// Local UDP port of ESP-in-UDP, and the default peer port.
    pub udp_port: u16,
    /// The peer gateways.
    pub peers: Vec<Peer>,
    /// Manually keyed SAs.
    pub sas: Vec<SaConfig>,
    /// Routed mode: inner IPv4 prefixes sent through outbound SAs.
    pub routes: Vec<TunnelRoute>,
    /// Routed mode: inner IPv6 prefixes sent through outbound SAs (next
    /// header 41 in the ESP trailer).
    pub routes6: Vec<TunnelRoute6>,
    /// Listener mode (SciStream): stream listeners.
    pub listeners: Vec<ListenerConfig>,
    /// First source port the producer-side gateway maps connections to.
    pub nat_port_base: u16,
    /// Connection-tracking slots (mapped ports `nat_port_base..nat_port_base + nat_slots`).
    pub nat_slots: usize,
    /// Where the SAs, routes and listeners come from.
    pub keying: Keying,
    /// TCP MSS clamping: the largest MSS a TCP SYN or SYN-ACK may carry
    /// across the tunnel (in either direction), so that segments fit the
    /// inner MTU; `None` when `tcp_mss_clamp = false`.
    pub tcp_mss: Option<u16>,
}

/// `[tunnel] keying`: where the tunnel's SAs and flows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keying {
    /// `[[sas]]`, `[[tunnel_routes]]` and `[[listeners]]` in this file.
    Manual,
    /// The control process `s2cs`, through the shared-memory region at `shm_path`.
    Control {
        /// The region file (absolute), e.g. `/dev/shm/scistream-gwa`.
        shm_path: std::path::PathBuf,
    },
}

/// One listener of listener mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Outbound (consumer side) or inbound (producer side).
    pub role: ListenerRole,
    /// The listening port: on our LAN address (outbound) or our WAN address (inbound).
    pub port: u16,
    /// Outbound: the peer's inbound listener this one leads to.
    pub remote: Option<SocketAddr>,
    /// Inbound: the producer application it leads to.
    pub target: Option<SocketAddr>,
    /// SPI of the outbound SA toward the peer.
    pub spi: u32,
}

/// A peer gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its name, referred to by SAs.
    pub name: String,
    /// Its WAN address: the outer destination of packets to it, IPv4 or
    /// IPv6 (the outer family of its SAs).
    pub address: std::net::IpAddr,
    /// Its ESP-in-UDP port.
    pub udp_port: u16,
}

/// One security association.
#[derive(Clone, PartialEq, Eq)]
pub struct SaConfig {
    /// Security Parameter Index.
    pub spi: u32,
    /// In or out.
    pub direction: Direction,
    /// Index into [`TunnelSection::peers`].
    pub peer: usize,
    /// AES-128-GCM or AES-256-GCM.
    pub algorithm: Algorithm,
    /// The AES key (16 or 32 bytes); zeroized when dropped, never printed.
    pub key: Zeroizing<Vec<u8>>,
    /// The 4-byte salt of the GCM nonce (RFC 4106).
    pub salt: [u8; 4],
    /// 64-bit extended sequence numbers.
    pub esn: bool,
    /// Outbound: the SPI of the outbound SA this one is a lane of (`lane_of`;
    /// see [`crate::tunnel::SaSpec::lane_of`]).
    pub lane_of: Option<u32>,
    /// Inbound: check the RFC 6479 anti-replay window (`anti_replay`,
    /// default true). Off only for benchmarks that replay a captured
    /// packet (RFC 4303 §3.4.3 lets a receiver turn the check off).
    pub anti_replay: bool,
}

impl fmt::Debug for SaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaConfig")
            .field("spi", &format_args!("{:#x}", self.spi))
            .field("direction", &self.direction)
            .field("peer", &self.peer)
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .field("salt", &"<redacted>")
            .field("esn", &self.esn)
            .field("anti_replay", &self.anti_replay)
            .finish()
    }
}

/// Routed mode: packets to `prefix` go through outbound SA `spi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRoute {
    /// Inner destination prefix.
    pub prefix: Ipv4Net,
    /// SPI of an outbound SA.
    pub spi: u32,
}

/// Routed mode, IPv6: an inner destination prefix sent through an outbound SA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRoute6 {
    /// Inner destination prefix.
    pub prefix: Ipv6Net,
    /// SPI of an outbound SA.
    pub spi: u32,
}
