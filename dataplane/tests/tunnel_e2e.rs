//! End to end through the encrypted tunnel: prod — gwA (s2ds) — wan — gwB
//! (s2ds) — cons, both gateways running the testbed configs' ESP-in-UDP
//! tunnel (AES-GCM, manual keys). Needs root.
//!
//! - `tunnel_af_packet`, `tunnel_native`: TCP and UDP arrive intact through
//!   both gateways; a capture on the WAN shows nothing but ESP-in-UDP
//!   between the two gateways and never the payload prod sent (which the
//!   same search finds in a capture on prod's cleartext side).
//! - `tamper_replay_and_unknown_spi`: ESP frames intercepted on the WAN and
//!   injected toward gwB tampered, replayed or with a foreign SPI are
//!   dropped, each under its own counter, and nothing reaches cons.
//! - `df_too_big_gets_frag_needed`: a DF packet too big for the tunnel gets
//!   an ICMP "fragmentation needed" naming the tunnel's inner MTU.
//! - `jumbo_9000`: 8000-byte datagrams through the tunnel on a 9000-byte MTU.
//! - `ipv6_inside_the_tunnel_*`: inner IPv6 (next header 41) over an IPv4 tunnel.
//! - `tunnel_over_ipv6_*`: the tunnel itself over IPv6 (UDP checksums
//!   filled and checked), carrying inner IPv4 and IPv6: with the tests
//!   above, all four inner/outer family combinations.
//! - `ipv6_only_*`: IPv6-only gateways on an IPv6-only testbed (ND, ping6,
//!   UDP in order, 50 MB of TCP, only ESP over IPv6 on the WAN).
//! - `aes_gcm_engine`: the same data path with the `aes-gcm` AEAD engine.
//! - `ipsec_mb_engine_against_ring_*`: gwA on the `ipsec-mb` engine, gwB on
//!   `ring`, over DPDK's net_af_packet and over native AF_XDP: each engine
//!   opens what the other sealed, on both backends.
//!
//! Two s2ds processes share the testbed VM's CPUs, so the tests in this file
//! run one at a time (they take [`SERIAL`]).

use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use scistream_dataplane::snapshot::Snapshot;
use serde_json::Value;

use scistream_testbed::capture::{
    contains, fix_checksums, format_mac, inject, parse_mac, Capture, Frame, ETHERTYPE_ARP,
    ETHERTYPE_IPV4, ETH_HLEN,
};
use scistream_testbed::gateway::Gateway;
use scistream_testbed::netns::{json_str, json_u64, require_root};
use scistream_testbed::netns::{Family, GwMode, Node, Testbed, TestbedOpts};

/// Tests in this file run one at a time: each runs two gateways.
static SERIAL: Mutex<()> = Mutex::new(());

/// A distinctive 16-byte payload pattern, searched for in captures.
const PATTERN_HEX: &str = "5c15c1ea7ab1e0d1deadfa11c0ffee42";
/// gwA's WAN address (outer source of gwA's ESP packets).
const GWA_WAN: &str = "10.10.100.1";
/// gwB's WAN address.
const GWB_WAN: &str = "10.10.200.1";
/// The ESP-in-UDP port (RFC 3948) of the testbed configs.
const ESP_UDP_PORT: u16 = 4500;
/// gwA's outbound SPI (gwB's inbound) in the testbed configs.
const SPI_A_TO_B: u32 = 0x1001;
/// gwB's outbound SPI (gwA's inbound).
const SPI_B_TO_A: u32 = 0x2001;
/// Where cons is reached.
const CONS: &str = "10.20.1.2";

/// Backend of the tests that need a gateway pair of any kind: DPDK's
/// net_af_packet when s2ds is built with DPDK, else the native AF_XDP one.
#[cfg(feature = "dpdk")]
const ANY_BACKEND: (&str, GwMode) = ("af_packet", GwMode::None);
#[cfg(not(feature = "dpdk"))]
const ANY_BACKEND: (&str, GwMode) = ("native-xdp", GwMode::None);

/// IP protocol number of IGMP.
const IPPROTO_IGMP: u8 = 2;

/// Takes the file-wide test lock, ignoring poisoning by a failed test.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn pattern() -> Vec<u8> {
    (0..PATTERN_HEX.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&PATTERN_HEX[i..i + 2], 16).unwrap())
        .collect()
}

/// The tunnel's inner MTU for a 1500-byte link, as s2ds computes it.
fn inner_mtu_1500() -> u64 {
    u64::from(scistream_dataplane::esp::inner_mtu(1500))
}

/// The testbed with one s2ds per gateway. Fields drop in order: the
/// gateways stop (printing their logs on a panic) before the namespaces go.
struct Pair {
    a: Gateway,
    b: Gateway,
    tb: Testbed,
}

impl Pair {
    /// Builds the testbed (gateway namespaces in `mode`, links at `mtu`)
    /// and starts `testbed-gw{a,b}-<backend>.toml` with `edit` applied to
    /// both configs.
    fn up(backend: &str, mode: GwMode, mtu: u16, edit: impl Fn(&mut toml::Table)) -> Pair {
        Self::up_with(backend, mode, mtu, Family::V4, edit)
    }

    /// [`Pair::up`] on a testbed of address `family`.
    fn up_with(
        backend: &str,
        mode: GwMode,
        mtu: u16,
        family: Family,
        edit: impl Fn(&mut toml::Table),
    ) -> Pair {
        let tb = Testbed::up(TestbedOpts {
            gw_a: mode,
            gw_b: mode,
            mtu,
            family,
        });
        let a = Gateway::start(
            &tb,
            Node::GwA,
            &format!("testbed-gwa-{backend}.toml"),
            &edit,
        );
        let b = Gateway::start(
            &tb,
            Node::GwB,
            &format!("testbed-gwb-{backend}.toml"),
            &edit,
        );
        Pair { a, b, tb }
    }

    /// Pings cons from prod until it answers (the gateways resolve their
    /// next hops by ARP in the first second); panics with both logs if it
    /// never does.
    fn wait_reachable(&self) {
        for _ in 0..10 {
            if self.tb.ping(Node::Prod, CONS, 1) {
                return;
            }
        }
        panic!(
            "prod never reached cons through the tunnel\n--- gwA:\n{}\n--- gwB:\n{}",
            self.a.log_text(),
            self.b.log_text()
        );
    }

    /// Both gateways' settled snapshots (after all counters were exported).
    fn settled(&self) -> (Snapshot, Snapshot) {
        thread::sleep(Duration::from_millis(600));
        (self.a.snapshot(), self.b.snapshot())
    }
}

/// Sends `count` datagrams of `size` bytes filled with [`PATTERN_HEX`] from
/// prod to cons:`port` at `rate` pps; returns (sender, receiver) reports.
fn udp_pattern(p: &Pair, port: u16, count: u64, size: usize, rate: u64) -> (Value, Value) {
    udp_pattern_to(p, CONS, port, count, size, rate)
}

