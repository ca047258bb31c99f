//! Building [`TunnelTables`] from the control process's shared-memory
//! tables (keying "control").
//!
//! Every rebuild keeps what must survive a table change:
//! - an outbound SA whose SPI and key are unchanged is the same
//!   `Arc<OutboundEntry>`, so its sequence counter never restarts under the
//!   same key (a restart would repeat GCM nonces); a changed rate limit is
//!   applied to it in place, keeping its bucket;
//! - an inbound listener keeps its index, so the producer-side NAT's
//!   connections (which name their listener by index) survive other
//!   sessions coming and going;
//! - the connection table and its clock are shared by all generations.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::tables::{key_fingerprint, InboundEntry, OutboundEntry, TableError, TunnelTables};
use crate::config::tunnel::{Direction, ListenerRole};
use crate::crypto::{EngineKind, SaKey};
use crate::esp::{InboundSa, OutboundSa, Outer};
use crate::nat::{CoarseClock, ConnTable, InboundListener, Listeners, OutboundListener, Timeouts};
use crate::port::prefix_mask;
use scistream_region::TablesView;

/// What the data plane contributes to tables built from shared memory:
/// fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct ShmContext {
    /// The AEAD engine.
    pub engine: EngineKind,
    /// Our ESP-in-UDP port.
    pub udp_port: u16,
    /// Our LAN address (outbound listeners listen on it).
    pub lan_ip: Ipv4Addr,
    /// Our WAN address (outer source; inbound listeners listen on it).
    pub wan_ip: Ipv4Addr,
    /// First mapped port of the producer-side NAT.
    pub nat_port_base: u16,
    /// Connection-tracking slots.
    pub nat_slots: usize,
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

impl TunnelTables {
    /// Tables with no SA, route or listener: everything between LAN and WAN
    /// is dropped (`policy`) until the control process publishes.
    pub fn empty(cx: &ShmContext, generation: u64) -> TunnelTables {
        TunnelTables {
            generation,
            shm_generation: 0,
            engine: cx.engine,
            udp_port: cx.udp_port,
            outbound: Vec::new(),
            inbound: FxHashMap::default(),
            routes: Vec::new(),
            listeners: None,
            conntrack: None,
            clock: Arc::new(CoarseClock::new()),
            wan_ip: cx.wan_ip,
        }
    }

