//! The tunnel stages of a worker, each run once per receive burst:
//!
//! - encapsulation (LAN → WAN): police each SA's packets against its rate,
//!   strip Ethernet, decrement the inner TTL, lay out ESP-in-UDP in place,
//!   seal the whole burst in one engine call, add the outer Ethernet header
//!   toward the peer's next hop;
//! - decapsulation (WAN → LAN): parse the ESP-in-UDP datagram the
//!   classifier found, look up the inbound SA by SPI, check the replay
//!   window, open the whole burst in one engine call, record the sequence
//!   numbers that authenticated, strip to the inner packet, and hand it to
//!   the same route-out step as forwarded packets ([`route_out`]): TTL and
//!   MTU give ICMP errors, which the slow path sends back through the
//!   tunnel.
//!
//! No allocation in steady state (a replay window is created the first time
//! a worker sees an SA), no lock, no copy of payloads.

use std::net::IpAddr;

use arrayvec::ArrayVec;
use rustc_hash::FxHashMap;

use crate::backend::{Burst, PacketBuf, BURST};
use crate::crypto;
use crate::esp::{self, Clock, EspError, MonotonicClock, OpenJob, ReplayWindow, SealJob};
use crate::forward::{
    egress_check, egress_check6, route_out, route_out6, Ingress, OuterUdp, SlowReason, Verdict,
};
use crate::gateway::Gateway;
use crate::neigh::NeighborTable;
use crate::port::PortId;
use crate::stats::{Counters, DropReason, StatsRegistry};
use crate::wire::{ipv4, ipv6, mss, Mac, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_HLEN};
use scistream_region::stats::{add, sa_tag, SaCounters};
use scistream_region::Direction;

use super::TunnelTables;

/// Next hops a stage found unresolved, for the worker to report to the slow path.
pub type Unresolved = ArrayVec<(IpAddr, PortId), BURST>;

/// A decapsulated packet that needs an ICMP error (time exceeded or
/// fragmentation needed), for the worker to hand to the slow path: the
/// error goes back to the sender through the tunnel, sealed with the
/// outbound SA `reply_spi`.
#[derive(Debug)]
pub struct TunnelError {
    /// Time exceeded, or fragmentation needed with the LAN MTU.
    pub reason: SlowReason,
    /// The inner packet as the sender sent it, behind an Ethernet header.
    pub frame: Vec<u8>,
    /// The outbound SA toward the sender's gateway.
    pub reply_spi: u32,
}

/// ICMP errors a decapsulation stage produced (rare: allocated only then).
pub type TunnelErrors = ArrayVec<TunnelError, BURST>;

/// What a stage reads and counts into.
pub struct StageCtx<'a> {
    /// Addresses and routes.
    pub gw: &'a Gateway,
    /// Neighbours.
    pub neigh: &'a NeighborTable,
    /// The tunnel tables.
    pub tables: &'a TunnelTables,
    /// The worker's counters.
    pub counts: &'a mut Counters,
    /// Unresolved next hops.
    pub unresolved: &'a mut Unresolved,
    /// ICMP errors for packets out of the tunnel.
    pub errors: &'a mut TunnelErrors,
    /// Where per-SA counts go: the stats registry and this worker's block
    /// (`None`: not counted per SA).
    pub sa_stats: Option<(&'a StatsRegistry, usize)>,
}

impl StageCtx<'_> {
    /// This worker's counters of stats slot `slot`, claimed for SA `tag`.
    #[inline]
    fn sa_counters(&self, slot: Option<usize>, tag: u64) -> Option<&SaCounters> {
        let (stats, block) = self.sa_stats?;
        let c = stats.sa(block, slot?);
        c.claim(tag);
        Some(c)
    }
}

/// A worker's own tunnel state: the replay windows of the inbound SAs it
/// receives (all packets of an SA share one outer 5-tuple, so RSS keeps them
/// on one queue, hence one worker).
#[derive(Debug, Default)]
pub struct WorkerTunnel {
    generation: u64,
    replay: FxHashMap<u32, ReplayWindow>,
}

