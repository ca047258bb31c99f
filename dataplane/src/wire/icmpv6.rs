//! ICMPv6 the gateway speaks (RFC 4443, RFC 4861): Neighbor Discovery for
//! its own addresses (solicitations answered, advertisements learned, next
//! hops solicited), echo replies, and the errors a router sends: time
//! exceeded and Packet Too Big (IPv6 routers never fragment).
//!
//! Parsing and the checksum are smoltcp's ([`Icmpv6Packet`], [`Icmpv6Repr`],
//! [`NdiscRepr`]); this module applies the validity rules of RFC 4861 §7.1
//! and RFC 4443 §2.4 and lays out whole Ethernet frames.

use std::net::Ipv6Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, Icmpv6Message, Icmpv6Packet, Icmpv6Repr, NdiscNeighborFlags, NdiscRepr,
    RawHardwareAddress,
};

use super::ipv6::{self, next_header, Ipv6Info, IPV6_HLEN};
use super::{Mac, WireError, ETH_HLEN};

pub use super::ETHERTYPE_IPV6;
/// Hop limit of the packets the gateway originates (other than ND).
pub const DEFAULT_HOP_LIMIT: u8 = 64;
/// Neighbor Discovery messages carry hop limit 255, so a receiver knows
/// they come from the link (RFC 4861 §7.1).
pub const ND_HOP_LIMIT: u8 = 255;
/// An ICMPv6 error never makes a packet larger than the IPv6 minimum MTU
/// (RFC 4443 §2.4 (c)).
pub const MIN_MTU: usize = 1280;

/// The all-nodes multicast address, ff02::1.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The solicited-node multicast group of `ip` (RFC 4291 §2.7.1): ff02::1:ffXX:XXXX.
pub fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet multicast MAC of IPv6 multicast address `ip` (RFC 2464 §7): 33:33 and its low 32 bits.
pub fn multicast_mac(ip: Ipv6Addr) -> Mac {
    let o = ip.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// The link-local address formed from `mac` (modified EUI-64, RFC 4291 appendix A).
pub fn link_local_from_mac(mac: Mac) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o[0] = 0xfe;
    o[1] = 0x80;
    o[8] = mac[0] ^ 0x02;
    o[9] = mac[1];
    o[10] = mac[2];
    o[11] = 0xff;
    o[12] = 0xfe;
    o[13] = mac[3];
    o[14] = mac[4];
    o[15] = mac[5];
    Ipv6Addr::from(o)
}

/// A Neighbor Discovery message the gateway acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nd {
    /// Who has `target`? From `src` (unspecified during duplicate address
    /// detection) with its link-layer address if it gave one.
    Solicit {
        /// Sender's address (`::` for duplicate address detection).
        src: Ipv6Addr,
        /// The address asked about.
        target: Ipv6Addr,
        /// The sender's MAC (source link-layer address option).
        lladdr: Option<Mac>,
    },
    /// `target` is at `lladdr`.
    Advert {
        /// The address advertised.
        target: Ipv6Addr,
        /// Its MAC (target link-layer address option).
        lladdr: Option<Mac>,
        /// An answer to a solicitation.
        solicited: bool,
        /// The sender asks to override a cached entry.
        override_: bool,
    },
}

/// Parses and validates the Neighbor Solicitation or Advertisement in
/// `frame` (Ethernet included), by RFC 4861 §7.1: hop limit 255, ICMP code
/// 0, valid checksum, a unicast target, and for a solicitation from `::`
/// a solicited-node destination and no link-layer address option.
/// Other ND messages (router solicitations and advertisements, redirects)
/// are [`WireError::Malformed`]: the gateway ignores them.
pub fn parse_nd(frame: &[u8]) -> Result<Nd, WireError> {
    let (ip, icmp) = icmpv6_of(frame)?;
    if ip.hop_limit != ND_HOP_LIMIT {
        return Err(WireError::Malformed);
    }
    let repr = checked_repr(&ip, icmp)?;
    let mac = |l: Option<RawHardwareAddress>| -> Result<Option<Mac>, WireError> {
        match l {
            None => Ok(None),
            Some(raw) => {
                let b = raw.as_bytes();
                let mac: Mac = b.try_into().map_err(|_| WireError::Malformed)?;
                Ok(Some(mac))
            }
        }
    };
    match repr {
        Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
            target_addr,
            lladdr,
        }) => {
            if target_addr.is_multicast() {
                return Err(WireError::Malformed);
            }
            if ip.src.is_unspecified()
                && (ip.dst != solicited_node(target_addr) || lladdr.is_some())
            {
                return Err(WireError::Malformed);
            }
            Ok(Nd::Solicit {
                src: ip.src,
                target: target_addr,
                lladdr: mac(lladdr)?,
            })
        }
        Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
            flags,
            target_addr,
            lladdr,
        }) => {
            if target_addr.is_multicast()
                || (ip.dst.is_multicast() && flags.contains(NdiscNeighborFlags::SOLICITED))
            {
                return Err(WireError::Malformed);
            }
            Ok(Nd::Advert {
                target: target_addr,
                lladdr: mac(lladdr)?,
                solicited: flags.contains(NdiscNeighborFlags::SOLICITED),
                override_: flags.contains(NdiscNeighborFlags::OVERRIDE),
            })
        }
        _ => Err(WireError::Malformed),
    }
}

