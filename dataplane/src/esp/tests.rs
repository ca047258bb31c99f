//! Encapsulation and decapsulation tests: layout, round trips, malformed input.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::backend::pool::{PoolBuf, CAPACITY};
use crate::backend::PacketBuf;
use crate::crypto::{engine, Algorithm, EngineKind, SaKey};
use crate::wire::{checksum, ipv4};

const SPI: u32 = 0x1234_5678;
const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

fn sa_pair(kind: EngineKind, alg: Algorithm, esn: bool) -> (OutboundSa, InboundSa) {
    let key: Vec<u8> = (0..alg.key_len() as u8)
        .map(|i| i.wrapping_mul(37) ^ 0x5a)
        .collect();
    let salt = [0xde, 0xad, 0xbe, 0xef];
    (
        OutboundSa::new(SPI, SaKey::new(kind, alg, &key, salt).unwrap(), esn),
        InboundSa::new(SPI, SaKey::new(kind, alg, &key, salt).unwrap(), esn),
    )
}

/// An inner "IPv4" packet of `len` bytes: version nibble 4, TOS 0xb8 (EF), then a pattern.
fn inner(len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    p[0] = 0x45;
    if len > 1 {
        p[1] = 0xb8;
    }
    p
}

/// Encapsulates and seals `inner` with `seq`; returns the outer packet's buffer.
fn seal_one(sa: &OutboundSa, inner: &[u8], seq: u64) -> PoolBuf {
    let mut bufs = [PoolBuf::from_slice(inner).unwrap()];
    let job = encap_prepare(
        &mut bufs[0],
        sa,
        seq,
        &Outer::new(IpAddr::V4(A), IpAddr::V4(B)),
    )
    .unwrap();
    let mut jobs = [job];
    seal_burst(engine(sa.key.engine()), &mut bufs, &mut jobs);
    assert!(jobs[0].sealed());
    let [b] = bufs;
    b
}

/// The full receive path for one packet: parse, infer, check, open, finish, accept.
fn receive(sa: &InboundSa, window: &mut ReplayWindow, buf: PoolBuf) -> Result<PoolBuf, EspError> {
    let view = decap_parse(buf.data(), ESP_UDP_PORT)?;
    if view.spi != sa.spi {
        return Err(EspError::UnknownSpi);
    }
    let seq = window.infer(view.seq_low, sa.esn);
    window.check(seq)?;
    let mut bufs = [buf];
    let mut jobs = [OpenJob::new(sa, &view, seq)];
    open_burst(engine(sa.key.engine()), &mut bufs, &mut jobs);
    jobs[0].result()?;
    let [mut b] = bufs;
    decap_finish(&mut b, &view)?;
    window.accept(seq)?;
    Ok(b)
}

#[test]
fn layout_of_an_encapsulated_packet() {
    let (out, _) = sa_pair(EngineKind::Ring, Algorithm::Aes128Gcm, true);
    let seq = 0x0000_0001_0000_0005;
    for len in [20usize, 21, 22, 23] {
        let pkt = inner(len);
        let mut buf = PoolBuf::from_slice(&pkt).unwrap();
        let outer = Outer {
            ttl: 33,
            sport: 40000,
            ..Outer::new(IpAddr::V4(A), IpAddr::V4(B))
        };
        let job = encap_prepare(&mut buf, &out, seq, &outer).unwrap();
        let d = buf.data();
        let pad = pad_len(len);
        assert_eq!(d.len(), len + overhead(len));
        // Outer IPv4: valid checksum, DF, ident 0, UDP, TTL, DSCP copied (EF = 46), ECN 0.
        let ip = ipv4::parse(d).unwrap();
        assert_eq!((ip.src, ip.dst, ip.ttl, ip.protocol), (A, B, 33, 17));
        assert!(ip.dont_frag);
        assert_eq!(ip.total_len, d.len());
        assert_eq!(&d[4..6], &[0, 0]);
        assert_eq!(d[1], 0xb8);
        // UDP: ports, length, checksum 0.
        assert_eq!(&d[20..22], &40000u16.to_be_bytes());
        assert_eq!(&d[22..24], &4500u16.to_be_bytes());
        assert_eq!(
            usize::from(u16::from_be_bytes([d[24], d[25]])),
            d.len() - 20
        );
        assert_eq!(&d[26..28], &[0, 0]);
        // ESP header: SPI and low half of seq; IV = the 64-bit seq.
        assert_eq!(&d[28..32], &SPI.to_be_bytes());
        assert_eq!(&d[32..36], &5u32.to_be_bytes());
        assert_eq!(&d[36..44], &seq.to_be_bytes());
        // Inner untouched, then padding 1, 2, 3.., pad length, next header 4.
        assert_eq!(&d[44..44 + len], &pkt[..]);
        let t = 44 + len;
        assert_eq!(&d[t..t + pad], &[1, 2, 3][..pad]);
        assert_eq!((d[t + pad], d[t + pad + 1]), (pad as u8, 4));
        assert_eq!((len + pad + 2) % 4, 0);
        // The job: AAD SPI ‖ seq-high ‖ seq-low, payload and ICV ranges.
        let mut aad = SPI.to_be_bytes().to_vec();
        aad.extend_from_slice(&seq.to_be_bytes());
        assert_eq!(job.aad(), &aad[..]);
        assert_eq!(job.iv(), seq);
        assert_eq!(job.payload(), 44..44 + len + pad + 2);
        assert_eq!(job.icv(), 44 + len + pad + 2..d.len());
        assert!(!job.sealed());
    }
}