impl WorkerTunnel {
    /// The generation of the tables last synced with (0: none yet).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Forgets the windows of SAs that are no longer in `tables`.
    pub fn sync(&mut self, tables: &TunnelTables) {
        if tables.generation != self.generation {
            self.replay.retain(|spi, _| tables.has_inbound(*spi));
            self.generation = tables.generation;
        }
    }
}

/// The drop reason for an ESP error.
pub fn drop_reason(e: EspError) -> DropReason {
    match e {
        EspError::AuthFailed => DropReason::EspAuthFailed,
        EspError::Replay | EspError::TooOld => DropReason::EspReplay,
        EspError::UnknownSpi => DropReason::EspUnknownSpi,
        EspError::BadPadLength | EspError::BadPadding | EspError::BadNextHeader => {
            DropReason::EspBadTrailer
        }
        EspError::SeqExhausted => DropReason::EspSeqExhausted,
        EspError::SaExpired => DropReason::EspSaExpired,
        EspError::NoRoom => DropReason::NoBuffer,
        EspError::BadUdpChecksum => DropReason::EspUdpChecksum,
        _ => DropReason::EspMalformed,
    }
}

/// Encapsulates `bufs` (Ethernet frames, each with its outbound SA index in
/// `sa_idx`) for the WAN. On return `bufs` holds the frames ready to send.
/// Rate-limited SAs read the process's monotonic clock, once per burst.
pub fn encap_burst<B: PacketBuf>(cx: &mut StageCtx<'_>, bufs: &mut Burst<B>, sa_idx: &[usize]) {
    encap_burst_with_clock(cx, bufs, sa_idx, &MonotonicClock);
}

