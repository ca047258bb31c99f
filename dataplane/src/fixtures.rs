//! Unit-test fixtures shared by the forwarding, slow-path, worker and
//! tunnel tests: gateway A of the testbed. Compiled for tests only.

use std::net::Ipv4Addr;

use crate::gateway::Gateway;
use crate::neigh::Neighbors;
use crate::port::{PortAddr, PortId};
use crate::route::{Route, RouteTable};

pub const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
/// The producer host on the LAN.
pub const PROD_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
/// The WAN router, next hop to 10.20.0.0/16.
pub const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 2, 0xfe];
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 100, 254);

/// LAN 10.10.1.1/24, WAN 10.10.100.1/24, MTU 1500, 10.20.0.0/16 via the WAN router.
pub fn gateway() -> Gateway {
    let ports = [
        PortAddr {
            mac: LAN_MAC,
            ip: Ipv4Addr::new(10, 10, 1, 1),
            prefix_len: 24,
            mtu: 1500,
        },
        PortAddr {
            mac: WAN_MAC,
            ip: Ipv4Addr::new(10, 10, 100, 1),
            prefix_len: 24,
            mtu: 1500,
        },
    ];
    let via = Route {
        net: Ipv4Addr::new(10, 20, 0, 0),
        len: 16,
        port: PortId::Wan,
        via: Some(ROUTER_IP),
    };
    let routes = RouteTable::new(&ports, &[via]);
    Gateway { ports, routes }
}

/// Neighbours with the WAN router resolved.
pub fn neighbors() -> Neighbors {
    Neighbors::with_static(&[(ROUTER_IP, ROUTER_MAC, PortId::Wan)])
}
