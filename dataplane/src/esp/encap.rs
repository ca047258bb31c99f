//! Outbound: ESP tunnel-mode encapsulation in UDP, in place, and burst sealing.

use std::net::{IpAddr, Ipv6Addr};
use std::ops::Range;

use arrayvec::ArrayVec;
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet, UdpPacket};

use super::{
    pad_len, EspError, OutboundSa, ESP_UDP_PORT, HEAD_LEN, HEAD_LEN6, ICV_LEN, NEXT_HEADER_IPV4,
    NEXT_HEADER_IPV6, OUTER_IPV4_HLEN, OUTER_IPV6_HLEN, TRAILER_LEN, UDP_HLEN,
};
use crate::backend::{PacketBuf, BURST};
use crate::crypto::{AeadEngine, SaKey, SealOp, TAG_LEN};
use crate::wire::esp::{EspPacket, EspRepr};

/// Outer addressing for encapsulation: the tunnel endpoints, both IPv4 or
/// both IPv6 (the table builder guarantees it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    /// Our WAN address.
    pub src: IpAddr,
    /// The peer gateway's WAN address.
    pub dst: IpAddr,
    /// UDP source port (4500 unless configured otherwise).
    pub sport: u16,
    /// UDP destination port (4500 unless configured otherwise).
    pub dport: u16,
    /// Outer TTL or hop limit (64).
    pub ttl: u8,
}

impl Outer {
    /// Endpoints `src` → `dst` on port 4500 both ways, TTL 64.
    pub const fn new(src: IpAddr, dst: IpAddr) -> Self {
        Outer {
            src,
            dst,
            sport: ESP_UDP_PORT,
            dport: ESP_UDP_PORT,
            ttl: 64,
        }
    }

    /// True for an IPv6 outer header.
    #[inline]
    pub const fn is_ipv6(&self) -> bool {
        matches!(self.dst, IpAddr::V6(_))
    }

    /// The bytes placed before the inner packet: [`HEAD_LEN`] over IPv4,
    /// [`HEAD_LEN6`] over IPv6.
    #[inline]
    pub const fn head_len(&self) -> usize {
        if self.is_ipv6() {
            HEAD_LEN6
        } else {
            HEAD_LEN
        }
    }
}

/// A packet laid out by [`encap_prepare`], waiting to be sealed by [`seal_burst`].
/// Offsets are within the packet's `data()`.
#[derive(Debug, Clone)]
pub struct SealJob<'k> {
    key: &'k SaKey,
    iv: u64,
    aad: [u8; 12],
    aad_len: u8,
    payload_start: usize,
    payload_len: usize,
    /// Over IPv6: the UDP checksum is filled after sealing.
    outer_ipv6: bool,
    sealed: bool,
}

impl<'k> SealJob<'k> {
    /// The key this packet is sealed with.
    pub fn key(&self) -> &'k SaKey {
        self.key
    }
    /// The explicit IV written after the ESP header.
    pub fn iv(&self) -> u64 {
        self.iv
    }
    /// The AAD: SPI ‖ seq-low (8 bytes), or SPI ‖ seq-high ‖ seq-low with ESN (12).
    pub fn aad(&self) -> &[u8] {
        &self.aad[..usize::from(self.aad_len)]
    }
    /// The bytes encrypted: inner packet, padding, pad length and next header.
    pub fn payload(&self) -> Range<usize> {
        self.payload_start..self.payload_start + self.payload_len
    }
    /// Where the ICV goes (the last 16 bytes of the packet).
    pub fn icv(&self) -> Range<usize> {
        let end = self.payload_start + self.payload_len;
        end..end + ICV_LEN
    }
    /// True once [`seal_burst`] sealed the packet; a packet not sealed must be dropped.
    pub fn sealed(&self) -> bool {
        self.sealed
    }
}

