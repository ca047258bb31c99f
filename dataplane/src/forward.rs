//! The per-packet forwarding decision for IPv4 routing between the two
//! ports: validate, route, check TTL and MTU, resolve the next hop, then
//! rewrite in place (MACs, TTL with an incremental checksum update).
//!
//! Pure code over a byte slice: no I/O, no allocation, no lock.

use std::net::Ipv4Addr;

use crate::neigh::NeighborTable;
use crate::port::{PortAddr, PortId};
use crate::route::RouteTable;
use crate::stats::DropReason;
use crate::tunnel::TunnelTables;
use crate::wire::{ipv4, WireError, BROADCAST_MAC, ETH_HLEN};

/// What the gateway is: its ports' addresses and its routes.
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
        self.ports.iter().any(|p| p.ip == ip)
    }
}

/// Why a frame goes to the slow path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowReason {
    /// An ARP request or reply.
    Arp,
    /// ICMP addressed to the gateway.
    LocalIcmp,
    /// TTL ran out: answer with ICMP time exceeded.
    TtlExceeded,
    /// Too big for the egress port with DF set: answer with ICMP frag-needed carrying this MTU.
    FragNeeded(u16),
}

/// The outcome for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Rewritten in place; transmit on this port.
    Forward(PortId),
    /// Hand a copy to the slow path, then free it.
    Slow(SlowReason),
    /// Next hop unresolved: drop, and ask the slow path to resolve `next_hop` on `port`.
    Unresolved {
        /// The next hop to resolve.
        next_hop: Ipv4Addr,
        /// The port it is on.
        port: PortId,
    },
    /// Encapsulate with outbound SA `n` of the tunnel tables.
    Encap(usize),
    /// ESP-in-UDP for us: decapsulate.
    Decap,
    /// Listener mode: a consumer's packet to one of our LAN listeners, or a
    /// producer's reply to a mapped port: translate, then encapsulate.
    Nat,
    /// Drop and count.
    Drop(DropReason),
}

/// Decides what to do with `frame`, received on `in_port`, rewriting it in
/// place when it is forwarded in clear. With `tunnel` tables, traffic
/// between LAN and WAN goes only through the tunnel: LAN packets that match
/// a tunnel route are encapsulated, ESP-in-UDP to our WAN address is
/// decapsulated, and any other LAN↔WAN forwarding is dropped as `policy`.
#[inline]
pub fn forward(
    frame: &mut [u8],
    in_port: PortId,
    gw: &Gateway,
    neigh: &NeighborTable,
    tunnel: Option<&TunnelTables>,
) -> Verdict {
    if frame.len() < ETH_HLEN {
        return Verdict::Drop(DropReason::Runt);
    }
    let me = gw.port(in_port);
    let dst_mac = &frame[0..6];
    let broadcast = dst_mac == BROADCAST_MAC;
    if !broadcast && dst_mac != me.mac {
        return Verdict::Drop(DropReason::NotForUs);
    }
    match [frame[12], frame[13]] {
        [0x08, 0x06] => return Verdict::Slow(SlowReason::Arp),
        [0x08, 0x00] => {}
        _ => return Verdict::Drop(DropReason::UnsupportedEthertype),
    }
    if broadcast {
        return Verdict::Drop(DropReason::NotForUs);
    }
    let ip = match ipv4::parse(&frame[ETH_HLEN..]) {
        Ok(ip) => ip,
        Err(WireError::BadChecksum) => return Verdict::Drop(DropReason::Ipv4BadChecksum),
        Err(_) => return Verdict::Drop(DropReason::Ipv4Malformed),
    };
    if let Some(t) = tunnel {
        if in_port == PortId::Wan
            && ip.dst == gw.port(PortId::Wan).ip
            && ip.protocol == 17
            && !ip.is_later_fragment
        {
            let udp = &frame[ETH_HLEN + ip.header_len..ETH_HLEN + ip.total_len];
            if udp.len() >= 8 && u16::from_be_bytes([udp[2], udp[3]]) == t.udp_port {
                return Verdict::Decap;
            }
        }
    }
    if let (Some(t), PortId::Lan) = (tunnel, in_port) {
        if t.has_listeners() && ip.dst == gw.port(PortId::Lan).ip && nat_candidate(frame, &ip) {
            return into_tunnel(&ip, gw, Verdict::Nat);
        }
    }
    if gw.is_local(ip.dst) {
        return if ip.protocol == 1 {
            Verdict::Slow(SlowReason::LocalIcmp)
        } else {
            Verdict::Drop(DropReason::LocalUnsupported)
        };
    }
    if ip.dst.is_broadcast()
        || ip.dst.is_multicast()
        || ip.src.is_multicast()
        || ip.src.is_broadcast()
    {
        return Verdict::Drop(DropReason::NotForUs);
    }
    if let (Some(t), PortId::Lan) = (tunnel, in_port) {
        if let Some(sa) = t.route(ip.dst) {
            return into_tunnel(&ip, gw, Verdict::Encap(sa));
        }
    }
    let Some((out_port, next_hop)) = gw.routes.lookup(ip.dst) else {
        return Verdict::Drop(DropReason::NoRoute);
    };
    if tunnel.is_some() && out_port != in_port {
        return Verdict::Drop(DropReason::Policy);
    }
    if ip.ttl <= 1 {
        return Verdict::Slow(SlowReason::TtlExceeded);
    }
    let out = gw.port(out_port);
    if ip.total_len > usize::from(out.mtu) {
        return if ip.dont_frag {
            Verdict::Slow(SlowReason::FragNeeded(out.mtu))
        } else {
            Verdict::Drop(DropReason::TooBig)
        };
    }
    let Some(n) = neigh.get(next_hop, out_port) else {
        return Verdict::Unresolved {
            next_hop,
            port: out_port,
        };
    };
    ipv4::decrement_ttl(&mut frame[ETH_HLEN..]);
    frame[0..6].copy_from_slice(&n.mac);
    frame[6..12].copy_from_slice(&out.mac);
    Verdict::Forward(out_port)
}

