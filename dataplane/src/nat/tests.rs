//! Listener mode end to end in memory (B and A, steps 1 to 4), and
//! malformed and random input through every entry point.

use super::packet::{TCP_ACK, TCP_PSH, TCP_SYN};
use super::testutil::*;
use super::*;
use crate::wire::{checksum, ipv4, ipv6};

const CONS: [u8; 4] = [10, 2, 0, 7];
const B_LAN: [u8; 4] = [10, 2, 0, 1];
const A_WAN: [u8; 4] = [198, 51, 100, 1];
const A_LAN: [u8; 4] = [10, 1, 0, 1];
const PROD: [u8; 4] = [10, 1, 0, 5];

/// B's and A's listeners for two connections, and A's table.
struct Pair {
    b: Listeners,
    a: Listeners,
    table: ConnTable,
}

fn pair() -> Pair {
    let b = Listeners::new(
        (0..2)
            .map(|i| OutboundListener {
                lan: sa(B_LAN, 6000 + i),
                remote: sa(A_WAN, 7000 + i),
                sa: usize::from(i),
            })
            .collect(),
        vec![],
    )
    .unwrap();
    let a = Listeners::new(
        vec![],
        (0..2)
            .map(|i| InboundListener {
                listen: sa(A_WAN, 7000 + i),
                target: sa(PROD, 5000 + i),
                sa: usize::from(10 + i),
            })
            .collect(),
    )
    .unwrap();
    let table = ConnTable::new(Some(ip4(A_LAN)), None, 40000, 256, Timeouts::default()).unwrap();
    Pair { b, a, table }
}

fn ports(p: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([p[20], p[21]]),
        u16::from_be_bytes([p[22], p[23]]),
    )
}

#[test]
fn tcp_round_trip_restores_the_original_addressing() {
    let n = pair();
    let c = sa(CONS, 40000);
    // 1: consumer → B's listener 1.
    let mut p = tcp(c, sa(B_LAN, 6001), TCP_SYN, b"");
    assert_eq!(consumer_to_remote(&mut p, &n.b), Ok(1));
    assert_eq!(p, tcp(c, sa(A_WAN, 7001), TCP_SYN, b""));
    // 2: out of the tunnel at A.
    assert_eq!(n.table.inbound_forward(&mut p, &n.a, 0), Ok(1));
    let m = ports(&p).0;
    assert_eq!(p, tcp(sa(A_LAN, m), sa(PROD, 5001), TCP_SYN, b""));
    verify(&p);
    // 3: the producer answers.
    let flags = TCP_SYN | TCP_ACK;
    let mut r = tcp(sa(PROD, 5001), sa(A_LAN, m), flags, b"");
    assert_eq!(n.table.inbound_reply(&mut r, &n.a, 0), Ok(1));
    assert_eq!(n.a.inbound(1).sa, 11);
    assert_eq!(r, tcp(sa(A_WAN, 7001), c, flags, b""));
    // 4: out of the tunnel at B: the consumer sees its listener answer.
    assert_eq!(remote_to_consumer(&mut r, &n.b), Ok(1));
    assert_eq!(r, tcp(sa(B_LAN, 6001), c, flags, b""));
    verify(&r);
}

#[test]
fn udp_round_trips_keep_the_flow_on_one_mapped_port() {
    let n = pair();
    let c = sa(CONS, 53001);
    let mut mapped = None;
    for k in 0..5u8 {
        let body = [b'q', k];
        let mut p = udp(c, sa(B_LAN, 6000), &body);
        consumer_to_remote(&mut p, &n.b).unwrap();
        n.table.inbound_forward(&mut p, &n.a, u32::from(k)).unwrap();
        let m = ports(&p).0;
        assert_eq!(*mapped.get_or_insert(m), m);
        assert_eq!(p, udp(sa(A_LAN, m), sa(PROD, 5000), &body));
        let body = [b'r', k];
        let mut r = udp(sa(PROD, 5000), sa(A_LAN, m), &body);
        n.table.inbound_reply(&mut r, &n.a, u32::from(k)).unwrap();
        remote_to_consumer(&mut r, &n.b).unwrap();
        assert_eq!(r, udp(sa(B_LAN, 6000), c, &body));
        verify(&r);
    }
    assert_eq!(n.table.active(), 1);
}

#[test]
fn port_unreachable_from_the_producer_reaches_the_consumer_quoting_its_packet() {
    let n = pair();
    let sent = udp(sa(CONS, 53001), sa(B_LAN, 6000), b"0123456789");
    let mut p = sent.clone();
    consumer_to_remote(&mut p, &n.b).unwrap();
    n.table.inbound_forward(&mut p, &n.a, 0).unwrap();
    let mut e = icmp_error(ip4(PROD), ip4(A_LAN), 3, 3, 0, &p);
    assert_eq!(n.table.inbound_reply(&mut e, &n.a, 0), Ok(0));
    verify(&e);
    assert_eq!(remote_to_consumer(&mut e, &n.b), Ok(0));
    assert_eq!(e, icmp_error(ip4(B_LAN), ip4(CONS), 3, 3, 0, &sent));
    verify(&e);
}

#[test]
fn an_error_from_the_consumer_reaches_the_producer_quoting_its_packet() {
    let n = pair();
    let c = sa(CONS, 40000);
    let mut p = tcp(c, sa(B_LAN, 6000), TCP_SYN, b"");
    consumer_to_remote(&mut p, &n.b).unwrap();
    n.table.inbound_forward(&mut p, &n.a, 0).unwrap();
    let m = ports(&p).0;
    let sent = tcp(sa(PROD, 5000), sa(A_LAN, m), TCP_ACK | TCP_PSH, b"stream");
    let mut r = sent.clone();
    n.table.inbound_reply(&mut r, &n.a, 0).unwrap();
    remote_to_consumer(&mut r, &n.b).unwrap();
    // The consumer (no socket any more) answers with port unreachable,
    // quoting the IP header and 8 bytes.
    let mut e = icmp_error(ip4(CONS), ip4(B_LAN), 3, 3, 0, &r[..28]);
    assert_eq!(consumer_to_remote(&mut e, &n.b), Ok(0));
    verify(&e);
    assert_eq!(n.table.inbound_forward(&mut e, &n.a, 0), Ok(0));
    assert_eq!(e, icmp_error(ip4(A_LAN), ip4(PROD), 3, 3, 0, &sent[..28]));
    verify(&e);
}

