//! Internet checksum helpers.

/// Updates a ones'-complement checksum for one 16-bit word changing from
/// `old` to `new`, without summing the whole header (RFC 1624, eqn. 3:
/// `HC' = ~(~HC + ~m + m')`).
#[inline]
pub fn update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!checksum) + u32::from(!old) + u32::from(new);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Updates a checksum for a 32-bit field (e.g. an IPv4 address) changing from `old` to `new`.
#[inline]
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    let c = update_u16(checksum, (old >> 16) as u16, (new >> 16) as u16);
    update_u16(c, old as u16, new as u16)
}

/// The Internet checksum (RFC 1071) of `data`: the ones' complement of the
/// ones'-complement sum of its 16-bit big-endian words (odd tail zero-padded).
/// Over a header that holds a valid checksum it is zero.
pub fn of(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_ipv4_checksum(h: &mut [u8]) -> u16 {
        h[10] = 0;
        h[11] = 0;
        of(h)
    }

    #[test]
    fn incremental_update_matches_full_recompute_for_every_ttl() {
        let mut h = [
            0x45, 0x00, 0x05, 0xdc, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0, 0, 10, 10, 1, 2, 10, 20,
            1, 2,
        ];
        for ttl in 2..=255u8 {
            h[8] = ttl;
            let before = full_ipv4_checksum(&mut h);
            let old_word = u16::from_be_bytes([h[8], h[9]]);
            h[8] = ttl - 1;
            let new_word = u16::from_be_bytes([h[8], h[9]]);
            let incremental = update_u16(before, old_word, new_word);
            assert_eq!(incremental, full_ipv4_checksum(&mut h), "ttl {ttl}");
        }
    }

    #[test]
    fn incremental_address_rewrite_matches_full_recompute() {
        let mut h = [
            0x45, 0x00, 0x00, 0x54, 0xab, 0xcd, 0x00, 0x00, 0x40, 0x01, 0, 0, 192, 168, 0, 1, 10,
            0, 0, 255,
        ];
        let before = full_ipv4_checksum(&mut h);
        let old = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        let new = 0xfffe_0001u32;
        h[16..20].copy_from_slice(&new.to_be_bytes());
        assert_eq!(update_u32(before, old, new), full_ipv4_checksum(&mut h));
    }

    #[test]
    fn checksum_of_a_valid_header_verifies_to_zero() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0x00,
            0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let c = of(&h);
        assert_eq!(c, 0xb861); // RFC 1071 style worked example (Wikipedia's IPv4 header)
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(of(&h), 0);
    }
}
