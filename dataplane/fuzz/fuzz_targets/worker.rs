//! The whole packet path of one worker: frames received on the LAN and WAN
//! ports (raw, or ESP sealed by the peer with the right keys around an
//! inner packet from the input) go through `Worker::poll_once` (classify,
//! encapsulation and decapsulation stages, listener NAT, route-out) and the
//! real slow path (ARP, ND, ICMP, errors sent back through the tunnel),
//! whose replies the worker sends. Checks that nothing panics and that
//! every ESP packet the gateway sends opens at the peer (right SA, key and
//! sequence numbers, valid trailer).
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use scistream_dataplane::backend::pool::PoolBuf;
use scistream_dataplane::crypto::{Algorithm, EngineKind, SaKey};
use scistream_dataplane::esp::{self, InboundSa, ReplayWindow};
use scistream_dataplane::port::PortId;
use scistream_dataplane::tunnel::TableSource;
use scistream_dataplane::wire::ETH_HLEN;
use scistream_dataplane_fuzz::{
    engine_kind, ethernet, fix_frame_checksums, fix_ipv4_checksums, peer_sender, receive, Bytes,
    Running, HOST_MAC, MAC, ROUTER_MAC, SPI_IN, SPI_IN6, SPI_OUT, SPI_OUT6, WAN_IP, WAN_IP6,
};

/// The peer's inbound SAs for our outbound ones (the fixture's keys).
fn peer_inbound(spi: u32) -> Option<InboundSa> {
    let key: &[u8] = match spi {
        SPI_OUT => b"0123456789abcdef",
        SPI_OUT6 => b"ABCDEFGHIJKLMNOP",
        _ => return None,
    };
    let salt = [0xca, 0xfe, 0, spi as u8];
    let k = SaKey::new(EngineKind::Ring, Algorithm::Aes128Gcm, key, salt).unwrap();
    Some(InboundSa::new(spi, k, true))
}

/// The UDP destination port of an IPv4 or IPv6 frame from our WAN address
/// (no IPv6 extension headers: we send none), if it is UDP.
fn our_udp_dport(frame: &[u8]) -> Option<u16> {
    let ip = frame.get(ETH_HLEN..)?;
    let udp_at = match frame.get(12..14)? {
        [0x08, 0x00] if ip.len() >= 28 && ip[9] == 17 && ip[12..16] == WAN_IP.octets() => {
            usize::from(ip[0] & 0x0f) * 4
        }
        [0x86, 0xdd] if ip.len() >= 48 && ip[6] == 17 && ip[8..24] == WAN_IP6.octets() => 40,
        _ => return None,
    };
    let udp = ip.get(udp_at..udp_at + 8)?;
    Some(u16::from_be_bytes([udp[2], udp[3]]))
}

fuzz_target!(|data: &[u8]| {
    let mut r = Bytes::new(data);
    let engine = engine_kind(r.u8());
    let mut gw = Running::new(engine);
    let senders = [peer_sender(SPI_IN, engine), peer_sender(SPI_IN6, engine)];
    let mut windows: HashMap<u32, ReplayWindow> = HashMap::new();
    let mut ops = 0;
    while !r.is_empty() && ops < 64 {
        ops += 1;
        let op = r.u8();
        let kind = op % 6;
        match kind {
            // A raw frame on the LAN or the WAN, to our MAC unless it says otherwise.
            0 | 1 => {
                let port = if kind == 0 { PortId::Lan } else { PortId::Wan };
                let mut f = r.chunk().to_vec();
                if op & 0x10 == 0 && f.len() >= 12 {
                    f[..6].copy_from_slice(&MAC[port as usize]);
                    let peer = if port == PortId::Lan {
                        HOST_MAC
                    } else {
                        ROUTER_MAC
                    };
                    f[6..12].copy_from_slice(&peer);
                }
                if op & 0x20 == 0 {
                    fix_frame_checksums(&mut f);
                }
                gw.push(port, f);
            }
            // ESP from the IPv4 or the IPv6 peer around an inner packet.
            2 | 3 => {
                let sender = &senders[usize::from(kind == 3)];
                let seq = u64::from(r.u32()) + 1;
                let mut inner = r.chunk().to_vec();
                if op & 0x20 == 0 {
                    fix_ipv4_checksums(&mut inner);
                }
                if let Some(f) = sender.seal_frame(&inner, seq) {
                    gw.push(PortId::Wan, f);
                }
            }
            // An IPv4 packet from the LAN host, checksums made right.
            4 => {
                let mut ip = r.chunk().to_vec();
                fix_ipv4_checksums(&mut ip);
                gw.push(PortId::Lan, ethernet(MAC[0], HOST_MAC, [0x08, 0x00], &ip));
            }
            // Let the worker and the slow path run; expire idle connections.
            _ => {
                if op & 0x10 != 0 {
                    gw.tables.load().housekeeping();
                }
            }
        }
        if op & 0x40 != 0 || r.is_empty() || ops == 64 {
            let (_lan, wan) = gw.run();
            for f in wan {
                if our_udp_dport(&f) != Some(4500) {
                    continue;
                }
                let Some(b) = PoolBuf::from_slice(&f[ETH_HLEN..]) else {
                    continue;
                };
                let view = esp::decap_parse(&f[ETH_HLEN..], 4500).expect("our ESP parses");
                let sa = peer_inbound(view.spi).expect("sealed with one of our outbound SAs");
                let w = windows.entry(view.spi).or_default();
                if let Err(e) = receive(&sa, w, b) {
                    panic!("our ESP packet (SPI {:#x}) does not open: {e:?}", view.spi);
                }
            }
        }
    }
});
