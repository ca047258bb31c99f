//! The one builder of [`TunnelTables`]. Both sources of tables describe
//! what they hold as a neutral [`TableSpec`]: the manually keyed
//! configuration ([`TunnelTables::from_config`]) and the control process's
//! shared-memory region ([`TunnelTables::from_shm`]). [`TunnelTables::build`]
//! turns a spec into tables and holds the rules of what a rebuild keeps:
//!
//! - an outbound SA whose SPI and key are unchanged is the same
//!   `Arc<OutboundEntry>`, so its sequence counter never restarts under the
//!   same key (a restart would repeat GCM nonces); a changed rate limit is
//!   applied to it in place, keeping its bucket;
//! - an inbound SA whose SPI and key are unchanged is kept too;
//! - an inbound listener keeps its index, so the producer-side NAT's
//!   connections (which name their listener by index) survive other
//!   sessions coming and going;
//! - the connection table and its clock are shared by all generations.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use zeroize::Zeroizing;

use super::sa_slots::SaSlots;
use super::tables::Lifetime;
use super::tables::{key_fingerprint, InboundEntry, OutboundEntry, TableError, TunnelTables};
use crate::config::tunnel::{Direction, ListenerRole};
use crate::crypto::{Algorithm, EngineKind, SaKey};
use crate::esp::{InboundSa, OutboundSa, Outer};
use crate::nat::{CoarseClock, ConnTable, InboundListener, Listeners, OutboundListener, Timeouts};
use crate::port::{prefix_mask, prefix_mask6};

/// What the data plane itself contributes to its tables, fixed for the life
/// of the process.
#[derive(Debug, Clone)]
pub struct TableContext {
    /// The AEAD engine.
    pub engine: EngineKind,
    /// Our ESP-in-UDP port.
    pub udp_port: u16,
    /// Our LAN IPv4 address (IPv4 outbound listeners listen on it; the
    /// producer-side NAT maps IPv4 flows to it), if the LAN port has one.
    pub lan_ip: Option<Ipv4Addr>,
    /// Our global IPv6 LAN address (IPv6 outbound listeners listen on it;
    /// the producer-side NAT maps IPv6 flows to it), if the LAN port has one.
    pub lan_ip6: Option<Ipv6Addr>,
    /// Our WAN IPv4 address (outer source toward IPv4 peers; IPv4 inbound
    /// listeners listen on it), if the WAN port has one.
    pub wan_ip: Option<Ipv4Addr>,
    /// Our global IPv6 WAN address, if the WAN port has one: the outer
    /// source toward IPv6 peers; IPv6 inbound listeners listen on it.
    pub wan_ip6: Option<Ipv6Addr>,
    /// The WAN port's MTU: the inner MTU follows from it and the outer
    /// family of each SA.
    pub wan_mtu: u16,
    /// First mapped port of the producer-side NAT.
    pub nat_port_base: u16,
    /// Connection-tracking slots.
    pub nat_slots: usize,
    /// The stats segment's SA slots (`None`: SAs are not counted one by one).
    pub sa_slots: Option<Arc<SaSlots>>,
    /// TCP MSS clamping's limit (`None`: off); lowered to what the inner
    /// MTU allows when an SA has an IPv6 outer header.
    pub tcp_mss: Option<u16>,
}

impl TableContext {
    /// The context of `tunnel` on a gateway whose ports have `lan` and
    /// `wan` addresses; SAs are counted in `sa_slots`' segment.
    pub fn new(
        tunnel: &crate::config::tunnel::TunnelSection,
        lan: &crate::port::PortAddr,
        wan: &crate::port::PortAddr,
        sa_slots: Option<Arc<SaSlots>>,
    ) -> Self {
        TableContext {
            engine: tunnel.engine,
            udp_port: tunnel.udp_port,
            lan_ip: lan.ip(),
            lan_ip6: lan.ip6.map(|(ip, _)| ip),
            wan_ip: wan.ip(),
            wan_ip6: wan.ip6.map(|(ip, _)| ip),
            wan_mtu: wan.mtu,
            nat_port_base: tunnel.nat_port_base,
            nat_slots: tunnel.nat_slots,
            sa_slots,
            tcp_mss: tunnel.tcp_mss,
        }
    }