/// [`encap_burst`] with the time taken from `clock`, read at most once, and
/// only if an SA of the burst has a rate limit.
///
/// Per SA, once per burst: its policer admits the longest prefix of the
/// SA's packets (in burst order) that conforms; the later ones are dropped
/// as [`DropReason::RateLimited`] and take no sequence number. Then one
/// atomic reservation of sequence numbers covers the admitted packets.
pub fn encap_burst_with_clock<B: PacketBuf, C: Clock>(
    cx: &mut StageCtx<'_>,
    bufs: &mut Burst<B>,
    sa_idx: &[usize],
    clock: &C,
) {
    // (SA index, packets, inner bytes, reserved numbers: one per admitted packet)
    type Block = (usize, u64, u64, Result<std::ops::Range<u64>, EspError>);
    let inner_len = |buf: &B| buf.len().saturating_sub(ETH_HLEN);
    let mut blocks: ArrayVec<Block, BURST> = ArrayVec::new();
    for (buf, &i) in bufs.iter().zip(sa_idx) {
        let inner = inner_len(buf) as u64;
        match blocks.iter_mut().find(|b| b.0 == i) {
            Some(b) => {
                b.1 += 1;
                b.2 += inner;
            }
            None => blocks.push((i, 1, inner, Ok(0..0))),
        }
    }
    let mut now = None;
    for b in &mut blocks {
        let entry = cx.tables.outbound(b.0);
        let sa = &entry.sa;
        if entry.lifetime.expired() {
            b.3 = Err(EspError::SaExpired);
            continue;
        }
        let mut admitted = b.1;
        if sa.policer().is_limited() {
            let t = *now.get_or_insert_with(|| clock.now_ns());
            let lens = bufs
                .iter()
                .zip(sa_idx)
                .filter(|(_, &i)| i == b.0)
                .map(|(buf, _)| inner_len(buf));
            admitted = sa.policer().admit(t, lens.clone()) as u64;
            if admitted < b.1 {
                b.2 = lens.take(admitted as usize).map(|l| l as u64).sum();
            }
        }
        b.3 = sa.reserve(admitted);
        if b.3.is_ok() {
            sa.account_bytes(b.2);
            if let Some(c) = cx.sa_counters(entry.stats_slot, sa_tag(Direction::Out, sa.spi)) {
                add(&c.packets, admitted);
                add(&c.bytes, b.2);
                add(&c.rate_limited, b.1 - admitted);
            }
        }
    }

    let tables = cx.tables;
    let mut ready: Burst<B> = Burst::new();
    let mut jobs: ArrayVec<SealJob<'_>, BURST> = ArrayVec::new();
    let mut sas: ArrayVec<usize, BURST> = ArrayVec::new();
    let mut inner_len: ArrayVec<usize, BURST> = ArrayVec::new();
    for (mut buf, &i) in bufs.drain(..).zip(sa_idx) {
        let block = &mut blocks
            .iter_mut()
            .find(|b| b.0 == i)
            .expect("reserved above")
            .3;
        let seq = match block {
            Ok(r) => match r.next() {
                Some(seq) => seq,
                // The SA's admitted packets have all taken their numbers.
                None => {
                    cx.counts.drop(DropReason::RateLimited);
                    continue;
                }
            },
            Err(e) => {
                cx.counts.drop(drop_reason(*e));
                continue;
            }
        };
        let entry = tables.outbound(i);
        if !buf.adj(ETH_HLEN) {
            cx.counts.drop(DropReason::Runt);
            continue;
        }
        decrement_hop(buf.data_mut());
        if let Some(max) = tables.tcp_mss {
            clamp_mss(cx.counts, buf.data_mut(), max);
        }
        let len = buf.len();
        match esp::encap_prepare(&mut buf, &entry.sa, seq, &entry.outer) {
            Ok(job) => {
                jobs.push(job);
                sas.push(i);
                inner_len.push(len);
                ready.push(buf);
            }
            Err(e) => cx.counts.drop(drop_reason(e)),
        }
    }
    if ready.is_empty() {
        return;
    }
    esp::seal_burst(crypto::engine(tables.engine), &mut ready, &mut jobs);

    let wan_mac = cx.gw.port(PortId::Wan).mac;
    let sealed = ready
        .drain(..)
        .zip(sas.iter())
        .zip(jobs.iter())
        .zip(inner_len);
    for (((mut buf, &i), job), len) in sealed {
        if !job.sealed() {
            cx.counts.drop(DropReason::EspSealFailed);
            continue;
        }
        let outer = &tables.outbound(i).outer;
        let Some(mac) = next_hop_mac(cx, outer.dst, PortId::Wan) else {
            continue;
        };
        let ethertype = if outer.is_ipv6() {
            ETHERTYPE_IPV6
        } else {
            ETHERTYPE_IPV4
        };
        if !push_ethernet(&mut buf, mac, wan_mac, ethertype) {
            cx.counts.drop(DropReason::NoBuffer);
            continue;
        }
        cx.counts.tunnel.encap_packets += 1;
        cx.counts.tunnel.encap_bytes += len as u64;
        bufs.push(buf);
    }
}

