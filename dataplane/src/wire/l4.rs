//! Length and checksum checks for the transport payload of an IPv4 packet.
//!
//! A router forwards transport payloads without checking them; the gateway
//! uses these where it terminates or rewrites a packet (ICMP to itself,
//! address translation), and the tests use them to check forwarded bytes.

use smoltcp::wire::{Icmpv4Packet, IpAddress, TcpPacket, UdpPacket};

use super::ipv4::Ipv4Info;
use super::{checksum, WireError};

/// Checks the UDP header and checksum of `payload` (the IPv4 payload).
/// A zero checksum means "none" in IPv4 and is accepted.
pub fn check_udp(ip: &Ipv4Info, payload: &[u8]) -> Result<(), WireError> {
    let p = UdpPacket::new_checked(payload).map_err(|_| WireError::Truncated)?;
    if usize::from(p.len()) != payload.len() {
        return Err(WireError::Malformed);
    }
    if !p.verify_checksum(&IpAddress::Ipv4(ip.src), &IpAddress::Ipv4(ip.dst)) {
        return Err(WireError::BadChecksum);
    }
    Ok(())
}

/// Checks the TCP header and checksum of `payload` (the IPv4 payload).
pub fn check_tcp(ip: &Ipv4Info, payload: &[u8]) -> Result<(), WireError> {
    let p = TcpPacket::new_checked(payload).map_err(|_| WireError::Truncated)?;
    if !p.verify_checksum(&IpAddress::Ipv4(ip.src), &IpAddress::Ipv4(ip.dst)) {
        return Err(WireError::BadChecksum);
    }
    Ok(())
}

/// Checks the ICMP header and checksum of `payload` (the IPv4 payload).
pub fn check_icmp(payload: &[u8]) -> Result<(), WireError> {
    Icmpv4Packet::new_checked(payload).map_err(|_| WireError::Truncated)?;
    if checksum::of(payload) != 0 {
        return Err(WireError::BadChecksum);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::{self, tests::udp_packet};

    #[test]
    fn udp_checks_length_and_checksum() {
        let p = udp_packet(b"payload bytes", 64);
        let info = ipv4::parse(&p).unwrap();
        assert_eq!(check_udp(&info, &p[20..]), Ok(()));
        let mut bad = p.clone();
        bad[30] ^= 0xff; // payload byte
        assert_eq!(check_udp(&info, &bad[20..]), Err(WireError::BadChecksum));
        assert_eq!(check_udp(&info, &p[20..25]), Err(WireError::Truncated));
        let mut zero = p.clone();
        zero[26] = 0;
        zero[27] = 0;
        assert_eq!(
            check_udp(&info, &zero[20..]),
            Ok(()),
            "zero UDP checksum means none"
        );
        let mut long = p;
        long[24..26].copy_from_slice(&200u16.to_be_bytes()); // length beyond the packet
        assert_eq!(check_udp(&info, &long[20..]), Err(WireError::Truncated));
    }

    #[test]
    fn tcp_checks_header_and_checksum() {
        // A TCP SYN from 10.10.1.2:40000 to 10.20.1.2:5000.
        let mut p = udp_packet(&[0u8; 12], 64); // 20 IP + 20 bytes of room
        p[9] = 6;
        let c = {
            p[10] = 0;
            p[11] = 0;
            checksum::of(&p[..20])
        };
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let info = ipv4::parse(&p).unwrap();
        let seg = &mut p[20..];
        seg.fill(0);
        let mut tcp = TcpPacket::new_unchecked(&mut *seg);
        tcp.set_src_port(40000);
        tcp.set_dst_port(5000);
        tcp.set_header_len(20);
        tcp.set_syn(true);
        tcp.set_window_len(1024);
        tcp.fill_checksum(&IpAddress::Ipv4(info.src), &IpAddress::Ipv4(info.dst));
        assert_eq!(check_tcp(&info, &p[20..]), Ok(()));
        let mut bad = p.clone();
        bad[25] ^= 1;
        assert_eq!(check_tcp(&info, &bad[20..]), Err(WireError::BadChecksum));
        assert_eq!(check_tcp(&info, &p[20..30]), Err(WireError::Truncated));
    }

    #[test]
    fn icmp_checks_checksum() {
        let mut m = [8u8, 0, 0, 0, 0, 1, 0, 1, b'p', b'i', b'n', b'g'];
        let c = checksum::of(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(check_icmp(&m), Ok(()));
        m[9] ^= 1;
        assert_eq!(check_icmp(&m), Err(WireError::BadChecksum));
        assert_eq!(check_icmp(&m[..3]), Err(WireError::Truncated));
    }
}
