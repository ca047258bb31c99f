//! ESP key derivation for one session epoch.
//!
//! Every session and every rekey runs a fresh X25519 exchange ([`Exchange`]):
//! each side sends its ephemeral public key over the peer channel and combines
//! the other side's with its own private key. HKDF-SHA256 then extracts with
//! the TLS exporter value for (uid, epoch) as salt (binding the keys to the
//! authenticated channel, the session and the epoch) and the X25519 shared
//! secret as input keying material, and expands, per direction, the AES key,
//! the 4-byte GCM salt and the SPI. Each `info` string names the protocol, the
//! algorithm, the direction (initiator→responder or responder→initiator) and
//! the purpose, so no two outputs share an HKDF output stream.
//!
//! SPIs fall in 256..=u32::MAX (RFC 4303 reserves 0..=255) and differ between
//! the two directions. Key bytes are wiped on drop and never appear in `Debug`.

use std::fmt;

use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::hkdf::{self, Prk, Salt, HKDF_SHA256};
use ring::rand::SecureRandom;
use scistream_region::{Algorithm, SALT_LEN};
use zeroize::{Zeroize, Zeroizing};

/// Length of an X25519 public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;

/// First part of every HKDF `info` string.
const INFO_LABEL: &[u8] = b"scistream-esp-v1";
/// Most SAs per direction a session may have (lane 0 and its lanes): the
/// data plane's limit (`scistream_dataplane::tunnel::MAX_LANES`).
pub const MAX_LANES: usize = 16;
/// Lowest SPI that RFC 4303 §2.1 does not reserve.
const MIN_SPI: u32 = 256;
/// How many SPI derivations to try for the responder→initiator direction
/// before giving up on finding one that differs from the other direction's.
const SPI_ATTEMPTS: u32 = 16;

/// Errors of the key exchange and derivation.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The system random number generator failed.
    #[error("cannot generate an X25519 key pair: random number generator failed")]
    Random,
    /// The peer's public key has the wrong length.
    #[error("peer X25519 public key is {got} bytes, expected {PUBLIC_KEY_LEN}")]
    BadPeerKeyLength {
        /// Length received.
        got: usize,
    },
    /// The X25519 agreement failed: the peer's public key is a low-order point
    /// (the shared secret would be all zeros) or otherwise unusable.
    #[error("peer X25519 public key rejected (low-order point or invalid)")]
    PeerKeyRejected,
    /// HKDF refused an output length.
    #[error("HKDF-SHA256 expansion of {what} failed")]
    Hkdf {
        /// Which output ("key", "salt", "spi").
        what: &'static str,
    },
    /// No SPI distinct from the other direction's was found (practically impossible).
    #[error("no distinct SPI for the two directions after {SPI_ATTEMPTS} derivations")]
    SpiCollision,
}

/// Which end of the exchange this gateway is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Sends `KeyOffer` (the gateway that learned the remote listeners).
    Initiator,
    /// Answers with `KeyAccept`.
    Responder,
}

/// A direction of traffic, named from the exchange's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    InitiatorToResponder,
    ResponderToInitiator,
}

impl Direction {
    fn label(self) -> &'static [u8] {
        match self {
            Direction::InitiatorToResponder => b"i2r",
            Direction::ResponderToInitiator => b"r2i",
        }
    }
}

/// The name under which an algorithm appears in `KeyOffer` and configuration
/// ([`Algorithm::name`]), parsed back.
pub fn algorithm_from_name(name: &str) -> Option<Algorithm> {
    [Algorithm::Aes128Gcm, Algorithm::Aes256Gcm]
        .into_iter()
        .find(|alg| alg.name() == name)
}

/// One side's ephemeral X25519 key pair for one exchange.
pub struct Exchange {
    private: EphemeralPrivateKey,
    public: [u8; PUBLIC_KEY_LEN],
}

impl Exchange {
    /// Generates a fresh ephemeral key pair.
    pub fn new(rng: &dyn SecureRandom) -> Result<Exchange, KeyError> {
        let private = EphemeralPrivateKey::generate(&X25519, rng).map_err(|_| KeyError::Random)?;
        let public_key = private.compute_public_key().map_err(|_| KeyError::Random)?;
        let mut public = [0u8; PUBLIC_KEY_LEN];
        public.copy_from_slice(public_key.as_ref());
        Ok(Exchange { private, public })
    }

