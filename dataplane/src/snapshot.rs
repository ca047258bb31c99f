//! The stats snapshot file: `s2ds run` rewrites it atomically a few times a
//! second; `s2ds stats` reads it and shows per-second rates. JSON, so that
//! operators' tools can read it too. Its counters are rendered from the
//! stats segment (the one stats model, [`crate::stats`]); the rest is what
//! only the running process knows: devices, neighbours, burst latency,
//! table changes.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::neigh::NeighborTable;
use crate::port::PortId;
use crate::stage_clock::{Stage, StageCounts};
use crate::stats::{ControlCounts, Counters, DropReason, PortCounts, TunnelCounts};
use crate::wire::mac_to_string;

/// Format version of the snapshot file.
pub const SNAPSHOT_VERSION: u32 = 1;

/// One port in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortSnapshot {
    /// "lan" or "wan".
    pub id: PortId,
    /// Device or interface name.
    pub device: String,
    /// Backend driver.
    pub driver: String,
    /// The gateway's MAC on the port.
    pub mac: String,
    /// The gateway's address, CIDR.
    pub address: String,
    /// Counters.
    pub counts: PortCounts,
    /// What the host lost below the gateway on this port (AF_XDP socket,
    /// NIC), by [`HostDrop`](crate::host_drops::HostDrop) name, every
    /// reason present (zeros for what the backend does not report).
    #[serde(default)]
    pub host_drops: BTreeMap<String, u64>,
}

/// One SA's counters in a snapshot, summed over the stats segment's blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaSnapshot {
    /// The SPI, `0x`-prefixed hexadecimal.
    pub spi: String,
    /// "in" or "out".
    pub direction: String,
    /// Packets sealed (out) or opened (in).
    pub packets: u64,
    /// Inner bytes sealed or opened.
    pub bytes: u64,
    /// In: ICV failures.
    pub auth_failed: u64,
    /// In: replay-window refusals.
    pub replayed: u64,
    /// Out: dropped over the SA's rate.
    pub rate_limited: u64,
}

/// One worker's own counters in a snapshot: its block of the stats segment
/// (the totals above are the sum of these and the slow path's block).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSnapshot {
    /// The core the worker is pinned to.
    pub core: usize,
    /// Frames received, LAN then WAN.
    pub rx_packets: [u64; 2],
    /// Frames transmitted, LAN then WAN.
    pub tx_packets: [u64; 2],
    /// Packets sealed.
    pub encap_packets: u64,
    /// Packets opened.
    pub decap_packets: u64,
    /// Nanoseconds spent processing bursts.
    pub busy_ns: u64,
    /// Idle sleeps.
    pub sleeps: u64,
    /// Packets dropped, every reason.
    pub drops: u64,
}

/// One neighbour in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeighborSnapshot {
    /// IPv4 address.
    pub ip: String,
    /// MAC address.
    pub mac: String,
    /// Port.
    pub port: PortId,
    /// "static" or "dynamic".
    pub kind: String,
    /// Seconds since last confirmed.
    pub age_s: u64,
}

/// Everything `s2ds stats` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// Gateway name.
    pub gateway: String,
    /// Process id of `s2ds run`.
    pub pid: u32,
    /// Wall-clock time of the snapshot, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// Seconds since start.
    pub uptime_s: f64,
    /// Number of workers.
    pub workers: usize,
    /// Both ports.
    pub ports: Vec<PortSnapshot>,
    /// Drops by reason name (every reason present, zeros included).
    pub drops: BTreeMap<String, u64>,
    /// Slow-path work.
    pub control: ControlCounts,
    /// Tunnel work.
    #[serde(default)]
    pub tunnel: TunnelCounts,
    /// The workers' bursts, busy time and idle sleeps, summed.
    #[serde(default)]
    pub work: crate::stats::WorkCounts,
    /// Connections the listener-mode NAT is tracking.
    #[serde(default)]
    pub nat_active: u64,
    /// Keying "control": table changes from the control process.
    #[serde(default)]
    pub tables: Option<crate::tunnel::ChangeSnapshot>,
    /// SAs in use (outbound, inbound), listeners in use (outbound, inbound).
    #[serde(default)]
    pub sas: [u64; 4],
    /// Per-burst processing time over the last second, all workers.
    #[serde(default)]
    pub latency: Option<crate::latency::LatencySummary>,
    /// The neighbour table.
    pub neighbors: Vec<NeighborSnapshot>,
    /// The stats segment the counters come from (per-SA counters are read
    /// there).
    #[serde(default)]
    pub stats_segment: Option<String>,
    /// Every SA the stats segment counts.
    #[serde(default)]
    pub sa_counters: Vec<SaSnapshot>,
    /// Clock cycles per second of the workers' stage clock (0 when
    /// `[workers] stage_cycles` is off).
    #[serde(default)]
    pub cycles_per_second: u64,
    /// Each worker's own counters, in worker order.
    #[serde(default)]
    pub per_worker: Vec<WorkerSnapshot>,
}

