//! TCP MSS clamping: lowering the maximum-segment-size option of a TCP SYN
//! or SYN-ACK so that the connection's segments fit the tunnel's inner MTU
//! without a round of ICMP fragmentation-needed (the classic
//! `--clamp-mss-to-pmtu` of a tunnel router).
//!
//! The option walk is smoltcp's ([`TcpOption::parse`]); this module finds
//! where the MSS option lies, rewrites its value and updates the TCP
//! checksum incrementally (RFC 1624), so the segment is never summed again.
//! A segment whose options do not parse is left as it is: a router forwards
//! what it does not understand.

use smoltcp::wire::{TcpOption, TcpPacket};

use super::checksum;

/// TCP's fixed header length.
const TCP_MIN_HLEN: usize = 20;
/// Offset of the TCP checksum.
const TCP_CHECKSUM_AT: usize = 16;
/// IPv4 header length plus TCP header length without options: the
/// difference between an IPv4 MTU and the MSS that fills it.
pub const IPV4_TCP_OVERHEAD: u16 = 40;

/// How much longer the IPv6 header is than IPv4's: an IPv6 MSS limit is
/// the IPv4 one less this.
pub const IPV6_EXTRA: u16 = 20;

/// What [`clamp_ipv4`] or [`clamp_ipv6`] did to a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clamp {
    /// Not a TCP SYN (or a later fragment): nothing to look at.
    NotSyn,
    /// A SYN whose MSS option (if any) already fits: unchanged.
    Fits,
    /// A SYN whose MSS was lowered from `from` to the limit.
    Lowered {
        /// The MSS the sender announced.
        from: u16,
    },
}

/// The largest MSS for IPv4 TCP through an inner MTU of `inner_mtu` bytes.
#[inline]
pub const fn ipv4_mss_for(inner_mtu: u16) -> u16 {
    inner_mtu.saturating_sub(IPV4_TCP_OVERHEAD)
}

/// Clamps the MSS of `packet` (an IPv4 packet whose header the caller has
/// validated) to `max_mss`, if it is a TCP SYN or SYN-ACK in the first
/// fragment. Costs a few byte reads for anything else.
#[inline]
pub fn clamp_ipv4(packet: &mut [u8], max_mss: u16) -> Clamp {
    // Protocol, then fragment offset (a later fragment carries no TCP header).
    if packet.get(9) != Some(&6) || packet.len() < 20 {
        return Clamp::NotSyn;
    }
    if u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff != 0 {
        return Clamp::NotSyn;
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]])).min(packet.len());
    match packet.get_mut(ihl..total) {
        Some(segment) => clamp_segment(segment, max_mss),
        None => Clamp::NotSyn,
    }
}

/// Clamps the MSS of `packet` (an IPv6 packet) to `max_mss`, if it is a
/// TCP SYN or SYN-ACK (in the first fragment). TCP right after the fixed
/// header costs a few byte reads; extension headers are walked
/// ([`super::ipv6::parse`]).
#[inline]
pub fn clamp_ipv6(packet: &mut [u8], max_mss: u16) -> Clamp {
    use super::ipv6::{self, next_header};
    match packet.get(6) {
        Some(&next_header::TCP) => {
            // The SYN flag, before anything else.
            if packet
                .get(ipv6::IPV6_HLEN + 13)
                .is_none_or(|f| f & 0x02 == 0)
            {
                return Clamp::NotSyn;
            }
        }
        Some(
            &(next_header::HOP_BY_HOP
            | next_header::ROUTING
            | next_header::FRAGMENT
            | next_header::DEST_OPTS),
        ) => {}
        _ => return Clamp::NotSyn,
    }
    let Ok(ip) = ipv6::parse(packet) else {
        return Clamp::NotSyn;
    };
    if ip.protocol != next_header::TCP || ip.is_later_fragment {
        return Clamp::NotSyn;
    }
    clamp_segment(&mut packet[ip.l4_at..ip.total_len], max_mss)
}

