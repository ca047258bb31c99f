//! The intel-ipsec-mb bindings against the library: a manager initialises,
//! and AES-128-GCM through both the direct API (the manager's function
//! pointers) and the burst job API reproduces NIST GCM test case 4.
#![cfg(feature = "ipsec-mb")]

use scistream_sys::ipsec_mb as imb;

/// NIST GCM test case 4 (McGrew & Viega, "The Galois/Counter Mode of
/// Operation", Appendix B): AES-128, 96-bit IV, 60-byte plaintext, 20-byte AAD.
struct Case {
    key: Vec<u8>,
    iv: Vec<u8>,
    pt: Vec<u8>,
    aad: Vec<u8>,
    ct: Vec<u8>,
    tag: Vec<u8>,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn case_4() -> Case {
    Case {
        key: hex("feffe9928665731c6d6a8f9467308308"),
        iv: hex("cafebabefacedbaddecaf888"),
        pt: hex(concat!(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72",
            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
        )),
        aad: hex("feedfacedeadbeeffeedfacedeadbeefabaddad2"),
        ct: hex(concat!(
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e",
            "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
        )),
        tag: hex("5bc94fbc3221a5db94fae95ae7121a47"),
    }
}

/// An initialised manager, freed on drop.
struct Mgr(*mut imb::IMB_MGR);

impl Mgr {
    fn new() -> Mgr {
        // SAFETY: allocates a manager; checked for NULL.
        let m = unsafe { imb::alloc_mb_mgr(0) };
        assert!(!m.is_null());
        let mut arch = imb::IMB_ARCH_NONE;
        // SAFETY: `m` was just allocated by the library.
        unsafe { imb::init_mb_mgr_auto(m, &mut arch) };
        assert!(
            arch > imb::IMB_ARCH_NONE && arch < imb::IMB_ARCH_NUM,
            "{arch}"
        );
        // SAFETY: `m` is initialised.
        assert_eq!(unsafe { imb::imb_get_errno(m) }, 0);
        Mgr(m)
    }

