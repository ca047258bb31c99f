//! ESP decapsulation of arbitrary bytes under a real SA: the fuzz input is
//! a window position and a list of outer IP packets, each taken through the
//! receive path (`decap_parse`, SPI, ESN inference, replay check,
//! `open_burst`, accept, `decap_finish`). Nothing may panic, and a packet
//! refused before it authenticated never moves the replay window.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scistream_dataplane::backend::pool::PoolBuf;
use scistream_dataplane::backend::PacketBuf;
use scistream_dataplane::crypto::Algorithm;
use scistream_dataplane::esp::{EspError, ReplayWindow};
use scistream_dataplane_fuzz::{engine_kind, receive, sa_pair, Bytes};

fuzz_target!(|data: &[u8]| {
    let mut r = Bytes::new(data);
    let flags = r.u8();
    let alg = if flags & 4 != 0 {
        Algorithm::Aes256Gcm
    } else {
        Algorithm::Aes128Gcm
    };
    let esn = flags & 8 != 0;
    let (_, sa) = sa_pair(engine_kind(flags), engine_kind(flags >> 1), alg, esn);
    let mut window = ReplayWindow::new();
    let top = r.u64();
    if top != 0 {
        window
            .accept(top)
            .expect("an empty window accepts any number");
    }
    while !r.is_empty() {
        let pkt = r.chunk();
        let Some(buf) = PoolBuf::from_slice(pkt) else {
            continue;
        };
        let before = window.top();
        match receive(&sa, &mut window, buf) {
            Ok(inner) => assert!(inner.len() < pkt.len()),
            Err(EspError::BadPadLength | EspError::BadPadding | EspError::BadNextHeader) => {}
            Err(_) => assert_eq!(window.top(), before, "a refused packet moved the window"),
        }
    }
});