/// The Neighbor Advertisement answering a solicitation for our `target`
/// (at `our_mac`) from `to` (`::` for duplicate address detection: then
/// to all nodes, unsolicited) at `to_mac`. Sets the router flag.
pub fn neighbor_advert(our_mac: Mac, target: Ipv6Addr, to: Ipv6Addr, to_mac: Mac) -> Vec<u8> {
    let (dst, dst_mac, solicited) = if to.is_unspecified() {
        (ALL_NODES, multicast_mac(ALL_NODES), false)
    } else {
        (to, to_mac, true)
    };
    let mut flags = NdiscNeighborFlags::ROUTER | NdiscNeighborFlags::OVERRIDE;
    if solicited {
        flags |= NdiscNeighborFlags::SOLICITED;
    }
    let repr = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags,
        target_addr: target,
        lladdr: Some(EthernetAddress(our_mac).into()),
    });
    emit_frame(our_mac, dst_mac, target, dst, ND_HOP_LIMIT, &repr)
}

/// The Neighbor Solicitation for `target` from our `src` at `our_mac`, to
/// the target's solicited-node group.
pub fn neighbor_solicit(our_mac: Mac, src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let group = solicited_node(target);
    let repr = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: target,
        lladdr: Some(EthernetAddress(our_mac).into()),
    });
    emit_frame(
        our_mac,
        multicast_mac(group),
        src,
        group,
        ND_HOP_LIMIT,
        &repr,
    )
}

/// Builds the echo reply to the echo request in `frame` (Ethernet
/// included), from the address it was sent to, or an error if it is not
/// a valid echo request.
pub fn echo_reply(frame: &[u8], our_mac: Mac) -> Result<Vec<u8>, WireError> {
    let (ip, icmp) = icmpv6_of(frame)?;
    let Icmpv6Repr::EchoRequest {
        ident,
        seq_no,
        data,
    } = checked_repr(&ip, icmp)?
    else {
        return Err(WireError::Malformed);
    };
    let repr = Icmpv6Repr::EchoReply {
        ident,
        seq_no,
        data,
    };
    let to_mac: Mac = frame[6..12].try_into().expect("6 bytes");
    Ok(emit_frame(
        our_mac,
        to_mac,
        ip.dst,
        ip.src,
        DEFAULT_HOP_LIMIT,
        &repr,
    ))
}

/// An ICMPv6 error a router sends about a packet it cannot forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error6 {
    /// Hop limit exceeded in transit (type 3, code 0).
    TimeExceeded,
    /// Packet Too Big (type 2) with the next hop's MTU.
    PacketTooBig(u32),
}

