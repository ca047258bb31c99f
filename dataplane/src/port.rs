//! The gateway's two ports and their addresses.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::Mac;

/// Which of the gateway's two ports.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PortId {
    /// The instrument-side port.
    Lan = 0,
    /// The WAN port, toward the peer gateway.
    Wan = 1,
}

impl PortId {
    /// Both ports, in index order.
    pub const ALL: [PortId; 2] = [PortId::Lan, PortId::Wan];

    /// 0 for LAN, 1 for WAN.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// "lan" or "wan", as in the configuration file.
    pub const fn name(self) -> &'static str {
        match self {
            PortId::Lan => "lan",
            PortId::Wan => "wan",
        }
    }

    /// "lan" or "wan" (same as [`PortId::name`]).
    pub const fn as_str(self) -> &'static str {
        self.name()
    }

    /// The other port.
    pub const fn other(self) -> PortId {
        match self {
            PortId::Lan => PortId::Wan,
            PortId::Wan => PortId::Lan,
        }
    }
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The gateway's layer-2 and layer-3 identity on one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortAddr {
    /// The MAC the gateway uses on the port.
    pub mac: Mac,
    /// The gateway's IPv4 address on the port and the length of its
    /// connected prefix, if it has one (an IPv6-only port has none).
    pub ip4: Option<(Ipv4Addr, u8)>,
    /// IP MTU of the port.
    pub mtu: u16,
    /// The gateway's global IPv6 address on the port and the length of its
    /// connected prefix, if it has one. The port always has its link-local
    /// address too ([`PortAddr::link_local`]).
    pub ip6: Option<(Ipv6Addr, u8)>,
}

impl PortAddr {
    /// The gateway's IPv4 address on the port, if it has one.
    #[inline]
    pub fn ip(&self) -> Option<Ipv4Addr> {
        self.ip4.map(|(ip, _)| ip)
    }

    /// True if `ip` is the port's own IPv4 address.
    #[inline]
    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        self.ip4.is_some_and(|(own, _)| own == ip)
    }

    /// True if `ip` lies in this port's connected IPv4 subnet (never on a
    /// port without IPv4).
    pub fn on_link(&self, ip: Ipv4Addr) -> bool {
        self.ip4.is_some_and(|(own, len)| {
            let mask = prefix_mask(len);
            u32::from(ip) & mask == u32::from(own) & mask
        })
    }

    /// The port's IPv6 link-local address, formed from its MAC.
    #[inline]
    pub fn link_local(&self) -> Ipv6Addr {
        crate::wire::icmpv6::link_local_from_mac(self.mac)
    }

    /// True if `ip` lies in one of this port's connected IPv6 prefixes
    /// (link-local, or the global prefix).
    pub fn on_link6(&self, ip: Ipv6Addr) -> bool {
        is_link_local(ip)
            || self.ip6.is_some_and(|(own, len)| {
                u128::from(ip) & prefix_mask6(len) == u128::from(own) & prefix_mask6(len)
            })
    }

    /// True if `ip` is one of the port's own IPv6 addresses.
    #[inline]
    pub fn owns6(&self, ip: Ipv6Addr) -> bool {
        self.ip6.is_some_and(|(own, _)| own == ip) || ip == self.link_local()
    }

    /// The IPv6 source for what the gateway sends to `to` from this port:
    /// the link-local address toward link-local peers, else the global one
    /// (link-local if the port has none).
    pub fn source6_for(&self, to: Ipv6Addr) -> Ipv6Addr {
        match self.ip6 {
            Some((own, _)) if !is_link_local(to) => own,
            _ => self.link_local(),
        }
    }
}

/// True for fe80::/10.
#[inline]
pub fn is_link_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// The IPv6 netmask for a prefix length (0..=128).
pub const fn prefix_mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len as u32)
    }
}

/// The netmask for a prefix length (0..=32).
pub const fn prefix_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}