    /// This side's public key, to send to the peer.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.public
    }

    /// Combines the peer's public key with this side's private key (consumed)
    /// and derives the keys of both directions for `alg`, salted with the TLS
    /// `exporter` value for the session's (uid, epoch). The result is from
    /// `side`'s point of view.
    ///
    /// `lanes` (1..=[`MAX_LANES`]) SAs per direction: lane 0 is the
    /// session's SA as without lanes; lanes 1.. each have their own key,
    /// salt and SPI (the data plane spreads the session over its workers
    /// with them). All SPIs of the epoch differ.
    pub fn finish(
        self,
        peer_public: &[u8],
        exporter: &[u8; 32],
        alg: Algorithm,
        side: Side,
        lanes: usize,
    ) -> Result<SessionKeys, KeyError> {
        if peer_public.len() != PUBLIC_KEY_LEN {
            return Err(KeyError::BadPeerKeyLength {
                got: peer_public.len(),
            });
        }
        let peer = UnparsedPublicKey::new(&X25519, peer_public);
        // The shared secret only lives inside ring's buffer during extraction.
        agreement::agree_ephemeral(self.private, &peer, |shared| {
            derive(shared, exporter, alg, side, lanes.clamp(1, MAX_LANES))
        })
        .map_err(|_| KeyError::PeerKeyRejected)?
    }
}

/// HKDF-SHA256 of the X25519 shared secret, salted with the exporter value:
/// both directions' keys, from `side`'s point of view.
fn derive(
    shared: &[u8],
    exporter: &[u8; 32],
    alg: Algorithm,
    side: Side,
    lanes: usize,
) -> Result<SessionKeys, KeyError> {
    let prk = Salt::new(HKDF_SHA256, exporter).extract(shared);
    let i2r = derive_direction(&prk, alg, Direction::InitiatorToResponder, 0)?;
    let mut r2i = None;
    for attempt in 0..SPI_ATTEMPTS {
        let keys = derive_direction(&prk, alg, Direction::ResponderToInitiator, attempt)?;
        if keys.spi != i2r.spi {
            r2i = Some(keys);
            break;
        }
    }
    let r2i = r2i.ok_or(KeyError::SpiCollision)?;
    let mut taken = vec![i2r.spi, r2i.spi];
    let mut lanes_of = |direction| -> Result<Vec<DirectionKeys>, KeyError> {
        (1..lanes as u32)
            .map(|lane| {
                for attempt in 0..SPI_ATTEMPTS {
                    let keys = derive_lane(&prk, alg, direction, lane, attempt)?;
                    if !taken.contains(&keys.spi) {
                        taken.push(keys.spi);
                        return Ok(keys);
                    }
                }
                Err(KeyError::SpiCollision)
            })
            .collect()
    };
    let i2r_lanes = lanes_of(Direction::InitiatorToResponder)?;
    let r2i_lanes = lanes_of(Direction::ResponderToInitiator)?;
    Ok(match side {
        Side::Initiator => SessionKeys {
            outbound: i2r,
            inbound: r2i,
            outbound_lanes: i2r_lanes,
            inbound_lanes: r2i_lanes,
        },
        Side::Responder => SessionKeys {
            outbound: r2i,
            inbound: i2r,
            outbound_lanes: r2i_lanes,
            inbound_lanes: i2r_lanes,
        },
    })
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("public", &hex::encode(self.public))
            .field("private", &"<redacted>")
            .finish()
    }
}

/// Output length for `Prk::expand`.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand into `out` with info = label ‖ 0 ‖ alg ‖ 0 ‖ direction ‖ 0 ‖ purpose ‖ counter (BE).
fn expand(
    prk: &Prk,
    alg: Algorithm,
    direction: Direction,
    purpose: &'static str,
    counter: u32,
    out: &mut [u8],
) -> Result<(), KeyError> {
    let counter = counter.to_be_bytes();
    let info: [&[u8]; 8] = [
        INFO_LABEL,
        &[0],
        alg.name().as_bytes(),
        &[0],
        direction.label(),
        &[0],
        purpose.as_bytes(),
        &counter,
    ];
    prk.expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| KeyError::Hkdf { what: purpose })
}

