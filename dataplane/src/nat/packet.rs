//! What listener mode reads from a packet, and the in-place rewrites with
//! incremental checksum updates (RFC 1624).

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::wire::{checksum, icmp, ipv4};

use super::NatError;

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
/// ICMP type: parameter problem (RFC 792); it quotes the packet like the other errors.
const PARAMETER_PROBLEM: u8 = 12;
/// The More Fragments bit in the high byte of the flags/offset word.
const MORE_FRAGMENTS: u8 = 0x20;

/// TCP flag bits (byte 13 of the header).
pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_RST: u8 = 0x04;
#[cfg(test)]
pub(crate) const TCP_PSH: u8 = 0x08;
pub(crate) const TCP_ACK: u8 = 0x10;

/// The transport protocol of a translated flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP (protocol 6).
    Tcp,
    /// UDP (protocol 17).
    Udp,
}

impl Proto {
    fn from_number(n: u8) -> Option<Self> {
        match n {
            PROTO_TCP => Some(Proto::Tcp),
            PROTO_UDP => Some(Proto::Udp),
            _ => None,
        }
    }

    /// Offset of the checksum in the transport header.
    fn checksum_offset(self) -> usize {
        match self {
            Proto::Tcp => 16,
            Proto::Udp => 6,
        }
    }

    /// The shortest header we rewrite (it holds the ports and the checksum).
    fn min_header_len(self) -> usize {
        match self {
            Proto::Tcp => 20,
            Proto::Udp => 8,
        }
    }
}

/// Which end of a packet's addressing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Src,
    Dst,
}

impl End {
    fn addr_offset(self) -> usize {
        match self {
            End::Src => 12,
            End::Dst => 16,
        }
    }

    fn port_offset(self) -> usize {
        match self {
            End::Src => 0,
            End::Dst => 2,
        }
    }
}

/// A TCP or UDP packet (unfragmented, or the first fragment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flow {
    /// IPv4 header length.
    hl: usize,
    /// Transport bytes present in the packet.
    l4_len: usize,
    /// The protocol.
    pub proto: Proto,
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
}

impl Flow {
    /// Rewrites the source address and port.
    pub fn set_src(&self, pkt: &mut [u8], new: SocketAddrV4) {
        set_endpoint(pkt, 0, self.hl, self.l4_len, self.proto, End::Src, new);
    }

    /// Rewrites the destination address and port.
    pub fn set_dst(&self, pkt: &mut [u8], new: SocketAddrV4) {
        set_endpoint(pkt, 0, self.hl, self.l4_len, self.proto, End::Dst, new);
    }
}

/// An ICMP error that quotes the header of a TCP or UDP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IcmpError {
    /// Offset of the ICMP message (the outer header length).
    icmp_off: usize,
    /// End of the ICMP message (the outer total length).
    end: usize,
    /// Offset of the quoted IPv4 header.
    quote_off: usize,
    /// Quoted IPv4 header length.
    quote_hl: usize,
    /// Outer destination address.
    pub outer_dst: Ipv4Addr,
    /// Quoted protocol.
    pub proto: Proto,
    /// Quoted source address and port (the sender of the packet the error is about).
    pub src: SocketAddrV4,
    /// Quoted destination address and port.
    pub dst: SocketAddrV4,
}

impl IcmpError {
    /// Rewrites the outer source and destination addresses and the quoted
    /// source and destination endpoints, then recomputes the ICMP checksum.
    pub fn translate(
        &self,
        pkt: &mut [u8],
        outer_src: Ipv4Addr,
        outer_dst: Ipv4Addr,
        quoted_src: SocketAddrV4,
        quoted_dst: SocketAddrV4,
    ) {
        set_addr(pkt, 0, End::Src, outer_src);
        set_addr(pkt, 0, End::Dst, outer_dst);
        let l4_off = self.quote_off + self.quote_hl;
        let avail = self.end - l4_off;
        for (end, new) in [(End::Src, quoted_src), (End::Dst, quoted_dst)] {
            set_endpoint(
                pkt,
                self.quote_off,
                self.quote_hl,
                avail,
                self.proto,
                end,
                new,
            );
        }
        let icmp = &mut pkt[self.icmp_off..self.end];
        icmp[2] = 0;
        icmp[3] = 0;
        let c = checksum::of(icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
    }
}

/// What a packet is to listener mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packet {
    /// A TCP or UDP packet.
    Flow(Flow),
    /// An ICMP error about a TCP or UDP packet.
    IcmpError(IcmpError),
}