impl Snapshot {
    /// Fills the counter parts of a snapshot from `sum`.
    pub fn set_counts(&mut self, sum: &Counters) {
        for p in &mut self.ports {
            p.counts = sum.ports[p.id.index()];
            p.host_drops = crate::host_drops::HostDrop::ALL
                .iter()
                .map(|r| (r.name().to_string(), sum.host[p.id.index()][*r as usize]))
                .collect();
        }
        self.drops = DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), sum.dropped(*r)))
            .collect();
        self.control = sum.control;
        self.tunnel = sum.tunnel;
        self.work = sum.work;
    }

    /// Fills the per-worker counters from the workers' blocks, in worker
    /// order (one entry per worker, whose `core` is kept).
    pub fn set_worker_counts(&mut self, blocks: &[Counters]) {
        for (w, c) in self.per_worker.iter_mut().zip(blocks) {
            w.rx_packets = [c.ports[0].rx_packets, c.ports[1].rx_packets];
            w.tx_packets = [c.ports[0].tx_packets, c.ports[1].tx_packets];
            w.encap_packets = c.tunnel.encap_packets;
            w.decap_packets = c.tunnel.decap_packets;
            w.busy_ns = c.work.busy_ns;
            w.sleeps = c.work.sleeps;
            w.drops = c.total_drops();
        }
    }

    /// Fills the per-SA counters from the stats segment's `totals`.
    pub fn set_sa_counters(&mut self, totals: &[scistream_region::SaTotals]) {
        let mut v: Vec<SaSnapshot> = totals
            .iter()
            .map(|t| SaSnapshot {
                spi: format!("{:#010x}", t.spi),
                direction: match t.direction {
                    Some(scistream_region::Direction::In) => "in",
                    Some(scistream_region::Direction::Out) => "out",
                    None => "?",
                }
                .to_string(),
                packets: t.packets,
                bytes: t.bytes,
                auth_failed: t.auth_failed,
                replayed: t.replayed,
                rate_limited: t.rate_limited,
            })
            .collect();
        v.sort_by(|a, b| (&a.direction, &a.spi).cmp(&(&b.direction, &b.spi)));
        self.sa_counters = v;
    }

    /// Fills the neighbour list from `table`.
    pub fn set_neighbors(&mut self, table: &NeighborTable, now: std::time::Instant) {
        let mut v: Vec<NeighborSnapshot> = table
            .iter()
            .map(|(ip, n)| NeighborSnapshot {
                ip: ip.to_string(),
                mac: mac_to_string(&n.mac),
                port: n.port,
                kind: format!("{:?}", n.kind).to_lowercase(),
                age_s: now.saturating_duration_since(n.updated).as_secs(),
            })
            .collect();
        v.sort_by(|a, b| (a.port, &a.ip).cmp(&(b.port, &b.ip)));
        self.neighbors = v;
    }

    /// Writes the snapshot to `path` atomically (a temporary file, then rename).
    pub fn write_atomic(&self, path: &Path) -> io::Result<()> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let body = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, path)
    }

    /// Reads a snapshot file.
    pub fn read(path: &Path) -> Result<Snapshot, SnapshotError> {
        let body =
            std::fs::read(path).map_err(|e| SnapshotError::Read(path.display().to_string(), e))?;
        let s: Snapshot = serde_json::from_slice(&body)
            .map_err(|e| SnapshotError::Parse(path.display().to_string(), e))?;
        if s.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version(
                path.display().to_string(),
                s.version,
            ));
        }
        Ok(s)
    }
}

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file could not be read (is `s2ds run` running with this config?).
    #[error("{0}: cannot read stats snapshot: {1} (is `s2ds run` running?)")]
    Read(String, #[source] io::Error),
    /// The file is not a snapshot.
    #[error("{0}: not a stats snapshot: {1}")]
    Parse(String, #[source] serde_json::Error),
    /// Written by another version of s2ds.
    #[error("{0}: snapshot version {1}, this s2ds reads version {SNAPSHOT_VERSION}")]
    Version(String, u32),
}

/// Renders the per-second view from two snapshots taken `prev` → `cur`.
pub fn render(prev: &Snapshot, cur: &Snapshot) -> String {
    use std::fmt::Write;
    let secs = ((cur.unix_ms.saturating_sub(prev.unix_ms)) as f64 / 1000.0).max(1e-3);
    let rate = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / secs;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gateway {}  pid {}  uptime {}  workers {}",
        cur.gateway,
        cur.pid,
        hms(cur.uptime_s),
        cur.workers
    );
    let _ = writeln!(
        out,
        "{:<4} {:<18} {:<14} {:>11} {:>9} {:>11} {:>9} {:>14} {:>14}",
        "port",
        "device",
        "driver",
        "rx pps",
        "rx Gb/s",
        "tx pps",
        "tx Gb/s",
        "rx packets",
        "tx packets"
    );
    for (p, q) in prev.ports.iter().zip(&cur.ports) {
        let (a, b) = (&p.counts, &q.counts);
        let _ = writeln!(
            out,
            "{:<4} {:<18} {:<14} {:>11.0} {:>9.3} {:>11.0} {:>9.3} {:>14} {:>14}",
            q.id.name(),
            truncate(&q.device, 18),
            truncate(&q.driver, 14),
            rate(a.rx_packets, b.rx_packets),
            rate(a.rx_bytes, b.rx_bytes) * 8.0 / 1e9,
            rate(a.tx_packets, b.tx_packets),
            rate(a.tx_bytes, b.tx_bytes) * 8.0 / 1e9,
            b.rx_packets,
            b.tx_packets,
        );
    }
    let mut drops: Vec<String> = cur
        .drops
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| {
            format!(
                "{k} {:.0}/s ({v})",
                rate(prev.drops.get(k).copied().unwrap_or(0), *v)
            )
        })
        .collect();
    for (p, q) in prev.ports.iter().zip(&cur.ports) {
        // `*_ring_empty` are events (the kernel found a ring empty), not
        // lost frames: shown on their own line below.
        let lost = |name: &str| !name.ends_with("_ring_empty");
        for (name, &y) in q.host_drops.iter().filter(|(k, v)| **v > 0 && lost(k)) {
            let x = p.host_drops.get(name).copied().unwrap_or(0);
            drops.push(format!(
                "{} host {name} {:.0}/s ({y})",
                q.id.name(),
                rate(x, y)
            ));
        }
    }
    let _ = writeln!(
        out,
        "drops: {}",
        if drops.is_empty() {
            "none".to_string()
        } else {
            drops.join(", ")
        }
    );
    let events: Vec<String> = cur
        .ports
        .iter()
        .flat_map(|q| {
            q.host_drops
                .iter()
                .filter(|(k, v)| **v > 0 && k.ends_with("_ring_empty"))
                .map(move |(k, v)| format!("{} {k} {v}", q.id.name()))
        })
        .collect();
    if !events.is_empty() {
        let _ = writeln!(out, "host ring events: {}", events.join(", "));
    }
    let c = &cur.control;
    let _ = writeln!(
        out,
        "slow path: arp replies {}, arp requests {}, nd adverts {}, nd solicits {}, echo replies {}, icmp errors {}",
        c.arp_replies, c.arp_requests, c.nd_adverts, c.nd_solicits, c.echo_replies, c.icmp_errors
    );
    let (a, b) = (&prev.tunnel, &cur.tunnel);
    if b.encap_packets + b.decap_packets > 0 {
        let _ = writeln!(
            out,
            "tunnel: encap {:.0} pps {:.3} Gb/s ({} packets), decap {:.0} pps {:.3} Gb/s ({} packets)",
            rate(a.encap_packets, b.encap_packets),
            rate(a.encap_bytes, b.encap_bytes) * 8.0 / 1e9,
            b.encap_packets,
            rate(a.decap_packets, b.decap_packets),
            rate(a.decap_bytes, b.decap_bytes) * 8.0 / 1e9,
            b.decap_packets
        );
    }
    if b.mss_clamped > 0 {
        let _ = writeln!(out, "tcp mss clamped: {} syns", b.mss_clamped);
    }
    if let Some(l) = &cur.latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        let _ = writeln!(
            out,
            "burst latency (last second, {} bursts): p50 {:.1} us, p99 {:.1} us, p999 {:.1} us, max {:.1} us",
            l.bursts,
            us(l.p50_ns),
            us(l.p99_ns),
            us(l.p999_ns),
            us(l.max_ns)
        );
    }
    for (i, w) in cur.per_worker.iter().enumerate() {
        let p = prev.per_worker.get(i).copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "worker {i} core {}: rx lan {:.0} pps, wan {:.0} pps; sealed {:.0} pps, opened {:.0} pps; busy {:.1} %; drops {}",
            w.core,
            rate(p.rx_packets[0], w.rx_packets[0]),
            rate(p.rx_packets[1], w.rx_packets[1]),
            rate(p.encap_packets, w.encap_packets),
            rate(p.decap_packets, w.decap_packets),
            rate(p.busy_ns, w.busy_ns) / 1e7,
            w.drops
        );
    }
    if let Some(line) = stage_line(&prev.work.stages, &cur.work.stages, cur.cycles_per_second) {
        let _ = writeln!(out, "{line}");
    }
    if let Some(t) = &cur.tables {
        let _ = writeln!(
            out,
            "keys from s2cs: {}, generation {}, SAs out/in {}/{}, listeners out/in {}/{}; SAs installed {}, removed {}, invalid entries {}",
            if t.attached { "attached" } else { "waiting for the region" },
            t.generation,
            cur.sas[0],
            cur.sas[1],
            cur.sas[2],
            cur.sas[3],
            t.installed,
            t.removed,
            t.invalid
        );
    }
    for sa in &cur.sa_counters {
        let before = prev
            .sa_counters
            .iter()
            .find(|p| p.spi == sa.spi && p.direction == sa.direction);
        let (p0, b0) = before.map_or((0, 0), |p| (p.packets, p.bytes));
        let mut errors = Vec::new();
        for (name, v) in [
            ("auth failed", sa.auth_failed),
            ("replayed", sa.replayed),
            ("rate limited", sa.rate_limited),
        ] {
            if v > 0 {
                errors.push(format!("{name} {v}"));
            }
        }
        let _ = writeln!(
            out,
            "sa {} {:<3} {:.0} pps {:.3} Gb/s ({} packets, {} bytes){}",
            sa.spi,
            sa.direction,
            rate(p0, sa.packets),
            rate(b0, sa.bytes) * 8.0 / 1e9,
            sa.packets,
            sa.bytes,
            if errors.is_empty() {
                String::new()
            } else {
                format!("; {}", errors.join(", "))
            }
        );
    }
    if cur.nat_active > 0 {
        let _ = writeln!(out, "listener NAT: {} active connections", cur.nat_active);
    }
    for n in &cur.neighbors {
        let _ = writeln!(
            out,
            "neighbor {:<15} {} on {} ({}, {} s)",
            n.ip,
            n.mac,
            n.port.name(),
            n.kind,
            n.age_s
        );
    }
    out
}

