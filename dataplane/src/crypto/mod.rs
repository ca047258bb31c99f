//! AEAD engines for the ESP tunnel: AES-GCM (RFC 4106) behind one burst interface.
//!
//! An [`SaKey`] is a key prepared once for one SA and one engine (the AES key
//! schedule and GHASH key are computed at SA setup, never per packet), plus the
//! 4-byte salt of RFC 4106 §4. An [`AeadEngine`] seals or opens a whole burst of
//! [`SealOp`]s / [`OpenOp`]s per call, each on disjoint slices of one packet
//! buffer, in place. Engines that are only fast on batches (multi-buffer AES-GCM
//! such as ipsec_mb) slot in behind the same trait without changing callers.
//!
//! Engines available now (chosen per gateway in TOML):
//! - [`EngineKind::Ring`]: `ring`'s AES-GCM (BoringSSL assembly: AES-NI, VAES/AVX-512).
//! - [`EngineKind::AesGcm`]: RustCrypto `aes-gcm` (AES-NI and CLMUL intrinsics,
//!   detected at run time; faster when built with `-C target-cpu=native`).
//! - [`EngineKind::IpsecMb`] (cargo feature `ipsec-mb`, on by default):
//!   intel-ipsec-mb's direct GCM API through our own bindings (SSE to
//!   AVX-512/VAES code chosen by the library at run time); the default engine
//!   when built in. Its key schedules are our memory, wiped on drop.
//!
//! Nothing here allocates, locks or logs per operation, and nothing prints key material.

mod aes_gcm_engine;
#[cfg(feature = "ipsec-mb")]
#[allow(unsafe_code)] // FFI into intel-ipsec-mb; the only unsafe in `crypto`
mod ipsec_mb_engine;
mod key;
mod ring_engine;

pub use aes_gcm_engine::AesGcmEngine;
#[cfg(feature = "ipsec-mb")]
pub use ipsec_mb_engine::IpsecMbEngine;
use key::Prepared;
pub use key::SaKey;
pub use ring_engine::RingEngine;

/// Length of the GCM authentication tag (the ESP ICV) in bytes (RFC 4106 §6: 16 is the one we use).
pub const TAG_LEN: usize = 16;
/// Length of the GCM nonce: salt (4) ‖ explicit IV (8).
pub const NONCE_LEN: usize = 12;

/// The algorithm of an SA and the salt length: defined with the region's
/// entries, which carry them.
pub use scistream_region::{Algorithm, SALT_LEN};

/// Which implementation performs the AEAD operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// `ring` (configuration value `"ring"`).
    Ring,
    /// RustCrypto `aes-gcm` (configuration value `"aes-gcm"`).
    AesGcm,
    /// intel-ipsec-mb (configuration value `"ipsec-mb"`; cargo feature `ipsec-mb`).
    #[cfg(feature = "ipsec-mb")]
    IpsecMb,
}

impl EngineKind {
    /// Every engine built in, for tests and benchmarks that compare them.
    #[cfg(feature = "ipsec-mb")]
    pub const ALL: [EngineKind; 3] = [EngineKind::Ring, EngineKind::AesGcm, EngineKind::IpsecMb];
    /// Every engine built in, for tests and benchmarks that compare them.
    #[cfg(not(feature = "ipsec-mb"))]
    pub const ALL: [EngineKind; 2] = [EngineKind::Ring, EngineKind::AesGcm];

    /// The name of an engine that a build may leave out: accepted by no
    /// build without the cargo feature of the same name.
    pub const IPSEC_MB_NAME: &'static str = "ipsec-mb";

