//! The producer-side gateway A: translation through the connection table.

use std::net::SocketAddr;

use super::conntrack::{FlowKey, F_FIN_FWD, F_FIN_REV, F_RST, F_TCP_STATE};
use super::packet::{self, classify, Flow, Packet, Proto};
use super::{ConnTable, InboundListener, Listeners, NatError};

impl ConnTable {
    /// Step 2 (A, after decapsulation). `pkt` is an IPv4 or IPv6 packet
    /// from a consumer to one of A's listeners, `c:cp → A_wan:wport_i`; it
    /// becomes `A_lan:m → target_i`, where `A_lan` is A's LAN address of the
    /// packet's family and `m` the flow's mapped port (found, or claimed for
    /// a new flow). An ICMP or ICMPv6 error about a packet A sent to the
    /// consumer (`A_wan:wport_i → c:cp`) becomes one from `A_lan_ip` to the
    /// producer quoting `target_i → A_lan:m`; it needs a live mapping and
    /// does not refresh it. A packet of a family the table has no LAN
    /// address for is [`NatError::NoListener`]. Returns the listener index.
    pub fn inbound_forward(
        &self,
        pkt: &mut [u8],
        l: &Listeners,
        now: u32,
    ) -> Result<usize, NatError> {
        match classify(pkt)? {
            Packet::Flow(f) => {
                let lan = self.lan_for(f.dst.ip()).ok_or(NatError::NoListener)?;
                let i = l.match_inbound(f.dst).ok_or(NatError::NoListener)?;
                let key = FlowKey {
                    proto: f.proto,
                    listener: i,
                    consumer: f.src,
                };
                let (set, clear) = forward_flags(&f);
                let hit = self.track(&key, now, set, clear)?;
                let mapped = SocketAddr::new(lan, self.port_of(hit.slot));
                f.set_src(pkt, mapped);
                f.set_dst(pkt, l.inbound(i).target);
                Ok(i)
            }
            Packet::IcmpError(e) => {
                let lan = self.lan_for(e.src.ip()).ok_or(NatError::NoListener)?;
                let i = l.match_inbound(e.src).ok_or(NatError::NoListener)?;
                if e.outer_dst != e.src.ip() {
                    return Err(NatError::Malformed);
                }
                let key = FlowKey {
                    proto: e.proto,
                    listener: i,
                    consumer: e.dst,
                };
                let hit = self.find(&key).ok_or(NatError::NoMapping)?;
                let mapped = SocketAddr::new(lan, self.port_of(hit.slot));
                let target = l.inbound(i).target;
                e.translate(pkt, lan, target.ip(), target, mapped);
                Ok(i)
            }
        }
    }

    /// Step 3 (A, LAN ingress). `pkt` is an IPv4 or IPv6 packet from the
    /// producer to a mapped port, `target_i → A_lan:m`; it becomes
    /// `A_wan:wport_i → c:cp`. It must come from the target of the entry's
    /// listener, with the entry's protocol and family. An ICMP or ICMPv6
    /// error from A's LAN about a packet A sent to the producer (`A_lan:m →
    /// target_i`) becomes one from `A_wan_ip` to the consumer quoting `c:cp
    /// → A_wan:wport_i`. Returns the listener index, whose SA seals the packet.
    pub fn inbound_reply(
        &self,
        pkt: &mut [u8],
        l: &Listeners,
        now: u32,
    ) -> Result<usize, NatError> {
        match classify(pkt)? {
            Packet::Flow(f) => {
                if Some(f.dst.ip()) != self.lan_for(f.dst.ip()) {
                    return Err(NatError::NoMapping);
                }
                let slot = self.slot_of(f.dst.port()).ok_or(NatError::NoMapping)?;
                let (hit, key) = self.entry(slot).ok_or(NatError::NoMapping)?;
                let listener = l.get_inbound(key.listener).ok_or(NatError::NoListener)?;
                if key.proto != f.proto || !answers(listener, &key, f.src) {
                    return Err(NatError::NoMapping);
                }
                if !self.touch(hit, now, reply_flags(&f), 0) {
                    return Err(NatError::NoMapping); // expired a moment ago
                }
                f.set_src(pkt, listener.listen);
                f.set_dst(pkt, key.consumer);
                Ok(key.listener)
            }
            Packet::IcmpError(e) => {
                let lan = self.lan_for(e.src.ip());
                if Some(e.outer_dst) != lan || Some(e.src.ip()) != lan {
                    return Err(NatError::NoMapping);
                }
                let slot = self.slot_of(e.src.port()).ok_or(NatError::NoMapping)?;
                let (_, key) = self.entry(slot).ok_or(NatError::NoMapping)?;
                let listener = l.get_inbound(key.listener).ok_or(NatError::NoListener)?;
                if key.proto != e.proto || !answers(listener, &key, e.dst) {
                    return Err(NatError::NoMapping);
                }
                let listen = listener.listen;
                e.translate(pkt, listen.ip(), key.consumer.ip(), key.consumer, listen);
                Ok(key.listener)
            }
        }
    }

