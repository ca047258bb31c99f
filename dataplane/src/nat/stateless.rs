//! The consumer-side gateway B: stateless rewrites between its LAN
//! listeners and the producer-side listeners they lead to.

use super::packet::{classify, Packet};
use super::{Listeners, NatError};

/// Step 1 (B, LAN ingress). `pkt` is an IPv4 or IPv6 packet (no
/// Ethernet) from a consumer to one of B's LAN listeners, `c:cp → B_lan:lport_i`; it becomes
/// `c:cp → A_wan:wport_i`. An ICMP error from B's LAN about a packet B sent
/// from `B_lan:lport_i` (ICMPv6 alike) is translated to one from the consumer to `A_wan_ip`
/// quoting `A_wan:wport_i → c:cp`. Returns the listener index, whose SA
/// seals the packet.
pub fn consumer_to_remote(pkt: &mut [u8], l: &Listeners) -> Result<usize, NatError> {
    match classify(pkt)? {
        Packet::Flow(f) => {
            let i = l.match_consumer(f.dst).ok_or(NatError::NoListener)?;
            f.set_dst(pkt, l.outbound(i).remote);
            Ok(i)
        }
        Packet::IcmpError(e) => {
            let i = l.match_consumer(e.src).ok_or(NatError::NoListener)?;
            if e.outer_dst != e.src.ip() {
                return Err(NatError::Malformed);
            }
            let remote = l.outbound(i).remote;
            e.translate(pkt, e.dst.ip(), remote.ip(), remote, e.dst);
            Ok(i)
        }
    }
}

