//! Counters, the one stats model: per-writer blocks in the stats segment
//! ([`scistream_region::stats`]), written by one thread each and summed by
//! readers that never block a writer, as in VPP's stats segment.
//!
//! Each worker counts into plain local integers ([`Counters`]) and folds
//! them once per burst into its own cache-line-aligned block with Relaxed
//! load+store (single writer: no locked instruction, no shared cache line
//! on the fast path). The slow path has a block of its own. Per-SA counts
//! go to the same blocks' SA slots. `s2ds stats`, the JSON snapshot and
//! `s2cs` all read the segment.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use scistream_region::stats::{add, SaCounters};
use scistream_region::{ShmError, StatsSegment, StatsShape};

use crate::host_drops::{HostDrop, HostDropCounts};
use crate::port::PortId;
use crate::stage_clock::{Stage, StageCounts};

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt,
    /// Unicast to a MAC that is not ours, or multicast/broadcast IP.
    NotForUs,
    /// An EtherType we do not handle (VLAN, ...).
    UnsupportedEthertype,
    /// Bad IPv4 version, header length or total length, or truncated.
    Ipv4Malformed,
    /// IPv4 header checksum does not verify.
    Ipv4BadChecksum,
    /// Bad IPv6 version or payload length, a truncated or malformed
    /// extension-header chain, or a multicast source.
    Ipv6Malformed,
    /// No route to the destination.
    NoRoute,
    /// The next hop's MAC is not resolved yet (resolution was requested).
    NoNeighbor,
    /// TTL ran out (an ICMP time exceeded is sent).
    TtlExceeded,
    /// Larger than the egress MTU (or the tunnel's inner MTU) with DF clear.
    /// With DF set the packet goes to the slow path instead, which answers
    /// with ICMP frag-needed (counted in `icmp_errors`).
    TooBig,
    /// Addressed to the gateway but not ICMP echo or ARP.
    LocalUnsupported,
    /// A malformed ARP or ICMP message to the gateway.
    BadControl,
    /// The slow-path queue was full.
    SlowPathBusy,
    /// The egress queue did not accept the frame.
    TxFull,
    /// No buffer, or no head/tail room, to build a frame in.
    NoBuffer,
    /// ESP-in-UDP that does not parse (truncated, bad lengths, not ESP).
    EspMalformed,
    /// The ICV did not verify: tampered, or the wrong key.
    EspAuthFailed,
    /// A sequence number seen before, or left of the replay window.
    EspReplay,
    /// No inbound SA has the SPI.
    EspUnknownSpi,
    /// Authentic, but the padding, pad length or next header is wrong.
    EspBadTrailer,
    /// The outbound SA ran out of sequence numbers (it must be rekeyed).
    EspSeqExhausted,
    /// The engine could not seal (a buffer too short for its layout).
    EspSealFailed,
    /// Listener mode: no listener or no tracked connection matches.
    NatNoMapping,
    /// Listener mode: the NAT port pool has no free slot for a new connection.
    NatPoolExhausted,
    /// Listener mode: a later fragment, a protocol other than TCP/UDP/ICMP
    /// errors, or a truncated transport header.
    NatUnsupported,
    /// Blocked by tunnel policy: cleartext between LAN and WAN, or a
    /// decapsulated packet not bound for the LAN.
    Policy,
    /// Over the session's rate: the outbound SA's policer refused it.
    RateLimited,
    /// The SA outlived its hard lifetime in seconds without a rekey (the
    /// control process is gone or late): it seals and opens no more.
    EspSaExpired,
    /// ESP-in-UDP over IPv6 whose UDP checksum is zero or wrong (RFC 8200 §8.1).
    EspUdpChecksum,
}

