//! Writes the seed corpus of every fuzz target under `corpus/<target>/`:
//! a few valid inputs each, made with the fixtures and the project's own
//! builders (ESP sealed with the fixture's keys, ARP and ND from `wire`).
//! `cargo run --example seeds --manifest-path dataplane/fuzz/Cargo.toml`
//! (from the repository root; no sanitizer needed).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use scistream_dataplane::backend::PacketBuf;
use scistream_dataplane::crypto::{Algorithm, EngineKind};
use scistream_dataplane::esp::Outer;
use scistream_dataplane::wire::{arp, icmpv6};
use scistream_dataplane_fuzz::{
    ethernet, ipv4_packet, l4_segment, peer_sender, sa_pair, seal_with, HOST_MAC, INBOUND_PORT,
    LAN_IP, LAN_IP6, MAC, OUTBOUND_PORT, PEER_IP, ROUTER_MAC, SPI_IN, SPI_IN6, WAN_IP,
};

const HOST: Ipv4Addr = Ipv4Addr::new(10, 10, 1, 2);
const HOST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 1, 0, 0, 0, 0, 2);
const CONSUMER: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 2);

fn chunk(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), bytes).unwrap();
}

fn tcp_syn(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    // SYN with an MSS option of 1460 (kind 2, length 4), data offset 6.
    let mut l4 = l4_segment(true, sport, dport, 0x02, &[2, 4, 0x05, 0xb4]);
    l4[12] = 6 << 4;
    ipv4_packet(src, dst, 6, &l4)
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    ipv4_packet(src, dst, 17, &l4_segment(false, sport, dport, 0, payload))
}