/// The receiver's wildcard bind and the sender's destination for `cons`
/// (an IPv4 or IPv6 address) and `port`.
fn endpoints(cons: &str, port: u16) -> (String, String) {
    if cons.contains(':') {
        (format!("[::]:{port}"), format!("[{cons}]:{port}"))
    } else {
        (format!("0.0.0.0:{port}"), format!("{cons}:{port}"))
    }
}

/// [`udp_pattern`] to `cons`.
fn udp_pattern_to(
    p: &Pair,
    cons: &str,
    port: u16,
    count: u64,
    size: usize,
    rate: u64,
) -> (Value, Value) {
    let (bind, to) = endpoints(cons, port);
    let (count_s, size_s, rate_s) = (count.to_string(), size.to_string(), rate.to_string());
    let recv = p.tb.start_receiver(
        Node::Cons,
        &[
            "udp-recv",
            "--bind",
            &bind,
            "--count",
            &count_s,
            "--timeout",
            "5",
        ],
    );
    let sender = p.tb.run_sender(
        Node::Prod,
        &[
            "udp-send",
            "--to",
            &to,
            "--count",
            &count_s,
            "--size",
            &size_s,
            "--rate",
            &rate_s,
            "--pattern",
            PATTERN_HEX,
        ],
        Duration::from_secs(count / rate.max(1) + 60),
    );
    let receiver = p.tb.finish(recv, Duration::from_secs(40));
    (sender, receiver)
}

/// Sends `bytes` bytes of [`PATTERN_HEX`] over TCP from prod to cons:`port`;
/// returns (sender, receiver) reports.
fn tcp_pattern(p: &Pair, port: u16, bytes: u64) -> (Value, Value) {
    tcp_pattern_to(p, CONS, port, bytes)
}

/// [`tcp_pattern`] to `cons`.
fn tcp_pattern_to(p: &Pair, cons: &str, port: u16, bytes: u64) -> (Value, Value) {
    let (bind, to) = endpoints(cons, port);
    let bytes_s = bytes.to_string();
    let recv = p.tb.start_receiver(
        Node::Cons,
        &["tcp-recv", "--bind", &bind, "--timeout", "30"],
    );
    let deadline = Duration::from_secs(bytes / 1_000_000 + 90);
    let sender = p.tb.run_sender(
        Node::Prod,
        &[
            "tcp-send",
            "--to",
            &to,
            "--bytes",
            &bytes_s,
            "--pattern",
            PATTERN_HEX,
            "--timeout",
            "30",
        ],
        deadline,
    );
    let receiver = p.tb.finish(recv, deadline);
    (sender, receiver)
}

/// Asserts a UDP run delivered all `count` datagrams, in order, once each.
fn assert_udp_complete(sender: &Value, receiver: &Value, count: u64) {
    assert_eq!(json_u64(sender, "sent"), count, "sender: {sender}");
    assert_eq!(
        json_u64(receiver, "received"),
        count,
        "no datagram lost: {receiver}"
    );
    assert_eq!(json_u64(receiver, "lost"), 0, "{receiver}");
    assert_eq!(json_u64(receiver, "duplicates"), 0, "{receiver}");
    assert_eq!(
        json_u64(receiver, "out_of_order"),
        0,
        "in order: {receiver}"
    );
    assert_eq!(json_u64(receiver, "unexpected_seq"), 0, "{receiver}");
}

fn drop_count(s: &Snapshot, reason: &str) -> u64 {
    *s.drops
        .get(reason)
        .unwrap_or_else(|| panic!("no drop reason '{reason}' in the stats: {:?}", s.drops))
}

fn port_tx(s: &Snapshot, port: &str) -> u64 {
    s.ports
        .iter()
        .find(|p| p.id.name() == port)
        .unwrap_or_else(|| panic!("no port '{port}' in the stats"))
        .counts
        .tx_packets
}

/// The ESP header of an ESP-in-UDP frame: (SPI, sequence number, offset of
/// the ESP header in the frame). None for anything else, including the
/// one-byte NAT keepalive and non-ESP markers (RFC 3948).
fn esp_header(bytes: &[u8]) -> Option<(u32, u32, usize)> {
    let f = Frame::parse(bytes)?;
    let ip = f.ipv4?;
    let (_, dport) = ip.udp_ports?;
    if dport != ESP_UDP_PORT {
        return None;
    }
    let esp = ETH_HLEN + ip.ihl + 8;
    let h = bytes.get(esp..esp + 8)?;
    let spi = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let seq = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    (spi != 0).then_some((spi, seq, esp))
}

/// What a WAN capture contains, frame by frame.
#[derive(Debug, Default)]
struct WanCensus {
    arp: u64,
    esp_a_to_b: u64,
    esp_b_to_a: u64,
    /// IGMP reports of a testbed bridge (see [`census`]).
    bridge_igmp: u64,
    /// Descriptions of every other frame (must stay empty).
    other: Vec<String>,
}

/// Sorts the frames of a WAN capture. `bridge_macs` are the MACs of the
/// Linux bridges a TAP-backend gateway namespace uses to reach its veths:
/// such a bridge (not s2ds) joins the all-snoopers group (224.0.0.106) when
/// it comes up and sends IGMP reports from 0.0.0.0. Those, and only those,
/// are tolerated besides ARP and the tunnel.
fn census(frames: &[Vec<u8>], bridge_macs: &[[u8; 6]]) -> WanCensus {
    let mut c = WanCensus::default();
    for (i, bytes) in frames.iter().enumerate() {
        let Some(f) = Frame::parse(bytes) else {
            c.other.push(format!("#{i}: runt of {} bytes", bytes.len()));
            continue;
        };
        match (f.ethertype, &f.ipv4) {
            (ETHERTYPE_ARP, _) => c.arp += 1,
            (ETHERTYPE_IPV4, Some(ip)) => {
                let (src, dst) = (ip.src.to_string(), ip.dst.to_string());
                let ports = ip.udp_ports;
                let between =
                    (src == GWA_WAN && dst == GWB_WAN) || (src == GWB_WAN && dst == GWA_WAN);
                let esp = esp_header(bytes);
                match (between, ports, esp) {
                    (true, Some((ESP_UDP_PORT, ESP_UDP_PORT)), Some((SPI_A_TO_B, _, _)))
                        if src == GWA_WAN =>
                    {
                        c.esp_a_to_b += 1
                    }
                    (true, Some((ESP_UDP_PORT, ESP_UDP_PORT)), Some((SPI_B_TO_A, _, _)))
                        if src == GWB_WAN =>
                    {
                        c.esp_b_to_a += 1
                    }
                    _ if ip.protocol == IPPROTO_IGMP
                        && ip.src.is_unspecified()
                        && bridge_macs.contains(&f.src_mac) =>
                    {
                        c.bridge_igmp += 1
                    }
                    _ => c.other.push(format!(
                        "#{i}: {} -> {}: IPv4 {src} -> {dst} proto {} ports {ports:?} esp {esp:?}",
                        format_mac(&f.src_mac),
                        format_mac(&f.dst_mac),
                        ip.protocol
                    )),
                }
            }
            (t, _) => c.other.push(format!(
                "#{i}: {} -> {}: ethertype {t:#06x}",
                format_mac(&f.src_mac),
                format_mac(&f.dst_mac)
            )),
        }
    }
    c
}