/// Builds the ESP AAD (RFC 4106 §5) into `out`, returning its length.
#[inline]
pub(super) fn build_aad(out: &mut [u8; 12], spi: u32, seq: u64, esn: bool) -> u8 {
    out[..4].copy_from_slice(&spi.to_be_bytes());
    if esn {
        out[4..12].copy_from_slice(&seq.to_be_bytes());
        12
    } else {
        out[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        8
    }
}

/// Encapsulates the inner IPv4 or IPv6 packet that is exactly `buf`'s data,
/// in place. Into the headroom go the outer header, by the family of
/// `outer`: IPv4 (DF set, ident 0, header checksum filled, DSCP copied
/// from the inner header, ECN not-ECT) with UDP checksum 0 (RFC 3948
/// §2.1), or IPv6 (traffic class from the inner DSCP, ECN not-ECT, flow
/// label 0) whose UDP checksum [`seal_burst`] fills once the payload is
/// sealed (RFC 8200 §8.1 requires one; RFC 6935's zero checksum is for
/// tunnels whose both ends opt in, and Linux peers do not); then UDP, the
/// ESP header (SPI, low 32 bits of `seq`) and the IV (`seq`, 64-bit
/// big-endian). Into the tailroom go padding 1, 2, 3, ... + pad length +
/// next header (4 for an IPv4 inner packet, 41 for IPv6) + room for the
/// ICV. The inner packet is not moved and nothing is allocated. Returns
/// what [`seal_burst`] needs.
///
/// `seq` comes from [`OutboundSa::reserve`]; 0, or a number beyond 2^32 − 1
/// on an SA without ESN, is refused ([`EspError::SeqExhausted`]). On error
/// `buf` is unchanged.
pub fn encap_prepare<'k, B: PacketBuf>(
    buf: &mut B,
    sa: &'k OutboundSa,
    seq: u64,
    outer: &Outer,
) -> Result<SealJob<'k>, EspError> {
    let next_header = match buf.data().first() {
        None => return Err(EspError::BadLength),
        Some(b) if b >> 4 == 4 => NEXT_HEADER_IPV4,
        Some(b) if b >> 4 == 6 => NEXT_HEADER_IPV6,
        Some(_) => return Err(EspError::BadNextHeader),
    };
    encap_prepare_raw(buf, sa, seq, seq, next_header, outer)
}

/// [`encap_prepare`] with an explicit IV and next header, for known-answer tests
/// against published vectors (whose IVs are not sequence numbers). An IV must
/// never repeat under one key: the gateway always uses [`encap_prepare`].
#[doc(hidden)]
pub fn encap_prepare_raw<'k, B: PacketBuf>(
    buf: &mut B,
    sa: &'k OutboundSa,
    seq: u64,
    iv: u64,
    next_header: u8,
    outer: &Outer,
) -> Result<SealJob<'k>, EspError> {
    if seq == 0 || (!sa.esn && seq > u64::from(u32::MAX)) {
        return Err(EspError::SeqExhausted);
    }
    let head = outer.head_len();
    let inner_len = buf.len();
    let pad = pad_len(inner_len);
    let tail = pad + TRAILER_LEN + ICV_LEN;
    let total = head + inner_len + tail;
    if total > usize::from(u16::MAX) {
        return Err(EspError::BadLength);
    }
    if buf.headroom() < head || buf.tailroom() < tail {
        return Err(EspError::NoRoom);
    }
    let dscp = match buf.data() {
        [v, tos, ..] if next_header == NEXT_HEADER_IPV4 && v >> 4 == 4 => tos >> 2,
        // IPv6: the traffic class spans the low nibble of byte 0 and the high one of byte 1.
        [v, tc, ..] if next_header == NEXT_HEADER_IPV6 && v >> 4 == 6 => {
            ((v & 0x0f) << 2) | (tc >> 6)
        }
        _ => 0,
    };
    if !buf.prepend(head) {
        return Err(EspError::NoRoom);
    }
    if !buf.append(tail) {
        buf.adj(head);
        return Err(EspError::NoRoom);
    }
    let d = buf.data_mut();

    let udp_at = match (outer.src, outer.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let mut ip = Ipv4Packet::new_unchecked(&mut d[..OUTER_IPV4_HLEN]);
            ip.set_version(4);
            ip.set_header_len(OUTER_IPV4_HLEN as u8);
            ip.set_dscp(dscp);
            ip.set_ecn(0);
            ip.set_total_len(total as u16);
            ip.set_ident(0);
            ip.clear_flags();
            ip.set_dont_frag(true);
            ip.set_frag_offset(0);
            ip.set_hop_limit(outer.ttl);
            ip.set_next_header(IpProtocol::Udp);
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
            ip.fill_checksum();
            OUTER_IPV4_HLEN
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let mut ip = Ipv6Packet::new_unchecked(&mut d[..OUTER_IPV6_HLEN]);
            ip.set_version(6);
            ip.set_traffic_class(dscp << 2);
            ip.set_flow_label(0);
            ip.set_payload_len((total - OUTER_IPV6_HLEN) as u16);
            ip.set_next_header(IpProtocol::Udp);
            ip.set_hop_limit(outer.ttl);
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
            OUTER_IPV6_HLEN
        }
        // Mixed families: the table builder never makes such an SA.
        _ => {
            buf.adj(head);
            buf.trim(tail);
            return Err(EspError::BadLength);
        }
    };
    let d = buf.data_mut();

    let mut udp = UdpPacket::new_unchecked(&mut d[udp_at..udp_at + UDP_HLEN]);
    udp.set_src_port(outer.sport);
    udp.set_dst_port(outer.dport);
    udp.set_len((total - udp_at) as u16);
    udp.set_checksum(0);

    let esp_at = udp_at + UDP_HLEN;
    EspRepr {
        spi: sa.spi,
        seq_low: seq as u32,
        iv,
    }
    .emit(&mut EspPacket::new_unchecked(&mut d[esp_at..head]));

    let trailer_at = head + inner_len;
    for (i, b) in d[trailer_at..trailer_at + pad].iter_mut().enumerate() {
        *b = i as u8 + 1;
    }
    d[trailer_at + pad] = pad as u8;
    d[trailer_at + pad + 1] = next_header;

    let mut aad = [0u8; 12];
    let aad_len = build_aad(&mut aad, sa.spi, seq, sa.esn);
    Ok(SealJob {
        key: &sa.key,
        iv,
        aad,
        aad_len,
        payload_start: head,
        payload_len: inner_len + pad + TRAILER_LEN,
        outer_ipv6: outer.is_ipv6(),
        sealed: false,
    })
}

