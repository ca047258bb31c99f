//! The gateway's two ports and their addresses.

use std::fmt;
use std::net::Ipv4Addr;

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
    /// The gateway's IPv4 address on the port.
    pub ip: Ipv4Addr,
    /// Prefix length of the connected subnet.
    pub prefix_len: u8,
    /// IP MTU of the port.
    pub mtu: u16,
}

impl PortAddr {
    /// True if `ip` lies in this port's connected subnet.
    pub fn on_link(&self, ip: Ipv4Addr) -> bool {
        let mask = prefix_mask(self.prefix_len);
        u32::from(ip) & mask == u32::from(self.ip) & mask
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
