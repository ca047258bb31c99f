//! The intel-ipsec-mb AES-GCM engine, through our own bindings
//! (`scistream_sys::ipsec_mb`) and the library's direct GCM API: one
//! `aes_gcm_enc_*`/`aes_gcm_dec_*` call per packet, the burst in one engine call.
//!
//! The direct API measured faster per burst here than the burst job API (see
//! docs/benchmarks.md, "ipsec-mb engine"), and it keeps no state of its own:
//! every call works on a key (`gcm_key_data`, read only) and a context
//! (`gcm_context_data`, the caller's). So the multi-buffer manager (`IMB_MGR`,
//! not thread-safe) is only used once, to let the library pick the entry
//! points for this CPU (`init_mb_mgr_auto`: SSE, AVX, AVX2, AVX-512, VAES);
//! those plain function pointers are copied out and the manager is freed.
//! No manager is shared between threads.
//!
//! The expanded key is our memory: it is computed in place into its own heap
//! allocation (never copied) and zeroized on drop, and so is each burst's
//! GCM context. Tags are compared in constant time (`subtle`).

use std::ffi::c_void;
use std::sync::OnceLock;

use scistream_sys::ipsec_mb as imb;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use super::{
    dispatch_open, dispatch_seal, key::Prepared, nonce, AeadEngine, Algorithm, CryptoError,
    EngineKind, OpenOp, SealOp, NONCE_LEN, TAG_LEN,
};

/// The longest plaintext GCM allows: 2^39 − 256 bits (NIST SP 800-38D).
const GCM_MAX_LEN: u64 = (1 << 36) - 32;

/// `aes_gcm_pre_{128,256}_*`: expands a key into `gcm_key_data`.
type PreFn = unsafe extern "C" fn(*const c_void, *mut imb::gcm_key_data);
/// `aes_gcm_{enc,dec}_{128,256}_*`: key, context, out, in, len, IV, AAD,
/// AAD length, tag out, tag length.
type EncDecFn = unsafe extern "C" fn(
    *const imb::gcm_key_data,
    *mut imb::gcm_context_data,
    *mut u8,
    *const u8,
    u64,
    *const u8,
    *const u8,
    u64,
    *mut u8,
    u64,
);

/// The library's AES-GCM entry points for this CPU, as `init_mb_mgr_auto`
/// chose them.
#[derive(Clone, Copy)]
struct GcmApi {
    /// The implementation chosen, e.g. `"AVX512"`.
    arch: &'static str,
    pre128: PreFn,
    enc128: EncDecFn,
    dec128: EncDecFn,
    pre256: PreFn,
    enc256: EncDecFn,
    dec256: EncDecFn,
}

static API: OnceLock<Option<GcmApi>> = OnceLock::new();

/// The entry points, looked up on first use; `None` if the library cannot be
/// used (older than the header we were built against, or no manager).
fn api() -> Option<&'static GcmApi> {
    API.get_or_init(GcmApi::load).as_ref()
}

/// Whether the engine can be used on this machine.
pub fn available() -> bool {
    api().is_some()
}

/// The library version and the implementation it chose for this CPU, e.g.
/// `"intel-ipsec-mb 1.3.0, AVX512"`; `None` if it is not available.
pub fn describe() -> Option<String> {
    let api = api()?;
    // SAFETY: returns a pointer to a static NUL-terminated string in the library.
    let version = unsafe { std::ffi::CStr::from_ptr(imb::imb_get_version_str()) };
    Some(format!(
        "intel-ipsec-mb {}, {}",
        version.to_string_lossy(),
        api.arch
    ))
}

