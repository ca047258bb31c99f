//! The RustCrypto `aes-gcm` engine.

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::AeadInPlace;

use super::key::Prepared;
use super::{nonce, ring_engine, AeadEngine, EngineKind, OpenOp, SaKey, SealOp, TAG_LEN};

/// AES-GCM through RustCrypto's `aes-gcm` (AES-NI and CLMUL intrinsics chosen at
/// run time; one packet at a time).
#[derive(Debug, Default, Clone, Copy)]
pub struct AesGcmEngine;

impl AeadEngine for AesGcmEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::AesGcm
    }

    fn seal_burst(&self, ops: &mut [SealOp<'_>]) {
        for op in ops {
            op.ok = seal(op.key, op.iv, op.aad, op.data, op.tag);
        }
    }

    fn open_burst(&self, ops: &mut [OpenOp<'_>]) {
        for op in ops {
            op.ok = open(op.key, op.iv, op.aad, op.data, op.tag);
        }
    }
}

/// Seals one buffer with a key of any engine (aes-gcm keys here, ring keys by ring).
#[inline]
pub(super) fn seal(
    key: &SaKey,
    iv: u64,
    aad: &[u8],
    data: &mut [u8],
    tag: &mut [u8; TAG_LEN],
) -> bool {
    let n = nonce(&key.salt, iv);
    let n = GenericArray::from_slice(&n);
    let t = match &key.prepared {
        Prepared::Aes128(c) => c.encrypt_in_place_detached(n, aad, data),
        Prepared::Aes256(c) => c.encrypt_in_place_detached(n, aad, data),
        Prepared::Ring(_) => return ring_engine::seal(key, iv, aad, data, tag),
    };
    match t {
        Ok(t) => {
            tag.copy_from_slice(&t);
            true
        }
        Err(_) => false,
    }
}

/// Opens one buffer with a key of any engine.
#[inline]
pub(super) fn open(key: &SaKey, iv: u64, aad: &[u8], data: &mut [u8], tag: &[u8; TAG_LEN]) -> bool {
    let n = nonce(&key.salt, iv);
    let n = GenericArray::from_slice(&n);
    let t = GenericArray::from_slice(tag);
    match &key.prepared {
        Prepared::Aes128(c) => c.decrypt_in_place_detached(n, aad, data, t).is_ok(),
        Prepared::Aes256(c) => c.decrypt_in_place_detached(n, aad, data, t).is_ok(),
        Prepared::Ring(_) => ring_engine::open(key, iv, aad, data, tag),
    }
}
