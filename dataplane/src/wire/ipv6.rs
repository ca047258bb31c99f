//! Validated IPv6 parsing for the forwarding path: the fixed header, then a
//! bounded walk over the extension headers to the upper-layer header.
//!
//! The header views are smoltcp's ([`Ipv6Packet`], [`Ipv6ExtHeader`],
//! [`Ipv6FragmentHeader`]); this module adds the rules a router applies
//! to them (RFC 8200): hop-by-hop options only right after the fixed
//! header, every extension header inside the packet, the fragment header's
//! fixed size and AH's 4-octet length unit (RFC 4302), and a limit on how
//! many headers one packet may chain, so a crafted packet cannot make the
//! walk long.

use std::net::Ipv6Addr;

use smoltcp::wire::{Ipv6ExtHeader, Ipv6FragmentHeader, Ipv6Packet};

use super::WireError;

/// Length of the fixed IPv6 header.
pub const IPV6_HLEN: usize = 40;
/// The most extension headers the gateway walks before giving up on a
/// packet (RFC 8504 §5.3 lets a node limit the chain; real traffic carries
/// one or two).
pub const MAX_EXT_HEADERS: usize = 8;

/// Next-header values the walk knows.
pub mod next_header {
    /// Hop-by-hop options (only directly after the fixed header).
    pub const HOP_BY_HOP: u8 = 0;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 encapsulated (the inner packet of our ESP trailer).
    pub const IPV6: u8 = 41;
    /// Routing header.
    pub const ROUTING: u8 = 43;
    /// Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// ESP: its payload is encrypted, the walk stops there.
    pub const ESP: u8 = 50;
    /// Authentication header.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// No next header.
    pub const NONE: u8 = 59;
    /// Destination options.
    pub const DEST_OPTS: u8 = 60;
    /// Mobility header (RFC 6275), in the extension-header format.
    pub const MOBILITY: u8 = 135;
    /// Host Identity Protocol (RFC 7401), in the extension-header format.
    pub const HIP: u8 = 139;
    /// Shim6 (RFC 5533), in the extension-header format.
    pub const SHIM6: u8 = 140;
}

/// The facts the forwarding path needs from a valid IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Info {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Hop limit.
    pub hop_limit: u8,
    /// The whole packet's length: 40 plus the payload length (bytes after
    /// it are link padding).
    pub total_len: usize,
    /// The upper-layer protocol after the extension headers (TCP, UDP,
    /// ICMPv6, ESP, no-next-header...). For a later fragment: the next
    /// header its fragment header names.
    pub protocol: u8,
    /// Where the upper-layer header starts, from the start of the packet.
    pub l4_at: usize,
    /// True for a fragment with a non-zero offset: it carries no
    /// upper-layer header.
    pub is_later_fragment: bool,
}

impl Ipv6Info {
    /// The upper-layer bytes of `packet` (the one this was parsed from):
    /// empty for a later fragment.
    pub fn l4<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        if self.is_later_fragment {
            return &[];
        }
        &packet[self.l4_at..self.total_len]
    }
}

/// Validates the IPv6 packet at the start of `buf` (which may carry link
/// padding after it) and walks its extension headers: version 6, the
/// payload within the buffer, no jumbogram (payload length 0 with a
/// hop-by-hop header), every extension header complete inside the packet,
/// hop-by-hop options only first, at most [`MAX_EXT_HEADERS`].
pub fn parse(buf: &[u8]) -> Result<Ipv6Info, WireError> {
    if buf.len() < IPV6_HLEN {
        return Err(WireError::Truncated);
    }
    let p = Ipv6Packet::new_unchecked(buf);
    if p.version() != 6 {
        return Err(WireError::Malformed);
    }
    let total_len = IPV6_HLEN + usize::from(p.payload_len());
    if total_len > buf.len() {
        return Err(WireError::Truncated);
    }
    let first = buf[6];
    if p.payload_len() == 0 && first == next_header::HOP_BY_HOP {
        // A jumbogram (RFC 2675): not on any link the gateway has.
        return Err(WireError::Malformed);
    }
    let (protocol, l4_at, is_later_fragment) = walk(&buf[..total_len], first)?;
    Ok(Ipv6Info {
        src: p.src_addr(),
        dst: p.dst_addr(),
        hop_limit: p.hop_limit(),
        total_len,
        protocol,
        l4_at,
        is_later_fragment,
    })
}

