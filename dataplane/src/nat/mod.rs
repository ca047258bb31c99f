//! Listener mode (SciStream semantics): address and port translation around
//! the tunnel. Pure code over byte slices: no I/O, no lock, and no
//! allocation after construction.
//!
//! IPv4 and IPv6 alike: a listener's two addresses are of one family, and
//! a flow keeps that family end to end (no translation between IPv4 and
//! IPv6).
//!
//! A session's connection *i* has a listener at each gateway. At the
//! consumer-side gateway B the translation is stateless
//! ([`consumer_to_remote`], [`remote_to_consumer`]): B only swaps its LAN
//! listener `B_lan_ip:lport_i` for A's listener `A_wan_ip:wport_i`. At the
//! producer-side gateway A a lock-free connection table ([`ConnTable`])
//! gives every consumer flow its own source port on A's LAN, so the
//! producer's replies come back to A and can be mapped back to the consumer.
//!
//! ```text
//! cons c:cp ─▶ B_lan:lport_i │ B: dst→A_wan:wport_i ═ESP═▶ A: src→A_lan:m, dst→target_i ─▶ prod
//! cons ◀─ src B_lan:lport_i  │ B: src→B_lan:lport_i ◀═ESP═ A: src→A_wan:wport_i, dst→c:cp ◀─ prod
//! ```
//!
//! ICMP errors (destination unreachable, time exceeded, parameter problem)
//! and ICMPv6 errors (destination unreachable, packet too big, time
//! exceeded, parameter problem) that quote a TCP or UDP header of a
//! translated flow go through the same four functions and are translated
//! both ways. See `docs/listener-mode.md`.

mod clock;
mod conntrack;
mod inbound;
mod listeners;
mod packet;
mod stateless;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;

pub use clock::CoarseClock;
pub use conntrack::{ConnTable, Timeouts, DEFAULT_PORT_BASE, DEFAULT_SLOTS, PROBE_LIMIT};
pub use listeners::{InboundListener, Listeners, OutboundListener, MAX_LISTENERS};
pub use packet::Proto;
pub use stateless::{consumer_to_remote, remote_to_consumer};

use std::net::SocketAddr;

/// Why listener mode refused a packet. Each variant is a drop reason the
/// caller counts; none of them leaves the packet half rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NatError {
    /// Not a valid IPv4 or IPv6 packet (a version that is neither, a length
    /// inconsistent with the buffer, an IPv6 extension-header chain that is
    /// malformed, too long or runs past the packet), a TCP/UDP header
    /// shorter than its minimum, a UDP-over-IPv6 datagram without a
    /// checksum (0, which RFC 8200 forbids), or an ICMP/ICMPv6 error that is
    /// truncated, has a bad checksum, quotes a malformed header or a header
    /// of the other family, or is addressed inconsistently.
    #[error("listener mode: malformed IPv4/IPv6/TCP/UDP/ICMP packet")]
    Malformed,
    /// A fragment without ports (not the first), or a fragmented ICMP or
    /// ICMPv6 error: it cannot be mapped to a flow.
    #[error("listener mode: IP fragment without transport ports")]
    Fragment,
    /// Neither TCP, UDP nor an ICMP/ICMPv6 error quoting TCP or UDP (ICMP
    /// echo, Neighbor Discovery and other informational messages included).
    #[error("listener mode: unsupported protocol")]
    UnsupportedProtocol,
    /// No listener matches the packet's address and port.
    #[error("listener mode: no listener for this address and port")]
    NoListener,
    /// No connection-table entry for the packet (unknown or expired mapped
    /// port, or a reply from somewhere other than the listener's target).
    #[error("listener mode: no connection mapping for this packet")]
    NoMapping,
    /// The connection table has no free slot for a new flow.
    #[error("listener mode: mapped-port pool exhausted")]
    PoolExhausted,
}

/// Why a listener-mode configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatConfigError {
    /// Two listeners would match the same packets.
    #[error("duplicate {what} address {addr}: two listeners would match the same packets")]
    Duplicate {
        /// Which address list (`outbound lan`, `outbound remote`, `inbound listen`).
        what: &'static str,
        /// The address given twice.
        addr: SocketAddr,
    },
    /// An address that no flow can use: port 0, or an unspecified,
    /// broadcast or multicast IPv4 address, or an unspecified, multicast,
    /// loopback or IPv4-mapped IPv6 address (link-local is allowed).
    #[error(
        "invalid {what} address {addr}: needs a unicast IPv4 or IPv6 address and a non-zero port"
    )]
    InvalidAddress {
        /// Which field (`outbound lan`, `inbound target`, ...).
        what: &'static str,
        /// The address.
        addr: SocketAddr,
    },
    /// A listener whose two addresses are of different families.
    #[error(
        "{what} listener {a} leads to {b}: listener mode does not translate between IPv4 and \
         IPv6 (both addresses of a listener must be of one family)"
    )]
    MixedFamily {
        /// `outbound` (`a` is `lan`, `b` is `remote`) or `inbound` (`a` is
        /// `listen`, `b` is `target`).
        what: &'static str,
        /// The listener's own address.
        a: SocketAddr,
        /// The address it leads to.
        b: SocketAddr,
    },
    /// A connection table with neither an IPv4 nor an IPv6 LAN address.
    #[error(
        "the producer-side NAT needs a LAN address (IPv4, IPv6 or both) to map flows to; it has none"
    )]
    NoLanAddress,
    /// More listeners than a connection-table key can name.
    #[error("too many {what} listeners: {count} (at most {max})")]
    TooMany {
        /// `outbound` or `inbound`.
        what: &'static str,
        /// How many were given.
        count: usize,
        /// The limit ([`MAX_LISTENERS`]).
        max: usize,
    },
    /// The mapped-port pool does not fit in the port space.
    #[error(
        "mapped-port pool of {slots} ports from {port_base} does not fit in 1..=65535 \
         (needs at least one slot, a non-zero base, base + slots <= 65536)"
    )]
    BadPool {
        /// The first mapped port.
        port_base: u16,
        /// The number of slots asked for.
        slots: usize,
    },
}
