//! Fixtures shared by the data-plane fuzz targets: one gateway built the way
//! `s2ds` builds it (ports, routes, neighbours, tunnel tables from a
//! `TunnelSection` through `TunnelTables::from_config`, a real worker over
//! in-memory queues and the real slow path), the peer's SAs to seal valid
//! ESP toward it, and a small byte reader to split a fuzz input.
//!
//! The gateway is gateway A of the testbed, with every kind of tunnel
//! traffic configured at once: routed IPv4 and IPv6 prefixes, an IPv4 and
//! an IPv6 peer, and listeners of both roles (so the NAT works both ways).

#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use zeroize::Zeroizing;

use scistream_dataplane::backend::mem::MemQueue;
use scistream_dataplane::backend::pool::PoolBuf;
use scistream_dataplane::backend::PacketBuf;
use scistream_dataplane::config::tunnel::{
    Direction, Keying, ListenerConfig, ListenerRole, Peer, SaConfig, TunnelRoute, TunnelRoute6,
    TunnelSection,
};
use scistream_dataplane::crypto::{engine, Algorithm, EngineKind, SaKey};
use scistream_dataplane::esp::{self, InboundSa, OutboundSa, Outer, ReplayWindow};
use scistream_dataplane::gateway::Gateway;
use scistream_dataplane::neigh::Neighbors;
use scistream_dataplane::port::{PortAddr, PortId};
use scistream_dataplane::route::{Route, Route6, RouteTable};
use scistream_dataplane::slowpath::{SlowMsg, SlowPath, TxFrame};
use scistream_dataplane::stats::StatsRegistry;
use scistream_dataplane::tunnel::{SaSlots, StaticTables, TableContext, TunnelTables};
use scistream_dataplane::wire::ETH_HLEN;
use scistream_dataplane::worker::{Worker, WorkerLinks};

/// Gateway MACs: LAN, WAN.
pub const MAC: [[u8; 6]; 2] = [[2, 0xaa, 1, 0, 0, 1], [2, 0xaa, 1, 0, 0, 2]];
/// The producer host on the LAN (10.10.1.2).
pub const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
/// The WAN router (10.10.100.254).
pub const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0xa0, 0xfe];
/// Our LAN and WAN addresses.
pub const LAN_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 1, 1);
/// Our WAN address.
pub const WAN_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 100, 1);
/// The IPv4 peer gateway.
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 200, 1);
/// Our IPv6 WAN address.
pub const WAN_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x100, 0, 0, 0, 0, 1);
/// The IPv6 peer gateway.
pub const PEER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x200, 0, 0, 0, 0, 1);
/// Our IPv6 LAN address.
pub const LAN_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 1, 0, 0, 0, 0, 1);

/// Outbound SA toward the IPv4 peer.
pub const SPI_OUT: u32 = 0x1001;
/// Inbound SA from the IPv4 peer.
pub const SPI_IN: u32 = 0x2001;
/// Outbound SA toward the IPv6 peer.
pub const SPI_OUT6: u32 = 0x3002;
/// Inbound SA from the IPv6 peer.
pub const SPI_IN6: u32 = 0x3001;
/// Inbound listener (WAN side): 10.10.100.1:6100 → 10.10.1.2:7000.
pub const INBOUND_PORT: u16 = 6100;
/// Outbound listener (LAN side): 10.10.1.1:5100 → 10.10.200.1:6100.
pub const OUTBOUND_PORT: u16 = 5100;

const K_OUT: [u8; 16] = *b"0123456789abcdef";
const K_IN: [u8; 32] = *b"fedcba9876543210fedcba9876543210";
const K_OUT6: [u8; 16] = *b"ABCDEFGHIJKLMNOP";
const K_IN6: [u8; 16] = *b"qrstuvwxyz012345";