/// `then`, unless the packet cannot enter the tunnel: TTL expiring here
/// (ICMP time exceeded), or larger than the inner MTU (ICMP frag-needed with
/// the inner MTU if DF is set, else dropped as too big).
fn into_tunnel(ip: &crate::wire::ipv4::Ipv4Info, gw: &Gateway, then: Verdict) -> Verdict {
    if ip.ttl <= 1 {
        return Verdict::Slow(SlowReason::TtlExceeded);
    }
    let inner_mtu = crate::esp::inner_mtu(gw.port(PortId::Wan).mtu);
    if ip.total_len > usize::from(inner_mtu) {
        return if ip.dont_frag {
            Verdict::Slow(SlowReason::FragNeeded(inner_mtu))
        } else {
            Verdict::Drop(DropReason::TooBig)
        };
    }
    then
}

/// TCP, UDP and ICMP errors (destination unreachable, time exceeded,
/// parameter problem) may belong to a listener-mode connection; ICMP echo to
/// the gateway is the gateway's own.
fn nat_candidate(frame: &[u8], ip: &crate::wire::ipv4::Ipv4Info) -> bool {
    match ip.protocol {
        6 | 17 => true,
        1 => matches!(frame.get(ETH_HLEN + ip.header_len), Some(3 | 11 | 12)),
        _ => false,
    }
}

