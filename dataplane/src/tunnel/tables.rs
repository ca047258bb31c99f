//! SA and tunnel-route tables: immutable snapshots published through an
//! `ArcSwap`, loaded once per burst by each worker.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::tunnel::{Direction, TunnelSection};
use crate::crypto::{CryptoError, EngineKind, SaKey};
use crate::esp::{InboundSa, OutboundSa, Outer};
use crate::port::prefix_mask;

/// An outbound SA and where its packets go.
#[derive(Debug)]
pub struct OutboundEntry {
    /// The SA (key, SPI, sequence counter shared by all workers).
    pub sa: OutboundSa,
    /// Outer addresses and ports.
    pub outer: Outer,
}

/// An inbound SA.
#[derive(Debug)]
pub struct InboundEntry {
    /// The SA.
    pub sa: InboundSa,
    /// The peer's WAN address (outer source we expect).
    pub peer: Ipv4Addr,
}

/// One snapshot of the tunnel tables.
#[derive(Debug)]
pub struct TunnelTables {
    /// Bumped on every publish; workers drop per-SA state of SAs that went.
    pub generation: u64,
    /// The AEAD engine.
    pub engine: EngineKind,
    /// Our ESP-in-UDP port.
    pub udp_port: u16,
    outbound: Vec<Arc<OutboundEntry>>,
    inbound: HashMap<u32, Arc<InboundEntry>>,
    /// (network, mask, prefix length, index into `outbound`), longest first.
    routes: Vec<(u32, u32, u8, usize)>,
}

impl TunnelTables {
    /// Builds tables from the manually keyed configuration; `wan_ip` is the outer source.
    pub fn from_config(
        t: &TunnelSection,
        wan_ip: Ipv4Addr,
        generation: u64,
    ) -> Result<Self, CryptoError> {
        let mut outbound = Vec::new();
        let mut inbound = HashMap::new();
        for s in &t.sas {
            let peer = &t.peers[s.peer];
            let key = SaKey::new(t.engine, s.algorithm, &s.key, s.salt)?;
            match s.direction {
                Direction::Out => outbound.push(Arc::new(OutboundEntry {
                    sa: OutboundSa::new(s.spi, key, s.esn),
                    outer: Outer {
                        src: wan_ip,
                        dst: peer.address,
                        sport: t.udp_port,
                        dport: peer.udp_port,
                        ttl: 64,
                    },
                })),
                Direction::In => {
                    inbound.insert(
                        s.spi,
                        Arc::new(InboundEntry {
                            sa: InboundSa {
                                spi: s.spi,
                                key,
                                esn: s.esn,
                            },
                            peer: peer.address,
                        }),
                    );
                }
            }
        }
        let mut routes: Vec<(u32, u32, u8, usize)> = t
            .routes
            .iter()
            .filter_map(|r| {
                let idx = outbound.iter().position(|o| o.sa.spi == r.spi)?;
                let mask = prefix_mask(r.prefix.prefix_len());
                Some((
                    u32::from(r.prefix.network()) & mask,
                    mask,
                    r.prefix.prefix_len(),
                    idx,
                ))
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.2));
        Ok(TunnelTables {
            generation,
            engine: t.engine,
            udp_port: t.udp_port,
            outbound,
            inbound,
            routes,
        })
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

    /// True if an inbound SA has `spi`.
    pub fn has_inbound(&self, spi: u32) -> bool {
        self.inbound.contains_key(&spi)
    }
}

/// Where workers get the current tables. The static configuration
/// implements it now; the control process's shared-memory reader later.
pub trait TableSource: Send + Sync {
    /// The current snapshot (lock-free; loaded once per burst).
    fn load(&self) -> arc_swap::Guard<Arc<TunnelTables>>;
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