/// The SAs of the gateway: (spi, direction, peer index, key, algorithm).
fn sa_table() -> [(u32, Direction, usize, &'static [u8], Algorithm); 4] {
    [
        (SPI_OUT, Direction::Out, 0, &K_OUT, Algorithm::Aes128Gcm),
        (SPI_IN, Direction::In, 0, &K_IN, Algorithm::Aes256Gcm),
        (SPI_OUT6, Direction::Out, 1, &K_OUT6, Algorithm::Aes128Gcm),
        (SPI_IN6, Direction::In, 1, &K_IN6, Algorithm::Aes128Gcm),
    ]
}

fn salt(spi: u32) -> [u8; 4] {
    [0xca, 0xfe, 0, spi as u8]
}

/// The two ports of gateway A: LAN 10.10.1.1/24 + fd00:10:1::1/64,
/// WAN 10.10.100.1/24 + fd00:10:100::1/64, MTU 1500.
pub fn ports() -> [PortAddr; 2] {
    [
        PortAddr {
            mac: MAC[0],
            ip4: Some((LAN_IP, 24)),
            mtu: 1500,
            ip6: Some((LAN_IP6, 64)),
        },
        PortAddr {
            mac: MAC[1],
            ip4: Some((WAN_IP, 24)),
            mtu: 1500,
            ip6: Some((WAN_IP6, 64)),
        },
    ]
}

/// The gateway: ports and routes (10.10.200.0/24 and fd00:10:200::/64 via
/// the WAN router).
pub fn gateway() -> Gateway {
    let ports = ports();
    let routes = RouteTable::new(
        &ports,
        &[Route {
            net: Ipv4Addr::new(10, 10, 200, 0),
            len: 24,
            port: PortId::Wan,
            via: Some(Ipv4Addr::new(10, 10, 100, 254)),
        }],
    )
    .with_v6(&[Route6 {
        net: Ipv6Addr::new(0xfd00, 0x10, 0x200, 0, 0, 0, 0, 0),
        len: 64,
        port: PortId::Wan,
        via: Some(Ipv6Addr::new(0xfd00, 0x10, 0x100, 0, 0, 0, 0, 0xfe)),
    }]);
    Gateway { ports, routes }
}

/// Static neighbours: the WAN router (both families) and the LAN host.
pub fn neighbors() -> Neighbors {
    Neighbors::with_static(&[
        (IpAddr::from([10, 10, 100, 254]), ROUTER_MAC, PortId::Wan),
        (
            IpAddr::from(Ipv6Addr::new(0xfd00, 0x10, 0x100, 0, 0, 0, 0, 0xfe)),
            ROUTER_MAC,
            PortId::Wan,
        ),
        (IpAddr::from([10, 10, 1, 2]), HOST_MAC, PortId::Lan),
        (
            IpAddr::from(Ipv6Addr::new(0xfd00, 0x10, 1, 0, 0, 0, 0, 2)),
            HOST_MAC,
            PortId::Lan,
        ),
    ])
}

/// The `[tunnel]` section, as the configuration loader would produce it.
pub fn tunnel_section(engine: EngineKind) -> TunnelSection {
    let sas = sa_table()
        .into_iter()
        .map(|(spi, direction, peer, key, algorithm)| SaConfig {
            spi,
            direction,
            peer,
            algorithm,
            key: Zeroizing::new(key.to_vec()),
            salt: salt(spi),
            esn: true,
            lane_of: None,
            anti_replay: true,
        })
        .collect();
    TunnelSection {
        engine,
        udp_port: 4500,
        peers: vec![
            Peer {
                name: "peer4".into(),
                address: PEER_IP.into(),
                udp_port: 4500,
            },
            Peer {
                name: "peer6".into(),
                address: PEER_IP6.into(),
                udp_port: 4500,
            },
        ],
        sas,
        routes: vec![
            TunnelRoute {
                prefix: "10.20.0.0/16".parse().unwrap(),
                spi: SPI_OUT,
            },
            TunnelRoute {
                prefix: "10.30.0.0/16".parse().unwrap(),
                spi: SPI_OUT6,
            },
        ],
        routes6: vec![TunnelRoute6 {
            prefix: "fd00:20::/32".parse().unwrap(),
            spi: SPI_OUT,
        }],
        listeners: vec![
            ListenerConfig {
                role: ListenerRole::Inbound,
                port: INBOUND_PORT,
                remote: None,
                target: Some("10.10.1.2:7000".parse().unwrap()),
                spi: SPI_OUT,
            },
            ListenerConfig {
                role: ListenerRole::Outbound,
                port: OUTBOUND_PORT,
                remote: Some("10.10.200.1:6100".parse().unwrap()),
                target: None,
                spi: SPI_OUT,
            },
        ],
        nat_port_base: 32768,
        nat_slots: 64,
        keying: Keying::Manual,
        tcp_mss: Some(1360),
    }
}

/// The gateway's tunnel tables (generation 1), SAs counted in `stats`.
pub fn tables(engine: EngineKind, stats: &Arc<StatsRegistry>) -> TunnelTables {
    let section = tunnel_section(engine);
    let ports = ports();
    let slots = Arc::new(SaSlots::new(stats.clone()));
    let cx = TableContext::new(&section, &ports[0], &ports[1], Some(slots));
    TunnelTables::from_config(&section, &cx, 1).expect("the fixture's tunnel section is valid")
}

/// What the peer gateway holds for one of our inbound SAs: the outbound
/// SA it seals with and the outer endpoints (its WAN → ours).
pub struct PeerSender {
    /// The peer's outbound SA (our inbound SA's key).
    pub sa: OutboundSa,
    /// Outer header: the peer → us.
    pub outer: Outer,
}

/// The peer's sender for our inbound SA `spi` (`SPI_IN` or `SPI_IN6`), sealing with `kind`.
pub fn peer_sender(spi: u32, kind: EngineKind) -> PeerSender {
    let (_, _, peer, key, alg) = sa_table()
        .into_iter()
        .find(|s| s.0 == spi && s.1 == Direction::In)
        .expect("an inbound SA of the fixture");
    let outer = if peer == 0 {
        Outer::new(PEER_IP.into(), WAN_IP.into())
    } else {
        Outer::new(PEER_IP6.into(), WAN_IP6.into())
    };
    let key = SaKey::new(kind, alg, key, salt(spi)).expect("fixture key");
    PeerSender {
        sa: OutboundSa::new(spi, key, true),
        outer,
    }
}

impl PeerSender {
    /// Seals `inner` (an IP packet) with sequence number `seq`: the outer
    /// IP packet, or `None` if the ESP layer refuses (too big, sequence
    /// number out of range).
    pub fn seal(&self, inner: &[u8], seq: u64) -> Option<PoolBuf> {
        seal_with(&self.sa, &self.outer, inner, seq)
    }

    /// [`PeerSender::seal`] behind an Ethernet header to our WAN port.
    pub fn seal_frame(&self, inner: &[u8], seq: u64) -> Option<Vec<u8>> {
        let b = self.seal(inner, seq)?;
        let ethertype = if self.outer.is_ipv6() {
            [0x86, 0xdd]
        } else {
            [0x08, 0x00]
        };
        Some(ethernet(MAC[1], ROUTER_MAC, ethertype, b.data()))
    }
}

/// Seals `inner` under `sa` with `seq` toward `outer`, with the project's
/// encapsulation (`encap_prepare` + `seal_burst`).
pub fn seal_with(sa: &OutboundSa, outer: &Outer, inner: &[u8], seq: u64) -> Option<PoolBuf> {
    let mut bufs = [PoolBuf::from_slice(inner)?];
    let job = esp::encap_prepare(&mut bufs[0], sa, seq, outer).ok()?;
    let mut jobs = [job];
    esp::seal_burst(engine(sa.key.engine()), &mut bufs, &mut jobs);
    if !jobs[0].sealed() {
        return None;
    }
    let [b] = bufs;
    Some(b)
}

/// An SA pair (the sender's outbound, the receiver's inbound) with one
/// fixed key, for the ESP targets.
pub fn sa_pair(
    seal: EngineKind,
    open: EngineKind,
    alg: Algorithm,
    esn: bool,
) -> (OutboundSa, InboundSa) {
    const SPI: u32 = 0x1234_5678;
    let key: Vec<u8> = (0..alg.key_len() as u8)
        .map(|i| i.wrapping_mul(37) ^ 0x5a)
        .collect();
    let salt = [0xde, 0xad, 0xbe, 0xef];
    (
        OutboundSa::new(SPI, SaKey::new(seal, alg, &key, salt).unwrap(), esn),
        InboundSa::new(SPI, SaKey::new(open, alg, &key, salt).unwrap(), esn),
    )
}

/// The receive path of one outer IP packet under `sa`, in the order the
/// decapsulation stage uses (`tunnel::pipeline::decap_burst`): parse, SPI,
/// infer the sequence number, check the window, open, accept, strip.
pub fn receive(
    sa: &InboundSa,
    window: &mut ReplayWindow,
    buf: PoolBuf,
) -> Result<PoolBuf, esp::EspError> {
    let view = esp::decap_parse(buf.data(), esp::ESP_UDP_PORT)?;
    if view.spi != sa.spi {
        return Err(esp::EspError::UnknownSpi);
    }
    let seq = window.infer(view.seq_low, sa.esn);
    window.check(seq)?;
    let mut bufs = [buf];
    let mut jobs = [esp::OpenJob::new(sa, &view, seq)];
    esp::open_burst(engine(sa.key.engine()), &mut bufs, &mut jobs);
    jobs[0].result()?;
    window.accept(seq)?;
    let [mut b] = bufs;
    esp::decap_finish(&mut b, &view)?;
    Ok(b)
}

/// An Ethernet frame `dst` ← `src` of `ethertype` carrying `payload`.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: [u8; 2], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_HLEN + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype);
    f.extend_from_slice(payload);
    f
}