/// Step 4 (B, after decapsulation). `pkt` is an IPv4 or IPv6 reply from A's listener,
/// `A_wan:wport_i → c:cp`; it becomes `B_lan:lport_i → c:cp`. An ICMP or ICMPv6 error
/// about a packet the consumer sent to `A_wan:wport_i` becomes one from
/// `B_lan_ip` to the consumer quoting `c:cp → B_lan:lport_i`. Returns the
/// listener index.
pub fn remote_to_consumer(pkt: &mut [u8], l: &Listeners) -> Result<usize, NatError> {
    match classify(pkt)? {
        Packet::Flow(f) => {
            let i = l.match_remote_reply(f.src).ok_or(NatError::NoListener)?;
            f.set_src(pkt, l.outbound(i).lan);
            Ok(i)
        }
        Packet::IcmpError(e) => {
            let i = l.match_remote_reply(e.dst).ok_or(NatError::NoListener)?;
            if e.outer_dst != e.src.ip() {
                return Err(NatError::Malformed);
            }
            let lan = l.outbound(i).lan;
            e.translate(pkt, lan.ip(), e.src.ip(), e.src, lan);
            Ok(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::packet::{TCP_ACK, TCP_SYN};
    use crate::nat::testutil::*;
    use crate::nat::OutboundListener;

    const CONS: [u8; 4] = [10, 2, 0, 7];
    const B_LAN: [u8; 4] = [10, 2, 0, 1];
    const A_WAN: [u8; 4] = [198, 51, 100, 1];

    fn listeners() -> Listeners {
        Listeners::new(
            vec![
                OutboundListener {
                    lan: sa(B_LAN, 6000),
                    remote: sa(A_WAN, 7000),
                    sa: 0,
                },
                OutboundListener {
                    lan: sa(B_LAN, 6001),
                    remote: sa(A_WAN, 7001),
                    sa: 1,
                },
            ],
            vec![],
        )
        .unwrap()
    }

    #[test]
    fn consumer_tcp_is_readdressed_to_the_remote_listener() {
        let l = listeners();
        let mut p = tcp(sa(CONS, 40000), sa(B_LAN, 6001), TCP_SYN, b"");
        assert_eq!(consumer_to_remote(&mut p, &l), Ok(1));
        assert_eq!(p, tcp(sa(CONS, 40000), sa(A_WAN, 7001), TCP_SYN, b""));
        verify(&p);
    }

    #[test]
    fn consumer_udp_is_readdressed_and_the_reply_comes_back() {
        let l = listeners();
        let mut p = udp(sa(CONS, 40000), sa(B_LAN, 6000), b"request");
        assert_eq!(consumer_to_remote(&mut p, &l), Ok(0));
        assert_eq!(p, udp(sa(CONS, 40000), sa(A_WAN, 7000), b"request"));
        verify(&p);

        let mut r = udp(sa(A_WAN, 7000), sa(CONS, 40000), b"reply");
        assert_eq!(remote_to_consumer(&mut r, &l), Ok(0));
        assert_eq!(r, udp(sa(B_LAN, 6000), sa(CONS, 40000), b"reply"));
        verify(&r);
    }

    #[test]
    fn remote_tcp_reply_gets_the_lan_listener_as_source() {
        let l = listeners();
        let f = TCP_SYN | TCP_ACK;
        let mut r = tcp(sa(A_WAN, 7001), sa(CONS, 40000), f, b"data");
        assert_eq!(remote_to_consumer(&mut r, &l), Ok(1));
        assert_eq!(r, tcp(sa(B_LAN, 6001), sa(CONS, 40000), f, b"data"));
        verify(&r);
    }

    #[test]
    fn unknown_listeners_are_refused_and_left_alone() {
        let l = listeners();
        let mut p = udp(sa(CONS, 40000), sa(B_LAN, 6002), b"x");
        let before = p.clone();
        assert_eq!(consumer_to_remote(&mut p, &l), Err(NatError::NoListener));
        let mut r = udp(sa(A_WAN, 7002), sa(CONS, 40000), b"x");
        assert_eq!(remote_to_consumer(&mut r, &l), Err(NatError::NoListener));
        assert_eq!(p, before);
    }

    #[test]
    fn icmp_error_from_the_consumer_is_translated_toward_a() {
        let l = listeners();
        // B sent B_lan:6000 → c:40000; the consumer's port is closed.
        let sent = udp(sa(B_LAN, 6000), sa(CONS, 40000), b"0123456789");
        let mut e = icmp_error(ip4(CONS), ip4(B_LAN), 3, 3, 0, &sent);
        assert_eq!(consumer_to_remote(&mut e, &l), Ok(0));
        // What A sent before B rewrote it.
        let orig = udp(sa(A_WAN, 7000), sa(CONS, 40000), b"0123456789");
        assert_eq!(e, icmp_error(ip4(CONS), ip4(A_WAN), 3, 3, 0, &orig));
        verify(&e);
    }

    #[test]
    fn icmp_error_from_a_is_translated_toward_the_consumer() {
        let l = listeners();
        // The consumer sent c:40000 → B_lan:6001, which left B as → A_wan:7001.
        let sent = tcp(sa(CONS, 40000), sa(A_WAN, 7001), TCP_SYN, b"");
        // A's side answered with a frag-needed (MTU 1400) quoting 28 bytes.
        let mut e = icmp_error(ip4(A_WAN), ip4(CONS), 3, 4, 1400, &sent[..28]);
        assert_eq!(remote_to_consumer(&mut e, &l), Ok(1));
        let orig = tcp(sa(CONS, 40000), sa(B_LAN, 6001), TCP_SYN, b"");
        assert_eq!(
            e,
            icmp_error(ip4(B_LAN), ip4(CONS), 3, 4, 1400, &orig[..28])
        );
        verify(&e);
    }

    #[test]
    fn icmp_error_must_be_addressed_to_the_quoted_sender() {
        let l = listeners();
        let sent = udp(sa(B_LAN, 6000), sa(CONS, 40000), b"x");
        let mut e = icmp_error(ip4(CONS), ip4([10, 2, 0, 99]), 11, 0, 0, &sent);
        assert_eq!(consumer_to_remote(&mut e, &l), Err(NatError::Malformed));
    }
}
