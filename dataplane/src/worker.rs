//! A poll-mode worker: owns queue *i* of both ports and runs
//! rx burst → classify → act → tx burst, with no allocation, lock or system
//! call per packet (frames for the slow path are copied; they are not on
//! the forwarding path).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::backend::wait::wait_readable;
use crate::backend::{Burst, PacketBuf, PortQueue, BURST};
use crate::config::PollMode;
use crate::forward::{classify, OuterUdp, Verdict};
use crate::gateway::Gateway;
use crate::latency::LatencyRecorder;
use crate::neigh::{NeighborTable, Neighbors};
use crate::port::PortId;
use crate::slowpath::{SlowMsg, TxFrame, Via};
use crate::stage_clock::{Stage, StageClock};
use crate::stats::{Counters, DropReason, StatsRegistry};
use crate::tunnel::pipeline::{self, StageCtx, TunnelErrors, Unresolved, WorkerTunnel};
use crate::tunnel::{TableSource, TunnelTables};

/// Consecutive empty polls before an idle worker may sleep.
const IDLE_POLLS_BEFORE_SLEEP: u32 = 64;
/// Slow-path replies sent per poll at most.
const REPLIES_PER_POLL: usize = 32;
/// Unresolved-next-hop notices: after the first for an address, one per this many drops.
const UNRESOLVED_NOTICE_EVERY: u32 = 1024;
/// Polls between two looks at the clock for the host drop counters.
const POLLS_PER_HOST_CHECK: u32 = 4096;
/// How often the queues' host drop counters are copied into the block.
const HOST_DROPS_EVERY: Duration = Duration::from_millis(500);
/// Adaptive mode: the longest sleep in `poll()` (slow-path replies and the
/// stop flag wait at most this long).
const ADAPTIVE_WAIT: Duration = Duration::from_millis(1);
/// Adaptive mode without descriptors: the first backoff sleep, doubled up
/// to [`ADAPTIVE_WAIT`].
const ADAPTIVE_BACKOFF: Duration = Duration::from_micros(10);

/// What a worker is connected to.
pub struct WorkerLinks {
    /// The gateway's addresses and routes.
    pub gw: Arc<Gateway>,
    /// The neighbour table.
    pub neigh: Arc<Neighbors>,
    /// Frames and requests for the slow path.
    pub to_slowpath: Sender<SlowMsg>,
    /// Frames from the slow path to transmit.
    pub replies: Receiver<TxFrame>,
    /// Where the worker's counters go.
    pub stats: Arc<StatsRegistry>,
    /// The tunnel's SA and route tables; None for a plain router.
    pub tunnel: Option<Arc<dyn TableSource>>,
    /// Where per-burst processing times go; None records nothing.
    pub latency: Option<LatencyRecorder>,
}

/// What one receive burst hands the tunnel stages.
struct TunnelBatch<'a, B> {
    /// Frames to encapsulate, and each one's outbound SA.
    encap: &'a mut Burst<B>,
    encap_sa: &'a [usize],
    /// Frames to decapsulate, and where each one's UDP datagram lies.
    decap: &'a mut Burst<B>,
    decap_at: &'a [OuterUdp],
}

/// One worker and its two queues (LAN, WAN).
pub struct Worker<Q: PortQueue> {
    id: usize,
    queues: [Q; 2],
    links: WorkerLinks,
    counts: Counters,
    idle_sleep: Duration,
    idle_polls: u32,
    last_unresolved: Option<IpAddr>,
    unresolved_drops: u32,
    tunnel: WorkerTunnel,
    polls: u32,
    host_read_at: Option<Instant>,
    poll_mode: PollMode,
    backoff: Duration,
    stages: StageClock,
}

