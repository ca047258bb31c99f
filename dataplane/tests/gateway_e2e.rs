//! End to end on the namespace testbed: prod — gwA (s2ds) — wan — gwB
//! (kernel router) — cons, once per backend, with s2ds as a plain IPv4
//! router (the example configs' tunnel sections are removed). Needs root.
//!
//! For each backend: the gateway answers ARP and ping; 10,000
//! sequence-numbered UDP datagrams arrive in order with no loss at a modest
//! rate; a 50 MB TCP transfer arrives with the same SHA-256; the gateway's
//! counters agree with what was sent.

use scistream_testbed::gateway::Gateway;
use scistream_testbed::netns::{require_root, Family, GwMode, Node, Testbed, TestbedOpts};

const UDP_COUNT: u64 = 10_000;
const UDP_RATE: u64 = 5_000;
const TCP_BYTES: u64 = 50 * 1000 * 1000;

/// The tests in this file run one at a time: each streams at a set rate
/// through a gateway, and seven of them at once oversubscribe two CPUs.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the file-wide test lock, ignoring poisoning by a failed test.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Turns a testbed tunnel config into a plain router: no tunnel sections,
/// and a cleartext route to the far LAN through the WAN router.
fn plain_router(t: &mut toml::Table) {
    for k in ["tunnel", "peers", "sas", "tunnel_routes"] {
        t.remove(k);
    }
    let mut route = toml::Table::new();
    route.insert("prefix".into(), "10.20.0.0/16".into());
    route.insert("via".into(), "10.10.100.254".into());
    t.entry("routes")
        .or_insert_with(|| toml::Value::Array(vec![]))
        .as_array_mut()
        .unwrap()
        .push(route.into());
}

