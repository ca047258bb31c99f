//! SA and tunnel-route tables: immutable snapshots published through an
//! `ArcSwap`, loaded once per burst by each worker.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;

use zeroize::Zeroizing;

use super::build::{ListenerSpec, Route6Spec, RouteSpec, SaSpec, TableContext, TableSpec};
use crate::config::tunnel::{Direction, ListenerRole, TunnelSection};
use crate::crypto::{Algorithm, CryptoError, EngineKind};
use crate::esp::{InboundSa, OutboundSa, Outer};
use crate::nat::{self, CoarseClock, ConnTable, Listeners, NatError};

/// When an SA must stop being used: its hard lifetime in seconds, counted
/// from when this data plane installed it (kept across rebuilds that keep
/// the SA). Checked by the housekeeping thread, which marks the SA expired.
#[derive(Debug)]
pub struct Lifetime {
    installed: std::time::Instant,
    hard: Option<std::time::Duration>,
    expired: std::sync::atomic::AtomicBool,
}

impl Lifetime {
    /// Installed now, expiring after `hard_seconds` (0: never).
    pub fn new(hard_seconds: u64) -> Self {
        Lifetime {
            installed: std::time::Instant::now(),
            hard: (hard_seconds > 0).then(|| std::time::Duration::from_secs(hard_seconds)),
            expired: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// True once the SA outlived its hard lifetime (a Relaxed load, for the
    /// packet path).
    #[inline]
    pub fn expired(&self) -> bool {
        self.expired.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Marks the SA expired if its lifetime ended by `now`; returns true if
    /// it expired just now.
    pub fn check(&self, now: std::time::Instant) -> bool {
        let due = self
            .hard
            .is_some_and(|h| now.saturating_duration_since(self.installed) >= h);
        due && !self
            .expired
            .swap(true, std::sync::atomic::Ordering::Relaxed)
    }
}

/// An outbound SA and where its packets go.
#[derive(Debug)]
pub struct OutboundEntry {
    /// The SA (key, SPI, sequence counter shared by all workers).
    pub sa: OutboundSa,
    /// Outer addresses and ports.
    pub outer: Outer,
    /// Identifies the key material (a digest, never the key): an SA rebuilt
    /// from the control process's tables is reused, sequence counter and
    /// all, only if its SPI and fingerprint are unchanged.
    pub fingerprint: KeyFingerprint,
    /// Its SA slot in the stats segment (`None`: not counted on its own).
    pub stats_slot: Option<usize>,
    /// Its hard lifetime.
    pub lifetime: Lifetime,
}

/// An inbound SA.
#[derive(Debug)]
pub struct InboundEntry {
    /// The SA.
    pub sa: InboundSa,
    /// The peer's WAN address (outer source we expect).
    pub peer: IpAddr,
    /// Identifies the key material (see [`OutboundEntry::fingerprint`]).
    pub fingerprint: KeyFingerprint,
    /// Its SA slot in the stats segment (`None`: not counted on its own).
    pub stats_slot: Option<usize>,
    /// Its hard lifetime.
    pub lifetime: Lifetime,
}

/// A truncated SHA-256 over an SA's algorithm, key and salt: tells whether
/// two SA entries carry the same key without keeping a second copy of it.
pub type KeyFingerprint = [u8; 16];

/// The fingerprint of `key` and `salt` for `algorithm`.
pub fn key_fingerprint(algorithm: Algorithm, key: &[u8], salt: [u8; 4]) -> KeyFingerprint {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"scistream-sa-fingerprint-v1");
    ctx.update(&[algorithm as u8]);
    ctx.update(key);
    ctx.update(&salt);
    let d = ctx.finish();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d.as_ref()[..16]);
    out
}

/// One snapshot of the tunnel tables.
#[derive(Debug)]
pub struct TunnelTables {
    /// Bumped on every rebuild; workers drop per-SA state of SAs that went.
    pub generation: u64,
    /// The shared-memory generation these tables were built from (0 for
    /// manual keying); workers report it for the writer's QSBR wait.
    pub shm_generation: u64,
    /// The AEAD engine.
    pub engine: EngineKind,
    /// Our ESP-in-UDP port.
    pub udp_port: u16,
    /// The MSS limit of TCP SYNs crossing the tunnel (`None`: no clamping).
    pub tcp_mss: Option<u16>,
    /// The largest inner packet every outbound SA carries within the WAN
    /// MTU (smaller with an IPv6 outer header).
    pub(super) inner_mtu: u16,
    pub(super) outbound: Vec<Arc<OutboundEntry>>,
    /// Per outbound SA (same index): the SAs its traffic is spread over by
    /// sending worker, itself first, then its lanes (see [`SaSpec::lane_of`]).
    pub(super) lanes: Vec<Box<[usize]>>,
    pub(super) inbound: FxHashMap<u32, Arc<InboundEntry>>,
    /// (network, mask, prefix length, index into `outbound`), longest first.
    pub(super) routes: Vec<(u32, u32, u8, usize)>,
    /// IPv6: (network, mask, prefix length, index into `outbound`), longest first.
    pub(super) routes6: Vec<(u128, u128, u8, usize)>,
    /// Listener mode: the listeners (their `sa` is an index into `outbound`).
    pub(super) listeners: Option<Listeners>,
    /// Listener mode, producer side: the connection-tracking NAT.
    pub(super) conntrack: Option<Arc<ConnTable>>,
    /// Coarse seconds for connection tracking, ticked by [`TunnelTables::housekeeping`].
    pub(super) clock: Arc<CoarseClock>,
    pub(super) wan_ip: Option<Ipv4Addr>,
    /// Our global IPv6 WAN address (IPv6 inbound listeners listen on it).
    pub(super) wan_ip6: Option<Ipv6Addr>,
}

impl TunnelTables {
    /// Builds tables from the manually keyed configuration `t`, in the
    /// context `cx` (made by [`TableContext::new`] from the same section).
    pub fn from_config(
        t: &TunnelSection,
        cx: &TableContext,
        generation: u64,
    ) -> Result<Self, TableError> {
        let spec = spec_of_config(t)?;
        let empty = TunnelTables::empty(cx, generation);
        TunnelTables::build(&spec, cx, &empty, generation).map(|(tables, _)| tables)
    }