impl From<crate::nat::NatError> for DropReason {
    fn from(e: crate::nat::NatError) -> Self {
        use crate::nat::NatError;
        match e {
            NatError::NoListener | NatError::NoMapping => DropReason::NatNoMapping,
            NatError::PoolExhausted => DropReason::NatPoolExhausted,
            NatError::Malformed | NatError::Fragment | NatError::UnsupportedProtocol => {
                DropReason::NatUnsupported
            }
        }
    }
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 29;
    /// Every reason, in index order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Runt,
        DropReason::NotForUs,
        DropReason::UnsupportedEthertype,
        DropReason::Ipv4Malformed,
        DropReason::Ipv4BadChecksum,
        DropReason::Ipv6Malformed,
        DropReason::NoRoute,
        DropReason::NoNeighbor,
        DropReason::TtlExceeded,
        DropReason::TooBig,
        DropReason::LocalUnsupported,
        DropReason::BadControl,
        DropReason::SlowPathBusy,
        DropReason::TxFull,
        DropReason::NoBuffer,
        DropReason::EspMalformed,
        DropReason::EspAuthFailed,
        DropReason::EspReplay,
        DropReason::EspUnknownSpi,
        DropReason::EspBadTrailer,
        DropReason::EspSeqExhausted,
        DropReason::EspSealFailed,
        DropReason::NatNoMapping,
        DropReason::NatPoolExhausted,
        DropReason::NatUnsupported,
        DropReason::Policy,
        DropReason::RateLimited,
        DropReason::EspSaExpired,
        DropReason::EspUdpChecksum,
    ];

    /// A stable snake_case name, used in stats output.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::NotForUs => "not_for_us",
            DropReason::UnsupportedEthertype => "unsupported_ethertype",
            DropReason::Ipv4Malformed => "ipv4_malformed",
            DropReason::Ipv4BadChecksum => "ipv4_bad_checksum",
            DropReason::Ipv6Malformed => "ipv6_malformed",
            DropReason::NoRoute => "no_route",
            DropReason::NoNeighbor => "no_neighbor",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::TooBig => "too_big",
            DropReason::LocalUnsupported => "local_unsupported",
            DropReason::BadControl => "bad_control",
            DropReason::SlowPathBusy => "slowpath_busy",
            DropReason::TxFull => "tx_full",
            DropReason::NoBuffer => "no_buffer",
            DropReason::EspMalformed => "esp_malformed",
            DropReason::EspAuthFailed => "esp_auth_failed",
            DropReason::EspReplay => "esp_replay",
            DropReason::EspUnknownSpi => "esp_unknown_spi",
            DropReason::EspBadTrailer => "esp_bad_trailer",
            DropReason::EspSeqExhausted => "esp_seq_exhausted",
            DropReason::EspSealFailed => "esp_seal_failed",
            DropReason::NatNoMapping => "nat_no_mapping",
            DropReason::NatPoolExhausted => "nat_pool_exhausted",
            DropReason::NatUnsupported => "nat_unsupported",
            DropReason::Policy => "policy",
            DropReason::RateLimited => "rate_limited",
            DropReason::EspSaExpired => "esp_sa_expired",
            DropReason::EspUdpChecksum => "esp_udp_checksum",
        }
    }
}

/// Packet and byte counts of one port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortCounts {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received (Ethernet frames, no FCS).
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
}

/// Counts of the slow path's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ControlCounts {
    /// ARP replies sent for our addresses.
    pub arp_replies: u64,
    /// ARP requests sent to resolve next hops.
    pub arp_requests: u64,
    /// ICMP echo replies sent.
    pub echo_replies: u64,
    /// ICMP errors sent (time exceeded, frag needed; ICMPv6 time exceeded, packet too big).
    pub icmp_errors: u64,
    /// IPv6 Neighbor Advertisements sent for our addresses.
    pub nd_adverts: u64,
    /// IPv6 Neighbor Solicitations sent to resolve next hops.
    pub nd_solicits: u64,
}

/// Counts of the tunnel's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TunnelCounts {
    /// Packets encapsulated and sealed.
    pub encap_packets: u64,
    /// Inner bytes encapsulated (IP packets, before ESP).
    pub encap_bytes: u64,
    /// Packets opened and decapsulated.
    pub decap_packets: u64,
    /// Inner bytes decapsulated (IP packets, after ESP).
    pub decap_bytes: u64,
    /// TCP SYNs and SYN-ACKs whose MSS option was lowered to fit the
    /// tunnel (either direction).
    pub mss_clamped: u64,
}

/// Upper bounds, in nanoseconds, of the burst-time buckets; one more
/// bucket holds the bursts slower than the last bound. Readers (the
/// metrics exporter) turn them into a Prometheus histogram.
pub const BURST_BUCKETS_NS: [u64; 11] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 10_000_000,
];
/// Number of burst-time buckets ([`BURST_BUCKETS_NS`] and the overflow).
pub const BURST_BUCKETS: usize = BURST_BUCKETS_NS.len() + 1;