#[test]
fn aad_without_esn_is_spi_and_low_half() {
    let (out, _) = sa_pair(EngineKind::Ring, Algorithm::Aes128Gcm, false);
    let mut buf = PoolBuf::from_slice(&inner(40)).unwrap();
    let job = encap_prepare(
        &mut buf,
        &out,
        0x1_0000_0007,
        &Outer::new(IpAddr::V4(A), IpAddr::V4(B)),
    );
    // Without ESN the sequence space ends at 2^32 - 1.
    assert_eq!(job.unwrap_err(), EspError::SeqExhausted);
    let job = encap_prepare(&mut buf, &out, 7, &Outer::new(IpAddr::V4(A), IpAddr::V4(B))).unwrap();
    assert_eq!(job.aad(), &[0x12, 0x34, 0x56, 0x78, 0, 0, 0, 7]);
}

#[test]
fn round_trip_every_length_both_engines_both_key_sizes() {
    let lens: Vec<usize> = (1..=1500).chain([8938, 9000]).collect();
    for kind in EngineKind::ALL {
        for alg in [Algorithm::Aes128Gcm, Algorithm::Aes256Gcm] {
            for esn in [true, false] {
                let (out, inb) = sa_pair(kind, alg, esn);
                let mut window = ReplayWindow::new();
                for &len in &lens {
                    let pkt = inner(len);
                    let seq = out.reserve(1).unwrap().start;
                    let b = seal_one(&out, &pkt, seq);
                    assert_eq!(b.len(), len + overhead(len));
                    if len >= 16 {
                        assert_ne!(&b.data()[44..60], &pkt[..16], "not encrypted");
                    }
                    let b = receive(&inb, &mut window, b)
                        .unwrap_or_else(|e| panic!("{kind:?} {alg:?} esn {esn} len {len}: {e}"));
                    assert_eq!(b.data(), &pkt[..], "{kind:?} {alg:?} len {len}");
                }
            }
        }
    }
}

#[test]
fn every_engine_produces_the_same_bytes_and_opens_every_other() {
    for alg in [Algorithm::Aes128Gcm, Algorithm::Aes256Gcm] {
        for sealer in EngineKind::ALL {
            for opener in EngineKind::ALL {
                let (out, _) = sa_pair(sealer, alg, true);
                let (reference, _) = sa_pair(EngineKind::Ring, alg, true);
                let (_, inb) = sa_pair(opener, alg, true);
                for len in [1usize, 63, 64, 65, 1400, 9000] {
                    let pkt = inner(len);
                    let a = seal_one(&out, &pkt, 1000 + len as u64);
                    let r = seal_one(&reference, &pkt, 1000 + len as u64);
                    assert_eq!(a.data(), r.data(), "{sealer:?} {alg:?} len {len}");
                    let a = receive(&inb, &mut ReplayWindow::new(), a)
                        .unwrap_or_else(|e| panic!("{sealer:?} -> {opener:?} {alg:?} {len}: {e}"));
                    assert_eq!(a.data(), &pkt[..]);
                }
            }
        }
    }
}