fn echo(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    ipv4_packet(
        src,
        dst,
        1,
        &[8, 0, 0, 0, 0, 1, 0, 1, b'p', b'i', b'n', b'g'],
    )
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let eth4 = |dst, src, ip: &[u8]| ethernet(dst, src, [0x08, 0x00], ip);

    // esp_decap: flags, window top, then packets sealed with the target's fixed key.
    for (i, (esn, outer6, top, seqs)) in [
        (true, false, 0u64, [1u64, 2, 3]),
        (
            true,
            false,
            0xffff_fff0,
            [0x1_0000_0002, 0xffff_fff5, 0x1_0000_0001],
        ),
        (false, true, 100, [101, 99, 5000]),
    ]
    .into_iter()
    .enumerate()
    {
        let flags = u8::from(esn) << 3 | u8::from(outer6) << 4;
        let (out, _) = sa_pair(
            EngineKind::Ring,
            EngineKind::Ring,
            Algorithm::Aes128Gcm,
            esn,
        );
        let outer = if outer6 {
            Outer::new(
                "fd00:10:200::1".parse().unwrap(),
                "fd00:10:100::1".parse().unwrap(),
            )
        } else {
            Outer::new(PEER_IP.into(), WAN_IP.into())
        };
        let mut input = vec![flags];
        input.extend_from_slice(&top.to_be_bytes());
        for seq in seqs {
            let inner = udp(CONSUMER, HOST, 40000, 7000, b"seed");
            let b = seal_with(&out, &outer, &inner, seq).unwrap();
            chunk(&mut input, b.data());
        }
        write(&dir, "esp_decap", &format!("sealed-{i}"), &input);
    }

    // esp_mutate: flags, window placement, then per packet: how, seq bytes, length, inner, mutations.
    write(
        &dir,
        "esp_mutate",
        "plain",
        &[0x08, 1, 0, 0, 0, 5, 0, 0, 1, 0, 40],
    );
    write(
        &dir,
        "esp_mutate",
        "boundary-flip",
        &[
            0x0b, 0, 0, 1, 0, 3, 0x06, 0, 9, 0, 64, 0x45, 0, 0, 64, 0x04, 0, 50, 0x80, 0,
        ],
    );
    write(
        &dir,
        "esp_mutate",
        "ipv6-padding",
        &[
            0x1c, 2, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x83, 0, 0, 0x10, 0, 0, 100,
            0x42,
        ],
    );

    // classify: flags (bit 0: WAN), then the frame.
    let classify = |name: &str, wan: bool, frame: Vec<u8>| {
        let mut input = vec![u8::from(wan)];
        input.extend_from_slice(&frame);
        write(&dir, "classify", name, &input);
    };
    let esp4 = peer_sender(SPI_IN, EngineKind::Ring);
    let esp6 = peer_sender(SPI_IN6, EngineKind::Ring);
    let syn_in = tcp_syn(CONSUMER, HOST, 40000, 7000);
    classify("arp-request", false, arp::request(HOST_MAC, HOST, LAN_IP));
    classify(
        "nd-solicit",
        false,
        icmpv6::neighbor_solicit(HOST_MAC, HOST6, LAN_IP6),
    );
    classify(
        "echo-wan",
        true,
        eth4(MAC[1], ROUTER_MAC, &echo(PEER_IP, WAN_IP)),
    );
    classify(
        "lan-to-tunnel",
        false,
        eth4(MAC[0], HOST_MAC, &udp(HOST, CONSUMER, 5000, 5001, b"x")),
    );
    classify(
        "lan-to-listener",
        false,
        eth4(
            MAC[0],
            HOST_MAC,
            &tcp_syn(HOST, LAN_IP, 40000, OUTBOUND_PORT),
        ),
    );
    classify("esp4", true, esp4.seal_frame(&syn_in, 1).unwrap());
    classify("esp6", true, esp6.seal_frame(&syn_in, 1).unwrap());
    classify(
        "clear-wan-forward",
        true,
        eth4(
            MAC[1],
            ROUTER_MAC,
            &udp(PEER_IP, Ipv4Addr::new(10, 10, 100, 9), 1, 2, b"x"),
        ),
    );

    // worker: engine byte, then operations (see the target).
    let to_listener = tcp_syn(CONSUMER, WAN_IP, 40000, INBOUND_PORT);
    let mut w = vec![0u8];
    w.push(2); // ESP from the IPv4 peer around a SYN to our inbound listener
    w.extend_from_slice(&7u32.to_be_bytes());
    chunk(&mut w, &to_listener);
    w.push(0x40); // the producer's SYN-ACK from the LAN, then run
    let mut synack = l4_segment(true, 7000, 32768, 0x12, &[2, 4, 0x05, 0xb4]);
    synack[12] = 6 << 4;
    chunk(&mut w, &ipv4_packet(HOST, LAN_IP, 6, &synack));
    w.push(0); // ARP request on the LAN
    chunk(&mut w, &arp::request(HOST_MAC, HOST, LAN_IP));
    w.push(4); // a LAN packet into the routed tunnel
    chunk(&mut w, &udp(HOST, CONSUMER, 5000, 5001, b"routed"));
    w.push(3); // ESP from the IPv6 peer around an echo to the LAN host
    w.extend_from_slice(&1u32.to_be_bytes());
    chunk(&mut w, &echo(CONSUMER, HOST));
    w.push(0x41);
    write(&dir, "worker", "listener-and-routed", &w);
    let mut w = vec![1u8, 1];
    chunk(&mut w, &eth4(MAC[1], ROUTER_MAC, &echo(PEER_IP, WAN_IP)));
    w.push(0); // a TTL-1 packet into the tunnel: time exceeded
    let mut ttl1 = udp(HOST, CONSUMER, 1, 2, b"ttl");
    ttl1[8] = 1;
    scistream_dataplane_fuzz::fix_ipv4_checksums(&mut ttl1);
    chunk(&mut w, &eth4(MAC[0], HOST_MAC, &ttl1));
    w.push(0x41);
    write(&dir, "worker", "echo-and-ttl", &w);

    // nat: operations (see the target).
    let mut n = Vec::new();
    n.extend_from_slice(&[0x12, 10, 20, 1, 2, 0x9c, 0x40, 0x02]); // TCP consumer → inbound listener
    chunk(&mut n, b"hello");
    n.extend_from_slice(&[0x13, 0, 0, 0x12]); // producer reply to mapped port 32768
    chunk(&mut n, b"world");
    n.extend_from_slice(&[0x06, 3, 3, 48, 10, 10, 1, 2]); // ICMP error quoting it
    n.extend_from_slice(&[0x04, 0x9c, 0x41, 0]); // UDP to the outbound listener
    chunk(&mut n, b"out");
    n.extend_from_slice(&[0x05, 0x9c, 0x41, 0]); // the peer listener's reply
    chunk(&mut n, b"back");
    n.push(7);
    write(&dir, "nat", "both-ways", &n);

    // slowpath: operations: op (bit 0 WAN, bits 1..3 reason), then the frame.
    let mut s = vec![0u8];
    chunk(&mut s, &arp::request(HOST_MAC, HOST, LAN_IP));
    s.push(2);
    chunk(&mut s, &icmpv6::neighbor_solicit(HOST_MAC, HOST6, LAN_IP6));
    s.push(5);
    chunk(&mut s, &eth4(MAC[1], ROUTER_MAC, &echo(PEER_IP, WAN_IP)));
    s.push(8);
    chunk(
        &mut s,
        &eth4(MAC[0], HOST_MAC, &udp(HOST, CONSUMER, 1, 2, b"ttl")),
    );
    s.push(0x8a);
    s.extend_from_slice(&1400u16.to_be_bytes());
    chunk(
        &mut s,
        &eth4(MAC[0], HOST_MAC, &udp(HOST, CONSUMER, 1, 2, &[0; 1450])),
    );
    s.push(12);
    s.extend_from_slice(&[10, 10, 100, 77]);
    s.extend_from_slice(&[14, 0, 60]);
    write(&dir, "slowpath", "arp-nd-echo-errors", &s);

    // s2ds_config: the example configurations of s2ds.
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    for e in std::fs::read_dir(&configs).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".toml") && !name.starts_with("control-") {
            write(&dir, "s2ds_config", &name, &std::fs::read(&p).unwrap());
        }
    }

    // region_reader: the valid region, and a few patches.
    write(&dir, "region_reader", "valid", &[0]);
    write(
        &dir,
        "region_reader",
        "header",
        &[0, 0, 8, 0, 4, 0xff, 0xff, 0xff, 0xff],
    );
    write(&dir, "region_reader", "short", &[0x09]);
}
