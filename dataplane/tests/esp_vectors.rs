//! Known-answer tests: the published AES-GCM ESP test cases of
//! draft-mcgrew-gcm-test-01 (see tests/data/gcm-esp-test-cases.txt) through
//! every engine built in (`ring`, `aes-gcm`, and `ipsec-mb` with its cargo
//! feature), the ESP encapsulation and the ESP decapsulation, and round trips
//! between every pair of engines.

use std::net::{IpAddr, Ipv4Addr};

use scistream_dataplane::backend::pool::PoolBuf;
use scistream_dataplane::backend::PacketBuf;
use scistream_dataplane::crypto::{engine, Algorithm, EngineKind, OpenOp, SaKey, SealOp};
use scistream_dataplane::esp::decap::decap_finish_any;
use scistream_dataplane::esp::encap::encap_prepare_raw;
use scistream_dataplane::esp::{
    decap_finish, decap_parse, open_burst, seal_burst, EspError, EspView, InboundSa, OpenJob,
    OutboundSa, Outer, ReplayWindow, ESP_UDP_PORT, ICV_LEN,
};
use smoltcp::wire::{IpAddress, UdpPacket};

const VECTORS: &str = include_str!("data/gcm-esp-test-cases.txt");
const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const DST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// One published test case.
#[derive(Debug, Default, Clone)]
struct Case {
    number: u32,
    key: Vec<u8>,
    salt: [u8; 4],
    iv: u64,
    spi: u32,
    seq: u64,
    esn: bool,
    aad: Vec<u8>,
    plaintext: Vec<u8>,
    ciphertext: Vec<u8>,
    packet: Vec<u8>,
}

impl Case {
    fn algorithm(&self) -> Algorithm {
        Algorithm::from_key_len(self.key.len()).expect("AES-128 or AES-256 key")
    }
    fn key(&self, kind: EngineKind) -> SaKey {
        SaKey::new(kind, self.algorithm(), &self.key, self.salt).unwrap()
    }
    /// Pad length and next header from the end of the published plaintext.
    fn trailer(&self) -> (usize, u8) {
        let n = self.plaintext.len();
        (usize::from(self.plaintext[n - 2]), self.plaintext[n - 1])
    }
    /// The inner packet: the plaintext without padding and trailer.
    fn inner(&self) -> &[u8] {
        let (pad, _) = self.trailer();
        &self.plaintext[..self.plaintext.len() - pad - 2]
    }
}

fn hex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() & 1, 0, "odd hex length: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

/// Parses the data file: `name = hex` fields, continuation lines indented,
/// cases separated by `case = N`.
fn cases() -> Vec<Case> {
    let mut fields: Vec<Vec<(String, String)>> = Vec::new();
    for line in VECTORS.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if line.starts_with(' ') {
            let last = fields.last_mut().unwrap().last_mut().unwrap();
            last.1.push_str(line.trim());
            continue;
        }
        let (name, value) = line.split_once('=').expect("name = value");
        let (name, value) = (name.trim().to_string(), value.trim().to_string());
        if name == "case" {
            fields.push(Vec::new());
        }
        fields.last_mut().unwrap().push((name, value));
    }
    fields
        .into_iter()
        .map(|f| {
            let mut c = Case::default();
            for (name, value) in f {
                match name.as_str() {
                    "case" => c.number = value.parse().unwrap(),
                    "key" => c.key = hex(&value),
                    "salt" => c.salt = hex(&value).try_into().unwrap(),
                    "iv" => c.iv = be(&hex(&value)),
                    "spi" => c.spi = be(&hex(&value)) as u32,
                    "seq" => {
                        let b = hex(&value);
                        c.esn = b.len() == 8;
                        c.seq = be(&b);
                    }
                    "aad" => c.aad = hex(&value),
                    "plaintext" => c.plaintext = hex(&value),
                    "ciphertext" => c.ciphertext = hex(&value),
                    "packet" => c.packet = hex(&value),
                    other => panic!("unknown field {other}"),
                }
            }
            c
        })
        .collect()
}

