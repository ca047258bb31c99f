//! Unit-test fixtures shared by the forwarding, slow-path, worker and
//! tunnel tests: gateway A of the testbed. Compiled for tests only.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::gateway::Gateway;
use crate::neigh::Neighbors;
use crate::port::{PortAddr, PortId};
use crate::route::{Route, Route6, RouteTable};

pub const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
/// The producer host on the LAN.
pub const PROD_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
/// The WAN router, next hop to 10.20.0.0/16.
pub const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 2, 0xfe];
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 100, 254);
/// The gateway's LAN and WAN IPv6 addresses (prefixes /64).
pub const LAN_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 1, 0, 0, 0, 0, 1);
pub const WAN_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x100, 0, 0, 0, 0, 1);
/// The producer's IPv6 address.
pub const PROD_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 1, 0, 0, 0, 0, 2);

/// The WAN router's link-local address: next hop to fd00:20::/32.
pub fn router_ip6() -> Ipv6Addr {
    crate::wire::icmpv6::link_local_from_mac(ROUTER_MAC)
}

/// LAN 10.10.1.1/24 and fd00:10:1::1/64, WAN 10.10.100.1/24 and
/// fd00:10:100::1/64, MTU 1500, 10.20.0.0/16 and fd00:20::/32 via the WAN
/// router.
pub fn gateway() -> Gateway {
    let ports = [
        PortAddr {
            mac: LAN_MAC,
            ip4: Some((Ipv4Addr::new(10, 10, 1, 1), 24)),
            mtu: 1500,
            ip6: Some((LAN_IP6, 64)),
        },
        PortAddr {
            mac: WAN_MAC,
            ip4: Some((Ipv4Addr::new(10, 10, 100, 1), 24)),
            mtu: 1500,
            ip6: Some((WAN_IP6, 64)),
        },
    ];
    let via = Route {
        net: Ipv4Addr::new(10, 20, 0, 0),
        len: 16,
        port: PortId::Wan,
        via: Some(ROUTER_IP),
    };
    let via6 = Route6 {
        net: Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0, 0),
        len: 32,
        port: PortId::Wan,
        via: Some(router_ip6()),
    };
    let routes = RouteTable::new(&ports, &[via]).with_v6(&[via6]);
    Gateway { ports, routes }
}

/// Neighbours with the WAN router resolved.
pub fn neighbors() -> Neighbors {
    Neighbors::with_static(&[
        (std::net::IpAddr::V4(ROUTER_IP), ROUTER_MAC, PortId::Wan),
        (router_ip6().into(), ROUTER_MAC, PortId::Wan),
    ])
}
