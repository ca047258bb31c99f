//! What listener mode reads from a packet, and the in-place rewrites with
//! incremental checksum updates (RFC 1624), for IPv4 and IPv6 alike.
//!
//! IPv6 extension headers are walked (bounded, every header inside the
//! bytes at hand) to the transport header; IPv6 has no header checksum, so
//! only the transport checksum (whose pseudo-header holds the addresses)
//! and, for an ICMPv6 error, the ICMPv6 checksum change.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::wire::ipv6::{next_header as nh, IPV6_HLEN, MAX_EXT_HEADERS};
use crate::wire::{checksum, icmp, ipv4};

use super::NatError;

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
/// ICMP type: parameter problem (RFC 792); it quotes the packet like the other errors.
const PARAMETER_PROBLEM: u8 = 12;
/// The More Fragments bit in the high byte of the flags/offset word.
const MORE_FRAGMENTS: u8 = 0x20;
/// ICMPv6 error types (RFC 4443): destination unreachable, packet too
/// big, time exceeded, parameter problem.
const ICMPV6_ERRORS: [u8; 4] = [1, 2, 3, 4];

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

/// The IP version of a packet (and of every address it carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    /// Offset of the `end` address in the IP header.
    fn addr_offset(self, end: End) -> usize {
        match (self, end) {
            (Family::V4, End::Src) => 12,
            (Family::V4, End::Dst) => 16,
            (Family::V6, End::Src) => 8,
            (Family::V6, End::Dst) => 24,
        }
    }

    /// Length of an address.
    fn addr_len(self) -> usize {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
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
    /// IPv4 or IPv6.
    family: Family,
    /// Offset of the transport header (after the IPv4 header, or the IPv6
    /// header and its extension headers).
    l4_off: usize,
    /// Transport bytes present in the packet.
    l4_len: usize,
    /// The protocol.
    pub proto: Proto,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
}

impl Flow {
    /// Rewrites the source address and port (`new` is of the packet's family).
    pub fn set_src(&self, pkt: &mut [u8], new: SocketAddr) {
        let at = Endpoint {
            family: self.family,
            ip_off: 0,
            l4_off: self.l4_off,
            l4_len: self.l4_len,
            proto: self.proto,
        };
        at.set(pkt, End::Src, new);
    }

    /// Rewrites the destination address and port (`new` is of the packet's family).
    pub fn set_dst(&self, pkt: &mut [u8], new: SocketAddr) {
        let at = Endpoint {
            family: self.family,
            ip_off: 0,
            l4_off: self.l4_off,
            l4_len: self.l4_len,
            proto: self.proto,
        };
        at.set(pkt, End::Dst, new);
    }
}

/// An ICMP or ICMPv6 error that quotes the header of a TCP or UDP packet
/// of the same family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IcmpError {
    /// IPv4 (ICMP) or IPv6 (ICMPv6), outer and quoted alike.
    family: Family,
    /// Offset of the ICMP message.
    icmp_off: usize,
    /// End of the ICMP message (the end of the outer packet).
    end: usize,
    /// Offset of the quoted IP header.
    quote_off: usize,
    /// Offset of the quoted transport header.
    quote_l4_off: usize,
    /// Quoted transport bytes present.
    quote_l4_len: usize,
    /// Outer destination address.
    pub outer_dst: IpAddr,
    /// Quoted protocol.
    pub proto: Proto,
    /// Quoted source address and port (the sender of the packet the error is about).
    pub src: SocketAddr,
    /// Quoted destination address and port.
    pub dst: SocketAddr,
}

impl IcmpError {
    /// Rewrites the outer source and destination addresses and the quoted
    /// source and destination endpoints, then recomputes the ICMP (ICMPv6:
    /// over its pseudo-header) checksum. All addresses are of the packet's
    /// family. The rest of the message (an MTU, a pointer) is unchanged.
    pub fn translate(
        &self,
        pkt: &mut [u8],
        outer_src: IpAddr,
        outer_dst: IpAddr,
        quoted_src: SocketAddr,
        quoted_dst: SocketAddr,
    ) {
        set_addr(pkt, 0, self.family, End::Src, outer_src);
        set_addr(pkt, 0, self.family, End::Dst, outer_dst);
        let quote = Endpoint {
            family: self.family,
            ip_off: self.quote_off,
            l4_off: self.quote_l4_off,
            l4_len: self.quote_l4_len,
            proto: self.proto,
        };
        quote.set(pkt, End::Src, quoted_src);
        quote.set(pkt, End::Dst, quoted_dst);
        pkt[self.icmp_off + 2] = 0;
        pkt[self.icmp_off + 3] = 0;
        let c = match self.family {
            Family::V4 => checksum::of(&pkt[self.icmp_off..self.end]),
            Family::V6 => icmpv6_checksum(pkt, self.icmp_off, self.end),
        };
        pkt[self.icmp_off + 2..self.icmp_off + 4].copy_from_slice(&c.to_be_bytes());
    }
}

