//! The per-packet decision, in two steps that every packet path shares:
//!
//! - [`classify`]: what a received frame is and where it goes: the
//!   gateway's own ARP and ICMP (slow path), ESP-in-UDP for us
//!   (decapsulate), a LAN packet for the tunnel (encapsulate; in listener
//!   mode after its address translation), or a packet to route;
//! - [`route_out`]: the one route-out step, for forwarded packets and for
//!   decapsulated ones alike: route lookup, tunnel policy, TTL and MTU
//!   (ICMP time exceeded and fragmentation needed through the slow path),
//!   next-hop resolution, then the rewrite in place (MACs, TTL with an
//!   incremental checksum update).
//!
//! Pure code over a byte slice: no I/O, no allocation, no lock.

use std::net::IpAddr;

use crate::gateway::Gateway;
use crate::neigh::NeighborTable;
use crate::port::PortId;
use crate::stats::DropReason;
use crate::tunnel::TunnelTables;
use crate::wire::icmpv6;
use crate::wire::ipv4::Ipv4Info;
use crate::wire::ipv6::{self, next_header, Ipv6Info};
use crate::wire::{ipv4, WireError, BROADCAST_MAC, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_HLEN};

/// Why a frame goes to the slow path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowReason {
    /// An ARP request or reply.
    Arp,
    /// An IPv6 Neighbor Solicitation or Advertisement for the gateway.
    Nd,
    /// ICMP (or ICMPv6 echo) addressed to the gateway.
    LocalIcmp,
    /// TTL (hop limit) ran out: answer with ICMP (ICMPv6) time exceeded.
    TtlExceeded,
    /// Too big for the egress port: with DF set, answer with ICMP
    /// frag-needed carrying this MTU; IPv6 (never fragmented by routers):
    /// Packet Too Big.
    FragNeeded(u16),
}

/// Where the UDP datagram of an outer ESP-in-UDP packet lies in its IPv4
/// or IPv6 packet: found by [`classify`], so the decapsulation stage does
/// not parse the outer header again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterUdp {
    /// Offset of the UDP header: the outer IPv4 header length, or the IPv6
    /// header and its extension headers.
    pub udp_at: u16,
    /// The outer packet's total length (bytes after it are link padding).
    pub end: u16,
    /// An IPv6 outer header: the decapsulation stage checks the UDP checksum.
    pub ipv6: bool,
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
        next_hop: IpAddr,
        /// The port it is on.
        port: PortId,
    },
    /// Encapsulate with outbound SA `n` of the tunnel tables (in listener
    /// mode the addresses are already translated).
    Encap(usize),
    /// ESP-in-UDP for us: decapsulate.
    Decap(OuterUdp),
    /// Drop and count.
    Drop(DropReason),
}

/// Where a packet handed to [`route_out`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// Received on a port, in clear.
    Port(PortId),
    /// Out of the tunnel, authenticated and decrypted.
    Tunnel,
}

/// Decides what to do with `frame`, received on `in_port`, rewriting it in
/// place when it is forwarded in clear or translated for the tunnel. With
/// `tunnel` tables, traffic between LAN and WAN goes only through the
/// tunnel: LAN packets that match a tunnel route are encapsulated, LAN
/// packets to one of our listeners are translated and encapsulated,
/// ESP-in-UDP to our WAN address is decapsulated, and any other LAN↔WAN
/// forwarding is dropped as `policy`.
#[inline]
pub fn classify(
    frame: &mut [u8],
    in_port: PortId,
    gw: &Gateway,
    neigh: &NeighborTable,
    tunnel: Option<&TunnelTables>,
) -> Verdict {
    if frame.len() < ETH_HLEN {
        return Verdict::Drop(DropReason::Runt);
    }
    if frame[12..14] == ETHERTYPE_IPV6 {
        return classify6(frame, in_port, gw, neigh, tunnel);
    }
    let me = gw.port(in_port);
    let dst_mac = &frame[0..6];
    let broadcast = dst_mac == BROADCAST_MAC;
    if !broadcast && dst_mac != me.mac {
        return Verdict::Drop(DropReason::NotForUs);
    }
    match [frame[12], frame[13]] {
        [0x08, 0x06] => return Verdict::Slow(SlowReason::Arp),
        ETHERTYPE_IPV4 => {}
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
        if let Some(v) = tunnel_ingress(frame, in_port, &ip, gw, t) {
            return v;
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
            return into_tunnel(&ip, t).unwrap_or(Verdict::Encap(sa));
        }
    }
    route_out(
        frame,
        &ip,
        Ingress::Port(in_port),
        tunnel.is_some(),
        gw,
        neigh,
    )
}