impl GcmApi {
    fn load() -> Option<GcmApi> {
        // SAFETY: takes no arguments and reads a constant.
        if unsafe { imb::imb_get_version() } < imb::IMB_VERSION_NUM {
            // The manager's layout in our bindings is the header's; an older
            // library could lay it out differently.
            return None;
        }
        // SAFETY: allocates a manager (flags 0: every CPU feature allowed);
        // NULL on failure, checked below.
        let mgr = unsafe { imb::alloc_mb_mgr(0) };
        if mgr.is_null() {
            return None;
        }
        let mut arch: imb::IMB_ARCH = imb::IMB_ARCH_NONE;
        // SAFETY: `mgr` is a manager just allocated by the library, `arch` a
        // valid place for the result.
        unsafe { imb::init_mb_mgr_auto(mgr, &mut arch) };
        // SAFETY: `mgr` is valid and initialised; only read here.
        let api = unsafe { Self::from_mgr(&*mgr, arch) };
        // SAFETY: `mgr` came from alloc_mb_mgr and is not used after this. The
        // function pointers copied out are code in the library, not in `mgr`.
        unsafe { imb::free_mb_mgr(mgr) };
        api
    }

    /// Copies the GCM entry points out of an initialised manager.
    ///
    /// # Safety
    /// `mgr` must have been initialised by `init_mb_mgr_auto` (or an
    /// `init_mb_mgr_*`), with `mgr` as its argument.
    unsafe fn from_mgr(mgr: &imb::IMB_MGR, arch: imb::IMB_ARCH) -> Option<GcmApi> {
        let ptr: *const imb::IMB_MGR = mgr;
        // SAFETY: reads the manager's error status; `ptr` is valid.
        if unsafe { imb::imb_get_errno(ptr.cast_mut()) } != 0 {
            return None;
        }
        let arch = match arch {
            imb::IMB_ARCH_NOAESNI => "no AES-NI (emulated)",
            imb::IMB_ARCH_SSE => "SSE",
            imb::IMB_ARCH_AVX => "AVX",
            imb::IMB_ARCH_AVX2 => "AVX2",
            imb::IMB_ARCH_AVX512 => "AVX512",
            _ => return None,
        };
        Some(GcmApi {
            arch,
            pre128: mgr.gcm128_pre?,
            enc128: mgr.gcm128_enc?,
            dec128: mgr.gcm128_dec?,
            pre256: mgr.gcm256_pre?,
            enc256: mgr.gcm256_enc?,
            dec256: mgr.gcm256_dec?,
        })
    }
}

/// An AES-GCM key expanded by intel-ipsec-mb (round keys and GHASH key
/// powers, 64-byte aligned in its own allocation), with the entry points
/// for its key size. Zeroized on drop.
pub(super) struct IpsecMbKey {
    data: Box<imb::gcm_key_data>,
    enc: EncDecFn,
    dec: EncDecFn,
}

impl IpsecMbKey {
    /// Expands `key`, which the caller has checked is `algorithm.key_len()` bytes.
    pub(super) fn new(algorithm: Algorithm, key: &[u8]) -> Result<IpsecMbKey, CryptoError> {
        let api = api().ok_or(CryptoError::Unavailable(EngineKind::IpsecMb))?;
        let (pre, enc, dec) = match algorithm {
            Algorithm::Aes128Gcm => (api.pre128, api.enc128, api.dec128),
            Algorithm::Aes256Gcm => (api.pre256, api.enc256, api.dec256),
        };
        if key.len() != algorithm.key_len() {
            return Err(CryptoError::KeyRejected(EngineKind::IpsecMb));
        }
        // Allocated zeroed, then filled in place: the schedule never exists
        // anywhere but here.
        let mut data = Box::<imb::gcm_key_data>::default();
        // SAFETY: `key` holds the key length `pre` reads (checked above);
        // `data` is a valid, exclusive, 64-byte aligned gcm_key_data.
        unsafe { pre(key.as_ptr().cast(), &mut *data) };
        Ok(IpsecMbKey { data, enc, dec })
    }

    /// The expanded key's bytes (for the zeroization test).
    #[cfg(test)]
    fn bytes(&self) -> &[u8] {
        let p: *const imb::gcm_key_data = &*self.data;
        // SAFETY: gcm_key_data is plain bytes (u8 arrays and a union of u8
        // arrays), fully initialised (allocated zeroed), borrowed for `self`.
        unsafe { std::slice::from_raw_parts(p.cast(), size_of::<imb::gcm_key_data>()) }
    }
}

