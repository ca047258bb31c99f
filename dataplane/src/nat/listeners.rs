//! The listeners of a gateway, indexed for the per-packet lookups.

use std::net::{IpAddr, SocketAddr};

use super::NatConfigError;

/// Most listeners of each kind: a connection-table key names the inbound
/// listener in 15 bits.
pub const MAX_LISTENERS: usize = 1 << 15;

/// A listener at the consumer-side (outbound) gateway B: consumers connect
/// to `lan`; B forwards to the producer-side listener `remote` through
/// outbound SA `sa`. `lan` and `remote` are of one family (IPv4 or IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundListener {
    /// `B_lan_ip:lport_i`, where consumers connect.
    pub lan: SocketAddr,
    /// `A_wan_ip:wport_i`, the producer-side listener it leads to.
    pub remote: SocketAddr,
    /// Index of the outbound SA to the producer-side gateway.
    pub sa: usize,
}

/// A listener at the producer-side (inbound) gateway A: flows arriving
/// through the tunnel for `listen` go to `target`; replies go back through
/// outbound SA `sa`. `listen` and `target` are of one family (IPv4 or IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundListener {
    /// `A_wan_ip:wport_i`, as the consumer side addresses it.
    pub listen: SocketAddr,
    /// `prod_ip:pport_i`, the producer application.
    pub target: SocketAddr,
    /// Index of the outbound SA back to the consumer-side gateway.
    pub sa: usize,
}

/// Both kinds of listener, with sorted indexes for the three per-packet
/// lookups (a binary search over a few cache lines; no hashing, no
/// allocation). IPv4 and IPv6 listeners share each index: an address is
/// packed into one sortable [`Packed`] key that includes its family.
/// Built once per configuration change.
#[derive(Debug, Clone, Default)]
pub struct Listeners {
    outbound: Vec<OutboundListener>,
    /// Inbound listeners by index; `None` is a free slot (see
    /// [`Listeners::with_inbound_slots`]).
    inbound: Vec<Option<InboundListener>>,
    /// (packed `lan`, index into `outbound`), sorted.
    by_lan: Vec<(Packed, u16)>,
    /// (packed `remote`, index into `outbound`), sorted.
    by_remote: Vec<(Packed, u16)>,
    /// (packed `listen`, index into `inbound`), sorted.
    by_listen: Vec<(Packed, u16)>,
}

impl Listeners {
    /// Indexes the listeners. Refuses duplicate LAN addresses, duplicate
    /// remotes (B could not tell the replies apart), duplicate inbound
    /// listen addresses, unusable addresses, listeners whose two addresses
    /// differ in family ([`NatConfigError::MixedFamily`]: listener mode does
    /// not translate between IPv4 and IPv6) and more than [`MAX_LISTENERS`]
    /// of a kind. A listener's index is its position in its vector.
    pub fn new(
        outbound: Vec<OutboundListener>,
        inbound: Vec<InboundListener>,
    ) -> Result<Self, NatConfigError> {
        Self::with_inbound_slots(outbound, inbound.into_iter().map(Some).collect())
    }

    /// Like [`Listeners::new`], but an inbound listener's index is its slot
    /// in `inbound`, and slots may be free (`None`). Tables rebuilt while
    /// traffic flows keep each inbound listener in its slot, so connections
    /// the producer-side NAT tracks (which name their listener by index)
    /// survive the addition and removal of other listeners.
    pub fn with_inbound_slots(
        outbound: Vec<OutboundListener>,
        inbound: Vec<Option<InboundListener>>,
    ) -> Result<Self, NatConfigError> {
        for (what, count) in [("outbound", outbound.len()), ("inbound", inbound.len())] {
            if count > MAX_LISTENERS {
                return Err(NatConfigError::TooMany {
                    what,
                    count,
                    max: MAX_LISTENERS,
                });
            }
        }
        for o in &outbound {
            check_addr("outbound lan", o.lan)?;
            check_addr("outbound remote", o.remote)?;
            check_family("outbound", o.lan, o.remote)?;
        }
        for i in inbound.iter().flatten() {
            check_addr("inbound listen", i.listen)?;
            check_addr("inbound target", i.target)?;
            check_family("inbound", i.listen, i.target)?;
        }
        let by_lan = index("outbound lan", outbound.iter().map(|o| o.lan).enumerate())?;
        let by_remote = index(
            "outbound remote",
            outbound.iter().map(|o| o.remote).enumerate(),
        )?;
        let by_listen = index(
            "inbound listen",
            inbound
                .iter()
                .enumerate()
                .filter_map(|(n, i)| i.map(|i| (n, i.listen))),
        )?;
        Ok(Self {
            outbound,
            inbound,
            by_lan,
            by_remote,
            by_listen,
        })
    }

