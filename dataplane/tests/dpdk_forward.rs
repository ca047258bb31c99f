//! In-process forwarding through real DPDK ports built on rte_rings
//! (net_ring): frames are injected into the LAN port's RX ring, a worker
//! runs over the ports' queues, and the frames the WAN port transmitted are
//! drained from its TX ring and compared byte for byte. No root needed.
#![cfg(feature = "dpdk")]

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use scistream_dataplane::backend::dpdk::{DpdkQueue, Eal, RingPort};
use scistream_dataplane::gateway::Gateway;
use scistream_dataplane::neigh::Neighbors;
use scistream_dataplane::port::{PortAddr, PortId};
use scistream_dataplane::route::{Route, RouteTable};
use scistream_dataplane::slowpath::{SlowMsg, SlowPath, TxFrame};
use scistream_dataplane::stats::{DropReason, StatsRegistry};
use scistream_dataplane::wire::{arp, checksum, ipv4, l4, ETH_HLEN};
use scistream_dataplane::worker::{Worker, WorkerLinks};

const PROD_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 2];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 2, 0xfe];
const HOP: Ipv4Addr = Ipv4Addr::new(10, 10, 100, 254);

fn eal() -> &'static Eal {
    let args: Vec<String> = [
        "--no-huge",
        "-m",
        "512",
        "--no-shconf",
        "--no-pci",
        "--log-level=*:warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Eal::init(&args).expect("EAL init")
}

struct Rig {
    lan: RingPort,
    wan: RingPort,
    worker: Worker<DpdkQueue>,
    slow: SlowPath,
    slow_rx: Receiver<SlowMsg>,
    stats: Arc<StatsRegistry>,
    lan_mac: [u8; 6],
    wan_mac: [u8; 6],
    _keep: (
        scistream_dataplane::backend::dpdk::DpdkPort,
        scistream_dataplane::backend::dpdk::DpdkPort,
    ),
}

fn rig(name: &str) -> Rig {
    let eal = eal();
    let (lan, lan_port) = RingPort::new(eal, &format!("{name}l"), 1).unwrap();
    let (wan, wan_port) = RingPort::new(eal, &format!("{name}w"), 1).unwrap();
    let (lan_mac, wan_mac) = (lan_port.info().mac, wan_port.info().mac);
    let ports = [
        PortAddr {
            mac: lan_mac,
            ip4: Some((Ipv4Addr::new(10, 10, 1, 1), 24)),
            mtu: 1500,
            ip6: None,
        },
        PortAddr {
            mac: wan_mac,
            ip4: Some((Ipv4Addr::new(10, 10, 100, 1), 24)),
            mtu: 1500,
            ip6: None,
        },
    ];
    let routes = RouteTable::new(
        &ports,
        &[Route {
            net: Ipv4Addr::new(10, 20, 0, 0),
            len: 16,
            port: PortId::Wan,
            via: Some(HOP),
        }],
    );
    let gw = Arc::new(Gateway { ports, routes });
    let neigh = Arc::new(Neighbors::with_static(&[(HOP, ROUTER_MAC, PortId::Wan)]));
    let stats = Arc::new(StatsRegistry::new(1));
    let (to_slow, slow_rx) = crossbeam_channel::bounded(64);
    let (reply_tx, replies): (Sender<TxFrame>, Receiver<TxFrame>) = crossbeam_channel::bounded(64);
    let (slow_tx_unused, slow_rx_unused) = crossbeam_channel::bounded(1);
    drop(slow_tx_unused);
    let slow = SlowPath::new(
        gw.clone(),
        neigh.clone(),
        slow_rx_unused,
        vec![reply_tx],
        stats.clone(),
    );
    let links = WorkerLinks {
        gw,
        neigh,
        to_slowpath: to_slow,
        replies,
        stats: stats.clone(),
        tunnel: None,
        latency: None,
    };
    let worker = Worker::new(
        0,
        lan_port.queue(0),
        wan_port.queue(0),
        links,
        Duration::ZERO,
    );
    Rig {
        lan,
        wan,
        worker,
        slow,
        slow_rx,
        stats,
        lan_mac,
        wan_mac,
        _keep: (lan_port, wan_port),
    }
}

