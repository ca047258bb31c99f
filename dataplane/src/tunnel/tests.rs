//! Two gateways' workers joined in memory (no devices, no root): frames from
//! the producer go through gateway A, cross the "WAN" as ESP-in-UDP, and come
//! out of gateway B byte for byte; tampered, replayed and unknown-SPI
//! packets are dropped and counted; cleartext between LAN and WAN is blocked.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use zeroize::Zeroizing;

use crate::backend::mem::MemQueue;
use crate::config::tunnel::{
    Direction, ListenerConfig, ListenerRole, Peer, SaConfig, TunnelRoute, TunnelRoute6,
    TunnelSection,
};
use crate::crypto::{Algorithm, EngineKind};
use crate::gateway::Gateway;
use crate::neigh::Neighbors;
use crate::port::{PortAddr, PortId};
use crate::route::{Route, RouteTable};
use crate::slowpath::{SlowMsg, SlowPath, TxFrame, Via};
use crate::stats::{DropReason, StatsRegistry};
use crate::tunnel::{StaticTables, TunnelTables};
use crate::wire::{checksum, ipv4, l4, ETH_HLEN};
use crate::worker::{Worker, WorkerLinks};

const PROD: [u8; 6] = [2, 0, 0, 0, 1, 2];
const CONS: [u8; 6] = [2, 0, 0, 0, 2, 2];
const ROUTER_A: [u8; 6] = [2, 0, 0, 0, 0xa0, 0xfe];
const ROUTER_B: [u8; 6] = [2, 0, 0, 0, 0xb0, 0xfe];
const K_AB: [u8; 16] = *b"0123456789abcdef";
const K_BA: [u8; 32] = *b"fedcba9876543210fedcba9876543210";
const PATTERN: &[u8] = b"SCISTREAM-SECRET";
/// The far side's IPv6 LAN prefix as seen from gateway A, and from B.
const FAR6_A: &str = "fd00:20::/32";
const FAR6_B: &str = "fd00:10::/32";

struct Gw {
    worker: Worker<MemQueue>,
    /// Workers 1.. (`gateway_custom`); empty for one worker.
    others: Vec<Worker<MemQueue>>,
    gw: Arc<Gateway>,
    neigh: Arc<Neighbors>,
    stats: Arc<StatsRegistry>,
    mac: [[u8; 6]; 2],
    /// The MAC of the WAN router on this gateway's WAN link.
    router: [u8; 6],
    tables: Arc<StaticTables>,
    _slow: (Receiver<SlowMsg>, Sender<TxFrame>),
}

impl Gw {
    fn worker_tables_nat_active(&self) -> usize {
        use crate::tunnel::TableSource;
        self.tables.load().nat_active()
    }
}

/// Host `n` of gateway A's (`a`) or B's IPv6 LAN: fd00:10:1::n or fd00:20:1::n.
fn lan6(a: bool, n: u16) -> std::net::Ipv6Addr {
    std::net::Ipv6Addr::new(0xfd00, if a { 0x10 } else { 0x20 }, 1, 0, 0, 0, 0, n)
}

/// Gateway `a` (true) or `b`, with the ESP engine `engine`.
fn gateway(a: bool, engine: EngineKind) -> Gw {
    gateway_with(a, engine, vec![])
}

/// Gateway `a` (true) or `b` with listener-mode `listeners`.
fn gateway_with(a: bool, engine: EngineKind, listeners: Vec<ListenerConfig>) -> Gw {
    gateway_mtu(a, engine, listeners, 1500)
}

/// Gateway `a` (true) or `b` with `listeners` and a LAN MTU of `lan_mtu`.
fn gateway_mtu(a: bool, engine: EngineKind, listeners: Vec<ListenerConfig>, lan_mtu: u16) -> Gw {
    let clamp = crate::wire::mss::ipv4_mss_for(crate::esp::inner_mtu(1500));
    gateway_full(a, engine, listeners, lan_mtu, Some(clamp), false)
}

/// Host `n` of gateway A's (`a`) or B's IPv6 WAN link: fd00:10:100::n or
/// fd00:10:200::n (the router is n = 0xfe).
fn wan6(a: bool, n: u16) -> std::net::Ipv6Addr {
    std::net::Ipv6Addr::new(0xfd00, 0x10, if a { 0x100 } else { 0x200 }, 0, 0, 0, 0, n)
}

/// Gateway `a` (true) or `b` whose tunnel runs over IPv6: the WAN ports
/// have IPv6 addresses and each peer is the other's IPv6 WAN address.
fn gateway_outer6(a: bool, engine: EngineKind) -> Gw {
    let clamp = crate::wire::mss::ipv4_mss_for(crate::esp::inner_mtu(1500));
    gateway_full(a, engine, vec![], 1500, Some(clamp), true)
}

/// [`gateway_mtu`] with TCP MSS clamping to `tcp_mss` (`None`: off), the
/// tunnel over IPv6 if `outer6`.
fn gateway_full(
    a: bool,
    engine: EngineKind,
    listeners: Vec<ListenerConfig>,
    lan_mtu: u16,
    tcp_mss: Option<u16>,
    outer6: bool,
) -> Gw {
    gateway_custom(a, engine, listeners, lan_mtu, tcp_mss, outer6, 1, |_| {})
}

/// [`gateway_full`] with `workers` workers (ids 0.., the first in `worker`,
/// the others in `others`, all on the same tables and stats) and the
/// tunnel section edited by `edit` before the tables are built.
#[allow(clippy::too_many_arguments)]
fn gateway_custom(
    a: bool,
    engine: EngineKind,
    listeners: Vec<ListenerConfig>,
    lan_mtu: u16,
    tcp_mss: Option<u16>,
    outer6: bool,
    workers: usize,
    edit: impl FnOnce(&mut TunnelSection),
) -> Gw {
    let (lan, wan, far_wan, far_lan, hop, host, host_mac, router) = if a {
        (
            [10, 10, 1, 1],
            [10, 10, 100, 1],
            [10, 10, 200, 0],
            [10, 20, 0, 0],
            [10, 10, 100, 254],
            [10, 10, 1, 2],
            PROD,
            ROUTER_A,
        )
    } else {
        (
            [10, 20, 1, 1],
            [10, 10, 200, 1],
            [10, 10, 100, 0],
            [10, 10, 0, 0],
            [10, 10, 200, 254],
            [10, 20, 1, 2],
            CONS,
            ROUTER_B,
        )
    };
    let mac = [[2, 0xaa, a as u8, 0, 0, 1], [2, 0xaa, a as u8, 0, 0, 2]];
    let ports = [
        PortAddr {
            mac: mac[0],
            ip4: Some((lan.into(), 24)),
            mtu: lan_mtu,
            ip6: Some((lan6(a, 1), 64)),
        },
        PortAddr {
            mac: mac[1],
            ip4: Some((wan.into(), 24)),
            mtu: 1500,
            ip6: outer6.then(|| (wan6(a, 1), 64)),
        },
    ];
    let routes = RouteTable::new(
        &ports,
        &[Route {
            net: far_wan.into(),
            len: 24,
            port: PortId::Wan,
            via: Some(hop.into()),
        }],
    )
    .with_v6(&[crate::route::Route6 {
        net: wan6(!a, 0),
        len: 64,
        port: PortId::Wan,
        via: Some(wan6(a, 0xfe)),
    }]);
    let neigh = Neighbors::with_static(&[
        (std::net::IpAddr::from(hop), router, PortId::Wan),
        (wan6(a, 0xfe).into(), router, PortId::Wan),
        (std::net::IpAddr::from(host), host_mac, PortId::Lan),
        (lan6(a, 2).into(), host_mac, PortId::Lan),
    ]);
    let peer: std::net::IpAddr = match (outer6, a) {
        (false, true) => Ipv4Addr::new(10, 10, 200, 1).into(),
        (false, false) => Ipv4Addr::new(10, 10, 100, 1).into(),
        (true, _) => wan6(!a, 1).into(),
    };
    let sa = |spi: u32, direction, key: &[u8], algorithm| SaConfig {
        spi,
        direction,
        peer: 0,
        algorithm,
        key: Zeroizing::new(key.to_vec()),
        salt: [0xca, 0xfe, 0, spi as u8],
        esn: true,
        lane_of: None,
        anti_replay: true,
    };
    let (out_sa, in_sa) = if a {
        (
            sa(0x1001, Direction::Out, &K_AB, Algorithm::Aes128Gcm),
            sa(0x2001, Direction::In, &K_BA, Algorithm::Aes256Gcm),
        )
    } else {
        (
            sa(0x2001, Direction::Out, &K_BA, Algorithm::Aes256Gcm),
            sa(0x1001, Direction::In, &K_AB, Algorithm::Aes128Gcm),
        )
    };
    let out_spi = out_sa.spi;
    let mut section = TunnelSection {
        engine,
        udp_port: 4500,
        peers: vec![Peer {
            name: "peer".into(),
            address: peer,
            udp_port: 4500,
        }],
        sas: vec![out_sa, in_sa],
        routes: vec![TunnelRoute {
            prefix: ipnet::Ipv4Net::new(far_lan.into(), 16).unwrap(),
            spi: out_spi,
        }],
        routes6: vec![TunnelRoute6 {
            prefix: if a { FAR6_A } else { FAR6_B }.parse().unwrap(),
            spi: out_spi,
        }],
        listeners,
        nat_port_base: 32768,
        nat_slots: 1024,
        keying: crate::config::tunnel::Keying::Manual,
        tcp_mss,
    };
    edit(&mut section);
    let stats = Arc::new(StatsRegistry::new(workers));
    let slots = Arc::new(crate::tunnel::SaSlots::new(stats.clone()));
    let cx = crate::tunnel::TableContext::new(&section, &ports[0], &ports[1], Some(slots));
    let tables = Arc::new(StaticTables::new(
        TunnelTables::from_config(&section, &cx, 1).unwrap(),
    ));
    let (to_slow, slow_rx) = crossbeam_channel::bounded(64);
    let (reply_tx, replies) = crossbeam_channel::bounded(64);
    let gw = Arc::new(Gateway { ports, routes });
    let neigh = Arc::new(neigh);
    let mut all: Vec<Worker<MemQueue>> = (0..workers)
        .map(|id| {
            let links = WorkerLinks {
                gw: gw.clone(),
                neigh: neigh.clone(),
                to_slowpath: to_slow.clone(),
                replies: replies.clone(),
                stats: stats.clone(),
                tunnel: Some(tables.clone()),
                latency: None,
            };
            Worker::new(id, MemQueue::new(), MemQueue::new(), links, Duration::ZERO)
        })
        .collect();
    let worker = all.remove(0);
    Gw {
        worker,
        others: all,
        gw,
        neigh,
        stats,
        mac,
        router,
        tables,
        _slow: (slow_rx, reply_tx),
    }
}