/// An outer IPv4 + UDP (4500 → 4500) packet around `esp`, with a zero UDP
/// checksum or a computed one.
fn outer_around(esp: &[u8], udp_checksum: bool) -> Vec<u8> {
    let total = 28 + esp.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&SRC.octets());
    p[16..20].copy_from_slice(&DST.octets());
    let mut sum: u32 = p[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..22].copy_from_slice(&ESP_UDP_PORT.to_be_bytes());
    p[22..24].copy_from_slice(&ESP_UDP_PORT.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + esp.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(esp);
    if udp_checksum {
        UdpPacket::new_unchecked(&mut p[20..])
            .fill_checksum(&IpAddress::Ipv4(SRC), &IpAddress::Ipv4(DST));
        assert_ne!(&p[26..28], &[0, 0]);
    }
    p
}

#[test]
fn the_transcribed_cases_are_consistent() {
    let cases = cases();
    let numbers: Vec<u32> = cases.iter().map(|c| c.number).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14]);
    assert!(
        cases.iter().filter(|c| c.esn).count() >= 6,
        "ESN cases present"
    );
    for c in &cases {
        let mut aad = c.spi.to_be_bytes().to_vec();
        if c.esn {
            aad.extend_from_slice(&c.seq.to_be_bytes());
        } else {
            aad.extend_from_slice(&(c.seq as u32).to_be_bytes());
        }
        assert_eq!(c.aad, aad, "case {}", c.number);
        let mut packet = c.spi.to_be_bytes().to_vec();
        packet.extend_from_slice(&(c.seq as u32).to_be_bytes());
        packet.extend_from_slice(&c.iv.to_be_bytes());
        packet.extend_from_slice(&c.ciphertext);
        assert_eq!(c.packet, packet, "case {}", c.number);
        assert_eq!(c.ciphertext.len(), c.plaintext.len() + ICV_LEN);
        // RFC 4303 default padding: 1, 2, 3, ... and the minimum that aligns to 4.
        let (pad, _) = c.trailer();
        let n = c.plaintext.len();
        assert_eq!(&c.plaintext[n - 2 - pad..n - 2], &[1u8, 2, 3][..pad]);
        assert_eq!(pad, scistream_dataplane::esp::pad_len(c.inner().len()));
    }
}

#[test]
fn every_engine_built_in_is_tested() {
    assert!(EngineKind::ALL.contains(&EngineKind::Ring));
    assert!(EngineKind::ALL.contains(&EngineKind::AesGcm));
    #[cfg(feature = "ipsec-mb")]
    assert!(EngineKind::ALL.contains(&EngineKind::IpsecMb));
    assert!(EngineKind::ALL.iter().all(|k| k.is_available()));
}

#[test]
fn every_engine_reproduces_every_case() {
    for c in cases() {
        for kind in EngineKind::ALL {
            let key = c.key(kind);
            let mut data = c.plaintext.clone();
            let mut tag = [0u8; 16];
            let mut ops = [SealOp::new(&key, c.iv, &c.aad, &mut data, &mut tag)];
            engine(kind).seal_burst(&mut ops);
            assert!(ops[0].ok);
            let n = c.plaintext.len();
            assert_eq!(data, c.ciphertext[..n], "case {} {kind:?}", c.number);
            assert_eq!(tag, c.ciphertext[n..], "case {} {kind:?} ICV", c.number);

            let tag: [u8; 16] = c.ciphertext[n..].try_into().unwrap();
            let mut ops = [OpenOp::new(&key, c.iv, &c.aad, &mut data, &tag)];
            engine(kind).open_burst(&mut ops);
            assert!(ops[0].ok, "case {} {kind:?}", c.number);
            assert_eq!(data, c.plaintext);
        }
    }
}

#[test]
fn encapsulation_produces_the_published_esp_packet() {
    for c in cases() {
        let (_, next_header) = c.trailer();
        for kind in EngineKind::ALL {
            let sa = OutboundSa::new(c.spi, c.key(kind), c.esn);
            let mut bufs = [PoolBuf::from_slice(c.inner()).unwrap()];
            let job = encap_prepare_raw(
                &mut bufs[0],
                &sa,
                c.seq,
                c.iv,
                next_header,
                &Outer::new(IpAddr::V4(SRC), IpAddr::V4(DST)),
            )
            .unwrap();
            assert_eq!(job.aad(), &c.aad[..], "case {}", c.number);
            // Before sealing: our padding and trailer give the published plaintext exactly.
            assert_eq!(
                &bufs[0].data()[job.payload()],
                &c.plaintext[..],
                "case {}",
                c.number
            );
            let mut jobs = [job];
            seal_burst(engine(kind), &mut bufs, &mut jobs);
            assert!(jobs[0].sealed());
            let d = bufs[0].data();
            assert_eq!(&d[28..], &c.packet[..], "case {} {kind:?}", c.number);
            assert_eq!(
                &d[..28],
                &outer_around(&c.packet, false)[..28],
                "outer headers"
            );
        }
    }
}