/// Test 1, per backend: TCP and UDP through both gateways, and the WAN
/// carries only ESP-in-UDP without any trace of the payload.
fn tunnel_through(backend: &str, mode: GwMode) {
    let _serial = serial();
    require_root();
    let t0 = Instant::now();
    let p = Pair::up(backend, mode, 1500, |_| {});
    p.wait_reachable();
    let t_up = t0.elapsed();
    let pat = pattern();

    const UDP_COUNT: u64 = 20_000;
    const TCP_BYTES: u64 = 200 * 1000 * 1000;
    const TCP_PATTERN_BYTES: u64 = 5 * 1000 * 1000;

    let mut wan = Capture::start(&p.tb, Node::Wan, "a0");
    let mut clear = Capture::start(&p.tb, Node::Prod, "eth0");

    let t1 = Instant::now();
    let (us, ur) = udp_pattern(&p, 6001, UDP_COUNT, 1000, 5_000);
    let t_udp = t1.elapsed();
    let (ts, tr) = tcp_pattern(&p, 6002, TCP_PATTERN_BYTES);
    let clear_stats = clear.stop();
    let t2 = Instant::now();
    let tcp =
        p.tb.tcp_transfer(Node::Prod, Node::Cons, "10.20.1.2:6003", TCP_BYTES);
    let t_tcp = t2.elapsed();
    let wan_stats = wan.stop();

    assert_udp_complete(&us, &ur, UDP_COUNT);
    assert_eq!(json_u64(&tr, "bytes"), TCP_PATTERN_BYTES, "{tr}");
    assert_eq!(json_str(&ts, "sha256"), json_str(&tr, "sha256"));
    assert_eq!(tcp.sent_bytes, TCP_BYTES);
    assert_eq!(tcp.received_bytes, TCP_BYTES);
    assert_eq!(tcp.sent_sha256, tcp.received_sha256, "TCP stream intact");

    // The search works: prod's own link carries the pattern in clear.
    assert!(
        contains(&clear.bytes(), &pat),
        "pattern not found in the cleartext capture on prod ({clear_stats:?}): the search is broken"
    );
    // The WAN carries nothing but ESP-in-UDP between the gateways (and ARP).
    let frames = wan.frames();
    // gwA's side of the WAN link, for the TAP backend through a bridge.
    let bridge_macs: Vec<[u8; 6]> = match mode {
        GwMode::Bridge => {
            p.tb.link_mac(Node::GwA, "brwan")
                .map(|m| parse_mac(&m))
                .into_iter()
                .collect()
        }
        _ => Vec::new(),
    };
    let c = census(&frames, &bridge_macs);
    assert!(
        c.other.is_empty(),
        "{} non-ESP frame(s) on the WAN, first: {:?}",
        c.other.len(),
        &c.other[..c.other.len().min(10)]
    );
    assert!(
        c.esp_a_to_b >= UDP_COUNT,
        "the WAN capture holds the tunnelled datagrams: {c:?}, tcpdump {wan_stats:?}"
    );
    assert!(
        c.esp_b_to_a > 0,
        "TCP acknowledgements come back through the tunnel: {c:?}"
    );
    assert!(
        !contains(&wan.bytes(), &pat),
        "prod's payload pattern appears in clear on the WAN"
    );

    let (a, b) = p.settled();
    assert!(
        a.tunnel.encap_packets >= UDP_COUNT,
        "gwA encap: {:?}",
        a.tunnel
    );
    assert!(
        b.tunnel.decap_packets >= UDP_COUNT,
        "gwB decap: {:?}",
        b.tunnel
    );
    assert!(
        b.tunnel.encap_packets > 0 && a.tunnel.decap_packets > 0,
        "{:?} {:?}",
        a.tunnel,
        b.tunnel
    );
    for (name, s) in [("gwA", &a), ("gwB", &b)] {
        assert_eq!(drop_count(s, "esp_auth_failed"), 0, "{name}: {:?}", s.drops);
        assert_eq!(drop_count(s, "esp_replay"), 0, "{name}: {:?}", s.drops);
    }
    let nonzero = |s: &Snapshot| -> Vec<(String, u64)> {
        s.drops
            .iter()
            .filter(|(_, &v)| v > 0)
            .map(|(k, &v)| (k.clone(), v))
            .collect()
    };
    eprintln!(
        "tunnel {backend}: up+reachable {t_up:?}, UDP {UDP_COUNT} x 1000 B {t_udp:?}, \
         TCP 200 MB {t_tcp:?}, total {:?}; WAN capture {} frames ({} ESP a->b, {} ESP b->a, \
         {} ARP, {} bridge IGMP), tcpdump {wan_stats:?}; gwA {:?} drops {:?}; gwB {:?} drops {:?}",
        t0.elapsed(),
        frames.len(),
        c.esp_a_to_b,
        c.esp_b_to_a,
        c.arp,
        c.bridge_igmp,
        a.tunnel,
        nonzero(&a),
        b.tunnel,
        nonzero(&b),
    );
}

/// Gives both testbed gateways their IPv6 addresses and the far IPv6 LAN
/// as a tunnel route (through the same outbound SA as the IPv4 one).
fn dual_stack_tunnel(t: &mut toml::Table) {
    let a = t["gateway"]["name"].as_str() == Some("gwa");
    let (lan6, wan6, far6, sa) = if a {
        (
            "fd00:10:1::1/64",
            "fd00:10:100::1/64",
            "fd00:20:1::/64",
            SPI_A_TO_B,
        )
    } else {
        (
            "fd00:20:1::1/64",
            "fd00:10:200::1/64",
            "fd00:10:1::/64",
            SPI_B_TO_A,
        )
    };
    let ports = t["ports"].as_table_mut().unwrap();
    for (port, v6) in [("lan", lan6), ("wan", wan6)] {
        let p = ports[port].as_table_mut().unwrap();
        let v4 = p["address"].as_str().unwrap().to_owned();
        p.insert(
            "address".into(),
            toml::Value::Array(vec![v4.into(), v6.into()]),
        );
    }
    let mut route = toml::Table::new();
    route.insert("prefix".into(), far6.into());
    route.insert("sa".into(), i64::from(sa).into());
    t["tunnel_routes"]
        .as_array_mut()
        .unwrap()
        .push(route.into());
}