/// A worker's own work: how many polls found frames and how long their
/// processing took (from the first non-empty receive to the end of the
/// transmits), as a total and in buckets. The busy ratio is the rate of
/// `busy_ns` over wall time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkCounts {
    /// Polls that received at least one frame.
    pub bursts: u64,
    /// Nanoseconds spent processing them.
    pub busy_ns: u64,
    /// Bursts per time bucket ([`BURST_BUCKETS_NS`], then the overflow).
    pub burst_buckets: [u64; BURST_BUCKETS],
    /// Times an idle worker slept (`poll_mode = "adaptive"`, or
    /// `idle_sleep_us`).
    pub sleeps: u64,
    /// Frames and clock cycles per stage of the poll loop (all zero unless
    /// `[workers] stage_cycles = true`).
    #[serde(default)]
    pub stages: StageCounts,
}

impl WorkCounts {
    /// Counts one burst that took `ns` nanoseconds.
    #[inline]
    pub fn burst(&mut self, ns: u64) {
        self.bursts += 1;
        self.busy_ns += ns;
        let b = BURST_BUCKETS_NS
            .iter()
            .position(|&le| ns <= le)
            .unwrap_or(BURST_BUCKETS_NS.len());
        self.burst_buckets[b] += 1;
    }
}

/// A plain (non-atomic) set of counters: a worker's per-burst accumulator,
/// and the sum that readers compute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Per port, indexed by [`PortId::index`].
    pub ports: [PortCounts; 2],
    /// Per drop reason, indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
    /// Slow-path work.
    pub control: ControlCounts,
    /// Tunnel work.
    pub tunnel: TunnelCounts,
    /// The worker's bursts and busy time (zero in the slow path's block).
    pub work: WorkCounts,
    /// Per port: what the host lost below the gateway, as the kernel or
    /// the NIC counts it (cumulative; stored by [`CounterBlock::set_host`],
    /// never folded).
    pub host: [HostDropCounts; 2],
}

impl Counters {
    /// Counts one dropped frame.
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    /// Counts a received frame.
    #[inline]
    pub fn rx(&mut self, port: PortId, bytes: usize) {
        let p = &mut self.ports[port.index()];
        p.rx_packets += 1;
        p.rx_bytes += bytes as u64;
    }

    /// Counts `packets` transmitted frames totalling `bytes`.
    #[inline]
    pub fn tx(&mut self, port: PortId, packets: usize, bytes: usize) {
        let p = &mut self.ports[port.index()];
        p.tx_packets += packets as u64;
        p.tx_bytes += bytes as u64;
    }

    /// The count for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// Counters of [`ControlCounts`] and [`TunnelCounts`], in block order.
const CONTROL_SLOTS: usize = 6;
const TUNNEL_SLOTS: usize = 5;
const SLOTS: usize = 2 * 4
    + DropReason::COUNT
    + CONTROL_SLOTS
    + TUNNEL_SLOTS
    + 3
    + BURST_BUCKETS
    + 2 * Stage::COUNT
    + 2 * HostDrop::COUNT;
/// Where the host drop counters start in a block.
const HOST_BASE: usize = SLOTS - 2 * HostDrop::COUNT;

/// The names of the counters of one block, in the segment's directory
/// order: `lan.rx_packets` ... `wan.tx_bytes`, `drop.<reason>`,
/// `slowpath.<count>`, `tunnel.<count>`, `worker.bursts`, `worker.busy_ns`,
/// `latency.burst_le_<ns>` per bucket bound and `latency.burst_le_inf`
/// (bucket counts, not cumulative), `stage.<stage>_packets` and
/// `stage.<stage>_cycles` per [`Stage`], then the host drops per port.
pub fn counter_names() -> Vec<String> {
    let mut names = Vec::with_capacity(SLOTS);
    for port in PortId::ALL {
        for c in ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"] {
            names.push(format!("{}.{c}", port.name()));
        }
    }
    names.extend(DropReason::ALL.iter().map(|r| format!("drop.{}", r.name())));
    for c in [
        "arp_replies",
        "arp_requests",
        "echo_replies",
        "icmp_errors",
        "nd_adverts",
        "nd_solicits",
    ] {
        names.push(format!("slowpath.{c}"));
    }
    for c in [
        "encap_packets",
        "encap_bytes",
        "decap_packets",
        "decap_bytes",
        "mss_clamped",
    ] {
        names.push(format!("tunnel.{c}"));
    }
    names.push("worker.bursts".into());
    names.push("worker.busy_ns".into());
    names.push("worker.sleeps".into());
    names.extend(
        BURST_BUCKETS_NS
            .iter()
            .map(|le| format!("latency.burst_le_{le}")),
    );
    names.push("latency.burst_le_inf".into());
    for kind in ["packets", "cycles"] {
        names.extend(
            Stage::ALL
                .iter()
                .map(|st| format!("stage.{}_{kind}", st.name())),
        );
    }
    for port in PortId::ALL {
        names.extend(
            HostDrop::ALL
                .iter()
                .map(|r| format!("{}.host_{}", port.name(), r.name())),
        );
    }
    names
}

