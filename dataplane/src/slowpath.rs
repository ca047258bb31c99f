//! The slow-path thread: ARP for the gateway's addresses, neighbour
//! resolution, ICMP echo replies and ICMP errors. Workers hand it copies of
//! frames over a bounded channel; it hands replies back to a worker, which
//! sends them through its own TX queue. Never on the forwarding path.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::forward::SlowReason;
use crate::gateway::Gateway;
use crate::neigh::{NeighborKind, Neighbors};
use crate::port::PortId;
use crate::stats::{Counters, DropReason, StatsRegistry};
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
        /// The next hop.
        next_hop: Ipv4Addr,
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
    last_request: HashMap<Ipv4Addr, Instant>,
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
                let reply = match reason {
                    SlowReason::Arp => self.arp(port, &frame),
                    SlowReason::LocalIcmp => match icmp::echo_reply(&frame, me.mac) {
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
                    },
                    SlowReason::TtlExceeded => self.icmp_error(&frame, me.mac, me.ip, None),
                    SlowReason::FragNeeded(mtu) => {
                        self.icmp_error(&frame, me.mac, me.ip, Some(mtu))
                    }
                };
                if let Some(frame) = reply {
                    self.send(worker, TxFrame { port, frame, via });
                }
            }
        }
    }

    fn icmp_error(
        &mut self,
        frame: &[u8],
        mac: [u8; 6],
        ip: Ipv4Addr,
        mtu: Option<u16>,
    ) -> Option<Vec<u8>> {
        let r = icmp::error_for(frame, mac, ip, mtu);
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
        let sender_ok = me.on_link(a.sender_ip) && a.sender_ip != me.ip && a.sender_mac[0] & 1 == 0;
        let for_us = a.target_ip == me.ip;
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

    fn resolve(&mut self, ip: Ipv4Addr, port: PortId, now: Instant) {
        if self
            .last_request
            .get(&ip)
            .is_some_and(|t| now.duration_since(*t) < ARP_RETRY)
        {
            return;
        }
        self.last_request.insert(ip, now);
        let me = *self.gw.port(port);
        self.counts.control.arp_requests += 1;
        self.send(
            0,
            TxFrame {
                port,
                frame: arp::request(me.mac, me.ip, ip),
                via: Via::Port,
            },
        );
    }

    /// Timers: resolve route next hops that have no MAC, refresh old dynamic
    /// entries, expire dead ones.
    pub fn tick(&mut self, now: Instant) {
        let table = self.neigh.load();
        let hops: Vec<(Ipv4Addr, PortId)> = self
            .gw
            .routes
            .routes()
            .filter_map(|r| r.via.map(|v| (v, r.port)))
            .filter(|(v, p)| table.get(*v, *p).is_none())
            .collect();
        let stale: Vec<(Ipv4Addr, PortId)> = table
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fixtures::{LAN_MAC, PROD_MAC as HOST_MAC};

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
        let r = out.try_recv().unwrap();
        assert!(out.try_recv().is_err(), "one request per interval");
        assert_eq!(r.port, PortId::Wan);
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
        sp.tick(now + Duration::from_secs(5));
        assert!(out.try_recv().is_err(), "resolved hops are not asked again");
    }
}
