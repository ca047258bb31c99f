//! The listener NAT both ways, through the entry points the packet path
//! uses (`TunnelTables::nat_from_lan` and `nat_from_tunnel`) on a gateway
//! with an inbound listener (producer side: connection tracking, mapped
//! ports) and an outbound one (consumer side: stateless). The input is a
//! sequence of packets: raw ones, consumer flows to the inbound listener,
//! producer replies to mapped ports, consumer packets to the outbound
//! listener, replies from the peer's listener, ICMP errors quoting what
//! was translated last, and clock ticks. Checks that a refused packet is
//! left untouched, and that a translated packet whose checksums were right
//! still has right checksums (the incremental updates).
#![no_main]

use std::net::Ipv4Addr;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use scistream_dataplane::crypto::EngineKind;
use scistream_dataplane::stats::StatsRegistry;
use scistream_dataplane_fuzz::{
    fix_ipv4_checksums, ipv4_checksums_ok, ipv4_packet, l4_segment, tables, Bytes, INBOUND_PORT,
    LAN_IP, OUTBOUND_PORT, PEER_IP, WAN_IP,
};

const PRODUCER: Ipv4Addr = Ipv4Addr::new(10, 10, 1, 2);

fuzz_target!(|data: &[u8]| {
    let stats = Arc::new(StatsRegistry::new(1));
    let t = tables(EngineKind::Ring, &stats);
    let mut r = Bytes::new(data);
    let mut last: Vec<u8> = Vec::new();
    for _ in 0..32 {
        if r.is_empty() {
            break;
        }
        let op = r.u8();
        let tcp = op & 0x10 != 0;
        let proto = if tcp { 6 } else { 17 };
        let kind = op % 8;
        let (from_lan, mut pkt) = match kind {
            // Raw packets either way, checksums made right unless the input says not.
            0 | 1 => {
                let mut p = r.chunk().to_vec();
                if op & 0x20 == 0 {
                    fix_ipv4_checksums(&mut p);
                }
                (kind == 0, p)
            }
            // A consumer (behind the peer) to our inbound listener, out of the tunnel.
            2 => {
                let src = Ipv4Addr::from(r.u32());
                let port = if op & 0x20 == 0 {
                    INBOUND_PORT
                } else {
                    r.u16()
                };
                let l4 = l4_segment(tcp, r.u16(), port, r.u8(), r.chunk());
                (false, ipv4_packet(src, WAN_IP, proto, &l4))
            }
            // The producer's reply to a mapped port, from the LAN.
            3 => {
                let mapped = 32768 + r.u16() % 80;
                let sport = if op & 0x20 == 0 { 7000 } else { r.u16() };
                let l4 = l4_segment(tcp, sport, mapped, r.u8(), r.chunk());
                (true, ipv4_packet(PRODUCER, LAN_IP, proto, &l4))
            }
            // A LAN host to our outbound listener.
            4 => {
                let port = if op & 0x20 == 0 {
                    OUTBOUND_PORT
                } else {
                    r.u16()
                };
                let l4 = l4_segment(tcp, r.u16(), port, r.u8(), r.chunk());
                (true, ipv4_packet(PRODUCER, LAN_IP, proto, &l4))
            }
            // The peer listener's reply to a LAN host, out of the tunnel.
            5 => {
                let l4 = l4_segment(tcp, 6100, r.u16(), r.u8(), r.chunk());
                (false, ipv4_packet(PEER_IP, PRODUCER, proto, &l4))
            }
            // An ICMP error quoting the last packet translated, either way.
            6 => {
                let mut icmp = vec![r.u8() % 16, r.u8(), 0, 0, 0, 0, 0, 0];
                let quote = usize::from(r.u8());
                icmp.extend_from_slice(&last[..quote.min(last.len())]);
                let src = Ipv4Addr::from(r.u32());
                let to_lan = op & 0x20 == 0;
                let dst = if to_lan { LAN_IP } else { WAN_IP };
                (to_lan, ipv4_packet(src, dst, 1, &icmp))
            }
            _ => {
                t.housekeeping();
                continue;
            }
        };
        let checked = ipv4_checksums_ok(&pkt);
        let before = pkt.clone();
        let result = if from_lan {
            t.nat_from_lan(&mut pkt)
                .map(|sa| assert!(sa < t.outbound_len()))
        } else if pkt.len() >= 20 {
            // The packet path calls this with the destination it parsed.
            let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
            match scistream_dataplane::wire::ipv4::parse(&pkt) {
                Ok(_) => t.nat_from_tunnel(&mut pkt, dst.into()),
                Err(_) => continue,
            }
        } else {
            continue;
        };
        match result {
            Ok(()) => {
                if checked {
                    assert!(ipv4_checksums_ok(&pkt), "translation broke a checksum");
                }
                if pkt != before {
                    last = pkt;
                }
            }
            Err(e) => assert_eq!(pkt, before, "refused ({e:?}) but rewritten"),
        }
    }
});