/// Counters as they lie in a block, from a reader's totals (in
/// [`counter_names`] order); `None` if the segment has another set of
/// counters (another build of s2ds).
pub fn counters_from(values: &[u64]) -> Option<Counters> {
    let v: &[u64; SLOTS] = values.try_into().ok()?;
    Some(unflatten(v))
}

/// One writer's block in the stats segment.
#[derive(Debug, Clone, Copy)]
pub struct CounterBlock<'a> {
    slots: &'a [AtomicU64],
}

impl CounterBlock<'_> {
    /// Adds `local` into the block and zeroes it. Only the block's one
    /// writer may call this (a Relaxed load+store, not an atomic add).
    #[inline]
    pub fn fold(&self, local: &mut Counters) {
        debug_assert_eq!(
            local.host,
            [[0; HostDrop::COUNT]; 2],
            "host drops are stored, not folded"
        );
        for (slot, v) in self.slots.iter().zip(flatten(local)) {
            if v != 0 {
                add(slot, v);
            }
        }
        *local = Counters::default();
    }

    /// Stores `port`'s host drop counts (cumulative values from the kernel
    /// or the NIC, summed over the caller's queues on that port). Only the
    /// block's writer may call this.
    pub fn set_host(&self, port: PortId, counts: &HostDropCounts) {
        let base = HOST_BASE + port.index() * HostDrop::COUNT;
        for (slot, v) in self.slots[base..base + HostDrop::COUNT].iter().zip(counts) {
            slot.store(*v, Relaxed);
        }
    }

    /// This block's counts.
    pub fn get(&self) -> Counters {
        let mut v = [0u64; SLOTS];
        for (d, s) in v.iter_mut().zip(self.slots) {
            *d = s.load(Relaxed);
        }
        unflatten(&v)
    }
}

fn flatten(c: &Counters) -> [u64; SLOTS] {
    let mut v = [0u64; SLOTS];
    for i in 0..2 {
        let p = &c.ports[i];
        v[i * 4..i * 4 + 4].copy_from_slice(&[p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes]);
    }
    v[8..8 + DropReason::COUNT].copy_from_slice(&c.drops);
    let k = &c.control;
    let base = 8 + DropReason::COUNT;
    v[base..base + CONTROL_SLOTS].copy_from_slice(&[
        k.arp_replies,
        k.arp_requests,
        k.echo_replies,
        k.icmp_errors,
        k.nd_adverts,
        k.nd_solicits,
    ]);
    let t = &c.tunnel;
    let base = base + CONTROL_SLOTS;
    v[base..base + TUNNEL_SLOTS].copy_from_slice(&[
        t.encap_packets,
        t.encap_bytes,
        t.decap_packets,
        t.decap_bytes,
        t.mss_clamped,
    ]);
    let base = base + TUNNEL_SLOTS;
    v[base] = c.work.bursts;
    v[base + 1] = c.work.busy_ns;
    v[base + 2] = c.work.sleeps;
    v[base + 3..base + 3 + BURST_BUCKETS].copy_from_slice(&c.work.burst_buckets);
    let base = base + 3 + BURST_BUCKETS;
    v[base..base + Stage::COUNT].copy_from_slice(&c.work.stages.packets);
    v[base + Stage::COUNT..base + 2 * Stage::COUNT].copy_from_slice(&c.work.stages.cycles);
    for (i, h) in c.host.iter().enumerate() {
        v[HOST_BASE + i * HostDrop::COUNT..HOST_BASE + (i + 1) * HostDrop::COUNT]
            .copy_from_slice(h);
    }
    v
}