/// Reads the IPv4 packet at the start of `pkt` (Ethernet padding after it
/// is ignored). Never panics: every offset is checked against the lengths.
pub(crate) fn classify(pkt: &[u8]) -> Result<Packet, NatError> {
    let ip = ipv4::parse(pkt).map_err(|_| NatError::Malformed)?;
    if ip.is_later_fragment {
        return Err(NatError::Fragment);
    }
    let hl = ip.header_len;
    let body = &pkt[hl..ip.total_len];
    if ip.protocol == PROTO_ICMP {
        let more_fragments = pkt[6] & MORE_FRAGMENTS != 0;
        return parse_icmp_error(pkt, hl, ip.total_len, ip.dst, more_fragments)
            .map(Packet::IcmpError);
    }
    let proto = Proto::from_number(ip.protocol).ok_or(NatError::UnsupportedProtocol)?;
    if body.len() < proto.min_header_len() {
        return Err(NatError::Malformed);
    }
    let (sport, dport) = ports(body);
    Ok(Packet::Flow(Flow {
        hl,
        l4_len: body.len(),
        proto,
        src: SocketAddrV4::new(ip.src, sport),
        dst: SocketAddrV4::new(ip.dst, dport),
        tcp_flags: if proto == Proto::Tcp { body[13] } else { 0 },
    }))
}

fn parse_icmp_error(
    pkt: &[u8],
    icmp_off: usize,
    end: usize,
    outer_dst: Ipv4Addr,
    more_fragments: bool,
) -> Result<IcmpError, NatError> {
    let msg = &pkt[icmp_off..end];
    let Some(&kind) = msg.first() else {
        return Err(NatError::Malformed);
    };
    if !matches!(
        kind,
        icmp::DEST_UNREACHABLE | icmp::TIME_EXCEEDED | PARAMETER_PROBLEM
    ) {
        return Err(NatError::UnsupportedProtocol);
    }
    if more_fragments {
        // The checksum covers fragments we do not have.
        return Err(NatError::Fragment);
    }
    if msg.len() < 8 + 20 || checksum::of(msg) != 0 {
        return Err(NatError::Malformed);
    }
    let quote = &msg[8..];
    let quote_hl = usize::from(quote[0] & 0x0f) * 4;
    if quote[0] >> 4 != 4 || quote_hl < 20 || quote.len() < quote_hl + 8 {
        return Err(NatError::Malformed);
    }
    let proto = Proto::from_number(quote[9]).ok_or(NatError::UnsupportedProtocol)?;
    if u16::from_be_bytes([quote[6], quote[7]]) & 0x1fff != 0 {
        return Err(NatError::Fragment);
    }
    let (sport, dport) = ports(&quote[quote_hl..]);
    Ok(IcmpError {
        icmp_off,
        end,
        quote_off: icmp_off + 8,
        quote_hl,
        outer_dst,
        proto,
        src: SocketAddrV4::new(ip_at(quote, 12), sport),
        dst: SocketAddrV4::new(ip_at(quote, 16), dport),
    })
}

/// Source and destination ports at the start of a transport header of at least 4 bytes.
#[inline]
fn ports(l4: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([l4[0], l4[1]]),
        u16::from_be_bytes([l4[2], l4[3]]),
    )
}

#[inline]
fn ip_at(b: &[u8], off: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[off], b[off + 1], b[off + 2], b[off + 3])
}

#[inline]
fn read_u16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// Sets the `end` address of the IPv4 header at `ip_off` and updates the
/// header checksum. Returns the old and new address as integers.
#[inline]
fn set_addr(pkt: &mut [u8], ip_off: usize, end: End, new: Ipv4Addr) -> (u32, u32) {
    let a = ip_off + end.addr_offset();
    let old = u32::from(ip_at(pkt, a));
    let new = u32::from(new);
    if old != new {
        pkt[a..a + 4].copy_from_slice(&new.to_be_bytes());
        let c = read_u16(pkt, ip_off + 10);
        let c = checksum::update_u32(c, old, new);
        pkt[ip_off + 10..ip_off + 12].copy_from_slice(&c.to_be_bytes());
    }
    (old, new)
}