    /// The tunnel's inner MTU: the largest inner packet that fits the WAN
    /// MTU under every outbound SA's outer header.
    #[inline]
    pub fn inner_mtu(&self) -> u16 {
        self.inner_mtu
    }

    /// True when listener mode is configured.
    #[inline]
    pub fn has_listeners(&self) -> bool {
        self.listeners.is_some()
    }

    /// Listener mode, LAN ingress: `pkt` (an IPv4 or IPv6 packet addressed
    /// to our LAN address of its family) is a consumer's packet to an
    /// outbound listener (step 1: destination → the peer's listener) or a
    /// producer's reply to a mapped port (step 3: back to the consumer). Rewrites it in place and returns
    /// the outbound SA (an index for [`TunnelTables::outbound`]) to seal it with.
    pub fn nat_from_lan(&self, pkt: &mut [u8]) -> Result<usize, NatError> {
        let l = self.listeners.as_ref().ok_or(NatError::NoListener)?;
        if l.outbound_len() > 0 {
            match nat::consumer_to_remote(pkt, l) {
                Ok(i) => return Ok(l.outbound(i).sa),
                Err(NatError::NoListener) => {}
                Err(e) => return Err(e),
            }
        }
        match &self.conntrack {
            Some(ct) if ct.is_reply_candidate(pkt) => {
                let i = ct.inbound_reply(pkt, l, self.clock.now())?;
                Ok(l.inbound(i).sa)
            }
            _ => Err(NatError::NoListener),
        }
    }

    /// Listener mode, after decapsulation: a consumer's packet to one of our
    /// inbound listeners (step 2: to the producer, from a mapped port), or
    /// the producer side's reply from a peer listener (step 4: back to the
    /// consumer). Packets of neither kind (routed mode) pass unchanged.
    /// `pkt` is an IPv4 or IPv6 packet and `dst` its destination; only a
    /// packet to our WAN address of its family is step 2.
    pub fn nat_from_tunnel(&self, pkt: &mut [u8], dst: IpAddr) -> Result<(), NatError> {
        let Some(l) = &self.listeners else {
            return Ok(());
        };
        let to_our_wan = match dst {
            IpAddr::V4(d) => Some(d) == self.wan_ip,
            IpAddr::V6(d) => Some(d) == self.wan_ip6,
        };
        if to_our_wan {
            let ct = self.conntrack.as_ref().ok_or(NatError::NoListener)?;
            return ct.inbound_forward(pkt, l, self.clock.now()).map(|_| ());
        }
        if l.outbound_len() > 0 {
            return match nat::remote_to_consumer(pkt, l) {
                Ok(_) | Err(NatError::NoListener) => Ok(()),
                // Listener connections are TCP or UDP: ICMP echo or any
                // other protocol is routed traffic, and passes unchanged.
                Err(NatError::UnsupportedProtocol) => Ok(()),
                // A later fragment has no ports to match; unless it comes
                // from a peer listener's host it is routed traffic too.
                Err(NatError::Fragment)
                    if !packet_src(pkt).is_some_and(|s| l.is_remote_host(s)) =>
                {
                    Ok(())
                }
                Err(e) => Err(e),
            };
        }
        Ok(())
    }