/// `p` with IPv4 header bytes `edit` applied and the header checksum redone.
fn with_header(mut p: Vec<u8>, edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    edit(&mut p);
    let hl = usize::from(p[0] & 0x0f) * 4;
    p[10] = 0;
    p[11] = 0;
    let c = checksum::of(&p[..hl]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// Runs `p` through all four entry points (on copies) and returns the results.
fn all_four(n: &Pair, p: &[u8]) -> [Result<usize, NatError>; 4] {
    let mut q = [p.to_vec(), p.to_vec(), p.to_vec(), p.to_vec()];
    let r = [
        consumer_to_remote(&mut q[0], &n.b),
        remote_to_consumer(&mut q[1], &n.b),
        n.table.inbound_forward(&mut q[2], &n.a, 0),
        n.table.inbound_reply(&mut q[3], &n.a, 0),
    ];
    for (res, out) in r.iter().zip(&q) {
        match res {
            // A refused packet is left as it was.
            Err(_) => assert_eq!(out, p),
            // A translated one is still a valid packet of its family.
            Ok(_) if p[0] >> 4 == 6 => assert!(ipv6::parse(out).is_ok()),
            Ok(_) => assert!(ipv4::parse(out).is_ok()),
        }
    }
    r
}

fn assert_all(n: &Pair, p: &[u8], e: NatError, what: &str) {
    for (i, r) in all_four(n, p).into_iter().enumerate() {
        assert_eq!(r, Err(e), "{what}: entry point {i}");
    }
}

#[test]
fn malformed_packets_are_refused_with_their_reason() {
    let n = pair();
    let to_b = |body: &[u8], proto| ipv4_packet(proto, ip4(CONS), ip4(B_LAN), body);
    assert_all(
        &n,
        &to_b(&[0x9c, 0x40, 0x17], 17),
        NatError::Malformed,
        "UDP < 8",
    );
    assert_all(&n, &to_b(&[0u8; 12], 6), NatError::Malformed, "TCP < 20");
    let good = udp(sa(CONS, 40000), sa(B_LAN, 6000), b"abcdef");
    assert_all(
        &n,
        &good[..30],
        NatError::Malformed,
        "buffer shorter than total length",
    );
    assert_all(
        &n,
        &good[..10],
        NatError::Malformed,
        "buffer shorter than a header",
    );
    assert_all(&n, &[], NatError::Malformed, "empty");
    let mut bad_sum = good.clone();
    bad_sum[10] ^= 0xff;
    assert_all(&n, &bad_sum, NatError::Malformed, "IPv4 checksum");
    let later = with_header(good.clone(), |h| h[6..8].copy_from_slice(&[0x20, 0x10]));
    assert_all(&n, &later, NatError::Fragment, "later fragment");
    assert_all(&n, &to_b(b"GRE.", 47), NatError::UnsupportedProtocol, "GRE");
    let mut echo = [8u8, 0, 0, 0, 0, 1, 0, 1];
    let c = checksum::of(&echo);
    echo[2..4].copy_from_slice(&c.to_be_bytes());
    assert_all(&n, &to_b(&echo, 1), NatError::UnsupportedProtocol, "echo");
    let no_listener = udp(sa(CONS, 40000), sa(B_LAN, 6009), b"x");
    assert_eq!(all_four(&n, &no_listener)[0], Err(NatError::NoListener));

    // A first fragment has its ports and is translated.
    let first = with_header(good.clone(), |h| h[6] = 0x20);
    let mut q = first.clone();
    assert_eq!(consumer_to_remote(&mut q, &n.b), Ok(0));
    assert_eq!(&q[16..20], &A_WAN);
}

#[test]
fn malformed_icmp_errors_are_refused_with_their_reason() {
    let n = pair();
    let quoted = udp(sa(B_LAN, 6000), sa(CONS, 40000), b"payload");
    let err = |q: &[u8]| icmp_error(ip4(CONS), ip4(B_LAN), 3, 3, 0, q);
    let mut bad = err(&quoted);
    bad[30] ^= 1;
    assert_all(&n, &bad, NatError::Malformed, "ICMP checksum");
    assert_all(
        &n,
        &err(&quoted[..27]),
        NatError::Malformed,
        "quote < header + 8",
    );
    assert_all(
        &n,
        &err(&quoted[..12]),
        NatError::Malformed,
        "quote < header",
    );
    let v6 = with_header(quoted.clone(), |h| h[0] = 0x65);
    assert_all(&n, &err(&v6), NatError::Malformed, "quoted version");
    let mut long_hl = quoted.clone();
    long_hl[0] = 0x4f; // a 60-byte header in a 35-byte quote
    assert_all(
        &n,
        &err(&long_hl),
        NatError::Malformed,
        "quoted header beyond the quote",
    );
    let q_later = with_header(quoted.clone(), |h| h[6..8].copy_from_slice(&[0x00, 0x40]));
    assert_all(
        &n,
        &err(&q_later),
        NatError::Fragment,
        "quoted later fragment",
    );
    let frag = with_header(err(&quoted), |h| h[6] = 0x20);
    assert_all(&n, &frag, NatError::Fragment, "fragmented ICMP error");
    let q_icmp = icmp_error(ip4(B_LAN), ip4(CONS), 11, 0, 0, &quoted);
    assert_all(
        &n,
        &err(&q_icmp),
        NatError::UnsupportedProtocol,
        "quotes ICMP",
    );
    let redirect = icmp_error(ip4(CONS), ip4(B_LAN), 5, 1, 0, &quoted);
    assert_all(&n, &redirect, NatError::UnsupportedProtocol, "redirect");
    // Parameter problem quotes like the others and is translated.
    let mut pp = icmp_error(ip4(CONS), ip4(B_LAN), 12, 0, 0x0800_0000, &quoted);
    assert_eq!(consumer_to_remote(&mut pp, &n.b), Ok(0));
    verify(&pp);
}

/// Random truncations and byte flips of valid packets of every kind, some
/// with the IPv4 length and checksum repaired so the deeper parsers run.
#[test]
fn random_damage_never_panics() {
    let n = pair();
    let c = sa(CONS, 40000);
    let mut seeds = vec![
        udp(c, sa(B_LAN, 6000), b"0123456789"),
        tcp(c, sa(B_LAN, 6001), TCP_SYN, b"abc"),
        udp(sa(A_WAN, 7000), c, b"reply"),
        tcp(c, sa(A_WAN, 7000), TCP_SYN, b""),
        udp(c, sa(A_WAN, 7001), b"x"),
    ];
    // Mapped flows, so step-3 packets and errors find entries.
    let mut fwd = udp(c, sa(A_WAN, 7000), b"x");
    n.table.inbound_forward(&mut fwd, &n.a, 0).unwrap();
    let m = ports(&fwd).0;
    seeds.push(udp(sa(PROD, 5000), sa(A_LAN, m), b"reply"));
    seeds.push(icmp_error(ip4(PROD), ip4(A_LAN), 3, 3, 0, &fwd));
    let back = udp(sa(A_WAN, 7000), c, b"r");
    seeds.push(icmp_error(ip4(CONS), ip4(A_WAN), 11, 0, 0, &back));
    seeds.push(icmp_error(
        ip4(CONS),
        ip4(B_LAN),
        3,
        4,
        1400,
        &seeds[0].clone(),
    ));
    seeds.push(icmp_error(
        ip4(A_WAN),
        ip4(CONS),
        3,
        3,
        0,
        &seeds[3].clone()[..28],
    ));

    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |bound: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % bound as u64) as usize
    };
    let mut translated = 0;
    for _ in 0..20_000 {
        let mut p = seeds[next(seeds.len())].clone();
        for _ in 0..1 + next(3) {
            let i = next(p.len());
            p[i] ^= 1 << next(8);
        }
        let len = next(p.len() + 1);
        p.truncate(len);
        if p.len() >= 20 && next(2) == 0 {
            let total = p.len() as u16;
            p = with_header(p, |h| {
                h[0] = 0x45;
                h[2..4].copy_from_slice(&total.to_be_bytes());
            });
        }
        translated += all_four(&n, &p).iter().filter(|r| r.is_ok()).count();
    }
    assert!(
        translated > 0,
        "some damaged packets are still translatable"
    );
}