/// Clamps the MSS option of `segment` (a TCP header and what follows) to
/// `max_mss` if the segment is a SYN.
pub fn clamp_segment(segment: &mut [u8], max_mss: u16) -> Clamp {
    // The flags byte: SYN is bit 1. Checked before any parse.
    if segment.len() < TCP_MIN_HLEN || segment[13] & 0x02 == 0 {
        return Clamp::NotSyn;
    }
    let Some((at, mss)) = find_mss(segment) else {
        return Clamp::Fits;
    };
    if mss <= max_mss {
        return Clamp::Fits;
    }
    segment[at..at + 2].copy_from_slice(&max_mss.to_be_bytes());
    let sum = u16::from_be_bytes([segment[TCP_CHECKSUM_AT], segment[TCP_CHECKSUM_AT + 1]]);
    let sum = checksum::update_u16(sum, mss, max_mss);
    segment[TCP_CHECKSUM_AT..TCP_CHECKSUM_AT + 2].copy_from_slice(&sum.to_be_bytes());
    Clamp::Lowered { from: mss }
}

/// Where the MSS value lies in `segment` (offset of its two bytes) and
/// what it is; `None` without an MSS option or if the options stop parsing
/// before one.
fn find_mss(segment: &[u8]) -> Option<(usize, u16)> {
    let tcp = TcpPacket::new_checked(segment).ok()?;
    let options = tcp.options();
    let mut rest = options;
    while !rest.is_empty() {
        let at = TCP_MIN_HLEN + (options.len() - rest.len());
        let (next, option) = TcpOption::parse(rest).ok()?;
        match option {
            TcpOption::MaxSegmentSize(mss) => return Some((at + 2, mss)),
            TcpOption::EndOfList => return None,
            _ => rest = next,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4;
    use smoltcp::wire::{IpAddress, Ipv4Address};

    const SRC: [u8; 4] = [10, 10, 1, 2];
    const DST: [u8; 4] = [10, 20, 1, 2];

    /// An IPv4 TCP segment with `flags` and the raw `options` (padded to
    /// a multiple of four with end-of-list), a valid TCP checksum.
    fn tcp_packet(flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut opts = options.to_vec();
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let tcp_len = TCP_MIN_HLEN + opts.len() + payload.len();
        let total = 20 + tcp_len;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&SRC);
        p[16..20].copy_from_slice(&DST);
        let c = checksum::of(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let t = &mut p[20..];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&5000u16.to_be_bytes());
        t[4..8].copy_from_slice(&1u32.to_be_bytes());
        t[12] = (((TCP_MIN_HLEN + opts.len()) / 4) as u8) << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&64240u16.to_be_bytes());
        t[TCP_MIN_HLEN..TCP_MIN_HLEN + opts.len()].copy_from_slice(&opts);
        t[TCP_MIN_HLEN + opts.len()..].copy_from_slice(payload);
        let mut seg = TcpPacket::new_unchecked(&mut p[20..]);
        seg.fill_checksum(
            &IpAddress::Ipv4(Ipv4Address::from(SRC)),
            &IpAddress::Ipv4(Ipv4Address::from(DST)),
        );
        p
    }

    fn mss_option(mss: u16) -> [u8; 4] {
        let [a, b] = mss.to_be_bytes();
        [2, 4, a, b]
    }

    fn mss_of(p: &[u8]) -> Option<u16> {
        find_mss(&p[20..]).map(|(_, m)| m)
    }

    fn tcp_checksum_ok(p: &[u8]) -> bool {
        let info = ipv4::parse(p).unwrap();
        crate::wire::l4::check_tcp(&info, &p[20..]).is_ok()
    }

    const SYN: u8 = 0x02;
    const SYN_ACK: u8 = 0x12;
    const ACK: u8 = 0x10;

    #[test]
    fn lowers_the_mss_of_a_syn_and_keeps_the_checksum_valid() {
        // Linux's usual SYN options: MSS, SACK permitted, timestamps, NOP, window scale.
        let mut opts = mss_option(1460).to_vec();
        opts.extend_from_slice(&[4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7]);
        for flags in [SYN, SYN_ACK] {
            let mut p = tcp_packet(flags, &opts, &[]);
            let before = p.clone();
            assert_eq!(clamp_ipv4(&mut p, 1398), Clamp::Lowered { from: 1460 });
            assert_eq!(mss_of(&p), Some(1398));
            assert!(
                tcp_checksum_ok(&p),
                "incremental update keeps the checksum valid"
            );
            let changed: Vec<usize> = (0..p.len()).filter(|&i| p[i] != before[i]).collect();
            assert!(
                changed.iter().all(|&i| matches!(i, 36 | 37 | 42 | 43)),
                "only the checksum and the MSS value change: {changed:?}"
            );
        }
    }

    #[test]
    fn finds_the_mss_after_other_options() {
        let mut opts = vec![1, 1, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0];
        opts.extend_from_slice(&mss_option(8960));
        let mut p = tcp_packet(SYN, &opts, &[]);
        assert_eq!(clamp_ipv4(&mut p, 1398), Clamp::Lowered { from: 8960 });
        assert_eq!(mss_of(&p), Some(1398));
        assert!(tcp_checksum_ok(&p));
    }

    #[test]
    fn leaves_what_fits_or_is_not_a_syn_unchanged() {
        let cases = [
            (SYN, mss_option(1200).to_vec(), Clamp::Fits),
            (SYN, mss_option(1398).to_vec(), Clamp::Fits),
            (SYN, vec![4, 2], Clamp::Fits), // no MSS option
            (ACK, mss_option(1460).to_vec(), Clamp::NotSyn),
            // The MSS behind end-of-list is not an option.
            (SYN, [0, 0, 0, 0, 2, 4, 5, 180].to_vec(), Clamp::Fits),
            // Options that do not parse (an option of length 0) stop the walk.
            (SYN, [3, 0, 0, 0, 2, 4, 5, 180].to_vec(), Clamp::Fits),
            // An MSS option of the wrong length.
            (SYN, [2, 3, 5, 0].to_vec(), Clamp::Fits),
            // An option running past the header.
            (SYN, [1, 1, 8, 10].to_vec(), Clamp::Fits),
        ];
        for (flags, opts, want) in cases {
            let mut p = tcp_packet(flags, &opts, b"data");
            let before = p.clone();
            assert_eq!(clamp_ipv4(&mut p, 1398), want, "{opts:?}");
            assert_eq!(p, before, "{opts:?}");
        }
    }

    #[test]
    fn ignores_other_protocols_later_fragments_and_truncated_headers() {
        let mut udp = ipv4::tests::udp_packet(&[0u8; 40], 64);
        let before = udp.clone();
        assert_eq!(clamp_ipv4(&mut udp, 1000), Clamp::NotSyn);
        assert_eq!(udp, before);

        let mut frag = tcp_packet(SYN, &mss_option(1460), &[]);
        frag[6] = 0x00;
        frag[7] = 0x10; // offset 16 * 8 bytes
        let before = frag.clone();
        assert_eq!(clamp_ipv4(&mut frag, 1000), Clamp::NotSyn);
        assert_eq!(frag, before);

        // Header cut short: the data offset says 24 bytes, only 22 are there.
        let p = tcp_packet(SYN, &mss_option(1460), &[]);
        for cut in [20, 30, 42] {
            let mut short = p[..cut].to_vec();
            short[2..4].copy_from_slice(&(cut as u16).to_be_bytes());
            let before = short.clone();
            let got = clamp_ipv4(&mut short, 1000);
            assert_ne!(got, Clamp::Lowered { from: 1460 }, "cut at {cut}");
            assert_eq!(short, before);
        }
        assert_eq!(clamp_ipv4(&mut [], 1000), Clamp::NotSyn);
    }

    #[test]
    fn the_mss_for_an_inner_mtu_fills_it_exactly() {
        assert_eq!(ipv4_mss_for(1438), 1398);
        assert_eq!(ipv4_mss_for(30), 0);
    }
}
