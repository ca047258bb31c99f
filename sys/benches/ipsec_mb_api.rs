//! Which intel-ipsec-mb API seals and opens a burst faster: the direct GCM API
//! (`IMB_AES128_GCM_ENC`/`_DEC`: one call per packet through the manager's
//! function pointers) or the burst job API (`IMB_GET_NEXT_BURST`, fill 32 jobs,
//! `IMB_SUBMIT_BURST`, with and without the library's job checks)?
//!
//! AES-128-GCM, bursts of 32 ESP payloads (inner 64 and 1400 B plus padding and
//! trailer: 68 and 1404 B) in place, 12-byte AAD, 16-byte tag; one pinned core.
//! The variants alternate within each round, so machine load hits them alike;
//! the median and best of the rounds are printed, and the per-round ratio to
//! the direct API.
//!
//! Run: `cargo bench -p scistream-sys --bench ipsec_mb_api`. `BENCH_ROUND_MS`
//! (default 100) and `BENCH_ROUNDS` (default 11) as in the pipeline bench.

use std::hint::black_box;
use std::time::{Duration, Instant};

use scistream_sys::ipsec_mb as imb;

const BURST: usize = 32;
const INNER: [usize; 2] = [64, 1400];
const AAD: [u8; 12] = [7; 12];
const KEY: [u8; 16] = [0x42; 16];

/// Which API, and which direction.
#[derive(Clone, Copy, PartialEq)]
enum Api {
    Direct,
    Burst,
    BurstNocheck,
}

impl Api {
    const ALL: [Api; 3] = [Api::Direct, Api::Burst, Api::BurstNocheck];
    fn name(self) -> &'static str {
        match self {
            Api::Direct => "direct GCM API",
            Api::Burst => "burst job API",
            Api::BurstNocheck => "burst job API, nocheck",
        }
    }
}

/// An initialised manager and a key, with 32 buffers and tags to work on.
struct Bench {
    mgr: *mut imb::IMB_MGR,
    key: Box<imb::gcm_key_data>,
    bufs: Vec<Vec<u8>>,
    tags: [[u8; 16]; BURST],
    ivs: [[u8; 12]; BURST],
}

impl Bench {
    fn new(len: usize) -> Bench {
        // SAFETY: allocates a manager; checked for NULL.
        let mgr = unsafe { imb::alloc_mb_mgr(0) };
        assert!(!mgr.is_null());
        // SAFETY: `mgr` was just allocated; the arch out-pointer may be NULL.
        unsafe { imb::init_mb_mgr_auto(mgr, std::ptr::null_mut()) };
        let mut key = Box::<imb::gcm_key_data>::default();
        // SAFETY: initialised manager; 16-byte key, exclusive aligned key data.
        unsafe { ((*mgr).gcm128_pre.unwrap())(KEY.as_ptr().cast(), &mut *key) };
        let mut ivs = [[0u8; 12]; BURST];
        for (i, iv) in ivs.iter_mut().enumerate() {
            iv[..4].copy_from_slice(&[1, 2, 3, 4]);
            iv[4..].copy_from_slice(&(i as u64).to_be_bytes());
        }
        Bench {
            mgr,
            key,
            bufs: (0..BURST).map(|_| vec![0x5a; len]).collect(),
            tags: [[0u8; 16]; BURST],
            ivs,
        }
    }

    fn mgr(&self) -> &imb::IMB_MGR {
        // SAFETY: valid from new() until drop.
        unsafe { &*self.mgr }
    }

    /// One burst of 32 through `api`, encrypting or decrypting in place.
    fn burst(&mut self, api: Api, encrypt: bool) {
        match api {
            Api::Direct => self.direct(encrypt),
            Api::Burst | Api::BurstNocheck => self.jobs(api == Api::BurstNocheck, encrypt),
        }
    }

    fn direct(&mut self, encrypt: bool) {
        let m = self.mgr();
        let f = if encrypt { m.gcm128_enc } else { m.gcm128_dec }.unwrap();
        let mut ctx = imb::gcm_context_data::default();
        for ((b, t), iv) in self.bufs.iter_mut().zip(&mut self.tags).zip(&self.ivs) {
            let p = b.as_mut_ptr();
            // SAFETY: in place over `b`; 12-byte IV, 12-byte AAD, 16-byte tag.
            unsafe {
                f(
                    &*self.key,
                    &mut ctx,
                    p,
                    p,
                    b.len() as u64,
                    iv.as_ptr(),
                    AAD.as_ptr(),
                    AAD.len() as u64,
                    t.as_mut_ptr(),
                    16,
                )
            };
        }
    }