/// Builds the ICMPv6 error `kind` about the packet in `frame`, from
/// `our_ip` back to the frame's link-layer sender, quoting as much of the
/// packet as keeps the error within 1280 bytes. `None` where RFC 4443 §2.4
/// forbids one: about an ICMPv6 error or redirect, from an unspecified or
/// multicast source, or (other than Packet Too Big) to a multicast group.
pub fn error_for(frame: &[u8], our_mac: Mac, our_ip: Ipv6Addr, kind: Error6) -> Option<Vec<u8>> {
    let bytes = frame.get(ETH_HLEN..)?;
    let ip = ipv6::parse(bytes).ok()?;
    if ip.src.is_unspecified() || ip.src.is_multicast() {
        return None;
    }
    if ip.dst.is_multicast() && !matches!(kind, Error6::PacketTooBig(_)) {
        return None;
    }
    if ip.protocol == next_header::ICMPV6 && !ip.is_later_fragment {
        // Errors are types 0..=127; redirects (137) are not answered either.
        match bytes.get(ip.l4_at) {
            Some(128 | 129) => {}
            _ => return None,
        }
    }
    let quoted = &bytes[..ip.total_len.min(MIN_MTU - IPV6_HLEN - 8)];
    let icmp_len = 8 + quoted.len();
    let to_mac: Mac = frame[6..12].try_into().expect("6 bytes");
    let mut out = ip_header_frame(our_mac, to_mac, our_ip, ip.src, DEFAULT_HOP_LIMIT, icmp_len);
    let body = &mut out[ETH_HLEN + IPV6_HLEN..ETH_HLEN + IPV6_HLEN + icmp_len];
    body[8..].copy_from_slice(quoted);
    let mut p = Icmpv6Packet::new_unchecked(body);
    match kind {
        Error6::TimeExceeded => {
            p.set_msg_type(Icmpv6Message::TimeExceeded);
            p.set_msg_code(0);
        }
        Error6::PacketTooBig(mtu) => {
            p.set_msg_type(Icmpv6Message::PktTooBig);
            p.set_msg_code(0);
            p.set_pkt_too_big_mtu(mtu);
        }
    }
    p.fill_checksum(&our_ip, &ip.src);
    Some(out)
}

/// The IPv6 header and ICMPv6 bytes of `frame`, if it carries ICMPv6 in
/// its first fragment.
fn icmpv6_of(frame: &[u8]) -> Result<(Ipv6Info, &[u8]), WireError> {
    let bytes = frame.get(ETH_HLEN..).ok_or(WireError::Truncated)?;
    let ip = ipv6::parse(bytes)?;
    if ip.protocol != next_header::ICMPV6 || ip.is_later_fragment {
        return Err(WireError::Malformed);
    }
    Ok((ip, &bytes[ip.l4_at..ip.total_len]))
}

/// smoltcp's parse of `icmp`, checksum verified.
fn checked_repr<'a>(ip: &Ipv6Info, icmp: &'a [u8]) -> Result<Icmpv6Repr<'a>, WireError> {
    let p = Icmpv6Packet::new_checked(icmp).map_err(|_| WireError::Truncated)?;
    if !p.verify_checksum(&ip.src, &ip.dst) {
        return Err(WireError::BadChecksum);
    }
    Icmpv6Repr::parse(&ip.src, &ip.dst, &p, &ChecksumCapabilities::ignored())
        .map_err(|_| WireError::Malformed)
}

/// A whole frame carrying `repr` from `src` to `dst`.
fn emit_frame(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    repr: &Icmpv6Repr<'_>,
) -> Vec<u8> {
    let len = repr.buffer_len();
    let mut out = ip_header_frame(src_mac, dst_mac, src, dst, hop_limit, len);
    let body = &mut out[ETH_HLEN + IPV6_HLEN..ETH_HLEN + IPV6_HLEN + len];
    repr.emit(
        &src,
        &dst,
        &mut Icmpv6Packet::new_unchecked(body),
        &ChecksumCapabilities::default(),
    );
    out
}