/// The tunnel's own traffic: ESP-in-UDP to our WAN address, and in
/// listener mode a LAN packet to one of our listeners (translated here, in
/// place). `None` for anything else.
fn tunnel_ingress(
    frame: &mut [u8],
    in_port: PortId,
    ip: &Ipv4Info,
    gw: &Gateway,
    t: &TunnelTables,
) -> Option<Verdict> {
    match in_port {
        PortId::Wan => {
            let ours = gw.port(PortId::Wan).owns(ip.dst) && ip.protocol == 17;
            if !ours || ip.is_later_fragment {
                return None;
            }
            let udp = &frame[ETH_HLEN + ip.header_len..ETH_HLEN + ip.total_len];
            let to_our_port = udp.len() >= 8 && u16::from_be_bytes([udp[2], udp[3]]) == t.udp_port;
            to_our_port.then_some(Verdict::Decap(OuterUdp {
                udp_at: ip.header_len as u16,
                end: ip.total_len as u16,
                ipv6: false,
            }))
        }
        PortId::Lan => {
            let to_listener =
                t.has_listeners() && gw.port(PortId::Lan).owns(ip.dst) && nat_candidate(frame, ip);
            if !to_listener {
                return None;
            }
            if let Some(v) = into_tunnel(ip, t) {
                return Some(v);
            }
            Some(match t.nat_from_lan(&mut frame[ETH_HLEN..]) {
                Ok(sa) => Verdict::Encap(sa),
                Err(e) => Verdict::Drop(e.into()),
            })
        }
    }
}

/// The route-out step of every packet that leaves through a port: route
/// lookup, policy (with `tunnel_policy`, a packet received in clear leaves
/// by the port it came in on; a packet out of the tunnel goes onto the LAN,
/// nowhere else), TTL and MTU ([`egress_check`]), next-hop resolution, and
/// the rewrite of `frame` in place: MACs, TTL decremented with an
/// incremental checksum update. `ip` describes the IPv4 packet after the
/// frame's Ethernet header.
#[inline]
pub fn route_out(
    frame: &mut [u8],
    ip: &Ipv4Info,
    from: Ingress,
    tunnel_policy: bool,
    gw: &Gateway,
    neigh: &NeighborTable,
) -> Verdict {
    route_out_via(
        frame,
        gw.routes.lookup(ip.dst),
        from,
        tunnel_policy,
        gw,
        neigh,
        |mtu| egress_check(ip, mtu),
        ipv4::decrement_ttl,
    )
}

