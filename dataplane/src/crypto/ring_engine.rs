//! The `ring` AES-GCM engine.

use ring::aead::{Aad, Nonce, Tag};

use super::key::Prepared;
use super::{aes_gcm_engine, nonce, AeadEngine, EngineKind, OpenOp, SaKey, SealOp, TAG_LEN};

/// AES-GCM through `ring` (BoringSSL's assembly; one packet at a time).
#[derive(Debug, Default, Clone, Copy)]
pub struct RingEngine;

impl AeadEngine for RingEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Ring
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

/// Seals one buffer with a key of any engine (ring keys here, others by their engine).
#[inline]
pub(super) fn seal(
    key: &SaKey,
    iv: u64,
    aad: &[u8],
    data: &mut [u8],
    tag: &mut [u8; TAG_LEN],
) -> bool {
    let Prepared::Ring(k) = &key.prepared else {
        return aes_gcm_engine::seal(key, iv, aad, data, tag);
    };
    let n = Nonce::assume_unique_for_key(nonce(&key.salt, iv));
    match k.seal_in_place_separate_tag(n, Aad::from(aad), data) {
        Ok(t) => {
            tag.copy_from_slice(t.as_ref());
            true
        }
        Err(_) => false,
    }
}

/// Opens one buffer with a key of any engine.
#[inline]
pub(super) fn open(key: &SaKey, iv: u64, aad: &[u8], data: &mut [u8], tag: &[u8; TAG_LEN]) -> bool {
    let Prepared::Ring(k) = &key.prepared else {
        return aes_gcm_engine::open(key, iv, aad, data, tag);
    };
    let n = Nonce::assume_unique_for_key(nonce(&key.salt, iv));
    k.open_in_place_separate_tag(n, Aad::from(aad), Tag::from(*tag), data, 0..)
        .is_ok()
}