impl Zeroize for IpsecMbKey {
    fn zeroize(&mut self) {
        // SAFETY: gcm_key_data is a flat type (u8 arrays and a union of u8
        // arrays: all-zero is valid, no Drop, no references), and `data` is
        // exclusively ours.
        unsafe { zeroize::zeroize_flat_type::<imb::gcm_key_data>(&mut *self.data) };
    }
}

impl Drop for IpsecMbKey {
    fn drop(&mut self) {
        self.zeroize();
    }
}

/// One GCM operation's working state (hash, counters, partial block), reused
/// for a burst and zeroized when dropped.
pub(super) struct Context(imb::gcm_context_data);

impl Context {
    /// A zeroed context.
    pub(super) fn new() -> Context {
        Context(imb::gcm_context_data::default())
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: gcm_context_data is a flat type (u8 arrays and u64s), ours.
        unsafe { zeroize::zeroize_flat_type(&mut self.0) };
    }
}

/// Whether the library accepts these lengths (it refuses longer inputs).
#[inline]
fn lengths_ok(aad: &[u8], data: &[u8]) -> bool {
    (data.len() as u64) <= GCM_MAX_LEN && (aad.len() as u64) < (1 << 61)
}

/// Seals `data` in place under `key` and `nonce`, writing the tag.
#[inline]
pub(super) fn seal(
    key: &IpsecMbKey,
    ctx: &mut Context,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    data: &mut [u8],
    tag: &mut [u8; TAG_LEN],
) -> bool {
    if !lengths_ok(aad, data) {
        return false;
    }
    let p = data.as_mut_ptr();
    // SAFETY: `key.enc` is the library's encrypt for `key`'s size; every
    // pointer is valid for the length given with it (in place: out = in = `p`,
    // `data.len()` bytes; 12-byte nonce; `aad`; 16-byte tag), none is NULL
    // (slices' pointers never are), and the lengths are within GCM's limits.
    unsafe {
        (key.enc)(
            &*key.data,
            &mut ctx.0,
            p,
            p,
            data.len() as u64,
            nonce.as_ptr(),
            aad.as_ptr(),
            aad.len() as u64,
            tag.as_mut_ptr(),
            TAG_LEN as u64,
        )
    };
    true
}

/// Decrypts `data` in place under `key` and `nonce` and verifies `tag` (in
/// constant time). On failure `data` holds unauthenticated bytes, to be dropped.
#[inline]
pub(super) fn open(
    key: &IpsecMbKey,
    ctx: &mut Context,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    data: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> bool {
    let mut computed = [0u8; TAG_LEN];
    decrypt(key, ctx, nonce, aad, data, &mut computed) && tags_match(&computed, tag)
}

/// Decrypts `data` in place under `key` and `nonce`, writing the tag it
/// computes over `aad` and the ciphertext to `computed`. False if the library
/// would refuse the lengths.
#[inline]
fn decrypt(
    key: &IpsecMbKey,
    ctx: &mut Context,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    data: &mut [u8],
    computed: &mut [u8; TAG_LEN],
) -> bool {
    if !lengths_ok(aad, data) {
        return false;
    }
    let p = data.as_mut_ptr();
    // SAFETY: as in `seal`, with `key.dec`, and the computed tag written to
    // the caller's 16 bytes.
    unsafe {
        (key.dec)(
            &*key.data,
            &mut ctx.0,
            p,
            p,
            data.len() as u64,
            nonce.as_ptr(),
            aad.as_ptr(),
            aad.len() as u64,
            computed.as_mut_ptr(),
            TAG_LEN as u64,
        )
    };
    true
}

/// Whether two tags are equal, in constant time (`subtle`, on the two 64-bit
/// halves: two constant-time comparisons rather than sixteen; `subtle`'s
/// byte-slice comparison measured 24 against 40 Mpps of raw open at 64 B).
#[inline]
fn tags_match(a: &[u8; TAG_LEN], b: &[u8; TAG_LEN]) -> bool {
    let half = |t: &[u8; TAG_LEN], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&t[i..i + 8]);
        u64::from_ne_bytes(w)
    };
    (half(a, 0).ct_eq(&half(b, 0)) & half(a, 8).ct_eq(&half(b, 8))).into()
}