    /// True if `pkt` looks like step-3 traffic for this table: TCP or UDP to
    /// A's LAN address of its family at a mapped port, or an ICMP/ICMPv6
    /// error to that address quoting a packet sent from a mapped port. A
    /// cheap pre-check for the worker's classifier (it does not consult the
    /// entries); [`inbound_reply`] decides.
    ///
    /// [`inbound_reply`]: Self::inbound_reply
    pub fn is_reply_candidate(&self, pkt: &[u8]) -> bool {
        match classify(pkt) {
            Ok(Packet::Flow(f)) => {
                Some(f.dst.ip()) == self.lan_for(f.dst.ip()) && self.is_mapped_port(f.dst.port())
            }
            Ok(Packet::IcmpError(e)) => {
                let lan = self.lan_for(e.src.ip());
                Some(e.outer_dst) == lan
                    && Some(e.src.ip()) == lan
                    && self.is_mapped_port(e.src.port())
            }
            Err(_) => false,
        }
    }
}

/// True if a packet from `from` answers the entry `key` of `listener`: it
/// comes from the listener's target (address and port), and the entry, the
/// listener and the packet are of one family (a listener slot reused by a
/// listener of the other family must not take over an old entry).
#[inline]
fn answers(listener: &InboundListener, key: &FlowKey, from: SocketAddr) -> bool {
    let target = listener.target;
    target.ip() == from.ip()
        && target.port() == from.port()
        && key.consumer.is_ipv4() == from.is_ipv4()
        && listener.listen.is_ipv4() == from.is_ipv4()
}

/// Flags to set and clear for a packet from the consumer: FIN and RST are
/// recorded; a SYN without ACK starts a new connection on the same key and
/// clears what the last one left.
fn forward_flags(f: &Flow) -> (u64, u64) {
    if f.proto != Proto::Tcp {
        return (0, 0);
    }
    let t = f.tcp_flags;
    let clear = if t & packet::TCP_SYN != 0 && t & packet::TCP_ACK == 0 {
        F_TCP_STATE
    } else {
        0
    };
    let mut set = 0;
    if t & packet::TCP_FIN != 0 {
        set |= F_FIN_FWD;
    }
    if t & packet::TCP_RST != 0 {
        set |= F_RST;
    }
    (set, clear)
}

