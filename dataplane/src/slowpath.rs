//! The slow-path thread: ARP and IPv6 Neighbor Discovery for the gateway's
//! addresses, neighbour resolution, ICMP and ICMPv6 echo replies and
//! errors. Workers hand it copies of
//! frames over a bounded channel; it hands replies back to a worker, which
//! sends them through its own TX queue. Never on the forwarding path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::forward::SlowReason;
use crate::gateway::Gateway;
use crate::neigh::{NeighborKind, Neighbors};
use crate::port::PortId;
use crate::stats::{Counters, DropReason, StatsRegistry};
use crate::wire::icmpv6::{self, Error6, Nd};
use crate::wire::{arp, icmp, WireError};

/// Depth of the worker → slow-path channel.
pub const SLOW_QUEUE_DEPTH: usize = 4096;
/// Depth of each slow-path → worker channel.
pub const REPLY_QUEUE_DEPTH: usize = 1024;
/// Least time between two ARP requests for the same address.
const ARP_RETRY: Duration = Duration::from_secs(1);
/// A dynamic neighbour older than this is re-resolved.
const NEIGH_REFRESH: Duration = Duration::from_secs(60);
/// A dynamic neighbour not confirmed for this long is removed.
const NEIGH_EXPIRE: Duration = Duration::from_secs(180);
/// How often the slow path runs its timers.
const TICK: Duration = Duration::from_millis(200);

/// How the slow path's answer to a frame leaves the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Out of the port the frame came in on.
    Port,
    /// Back through the tunnel, sealed with the outbound SA `spi`: the
    /// frame came out of the tunnel (an ICMP error for a decapsulated
    /// packet goes to its sender behind the peer gateway).
    Tunnel {
        /// The outbound SA's SPI.
        spi: u32,
    },
}

/// A message from a worker to the slow path.
#[derive(Debug)]
pub enum SlowMsg {
    /// A copy of a frame the worker could not handle itself.
    Frame {
        /// The worker that received it (replies go back through it).
        worker: usize,
        /// The port it came in on (the tunnel's frames: the WAN port; an
        /// ICMP error's source address is that port's).
        port: PortId,
        /// Why it came here.
        reason: SlowReason,
        /// The frame bytes.
        frame: Vec<u8>,
        /// Where the answer goes.
        via: Via,
    },
    /// The worker dropped a packet whose next hop has no MAC yet.
    Resolve {
        /// The next hop (ARP for IPv4, a Neighbor Solicitation for IPv6).
        next_hop: IpAddr,
        /// Its port.
        port: PortId,
    },
}

/// A frame for a worker to transmit.
#[derive(Debug)]
pub struct TxFrame {
    /// Egress port.
    pub port: PortId,
    /// The whole Ethernet frame.
    pub frame: Vec<u8>,
    /// [`Via::Tunnel`]: encapsulate it with that SA (then `port` is the WAN).
    pub via: Via,
}

/// The slow path's state.
pub struct SlowPath {
    gw: Arc<Gateway>,
    neigh: Arc<Neighbors>,
    rx: Receiver<SlowMsg>,
    to_workers: Vec<Sender<TxFrame>>,
    stats: Arc<StatsRegistry>,
    counts: Counters,
    last_request: HashMap<IpAddr, Instant>,
}

impl SlowPath {
    /// A slow path that reads `rx` and replies through `to_workers` (indexed by worker id).
    pub fn new(
        gw: Arc<Gateway>,
        neigh: Arc<Neighbors>,
        rx: Receiver<SlowMsg>,
        to_workers: Vec<Sender<TxFrame>>,
        stats: Arc<StatsRegistry>,
    ) -> Self {
        SlowPath {
            gw,
            neigh,
            rx,
            to_workers,
            stats,
            counts: Counters::default(),
            last_request: HashMap::new(),
        }
    }

