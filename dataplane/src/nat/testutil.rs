//! Packet builders and checks for the listener-mode tests. Checksums are
//! computed in full (smoltcp and `wire::checksum::of`), independently of
//! the incremental updates under test.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use smoltcp::wire::{IpAddress, TcpPacket, UdpPacket};

use crate::wire::{checksum, ipv4, ipv6, l4};

pub(crate) fn ip4(a: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

pub(crate) fn sa(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(ip4(a).into(), port)
}

pub(crate) fn ip6(a: &str) -> Ipv6Addr {
    a.parse().expect("an IPv6 address")
}

pub(crate) fn sa6(a: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip6(a).into(), port)
}

fn v4(a: SocketAddr) -> Ipv4Addr {
    match a.ip() {
        std::net::IpAddr::V4(ip) => ip,
        _ => panic!("{a} is not IPv4"),
    }
}

fn v6(a: SocketAddr) -> Ipv6Addr {
    match a.ip() {
        std::net::IpAddr::V6(ip) => ip,
        _ => panic!("{a} is not IPv6"),
    }
}

/// An IPv4 header (20 bytes, DF, TTL 64, id 0x1234) followed by `payload`,
/// with its header checksum.
pub(crate) fn ipv4_packet(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum::of(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..].copy_from_slice(payload);
    p
}

/// A UDP datagram with a full, valid checksum.
pub(crate) fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (s, d) = (v4(src), v4(dst));
    let mut seg = udp_segment(src, dst, payload);
    UdpPacket::new_unchecked(&mut seg[..]).fill_checksum(&IpAddress::Ipv4(s), &IpAddress::Ipv4(d));
    ipv4_packet(17, s, d, &seg)
}

fn udp_segment(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut seg = vec![0u8; 8 + payload.len()];
    seg[0..2].copy_from_slice(&src.port().to_be_bytes());
    seg[2..4].copy_from_slice(&dst.port().to_be_bytes());
    let len = seg.len() as u16;
    seg[4..6].copy_from_slice(&len.to_be_bytes());
    seg[8..].copy_from_slice(payload);
    seg
}

/// A TCP segment (20-byte header, seq 0x01020304, ack 0x05060708 when ACK
/// is set, window 0xfaf0) with a full, valid checksum.
pub(crate) fn tcp(src: SocketAddr, dst: SocketAddr, flags: u8, payload: &[u8]) -> Vec<u8> {
    let (s, d) = (v4(src), v4(dst));
    let mut seg = tcp_segment(src, dst, flags, payload);
    TcpPacket::new_unchecked(&mut seg[..]).fill_checksum(&IpAddress::Ipv4(s), &IpAddress::Ipv4(d));
    ipv4_packet(6, s, d, &seg)
}