/// IPv6 inside the tunnel (next header 41), IPv4 outside, on a dual-stack
/// testbed: ping6, 10,000 UDP datagrams and 50 MB of TCP from prod to cons
/// intact, the MSS of the TCP SYNs clamped, and the WAN carrying nothing
/// but ESP-in-UDP over IPv4 (and ARP) without a trace of the payload.
fn ipv6_inside_the_tunnel(backend: &str) {
    let _serial = serial();
    require_root();
    let p = Pair::up_with(backend, GwMode::None, 1500, Family::Dual, dual_stack_tunnel);
    let cons6 = "fd00:20:1::2";
    let reachable = (0..10).any(|_| p.tb.ping(Node::Prod, cons6, 1));
    assert!(
        reachable,
        "prod never reached cons over IPv6\n--- gwA:\n{}\n--- gwB:\n{}",
        p.a.log_text(),
        p.b.log_text()
    );
    const UDP_COUNT: u64 = 10_000;
    const TCP_BYTES: u64 = 50 * 1000 * 1000;
    let mut wan = Capture::start(&p.tb, Node::Wan, "a0");
    let (us, ur) = udp_pattern_to(&p, cons6, 6101, UDP_COUNT, 1000, 5_000);
    let (ts, tr) = tcp_pattern_to(&p, cons6, 6102, 2_000_000);
    let tcp =
        p.tb.tcp_transfer(Node::Prod, Node::Cons, "[fd00:20:1::2]:6103", TCP_BYTES);
    wan.stop();
    assert_udp_complete(&us, &ur, UDP_COUNT);
    assert_eq!(json_str(&ts, "sha256"), json_str(&tr, "sha256"));
    assert_eq!(tcp.received_bytes, TCP_BYTES);
    assert_eq!(tcp.sent_sha256, tcp.received_sha256, "TCP over IPv6 intact");

    let c = census(&wan.frames(), &[]);
    // The WAN router's kernel (IPv6 on) sends its own multicast listener
    // reports on the link; the gateway sends nothing but the tunnel.
    let router =
        p.tb.link_mac(Node::Wan, "a0")
            .expect("the WAN router's MAC");
    let others: Vec<&String> = c
        .other
        .iter()
        .filter(|d| !d.contains(&format!("{router} -> 33:33:")))
        .collect();
    assert!(
        others.is_empty(),
        "{} frame(s) on the WAN other than ESP-in-UDP and ARP, first: {:?}",
        others.len(),
        &others[..others.len().min(10)]
    );
    assert!(c.esp_a_to_b >= UDP_COUNT, "{c:?}");
    assert!(
        !contains(&wan.bytes(), &pattern()),
        "payload in clear on the WAN"
    );

    let (a, b) = p.settled();
    assert!(a.tunnel.encap_packets >= UDP_COUNT && b.tunnel.decap_packets >= UDP_COUNT);
    assert!(
        a.tunnel.mss_clamped >= 2 && b.tunnel.mss_clamped >= 2,
        "each SYN clamped where it entered the tunnel: A {:?} B {:?}",
        a.tunnel,
        b.tunnel
    );
    for (name, s) in [("gwA", &a), ("gwB", &b)] {
        for reason in [
            "esp_auth_failed",
            "esp_replay",
            "esp_bad_trailer",
            "ipv6_malformed",
        ] {
            assert_eq!(drop_count(s, reason), 0, "{name} {reason}: {:?}", s.drops);
        }
        assert_eq!(s.control.icmp_errors, 0, "{name}: no Packet Too Big needed");
    }
}

/// [`dual_stack_tunnel`], and the tunnel itself over IPv6: each peer is
/// the other gateway's IPv6 WAN address, reached through the WAN router.
fn tunnel_over_ipv6(t: &mut toml::Table) {
    dual_stack_tunnel(t);
    let a = t["gateway"]["name"].as_str() == Some("gwa");
    let (peer, far_wan, router) = if a {
        (GWB_WAN6, "fd00:10:200::/64", "fd00:10:100::fe")
    } else {
        (GWA_WAN6, "fd00:10:100::/64", "fd00:10:200::fe")
    };
    t["peers"].as_array_mut().unwrap()[0]
        .as_table_mut()
        .unwrap()
        .insert("address".into(), peer.into());
    let mut route = toml::Table::new();
    route.insert("prefix".into(), far_wan.into());
    route.insert("via".into(), router.into());
    t["routes"].as_array_mut().unwrap().push(route.into());
}

/// gwA's IPv6 WAN address, the outer source of its ESP over IPv6.
const GWA_WAN6: &str = "fd00:10:100::1";
/// gwB's IPv6 WAN address.
const GWB_WAN6: &str = "fd00:10:200::1";

/// What a WAN capture of a tunnel over IPv6 holds.
#[derive(Debug, Default)]
struct WanCensus6 {
    esp_a_to_b: u64,
    esp_b_to_a: u64,
    /// Neighbor Discovery and multicast listener reports (ICMPv6).
    nd_and_mld: u64,
    /// Every other frame, described (must stay empty): any IPv4, ARP
    /// included, since nothing on this WAN needs IPv4.
    other: Vec<String>,
}

/// Sorts the frames of a WAN capture of a tunnel over IPv6.
fn census6(frames: &[Vec<u8>]) -> WanCensus6 {
    use scistream_dataplane::wire::ipv6;
    let (a, b): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        (GWA_WAN6.parse().unwrap(), GWB_WAN6.parse().unwrap());
    let mut c = WanCensus6::default();
    for (i, bytes) in frames.iter().enumerate() {
        let what = format!("#{i} ({} bytes)", bytes.len());
        let Some(f) = Frame::parse(bytes) else {
            c.other.push(format!("{what}: runt"));
            continue;
        };
        if f.ethertype != 0x86dd {
            c.other
                .push(format!("{what}: ethertype {:#06x}", f.ethertype));
            continue;
        }
        let Ok(ip) = ipv6::parse(&bytes[ETH_HLEN..]) else {
            c.other.push(format!("{what}: malformed IPv6"));
            continue;
        };
        let l4 = &bytes[ETH_HLEN + ip.l4_at..];
        match ip.protocol {
            58 if matches!(l4.first(), Some(133..=136 | 143)) => c.nd_and_mld += 1,
            17 if l4.len() >= 16 && l4[0..4] == [0x11, 0x94, 0x11, 0x94] => {
                let spi = u32::from_be_bytes([l4[8], l4[9], l4[10], l4[11]]);
                match (ip.src, ip.dst, spi) {
                    (s, d, SPI_A_TO_B) if s == a && d == b => c.esp_a_to_b += 1,
                    (s, d, SPI_B_TO_A) if s == b && d == a => c.esp_b_to_a += 1,
                    _ => c
                        .other
                        .push(format!("{what}: ESP {} -> {} SPI {spi:#x}", ip.src, ip.dst)),
                }
            }
            p => c.other.push(format!(
                "{what}: IPv6 {} -> {} protocol {p}",
                ip.src, ip.dst
            )),
        }
    }
    c
}