fn through_gateway(example: &str, gw_mode: GwMode) {
    let _one = serial();
    require_root();
    let tb = Testbed::up(TestbedOpts {
        gw_a: gw_mode,
        gw_b: GwMode::Kernel,
        mtu: 1500,
        ..TestbedOpts::default()
    });
    let mut gw = Gateway::start(&tb, Node::GwA, example, plain_router);

    // ARP and ping: prod resolves the gateway's LAN address to the gateway's MAC.
    assert!(
        tb.ping(Node::Prod, "10.10.1.1", 3),
        "gateway answers ping\n{}",
        gw.log_text()
    );
    assert_eq!(
        tb.neigh_mac(Node::Prod, "10.10.1.1").as_deref(),
        Some(gw.mac("lan").as_str()),
        "ARP reply carries the gateway's MAC"
    );
    // Routed end to end (the gateway resolves its next hop itself).
    let mut reachable = false;
    for _ in 0..10 {
        if tb.ping(Node::Prod, "10.20.1.2", 1) {
            reachable = true;
            break;
        }
    }
    assert!(
        reachable,
        "prod reaches cons through the gateway\n{}",
        gw.log_text()
    );

    let before = gw.settled_snapshot();
    let udp = tb.udp_stream(
        Node::Prod,
        Node::Cons,
        "10.20.1.2:5001",
        UDP_COUNT,
        512,
        UDP_RATE,
    );
    assert_eq!(udp.sent, UDP_COUNT);
    assert_eq!(udp.received, UDP_COUNT, "no datagram lost: {udp:?}");
    assert!(
        udp.in_order && udp.duplicates == 0 && udp.out_of_order == 0,
        "{udp:?}"
    );
    let after = gw.settled_snapshot();
    let fwd = after.ports[1].counts.tx_packets - before.ports[1].counts.tx_packets;
    assert!(
        fwd >= UDP_COUNT,
        "the gateway's WAN port sent the datagrams: {fwd}"
    );

    let tcp = tb.tcp_transfer(Node::Prod, Node::Cons, "10.20.1.2:5002", TCP_BYTES);
    assert_eq!(tcp.received_bytes, TCP_BYTES);
    assert_eq!(tcp.sent_sha256, tcp.received_sha256);

    let s = gw.snapshot();
    // poll_mode = "adaptive": the idle worker slept between the streams.
    assert!(s.work.sleeps > 0, "{:?}", s.work);
    assert!(s.work.bursts > 0 && s.work.busy_ns > 0, "{:?}", s.work);
    assert_eq!(s.drops["ipv4_bad_checksum"], 0);
    assert_eq!(s.drops["ipv4_malformed"], 0);
    assert!(
        s.control.arp_replies >= 1 && s.control.echo_replies >= 3,
        "{:?}",
        s.control
    );
    // SIGTERM stops it cleanly (exit status 0) and removes its stats snapshot.
    assert!(gw.stop(), "clean exit on SIGTERM\n{}", gw.log_text());
    assert!(!gw.stats.exists(), "stats snapshot removed on stop");
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_af_packet() {
    through_gateway("testbed-gwa-af_packet.toml", GwMode::None);
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_af_xdp() {
    through_gateway("testbed-gwa-af_xdp.toml", GwMode::None);
}

#[test]
fn native_af_xdp() {
    through_gateway("testbed-gwa-native-xdp.toml", GwMode::None);
}

#[test]
fn tap() {
    through_gateway("testbed-gwa-tap.toml", GwMode::Bridge);
}

/// [`plain_router`] for a dual-stack testbed: each port gets its IPv6
/// address beside the IPv4 one, the far IPv6 LAN is routed through the
/// WAN router, and the WAN port's MTU is 1400 (the veth's is 1500), so the
/// gateway must answer larger packets with Packet Too Big.
fn dual_stack_router(t: &mut toml::Table) {
    plain_router(t);
    let ports = t["ports"].as_table_mut().unwrap();
    for (port, v6) in [("lan", "fd00:10:1::1/64"), ("wan", "fd00:10:100::1/64")] {
        let p = ports[port].as_table_mut().unwrap();
        let v4 = p["address"].as_str().unwrap().to_owned();
        p.insert(
            "address".into(),
            toml::Value::Array(vec![v4.into(), v6.into()]),
        );
    }
    ports["wan"]
        .as_table_mut()
        .unwrap()
        .insert("mtu".into(), 1400.into());
    let mut route = toml::Table::new();
    route.insert("prefix".into(), "fd00:20::/32".into());
    route.insert("via".into(), "fd00:10:100::fe".into());
    t["routes"].as_array_mut().unwrap().push(route.into());
}

/// The dual-stack tests' UDP rate: 2,000 datagrams per second (the IPv6
/// path is checked for loss, not for speed; benches measure that).
const UDP6_RATE: u64 = 2_000;

/// One ping6 from prod to cons with the extra ping `options`; its output.
fn ping6_once(tb: &Testbed, options: &[&str]) -> String {
    let mut argv = vec!["ping", "-6", "-n", "-c", "1", "-W", "2"];
    argv.extend_from_slice(options);
    argv.push("fd00:20:1::2");
    String::from_utf8_lossy(&tb.run(Node::Prod, &argv).stdout).into_owned()
}

/// IPv6 beside IPv4 through gwA (s2ds) on a dual-stack testbed: Neighbor
/// Discovery and ping6 of the gateway itself, next-hop resolution, hop
/// limit expiry and Packet Too Big answered with ICMPv6, then 10,000
/// sequence-numbered UDP datagrams and a 50 MB TCP transfer over IPv6.
fn dual_stack_through_gateway(example: &str, gw_mode: GwMode) {
    let _one = serial();
    require_root();
    let tb = Testbed::up(TestbedOpts {
        gw_a: gw_mode,
        family: Family::Dual,
        ..TestbedOpts::default()
    });
    let gw = Gateway::start(&tb, Node::GwA, example, dual_stack_router);
    assert!(
        tb.ping(Node::Prod, "fd00:10:1::1", 3),
        "gateway answers ping6\n{}",
        gw.log_text()
    );
    assert_eq!(
        tb.neigh_mac(Node::Prod, "fd00:10:1::1").as_deref(),
        Some(gw.mac("lan").as_str()),
        "the Neighbor Advertisement carries the gateway's MAC"
    );
    let reachable = (0..10).any(|_| tb.ping(Node::Prod, "fd00:20:1::2", 1));
    assert!(reachable, "prod reaches cons over IPv6\n{}", gw.log_text());
    assert!(tb.ping(Node::Prod, "10.20.1.2", 1), "IPv4 still forwarded");

    // Hop limit 1: time exceeded from the gateway's LAN address.
    let text = ping6_once(&tb, &["-t", "1"]);
    assert!(
        text.contains("From fd00:10:1::1") && text.contains("Time exceeded"),
        "{text}"
    );
    // 1452 bytes of ICMPv6 payload make a 1500-byte packet: too big for the 1400-byte WAN.
    let text = ping6_once(&tb, &["-M", "do", "-s", "1452"]);
    assert!(
        text.contains("From fd00:10:1::1") && text.contains("Packet too big: mtu=1400"),
        "{text}"
    );

    let udp = tb.udp_stream(
        Node::Prod,
        Node::Cons,
        "[fd00:20:1::2]:5001",
        UDP_COUNT,
        512,
        UDP6_RATE,
    );
    assert_eq!(udp.received, UDP_COUNT, "no datagram lost: {udp:?}");
    assert!(udp.in_order && udp.duplicates == 0, "{udp:?}");
    // TCP learns the 1400-byte path from the gateway's Packet Too Big.
    let tcp = tb.tcp_transfer(Node::Prod, Node::Cons, "[fd00:20:1::2]:5002", TCP_BYTES);
    assert_eq!(tcp.received_bytes, TCP_BYTES);
    assert_eq!(tcp.sent_sha256, tcp.received_sha256);

    let s = gw.settled_snapshot();
    assert!(s.control.nd_adverts >= 1, "{:?}", s.control);
    assert!(
        s.control.nd_solicits >= 1,
        "resolved fd00:10:100::fe itself: {:?}",
        s.control
    );
    assert!(
        s.control.echo_replies >= 3 && s.control.icmp_errors >= 2,
        "{:?}",
        s.control
    );
    assert_eq!(s.drops["ipv6_malformed"], 0);
    assert!(
        s.neighbors
            .iter()
            .any(|n| n.ip == "fd00:10:100::fe" && n.port.as_str() == "wan"),
        "{:?}",
        s.neighbors
    );
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_af_packet_dual_stack() {
    dual_stack_through_gateway("testbed-gwa-af_packet.toml", GwMode::None);
}

#[test]
fn native_af_xdp_dual_stack() {
    dual_stack_through_gateway("testbed-gwa-native-xdp.toml", GwMode::None);
}

/// No invisible loss: with the gateway's workers frozen (SIGSTOP) while
/// the producer sends, the AF_XDP socket's rings overflow in the kernel.
/// Once the gateway runs again, every datagram the consumer did not get is
/// in a host drop counter (`lan` port: `xsk_rx_ring_full` or
/// `xsk_rx_dropped`), and `s2ds stats` names them.
#[test]
fn native_af_xdp_counts_what_its_socket_drops_when_the_ring_overflows() {
    let _one = serial();
    require_root();
    let tb = Testbed::up(TestbedOpts {
        gw_a: GwMode::None,
        gw_b: GwMode::Kernel,
        mtu: 1500,
        ..TestbedOpts::default()
    });
    let gw = Gateway::start(&tb, Node::GwA, "testbed-gwa-native-xdp.toml", plain_router);
    assert!(
        (0..10).any(|_| tb.ping(Node::Prod, "10.20.1.2", 1)),
        "prod reaches cons through the gateway\n{}",
        gw.log_text()
    );
    let lost_in_host = |s: &scistream_dataplane::snapshot::Snapshot| {
        let h = &s.ports[0].host_drops;
        h["xsk_rx_ring_full"] + h["xsk_rx_dropped"]
    };
    let before = gw.settled_snapshot();
    const COUNT: u64 = 20_000;
    gw.pause();
    let udp = std::thread::scope(|s| {
        s.spawn(|| {
            // The sender needs 1 s at 20,000/s; the receiver waits for
            // stragglers longer than the gateway takes to drain its ring.
            std::thread::sleep(std::time::Duration::from_millis(1500));
            gw.resume();
        });
        tb.udp_stream(Node::Prod, Node::Cons, "10.20.1.2:5003", COUNT, 256, 20_000)
    });
    let after = gw.settled_snapshot();
    let host = lost_in_host(&after) - lost_in_host(&before);
    let own: u64 = after.drops.values().sum::<u64>() - before.drops.values().sum::<u64>();
    eprintln!(
        "ring overflow: {udp:?}, host drops {host}, gateway drops {own}, lan {:?}",
        after.ports[0].host_drops
    );
    assert_eq!(udp.sent, COUNT);
    assert!(udp.received < COUNT, "the ring overflowed: {udp:?}");
    assert!(host > 0, "{:?}", after.ports[0].host_drops);
    assert_eq!(
        udp.received + host + own,
        COUNT,
        "every datagram is delivered or counted: {udp:?}, host {host}, gateway {own}\n{}",
        gw.log_text()
    );
    let text = scistream_dataplane::snapshot::render(&before, &after);
    assert!(text.contains("lan host xsk_"), "{text}");
}