    /// Our WAN address of `peer`'s family: the outer source toward it.
    pub fn outer_source(&self, peer: IpAddr) -> Option<IpAddr> {
        match peer {
            IpAddr::V4(_) => self.wan_ip.map(IpAddr::from),
            IpAddr::V6(_) => self.wan_ip6.map(IpAddr::from),
        }
    }

    /// Our LAN address of `family`'s family: where outbound listeners of
    /// that family listen, and the producer-side NAT's mapped source.
    fn lan_addr(&self, family: IpAddr) -> Option<IpAddr> {
        match family {
            IpAddr::V4(_) => self.lan_ip.map(IpAddr::from),
            IpAddr::V6(_) => self.lan_ip6.map(IpAddr::from),
        }
    }

    /// The tunnel's inner MTU without SAs (IPv4 outer headers).
    fn default_inner_mtu(&self) -> u16 {
        crate::esp::inner_mtu(self.wan_mtu)
    }
}

/// The inner MTU of tables whose outbound SAs are `outbound`: the smallest
/// over their outer families (an IPv6 outer header takes 20 bytes more),
/// so that a packet that fits one SA fits them all.
fn tunnel_inner_mtu(cx: &TableContext, outbound: &[Arc<OutboundEntry>]) -> u16 {
    let any_ipv6 = outbound.iter().any(|o| o.outer.is_ipv6());
    if any_ipv6 {
        crate::esp::inner_mtu6(cx.wan_mtu)
    } else {
        cx.default_inner_mtu()
    }
}

/// The MSS limit for tables of inner MTU `inner_mtu`: the configured one,
/// lowered to what an IPv4 segment of that MTU carries.
fn clamp_limit(cx: &TableContext, inner_mtu: u16) -> Option<u16> {
    cx.tcp_mss
        .map(|m| m.min(crate::wire::mss::ipv4_mss_for(inner_mtu)))
}

/// One SA of a [`TableSpec`]. Debug never shows the key.
pub struct SaSpec {
    /// Security Parameter Index.
    pub spi: u32,
    /// In or out.
    pub direction: Direction,
    /// The AEAD algorithm.
    pub algorithm: Algorithm,
    /// The AES key; zeroized when the spec is dropped.
    pub key: Zeroizing<Vec<u8>>,
    /// The GCM salt.
    pub salt: [u8; 4],
    /// 64-bit extended sequence numbers.
    pub esn: bool,
    /// The peer gateway's WAN address (IPv4 or IPv6: the outer family) and
    /// ESP-in-UDP port.
    pub peer: SocketAddr,
    /// Outbound: the policer's rate in bits per second (0: unlimited).
    pub rate_bps: u64,
    /// Outbound: the hard packet lifetime (0: none).
    pub hard_packets: u64,
    /// The hard lifetime in seconds from installation (0: none).
    pub hard_seconds: u64,
    /// Outbound: this SA is a lane of the outbound SA with this SPI (its
    /// head), which routes and listeners name. A session's traffic is
    /// spread over the head and its lanes by sending worker (one SA per
    /// worker, as RFC 9611's per-resource SAs), each lane from its own
    /// outer UDP source port, so the peer's RSS spreads them too. None: an
    /// SA of its own.
    pub lane_of: Option<u32>,
    /// Inbound: check the anti-replay window (always, but for a manually
    /// keyed SA with `anti_replay = false`).
    pub anti_replay: bool,
}

/// Most lanes (the head included) one outbound SA may have.
pub const MAX_LANES: usize = 16;

impl std::fmt::Debug for SaSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaSpec")
            .field("spi", &format_args!("{:#x}", self.spi))
            .field("direction", &self.direction)
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .field("peer", &self.peer)
            .field("rate_bps", &self.rate_bps)
            .field("lane_of", &self.lane_of.map(|h| format!("{h:#x}")))
            .field("anti_replay", &self.anti_replay)
            .finish()
    }
}

