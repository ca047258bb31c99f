//! Inbound: parse UDP-encapsulated ESP, open a burst, strip to the inner packet.

use arrayvec::ArrayVec;

use super::encap::{build_aad, payload_and_icv};
use super::{EspError, InboundSa, ICV_LEN, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, TRAILER_LEN};
use crate::backend::{PacketBuf, BURST};
use crate::crypto::{AeadEngine, OpenOp, SaKey};
use crate::wire::esp::{esp_in_udp, EspPacket, EspRepr, EspWireError};
use crate::wire::{ipv6, IPV4_MIN_HLEN};
use smoltcp::wire::{IpAddress, Ipv6Packet, UdpPacket};

/// Where the parts of a parsed ESP packet lie within the outer packet's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspView {
    /// Security parameters index (never 0 here).
    pub spi: u32,
    /// Low 32 bits of the sequence number, as on the wire.
    pub seq_low: u32,
    /// The explicit IV.
    pub iv: u64,
    /// Offset of the ESP header (outer IP header + UDP header).
    pub esp_offset: usize,
    /// Offset of the encrypted payload (after the IV).
    pub payload_offset: usize,
    /// Length of the encrypted payload (inner packet + padding + trailer; a multiple of 4).
    pub payload_len: usize,
}

impl EspView {
    /// Offset of the ICV (right after the payload); the outer packet ends 16 bytes later.
    pub fn icv_offset(&self) -> usize {
        self.payload_offset + self.payload_len
    }
}

impl From<EspWireError> for EspError {
    fn from(e: EspWireError) -> Self {
        match e {
            EspWireError::Truncated => EspError::Truncated,
            EspWireError::TruncatedIcv => EspError::TruncatedIcv,
            EspWireError::BadLength => EspError::BadLength,
            EspWireError::NotEsp => EspError::NotEsp,
        }
    }
}