/// What a packet is to listener mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packet {
    /// A TCP or UDP packet.
    Flow(Flow),
    /// An ICMP or ICMPv6 error about a TCP or UDP packet.
    IcmpError(IcmpError),
}

/// Reads the IPv4 or IPv6 packet at the start of `pkt` (by its version
/// nibble; link padding after it is ignored). Never panics: every offset is
/// checked against the lengths.
pub(crate) fn classify(pkt: &[u8]) -> Result<Packet, NatError> {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => classify4(pkt),
        Some(6) => classify6(pkt),
        _ => Err(NatError::Malformed),
    }
}

fn classify4(pkt: &[u8]) -> Result<Packet, NatError> {
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
        family: Family::V4,
        l4_off: hl,
        l4_len: body.len(),
        proto,
        src: SocketAddr::new(ip.src.into(), sport),
        dst: SocketAddr::new(ip.dst.into(), dport),
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
    let quote_off = icmp_off + 8;
    Ok(IcmpError {
        family: Family::V4,
        icmp_off,
        end,
        quote_off,
        quote_l4_off: quote_off + quote_hl,
        quote_l4_len: quote.len() - quote_hl,
        outer_dst: outer_dst.into(),
        proto,
        src: SocketAddr::new(ip4_at(quote, 12).into(), sport),
        dst: SocketAddr::new(ip4_at(quote, 16).into(), dport),
    })
}

/// Where an IPv6 header chain leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chain6 {
    /// The upper-layer protocol.
    proto: u8,
    /// Offset of the upper-layer header in the walked bytes.
    l4_off: usize,
    /// A Fragment header with offset 0 and More Fragments set was seen (a
    /// first fragment; an atomic fragment, M = 0, is a whole packet).
    first_fragment: bool,
}

/// Walks the IPv6 header at the start of `b` (exactly the bytes to walk:
/// the packet, or the quoted part of one) and its extension headers to the
/// upper-layer header. Every header must lie within `b`; hop-by-hop
/// options only first; at most [`MAX_EXT_HEADERS`]. A Fragment header with
/// a non-zero offset is [`NatError::Fragment`] (no transport header follows).
fn walk6(b: &[u8]) -> Result<Chain6, NatError> {
    if b.len() < IPV6_HLEN || b[0] >> 4 != 6 {
        return Err(NatError::Malformed);
    }
    let mut next = b[6];
    let mut at = IPV6_HLEN;
    let mut first_fragment = false;
    for n in 0..=MAX_EXT_HEADERS {
        let size = match next {
            nh::HOP_BY_HOP if n > 0 => return Err(NatError::Malformed),
            nh::HOP_BY_HOP | nh::ROUTING | nh::DEST_OPTS | nh::MOBILITY | nh::HIP | nh::SHIM6 => {
                let len = *b.get(at + 1).ok_or(NatError::Malformed)?;
                8 + 8 * usize::from(len)
            }
            nh::FRAGMENT => {
                let h = b.get(at..at + 8).ok_or(NatError::Malformed)?;
                let word = u16::from_be_bytes([h[2], h[3]]);
                if word >> 3 != 0 {
                    return Err(NatError::Fragment);
                }
                first_fragment |= word & 1 != 0;
                8
            }
            nh::AH => {
                // RFC 4302: the length is in 4-octet units, minus 2.
                let units = *b.get(at + 1).ok_or(NatError::Malformed)?;
                (usize::from(units) + 2) * 4
            }
            upper => {
                return Ok(Chain6 {
                    proto: upper,
                    l4_off: at,
                    first_fragment,
                })
            }
        };
        if at + size > b.len() {
            return Err(NatError::Malformed);
        }
        next = b[at];
        at += size;
    }
    Err(NatError::Malformed)
}