#[test]
fn decapsulation_accepts_every_published_packet() {
    for c in cases() {
        for (i, kind) in EngineKind::ALL.into_iter().enumerate() {
            let udp_checksum = i % 2 == 1;
            let wire = outer_around(&c.packet, udp_checksum);
            if c.spi == 0 {
                // Case 4 uses SPI 0, which RFC 4303 reserves and RFC 3948 makes the
                // IKE non-ESP marker on port 4500: never taken as ESP.
                assert_eq!(decap_parse(&wire, ESP_UDP_PORT), Err(EspError::NotEsp));
                continue;
            }
            let view = decap_parse(&wire, ESP_UDP_PORT).unwrap();
            assert_eq!(
                (view.spi, view.seq_low, view.iv, view.payload_len),
                (c.spi, c.seq as u32, c.iv, c.plaintext.len()),
                "case {}",
                c.number
            );
            // The receiver infers the high half from its window (top just below seq).
            let mut window = ReplayWindow::new();
            if c.seq > 1 {
                window.accept(c.seq - 1).unwrap();
            }
            let seq = window.infer(view.seq_low, c.esn);
            assert_eq!(seq, c.seq, "case {}", c.number);
            window.check(seq).unwrap();

            let sa = InboundSa::new(c.spi, c.key(kind), c.esn);
            let mut bufs = [PoolBuf::from_slice(&wire).unwrap()];
            let mut jobs = [OpenJob::new(&sa, &view, seq)];
            open_burst(engine(kind), &mut bufs, &mut jobs);
            assert_eq!(jobs[0].result(), Ok(()), "case {} {kind:?}", c.number);
            assert_eq!(
                &bufs[0].data()[view.payload_offset..][..c.plaintext.len()],
                &c.plaintext[..]
            );
            // The published cases carry next header 1, which the gateway does not
            // carry: refused, leaving the packet as it was.
            let [mut b] = bufs;
            let before = b.data().to_vec();
            assert_eq!(decap_finish(&mut b, &view), Err(EspError::BadNextHeader));
            assert_eq!(b.data(), &before[..]);
            assert_eq!(decap_finish_any(&mut b, &view), Ok(1));
            assert_eq!(b.data(), c.inner(), "case {} {kind:?}", c.number);
            window.accept(seq).unwrap();
            assert_eq!(window.check(seq), Err(EspError::Replay));
        }
    }
}

/// Opens `packet` (an ESP packet, maybe altered) under the case's SA with the
/// given high half of the sequence number; true if it authenticates.
fn opens(c: &Case, kind: EngineKind, packet: &[u8], seq_high: u32) -> bool {
    let wire = outer_around(packet, false);
    let view = EspView {
        spi: be(&packet[0..4]) as u32,
        seq_low: be(&packet[4..8]) as u32,
        iv: be(&packet[8..16]),
        esp_offset: 28,
        payload_offset: 44,
        payload_len: packet.len() - 16 - ICV_LEN,
    };
    let seq = (u64::from(seq_high) << 32) | u64::from(view.seq_low);
    let sa = InboundSa::new(c.spi, c.key(kind), c.esn);
    let mut bufs = [PoolBuf::from_slice(&wire).unwrap()];
    let mut jobs = [OpenJob::new(&sa, &view, seq)];
    open_burst(engine(kind), &mut bufs, &mut jobs);
    jobs[0].verified()
}

#[test]
fn a_one_bit_change_anywhere_fails_authentication() {
    for c in cases() {
        let high = if c.esn { (c.seq >> 32) as u32 } else { 0 };
        for kind in EngineKind::ALL {
            assert!(
                opens(&c, kind, &c.packet, high),
                "case {} unaltered",
                c.number
            );
            // SPI, seq (low), IV, ciphertext, ICV: every bit on the wire.
            for i in 0..c.packet.len() {
                for bit in 0..8 {
                    let mut p = c.packet.clone();
                    p[i] ^= 1 << bit;
                    assert!(
                        !opens(&c, kind, &p, high),
                        "case {} byte {i} bit {bit}",
                        c.number
                    );
                }
            }
            // The high half of an extended sequence number is in the AAD only.
            if c.esn {
                for bit in 0..32 {
                    assert!(
                        !opens(&c, kind, &c.packet, high ^ (1 << bit)),
                        "case {} high bit {bit}",
                        c.number
                    );
                }
            }
        }
    }
}