const CONS6: &str = "fd00:2::7";
const B_LAN6: &str = "fd00:2::1";
const A_WAN6: &str = "2001:db8:a::1";
const A_LAN6: &str = "fd00:1::1";
const PROD6: &str = "fd00:1::5";

/// [`pair`] with IPv6 listeners too: B's outbound listeners 2 and 3 are
/// `[B_LAN6]:6000/6001` (the ports of the IPv4 ones) to `[A_WAN6]:7000/7001`;
/// A's inbound listeners 2 and 3 lead to `[PROD6]:5000/5001`. A's table
/// has both LAN addresses.
fn pair6() -> Pair {
    let b = Listeners::new(
        (0..4)
            .map(|i| {
                let (lan, remote) = if i < 2 {
                    (sa(B_LAN, 6000 + i % 2), sa(A_WAN, 7000 + i % 2))
                } else {
                    (sa6(B_LAN6, 6000 + i % 2), sa6(A_WAN6, 7000 + i % 2))
                };
                OutboundListener {
                    lan,
                    remote,
                    sa: usize::from(i),
                }
            })
            .collect(),
        vec![],
    )
    .unwrap();
    let a = Listeners::new(
        vec![],
        (0..4)
            .map(|i| {
                let (listen, target) = if i < 2 {
                    (sa(A_WAN, 7000 + i % 2), sa(PROD, 5000 + i % 2))
                } else {
                    (sa6(A_WAN6, 7000 + i % 2), sa6(PROD6, 5000 + i % 2))
                };
                InboundListener {
                    listen,
                    target,
                    sa: usize::from(10 + i),
                }
            })
            .collect(),
    )
    .unwrap();
    let table = ConnTable::new(
        Some(ip4(A_LAN)),
        Some(ip6(A_LAN6)),
        40000,
        256,
        Timeouts::default(),
    )
    .unwrap();
    Pair { b, a, table }
}

/// The transport ports of an IPv6 packet without extension headers.
fn ports6(p: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([p[40], p[41]]),
        u16::from_be_bytes([p[42], p[43]]),
    )
}