    /// The outbound listener whose LAN address is `dst` (B, packets from consumers).
    #[inline]
    pub fn match_consumer(&self, dst: SocketAddr) -> Option<usize> {
        find(&self.by_lan, dst)
    }

    /// The outbound listener whose remote is `src` (B, packets out of the tunnel).
    #[inline]
    pub fn match_remote_reply(&self, src: SocketAddr) -> Option<usize> {
        find(&self.by_remote, src)
    }

    /// True when `ip` is the host of some outbound listener's remote (the
    /// peer gateway's listener address): packets from it may be listener
    /// traffic. A scan, for the rare packets that carry no ports.
    pub fn is_remote_host(&self, ip: IpAddr) -> bool {
        self.outbound.iter().any(|o| o.remote.ip() == ip)
    }

    /// The inbound listener listening on `dst` (A, packets out of the tunnel).
    #[inline]
    pub fn match_inbound(&self, dst: SocketAddr) -> Option<usize> {
        find(&self.by_listen, dst)
    }

    /// Outbound listener `i`.
    ///
    /// # Panics
    /// If `i` is not an index this `Listeners` returned (a caller bug).
    #[inline]
    pub fn outbound(&self, i: usize) -> &OutboundListener {
        &self.outbound[i]
    }

    /// Inbound listener `i`.
    ///
    /// # Panics
    /// If `i` is not an index this `Listeners` returned (a caller bug).
    #[inline]
    pub fn inbound(&self, i: usize) -> &InboundListener {
        self.inbound[i]
            .as_ref()
            .expect("an index match_inbound or the NAT returned")
    }

    /// Inbound listener `i`, or None if there is none (an index remembered
    /// from an earlier configuration).
    #[inline]
    pub fn get_inbound(&self, i: usize) -> Option<&InboundListener> {
        self.inbound.get(i).and_then(Option::as_ref)
    }

    /// Number of outbound listeners.
    pub fn outbound_len(&self) -> usize {
        self.outbound.len()
    }

    /// Number of inbound slots, free ones included (indexes are below it).
    pub fn inbound_slots(&self) -> usize {
        self.inbound.len()
    }

    /// Number of inbound listeners (free slots not counted).
    pub fn inbound_len(&self) -> usize {
        self.inbound.iter().flatten().count()
    }
}

/// A socket address packed into one sortable key: the address as a
/// `u128` (an IPv4 address in the low 32 bits), then the family (bit 16)
/// and the port. IPv4 `a.b.c.d` and IPv6 `::a.b.c.d` differ by the family
/// bit; an IPv6 scope id or flow label is not part of the key (packets
/// carry neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Packed(u128, u32);

impl Packed {
    #[inline]
    fn of(a: SocketAddr) -> Self {
        match a {
            SocketAddr::V4(a) => Packed(u128::from(u32::from(*a.ip())), u32::from(a.port())),
            SocketAddr::V6(a) => Packed(u128::from(*a.ip()), 1 << 16 | u32::from(a.port())),
        }
    }

    fn unpack(self) -> SocketAddr {
        let port = self.1 as u16;
        if self.1 >> 16 == 0 {
            SocketAddr::new(IpAddr::V4((self.0 as u32).into()), port)
        } else {
            SocketAddr::new(IpAddr::V6(self.0.into()), port)
        }
    }
}

fn check_addr(what: &'static str, addr: SocketAddr) -> Result<(), NatConfigError> {
    let unusable = match addr.ip() {
        IpAddr::V4(ip) => ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast(),
        // IPv4-mapped addresses never appear on an IPv6 wire (RFC 4291
        // §2.5.5.2); link-local is allowed (the LAN may be link-local only).
        IpAddr::V6(ip) => {
            ip.is_unspecified()
                || ip.is_multicast()
                || ip.is_loopback()
                || ip.to_ipv4_mapped().is_some()
        }
    };
    if addr.port() == 0 || unusable {
        return Err(NatConfigError::InvalidAddress { what, addr });
    }
    Ok(())
}

fn check_family(what: &'static str, a: SocketAddr, b: SocketAddr) -> Result<(), NatConfigError> {
    if a.is_ipv4() != b.is_ipv4() {
        return Err(NatConfigError::MixedFamily { what, a, b });
    }
    Ok(())
}

fn index(
    what: &'static str,
    addrs: impl Iterator<Item = (usize, SocketAddr)>,
) -> Result<Vec<(Packed, u16)>, NatConfigError> {
    // Indexes fit u16: the count was checked against MAX_LISTENERS.
    let mut v: Vec<(Packed, u16)> = addrs.map(|(i, a)| (Packed::of(a), i as u16)).collect();
    v.sort_unstable();
    if let Some(w) = v.windows(2).find(|w| w[0].0 == w[1].0) {
        let addr = w[0].0.unpack();
        return Err(NatConfigError::Duplicate { what, addr });
    }
    Ok(v)
}