/// The family-neutral part of [`route_out`] and [`route_out6`]: `route`
/// is the lookup's egress port and next hop, `check` the TTL (hop limit)
/// and MTU check against the egress MTU, `decrement` the TTL (hop limit)
/// update of the IP header.
#[allow(clippy::too_many_arguments)]
#[inline]
fn route_out_via<A: Copy + Into<IpAddr>>(
    frame: &mut [u8],
    route: Option<(PortId, A)>,
    from: Ingress,
    tunnel_policy: bool,
    gw: &Gateway,
    neigh: &NeighborTable,
    check: impl FnOnce(u16) -> Option<Verdict>,
    decrement: fn(&mut [u8]),
) -> Verdict {
    let Some((out_port, next_hop)) = route else {
        return Verdict::Drop(match from {
            Ingress::Port(_) => DropReason::NoRoute,
            Ingress::Tunnel => DropReason::Policy,
        });
    };
    let allowed = match from {
        Ingress::Port(in_port) => !tunnel_policy || out_port == in_port,
        Ingress::Tunnel => out_port == PortId::Lan,
    };
    if !allowed {
        return Verdict::Drop(DropReason::Policy);
    }
    let out = gw.port(out_port);
    if let Some(v) = check(out.mtu) {
        return v;
    }
    let Some(n) = neigh.get(next_hop, out_port) else {
        return Verdict::Unresolved {
            next_hop: next_hop.into(),
            port: out_port,
        };
    };
    decrement(&mut frame[ETH_HLEN..]);
    frame[0..6].copy_from_slice(&n.mac);
    frame[6..12].copy_from_slice(&out.mac);
    Verdict::Forward(out_port)
}

/// Whether a packet may leave through a link of `mtu` bytes after this
/// hop: `None` if so; else TTL expiring here (ICMP time exceeded), or
/// larger than `mtu` (ICMP fragmentation needed with `mtu` if DF is set,
/// else dropped as too big: the gateway does not fragment).
#[inline]
pub fn egress_check(ip: &Ipv4Info, mtu: u16) -> Option<Verdict> {
    if ip.ttl <= 1 {
        return Some(Verdict::Slow(SlowReason::TtlExceeded));
    }
    if ip.total_len > usize::from(mtu) {
        return Some(if ip.dont_frag {
            Verdict::Slow(SlowReason::FragNeeded(mtu))
        } else {
            Verdict::Drop(DropReason::TooBig)
        });
    }
    None
}

/// [`egress_check`] against the tunnel's inner MTU, for a packet about to
/// be encapsulated.
fn into_tunnel(ip: &Ipv4Info, t: &TunnelTables) -> Option<Verdict> {
    egress_check(ip, t.inner_mtu())
}

