//! ICMPv4 messages the gateway originates: echo replies, time exceeded and
//! fragmentation needed (RFC 792, RFC 1191, RFC 1812 §4.3.2).

use std::net::Ipv4Addr;

use super::ipv4::{self, Ipv4Info};
use super::{checksum, l4, Mac, WireError, ETH_HLEN};

/// ICMP type: echo reply.
pub const ECHO_REPLY: u8 = 0;
/// ICMP type: destination unreachable.
pub const DEST_UNREACHABLE: u8 = 3;
/// ICMP code (with DEST_UNREACHABLE): fragmentation needed and DF set.
pub const FRAG_NEEDED: u8 = 4;
/// ICMP type: echo request.
pub const ECHO_REQUEST: u8 = 8;
/// ICMP type: time exceeded.
pub const TIME_EXCEEDED: u8 = 11;
/// TTL of packets the gateway originates.
pub const DEFAULT_TTL: u8 = 64;

/// Builds the echo reply to the echo request in `frame` (Ethernet included),
/// or an error if it is not a valid echo request.
pub fn echo_reply(frame: &[u8], our_mac: Mac) -> Result<Vec<u8>, WireError> {
    let ip_bytes = frame.get(ETH_HLEN..).ok_or(WireError::Truncated)?;
    let ip = ipv4::parse(ip_bytes)?;
    if ip.protocol != 1 || ip.is_later_fragment {
        return Err(WireError::Malformed);
    }
    let icmp = &ip_bytes[ip.header_len..ip.total_len];
    l4::check_icmp(icmp)?;
    if icmp[0] != ECHO_REQUEST || icmp[1] != 0 {
        return Err(WireError::Malformed);
    }
    let src_mac: Mac = frame[6..12].try_into().expect("6 bytes");
    let mut out = ip_header_frame(our_mac, src_mac, ip.dst, ip.src, icmp.len());
    let body = &mut out[ETH_HLEN + 20..ETH_HLEN + 20 + icmp.len()];
    body.copy_from_slice(icmp);
    body[0] = ECHO_REPLY;
    body[2] = 0;
    body[3] = 0;
    let c = checksum::of(body);
    body[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(out)
}

/// Builds an ICMP error (time exceeded, or fragmentation needed when
/// `next_hop_mtu` is Some) about the packet in `frame`, sent from `our_ip`
/// back to the frame's L2 sender. Returns None where RFC 1812 forbids an
/// error: about an ICMP error, a later fragment, or a non-unicast source.
pub fn error_for(
    frame: &[u8],
    our_mac: Mac,
    our_ip: Ipv4Addr,
    next_hop_mtu: Option<u16>,
) -> Option<Vec<u8>> {
    let ip_bytes = frame.get(ETH_HLEN..)?;
    let ip = ipv4::parse(ip_bytes).ok()?;
    if !may_send_error_about(&ip, ip_bytes) {
        return None;
    }
    // The original IP header and the first 8 bytes of its payload.
    let quoted = &ip_bytes[..(ip.header_len + 8).min(ip.total_len)];
    let src_mac: Mac = frame[6..12].try_into().expect("6 bytes");
    let mut out = ip_header_frame(our_mac, src_mac, our_ip, ip.src, 8 + quoted.len());
    let body = &mut out[ETH_HLEN + 20..ETH_HLEN + 28 + quoted.len()];
    match next_hop_mtu {
        Some(mtu) => {
            body[0] = DEST_UNREACHABLE;
            body[1] = FRAG_NEEDED;
            body[6..8].copy_from_slice(&mtu.to_be_bytes());
        }
        None => {
            body[0] = TIME_EXCEEDED;
            body[1] = 0; // TTL exceeded in transit
        }
    }
    body[8..].copy_from_slice(quoted);
    let c = checksum::of(body);
    body[2..4].copy_from_slice(&c.to_be_bytes());
    Some(out)
}

fn may_send_error_about(ip: &Ipv4Info, ip_bytes: &[u8]) -> bool {
    if ip.is_later_fragment
        || ip.src.is_unspecified()
        || ip.src.is_broadcast()
        || ip.src.is_multicast()
    {
        return false;
    }
    if ip.dst.is_broadcast() || ip.dst.is_multicast() {
        return false;
    }
    if ip.protocol == 1 {
        // Never an error about an error: only echo request/reply may be answered.
        match ip_bytes.get(ip.header_len) {
            Some(&t) if t == ECHO_REQUEST || t == ECHO_REPLY => {}
            _ => return false,
        }
    }
    true
}

/// An Ethernet + 20-byte IPv4 header (protocol ICMP, checksum filled) with
/// `payload_len` zero bytes after it, zero-padded to the 60-byte minimum frame.
fn ip_header_frame(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload_len: usize,
) -> Vec<u8> {
    let total = 20 + payload_len;
    let mut out = vec![0u8; (ETH_HLEN + total).max(60)];
    out[..6].copy_from_slice(&dst_mac);
    out[6..12].copy_from_slice(&src_mac);
    out[12..14].copy_from_slice(&super::ETHERTYPE_IPV4);
    let h = &mut out[ETH_HLEN..ETH_HLEN + 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    h[8] = DEFAULT_TTL;
    h[9] = 1;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = checksum::of(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::tests::udp_packet;

    const GW: Mac = [0x02, 0, 0, 0, 0, 1];
    const HOST: Mac = [0x02, 0, 0, 0, 0, 2];

    fn eth(payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&GW);
        f.extend_from_slice(&HOST);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(payload);
        f
    }

    fn echo_request(to: [u8; 4]) -> Vec<u8> {
        let mut p = udp_packet(&[0u8; 8], 64);
        p[9] = 1;
        p[16..20].copy_from_slice(&to);
        p[10] = 0;
        p[11] = 0;
        let c = checksum::of(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let icmp = &mut p[20..];
        icmp.copy_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 7, 1, 2, 3, 4, 5, 6, 7, 8]);
        let c = checksum::of(icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        eth(&p)
    }

    #[test]
    fn echo_reply_mirrors_the_request() {
        let req = echo_request([10, 10, 1, 1]);
        let rep = echo_reply(&req, GW).unwrap();
        assert_eq!(&rep[..6], &HOST);
        assert_eq!(&rep[6..12], &GW);
        let ip = ipv4::parse(&rep[ETH_HLEN..]).unwrap();
        assert_eq!(ip.src, Ipv4Addr::new(10, 10, 1, 1));
        assert_eq!(ip.dst, Ipv4Addr::new(10, 10, 1, 2));
        let icmp = &rep[ETH_HLEN + 20..ETH_HLEN + ip.total_len];
        assert_eq!(l4::check_icmp(icmp), Ok(()));
        assert_eq!(icmp[0], ECHO_REPLY);
        assert_eq!(&icmp[4..], &req[ETH_HLEN + 24..]); // id, seq and data echoed
    }

    #[test]
    fn echo_reply_refuses_bad_requests() {
        let mut bad = echo_request([10, 10, 1, 1]);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(echo_reply(&bad, GW), Err(WireError::BadChecksum));
        assert_eq!(echo_reply(&bad[..20], GW), Err(WireError::Truncated));
        let udp = eth(&udp_packet(b"x", 64));
        assert_eq!(echo_reply(&udp, GW), Err(WireError::Malformed));
    }

    #[test]
    fn time_exceeded_quotes_header_and_8_bytes() {
        let orig = eth(&udp_packet(b"0123456789abcdef", 1));
        let err = error_for(&orig, GW, Ipv4Addr::new(10, 10, 1, 1), None).unwrap();
        let ip = ipv4::parse(&err[ETH_HLEN..]).unwrap();
        assert_eq!(ip.dst, Ipv4Addr::new(10, 10, 1, 2));
        assert_eq!(ip.src, Ipv4Addr::new(10, 10, 1, 1));
        let icmp = &err[ETH_HLEN + 20..ETH_HLEN + ip.total_len];
        assert_eq!(l4::check_icmp(icmp), Ok(()));
        assert_eq!((icmp[0], icmp[1]), (TIME_EXCEEDED, 0));
        assert_eq!(&icmp[8..], &orig[ETH_HLEN..ETH_HLEN + 28]);
    }

    #[test]
    fn frag_needed_carries_the_next_hop_mtu() {
        let orig = eth(&udp_packet(&[7u8; 1400], 64));
        let err = error_for(&orig, GW, Ipv4Addr::new(10, 10, 1, 1), Some(1400)).unwrap();
        let icmp = &err[ETH_HLEN + 20..];
        assert_eq!((icmp[0], icmp[1]), (DEST_UNREACHABLE, FRAG_NEEDED));
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1400);
    }

    #[test]
    fn no_error_about_an_icmp_error_or_a_broadcast() {
        let orig = eth(&udp_packet(b"0123456789abcdef", 1));
        let err = error_for(&orig, GW, Ipv4Addr::new(10, 10, 1, 1), None).unwrap();
        assert!(error_for(&err, GW, Ipv4Addr::new(10, 20, 1, 1), None).is_none());
        let mut bcast = udp_packet(b"x", 1);
        bcast[16..20].copy_from_slice(&[255, 255, 255, 255]);
        bcast[10] = 0;
        bcast[11] = 0;
        let c = checksum::of(&bcast[..20]);
        bcast[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(error_for(&eth(&bcast), GW, Ipv4Addr::new(10, 10, 1, 1), None).is_none());
    }
}