    /// The name used in configuration files: `"ring"`, `"aes-gcm"` or `"ipsec-mb"`.
    pub const fn name(self) -> &'static str {
        match self {
            EngineKind::Ring => "ring",
            EngineKind::AesGcm => "aes-gcm",
            #[cfg(feature = "ipsec-mb")]
            EngineKind::IpsecMb => Self::IPSEC_MB_NAME,
        }
    }

    /// Parses a configuration name (one of [`EngineKind::ALL`]'s names).
    pub fn from_name(name: &str) -> Option<EngineKind> {
        EngineKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this engine works on this machine: `ring` and `aes-gcm` always;
    /// `ipsec-mb` once the library has initialised (it picks its code for
    /// the CPU on first use).
    pub fn is_available(self) -> bool {
        match self {
            EngineKind::Ring | EngineKind::AesGcm => true,
            #[cfg(feature = "ipsec-mb")]
            EngineKind::IpsecMb => ipsec_mb_engine::available(),
        }
    }

    /// The engine used when the configuration names none: `ipsec-mb` when it
    /// is built in and available, else `ring`.
    pub fn preferred() -> EngineKind {
        #[cfg(feature = "ipsec-mb")]
        if EngineKind::IpsecMb.is_available() {
            return EngineKind::IpsecMb;
        }
        EngineKind::Ring
    }

    /// What implements this engine on this machine, for logs and benchmarks,
    /// e.g. `"intel-ipsec-mb 1.3.0, AVX512"`.
    pub fn describe(self) -> String {
        match self {
            EngineKind::Ring => "ring (BoringSSL assembly)".to_string(),
            EngineKind::AesGcm => "RustCrypto aes-gcm".to_string(),
            #[cfg(feature = "ipsec-mb")]
            EngineKind::IpsecMb => ipsec_mb_engine::describe()
                .unwrap_or_else(|| "intel-ipsec-mb (not available)".to_string()),
        }
    }
}

/// Why a key could not be prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The key is not the length the algorithm needs.
    #[error("AES-GCM key is {got} bytes, {algorithm:?} needs {expected}")]
    KeyLength {
        /// The algorithm asked for.
        algorithm: Algorithm,
        /// Bytes it needs.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The crypto library refused the key.
    #[error("the {0:?} engine rejected the AES-GCM key")]
    KeyRejected(EngineKind),
    /// The engine's library could not be initialised on this machine.
    #[error("the {0:?} engine is not available on this machine")]
    Unavailable(EngineKind),
}

/// One AEAD seal on disjoint slices of one packet buffer: encrypts `data` in
/// place and writes the tag to `tag`.
pub struct SealOp<'a> {
    /// The SA's prepared key and salt.
    pub key: &'a SaKey,
    /// The explicit IV (the 8 bytes after the ESP header); the nonce is salt ‖ IV (big-endian).
    pub iv: u64,
    /// Additional authenticated data (for ESP: SPI ‖ \[seq-high ‖\] seq-low).
    pub aad: &'a [u8],
    /// Plaintext in, ciphertext out.
    pub data: &'a mut [u8],
    /// Where the 16-byte tag (ICV) goes.
    pub tag: &'a mut [u8; TAG_LEN],
    /// Out: true once sealed. False if the library refused the operation
    /// (only possible for inputs longer than GCM allows, ~64 GB).
    pub ok: bool,
}

/// One AEAD open on disjoint slices of one packet buffer: verifies `tag` over
/// `aad` and `data`, and decrypts `data` in place if it verifies.
pub struct OpenOp<'a> {
    /// The SA's prepared key and salt.
    pub key: &'a SaKey,
    /// The explicit IV as received.
    pub iv: u64,
    /// Additional authenticated data.
    pub aad: &'a [u8],
    /// Ciphertext in, plaintext out (only meaningful when `ok`).
    pub data: &'a mut [u8],
    /// The received tag (ICV).
    pub tag: &'a [u8; TAG_LEN],
    /// Out: true if the tag verified and `data` now holds the plaintext.
    /// On failure the contents of `data` are unspecified and must be dropped.
    pub ok: bool,
}

impl<'a> SealOp<'a> {
    /// A seal operation, not yet done (`ok` false).
    pub fn new(
        key: &'a SaKey,
        iv: u64,
        aad: &'a [u8],
        data: &'a mut [u8],
        tag: &'a mut [u8; TAG_LEN],
    ) -> Self {
        SealOp {
            key,
            iv,
            aad,
            data,
            tag,
            ok: false,
        }
    }
}

impl<'a> OpenOp<'a> {
    /// An open operation, not yet done (`ok` false).
    pub fn new(
        key: &'a SaKey,
        iv: u64,
        aad: &'a [u8],
        data: &'a mut [u8],
        tag: &'a [u8; TAG_LEN],
    ) -> Self {
        OpenOp {
            key,
            iv,
            aad,
            data,
            tag,
            ok: false,
        }
    }
}