/// Routed mode: inner destinations in `prefix/len` go through outbound SA
/// `sa` (an index into [`TableSpec::sas`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// Network address.
    pub prefix: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub len: u8,
    /// Index of an outbound SA in [`TableSpec::sas`].
    pub sa: usize,
}

/// Routed mode, IPv6: packets to `prefix/len` go through outbound SA `sa`
/// (an index into [`TableSpec::sas`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route6Spec {
    /// Network address.
    pub prefix: Ipv6Addr,
    /// Prefix length, 0..=128.
    pub len: u8,
    /// Index of an outbound SA in [`TableSpec::sas`].
    pub sa: usize,
}

/// Listener mode: one listener, leading to `to` (outbound: the peer's
/// listener; inbound: the producer application), its traffic sealed with
/// outbound SA `sa` (an index into [`TableSpec::sas`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Consumer side (outbound) or producer side (inbound).
    pub role: ListenerRole,
    /// The listening port: on our LAN address (outbound) or WAN address (inbound).
    pub port: u16,
    /// Outbound: the remote listener; inbound: the target. IPv4 or IPv6:
    /// the listener itself is on our address of the same family.
    pub to: SocketAddr,
    /// Index of an outbound SA in [`TableSpec::sas`].
    pub sa: usize,
}

/// A neutral description of the tunnel tables.
#[derive(Debug, Default)]
pub struct TableSpec {
    /// The SAs.
    pub sas: Vec<SaSpec>,
    /// Routed mode's routes.
    pub routes: Vec<RouteSpec>,
    /// Routed mode's IPv6 routes.
    pub routes6: Vec<Route6Spec>,
    /// Listener mode's listeners.
    pub listeners: Vec<ListenerSpec>,
}

/// What a rebuild changed, for the counters and the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// SAs (either direction) that are new in this generation.
    pub installed: u64,
    /// SAs of the previous tables that are gone.
    pub removed: u64,
    /// Entries skipped because they were invalid (each is logged).
    pub invalid: u64,
}

/// The outer UDP source port of spec SA `i`: ours (`udp_port`) for an SA
/// of its own or a head, `udp_port + k` for its head's `k`-th lane (in
/// spec order), so each lane is a flow of its own to the peer's RSS.
fn lane_source_port(spec: &TableSpec, i: usize, udp_port: u16) -> Result<u16, TableError> {
    let s = &spec.sas[i];
    let Some(head) = s.lane_of else {
        return Ok(udp_port);
    };
    let k = spec.sas[..i]
        .iter()
        .filter(|o| o.direction == Direction::Out && o.lane_of == Some(head))
        .count()
        + 1;
    u16::try_from(usize::from(udp_port) + k).map_err(|_| TableError::Lane {
        spi: s.spi,
        reason: format!("no source port above {udp_port} for lane {k}"),
    })
}

/// For each outbound SA (by index into the tables' `outbound`), the SAs a
/// worker picks from: a head's own index followed by its lanes', or just
/// its own for an SA without lanes. Checks that every `lane_of` names an
/// outbound head (not a lane) toward the same peer, and at most
/// [`MAX_LANES`] per head.
fn lane_table(
    spec: &TableSpec,
    out_index: &FxHashMap<usize, usize>,
    outbound_len: usize,
) -> Result<Vec<Box<[usize]>>, TableError> {
    let mut groups: Vec<Vec<usize>> = (0..outbound_len).map(|o| vec![o]).collect();
    for (i, s) in spec.sas.iter().enumerate() {
        let (Some(head_spi), Direction::Out) = (s.lane_of, s.direction) else {
            continue;
        };
        let lane_err = |reason: String| TableError::Lane { spi: s.spi, reason };
        let (h, head) = spec
            .sas
            .iter()
            .enumerate()
            .find(|(_, o)| o.direction == Direction::Out && o.spi == head_spi)
            .ok_or_else(|| lane_err(format!("no outbound SA {head_spi:#x} to be a lane of")))?;
        if head.lane_of.is_some() {
            return Err(lane_err(format!("{head_spi:#x} is itself a lane")));
        }
        if head.peer != s.peer {
            return Err(lane_err(format!(
                "its peer {} is not its head's ({})",
                s.peer, head.peer
            )));
        }
        let group = &mut groups[out_index[&h]];
        if group.len() == MAX_LANES {
            return Err(lane_err(format!(
                "{head_spi:#x} has more than {MAX_LANES} lanes"
            )));
        }
        group.push(out_index[&i]);
    }
    Ok(groups.into_iter().map(Vec::into_boxed_slice).collect())
}

