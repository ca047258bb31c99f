//! Per-core ESP pipeline benchmark: how much of the raw AEAD speed survives
//! the ESP layout, parsing, anti-replay and trailer handling around it.
//!
//! For inner packets of 64, 512, 1400 and 9000 bytes and each engine (AES-128-GCM, ESN):
//! - raw seal / raw open: the engine alone on the ESP payload of that packet
//!   (inner + padding + trailer) with a 12-byte AAD, bursts of 32;
//! - encap: reserve 32 sequence numbers, `encap_prepare` each packet,
//!   `seal_burst` (the outbound pipeline without Ethernet and I/O);
//! - decap: `decap_parse`, SPI match, `infer` + `check`, `open_burst`,
//!   `decap_finish`, `accept` (the inbound pipeline without Ethernet and I/O).
//!
//! Then the policer's cost, for inner packets of 64 and 1400 bytes: encap
//! of an SA without a rate (the pipeline's `is_limited` check only) against
//! encap of an SA whose rate (10 Tb/s) is far above the offered load, which
//! reads the monotonic clock and updates the bucket once per burst, as
//! `encap_burst` does.
//!
//! Then the engines against each other, for inner packets of 64 and 1400
//! bytes: raw seal and raw open of every engine built in, the engines taking
//! turns within each round, with the median and best of the rounds and the
//! median per-round ratio to `ring`.
//!
//! Opening destroys the ciphertext, so open and decap restore their 32 buffers
//! from a pristine copy before each burst, outside the timed region; those two
//! are timed per burst (two clock reads per 32 packets).
//!
//! Run: `cargo bench -p scistream-dataplane --bench pipeline` (engines ring,
//! aes-gcm and ipsec-mb; `--no-default-features` leaves out ipsec-mb, and DPDK,
//! which the bench does not use), optionally with
//! `RUSTFLAGS="-C target-cpu=native"`; append `-- policer` for the policer
//! table alone, `-- engines` for the engine comparison alone. `BENCH_ROUND_MS`
//! (default 100) sets the length of one measurement, `BENCH_ROUNDS` (default 11)
//! how many are taken; medians are printed. Raw and pipeline runs alternate, and
//! the ratio is taken per round, so load from other processes affects both alike.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use scistream_dataplane::backend::pool::{PoolBuf, HEADROOM};
use scistream_dataplane::backend::{Burst, PacketBuf, BURST};
use scistream_dataplane::crypto::{engine, Algorithm, EngineKind, OpenOp, SaKey, SealOp};
use scistream_dataplane::esp::{
    decap_finish, decap_parse, encap_prepare, open_burst, pad_len, seal_burst, Clock, InboundSa,
    MonotonicClock, OpenJob, OutboundSa, Outer, ReplayWindow, SealJob, ESP_UDP_PORT,
};

const SIZES: [usize; 4] = [64, 512, 1400, 9000];
/// Inner sizes of the policer comparison.
const POLICER_SIZES: [usize; 2] = [64, 1400];
/// A rate far above what one core can offer: the policer admits every packet.
const FAR_ABOVE_BPS: u64 = 10_000_000_000_000;
const KEY: [u8; 16] = [0x42; 16];
const SALT: [u8; 4] = [1, 2, 3, 4];
const SPI: u32 = 0x0102_0304;
const OUTER: Outer = Outer::new(
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median of `v` (not empty).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Packets per second of one measurement of about `round`.
fn pps(run: &mut impl FnMut(Duration) -> (u64, Duration), round: Duration) -> f64 {
    let (pkts, t) = run(round);
    pkts as f64 / t.as_secs_f64()
}

/// Measures a raw engine run and a pipeline run back to back, `rounds` times
/// (so a change in machine load hits both alike). Returns the median pps of
/// each and the median of the per-round ratios pipeline / raw.
fn compare(
    rounds: u64,
    round: Duration,
    mut raw: impl FnMut(Duration) -> (u64, Duration),
    mut pipeline: impl FnMut(Duration) -> (u64, Duration),
) -> (f64, f64, f64) {
    pps(&mut raw, round / 4); // warm up
    pps(&mut pipeline, round / 4);
    let (mut r, mut p, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let a = pps(&mut raw, round);
        let b = pps(&mut pipeline, round);
        r.push(a);
        p.push(b);
        ratio.push(b / a);
    }
    (median(r), median(p), median(ratio))
}

fn inner_packet(len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len).map(|i| i as u8).collect();
    p[0] = 0x45;
    p[1] = 0;
    p
}

