//! The RustCrypto `aes-gcm` engine.

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::AeadInPlace;

use super::{dispatch_open, dispatch_seal, AeadEngine, EngineKind, OpenOp, SealOp, TAG_LEN};

/// AES-GCM through RustCrypto's `aes-gcm` (AES-NI and CLMUL intrinsics chosen at
/// run time; one packet at a time).
#[derive(Debug, Default, Clone, Copy)]
pub struct AesGcmEngine;

impl AeadEngine for AesGcmEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::AesGcm
    }

    fn seal_burst(&self, ops: &mut [SealOp<'_>]) {
        ops.iter_mut().for_each(dispatch_seal);
    }

    fn open_burst(&self, ops: &mut [OpenOp<'_>]) {
        ops.iter_mut().for_each(dispatch_open);
    }
}

/// Seals `data` in place under the cipher `c` (AES-128 or AES-256-GCM) and
/// `nonce`, writing the tag.
#[inline]
pub(super) fn seal<C: AeadInPlace>(
    c: &C,
    nonce: [u8; 12],
    aad: &[u8],
    data: &mut [u8],
    tag: &mut [u8; TAG_LEN],
) -> bool {
    match c.encrypt_in_place_detached(GenericArray::from_slice(&nonce), aad, data) {
        Ok(t) => {
            tag.copy_from_slice(&t);
            true
        }
        Err(_) => false,
    }
}

/// Verifies `tag` and decrypts `data` in place under `c` and `nonce`.
#[inline]
pub(super) fn open<C: AeadInPlace>(
    c: &C,
    nonce: [u8; 12],
    aad: &[u8],
    data: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> bool {
    c.decrypt_in_place_detached(
        GenericArray::from_slice(&nonce),
        aad,
        data,
        GenericArray::from_slice(tag),
    )
    .is_ok()
}
