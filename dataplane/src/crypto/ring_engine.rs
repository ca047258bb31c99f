//! The `ring` AES-GCM engine.

use ring::aead::{Aad, LessSafeKey, Nonce, Tag};

use super::{dispatch_open, dispatch_seal, AeadEngine, EngineKind, OpenOp, SealOp, TAG_LEN};

/// AES-GCM through `ring` (BoringSSL's assembly; one packet at a time).
#[derive(Debug, Default, Clone, Copy)]
pub struct RingEngine;

impl AeadEngine for RingEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Ring
    }

    fn seal_burst(&self, ops: &mut [SealOp<'_>]) {
        ops.iter_mut().for_each(dispatch_seal);
    }

    fn open_burst(&self, ops: &mut [OpenOp<'_>]) {
        ops.iter_mut().for_each(dispatch_open);
    }
}

/// Seals `data` in place under `key` and `nonce`, writing the tag.
#[inline]
pub(super) fn seal(
    key: &LessSafeKey,
    nonce: [u8; 12],
    aad: &[u8],
    data: &mut [u8],
    tag: &mut [u8; TAG_LEN],
) -> bool {
    let n = Nonce::assume_unique_for_key(nonce);
    match key.seal_in_place_separate_tag(n, Aad::from(aad), data) {
        Ok(t) => {
            tag.copy_from_slice(t.as_ref());
            true
        }
        Err(_) => false,
    }
}

/// Verifies `tag` and decrypts `data` in place under `key` and `nonce`.
#[inline]
pub(super) fn open(
    key: &LessSafeKey,
    nonce: [u8; 12],
    aad: &[u8],
    data: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> bool {
    let n = Nonce::assume_unique_for_key(nonce);
    key.open_in_place_separate_tag(n, Aad::from(aad), Tag::from(*tag), data, 0..)
        .is_ok()
}