/// An AEAD implementation that seals and opens a whole burst per call.
///
/// Each operation's `key` must have been prepared for this engine
/// ([`SaKey::engine`]); an operation whose key was prepared for another engine
/// is carried out by that key's own engine, with identical output.
pub trait AeadEngine: Send + Sync {
    /// Which engine this is.
    fn kind(&self) -> EngineKind;
    /// Seals every operation in `ops`, setting each one's `ok`.
    fn seal_burst(&self, ops: &mut [SealOp<'_>]);
    /// Opens every operation in `ops`, setting each one's `ok`.
    fn open_burst(&self, ops: &mut [OpenOp<'_>]);
}

/// Carries out one seal with the implementation its key was prepared for
/// (the engines' bursts share this, so a key of either kind works with
/// either engine, with identical output).
#[inline]
fn dispatch_seal(op: &mut SealOp<'_>) {
    let n = nonce(&op.key.salt, op.iv);
    op.ok = match &op.key.prepared {
        Prepared::Ring(k) => ring_engine::seal(k, n, op.aad, op.data, op.tag),
        Prepared::Aes128(c) => aes_gcm_engine::seal(c, n, op.aad, op.data, op.tag),
        Prepared::Aes256(c) => aes_gcm_engine::seal(c, n, op.aad, op.data, op.tag),
        #[cfg(feature = "ipsec-mb")]
        Prepared::IpsecMb(k) => {
            let mut ctx = ipsec_mb_engine::Context::new();
            ipsec_mb_engine::seal(k, &mut ctx, &n, op.aad, op.data, op.tag)
        }
    };
}

/// Carries out one open with the implementation its key was prepared for.
#[inline]
fn dispatch_open(op: &mut OpenOp<'_>) {
    let n = nonce(&op.key.salt, op.iv);
    op.ok = match &op.key.prepared {
        Prepared::Ring(k) => ring_engine::open(k, n, op.aad, op.data, op.tag),
        Prepared::Aes128(c) => aes_gcm_engine::open(c, n, op.aad, op.data, op.tag),
        Prepared::Aes256(c) => aes_gcm_engine::open(c, n, op.aad, op.data, op.tag),
        #[cfg(feature = "ipsec-mb")]
        Prepared::IpsecMb(k) => {
            let mut ctx = ipsec_mb_engine::Context::new();
            ipsec_mb_engine::open(k, &mut ctx, &n, op.aad, op.data, op.tag)
        }
    };
}

static RING: RingEngine = RingEngine;
static AES_GCM: AesGcmEngine = AesGcmEngine;
#[cfg(feature = "ipsec-mb")]
static IPSEC_MB: IpsecMbEngine = IpsecMbEngine;

/// The engine of a kind: a static, so callers hold `&'static dyn AeadEngine`
/// and nothing is allocated.
pub fn engine(kind: EngineKind) -> &'static dyn AeadEngine {
    match kind {
        EngineKind::Ring => &RING,
        EngineKind::AesGcm => &AES_GCM,
        #[cfg(feature = "ipsec-mb")]
        EngineKind::IpsecMb => &IPSEC_MB,
    }
}

/// The GCM nonce for an IV under a salt: salt ‖ IV (big-endian), RFC 4106 §4.
#[inline]
pub fn nonce(salt: &[u8; SALT_LEN], iv: u64) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[..SALT_LEN].copy_from_slice(salt);
    n[SALT_LEN..].copy_from_slice(&iv.to_be_bytes());
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key, IV, plaintext, AAD, ciphertext, tag.
    type GcmCase = ([u8; 16], [u8; 12], Vec<u8>, Vec<u8>, Vec<u8>, [u8; 16]);

    /// NIST GCM test case 4 (McGrew & Viega, "The Galois/Counter Mode of
    /// Operation", Appendix B): AES-128, 96-bit IV, 60-byte plaintext, 20-byte AAD.
    fn nist_case_4() -> GcmCase {
        let key = hex16("feffe9928665731c6d6a8f9467308308");
        let iv: [u8; 12] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
        let pt = hex(concat!(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72",
            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
        ));
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let ct = hex(concat!(
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e",
            "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
        ));
        let tag = hex16("5bc94fbc3221a5db94fae95ae7121a47");
        (key, iv, pt, aad, ct, tag)
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn hex16(s: &str) -> [u8; 16] {
        hex(s).try_into().unwrap()
    }

    #[test]
    fn every_engine_matches_the_nist_gcm_test_case() {
        let (k, iv, pt, aad, ct, tag) = nist_case_4();
        let salt: [u8; 4] = iv[..4].try_into().unwrap();
        let explicit = u64::from_be_bytes(iv[4..].try_into().unwrap());
        for kind in EngineKind::ALL {
            let key = SaKey::new(kind, Algorithm::Aes128Gcm, &k, salt).unwrap();
            let mut data = pt.clone();
            let mut t = [0u8; 16];
            let mut ops = [SealOp::new(&key, explicit, &aad, &mut data, &mut t)];
            engine(kind).seal_burst(&mut ops);
            assert!(ops[0].ok);
            assert_eq!(data, ct, "{kind:?} ciphertext");
            assert_eq!(t, tag, "{kind:?} tag");

            let mut ops = [OpenOp::new(&key, explicit, &aad, &mut data, &tag)];
            engine(kind).open_burst(&mut ops);
            assert!(ops[0].ok, "{kind:?} open");
            assert_eq!(data, pt);
        }
    }

    #[test]
    fn a_flipped_bit_fails_and_other_ops_in_the_burst_still_open() {
        let (k, iv, pt, aad, _, _) = nist_case_4();
        let salt: [u8; 4] = iv[..4].try_into().unwrap();
        for kind in EngineKind::ALL {
            let key = SaKey::new(kind, Algorithm::Aes128Gcm, &k, salt).unwrap();
            let (mut a, mut b) = (pt.clone(), pt.clone());
            let (mut ta, mut tb) = ([0u8; 16], [0u8; 16]);
            let mut ops = [
                SealOp::new(&key, 1, &aad, &mut a, &mut ta),
                SealOp::new(&key, 2, &aad, &mut b, &mut tb),
            ];
            engine(kind).seal_burst(&mut ops);
            assert!(ops.iter().all(|o| o.ok));
            b[7] ^= 0x10;
            let mut ops = [
                OpenOp::new(&key, 1, &aad, &mut a, &ta),
                OpenOp::new(&key, 2, &aad, &mut b, &tb),
            ];
            engine(kind).open_burst(&mut ops);
            assert!(ops[0].ok && !ops[1].ok, "{kind:?}");
            assert_eq!(a, pt);
        }
    }

    #[test]
    fn a_key_prepared_for_one_engine_gives_the_same_bytes_through_the_others() {
        let k = [7u8; 32];
        let mut reference = [9u8; 100];
        let mut reference_tag = [0u8; 16];
        let ring_key =
            SaKey::new(EngineKind::Ring, Algorithm::Aes256Gcm, &k, [1, 2, 3, 4]).unwrap();
        engine(EngineKind::Ring).seal_burst(&mut [SealOp::new(
            &ring_key,
            5,
            b"ad",
            &mut reference,
            &mut reference_tag,
        )]);
        for prepared_for in EngineKind::ALL {
            let key = SaKey::new(prepared_for, Algorithm::Aes256Gcm, &k, [1, 2, 3, 4]).unwrap();
            // Deliberately crossed: the key through every engine's burst, and back.
            for through in EngineKind::ALL {
                let mut a = [9u8; 100];
                let mut t = [0u8; 16];
                engine(through).seal_burst(&mut [SealOp::new(&key, 5, b"ad", &mut a, &mut t)]);
                assert_eq!(
                    (a, t),
                    (reference, reference_tag),
                    "{prepared_for:?} via {through:?}"
                );
                let mut ops = [OpenOp::new(&key, 5, b"ad", &mut a, &t)];
                engine(through).open_burst(&mut ops);
                assert!(ops[0].ok, "{prepared_for:?} via {through:?}");
                assert_eq!(a, [9u8; 100]);
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for kind in EngineKind::ALL {
            assert_eq!(EngineKind::from_name(kind.name()), Some(kind));
            assert_eq!(engine(kind).kind(), kind);
        }
        assert_eq!(EngineKind::from_name("openssl"), None);
        assert!(EngineKind::ALL.iter().all(|k| k.is_available()));
        assert!(EngineKind::ALL.contains(&EngineKind::preferred()));
        #[cfg(feature = "ipsec-mb")]
        assert_eq!(EngineKind::preferred(), EngineKind::IpsecMb);
        #[cfg(not(feature = "ipsec-mb"))]
        assert_eq!(EngineKind::preferred(), EngineKind::Ring);
        assert_eq!(Algorithm::from_key_len(16), Some(Algorithm::Aes128Gcm));
        assert_eq!(Algorithm::from_key_len(32), Some(Algorithm::Aes256Gcm));
        assert_eq!(Algorithm::from_key_len(24), None);
        assert_eq!(Algorithm::Aes256Gcm.key_len(), 32);
    }

    #[test]
    fn nonce_is_salt_then_big_endian_iv() {
        assert_eq!(
            nonce(&[0xca, 0xfe, 0xba, 0xbe], 0x0102_0304_0506_0708),
            [0xca, 0xfe, 0xba, 0xbe, 1, 2, 3, 4, 5, 6, 7, 8]
        );
    }
}