    /// Ticks the connection-tracking clock and expires idle connections
    /// (called about every 250 ms by the main thread). Returns how many expired.
    pub fn housekeeping(&self) -> usize {
        let now = self.clock.tick();
        self.conntrack.as_ref().map_or(0, |ct| ct.expire(now))
    }

    /// Connections the producer-side NAT is tracking.
    pub fn nat_active(&self) -> usize {
        self.conntrack.as_ref().map_or(0, |ct| ct.active())
    }

    /// The outbound SA for inner destination `dst`, as an index for [`TunnelTables::outbound`].
    #[inline]
    pub fn route(&self, dst: Ipv4Addr) -> Option<usize> {
        let d = u32::from(dst);
        self.routes
            .iter()
            .find(|(net, mask, _, _)| d & mask == *net)
            .map(|r| r.3)
    }

    /// The outbound SA (an index) whose IPv6 tunnel route covers `dst`.
    #[inline]
    pub fn route6(&self, dst: Ipv6Addr) -> Option<usize> {
        let d = u128::from(dst);
        self.routes6
            .iter()
            .find(|(net, mask, _, _)| d & mask == *net)
            .map(|r| r.3)
    }

    /// The index of the outbound SA with `spi`, if it is still in the tables.
    pub fn outbound_index(&self, spi: u32) -> Option<usize> {
        self.outbound.iter().position(|o| o.sa.spi == spi)
    }

    /// The outbound SA (its SPI) that carries traffic back to `src`, the
    /// sender of a packet that came in through inbound SA `inbound_spi`:
    /// the tunnel route to `src` if there is one (routed mode), else an
    /// outbound SA toward the same peer gateway (listener mode, where the
    /// peer translates what comes back).
    pub fn reply_spi(&self, inbound_spi: u32, src: IpAddr) -> Option<u32> {
        let routed = match src {
            IpAddr::V4(v4) => self.route(v4),
            IpAddr::V6(v6) => self.route6(v6),
        };
        if let Some(i) = routed {
            return Some(self.outbound[i].sa.spi);
        }
        let peer = self.inbound.get(&inbound_spi)?.peer;
        self.outbound
            .iter()
            .find(|o| o.outer.dst == peer)
            .map(|o| o.sa.spi)
    }

    /// The outbound SA worker `worker` seals traffic for outbound SA `idx`
    /// with: the worker's own lane of `idx`'s head (`idx` itself without
    /// lanes). Each lane then has one sending worker (its sequence counter
    /// is not contended) and its own outer source port.
    #[inline]
    pub fn lane(&self, idx: usize, worker: usize) -> usize {
        match self.lanes.get(idx) {
            Some(l) if l.len() > 1 => l[worker % l.len()],
            _ => idx,
        }
    }

    /// How many SAs outbound SA `idx`'s traffic is spread over (1: no lanes).
    pub fn lane_count(&self, idx: usize) -> usize {
        self.lanes.get(idx).map_or(1, |l| l.len())
    }

    /// Outbound SA `idx`.
    #[inline]
    pub fn outbound(&self, idx: usize) -> &OutboundEntry {
        &self.outbound[idx]
    }

    /// The inbound SA with `spi`.
    #[inline]
    pub fn inbound(&self, spi: u32) -> Option<&InboundEntry> {
        self.inbound.get(&spi).map(|e| &**e)
    }

    /// Marks every SA whose hard lifetime ended by `now` expired (the
    /// housekeeping thread, about every 250 ms); returns the SPIs that
    /// expired just now.
    pub fn expire(&self, now: std::time::Instant) -> Vec<u32> {
        let out = self
            .outbound
            .iter()
            .filter(|o| o.lifetime.check(now))
            .map(|o| o.sa.spi);
        let inb = self
            .inbound
            .values()
            .filter(|i| i.lifetime.check(now))
            .map(|i| i.sa.spi);
        out.chain(inb).collect()
    }

    /// Number of outbound SAs.
    pub fn outbound_len(&self) -> usize {
        self.outbound.len()
    }

    /// Number of inbound SAs.
    pub fn inbound_len(&self) -> usize {
        self.inbound.len()
    }

    /// Number of listeners (outbound, inbound).
    pub fn listener_counts(&self) -> (usize, usize) {
        self.listeners
            .as_ref()
            .map_or((0, 0), |l| (l.outbound_len(), l.inbound_len()))
    }

