//! Classification of one frame (`forward::classify`) on the LAN or the WAN
//! port of a gateway with its tunnel tables loaded (routed IPv4 and IPv6
//! prefixes, IPv4 and IPv6 peers, listeners of both roles), or without a
//! tunnel. The frame may have its checksums made right first, so that the
//! fuzzer reaches the code behind them. Checks that the verdict is
//! consistent: a frame is rewritten in place (never resized), an
//! encapsulation names an outbound SA that exists, a decapsulation points
//! inside the frame.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use scistream_dataplane::crypto::EngineKind;
use scistream_dataplane::forward::{classify, Verdict};
use scistream_dataplane::gateway::Gateway;
use scistream_dataplane::neigh::Neighbors;
use scistream_dataplane::port::PortId;
use scistream_dataplane::stats::StatsRegistry;
use scistream_dataplane::wire::ETH_HLEN;
use scistream_dataplane_fuzz::{fix_frame_checksums, gateway, neighbors, tables, MAC};

struct Fixture {
    gw: Gateway,
    neigh: Neighbors,
    stats: Arc<StatsRegistry>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        gw: gateway(),
        neigh: neighbors(),
        stats: Arc::new(StatsRegistry::new(1)),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let port = if flags & 1 != 0 {
        PortId::Wan
    } else {
        PortId::Lan
    };
    let mut frame = rest.to_vec();
    // Addressed to the port's MAC unless the input says otherwise.
    if flags & 2 == 0 && frame.len() >= 6 {
        frame[..6].copy_from_slice(&MAC[port as usize]);
    }
    if flags & 4 == 0 {
        fix_frame_checksums(&mut frame);
    }
    // Fresh tables each run: the producer-side NAT keeps connections.
    let t = (flags & 8 == 0).then(|| tables(EngineKind::Ring, &f.stats));
    let len = frame.len();
    let neigh = f.neigh.load();
    let v = classify(&mut frame, port, &f.gw, &neigh, t.as_ref());
    assert_eq!(frame.len(), len);
    match v {
        Verdict::Encap(sa) => {
            let t = t.as_ref().expect("encapsulation without a tunnel");
            assert!(sa < t.outbound_len());
            assert_eq!(port, PortId::Lan, "encapsulation of a WAN frame");
        }
        Verdict::Decap(o) => {
            assert!(t.is_some(), "decapsulation without a tunnel");
            assert!(usize::from(o.udp_at) + 8 <= usize::from(o.end));
            assert!(ETH_HLEN + usize::from(o.end) <= len);
            assert_eq!(port, PortId::Wan, "decapsulation of a LAN frame");
        }
        _ => {}
    }
});
