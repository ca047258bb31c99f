//! Tables from the control process's shared-memory region (keying
//! "control"): the region's active copy as a [`TableSpec`], for the one
//! builder ([`TunnelTables::build`]) and its reuse rules.
//!
//! Invalid entries (unknown codes, reserved SPIs, wrong key lengths,
//! duplicate SPIs, routes or listeners naming a missing outbound SA) are
//! skipped, logged and counted; the rest is installed.
//!
//! Tables written for another data plane incarnation are not used at all
//! (empty tables instead): their outbound SAs' sequence counters died with
//! the process that held them, and sealing with them again would repeat
//! GCM nonces. The control process rewrites them for this incarnation once
//! it has seen it (and negotiated new keys).

use std::net::{IpAddr, SocketAddr};

use rustc_hash::FxHashMap;
use scistream_region::TablesView;
use zeroize::Zeroizing;

use super::build::{
    ListenerSpec, RebuildReport, Route6Spec, RouteSpec, SaSpec, TableContext, TableSpec,
};
use super::tables::{TableError, TunnelTables};
use crate::config::tunnel::Direction;

impl TunnelTables {
    /// Builds tables from the active copy `view`, reusing from `prev` what
    /// a rebuild keeps ([`TunnelTables::build`]); empty tables if `view`
    /// was written for another incarnation than ours, `incarnation`.
    pub fn from_shm(
        view: &TablesView<'_>,
        cx: &TableContext,
        prev: &TunnelTables,
        generation: u64,
        incarnation: u64,
    ) -> Result<(TunnelTables, RebuildReport), TableError> {
        let (spec, invalid) = match view.keyed_for() == incarnation {
            true => spec_of(view),
            false => (TableSpec::default(), 0),
        };
        let (mut tables, mut report) = TunnelTables::build(&spec, cx, prev, generation)?;
        tables.shm_generation = view.generation();
        report.invalid = invalid;
        Ok((tables, report))
    }
}

/// Turns outbound lanes whose head is missing, is itself a lane, goes to
/// another peer, or has too many lanes into SAs of their own (no route or
/// listener names them, so they carry nothing), with a warning each, so one
/// bad entry does not refuse the whole table. Returns how many.
fn unlane_orphans(sas: &mut [SaSpec]) -> u64 {
    let mut fixed = 0;
    for i in 0..sas.len() {
        let Some(head) = sas[i].lane_of else { continue };
        let head_ok = sas.iter().any(|h| {
            h.direction == Direction::Out
                && h.spi == head
                && h.lane_of.is_none()
                && h.peer == sas[i].peer
        });
        let rank = sas[..i].iter().filter(|o| o.lane_of == Some(head)).count() + 2;
        if !head_ok || rank > super::MAX_LANES {
            tracing::warn!(
                spi = sas[i].spi,
                head,
                "shared memory: lane without a usable head (missing, a lane itself, another peer, or too many lanes); kept as an SA of its own"
            );
            sas[i].lane_of = None;
            fixed += 1;
        }
    }
    fixed
}

/// The spec of `view`, and how many entries were skipped as invalid.
fn spec_of(view: &TablesView<'_>) -> (TableSpec, u64) {
    let mut spec = TableSpec::default();
    let mut invalid = 0;
    // SA table slot → index into `spec.sas`, for outbound SAs.
    let mut out_slot: FxHashMap<u32, usize> = FxHashMap::default();
    for (slot, e) in view.sas().iter().enumerate() {
        let (Some(direction), Some(algorithm), Some(key)) = (e.direction(), e.algorithm(), e.key())
        else {
            tracing::warn!(slot, spi = e.spi, "shared memory: invalid SA entry skipped");
            invalid += 1;
            continue;
        };
        if !scistream_region::spi_is_usable(e.spi) || key.len() != algorithm.key_len() {
            tracing::warn!(
                slot,
                spi = e.spi,
                "shared memory: SA with a reserved SPI or a wrong key length skipped"
            );
            invalid += 1;
            continue;
        }
        let duplicate = spec
            .sas
            .iter()
            .any(|s| s.spi == e.spi && s.direction == direction);
        if duplicate {
            tracing::warn!(
                slot,
                spi = e.spi,
                ?direction,
                "shared memory: duplicate SPI skipped"
            );
            invalid += 1;
            continue;
        }
        if direction == Direction::Out {
            out_slot.insert(slot as u32, spec.sas.len());
        }
        spec.sas.push(SaSpec {
            spi: e.spi,
            direction,
            algorithm,
            key: Zeroizing::new(key.to_vec()),
            salt: e.salt,
            esn: e.esn != 0,
            peer: e.peer(),
            rate_bps: if direction == Direction::Out {
                e.rate_bps
            } else {
                0
            },
            hard_packets: e.hard_packets,
            hard_seconds: e.hard_seconds,
            lane_of: (direction == Direction::Out && e.lane_of != 0).then_some(e.lane_of),
            // Keys from s2cs are always replay-checked.
            anti_replay: true,
        });
    }
    invalid += unlane_orphans(&mut spec.sas);
    for (i, r) in view.routes().iter().enumerate() {
        match (out_slot.get(&r.sa_slot), r.len_is_valid(), r.network()) {
            (Some(&sa), true, IpAddr::V4(prefix)) => spec.routes.push(RouteSpec {
                prefix,
                len: r.len,
                sa,
            }),
            (Some(&sa), true, IpAddr::V6(prefix)) => spec.routes6.push(Route6Spec {
                prefix,
                len: r.len,
                sa,
            }),
            _ => {
                tracing::warn!(
                    route = i,
                    sa_slot = r.sa_slot,
                    len = r.len,
                    "shared memory: route to a missing outbound SA, or with a bad length, skipped"
                );
                invalid += 1;
            }
        }
    }
    for (i, l) in view.listeners().iter().enumerate() {
        let (Some(role), Some(&sa)) = (l.role(), out_slot.get(&l.sa_slot)) else {
            tracing::warn!(
                listener = i,
                port = l.port,
                "shared memory: listener with a bad role or a missing outbound SA skipped"
            );
            invalid += 1;
            continue;
        };
        let to: SocketAddr = match role {
            scistream_region::ListenerRole::Outbound => l.remote(),
            scistream_region::ListenerRole::Inbound => l.target(),
        };
        spec.listeners.push(ListenerSpec {
            role,
            port: l.port,
            to,
            sa,
        });
    }
    (spec, invalid)
}