impl<Q: PortQueue> Worker<Q> {
    /// Worker `id` over queue `id` of the LAN and WAN ports. With a non-zero
    /// `idle_sleep`, an idle worker sleeps that long between polls (for
    /// shared CPUs); zero means pure busy polling.
    pub fn new(id: usize, lan: Q, wan: Q, links: WorkerLinks, idle_sleep: Duration) -> Self {
        Worker {
            id,
            queues: [lan, wan],
            links,
            counts: Counters::default(),
            idle_sleep,
            idle_polls: 0,
            last_unresolved: None,
            unresolved_drops: 0,
            tunnel: WorkerTunnel::default(),
            polls: 0,
            host_read_at: None,
            poll_mode: PollMode::Busy,
            backoff: ADAPTIVE_BACKOFF,
            stages: StageClock::new(false),
        }
    }

    /// Sets how the worker waits when idle (default: busy, with the
    /// `idle_sleep` given to [`Worker::new`]).
    pub fn with_poll_mode(mut self, mode: PollMode) -> Self {
        self.poll_mode = mode;
        self
    }

    /// Counts frames and clock cycles per stage of the poll loop
    /// (`[workers] stage_cycles`; off by default).
    pub fn with_stage_cycles(mut self, on: bool) -> Self {
        self.set_stage_cycles(on);
        self
    }

    /// Turns per-stage counting on or off (see [`Worker::with_stage_cycles`]).
    pub fn set_stage_cycles(&mut self, on: bool) {
        self.stages = StageClock::new(on);
    }

    /// Adaptive mode: sleeps in `poll()` on the queues' descriptors until
    /// one has frames (at most [`ADAPTIVE_WAIT`]), or, where a backend has
    /// none, for a backoff that doubles up to the same bound.
    fn wait_for_traffic(&mut self) {
        let fds: ArrayVec<std::os::fd::RawFd, 2> =
            self.queues.iter().filter_map(|q| q.wait_fd()).collect();
        if fds.len() == self.queues.len() {
            for q in &mut self.queues {
                q.arm_wait();
            }
            wait_readable(&fds, ADAPTIVE_WAIT);
            for q in &mut self.queues {
                q.disarm_wait();
            }
        } else {
            std::thread::sleep(self.backoff);
            self.backoff = (self.backoff * 2).min(ADAPTIVE_WAIT);
        }
        self.counts.work.sleeps += 1;
    }

    /// Copies what the host lost on this worker's queues (kernel socket,
    /// NIC) into the worker's block: a system or driver call per queue,
    /// about twice a second.
    pub fn read_host_drops(&mut self) {
        let block = self.links.stats.worker(self.id);
        for port in PortId::ALL {
            if let Some(c) = self.queues[port.index()].host_drops() {
                block.set_host(port, &c);
            }
        }
        self.host_read_at = Some(Instant::now());
    }

    /// The worker's queue on `port` (for tests and tools that drive
    /// [`Worker::poll_once`] themselves).
    pub fn queue_mut(&mut self, port: PortId) -> &mut Q {
        &mut self.queues[port.index()]
    }

