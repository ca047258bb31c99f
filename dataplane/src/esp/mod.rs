//! ESP tunnel mode (RFC 4303) in UDP (RFC 3948) with AES-GCM (RFC 4106):
//! the pure, I/O-free core of the encrypted tunnel.
//!
//! - [`encap`]: lays out the outer IPv4 or IPv6 header + UDP + ESP header +
//!   IV before an inner packet and padding + trailer + ICV room after it, in
//!   place, then seals a burst with one engine call (and, over IPv6, fills
//!   the UDP checksum over the sealed datagram).
//! - [`decap`]: parses an outer packet down to the ESP payload, opens a burst
//!   with one engine call, checks the trailer and strips everything but the
//!   inner packet, in place.
//! - [`sa`]: outbound SAs (sequence numbers reserved a burst at a time by
//!   one atomic operation shared by all workers) and inbound SAs.
//! - [`policer`]: the per-SA token-bucket rate policer (one atomic update
//!   per burst, shared by all workers).
//! - [`replay`]: the RFC 6479 anti-replay window and RFC 4303 ESN inference.
//!
//! The byte layout is drawn in `docs/wire-format.md`. Nothing here allocates
//! or copies the payload: encryption and decryption happen where the packet
//! already lies in its buffer.

pub mod decap;
pub mod encap;
pub mod policer;
pub mod replay;
pub mod sa;

pub use decap::udp6_checksum_ok;
pub use decap::{decap_finish, decap_parse, decap_parse_at, open_burst, EspView, OpenJob};
pub use encap::{encap_prepare, seal_burst, Outer, SealJob};
pub use policer::{Clock, ManualClock, MonotonicClock, Policer};
pub use replay::ReplayWindow;
pub use sa::{InboundSa, OutboundSa};

/// The IANA port for UDP-encapsulated ESP (RFC 3948 §2.1); configurable.
pub const ESP_UDP_PORT: u16 = 4500;
/// Length of the ESP integrity check value: the 16-byte GCM tag (RFC 4106 §6).
pub const ICV_LEN: usize = crate::wire::esp::ICV_LEN;
/// Length of the explicit IV carried after the ESP header (RFC 4106 §3.1).
pub const IV_LEN: usize = crate::wire::esp::IV_LEN;
/// Length of the ESP header: SPI and sequence number (low 32 bits).
pub const ESP_HLEN: usize = crate::wire::esp::HEADER_LEN;
/// Length of a UDP header.
pub const UDP_HLEN: usize = crate::wire::esp::UDP_HLEN;

const _: () = assert!(ICV_LEN == crate::crypto::TAG_LEN);
/// Length of the outer IPv4 header we write (no options).
pub const OUTER_IPV4_HLEN: usize = 20;
/// Length of the outer IPv6 header we write (no extension headers).
pub const OUTER_IPV6_HLEN: usize = 40;
/// Bytes placed before the inner packet: outer IPv4 + UDP + ESP header + IV.
pub const HEAD_LEN: usize = OUTER_IPV4_HLEN + UDP_HLEN + ESP_HLEN + IV_LEN;
/// Bytes placed before the inner packet with an IPv6 outer header: 20 more.
pub const HEAD_LEN6: usize = OUTER_IPV6_HLEN + UDP_HLEN + ESP_HLEN + IV_LEN;
/// ESP next-header value for an inner IPv4 packet (IP-in-IP, protocol 4).
pub const NEXT_HEADER_IPV4: u8 = 4;
/// ESP next-header value for an inner IPv6 packet (protocol 41).
pub const NEXT_HEADER_IPV6: u8 = 41;
/// Length of the ESP trailer after the padding: pad length and next header.
pub const TRAILER_LEN: usize = 2;

/// Why an ESP packet was not built or not accepted: one drop reason each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum EspError {
    /// Shorter than the outer IPv4 header, the UDP header, the ESP header or the IV.
    #[error("ESP packet truncated before the end of its headers")]
    Truncated,
    /// Too short to hold the minimal encrypted trailer and the 16-byte ICV.
    #[error("ESP packet too short for its ICV")]
    TruncatedIcv,
    /// A length is inconsistent: UDP length vs IP length, encrypted payload not a
    /// multiple of 4, an outer packet over 65535 bytes, or an empty inner packet.
    #[error("ESP/UDP length inconsistent")]
    BadLength,
    /// The decrypted pad length points before the start of the payload.
    #[error("ESP pad length larger than the payload")]
    BadPadLength,
    /// The decrypted padding bytes are not 1, 2, 3, ... (RFC 4303 §2.4 default).
    #[error("ESP padding bytes not 1, 2, 3, ...")]
    BadPadding,
    /// The next header is not one we carry (4, IPv4; 41, IPv6), or it does
    /// not agree with the inner packet's version.
    #[error("ESP next header not IPv4 or IPv6, or not the inner packet's version")]
    BadNextHeader,
    /// Over IPv6, the UDP checksum is zero or wrong (RFC 8200 §8.1: an IPv6
    /// receiver discards UDP with a zero checksum).
    #[error("ESP-in-UDP over IPv6 with a zero or wrong UDP checksum")]
    BadUdpChecksum,
    /// Not an ESP packet: UDP to another port, a NAT keepalive (one 0xFF byte),
    /// or the non-ESP marker (SPI 0) of IKE on port 4500.
    #[error("UDP packet is not ESP (keepalive, IKE non-ESP marker or other port)")]
    NotEsp,
    /// The ICV did not verify: forged, corrupted, or the wrong key or sequence number.
    #[error("ESP ICV check failed")]
    AuthFailed,
    /// The sequence number was already received.
    #[error("ESP sequence number replayed")]
    Replay,
    /// The sequence number is left of the anti-replay window.
    #[error("ESP sequence number left of the anti-replay window")]
    TooOld,
    /// No inbound SA has this SPI (counted by the caller that does the lookup).
    #[error("no inbound SA for this SPI")]
    UnknownSpi,
    /// The outbound SA's sequence numbers are used up: it must be rekeyed.
    #[error("outbound SA sequence numbers exhausted, rekey needed")]
    SeqExhausted,
    /// The SA outlived its hard lifetime in seconds: it must be rekeyed.
    #[error("SA past its hard lifetime, rekey needed")]
    SaExpired,
    /// The buffer lacks the headroom or tailroom the ESP encapsulation needs.
    #[error("no headroom or tailroom for ESP encapsulation")]
    NoRoom,
}

