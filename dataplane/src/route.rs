//! The route tables, IPv4 and IPv6: connected subnets of both ports plus
//! static routes, longest prefix first.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::port::{prefix_mask, prefix_mask6, PortAddr, PortId};

/// One route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Network address (host bits zero).
    pub net: Ipv4Addr,
    /// Prefix length.
    pub len: u8,
    /// Egress port.
    pub port: PortId,
    /// Next hop; None for a connected subnet (the destination itself is the next hop).
    pub via: Option<Ipv4Addr>,
}

/// Routes ordered longest prefix first. Lookup scans in order: the table is
/// small (two connected subnets and a handful of static routes per gateway);
/// the shared-memory route table of the control process replaces it.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<(u32, u32, Route)>,
    routes6: Vec<(u128, u128, Route6)>,
}

/// One IPv6 route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route6 {
    /// Network address (host bits zero).
    pub net: Ipv6Addr,
    /// Prefix length.
    pub len: u8,
    /// Egress port.
    pub port: PortId,
    /// Next hop (global or link-local); None for a connected prefix.
    pub via: Option<Ipv6Addr>,
}

impl RouteTable {
    /// A table with the connected subnets of `ports` (indexed by [`PortId`]) and `statics`.
    pub fn new(ports: &[PortAddr; 2], statics: &[Route]) -> Self {
        let mut t = RouteTable::default();
        for id in PortId::ALL {
            if let Some((ip, len)) = ports[id.index()].ip4 {
                t.add(Route {
                    net: ip,
                    len,
                    port: id,
                    via: None,
                });
            }
        }
        for r in statics {
            t.add(*r);
        }
        for id in PortId::ALL {
            if let Some((ip, len)) = ports[id.index()].ip6 {
                t.add6(Route6 {
                    net: ip,
                    len,
                    port: id,
                    via: None,
                });
            }
        }
        t
    }

    /// This table with the static IPv6 routes `statics` added.
    pub fn with_v6(mut self, statics: &[Route6]) -> Self {
        for r in statics {
            self.add6(*r);
        }
        self
    }

    fn add6(&mut self, r: Route6) {
        let mask = prefix_mask6(r.len);
        let net = u128::from(r.net) & mask;
        self.routes6.push((
            net,
            mask,
            Route6 {
                net: Ipv6Addr::from(net),
                ..r
            },
        ));
        self.routes6.sort_by_key(|r| std::cmp::Reverse(r.2.len));
    }

    /// The egress port and next hop for IPv6 `dst`, or None if no route
    /// matches. Link-local destinations are never routed (RFC 4291 §2.5.6).
    #[inline]
    pub fn lookup6(&self, dst: Ipv6Addr) -> Option<(PortId, Ipv6Addr)> {
        if crate::port::is_link_local(dst) {
            return None;
        }
        let d = u128::from(dst);
        self.routes6
            .iter()
            .find(|(net, mask, _)| d & mask == *net)
            .map(|(_, _, r)| (r.port, r.via.unwrap_or(dst)))
    }

    /// All IPv6 routes, longest prefix first.
    pub fn routes6(&self) -> impl Iterator<Item = &Route6> {
        self.routes6.iter().map(|(_, _, r)| r)
    }

    fn add(&mut self, r: Route) {
        let mask = prefix_mask(r.len);
        let net = u32::from(r.net) & mask;
        self.routes.push((
            net,
            mask,
            Route {
                net: Ipv4Addr::from(net),
                ..r
            },
        ));
        self.routes.sort_by_key(|r| std::cmp::Reverse(r.2.len));
    }