impl Rig {
    /// Polls until the worker has seen `n` frames (and a few more passes to flush).
    fn poll(&mut self, n: usize) {
        let mut seen = 0;
        for _ in 0..1000 {
            seen += self.worker.poll_once();
            if seen >= n {
                break;
            }
        }
        assert_eq!(seen, n, "worker received every injected frame");
    }

    /// Hands everything the worker queued for the slow path to it, then lets the worker send the replies.
    fn run_slow_path(&mut self) {
        while let Ok(m) = self.slow_rx.try_recv() {
            self.slow.handle(m);
        }
        self.worker.poll_once();
    }
}

fn udp_frame(dst_mac: [u8; 6], dst: [u8; 4], ttl: u8, payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut f = vec![0u8; ETH_HLEN + total];
    f[..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&PROD_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[ETH_HLEN..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = ttl;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 10, 1, 2]);
    ip[16..20].copy_from_slice(&dst);
    let c = checksum::of(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..22].copy_from_slice(&40000u16.to_be_bytes());
    ip[22..24].copy_from_slice(&5000u16.to_be_bytes());
    ip[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    ip[28..].copy_from_slice(payload);
    // UDP checksum left zero ("none"): a router does not touch it.
    f
}

#[test]
fn forwards_exact_bytes_with_mac_rewrite_ttl_and_checksum() {
    let mut r = rig("fwd");
    let mut sent = Vec::new();
    for i in 0..100u32 {
        let payload: Vec<u8> = (0..(i as usize * 13 % 1400 + 1))
            .map(|b| (b as u8) ^ (i as u8))
            .collect();
        let f = udp_frame(r.lan_mac, [10, 20, 1, 2], 64, &payload);
        r.lan.inject(0, &f).unwrap();
        sent.push(f);
    }
    r.poll(100);
    let out = r.wan.drain(0);
    assert_eq!(out.len(), 100);
    for (got, orig) in out.iter().zip(&sent) {
        let mut want = orig.clone();
        want[..6].copy_from_slice(&ROUTER_MAC);
        want[6..12].copy_from_slice(&r.wan_mac);
        want[ETH_HLEN + 8] = 63;
        let c = {
            want[ETH_HLEN + 10] = 0;
            want[ETH_HLEN + 11] = 0;
            checksum::of(&want[ETH_HLEN..ETH_HLEN + 20])
        };
        want[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(got, &want);
        assert!(ipv4::parse(&got[ETH_HLEN..]).is_ok());
    }
    assert!(
        r.lan.drain(0).is_empty(),
        "nothing goes back out of the LAN port"
    );
    let s = r.stats.sum();
    assert_eq!(s.ports[0].rx_packets, 100);
    assert_eq!(s.ports[1].tx_packets, 100);
    assert_eq!(
        s.ports[1].tx_bytes,
        sent.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert_eq!(s.total_drops(), 0);
}

#[test]
fn drops_malformed_frames_by_reason_and_forwards_the_rest() {
    let mut r = rig("drop");
    let good = udp_frame(r.lan_mac, [10, 20, 1, 2], 64, b"good");
    let mut bad_csum = good.clone();
    bad_csum[ETH_HLEN + 10] ^= 0xff;
    let mut bad_version = good.clone();
    bad_version[ETH_HLEN] = 0x65;
    let truncated = good[..ETH_HLEN + 12].to_vec();
    let mut long_total = good.clone();
    long_total[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&2000u16.to_be_bytes());
    let c = {
        long_total[ETH_HLEN + 10] = 0;
        long_total[ETH_HLEN + 11] = 0;
        checksum::of(&long_total[ETH_HLEN..ETH_HLEN + 20])
    };
    long_total[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
    let runt = good[..10].to_vec();
    let other_mac = udp_frame([0x02, 9, 9, 9, 9, 9], [10, 20, 1, 2], 64, b"x");
    let no_route = udp_frame(r.lan_mac, [192, 0, 2, 1], 64, b"x");
    // An IPv4 packet behind the IPv6 ethertype, and a VLAN tag (unsupported).
    let mut ipv6 = good.clone();
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    let mut vlan = good.clone();
    vlan[12..14].copy_from_slice(&[0x81, 0x00]);
    let frames = [
        &good,
        &bad_csum,
        &bad_version,
        &truncated,
        &long_total,
        &runt,
        &other_mac,
        &no_route,
        &ipv6,
        &vlan,
        &good,
    ];
    for f in frames {
        r.lan.inject(0, f).unwrap();
    }
    r.poll(frames.len());
    assert_eq!(
        r.wan.drain(0).len(),
        2,
        "only the two good frames are forwarded"
    );
    let s = r.stats.sum();
    assert_eq!(s.dropped(DropReason::Ipv4BadChecksum), 1);
    assert_eq!(s.dropped(DropReason::Ipv4Malformed), 3); // bad version, truncated, total length beyond the frame
    assert_eq!(s.dropped(DropReason::Runt), 1);
    assert_eq!(s.dropped(DropReason::NotForUs), 1);
    assert_eq!(s.dropped(DropReason::NoRoute), 1);
    assert_eq!(s.dropped(DropReason::Ipv6Malformed), 1);
    assert_eq!(s.dropped(DropReason::UnsupportedEthertype), 1);
    assert_eq!(s.total_drops(), 9);
    assert_eq!(s.ports[0].rx_packets, 11);
}

#[test]
fn ttl_expiry_is_answered_with_icmp_time_exceeded() {
    let mut r = rig("ttl");
    let f = udp_frame(r.lan_mac, [10, 20, 1, 2], 1, b"expiring");
    r.lan.inject(0, &f).unwrap();
    r.poll(1);
    assert!(r.wan.drain(0).is_empty(), "not forwarded");
    r.run_slow_path();
    let back = r.lan.drain(0);
    assert_eq!(back.len(), 1);
    let e = &back[0];
    assert_eq!(&e[..6], &PROD_MAC);
    assert_eq!(&e[6..12], &r.lan_mac);
    let ip = ipv4::parse(&e[ETH_HLEN..]).unwrap();
    assert_eq!(
        (ip.src, ip.dst, ip.protocol),
        (Ipv4Addr::new(10, 10, 1, 1), Ipv4Addr::new(10, 10, 1, 2), 1)
    );
    let icmp = &e[ETH_HLEN + 20..ETH_HLEN + ip.total_len];
    l4::check_icmp(icmp).unwrap();
    assert_eq!((icmp[0], icmp[1]), (11, 0));
    assert_eq!(
        &icmp[8..],
        &f[ETH_HLEN..ETH_HLEN + 28],
        "quotes the header and 8 bytes"
    );
    assert_eq!(r.stats.sum().control.icmp_errors, 1);
}

#[test]
fn answers_arp_for_its_address() {
    let mut r = rig("arp");
    let req = arp::request(
        PROD_MAC,
        Ipv4Addr::new(10, 10, 1, 2),
        Ipv4Addr::new(10, 10, 1, 1),
    );
    r.lan.inject(0, &req).unwrap();
    r.poll(1);
    r.run_slow_path();
    let back = r.lan.drain(0);
    assert_eq!(back.len(), 1);
    let a = arp::parse(&back[0]).unwrap();
    assert!(!a.is_request);
    assert_eq!(
        (a.sender_mac, a.sender_ip),
        (r.lan_mac, Ipv4Addr::new(10, 10, 1, 1))
    );
    assert_eq!(
        (a.target_mac, a.target_ip),
        (PROD_MAC, Ipv4Addr::new(10, 10, 1, 2))
    );
    assert_eq!(&back[0][..6], &PROD_MAC);
}