fn classify6(pkt: &[u8]) -> Result<Packet, NatError> {
    if pkt.len() < IPV6_HLEN {
        return Err(NatError::Malformed);
    }
    let payload_len = usize::from(read_u16(pkt, 4));
    let total = IPV6_HLEN + payload_len;
    if total > pkt.len() || (payload_len == 0 && pkt[6] == nh::HOP_BY_HOP) {
        // Shorter than its payload length, or a jumbogram (RFC 2675).
        return Err(NatError::Malformed);
    }
    let pkt = &pkt[..total];
    let chain = walk6(pkt)?;
    let (src, dst) = (ip6_at(pkt, 8), ip6_at(pkt, 24));
    if chain.proto == nh::ICMPV6 {
        return parse_icmpv6_error(pkt, chain).map(Packet::IcmpError);
    }
    let proto = Proto::from_number(chain.proto).ok_or(NatError::UnsupportedProtocol)?;
    let body = &pkt[chain.l4_off..];
    if body.len() < proto.min_header_len() {
        return Err(NatError::Malformed);
    }
    if proto == Proto::Udp && read_u16(body, 6) == 0 {
        // RFC 8200 §8.1: an IPv6 node discards UDP without a checksum.
        return Err(NatError::Malformed);
    }
    let (sport, dport) = ports(body);
    Ok(Packet::Flow(Flow {
        family: Family::V6,
        l4_off: chain.l4_off,
        l4_len: body.len(),
        proto,
        src: SocketAddr::new(src.into(), sport),
        dst: SocketAddr::new(dst.into(), dport),
        tcp_flags: if proto == Proto::Tcp { body[13] } else { 0 },
    }))
}

/// `pkt` is exactly the IPv6 packet; `chain` leads to ICMPv6.
fn parse_icmpv6_error(pkt: &[u8], chain: Chain6) -> Result<IcmpError, NatError> {
    let icmp_off = chain.l4_off;
    let end = pkt.len();
    let msg = &pkt[icmp_off..];
    let Some(&kind) = msg.first() else {
        return Err(NatError::Malformed);
    };
    if !ICMPV6_ERRORS.contains(&kind) {
        // Echo, Neighbor Discovery and the other informational messages.
        return Err(NatError::UnsupportedProtocol);
    }
    if chain.first_fragment {
        // The checksum covers fragments we do not have.
        return Err(NatError::Fragment);
    }
    if msg.len() < 8 + IPV6_HLEN || icmpv6_checksum(pkt, icmp_off, end) != 0 {
        return Err(NatError::Malformed);
    }
    let quote_off = icmp_off + 8;
    let quote = &pkt[quote_off..];
    if quote[0] >> 4 != 6 {
        return Err(NatError::Malformed);
    }
    // The quote is a prefix of the packet the error is about: bounded by
    // what the error carries and by the quoted packet's own length.
    let quoted_total = IPV6_HLEN + usize::from(read_u16(quote, 4));
    let quote = &quote[..quote.len().min(quoted_total)];
    let q = walk6(quote)?;
    let proto = Proto::from_number(q.proto).ok_or(NatError::UnsupportedProtocol)?;
    if quote.len() < q.l4_off + 8 {
        return Err(NatError::Malformed);
    }
    let (sport, dport) = ports(&quote[q.l4_off..]);
    Ok(IcmpError {
        family: Family::V6,
        icmp_off,
        end,
        quote_off,
        quote_l4_off: quote_off + q.l4_off,
        quote_l4_len: quote.len() - q.l4_off,
        outer_dst: IpAddr::V6(ip6_at(pkt, 24)),
        proto,
        src: SocketAddr::new(ip6_at(quote, 8).into(), sport),
        dst: SocketAddr::new(ip6_at(quote, 24).into(), dport),
    })
}

/// Source and destination ports at the start of a transport header of at least 4 bytes.
#[inline]
fn ports(l4: &[u8]) -> (u16, u16) {
    (read_u16(l4, 0), read_u16(l4, 2))
}

#[inline]
fn ip4_at(b: &[u8], off: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[off], b[off + 1], b[off + 2], b[off + 3])
}

#[inline]
fn ip6_at(b: &[u8], off: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[off..off + 16]);
    Ipv6Addr::from(a)
}