/// Decapsulates `bufs` (Ethernet frames carrying ESP-in-UDP to us, each
/// with the position of its UDP datagram in `outer`, as the classifier
/// found it). On return `bufs` holds the inner frames ready to send on the
/// LAN.
pub fn decap_burst<B: PacketBuf>(
    cx: &mut StageCtx<'_>,
    state: &mut WorkerTunnel,
    bufs: &mut Burst<B>,
    outer: &[OuterUdp],
) {
    let tables = cx.tables;
    let mut pending: Burst<B> = Burst::new();
    let mut jobs: ArrayVec<OpenJob<'_>, BURST> = ArrayVec::new();
    // Each job's SA stats slot and whether its SA is replay-checked.
    let mut slots: ArrayVec<(Option<usize>, bool), BURST> = ArrayVec::new();
    for (mut buf, o) in bufs.drain(..).zip(outer) {
        if !buf.adj(ETH_HLEN) {
            cx.counts.drop(DropReason::Runt);
            continue;
        }
        let (udp_at, end) = (usize::from(o.udp_at), usize::from(o.end));
        if o.ipv6 && !esp::udp6_checksum_ok(buf.data(), udp_at, end) {
            cx.counts.drop(DropReason::EspUdpChecksum);
            continue;
        }
        let parsed = esp::decap_parse_at(buf.data(), udp_at, end, tables.udp_port);
        let view = match parsed {
            Ok(v) => v,
            Err(e) => {
                cx.counts.drop(drop_reason(e));
                continue;
            }
        };
        let Some(entry) = tables.inbound(view.spi) else {
            cx.counts.drop(DropReason::EspUnknownSpi);
            continue;
        };
        if entry.lifetime.expired() {
            cx.counts.drop(DropReason::EspSaExpired);
            continue;
        }
        let seq = if entry.sa.anti_replay {
            let window = state.replay.entry(view.spi).or_default();
            let seq = window.infer(view.seq_low, entry.sa.esn);
            if let Err(e) = window.check(seq) {
                cx.counts.drop(drop_reason(e));
                if let Some(c) = cx.sa_counters(entry.stats_slot, sa_tag(Direction::In, view.spi)) {
                    add(&c.replayed, 1);
                }
                continue;
            }
            seq
        } else {
            // No window (`anti_replay = false`, 32-bit sequence numbers only).
            u64::from(view.seq_low)
        };
        jobs.push(OpenJob::new(&entry.sa, &view, seq));
        slots.push((entry.stats_slot, entry.sa.anti_replay));
        pending.push(buf);
    }
    if pending.is_empty() {
        return;
    }
    esp::open_burst(crypto::engine(tables.engine), &mut pending, &mut jobs);

    for ((mut buf, job), &(slot, anti_replay)) in pending.drain(..).zip(jobs.iter()).zip(&slots) {
        let tag = sa_tag(Direction::In, job.view().spi);
        if !job.verified() {
            cx.counts.drop(DropReason::EspAuthFailed);
            if let Some(c) = cx.sa_counters(slot, tag) {
                add(&c.auth_failed, 1);
            }
            continue;
        }
        if anti_replay {
            let window = state.replay.entry(job.view().spi).or_default();
            // Checks again: two copies of one packet in this burst both passed the first check.
            if let Err(e) = window.accept(job.seq()) {
                cx.counts.drop(drop_reason(e));
                if let Some(c) = cx.sa_counters(slot, tag) {
                    add(&c.replayed, 1);
                }
                continue;
            }
        }

        if let Err(e) = esp::decap_finish(&mut buf, job.view()) {
            cx.counts.drop(drop_reason(e));
            continue;
        }
        if let Some(c) = cx.sa_counters(slot, tag) {
            add(&c.packets, 1);
            add(&c.bytes, buf.len() as u64);
        }
        // Room for the Ethernet header the route-out step rewrites.
        let ethertype = match buf.data().first() {
            Some(b) if b >> 4 == 6 => ETHERTYPE_IPV6,
            _ => ETHERTYPE_IPV4,
        };
        if !push_ethernet(&mut buf, [0; 6], [0; 6], ethertype) {
            cx.counts.drop(DropReason::NoBuffer);
            continue;
        }
        let spi = job.view().spi;
        let len = buf.len() - ETH_HLEN;
        match route_decapsulated(cx, &mut buf, spi) {
            Verdict::Forward(_) => {
                cx.counts.tunnel.decap_packets += 1;
                cx.counts.tunnel.decap_bytes += len as u64;
                bufs.push(buf);
            }
            Verdict::Unresolved { next_hop, port } => {
                cx.counts.drop(DropReason::NoNeighbor);
                note_unresolved(cx, next_hop, port);
            }
            Verdict::Drop(reason) => cx.counts.drop(reason),
            // Errors were noted with the packet as it came out of the tunnel.
            Verdict::Slow(_) | Verdict::Encap(_) | Verdict::Decap(_) => {}
        }
    }
}