    fn jobs(&mut self, nocheck: bool, encrypt: bool) {
        let m = self.mgr();
        let (next, flush) = (m.get_next_burst.unwrap(), m.flush_burst.unwrap());
        let submit = if nocheck {
            m.submit_burst_nocheck
        } else {
            m.submit_burst
        }
        .unwrap();
        let mut jobs = [std::ptr::null_mut::<imb::IMB_JOB>(); BURST];
        // SAFETY: `jobs` has room for BURST pointers.
        let mut n = unsafe { next(self.mgr, BURST as u32, jobs.as_mut_ptr()) };
        if n < BURST as u32 {
            // SAFETY: as above; completes queued jobs to free their slots.
            unsafe { flush(self.mgr, BURST as u32, jobs.as_mut_ptr()) };
            // SAFETY: as above.
            n = unsafe { next(self.mgr, BURST as u32, jobs.as_mut_ptr()) };
        }
        assert_eq!(n, BURST as u32);
        let key: *const imb::gcm_key_data = &*self.key;
        for (((&j, b), t), iv) in jobs
            .iter()
            .zip(&mut self.bufs)
            .zip(&mut self.tags)
            .zip(&self.ivs)
        {
            // SAFETY: the library handed out this job for us to fill.
            let j = unsafe { &mut *j };
            j.cipher_mode = imb::IMB_CIPHER_GCM;
            j.hash_alg = imb::IMB_AUTH_AES_GMAC;
            j.cipher_direction = if encrypt {
                imb::IMB_DIR_ENCRYPT
            } else {
                imb::IMB_DIR_DECRYPT
            };
            j.chain_order = if encrypt {
                imb::IMB_ORDER_CIPHER_HASH
            } else {
                imb::IMB_ORDER_HASH_CIPHER
            };
            j.enc_keys = key.cast();
            j.dec_keys = key.cast();
            j.key_len_in_bytes = 16;
            j.__bindgen_anon_1.src = b.as_ptr();
            j.__bindgen_anon_2.dst = b.as_mut_ptr();
            j.__bindgen_anon_3.cipher_start_src_offset_in_bytes = 0;
            j.__bindgen_anon_4.msg_len_to_cipher_in_bytes = b.len() as u64;
            j.hash_start_src_offset_in_bytes = 0;
            j.__bindgen_anon_5.msg_len_to_hash_in_bytes = b.len() as u64;
            j.iv = iv.as_ptr();
            j.iv_len_in_bytes = 12;
            j.auth_tag_output = t.as_mut_ptr();
            j.auth_tag_output_len_in_bytes = 16;
            j.u.GCM.aad = AAD.as_ptr().cast();
            j.u.GCM.aad_len_in_bytes = AAD.len() as u64;
        }
        // SAFETY: BURST jobs filled above; their buffers outlive completion.
        let mut done = unsafe { submit(self.mgr, BURST as u32, jobs.as_mut_ptr()) };
        if done < BURST as u32 {
            // SAFETY: as above.
            done += unsafe { flush(self.mgr, BURST as u32 - done, jobs.as_mut_ptr()) };
        }
        assert_eq!(done, BURST as u32);
    }

    /// Packets per second of `api` over about `round`.
    fn pps(&mut self, api: Api, encrypt: bool, round: Duration) -> f64 {
        let mut pkts = 0u64;
        let start = Instant::now();
        while start.elapsed() < round {
            for _ in 0..16 {
                self.burst(api, encrypt);
                black_box(&self.tags);
                pkts += BURST as u64;
            }
        }
        pkts as f64 / start.elapsed().as_secs_f64()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        // SAFETY: allocated by alloc_mb_mgr, not used after this.
        unsafe { imb::free_mb_mgr(self.mgr) };
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let round = Duration::from_millis(env_u64("BENCH_ROUND_MS", 100));
    let rounds = env_u64("BENCH_ROUNDS", 11).max(1) as usize;
    pin_to_last_core();
    // SAFETY: returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(imb::imb_get_version_str()) };
    let mut arch = imb::IMB_ARCH_NONE;
    // SAFETY: a throwaway manager, only to learn the arch chosen; freed at once.
    unsafe {
        let m = imb::alloc_mb_mgr(0);
        assert!(!m.is_null());
        imb::init_mb_mgr_auto(m, &mut arch);
        imb::free_mb_mgr(m);
    }
    println!(
        "intel-ipsec-mb {} (arch {arch}: 2 SSE, 3 AVX, 4 AVX2, 5 AVX512), AES-128-GCM, bursts of {BURST}, {rounds} x {} ms",
        version.to_string_lossy(),
        round.as_millis()
    );
    println!();
    println!("| op | inner B | API | median Mpps | best Mpps | median ratio to direct |");
    println!("|---|---:|---|---:|---:|---:|");
    for encrypt in [true, false] {
        for inner in INNER {
            let len = inner + 2 + (4 - (inner + 2) % 4) % 4;
            let mut b = Bench::new(len);
            for api in Api::ALL {
                b.pps(api, encrypt, round / 4); // warm up
            }
            let mut pps = vec![Vec::new(); Api::ALL.len()];
            let mut ratio = vec![Vec::new(); Api::ALL.len()];
            for _ in 0..rounds {
                let this: Vec<f64> = Api::ALL
                    .iter()
                    .map(|&api| b.pps(api, encrypt, round))
                    .collect();
                for (i, &p) in this.iter().enumerate() {
                    pps[i].push(p);
                    ratio[i].push(p / this[0]);
                }
            }
            for (i, api) in Api::ALL.iter().enumerate() {
                let best = pps[i].iter().copied().fold(0.0, f64::max);
                println!(
                    "| {} | {inner} | {} | {:.2} | {:.2} | {:.2} |",
                    if encrypt { "seal" } else { "open" },
                    api.name(),
                    median(pps[i].clone()) / 1e6,
                    best / 1e6,
                    median(ratio[i].clone()),
                );
            }
        }
    }
    println!();
    println!("ESP payload per packet: inner + padding + 2-byte trailer (68 and 1404 B); open computes the tag without comparing it.");
}

/// Pins the thread to the last CPU, as the pipeline bench does.
fn pin_to_last_core() {
    if let Some(core) = core_affinity::get_core_ids().and_then(|c| c.last().copied()) {
        core_affinity::set_for_current(core);
    }
}