/// Sets the `end` address and port of the TCP/UDP packet whose IPv4 header
/// is at `ip_off` (length `hl`) and whose transport header has `l4_len`
/// bytes present (at least 8). Fixes the IPv4 header checksum and, if it is
/// present, the transport checksum (pseudo-header address and port); a UDP
/// checksum of 0 (none) stays 0 and one that computes to 0 is sent as 0xFFFF.
fn set_endpoint(
    pkt: &mut [u8],
    ip_off: usize,
    hl: usize,
    l4_len: usize,
    proto: Proto,
    end: End,
    new: SocketAddrV4,
) {
    let (old_ip, new_ip) = set_addr(pkt, ip_off, end, *new.ip());
    let l4 = ip_off + hl;
    let p = l4 + end.port_offset();
    let old_port = read_u16(pkt, p);
    let new_port = new.port();
    if old_ip == new_ip && old_port == new_port {
        return;
    }
    pkt[p..p + 2].copy_from_slice(&new_port.to_be_bytes());
    let c_off = proto.checksum_offset();
    if c_off + 2 > l4_len {
        return; // a quote too short to hold the checksum
    }
    let c = read_u16(pkt, l4 + c_off);
    if proto == Proto::Udp && c == 0 {
        return;
    }
    let mut c = checksum::update_u32(c, old_ip, new_ip);
    c = checksum::update_u16(c, old_port, new_port);
    if proto == Proto::Udp && c == 0 {
        c = 0xffff;
    }
    pkt[l4 + c_off..l4 + c_off + 2].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::testutil::*;

    #[test]
    fn classifies_tcp_udp_and_icmp_errors() {
        let t = tcp(
            sa([10, 2, 0, 7], 40000),
            sa([10, 2, 0, 1], 6000),
            TCP_SYN,
            b"",
        );
        match classify(&t).unwrap() {
            Packet::Flow(f) => {
                assert_eq!(f.proto, Proto::Tcp);
                assert_eq!(f.src, sa([10, 2, 0, 7], 40000));
                assert_eq!(f.dst, sa([10, 2, 0, 1], 6000));
                assert_eq!(f.tcp_flags, TCP_SYN);
            }
            other => panic!("{other:?}"),
        }
        let u = udp(sa([10, 2, 0, 7], 40000), sa([10, 2, 0, 1], 6000), b"x");
        let e = icmp_error(ip4([10, 2, 0, 7]), ip4([10, 2, 0, 1]), 3, 3, 0, &u);
        match classify(&e).unwrap() {
            Packet::IcmpError(q) => {
                assert_eq!(q.proto, Proto::Udp);
                assert_eq!(q.outer_dst, ip4([10, 2, 0, 1]));
                assert_eq!(q.src, sa([10, 2, 0, 7], 40000));
                assert_eq!(q.dst, sa([10, 2, 0, 1], 6000));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn udp_checksum_zero_stays_zero_and_computed_zero_becomes_ffff() {
        let from = sa([10, 2, 0, 7], 40000);
        let to = sa([10, 2, 0, 1], 6000);
        let new = sa([198, 51, 100, 1], 7000);
        let mut p = udp(from, to, b"abc");
        p[26] = 0;
        p[27] = 0;
        let Packet::Flow(f) = classify(&p).unwrap() else {
            panic!()
        };
        f.set_dst(&mut p, new);
        assert_eq!(&p[26..28], &[0, 0]);
        assert_eq!(&p[16..20], &[198, 51, 100, 1]);
        assert_eq!(&p[22..24], &7000u16.to_be_bytes());
        verify(&p);

        // Find a payload whose rewritten checksum computes to zero: the
        // two payload bytes add exactly what makes the sum all ones.
        let mut q = udp(from, new, &[0, 0]);
        let c = read_u16(&q, 26);
        // Adding the word `c` (ones' complement) to the data brings the sum to 0xffff.
        q[28..30].copy_from_slice(&c.to_be_bytes());
        q[26] = 0;
        q[27] = 0;
        let full = checksum_udp_raw(&q);
        assert_eq!(full, 0, "constructed to compute to zero");
        // The same payload addressed to `to`, with a valid checksum, then rewritten to `new`.
        let mut r = udp(from, to, &q[28..30]);
        let Packet::Flow(f) = classify(&r).unwrap() else {
            panic!()
        };
        f.set_dst(&mut r, new);
        assert_eq!(&r[26..28], &[0xff, 0xff]);
        verify(&r);
    }
}