/// Padding bytes for an inner packet (or any ESP payload) of `len` bytes, so that
/// `len + pad + 2` is a multiple of 4 (RFC 4303 §2.4; GCM needs no block alignment).
#[inline]
pub const fn pad_len(len: usize) -> usize {
    (4 - (len + TRAILER_LEN) % 4) % 4
}

/// Bytes the outer headers and trailer add to an inner packet of `inner_len`
/// bytes with an IPv4 outer header:
/// 20 (IPv4) + 8 (UDP) + 8 (ESP) + 8 (IV) + pad + 2 (trailer) + 16 (ICV), i.e. 62 to 65.
#[inline]
pub const fn overhead(inner_len: usize) -> usize {
    HEAD_LEN + pad_len(inner_len) + TRAILER_LEN + ICV_LEN
}

/// [`overhead`] with an IPv6 outer header: 40 instead of 20, i.e. 82 to 85.
#[inline]
pub const fn overhead6(inner_len: usize) -> usize {
    HEAD_LEN6 + pad_len(inner_len) + TRAILER_LEN + ICV_LEN
}

/// The largest inner packet that fits in one outer IPv4 packet of at most
/// `wan_mtu` bytes: the inner MTU the gateway enforces (1438 for 1500, 8938 for 9000).
/// Zero if the WAN MTU cannot carry any ESP packet.
pub const fn inner_mtu(wan_mtu: u16) -> u16 {
    inner_mtu_after(wan_mtu, HEAD_LEN)
}

/// [`inner_mtu`] with an IPv6 outer header: 20 bytes less (1418 for 1500,
/// 8918 for 9000).
pub const fn inner_mtu6(wan_mtu: u16) -> u16 {
    inner_mtu_after(wan_mtu, HEAD_LEN6)
}

/// The inner MTU when `head_len` bytes of headers precede the inner packet.
const fn inner_mtu_after(wan_mtu: u16, head_len: usize) -> u16 {
    let wan = wan_mtu as usize;
    let fixed = head_len + ICV_LEN;
    if wan < fixed + 4 {
        return 0;
    }
    // The encrypted part (inner + pad + trailer) is a multiple of 4.
    let encrypted = (wan - fixed) & !3;
    (encrypted - TRAILER_LEN) as u16
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod arithmetic_tests {
    use super::*;

    #[test]
    fn padding_aligns_every_residue() {
        for len in 0..64usize {
            let p = pad_len(len);
            assert!(p <= 3);
            assert_eq!((len + p + 2) % 4, 0, "len {len}");
        }
        assert_eq!(
            [pad_len(0), pad_len(1), pad_len(2), pad_len(3)],
            [2, 1, 0, 3]
        );
    }

    #[test]
    fn overhead_is_62_to_65() {
        assert_eq!(overhead(1438), 62);
        assert_eq!(overhead(1437), 63);
        assert_eq!(overhead(1436), 64);
        assert_eq!(overhead(1439), 65);
        for len in 0..100 {
            assert!((62..=65).contains(&overhead(len)));
            assert_eq!((len + overhead(len) - HEAD_LEN - ICV_LEN) % 4, 0);
        }
    }

    #[test]
    fn inner_mtu_is_the_largest_inner_packet_that_fits() {
        assert_eq!(inner_mtu(1500), 1438);
        assert_eq!(inner_mtu(9000), 8938);
        assert_eq!(inner_mtu(0), 0);
        assert_eq!(inner_mtu(63), 0);
        assert_eq!(inner_mtu(64), 2);
        for wan in 64..3000u16 {
            let m = usize::from(inner_mtu(wan));
            assert!(m + overhead(m) <= usize::from(wan), "wan {wan}");
            assert!(m + 1 + overhead(m + 1) > usize::from(wan), "wan {wan}");
        }
    }

    #[test]
    fn an_ipv6_outer_header_costs_20_bytes_more() {
        assert_eq!(inner_mtu6(1500), 1418);
        assert_eq!(inner_mtu6(9000), 8918);
        assert_eq!(inner_mtu6(83), 0);
        assert_eq!(inner_mtu6(84), 2);
        for len in 0..100 {
            assert_eq!(overhead6(len), overhead(len) + 20);
        }
        for wan in 84..3000u16 {
            let m = usize::from(inner_mtu6(wan));
            assert!(m + overhead6(m) <= usize::from(wan), "wan {wan}");
            assert!(m + 1 + overhead6(m + 1) > usize::from(wan), "wan {wan}");
        }
    }
}