impl TunnelTables {
    /// Tables with no SA, route or listener: everything between LAN and WAN
    /// is dropped (`policy`) until a source provides tables.
    pub fn empty(cx: &TableContext, generation: u64) -> TunnelTables {
        TunnelTables {
            generation,
            shm_generation: 0,
            engine: cx.engine,
            udp_port: cx.udp_port,
            tcp_mss: clamp_limit(cx, cx.default_inner_mtu()),
            inner_mtu: cx.default_inner_mtu(),
            outbound: Vec::new(),
            lanes: Vec::new(),
            inbound: FxHashMap::default(),
            routes: Vec::new(),
            routes6: Vec::new(),
            listeners: None,
            conntrack: None,
            clock: Arc::new(CoarseClock::new()),
            wan_ip: cx.wan_ip,
            wan_ip6: cx.wan_ip6,
        }
    }

    /// Builds tables from `spec`, keeping from `prev` what a rebuild keeps
    /// (the module's rules). `report.invalid` is left at 0: the callers
    /// count what they skip while making the spec.
    pub fn build(
        spec: &TableSpec,
        cx: &TableContext,
        prev: &TunnelTables,
        generation: u64,
    ) -> Result<(TunnelTables, RebuildReport), TableError> {
        let mut report = RebuildReport::default();
        let mut outbound: Vec<Arc<OutboundEntry>> = Vec::new();
        let mut inbound: FxHashMap<u32, Arc<InboundEntry>> = FxHashMap::default();
        // Spec SA index → index into `outbound`.
        let mut out_index: FxHashMap<usize, usize> = FxHashMap::default();
        for (i, s) in spec.sas.iter().enumerate() {
            let fingerprint = key_fingerprint(s.algorithm, &s.key, s.salt);
            match s.direction {
                Direction::Out => {
                    if outbound.iter().any(|o| o.sa.spi == s.spi) {
                        return Err(TableError::DuplicateSpi(s.spi));
                    }
                    let reused = prev
                        .outbound
                        .iter()
                        .find(|o| o.sa.spi == s.spi && o.fingerprint == fingerprint)
                        .cloned();
                    let entry = match reused {
                        Some(o) => {
                            // Same key, same SA and sequence counter; the rate may change.
                            o.sa.set_rate(s.rate_bps);
                            o
                        }
                        None => {
                            report.installed += 1;
                            let src = cx
                                .outer_source(s.peer.ip())
                                .ok_or(TableError::NoWanAddress(s.spi))?;
                            let sport = lane_source_port(spec, i, cx.udp_port)?;
                            let key = SaKey::new(cx.engine, s.algorithm, &s.key, s.salt)?;
                            let sa = OutboundSa::new(s.spi, key, s.esn)
                                .with_hard_packets(s.hard_packets)
                                .with_rate(s.rate_bps);
                            Arc::new(OutboundEntry {
                                stats_slot: assign(cx, Direction::Out, s.spi),
                                lifetime: Lifetime::new(s.hard_seconds),
                                sa,
                                outer: Outer {
                                    src,
                                    dst: s.peer.ip(),
                                    sport,
                                    dport: s.peer.port(),
                                    ttl: 64,
                                },
                                fingerprint,
                            })
                        }
                    };
                    out_index.insert(i, outbound.len());
                    outbound.push(entry);
                }
                Direction::In => {
                    if inbound.contains_key(&s.spi) {
                        return Err(TableError::DuplicateSpi(s.spi));
                    }
                    let entry = match prev.inbound.get(&s.spi) {
                        Some(e)
                            if e.fingerprint == fingerprint
                                && e.sa.anti_replay == s.anti_replay =>
                        {
                            e.clone()
                        }
                        _ => {
                            report.installed += 1;
                            let key = SaKey::new(cx.engine, s.algorithm, &s.key, s.salt)?;
                            Arc::new(InboundEntry {
                                stats_slot: assign(cx, Direction::In, s.spi),
                                lifetime: Lifetime::new(s.hard_seconds),
                                sa: InboundSa::new(s.spi, key, s.esn)
                                    .with_anti_replay(s.anti_replay),
                                peer: s.peer.ip(),
                                fingerprint,
                            })
                        }
                    };
                    inbound.insert(s.spi, entry);
                }
            }
        }
        let kept_out = prev
            .outbound
            .iter()
            .filter(|o| outbound.iter().any(|n| Arc::ptr_eq(n, o)))
            .count();
        let kept_in = prev
            .inbound
            .iter()
            .filter(|(spi, o)| inbound.get(spi).is_some_and(|n| Arc::ptr_eq(n, o)))
            .count();
        report.removed = (prev.outbound.len() - kept_out + prev.inbound.len() - kept_in) as u64;
        if let Some(slots) = &cx.sa_slots {
            let gone_out = prev
                .outbound
                .iter()
                .filter(|o| !outbound.iter().any(|n| Arc::ptr_eq(n, o)))
                .filter_map(|o| o.stats_slot);
            let gone_in = prev
                .inbound
                .iter()
                .filter(|(spi, o)| !inbound.get(spi).is_some_and(|n| Arc::ptr_eq(n, o)))
                .filter_map(|(_, o)| o.stats_slot);
            for slot in gone_out.chain(gone_in) {
                slots.release(slot);
            }
        }

        let sa_of = |i: usize| {
            let s = spec.sas.get(i);
            if let Some(head) = s.and_then(|s| s.lane_of) {
                return Err(TableError::Lane {
                    spi: s.map_or(0, |s| s.spi),
                    reason: format!("a route or listener names it; name its head {head:#x}"),
                });
            }
            out_index
                .get(&i)
                .copied()
                .ok_or(TableError::NoOutboundSa(s.map_or(0, |s| s.spi)))
        };
        let mut routes = Vec::with_capacity(spec.routes.len());
        for r in &spec.routes {
            if r.len > 32 {
                return Err(TableError::PrefixLength(r.len));
            }
            let mask = prefix_mask(r.len);
            routes.push((u32::from(r.prefix) & mask, mask, r.len, sa_of(r.sa)?));
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.2));
        let mut routes6 = Vec::with_capacity(spec.routes6.len());
        for r in &spec.routes6 {
            if r.len > 128 {
                return Err(TableError::PrefixLength(r.len));
            }
            let mask = prefix_mask6(r.len);
            routes6.push((u128::from(r.prefix) & mask, mask, r.len, sa_of(r.sa)?));
        }
        routes6.sort_by_key(|r| std::cmp::Reverse(r.2));

