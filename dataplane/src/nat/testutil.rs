//! Packet builders and checks for the listener-mode tests. Checksums are
//! computed in full (smoltcp and `wire::checksum::of`), independently of
//! the incremental updates under test.

use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::wire::{IpAddress, TcpPacket, UdpPacket};

use crate::wire::{checksum, ipv4, l4};

pub(crate) fn ip4(a: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

pub(crate) fn sa(a: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip4(a), port)
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
pub(crate) fn udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut seg = vec![0u8; 8 + payload.len()];
    seg[0..2].copy_from_slice(&src.port().to_be_bytes());
    seg[2..4].copy_from_slice(&dst.port().to_be_bytes());
    let len = seg.len() as u16;
    seg[4..6].copy_from_slice(&len.to_be_bytes());
    seg[8..].copy_from_slice(payload);
    UdpPacket::new_unchecked(&mut seg[..])
        .fill_checksum(&IpAddress::Ipv4(*src.ip()), &IpAddress::Ipv4(*dst.ip()));
    ipv4_packet(17, *src.ip(), *dst.ip(), &seg)
}

/// A TCP segment (20-byte header, seq 0x01020304, ack 0x05060708 when ACK
/// is set, window 0xfaf0) with a full, valid checksum.
pub(crate) fn tcp(src: SocketAddrV4, dst: SocketAddrV4, flags: u8, payload: &[u8]) -> Vec<u8> {
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
    TcpPacket::new_unchecked(&mut seg[..])
        .fill_checksum(&IpAddress::Ipv4(*src.ip()), &IpAddress::Ipv4(*dst.ip()));
    ipv4_packet(6, *src.ip(), *dst.ip(), &seg)
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
pub(crate) fn verify(p: &[u8]) {
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
