//! What the gateway is: its two ports' addresses and its route table. Read
//! by the classifier, the route-out step, the tunnel stages and the slow
//! path; built once from the configuration.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::port::{PortAddr, PortId};
use crate::route::RouteTable;

/// The gateway's ports and routes.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// Per port, indexed by [`PortId::index`].
    pub ports: [PortAddr; 2],
    /// The route table.
    pub routes: RouteTable,
}

impl Gateway {
    /// The port addresses of `port`.
    #[inline]
    pub fn port(&self, port: PortId) -> &PortAddr {
        &self.ports[port.index()]
    }

    /// True if `ip` is one of the gateway's own addresses.
    #[inline]
    pub fn is_local(&self, ip: Ipv4Addr) -> bool {
        self.ports.iter().any(|p| p.owns(ip))
    }

    /// True if `ip` is one of the gateway's own global IPv6 addresses
    /// (link-local addresses belong to one port each: [`crate::port::PortAddr::owns6`]).
    #[inline]
    pub fn is_local6(&self, ip: Ipv6Addr) -> bool {
        self.ports
            .iter()
            .any(|p| p.ip6.is_some_and(|(own, _)| own == ip))
    }
}