/// [`classify`] for an IPv6 frame: Neighbor Discovery to the gateway's
/// solicited-node groups or to all nodes, ICMPv6 to the gateway's own
/// addresses, else the route-out step. Packets from or to link-local
/// addresses are never forwarded (RFC 4291 §2.5.6).
fn classify6(
    frame: &mut [u8],
    in_port: PortId,
    gw: &Gateway,
    neigh: &NeighborTable,
    tunnel: Option<&TunnelTables>,
) -> Verdict {
    let me = gw.port(in_port);
    let multicast_frame = frame[0] == 0x33 && frame[1] == 0x33;
    if !multicast_frame && frame[0..6] != me.mac {
        return Verdict::Drop(DropReason::NotForUs);
    }
    let ip = match ipv6::parse(&frame[ETH_HLEN..]) {
        Ok(ip) => ip,
        Err(_) => return Verdict::Drop(DropReason::Ipv6Malformed),
    };
    if ip.src.is_multicast() {
        return Verdict::Drop(DropReason::Ipv6Malformed);
    }
    let icmp_type = (ip.protocol == next_header::ICMPV6 && !ip.is_later_fragment)
        .then(|| frame.get(ETH_HLEN + ip.l4_at).copied())
        .flatten();
    let is_nd = matches!(icmp_type, Some(135 | 136));
    if ip.dst.is_multicast() {
        let ours = ip.dst == icmpv6::ALL_NODES
            || ip.dst == icmpv6::solicited_node(me.link_local())
            || me
                .ip6
                .is_some_and(|(own, _)| ip.dst == icmpv6::solicited_node(own));
        return if ours && is_nd {
            Verdict::Slow(SlowReason::Nd)
        } else {
            Verdict::Drop(DropReason::NotForUs)
        };
    }
    if multicast_frame {
        return Verdict::Drop(DropReason::NotForUs);
    }
    if let (Some(t), PortId::Wan, Some((wan6, _))) = (tunnel, in_port, me.ip6) {
        if ip.dst == wan6 {
            if let Some(v) = tunnel_ingress6(frame, &ip, t) {
                return v;
            }
        }
    }
    if let (Some(t), PortId::Lan, Some((lan6, _))) = (tunnel, in_port, me.ip6) {
        let to_listener = ip.dst == lan6
            && t.has_listeners()
            && (matches!(ip.protocol, 6 | 17) || matches!(icmp_type, Some(1..=4)));
        if to_listener {
            if let Some(v) = into_tunnel6(&ip, t) {
                return v;
            }
            return match t.nat_from_lan(&mut frame[ETH_HLEN..]) {
                Ok(sa) => Verdict::Encap(sa),
                Err(e) => Verdict::Drop(e.into()),
            };
        }
    }
    if me.owns6(ip.dst) || gw.is_local6(ip.dst) {
        return match icmp_type {
            Some(135 | 136) => Verdict::Slow(SlowReason::Nd),
            Some(128) => Verdict::Slow(SlowReason::LocalIcmp),
            _ => Verdict::Drop(DropReason::LocalUnsupported),
        };
    }
    if crate::port::is_link_local(ip.dst) || ip.dst.is_unspecified() {
        return Verdict::Drop(DropReason::NotForUs);
    }
    if crate::port::is_link_local(ip.src) || ip.src.is_unspecified() {
        return Verdict::Drop(DropReason::Policy);
    }
    if let (Some(t), PortId::Lan) = (tunnel, in_port) {
        if let Some(sa) = t.route6(ip.dst) {
            return into_tunnel6(&ip, t).unwrap_or(Verdict::Encap(sa));
        }
    }
    let policy = tunnel.is_some();
    route_out6(frame, &ip, Ingress::Port(in_port), policy, gw, neigh)
}

/// [`route_out`] for IPv6: route lookup, policy, hop limit and MTU
/// ([`egress_check6`]), next-hop resolution, the rewrite (MACs, hop limit).
#[inline]
pub fn route_out6(
    frame: &mut [u8],
    ip: &Ipv6Info,
    from: Ingress,
    tunnel_policy: bool,
    gw: &Gateway,
    neigh: &NeighborTable,
) -> Verdict {
    route_out_via(
        frame,
        gw.routes.lookup6(ip.dst),
        from,
        tunnel_policy,
        gw,
        neigh,
        |mtu| egress_check6(ip, mtu),
        ipv6::decrement_hop_limit,
    )
}

/// [`egress_check`] for IPv6: hop limit expiring here (ICMPv6 time
/// exceeded), or larger than `mtu` (Packet Too Big: IPv6 routers never
/// fragment).
#[inline]
pub fn egress_check6(ip: &Ipv6Info, mtu: u16) -> Option<Verdict> {
    if ip.hop_limit <= 1 {
        return Some(Verdict::Slow(SlowReason::TtlExceeded));
    }
    if ip.total_len > usize::from(mtu) {
        return Some(Verdict::Slow(SlowReason::FragNeeded(mtu)));
    }
    None
}

/// [`egress_check6`] against the tunnel's inner MTU, for an IPv6 packet
/// about to be encapsulated.
fn into_tunnel6(ip: &Ipv6Info, t: &TunnelTables) -> Option<Verdict> {
    egress_check6(ip, t.inner_mtu())
}