/// The tunnel over IPv6 (ESP-in-UDP with UDP checksums) on a dual-stack
/// testbed, carrying both inner families: 10,000 UDP datagrams of each
/// arrive in order with none lost, 20 MB of TCP over each arrives intact,
/// and the WAN carries nothing but ESP-in-UDP over IPv6 between the two
/// gateways (and ICMPv6 neighbour discovery), never the payload.
fn tunnel_over_ipv6_both_inner_families(backend: &str) {
    let _serial = serial();
    require_root();
    let p = Pair::up_with(backend, GwMode::None, 1500, Family::Dual, tunnel_over_ipv6);
    let cons6 = "fd00:20:1::2";
    for cons in [CONS, cons6] {
        let reachable = (0..10).any(|_| p.tb.ping(Node::Prod, cons, 1));
        assert!(
            reachable,
            "prod never reached {cons} through the tunnel over IPv6\n--- gwA:\n{}\n--- gwB:\n{}",
            p.a.log_text(),
            p.b.log_text()
        );
    }
    const UDP_COUNT: u64 = 10_000;
    const TCP_BYTES: u64 = 20 * 1000 * 1000;
    let mut wan = Capture::start(&p.tb, Node::Wan, "a0");
    let (us4, ur4) = udp_pattern_to(&p, CONS, 6201, UDP_COUNT, 1000, 5_000);
    let (us6, ur6) = udp_pattern_to(&p, cons6, 6202, UDP_COUNT, 1000, 5_000);
    let tcp4 =
        p.tb.tcp_transfer(Node::Prod, Node::Cons, "10.20.1.2:6203", TCP_BYTES);
    let tcp6 =
        p.tb.tcp_transfer(Node::Prod, Node::Cons, "[fd00:20:1::2]:6204", TCP_BYTES);
    wan.stop();
    assert_udp_complete(&us4, &ur4, UDP_COUNT);
    assert_udp_complete(&us6, &ur6, UDP_COUNT);
    for (family, tcp) in [("IPv4", &tcp4), ("IPv6", &tcp6)] {
        assert_eq!(tcp.received_bytes, TCP_BYTES, "inner {family}");
        assert_eq!(
            tcp.sent_sha256, tcp.received_sha256,
            "inner {family} TCP intact"
        );
    }

    let frames = wan.frames();
    let c = census6(&frames);
    // The WAN router's kernel sends its own ICMPv6 (router solicitations
    // and reports); the gateways send nothing but the tunnel and ND.
    assert!(
        c.other.is_empty(),
        "{} frame(s) on the WAN other than ESP-in-UDP over IPv6 and ND, first: {:?}",
        c.other.len(),
        &c.other[..c.other.len().min(10)]
    );
    assert!(c.esp_a_to_b >= 2 * UDP_COUNT, "{c:?}");
    assert!(c.esp_b_to_a > 0, "TCP acknowledgements come back: {c:?}");
    assert!(
        !contains(&wan.bytes(), &pattern()),
        "payload in clear on the WAN"
    );

    let (a, b) = p.settled();
    assert!(a.tunnel.encap_packets >= 2 * UDP_COUNT && b.tunnel.decap_packets >= 2 * UDP_COUNT);
    for (name, s) in [("gwA", &a), ("gwB", &b)] {
        for reason in [
            "esp_auth_failed",
            "esp_replay",
            "esp_udp_checksum",
            "esp_malformed",
            "ipv6_malformed",
        ] {
            assert_eq!(drop_count(s, reason), 0, "{name} {reason}: {:?}", s.drops);
        }
        assert_eq!(
            s.control.icmp_errors, 0,
            "{name}: the MSS clamp (inner MTU 1418) spared TCP any Packet Too Big"
        );
    }
    assert!(
        a.tunnel.mss_clamped >= 2 && b.tunnel.mss_clamped >= 2,
        "A {:?} B {:?}",
        a.tunnel,
        b.tunnel
    );
    eprintln!(
        "tunnel over IPv6 ({backend}): WAN {} frames: {} ESP a->b, {} b->a, {} ND/MLD",
        frames.len(),
        c.esp_a_to_b,
        c.esp_b_to_a,
        c.nd_and_mld
    );
}

/// [`tunnel_over_ipv6`] with every IPv4 address, route and tunnel route
/// removed: an IPv6-only gateway on an IPv6-only testbed.
fn ipv6_only(t: &mut toml::Table) {
    tunnel_over_ipv6(t);
    let is_v6 = |v: &toml::Value| v.as_str().is_some_and(|s| s.contains(':'));
    let ports = t["ports"].as_table_mut().unwrap();
    for port in ["lan", "wan"] {
        let p = ports[port].as_table_mut().unwrap();
        let v6: Vec<toml::Value> = p["address"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| is_v6(v))
            .cloned()
            .collect();
        p.insert("address".into(), toml::Value::Array(v6));
    }
    for list in ["routes", "tunnel_routes"] {
        t[list]
            .as_array_mut()
            .unwrap()
            .retain(|r| is_v6(&r["prefix"]));
    }
}

/// An IPv6-only gateway pair on an IPv6-only testbed (no IPv4 anywhere on
/// the data path): each gateway answers neighbour solicitations and ping6
/// on its own addresses; 10,000 sequence-numbered UDP datagrams arrive in
/// order with none lost; 50 MB of TCP arrive intact; the WAN carries
/// nothing but ESP-in-UDP over IPv6 and neighbour discovery; hop limit 1
/// gets ICMPv6 time exceeded and a 1500-byte packet Packet Too Big with
/// the inner MTU.
fn ipv6_only_gateways(backend: &str) {
    let _serial = serial();
    require_root();
    let p = Pair::up_with(backend, GwMode::None, 1500, Family::V6, ipv6_only);
    let cons6 = "fd00:20:1::2";
    // The gateways' own addresses first: prod resolves gwA's LAN address by
    // ND and pings it; cons does the same with gwB's.
    for (from, own) in [(Node::Prod, "fd00:10:1::1"), (Node::Cons, "fd00:20:1::1")] {
        let answered = (0..10).any(|_| p.tb.ping(from, own, 1));
        assert!(
            answered,
            "{own} never answered ping6\n--- gwA:\n{}\n--- gwB:\n{}",
            p.a.log_text(),
            p.b.log_text()
        );
    }
    let reachable = (0..10).any(|_| p.tb.ping(Node::Prod, cons6, 1));
    assert!(
        reachable,
        "prod never reached cons through IPv6-only gateways\n--- gwA:\n{}\n--- gwB:\n{}",
        p.a.log_text(),
        p.b.log_text()
    );
    const UDP_COUNT: u64 = 10_000;
    const TCP_BYTES: u64 = 50 * 1000 * 1000;
    let mut wan = Capture::start(&p.tb, Node::Wan, "a0");
    let (us, ur) = udp_pattern_to(&p, cons6, 6301, UDP_COUNT, 1000, 5_000);
    let tcp =
        p.tb.tcp_transfer(Node::Prod, Node::Cons, "[fd00:20:1::2]:6302", TCP_BYTES);
    wan.stop();
    assert_udp_complete(&us, &ur, UDP_COUNT);
    assert_eq!(tcp.received_bytes, TCP_BYTES);
    assert_eq!(tcp.sent_sha256, tcp.received_sha256, "TCP intact");

    let frames = wan.frames();
    let c = census6(&frames);
    assert!(
        c.other.is_empty(),
        "{} frame(s) on the WAN other than ESP-in-UDP over IPv6 and ND, first: {:?}",
        c.other.len(),
        &c.other[..c.other.len().min(10)]
    );
    assert!(c.esp_a_to_b >= UDP_COUNT, "{c:?}");
    assert!(c.esp_b_to_a > 0, "TCP acknowledgements come back: {c:?}");
    assert!(
        !contains(&wan.bytes(), &pattern()),
        "payload in clear on the WAN"
    );

    let (a, b) = p.settled();
    assert!(a.tunnel.encap_packets >= UDP_COUNT && b.tunnel.decap_packets >= UDP_COUNT);
    for (name, s) in [("gwA", &a), ("gwB", &b)] {
        assert!(
            s.control.nd_adverts >= 2 && s.control.echo_replies >= 1,
            "{name} answered ND on both ports and ping6: {:?}",
            s.control
        );
        assert_eq!(
            (s.control.arp_requests, s.control.arp_replies),
            (0, 0),
            "{name}: no ARP on an IPv6-only gateway"
        );
        for reason in [
            "esp_auth_failed",
            "esp_replay",
            "esp_udp_checksum",
            "esp_malformed",
            "ipv6_malformed",
        ] {
            assert_eq!(drop_count(s, reason), 0, "{name} {reason}: {:?}", s.drops);
        }
        assert_eq!(s.control.icmp_errors, 0, "{name}: no Packet Too Big needed");
    }
    // Hop limit 1 expires at gwA: ICMPv6 time exceeded from its LAN address.
    let ttl1 = p.tb.run(
        Node::Prod,
        &["ping", "-n", "-c", "1", "-W", "2", "-t", "1", cons6],
    );
    let text = String::from_utf8_lossy(&ttl1.stdout).into_owned();
    assert!(
        text.contains("From fd00:10:1::1") && text.contains("Time exceeded: Hop limit"),
        "hop limit 1: {text}"
    );
    // 1452 bytes of ICMPv6 payload make a 1500-byte packet, more than the
    // tunnel's inner MTU over IPv6 (1418): gwA answers Packet Too Big with it.
    let big = p.tb.run(
        Node::Prod,
        &[
            "ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1452", cons6,
        ],
    );
    let text = String::from_utf8_lossy(&big.stdout).into_owned();
    let mtu6 = scistream_dataplane::esp::inner_mtu6(1500);
    assert!(
        text.contains("From fd00:10:1::1") && text.contains(&format!("Packet too big: mtu={mtu6}")),
        "too big: {text}"
    );
    thread::sleep(Duration::from_millis(600));
    assert_eq!(
        p.a.snapshot().control.icmp_errors,
        2,
        "time exceeded + too big"
    );
    eprintln!(
        "IPv6-only gateways ({backend}): WAN {} frames: {} ESP a->b, {} b->a, {} ND/MLD",
        frames.len(),
        c.esp_a_to_b,
        c.esp_b_to_a,
        c.nd_and_mld
    );
}