    /// The egress port and next hop for `dst`, or None if no route matches.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<(PortId, Ipv4Addr)> {
        let d = u32::from(dst);
        self.routes
            .iter()
            .find(|(net, mask, _)| d & mask == *net)
            .map(|(_, _, r)| (r.port, r.via.unwrap_or(dst)))
    }

    /// All routes, longest prefix first.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().map(|(_, _, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> [PortAddr; 2] {
        [
            PortAddr {
                mac: [2, 0, 0, 0, 0, 1],
                ip4: Some((Ipv4Addr::new(10, 10, 1, 1), 24)),
                mtu: 1500,
                ip6: None,
            },
            PortAddr {
                mac: [2, 0, 0, 0, 0, 2],
                ip4: Some((Ipv4Addr::new(10, 10, 100, 1), 24)),
                mtu: 1500,
                ip6: None,
            },
        ]
    }

    #[test]
    fn ipv6_connected_static_and_longest_prefix() {
        let mut p = ports();
        p[0].ip6 = Some(("fd00:10:1::1".parse().unwrap(), 64));
        p[1].ip6 = Some(("fd00:10:100::1".parse().unwrap(), 64));
        let hop: Ipv6Addr = "fe80::1".parse().unwrap();
        let t = RouteTable::new(&p, &[]).with_v6(&[
            Route6 {
                net: "fd00:20::".parse().unwrap(),
                len: 32,
                port: PortId::Wan,
                via: Some(hop),
            },
            Route6 {
                net: "::".parse().unwrap(),
                len: 0,
                port: PortId::Lan,
                via: Some("fd00:10:1::fe".parse().unwrap()),
            },
        ]);
        let d = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert_eq!(
            t.lookup6(d("fd00:10:1::7")),
            Some((PortId::Lan, d("fd00:10:1::7")))
        );
        assert_eq!(t.lookup6(d("fd00:20:1::2")), Some((PortId::Wan, hop)));
        assert_eq!(
            t.lookup6(d("2001:db8::1")),
            Some((PortId::Lan, d("fd00:10:1::fe")))
        );
        assert_eq!(t.lookup6(d("fe80::2")), None, "link-local is never routed");
        assert_eq!(t.routes6().count(), 4);
        assert_eq!(
            t.lookup(Ipv4Addr::new(10, 10, 1, 9)).unwrap().0,
            PortId::Lan
        );
    }

    #[test]
    fn connected_static_and_longest_prefix() {
        let t = RouteTable::new(
            &ports(),
            &[
                Route {
                    net: Ipv4Addr::new(10, 20, 0, 0),
                    len: 16,
                    port: PortId::Wan,
                    via: Some(Ipv4Addr::new(10, 10, 100, 254)),
                },
                Route {
                    net: Ipv4Addr::new(10, 20, 9, 0),
                    len: 24,
                    port: PortId::Lan,
                    via: Some(Ipv4Addr::new(10, 10, 1, 9)),
                },
            ],
        );
        assert_eq!(
            t.lookup(Ipv4Addr::new(10, 10, 1, 7)),
            Some((PortId::Lan, Ipv4Addr::new(10, 10, 1, 7)))
        );
        assert_eq!(
            t.lookup(Ipv4Addr::new(10, 20, 1, 2)),
            Some((PortId::Wan, Ipv4Addr::new(10, 10, 100, 254)))
        );
        assert_eq!(
            t.lookup(Ipv4Addr::new(10, 20, 9, 2)),
            Some((PortId::Lan, Ipv4Addr::new(10, 10, 1, 9)))
        );
        assert_eq!(t.lookup(Ipv4Addr::new(192, 0, 2, 1)), None);
    }

    #[test]
    fn default_route_matches_everything_last() {
        let t = RouteTable::new(
            &ports(),
            &[Route {
                net: Ipv4Addr::UNSPECIFIED,
                len: 0,
                port: PortId::Wan,
                via: Some(Ipv4Addr::new(10, 10, 100, 254)),
            }],
        );
        assert_eq!(
            t.lookup(Ipv4Addr::new(192, 0, 2, 1)),
            Some((PortId::Wan, Ipv4Addr::new(10, 10, 100, 254)))
        );
        assert_eq!(
            t.lookup(Ipv4Addr::new(10, 10, 1, 3)),
            Some((PortId::Lan, Ipv4Addr::new(10, 10, 1, 3)))
        );
    }
}