/// Walks the extension headers of `packet` (exactly the packet, no
/// padding) from the fixed header's next-header value `first`: the
/// upper-layer protocol, where it starts, and whether this is a later
/// fragment.
fn walk(packet: &[u8], first: u8) -> Result<(u8, usize, bool), WireError> {
    use next_header::*;
    let mut next = first;
    let mut at = IPV6_HLEN;
    for n in 0..=MAX_EXT_HEADERS {
        let rest = &packet[at..];
        let (following, size) = match next {
            HOP_BY_HOP if n > 0 => return Err(WireError::Malformed),
            HOP_BY_HOP | ROUTING | DEST_OPTS | MOBILITY | HIP | SHIM6 => {
                let h = Ipv6ExtHeader::new_checked(rest).map_err(|_| WireError::Truncated)?;
                let len = 8 + 8 * usize::from(h.header_len());
                (u8::from(h.next_header()), len)
            }
            FRAGMENT => {
                // smoltcp's view starts after the next-header and reserved bytes.
                let h = rest
                    .get(2..8)
                    .and_then(|b| Ipv6FragmentHeader::new_checked(b).ok())
                    .ok_or(WireError::Truncated)?;
                let next = rest[0];
                if h.frag_offset() != 0 {
                    return Ok((next, at + 8, true));
                }
                (next, 8)
            }
            AH => {
                // RFC 4302: the length is in 4-octet units, minus 2.
                let units = *rest.get(1).ok_or(WireError::Truncated)?;
                let len = (usize::from(units) + 2) * 4;
                if rest.len() < len {
                    return Err(WireError::Truncated);
                }
                (rest[0], len)
            }
            upper => return Ok((upper, at, false)),
        };
        next = following;
        at += size;
    }
    Err(WireError::Malformed)
}