#[cfg(feature = "dpdk")]
#[test]
fn ipv6_only_af_packet() {
    ipv6_only_gateways("af_packet");
}

#[test]
fn ipv6_only_native() {
    ipv6_only_gateways("native-xdp");
}

#[cfg(feature = "dpdk")]
#[test]
fn tunnel_over_ipv6_af_packet() {
    tunnel_over_ipv6_both_inner_families("af_packet");
}

#[test]
fn tunnel_over_ipv6_native() {
    tunnel_over_ipv6_both_inner_families("native-xdp");
}

#[cfg(feature = "dpdk")]
#[test]
fn ipv6_inside_the_tunnel_af_packet() {
    ipv6_inside_the_tunnel("af_packet");
}

#[test]
fn ipv6_inside_the_tunnel_native() {
    ipv6_inside_the_tunnel("native-xdp");
}

#[cfg(feature = "dpdk")]
#[test]
fn tunnel_af_packet() {
    tunnel_through("af_packet", GwMode::None);
}

#[test]
fn tunnel_native() {
    tunnel_through("native-xdp", GwMode::None);
}

#[test]
fn tunnel_tap() {
    tunnel_through("tap", GwMode::Bridge);
}

/// The ESP counters of gwB that the tamper test watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EspView {
    auth_failed: u64,
    replay: u64,
    unknown_spi: u64,
    malformed: u64,
    decap: u64,
    lan_tx: u64,
    arp: u64,
}

impl EspView {
    fn of(s: &Snapshot) -> EspView {
        EspView {
            auth_failed: drop_count(s, "esp_auth_failed"),
            replay: drop_count(s, "esp_replay"),
            unknown_spi: drop_count(s, "esp_unknown_spi"),
            malformed: drop_count(s, "esp_malformed"),
            decap: s.tunnel.decap_packets,
            lan_tx: port_tx(s, "lan"),
            arp: s.control.arp_requests + s.control.arp_replies,
        }
    }
}