/// AES-GCM through intel-ipsec-mb's direct GCM API (AES-NI, AVX2, AVX-512 or
/// VAES code chosen by the library for this CPU). One context serves the
/// whole burst and is wiped at its end.
#[derive(Debug, Default, Clone, Copy)]
pub struct IpsecMbEngine;

impl AeadEngine for IpsecMbEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::IpsecMb
    }

    fn seal_burst(&self, ops: &mut [SealOp<'_>]) {
        let mut ctx = Context::new();
        let mut nonces = [[0u8; NONCE_LEN]; CHUNK];
        for chunk in ops.chunks_mut(CHUNK) {
            fill_nonces(&mut nonces, chunk.iter().map(|op| (&op.key.salt, op.iv)));
            for (op, n) in chunk.iter_mut().zip(&nonces) {
                match &op.key.prepared {
                    Prepared::IpsecMb(k) => op.ok = seal(k, &mut ctx, n, op.aad, op.data, op.tag),
                    _ => dispatch_seal(op),
                }
            }
        }
    }

    fn open_burst(&self, ops: &mut [OpenOp<'_>]) {
        let mut ctx = Context::new();
        let mut nonces = [[0u8; NONCE_LEN]; CHUNK];
        for chunk in ops.chunks_mut(CHUNK) {
            fill_nonces(&mut nonces, chunk.iter().map(|op| (&op.key.salt, op.iv)));
            for (op, n) in chunk.iter_mut().zip(&nonces) {
                match &op.key.prepared {
                    Prepared::IpsecMb(k) => op.ok = open(k, &mut ctx, n, op.aad, op.data, op.tag),
                    _ => dispatch_open(op),
                }
            }
        }
    }
}

/// Operations whose nonces are laid out together before the first call.
const CHUNK: usize = 32;

/// Writes the nonces of a chunk of operations, all before the library reads
/// the first. Its IV loads cannot be forwarded from stores still in flight:
/// a nonce written just before each call cost 40% of the speed at 64 B
/// (measured: 22 against 39 Mpps of raw seal).
#[inline]
fn fill_nonces<'a>(
    nonces: &mut [[u8; NONCE_LEN]; CHUNK],
    ops: impl Iterator<Item = (&'a [u8; super::SALT_LEN], u64)>,
) {
    for (n, (salt, iv)) in nonces.iter_mut().zip(ops) {
        *n = nonce(salt, iv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_initialises_and_says_what_it_chose() {
        assert!(
            available(),
            "intel-ipsec-mb is installed by scripts/setup.sh"
        );
        let d = describe().unwrap();
        assert!(d.starts_with("intel-ipsec-mb 1."), "{d}");
    }

    #[test]
    fn the_expanded_key_is_wiped_by_zeroize_which_drop_calls() {
        for alg in [Algorithm::Aes128Gcm, Algorithm::Aes256Gcm] {
            let mut k = IpsecMbKey::new(alg, &[0x42; 32][..alg.key_len()]).unwrap();
            assert!(k.bytes().iter().any(|&b| b != 0));
            // The first round key is the key itself.
            assert_eq!(&k.bytes()[..16], &[0x42; 16]);
            k.zeroize();
            assert!(k.bytes().iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn bursts_longer_than_a_chunk_match_ring_op_by_op() {
        use crate::crypto::{engine, SaKey};
        let n = 2 * CHUNK + 5;
        let ours = SaKey::new(EngineKind::IpsecMb, Algorithm::Aes128Gcm, &[8; 16], [1; 4]).unwrap();
        let ring = SaKey::new(EngineKind::Ring, Algorithm::Aes128Gcm, &[8; 16], [1; 4]).unwrap();
        let mut a: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; i * 7]).collect();
        let mut b = a.clone();
        let (mut ta, mut tb) = (vec![[0u8; TAG_LEN]; n], vec![[0u8; TAG_LEN]; n]);
        let mut ops: Vec<SealOp<'_>> = a
            .iter_mut()
            .zip(&mut ta)
            .enumerate()
            .map(|(i, (d, t))| SealOp::new(&ours, 100 + i as u64, b"ad", d, t))
            .collect();
        IpsecMbEngine.seal_burst(&mut ops);
        assert!(ops.iter().all(|o| o.ok));
        drop(ops);
        let mut ops: Vec<SealOp<'_>> = b
            .iter_mut()
            .zip(&mut tb)
            .enumerate()
            .map(|(i, (d, t))| SealOp::new(&ring, 100 + i as u64, b"ad", d, t))
            .collect();
        engine(EngineKind::Ring).seal_burst(&mut ops);
        drop(ops);
        assert_eq!((&a, &ta), (&b, &tb));
        tb[n - 1][3] ^= 1;
        let mut ops: Vec<OpenOp<'_>> = a
            .iter_mut()
            .zip(&tb)
            .enumerate()
            .map(|(i, (d, t))| OpenOp::new(&ours, 100 + i as u64, b"ad", d, t))
            .collect();
        IpsecMbEngine.open_burst(&mut ops);
        let ok: Vec<bool> = ops.iter().map(|o| o.ok).collect();
        drop(ops);
        assert!(ok[..n - 1].iter().all(|&o| o) && !ok[n - 1]);
        for (i, d) in a.iter().enumerate().take(n - 1) {
            assert_eq!(d, &vec![i as u8; i * 7]);
        }
    }

    #[test]
    fn tags_match_only_when_every_byte_does() {
        let a = [0x5au8; TAG_LEN];
        assert!(tags_match(&a, &a));
        for i in 0..TAG_LEN {
            for bit in 0..8 {
                let mut b = a;
                b[i] ^= 1 << bit;
                assert!(!tags_match(&a, &b), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn the_key_schedule_is_64_byte_aligned() {
        let k = IpsecMbKey::new(Algorithm::Aes128Gcm, &[1; 16]).unwrap();
        assert_eq!((&*k.data as *const imb::gcm_key_data as usize) % 64, 0);
    }

    #[test]
    fn a_wrong_tag_fails_in_every_byte_and_empty_inputs_work() {
        let k = IpsecMbKey::new(Algorithm::Aes256Gcm, &[3; 32]).unwrap();
        let mut ctx = Context::new();
        let n = &[9u8; NONCE_LEN];
        let mut data = [5u8; 33];
        let mut tag = [0u8; TAG_LEN];
        assert!(seal(&k, &mut ctx, n, b"aad", &mut data, &mut tag));
        for i in 0..TAG_LEN {
            let mut bad = tag;
            bad[i] ^= 0x80;
            let mut d = data;
            assert!(!open(&k, &mut ctx, n, b"aad", &mut d, &bad), "byte {i}");
        }
        assert!(open(&k, &mut ctx, n, b"aad", &mut data, &tag));
        assert_eq!(data, [5u8; 33]);
        // GMAC only (no data), and no AAD.
        let mut t = [0u8; TAG_LEN];
        assert!(seal(&k, &mut ctx, n, b"only aad", &mut [], &mut t));
        assert!(open(&k, &mut ctx, n, b"only aad", &mut [], &t));
        assert!(!open(&k, &mut ctx, n, b"other aad", &mut [], &t));
        let mut d = [1u8; 16];
        assert!(seal(&k, &mut ctx, n, &[], &mut d, &mut t));
        assert!(open(&k, &mut ctx, n, &[], &mut d, &t));
        assert_eq!(d, [1u8; 16]);
    }
}