/// Maps 32 pseudorandom bits onto 256..=u32::MAX.
fn spi_from(raw: u32) -> u32 {
    let span = u64::from(u32::MAX) - u64::from(MIN_SPI) + 1;
    // The remainder is < span, so the sum is at most u32::MAX.
    MIN_SPI + (u64::from(raw) % span) as u32
}

fn derive_direction(
    prk: &Prk,
    alg: Algorithm,
    direction: Direction,
    spi_counter: u32,
) -> Result<DirectionKeys, KeyError> {
    let key_len = alg.key_len();
    let mut key = Zeroizing::new([0u8; 32]);
    expand(prk, alg, direction, "key", 0, &mut key[..key_len])?;
    let mut salt = [0u8; SALT_LEN];
    expand(prk, alg, direction, "salt", 0, &mut salt)?;
    let mut spi = [0u8; 4];
    expand(prk, alg, direction, "spi", spi_counter, &mut spi)?;
    Ok(DirectionKeys {
        spi: spi_from(u32::from_be_bytes(spi)),
        key,
        key_len,
        salt,
    })
}

/// Lane `lane` (>= 1) of a direction: as [`derive_direction`], with its own
/// purposes ("lane-key", "lane-salt", "lane-spi") and the lane number in
/// the counter's upper half, so no lane shares an output stream with lane 0
/// or another lane.
fn derive_lane(
    prk: &Prk,
    alg: Algorithm,
    direction: Direction,
    lane: u32,
    spi_attempt: u32,
) -> Result<DirectionKeys, KeyError> {
    let key_len = alg.key_len();
    let counter = lane << 16;
    let mut key = Zeroizing::new([0u8; 32]);
    expand(
        prk,
        alg,
        direction,
        "lane-key",
        counter,
        &mut key[..key_len],
    )?;
    let mut salt = [0u8; SALT_LEN];
    expand(prk, alg, direction, "lane-salt", counter, &mut salt)?;
    let mut spi = [0u8; 4];
    expand(
        prk,
        alg,
        direction,
        "lane-spi",
        counter | spi_attempt,
        &mut spi,
    )?;
    Ok(DirectionKeys {
        spi: spi_from(u32::from_be_bytes(spi)),
        key,
        key_len,
        salt,
    })
}

/// The SA parameters of one direction.
pub struct DirectionKeys {
    /// The SPI (256..=u32::MAX).
    pub spi: u32,
    /// The AES key in its first `key_len` bytes; the rest is zero.
    pub key: Zeroizing<[u8; 32]>,
    /// AES key length: 16 (AES-128-GCM) or 32 (AES-256-GCM).
    pub key_len: usize,
    /// The RFC 4106 salt (implicit nonce part).
    pub salt: [u8; SALT_LEN],
}

impl DirectionKeys {
    /// The AES key (`key_len` bytes).
    pub fn key_bytes(&self) -> &[u8] {
        &self.key[..self.key_len]
    }
}

impl Drop for DirectionKeys {
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

impl fmt::Debug for DirectionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectionKeys")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("key_len", &self.key_len)
            .field("key", &format_args!("<redacted>"))
            .field("salt", &format_args!("<redacted>"))
            .finish()
    }
}

/// The keys of both directions of one session epoch, from one side's point of view.
#[derive(Debug)]
pub struct SessionKeys {
    /// Keys this side seals with (its outbound SA).
    pub outbound: DirectionKeys,
    /// Keys this side opens with (its inbound SA).
    pub inbound: DirectionKeys,
    /// Lanes 1.. of the outbound SA (empty without lanes).
    pub outbound_lanes: Vec<DirectionKeys>,
    /// Lanes 1.. of the inbound SA.
    pub inbound_lanes: Vec<DirectionKeys>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spi_mapping_covers_the_unreserved_range() {
        assert_eq!(spi_from(0), 256);
        assert_eq!(spi_from(255), 511);
        assert_eq!(spi_from(u32::MAX - 256), u32::MAX);
        assert_eq!(spi_from(u32::MAX - 255), 256);
        assert_eq!(spi_from(u32::MAX), 511);
    }