#[test]
fn every_engine_opens_what_every_other_sealed() {
    for c in cases() {
        let n = c.plaintext.len();
        for sealer in EngineKind::ALL {
            let key = c.key(sealer);
            let mut data = c.plaintext.clone();
            let mut tag = [0u8; 16];
            let mut ops = [SealOp::new(&key, c.iv, &c.aad, &mut data, &mut tag)];
            engine(sealer).seal_burst(&mut ops);
            assert!(ops[0].ok);
            assert_eq!(
                [&data[..], &tag[..]].concat(),
                c.ciphertext,
                "case {} {sealer:?}",
                c.number
            );
            for opener in EngineKind::ALL {
                let key = c.key(opener);
                let mut opened = data.clone();
                let mut ops = [OpenOp::new(&key, c.iv, &c.aad, &mut opened, &tag)];
                engine(opener).open_burst(&mut ops);
                assert!(ops[0].ok, "case {} {sealer:?} -> {opener:?}", c.number);
                assert_eq!(opened, c.plaintext);

                // A tampered tag, and a tampered AAD, are refused by every engine.
                let mut bad_tag = tag;
                bad_tag[15] ^= 1;
                let mut opened = data.clone();
                let mut ops = [OpenOp::new(&key, c.iv, &c.aad, &mut opened, &bad_tag)];
                engine(opener).open_burst(&mut ops);
                assert!(!ops[0].ok, "case {} {opener:?} bad tag", c.number);
                let mut bad_aad = c.aad.clone();
                bad_aad[0] ^= 0x80;
                let mut opened = data.clone();
                let mut ops = [OpenOp::new(&key, c.iv, &bad_aad, &mut opened, &tag)];
                engine(opener).open_burst(&mut ops);
                assert!(!ops[0].ok, "case {} {opener:?} bad AAD", c.number);
            }
        }
        assert_eq!(c.ciphertext.len(), n + 16);
    }
}

#[test]
fn a_burst_of_every_case_seals_and_opens_in_one_call_per_engine() {
    let cases = cases();
    for kind in EngineKind::ALL {
        let keys: Vec<SaKey> = cases.iter().map(|c| c.key(kind)).collect();
        let mut data: Vec<Vec<u8>> = cases.iter().map(|c| c.plaintext.clone()).collect();
        let mut tags = vec![[0u8; 16]; cases.len()];
        let mut ops: Vec<SealOp<'_>> = cases
            .iter()
            .zip(&keys)
            .zip(data.iter_mut().zip(tags.iter_mut()))
            .map(|((c, k), (d, t))| SealOp::new(k, c.iv, &c.aad, d, t))
            .collect();
        engine(kind).seal_burst(&mut ops);
        assert!(ops.iter().all(|o| o.ok));
        drop(ops);
        for ((c, d), t) in cases.iter().zip(&data).zip(&tags) {
            assert_eq!(
                [&d[..], &t[..]].concat(),
                c.ciphertext,
                "case {} {kind:?}",
                c.number
            );
        }
        // Every other op's tag is flipped: exactly those fail, the rest open.
        for t in tags.iter_mut().skip(1).step_by(2) {
            t[0] ^= 1;
        }
        let mut ops: Vec<OpenOp<'_>> = cases
            .iter()
            .zip(&keys)
            .zip(data.iter_mut().zip(tags.iter()))
            .map(|((c, k), (d, t))| OpenOp::new(k, c.iv, &c.aad, d, t))
            .collect();
        engine(kind).open_burst(&mut ops);
        let ok: Vec<bool> = ops.iter().map(|o| o.ok).collect();
        drop(ops);
        for (i, (c, d)) in cases.iter().zip(&data).enumerate() {
            assert_eq!(ok[i], i % 2 == 0, "case {} {kind:?}", c.number);
            if ok[i] {
                assert_eq!(d, &c.plaintext);
            }
        }
    }
}