#[test]
fn ipv6_tcp_round_trip_restores_the_original_addressing() {
    let n = pair6();
    let c = sa6(CONS6, 40000);
    // 1: consumer → B's IPv6 listener on port 6001 (index 3).
    let mut p = tcp6(c, sa6(B_LAN6, 6001), TCP_SYN, b"");
    assert_eq!(consumer_to_remote(&mut p, &n.b), Ok(3));
    assert_eq!(p, tcp6(c, sa6(A_WAN6, 7001), TCP_SYN, b""));
    verify(&p);
    // 2: out of the tunnel at A.
    assert_eq!(n.table.inbound_forward(&mut p, &n.a, 0), Ok(3));
    let m = ports6(&p).0;
    assert!(n.table.is_mapped_port(m));
    assert_eq!(p, tcp6(sa6(A_LAN6, m), sa6(PROD6, 5001), TCP_SYN, b""));
    verify(&p);
    // 3: the producer answers.
    let flags = TCP_SYN | TCP_ACK;
    let mut r = tcp6(sa6(PROD6, 5001), sa6(A_LAN6, m), flags, b"");
    assert!(n.table.is_reply_candidate(&r));
    assert_eq!(n.table.inbound_reply(&mut r, &n.a, 0), Ok(3));
    assert_eq!(n.a.inbound(3).sa, 13);
    assert_eq!(r, tcp6(sa6(A_WAN6, 7001), c, flags, b""));
    verify(&r);
    // 4: out of the tunnel at B: the consumer sees its listener answer.
    assert_eq!(remote_to_consumer(&mut r, &n.b), Ok(3));
    assert_eq!(r, tcp6(sa6(B_LAN6, 6001), c, flags, b""));
    verify(&r);
    // Data on the same connection keeps its mapping.
    let mut d = tcp6(c, sa6(B_LAN6, 6001), TCP_ACK | TCP_PSH, b"payload");
    consumer_to_remote(&mut d, &n.b).unwrap();
    n.table.inbound_forward(&mut d, &n.a, 1).unwrap();
    assert_eq!(
        d,
        tcp6(
            sa6(A_LAN6, m),
            sa6(PROD6, 5001),
            TCP_ACK | TCP_PSH,
            b"payload"
        )
    );
    verify(&d);
    assert_eq!(n.table.active(), 1);
}

#[test]
fn ipv6_udp_round_trips_keep_the_flow_on_one_mapped_port() {
    let n = pair6();
    let c = sa6(CONS6, 53001);
    let mut mapped = None;
    for k in 0..5u8 {
        let body = [b'q', k, 0x55, 0xaa, k];
        let mut p = udp6(c, sa6(B_LAN6, 6000), &body);
        assert_eq!(consumer_to_remote(&mut p, &n.b), Ok(2));
        assert_eq!(p, udp6(c, sa6(A_WAN6, 7000), &body));
        verify(&p);
        assert_eq!(n.table.inbound_forward(&mut p, &n.a, u32::from(k)), Ok(2));
        let m = ports6(&p).0;
        assert_eq!(*mapped.get_or_insert(m), m);
        assert_eq!(p, udp6(sa6(A_LAN6, m), sa6(PROD6, 5000), &body));
        verify(&p);
        let body = [b'r', k];
        let mut r = udp6(sa6(PROD6, 5000), sa6(A_LAN6, m), &body);
        assert_eq!(n.table.inbound_reply(&mut r, &n.a, u32::from(k)), Ok(2));
        assert_eq!(r, udp6(sa6(A_WAN6, 7000), c, &body));
        verify(&r);
        assert_eq!(remote_to_consumer(&mut r, &n.b), Ok(2));
        assert_eq!(r, udp6(sa6(B_LAN6, 6000), c, &body));
        verify(&r);
    }
    assert_eq!(n.table.active(), 1);
}

#[test]
fn ipv4_and_ipv6_flows_share_one_table_and_its_pool() {
    let n = pair6();
    // The same consumer port over IPv4 and IPv6, UDP and TCP.
    let mut a = udp(sa(CONS, 53000), sa(A_WAN, 7000), b"v4");
    let mut b = udp6(sa6(CONS6, 53000), sa6(A_WAN6, 7000), b"v6");
    let mut c = tcp6(sa6(CONS6, 53000), sa6(A_WAN6, 7000), TCP_SYN, b"");
    // ::10.2.0.7 is not 10.2.0.7.
    let compat = sa6("::10.2.0.7", 53000);
    let mut d = udp6(compat, sa6(A_WAN6, 7000), b"compat");
    assert_eq!(n.table.inbound_forward(&mut a, &n.a, 0), Ok(0));
    assert_eq!(n.table.inbound_forward(&mut b, &n.a, 0), Ok(2));
    assert_eq!(n.table.inbound_forward(&mut c, &n.a, 0), Ok(2));
    assert_eq!(n.table.inbound_forward(&mut d, &n.a, 0), Ok(2));
    let ma = ports(&a).0;
    let (mb, mc, md) = (ports6(&b).0, ports6(&c).0, ports6(&d).0);
    let all = [ma, mb, mc, md];
    for (i, x) in all.iter().enumerate() {
        assert!(all[i + 1..].iter().all(|y| y != x), "distinct mapped ports");
    }
    assert_eq!(n.table.active(), 4);
    let mut ra = udp(sa(PROD, 5000), sa(A_LAN, ma), b"r4");
    assert_eq!(n.table.inbound_reply(&mut ra, &n.a, 1), Ok(0));
    assert_eq!(ra, udp(sa(A_WAN, 7000), sa(CONS, 53000), b"r4"));
    let mut rb = udp6(sa6(PROD6, 5000), sa6(A_LAN6, mb), b"r6");
    assert_eq!(n.table.inbound_reply(&mut rb, &n.a, 1), Ok(2));
    assert_eq!(rb, udp6(sa6(A_WAN6, 7000), sa6(CONS6, 53000), b"r6"));
    let mut rd = udp6(sa6(PROD6, 5000), sa6(A_LAN6, md), b"r");
    assert_eq!(n.table.inbound_reply(&mut rd, &n.a, 1), Ok(2));
    assert_eq!(rd, udp6(sa6(A_WAN6, 7000), compat, b"r"));
    verify(&ra);
    verify(&rb);
    verify(&rd);
    // A reply of the other family at a mapped port is refused.
    let cross = [
        udp(sa(PROD, 5000), sa(A_LAN, mb), b"x"),
        udp6(sa6(PROD6, 5000), sa6(A_LAN6, ma), b"x"),
    ];
    for (k, mut x) in cross.into_iter().enumerate() {
        let before = x.clone();
        assert_eq!(
            n.table.inbound_reply(&mut x, &n.a, 1),
            Err(NatError::NoMapping),
            "case {k}"
        );
        assert_eq!(x, before);
    }
}