    /// Known answers computed independently (Python hmac/hashlib HKDF) for
    /// shared secret 00 01 .. 1f and exporter a5 * 32: pins the derivation
    /// (info layout, SPI mapping) so both gateways of any build agree.
    #[test]
    fn known_answers() {
        let shared: Vec<u8> = (0u8..32).collect();
        let exporter = [0xa5u8; 32];
        let cases = [
            (
                Algorithm::Aes128Gcm,
                ("e1f83617d58ab279c50de49066126826", "96ffeadd", 0x0ba2_cee4),
                ("5cd6f859cecf2f718446357dd6305c8c", "d38e9d42", 0xdb83_cb6c),
            ),
            (
                Algorithm::Aes256Gcm,
                (
                    "38658b8f2a1b7aebc7466db4a5483c81ce418b1610ac0c7ed9fefb964920a25e",
                    "d413c190",
                    0x40b8_e6d1,
                ),
                (
                    "c819fc0c147f626c98b420ab7e97b6bafe9476b879d566c80e40f407a012fabe",
                    "1babc0b0",
                    0xd113_44cd,
                ),
            ),
        ];
        for (alg, i2r, r2i) in cases {
            let keys = derive(&shared, &exporter, alg, Side::Initiator, 1).unwrap();
            for (d, (key, salt, spi)) in [(&keys.outbound, i2r), (&keys.inbound, r2i)] {
                assert!(hex::encode(d.key_bytes()) == key, "{alg:?} key");
                assert!(hex::encode(d.salt) == salt, "{alg:?} salt");
                assert_eq!(d.spi, spi, "{alg:?} spi");
            }
            let responder = derive(&shared, &exporter, alg, Side::Responder, 1).unwrap();
            assert_eq!(responder.outbound.spi, keys.inbound.spi);
            assert_eq!(responder.inbound.spi, keys.outbound.spi);
        }
    }

    #[test]
    fn exporter_separates_keys_for_one_shared_secret() {
        let shared = [0x42u8; 32];
        let a = derive(&shared, &[1; 32], Algorithm::Aes256Gcm, Side::Initiator, 1).unwrap();
        let b = derive(&shared, &[2; 32], Algorithm::Aes256Gcm, Side::Initiator, 1).unwrap();
        for (x, y) in [(&a.outbound, &b.outbound), (&a.inbound, &b.inbound)] {
            assert!(x.key_bytes() != y.key_bytes());
            assert!(x.salt != y.salt);
            assert_ne!(x.spi, y.spi);
        }
    }

    #[test]
    fn lanes_have_their_own_keys_and_distinct_spis_and_lane_0_is_unchanged() {
        let shared = [0x42u8; 32];
        let one = derive(&shared, &[1; 32], Algorithm::Aes128Gcm, Side::Initiator, 1).unwrap();
        let four = derive(&shared, &[1; 32], Algorithm::Aes128Gcm, Side::Initiator, 4).unwrap();
        assert!(one.outbound_lanes.is_empty() && one.inbound_lanes.is_empty());
        assert_eq!(
            (four.outbound_lanes.len(), four.inbound_lanes.len()),
            (3, 3)
        );
        // Lane 0 is the SA a peer without lanes derives.
        assert_eq!(four.outbound.spi, one.outbound.spi);
        assert_eq!(four.outbound.key_bytes(), one.outbound.key_bytes());
        let all: Vec<&DirectionKeys> = [&four.outbound, &four.inbound]
            .into_iter()
            .chain(&four.outbound_lanes)
            .chain(&four.inbound_lanes)
            .collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.spi, b.spi, "SPIs differ");
                assert!(a.key_bytes() != b.key_bytes(), "keys differ");
            }
        }
        // The responder sees the same lanes, directions swapped.
        let r = derive(&shared, &[1; 32], Algorithm::Aes128Gcm, Side::Responder, 4).unwrap();
        for (x, y) in r.inbound_lanes.iter().zip(&four.outbound_lanes) {
            assert_eq!(
                (x.spi, x.key_bytes(), x.salt),
                (y.spi, y.key_bytes(), y.salt)
            );
        }
        for (x, y) in r.outbound_lanes.iter().zip(&four.inbound_lanes) {
            assert_eq!(
                (x.spi, x.key_bytes(), x.salt),
                (y.spi, y.key_bytes(), y.salt)
            );
        }
    }

    #[test]
    fn algorithm_names_round_trip() {
        for alg in [Algorithm::Aes128Gcm, Algorithm::Aes256Gcm] {
            assert_eq!(algorithm_from_name(alg.name()), Some(alg));
        }
        assert_eq!(algorithm_from_name("aes128-gcm"), None);
    }
}
