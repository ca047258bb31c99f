//! A key prepared for one SA and one engine.

use std::fmt;

use aes_gcm::KeyInit;
use zeroize::Zeroize;

use super::{Algorithm, CryptoError, EngineKind, SALT_LEN};

/// The engine-specific prepared key.
///
/// Stored inline, not boxed: an `SaKey` is built once per SA and never moved
/// on the data path, and inline key schedules save a pointer chase per packet.
#[allow(clippy::large_enum_variant)]
pub(super) enum Prepared {
    /// `ring`'s key (AES key schedule and GHASH table).
    Ring(ring::aead::LessSafeKey),
    /// RustCrypto AES-128-GCM (round keys and GHASH key; wiped on drop).
    Aes128(aes_gcm::Aes128Gcm),
    /// RustCrypto AES-256-GCM (round keys and GHASH key; wiped on drop).
    Aes256(aes_gcm::Aes256Gcm),
    /// intel-ipsec-mb's expanded key (round keys and GHASH key powers, in
    /// their own allocation; wiped on drop).
    #[cfg(feature = "ipsec-mb")]
    IpsecMb(super::ipsec_mb_engine::IpsecMbKey),
}

/// An AES-GCM key prepared once for one SA and one engine, plus the SA's
/// 4-byte salt (the implicit part of the nonce, RFC 4106 §4 and §8.1).
///
/// The raw key bytes are not kept: only the engine's expanded form. On drop the
/// salt is zeroized and so is the expanded key of the `aes-gcm` engine (its
/// `zeroize` features) and of the `ipsec-mb` engine (our own memory). `ring`
/// does not wipe its key schedule on drop; that is a limitation of `ring`
/// itself. `Debug` prints the engine and algorithm only.
pub struct SaKey {
    pub(super) prepared: Prepared,
    pub(super) salt: [u8; SALT_LEN],
    algorithm: Algorithm,
}

impl SaKey {
    /// Prepares `key` (16 bytes for AES-128, 32 for AES-256) with `salt` for `engine`.
    /// The caller should zeroize its own copy of the key bytes afterwards.
    pub fn new(
        engine: EngineKind,
        algorithm: Algorithm,
        key: &[u8],
        salt: [u8; SALT_LEN],
    ) -> Result<SaKey, CryptoError> {
        if key.len() != algorithm.key_len() {
            return Err(CryptoError::KeyLength {
                algorithm,
                expected: algorithm.key_len(),
                got: key.len(),
            });
        }
        let rejected = |_| CryptoError::KeyRejected(engine);
        let prepared = match (engine, algorithm) {
            (EngineKind::Ring, _) => {
                let alg = match algorithm {
                    Algorithm::Aes128Gcm => &ring::aead::AES_128_GCM,
                    Algorithm::Aes256Gcm => &ring::aead::AES_256_GCM,
                };
                let unbound = ring::aead::UnboundKey::new(alg, key)
                    .map_err(|_| CryptoError::KeyRejected(engine))?;
                Prepared::Ring(ring::aead::LessSafeKey::new(unbound))
            }
            (EngineKind::AesGcm, Algorithm::Aes128Gcm) => {
                Prepared::Aes128(aes_gcm::Aes128Gcm::new_from_slice(key).map_err(rejected)?)
            }
            (EngineKind::AesGcm, Algorithm::Aes256Gcm) => {
                Prepared::Aes256(aes_gcm::Aes256Gcm::new_from_slice(key).map_err(rejected)?)
            }
            #[cfg(feature = "ipsec-mb")]
            (EngineKind::IpsecMb, _) => {
                Prepared::IpsecMb(super::ipsec_mb_engine::IpsecMbKey::new(algorithm, key)?)
            }
        };
        Ok(SaKey {
            prepared,
            salt,
            algorithm,
        })
    }

    /// The engine this key was prepared for.
    pub fn engine(&self) -> EngineKind {
        match self.prepared {
            Prepared::Ring(_) => EngineKind::Ring,
            Prepared::Aes128(_) | Prepared::Aes256(_) => EngineKind::AesGcm,
            #[cfg(feature = "ipsec-mb")]
            Prepared::IpsecMb(_) => EngineKind::IpsecMb,
        }
    }

    /// The algorithm (key size).
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

impl Drop for SaKey {
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

impl fmt::Debug for SaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaKey")
            .field("engine", &self.engine())
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_key_lengths() {
        for engine in EngineKind::ALL {
            assert_eq!(
                SaKey::new(engine, Algorithm::Aes128Gcm, &[0u8; 32], [0; 4]).unwrap_err(),
                CryptoError::KeyLength {
                    algorithm: Algorithm::Aes128Gcm,
                    expected: 16,
                    got: 32
                }
            );
            assert!(SaKey::new(engine, Algorithm::Aes256Gcm, &[0u8; 24], [0; 4]).is_err());
            assert!(SaKey::new(engine, Algorithm::Aes256Gcm, &[], [0; 4]).is_err());
        }
    }

    #[test]
    fn debug_never_shows_key_or_salt() {
        let key = [0xabu8; 16];
        for engine in EngineKind::ALL {
            let k = SaKey::new(engine, Algorithm::Aes128Gcm, &key, [0xcd; 4]).unwrap();
            let s = format!("{k:?}");
            assert!(s.contains("redacted") && s.contains("Aes128Gcm"), "{s}");
            assert!(
                !s.contains("ab") && !s.contains("171") && !s.contains("cd"),
                "{s}"
            );
            assert_eq!(k.engine(), engine);
            assert_eq!(k.algorithm(), Algorithm::Aes128Gcm);
        }
    }
}
