//! Structured ESP: seals valid packets (inner packet, sequence number and
//! outer family from the input) with one engine, mutates them (bit flips,
//! truncation, link padding) and opens them with another, against a replay
//! window placed anywhere in the 64-bit sequence space (ESN inference
//! across 2^32 boundaries). Checks the outcome exactly:
//! - an untouched packet whose sequence number is new and inside the window
//!   (or ahead of it by at most 2^32 - window) opens to the same inner packet;
//! - one already accepted, too old, or changed anywhere in its ESP part is
//!   refused (a number further ahead may open or not: its high half is a guess);
//! - one changed only in its outer headers opens to the same inner packet or is refused.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use scistream_dataplane::backend::pool::PoolBuf;
use scistream_dataplane::backend::PacketBuf;
use scistream_dataplane::crypto::Algorithm;
use scistream_dataplane::esp::{Outer, ReplayWindow, ESP_HLEN, HEAD_LEN, HEAD_LEN6, IV_LEN};
use scistream_dataplane_fuzz::{engine_kind, receive, sa_pair, seal_with, Bytes};

const W: u64 = ReplayWindow::SIZE;

fuzz_target!(|data: &[u8]| {
    let mut r = Bytes::new(data);
    let flags = r.u8();
    let alg = if flags & 4 != 0 {
        Algorithm::Aes256Gcm
    } else {
        Algorithm::Aes128Gcm
    };
    let esn = flags & 8 != 0;
    let outer6 = flags & 16 != 0;
    let (out, sa) = sa_pair(engine_kind(flags), engine_kind(flags >> 1), alg, esn);
    let outer = if outer6 {
        Outer::new(
            "fd00:10:200::1".parse().unwrap(),
            "fd00:10:100::1".parse().unwrap(),
        )
    } else {
        Outer::new([10, 10, 200, 1].into(), [10, 10, 100, 1].into())
    };
    let esp_at = if outer6 { HEAD_LEN6 } else { HEAD_LEN } - ESP_HLEN - IV_LEN;

    // Where the window starts: anywhere, or just below or above a 2^32 boundary.
    let place = r.u8();
    let (hi, lo) = (u64::from(r.u16()), u64::from(r.u16()));
    let mut top = match place % 3 {
        0 => (hi << 32) | (0xffff_ffff - lo),
        1 => (hi << 32) | lo,
        _ => r.u64(),
    };
    if !esn {
        top &= 0xffff_ffff;
    }
    let mut window = ReplayWindow::new();
    let mut accepted = HashSet::new();
    if top != 0 {
        window.accept(top).unwrap();
        accepted.insert(top);
    }

    for _ in 0..8 {
        if r.is_empty() {
            break;
        }
        let top = window.top();
        let how = r.u8();
        let seq = match how % 4 {
            0 => top.wrapping_add(1 + u64::from(r.u16())),
            1 => top.wrapping_sub(u64::from(r.u16() % 2100)),
            2 => top.wrapping_add(u64::from(r.u32())),
            _ => r.u64(),
        };
        let inner_len = usize::from(r.u16() % 1600).max(1);
        let mut inner = r.take(inner_len).to_vec();
        inner.resize(inner_len, 0x5a);
        inner[0] = if how & 0x80 != 0 { 0x60 } else { 0x45 };
        let Some(sealed) = seal_with(&out, &outer, &inner, seq) else {
            continue;
        };
        let orig = sealed.data().to_vec();

        // Mutations: up to 4 byte flips, then truncation or link padding.
        let mut pkt = orig.clone();
        for _ in 0..(how >> 2) % 5 {
            let at = usize::from(r.u16()) % pkt.len();
            pkt[at] ^= r.u8();
        }
        let cut = r.u8();
        match cut % 4 {
            1 => pkt.truncate(pkt.len().saturating_sub(usize::from(cut >> 2))),
            2 => pkt.resize(pkt.len() + usize::from(cut >> 2), 0xee),
            _ => {}
        }
        // Bytes past the original end are link padding, outside the packet.
        let esp_touched = pkt.get(esp_at..orig.len()) != orig.get(esp_at..);
        let outer_touched = pkt.get(..esp_at) != orig.get(..esp_at);

        // Not accepted before and not left of the window: it may open.
        let may_open = seq != 0 && !accepted.contains(&seq) && (seq > top || top - seq < W);
        // ... and its high half is the one RFC 4303 A2 infers: it must open.
        let must_open = may_open && (!esn || seq <= top || seq - top <= (1u64 << 32) - W);
        let Some(buf) = PoolBuf::from_slice(&pkt) else {
            continue;
        };
        let got = receive(&sa, &mut window, buf);
        match &got {
            Ok(b) => {
                assert_eq!(b.data(), &inner[..], "opened to another inner packet");
                assert!(
                    !esp_touched,
                    "a packet changed in its ESP part was accepted"
                );
                assert!(
                    may_open,
                    "seq {seq} accepted with top {top}: replayed or too old"
                );
                accepted.insert(seq);
            }
            Err(e) => {
                let should_open = must_open && !esp_touched && !outer_touched;
                assert!(
                    !should_open,
                    "seq {seq} (top {top}, esn {esn}) refused: {e:?}"
                );
            }
        }
    }
});