/// The engine alone sealing bursts of 32 ESP payloads (inner + pad + trailer).
fn raw_seal(kind: EngineKind, inner_len: usize, round: Duration) -> (u64, Duration) {
    let key = SaKey::new(kind, Algorithm::Aes128Gcm, &KEY, SALT).unwrap();
    let len = inner_len + pad_len(inner_len) + 2;
    let mut bufs: Vec<Vec<u8>> = (0..BURST).map(|_| vec![0x5a; len]).collect();
    let mut tags = [[0u8; 16]; BURST];
    let aad = [7u8; 12];
    let eng = engine(kind);
    let mut pkts = 0u64;
    let mut iv = 1u64;
    let start = Instant::now();
    while start.elapsed() < round {
        for _ in 0..16 {
            let mut ops: ArrayVec<SealOp<'_>, BURST> = bufs
                .iter_mut()
                .zip(tags.iter_mut())
                .map(|(b, t)| {
                    iv += 1;
                    SealOp::new(&key, iv, &aad, b, t)
                })
                .collect();
            eng.seal_burst(&mut ops);
            black_box(&ops);
            pkts += BURST as u64;
        }
    }
    (pkts, start.elapsed())
}

/// The engine alone opening bursts of 32 valid ESP payloads.
fn raw_open(kind: EngineKind, inner_len: usize, round: Duration) -> (u64, Duration) {
    let key = SaKey::new(kind, Algorithm::Aes128Gcm, &KEY, SALT).unwrap();
    let len = inner_len + pad_len(inner_len) + 2;
    let aad = [7u8; 12];
    let eng = engine(kind);
    let mut pristine: Vec<Vec<u8>> = (0..BURST).map(|_| vec![0x5a; len]).collect();
    let mut tags = [[0u8; 16]; BURST];
    for (i, (b, t)) in pristine.iter_mut().zip(tags.iter_mut()).enumerate() {
        eng.seal_burst(&mut [SealOp::new(&key, i as u64, &aad, b, t)]);
    }
    let mut bufs = pristine.clone();
    let (mut pkts, mut spent) = (0u64, Duration::ZERO);
    let wall = Instant::now();
    while wall.elapsed() < round {
        for (b, p) in bufs.iter_mut().zip(&pristine) {
            b.copy_from_slice(p);
        }
        let t0 = Instant::now();
        let mut ops: ArrayVec<OpenOp<'_>, BURST> = bufs
            .iter_mut()
            .zip(tags.iter())
            .enumerate()
            .map(|(i, (b, t))| OpenOp::new(&key, i as u64, &aad, b, t))
            .collect();
        eng.open_burst(&mut ops);
        let ok = ops.iter().all(|o| o.ok);
        spent += t0.elapsed();
        assert!(ok);
        pkts += BURST as u64;
    }
    (pkts, spent)
}

/// Outbound pipeline: police (when the SA has a rate: 0 = none), reserve,
/// lay out, seal a burst.
fn encap(kind: EngineKind, inner_len: usize, rate_bps: u64, round: Duration) -> (u64, Duration) {
    let sa = OutboundSa::new(
        SPI,
        SaKey::new(kind, Algorithm::Aes128Gcm, &KEY, SALT).unwrap(),
        true,
    )
    .with_rate(rate_bps);
    let pkt = inner_packet(inner_len);
    let mut bufs: Burst<PoolBuf> = (0..BURST)
        .map(|_| PoolBuf::from_slice(&pkt).unwrap())
        .collect();
    let eng = engine(kind);
    let mut pkts = 0u64;
    let start = Instant::now();
    while start.elapsed() < round {
        for _ in 0..16 {
            // A new burst of inner packets where the last one lay (as after rx).
            for b in bufs.iter_mut() {
                b.set_range(HEADROOM, HEADROOM + inner_len);
                b.data_mut()[0] = 0x45;
            }
            let admitted = if sa.policer().is_limited() {
                let lens = bufs.iter().map(|b| b.len());
                sa.policer().admit(MonotonicClock.now_ns(), lens)
            } else {
                BURST
            };
            assert_eq!(admitted, BURST, "the rate is far above the load");
            let seqs = sa.reserve(admitted as u64).unwrap();
            let mut jobs: ArrayVec<SealJob<'_>, BURST> = bufs
                .iter_mut()
                .zip(seqs)
                .map(|(b, s)| encap_prepare(b, &sa, s, &OUTER).unwrap())
                .collect();
            seal_burst(eng, &mut bufs, &mut jobs);
            assert!(jobs.iter().all(|j| j.sealed()));
            pkts += BURST as u64;
        }
    }
    (pkts, start.elapsed())
}