/// An Ethernet frame with a UDP packet `src` → `dst` carrying `payload`.
fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    payload: &[u8],
) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut f = vec![0u8; ETH_HLEN + total];
    f[..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[ETH_HLEN..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = checksum::of(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..22].copy_from_slice(&40000u16.to_be_bytes());
    ip[22..24].copy_from_slice(&5001u16.to_be_bytes());
    ip[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    ip[28..].copy_from_slice(payload);
    f
}

/// A frame from the producer to the consumer (10.10.1.2 → 10.20.1.2),
/// addressed to gateway `a`'s LAN port, carrying `payload`.
fn prod_frame(a: &Gw, payload: &[u8]) -> Vec<u8> {
    udp_frame(a.mac[0], PROD, [10, 10, 1, 2], [10, 20, 1, 2], payload)
}

/// What B should deliver for a frame A received: MACs rewritten, TTL down by 2.
fn expected_at_cons(sent: &[u8], b: &Gw) -> Vec<u8> {
    let mut want = sent.to_vec();
    want[..6].copy_from_slice(&CONS);
    want[6..12].copy_from_slice(&b.mac[0]);
    want[ETH_HLEN + 8] -= 2;
    want[ETH_HLEN + 10] = 0;
    want[ETH_HLEN + 11] = 0;
    let c = checksum::of(&want[ETH_HLEN..ETH_HLEN + 20]);
    want[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
    want
}

/// The WAN router between A and B: forwards one gateway's WAN frames to
/// the WAN port of `to` (the frames leave the router with its MAC as source).
fn across_wan(frames: Vec<Vec<u8>>, to: &Gw) -> Vec<Vec<u8>> {
    frames
        .into_iter()
        .map(|mut f| {
            f[..6].copy_from_slice(&to.mac[1]);
            f[6..12].copy_from_slice(&to.router);
            f
        })
        .collect()
}

/// Runs `g`'s slow path (the real one) on what its worker handed it, then
/// lets the worker send the replies.
fn slow_path_round(g: &mut Gw) -> usize {
    let mut sp = SlowPath::new(
        g.gw.clone(),
        g.neigh.clone(),
        g._slow.0.clone(),
        vec![g._slow.1.clone()],
        g.stats.clone(),
    );
    let mut handled = 0;
    while let Ok(msg) = g._slow.0.try_recv() {
        sp.handle(msg);
        handled += 1;
    }
    poll_all(g);
    handled
}

fn poll_all(g: &mut Gw) {
    for _ in 0..64 {
        if g.worker.poll_once() == 0 {
            break;
        }
    }
}

/// [`poll_all`] for the gateway's first worker, then the same for each of
/// its other workers.
fn poll_every_worker(g: &mut Gw) {
    poll_all(g);
    for w in &mut g.others {
        for _ in 0..64 {
            if w.poll_once() == 0 {
                break;
            }
        }
    }
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len).map(|k| (k * 7 + i) as u8).collect();
    if len >= PATTERN.len() {
        p[..PATTERN.len()].copy_from_slice(PATTERN);
    }
    p
}

#[test]
fn bytes_cross_the_tunnel_exactly_with_every_engine() {
    for engine in EngineKind::ALL {
        let (mut a, mut b) = (gateway(true, engine), gateway(false, engine));
        // Sizes up to the inner MTU (1438 = 20 IP + 8 UDP + 1410 payload), more than one burst.
        let sizes: Vec<usize> = (0..100)
            .map(|i| [0, 1, 15, 16, 17, 255, 1000, 1410][i % 8])
            .collect();
        let sent: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| prod_frame(&a, &payload(i, n)))
            .collect();
        a.worker
            .queue_mut(PortId::Lan)
            .rx
            .extend(sent.iter().cloned());
        poll_all(&mut a);
        let wan = a.worker.queue_mut(PortId::Wan).take_tx();
        assert_eq!(wan.len(), sent.len(), "{engine:?}");
        for f in &wan {
            // On the WAN: IPv4/UDP 10.10.100.1:4500 -> 10.10.200.1:4500, to the router, no cleartext.
            assert_eq!(&f[..6], &ROUTER_A);
            assert_eq!(&f[6..12], &a.mac[1]);
            let outer = ipv4::parse(&f[ETH_HLEN..]).unwrap();
            assert_eq!(
                (outer.src, outer.dst, outer.protocol),
                (
                    Ipv4Addr::new(10, 10, 100, 1),
                    Ipv4Addr::new(10, 10, 200, 1),
                    17
                )
            );
            assert_eq!(&f[ETH_HLEN + 20..ETH_HLEN + 24], &[0x11, 0x94, 0x11, 0x94]);
            assert_eq!(
                &f[ETH_HLEN + 28..ETH_HLEN + 32],
                &0x1001u32.to_be_bytes(),
                "SPI"
            );
            assert!(
                !f.windows(PATTERN.len()).any(|w| w == PATTERN),
                "payload visible on the WAN"
            );
        }
        let wan = across_wan(wan, &b);
        b.worker.queue_mut(PortId::Wan).rx.extend(wan);
        poll_all(&mut b);
        let out = b.worker.queue_mut(PortId::Lan).take_tx();
        assert_eq!(out.len(), sent.len());
        for (got, s) in out.iter().zip(&sent) {
            assert_eq!(got, &expected_at_cons(s, &b), "{engine:?}");
        }
        let (sa, sb) = (a.stats.sum(), b.stats.sum());
        assert_eq!(sa.tunnel.encap_packets, 100);
        assert_eq!(sb.tunnel.decap_packets, 100);
        let inner: u64 = sent.iter().map(|f| (f.len() - ETH_HLEN) as u64).sum();
        assert_eq!(sa.tunnel.encap_bytes, inner, "inner bytes, as sent by prod");
        assert_eq!(sb.tunnel.decap_bytes, inner);
        assert_eq!(sa.total_drops() + sb.total_drops(), 0);

        // And back: cons -> prod through B then A.
        let reply = udp_frame(b.mac[0], CONS, [10, 20, 1, 2], [10, 10, 1, 2], b"reply");
        b.worker.queue_mut(PortId::Lan).rx.push_back(reply);
        poll_all(&mut b);
        let wan = b.worker.queue_mut(PortId::Wan).take_tx();
        assert_eq!(
            &wan[0][ETH_HLEN + 28..ETH_HLEN + 32],
            &0x2001u32.to_be_bytes()
        );
        let wan = across_wan(wan, &a);
        a.worker.queue_mut(PortId::Wan).rx.extend(wan);
        poll_all(&mut a);
        let back = a.worker.queue_mut(PortId::Lan).take_tx();
        assert_eq!(back.len(), 1);
        assert_eq!(&back[0][..6], &PROD);
        assert!(back[0].ends_with(b"reply"));
    }
}

#[test]
fn stage_cycles_count_every_frame_in_its_stages() {
    let (mut a, mut b) = (
        gateway(true, EngineKind::Ring),
        gateway(false, EngineKind::Ring),
    );
    a.worker.set_stage_cycles(true);
    b.worker.set_stage_cycles(true);
    // 100 frames: more than one burst, each of them a whole burst's worth of work.
    let sent: Vec<Vec<u8>> = (0..100)
        .map(|i| prod_frame(&a, &payload(i, 1000)))
        .collect();
    a.worker
        .queue_mut(PortId::Lan)
        .rx
        .extend(sent.iter().cloned());
    poll_all(&mut a);
    let wan = across_wan(a.worker.queue_mut(PortId::Wan).take_tx(), &b);
    assert_eq!(wan.len(), 100);
    b.worker.queue_mut(PortId::Wan).rx.extend(wan);
    poll_all(&mut b);
    assert_eq!(b.worker.queue_mut(PortId::Lan).take_tx().len(), 100);

    use crate::stage_clock::Stage;
    let (sa, sb) = (a.stats.sum().work.stages, b.stats.sum().work.stages);
    // Gateway A received, classified, sealed and sent each frame once, and opened none.
    assert_eq!(sa.packets, [100, 100, 100, 0, 100], "{sa:?}");
    // Gateway B opened them instead of sealing.
    assert_eq!(sb.packets, [100, 100, 0, 100, 100], "{sb:?}");
    for (counts, busy) in [(sa, [0, 1, 2, 4]), (sb, [0, 1, 3, 4])] {
        for i in busy {
            assert!(counts.cycles[i] > 0, "{:?}: {counts:?}", Stage::ALL[i]);
        }
    }
    assert_eq!(sa.cycles[Stage::Open as usize], 0);
    assert_eq!(sb.cycles[Stage::Seal as usize], 0);

    // Off (the default): nothing is counted.
    let mut c = gateway(true, EngineKind::Ring);
    c.worker.queue_mut(PortId::Lan).rx.extend(sent);
    poll_all(&mut c);
    assert_eq!(c.worker.queue_mut(PortId::Wan).take_tx().len(), 100);
    assert_eq!(c.stats.sum().work.stages, Default::default());
}

#[test]
fn tampered_replayed_and_unknown_spi_packets_are_dropped_and_counted() {
    let (mut a, mut b) = (
        gateway(true, EngineKind::Ring),
        gateway(false, EngineKind::Ring),
    );
    let f = prod_frame(&a, &payload(1, 200));
    a.worker.queue_mut(PortId::Lan).rx.push_back(f);
    poll_all(&mut a);
    let esp = across_wan(a.worker.queue_mut(PortId::Wan).take_tx(), &b).remove(0);

    let mut tampered = esp.clone();
    tampered[ETH_HLEN + 28 + 8 + 8 + 40] ^= 0x01; // a ciphertext byte
    let mut unknown = esp.clone();
    unknown[ETH_HLEN + 28..ETH_HLEN + 32].copy_from_slice(&0x0bad_0001u32.to_be_bytes());
    let mut truncated = esp.clone();
    truncated.truncate(ETH_HLEN + 28 + 8 + 8 + 4);
    let ip_len = (truncated.len() - ETH_HLEN) as u16;
    truncated[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&ip_len.to_be_bytes());
    truncated[ETH_HLEN + 24..ETH_HLEN + 26].copy_from_slice(&(ip_len - 20).to_be_bytes());
    truncated[ETH_HLEN + 10] = 0;
    truncated[ETH_HLEN + 11] = 0;
    let c = checksum::of(&truncated[ETH_HLEN..ETH_HLEN + 20]);
    truncated[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());

    let rx = &mut b.worker.queue_mut(PortId::Wan).rx;
    rx.push_back(tampered);
    rx.push_back(unknown);
    rx.push_back(truncated);
    rx.push_back(esp.clone()); // genuine: delivered
    rx.push_back(esp); // the same again: replay
    poll_all(&mut b);
    let delivered = b.worker.queue_mut(PortId::Lan).take_tx();
    assert_eq!(delivered.len(), 1, "only the genuine packet, once");
    let s = b.stats.sum();
    assert_eq!(s.dropped(DropReason::EspAuthFailed), 1);
    assert_eq!(s.dropped(DropReason::EspUnknownSpi), 1);
    assert_eq!(s.dropped(DropReason::EspMalformed), 1);
    assert_eq!(s.dropped(DropReason::EspReplay), 1);
    assert_eq!(s.total_drops(), 4);
}

/// Gateways A and B with 32-bit sequence numbers, B's inbound SA with the
/// anti-replay check `on` or off.
fn no_esn_pair(anti_replay: bool) -> (Gw, Gw) {
    let no_esn = |t: &mut TunnelSection| t.sas.iter_mut().for_each(|s| s.esn = false);
    let a = gateway_custom(
        true,
        EngineKind::Ring,
        Vec::new(),
        1500,
        None,
        false,
        1,
        no_esn,
    );
    let b = gateway_custom(
        false,
        EngineKind::Ring,
        Vec::new(),
        1500,
        None,
        false,
        1,
        |t| {
            no_esn(t);
            for s in t.sas.iter_mut().filter(|s| s.direction == Direction::In) {
                s.anti_replay = anti_replay;
            }
        },
    );
    (a, b)
}

/// `anti_replay = false` (for benchmarks that replay a capture): the same
/// ESP packet is opened each time it arrives, bytes exact, while forged
/// ones still fail authentication; with the check on (the default) the
/// copies are replay drops.
#[test]
fn an_sa_without_anti_replay_opens_a_replayed_packet_each_time() {
    for anti_replay in [false, true] {
        let (mut a, mut b) = no_esn_pair(anti_replay);
        let f = prod_frame(&a, &payload(7, 300));
        let want = expected_at_cons(&f, &b);
        a.worker.queue_mut(PortId::Lan).rx.push_back(f);
        poll_all(&mut a);
        let esp = across_wan(a.worker.queue_mut(PortId::Wan).take_tx(), &b).remove(0);
        let mut tampered = esp.clone();
        tampered[ETH_HLEN + 28 + 8 + 8 + 40] ^= 0x01;
        let rx = &mut b.worker.queue_mut(PortId::Wan).rx;
        for _ in 0..3 {
            rx.push_back(esp.clone());
        }
        rx.push_back(tampered);
        poll_all(&mut b);
        let delivered = b.worker.queue_mut(PortId::Lan).take_tx();
        let s = b.stats.sum();
        assert_eq!(s.dropped(DropReason::EspAuthFailed), 1, "{anti_replay}");
        if anti_replay {
            assert_eq!(delivered.len(), 1, "the first copy only");
            assert_eq!(s.dropped(DropReason::EspReplay), 2);
        } else {
            assert_eq!(delivered.len(), 3, "every copy");
            assert_eq!(s.dropped(DropReason::EspReplay), 0);
            assert_eq!(s.total_drops(), 1);
        }
        for d in &delivered {
            assert_eq!(d, &want, "{anti_replay}: bytes exact");
        }
    }
}

#[test]
fn no_cleartext_crosses_between_lan_and_wan() {
    let (mut a, mut b) = (
        gateway(true, EngineKind::Ring),
        gateway(false, EngineKind::Ring),
    );
    // LAN -> a WAN-side address with no tunnel route: not forwarded in clear.
    a.worker.queue_mut(PortId::Lan).rx.push_back(udp_frame(
        a.mac[0],
        PROD,
        [10, 10, 1, 2],
        [10, 10, 200, 77],
        b"leak?",
    ));
    poll_all(&mut a);
    assert!(a.worker.queue_mut(PortId::Wan).take_tx().is_empty());
    assert_eq!(a.stats.sum().dropped(DropReason::Policy), 1);
    // WAN -> cons in clear: not delivered.
    b.worker.queue_mut(PortId::Wan).rx.push_back(udp_frame(
        b.mac[1],
        ROUTER_B,
        [10, 10, 100, 1],
        [10, 20, 1, 2],
        b"inject",
    ));
    poll_all(&mut b);
    assert!(b.worker.queue_mut(PortId::Lan).take_tx().is_empty());
    assert_eq!(b.stats.sum().dropped(DropReason::Policy), 1);
}

#[test]
fn too_big_with_df_is_answered_with_the_inner_mtu() {
    let mut a = gateway(true, EngineKind::Ring);
    let inner_mtu = crate::esp::inner_mtu(1500);
    assert_eq!(inner_mtu, 1438);
    // 1439-byte IP packet with DF: one over the inner MTU.
    let f = prod_frame(&a, &payload(0, 1439 - 28));
    a.worker.queue_mut(PortId::Lan).rx.push_back(f);
    poll_all(&mut a);
    assert!(a.worker.queue_mut(PortId::Wan).take_tx().is_empty());
    match a._slow.0.try_recv().expect("handed to the slow path") {
        SlowMsg::Frame { reason, .. } => {
            assert_eq!(reason, crate::forward::SlowReason::FragNeeded(inner_mtu))
        }
        other => panic!("{other:?}"),
    }
}

/// A UDP frame with a real UDP checksum, `src:sport` → `dst:dport`.
fn udp_frame_ck(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut f = udp_frame(dst_mac, src_mac, src.0, dst.0, payload);
    let ip = &mut f[ETH_HLEN..];
    ip[20..22].copy_from_slice(&src.1.to_be_bytes());
    ip[22..24].copy_from_slice(&dst.1.to_be_bytes());
    let mut udp = smoltcp::wire::UdpPacket::new_unchecked(&mut ip[20..]);
    udp.fill_checksum(
        &smoltcp::wire::IpAddress::Ipv4(src.0.into()),
        &smoltcp::wire::IpAddress::Ipv4(dst.0.into()),
    );
    f
}

/// (source, destination) socket addresses of the UDP packet in `f`, after checking its checksums.
fn udp_addrs(f: &[u8]) -> (std::net::SocketAddrV4, std::net::SocketAddrV4, Vec<u8>) {
    let ip = ipv4::parse(&f[ETH_HLEN..]).expect("valid IPv4");
    let l4b = &f[ETH_HLEN + ip.header_len..ETH_HLEN + ip.total_len];
    l4::check_udp(&ip, l4b).expect("valid UDP checksum");
    let sport = u16::from_be_bytes([l4b[0], l4b[1]]);
    let dport = u16::from_be_bytes([l4b[2], l4b[3]]);
    (
        std::net::SocketAddrV4::new(ip.src, sport),
        std::net::SocketAddrV4::new(ip.dst, dport),
        l4b[8..].to_vec(),
    )
}

/// Listener mode's two sides: A the producer side (listener
/// 10.10.100.1:6100 -> prod 10.10.1.2:7000), B the consumer side (listener
/// 10.20.1.1:5100 -> A's 10.10.100.1:6100).
fn listener_pair() -> (Gw, Gw) {
    let a = gateway_with(
        true,
        EngineKind::Ring,
        vec![ListenerConfig {
            role: ListenerRole::Inbound,
            port: 6100,
            remote: None,
            target: Some("10.10.1.2:7000".parse().unwrap()),
            spi: 0x1001,
        }],
    );
    let b = gateway_with(
        false,
        EngineKind::Ring,
        vec![ListenerConfig {
            role: ListenerRole::Outbound,
            port: 5100,
            remote: Some("10.10.100.1:6100".parse().unwrap()),
            target: None,
            spi: 0x2001,
        }],
    );
    (a, b)
}

#[test]
fn listener_mode_round_trip_for_several_consumers() {
    use std::net::SocketAddrV4;
    let (mut a, mut b) = listener_pair();
    let listener_b = SocketAddrV4::new([10, 20, 1, 1].into(), 5100);
    let target = SocketAddrV4::new([10, 10, 1, 2].into(), 7000);
    let consumers: Vec<u16> = vec![40001, 40002, 40003];
    let mut mapped = Vec::new();
    for &cport in &consumers {
        // 1. cons -> B's listener.
        let f = udp_frame_ck(
            b.mac[0],
            CONS,
            ([10, 20, 1, 2], cport),
            ([10, 20, 1, 1], 5100),
            &cport.to_be_bytes(),
        );
        b.worker.queue_mut(PortId::Lan).rx.push_back(f);
        poll_all(&mut b);
        let wan = b.worker.queue_mut(PortId::Wan).take_tx();
        assert_eq!(wan.len(), 1, "B sealed it: {:?}", b.stats.sum().drops);
        // 2. A opens it and sends it to the producer from a mapped port.
        let wan = across_wan(wan, &a);
        a.worker.queue_mut(PortId::Wan).rx.extend(wan);
        poll_all(&mut a);
        let lan = a.worker.queue_mut(PortId::Lan).take_tx();
        assert_eq!(lan.len(), 1, "A delivered it: {:?}", a.stats.sum().drops);
        assert_eq!(&lan[0][..6], &PROD);
        let (src, dst, body) = udp_addrs(&lan[0]);
        assert_eq!(
            *src.ip(),
            Ipv4Addr::new(10, 10, 1, 1),
            "from A's LAN address"
        );
        assert_eq!(dst, target);
        assert_eq!(body, cport.to_be_bytes());
        mapped.push(src.port());
    }
    let mut distinct = mapped.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        consumers.len(),
        "one mapped port per consumer: {mapped:?}"
    );
    assert_eq!(a.worker_tables_nat_active(), 3);

    // 3. The producer answers each consumer; 4. each answer reaches its consumer from B's listener.
    for (&cport, &m) in consumers.iter().zip(&mapped).rev() {
        let reply = udp_frame_ck(
            a.mac[0],
            PROD,
            ([10, 10, 1, 2], 7000),
            ([10, 10, 1, 1], m),
            &[0xee, cport as u8],
        );
        a.worker.queue_mut(PortId::Lan).rx.push_back(reply);
        poll_all(&mut a);
        let wan = a.worker.queue_mut(PortId::Wan).take_tx();
        assert_eq!(
            wan.len(),
            1,
            "A sealed the reply: {:?}",
            a.stats.sum().drops
        );
        let wan = across_wan(wan, &b);
        b.worker.queue_mut(PortId::Wan).rx.extend(wan);
        poll_all(&mut b);
        let lan = b.worker.queue_mut(PortId::Lan).take_tx();
        assert_eq!(
            lan.len(),
            1,
            "B delivered the reply: {:?}",
            b.stats.sum().drops
        );
        assert_eq!(&lan[0][..6], &CONS);
        let (src, dst, body) = udp_addrs(&lan[0]);
        assert_eq!(src, listener_b, "from B's listener");
        assert_eq!(dst, SocketAddrV4::new([10, 20, 1, 2].into(), cport));
        assert_eq!(body, [0xee, cport as u8]);
    }
    // A reply to a port of the pool that no connection maps is dropped and
    // counted (slots are chosen by a keyed hash: pick one not in use).
    let unmapped = (32768..)
        .find(|p| !mapped.contains(p))
        .expect("a free port");
    let stray = udp_frame_ck(
        a.mac[0],
        PROD,
        ([10, 10, 1, 2], 7000),
        ([10, 10, 1, 1], unmapped),
        b"x",
    );
    a.worker.queue_mut(PortId::Lan).rx.push_back(stray);
    poll_all(&mut a);
    assert!(a.worker.queue_mut(PortId::Wan).take_tx().is_empty());
    assert_eq!(a.stats.sum().dropped(DropReason::NatNoMapping), 1);
}