#[test]
fn ipv6_replies_that_do_not_match_the_entry_are_refused() {
    let n = pair6();
    let mut p = udp6(sa6(CONS6, 53000), sa6(A_WAN6, 7000), b"x");
    n.table.inbound_forward(&mut p, &n.a, 0).unwrap();
    let m = ports6(&p).0;
    let cases = [
        // From the other IPv6 listener's target.
        udp6(sa6(PROD6, 5001), sa6(A_LAN6, m), b"x"),
        // From another host.
        udp6(sa6("fd00:1::6", 5000), sa6(A_LAN6, m), b"x"),
        // TCP to a UDP mapping.
        tcp6(sa6(PROD6, 5000), sa6(A_LAN6, m), TCP_ACK, b""),
        // To another address of ours, or outside the pool.
        udp6(sa6(PROD6, 5000), sa6("fd00:1::2", m), b"x"),
        udp6(sa6(PROD6, 5000), sa6(A_LAN6, 39999), b"x"),
        udp6(sa6(PROD6, 5000), sa6(A_LAN6, m + 1), b"x"),
        // The IPv4 target of listener 0 to the same mapped port.
        udp(sa(PROD, 5000), sa(A_LAN, m), b"x"),
    ];
    for (k, mut c) in cases.into_iter().enumerate() {
        let before = c.clone();
        assert_eq!(
            n.table.inbound_reply(&mut c, &n.a, 0),
            Err(NatError::NoMapping),
            "case {k}"
        );
        assert_eq!(c, before, "case {k} left unchanged");
    }
    let mut none = udp6(sa6(CONS6, 53000), sa6(A_WAN6, 7009), b"x");
    assert_eq!(
        n.table.inbound_forward(&mut none, &n.a, 0),
        Err(NatError::NoListener)
    );
    // An IPv4 packet to the IPv6 listener's port on an IPv4 address is not it.
    let mut v4 = udp(sa(CONS, 53000), sa([198, 51, 100, 9], 7000), b"x");
    assert_eq!(
        n.table.inbound_forward(&mut v4, &n.a, 0),
        Err(NatError::NoListener)
    );
}

#[test]
fn a_listener_slot_reused_by_the_other_family_does_not_take_over_old_entries() {
    let n = pair6();
    let mut p = udp(sa(CONS, 53000), sa(A_WAN, 7000), b"x");
    assert_eq!(n.table.inbound_forward(&mut p, &n.a, 0), Ok(0));
    let m = ports(&p).0;
    // Listener index 0 now leads IPv6 flows to [PROD6]:5000.
    let now6 = Listeners::new(vec![], vec![*n.a.inbound(2)]).unwrap();
    let mut r = udp6(sa6(PROD6, 5000), sa6(A_LAN6, m), b"y");
    let before = r.clone();
    assert_eq!(
        n.table.inbound_reply(&mut r, &now6, 0),
        Err(NatError::NoMapping)
    );
    assert_eq!(r, before);
}

#[test]
fn a_table_without_an_ipv6_lan_address_refuses_ipv6_flows() {
    let n = pair6();
    let only4 = ConnTable::new(Some(ip4(A_LAN)), None, 40000, 64, Timeouts::default()).unwrap();
    let mut p = udp6(sa6(CONS6, 53000), sa6(A_WAN6, 7000), b"x");
    let before = p.clone();
    assert_eq!(
        only4.inbound_forward(&mut p, &n.a, 0),
        Err(NatError::NoListener)
    );
    assert_eq!(p, before);
    assert_eq!(only4.active(), 0);
    let r = udp6(sa6(PROD6, 5000), sa6(A_LAN6, 40000), b"y");
    assert!(!only4.is_reply_candidate(&r));
    assert_eq!(
        only4.inbound_reply(&mut r.clone(), &n.a, 0),
        Err(NatError::NoMapping)
    );
    // IPv4 flows still pass.
    let mut q = udp(sa(CONS, 53000), sa(A_WAN, 7000), b"x");
    assert_eq!(only4.inbound_forward(&mut q, &n.a, 0), Ok(0));
    // And the other way round.
    let only6 = ConnTable::new(None, Some(ip6(A_LAN6)), 40000, 64, Timeouts::default()).unwrap();
    let mut q = udp(sa(CONS, 53000), sa(A_WAN, 7000), b"x");
    assert_eq!(
        only6.inbound_forward(&mut q, &n.a, 0),
        Err(NatError::NoListener)
    );
    let mut p = udp6(sa6(CONS6, 53000), sa6(A_WAN6, 7000), b"x");
    assert_eq!(only6.inbound_forward(&mut p, &n.a, 0), Ok(2));
}

#[test]
fn ipv6_port_unreachable_from_the_producer_reaches_the_consumer_quoting_its_packet() {
    let n = pair6();
    let sent = udp6(sa6(CONS6, 53001), sa6(B_LAN6, 6000), b"0123456789");
    let mut p = sent.clone();
    consumer_to_remote(&mut p, &n.b).unwrap();
    n.table.inbound_forward(&mut p, &n.a, 0).unwrap();
    let mut e = icmp6_error(ip6(PROD6), ip6(A_LAN6), 1, 4, 0, &p);
    assert!(n.table.is_reply_candidate(&e));
    assert_eq!(n.table.inbound_reply(&mut e, &n.a, 0), Ok(2));
    let from_b = udp6(sa6(CONS6, 53001), sa6(A_WAN6, 7000), b"0123456789");
    assert_eq!(e, icmp6_error(ip6(A_WAN6), ip6(CONS6), 1, 4, 0, &from_b));
    verify(&e);
    assert_eq!(remote_to_consumer(&mut e, &n.b), Ok(2));
    assert_eq!(e, icmp6_error(ip6(B_LAN6), ip6(CONS6), 1, 4, 0, &sent));
    verify(&e);
}