/// An Ethernet + IPv6 header (next header ICMPv6) with `payload_len` zero
/// bytes after it, zero-padded to the 60-byte minimum frame.
fn ip_header_frame(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    payload_len: usize,
) -> Vec<u8> {
    let mut out = vec![0u8; (ETH_HLEN + IPV6_HLEN + payload_len).max(60)];
    out[..6].copy_from_slice(&dst_mac);
    out[6..12].copy_from_slice(&src_mac);
    out[12..14].copy_from_slice(&ETHERTYPE_IPV6);
    let h = &mut out[ETH_HLEN..ETH_HLEN + IPV6_HLEN];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    h[6] = next_header::ICMPV6;
    h[7] = hop_limit;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUR_MAC: Mac = [2, 0xaa, 0, 0, 0, 1];
    const HOST_MAC: Mac = [2, 0, 0, 0, 1, 2];
    const OUR_IP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 1, 0, 0, 0, 0, 1);
    const HOST_IP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 1, 0, 0, 0, 0, 2);

    fn icmp_repr_of(frame: &[u8]) -> (Ipv6Info, Icmpv6Repr<'_>) {
        let (ip, icmp) = icmpv6_of(frame).unwrap();
        (ip, checked_repr(&ip, icmp).unwrap())
    }

    #[test]
    fn addresses_derived_from_macs_and_groups() {
        assert_eq!(
            link_local_from_mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            solicited_node("fd00:10:1::1:2:3:4".parse().unwrap()),
            "ff02::1:ff03:4".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            multicast_mac("ff02::1:ff03:4".parse().unwrap()),
            [0x33, 0x33, 0xff, 0x03, 0x00, 0x04]
        );
    }

    #[test]
    fn a_solicitation_we_send_parses_back_and_is_answered() {
        let ns = neighbor_solicit(HOST_MAC, HOST_IP, OUR_IP);
        assert_eq!(&ns[..6], &multicast_mac(solicited_node(OUR_IP)));
        assert_eq!(
            parse_nd(&ns),
            Ok(Nd::Solicit {
                src: HOST_IP,
                target: OUR_IP,
                lladdr: Some(HOST_MAC)
            })
        );
        let na = neighbor_advert(OUR_MAC, OUR_IP, HOST_IP, HOST_MAC);
        assert_eq!((&na[..6], &na[6..12]), (&HOST_MAC[..], &OUR_MAC[..]));
        assert_eq!(
            parse_nd(&na),
            Ok(Nd::Advert {
                target: OUR_IP,
                lladdr: Some(OUR_MAC),
                solicited: true,
                override_: true
            })
        );
        let (ip, _) = icmp_repr_of(&na);
        assert_eq!((ip.src, ip.dst, ip.hop_limit), (OUR_IP, HOST_IP, 255));
        // Duplicate address detection (from ::): the answer goes to all nodes, unsolicited.
        let na = neighbor_advert(OUR_MAC, OUR_IP, Ipv6Addr::UNSPECIFIED, HOST_MAC);
        assert_eq!(&na[..6], &multicast_mac(ALL_NODES));
        assert!(matches!(
            parse_nd(&na),
            Ok(Nd::Advert {
                solicited: false,
                ..
            })
        ));
    }

    #[test]
    fn invalid_neighbor_discovery_is_refused() {
        let ns = neighbor_solicit(HOST_MAC, HOST_IP, OUR_IP);
        // Not from the link: hop limit below 255.
        let mut hop = ns.clone();
        hop[ETH_HLEN + 7] = 64;
        assert_eq!(parse_nd(&hop), Err(WireError::Malformed));
        // A damaged checksum.
        let mut bad = ns.clone();
        let last = ETH_HLEN + IPV6_HLEN + 20;
        bad[last] ^= 1;
        assert_eq!(parse_nd(&bad), Err(WireError::BadChecksum));
        // From :: with a link-layer address option (RFC 4861 §7.1.1).
        let mut dad = neighbor_solicit(HOST_MAC, Ipv6Addr::UNSPECIFIED, OUR_IP);
        assert_eq!(parse_nd(&dad), Err(WireError::Malformed));
        dad.truncate(ETH_HLEN + IPV6_HLEN + 24);
        dad[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&24u16.to_be_bytes());
        let mut p = Icmpv6Packet::new_unchecked(&mut dad[ETH_HLEN + IPV6_HLEN..]);
        p.fill_checksum(&Ipv6Addr::UNSPECIFIED, &solicited_node(OUR_IP));
        assert!(matches!(
            parse_nd(&dad),
            Ok(Nd::Solicit { lladdr: None, .. })
        ));
        // Truncated.
        assert!(parse_nd(&ns[..ETH_HLEN + IPV6_HLEN + 10]).is_err());
        // An echo request is not ND.
        let echo = echo_request(7);
        assert_eq!(parse_nd(&echo), Err(WireError::Malformed));
    }

    fn echo_request(seq: u16) -> Vec<u8> {
        let repr = Icmpv6Repr::EchoRequest {
            ident: 0x1234,
            seq_no: seq,
            data: b"ping6 payload",
        };
        emit_frame(HOST_MAC, OUR_MAC, HOST_IP, OUR_IP, 64, &repr)
    }

    #[test]
    fn echo_requests_get_replies_with_the_same_data() {
        let reply = echo_reply(&echo_request(7), OUR_MAC).unwrap();
        assert_eq!((&reply[..6], &reply[6..12]), (&HOST_MAC[..], &OUR_MAC[..]));
        let (ip, repr) = icmp_repr_of(&reply);
        assert_eq!((ip.src, ip.dst), (OUR_IP, HOST_IP));
        assert_eq!(
            repr,
            Icmpv6Repr::EchoReply {
                ident: 0x1234,
                seq_no: 7,
                data: b"ping6 payload"
            }
        );
        let mut bad = echo_request(7);
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert_eq!(echo_reply(&bad, OUR_MAC), Err(WireError::BadChecksum));
    }

    /// A UDP packet from HOST_IP to a far address, `len` bytes of IPv6 packet.
    fn forwarded(len: usize, dst: Ipv6Addr) -> Vec<u8> {
        let mut f = vec![0u8; ETH_HLEN + len];
        f[..6].copy_from_slice(&OUR_MAC);
        f[6..12].copy_from_slice(&HOST_MAC);
        f[12..14].copy_from_slice(&ETHERTYPE_IPV6);
        let h = &mut f[ETH_HLEN..];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&((len - IPV6_HLEN) as u16).to_be_bytes());
        h[6] = next_header::UDP;
        h[7] = 1;
        h[8..24].copy_from_slice(&HOST_IP.octets());
        h[24..40].copy_from_slice(&dst.octets());
        f
    }

    #[test]
    fn errors_quote_the_packet_up_to_the_minimum_mtu() {
        let far: Ipv6Addr = "fd00:20:1::2".parse().unwrap();
        let small = forwarded(100, far);
        let e = error_for(&small, OUR_MAC, OUR_IP, Error6::TimeExceeded).unwrap();
        assert_eq!(&e[..6], &HOST_MAC);
        let (ip, repr) = icmp_repr_of(&e);
        assert_eq!((ip.src, ip.dst), (OUR_IP, HOST_IP));
        assert!(matches!(repr, Icmpv6Repr::TimeExceeded { .. }));
        assert_eq!(&e[ETH_HLEN + IPV6_HLEN + 8..], &small[ETH_HLEN..]);

        let big = forwarded(1500, far);
        let e = error_for(&big, OUR_MAC, OUR_IP, Error6::PacketTooBig(1438)).unwrap();
        assert_eq!(e.len() - ETH_HLEN, MIN_MTU, "never above 1280 bytes");
        let (_, repr) = icmp_repr_of(&e);
        match repr {
            Icmpv6Repr::PktTooBig { mtu, .. } => assert_eq!(mtu, 1438),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            &e[ETH_HLEN + IPV6_HLEN + 8..],
            &big[ETH_HLEN..ETH_HLEN + MIN_MTU - 48]
        );
    }

    #[test]
    fn no_error_where_rfc_4443_forbids_one() {
        let far: Ipv6Addr = "fd00:20:1::2".parse().unwrap();
        // About an ICMPv6 error.
        let err = error_for(&forwarded(100, far), OUR_MAC, OUR_IP, Error6::TimeExceeded).unwrap();
        assert_eq!(error_for(&err, OUR_MAC, OUR_IP, Error6::TimeExceeded), None);
        // From a multicast or unspecified source.
        for src in [Ipv6Addr::UNSPECIFIED, ALL_NODES] {
            let mut f = forwarded(100, far);
            f[ETH_HLEN + 8..ETH_HLEN + 24].copy_from_slice(&src.octets());
            assert_eq!(error_for(&f, OUR_MAC, OUR_IP, Error6::TimeExceeded), None);
        }
        // To a group: only Packet Too Big (path MTU discovery for multicast).
        let group: Ipv6Addr = "ff0e::5".parse().unwrap();
        let f = forwarded(100, group);
        assert_eq!(error_for(&f, OUR_MAC, OUR_IP, Error6::TimeExceeded), None);
        assert!(error_for(&f, OUR_MAC, OUR_IP, Error6::PacketTooBig(1280)).is_some());
        // An echo request may be answered with an error.
        let mut echo = echo_request(1);
        echo[..6].copy_from_slice(&OUR_MAC);
        assert!(error_for(&echo, OUR_MAC, OUR_IP, Error6::TimeExceeded).is_some());
    }
}
