//! The small enums and rules the region's entries encode: which way an SA
//! protects traffic, which side a listener serves, the AEAD algorithm, and
//! which SPIs are usable. Both processes use these types; the one-byte
//! codes in [`crate::layout`] are their wire form.

/// Which way an SA protects traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// We receive and open with it.
    In,
    /// We seal and send with it.
    Out,
}

/// Which side of a SciStream stream a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerRole {
    /// Consumer side (SciStream CONS): a LAN listener leading to the peer's listener.
    Outbound,
    /// Producer side (SciStream PROD): a listener reached through the tunnel, leading to a producer app.
    Inbound,
}

/// The AEAD of an SA: AES-GCM with a 16-byte ICV and an 8-byte explicit IV
/// (RFC 4106).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// AES-128 in Galois/Counter Mode, 16-byte ICV (RFC 4106, IKEv2 transform ENCR_AES_GCM_16, 128-bit key).
    Aes128Gcm,
    /// AES-256 in Galois/Counter Mode, 16-byte ICV (RFC 4106, IKEv2 transform ENCR_AES_GCM_16, 256-bit key).
    Aes256Gcm,
}

impl Algorithm {
    /// Every algorithm.
    pub const ALL: [Algorithm; 2] = [Algorithm::Aes128Gcm, Algorithm::Aes256Gcm];

    /// Length of the AES key in bytes (16 or 32), not counting the salt.
    pub const fn key_len(self) -> usize {
        match self {
            Algorithm::Aes128Gcm => 16,
            Algorithm::Aes256Gcm => 32,
        }
    }

    /// The algorithm whose AES key is `len` bytes long, if any.
    pub const fn from_key_len(len: usize) -> Option<Algorithm> {
        match len {
            16 => Some(Algorithm::Aes128Gcm),
            32 => Some(Algorithm::Aes256Gcm),
            _ => None,
        }
    }

    /// Name as written in configuration and logs ("aes128-gcm16",
    /// "aes256-gcm16", as strongSwan spells them).
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Aes128Gcm => "aes128-gcm16",
            Algorithm::Aes256Gcm => "aes256-gcm16",
        }
    }

    /// The algorithm named `name` ([`Algorithm::name`]).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Bytes of the GCM salt that precedes the explicit IV in the nonce (RFC 4106).
pub const SALT_LEN: usize = 4;

/// The lowest usable SPI: 1..=255 are reserved by IANA (RFC 4303 §2.1) and
/// 0 is never an SPI.
pub const MIN_SPI: u32 = 256;

/// Whether `spi` may name an SA (not 0 and not IANA-reserved).
pub const fn spi_is_usable(spi: u32) -> bool {
    spi >= MIN_SPI
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_and_key_lengths_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
            assert_eq!(Algorithm::from_key_len(a.key_len()), Some(a));
        }
        assert_eq!(Algorithm::from_name("aes128-gcm"), None);
        assert_eq!(Algorithm::from_key_len(24), None);
    }

    #[test]
    fn reserved_spis_are_not_usable() {
        assert!(!spi_is_usable(0));
        assert!(!spi_is_usable(255));
        assert!(spi_is_usable(256));
        assert!(spi_is_usable(u32::MAX));
    }
}