#[test]
fn ipv6_packet_too_big_keeps_its_mtu_both_ways() {
    let n = pair6();
    let c = sa6(CONS6, 40000);
    // Consumer → producer; a router on A's LAN says the packet is too big.
    let sent = tcp6(c, sa6(B_LAN6, 6000), TCP_ACK, &[7u8; 64]);
    let mut p = sent.clone();
    consumer_to_remote(&mut p, &n.b).unwrap();
    n.table.inbound_forward(&mut p, &n.a, 0).unwrap();
    let router = ip6("fd00:1::fe");
    let mut e = icmp6_error(router, ip6(A_LAN6), 2, 0, 1280, &p);
    assert_eq!(n.table.inbound_reply(&mut e, &n.a, 0), Ok(2));
    verify(&e);
    assert_eq!(remote_to_consumer(&mut e, &n.b), Ok(2));
    // It reaches the consumer from B's listener address, MTU unchanged.
    assert_eq!(e, icmp6_error(ip6(B_LAN6), ip6(CONS6), 2, 0, 1280, &sent));
    verify(&e);
    assert_eq!(&e[44..48], &1280u32.to_be_bytes());

    // Producer → consumer; the consumer's side says too big.
    let m = ports6(&p).0;
    let from_prod = tcp6(sa6(PROD6, 5000), sa6(A_LAN6, m), TCP_ACK, &[9u8; 100]);
    let mut r = from_prod.clone();
    n.table.inbound_reply(&mut r, &n.a, 0).unwrap();
    remote_to_consumer(&mut r, &n.b).unwrap();
    let mut e = icmp6_error(ip6(CONS6), ip6(B_LAN6), 2, 0, 1400, &r);
    assert_eq!(consumer_to_remote(&mut e, &n.b), Ok(2));
    verify(&e);
    assert_eq!(n.table.inbound_forward(&mut e, &n.a, 0), Ok(2));
    assert_eq!(
        e,
        icmp6_error(ip6(A_LAN6), ip6(PROD6), 2, 0, 1400, &from_prod)
    );
    verify(&e);
}

#[test]
fn ipv6_errors_quoting_only_the_headers_are_translated() {
    let n = pair6();
    let c = sa6(CONS6, 41000);
    let mut p = tcp6(c, sa6(B_LAN6, 6001), TCP_SYN, b"");
    consumer_to_remote(&mut p, &n.b).unwrap();
    let from_b = p.clone();
    n.table.inbound_forward(&mut p, &n.a, 0).unwrap();
    // Time exceeded from a router on A's LAN, quoting the IPv6 header and
    // 8 bytes (no TCP checksum in the quote).
    let mut e = icmp6_error(ip6("fd00:1::fe"), ip6(A_LAN6), 3, 0, 0, &p[..48]);
    assert_eq!(n.table.inbound_reply(&mut e, &n.a, 0), Ok(3));
    assert_eq!(
        e,
        icmp6_error(ip6(A_WAN6), ip6(CONS6), 3, 0, 0, &from_b[..48])
    );
    verify(&e);
    // Parameter problem (pointer 6) from the consumer about B's reply, quoting 60 bytes.
    let m = ports6(&p).0;
    let from_prod = tcp6(sa6(PROD6, 5001), sa6(A_LAN6, m), TCP_SYN | TCP_ACK, b"");
    let mut r = from_prod.clone();
    n.table.inbound_reply(&mut r, &n.a, 0).unwrap();
    remote_to_consumer(&mut r, &n.b).unwrap();
    let mut e = icmp6_error(ip6(CONS6), ip6(B_LAN6), 4, 0, 6, &r);
    assert_eq!(consumer_to_remote(&mut e, &n.b), Ok(3));
    assert_eq!(n.table.inbound_forward(&mut e, &n.a, 0), Ok(3));
    assert_eq!(e, icmp6_error(ip6(A_LAN6), ip6(PROD6), 4, 0, 6, &from_prod));
    verify(&e);
}

#[test]
fn ipv6_icmp_errors_without_a_mapping_or_misaddressed_are_refused() {
    let n = pair6();
    let to_b = udp6(sa6(A_WAN6, 7000), sa6(CONS6, 53000), b"x");
    let mut e = icmp6_error(ip6(CONS6), ip6(A_WAN6), 1, 4, 0, &to_b);
    assert_eq!(
        n.table.inbound_forward(&mut e, &n.a, 0),
        Err(NatError::NoMapping)
    );
    let to_prod = udp6(sa6(A_LAN6, 40007), sa6(PROD6, 5000), b"x");
    let mut e = icmp6_error(ip6(PROD6), ip6(A_LAN6), 1, 4, 0, &to_prod);
    assert_eq!(
        n.table.inbound_reply(&mut e, &n.a, 0),
        Err(NatError::NoMapping)
    );
    // An error about B's packet must be addressed to B (its sender).
    let sent = udp6(sa6(B_LAN6, 6000), sa6(CONS6, 53000), b"x");
    let mut e = icmp6_error(ip6(CONS6), ip6("fd00:2::99"), 1, 4, 0, &sent);
    assert_eq!(consumer_to_remote(&mut e, &n.b), Err(NatError::Malformed));
    // ICMPv4 quoting IPv6 and ICMPv6 quoting IPv4 are malformed.
    let v4 = udp(sa(B_LAN, 6000), sa(CONS, 53000), b"x");
    let mut e = icmp6_error(ip6(CONS6), ip6(B_LAN6), 1, 4, 0, &v4);
    assert_eq!(consumer_to_remote(&mut e, &n.b), Err(NatError::Malformed));
    let mut e = icmp_error(ip4(CONS), ip4(B_LAN), 3, 3, 0, &sent);
    assert_eq!(consumer_to_remote(&mut e, &n.b), Err(NatError::Malformed));
}

/// `p` (IPv6) with its payload length set to `len`.
fn with_payload_len(mut p: Vec<u8>, len: u16) -> Vec<u8> {
    p[4..6].copy_from_slice(&len.to_be_bytes());
    p
}