/// Routes one decapsulated packet (`buf`: an Ethernet header, then the
/// inner IPv4 packet) through the route-out step. In listener mode the
/// address translation comes first; the TTL and MTU checks are made before
/// it, so that an ICMP error quotes the packet as its sender sent it (the
/// peer gateway translates such errors back to its consumer).
fn route_decapsulated<B: PacketBuf>(cx: &mut StageCtx<'_>, buf: &mut B, spi: u32) -> Verdict {
    if buf.data()[12..14] == ETHERTYPE_IPV6 {
        return route_decapsulated6(cx, buf, spi);
    }
    let tables = cx.tables;
    let inner = match ipv4::parse(&buf.data()[ETH_HLEN..]) {
        Ok(ip) => ip,
        Err(_) => return Verdict::Drop(DropReason::Ipv4Malformed),
    };
    let lan_mtu = cx.gw.port(PortId::Lan).mtu;
    let inner = if tables.has_listeners() {
        if let Some(v) = egress_check(&inner, lan_mtu) {
            return tunnel_error(cx, v, buf.data(), inner.src.into(), inner.total_len, spi);
        }
        if let Err(e) = tables.nat_from_tunnel(&mut buf.data_mut()[ETH_HLEN..], inner.dst.into()) {
            return Verdict::Drop(e.into());
        }
        match ipv4::parse(&buf.data()[ETH_HLEN..]) {
            Ok(ip) => ip,
            Err(_) => return Verdict::Drop(DropReason::Ipv4Malformed),
        }
    } else {
        inner
    };
    let v = route_out(
        buf.data_mut(),
        &inner,
        Ingress::Tunnel,
        true,
        cx.gw,
        cx.neigh,
    );
    after_route_out(cx, v, buf, inner.src.into(), inner.total_len, spi)
}

/// [`route_decapsulated`] for an inner IPv6 packet (next header 41),
/// through the IPv6 route-out step (in listener mode after the
/// translation, as for IPv4); hop limit and MTU errors go back through the
/// tunnel as ICMPv6.
fn route_decapsulated6<B: PacketBuf>(cx: &mut StageCtx<'_>, buf: &mut B, spi: u32) -> Verdict {
    let inner = match ipv6::parse(&buf.data()[ETH_HLEN..]) {
        Ok(ip) => ip,
        Err(_) => return Verdict::Drop(DropReason::Ipv6Malformed),
    };
    if inner.src.is_multicast() || inner.dst.is_multicast() {
        return Verdict::Drop(DropReason::Ipv6Malformed);
    }
    let tables = cx.tables;
    let inner = if tables.has_listeners() {
        let lan_mtu = cx.gw.port(PortId::Lan).mtu;
        if let Some(v) = egress_check6(&inner, lan_mtu) {
            return tunnel_error(cx, v, buf.data(), inner.src.into(), inner.total_len, spi);
        }
        let dst = inner.dst.into();
        if let Err(e) = tables.nat_from_tunnel(&mut buf.data_mut()[ETH_HLEN..], dst) {
            return Verdict::Drop(e.into());
        }
        match ipv6::parse(&buf.data()[ETH_HLEN..]) {
            Ok(ip) => ip,
            Err(_) => return Verdict::Drop(DropReason::Ipv6Malformed),
        }
    } else {
        inner
    };
    let v = route_out6(
        buf.data_mut(),
        &inner,
        Ingress::Tunnel,
        true,
        cx.gw,
        cx.neigh,
    );
    after_route_out(cx, v, buf, inner.src.into(), inner.total_len, spi)
}

/// What follows the route-out step of a decapsulated packet (`src` its
/// sender, `total_len` its length): an ICMP error goes back through the
/// tunnel ([`tunnel_error`]); a forwarded TCP SYN has its MSS clamped.
fn after_route_out<B: PacketBuf>(
    cx: &mut StageCtx<'_>,
    v: Verdict,
    buf: &mut B,
    src: IpAddr,
    total_len: usize,
    spi: u32,
) -> Verdict {
    match v {
        Verdict::Slow(_) => tunnel_error(cx, v, buf.data(), src, total_len, spi),
        Verdict::Forward(port) => {
            if let Some(max) = cx.tables.tcp_mss {
                clamp_mss(cx.counts, &mut buf.data_mut()[ETH_HLEN..], max);
            }
            Verdict::Forward(port)
        }
        v => v,
    }
}