/// "stage cycles/packet: rx 41 (12.3 ns), classify ..." over the interval,
/// for the stages that handled frames in it; `None` if none did (stage
/// counting off, or no traffic).
fn stage_line(prev: &StageCounts, cur: &StageCounts, hz: u64) -> Option<String> {
    let parts: Vec<String> = Stage::ALL
        .iter()
        .filter_map(|&st| {
            let c = cur.cycles_per_packet_since(prev, st)?;
            Some(if hz > 0 {
                format!("{} {:.0} ({:.1} ns)", st.name(), c, c * 1e9 / hz as f64)
            } else {
                format!("{} {:.0}", st.name(), c)
            })
        })
        .collect();
    (!parts.is_empty()).then(|| format!("stage cycles/packet: {}", parts.join(", ")))
}

fn hms(s: f64) -> String {
    let s = s as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(unix_ms: u64, rx: u64, drops: u64) -> Snapshot {
        let mut s = Snapshot {
            version: SNAPSHOT_VERSION,
            gateway: "gwA".into(),
            pid: 42,
            unix_ms,
            uptime_s: 61.0,
            workers: 1,
            ports: PortId::ALL
                .iter()
                .map(|id| PortSnapshot {
                    id: *id,
                    device: format!("{id}0"),
                    driver: "tap".into(),
                    mac: "02:00:00:00:00:01".into(),
                    address: "10.10.1.1/24".into(),
                    counts: PortCounts::default(),
                    host_drops: BTreeMap::new(),
                })
                .collect(),
            drops: BTreeMap::new(),
            control: ControlCounts::default(),
            tunnel: TunnelCounts::default(),
            work: Default::default(),
            tables: None,
            sas: [0; 4],
            nat_active: 0,
            latency: None,
            neighbors: vec![],
            stats_segment: None,
            sa_counters: vec![],
            cycles_per_second: 0,
            per_worker: vec![],
        };
        let mut c = Counters::default();
        c.ports[0].rx_packets = rx;
        c.ports[0].rx_bytes = rx * 1000;
        c.drops[DropReason::NoRoute as usize] = drops;
        s.set_counts(&c);
        s
    }

    #[test]
    fn each_worker_has_its_line_from_its_own_block() {
        let mut prev = snap(1_000, 0, 0);
        prev.per_worker = vec![
            WorkerSnapshot {
                core: 2,
                ..Default::default()
            },
            WorkerSnapshot {
                core: 3,
                ..Default::default()
            },
        ];
        let mut cur = prev.clone();
        cur.unix_ms = 3_000;
        let mut w0 = Counters::default();
        w0.ports[0].rx_packets = 2_000;
        w0.tunnel.encap_packets = 1_800;
        w0.work.busy_ns = 500_000_000;
        let mut w1 = Counters::default();
        w1.ports[1].rx_packets = 4_000;
        w1.tunnel.decap_packets = 3_000;
        w1.drops[DropReason::EspReplay as usize] = 7;
        cur.set_worker_counts(&[w0, w1]);
        assert_eq!(cur.per_worker[1].core, 3, "the core is kept");
        assert_eq!(cur.per_worker[1].decap_packets, 3_000);
        let text = render(&prev, &cur);
        assert!(
            text.contains(
                "worker 0 core 2: rx lan 1000 pps, wan 0 pps; sealed 900 pps, opened 0 pps; busy 25.0 %; drops 0"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "worker 1 core 3: rx lan 0 pps, wan 2000 pps; sealed 0 pps, opened 1500 pps; busy 0.0 %; drops 7"
            ),
            "{text}"
        );
        let back: Snapshot = serde_json::from_slice(&serde_json::to_vec(&cur).unwrap()).unwrap();
        assert_eq!(back.per_worker, cur.per_worker);
    }

    #[test]
    fn host_drops_are_shown_per_port() {
        let prev = snap(1_000, 0, 0);
        let mut cur = snap(2_000, 0, 0);
        let mut c = Counters::default();
        c.host[1][crate::host_drops::HostDrop::XskRxRingFull as usize] = 250;
        c.host[0][crate::host_drops::HostDrop::NicRxMissed as usize] = 3;
        cur.set_counts(&c);
        assert_eq!(cur.ports[1].host_drops["xsk_rx_ring_full"], 250);
        assert_eq!(cur.ports[0].host_drops["nic_rx_errors"], 0);
        let text = render(&prev, &cur);
        assert!(
            text.contains("wan host xsk_rx_ring_full 250/s (250)"),
            "{text}"
        );
        assert!(text.contains("lan host nic_rx_missed 3/s (3)"), "{text}");
        let mut later = cur.clone();
        let mut c2 = c;
        c2.host[0][crate::host_drops::HostDrop::XskTxRingEmpty as usize] = 9;
        later.set_counts(&c2);
        let text = render(&cur, &later);
        assert!(
            !text.contains("host xsk_tx_ring_empty"),
            "an event, not a drop: {text}"
        );
        assert!(
            text.contains("host ring events: lan xsk_tx_ring_empty 9"),
            "{text}"
        );
    }

    #[test]
    fn each_sa_gets_a_line_with_its_rate_and_errors() {
        let t = |packets, auth| scistream_region::SaTotals {
            direction: Some(scistream_region::Direction::In),
            spi: 0x1001,
            packets,
            bytes: packets * 1000,
            auth_failed: auth,
            ..Default::default()
        };
        let mut prev = snap(1_000, 0, 0);
        prev.set_sa_counters(&[t(100, 0)]);
        let mut cur = snap(2_000, 0, 0);
        cur.set_sa_counters(&[t(1100, 2)]);
        let text = render(&prev, &cur);
        assert!(
            text.contains("sa 0x00001001 in  1000 pps 0.008 Gb/s (1100 packets, 1100000 bytes); auth failed 2"),
            "{text}"
        );
    }

    #[test]
    fn stage_cycles_are_shown_per_packet_over_the_interval() {
        let mut prev = snap(1_000, 0, 0);
        prev.work.stages.packets = [100, 100, 100, 0, 100];
        prev.work.stages.cycles = [5_000, 3_000, 40_000, 0, 6_000];
        let mut cur = snap(2_000, 0, 0);
        cur.cycles_per_second = 2_000_000_000;
        cur.work.stages.packets = [300, 300, 200, 0, 300];
        cur.work.stages.cycles = [13_000, 9_000, 80_000, 0, 14_000];
        let text = render(&prev, &cur);
        assert!(
            text.contains(
                "stage cycles/packet: rx 40 (20.0 ns), classify 30 (15.0 ns), seal 400 (200.0 ns), tx 40 (20.0 ns)"
            ),
            "{text}"
        );
        assert!(
            !render(&prev, &prev).contains("stage cycles"),
            "no line without frames in the interval"
        );
    }

    #[test]
    fn rates_are_deltas_over_elapsed_time() {
        let text = render(&snap(1_000, 0, 0), &snap(3_000, 2_000_000, 10));
        let lan = text.lines().find(|l| l.starts_with("lan")).unwrap();
        let cols: Vec<&str> = lan.split_whitespace().collect();
        assert!(cols.contains(&"1000000"), "{lan}"); // 2e6 packets over 2 s
        assert!(cols.contains(&"8.000"), "{lan}"); // 1e9 B/s = 8 Gb/s
        assert!(text.contains("no_route 5/s (10)"), "{text}");
        assert!(text.contains("uptime 00:01:01"));
    }

    #[test]
    fn round_trips_through_a_file_and_rejects_other_versions() {
        let dir = std::env::temp_dir().join(format!("s2ds-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s.json");
        let s = snap(5, 7, 1);
        s.write_atomic(&p).unwrap();
        assert_eq!(Snapshot::read(&p).unwrap(), s);
        let mut old = s.clone();
        old.version = 99;
        old.write_atomic(&p).unwrap();
        assert!(matches!(
            Snapshot::read(&p),
            Err(SnapshotError::Version(_, 99))
        ));
        std::fs::write(&p, b"nonsense").unwrap();
        assert!(matches!(Snapshot::read(&p), Err(SnapshotError::Parse(..))));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(Snapshot::read(&p), Err(SnapshotError::Read(..))));
    }
}