#[test]
fn malformed_ipv6_packets_are_refused_with_their_reason() {
    let n = pair6();
    let c = sa6(CONS6, 40000);
    let good = udp6(c, sa6(B_LAN6, 6000), b"abcdef");
    let raw = |next: u8, body: &[u8]| ipv6_packet(next, ip6(CONS6), ip6(B_LAN6), body);
    assert_all(
        &n,
        &good[..39],
        NatError::Malformed,
        "shorter than the header",
    );
    assert_all(
        &n,
        &good[..50],
        NatError::Malformed,
        "shorter than its payload length",
    );
    let long = with_payload_len(good.clone(), 15);
    assert_all(
        &n,
        &long,
        NatError::Malformed,
        "payload length past the buffer",
    );
    let mut v5 = good.clone();
    v5[0] = 0x50;
    assert_all(&n, &v5, NatError::Malformed, "version 5");
    assert_all(
        &n,
        &raw(17, &[0x9c, 0x40, 0x17]),
        NatError::Malformed,
        "UDP < 8",
    );
    assert_all(&n, &raw(6, &[0u8; 12]), NatError::Malformed, "TCP < 20");
    let mut no_sum = good.clone();
    no_sum[46] = 0;
    no_sum[47] = 0;
    assert_all(&n, &no_sum, NatError::Malformed, "UDP checksum 0 over IPv6");
    // Extension headers that end inside the packet or run past it.
    let opts = with_ext6(&good, 60, dest_opts6(0));
    let mut past = opts.clone();
    past[41] = 200; // 1608 bytes claimed
    assert_all(
        &n,
        &past,
        NatError::Malformed,
        "extension header past the packet",
    );
    let cut = with_payload_len(opts[..44].to_vec(), 4);
    assert_all(&n, &cut, NatError::Malformed, "extension header cut short");
    let only_ext = with_payload_len(opts[..48].to_vec(), 8);
    assert_all(
        &n,
        &only_ext,
        NatError::Malformed,
        "chain ends at the packet end",
    );
    let mut deep = good.clone();
    for _ in 0..9 {
        deep = with_ext6(&deep, 60, dest_opts6(0));
    }
    assert_all(&n, &deep, NatError::Malformed, "too many extension headers");
    let hbh_late = with_ext6(&with_ext6(&good, 0, dest_opts6(0)), 60, dest_opts6(0));
    assert_all(&n, &hbh_late, NatError::Malformed, "hop-by-hop not first");
    let jumbo = with_payload_len(with_ext6(&good, 0, dest_opts6(0)), 0);
    assert_all(&n, &jumbo, NatError::Malformed, "jumbogram");
    // Protocols listener mode does not translate.
    assert_all(&n, &raw(47, b"GRE."), NatError::UnsupportedProtocol, "GRE");
    assert_all(
        &n,
        &raw(50, &[0u8; 16]),
        NatError::UnsupportedProtocol,
        "ESP",
    );
    assert_all(
        &n,
        &raw(59, b""),
        NatError::UnsupportedProtocol,
        "no next header",
    );
    for (kind, what) in [
        (128u8, "echo request"),
        (129, "echo reply"),
        (135, "NS"),
        (136, "NA"),
    ] {
        let msg = icmp6_error(ip6(CONS6), ip6(B_LAN6), kind, 0, 0, &good);
        assert_all(&n, &msg, NatError::UnsupportedProtocol, what);
    }
    let no_listener = udp6(c, sa6(B_LAN6, 6009), b"x");
    assert_eq!(all_four(&n, &no_listener)[0], Err(NatError::NoListener));
}

#[test]
fn malformed_icmpv6_errors_are_refused_with_their_reason() {
    let n = pair6();
    let quoted = udp6(sa6(B_LAN6, 6000), sa6(CONS6, 40000), b"payload");
    let err = |q: &[u8]| icmp6_error(ip6(CONS6), ip6(B_LAN6), 1, 4, 0, q);
    let mut bad = err(&quoted);
    bad[60] ^= 1;
    assert_all(&n, &bad, NatError::Malformed, "ICMPv6 checksum");
    // The ICMPv6 checksum covers the pseudo-header: another destination fails it.
    let mut moved = err(&quoted);
    moved[39] ^= 1;
    assert_all(&n, &moved, NatError::Malformed, "pseudo-header");
    assert_all(
        &n,
        &err(&quoted[..47]),
        NatError::Malformed,
        "quote < header + 8",
    );
    assert_all(
        &n,
        &err(&quoted[..30]),
        NatError::Malformed,
        "quote < header",
    );
    let q_opts = with_ext6(&quoted, 60, dest_opts6(1));
    assert_all(
        &n,
        &err(&q_opts[..50]),
        NatError::Malformed,
        "quoted extension header beyond the quote",
    );
    assert_all(
        &n,
        &err(&q_opts[..60]),
        NatError::Malformed,
        "quoted ports beyond the quote",
    );
    // A quote with extension headers that fit is translated.
    let mut ok = err(&q_opts);
    assert_eq!(consumer_to_remote(&mut ok, &n.b), Ok(2));
    verify(&ok);
    let q_later = with_ext6(&quoted, 44, frag6(8, false));
    assert_all(
        &n,
        &err(&q_later),
        NatError::Fragment,
        "quoted later fragment",
    );
    let frag = with_ext6(&err(&quoted), 44, frag6(0, true));
    assert_all(&n, &frag, NatError::Fragment, "fragmented ICMPv6 error");
    let later = with_ext6(&err(&quoted), 44, frag6(3, false));
    assert_all(
        &n,
        &later,
        NatError::Fragment,
        "later fragment of an ICMPv6 error",
    );
    let q_icmp = icmp6_error(ip6(B_LAN6), ip6(CONS6), 3, 0, 0, &quoted);
    assert_all(
        &n,
        &err(&q_icmp),
        NatError::UnsupportedProtocol,
        "quotes ICMPv6",
    );
    let unknown = icmp6_error(ip6(CONS6), ip6(B_LAN6), 100, 0, 0, &quoted);
    assert_all(
        &n,
        &unknown,
        NatError::UnsupportedProtocol,
        "private type 100",
    );
}