/// Decrements the TTL (IPv4, with its checksum) or the hop limit (IPv6)
/// of the inner packet at the start of `packet`, as a router does before
/// sending it on; the classifier checked that it does not run out.
#[inline]
fn decrement_hop(packet: &mut [u8]) {
    match packet.first() {
        Some(b) if b >> 4 == 6 => ipv6::decrement_hop_limit(packet),
        _ => ipv4::decrement_ttl(packet),
    }
}

/// Lowers the MSS of a TCP SYN or SYN-ACK in `packet` (an inner IPv4 or
/// IPv6 packet) to `max_v4` (IPv6: 20 less, for its longer header),
/// counting it: the peer of a connection through the tunnel then never
/// sends a segment the tunnel cannot carry.
#[inline]
fn clamp_mss(counts: &mut Counters, packet: &mut [u8], max_v4: u16) {
    let done = match packet.first() {
        Some(b) if b >> 4 == 6 => mss::clamp_ipv6(packet, max_v4.saturating_sub(mss::IPV6_EXTRA)),
        _ => mss::clamp_ipv4(packet, max_v4),
    };
    if let mss::Clamp::Lowered { .. } = done {
        counts.tunnel.mss_clamped += 1;
    }
}

/// Notes the ICMP error `v` (a [`Verdict::Slow`]; any other verdict is
/// returned as is) for the decapsulated packet `frame`, which came in
/// through inbound SA `spi`: the error goes back through the tunnel with
/// the outbound SA toward the sender ([`TunnelTables::reply_spi`]). Without
/// one, or with no room left this burst, the packet is dropped and counted.
fn tunnel_error(
    cx: &mut StageCtx<'_>,
    v: Verdict,
    frame: &[u8],
    src: IpAddr,
    total_len: usize,
    spi: u32,
) -> Verdict {
    let Verdict::Slow(reason) = v else {
        return v;
    };
    let dropped = match reason {
        SlowReason::FragNeeded(_) => DropReason::TooBig,
        _ => DropReason::TtlExceeded,
    };
    let Some(reply_spi) = cx.tables.reply_spi(spi, src) else {
        return Verdict::Drop(dropped);
    };
    if cx.errors.is_full() {
        return Verdict::Drop(dropped);
    }
    cx.errors.push(TunnelError {
        reason,
        frame: frame[..ETH_HLEN + total_len].to_vec(),
        reply_spi,
    });
    v
}

/// Counts a next hop found unresolved, once per burst.
fn note_unresolved(cx: &mut StageCtx<'_>, hop: IpAddr, port: PortId) {
    if !cx.unresolved.iter().any(|u| u.0 == hop) {
        let _ = cx.unresolved.try_push((hop, port));
    }
}

/// The MAC of the next hop toward `dst` on `port`, counting and noting a miss.
fn next_hop_mac(cx: &mut StageCtx<'_>, dst: IpAddr, port: PortId) -> Option<Mac> {
    let route = match dst {
        IpAddr::V4(v4) => cx.gw.routes.lookup(v4).map(|(p, hop)| (p, IpAddr::V4(hop))),
        IpAddr::V6(v6) => cx
            .gw
            .routes
            .lookup6(v6)
            .map(|(p, hop)| (p, IpAddr::V6(hop))),
    };
    let hop = match route {
        Some((p, hop)) if p == port => hop,
        _ => {
            cx.counts.drop(DropReason::NoRoute);
            return None;
        }
    };
    match cx.neigh.get(hop, port) {
        Some(n) => Some(n.mac),
        None => {
            cx.counts.drop(DropReason::NoNeighbor);
            note_unresolved(cx, hop, port);
            None
        }
    }
}

/// Prepends an Ethernet II header of `ethertype`.
fn push_ethernet<B: PacketBuf>(buf: &mut B, dst: Mac, src: Mac, ethertype: [u8; 2]) -> bool {
    if !buf.prepend(ETH_HLEN) {
        return false;
    }
    let d = buf.data_mut();
    d[0..6].copy_from_slice(&dst);
    d[6..12].copy_from_slice(&src);
    d[12..14].copy_from_slice(&ethertype);
    true
}