    /// Builds tables from the active copy `view`, reusing from `prev` every
    /// SA whose SPI and key are unchanged, the inbound listeners' indexes,
    /// the connection table and the clock. Invalid entries are skipped and
    /// logged; the rest is installed.
    pub fn from_shm(
        view: &TablesView<'_>,
        cx: &ShmContext,
        prev: &TunnelTables,
        generation: u64,
    ) -> Result<(TunnelTables, RebuildReport), TableError> {
        let mut report = RebuildReport::default();
        let mut outbound: Vec<Arc<OutboundEntry>> = Vec::new();
        let mut inbound: FxHashMap<u32, Arc<InboundEntry>> = FxHashMap::default();
        // SA table slot → index into `outbound`.
        let mut out_slot: FxHashMap<u32, usize> = FxHashMap::default();
        for (slot, e) in view.sas().iter().enumerate() {
            let (Some(dir), Some(alg), Some(key)) = (e.direction(), e.algorithm(), e.key()) else {
                tracing::warn!(slot, spi = e.spi, "shared memory: invalid SA entry skipped");
                report.invalid += 1;
                continue;
            };
            if !scistream_region::spi_is_usable(e.spi) || key.len() != alg.key_len() {
                tracing::warn!(
                    slot,
                    spi = e.spi,
                    "shared memory: SA with a reserved SPI or a wrong key length skipped"
                );
                report.invalid += 1;
                continue;
            }
            let fingerprint = key_fingerprint(alg, key, e.salt);
            let esn = e.esn != 0;
            match dir {
                Direction::Out => {
                    if outbound.iter().any(|o| o.sa.spi == e.spi) {
                        tracing::warn!(
                            slot,
                            spi = e.spi,
                            "shared memory: duplicate outbound SPI skipped"
                        );
                        report.invalid += 1;
                        continue;
                    }
                    let reused = prev
                        .outbound
                        .iter()
                        .find(|o| o.sa.spi == e.spi && o.fingerprint == fingerprint)
                        .cloned();
                    let entry = match reused {
                        Some(o) => {
                            // Same key, same SA and sequence counter; the rate may change.
                            o.sa.set_rate(e.rate_bps);
                            o
                        }
                        None => {
                            report.installed += 1;
                            let sa = OutboundSa::new(
                                e.spi,
                                SaKey::new(cx.engine, alg, key, e.salt)?,
                                esn,
                            )
                            .with_hard_packets(e.hard_packets)
                            .with_rate(e.rate_bps);
                            Arc::new(OutboundEntry {
                                sa,
                                outer: Outer {
                                    src: cx.wan_ip,
                                    dst: Ipv4Addr::from(e.peer_addr),
                                    sport: cx.udp_port,
                                    dport: e.peer_port,
                                    ttl: 64,
                                },
                                fingerprint,
                            })
                        }
                    };
                    out_slot.insert(slot as u32, outbound.len());
                    outbound.push(entry);
                }
                Direction::In => {
                    if inbound.contains_key(&e.spi) {
                        tracing::warn!(
                            slot,
                            spi = e.spi,
                            "shared memory: duplicate inbound SPI skipped"
                        );
                        report.invalid += 1;
                        continue;
                    }
                    let entry = match prev.inbound.get(&e.spi) {
                        Some(i) if i.fingerprint == fingerprint => i.clone(),
                        _ => {
                            report.installed += 1;
                            Arc::new(InboundEntry {
                                sa: InboundSa::new(
                                    e.spi,
                                    SaKey::new(cx.engine, alg, key, e.salt)?,
                                    esn,
                                ),
                                peer: Ipv4Addr::from(e.peer_addr),
                                fingerprint,
                            })
                        }
                    };
                    inbound.insert(e.spi, entry);
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

        let mut routes = Vec::new();
        for (i, r) in view.routes().iter().enumerate() {
            let Some(&sa) = out_slot.get(&r.sa_slot) else {
                tracing::warn!(
                    route = i,
                    sa_slot = r.sa_slot,
                    "shared memory: route to a missing outbound SA skipped"
                );
                report.invalid += 1;
                continue;
            };
            if r.len > 32 {
                report.invalid += 1;
                continue;
            }
            let mask = prefix_mask(r.len);
            routes.push((r.prefix & mask, mask, r.len, sa));
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.2));

        let (listeners, any_inbound) = listeners(view, cx, prev, &out_slot, &mut report)?;
        let conntrack = match (&prev.conntrack, any_inbound) {
            (Some(ct), _) => Some(ct.clone()),
            (None, true) => Some(Arc::new(ConnTable::new(
                cx.lan_ip,
                cx.nat_port_base,
                cx.nat_slots,
                Timeouts::default(),
            )?)),
            (None, false) => None,
        };
        Ok((
            TunnelTables {
                generation,
                shm_generation: view.generation(),
                engine: cx.engine,
                udp_port: cx.udp_port,
                outbound,
                inbound,
                routes,
                listeners,
                conntrack,
                clock: prev.clock.clone(),
                wan_ip: cx.wan_ip,
            },
            report,
        ))
    }
}

/// The listeners of `view`; inbound listeners keep the index they had in
/// `prev` (by listen port), new ones take the lowest free index.
fn listeners(
    view: &TablesView<'_>,
    cx: &ShmContext,
    prev: &TunnelTables,
    out_slot: &FxHashMap<u32, usize>,
    report: &mut RebuildReport,
) -> Result<(Option<Listeners>, bool), TableError> {
    let mut outs = Vec::new();
    let mut ins: Vec<InboundListener> = Vec::new();
    for (i, l) in view.listeners().iter().enumerate() {
        let (Some(role), Some(&sa)) = (l.role(), out_slot.get(&l.sa_slot)) else {
            tracing::warn!(
                listener = i,
                port = l.port,
                "shared memory: listener with a bad role or a missing outbound SA skipped"
            );
            report.invalid += 1;
            continue;
        };
        match role {
            ListenerRole::Outbound => outs.push(OutboundListener {
                lan: SocketAddrV4::new(cx.lan_ip, l.port),
                remote: l.remote(),
                sa,
            }),
            ListenerRole::Inbound => ins.push(InboundListener {
                listen: SocketAddrV4::new(cx.wan_ip, l.port),
                target: l.target(),
                sa,
            }),
        }
    }
    if outs.is_empty() && ins.is_empty() {
        return Ok((None, false));
    }
    // Stable inbound indexes.
    let old: FxHashMap<u16, usize> = prev
        .listeners
        .as_ref()
        .map(|l| {
            (0..l.inbound_slots())
                .filter_map(|i| l.get_inbound(i).map(|x| (x.listen.port(), i)))
                .collect()
        })
        .unwrap_or_default();
    let mut slots: Vec<Option<InboundListener>> = Vec::new();
    let mut fresh = Vec::new();
    for l in ins {
        match old.get(&l.listen.port()) {
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
    let any_inbound = !slots.is_empty();
    Ok((
        Some(Listeners::with_inbound_slots(outs, slots)?),
        any_inbound,
    ))
}