#[test]
fn ipv6_fragments_and_extension_headers() {
    let n = pair6();
    let c = sa6(CONS6, 40000);
    let good = udp6(c, sa6(B_LAN6, 6000), b"abcdef");
    let later = with_ext6(&good, 44, frag6(1, true));
    assert_all(&n, &later, NatError::Fragment, "later fragment");
    // A first fragment has its ports and is translated (its checksum
    // covers the whole datagram, updated like any other).
    let first = with_ext6(&good, 44, frag6(0, true));
    let mut q = first.clone();
    assert_eq!(consumer_to_remote(&mut q, &n.b), Ok(2));
    let want = with_ext6(&udp6(c, sa6(A_WAN6, 7000), b"abcdef"), 44, frag6(0, true));
    assert_eq!(q, want);
    verify(&q);
    // Extension headers before the transport header stay as they are.
    let opts = with_ext6(&with_ext6(&good, 60, dest_opts6(2)), 43, dest_opts6(0));
    let mut q = opts.clone();
    assert_eq!(consumer_to_remote(&mut q, &n.b), Ok(2));
    let want = with_ext6(
        &with_ext6(&udp6(c, sa6(A_WAN6, 7000), b"abcdef"), 60, dest_opts6(2)),
        43,
        dest_opts6(0),
    );
    assert_eq!(q, want);
    verify(&q);
    // Through A and back with an atomic fragment header on every packet.
    let atomic = |p: Vec<u8>| with_ext6(&p, 44, frag6(0, false));
    let mut p = atomic(udp6(c, sa6(A_WAN6, 7001), b"x"));
    assert_eq!(n.table.inbound_forward(&mut p, &n.a, 0), Ok(3));
    let m = u16::from_be_bytes([p[48], p[49]]);
    assert_eq!(p, atomic(udp6(sa6(A_LAN6, m), sa6(PROD6, 5001), b"x")));
    verify(&p);
    let mut r = atomic(udp6(sa6(PROD6, 5001), sa6(A_LAN6, m), b"y"));
    assert_eq!(n.table.inbound_reply(&mut r, &n.a, 0), Ok(3));
    assert_eq!(r, atomic(udp6(sa6(A_WAN6, 7001), c, b"y")));
    verify(&r);
}

/// Random truncations and byte flips of valid IPv6 packets of every kind,
/// some with the payload length repaired so the deeper parsers run.
#[test]
fn random_damage_to_ipv6_never_panics() {
    let n = pair6();
    let c = sa6(CONS6, 40000);
    let mut seeds = vec![
        udp6(c, sa6(B_LAN6, 6000), b"0123456789"),
        tcp6(c, sa6(B_LAN6, 6001), TCP_SYN, b"abc"),
        udp6(sa6(A_WAN6, 7000), c, b"reply"),
        tcp6(c, sa6(A_WAN6, 7000), TCP_SYN, b""),
        with_ext6(&udp6(c, sa6(A_WAN6, 7001), b"x"), 60, dest_opts6(1)),
        with_ext6(&udp6(c, sa6(B_LAN6, 6000), b"x"), 44, frag6(0, true)),
    ];
    let mut fwd = udp6(c, sa6(A_WAN6, 7000), b"x");
    n.table.inbound_forward(&mut fwd, &n.a, 0).unwrap();
    let m = ports6(&fwd).0;
    seeds.push(udp6(sa6(PROD6, 5000), sa6(A_LAN6, m), b"reply"));
    seeds.push(icmp6_error(ip6(PROD6), ip6(A_LAN6), 1, 4, 0, &fwd));
    let back = udp6(sa6(A_WAN6, 7000), c, b"r");
    seeds.push(icmp6_error(ip6(CONS6), ip6(A_WAN6), 3, 0, 0, &back));
    seeds.push(icmp6_error(
        ip6(CONS6),
        ip6(B_LAN6),
        2,
        0,
        1280,
        &seeds[0].clone(),
    ));
    seeds.push(icmp6_error(
        ip6(A_WAN6),
        ip6(CONS6),
        1,
        4,
        0,
        &seeds[3].clone()[..48],
    ));

    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |bound: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % bound as u64) as usize
    };
    let mut translated = 0;
    for _ in 0..20_000 {
        let mut p = seeds[next(seeds.len())].clone();
        for _ in 0..1 + next(3) {
            let i = next(p.len());
            p[i] ^= 1 << next(8);
        }
        let len = next(p.len() + 1);
        p.truncate(len);
        if p.len() >= 40 && next(2) == 0 {
            p[0] = 0x60 | (p[0] & 0x0f);
            let plen = (p.len() - 40) as u16;
            p[4..6].copy_from_slice(&plen.to_be_bytes());
        }
        translated += all_four(&n, &p).iter().filter(|r| r.is_ok()).count();
    }
    assert!(
        translated > 0,
        "some damaged packets are still translatable"
    );
}

#[test]
fn errors_name_what_failed() {
    assert!(NatError::PoolExhausted
        .to_string()
        .contains("pool exhausted"));
    let e = NatConfigError::Duplicate {
        what: "inbound listen",
        addr: sa(A_WAN, 7000),
    };
    assert_eq!(
        e.to_string(),
        "duplicate inbound listen address 198.51.100.1:7000: two listeners would match the same packets"
    );
    let e = NatConfigError::MixedFamily {
        what: "inbound",
        a: sa6(A_WAN6, 7000),
        b: sa(PROD, 5000),
    };
    assert_eq!(
        e.to_string(),
        "inbound listener [2001:db8:a::1]:7000 leads to 10.1.0.5:5000: listener mode does not \
         translate between IPv4 and IPv6 (both addresses of a listener must be of one family)"
    );
    assert!(NatConfigError::NoLanAddress
        .to_string()
        .contains("LAN address"));
}
