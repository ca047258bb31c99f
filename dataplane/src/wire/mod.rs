//! Wire formats: zero-copy typed views over packet bytes.
//!
//! The views themselves are smoltcp's (`Packet<T: AsRef<[u8]>>` with
//! `new_checked`, getters and setters over named byte ranges); we do not
//! re-implement a parser a trusted crate provides. This module adds what a
//! router needs on top: a validated IPv4 parse that reports *why* a frame is
//! bad ([`ipv4::parse`]), RFC 1624 incremental checksum updates
//! ([`checksum`]), builders for the frames the gateway originates
//! ([`arp`], [`icmp`]), the ESP-in-UDP view smoltcp lacks ([`esp`]:
//! smoltcp's own covers the SPI and sequence number only), and TCP MSS
//! clamping over smoltcp's option parser ([`mss`]).

pub mod arp;
pub mod checksum;
pub mod esp;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod l4;
pub mod mss;

pub use smoltcp::wire::{
    ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4Message,
    Icmpv4Packet, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket,
};

/// Length of an Ethernet II header.
pub const ETH_HLEN: usize = 14;
/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
/// Ethertype of IPv6.
pub const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];
/// Smallest IPv4 header.
pub const IPV4_MIN_HLEN: usize = 20;

/// A MAC address as six bytes.
pub type Mac = [u8; 6];

/// The broadcast MAC address.
pub const BROADCAST_MAC: Mac = [0xff; 6];

/// Why a frame failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than the header it claims to carry.
    #[error("truncated")]
    Truncated,
    /// A length or version field is inconsistent.
    #[error("malformed header")]
    Malformed,
    /// The checksum does not verify.
    #[error("bad checksum")]
    BadChecksum,
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff` (lower case, colons, as
/// `ip link` prints it and as the configuration file takes it).
pub fn mac_to_string(mac: &Mac) -> String {
    let [a, b, c, d, e, f] = *mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}