/// The gateway running: a worker over in-memory queues, its slow path
/// (the real one, driven by hand), the tables it reads.
pub struct Running {
    /// The worker.
    pub worker: Worker<MemQueue>,
    /// The slow path.
    pub slow: SlowPath,
    /// What the worker sends the slow path.
    pub slow_rx: Receiver<SlowMsg>,
    /// The tables.
    pub tables: Arc<StaticTables>,
    _reply_tx: Sender<TxFrame>,
}

impl Running {
    /// Gateway A with tunnel tables on `engine`.
    pub fn new(engine: EngineKind) -> Running {
        let stats = Arc::new(StatsRegistry::new(1));
        let tables = Arc::new(StaticTables::new(tables(engine, &stats)));
        let (to_slow, slow_rx) = crossbeam_channel::bounded(256);
        let (reply_tx, replies) = crossbeam_channel::bounded(256);
        let gw = Arc::new(gateway());
        let neigh = Arc::new(neighbors());
        let slow = SlowPath::new(
            gw.clone(),
            neigh.clone(),
            slow_rx.clone(),
            vec![reply_tx.clone()],
            stats.clone(),
        );
        let links = WorkerLinks {
            gw,
            neigh,
            to_slowpath: to_slow,
            replies,
            stats,
            tunnel: Some(tables.clone()),
            latency: None,
        };
        let worker = Worker::new(0, MemQueue::new(), MemQueue::new(), links, Duration::ZERO);
        Running {
            worker,
            slow,
            slow_rx,
            tables,
            _reply_tx: reply_tx,
        }
    }