/// Unit-test fixtures shared by forwarding, slow path and worker tests:
/// gateway A of the testbed.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::net::Ipv4Addr;

    use super::Gateway;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neigh::Neighbors;
    use crate::wire::ipv4::tests::udp_packet;

    use super::fixtures::{LAN_MAC, PROD_MAC, ROUTER_MAC, WAN_MAC};

    fn gateway() -> (Gateway, Neighbors) {
        (super::fixtures::gateway(), super::fixtures::neighbors())
    }

    fn frame(dst_mac: [u8; 6], ip: &[u8]) -> Vec<u8> {
        let mut f = dst_mac.to_vec();
        f.extend_from_slice(&PROD_MAC);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(ip);
        f
    }

    #[test]
    fn forwards_with_mac_rewrite_and_ttl_decrement() {
        let (gw, n) = gateway();
        let ip = udp_packet(b"payload", 64);
        let mut f = frame(LAN_MAC, &ip);
        assert_eq!(
            forward(&mut f, PortId::Lan, &gw, &n.load(), None),
            Verdict::Forward(PortId::Wan)
        );
        assert_eq!(&f[0..6], &ROUTER_MAC);
        assert_eq!(&f[6..12], &WAN_MAC);
        let out = ipv4::parse(&f[ETH_HLEN..]).expect("checksum still valid");
        assert_eq!(out.ttl, 63);
        // Everything but TTL and checksum is unchanged.
        let mut expect = ip.clone();
        expect[8] = 63;
        expect[10..12].copy_from_slice(&f[ETH_HLEN + 10..ETH_HLEN + 12]);
        assert_eq!(&f[ETH_HLEN..], &expect[..]);
    }

    #[test]
    fn drops_by_reason() {
        let (gw, n) = gateway();
        let t = n.load();
        let ip = udp_packet(b"payload", 64);
        let cases: Vec<(Vec<u8>, Verdict)> = vec![
            (vec![0u8; 10], Verdict::Drop(DropReason::Runt)),
            (
                frame([2, 9, 9, 9, 9, 9], &ip),
                Verdict::Drop(DropReason::NotForUs),
            ),
            (
                {
                    let mut f = frame(LAN_MAC, &ip);
                    f[12] = 0x86;
                    f[13] = 0xdd;
                    f
                },
                Verdict::Drop(DropReason::UnsupportedEthertype),
            ),
            (
                frame(LAN_MAC, &ip[..15]),
                Verdict::Drop(DropReason::Ipv4Malformed),
            ),
            (
                {
                    let mut f = frame(LAN_MAC, &ip);
                    f[ETH_HLEN + 11] ^= 1;
                    f
                },
                Verdict::Drop(DropReason::Ipv4BadChecksum),
            ),
            (
                frame(BROADCAST_MAC, &ip),
                Verdict::Drop(DropReason::NotForUs),
            ),
        ];
        for (mut f, want) in cases {
            assert_eq!(
                forward(&mut f, PortId::Lan, &gw, &t, None),
                want,
                "{f:02x?}"
            );
        }
    }

    fn with_dst(dst: [u8; 4], ttl: u8, len: usize) -> Vec<u8> {
        let mut p = udp_packet(&vec![0u8; len], ttl);
        p[16..20].copy_from_slice(&dst);
        p[10] = 0;
        p[11] = 0;
        let c = crate::wire::checksum::of(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn routing_outcomes() {
        let (gw, n) = gateway();
        let t = n.load();
        let mut f = frame(LAN_MAC, &with_dst([192, 0, 2, 1], 64, 10));
        assert_eq!(
            forward(&mut f, PortId::Lan, &gw, &t, None),
            Verdict::Drop(DropReason::NoRoute)
        );
        let mut f = frame(LAN_MAC, &with_dst([10, 20, 1, 2], 1, 10));
        assert_eq!(
            forward(&mut f, PortId::Lan, &gw, &t, None),
            Verdict::Slow(SlowReason::TtlExceeded)
        );
        let mut f = frame(LAN_MAC, &with_dst([10, 20, 1, 2], 64, 1500));
        assert_eq!(
            forward(&mut f, PortId::Lan, &gw, &t, None),
            Verdict::Slow(SlowReason::FragNeeded(1500))
        );
        let mut big = with_dst([10, 20, 1, 2], 64, 1500);
        big[6] = 0; // clear DF
        big[10] = 0;
        big[11] = 0;
        let c = crate::wire::checksum::of(&big[..20]);
        big[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = frame(LAN_MAC, &big);
        assert_eq!(
            forward(&mut f, PortId::Lan, &gw, &t, None),
            Verdict::Drop(DropReason::TooBig)
        );
        let mut f = frame(LAN_MAC, &with_dst([10, 10, 100, 7], 64, 10));
        assert_eq!(
            forward(&mut f, PortId::Lan, &gw, &t, None),
            Verdict::Unresolved {
                next_hop: Ipv4Addr::new(10, 10, 100, 7),
                port: PortId::Wan
            }
        );
        let mut f = frame(LAN_MAC, &with_dst([10, 10, 1, 1], 64, 10));
        assert_eq!(
            forward(&mut f, PortId::Lan, &gw, &t, None),
            Verdict::Drop(DropReason::LocalUnsupported)
        );
        let mut icmp = with_dst([10, 10, 100, 1], 64, 10);
        icmp[9] = 1;
        icmp[10] = 0;
        icmp[11] = 0;
        let c = crate::wire::checksum::of(&icmp[..20]);
        icmp[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = frame(LAN_MAC, &icmp);
        assert_eq!(
            forward(&mut f, PortId::Lan, &gw, &t, None),
            Verdict::Slow(SlowReason::LocalIcmp)
        );
        let mut arp = frame(BROADCAST_MAC, &[0u8; 28]);
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert_eq!(
            forward(&mut arp, PortId::Lan, &gw, &t, None),
            Verdict::Slow(SlowReason::Arp)
        );
    }
}