/// The ICMP message (type, code, next-hop MTU, quoted IPv4 header) in the
/// IPv4 packet of frame `f`, after checking the checksums.
fn icmp_error_in(f: &[u8]) -> (Ipv4Addr, Ipv4Addr, u8, u8, u16, ipv4::Ipv4Info) {
    let ip = ipv4::parse(&f[ETH_HLEN..]).expect("valid IPv4");
    assert_eq!(ip.protocol, 1, "ICMP");
    let icmp = &f[ETH_HLEN + ip.header_len..ETH_HLEN + ip.total_len];
    assert_eq!(checksum::of(icmp), 0, "ICMP checksum");
    let quoted = ipv4::parse(&icmp[8..]).or_else(|_| {
        // The quote holds the header and 8 bytes: parse the header alone
        // (its total length then reads 20).
        let mut h = icmp[8..28].to_vec();
        let len = h.len() as u16;
        h[2..4].copy_from_slice(&len.to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::of(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        ipv4::parse(&h)
    });
    (
        ip.src,
        ip.dst,
        icmp[0],
        icmp[1],
        u16::from_be_bytes([icmp[6], icmp[7]]),
        quoted.expect("a quoted IPv4 header"),
    )
}

/// A's producer sends to the consumer with TTL 2: A seals it (TTL 1 inside),
/// B opens it, and its route-out step finds the TTL spent. B's slow path
/// answers with ICMP time exceeded from B's WAN address, which goes back
/// through the tunnel (B seals it with its outbound SA) and reaches the
/// producer through A, quoting the packet as B received it.
#[test]
fn ttl_expiring_after_decapsulation_gets_time_exceeded_through_the_tunnel() {
    let (mut a, mut b) = (
        gateway(true, EngineKind::Ring),
        gateway(false, EngineKind::Ring),
    );
    let mut f = prod_frame(&a, b"ttl");
    f[ETH_HLEN + 8] = 2;
    f[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&[0, 0]);
    let c = checksum::of(&f[ETH_HLEN..ETH_HLEN + 20]);
    f[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
    a.worker.queue_mut(PortId::Lan).rx.push_back(f);
    poll_all(&mut a);
    let wan = across_wan(a.worker.queue_mut(PortId::Wan).take_tx(), &b);
    assert_eq!(wan.len(), 1, "A sealed it: {:?}", a.stats.sum().drops);
    b.worker.queue_mut(PortId::Wan).rx.extend(wan);
    poll_all(&mut b);
    assert!(
        b.worker.queue_mut(PortId::Lan).take_tx().is_empty(),
        "not delivered with TTL 1"
    );
    match b._slow.0.try_recv().expect("an error for the slow path") {
        msg @ SlowMsg::Frame { .. } => {
            let SlowMsg::Frame {
                reason, via, port, ..
            } = &msg
            else {
                unreachable!()
            };
            assert_eq!(*reason, crate::forward::SlowReason::TtlExceeded);
            assert_eq!(*via, Via::Tunnel { spi: 0x2001 });
            assert_eq!(*port, PortId::Wan);
            // Put it back for the real slow path.
            let mut sp = SlowPath::new(
                b.gw.clone(),
                b.neigh.clone(),
                b._slow.0.clone(),
                vec![b._slow.1.clone()],
                b.stats.clone(),
            );
            sp.handle(msg);
        }
        other => panic!("{other:?}"),
    }
    poll_all(&mut b);
    let back = across_wan(b.worker.queue_mut(PortId::Wan).take_tx(), &a);
    assert_eq!(
        back.len(),
        1,
        "B sealed the error: {:?}",
        b.stats.sum().drops
    );
    assert_eq!(b.stats.sum().control.icmp_errors, 1);
    a.worker.queue_mut(PortId::Wan).rx.extend(back);
    poll_all(&mut a);
    let lan = a.worker.queue_mut(PortId::Lan).take_tx();
    assert_eq!(
        lan.len(),
        1,
        "A delivered the error: {:?}",
        a.stats.sum().drops
    );
    assert_eq!(&lan[0][..6], &PROD);
    let (src, dst, ty, code, _, quoted) = icmp_error_in(&lan[0]);
    assert_eq!((ty, code), (11, 0), "time exceeded in transit");
    assert_eq!(src, Ipv4Addr::new(10, 10, 200, 1), "from B's WAN address");
    assert_eq!(dst, Ipv4Addr::new(10, 10, 1, 2));
    assert_eq!(
        (quoted.src, quoted.dst, quoted.ttl),
        (Ipv4Addr::new(10, 10, 1, 2), Ipv4Addr::new(10, 20, 1, 2), 1)
    );
}

/// B's LAN MTU is 1300: a 1400-byte packet with DF fits the tunnel (inner
/// MTU 1438) but not B's LAN. B answers with fragmentation needed, next-hop
/// MTU 1300, back through the tunnel to the producer.
#[test]
fn too_big_for_the_lan_after_decapsulation_gets_frag_needed_through_the_tunnel() {
    let mut a = gateway(true, EngineKind::Ring);
    let mut b = gateway_mtu(false, EngineKind::Ring, vec![], 1300);
    let f = prod_frame(&a, &payload(1, 1400 - 28));
    a.worker.queue_mut(PortId::Lan).rx.push_back(f);
    poll_all(&mut a);
    let wan = across_wan(a.worker.queue_mut(PortId::Wan).take_tx(), &b);
    assert_eq!(wan.len(), 1, "fits the tunnel: {:?}", a.stats.sum().drops);
    b.worker.queue_mut(PortId::Wan).rx.extend(wan);
    poll_all(&mut b);
    assert!(b.worker.queue_mut(PortId::Lan).take_tx().is_empty());
    assert_eq!(slow_path_round(&mut b), 1);
    let back = across_wan(b.worker.queue_mut(PortId::Wan).take_tx(), &a);
    assert_eq!(
        back.len(),
        1,
        "B sealed the error: {:?}",
        b.stats.sum().drops
    );
    a.worker.queue_mut(PortId::Wan).rx.extend(back);
    poll_all(&mut a);
    let lan = a.worker.queue_mut(PortId::Lan).take_tx();
    assert_eq!(
        lan.len(),
        1,
        "A delivered the error: {:?}",
        a.stats.sum().drops
    );
    let (src, dst, ty, code, mtu, quoted) = icmp_error_in(&lan[0]);
    assert_eq!(
        (ty, code, mtu),
        (3, 4, 1300),
        "fragmentation needed, MTU 1300"
    );
    assert_eq!(src, Ipv4Addr::new(10, 10, 200, 1));
    assert_eq!(dst, Ipv4Addr::new(10, 10, 1, 2));
    // The quote is the header and 8 bytes; its total-length field says 1400.
    let ip = ipv4::parse(&lan[0][ETH_HLEN..]).unwrap();
    let at = ETH_HLEN + ip.header_len + 8 + 2;
    assert_eq!(u16::from_be_bytes([lan[0][at], lan[0][at + 1]]), 1400);
    assert_eq!(quoted.src, Ipv4Addr::new(10, 10, 1, 2));
    // Without DF the gateway drops it (it never fragments) and counts it.
    let mut f = prod_frame(&a, &payload(2, 1400 - 28));
    f[ETH_HLEN + 6] = 0;
    f[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&[0, 0]);
    let c = checksum::of(&f[ETH_HLEN..ETH_HLEN + 20]);
    f[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
    a.worker.queue_mut(PortId::Lan).rx.push_back(f);
    poll_all(&mut a);
    let wan = across_wan(a.worker.queue_mut(PortId::Wan).take_tx(), &b);
    b.worker.queue_mut(PortId::Wan).rx.extend(wan);
    poll_all(&mut b);
    assert!(b.worker.queue_mut(PortId::Lan).take_tx().is_empty());
    assert_eq!(b.stats.sum().dropped(DropReason::TooBig), 1);
    assert!(b._slow.0.try_recv().is_err(), "no error without DF");
}

/// Listener mode: a consumer's packet to B's listener with TTL 2 reaches A
/// with TTL 1. A checks it before translating it, so its time exceeded
/// (from A's WAN address, the listener's) quotes what the consumer sent;
/// it goes back through the tunnel, and B translates it toward the
/// consumer: from B's LAN address, quoting B's own listener.
#[test]
fn listener_mode_time_exceeded_reaches_the_consumer_translated() {
    let (mut a, mut b) = listener_pair();
    let mut f = udp_frame_ck(
        b.mac[0],
        CONS,
        ([10, 20, 1, 2], 40001),
        ([10, 20, 1, 1], 5100),
        b"short-lived",
    );
    f[ETH_HLEN + 8] = 2;
    f[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&[0, 0]);
    let c = checksum::of(&f[ETH_HLEN..ETH_HLEN + 20]);
    f[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
    b.worker.queue_mut(PortId::Lan).rx.push_back(f);
    poll_all(&mut b);
    let wan = across_wan(b.worker.queue_mut(PortId::Wan).take_tx(), &a);
    assert_eq!(wan.len(), 1, "B sealed it: {:?}", b.stats.sum().drops);
    a.worker.queue_mut(PortId::Wan).rx.extend(wan);
    poll_all(&mut a);
    assert!(a.worker.queue_mut(PortId::Lan).take_tx().is_empty());
    assert_eq!(a.worker_tables_nat_active(), 0, "no connection for it");
    assert_eq!(slow_path_round(&mut a), 1);
    let back = across_wan(a.worker.queue_mut(PortId::Wan).take_tx(), &b);
    assert_eq!(
        back.len(),
        1,
        "A sealed the error: {:?}",
        a.stats.sum().drops
    );
    b.worker.queue_mut(PortId::Wan).rx.extend(back);
    poll_all(&mut b);
    let lan = b.worker.queue_mut(PortId::Lan).take_tx();
    assert_eq!(lan.len(), 1, "B delivered it: {:?}", b.stats.sum().drops);
    assert_eq!(&lan[0][..6], &CONS);
    let (src, dst, ty, code, _, quoted) = icmp_error_in(&lan[0]);
    assert_eq!((ty, code), (11, 0));
    assert_eq!(src, Ipv4Addr::new(10, 20, 1, 1), "from B's LAN address");
    assert_eq!(dst, Ipv4Addr::new(10, 20, 1, 2));
    assert_eq!(
        (quoted.src, quoted.dst),
        (Ipv4Addr::new(10, 20, 1, 2), Ipv4Addr::new(10, 20, 1, 1)),
        "quoting the consumer's packet to B's listener"
    );
}

/// Routed traffic that is neither TCP nor UDP crosses a tunnel where a
/// listener session is held: B has an outbound listener (so it checks what
/// it decapsulates for replies to it), yet an ICMP echo from prod to cons,
/// a GRE packet and a later fragment of a routed datagram reach cons
/// unchanged, none dropped as `nat_unsupported`.
#[test]
fn routed_echo_other_protocols_and_fragments_pass_beside_a_listener_session() {
    let (mut a, mut b) = listener_pair();
    let routed = |proto: u8, frag_offset: u16, body: &[u8]| {
        let mut f = prod_frame(&a, body);
        let ip = &mut f[ETH_HLEN..];
        ip[9] = proto;
        ip[6..8].copy_from_slice(&(0x4000 | frag_offset).to_be_bytes());
        if frag_offset != 0 {
            ip[6] &= !0x40; // a fragment has no DF
        }
        if proto == 1 {
            // ICMP echo request id 7 seq 1, over what follows.
            ip[20..28].copy_from_slice(&[8, 0, 0, 0, 0, 7, 0, 1]);
            let c = checksum::of(&ip[20..]);
            ip[22..24].copy_from_slice(&c.to_be_bytes());
        }
        ip[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::of(&ip[..20]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f
    };
    let sent = [
        routed(1, 0, b"ping payload"),
        routed(47, 0, b"gre, say"),
        routed(17, 185, b"the tail of a fragmented datagram"),
    ];
    a.worker
        .queue_mut(PortId::Lan)
        .rx
        .extend(sent.iter().cloned());
    poll_all(&mut a);
    let wan = across_wan(a.worker.queue_mut(PortId::Wan).take_tx(), &b);
    assert_eq!(
        wan.len(),
        3,
        "A sealed all three: {:?}",
        a.stats.sum().drops
    );
    b.worker.queue_mut(PortId::Wan).rx.extend(wan);
    poll_all(&mut b);
    let got = b.worker.queue_mut(PortId::Lan).take_tx();
    let want: Vec<Vec<u8>> = sent.iter().map(|f| expected_at_cons(f, &b)).collect();
    assert_eq!(got, want, "B drops: {:?}", b.stats.sum().drops);
    assert_eq!(b.stats.sum().dropped(DropReason::NatUnsupported), 0);
}

/// Each SA is counted on its own in the stats segment: what A sealed with
/// its outbound SA is what B opened with the matching inbound SA, packets
/// and inner bytes; a tampered packet is B's SA's authentication failure.
#[test]
fn every_sa_is_counted_in_the_stats_segment() {
    use scistream_region::Direction;
    let (mut a, mut b) = (
        gateway(true, EngineKind::Ring),
        gateway(false, EngineKind::Ring),
    );
    let mut inner = 0u64;
    for i in 0..40 {
        let f = prod_frame(&a, &payload(i, 100 + i));
        inner += (f.len() - ETH_HLEN) as u64;
        a.worker.queue_mut(PortId::Lan).rx.push_back(f);
    }
    poll_all(&mut a);
    let mut wan = across_wan(a.worker.queue_mut(PortId::Wan).take_tx(), &b);
    assert_eq!(wan.len(), 40);
    let last = wan.len() - 1;
    let n = wan[last].len();
    wan[last][n - 1] ^= 0x80; // the ICV's last byte
    b.worker.queue_mut(PortId::Wan).rx.extend(wan);
    poll_all(&mut b);
    let sa = |g: &Gw, d: Direction| {
        g.stats
            .segment()
            .sa_totals()
            .into_iter()
            .find(|t| t.direction == Some(d))
            .expect("the SA is listed")
    };
    let out = sa(&a, Direction::Out);
    assert_eq!((out.spi, out.packets, out.bytes), (0x1001, 40, inner));
    let last_inner = (100 + 39 + 28) as u64;
    let opened = sa(&b, Direction::In);
    assert_eq!(
        (opened.spi, opened.packets, opened.bytes, opened.auth_failed),
        (0x1001, 39, inner - last_inner, 1)
    );
    assert_eq!(b.stats.sum().dropped(DropReason::EspAuthFailed), 1);
}

/// An Ethernet frame with a TCP segment `src` → `dst` with `control` (SYN,
/// or SYN-ACK when `ack` is set) announcing MSS `mss`, as Linux sends one
/// (SACK permitted, timestamps, window scale), with a valid checksum.
fn tcp_syn_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: std::net::SocketAddrV4,
    dst: std::net::SocketAddrV4,
    ack: bool,
    mss: u16,
) -> Vec<u8> {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        IpAddress, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, TcpTimestampRepr,
    };
    let repr = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(1000),
        ack_number: ack.then_some(TcpSeqNumber(7000)),
        window_len: 64240,
        window_scale: Some(7),
        max_seg_size: Some(mss),
        sack_permitted: true,
        sack_ranges: [None; 3],
        timestamp: Some(TcpTimestampRepr { tsval: 1, tsecr: 0 }),
        payload: &[],
    };
    let tcp_len = repr.header_len();
    let total = 20 + tcp_len;
    let mut f = vec![0u8; ETH_HLEN + total];
    f[..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[ETH_HLEN..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let c = checksum::of(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut ip[20..]),
        &IpAddress::Ipv4(*src.ip()),
        &IpAddress::Ipv4(*dst.ip()),
        &ChecksumCapabilities::default(),
    );
    f
}

/// The MSS a delivered TCP frame announces, after checking its IPv4 and
/// TCP checksums.
fn delivered_mss(f: &[u8]) -> u16 {
    use smoltcp::wire::TcpPacket;
    let ip = ipv4::parse(&f[ETH_HLEN..]).expect("valid IPv4 header");
    let seg = &f[ETH_HLEN + ip.header_len..ETH_HLEN + ip.total_len];
    l4::check_tcp(&ip, seg).expect("valid TCP checksum");
    let tcp = TcpPacket::new_checked(seg).unwrap();
    assert!(tcp.syn());
    tcp.options_summary()
        .unwrap()
        .max_segment_size
        .expect("an MSS option")
}

#[test]
fn tcp_syns_crossing_the_tunnel_have_their_mss_clamped_to_the_inner_mtu() {
    let fits = 1438 - 40;
    let prod = "10.10.1.2:40000".parse().unwrap();
    let cons = "10.20.1.2:5201".parse().unwrap();
    // Both gateways clamp: A lowers the producer's SYN as it seals it, B the consumer's SYN-ACK.
    let (mut a, mut b) = (
        gateway(true, EngineKind::Ring),
        gateway(false, EngineKind::Ring),
    );
    let syn = tcp_syn_frame(a.mac[0], PROD, prod, cons, false, 1460);
    a.worker.queue_mut(PortId::Lan).rx.push_back(syn);
    poll_all(&mut a);
    let wan = across_wan(a.worker.queue_mut(PortId::Wan).take_tx(), &b);
    b.worker.queue_mut(PortId::Wan).rx.extend(wan);
    poll_all(&mut b);
    let got = b.worker.queue_mut(PortId::Lan).take_tx();
    assert_eq!(got.len(), 1, "{:?}", b.stats.sum().drops);
    assert_eq!(delivered_mss(&got[0]), fits);
    let syn_ack = tcp_syn_frame(b.mac[0], CONS, cons, prod, true, 8960);
    b.worker.queue_mut(PortId::Lan).rx.push_back(syn_ack);
    poll_all(&mut b);
    let wan = across_wan(b.worker.queue_mut(PortId::Wan).take_tx(), &a);
    a.worker.queue_mut(PortId::Wan).rx.extend(wan);
    poll_all(&mut a);
    let got = a.worker.queue_mut(PortId::Lan).take_tx();
    assert_eq!(got.len(), 1, "{:?}", a.stats.sum().drops);
    assert_eq!(delivered_mss(&got[0]), fits);
    assert_eq!(a.stats.sum().tunnel.mss_clamped, 1, "A: the SYN");
    assert_eq!(b.stats.sum().tunnel.mss_clamped, 1, "B: the SYN-ACK");

    // A peer that does not clamp (B off): A still lowers what comes out of
    // the tunnel, so its producer never sends a segment too big for it.
    let mut b = gateway_full(false, EngineKind::Ring, vec![], 1500, None, false);
    let syn = tcp_syn_frame(b.mac[0], CONS, cons, prod, false, 1460);
    b.worker.queue_mut(PortId::Lan).rx.push_back(syn);
    poll_all(&mut b);
    let wan = b.worker.queue_mut(PortId::Wan).take_tx();
    assert_eq!(wan.len(), 1);
    assert_eq!(b.stats.sum().tunnel.mss_clamped, 0, "B does not clamp");
    let mut a = gateway(true, EngineKind::Ring);
    let wan = across_wan(wan, &a);
    a.worker.queue_mut(PortId::Wan).rx.extend(wan);
    poll_all(&mut a);
    let got = a.worker.queue_mut(PortId::Lan).take_tx();
    assert_eq!(got.len(), 1, "{:?}", a.stats.sum().drops);
    assert_eq!(delivered_mss(&got[0]), fits);
    assert_eq!(
        a.stats.sum().tunnel.mss_clamped,
        1,
        "A clamps on the way out of the tunnel"
    );

    // An MSS that fits passes as sent, and is not counted.
    let mut a = gateway(true, EngineKind::Ring);
    let mut b = gateway(false, EngineKind::Ring);
    let syn = tcp_syn_frame(a.mac[0], PROD, prod, cons, false, 1200);
    a.worker.queue_mut(PortId::Lan).rx.push_back(syn);
    poll_all(&mut a);
    let wan = across_wan(a.worker.queue_mut(PortId::Wan).take_tx(), &b);
    b.worker.queue_mut(PortId::Wan).rx.extend(wan);
    poll_all(&mut b);
    let got = b.worker.queue_mut(PortId::Lan).take_tx();
    assert_eq!(delivered_mss(&got[0]), 1200);
    assert_eq!(
        a.stats.sum().tunnel.mss_clamped + b.stats.sum().tunnel.mss_clamped,
        0
    );
}

#[test]
fn listener_mode_syns_are_clamped_after_the_address_translation() {
    let (mut a, mut b) = listener_pair();
    let consumer = "10.20.1.2:40001".parse().unwrap();
    let syn = tcp_syn_frame(
        b.mac[0],
        CONS,
        consumer,
        "10.20.1.1:5100".parse().unwrap(),
        false,
        1460,
    );
    b.worker.queue_mut(PortId::Lan).rx.push_back(syn);
    poll_all(&mut b);
    let wan = across_wan(b.worker.queue_mut(PortId::Wan).take_tx(), &a);
    assert_eq!(wan.len(), 1, "{:?}", b.stats.sum().drops);
    a.worker.queue_mut(PortId::Wan).rx.extend(wan);
    poll_all(&mut a);
    let got = a.worker.queue_mut(PortId::Lan).take_tx();
    assert_eq!(got.len(), 1, "{:?}", a.stats.sum().drops);
    let ip = ipv4::parse(&got[0][ETH_HLEN..]).unwrap();
    assert_eq!(
        ip.dst,
        Ipv4Addr::new(10, 10, 1, 2),
        "translated to the producer"
    );
    assert_eq!(delivered_mss(&got[0]), 1438 - 40);
    assert_eq!(b.stats.sum().tunnel.mss_clamped, 1);
}

/// An Ethernet frame with an IPv6 UDP packet `src` → `dst` (hop limit
/// `hops`) carrying `payload`, with a valid UDP checksum.
fn udp6_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    hops: u8,
    payload: &[u8],
) -> Vec<u8> {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpAddress, UdpPacket, UdpRepr};
    let repr = UdpRepr {
        src_port: 40000,
        dst_port: 5001,
    };
    let mut udp = vec![0u8; 8 + payload.len()];
    repr.emit(
        &mut UdpPacket::new_unchecked(&mut udp[..]),
        &IpAddress::Ipv6(src),
        &IpAddress::Ipv6(dst),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    let mut ip = crate::wire::ipv6::tests::packet(17, &[], &udp, hops);
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&crate::wire::icmpv6::ETHERTYPE_IPV6);
    f.extend_from_slice(&ip);
    f
}

#[test]
fn ipv6_crosses_the_tunnel_inside_esp_with_next_header_41() {
    for engine in EngineKind::ALL {
        let (mut a, mut b) = (gateway(true, engine), gateway(false, engine));
        let sent: Vec<Vec<u8>> = (0..40)
            .map(|i| {
                let len = [0, 17, 1000, 1438 - 48][i % 4];
                udp6_frame(
                    a.mac[0],
                    PROD,
                    lan6(true, 2),
                    lan6(false, 2),
                    64,
                    &payload(i, len),
                )
            })
            .collect();
        a.worker
            .queue_mut(PortId::Lan)
            .rx
            .extend(sent.iter().cloned());
        poll_all(&mut a);
        let wan = a.worker.queue_mut(PortId::Wan).take_tx();
        assert_eq!(
            wan.len(),
            sent.len(),
            "{engine:?}: {:?}",
            a.stats.sum().drops
        );
        for f in &wan {
            // Outer IPv4 ESP-in-UDP, the payload not visible.
            assert_eq!(&f[12..14], &[0x08, 0x00]);
            assert_eq!(&f[ETH_HLEN + 28..ETH_HLEN + 32], &0x1001u32.to_be_bytes());
            assert!(!f.windows(PATTERN.len()).any(|w| w == PATTERN));
        }
        let wan = across_wan(wan, &b);
        b.worker.queue_mut(PortId::Wan).rx.extend(wan);
        poll_all(&mut b);
        let out = b.worker.queue_mut(PortId::Lan).take_tx();
        assert_eq!(
            out.len(),
            sent.len(),
            "{engine:?}: {:?}",
            b.stats.sum().drops
        );
        for (got, s) in out.iter().zip(&sent) {
            let mut want = s.clone();
            want[..6].copy_from_slice(&CONS);
            want[6..12].copy_from_slice(&b.mac[0]);
            want[ETH_HLEN + 7] -= 2; // one hop at each gateway
            assert_eq!(got, &want, "{engine:?}");
        }
        assert_eq!(a.stats.sum().total_drops() + b.stats.sum().total_drops(), 0);
        // And back.
        let reply = udp6_frame(b.mac[0], CONS, lan6(false, 2), lan6(true, 2), 64, b"reply6");
        b.worker.queue_mut(PortId::Lan).rx.push_back(reply);
        poll_all(&mut b);
        let wan = across_wan(b.worker.queue_mut(PortId::Wan).take_tx(), &a);
        a.worker.queue_mut(PortId::Wan).rx.extend(wan);
        poll_all(&mut a);
        let back = a.worker.queue_mut(PortId::Lan).take_tx();
        assert_eq!(back.len(), 1);
        assert!(back[0].ends_with(b"reply6") && back[0][..6] == PROD);
    }
}

#[test]
fn ipv6_too_big_for_the_tunnel_and_hop_limit_expiry_after_it_get_icmpv6() {
    use smoltcp::wire::{Icmpv6Packet, Icmpv6Repr};
    let (mut a, mut b) = (
        gateway(true, EngineKind::Ring),
        gateway(false, EngineKind::Ring),
    );
    // One byte over the inner MTU: Packet Too Big with 1438, from A's slow path.
    let big = udp6_frame(
        a.mac[0],
        PROD,
        lan6(true, 2),
        lan6(false, 2),
        64,
        &[7; 1439 - 48],
    );
    a.worker.queue_mut(PortId::Lan).rx.push_back(big);
    poll_all(&mut a);
    assert!(a.worker.queue_mut(PortId::Wan).take_tx().is_empty());
    assert_eq!(slow_path_round(&mut a), 1);
    let lan = a.worker.queue_mut(PortId::Lan).take_tx();
    assert_eq!(lan.len(), 1);
    let ip = crate::wire::ipv6::parse(&lan[0][ETH_HLEN..]).unwrap();
    let body = &lan[0][ETH_HLEN + ip.l4_at..ETH_HLEN + ip.total_len];
    let p = Icmpv6Packet::new_checked(body).unwrap();
    let repr = Icmpv6Repr::parse(&ip.src, &ip.dst, &p, &Default::default()).unwrap();
    assert!(
        matches!(repr, Icmpv6Repr::PktTooBig { mtu: 1438, .. }),
        "{repr:?}"
    );
    assert_eq!((ip.src, ip.dst), (lan6(true, 1), lan6(true, 2)));

    // Hop limit 2: 1 after A, so B answers time exceeded through the tunnel.
    let f = udp6_frame(a.mac[0], PROD, lan6(true, 2), lan6(false, 2), 2, b"hops");
    a.worker.queue_mut(PortId::Lan).rx.push_back(f);
    poll_all(&mut a);
    let wan = across_wan(a.worker.queue_mut(PortId::Wan).take_tx(), &b);
    b.worker.queue_mut(PortId::Wan).rx.extend(wan);
    poll_all(&mut b);
    assert!(b.worker.queue_mut(PortId::Lan).take_tx().is_empty());
    assert_eq!(slow_path_round(&mut b), 1);
    let back = across_wan(b.worker.queue_mut(PortId::Wan).take_tx(), &a);
    assert_eq!(
        back.len(),
        1,
        "B sealed the error: {:?}",
        b.stats.sum().drops
    );
    a.worker.queue_mut(PortId::Wan).rx.extend(back);
    poll_all(&mut a);
    let lan = a.worker.queue_mut(PortId::Lan).take_tx();
    assert_eq!(lan.len(), 1, "A delivered it: {:?}", a.stats.sum().drops);
    let ip = crate::wire::ipv6::parse(&lan[0][ETH_HLEN..]).unwrap();
    assert_eq!(
        (ip.src, ip.dst),
        (lan6(false, 1), lan6(true, 2)),
        "from B's LAN address"
    );
    let body = &lan[0][ETH_HLEN + ip.l4_at..ETH_HLEN + ip.total_len];
    let p = Icmpv6Packet::new_checked(body).unwrap();
    assert!(p.verify_checksum(&ip.src, &ip.dst));
    assert_eq!((body[0], body[1]), (3, 0), "time exceeded in transit");
    assert_eq!(b.stats.sum().control.icmp_errors, 1);
}

#[test]
fn ipv6_syns_are_clamped_to_the_inner_mtu_less_the_longer_header() {
    let (mut a, mut b) = (
        gateway(true, EngineKind::Ring),
        gateway(false, EngineKind::Ring),
    );
    // A SYN with MSS 1440 (fits a 1500 IPv6 MTU) behind a destination-options header.
    let mut tcp = vec![0u8; 24];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
    tcp[12] = 6 << 4;
    tcp[13] = 0x02;
    tcp[20..24].copy_from_slice(&[2, 4, 0x05, 0xa0]);
    let (src, dst) = (lan6(true, 2), lan6(false, 2));
    {
        use smoltcp::wire::{IpAddress, TcpPacket};
        let mut p = TcpPacket::new_unchecked(&mut tcp[..]);
        p.fill_checksum(&IpAddress::Ipv6(src), &IpAddress::Ipv6(dst));
    }
    let dest_opts = [6u8, 0, 1, 4, 0, 0, 0, 0];
    let mut ip = crate::wire::ipv6::tests::packet(60, &dest_opts, &tcp, 64);
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let mut f = a.mac[0].to_vec();
    f.extend_from_slice(&PROD);
    f.extend_from_slice(&crate::wire::icmpv6::ETHERTYPE_IPV6);
    f.extend_from_slice(&ip);
    a.worker.queue_mut(PortId::Lan).rx.push_back(f);
    poll_all(&mut a);
    let wan = across_wan(a.worker.queue_mut(PortId::Wan).take_tx(), &b);
    b.worker.queue_mut(PortId::Wan).rx.extend(wan);
    poll_all(&mut b);
    let got = b.worker.queue_mut(PortId::Lan).take_tx();
    assert_eq!(got.len(), 1, "{:?}", b.stats.sum().drops);
    let seg = &got[0][ETH_HLEN + 48..];
    assert_eq!(
        &seg[20..24],
        &[2, 4, 0x05, 0x62],
        "MSS 1378 = 1438 - 40 - 20"
    );
    use smoltcp::wire::{IpAddress, TcpPacket};
    let p = TcpPacket::new_checked(seg).unwrap();
    assert!(p.verify_checksum(&IpAddress::Ipv6(src), &IpAddress::Ipv6(dst)));
    assert_eq!(a.stats.sum().tunnel.mss_clamped, 1);
}

/// The outer IPv6 header and UDP datagram of an ESP-in-UDP frame on the
/// WAN: (source, destination, next header, UDP source and destination
/// ports, UDP checksum verifies and is not zero, SPI).
fn outer6_of(
    f: &[u8],
) -> (
    std::net::Ipv6Addr,
    std::net::Ipv6Addr,
    u8,
    u16,
    u16,
    bool,
    u32,
) {
    use smoltcp::wire::{IpAddress, Ipv6Packet, UdpPacket};
    assert_eq!(&f[12..14], &[0x86, 0xdd], "outer IPv6");
    let ip = Ipv6Packet::new_checked(&f[ETH_HLEN..]).unwrap();
    assert_eq!(usize::from(ip.payload_len()) + 40, f.len() - ETH_HLEN);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    let checksum_ok = udp.checksum() != 0
        && udp.verify_checksum(
            &IpAddress::Ipv6(ip.src_addr()),
            &IpAddress::Ipv6(ip.dst_addr()),
        );
    let p = udp.payload();
    (
        ip.src_addr(),
        ip.dst_addr(),
        u8::from(ip.next_header()),
        udp.src_port(),
        udp.dst_port(),
        checksum_ok,
        u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
    )
}

#[test]
fn an_ipv6_outer_header_carries_both_inner_families_with_a_udp_checksum() {
    for engine in EngineKind::ALL {
        let (mut a, mut b) = (gateway_outer6(true, engine), gateway_outer6(false, engine));
        // Inner IPv4 up to the inner MTU over IPv6 (1418 = 20 + 8 + 1390),
        // inner IPv6 up to it too (1418 = 40 + 8 + 1370).
        let sent: Vec<Vec<u8>> = (0..64)
            .map(|i| {
                let len = [0, 17, 1000, 1390][i % 4];
                if i % 2 == 0 {
                    prod_frame(&a, &payload(i, len))
                } else {
                    let len = len.min(1370);
                    udp6_frame(
                        a.mac[0],
                        PROD,
                        lan6(true, 2),
                        lan6(false, 2),
                        64,
                        &payload(i, len),
                    )
                }
            })
            .collect();
        a.worker
            .queue_mut(PortId::Lan)
            .rx
            .extend(sent.iter().cloned());
        poll_all(&mut a);
        let wan = a.worker.queue_mut(PortId::Wan).take_tx();
        assert_eq!(
            wan.len(),
            sent.len(),
            "{engine:?}: {:?}",
            a.stats.sum().drops
        );
        for f in &wan {
            assert_eq!(
                &f[..6],
                &ROUTER_A,
                "to the router's MAC (static IPv6 neighbour)"
            );
            assert_eq!(
                outer6_of(f),
                (wan6(true, 1), wan6(false, 1), 17, 4500, 4500, true, 0x1001),
                "{engine:?}"
            );
            assert!(!f.windows(PATTERN.len()).any(|w| w == PATTERN));
        }
        let wan = across_wan(wan, &b);
        b.worker.queue_mut(PortId::Wan).rx.extend(wan);
        poll_all(&mut b);
        let out = b.worker.queue_mut(PortId::Lan).take_tx();
        assert_eq!(
            out.len(),
            sent.len(),
            "{engine:?}: {:?}",
            b.stats.sum().drops
        );
        for (got, s) in out.iter().zip(&sent) {
            let want = if s[12..14] == [0x08, 0x00] {
                expected_at_cons(s, &b)
            } else {
                let mut want = s.clone();
                want[..6].copy_from_slice(&CONS);
                want[6..12].copy_from_slice(&b.mac[0]);
                want[ETH_HLEN + 7] -= 2;
                want
            };
            assert_eq!(got, &want, "{engine:?}");
        }
        assert_eq!(a.stats.sum().total_drops() + b.stats.sum().total_drops(), 0);

        // And back, B to A over IPv6 too.
        let reply = udp_frame(b.mac[0], CONS, [10, 20, 1, 2], [10, 10, 1, 2], b"reply");
        b.worker.queue_mut(PortId::Lan).rx.push_back(reply);
        poll_all(&mut b);
        let wan = b.worker.queue_mut(PortId::Wan).take_tx();
        assert_eq!(outer6_of(&wan[0]).6, 0x2001);
        let wan = across_wan(wan, &a);
        a.worker.queue_mut(PortId::Wan).rx.extend(wan);
        poll_all(&mut a);
        let back = a.worker.queue_mut(PortId::Lan).take_tx();
        assert_eq!(back.len(), 1);
        assert!(back[0].ends_with(b"reply"));
    }
}

#[test]
fn over_ipv6_a_zero_or_wrong_udp_checksum_is_dropped_and_the_inner_mtu_is_20_less() {
    let (mut a, mut b) = (
        gateway_outer6(true, EngineKind::Ring),
        gateway_outer6(false, EngineKind::Ring),
    );
    let f = prod_frame(&a, &payload(1, 300));
    a.worker.queue_mut(PortId::Lan).rx.push_back(f);
    poll_all(&mut a);
    let esp = across_wan(a.worker.queue_mut(PortId::Wan).take_tx(), &b).remove(0);
    let udp_ck = ETH_HLEN + 40 + 6;
    let mut zero = esp.clone();
    zero[udp_ck..udp_ck + 2].copy_from_slice(&[0, 0]);
    let mut wrong = esp.clone();
    wrong[udp_ck] ^= 0x10;
    // A ciphertext bit flipped with the checksum left as it was: the
    // checksum catches it before the ICV is even tried.
    let mut flipped = esp.clone();
    flipped[ETH_HLEN + 40 + 8 + 16 + 30] ^= 0x01;
    let rx = &mut b.worker.queue_mut(PortId::Wan).rx;
    rx.extend([zero, wrong, flipped, esp]);
    poll_all(&mut b);
    assert_eq!(
        b.worker.queue_mut(PortId::Lan).take_tx().len(),
        1,
        "the genuine one"
    );
    let s = b.stats.sum();
    assert_eq!(s.dropped(DropReason::EspUdpChecksum), 3, "{:?}", s.drops);
    assert_eq!(s.dropped(DropReason::EspAuthFailed), 0);
    assert_eq!(s.total_drops(), 3);

    // The inner MTU is 1418: a DF packet of 1419 gets frag-needed 1418, one
    // of 1418 goes through.
    let inner_mtu = crate::esp::inner_mtu6(1500);
    assert_eq!(inner_mtu, 1418);
    for (len, passes) in [(inner_mtu, true), (inner_mtu + 1, false)] {
        let f = prod_frame(&a, &payload(2, usize::from(len) - 28));
        a.worker.queue_mut(PortId::Lan).rx.push_back(f);
        poll_all(&mut a);
        let sent = a.worker.queue_mut(PortId::Wan).take_tx();
        assert_eq!(sent.len(), usize::from(passes), "inner {len}");
        if let Some(f) = sent.first() {
            assert_eq!(f.len(), ETH_HLEN + 1500, "exactly the WAN MTU");
        }
    }
    let msgs: Vec<SlowMsg> = a._slow.0.try_iter().collect();
    assert!(
        msgs.iter()
            .any(|m| format!("{m:?}").contains("FragNeeded(1418)")),
        "frag-needed with the IPv6-outer inner MTU: {msgs:?}"
    );
    // The clamp follows: an IPv4 SYN's MSS is lowered to 1418 - 40.
    use crate::tunnel::TableSource;
    assert_eq!(a.tables.load().tcp_mss, Some(1378));
}

/// The lane key of SA 0x1003 (A → B), for both ends.
const K_LANE: [u8; 16] = *b"lane-key-0x1003!";

/// A two-worker gateway whose outbound SA toward B (A: 0x1001) has a lane,
/// 0x1003, and whose peer (B) has both as inbound SAs; B's outbound 0x2001
/// has none.
fn lane_gateway(a: bool) -> Gw {
    gateway_custom(a, EngineKind::Ring, Vec::new(), 1500, None, false, 2, |t| {
        let direction = if a { Direction::Out } else { Direction::In };
        t.sas.push(SaConfig {
            spi: 0x1003,
            direction,
            peer: 0,
            algorithm: Algorithm::Aes128Gcm,
            key: Zeroizing::new(K_LANE.to_vec()),
            salt: [0xca, 0xfe, 0, 3],
            esn: true,
            lane_of: a.then_some(0x1001),
            anti_replay: true,
        });
    })
}

/// (SPI, outer UDP source port, sequence number) of an ESP-in-UDP frame.
fn esp_ids(f: &[u8]) -> (u32, u16, u32) {
    let u = &f[ETH_HLEN + 20..];
    (
        u32::from_be_bytes(u[8..12].try_into().unwrap()),
        u16::from_be_bytes([u[0], u[1]]),
        u32::from_be_bytes(u[12..16].try_into().unwrap()),
    )
}

/// One session, two workers at each end: each of A's workers seals with its
/// own lane of the session's SA (its own SPI, sequence numbers and outer
/// source port, so the peer's RSS can spread them), and B opens both lanes
/// on the worker each arrives at, bytes exact, with no replay drop.
#[test]
fn each_worker_seals_with_its_own_lane_and_the_peer_opens_both() {
    let (mut a, mut b) = (lane_gateway(true), lane_gateway(false));
    let t = {
        use crate::tunnel::TableSource;
        a.tables.load()
    };
    let head = t.route(Ipv4Addr::new(10, 20, 1, 2)).expect("routed");
    assert_eq!(t.lane_count(head), 2);
    let sent: Vec<Vec<u8>> = (0..40)
        .map(|i| prod_frame(&a, &payload(i, 200 + i)))
        .collect();
    // As the LAN's RSS would: half the session's flows reach each worker.
    a.worker
        .queue_mut(PortId::Lan)
        .rx
        .extend(sent[..20].iter().cloned());
    a.others[0]
        .queue_mut(PortId::Lan)
        .rx
        .extend(sent[20..].iter().cloned());
    poll_every_worker(&mut a);
    let lane0 = a.worker.queue_mut(PortId::Wan).take_tx();
    let lane1 = a.others[0].queue_mut(PortId::Wan).take_tx();
    let ids = |frames: &[Vec<u8>]| frames.iter().map(|f| esp_ids(f)).collect::<Vec<_>>();
    let want = |spi, sport| (1..=20).map(|seq| (spi, sport, seq)).collect::<Vec<_>>();
    assert_eq!(
        ids(&lane0),
        want(0x1001, 4500),
        "worker 0: the head, from port 4500"
    );
    assert_eq!(
        ids(&lane1),
        want(0x1003, 4501),
        "worker 1: the lane, from port 4501"
    );

    // As B's RSS would: each lane (its own outer flow) reaches one worker.
    let (lane0, lane1) = (across_wan(lane0, &b), across_wan(lane1, &b));
    b.worker.queue_mut(PortId::Wan).rx.extend(lane0);
    b.others[0].queue_mut(PortId::Wan).rx.extend(lane1);
    poll_every_worker(&mut b);
    let out0 = b.worker.queue_mut(PortId::Lan).take_tx();
    let out1 = b.others[0].queue_mut(PortId::Lan).take_tx();
    let expect = |s: &[Vec<u8>]| {
        s.iter()
            .map(|f| expected_at_cons(f, &b))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        out0,
        expect(&sent[..20]),
        "B worker 0 delivers lane 0x1001, bytes exact"
    );
    assert_eq!(
        out1,
        expect(&sent[20..]),
        "B worker 1 delivers lane 0x1003, bytes exact"
    );
    for g in [&a, &b] {
        let s = g.stats.sum();
        assert_eq!(s.total_drops(), 0, "no drop, no replay drop");
    }
    for w in 0..2 {
        assert_eq!(
            a.stats.worker(w).get().tunnel.encap_packets,
            20,
            "A worker {w}"
        );
        assert_eq!(
            b.stats.worker(w).get().tunnel.decap_packets,
            20,
            "B worker {w}"
        );
    }
    let per_sa: Vec<(u32, u64)> = b
        .stats
        .segment()
        .sa_totals()
        .into_iter()
        .filter(|t| t.direction == Some(scistream_region::Direction::In))
        .map(|t| (t.spi, t.packets))
        .collect();
    assert!(
        per_sa.contains(&(0x1001, 20)) && per_sa.contains(&(0x1003, 20)),
        "{per_sa:?}"
    );
}