/// Inbound pipeline: parse, replay check, open a burst, finish, accept.
fn decap(kind: EngineKind, inner_len: usize, round: Duration) -> (u64, Duration) {
    let out = OutboundSa::new(
        SPI,
        SaKey::new(kind, Algorithm::Aes128Gcm, &KEY, SALT).unwrap(),
        true,
    );
    let inb = InboundSa::new(
        SPI,
        SaKey::new(kind, Algorithm::Aes128Gcm, &KEY, SALT).unwrap(),
        true,
    );
    let pkt = inner_packet(inner_len);
    let eng = engine(kind);
    let mut bufs: Burst<PoolBuf> = (0..BURST)
        .map(|_| PoolBuf::from_slice(&pkt).unwrap())
        .collect();
    let mut jobs: ArrayVec<SealJob<'_>, BURST> = bufs
        .iter_mut()
        .zip(out.reserve(BURST as u64).unwrap())
        .map(|(b, s)| encap_prepare(b, &out, s, &OUTER).unwrap())
        .collect();
    seal_burst(eng, &mut bufs, &mut jobs);
    let pristine: Vec<Vec<u8>> = bufs.iter().map(|b| b.data().to_vec()).collect();
    let outer_len = pristine[0].len();

    let (mut pkts, mut spent) = (0u64, Duration::ZERO);
    let wall = Instant::now();
    while wall.elapsed() < round {
        for (b, p) in bufs.iter_mut().zip(&pristine) {
            b.set_range(HEADROOM, HEADROOM + outer_len);
            b.data_mut().copy_from_slice(p);
        }
        let mut window = ReplayWindow::new();
        let t0 = Instant::now();
        let mut views = ArrayVec::<_, BURST>::new();
        let mut open: ArrayVec<OpenJob<'_>, BURST> = ArrayVec::new();
        for b in bufs.iter() {
            let Ok(view) = decap_parse(b.data(), ESP_UDP_PORT) else {
                continue;
            };
            if view.spi != inb.spi {
                continue;
            }
            let seq = window.infer(view.seq_low, inb.esn);
            if window.check(seq).is_err() {
                continue;
            }
            open.push(OpenJob::new(&inb, &view, seq));
            views.push(view);
        }
        open_burst(eng, &mut bufs, &mut open);
        let mut good = 0u64;
        for ((b, job), view) in bufs.iter_mut().zip(&open).zip(&views) {
            if job.verified() && decap_finish(b, view).is_ok() && window.accept(job.seq()).is_ok() {
                good += 1;
            }
        }
        spent += t0.elapsed();
        assert_eq!(good, BURST as u64);
        pkts += good;
    }
    (pkts, spent)
}

fn main() {
    // `cargo bench` passes `--bench`; `policer` runs the policer table alone,
    // `engines` the engine comparison alone.
    let policer_only = std::env::args().skip(1).any(|a| a == "policer");
    let engines_only = std::env::args().skip(1).any(|a| a == "engines");
    let round = Duration::from_millis(env_u64("BENCH_ROUND_MS", 100));
    let rounds = env_u64("BENCH_ROUNDS", 11).max(1);
    if let Some(core) = core_affinity::get_core_ids().and_then(|c| c.last().copied()) {
        core_affinity::set_for_current(core);
    }
    PoolBuf::warm_thread_pool(4 * BURST);
    println!(
        "ESP pipeline, one core, AES-128-GCM, ESN, bursts of {BURST}; median of {rounds} x {} ms",
        round.as_millis()
    );
    println!(
        "compiled with target features: aes={} pclmulqdq={} avx2={} vaes={} avx512f={}",
        cfg!(target_feature = "aes"),
        cfg!(target_feature = "pclmulqdq"),
        cfg!(target_feature = "avx2"),
        cfg!(target_feature = "vaes"),
        cfg!(target_feature = "avx512f"),
    );
    for kind in EngineKind::ALL {
        println!("engine {}: {}", kind.name(), kind.describe());
    }
    println!();
    if engines_only {
        engine_table(rounds, round);
        return;
    }
    if !policer_only {
        pipeline_table(rounds, round);
    }
    policer_table(rounds, round);
    if !policer_only {
        println!();
        engine_table(rounds, round);
    }
}