#[test]
fn a_burst_of_mixed_sas_seals_and_opens_in_one_call_each() {
    let (out1, in1) = sa_pair(EngineKind::Ring, Algorithm::Aes128Gcm, true);
    let (out2, in2) = sa_pair(EngineKind::Ring, Algorithm::Aes256Gcm, false);
    let outer = Outer::new(IpAddr::V4(A), IpAddr::V4(B));
    let mut bufs: Vec<PoolBuf> = (0..40)
        .map(|i| PoolBuf::from_slice(&inner(20 + i)).unwrap())
        .collect();
    let seqs1 = out1.reserve(20).unwrap();
    let seqs2 = out2.reserve(20).unwrap();
    let mut jobs: Vec<SealJob<'_>> = bufs
        .iter_mut()
        .zip(seqs1.chain(seqs2))
        .enumerate()
        .map(|(i, (b, s))| encap_prepare(b, if i < 20 { &out1 } else { &out2 }, s, &outer).unwrap())
        .collect();
    seal_burst(engine(EngineKind::Ring), &mut bufs, &mut jobs);
    assert!(jobs.iter().all(|j| j.sealed()));

    let views: Vec<EspView> = bufs
        .iter()
        .map(|b| decap_parse(b.data(), 4500).unwrap())
        .collect();
    let mut jobs: Vec<OpenJob<'_>> = views
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let sa = if i < 20 { &in1 } else { &in2 };
            OpenJob::new(sa, v, u64::from(v.seq_low))
        })
        .collect();
    // Corrupt one packet's ciphertext: only it fails.
    bufs[33].data_mut()[50] ^= 1;
    open_burst(engine(EngineKind::Ring), &mut bufs, &mut jobs);
    for (i, j) in jobs.iter().enumerate() {
        assert_eq!(j.verified(), i != 33, "packet {i}");
    }
    for (i, (b, v)) in bufs
        .iter_mut()
        .zip(&views)
        .enumerate()
        .filter(|(i, _)| *i != 33)
    {
        assert_eq!(decap_finish(b, v), Ok(4));
        assert_eq!(b.data(), &inner(20 + i)[..]);
    }
}

#[test]
fn jobs_without_buffers_stay_unsealed() {
    let (out, _) = sa_pair(EngineKind::Ring, Algorithm::Aes128Gcm, true);
    let mut bufs = [
        PoolBuf::from_slice(&inner(30)).unwrap(),
        PoolBuf::from_slice(&inner(30)).unwrap(),
    ];
    let mut jobs: Vec<SealJob<'_>> = bufs
        .iter_mut()
        .map(|b| encap_prepare(b, &out, 5, &Outer::new(IpAddr::V4(A), IpAddr::V4(B))).unwrap())
        .collect();
    seal_burst(engine(EngineKind::Ring), &mut bufs[..1], &mut jobs);
    assert!(jobs[0].sealed() && !jobs[1].sealed());
    // A job whose offsets do not fit its buffer is refused, not a panic.
    bufs[0].trim(20);
    seal_burst(engine(EngineKind::Ring), &mut bufs[..1], &mut jobs[..1]);
    assert!(!jobs[0].sealed());
}

#[test]
fn no_room_leaves_the_buffer_unchanged() {
    let (out, _) = sa_pair(EngineKind::Ring, Algorithm::Aes128Gcm, true);
    let pkt = inner(100);
    let mut b = PoolBuf::new();
    assert!(b.set_range(HEAD_LEN, HEAD_LEN + 100)); // exactly enough headroom
    b.data_mut().copy_from_slice(&pkt);
    let mut small = PoolBuf::new();
    assert!(small.set_range(43, 143)); // headroom 43 < 44
    small.data_mut().copy_from_slice(&pkt);
    assert_eq!(
        encap_prepare(
            &mut small,
            &out,
            1,
            &Outer::new(IpAddr::V4(A), IpAddr::V4(B))
        )
        .unwrap_err(),
        EspError::NoRoom
    );
    assert_eq!(small.data(), &pkt[..]);
    let mut tail = PoolBuf::new();
    let end = CAPACITY - (pad_len(100) + 2 + 16) + 1;
    assert!(tail.set_range(end - 100, end));
    tail.data_mut().copy_from_slice(&pkt);
    assert_eq!(
        encap_prepare(
            &mut tail,
            &out,
            1,
            &Outer::new(IpAddr::V4(A), IpAddr::V4(B))
        )
        .unwrap_err(),
        EspError::NoRoom
    );
    assert_eq!((tail.data(), tail.headroom()), (&pkt[..], end - 100));
    assert!(encap_prepare(&mut b, &out, 1, &Outer::new(IpAddr::V4(A), IpAddr::V4(B))).is_ok());
}

