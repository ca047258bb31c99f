//! The slow path on its own (`SlowPath::handle`): ARP requests and
//! replies, IPv6 Neighbor Solicitations and Advertisements, ICMP and
//! ICMPv6 echo to the gateway, time exceeded and fragmentation needed /
//! Packet Too Big for any frame (with any MTU, out of a port or back
//! through the tunnel), resolution requests for any next hop, and its
//! timers. The frame, the reason and where the answer goes come from the
//! input (IPv4 checksums made right unless it says not). Checks that
//! nothing panics and that every reply is a whole Ethernet frame for a
//! port, within the port's MTU (or no longer than the
//! frame it answers).
#![no_main]

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use scistream_dataplane::forward::SlowReason;
use scistream_dataplane::port::PortId;
use scistream_dataplane::slowpath::{SlowMsg, SlowPath, Via};
use scistream_dataplane::stats::StatsRegistry;
use scistream_dataplane::wire::ETH_HLEN;
use scistream_dataplane_fuzz::{fix_frame_checksums, gateway, neighbors, Bytes, MAC, SPI_OUT};

fuzz_target!(|data: &[u8]| {
    let gw = Arc::new(gateway());
    let neigh = Arc::new(neighbors());
    let stats = Arc::new(StatsRegistry::new(1));
    let (_to_slow, rx) = crossbeam_channel::bounded::<SlowMsg>(1);
    let (reply_tx, replies) = crossbeam_channel::unbounded();
    let mut sp = SlowPath::new(gw.clone(), neigh, rx, vec![reply_tx], stats);
    let start = Instant::now();
    let mut r = Bytes::new(data);
    for _ in 0..16 {
        if r.is_empty() {
            break;
        }
        let op = r.u8();
        let port = if op & 1 != 0 {
            PortId::Wan
        } else {
            PortId::Lan
        };
        let msg = match (op >> 1) % 8 {
            0..=5 => {
                let reason = match (op >> 1) % 8 {
                    0 => SlowReason::Arp,
                    1 => SlowReason::Nd,
                    2 | 3 => SlowReason::LocalIcmp,
                    4 => SlowReason::TtlExceeded,
                    _ => SlowReason::FragNeeded(r.u16()),
                };
                let via = if op & 0x80 != 0 {
                    Via::Tunnel { spi: SPI_OUT }
                } else {
                    Via::Port
                };
                let mut frame = r.chunk().to_vec();
                if frame.len() >= 6 && op & 0x40 == 0 {
                    frame[..6].copy_from_slice(&MAC[port as usize]);
                }
                fix_frame_checksums(&mut frame);
                SlowMsg::Frame {
                    worker: 0,
                    port,
                    reason,
                    frame,
                    via,
                }
            }
            6 => {
                let next_hop = if op & 0x40 != 0 {
                    IpAddr::from(Ipv6Addr::from(r.array::<16>()))
                } else {
                    IpAddr::from(r.array::<4>())
                };
                SlowMsg::Resolve { next_hop, port }
            }
            _ => {
                sp.tick(start + Duration::from_secs(u64::from(r.u16())));
                continue;
            }
        };
        let input_len = match &msg {
            SlowMsg::Frame { frame, .. } => frame.len(),
            SlowMsg::Resolve { .. } => 0,
        };
        sp.handle(msg);
        while let Ok(tx) = replies.try_recv() {
            assert!(
                tx.frame.len() >= ETH_HLEN,
                "a reply shorter than an Ethernet header"
            );
            if tx.via == Via::Port {
                // Within the MTU, unless it answers a frame that was already bigger.
                let mtu = ETH_HLEN + usize::from(gw.port(tx.port).mtu);
                assert!(
                    tx.frame.len() <= mtu.max(input_len),
                    "a reply over the port MTU"
                );
            }
        }
    }
});