/// The payload and ICV slices of one packet, if the job's offsets fit in it.
#[inline]
pub(super) fn payload_and_icv(
    data: &mut [u8],
    start: usize,
    len: usize,
) -> Option<(&mut [u8], &mut [u8; TAG_LEN])> {
    let region = data.get_mut(start..start.checked_add(len)?.checked_add(ICV_LEN)?)?;
    let (payload, icv) = region.split_at_mut(len);
    Some((payload, icv.try_into().ok()?))
}

/// Seals prepared packets: `jobs[i]` belongs to `bufs[i]`. Each group of up to
/// [`BURST`] packets is one engine call; then a packet with an IPv6 outer
/// header gets its UDP checksum, computed over the sealed datagram.
/// Afterwards [`SealJob::sealed`] tells which packets are ready to send; a
/// job without a matching buffer, or whose offsets do not fit its buffer,
/// is left unsealed.
pub fn seal_burst<B: PacketBuf>(engine: &dyn AeadEngine, bufs: &mut [B], jobs: &mut [SealJob<'_>]) {
    for (bufs, jobs) in bufs.chunks_mut(BURST).zip(jobs.chunks_mut(BURST)) {
        for job in jobs.iter_mut() {
            job.sealed = false;
        }
        let mut results = ArrayVec::<(usize, bool), BURST>::new();
        {
            let jobs_ro: &[SealJob<'_>] = jobs;
            let mut ops = ArrayVec::<SealOp<'_>, BURST>::new();
            let mut index = ArrayVec::<usize, BURST>::new();
            for (i, (buf, job)) in bufs.iter_mut().zip(jobs_ro).enumerate() {
                if let Some((payload, icv)) =
                    payload_and_icv(buf.data_mut(), job.payload_start, job.payload_len)
                {
                    ops.push(SealOp::new(job.key, job.iv, job.aad(), payload, icv));
                    index.push(i);
                }
            }
            engine.seal_burst(&mut ops);
            for (op, i) in ops.iter().zip(index) {
                results.push((i, op.ok));
            }
        }
        for (i, ok) in results {
            jobs[i].sealed = ok && (!jobs[i].outer_ipv6 || fill_udp6_checksum(bufs[i].data_mut()));
        }
    }
    for job in jobs.iter_mut().skip(bufs.len()) {
        job.sealed = false;
    }
}

/// Fills the UDP checksum of the IPv6 packet `packet` (an outer header
/// without extension headers, as [`encap_prepare`] writes it): RFC 8200
/// §8.1's pseudo-header and the whole datagram, by smoltcp's code. False if
/// the packet is too short for the lengths it claims.
fn fill_udp6_checksum(packet: &mut [u8]) -> bool {
    let Some(header) = packet.get(..OUTER_IPV6_HLEN) else {
        return false;
    };
    let ip = Ipv6Packet::new_unchecked(header);
    let (src, dst): (Ipv6Addr, Ipv6Addr) = (ip.src_addr(), ip.dst_addr());
    let Some(datagram) = packet.get_mut(OUTER_IPV6_HLEN..) else {
        return false;
    };
    let Ok(mut udp) = UdpPacket::new_checked(datagram) else {
        return false;
    };
    udp.fill_checksum(&IpAddress::Ipv6(src), &IpAddress::Ipv6(dst));
    true
}
