//! Listener mode end to end in memory (B and A, steps 1 to 4), and
//! malformed and random input through every entry point.

use std::net::SocketAddrV4;

use super::packet::{TCP_ACK, TCP_PSH, TCP_SYN};
use super::testutil::*;
use super::*;
use crate::wire::{checksum, ipv4};

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
    let table = ConnTable::new(ip4(A_LAN), 40000, 256, Timeouts::default()).unwrap();
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
            // A translated one still has a valid IPv4 header.
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

#[test]
fn errors_name_what_failed() {
    assert!(NatError::PoolExhausted
        .to_string()
        .contains("pool exhausted"));
    let e = NatConfigError::Duplicate {
        what: "inbound listen",
        addr: SocketAddrV4::new(ip4(A_WAN), 7000),
    };
    assert_eq!(
        e.to_string(),
        "duplicate inbound listen address 198.51.100.1:7000: two listeners would match the same packets"
    );
}