/// Flags to set for a packet from the producer.
fn reply_flags(f: &Flow) -> u64 {
    if f.proto != Proto::Tcp {
        return 0;
    }
    let mut set = 0;
    if f.tcp_flags & packet::TCP_FIN != 0 {
        set |= F_FIN_REV;
    }
    if f.tcp_flags & packet::TCP_RST != 0 {
        set |= F_RST;
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::packet::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
    use crate::nat::testutil::*;
    use crate::nat::{InboundListener, Timeouts};

    const CONS: [u8; 4] = [10, 2, 0, 7];
    const A_WAN: [u8; 4] = [198, 51, 100, 1];
    const A_LAN: [u8; 4] = [10, 1, 0, 1];
    const PROD: [u8; 4] = [10, 1, 0, 5];
    const BASE: u16 = 40000;

    fn listeners() -> Listeners {
        Listeners::new(
            vec![],
            vec![
                InboundListener {
                    listen: sa(A_WAN, 7000),
                    target: sa(PROD, 5000),
                    sa: 3,
                },
                InboundListener {
                    listen: sa(A_WAN, 7001),
                    target: sa(PROD, 5001),
                    sa: 4,
                },
            ],
        )
        .unwrap()
    }

    fn table(slots: usize) -> ConnTable {
        ConnTable::new(Some(ip4(A_LAN)), None, BASE, slots, Timeouts::default()).unwrap()
    }

    fn src_port(p: &[u8]) -> u16 {
        u16::from_be_bytes([p[20], p[21]])
    }

    fn dst_port(p: &[u8]) -> u16 {
        u16::from_be_bytes([p[22], p[23]])
    }

    #[test]
    fn tcp_forward_and_reply_are_translated_exactly() {
        let (l, t) = (listeners(), table(1024));
        let mut syn = tcp(sa(CONS, 40001), sa(A_WAN, 7000), TCP_SYN, b"");
        assert_eq!(t.inbound_forward(&mut syn, &l, 5), Ok(0));
        let m = src_port(&syn);
        assert!(t.is_mapped_port(m));
        assert_eq!(syn, tcp(sa(A_LAN, m), sa(PROD, 5000), TCP_SYN, b""));
        verify(&syn);
        assert_eq!(t.active(), 1);

        let mut syn_ack = tcp(sa(PROD, 5000), sa(A_LAN, m), TCP_SYN | TCP_ACK, b"");
        assert!(t.is_reply_candidate(&syn_ack));
        assert_eq!(t.inbound_reply(&mut syn_ack, &l, 5), Ok(0));
        let want = tcp(sa(A_WAN, 7000), sa(CONS, 40001), TCP_SYN | TCP_ACK, b"");
        assert_eq!(syn_ack, want);
        verify(&syn_ack);

        // The same flow keeps its port; data passes unchanged.
        let mut data = tcp(sa(CONS, 40001), sa(A_WAN, 7000), TCP_ACK, b"payload");
        assert_eq!(t.inbound_forward(&mut data, &l, 6), Ok(0));
        assert_eq!(data, tcp(sa(A_LAN, m), sa(PROD, 5000), TCP_ACK, b"payload"));
        assert_eq!(t.active(), 1);
    }

    #[test]
    fn udp_forward_and_reply_are_translated_exactly() {
        let (l, t) = (listeners(), table(1024));
        let mut p = udp(sa(CONS, 53000), sa(A_WAN, 7001), b"frame 1");
        assert_eq!(t.inbound_forward(&mut p, &l, 0), Ok(1));
        let m = src_port(&p);
        assert_eq!(p, udp(sa(A_LAN, m), sa(PROD, 5001), b"frame 1"));
        verify(&p);
        let mut r = udp(sa(PROD, 5001), sa(A_LAN, m), b"ack");
        assert_eq!(t.inbound_reply(&mut r, &l, 0), Ok(1));
        assert_eq!(r, udp(sa(A_WAN, 7001), sa(CONS, 53000), b"ack"));
        verify(&r);
    }

    #[test]
    fn one_consumer_port_on_two_listeners_or_protocols_gets_two_mappings() {
        let (l, t) = (listeners(), table(1024));
        let mut a = udp(sa(CONS, 53000), sa(A_WAN, 7000), b"a");
        let mut b = udp(sa(CONS, 53000), sa(A_WAN, 7001), b"b");
        let mut c = tcp(sa(CONS, 53000), sa(A_WAN, 7000), TCP_SYN, b"");
        t.inbound_forward(&mut a, &l, 0).unwrap();
        t.inbound_forward(&mut b, &l, 0).unwrap();
        t.inbound_forward(&mut c, &l, 0).unwrap();
        let ports = [src_port(&a), src_port(&b), src_port(&c)];
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
        assert_eq!(t.active(), 3);
    }

    #[test]
    fn replies_that_do_not_match_the_entry_are_refused() {
        let (l, t) = (listeners(), table(1024));
        let mut p = udp(sa(CONS, 53000), sa(A_WAN, 7000), b"x");
        t.inbound_forward(&mut p, &l, 0).unwrap();
        let m = src_port(&p);
        let cases = [
            // From the other listener's target.
            udp(sa(PROD, 5001), sa(A_LAN, m), b"x"),
            // From another host.
            udp(sa([10, 1, 0, 6], 5000), sa(A_LAN, m), b"x"),
            // TCP to a UDP mapping.
            tcp(sa(PROD, 5000), sa(A_LAN, m), TCP_ACK, b""),
            // A free port in the pool, a port below it, above it, another address.
            udp(sa(PROD, 5000), sa(A_LAN, m.wrapping_add(1)), b"x"),
            udp(sa(PROD, 5000), sa(A_LAN, BASE - 1), b"x"),
            udp(sa(PROD, 5000), sa(A_LAN, BASE + 1024), b"x"),
            udp(sa(PROD, 5000), sa([10, 1, 0, 2], m), b"x"),
        ];
        for (n, mut c) in cases.into_iter().enumerate() {
            let before = c.clone();
            assert_eq!(
                t.inbound_reply(&mut c, &l, 0),
                Err(NatError::NoMapping),
                "case {n}"
            );
            assert_eq!(c, before, "case {n} left unchanged");
        }
        let mut none = udp(sa(CONS, 53000), sa(A_WAN, 7002), b"x");
        assert_eq!(
            t.inbound_forward(&mut none, &l, 0),
            Err(NatError::NoListener)
        );
        assert!(!t.is_reply_candidate(&udp(sa(PROD, 5000), sa(A_LAN, BASE - 1), b"x")));
    }

    #[test]
    fn a_thousand_consumer_ports_get_distinct_ports_and_replies_find_them() {
        let (l, t) = (listeners(), table(16384));
        let mut mapped = std::collections::HashMap::new();
        for cp in 20000..21000u16 {
            let mut p = udp(sa(CONS, cp), sa(A_WAN, 7000), &cp.to_be_bytes());
            assert_eq!(t.inbound_forward(&mut p, &l, 1), Ok(0));
            assert!(mapped.insert(src_port(&p), cp).is_none(), "port reused");
        }
        assert_eq!(t.active(), 1000);
        for (&m, &cp) in &mapped {
            let mut r = udp(sa(PROD, 5000), sa(A_LAN, m), &cp.to_be_bytes());
            assert_eq!(t.inbound_reply(&mut r, &l, 2), Ok(0));
            assert_eq!(r, udp(sa(A_WAN, 7000), sa(CONS, cp), &cp.to_be_bytes()));
        }
        // Second packets find the same mapping.
        for cp in 20000..21000u16 {
            let mut p = udp(sa(CONS, cp), sa(A_WAN, 7000), b"again");
            t.inbound_forward(&mut p, &l, 3).unwrap();
            assert_eq!(mapped[&src_port(&p)], cp);
        }
        assert_eq!(t.active(), 1000);
    }

    #[test]
    fn udp_entries_expire_when_idle_and_traffic_keeps_them() {
        let (l, t) = (listeners(), table(64));
        let mut p = udp(sa(CONS, 53000), sa(A_WAN, 7000), b"x");
        t.inbound_forward(&mut p, &l, 100).unwrap();
        let m = src_port(&p);
        assert_eq!(t.expire(159), 0);
        // A reply at 150 refreshes the entry.
        let mut r = udp(sa(PROD, 5000), sa(A_LAN, m), b"y");
        t.inbound_reply(&mut r, &l, 150).unwrap();
        assert_eq!(t.expire(209), 0);
        assert_eq!(t.expire(210), 1);
        assert_eq!(t.active(), 0);
        let mut late = udp(sa(PROD, 5000), sa(A_LAN, m), b"y");
        assert_eq!(
            t.inbound_reply(&mut late, &l, 211),
            Err(NatError::NoMapping)
        );
        // A stale clock in a worker never makes an entry look idle.
        let mut p = udp(sa(CONS, 53000), sa(A_WAN, 7000), b"x");
        t.inbound_forward(&mut p, &l, 300).unwrap();
        assert_eq!(t.expire(299), 0);
        assert_eq!(t.active(), 1);
    }

    fn tcp_flow(t: &ConnTable, l: &Listeners, cp: u16, now: u32) -> u16 {
        let mut p = tcp(sa(CONS, cp), sa(A_WAN, 7000), TCP_SYN, b"");
        t.inbound_forward(&mut p, l, now).unwrap();
        src_port(&p)
    }

    #[test]
    fn tcp_rst_or_fin_both_ways_shortens_the_timeout() {
        let (l, t) = (listeners(), table(64));
        let established = tcp_flow(&t, &l, 1000, 0);
        let reset = tcp_flow(&t, &l, 1001, 0);
        let fin_both = tcp_flow(&t, &l, 1002, 0);
        let fin_one = tcp_flow(&t, &l, 1003, 0);
        let mut rst = tcp(sa(PROD, 5000), sa(A_LAN, reset), TCP_RST, b"");
        t.inbound_reply(&mut rst, &l, 1).unwrap();
        let mut f1 = tcp(sa(CONS, 1002), sa(A_WAN, 7000), TCP_FIN | TCP_ACK, b"");
        t.inbound_forward(&mut f1, &l, 1).unwrap();
        assert_eq!(src_port(&f1), fin_both);
        let mut f2 = tcp(sa(PROD, 5000), sa(A_LAN, fin_both), TCP_FIN | TCP_ACK, b"");
        t.inbound_reply(&mut f2, &l, 1).unwrap();
        let mut f3 = tcp(sa(CONS, 1003), sa(A_WAN, 7000), TCP_FIN | TCP_ACK, b"");
        t.inbound_forward(&mut f3, &l, 1).unwrap();
        assert_eq!(t.expire(10), 0);
        assert_eq!(t.expire(11), 2, "RST and FIN-both-ways entries");
        assert_eq!(t.active(), 2);
        assert!(t.entry(usize::from(reset - BASE)).is_none());
        assert!(t.entry(usize::from(fin_both - BASE)).is_none());
        assert_eq!(t.expire(299), 0);
        assert_eq!(t.expire(301), 2);
        let _ = (established, fin_one);
    }

    #[test]
    fn a_new_syn_on_a_closed_key_gets_the_long_timeout_back() {
        let (l, t) = (listeners(), table(64));
        let m = tcp_flow(&t, &l, 1000, 0);
        let mut rst = tcp(sa(CONS, 1000), sa(A_WAN, 7000), TCP_RST, b"");
        t.inbound_forward(&mut rst, &l, 1).unwrap();
        assert_eq!(tcp_flow(&t, &l, 1000, 2), m);
        assert_eq!(t.expire(20), 0);
        assert_eq!(t.expire(302), 1);
    }

    #[test]
    fn pool_exhaustion_is_an_error_until_entries_expire() {
        let (l, t) = (listeners(), table(4));
        let mut ports = Vec::new();
        for cp in 1..=4u16 {
            let mut p = udp(sa(CONS, cp), sa(A_WAN, 7000), b"x");
            t.inbound_forward(&mut p, &l, 0).unwrap();
            ports.push(src_port(&p));
        }
        ports.sort_unstable();
        assert_eq!(ports, [BASE, BASE + 1, BASE + 2, BASE + 3]);
        let mut fifth = udp(sa(CONS, 5), sa(A_WAN, 7000), b"x");
        let before = fifth.clone();
        assert_eq!(
            t.inbound_forward(&mut fifth, &l, 1),
            Err(NatError::PoolExhausted)
        );
        assert_eq!(fifth, before);
        // Existing flows still pass while the table is full.
        let mut again = udp(sa(CONS, 3), sa(A_WAN, 7000), b"x");
        assert_eq!(t.inbound_forward(&mut again, &l, 1), Ok(0));
        assert_eq!(t.expire(60), 3);
        assert_eq!(t.inbound_forward(&mut fifth, &l, 61), Ok(0));
        assert_eq!(t.active(), 2);
    }

    #[test]
    fn icmp_error_from_the_producer_goes_to_the_consumer() {
        let (l, t) = (listeners(), table(1024));
        // What left B for A.
        let from_b = udp(sa(CONS, 53000), sa(A_WAN, 7000), b"0123456789");
        let mut p = from_b.clone();
        t.inbound_forward(&mut p, &l, 0).unwrap();
        // The producer's port is closed: it quotes what A sent it.
        let mut e = icmp_error(ip4(PROD), ip4(A_LAN), 3, 3, 0, &p);
        assert!(t.is_reply_candidate(&e));
        assert_eq!(t.inbound_reply(&mut e, &l, 1), Ok(0));
        assert_eq!(e, icmp_error(ip4(A_WAN), ip4(CONS), 3, 3, 0, &from_b));
        verify(&e);
    }

    #[test]
    fn icmp_error_from_a_lan_router_quoting_tcp_goes_to_the_consumer() {
        let (l, t) = (listeners(), table(1024));
        let from_b = tcp(sa(CONS, 41000), sa(A_WAN, 7001), TCP_SYN, b"");
        let mut p = from_b.clone();
        t.inbound_forward(&mut p, &l, 0).unwrap();
        // A router on A's LAN: time exceeded, quoting the IP header and 8 bytes.
        let mut e = icmp_error(ip4([10, 1, 0, 254]), ip4(A_LAN), 11, 0, 0, &p[..28]);
        assert_eq!(t.inbound_reply(&mut e, &l, 1), Ok(1));
        assert_eq!(
            e,
            icmp_error(ip4(A_WAN), ip4(CONS), 11, 0, 0, &from_b[..28])
        );
        verify(&e);
    }

    #[test]
    fn icmp_error_from_the_consumer_side_goes_to_the_producer() {
        let (l, t) = (listeners(), table(1024));
        let mut p = tcp(sa(CONS, 41000), sa(A_WAN, 7000), TCP_SYN, b"");
        t.inbound_forward(&mut p, &l, 0).unwrap();
        let m = src_port(&p);
        // The producer's SYN-ACK, and what A sent to B for it.
        let from_prod = tcp(sa(PROD, 5000), sa(A_LAN, m), TCP_SYN | TCP_ACK, b"abc");
        let mut to_b = from_prod.clone();
        t.inbound_reply(&mut to_b, &l, 0).unwrap();
        // The consumer side answers with an error quoting the whole segment
        // (so the quoted TCP checksum is translated too).
        let mut e = icmp_error(ip4(CONS), ip4(A_WAN), 3, 1, 0, &to_b);
        assert_eq!(t.inbound_forward(&mut e, &l, 1), Ok(0));
        assert_eq!(e, icmp_error(ip4(A_LAN), ip4(PROD), 3, 1, 0, &from_prod));
        verify(&e);
        // The quoted TCP segment verifies as the producer sent it.
        let quoted = &e[28..];
        let qi = crate::wire::ipv4::parse(quoted).unwrap();
        crate::wire::l4::check_tcp(&qi, &quoted[20..]).unwrap();
    }

    #[test]
    fn icmp_errors_without_a_mapping_are_refused() {
        let (l, t) = (listeners(), table(1024));
        let to_b = udp(sa(A_WAN, 7000), sa(CONS, 53000), b"x");
        let mut e = icmp_error(ip4(CONS), ip4(A_WAN), 3, 3, 0, &to_b);
        assert_eq!(t.inbound_forward(&mut e, &l, 0), Err(NatError::NoMapping));
        let to_prod = udp(sa(A_LAN, BASE + 7), sa(PROD, 5000), b"x");
        let mut e = icmp_error(ip4(PROD), ip4(A_LAN), 3, 3, 0, &to_prod);
        assert_eq!(t.inbound_reply(&mut e, &l, 0), Err(NatError::NoMapping));
        let other = udp(sa(A_WAN, 7009), sa(CONS, 53000), b"x");
        let mut e = icmp_error(ip4(CONS), ip4(A_WAN), 3, 3, 0, &other);
        assert_eq!(t.inbound_forward(&mut e, &l, 0), Err(NatError::NoListener));
    }

    #[test]
    fn entries_naming_a_removed_listener_are_refused() {
        let (l, t) = (listeners(), table(64));
        let mut p = udp(sa(CONS, 53000), sa(A_WAN, 7001), b"x");
        t.inbound_forward(&mut p, &l, 0).unwrap();
        let m = src_port(&p);
        let fewer = Listeners::new(vec![], vec![*l.inbound(0)]).unwrap();
        let mut r = udp(sa(PROD, 5001), sa(A_LAN, m), b"y");
        assert_eq!(
            t.inbound_reply(&mut r, &fewer, 0),
            Err(NatError::NoListener)
        );
        assert_eq!(t.flush(), 1);
        assert_eq!(t.active(), 0);
    }

    /// Workers create, refresh and answer overlapping flows while another
    /// thread advances the clock and expires entries (timeout 1 s, a table
    /// smaller than the flow set). A reply must map to the consumer encoded
    /// in its payload unless the clock moved between the forward packet and
    /// the reply (only then can the entry have expired and been reused).
    #[test]
    fn concurrent_flows_with_expiry_never_map_a_reply_to_the_wrong_consumer() {
        use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering::*};
        use std::sync::Arc;

        let l = Arc::new(listeners());
        let short = Timeouts {
            udp: 1,
            tcp_established: 1,
            tcp_closing: 1,
        };
        let t = Arc::new(ConnTable::new(Some(ip4(A_LAN)), None, BASE, 64, short).unwrap());
        let clock = Arc::new(crate::nat::CoarseClock::new());
        let stop = Arc::new(AtomicBool::new(false));
        let freed = Arc::new(AtomicU64::new(0));

        let expirer = {
            let (t, clock, stop, freed) = (t.clone(), clock.clone(), stop.clone(), freed.clone());
            std::thread::spawn(move || {
                let mut k = 0u32;
                while !stop.load(Relaxed) {
                    if k & 7 == 0 {
                        clock.set(clock.now() + 1);
                        // The clock moves before any entry it makes idle is freed.
                        fence(SeqCst);
                    }
                    freed.fetch_add(t.expire(clock.now()) as u64, Relaxed);
                    k += 1;
                    std::thread::sleep(std::time::Duration::from_micros(100));
                }
            })
        };

        let workers: Vec<_> =
            (0..4u8)
                .map(|w| {
                    let (t, l, clock, freed) = (t.clone(), l.clone(), clock.clone(), freed.clone());
                    std::thread::spawn(move || {
                        // Workers 0/2 share UDP flows from .1, 1/3 TCP flows from .2.
                        let cons_ip = [10, 2, 0, 1 + w % 2];
                        let is_tcp = w % 2 == 1;
                        let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(w);
                        let (mut ok, mut moved, mut exhausted) = (0u64, 0u64, 0u64);
                        // At least 6000 packets, and on until the expirer has
                        // freed entries under them (a loaded machine may not
                        // run it at all during the first 6000).
                        let started = std::time::Instant::now();
                        let mut n = 0u32;
                        while n < 6000
                            || (freed.load(Relaxed) == 0
                                && started.elapsed() < std::time::Duration::from_secs(10))
                        {
                            n += 1;
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            let cp = 1000 + (rng % 48) as u16;
                            let tag = [cons_ip[3], (cp >> 8) as u8, cp as u8];
                            let t0 = clock.now();
                            let c = sa(cons_ip, cp);
                            let mut p = if is_tcp {
                                tcp(c, sa(A_WAN, 7000), TCP_ACK, &tag)
                            } else {
                                udp(c, sa(A_WAN, 7000), &tag)
                            };
                            match t.inbound_forward(&mut p, &l, t0) {
                                Ok(0) => {}
                                Err(NatError::PoolExhausted) => {
                                    exhausted += 1;
                                    continue;
                                }
                                other => panic!("forward: {other:?}"),
                            }
                            let m = src_port(&p);
                            assert_eq!(dst_port(&p), 5000);
                            let mut r = if is_tcp {
                                tcp(sa(PROD, 5000), sa(A_LAN, m), TCP_ACK, &tag)
                            } else {
                                udp(sa(PROD, 5000), sa(A_LAN, m), &tag)
                            };
                            let res = t.inbound_reply(&mut r, &l, clock.now());
                            fence(SeqCst);
                            let clock_moved = clock.now() != t0;
                            match res {
                                Ok(0) if r[16..20] == cons_ip && dst_port(&r) == cp => {
                                    verify(&r);
                                    ok += 1;
                                }
                                _ if clock_moved => moved += 1,
                                other => {
                                    panic!(
                                "reply for {c} via port {m} went to {}.{}.{}.{}:{} ({other:?})",
                                r[16], r[17], r[18], r[19], dst_port(&r)
                            )
                                }
                            }
                        }
                        (ok, moved, exhausted)
                    })
                })
                .collect();
        let mut ok = 0;
        for w in workers {
            let (o, _moved, _exhausted) = w.join().expect("worker panicked");
            ok += o;
        }
        stop.store(true, Relaxed);
        expirer.join().expect("expirer panicked");
        assert!(ok > 0);
        assert!(
            freed.load(Relaxed) > 0,
            "entries were expired during the run"
        );
        let later = clock.now() + 2;
        t.expire(later);
        assert_eq!(t.active(), 0);
        assert!((0..t.capacity()).all(|s| t.entry(s).is_none()));
    }
}