        let mut outs = Vec::new();
        let mut ins = Vec::new();
        for l in &spec.listeners {
            let sa = sa_of(l.sa)?;
            // The listener's own address is ours of the family of `to`.
            let family = if l.to.is_ipv4() { "IPv4" } else { "IPv6" };
            let missing = |port_name| TableError::NoListenerAddress {
                port: l.port,
                port_name,
                family,
            };
            match l.role {
                ListenerRole::Outbound => outs.push(OutboundListener {
                    lan: SocketAddr::new(cx.lan_addr(l.to.ip()).ok_or(missing("lan"))?, l.port),
                    remote: l.to,
                    sa,
                }),
                ListenerRole::Inbound => {
                    // The NAT maps the flows to our LAN address of that family.
                    cx.lan_addr(l.to.ip()).ok_or(missing("lan"))?;
                    ins.push(InboundListener {
                        listen: SocketAddr::new(
                            cx.outer_source(l.to.ip()).ok_or(missing("wan"))?,
                            l.port,
                        ),
                        target: l.to,
                        sa,
                    })
                }
            }
        }
        let lanes = lane_table(spec, &out_index, outbound.len())?;
        let any_inbound = !ins.is_empty();
        let listeners = match outs.is_empty() && ins.is_empty() {
            true => None,
            false => Some(Listeners::with_inbound_slots(
                outs,
                stable_inbound_slots(ins, prev),
            )?),
        };
        let conntrack = match (&prev.conntrack, any_inbound) {
            (Some(ct), _) => Some(ct.clone()),
            (None, true) => Some(Arc::new(ConnTable::new(
                cx.lan_ip,
                cx.lan_ip6,
                cx.nat_port_base,
                cx.nat_slots,
                Timeouts::default(),
            )?)),
            (None, false) => None,
        };
        let inner_mtu = tunnel_inner_mtu(cx, &outbound);
        Ok((
            TunnelTables {
                generation,
                shm_generation: 0,
                engine: cx.engine,
                udp_port: cx.udp_port,
                tcp_mss: clamp_limit(cx, inner_mtu),
                inner_mtu,
                outbound,
                lanes,
                inbound,
                routes,
                routes6,
                listeners,
                conntrack,
                clock: prev.clock.clone(),
                wan_ip: cx.wan_ip,
                wan_ip6: cx.wan_ip6,
            },
            report,
        ))
    }
}