    /// Receives `frame` on `port`.
    pub fn push(&mut self, port: PortId, frame: Vec<u8>) {
        self.worker.queue_mut(port).rx.push_back(frame);
    }

    /// Polls until the queues are empty, runs the slow path on what it was
    /// handed, and polls again so that its replies leave; then drops what
    /// was transmitted. Returns the frames sent on (LAN, WAN).
    pub fn run(&mut self) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        for _ in 0..4 {
            while self.worker.poll_once() != 0 {}
            let mut handled = 0;
            while let Ok(msg) = self.slow_rx.try_recv() {
                self.slow.handle(msg);
                handled += 1;
            }
            if handled == 0 {
                break;
            }
        }
        while self.worker.poll_once() != 0 {}
        (
            self.worker.queue_mut(PortId::Lan).take_tx(),
            self.worker.queue_mut(PortId::Wan).take_tx(),
        )
    }
}

/// Reads a fuzz input front to back; past the end every read gives zeros.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data }
    }
    /// True once everything was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// One byte.
    pub fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    /// A big-endian u16.
    pub fn u16(&mut self) -> u16 {
        let b = self.array::<2>();
        u16::from_be_bytes(b)
    }
    /// A big-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array::<4>())
    }
    /// A big-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array::<8>())
    }
    /// `N` bytes, zero-filled past the end.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        let t = self.take(N);
        a[..t.len()].copy_from_slice(t);
        a
    }
    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }
    /// A chunk with a 2-byte length prefix (the rest if the prefix says more).
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.take(n)
    }
    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}