fn unflatten(v: &[u64; SLOTS]) -> Counters {
    let mut c = Counters::default();
    for i in 0..2 {
        c.ports[i] = PortCounts {
            rx_packets: v[i * 4],
            rx_bytes: v[i * 4 + 1],
            tx_packets: v[i * 4 + 2],
            tx_bytes: v[i * 4 + 3],
        };
    }
    c.drops.copy_from_slice(&v[8..8 + DropReason::COUNT]);
    let k = &v[8 + DropReason::COUNT..];
    c.control = ControlCounts {
        arp_replies: k[0],
        arp_requests: k[1],
        echo_replies: k[2],
        icmp_errors: k[3],
        nd_adverts: k[4],
        nd_solicits: k[5],
    };
    let t = &k[CONTROL_SLOTS..];
    c.tunnel = TunnelCounts {
        encap_packets: t[0],
        encap_bytes: t[1],
        decap_packets: t[2],
        decap_bytes: t[3],
        mss_clamped: t[4],
    };
    let w = &t[TUNNEL_SLOTS..];
    c.work.bursts = w[0];
    c.work.busy_ns = w[1];
    c.work.sleeps = w[2];
    c.work
        .burst_buckets
        .copy_from_slice(&w[3..3 + BURST_BUCKETS]);
    let st = &w[3 + BURST_BUCKETS..];
    c.work.stages.packets.copy_from_slice(&st[..Stage::COUNT]);
    c.work
        .stages
        .cycles
        .copy_from_slice(&st[Stage::COUNT..2 * Stage::COUNT]);
    for (i, h) in c.host.iter_mut().enumerate() {
        h.copy_from_slice(
            &v[HOST_BASE + i * HostDrop::COUNT..HOST_BASE + (i + 1) * HostDrop::COUNT],
        );
    }
    c
}

/// SA slots per block of a registry made by [`StatsRegistry::new`].
pub const DEFAULT_SA_SLOTS: u32 = 64;

/// The stats segment of a running gateway: a block per worker plus one for
/// the slow path (the last), each with its SA slots.
#[derive(Debug)]
pub struct StatsRegistry {
    segment: StatsSegment,
    workers: usize,
}

impl StatsRegistry {
    /// Blocks for `workers` workers and one slow path, in anonymous memory
    /// (no other process reads them: tests and tools).
    pub fn new(workers: usize) -> Self {
        Self::create(None, workers, DEFAULT_SA_SLOTS).expect("anonymous stats segment")
    }

    /// The stats segment at `path` (`None`: anonymous) for `workers`
    /// workers and one slow path, with `sa_slots` SA slots per block.
    pub fn create(
        path: Option<&Path>,
        workers: usize,
        sa_slots: u32,
    ) -> Result<StatsRegistry, ShmError> {
        let shape = StatsShape {
            blocks: u32::try_from(workers + 1).unwrap_or(u32::MAX),
            names: counter_names(),
            sa_slots,
        };
        Ok(StatsRegistry {
            segment: StatsSegment::create(path, &shape)?,
            workers,
        })
    }