/// A stats slot for a new SA, if the context counts SAs and one is free.
fn assign(cx: &TableContext, direction: Direction, spi: u32) -> Option<usize> {
    let slot = cx.sa_slots.as_ref()?.assign(direction, spi);
    if slot.is_none() {
        tracing::warn!(
            spi,
            ?direction,
            "no free SA slot in the stats segment: the SA is forwarded but not counted on its own"
        );
    }
    slot
}

/// The inbound listeners in slots: each keeps the index it had in `prev`
/// (by listen address: an IPv4 and an IPv6 listener may share a port), new
/// ones take the lowest free index.
fn stable_inbound_slots(
    ins: Vec<InboundListener>,
    prev: &TunnelTables,
) -> Vec<Option<InboundListener>> {
    let old: FxHashMap<SocketAddr, usize> = prev
        .listeners
        .as_ref()
        .map(|l| {
            (0..l.inbound_slots())
                .filter_map(|i| l.get_inbound(i).map(|x| (x.listen, i)))
                .collect()
        })
        .unwrap_or_default();
    let mut slots: Vec<Option<InboundListener>> = Vec::new();
    let mut fresh = Vec::new();
    for l in ins {
        match old.get(&l.listen) {
            Some(&i) => {
                if slots.len() <= i {
                    slots.resize(i + 1, None);
                }
                slots[i] = Some(l);
            }
            None => fresh.push(l),
        }
    }
    let mut next_free = 0;
    for l in fresh {
        while next_free < slots.len() && slots[next_free].is_some() {
            next_free += 1;
        }
        if next_free == slots.len() {
            slots.push(None);
        }
        slots[next_free] = Some(l);
    }
    while slots.last().is_some_and(Option::is_none) {
        slots.pop();
    }
    slots
}

#[cfg(test)]
mod nat_family_tests {
    use super::*;
    use crate::nat::NatError;

    fn cx(lan6: bool) -> TableContext {
        TableContext {
            engine: EngineKind::Ring,
            udp_port: 4500,
            lan_ip: Some(Ipv4Addr::new(10, 1, 0, 1)),
            lan_ip6: lan6.then(|| "fd00:1::1".parse().unwrap()),
            wan_ip: Some(Ipv4Addr::new(192, 0, 2, 1)),
            wan_ip6: Some("2001:db8:a::1".parse().unwrap()),
            wan_mtu: 1500,
            nat_port_base: 40000,
            nat_slots: 64,
            sa_slots: None,
            tcp_mss: None,
        }
    }

