//! The neighbour table (IPv4 and IPv6 → MAC), written by the slow path (ARP
//! and Neighbor Discovery) and read by the
//! workers without locks: the slow path publishes a new immutable table
//! through an `ArcSwap`; a worker loads the current one once per burst.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;

use crate::port::PortId;
use crate::wire::Mac;

/// How an entry was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NeighborKind {
    /// From the configuration; never expires.
    Static,
    /// Learned from ARP.
    Dynamic,
}

/// One neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbor {
    /// Its MAC address.
    pub mac: Mac,
    /// The port it is reachable on.
    pub port: PortId,
    /// How it was learned.
    pub kind: NeighborKind,
    /// When it was last confirmed.
    pub updated: Instant,
}

/// An immutable snapshot of the neighbour table.
#[derive(Debug, Clone, Default)]
pub struct NeighborTable {
    /// FxHash: the lookup runs once per forwarded frame, and the keys are
    /// addresses the slow path chose to learn (SipHash cost 17 % of a core
    /// at 64 B, see docs/benchmarks.md).
    entries: FxHashMap<IpAddr, Neighbor>,
}

impl NeighborTable {
    /// The neighbour for `ip` reachable on `port`.
    #[inline]
    pub fn get(&self, ip: impl Into<IpAddr>, port: PortId) -> Option<&Neighbor> {
        self.entries.get(&ip.into()).filter(|n| n.port == port)
    }

    /// All entries.
    pub fn iter(&self) -> impl Iterator<Item = (&IpAddr, &Neighbor)> {
        self.entries.iter()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The shared, lock-free-readable neighbour table.
#[derive(Debug, Default)]
pub struct Neighbors {
    current: ArcSwap<NeighborTable>,
}

impl Neighbors {
    /// A table holding the static entries `statics`.
    pub fn with_static<A: Into<IpAddr> + Copy>(statics: &[(A, Mac, PortId)]) -> Self {
        let now = Instant::now();
        let entries = statics
            .iter()
            .map(|&(ip, mac, port)| {
                (
                    ip.into(),
                    Neighbor {
                        mac,
                        port,
                        kind: NeighborKind::Static,
                        updated: now,
                    },
                )
            })
            .collect();
        Neighbors {
            current: ArcSwap::from_pointee(NeighborTable { entries }),
        }
    }

    /// The current snapshot (lock-free; cheap enough to call once per burst).
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<NeighborTable>> {
        self.current.load()
    }

    /// Records that `ip` is at `mac` on `port`. A static entry is never
    /// overridden. Returns true if the table changed (beyond a refresh time).
    pub fn learn(&self, ip: impl Into<IpAddr>, mac: Mac, port: PortId) -> bool {
        let ip = ip.into();
        let mut changed = false;
        self.current.rcu(|t| {
            let mut t = NeighborTable::clone(t);
            changed = match t.entries.get(&ip) {
                Some(n) if n.kind == NeighborKind::Static => false,
                Some(n) => n.mac != mac || n.port != port,
                None => true,
            };
            if t.entries
                .get(&ip)
                .is_none_or(|n| n.kind != NeighborKind::Static)
            {
                t.entries.insert(
                    ip,
                    Neighbor {
                        mac,
                        port,
                        kind: NeighborKind::Dynamic,
                        updated: Instant::now(),
                    },
                );
            }
            t
        });
        changed
    }

    /// Removes dynamic entries not confirmed since `cutoff`. Returns how many went.
    pub fn expire(&self, cutoff: Instant) -> usize {
        let mut removed = 0;
        self.current.rcu(|t| {
            let mut t = NeighborTable::clone(t);
            let before = t.entries.len();
            t.entries
                .retain(|_, n| n.kind == NeighborKind::Static || n.updated >= cutoff);
            removed = before - t.entries.len();
            t
        });
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn learns_updates_and_keeps_static_entries() {
        let gw = Ipv4Addr::new(10, 10, 100, 254);
        let n = Neighbors::with_static(&[(gw, [2, 0, 0, 0, 0, 0xfe], PortId::Wan)]);
        assert!(
            !n.learn(gw, [2, 0, 0, 0, 0, 0x11], PortId::Wan),
            "static entries stay"
        );
        assert_eq!(
            n.load().get(gw, PortId::Wan).unwrap().mac,
            [2, 0, 0, 0, 0, 0xfe]
        );
        let h = Ipv4Addr::new(10, 10, 1, 2);
        assert!(n.learn(h, [2, 0, 0, 0, 0, 2], PortId::Lan));
        assert!(
            !n.learn(h, [2, 0, 0, 0, 0, 2], PortId::Lan),
            "refresh is not a change"
        );
        assert!(n.learn(h, [2, 0, 0, 0, 0, 3], PortId::Lan));
        assert_eq!(
            n.load().get(h, PortId::Lan).unwrap().mac,
            [2, 0, 0, 0, 0, 3]
        );
        assert!(
            n.load().get(h, PortId::Wan).is_none(),
            "entries are per port"
        );
        assert_eq!(
            n.expire(Instant::now() + std::time::Duration::from_secs(1)),
            1
        );
        assert_eq!(n.load().len(), 1);
    }
}