    /// Runs until `stop` is set or every worker has gone.
    pub fn run(mut self, stop: &AtomicBool) {
        let mut next_tick = Instant::now();
        while !stop.load(Relaxed) {
            match self.rx.recv_timeout(TICK) {
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= next_tick {
                self.tick(Instant::now());
                next_tick = Instant::now() + TICK;
            }
        }
    }

    /// Handles one message.
    pub fn handle(&mut self, msg: SlowMsg) {
        self.dispatch(msg);
        self.stats.slowpath().fold(&mut self.counts);
    }

    fn dispatch(&mut self, msg: SlowMsg) {
        match msg {
            SlowMsg::Resolve { next_hop, port } => self.resolve(next_hop, port, Instant::now()),
            SlowMsg::Frame {
                worker,
                port,
                reason,
                frame,
                via,
            } => {
                let me = *self.gw.port(port);
                let v6 = is_ipv6(&frame);
                let reply = match reason {
                    SlowReason::Arp => self.arp(port, &frame),
                    SlowReason::Nd => self.nd(port, &frame),
                    SlowReason::LocalIcmp if v6 => self.echo6(&frame, me.mac),
                    SlowReason::TtlExceeded if v6 => {
                        self.icmp6_error(port, &frame, Error6::TimeExceeded)
                    }
                    SlowReason::FragNeeded(mtu) if v6 => {
                        self.icmp6_error(port, &frame, Error6::PacketTooBig(u32::from(mtu)))
                    }
                    SlowReason::LocalIcmp => {
                        let r = icmp::echo_reply(&frame, me.mac);
                        self.echo_outcome(r)
                    }
                    SlowReason::TtlExceeded => self.icmp_error(&frame, port, None),
                    SlowReason::FragNeeded(mtu) => self.icmp_error(&frame, port, Some(mtu)),
                };
                if let Some(frame) = reply {
                    self.send(worker, TxFrame { port, frame, via });
                }
            }
        }
    }

    fn echo6(&mut self, frame: &[u8], mac: [u8; 6]) -> Option<Vec<u8>> {
        let r = icmpv6::echo_reply(frame, mac);
        self.echo_outcome(r)
    }

    /// Counts an echo reply built, or why none was: not an echo request
    /// (`local_unsupported`), or a damaged one (`bad_control`).
    fn echo_outcome(&mut self, r: Result<Vec<u8>, WireError>) -> Option<Vec<u8>> {
        match r {
            Ok(r) => {
                self.counts.control.echo_replies += 1;
                Some(r)
            }
            Err(WireError::Malformed) => {
                self.counts.drop(DropReason::LocalUnsupported);
                None
            }
            Err(_) => {
                self.counts.drop(DropReason::BadControl);
                None
            }
        }
    }

    /// An ICMPv6 error about `frame`, from the port's global address (or,
    /// for a packet out of the tunnel on an IPv4-only WAN, the other
    /// port's), else its link-local one.
    fn icmp6_error(&mut self, port: PortId, frame: &[u8], kind: Error6) -> Option<Vec<u8>> {
        let me = *self.gw.port(port);
        let src = me
            .ip6
            .or(self.gw.port(port.other()).ip6)
            .map_or_else(|| me.link_local(), |(ip, _)| ip);
        let r = icmpv6::error_for(frame, me.mac, src, kind);
        if r.is_some() {
            self.counts.control.icmp_errors += 1;
        }
        r
    }

    /// Neighbor Discovery (RFC 4861 §7.2): a solicitation for one of our
    /// addresses is answered, its sender learned; an advertisement is
    /// learned if we asked for it or already know the neighbour.
    fn nd(&mut self, port: PortId, frame: &[u8]) -> Option<Vec<u8>> {
        let me = *self.gw.port(port);
        let nd = match icmpv6::parse_nd(frame) {
            Ok(nd) => nd,
            Err(_) => {
                self.counts.drop(DropReason::BadControl);
                return None;
            }
        };
        match nd {
            Nd::Solicit {
                src,
                target,
                lladdr,
            } => {
                if !me.owns6(target) {
                    return None;
                }
                if let Some(mac) = lladdr {
                    if !src.is_unspecified() && me.on_link6(src) && mac[0] & 1 == 0 {
                        self.neigh.learn(src, mac, port);
                    }
                }
                let to_mac = lladdr.unwrap_or_else(|| frame[6..12].try_into().expect("6 bytes"));
                self.counts.control.nd_adverts += 1;
                Some(icmpv6::neighbor_advert(me.mac, target, src, to_mac))
            }
            Nd::Advert { target, lladdr, .. } => {
                let mac = lladdr?;
                let asked = self.last_request.contains_key(&IpAddr::V6(target));
                let known = self.neigh.load().get(target, port).is_some();
                if (asked || known) && me.on_link6(target) && !me.owns6(target) && mac[0] & 1 == 0 {
                    self.neigh.learn(target, mac, port);
                }
                None
            }
        }
    }

    /// An ICMP error about `frame`, received on `port`, from the port's
    /// IPv4 address, or the other port's if this one is IPv6-only (RFC
    /// 1812 §4.3.2.4 lets a router use any of its addresses); none if the
    /// gateway has no IPv4 address at all.
    fn icmp_error(&mut self, frame: &[u8], port: PortId, mtu: Option<u16>) -> Option<Vec<u8>> {
        let me = *self.gw.port(port);
        let src = me
            .ip()
            .or_else(|| self.gw.ports.iter().find_map(|p| p.ip()))?;
        let r = icmp::error_for(frame, me.mac, src, mtu);
        if r.is_some() {
            self.counts.control.icmp_errors += 1;
        }
        r
    }

    fn arp(&mut self, port: PortId, frame: &[u8]) -> Option<Vec<u8>> {
        let me = *self.gw.port(port);
        let Ok(a) = arp::parse(frame) else {
            self.counts.drop(DropReason::BadControl);
            return None;
        };
        let sender_ok =
            me.on_link(a.sender_ip) && !me.owns(a.sender_ip) && a.sender_mac[0] & 1 == 0;
        let for_us = me.owns(a.target_ip);
        // RFC 826: update a known sender; add it if the message is for us.
        let known = self.neigh.load().get(a.sender_ip, port).is_some();
        if sender_ok && (for_us || known) {
            self.neigh.learn(a.sender_ip, a.sender_mac, port);
        }
        if a.is_request && for_us && sender_ok {
            self.counts.control.arp_replies += 1;
            return Some(arp::reply(me.mac, &a));
        }
        None
    }

    fn resolve(&mut self, ip: IpAddr, port: PortId, now: Instant) {
        if self
            .last_request
            .get(&ip)
            .is_some_and(|t| now.duration_since(*t) < ARP_RETRY)
        {
            return;
        }
        self.last_request.insert(ip, now);
        let me = *self.gw.port(port);
        let frame = match ip {
            IpAddr::V4(ip) => {
                // No route leads to an IPv4 next hop on an IPv6-only port.
                let Some(src) = me.ip() else {
                    return;
                };
                self.counts.control.arp_requests += 1;
                arp::request(me.mac, src, ip)
            }
            IpAddr::V6(ip) => {
                self.counts.control.nd_solicits += 1;
                icmpv6::neighbor_solicit(me.mac, me.source6_for(ip), ip)
            }
        };
        self.send(
            0,
            TxFrame {
                port,
                frame,
                via: Via::Port,
            },
        );
    }

    /// Timers: resolve route next hops that have no MAC, refresh old dynamic
    /// entries, expire dead ones.
    pub fn tick(&mut self, now: Instant) {
        let table = self.neigh.load();
        let routes = &self.gw.routes;
        let hops4 = routes
            .routes()
            .filter_map(|r| r.via.map(|v| (IpAddr::V4(v), r.port)));
        let hops6 = routes
            .routes6()
            .filter_map(|r| r.via.map(|v| (IpAddr::V6(v), r.port)));
        let hops: Vec<(IpAddr, PortId)> = hops4
            .chain(hops6)
            .filter(|(v, p)| table.get(*v, *p).is_none())
            .collect();
        let stale: Vec<(IpAddr, PortId)> = table
            .iter()
            .filter(|(_, n)| {
                n.kind == NeighborKind::Dynamic && now.duration_since(n.updated) > NEIGH_REFRESH
            })
            .map(|(ip, n)| (*ip, n.port))
            .collect();
        for (ip, port) in hops.into_iter().chain(stale) {
            self.resolve(ip, port, now);
        }
        if let Some(cutoff) = now.checked_sub(NEIGH_EXPIRE) {
            self.neigh.expire(cutoff);
        }
        self.last_request
            .retain(|_, t| now.duration_since(*t) < ARP_RETRY * 10);
    }

    fn send(&mut self, worker: usize, f: TxFrame) {
        let Some(tx) = self
            .to_workers
            .get(worker)
            .or_else(|| self.to_workers.first())
        else {
            return;
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(f) {
            self.counts.drop(DropReason::TxFull);
        }
    }
}

/// True if `frame` is an Ethernet II frame carrying IPv6.
fn is_ipv6(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&icmpv6::ETHERTYPE_IPV6[..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    use crate::fixtures::{LAN_MAC, PROD_MAC as HOST_MAC, WAN_MAC};

    fn setup() -> (
        SlowPath,
        Sender<SlowMsg>,
        Receiver<TxFrame>,
        Arc<Neighbors>,
        Arc<StatsRegistry>,
    ) {
        let gw = Arc::new(crate::fixtures::gateway());
        let neigh = Arc::new(Neighbors::default());
        let (tx, rx) = crossbeam_channel::bounded(16);
        let (wtx, wrx) = crossbeam_channel::bounded(16);
        let stats = Arc::new(StatsRegistry::new(1));
        (
            SlowPath::new(gw, neigh.clone(), rx, vec![wtx], stats.clone()),
            tx,
            wrx,
            neigh,
            stats,
        )
    }

    #[test]
    fn answers_arp_for_our_address_and_learns_the_sender() {
        let (mut sp, _tx, out, neigh, stats) = setup();
        let req = arp::request(
            HOST_MAC,
            Ipv4Addr::new(10, 10, 1, 2),
            Ipv4Addr::new(10, 10, 1, 1),
        );
        sp.handle(SlowMsg::Frame {
            worker: 0,
            port: PortId::Lan,
            reason: SlowReason::Arp,
            frame: req,
            via: Via::Port,
        });
        let r = out.try_recv().unwrap();
        assert_eq!(r.port, PortId::Lan);
        let a = arp::parse(&r.frame).unwrap();
        assert!(!a.is_request);
        assert_eq!(
            (a.sender_mac, a.sender_ip),
            (LAN_MAC, Ipv4Addr::new(10, 10, 1, 1))
        );
        assert_eq!(
            neigh
                .load()
                .get(Ipv4Addr::new(10, 10, 1, 2), PortId::Lan)
                .unwrap()
                .mac,
            HOST_MAC
        );
        assert_eq!(stats.sum().control.arp_replies, 1);
    }

    #[test]
    fn ignores_arp_for_other_addresses_and_off_link_senders() {
        let (mut sp, _tx, out, neigh, stats) = setup();
        let other = arp::request(
            HOST_MAC,
            Ipv4Addr::new(10, 10, 1, 2),
            Ipv4Addr::new(10, 10, 1, 3),
        );
        sp.handle(SlowMsg::Frame {
            worker: 0,
            port: PortId::Lan,
            reason: SlowReason::Arp,
            frame: other,
            via: Via::Port,
        });
        let offlink = arp::request(
            HOST_MAC,
            Ipv4Addr::new(192, 0, 2, 9),
            Ipv4Addr::new(10, 10, 1, 1),
        );
        sp.handle(SlowMsg::Frame {
            worker: 0,
            port: PortId::Lan,
            reason: SlowReason::Arp,
            frame: offlink,
            via: Via::Port,
        });
        assert!(out.try_recv().is_err());
        assert!(neigh.load().is_empty());
        sp.handle(SlowMsg::Frame {
            worker: 0,
            port: PortId::Lan,
            reason: SlowReason::Arp,
            frame: vec![0; 20],
            via: Via::Port,
        });
        assert_eq!(stats.sum().dropped(DropReason::BadControl), 1);
    }

    #[test]
    fn resolves_next_hops_once_per_interval_and_learns_replies() {
        let (mut sp, _tx, out, neigh, _) = setup();
        let now = Instant::now();
        sp.tick(now);
        sp.tick(now + Duration::from_millis(10));
        // One ARP request for the IPv4 next hop, one solicitation for the IPv6 one.
        let r = out.try_recv().unwrap();
        let ns = out.try_recv().unwrap();
        assert!(out.try_recv().is_err(), "one request per interval");
        assert_eq!((r.port, ns.port), (PortId::Wan, PortId::Wan));
        let router6 = crate::fixtures::router_ip6();
        assert!(matches!(
            icmpv6::parse_nd(&ns.frame),
            Ok(Nd::Solicit { target, .. }) if target == router6
        ));
        let a = arp::parse(&r.frame).unwrap();
        assert!(a.is_request);
        assert_eq!(a.target_ip, Ipv4Addr::new(10, 10, 100, 254));
        assert_eq!(&r.frame[..6], &[0xff; 6]);
        let router = [2, 0, 0, 0, 2, 0xfe];
        let reply = arp::reply(router, &a);
        sp.handle(SlowMsg::Frame {
            worker: 0,
            port: PortId::Wan,
            reason: SlowReason::Arp,
            frame: reply,
            via: Via::Port,
        });
        assert_eq!(
            neigh
                .load()
                .get(Ipv4Addr::new(10, 10, 100, 254), PortId::Wan)
                .unwrap()
                .mac,
            router
        );
        let na = icmpv6::neighbor_advert(router, router6, crate::fixtures::WAN_IP6, WAN_MAC);
        sp.handle(SlowMsg::Frame {
            worker: 0,
            port: PortId::Wan,
            reason: SlowReason::Nd,
            frame: na,
            via: Via::Port,
        });
        assert_eq!(neigh.load().get(router6, PortId::Wan).unwrap().mac, router);
        sp.tick(now + Duration::from_secs(5));
        assert!(out.try_recv().is_err(), "resolved hops are not asked again");
    }

    mod ipv6_tests {
        use super::*;
        use crate::fixtures::{LAN_IP6, PROD_IP6};
        use crate::wire::{ipv6, ETH_HLEN};
        use smoltcp::wire::{Icmpv6Packet, Icmpv6Repr};
        use std::net::Ipv6Addr;

        fn frame_msg(reason: SlowReason, frame: Vec<u8>) -> SlowMsg {
            SlowMsg::Frame {
                worker: 0,
                port: PortId::Lan,
                reason,
                frame,
                via: Via::Port,
            }
        }

        /// The ICMPv6 message of a frame the slow path sent, parsed by smoltcp (checksum checked).
        fn icmp_of(frame: &[u8]) -> (ipv6::Ipv6Info, Vec<u8>) {
            let ip = ipv6::parse(&frame[ETH_HLEN..]).unwrap();
            let body = frame[ETH_HLEN + ip.l4_at..ETH_HLEN + ip.total_len].to_vec();
            let p = Icmpv6Packet::new_checked(&body[..]).unwrap();
            assert!(p.verify_checksum(&ip.src, &ip.dst));
            (ip, body)
        }

        #[test]
        fn answers_solicitations_for_our_addresses_and_learns_the_sender() {
            let (mut sp, _tx, out, neigh, stats) = setup();
            let ns = icmpv6::neighbor_solicit(HOST_MAC, PROD_IP6, LAN_IP6);
            sp.handle(frame_msg(SlowReason::Nd, ns));
            let r = out.try_recv().unwrap();
            assert_eq!((r.port, &r.frame[..6]), (PortId::Lan, &HOST_MAC[..]));
            assert_eq!(
                icmpv6::parse_nd(&r.frame),
                Ok(Nd::Advert {
                    target: LAN_IP6,
                    lladdr: Some(LAN_MAC),
                    solicited: true,
                    override_: true
                })
            );
            assert_eq!(
                neigh.load().get(PROD_IP6, PortId::Lan).unwrap().mac,
                HOST_MAC
            );
            // Not one of ours: no answer, nothing learned.
            let other: Ipv6Addr = "fd00:10:1::99".parse().unwrap();
            let ns = icmpv6::neighbor_solicit(HOST_MAC, "fd00:10:1::3".parse().unwrap(), other);
            sp.handle(frame_msg(SlowReason::Nd, ns));
            assert!(out.try_recv().is_err());
            assert_eq!(neigh.load().len(), 1);
            // An unsolicited advertisement for a neighbour we never asked about is not learned.
            let na = icmpv6::neighbor_advert([2, 0, 0, 0, 1, 9], other, LAN_IP6, LAN_MAC);
            sp.handle(frame_msg(SlowReason::Nd, na));
            assert_eq!(neigh.load().len(), 1);
            // A damaged message is counted.
            let mut bad = icmpv6::neighbor_solicit(HOST_MAC, PROD_IP6, LAN_IP6);
            let n = bad.len();
            bad[n - 1] ^= 0x40;
            sp.handle(frame_msg(SlowReason::Nd, bad));
            let c = stats.sum();
            assert_eq!(c.dropped(DropReason::BadControl), 1);
            assert_eq!(c.control.nd_adverts, 1);
        }

        #[test]
        fn echo6_and_errors_with_the_right_source_and_quote() {
            let (mut sp, _tx, out, _neigh, stats) = setup();
            let far: Ipv6Addr = "fd00:20:1::2".parse().unwrap();
            let mut ip = ipv6::tests::packet(58, &[], &[128, 0, 0, 0, 0x12, 0x34, 0, 1], 64);
            ip[8..24].copy_from_slice(&PROD_IP6.octets());
            ip[24..40].copy_from_slice(&LAN_IP6.octets());
            let mut echo = LAN_MAC.to_vec();
            echo.extend_from_slice(&HOST_MAC);
            echo.extend_from_slice(&icmpv6::ETHERTYPE_IPV6);
            echo.extend_from_slice(&ip);
            {
                let mut p = Icmpv6Packet::new_unchecked(&mut echo[ETH_HLEN + 40..]);
                p.fill_checksum(&PROD_IP6, &LAN_IP6);
            }
            sp.handle(frame_msg(SlowReason::LocalIcmp, echo));
            let r = out.try_recv().unwrap();
            let (rip, body) = icmp_of(&r.frame);
            assert_eq!((rip.src, rip.dst, body[0]), (LAN_IP6, PROD_IP6, 129));

            // A packet to a far host whose hop limit ran out, and one too big.
            let mut fwd = ipv6::tests::packet(17, &[], &[0u8; 60], 1);
            fwd[8..24].copy_from_slice(&PROD_IP6.octets());
            fwd[24..40].copy_from_slice(&far.octets());
            let mut f = LAN_MAC.to_vec();
            f.extend_from_slice(&HOST_MAC);
            f.extend_from_slice(&icmpv6::ETHERTYPE_IPV6);
            f.extend_from_slice(&fwd);
            sp.handle(frame_msg(SlowReason::TtlExceeded, f.clone()));
            sp.handle(frame_msg(SlowReason::FragNeeded(1438), f.clone()));
            for (want_type, mtu) in [(3u8, None), (2u8, Some(1438u32))] {
                let r = out.try_recv().unwrap();
                let (rip, body) = icmp_of(&r.frame);
                assert_eq!((rip.src, rip.dst, body[0]), (LAN_IP6, PROD_IP6, want_type));
                assert_eq!(&body[8..], &f[ETH_HLEN..], "the whole packet quoted");
                let p = Icmpv6Packet::new_checked(&body[..]).unwrap();
                let repr = Icmpv6Repr::parse(&rip.src, &rip.dst, &p, &Default::default()).unwrap();
                if let Some(m) = mtu {
                    assert!(matches!(repr, Icmpv6Repr::PktTooBig { mtu, .. } if mtu == m));
                }
            }
            assert_eq!(stats.sum().control.icmp_errors, 2);
            assert_eq!(stats.sum().control.echo_replies, 1);
        }
    }
}