    fn spec(targets: &[(u16, SocketAddr)]) -> TableSpec {
        TableSpec {
            sas: vec![SaSpec {
                spi: 0x1000,
                direction: Direction::Out,
                algorithm: Algorithm::Aes128Gcm,
                key: Zeroizing::new(vec![7; 16]),
                salt: [1, 2, 3, 4],
                esn: true,
                peer: "[2001:db8:b::1]:4500".parse().unwrap(),
                rate_bps: 0,
                hard_packets: 0,
                hard_seconds: 0,
                lane_of: None,
                anti_replay: true,
            }],
            listeners: targets
                .iter()
                .map(|&(port, to)| ListenerSpec {
                    role: ListenerRole::Inbound,
                    port,
                    to,
                    sa: 0,
                })
                .collect(),
            ..TableSpec::default()
        }
    }

    #[test]
    fn inbound_listeners_listen_on_our_wan_address_of_their_targets_family() {
        let cx = cx(true);
        let v4: SocketAddr = "10.1.0.5:5000".parse().unwrap();
        let v6: SocketAddr = "[fd00:1::5]:5000".parse().unwrap();
        let empty = TunnelTables::empty(&cx, 0);
        let (t, _) = TunnelTables::build(&spec(&[(7000, v4), (7000, v6)]), &cx, &empty, 1).unwrap();
        let l = t.listeners.as_ref().unwrap();
        assert_eq!(l.match_inbound("192.0.2.1:7000".parse().unwrap()), Some(0));
        assert_eq!(
            l.match_inbound("[2001:db8:a::1]:7000".parse().unwrap()),
            Some(1)
        );
        let ct = t.conntrack.as_ref().unwrap();
        assert_eq!(ct.lan_ip6(), cx.lan_ip6);

        // A rebuild keeps both listeners in their slots (same port, two families).
        let (t2, _) = TunnelTables::build(&spec(&[(7000, v6), (7000, v4)]), &cx, &t, 2).unwrap();
        let l2 = t2.listeners.as_ref().unwrap();
        assert_eq!(l2.get_inbound(0).map(|x| x.target), Some(v4));
        assert_eq!(l2.get_inbound(1).map(|x| x.target), Some(v6));

        // An IPv6 packet to our IPv6 WAN address is step 2; to another address it is routed.
        let mut p = crate::nat::testutil::udp6(
            "[fd00:2::7]:53000".parse().unwrap(),
            "[2001:db8:a::1]:7000".parse().unwrap(),
            b"x",
        );
        let routed = p.clone();
        assert_eq!(
            t.nat_from_tunnel(&mut p, "2001:db8:a::1".parse().unwrap()),
            Ok(())
        );
        let target: Ipv6Addr = "fd00:1::5".parse().unwrap();
        assert_eq!(&p[24..40], &target.octets());
        assert_eq!(&p[8..24], &cx.lan_ip6.unwrap().octets());
        let mut q = routed.clone();
        assert_eq!(
            t.nat_from_tunnel(&mut q, "2001:db8:a::2".parse().unwrap()),
            Ok(())
        );
        assert_eq!(q, routed);
        let mut echo = crate::nat::testutil::ipv6_packet(
            58,
            "fd00:2::7".parse().unwrap(),
            "2001:db8:a::1".parse().unwrap(),
            &[128, 0, 0, 0, 0, 1, 0, 1],
        );
        assert_eq!(
            t.nat_from_tunnel(&mut echo, "2001:db8:a::1".parse().unwrap()),
            Err(NatError::UnsupportedProtocol)
        );
    }

    #[test]
    fn a_listener_of_a_family_our_ports_lack_is_refused() {
        let cx = cx(false);
        let v6: SocketAddr = "[fd00:1::5]:5000".parse().unwrap();
        let empty = TunnelTables::empty(&cx, 0);
        let err = TunnelTables::build(&spec(&[(7000, v6)]), &cx, &empty, 1).unwrap_err();
        assert!(matches!(
            err,
            TableError::NoListenerAddress {
                port: 7000,
                port_name: "lan",
                family: "IPv6"
            }
        ));
        assert!(err
            .to_string()
            .contains("does not translate between IPv4 and IPv6"));
    }
}