    /// True if an inbound SA has `spi`.
    pub fn has_inbound(&self, spi: u32) -> bool {
        self.inbound.contains_key(&spi)
    }
}

/// The spec of the manually keyed sections.
fn spec_of_config(t: &TunnelSection) -> Result<TableSpec, TableError> {
    let sas: Vec<SaSpec> = t
        .sas
        .iter()
        .map(|s| {
            let peer = &t.peers[s.peer];
            SaSpec {
                spi: s.spi,
                direction: s.direction,
                algorithm: s.algorithm,
                key: Zeroizing::new(s.key.to_vec()),
                salt: s.salt,
                esn: s.esn,
                peer: SocketAddr::new(peer.address, peer.udp_port),
                rate_bps: 0,
                hard_packets: 0,
                hard_seconds: 0,
                lane_of: s.lane_of,
                anti_replay: s.anti_replay,
            }
        })
        .collect();
    let out = |spi: u32| {
        sas.iter()
            .position(|s| s.spi == spi && s.direction == Direction::Out)
            .ok_or(TableError::NoOutboundSa(spi))
    };
    let routes = t
        .routes
        .iter()
        .map(|r| {
            Ok(RouteSpec {
                prefix: r.prefix.network(),
                len: r.prefix.prefix_len(),
                sa: out(r.spi)?,
            })
        })
        .collect::<Result<_, TableError>>()?;
    let routes6 = t
        .routes6
        .iter()
        .map(|r| {
            Ok(Route6Spec {
                prefix: r.prefix.network(),
                len: r.prefix.prefix_len(),
                sa: out(r.spi)?,
            })
        })
        .collect::<Result<_, TableError>>()?;
    let listeners = t
        .listeners
        .iter()
        .map(|l| {
            let to = match (l.role, l.remote, l.target) {
                (ListenerRole::Outbound, Some(remote), _) => remote,
                (ListenerRole::Inbound, _, Some(target)) => target,
                _ => return Err(TableError::Listener(l.port)),
            };
            Ok(ListenerSpec {
                role: l.role,
                port: l.port,
                to,
                sa: out(l.spi)?,
            })
        })
        .collect::<Result<_, TableError>>()?;
    Ok(TableSpec {
        sas,
        routes,
        routes6,
        listeners,
    })
}

/// The source address of the valid IPv4 or IPv6 packet `pkt`.
fn packet_src(pkt: &[u8]) -> Option<IpAddr> {
    match pkt.first()? >> 4 {
        4 => {
            let b: [u8; 4] = pkt.get(12..16)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        6 => {
            let b: [u8; 16] = pkt.get(8..24)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

/// Why tables could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A key was refused.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A listener names an SPI with no outbound SA.
    #[error("no outbound SA has SPI {0:#x}")]
    NoOutboundSa(u32),
    /// A listener lacks its remote or target.
    #[error("listener on port {0} lacks its remote or target")]
    Listener(u16),
    /// Two SAs of one direction share an SPI.
    #[error("two SAs of one direction have SPI {0:#x}")]
    DuplicateSpi(u32),
    /// A route's prefix length exceeds 32 (IPv4) or 128 (IPv6).
    #[error("route prefix length {0} exceeds the address length")]
    PrefixLength(u8),
    /// A listener whose remote or target is of a family our port (`lan`
    /// for an outbound listener's own address and for the producer-side
    /// NAT's mapped source, `wan` for an inbound listener's own address)
    /// has no address of: listener mode keeps the family end to end.
    #[error(
        "listener on port {port}: its remote/target is {family}, and our {port_name} port has no \
         {family} address (listener mode does not translate between IPv4 and IPv6)"
    )]
    NoListenerAddress {
        /// The listener's port.
        port: u16,
        /// `lan` or `wan`.
        port_name: &'static str,
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
    /// An SA's peer is of a family our WAN port has no address of.
    #[error("SA {0:#x}: the peer's address family has no address on our WAN port")]
    NoWanAddress(u32),
    /// The listeners or the NAT pool are inconsistent.
    #[error(transparent)]
    Nat(#[from] nat::NatConfigError),
    /// An outbound SA's `lane_of` cannot be honoured.
    #[error("SA {spi:#x}: lane: {reason}")]
    Lane {
        /// The lane's SPI.
        spi: u32,
        /// What is wrong.
        reason: String,
    },
}

/// Where workers get the current tables. The static configuration
/// implements it now; the control process's shared-memory reader later.
pub trait TableSource: Send + Sync {
    /// The current snapshot (lock-free; loaded once per burst).
    fn load(&self) -> arc_swap::Guard<Arc<TunnelTables>>;

    /// Worker `worker` has moved on to `tables` (called once per change,
    /// not per burst): a source whose tables come from shared memory reports
    /// it to the writer.
    fn seen(&self, _worker: usize, _tables: &TunnelTables) {}
}

/// Tables from the configuration file (manual keying).
#[derive(Debug)]
pub struct StaticTables {
    current: ArcSwap<TunnelTables>,
}

impl StaticTables {
    /// Publishes `tables`.
    pub fn new(tables: TunnelTables) -> Self {
        StaticTables {
            current: ArcSwap::from_pointee(tables),
        }
    }
}

impl TableSource for StaticTables {
    fn load(&self) -> arc_swap::Guard<Arc<TunnelTables>> {
        self.current.load()
    }
}