/// The engines built into this build (`ring` and `aes-gcm`: no intel-ipsec-mb here).
pub fn engine_kind(b: u8) -> EngineKind {
    let all = EngineKind::ALL;
    all[usize::from(b) % all.len()]
}

/// Makes the checksums of the IPv4 packet `pkt` right (header, and the
/// TCP, UDP or ICMP checksum of an unfragmented packet), with smoltcp's
/// emitters, so that a fuzz input gets past the checks and into the code
/// behind them. Leaves anything that is not a parseable IPv4 packet alone.
pub fn fix_ipv4_checksums(pkt: &mut [u8]) {
    use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut *pkt) else {
        return;
    };
    ip.fill_checksum();
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    if ip.more_frags() || ip.frag_offset() != 0 {
        return;
    }
    let protocol = ip.next_header();
    let payload = ip.payload_mut();
    match protocol {
        IpProtocol::Tcp => {
            if let Ok(mut tcp) = TcpPacket::new_checked(payload) {
                tcp.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Udp => {
            if let Ok(mut udp) = UdpPacket::new_checked(payload) {
                udp.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Icmp if payload.len() >= 4 => {
            payload[2] = 0;
            payload[3] = 0;
            let c = scistream_dataplane::wire::checksum::of(payload);
            payload[2..4].copy_from_slice(&c.to_be_bytes());
        }
        _ => {}
    }
}

/// [`fix_ipv4_checksums`] on the IPv4 packet of an Ethernet frame.
pub fn fix_frame_checksums(frame: &mut [u8]) {
    if frame.len() > ETH_HLEN && frame[12..14] == [0x08, 0x00] {
        fix_ipv4_checksums(&mut frame[ETH_HLEN..]);
    }
}

/// An IPv4 packet (no options, DF, TTL 64) `src` → `dst` of `protocol`
/// around `l4` (a TCP, UDP or ICMP message), checksums right.
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4: &[u8]) -> Vec<u8> {
    let total = (20 + l4.len()).min(usize::from(u16::MAX));
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = protocol;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p.extend_from_slice(&l4[..total - 20]);
    fix_ipv4_checksums(&mut p);
    p
}

/// A TCP (`tcp`) or UDP header from `sport` to `dport` followed by `payload`
/// (TCP: flags `flags`, a data offset of 5 words), checksum left to
/// [`ipv4_packet`].
pub fn l4_segment(tcp: bool, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let hlen = if tcp { 20 } else { 8 };
    let mut s = vec![0u8; hlen];
    s[0..2].copy_from_slice(&sport.to_be_bytes());
    s[2..4].copy_from_slice(&dport.to_be_bytes());
    if tcp {
        s[12] = 5 << 4;
        s[13] = flags;
        s[14..16].copy_from_slice(&8192u16.to_be_bytes());
    } else {
        let len = (hlen + payload.len()).min(usize::from(u16::MAX)) as u16;
        s[4..6].copy_from_slice(&len.to_be_bytes());
    }
    s.extend_from_slice(payload);
    s
}

/// Whether the IPv4 packet `pkt` has a right header checksum and, when
/// unfragmented, a right TCP, UDP (non-zero) or ICMP checksum (smoltcp's
/// checks).
pub fn ipv4_checksums_ok(pkt: &[u8]) -> bool {
    use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};
    let Ok(ip) = Ipv4Packet::new_checked(pkt) else {
        return false;
    };
    if !ip.verify_checksum() {
        return false;
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        return true;
    }
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    let payload = ip.payload();
    match ip.next_header() {
        IpProtocol::Tcp => {
            TcpPacket::new_checked(payload).is_ok_and(|t| t.verify_checksum(&src, &dst))
        }
        IpProtocol::Udp => UdpPacket::new_checked(payload)
            .is_ok_and(|u| u.checksum() == 0 || u.verify_checksum(&src, &dst)),
        IpProtocol::Icmp => {
            payload.len() < 4 || scistream_dataplane::wire::checksum::of(payload) == 0
        }
        _ => true,
    }
}