#[test]
fn refuses_empty_and_non_ip_inner_packets() {
    let (out, _) = sa_pair(EngineKind::Ring, Algorithm::Aes128Gcm, true);
    let mut empty = PoolBuf::new();
    assert_eq!(
        encap_prepare(
            &mut empty,
            &out,
            1,
            &Outer::new(IpAddr::V4(A), IpAddr::V4(B))
        )
        .unwrap_err(),
        EspError::BadLength
    );
    // Neither IPv4 nor IPv6: refused, untouched.
    let mut v5 = PoolBuf::from_slice(&[0x50; 40]).unwrap();
    assert_eq!(
        encap_prepare(&mut v5, &out, 1, &Outer::new(IpAddr::V4(A), IpAddr::V4(B))).unwrap_err(),
        EspError::BadNextHeader
    );
    assert_eq!(v5.data(), &[0x50; 40]);
}

#[test]
fn ipv6_inner_packets_carry_next_header_41_and_their_traffic_class() {
    let (out, inb) = sa_pair(EngineKind::Ring, Algorithm::Aes128Gcm, true);
    // Version 6, traffic class 0xb8 (DSCP 46, EF), then anything.
    let mut inner = vec![0x6b, 0x80, 0, 0];
    inner.extend_from_slice(&[0xab; 44]);
    let sealed = seal_one(&out, &inner, 1);
    assert_eq!(
        sealed.data()[1] >> 2,
        46,
        "outer DSCP copied from the inner traffic class"
    );
    // decap_finish accepts next header 41 only with an IPv6 inner packet.
    let mut window = ReplayWindow::default();
    let got = receive(&inb, &mut window, sealed).unwrap();
    assert_eq!(got.data(), &inner[..]);
    // An IPv4 packet sealed, then its version nibble changed in flight would fail
    // authentication; what the check refuses is a peer labelling IPv4 as 41.
    let mut lying = inner.clone();
    lying[0] = 0x45;
    let mut buf = PoolBuf::from_slice(&lying).unwrap();
    let job = encap::encap_prepare_raw(
        &mut buf,
        &out,
        2,
        2,
        NEXT_HEADER_IPV6,
        &Outer::new(IpAddr::V4(A), IpAddr::V4(B)),
    )
    .unwrap();
    let mut bufs = [buf];
    let mut jobs = [job];
    seal_burst(engine(EngineKind::Ring), &mut bufs, &mut jobs);
    let [buf] = bufs;
    assert_eq!(
        receive(&inb, &mut window, buf).err(),
        Some(EspError::BadNextHeader)
    );
}

/// Rewrites the outer IPv4 total length and UDP length after a test changed
/// the packet's size, keeping the IPv4 header checksum valid.
fn fix_lengths(d: &mut [u8]) {
    if d.len() < 20 {
        return;
    }
    let total = d.len() as u16;
    d[2..4].copy_from_slice(&total.to_be_bytes());
    d[10..12].copy_from_slice(&[0, 0]);
    let c = checksum::of(&d[..20]);
    d[10..12].copy_from_slice(&c.to_be_bytes());
    if d.len() >= 28 {
        d[24..26].copy_from_slice(&(total - 20).to_be_bytes());
    }
}

fn valid_outer(len: usize) -> Vec<u8> {
    let (out, _) = sa_pair(EngineKind::Ring, Algorithm::Aes128Gcm, true);
    seal_one(&out, &inner(len), 9).data().to_vec()
}