/// Decrements the hop limit of the valid IPv6 header at the start of `buf`
/// (IPv6 has no header checksum). The caller has checked `hop_limit > 1`.
#[inline]
pub fn decrement_hop_limit(buf: &mut [u8]) {
    buf[7] -= 1;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::next_header::*;
    use super::*;

    pub(crate) const SRC: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 1, 0, 0, 0, 0, 2);
    pub(crate) const DST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x20, 1, 0, 0, 0, 0, 2);

    /// An IPv6 packet `SRC` → `DST` with hop limit `hops` whose payload is
    /// `ext` (extension headers, as raw bytes) then `l4`; `first` is the
    /// fixed header's next header.
    pub(crate) fn packet(first: u8, ext: &[u8], l4: &[u8], hops: u8) -> Vec<u8> {
        let payload_len = ext.len() + l4.len();
        let mut p = vec![0u8; IPV6_HLEN];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
        p[6] = first;
        p[7] = hops;
        p[8..24].copy_from_slice(&SRC.octets());
        p[24..40].copy_from_slice(&DST.octets());
        p.extend_from_slice(ext);
        p.extend_from_slice(l4);
        p
    }

    /// A generic extension header (hop-by-hop, routing, destination
    /// options) of `units` 8-octet units beyond the first, naming `next`.
    fn ext(next: u8, units: u8) -> Vec<u8> {
        let mut h = vec![0u8; 8 + 8 * usize::from(units)];
        h[0] = next;
        h[1] = units;
        h[2] = 1; // a PadN option filling the rest
        h[3] = (h.len() - 4) as u8;
        h
    }

    fn fragment(next: u8, offset_units: u16, more: bool) -> Vec<u8> {
        let mut h = vec![next, 0, 0, 0, 0, 0, 0x12, 0x34];
        let v = (offset_units << 3) | u16::from(more);
        h[2..4].copy_from_slice(&v.to_be_bytes());
        h
    }

    const UDP_HDR: [u8; 8] = [0x9c, 0x40, 0x13, 0x89, 0, 8, 0, 0];

    #[test]
    fn a_plain_udp_packet() {
        let p = packet(UDP, &[], &UDP_HDR, 64);
        let info = parse(&p).unwrap();
        assert_eq!(
            info,
            Ipv6Info {
                src: SRC,
                dst: DST,
                hop_limit: 64,
                total_len: 48,
                protocol: UDP,
                l4_at: 40,
                is_later_fragment: false,
            }
        );
        assert_eq!(info.l4(&p), &UDP_HDR);
        // Link padding after the packet is not part of it.
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 12]);
        assert_eq!(parse(&padded).unwrap(), info);
    }

    #[test]
    fn walks_a_chain_of_extension_headers_to_the_upper_layer() {
        let mut chain = ext(DEST_OPTS, 0);
        chain.extend(ext(ROUTING, 1));
        chain.extend(ext(FRAGMENT, 0));
        chain.extend(fragment(AH, 0, true));
        let mut ah = vec![0u8; 24]; // AH with a 12-byte ICV: (4 + 2) * 4
        ah[0] = TCP;
        ah[1] = 4;
        chain.extend(ah);
        let p = packet(HOP_BY_HOP, &chain, &[0u8; 20], 64);
        let info = parse(&p).unwrap();
        assert_eq!(info.protocol, TCP);
        assert_eq!(info.l4_at, 40 + 8 + 16 + 8 + 8 + 24);
        assert!(!info.is_later_fragment);
        assert_eq!(info.l4(&p).len(), 20);
    }

    #[test]
    fn a_later_fragment_has_no_upper_layer_header() {
        let p = packet(FRAGMENT, &fragment(UDP, 185, false), &[0xab; 16], 64);
        let info = parse(&p).unwrap();
        assert!(info.is_later_fragment);
        assert_eq!(info.protocol, UDP);
        assert!(info.l4(&p).is_empty());
        // The first fragment (offset 0) is walked through.
        let p = packet(FRAGMENT, &fragment(UDP, 0, true), &UDP_HDR, 64);
        let info = parse(&p).unwrap();
        assert!(!info.is_later_fragment);
        assert_eq!((info.protocol, info.l4_at), (UDP, 48));
    }

    #[test]
    fn esp_and_no_next_header_end_the_walk() {
        for last in [ESP, NONE, ICMPV6, IPV6] {
            let p = packet(DEST_OPTS, &ext(last, 0), &[0u8; 8], 64);
            let info = parse(&p).unwrap();
            assert_eq!((info.protocol, info.l4_at), (last, 48));
        }
    }

    #[test]
    fn truncated_and_malformed_fixed_headers() {
        let p = packet(UDP, &[], &UDP_HDR, 64);
        for cut in [0, 1, 39] {
            assert_eq!(parse(&p[..cut]), Err(WireError::Truncated), "cut at {cut}");
        }
        // The payload length runs past the buffer.
        assert_eq!(parse(&p[..47]), Err(WireError::Truncated));
        let mut v4 = p.clone();
        v4[0] = 0x45;
        assert_eq!(parse(&v4), Err(WireError::Malformed));
        // A jumbogram: payload length 0 and a hop-by-hop header.
        let jumbo = packet(HOP_BY_HOP, &[], &[], 64);
        assert_eq!(parse(&jumbo), Err(WireError::Malformed));
    }

    #[test]
    fn extension_chains_that_end_inside_the_packet_or_run_past_it() {
        // A routing header whose length says 24 bytes, in a packet with 16 left.
        let mut long = ext(UDP, 2);
        long.truncate(16);
        let p = packet(ROUTING, &long, &[], 64);
        assert_eq!(parse(&p), Err(WireError::Truncated));
        // The chain ends exactly at the end of the packet: an empty upper layer.
        let p = packet(DEST_OPTS, &ext(NONE, 1), &[], 64);
        let info = parse(&p).unwrap();
        assert_eq!((info.protocol, info.l4_at, info.total_len), (NONE, 56, 56));
        assert!(info.l4(&p).is_empty());
        // A header starting at the very end: nothing left to read.
        let p = packet(DEST_OPTS, &ext(ROUTING, 0), &[], 64);
        assert_eq!(parse(&p), Err(WireError::Truncated));
        // One byte of a header (its next-header field, not its length).
        let p = packet(DEST_OPTS, &ext(ROUTING, 0), &[UDP], 64);
        assert_eq!(parse(&p), Err(WireError::Truncated));
        // A fragment header cut short.
        let p = packet(FRAGMENT, &fragment(UDP, 0, true)[..6], &[], 64);
        assert_eq!(parse(&p), Err(WireError::Truncated));
        // AH whose length runs past the packet.
        let p = packet(AH, &[UDP, 10, 0, 0, 0, 0, 0, 0], &[], 64);
        assert_eq!(parse(&p), Err(WireError::Truncated));
        // Bytes after the payload length are padding, so a header there is cut off.
        let mut p = packet(DEST_OPTS, &ext(UDP, 0), &UDP_HDR, 64);
        p[4..6].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(parse(&p), Err(WireError::Truncated));
    }

    #[test]
    fn hop_by_hop_only_first_and_chains_bounded() {
        let p = packet(DEST_OPTS, &ext(HOP_BY_HOP, 0), &[0u8; 8], 64);
        assert_eq!(parse(&p), Err(WireError::Malformed));
        // MAX_EXT_HEADERS destination options are walked; one more is refused.
        let chain = |n: usize| {
            let mut c = Vec::new();
            for i in 0..n {
                c.extend(ext(if i + 1 == n { UDP } else { DEST_OPTS }, 0));
            }
            c
        };
        let ok = packet(DEST_OPTS, &chain(MAX_EXT_HEADERS), &UDP_HDR, 64);
        assert_eq!(parse(&ok).unwrap().protocol, UDP);
        let long = packet(DEST_OPTS, &chain(MAX_EXT_HEADERS + 1), &UDP_HDR, 64);
        assert_eq!(parse(&long), Err(WireError::Malformed));
    }

    #[test]
    fn hop_limit_decrements_in_place() {
        let mut p = packet(UDP, &[], &UDP_HDR, 64);
        decrement_hop_limit(&mut p);
        assert_eq!(parse(&p).unwrap().hop_limit, 63);
    }
}