fn tcp_segment(src: SocketAddr, dst: SocketAddr, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut seg = vec![0u8; 20 + payload.len()];
    seg[0..2].copy_from_slice(&src.port().to_be_bytes());
    seg[2..4].copy_from_slice(&dst.port().to_be_bytes());
    seg[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    if flags & 0x10 != 0 {
        seg[8..12].copy_from_slice(&0x0506_0708u32.to_be_bytes());
    }
    seg[12] = 5 << 4;
    seg[13] = flags;
    seg[14..16].copy_from_slice(&0xfaf0u16.to_be_bytes());
    seg[20..].copy_from_slice(payload);
    seg
}

/// An ICMP error of `kind`/`code` (with `rest` in bytes 4..8) from `src`
/// to `dst` quoting `quoted` (the whole packet: pass a prefix to quote less).
pub(crate) fn icmp_error(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    kind: u8,
    code: u8,
    rest: u32,
    quoted: &[u8],
) -> Vec<u8> {
    let mut m = vec![0u8; 8 + quoted.len()];
    m[0] = kind;
    m[1] = code;
    m[4..8].copy_from_slice(&rest.to_be_bytes());
    m[8..].copy_from_slice(quoted);
    let c = checksum::of(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4_packet(1, src, dst, &m)
}

/// The raw UDP checksum (no 0 → 0xffff substitution) of a datagram as it
/// stands, with its checksum field counted as it is.
pub(crate) fn checksum_udp_raw(p: &[u8]) -> u16 {
    let seg = &p[20..];
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&p[12..20]);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(seg);
    checksum::of(&pseudo)
}

/// Asserts that the IPv4 header checksum and the transport checksum (TCP,
/// UDP or ICMP; for an ICMP error also the quoted header's checksum) verify.
/// (For an IPv6 packet, see [`verify6`].)
pub(crate) fn verify(p: &[u8]) {
    if p[0] >> 4 == 6 {
        return verify6(p);
    }
    let ip = ipv4::parse(p).expect("valid IPv4 header and checksum");
    let body = &p[ip.header_len..ip.total_len];
    match ip.protocol {
        6 => l4::check_tcp(&ip, body).expect("TCP checksum"),
        17 => l4::check_udp(&ip, body).expect("UDP checksum"),
        1 => {
            l4::check_icmp(body).expect("ICMP checksum");
            let qhl = usize::from(body[8] & 0x0f) * 4;
            assert_eq!(checksum::of(&body[8..8 + qhl]), 0, "quoted IPv4 checksum");
        }
        other => panic!("unexpected protocol {other}"),
    }
}

/// An IPv6 header (traffic class 0, flow label 0x12345, hop limit 64)
/// whose next header is `next`, followed by `payload`.
pub(crate) fn ipv6_packet(next: u8, src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0..4].copy_from_slice(&0x6001_2345u32.to_be_bytes());
    p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    p[6] = next;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// A UDP datagram over IPv6 with a full, valid checksum.
pub(crate) fn udp6(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (s, d) = (v6(src), v6(dst));
    let mut seg = udp_segment(src, dst, payload);
    UdpPacket::new_unchecked(&mut seg[..]).fill_checksum(&IpAddress::Ipv6(s), &IpAddress::Ipv6(d));
    ipv6_packet(17, s, d, &seg)
}

/// A TCP segment over IPv6 (as [`tcp`]) with a full, valid checksum.
pub(crate) fn tcp6(src: SocketAddr, dst: SocketAddr, flags: u8, payload: &[u8]) -> Vec<u8> {
    let (s, d) = (v6(src), v6(dst));
    let mut seg = tcp_segment(src, dst, flags, payload);
    TcpPacket::new_unchecked(&mut seg[..]).fill_checksum(&IpAddress::Ipv6(s), &IpAddress::Ipv6(d));
    ipv6_packet(6, s, d, &seg)
}

/// `p` (an IPv6 packet) with extension header `header` of type `kind`
/// inserted right after the fixed header: its next-header byte is set to
/// what the fixed header named, and the payload length grows.
pub(crate) fn with_ext6(p: &[u8], kind: u8, mut header: Vec<u8>) -> Vec<u8> {
    header[0] = p[6];
    let mut q = p[..40].to_vec();
    q[6] = kind;
    let len = (p.len() - 40 + header.len()) as u16;
    q[4..6].copy_from_slice(&len.to_be_bytes());
    q.extend_from_slice(&header);
    q.extend_from_slice(&p[40..]);
    q
}

/// A Fragment extension header (for [`with_ext6`]) with `offset` in
/// 8-octet units and the More Fragments flag.
pub(crate) fn frag6(offset: u16, more: bool) -> Vec<u8> {
    let mut h = vec![0, 0, 0, 0, 0xca, 0xfe, 0xf0, 0x0d];
    h[2..4].copy_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
    h
}

/// A destination-options extension header (for [`with_ext6`]) of `units`
/// 8-octet units beyond the first, filled with a PadN option.
pub(crate) fn dest_opts6(units: u8) -> Vec<u8> {
    let mut h = vec![0u8; 8 + 8 * usize::from(units)];
    h[1] = units;
    h[2] = 1;
    h[3] = (h.len() - 4) as u8;
    h
}

/// The IPv6 pseudo-header (RFC 8200 §8.1) for an upper-layer message of
/// `len` bytes and protocol `next`, followed by the message.
fn pseudo6(src: &[u8], dst: &[u8], next: u8, msg: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(40 + msg.len());
    v.extend_from_slice(src);
    v.extend_from_slice(dst);
    v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, next]);
    v.extend_from_slice(msg);
    v
}

/// An ICMPv6 error of `kind`/`code` (with `rest` in bytes 4..8: the MTU of
/// a Packet Too Big, the pointer of a Parameter Problem) from `src` to
/// `dst` quoting `quoted`, with its checksum computed in full.
pub(crate) fn icmp6_error(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    kind: u8,
    code: u8,
    rest: u32,
    quoted: &[u8],
) -> Vec<u8> {
    let mut m = vec![0u8; 8 + quoted.len()];
    m[0] = kind;
    m[1] = code;
    m[4..8].copy_from_slice(&rest.to_be_bytes());
    m[8..].copy_from_slice(quoted);
    let c = checksum::of(&pseudo6(&src.octets(), &dst.octets(), 58, &m));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ipv6_packet(58, src, dst, &m)
}

/// True if the upper-layer checksum (TCP, UDP or ICMPv6) of the whole IPv6
/// packet `p` verifies, computed in full over the pseudo-header (a UDP
/// checksum of 0 does not verify: IPv6 requires one).
pub(crate) fn checksum6_ok(p: &[u8]) -> bool {
    let Ok(ip) = ipv6::parse(p) else {
        return false;
    };
    let l4 = &p[ip.l4_at..ip.total_len];
    if ip.protocol == 17 && l4.len() >= 8 && l4[6..8] == [0, 0] {
        return false;
    }
    checksum::of(&pseudo6(&p[8..24], &p[24..40], ip.protocol, l4)) == 0
}

/// Asserts that an IPv6 packet's transport checksum (TCP, UDP or ICMPv6)
/// verifies, and for an ICMPv6 error that quotes a whole packet, the
/// quoted packet's transport checksum too.
pub(crate) fn verify6(p: &[u8]) {
    let ip = ipv6::parse(p).expect("valid IPv6 packet");
    assert!(
        matches!(ip.protocol, 6 | 17 | 58),
        "unexpected protocol {}",
        ip.protocol
    );
    assert!(checksum6_ok(p), "IPv6 upper-layer checksum");
    if ip.protocol == 58 {
        let quoted = &p[ip.l4_at + 8..];
        if ipv6::parse(quoted).is_ok_and(|q| q.total_len == quoted.len()) {
            assert!(checksum6_ok(quoted), "quoted transport checksum");
        }
    }
}
