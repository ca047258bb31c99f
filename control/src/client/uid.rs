//! Session ids: random UUIDs (version 4, RFC 9562), drawn from the operating
//! system's cryptographically secure generator, so that a uid cannot be
//! guessed by another user of the same gateway.

use ring::rand::SecureRandom;

use super::error::ClientError;

/// A fresh session id, `xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx` in lowercase
/// hexadecimal (V is 8, 9, a or b), from 122 random bits of `rng`
/// (`ring::rand::SystemRandom` in `s2uc`).
pub fn new_uid(rng: &dyn SecureRandom) -> Result<String, ClientError> {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes).map_err(|_| ClientError::Random)?;
    Ok(format_v4(bytes))
}

/// Sets the version and variant bits of `bytes` and formats them.
fn format_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // variant 10xx (RFC 9562)
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Whether `s` has the shape [`new_uid`] produces: a lowercase version-4,
/// variant-1 UUID string.
pub fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 36 {
        return false;
    }
    let hex_at = |i: usize| matches!(b[i], b'0'..=b'9' | b'a'..=b'f');
    (0..36).all(|i| match i {
        8 | 13 | 18 | 23 => b[i] == b'-',
        14 => b[i] == b'4',
        19 => matches!(b[i], b'8' | b'9' | b'a' | b'b'),
        _ => hex_at(i),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn version_and_variant_bits_are_set() {
        assert_eq!(
            format_v4([0xff; 16]),
            "ffffffff-ffff-4fff-bfff-ffffffffffff"
        );
        assert_eq!(format_v4([0; 16]), "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn system_uids_are_well_formed_and_distinct() {
        let rng = SystemRandom::new();
        let uids: std::collections::HashSet<String> =
            (0..1000).map(|_| new_uid(&rng).unwrap()).collect();
        assert_eq!(uids.len(), 1000);
        assert!(uids.iter().all(|u| is_uuid_v4(u)), "{uids:?}");
    }

    #[test]
    fn shape_check_rejects_near_misses() {
        assert!(is_uuid_v4("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"));
        assert!(!is_uuid_v4("0f1e2d3c-4b5a-3968-8776-a5b4c3d2e1f0")); // version 3
        assert!(!is_uuid_v4("0f1e2d3c-4b5a-4968-c776-a5b4c3d2e1f0")); // variant
        assert!(!is_uuid_v4("0F1E2D3C-4B5A-4968-8776-A5B4C3D2E1F0")); // uppercase
        assert!(!is_uuid_v4("0f1e2d3c4b5a-4968-8776-a5b4c3d2e1f0-")); // dashes
        assert!(!is_uuid_v4("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f"));
    }
}