    /// Polls until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) {
        self.read_host_drops();
        while !stop.load(Relaxed) {
            self.polls = self.polls.wrapping_add(1);
            if self.polls.is_multiple_of(POLLS_PER_HOST_CHECK)
                && self
                    .host_read_at
                    .is_none_or(|t| t.elapsed() >= HOST_DROPS_EVERY)
            {
                self.read_host_drops();
            }
            if self.poll_once() > 0 {
                self.idle_polls = 0;
                self.backoff = ADAPTIVE_BACKOFF;
                continue;
            }
            for q in &mut self.queues {
                q.idle();
            }
            self.idle_polls = self.idle_polls.saturating_add(1);
            if self.idle_polls > IDLE_POLLS_BEFORE_SLEEP {
                match self.poll_mode {
                    PollMode::Adaptive => self.wait_for_traffic(),
                    PollMode::Busy if !self.idle_sleep.is_zero() => {
                        std::thread::sleep(self.idle_sleep);
                        self.counts.work.sleeps += 1;
                    }
                    PollMode::Busy => {}
                }
            }
        }
        self.read_host_drops();
    }

    /// One pass: a receive burst on each port, classification, the tunnel
    /// stages, slow-path replies, transmit bursts. Returns the number of
    /// frames received.
    pub fn poll_once(&mut self) -> usize {
        let neigh = self.links.neigh.load();
        let tables = self.links.tunnel.as_ref().map(|t| t.load());
        let tables = tables.as_deref().map(|t| &**t);
        if let Some(t) = tables {
            if t.generation != self.tunnel.generation() {
                if let Some(src) = &self.links.tunnel {
                    src.seen(self.id, t);
                }
            }
            self.tunnel.sync(t);
        }
        let mut tx: [Burst<Q::Buf>; 2] = [Burst::new(), Burst::new()];
        let mut received = 0;
        let mut started = None;
        for in_port in PortId::ALL {
            let mut rx = Burst::new();
            self.stages.mark();
            let n = self.queues[in_port.index()].rx_burst(&mut rx);
            if n == 0 {
                continue;
            }
            self.stages.lap(Stage::Rx, n);
            if started.is_none() {
                started = Some(std::time::Instant::now());
            }
            received += n;
            let mut encap: Burst<Q::Buf> = Burst::new();
            let mut encap_sa: ArrayVec<usize, BURST> = ArrayVec::new();
            let mut decap: Burst<Q::Buf> = Burst::new();
            let mut decap_at: ArrayVec<OuterUdp, BURST> = ArrayVec::new();
            for mut buf in rx.drain(..) {
                self.counts.rx(in_port, buf.len());
                match classify(buf.data_mut(), in_port, &self.links.gw, &neigh, tables) {
                    Verdict::Forward(out) => self.queue_tx(out, &mut tx[out.index()], buf),
                    Verdict::Encap(sa) => {
                        encap.push(buf);
                        encap_sa.push(tables.map_or(sa, |t| t.lane(sa, self.id)));
                    }
                    Verdict::Decap(at) => {
                        decap.push(buf);
                        decap_at.push(at);
                    }
                    Verdict::Slow(reason) => {
                        let msg = SlowMsg::Frame {
                            worker: self.id,
                            port: in_port,
                            reason,
                            frame: buf.data().to_vec(),
                            via: Via::Port,
                        };
                        self.send_to_slowpath(msg);
                    }
                    Verdict::Unresolved { next_hop, port } => {
                        self.counts.drop(DropReason::NoNeighbor);
                        self.notice_unresolved(next_hop, port);
                    }
                    Verdict::Drop(reason) => self.counts.drop(reason),
                }
            }
            self.stages.lap(Stage::Classify, n);
            if let Some(t) = tables {
                let stage = TunnelBatch {
                    encap: &mut encap,
                    encap_sa: &encap_sa,
                    decap: &mut decap,
                    decap_at: &decap_at,
                };
                self.run_tunnel_stages(t, &neigh, stage, &mut tx);
            }
        }
        self.take_replies(tables, &neigh, &mut tx);
        self.stages.mark();
        let queued = tx[0].len() + tx[1].len();
        for port in PortId::ALL {
            self.transmit(port, &mut tx[port.index()]);
        }
        if queued > 0 {
            self.stages.lap(Stage::Tx, queued);
        }
        // One clock read at each end of a burst (never per packet): the
        // burst time goes to the segment's buckets, the worker's busy time,
        // and the optional percentile recorder.
        if let Some(t0) = started {
            let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.counts.work.burst(ns.max(1));
            if let Some(l) = self.links.latency.as_mut() {
                l.record(t0);
            }
        }
        if self.stages.enabled() {
            self.counts.work.stages = self.stages.take();
        }
        if received > 0 || self.counts != Counters::default() {
            self.links.stats.worker(self.id).fold(&mut self.counts);
        }
        received
    }

    /// Encapsulates and decapsulates what a receive burst (or the slow
    /// path's replies) gave the tunnel, queueing the results for
    /// transmission and the ICMP errors for the slow path.
    fn run_tunnel_stages(
        &mut self,
        tables: &TunnelTables,
        neigh: &NeighborTable,
        batch: TunnelBatch<'_, Q::Buf>,
        tx: &mut [Burst<Q::Buf>; 2],
    ) {
        if batch.encap.is_empty() && batch.decap.is_empty() {
            return;
        }
        let mut unresolved = Unresolved::new();
        let mut errors = TunnelErrors::new();
        let mut cx = StageCtx {
            gw: &self.links.gw,
            neigh,
            tables,
            counts: &mut self.counts,
            unresolved: &mut unresolved,
            errors: &mut errors,
            sa_stats: Some((&self.links.stats, self.id)),
        };
        self.stages.mark();
        if !batch.encap.is_empty() {
            let n = batch.encap.len();
            pipeline::encap_burst(&mut cx, batch.encap, batch.encap_sa);
            self.stages.lap(Stage::Seal, n);
        }
        if !batch.decap.is_empty() {
            let n = batch.decap.len();
            pipeline::decap_burst(&mut cx, &mut self.tunnel, batch.decap, batch.decap_at);
            self.stages.lap(Stage::Open, n);
        }
        for buf in batch.encap.drain(..) {
            self.queue_tx(PortId::Wan, &mut tx[PortId::Wan.index()], buf);
        }
        for buf in batch.decap.drain(..) {
            self.queue_tx(PortId::Lan, &mut tx[PortId::Lan.index()], buf);
        }
        for (hop, port) in unresolved {
            self.notice_unresolved(hop, port);
        }
        for e in errors {
            self.send_to_slowpath(SlowMsg::Frame {
                worker: self.id,
                port: PortId::Wan,
                reason: e.reason,
                frame: e.frame,
                via: Via::Tunnel { spi: e.reply_spi },
            });
        }
    }

    /// Adds `buf` to the transmit burst of `port`, sending the burst first if it is full.
    #[inline]
    fn queue_tx(&mut self, port: PortId, burst: &mut Burst<Q::Buf>, buf: Q::Buf) {
        if burst.is_full() {
            self.transmit(port, burst);
        }
        burst.push(buf);
    }

    fn transmit(&mut self, port: PortId, burst: &mut Burst<Q::Buf>) {
        if burst.is_empty() {
            return;
        }
        let n = burst.len();
        let bytes: usize = burst.iter().map(|b| b.len()).sum();
        let sent = self.queues[port.index()].tx_burst(burst);
        // Bytes are counted for the whole burst when every frame went, which
        // is the normal case; a partial send counts the average per frame.
        let sent_bytes = if sent == n { bytes } else { bytes / n * sent };
        self.counts.tx(port, sent, sent_bytes);
        for _ in sent..n {
            self.counts.drop(DropReason::TxFull);
        }
    }

    /// Sends the slow path's replies: out of their port, or, for replies to
    /// packets that came out of the tunnel, back into it.
    fn take_replies(
        &mut self,
        tables: Option<&TunnelTables>,
        neigh: &NeighborTable,
        tx: &mut [Burst<Q::Buf>; 2],
    ) {
        let mut encap: Burst<Q::Buf> = Burst::new();
        let mut encap_sa: ArrayVec<usize, BURST> = ArrayVec::new();
        for _ in 0..REPLIES_PER_POLL {
            let Ok(reply) = self.links.replies.try_recv() else {
                break;
            };
            let sa = match (reply.via, tables) {
                (Via::Port, _) => None,
                (Via::Tunnel { spi }, Some(t)) => match t.outbound_index(spi) {
                    Some(i) => Some(i),
                    // Rekeyed away meanwhile: the error is lost, and counted.
                    None => {
                        self.counts.drop(DropReason::EspUnknownSpi);
                        continue;
                    }
                },
                (Via::Tunnel { .. }, None) => {
                    self.counts.drop(DropReason::Policy);
                    continue;
                }
            };
            let q = &mut self.queues[reply.port.index()];
            let Some(mut buf) = q.alloc() else {
                self.counts.drop(DropReason::NoBuffer);
                continue;
            };
            if !buf.append(reply.frame.len()) {
                self.counts.drop(DropReason::NoBuffer);
                continue;
            }
            buf.data_mut().copy_from_slice(&reply.frame);
            match sa {
                None => self.queue_tx(reply.port, &mut tx[reply.port.index()], buf),
                Some(i) => {
                    encap.push(buf);
                    encap_sa.push(tables.map_or(i, |t| t.lane(i, self.id)));
                }
            }
        }
        if let (Some(t), false) = (tables, encap.is_empty()) {
            let mut decap = Burst::new();
            let batch = TunnelBatch {
                encap: &mut encap,
                encap_sa: &encap_sa,
                decap: &mut decap,
                decap_at: &[],
            };
            self.run_tunnel_stages(t, neigh, batch, tx);
        }
    }

    fn send_to_slowpath(&mut self, msg: SlowMsg) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.links.to_slowpath.try_send(msg)
        {
            self.counts.drop(DropReason::SlowPathBusy);
        }
    }

    /// Asks the slow path to resolve `next_hop`, without flooding it: the first
    /// drop for a new address, then one in every [`UNRESOLVED_NOTICE_EVERY`].
    fn notice_unresolved(&mut self, next_hop: IpAddr, port: PortId) {
        if self.last_unresolved == Some(next_hop) {
            self.unresolved_drops += 1;
            if self.unresolved_drops < UNRESOLVED_NOTICE_EVERY {
                return;
            }
        }
        self.last_unresolved = Some(next_hop);
        self.unresolved_drops = 0;
        self.send_to_slowpath(SlowMsg::Resolve { next_hop, port });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mem::MemQueue;
    use crate::wire::{arp, ipv4, ETH_HLEN};
    use std::net::Ipv4Addr;

    use crate::fixtures::{LAN_MAC, PROD_MAC, ROUTER_MAC, WAN_MAC};

    fn worker(
        tx_room: usize,
    ) -> (
        Worker<MemQueue>,
        Sender<TxFrame>,
        Receiver<SlowMsg>,
        Arc<StatsRegistry>,
    ) {
        let (to_slow, slow_rx) = crossbeam_channel::bounded(64);
        let (reply_tx, replies) = crossbeam_channel::bounded(64);
        let stats = Arc::new(StatsRegistry::new(1));
        let links = WorkerLinks {
            gw: Arc::new(crate::fixtures::gateway()),
            neigh: Arc::new(crate::fixtures::neighbors()),
            to_slowpath: to_slow,
            replies,
            stats: stats.clone(),
            tunnel: None,
            latency: None,
        };
        let q = || MemQueue {
            tx_room: Some(tx_room),
            ..MemQueue::new()
        };
        (
            Worker::new(0, q(), q(), links, Duration::ZERO),
            reply_tx,
            slow_rx,
            stats,
        )
    }

    fn lan_frame(seq: u32) -> Vec<u8> {
        let mut f = LAN_MAC.to_vec();
        f.extend_from_slice(&PROD_MAC);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&ipv4::tests::udp_packet(&seq.to_be_bytes(), 64));
        f
    }

    #[test]
    fn an_idle_adaptive_worker_sleeps_and_counts_its_sleeps() {
        let (w, _replies, _slow, stats) = worker(64);
        let stop = Arc::new(AtomicBool::new(false));
        let t = {
            let stop = stop.clone();
            std::thread::spawn(move || w.with_poll_mode(PollMode::Adaptive).run(&stop))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while stats.sum().work.sleeps < 10 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Relaxed);
        t.join().unwrap();
        let work = stats.sum().work;
        assert!(work.sleeps >= 10, "{work:?}");
        assert_eq!(work.bursts, 0, "nothing was received: {work:?}");
    }

    #[test]
    fn forwards_bursts_in_order_and_counts() {
        let (mut w, _r, _s, stats) = worker(usize::MAX);
        for i in 0..100 {
            w.queues[0].rx.push_back(lan_frame(i));
        }
        w.queues[0].rx.push_back(vec![1, 2, 3]);
        let mut total = 0;
        while total < 101 {
            total += w.poll_once();
        }
        let out = &w.queues[1].tx;
        assert_eq!(out.len(), 100);
        for (i, f) in out.iter().enumerate() {
            assert_eq!(&f[..6], &ROUTER_MAC);
            assert_eq!(&f[6..12], &WAN_MAC);
            assert_eq!(f[ETH_HLEN + 8], 63);
            assert_eq!(&f[f.len() - 4..], &(i as u32).to_be_bytes(), "in order");
        }
        let s = stats.sum();
        assert_eq!(s.ports[0].rx_packets, 101);
        assert_eq!(s.ports[1].tx_packets, 100);
        assert_eq!(
            s.ports[1].tx_bytes,
            out.iter().map(|f| f.len() as u64).sum::<u64>()
        );
        assert_eq!(s.dropped(DropReason::Runt), 1);
    }

    #[test]
    fn counts_tx_drops_when_the_queue_is_full() {
        let (mut w, _r, _s, stats) = worker(10);
        for i in 0..32 {
            w.queues[0].rx.push_back(lan_frame(i));
        }
        w.poll_once();
        assert_eq!(w.queues[1].tx.len(), 10);
        let s = stats.sum();
        assert_eq!(s.ports[1].tx_packets, 10);
        assert_eq!(s.dropped(DropReason::TxFull), 22);
    }

    #[test]
    fn hands_arp_to_the_slow_path_and_sends_its_replies() {
        let (mut w, reply_tx, slow_rx, _) = worker(usize::MAX);
        let req = arp::request(
            PROD_MAC,
            Ipv4Addr::new(10, 10, 1, 2),
            Ipv4Addr::new(10, 10, 1, 1),
        );
        w.queues[0].rx.push_back(req.clone());
        w.poll_once();
        match slow_rx.try_recv().unwrap() {
            SlowMsg::Frame { port, frame, .. } => {
                assert_eq!(port, PortId::Lan);
                assert_eq!(frame, req);
            }
            other => panic!("unexpected {other:?}"),
        }
        reply_tx
            .send(TxFrame {
                port: PortId::Lan,
                frame: vec![0xab; 60],
                via: Via::Port,
            })
            .unwrap();
        w.poll_once();
        assert_eq!(w.queues[0].tx, vec![vec![0xab; 60]]);
    }

    #[test]
    fn asks_once_for_an_unresolved_next_hop() {
        let (mut w, _r, slow_rx, stats) = worker(usize::MAX);
        let mut f = lan_frame(0);
        // Destination 10.10.100.9: on the WAN link, no neighbour entry.
        f[ETH_HLEN + 16..ETH_HLEN + 20].copy_from_slice(&[10, 10, 100, 9]);
        f[ETH_HLEN + 10] = 0;
        f[ETH_HLEN + 11] = 0;
        let c = crate::wire::checksum::of(&f[ETH_HLEN..ETH_HLEN + 20]);
        f[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
        for _ in 0..10 {
            w.queues[0].rx.push_back(f.clone());
        }
        w.poll_once();
        assert_eq!(stats.sum().dropped(DropReason::NoNeighbor), 10);
        let msgs: Vec<_> = slow_rx.try_iter().collect();
        assert_eq!(msgs.len(), 1);
        assert!(
            matches!(msgs[0], SlowMsg::Resolve { next_hop, port: PortId::Wan } if next_hop == IpAddr::V4(Ipv4Addr::new(10, 10, 100, 9)))
        );
    }
}