#[test]
fn malformed_headers_each_have_their_own_error() {
    let good = valid_outer(60);
    assert!(decap_parse(&good, 4500).is_ok());

    // Outer IPv4 shorter than its header, or total length beyond the buffer.
    assert_eq!(decap_parse(&good[..19], 4500), Err(EspError::Truncated));
    assert_eq!(
        decap_parse(&good[..good.len() - 1], 4500),
        Err(EspError::Truncated)
    );
    // Truncated UDP header.
    let mut p = good[..25].to_vec();
    fix_lengths(&mut p);
    assert_eq!(decap_parse(&p, 4500), Err(EspError::Truncated));
    // UDP length mismatch (shorter and longer than the IP payload).
    for delta in [-1i32, 1] {
        let mut p = good.clone();
        let l = u16::from_be_bytes([p[24], p[25]]) as i32 + delta;
        p[24..26].copy_from_slice(&(l as u16).to_be_bytes());
        assert_eq!(decap_parse(&p, 4500), Err(EspError::BadLength));
    }
    // Another UDP port.
    assert_eq!(decap_parse(&good, 4501), Err(EspError::NotEsp));
    // Not UDP.
    let mut p = good.clone();
    p[9] = 50;
    assert_eq!(decap_parse(&p, 4500), Err(EspError::NotEsp));
    // NAT keepalive: a single 0xFF byte.
    let mut p = good[..29].to_vec();
    p[28] = 0xff;
    fix_lengths(&mut p);
    assert_eq!(decap_parse(&p, 4500), Err(EspError::NotEsp));
    // IKE's non-ESP marker: SPI 0.
    let mut p = good.clone();
    p[28..32].copy_from_slice(&[0; 4]);
    assert_eq!(decap_parse(&p, 4500), Err(EspError::NotEsp));
    // Truncated ESP header, truncated IV.
    for cut in [28 + 3, 28 + 6, 28 + 12] {
        let mut p = good[..cut].to_vec();
        fix_lengths(&mut p);
        assert_eq!(decap_parse(&p, 4500), Err(EspError::Truncated), "cut {cut}");
    }
    // Too short for the minimal trailer and the ICV.
    for payload in [0usize, 4, 16, 19] {
        let mut p = good[..44 + payload].to_vec();
        fix_lengths(&mut p);
        assert_eq!(
            decap_parse(&p, 4500),
            Err(EspError::TruncatedIcv),
            "{payload}"
        );
    }
    // Encrypted part not a multiple of 4.
    let mut p = good[..good.len() - 1].to_vec();
    fix_lengths(&mut p);
    assert_eq!(decap_parse(&p, 4500), Err(EspError::BadLength));
    // Bad IPv4 lengths.
    let mut p = good.clone();
    p[0] = 0x44;
    assert_eq!(decap_parse(&p, 4500), Err(EspError::BadLength));
    // Ethernet padding after the outer packet is ignored, and stripped by finish.
    let (out, inb) = sa_pair(EngineKind::Ring, Algorithm::Aes128Gcm, true);
    let mut b = seal_one(&out, &inner(1), 3);
    let n = b.len();
    assert!(b.append(7));
    b.data_mut()[n..].fill(0xee);
    let b = receive(&inb, &mut ReplayWindow::new(), b).unwrap();
    assert_eq!(b.data(), &inner(1)[..]);
}

/// Seals a packet whose trailer was altered after layout (so its ICV is valid).
fn sealed_with_trailer(len: usize, alter: impl Fn(&mut [u8], usize)) -> (PoolBuf, InboundSa) {
    let (out, inb) = sa_pair(EngineKind::Ring, Algorithm::Aes128Gcm, true);
    let mut bufs = [PoolBuf::from_slice(&inner(len)).unwrap()];
    let job = encap_prepare(
        &mut bufs[0],
        &out,
        1,
        &Outer::new(IpAddr::V4(A), IpAddr::V4(B)),
    )
    .unwrap();
    let trailer_end = job.payload().end;
    alter(bufs[0].data_mut(), trailer_end);
    let mut jobs = [job];
    seal_burst(engine(EngineKind::Ring), &mut bufs, &mut jobs);
    assert!(jobs[0].sealed());
    let [b] = bufs;
    (b, inb)
}