#[inline]
fn read_u16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// The ones'-complement sum (not yet folded) of the 16-bit big-endian
/// words of `b` (an odd tail zero-padded).
#[inline]
fn sum_words(b: &[u8]) -> u64 {
    let mut sum = 0u64;
    let mut words = b.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

#[inline]
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The ICMPv6 checksum of the message `pkt[icmp_off..end]` with the IPv6
/// pseudo-header (RFC 8200 §8.1: source, destination, upper-layer length,
/// next header 58) of the packet `pkt`; 0 over a message that holds a
/// valid checksum.
fn icmpv6_checksum(pkt: &[u8], icmp_off: usize, end: usize) -> u16 {
    let len = (end - icmp_off) as u64;
    let sum = sum_words(&pkt[8..40]) + (len >> 16) + (len & 0xffff) + u64::from(nh::ICMPV6);
    !fold(sum + sum_words(&pkt[icmp_off..end]))
}

/// Applies to checksum `c` the change whose ones'-complement difference
/// (sum of `!old + new` words) is `diff` (RFC 1624, eqn. 3).
#[inline]
fn apply(c: u16, diff: u64) -> u16 {
    !fold(u64::from(!c) + diff)
}

/// The ones'-complement difference of `old` → `new` (equal lengths, even).
#[inline]
fn diff_words(old: &[u8], new: &[u8]) -> u64 {
    old.chunks_exact(2)
        .zip(new.chunks_exact(2))
        .map(|(o, n)| {
            u64::from(!u16::from_be_bytes([o[0], o[1]]))
                + u64::from(u16::from_be_bytes([n[0], n[1]]))
        })
        .sum()
}

/// Sets the `end` address of the IP header at `ip_off` (IPv4: with its
/// header checksum updated). Returns the ones'-complement difference the
/// change makes to a pseudo-header (0 if the address is unchanged, or if
/// `new` is of the other family: a caller bug, debug-asserted, that leaves
/// the packet unchanged).
#[inline]
fn set_addr(pkt: &mut [u8], ip_off: usize, family: Family, end: End, new: IpAddr) -> u64 {
    let mut bytes = [0u8; 16];
    let new_bytes: &[u8] = match (family, new) {
        (Family::V4, IpAddr::V4(a)) => {
            bytes[..4].copy_from_slice(&a.octets());
            &bytes[..4]
        }
        (Family::V6, IpAddr::V6(a)) => {
            bytes = a.octets();
            &bytes
        }
        _ => {
            debug_assert!(false, "{new} is not of the packet's family");
            return 0;
        }
    };
    let a = ip_off + family.addr_offset(end);
    let len = family.addr_len();
    let old = &pkt[a..a + len];
    if old == new_bytes {
        return 0;
    }
    let diff = diff_words(old, new_bytes);
    pkt[a..a + len].copy_from_slice(new_bytes);
    if family == Family::V4 {
        let c = apply(read_u16(pkt, ip_off + 10), diff);
        pkt[ip_off + 10..ip_off + 12].copy_from_slice(&c.to_be_bytes());
    }
    diff
}

/// A TCP/UDP packet's addressing within a buffer: the IP header at
/// `ip_off`, the transport header at `l4_off` with `l4_len` bytes present
/// (at least 8).
struct Endpoint {
    family: Family,
    ip_off: usize,
    l4_off: usize,
    l4_len: usize,
    proto: Proto,
}

impl Endpoint {
    /// Sets the `end` address and port. Fixes the IPv4 header checksum
    /// and, if it is present, the transport checksum (pseudo-header address
    /// and port); a UDP checksum of 0 (none: IPv4 only, or a quote) stays 0
    /// and one that computes to 0 is sent as 0xFFFF.
    fn set(&self, pkt: &mut [u8], end: End, new: SocketAddr) {
        let mut diff = set_addr(pkt, self.ip_off, self.family, end, new.ip());
        let p = self.l4_off + end.port_offset();
        let old_port = read_u16(pkt, p);
        let new_port = new.port();
        if old_port != new_port {
            diff += u64::from(!old_port) + u64::from(new_port);
            pkt[p..p + 2].copy_from_slice(&new_port.to_be_bytes());
        }
        if diff == 0 {
            return;
        }
        let c_off = self.proto.checksum_offset();
        if c_off + 2 > self.l4_len {
            return; // a quote too short to hold the checksum
        }
        let at = self.l4_off + c_off;
        let c = read_u16(pkt, at);
        if self.proto == Proto::Udp && c == 0 {
            return;
        }
        let mut c = apply(c, diff);
        if self.proto == Proto::Udp && c == 0 {
            c = 0xffff;
        }
        pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
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

    #[test]
    fn classifies_ipv6_tcp_udp_and_icmpv6_errors() {
        let c = sa6("fd00:2::7", 40000);
        let l = sa6("fd00:2::1", 6000);
        match classify(&tcp6(c, l, TCP_SYN | TCP_ACK, b"")).unwrap() {
            Packet::Flow(f) => {
                assert_eq!((f.proto, f.src, f.dst), (Proto::Tcp, c, l));
                assert_eq!(f.tcp_flags, TCP_SYN | TCP_ACK);
                assert_eq!((f.family, f.l4_off, f.l4_len), (Family::V6, 40, 20));
            }
            other => panic!("{other:?}"),
        }
        let u = with_ext6(&udp6(c, l, b"x"), 60, dest_opts6(1));
        match classify(&u).unwrap() {
            Packet::Flow(f) => assert_eq!((f.proto, f.l4_off, f.l4_len), (Proto::Udp, 56, 9)),
            other => panic!("{other:?}"),
        }
        let e = icmp6_error(
            ip6("fd00:2::7"),
            ip6("fd00:2::1"),
            2,
            0,
            1280,
            &udp6(l, c, b"x"),
        );
        match classify(&e).unwrap() {
            Packet::IcmpError(q) => {
                assert_eq!(q.proto, Proto::Udp);
                assert_eq!(q.outer_dst, ip6("fd00:2::1"));
                assert_eq!((q.src, q.dst), (l, c));
                assert_eq!((q.quote_off, q.quote_l4_off, q.quote_l4_len), (48, 88, 9));
            }
            other => panic!("{other:?}"),
        }
        // Link padding after the packet is ignored.
        let mut padded = udp6(c, l, b"");
        padded.extend_from_slice(&[0; 6]);
        assert!(matches!(classify(&padded), Ok(Packet::Flow(_))));
        assert_eq!(classify(&[0x70; 60]), Err(NatError::Malformed));
    }

    #[test]
    fn ipv6_udp_checksum_that_computes_to_zero_is_sent_as_ffff() {
        let from = sa6("fd00:2::7", 40000);
        let to = sa6("fd00:2::1", 6000);
        let new = sa6("2001:db8:a::1", 7000);
        // A payload whose datagram to `new` sums to all ones: the raw
        // checksum of the datagram with payload word `w` and checksum 0.
        let mut q = udp6(from, new, &[0, 0]);
        q[46] = 0;
        q[47] = 0;
        let w = checksum::of(&pseudo_udp6(&q));
        q[48..50].copy_from_slice(&w.to_be_bytes());
        assert_eq!(
            checksum::of(&pseudo_udp6(&q)),
            0,
            "constructed to compute to zero"
        );
        let mut r = udp6(from, to, &q[48..50]);
        let Packet::Flow(f) = classify(&r).unwrap() else {
            panic!()
        };
        f.set_dst(&mut r, new);
        assert_eq!(&r[46..48], &[0xff, 0xff]);
        assert_eq!(&r[24..40], &ip6("2001:db8:a::1").octets());
        verify(&r);
    }

    /// The IPv6 pseudo-header and UDP datagram of `p` (no extension headers).
    fn pseudo_udp6(p: &[u8]) -> Vec<u8> {
        let mut v = p[8..40].to_vec();
        v.extend_from_slice(&((p.len() - 40) as u32).to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 17]);
        v.extend_from_slice(&p[40..]);
        v
    }

    #[test]
    fn incremental_ipv6_rewrites_match_a_full_recompute() {
        // Many address pairs, so carries in every word are exercised.
        let mut rng = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..2000 {
            let a = |x: u64, y: u64| {
                let v = (u128::from(x) << 64 | u128::from(y)) | 1 << 125;
                std::net::SocketAddr::new(std::net::Ipv6Addr::from(v).into(), x as u16 | 1)
            };
            let (s, d, n) = (a(next(), next()), a(next(), next()), a(next(), next()));
            let payload = next().to_be_bytes();
            for tcp_too in [false, true] {
                let (mut p, want) = if tcp_too {
                    (tcp6(s, d, TCP_ACK, &payload), tcp6(s, n, TCP_ACK, &payload))
                } else {
                    (udp6(s, d, &payload), udp6(s, n, &payload))
                };
                let Packet::Flow(f) = classify(&p).unwrap() else {
                    panic!()
                };
                f.set_dst(&mut p, n);
                assert_eq!(p, want);
            }
        }
    }
}