/// Parses an outer IPv4 or IPv6 packet (Ethernet header removed) down to
/// its ESP payload. IPv4: its lengths first (header and total length within
/// `buf`; bytes after the total length, such as Ethernet padding, are
/// ignored) and protocol UDP; the header checksum is not checked here (the
/// classifier checks it on the packet path, before [`decap_parse_at`]).
/// IPv6: the header and extension headers walked by [`ipv6::parse`], UDP
/// after them, and the UDP checksum ([`udp6_checksum_ok`]). Then as
/// [`decap_parse_at`].
pub fn decap_parse(buf: &[u8], port: u16) -> Result<EspView, EspError> {
    if buf.first().is_some_and(|b| b >> 4 == 6) {
        let ip = ipv6::parse(buf).map_err(|_| EspError::Truncated)?;
        if ip.protocol != u8::from(smoltcp::wire::IpProtocol::Udp) || ip.is_later_fragment {
            return Err(EspError::NotEsp);
        }
        if !udp6_checksum_ok(buf, ip.l4_at, ip.total_len) {
            return Err(EspError::BadUdpChecksum);
        }
        return decap_parse_at(buf, ip.l4_at, ip.total_len, port);
    }
    if buf.len() < IPV4_MIN_HLEN {
        return Err(EspError::Truncated);
    }
    let ihl = usize::from(buf[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if ihl < IPV4_MIN_HLEN || total < ihl {
        return Err(EspError::BadLength);
    }
    if total > buf.len() {
        return Err(EspError::Truncated);
    }
    if buf[9] != u8::from(smoltcp::wire::IpProtocol::Udp) {
        return Err(EspError::NotEsp);
    }
    decap_parse_at(buf, ihl, total, port)
}

/// Parses the ESP-in-UDP datagram at `buf[udp_at..end]` of an outer IPv4
/// or IPv6 packet whose headers the caller has validated (`udp_at` is where
/// its UDP header starts, `end` its total length; over IPv6 the caller
/// also checks [`udp6_checksum_ok`]): UDP to `port` with a length equal to
/// the datagram's, not a NAT keepalive nor the IKE non-ESP marker (SPI 0),
/// ESP header and IV present, room for the minimal trailer and the 16-byte
/// ICV, an encrypted part that is a multiple of 4 bytes (RFC 4303 §2.4).
/// The UDP checksum is not checked here (over IPv4, RFC 3948 §3.1.2: ESP
/// has its own integrity check), whether zero or not.
pub fn decap_parse_at(
    buf: &[u8],
    udp_at: usize,
    end: usize,
    port: u16,
) -> Result<EspView, EspError> {
    let udp = buf.get(udp_at..end).ok_or(EspError::Truncated)?;
    let esp_range = esp_in_udp(udp, port)?;
    let esp = EspPacket::new_checked(&udp[esp_range.clone()])?;
    let header = EspRepr::parse(&esp);
    let esp_offset = udp_at + esp_range.start;
    let payload = esp.payload_range();
    Ok(EspView {
        spi: header.spi,
        seq_low: header.seq_low,
        iv: header.iv,
        esp_offset,
        payload_offset: esp_offset + payload.start,
        payload_len: payload.len(),
    })
}

/// Whether the UDP datagram at `packet[udp_at..end]` of the IPv6 packet
/// `packet` carries a non-zero, correct checksum over RFC 8200 §8.1's
/// pseudo-header (the addresses from the fixed header: the gateway takes
/// no routing header to be the final destination). An IPv6 receiver
/// discards UDP with a zero checksum (RFC 8200 §8.1; RFC 6936's exception
/// is for tunnels that both ends configure, and ESP carries no such
/// agreement). The sum is smoltcp's.
pub fn udp6_checksum_ok(packet: &[u8], udp_at: usize, end: usize) -> bool {
    let (Some(header), Some(datagram)) = (packet.get(..40), packet.get(udp_at..end)) else {
        return false;
    };
    let ip = Ipv6Packet::new_unchecked(header);
    let Ok(udp) = UdpPacket::new_checked(datagram) else {
        return false;
    };
    if udp.checksum() == 0 || usize::from(udp.len()) != datagram.len() {
        return false;
    }
    udp.verify_checksum(
        &IpAddress::Ipv6(ip.src_addr()),
        &IpAddress::Ipv6(ip.dst_addr()),
    )
}

/// A parsed packet waiting to be opened by [`open_burst`].
#[derive(Debug, Clone)]
pub struct OpenJob<'k> {
    key: &'k SaKey,
    view: EspView,
    seq: u64,
    aad: [u8; 12],
    aad_len: u8,
    verified: bool,
}

impl<'k> OpenJob<'k> {
    /// A job for the packet `view` describes, under `sa` (looked up by
    /// `view.spi`), with the full sequence number `seq` the caller inferred with
    /// [`super::ReplayWindow::infer`] and checked with
    /// [`super::ReplayWindow::check`]. The AAD is built from `view.spi` and
    /// `seq` (all 64 bits with ESN), so a wrong guess of the high half fails
    /// authentication.
    pub fn new(sa: &'k InboundSa, view: &EspView, seq: u64) -> Self {
        let mut aad = [0u8; 12];
        let aad_len = build_aad(&mut aad, view.spi, seq, sa.esn);
        OpenJob {
            key: &sa.key,
            view: *view,
            seq,
            aad,
            aad_len,
            verified: false,
        }
    }

    /// The parsed packet.
    pub fn view(&self) -> &EspView {
        &self.view
    }
    /// The full sequence number authenticated (once verified).
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// The AAD used.
    pub fn aad(&self) -> &[u8] {
        &self.aad[..usize::from(self.aad_len)]
    }
    /// True once [`open_burst`] verified the ICV and decrypted the payload.
    /// Otherwise the packet fails with [`EspError::AuthFailed`] and is dropped.
    pub fn verified(&self) -> bool {
        self.verified
    }
    /// `Ok` if verified, else `Err(AuthFailed)`.
    pub fn result(&self) -> Result<(), EspError> {
        if self.verified {
            Ok(())
        } else {
            Err(EspError::AuthFailed)
        }
    }
}

/// Opens parsed packets: `jobs[i]` belongs to `bufs[i]`, whose data is still the
/// outer packet [`decap_parse`] saw. Each group of up to [`BURST`] packets is one
/// engine call. Afterwards [`OpenJob::verified`] tells which packets were
/// authentic (and are now decrypted in place); a job without a matching buffer,
/// or whose offsets do not fit its buffer, is left unverified.
pub fn open_burst<B: PacketBuf>(engine: &dyn AeadEngine, bufs: &mut [B], jobs: &mut [OpenJob<'_>]) {
    for (bufs, jobs) in bufs.chunks_mut(BURST).zip(jobs.chunks_mut(BURST)) {
        for job in jobs.iter_mut() {
            job.verified = false;
        }
        let mut results = ArrayVec::<(usize, bool), BURST>::new();
        {
            let jobs_ro: &[OpenJob<'_>] = jobs;
            let mut ops = ArrayVec::<OpenOp<'_>, BURST>::new();
            let mut index = ArrayVec::<usize, BURST>::new();
            for (i, (buf, job)) in bufs.iter_mut().zip(jobs_ro).enumerate() {
                let v = &job.view;
                if let Some((payload, icv)) =
                    payload_and_icv(buf.data_mut(), v.payload_offset, v.payload_len)
                {
                    ops.push(OpenOp::new(job.key, v.iv, job.aad(), payload, icv));
                    index.push(i);
                }
            }
            engine.open_burst(&mut ops);
            for (op, i) in ops.iter().zip(index) {
                results.push((i, op.ok));
            }
        }
        for (i, ok) in results {
            jobs[i].verified = ok;
        }
    }
    for job in jobs.iter_mut().skip(bufs.len()) {
        job.verified = false;
    }
}

/// After a successful open: checks the trailer and strips, in place, the outer
/// IP and UDP headers, ESP header, IV, padding, trailer, ICV and anything
/// after the outer packet, so `buf` holds exactly the inner packet. Checks that
/// the pad length fits the payload ([`EspError::BadPadLength`]), that the
/// padding is 1, 2, 3, ... ([`EspError::BadPadding`], RFC 4303 §2.4 default),
/// and that the next header is 4 (IPv4) or 41 (IPv6) and agrees with the
/// inner packet's version ([`EspError::BadNextHeader`]). Returns the next
/// header. On error `buf` is unchanged.
pub fn decap_finish<B: PacketBuf>(buf: &mut B, view: &EspView) -> Result<u8, EspError> {
    let version = buf.data().get(view.payload_offset).map(|b| b >> 4);
    finish(buf, view, |nh| {
        matches!(
            (nh, version),
            (NEXT_HEADER_IPV4, Some(4)) | (NEXT_HEADER_IPV6, Some(6))
        )
    })
}

/// [`decap_finish`] accepting any next header, for known-answer tests against
/// published vectors (which carry next header 1).
#[doc(hidden)]
pub fn decap_finish_any<B: PacketBuf>(buf: &mut B, view: &EspView) -> Result<u8, EspError> {
    finish(buf, view, |_| true)
}

fn finish<B: PacketBuf>(
    buf: &mut B,
    view: &EspView,
    accept: impl Fn(u8) -> bool,
) -> Result<u8, EspError> {
    let d = buf.data();
    let end = view.payload_offset + view.payload_len;
    if view.payload_len < TRAILER_LEN || end + ICV_LEN > d.len() {
        return Err(EspError::Truncated);
    }
    let payload = &d[view.payload_offset..end];
    let pad = usize::from(payload[payload.len() - 2]);
    let next_header = payload[payload.len() - 1];
    if pad + TRAILER_LEN > payload.len() {
        return Err(EspError::BadPadLength);
    }
    let inner_len = payload.len() - TRAILER_LEN - pad;
    let padding = &payload[inner_len..inner_len + pad];
    if padding.iter().zip(1u8..).any(|(&b, want)| b != want) {
        return Err(EspError::BadPadding);
    }
    if !accept(next_header) {
        return Err(EspError::BadNextHeader);
    }
    let cut_tail = d.len() - (view.payload_offset + inner_len);
    if !buf.trim(cut_tail) || !buf.adj(view.payload_offset) {
        return Err(EspError::Truncated);
    }
    Ok(next_header)
}