#[inline]
fn find(index: &[(Packed, u16)], a: SocketAddr) -> Option<usize> {
    let key = Packed::of(a);
    index
        .binary_search_by_key(&key, |e| e.0)
        .ok()
        .map(|p| usize::from(index[p].1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::testutil::{sa, sa6};

    fn out(lan: SocketAddr, remote: SocketAddr, sa: usize) -> OutboundListener {
        OutboundListener { lan, remote, sa }
    }

    fn inb(listen: SocketAddr, target: SocketAddr, sa: usize) -> InboundListener {
        InboundListener { listen, target, sa }
    }

    #[test]
    fn lookups_find_each_listener_by_its_own_key_only() {
        let o = vec![
            out(sa([10, 2, 0, 1], 6000), sa([198, 51, 100, 1], 7000), 0),
            out(sa([10, 2, 0, 1], 6001), sa([198, 51, 100, 1], 7001), 1),
            out(sa([10, 2, 0, 9], 6000), sa([198, 51, 100, 2], 7000), 2),
        ];
        let i = vec![
            inb(sa([198, 51, 100, 1], 7001), sa([10, 1, 0, 5], 5001), 4),
            inb(sa([198, 51, 100, 1], 7000), sa([10, 1, 0, 5], 5000), 3),
        ];
        let l = Listeners::new(o, i).unwrap();
        assert_eq!(l.match_consumer(sa([10, 2, 0, 1], 6001)), Some(1));
        assert_eq!(l.match_consumer(sa([10, 2, 0, 9], 6000)), Some(2));
        assert_eq!(l.match_consumer(sa([10, 2, 0, 1], 6002)), None);
        assert_eq!(l.match_consumer(sa([198, 51, 100, 1], 7000)), None);
        assert_eq!(l.match_remote_reply(sa([198, 51, 100, 2], 7000)), Some(2));
        assert_eq!(l.match_remote_reply(sa([10, 2, 0, 1], 6000)), None);
        assert_eq!(l.match_inbound(sa([198, 51, 100, 1], 7000)), Some(1));
        assert_eq!(l.match_inbound(sa([198, 51, 100, 1], 7001)), Some(0));
        assert_eq!(l.match_inbound(sa([198, 51, 100, 9], 7001)), None);
        assert_eq!(l.inbound(1).sa, 3);
        assert_eq!(l.outbound(2).remote, sa([198, 51, 100, 2], 7000));
        assert!(l.get_inbound(2).is_none());
        assert_eq!((l.outbound_len(), l.inbound_len()), (3, 2));
    }

    #[test]
    fn inbound_slots_keep_their_index_around_free_slots() {
        let a = inb(sa([198, 51, 100, 1], 7000), sa([10, 1, 0, 5], 5000), 0);
        let b = inb(sa([198, 51, 100, 1], 7002), sa([10, 1, 0, 6], 5000), 1);
        let l = Listeners::with_inbound_slots(vec![], vec![None, Some(a), None, Some(b)]).unwrap();
        assert_eq!(l.match_inbound(a.listen), Some(1));
        assert_eq!(l.match_inbound(b.listen), Some(3));
        assert!(l.get_inbound(0).is_none() && l.get_inbound(2).is_none());
        assert_eq!(l.get_inbound(3), Some(&b));
        assert_eq!(l.inbound_len(), 2);
    }

    #[test]
    fn refuses_duplicates_and_unusable_addresses() {
        let a = sa([10, 2, 0, 1], 6000);
        let r = sa([198, 51, 100, 1], 7000);
        let r2 = sa([198, 51, 100, 1], 7001);
        assert_eq!(
            Listeners::new(vec![out(a, r, 0), out(a, r2, 0)], vec![]).unwrap_err(),
            NatConfigError::Duplicate {
                what: "outbound lan",
                addr: a
            }
        );
        let a2 = sa([10, 2, 0, 1], 6001);
        assert_eq!(
            Listeners::new(vec![out(a, r, 0), out(a2, r, 0)], vec![]).unwrap_err(),
            NatConfigError::Duplicate {
                what: "outbound remote",
                addr: r
            }
        );
        let t = sa([10, 1, 0, 5], 5000);
        assert_eq!(
            Listeners::new(vec![], vec![inb(r, t, 0), inb(r, t, 1)]).unwrap_err(),
            NatConfigError::Duplicate {
                what: "inbound listen",
                addr: r
            }
        );
        let zero_port = sa([10, 1, 0, 5], 0);
        assert_eq!(
            Listeners::new(vec![], vec![inb(r, zero_port, 0)]).unwrap_err(),
            NatConfigError::InvalidAddress {
                what: "inbound target",
                addr: zero_port
            }
        );
        let bcast = sa([255, 255, 255, 255], 1);
        assert!(matches!(
            Listeners::new(vec![out(bcast, r, 0)], vec![]),
            Err(NatConfigError::InvalidAddress { .. })
        ));
        let many = (0..=MAX_LISTENERS as u32)
            .map(|n| inb(sa((0x0a00_0000 + n).to_be_bytes(), 1), t, 0))
            .collect();
        assert!(matches!(
            Listeners::new(vec![], many),
            Err(NatConfigError::TooMany { count, .. }) if count == MAX_LISTENERS + 1
        ));
    }

    #[test]
    fn ipv6_listeners_are_found_by_their_own_family_only() {
        let o = vec![
            out(sa([10, 2, 0, 1], 6000), sa([198, 51, 100, 1], 7000), 0),
            out(sa6("fd00:2::1", 6000), sa6("2001:db8:a::1", 7000), 1),
            out(sa6("fe80::1", 6001), sa6("fe80::a", 7001), 2),
        ];
        let i = vec![
            inb(sa6("2001:db8:a::1", 7000), sa6("fd00:1::5", 5000), 3),
            inb(sa([198, 51, 100, 1], 7000), sa([10, 1, 0, 5], 5000), 4),
        ];
        let l = Listeners::new(o, i).unwrap();
        assert_eq!(l.match_consumer(sa6("fd00:2::1", 6000)), Some(1));
        assert_eq!(l.match_consumer(sa([10, 2, 0, 1], 6000)), Some(0));
        assert_eq!(l.match_consumer(sa6("fe80::1", 6001)), Some(2));
        assert_eq!(l.match_consumer(sa6("fd00:2::1", 6001)), None);
        // ::10.2.0.1 and ::ffff:10.2.0.1 are not 10.2.0.1.
        assert_eq!(l.match_consumer(sa6("::10.2.0.1", 6000)), None);
        assert_eq!(l.match_consumer(sa6("::ffff:10.2.0.1", 6000)), None);
        assert_eq!(l.match_remote_reply(sa6("2001:db8:a::1", 7000)), Some(1));
        assert_eq!(l.match_inbound(sa6("2001:db8:a::1", 7000)), Some(0));
        assert_eq!(l.match_inbound(sa([198, 51, 100, 1], 7000)), Some(1));
        assert!(l.is_remote_host("2001:db8:a::1".parse().unwrap()));
        assert!(l.is_remote_host([198, 51, 100, 1].into()));
        assert!(!l.is_remote_host("2001:db8:a::2".parse().unwrap()));
    }

    #[test]
    fn refuses_mixed_families_and_unusable_ipv6_addresses() {
        let lan6 = sa6("fd00:2::1", 6000);
        let remote4 = sa([198, 51, 100, 1], 7000);
        assert_eq!(
            Listeners::new(vec![out(lan6, remote4, 0)], vec![]).unwrap_err(),
            NatConfigError::MixedFamily {
                what: "outbound",
                a: lan6,
                b: remote4
            }
        );
        let listen4 = sa([198, 51, 100, 1], 7000);
        let target6 = sa6("fd00:1::5", 5000);
        assert_eq!(
            Listeners::with_inbound_slots(vec![], vec![None, Some(inb(listen4, target6, 0))])
                .unwrap_err(),
            NatConfigError::MixedFamily {
                what: "inbound",
                a: listen4,
                b: target6
            }
        );
        let good = sa6("2001:db8:a::1", 7000);
        for bad in ["::", "ff02::1", "::1", "::ffff:10.1.0.5"] {
            let addr = sa6(bad, 5000);
            assert_eq!(
                Listeners::new(vec![], vec![inb(good, addr, 0)]).unwrap_err(),
                NatConfigError::InvalidAddress {
                    what: "inbound target",
                    addr
                },
                "{bad}"
            );
        }
        let zero = sa6("fd00:1::5", 0);
        assert!(matches!(
            Listeners::new(vec![], vec![inb(good, zero, 0)]),
            Err(NatConfigError::InvalidAddress { .. })
        ));
        assert_eq!(
            Listeners::new(vec![], vec![inb(good, target6, 0), inb(good, target6, 1)]).unwrap_err(),
            NatConfigError::Duplicate {
                what: "inbound listen",
                addr: good
            }
        );
        // The same port on an IPv4 and an IPv6 address is two listeners.
        let both = vec![
            inb(sa([198, 51, 100, 1], 7000), sa([10, 1, 0, 5], 5000), 0),
            inb(sa6("2001:db8:a::1", 7000), target6, 1),
        ];
        assert!(Listeners::new(vec![], both).is_ok());
    }
}