#[test]
fn malformed_trailers_each_have_their_own_error() {
    // len 21: pad 1 (21 + 1 + 2 = 24).
    let cases: [(u8, u8, Option<u8>, EspError); 5] = [
        (25, 4, None, EspError::BadPadLength), // pad length beyond the payload
        (255, 4, None, EspError::BadPadLength), // far beyond
        (1, 4, Some(9), EspError::BadPadding), // padding byte not 1
        (1, 41, None, EspError::BadNextHeader), // IPv6: not carried yet
        (1, 59, None, EspError::BadNextHeader), // "no next header" (dummy packet)
    ];
    for (pad_len_byte, nh, pad_byte, want) in cases {
        let (b, inb) = sealed_with_trailer(21, |d, end| {
            d[end - 2] = pad_len_byte;
            d[end - 1] = nh;
            if let Some(p) = pad_byte {
                d[end - 3] = p;
            }
        });
        let before = b.data().to_vec();
        let view = decap_parse(b.data(), 4500).unwrap();
        let mut bufs = [b];
        let mut jobs = [OpenJob::new(&inb, &view, 1)];
        open_burst(engine(EngineKind::Ring), &mut bufs, &mut jobs);
        assert!(jobs[0].verified());
        let [mut b2] = bufs;
        let decrypted = b2.data().to_vec();
        assert_eq!(
            decap_finish(&mut b2, &view),
            Err(want),
            "{pad_len_byte} {nh} {pad_byte:?}"
        );
        assert_eq!(b2.data(), &decrypted[..], "unchanged on error");
        assert_ne!(before, decrypted);
    }
    // A longer valid padding from another implementation (pad 5: 1..=5) is accepted.
    let (b, inb) = sealed_with_trailer(21, |d, end| {
        d[end - 2] = 5;
        d[end - 7..end - 2].copy_from_slice(&[1, 2, 3, 4, 5]);
    });
    let b = receive(&inb, &mut ReplayWindow::new(), b).unwrap();
    assert_eq!(b.data(), &inner(21)[..17]);
}

#[test]
fn a_flipped_bit_in_any_authenticated_byte_fails() {
    let (out, inb) = sa_pair(EngineKind::Ring, Algorithm::Aes128Gcm, true);
    let good = seal_one(&out, &inner(33), 77).data().to_vec();
    // SPI (after the lookup), seq, IV, ciphertext, ICV: every bit.
    for i in 32..good.len() {
        for bit in 0..8 {
            let mut p = good.clone();
            p[i] ^= 1 << bit;
            let r = receive(
                &inb,
                &mut ReplayWindow::new(),
                PoolBuf::from_slice(&p).unwrap(),
            );
            assert!(r.is_err(), "byte {i} bit {bit}");
        }
    }
    let mut p = good.clone();
    p[28] ^= 0x80; // SPI: a different SA
    assert_eq!(
        receive(
            &inb,
            &mut ReplayWindow::new(),
            PoolBuf::from_slice(&p).unwrap()
        )
        .err(),
        Some(EspError::UnknownSpi)
    );
    // Replayed after success.
    let mut w = ReplayWindow::new();
    assert!(receive(&inb, &mut w, PoolBuf::from_slice(&good).unwrap()).is_ok());
    assert_eq!(
        receive(&inb, &mut w, PoolBuf::from_slice(&good).unwrap()).err(),
        Some(EspError::Replay)
    );
}

#[test]
fn a_wrong_guess_of_the_high_half_fails_authentication() {
    let (out, inb) = sa_pair(EngineKind::AesGcm, Algorithm::Aes256Gcm, true);
    let seq = (3u64 << 32) | 10;
    let b = seal_one(&out, &inner(50), seq);
    let view = decap_parse(b.data(), 4500).unwrap();
    let mut bufs = [b];
    let mut jobs = [OpenJob::new(&inb, &view, 10)]; // high half 0, not 3
    open_burst(engine(EngineKind::AesGcm), &mut bufs, &mut jobs);
    assert_eq!(jobs[0].result(), Err(EspError::AuthFailed));
}

/// xorshift64*: a small deterministic generator for the fuzz loop.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_truncations_and_flips_never_panic_nor_pass_altered_data() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for kind in EngineKind::ALL {
        let (out, inb) = sa_pair(kind, Algorithm::Aes128Gcm, true);
        for round in 0..3000 {
            let len = 1 + rng.below(300);
            let pkt = inner(len);
            let mut p = seal_one(&out, &pkt, 1 + round).data().to_vec();
            match rng.below(4) {
                0 => p.truncate(rng.below(p.len() + 1)),
                1 => {
                    p.truncate(rng.below(p.len() + 1));
                    fix_lengths(&mut p);
                }
                _ => {
                    for _ in 0..1 + rng.below(3) {
                        let i = rng.below(p.len());
                        p[i] ^= 1 << rng.below(8);
                    }
                }
            }
            let buf = PoolBuf::from_slice(&p).unwrap();
            if let Ok(b) = receive(&inb, &mut ReplayWindow::new(), buf) {
                // Only outer IPv4/UDP bytes outside the ICV's coverage may change.
                assert_eq!(b.data(), &pkt[..], "round {round}");
            }
        }
    }
}