/// Injects `frame` on the WAN router's link to gwB while a receiver listens
/// on cons, waits (with a deadline) until `done(before, now)` holds for
/// gwB's counters, and returns (counters after, datagrams cons received).
fn inject_toward_gwb(
    p: &Pair,
    frame: &[u8],
    port: u16,
    done: impl Fn(&EspView, &EspView) -> bool,
) -> (EspView, EspView, u64) {
    let before = EspView::of(&p.b.settled_snapshot());
    let bind = format!("0.0.0.0:{port}");
    let recv = p.tb.start_receiver(
        Node::Cons,
        &[
            "udp-recv",
            "--bind",
            &bind,
            "--count",
            "1",
            "--timeout",
            "2",
        ],
    );
    inject(&p.tb, Node::Wan, "b0", &[frame.to_vec()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = EspView::of(&p.b.snapshot());
    while !done(&before, &now) {
        assert!(
            Instant::now() < deadline,
            "gwB's counters did not move as expected within 10 s: before {before:?}, now {now:?}\n{}",
            p.b.log_text()
        );
        thread::sleep(Duration::from_millis(50));
        now = EspView::of(&p.b.snapshot());
    }
    let report = p.tb.finish(recv, Duration::from_secs(15));
    // Let any later effect of the frame reach the counters too.
    let after = EspView::of(&p.b.settled_snapshot());
    (before, after, json_u64(&report, "datagrams"))
}

/// Asserts that exactly one drop counter moved, by one, and nothing went
/// to the LAN except ARP.
fn assert_dropped_once(
    what: &str,
    before: &EspView,
    after: &EspView,
    delivered: u64,
    field: fn(&EspView) -> u64,
) {
    assert_eq!(
        field(after),
        field(before) + 1,
        "{what}: the drop counter went up by exactly 1: {before:?} -> {after:?}"
    );
    let others = |v: &EspView| v.auth_failed + v.replay + v.unknown_spi + v.malformed;
    assert_eq!(
        others(after),
        others(before) + 1,
        "{what}: no other ESP drop: {before:?} -> {after:?}"
    );
    assert_eq!(after.decap, before.decap, "{what}: nothing decapsulated");
    assert!(
        after.lan_tx - before.lan_tx <= after.arp - before.arp,
        "{what}: nothing but ARP sent on gwB's LAN: {before:?} -> {after:?}"
    );
    assert_eq!(delivered, 0, "{what}: cons received nothing");
}

/// Test 2: ESP frames captured on the WAN before gwB saw them, injected
/// toward gwB tampered, replayed, and with an SPI gwB does not know.
///
/// gwB checks the replay window before the ICV (RFC 4303 §3.4.3), so a
/// tampered copy of a frame gwB already accepted counts as a replay, not an
/// authentication failure. The frames are therefore taken from the WAN
/// router's link to gwA while the router blackholes gwB's address: gwB never
/// sees them, and each is rewritten as the router would forward it (MACs,
/// TTL, checksum) before it is injected on the link to gwB.
#[test]
fn tamper_replay_and_unknown_spi() {
    let _serial = serial();
    require_root();
    let t0 = Instant::now();
    let p = Pair::up(ANY_BACKEND.0, ANY_BACKEND.1, 1500, |_| {});
    p.wait_reachable();
    const PORT: u16 = 6101;

    // Intercept: frames from gwA reach the router (and the capture) but go
    // no further.
    let out =
        p.tb.ip(Node::Wan, &["route", "add", "blackhole", "10.10.200.1/32"]);
    assert!(
        out.status.success(),
        "blackhole: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cap = Capture::start(&p.tb, Node::Wan, "a0");
    let to = format!("{CONS}:{PORT}");
    let sent = p.tb.run_sender(
        Node::Prod,
        &[
            "udp-send",
            "--to",
            &to,
            "--count",
            "5",
            "--size",
            "200",
            "--rate",
            "50",
            "--pattern",
            PATTERN_HEX,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(json_u64(&sent, "sent"), 5);
    cap.stop();
    let out =
        p.tb.ip(Node::Wan, &["route", "del", "blackhole", "10.10.200.1/32"]);
    assert!(
        out.status.success(),
        "unblackhole: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let frames = cap.frames();
    let esp: Vec<&Vec<u8>> = frames
        .iter()
        .filter(|f| matches!(esp_header(f), Some((SPI_A_TO_B, _, _))))
        .collect();
    assert_eq!(
        esp.len(),
        5,
        "one ESP frame per datagram on the WAN ({} frames in all)",
        frames.len()
    );

    // As the router would forward it to gwB.
    let gwb_mac = parse_mac(&p.b.mac("wan"));
    let b0_mac = parse_mac(&p.tb.link_mac(Node::Wan, "b0").expect("b0 MAC"));
    let mut original = esp[0].clone();
    original[0..6].copy_from_slice(&gwb_mac);
    original[6..12].copy_from_slice(&b0_mac);
    original[ETH_HLEN + 8] -= 1; // TTL
    fix_checksums(&mut original);
    let (_, seq, esp_off) = esp_header(&original).unwrap();

    // (a) One ciphertext byte flipped (past SPI, sequence number and the
    // 8-byte IV): authentication fails.
    let mut flipped = original.clone();
    flipped[esp_off + 8 + 8 + 4] ^= 0x01;
    fix_checksums(&mut flipped);
    let (before, after, got) =
        inject_toward_gwb(&p, &flipped, PORT, |b, n| n.auth_failed > b.auth_failed);
    assert_dropped_once("flipped ciphertext", &before, &after, got, |v| {
        v.auth_failed
    });

    // The untouched frame is new to gwB: it is delivered (this proves the
    // injection path reaches cons) ...
    let (before, after, got) = inject_toward_gwb(&p, &original, PORT, |b, n| n.decap > b.decap);
    assert_eq!(
        after.decap,
        before.decap + 1,
        "untouched frame decapsulated once (seq {seq})"
    );
    assert_eq!(got, 1, "cons received the untouched frame's datagram");

    // (b) ... and the same frame again is a replay.
    let (before, after, got) = inject_toward_gwb(&p, &original, PORT, |b, n| n.replay > b.replay);
    assert_dropped_once("replayed frame", &before, &after, got, |v| v.replay);

    // (c) An SPI gwB has no SA for.
    let mut foreign = esp[1].clone();
    foreign[0..6].copy_from_slice(&gwb_mac);
    foreign[6..12].copy_from_slice(&b0_mac);
    foreign[ETH_HLEN + 8] -= 1;
    foreign[esp_off..esp_off + 4].copy_from_slice(&0x5eed_0bad_u32.to_be_bytes());
    fix_checksums(&mut foreign);
    let (before, after, got) =
        inject_toward_gwb(&p, &foreign, PORT, |b, n| n.unknown_spi > b.unknown_spi);
    assert_dropped_once("unknown SPI", &before, &after, got, |v| v.unknown_spi);

    eprintln!("tamper_replay_and_unknown_spi: {:?}", t0.elapsed());
}

/// Extracts X from ping's "Frag needed and DF set (mtu = X)" or
/// "local error: message too long, mtu=X".
fn mtu_in_ping_output(out: &str) -> Option<u64> {
    let i = out
        .find("mtu = ")
        .map(|i| i + 6)
        .or_else(|| out.find("mtu=").map(|i| i + 4))?;
    let digits: String = out[i..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Test 3: a DF packet too big for the tunnel is refused with an ICMP
/// "fragmentation needed" that names the tunnel's inner MTU.
#[test]
fn df_too_big_gets_frag_needed() {
    let _serial = serial();
    require_root();
    let t0 = Instant::now();
    let p = Pair::up(ANY_BACKEND.0, ANY_BACKEND.1, 1500, |_| {});
    p.wait_reachable();
    let inner = inner_mtu_1500();
    assert!((1280..1500).contains(&inner), "inner MTU {inner}");

    // IP packet = ICMP payload + 8 (ICMP) + 20 (IP): one byte too many.
    let too_big = (inner + 1 - 28).to_string();
    let before = p.a.settled_snapshot();
    let mut reported = None;
    let mut last = String::new();
    for _ in 0..3 {
        let out = p.tb.run(
            Node::Prod,
            &[
                "ping", "-n", "-M", "do", "-s", &too_big, "-c", "1", "-W", "2", CONS,
            ],
        );
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "a DF packet of {} bytes got through:\n{last}",
            inner + 1
        );
        if let Some(mtu) = mtu_in_ping_output(&last) {
            reported = Some(mtu);
            break;
        }
    }
    let mtu = reported.unwrap_or_else(|| panic!("ping output names no MTU:\n{last}"));
    assert_eq!(
        mtu, inner,
        "reported MTU is the tunnel's inner MTU:\n{last}"
    );
    let after = p.a.settled_snapshot();
    assert!(
        after.control.icmp_errors > before.control.icmp_errors,
        "gwA sent an ICMP error: {:?}",
        after.control
    );
    // The slow path answers a DF packet instead of counting a drop: what
    // shows that it was not forwarded is that nothing entered the tunnel.
    assert_eq!(
        after.tunnel.encap_packets, before.tunnel.encap_packets,
        "the too-big packet was not encapsulated"
    );

    // Exactly the inner MTU fits.
    let fits = (inner - 28).to_string();
    let ok = (0..3).any(|_| {
        p.tb.run(
            Node::Prod,
            &[
                "ping", "-n", "-M", "do", "-s", &fits, "-c", "1", "-W", "2", CONS,
            ],
        )
        .status
        .success()
    });
    assert!(
        ok,
        "a DF packet of exactly the inner MTU ({inner}) goes through"
    );
    eprintln!(
        "df_too_big_gets_frag_needed: inner MTU {inner}, {:?}",
        t0.elapsed()
    );
}

/// Sets `mtu` on both ports of a gateway config.
fn set_mtu(t: &mut toml::Table, mtu: i64) {
    let ports = t["ports"].as_table_mut().expect("[ports]");
    for port in ["lan", "wan"] {
        ports[port]
            .as_table_mut()
            .unwrap_or_else(|| panic!("[ports.{port}]"))
            .insert("mtu".into(), mtu.into());
    }
}

/// Test 4: jumbo frames through the tunnel (TAP backend: DPDK 22.11's
/// net_af_packet and the native AF_XDP backend's 4 KiB frames cannot carry
/// 9000-byte frames).
#[test]
fn jumbo_9000() {
    let _serial = serial();
    require_root();
    let t0 = Instant::now();
    let p = Pair::up("tap", GwMode::Bridge, 9000, |t| set_mtu(t, 9000));
    p.wait_reachable();
    const COUNT: u64 = 500;
    let (s, r) = udp_pattern(&p, 6201, COUNT, 8000, 500);
    assert_udp_complete(&s, &r, COUNT);
    assert_eq!(json_u64(&r, "bytes"), COUNT * 8000, "{r}");
    let (a, b) = p.settled();
    assert!(a.tunnel.encap_packets >= COUNT && b.tunnel.decap_packets >= COUNT);
    assert_eq!(drop_count(&a, "too_big"), 0, "{:?}", a.drops);
    assert_eq!(drop_count(&b, "too_big"), 0, "{:?}", b.drops);
    eprintln!("jumbo_9000: {:?}", t0.elapsed());
}

/// Test 5: the af_packet pair with the `aes-gcm` AEAD engine.
#[cfg(feature = "dpdk")]
#[test]
fn aes_gcm_engine() {
    use scistream_dataplane::stage_clock::Stage;
    let _serial = serial();
    require_root();
    let t0 = Instant::now();
    let p = Pair::up("af_packet", GwMode::None, 1500, |t| {
        t["tunnel"]
            .as_table_mut()
            .expect("[tunnel]")
            .insert("engine".into(), "aes-gcm".into());
        // And the per-stage cycle counters, checked against the packet counts below.
        t["workers"]
            .as_table_mut()
            .expect("[workers]")
            .insert("stage_cycles".into(), true.into());
    });
    p.wait_reachable();
    let tcp =
        p.tb.tcp_transfer(Node::Prod, Node::Cons, "10.20.1.2:6301", 50 * 1000 * 1000);
    assert_eq!(tcp.received_bytes, 50 * 1000 * 1000);
    assert_eq!(tcp.sent_sha256, tcp.received_sha256);
    let u =
        p.tb.udp_stream(Node::Prod, Node::Cons, "10.20.1.2:6302", 2_000, 1000, 2_000);
    assert_eq!(u.sent, 2_000);
    assert_eq!(u.received, 2_000, "{u:?}");
    assert!(u.in_order && u.duplicates == 0, "{u:?}");
    let (a, b) = p.settled();
    for (name, s) in [("gwA", &a), ("gwB", &b)] {
        assert_eq!(drop_count(s, "esp_auth_failed"), 0, "{name}: {:?}", s.drops);
        assert!(
            s.tunnel.encap_packets > 0 && s.tunnel.decap_packets > 0,
            "{name}: {:?}",
            s.tunnel
        );
        // Every received frame went through rx and classify, every sealed
        // one through seal, every opened one through open, each stage
        // with cycles spent. (A late ARP or ND frame folded while the
        // snapshot was summed may stand on one side only: one poll, at
        // most 2 × 32 frames.)
        let st = &s.work.stages;
        let near = |stage: Stage, want: u64| {
            let got = st.packets[stage as usize];
            assert!(
                got.abs_diff(want) <= 64,
                "{name}: {stage:?} {got} frames, {want} expected: {st:?}"
            );
        };
        let rx: u64 = s.ports.iter().map(|p| p.counts.rx_packets).sum();
        near(Stage::Rx, rx);
        near(Stage::Classify, rx);
        near(Stage::Seal, s.tunnel.encap_packets);
        near(Stage::Open, s.tunnel.decap_packets);
        assert!(
            rx > 30_000,
            "{name}: a 50 MB transfer and 2,000 datagrams: {rx} frames"
        );
        assert!(st.cycles.iter().all(|&c| c > 0), "{name}: {st:?}");
        assert!(s.cycles_per_second > 0, "{name}");
    }
    eprintln!("aes_gcm_engine: {:?}", t0.elapsed());
}

/// Test 6: gwA seals and opens with `ipsec-mb`, gwB with `ring`, on `backend`:
/// a 50 MB TCP transfer (data one way, ACKs the other) and 2,000 datagrams
/// arrive intact, and neither side counts an authentication failure.
#[cfg(feature = "ipsec-mb")]
fn ipsec_mb_against_ring(backend: &str, test: &str) {
    let _serial = serial();
    require_root();
    let t0 = Instant::now();
    let p = Pair::up(backend, GwMode::None, 1500, |t| {
        let engine = match t["gateway"]["name"].as_str() {
            Some("gwa") => "ipsec-mb",
            _ => "ring",
        };
        t["tunnel"]
            .as_table_mut()
            .expect("[tunnel]")
            .insert("engine".into(), engine.into());
    });
    p.wait_reachable();
    let (log_a, log_b) = (p.a.log_text(), p.b.log_text());
    // The engine's implementation, as each gateway logged it at start-up.
    assert!(log_a.contains("intel-ipsec-mb 1."), "gwA:\n{log_a}");
    assert!(log_b.contains("ring (BoringSSL assembly)"), "gwB:\n{log_b}");
    let tcp =
        p.tb.tcp_transfer(Node::Prod, Node::Cons, "10.20.1.2:6401", 50 * 1000 * 1000);
    assert_eq!(tcp.received_bytes, 50 * 1000 * 1000);
    assert_eq!(tcp.sent_sha256, tcp.received_sha256);
    let u =
        p.tb.udp_stream(Node::Prod, Node::Cons, "10.20.1.2:6402", 2_000, 1000, 2_000);
    assert_eq!(u.sent, 2_000);
    assert_eq!(u.received, 2_000, "{u:?}");
    let (a, b) = p.settled();
    for (name, s) in [("gwA", &a), ("gwB", &b)] {
        assert_eq!(drop_count(s, "esp_auth_failed"), 0, "{name}: {:?}", s.drops);
        assert!(
            s.tunnel.encap_packets > 0 && s.tunnel.decap_packets > 0,
            "{name}: {:?}",
            s.tunnel
        );
    }
    eprintln!("{test}: {:?}", t0.elapsed());
}

#[cfg(all(feature = "ipsec-mb", feature = "dpdk"))]
#[test]
fn ipsec_mb_engine_against_ring_af_packet() {
    ipsec_mb_against_ring("af_packet", "ipsec_mb_engine_against_ring_af_packet");
}

#[cfg(feature = "ipsec-mb")]
#[test]
fn ipsec_mb_engine_against_ring_native() {
    ipsec_mb_against_ring("native-xdp", "ipsec_mb_engine_against_ring_native");
}