/// ESP-in-UDP over IPv6 to our WAN address and ESP port: decapsulate
/// (the decapsulation stage checks the UDP checksum).
fn tunnel_ingress6(frame: &[u8], ip: &Ipv6Info, t: &TunnelTables) -> Option<Verdict> {
    if ip.protocol != next_header::UDP || ip.is_later_fragment {
        return None;
    }
    let udp = &frame[ETH_HLEN + ip.l4_at..ETH_HLEN + ip.total_len];
    let to_our_port = udp.len() >= 8 && u16::from_be_bytes([udp[2], udp[3]]) == t.udp_port;
    to_our_port.then_some(Verdict::Decap(OuterUdp {
        udp_at: ip.l4_at as u16,
        end: ip.total_len as u16,
        ipv6: true,
    }))
}

/// TCP, UDP and ICMP errors (destination unreachable, time exceeded,
/// parameter problem) may belong to a listener-mode connection; ICMP echo to
/// the gateway is the gateway's own.
fn nat_candidate(frame: &[u8], ip: &Ipv4Info) -> bool {
    match ip.protocol {
        6 | 17 => true,
        1 => matches!(frame.get(ETH_HLEN + ip.header_len), Some(3 | 11 | 12)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neigh::Neighbors;
    use crate::wire::ipv4::tests::udp_packet;

    use crate::fixtures::{LAN_MAC, PROD_MAC, ROUTER_MAC, WAN_MAC};

    fn gateway() -> (Gateway, Neighbors) {
        (crate::fixtures::gateway(), crate::fixtures::neighbors())
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
            classify(&mut f, PortId::Lan, &gw, &n.load(), None),
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
                    f[12] = 0x81; // VLAN
                    f[13] = 0x00;
                    f
                },
                Verdict::Drop(DropReason::UnsupportedEthertype),
            ),
            (
                {
                    // An IPv4 packet behind the IPv6 ethertype.
                    let mut f = frame(LAN_MAC, &ip);
                    f[12] = 0x86;
                    f[13] = 0xdd;
                    f
                },
                Verdict::Drop(DropReason::Ipv6Malformed),
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
                classify(&mut f, PortId::Lan, &gw, &t, None),
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
            classify(&mut f, PortId::Lan, &gw, &t, None),
            Verdict::Drop(DropReason::NoRoute)
        );
        let mut f = frame(LAN_MAC, &with_dst([10, 20, 1, 2], 1, 10));
        assert_eq!(
            classify(&mut f, PortId::Lan, &gw, &t, None),
            Verdict::Slow(SlowReason::TtlExceeded)
        );
        let mut f = frame(LAN_MAC, &with_dst([10, 20, 1, 2], 64, 1500));
        assert_eq!(
            classify(&mut f, PortId::Lan, &gw, &t, None),
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
            classify(&mut f, PortId::Lan, &gw, &t, None),
            Verdict::Drop(DropReason::TooBig)
        );
        let mut f = frame(LAN_MAC, &with_dst([10, 10, 100, 7], 64, 10));
        assert_eq!(
            classify(&mut f, PortId::Lan, &gw, &t, None),
            Verdict::Unresolved {
                next_hop: std::net::Ipv4Addr::new(10, 10, 100, 7).into(),
                port: PortId::Wan
            }
        );
        let mut f = frame(LAN_MAC, &with_dst([10, 10, 1, 1], 64, 10));
        assert_eq!(
            classify(&mut f, PortId::Lan, &gw, &t, None),
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
            classify(&mut f, PortId::Lan, &gw, &t, None),
            Verdict::Slow(SlowReason::LocalIcmp)
        );
        let mut arp = frame(BROADCAST_MAC, &[0u8; 28]);
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert_eq!(
            classify(&mut arp, PortId::Lan, &gw, &t, None),
            Verdict::Slow(SlowReason::Arp)
        );
    }

    mod ipv6_tests {
        use super::*;
        use crate::fixtures::{router_ip6, LAN_IP6, PROD_IP6};
        use crate::wire::icmpv6::{multicast_mac, neighbor_solicit, solicited_node, ALL_NODES};
        use crate::wire::ipv6::tests::packet;
        use std::net::Ipv6Addr;

        const FAR: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x20, 1, 0, 0, 0, 0, 2);

        /// An Ethernet frame to `dst_mac` with an IPv6 UDP packet `src` → `dst`.
        fn frame6(dst_mac: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr, hops: u8, len: usize) -> Vec<u8> {
            let mut ip = packet(next_header::UDP, &[], &vec![0u8; len], hops);
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&dst.octets());
            let mut f = dst_mac.to_vec();
            f.extend_from_slice(&PROD_MAC);
            f.extend_from_slice(&ETHERTYPE_IPV6);
            f.extend_from_slice(&ip);
            f
        }

        fn icmp6(dst_mac: [u8; 6], dst: Ipv6Addr, icmp_type: u8) -> Vec<u8> {
            let mut f = frame6(dst_mac, PROD_IP6, dst, 255, 24);
            f[ETH_HLEN + 6] = next_header::ICMPV6;
            f[ETH_HLEN + 40] = icmp_type;
            f
        }

        #[test]
        fn forwards_ipv6_with_mac_rewrite_and_hop_limit_decrement() {
            let (gw, n) = gateway();
            let sent = frame6(LAN_MAC, PROD_IP6, FAR, 64, 100);
            let mut f = sent.clone();
            assert_eq!(
                classify(&mut f, PortId::Lan, &gw, &n.load(), None),
                Verdict::Forward(PortId::Wan)
            );
            assert_eq!((&f[0..6], &f[6..12]), (&ROUTER_MAC[..], &WAN_MAC[..]));
            let mut want = sent[ETH_HLEN..].to_vec();
            want[7] = 63;
            assert_eq!(&f[ETH_HLEN..], &want[..], "only the hop limit changes");
        }

        #[test]
        fn ipv6_hop_limit_mtu_and_resolution() {
            let (gw, n) = gateway();
            let t = n.load();
            let mut f = frame6(LAN_MAC, PROD_IP6, FAR, 1, 100);
            assert_eq!(
                classify(&mut f, PortId::Lan, &gw, &t, None),
                Verdict::Slow(SlowReason::TtlExceeded)
            );
            // 1501 bytes of IPv6 packet for a 1500-byte link: Packet Too Big, never fragmented.
            let mut f = frame6(LAN_MAC, PROD_IP6, FAR, 64, 1501 - 40);
            assert_eq!(
                classify(&mut f, PortId::Lan, &gw, &t, None),
                Verdict::Slow(SlowReason::FragNeeded(1500))
            );
            let hop: Ipv6Addr = "fd00:10:100::7".parse().unwrap();
            let mut f = frame6(LAN_MAC, PROD_IP6, hop, 64, 10);
            assert_eq!(
                classify(&mut f, PortId::Lan, &gw, &t, None),
                Verdict::Unresolved {
                    next_hop: hop.into(),
                    port: PortId::Wan
                }
            );
            let mut f = frame6(LAN_MAC, PROD_IP6, "2001:db8::1".parse().unwrap(), 64, 10);
            assert_eq!(
                classify(&mut f, PortId::Lan, &gw, &t, None),
                Verdict::Drop(DropReason::NoRoute)
            );
            // Between LAN and WAN only through the tunnel.
            let mut f = frame6(LAN_MAC, PROD_IP6, FAR, 64, 10);
            let tables = crate::tunnel::TunnelTables::empty(
                &crate::tunnel::TableContext {
                    engine: crate::crypto::EngineKind::Ring,
                    udp_port: 4500,
                    lan_ip: gw.port(PortId::Lan).ip(),
                    lan_ip6: None,
                    wan_ip: gw.port(PortId::Wan).ip(),
                    wan_ip6: None,
                    wan_mtu: 1500,
                    nat_port_base: 40000,
                    nat_slots: 64,
                    sa_slots: None,
                    tcp_mss: None,
                },
                1,
            );
            assert_eq!(
                classify(&mut f, PortId::Lan, &gw, &t, Some(&tables)),
                Verdict::Drop(DropReason::Policy)
            );
        }

        #[test]
        fn neighbor_discovery_and_echo_for_the_gateway() {
            let (gw, n) = gateway();
            let t = n.load();
            let ns = neighbor_solicit(PROD_MAC, PROD_IP6, LAN_IP6);
            let mut f = ns.clone();
            assert_eq!(
                classify(&mut f, PortId::Lan, &gw, &t, None),
                Verdict::Slow(SlowReason::Nd)
            );
            // For our link-local address too.
            let lla = gw.port(PortId::Lan).link_local();
            let mut f = neighbor_solicit(PROD_MAC, PROD_IP6, lla);
            assert_eq!(
                classify(&mut f, PortId::Lan, &gw, &t, None),
                Verdict::Slow(SlowReason::Nd)
            );
            // Someone else's solicited-node group.
            let mut f = neighbor_solicit(PROD_MAC, PROD_IP6, "fd00:10:1::99".parse().unwrap());
            assert_eq!(
                classify(&mut f, PortId::Lan, &gw, &t, None),
                Verdict::Drop(DropReason::NotForUs)
            );
            let mut f = icmp6(LAN_MAC, LAN_IP6, 128);
            assert_eq!(
                classify(&mut f, PortId::Lan, &gw, &t, None),
                Verdict::Slow(SlowReason::LocalIcmp)
            );
            // Echo to the WAN address from the LAN: the gateway's own.
            let mut f = icmp6(LAN_MAC, "fd00:10:100::1".parse().unwrap(), 128);
            assert_eq!(
                classify(&mut f, PortId::Lan, &gw, &t, None),
                Verdict::Slow(SlowReason::LocalIcmp)
            );
            // A router advertisement to all nodes: not ours to act on.
            let mut f = icmp6(multicast_mac(ALL_NODES), ALL_NODES, 134);
            assert_eq!(
                classify(&mut f, PortId::Lan, &gw, &t, None),
                Verdict::Drop(DropReason::NotForUs)
            );
            let mut f = frame6(LAN_MAC, PROD_IP6, LAN_IP6, 64, 10);
            assert_eq!(
                classify(&mut f, PortId::Lan, &gw, &t, None),
                Verdict::Drop(DropReason::LocalUnsupported)
            );
            assert_eq!(solicited_node(LAN_IP6).segments()[6], 0xff00);
        }

        #[test]
        fn ipv6_never_forwards_link_local_or_malformed_packets() {
            let (gw, n) = gateway();
            let t = n.load();
            let cases = [
                (
                    frame6(LAN_MAC, PROD_IP6, "fe80::99".parse().unwrap(), 64, 10),
                    DropReason::NotForUs,
                ),
                (
                    frame6(LAN_MAC, "fe80::2".parse().unwrap(), FAR, 64, 10),
                    DropReason::Policy,
                ),
                (
                    frame6(LAN_MAC, ALL_NODES, FAR, 64, 10),
                    DropReason::Ipv6Malformed,
                ),
                (
                    frame6([2, 9, 9, 9, 9, 9], PROD_IP6, FAR, 64, 10),
                    DropReason::NotForUs,
                ),
                (
                    // A unicast packet in a multicast frame.
                    frame6(multicast_mac(ALL_NODES), PROD_IP6, FAR, 64, 10),
                    DropReason::NotForUs,
                ),
                (
                    frame6(LAN_MAC, PROD_IP6, FAR, 64, 10)[..ETH_HLEN + 30].to_vec(),
                    DropReason::Ipv6Malformed,
                ),
            ];
            for (mut f, want) in cases {
                assert_eq!(
                    classify(&mut f, PortId::Lan, &gw, &t, None),
                    Verdict::Drop(want),
                    "{f:02x?}"
                );
            }
            assert_eq!(router_ip6().segments()[0], 0xfe80);
        }
    }
}