    fn get(&self) -> &imb::IMB_MGR {
        // SAFETY: valid from new() until drop.
        unsafe { &*self.0 }
    }
}

impl Drop for Mgr {
    fn drop(&mut self) {
        // SAFETY: allocated by alloc_mb_mgr, not used after this.
        unsafe { imb::free_mb_mgr(self.0) };
    }
}

fn expand(mgr: &Mgr, key: &[u8]) -> Box<imb::gcm_key_data> {
    let mut kd = Box::<imb::gcm_key_data>::default();
    assert_eq!(std::mem::align_of::<imb::gcm_key_data>(), 64);
    // SAFETY: a 16-byte key and an exclusive, aligned gcm_key_data.
    unsafe { (mgr.get().gcm128_pre.unwrap())(key.as_ptr().cast(), &mut *kd) };
    kd
}

#[test]
fn the_library_is_at_least_the_header_version() {
    // SAFETY: no arguments; returns a static string / a number.
    let (s, v) = unsafe {
        (
            std::ffi::CStr::from_ptr(imb::imb_get_version_str()),
            imb::imb_get_version(),
        )
    };
    assert!(v >= imb::IMB_VERSION_NUM, "{v:#x}");
    assert!(s.to_str().unwrap().starts_with("1."), "{s:?}");
    assert_eq!(imb::HEADER_VERSION.split('.').count(), 3);
}

#[test]
fn direct_gcm_api_reproduces_nist_case_4() {
    let c = case_4();
    let mgr = Mgr::new();
    let kd = expand(&mgr, &c.key);
    let mut ctx = imb::gcm_context_data::default();
    let mut data = c.pt.clone();
    let mut tag = [0u8; 16];
    let p = data.as_mut_ptr();
    // SAFETY: in place over `data`; IV 12 bytes, AAD and tag as given.
    unsafe {
        (mgr.get().gcm128_enc.unwrap())(
            &*kd,
            &mut ctx,
            p,
            p,
            data.len() as u64,
            c.iv.as_ptr(),
            c.aad.as_ptr(),
            c.aad.len() as u64,
            tag.as_mut_ptr(),
            16,
        )
    };
    assert_eq!((&data[..], &tag[..]), (&c.ct[..], &c.tag[..]));
    let p = data.as_mut_ptr();
    // SAFETY: as above, decrypting.
    unsafe {
        (mgr.get().gcm128_dec.unwrap())(
            &*kd,
            &mut ctx,
            p,
            p,
            data.len() as u64,
            c.iv.as_ptr(),
            c.aad.as_ptr(),
            c.aad.len() as u64,
            tag.as_mut_ptr(),
            16,
        )
    };
    assert_eq!((&data[..], &tag[..]), (&c.pt[..], &c.tag[..]));
}

#[test]
fn burst_job_api_reproduces_nist_case_4() {
    let c = case_4();
    let mgr = Mgr::new();
    let m = mgr.get();
    let kd = expand(&mgr, &c.key);
    let mut data = [c.pt.clone(), c.pt.clone()];
    let mut tags = [[0u8; 16]; 2];
    let mut jobs = [std::ptr::null_mut::<imb::IMB_JOB>(); 2];
    // SAFETY: `jobs` has room for the 2 pointers asked for.
    let n = unsafe { (m.get_next_burst.unwrap())(mgr.0, 2, jobs.as_mut_ptr()) };
    assert_eq!(n, 2);
    for ((&j, d), t) in jobs.iter().zip(&mut data).zip(&mut tags) {
        // SAFETY: the library handed out this job for us to fill before submitting.
        let j = unsafe { &mut *j };
        j.cipher_mode = imb::IMB_CIPHER_GCM;
        j.hash_alg = imb::IMB_AUTH_AES_GMAC;
        j.cipher_direction = imb::IMB_DIR_ENCRYPT;
        j.chain_order = imb::IMB_ORDER_CIPHER_HASH;
        j.enc_keys = (&*kd as *const imb::gcm_key_data).cast();
        j.dec_keys = j.enc_keys;
        j.key_len_in_bytes = 16;
        j.__bindgen_anon_1.src = d.as_ptr();
        j.__bindgen_anon_2.dst = d.as_mut_ptr();
        j.__bindgen_anon_3.cipher_start_src_offset_in_bytes = 0;
        j.__bindgen_anon_4.msg_len_to_cipher_in_bytes = d.len() as u64;
        j.hash_start_src_offset_in_bytes = 0;
        j.__bindgen_anon_5.msg_len_to_hash_in_bytes = d.len() as u64;
        j.iv = c.iv.as_ptr();
        j.iv_len_in_bytes = 12;
        j.auth_tag_output = t.as_mut_ptr();
        j.auth_tag_output_len_in_bytes = 16;
        j.u.GCM.aad = c.aad.as_ptr().cast();
        j.u.GCM.aad_len_in_bytes = c.aad.len() as u64;
    }
    // SAFETY: both jobs filled in above, their buffers alive until completion.
    let mut done = unsafe { (m.submit_burst.unwrap())(mgr.0, 2, jobs.as_mut_ptr()) };
    if done < 2 {
        // SAFETY: as above; flushes what is still queued.
        done += unsafe { (m.flush_burst.unwrap())(mgr.0, 2 - done, jobs.as_mut_ptr()) };
    }
    assert_eq!(done, 2);
    for &j in &jobs {
        // SAFETY: completed jobs, still owned by the manager.
        assert_eq!(unsafe { (*j).status }, imb::IMB_STATUS_COMPLETED);
    }
    for (d, t) in data.iter().zip(&tags) {
        assert_eq!((&d[..], &t[..]), (&c.ct[..], &c.tag[..]));
    }
}