/// Raw seal and open of every engine at 64 and 1400 B, the engines taking
/// turns within each round; median, best, and median ratio to ring per round.
fn engine_table(rounds: u64, round: Duration) {
    println!("| op | inner B | engine | median Mpps | best Mpps | median GB/s | **median ratio to ring** |");
    println!("|---|---:|---|---:|---:|---:|---:|");
    for (op, run) in [
        (
            "seal",
            raw_seal as fn(EngineKind, usize, Duration) -> (u64, Duration),
        ),
        ("open", raw_open),
    ] {
        for &size in &POLICER_SIZES {
            let payload = (size + pad_len(size) + 2) as f64;
            for kind in EngineKind::ALL {
                run(kind, size, round / 4); // warm up
            }
            let mut pps: Vec<Vec<f64>> = vec![Vec::new(); EngineKind::ALL.len()];
            let mut ratio: Vec<Vec<f64>> = vec![Vec::new(); EngineKind::ALL.len()];
            for _ in 0..rounds {
                let this: Vec<f64> = EngineKind::ALL
                    .iter()
                    .map(|&kind| {
                        let (pkts, t) = run(kind, size, round);
                        pkts as f64 / t.as_secs_f64()
                    })
                    .collect();
                let ring = this[0];
                for (i, &p) in this.iter().enumerate() {
                    pps[i].push(p);
                    ratio[i].push(p / ring);
                }
            }
            for (i, kind) in EngineKind::ALL.iter().enumerate() {
                let best = pps[i].iter().copied().fold(0.0, f64::max);
                let med = median(pps[i].clone());
                println!(
                    "| {op} | {size} | {} | {:.2} | {:.2} | {:.2} | **{:.2}** |",
                    kind.name(),
                    med / 1e6,
                    best / 1e6,
                    med * payload / 1e9,
                    median(ratio[i].clone()),
                );
            }
        }
    }
    println!();
    println!("GB/s count ESP payload bytes (inner + padding + trailer); ratio: median over rounds of (engine pps / ring pps), all engines measured back to back in each round.");
}

/// Encap and decap against the raw engine, every size and engine.
fn pipeline_table(rounds: u64, round: Duration) {
    println!("| engine | inner B | raw seal Mpps | raw seal GB/s | encap Mpps | encap GB/s | encap/raw | raw open Mpps | decap Mpps | decap GB/s | decap/raw |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for kind in EngineKind::ALL {
        for &size in &SIZES {
            let payload = (size + pad_len(size) + 2) as f64;
            let (seal, enc, enc_ratio) = compare(
                rounds,
                round,
                |r| raw_seal(kind, size, r),
                |r| encap(kind, size, 0, r),
            );
            let (open, dec, dec_ratio) = compare(
                rounds,
                round,
                |r| raw_open(kind, size, r),
                |r| decap(kind, size, r),
            );
            println!(
                "| {} | {size} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                kind.name(),
                seal / 1e6,
                seal * payload / 1e9,
                enc / 1e6,
                enc * size as f64 / 1e9,
                enc_ratio,
                open / 1e6,
                dec / 1e6,
                dec * size as f64 / 1e9,
                dec_ratio,
            );
        }
    }
    println!();
    println!("raw GB/s count ESP payload bytes (inner + padding + trailer); encap/decap GB/s count inner bytes.");
    println!("encap/raw, decap/raw: median over rounds of (pipeline pps / raw pps), each round measuring both back to back.");
    println!();
}

/// Encap with a rate far above the load against encap without a rate.
fn policer_table(rounds: u64, round: Duration) {
    println!(
        "| engine | inner B | encap Mpps, no rate | encap Mpps, rate 10 Tb/s | policed/unpoliced |"
    );
    println!("|---|---:|---:|---:|---:|");
    for kind in EngineKind::ALL {
        for &size in &POLICER_SIZES {
            let (plain, policed, ratio) = compare(
                rounds,
                round,
                |r| encap(kind, size, 0, r),
                |r| encap(kind, size, FAR_ABOVE_BPS, r),
            );
            println!(
                "| {} | {size} | {:.2} | {:.2} | {:.3} |",
                kind.name(),
                plain / 1e6,
                policed / 1e6,
                ratio,
            );
        }
    }
    println!();
    println!("policed/unpoliced: median over rounds of (policed pps / unpoliced pps), both measured back to back.");
    let ns: Vec<f64> = (0..rounds).map(|_| admit_ns_per_burst(round)).collect();
    println!(
        "policer alone (clock read + admit of 32 lengths + one CAS, one thread): {:.1} ns per burst",
        median(ns)
    );
}

/// Nanoseconds per burst of the policer alone, as `encap_burst` uses it.
fn admit_ns_per_burst(round: Duration) -> f64 {
    let sa = OutboundSa::new(
        SPI,
        SaKey::new(EngineKind::Ring, Algorithm::Aes128Gcm, &KEY, SALT).unwrap(),
        true,
    )
    .with_rate(FAR_ABOVE_BPS);
    let lens = [1400usize; BURST];
    let mut bursts = 0u64;
    let start = Instant::now();
    while start.elapsed() < round {
        for _ in 0..1024 {
            let n = sa
                .policer()
                .admit(MonotonicClock.now_ns(), black_box(&lens).iter().copied());
            assert_eq!(n, BURST);
            bursts += 1;
        }
    }
    start.elapsed().as_nanos() as f64 / bursts as f64
}