    /// Worker `i`'s block.
    pub fn worker(&self, i: usize) -> CounterBlock<'_> {
        assert!(i < self.workers, "worker {i} of {}", self.workers);
        CounterBlock {
            slots: self.segment.counters(i),
        }
    }

    /// The slow path's block.
    pub fn slowpath(&self) -> CounterBlock<'_> {
        CounterBlock {
            slots: self.segment.counters(self.workers),
        }
    }

    /// Worker `i`'s counters of SA slot `slot`.
    #[inline]
    pub fn sa(&self, i: usize, slot: usize) -> &SaCounters {
        self.segment.sa(i, slot)
    }

    /// The segment (its SA slot directory is the table builder's to set).
    pub fn segment(&self) -> &StatsSegment {
        &self.segment
    }

    /// The sum over all blocks.
    pub fn sum(&self) -> Counters {
        counters_from(&self.segment.totals()).expect("the segment has this build's counters")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_fold_and_sum() {
        let reg = StatsRegistry::new(2);
        let mut a = Counters::default();
        a.rx(PortId::Lan, 100);
        a.tx(PortId::Wan, 1, 100);
        a.drop(DropReason::NoRoute);
        reg.worker(0).fold(&mut a);
        assert_eq!(a, Counters::default(), "fold zeroes the local counters");
        let mut b = Counters::default();
        b.rx(PortId::Lan, 60);
        b.drop(DropReason::NoRoute);
        b.drop(DropReason::TxFull);
        reg.worker(1).fold(&mut b);
        let mut c = Counters::default();
        c.control.arp_replies = 3;
        reg.slowpath().fold(&mut c);
        let s = reg.sum();
        assert_eq!(s.ports[0].rx_packets, 2);
        assert_eq!(s.ports[0].rx_bytes, 160);
        assert_eq!(s.ports[1].tx_bytes, 100);
        assert_eq!(s.dropped(DropReason::NoRoute), 2);
        assert_eq!(s.dropped(DropReason::TxFull), 1);
        assert_eq!(s.total_drops(), 3);
        assert_eq!(s.control.arp_replies, 3);
    }

    #[test]
    fn another_process_reads_the_same_counters_by_name() {
        let path = std::env::temp_dir().join(format!("s2ds-stats-unit-{}", std::process::id()));
        let reg = StatsRegistry::create(Some(&path), 2, 8).unwrap();
        let mut a = Counters::default();
        a.rx(PortId::Wan, 1500);
        a.drop(DropReason::EspReplay);
        reg.worker(1).fold(&mut a);
        let r = scistream_region::StatsReader::open(&path).unwrap();
        let names = r.names();
        let totals = r.totals();
        let at = |n: &str| totals[names.iter().position(|x| x == n).unwrap()];
        assert_eq!(at("wan.rx_packets"), 1);
        assert_eq!(at("wan.rx_bytes"), 1500);
        assert_eq!(at("drop.esp_replay"), 1);
        assert_eq!(counters_from(&totals), Some(reg.sum()));
        assert_eq!(r.blocks(), 3, "two workers and the slow path");
        drop(reg);
        assert!(!path.exists());
    }

    #[test]
    fn a_burst_lands_in_the_first_bucket_whose_bound_holds_it() {
        let mut w = WorkCounts::default();
        for ns in [1, 1_000, 1_001, 10_000_000, 10_000_001, u64::MAX / 4] {
            w.burst(ns);
        }
        let mut want = [0u64; BURST_BUCKETS];
        want[0] = 2; // 1 and 1000 ns: le 1000
        want[1] = 1; // 1001 ns: le 2000
        want[BURST_BUCKETS - 2] = 1; // 10 ms exactly
        want[BURST_BUCKETS - 1] = 2; // slower: the overflow bucket
        assert_eq!(w.burst_buckets, want);
        assert_eq!(w.bursts, 6);
        let names = counter_names();
        assert!(names.contains(&"latency.burst_le_1000".to_string()));
        assert!(names.contains(&"latency.burst_le_inf".to_string()));
        assert!(names.contains(&"stage.seal_cycles".to_string()));
        assert!(names.contains(&"stage.rx_packets".to_string()));
        assert_eq!(names.len(), SLOTS);
    }

    #[test]
    fn every_counter_survives_a_fold() {
        let mut c = Counters::default();
        let mut n = 1;
        let mut next = || {
            n += 1;
            n
        };
        for p in &mut c.ports {
            *p = PortCounts {
                rx_packets: next(),
                rx_bytes: next(),
                tx_packets: next(),
                tx_bytes: next(),
            };
        }
        for d in &mut c.drops {
            *d = next();
        }
        c.control = ControlCounts {
            arp_replies: next(),
            arp_requests: next(),
            echo_replies: next(),
            icmp_errors: next(),
            nd_adverts: next(),
            nd_solicits: next(),
        };
        c.tunnel = TunnelCounts {
            encap_packets: next(),
            encap_bytes: next(),
            decap_packets: next(),
            decap_bytes: next(),
            mss_clamped: next(),
        };
        c.work.bursts = next();
        c.work.busy_ns = next();
        c.work.sleeps = next();
        for b in &mut c.work.burst_buckets {
            *b = next();
        }
        for v in c
            .work
            .stages
            .packets
            .iter_mut()
            .chain(&mut c.work.stages.cycles)
        {
            *v = next();
        }
        let mut want = c;
        let reg = StatsRegistry::new(1);
        reg.worker(0).fold(&mut c);
        for port in PortId::ALL {
            let mut h = [0u64; HostDrop::COUNT];
            for x in &mut h {
                *x = next();
            }
            reg.worker(0).set_host(port, &h);
            // Stored, not added: a second store of the same values holds.
            reg.worker(0).set_host(port, &h);
            want.host[port.index()] = h;
        }
        assert_eq!(reg.sum(), want);
        let names = counter_names();
        assert_eq!(names.last().unwrap(), "wan.host_packet_rx_dropped");
    }

    #[test]
    fn reason_table_is_consistent() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::COUNT);
        assert_eq!(counter_names().len(), SLOTS);
        let names: std::collections::HashSet<_> = counter_names().into_iter().collect();
        assert_eq!(names.len(), SLOTS, "counter names are distinct");
    }
}
