//! Validated IPv4 parsing for the forwarding path.

use std::net::Ipv4Addr;

use smoltcp::wire::Ipv4Packet;

use super::{checksum, WireError, IPV4_MIN_HLEN};

/// The facts the forwarding path needs from a valid IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Info {
    /// Header length in bytes (20..=60).
    pub header_len: usize,
    /// Total length from the header (header + payload).
    pub total_len: usize,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Time to live.
    pub ttl: u8,
    /// Protocol number.
    pub protocol: u8,
    /// The Don't Fragment flag.
    pub dont_frag: bool,
    /// True for any fragment but the first (offset != 0).
    pub is_later_fragment: bool,
}

/// Validates the IPv4 packet at the start of `buf` (which may carry Ethernet
/// padding after it): version 4, header length >= 20, total length within
/// the buffer and >= header length, and the header checksum.
pub fn parse(buf: &[u8]) -> Result<Ipv4Info, WireError> {
    if buf.len() < IPV4_MIN_HLEN {
        return Err(WireError::Truncated);
    }
    let p = Ipv4Packet::new_unchecked(buf);
    if p.version() != 4 || usize::from(p.header_len()) < IPV4_MIN_HLEN {
        return Err(WireError::Malformed);
    }
    let header_len = usize::from(p.header_len());
    let total_len = usize::from(p.total_len());
    if total_len < header_len {
        return Err(WireError::Malformed);
    }
    if header_len > buf.len() || total_len > buf.len() {
        return Err(WireError::Truncated);
    }
    if checksum::of(&buf[..header_len]) != 0 {
        return Err(WireError::BadChecksum);
    }
    Ok(Ipv4Info {
        header_len,
        total_len,
        src: p.src_addr(),
        dst: p.dst_addr(),
        ttl: p.hop_limit(),
        protocol: buf[9],
        dont_frag: p.dont_frag(),
        is_later_fragment: p.frag_offset() != 0,
    })
}

/// Decrements the TTL of the valid IPv4 header at the start of `buf` and
/// updates its checksum incrementally. The caller has checked `ttl > 1`.
#[inline]
pub fn decrement_ttl(buf: &mut [u8]) {
    let old = u16::from_be_bytes([buf[8], buf[9]]);
    buf[8] -= 1;
    let new = u16::from_be_bytes([buf[8], buf[9]]);
    let c = u16::from_be_bytes([buf[10], buf[11]]);
    buf[10..12].copy_from_slice(&checksum::update_u16(c, old, new).to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid IPv4/UDP packet from 10.10.1.2:40000 to 10.20.1.2:5000 with `payload`.
    pub(crate) fn udp_packet(payload: &[u8], ttl: u8) -> Vec<u8> {
        let total = 20 + 8 + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = ttl;
        p[9] = 17;
        p[12..16].copy_from_slice(&[10, 10, 1, 2]);
        p[16..20].copy_from_slice(&[10, 20, 1, 2]);
        let c = checksum::of(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&5000u16.to_be_bytes());
        p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        p[28..].copy_from_slice(payload);
        let mut udp = smoltcp::wire::UdpPacket::new_unchecked(&mut p[20..]);
        udp.fill_checksum(
            &smoltcp::wire::IpAddress::Ipv4(Ipv4Addr::new(10, 10, 1, 2)),
            &smoltcp::wire::IpAddress::Ipv4(Ipv4Addr::new(10, 20, 1, 2)),
        );
        p
    }

    #[test]
    fn parses_a_valid_packet() {
        let p = udp_packet(b"hello", 64);
        let info = parse(&p).unwrap();
        assert_eq!(info.header_len, 20);
        assert_eq!(info.total_len, 33);
        assert_eq!(info.src, Ipv4Addr::new(10, 10, 1, 2));
        assert_eq!(info.dst, Ipv4Addr::new(10, 20, 1, 2));
        assert_eq!((info.ttl, info.protocol, info.dont_frag), (64, 17, true));
    }

    #[test]
    fn accepts_ethernet_padding_after_the_packet() {
        let mut p = udp_packet(b"x", 64);
        p.extend_from_slice(&[0u8; 17]);
        assert_eq!(parse(&p).unwrap().total_len, 29);
    }

    #[test]
    fn rejects_truncated_headers_and_bodies() {
        let p = udp_packet(b"hello", 64);
        assert_eq!(parse(&p[..19]), Err(WireError::Truncated));
        assert_eq!(parse(&p[..30]), Err(WireError::Truncated));
        assert_eq!(parse(&[]), Err(WireError::Truncated));
    }

    #[test]
    fn rejects_bad_version_header_length_and_total_length() {
        let mut p = udp_packet(b"hello", 64);
        p[0] = 0x65;
        assert_eq!(parse(&p), Err(WireError::Malformed));
        let mut p = udp_packet(b"hello", 64);
        p[0] = 0x44; // header length 16
        assert_eq!(parse(&p), Err(WireError::Malformed));
        let mut p = udp_packet(b"hello", 64);
        p[2..4].copy_from_slice(&10u16.to_be_bytes()); // total < header
        assert_eq!(parse(&p), Err(WireError::Malformed));
        let mut p = udp_packet(b"hello", 64);
        p[0] = 0x4f; // header claims 60 bytes, more than the total length
        assert_eq!(parse(&p), Err(WireError::Malformed));
        let p = udp_packet(b"hello", 64);
        let mut options = p.clone();
        options[0] = 0x46; // 24-byte header, but the buffer ends at 22
        assert_eq!(parse(&options[..22]), Err(WireError::Truncated));
    }

    #[test]
    fn rejects_a_bad_header_checksum() {
        let mut p = udp_packet(b"hello", 64);
        p[11] ^= 0x01;
        assert_eq!(parse(&p), Err(WireError::BadChecksum));
    }

    #[test]
    fn ttl_decrement_keeps_the_checksum_valid() {
        let mut p = udp_packet(b"hello", 2);
        decrement_ttl(&mut p);
        let info = parse(&p).unwrap();
        assert_eq!(info.ttl, 1);
    }
}
