//! Proves the testbed and its Rust harness with both gateways in kernel-router mode:
//! reachability, neighbour resolution, UDP ordering, TCP integrity, MTU, isolation between
//! concurrent testbeds, and teardown (also after a panic).
//!
//! Needs root: `cargo test -p scistream-dataplane --no-default-features --test testbed_kernel`.

use std::panic;
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use scistream_testbed::netns::{
    require_root, Family, GwMode, Node, TcpReport, Testbed, TestbedOpts, UdpReport,
};

/// SHA-256 of the empty input: a report carrying it moved no data.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn kernel_testbed() -> Testbed {
    require_root();
    Testbed::up(TestbedOpts::default())
}

/// Namespaces currently listed by `ip netns list`.
fn listed_namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run ip netns list");
    assert!(out.status.success(), "ip netns list failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn assert_gone(names: &[String]) {
    let listed = listed_namespaces();
    let left: Vec<&String> = names.iter().filter(|n| listed.contains(n)).collect();
    assert!(
        left.is_empty(),
        "namespaces still present after drop: {left:?}"
    );
}

/// The testbed's drop must have killed `child` (a `sleep 600`): it exits within 5 s, not
/// successfully.
fn assert_killed(mut child: Child) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait on spawned child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("spawned child {} survived the testbed", child.id());
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert!(
        !status.success(),
        "sleep 600 cannot have finished normally: {status:?}"
    );
}

fn assert_complete_udp(r: &UdpReport, count: u64, size: usize) {
    assert_eq!(r.sent, count, "sender sent {r:?}");
    assert_eq!(r.received, count, "receiver got {r:?}");
    assert_eq!(r.lost, 0, "{r:?}");
    assert_eq!(r.duplicates, 0, "{r:?}");
    assert_eq!(r.out_of_order, 0, "{r:?}");
    assert!(r.in_order, "{r:?}");
    assert_eq!(r.received_bytes, count * size as u64, "{r:?}");
}

fn assert_complete_tcp(r: &TcpReport, bytes: u64) {
    assert_eq!(r.sent_bytes, bytes, "{r:?}");
    assert_eq!(r.received_bytes, bytes, "{r:?}");
    assert_eq!(r.sent_sha256.len(), 64, "{r:?}");
    assert_ne!(r.sent_sha256, EMPTY_SHA256, "{r:?}");
    assert_eq!(r.received_sha256, r.sent_sha256, "{r:?}");
}

#[test]
fn families_dual_and_6_route_ipv6_end_to_end() {
    for (family, v4) in [(Family::Dual, true), (Family::V6, false)] {
        let tb = Testbed::up(TestbedOpts {
            family,
            ..TestbedOpts::default()
        });
        assert!(
            tb.ping(Node::Prod, "fd00:20:1::2", 3),
            "{family:?}: prod cannot ping6 cons"
        );
        let tcp = tb.tcp_transfer(Node::Cons, Node::Prod, "[fd00:10:1::2]:5003", 5_000_000);
        assert_eq!(tcp.sent_sha256, tcp.received_sha256, "{family:?}");
        assert_eq!(tb.ping(Node::Prod, "10.20.1.2", 1), v4, "{family:?}: IPv4");
    }
}

#[test]
fn ping_prod_to_cons_through_both_gateways() {
    let tb = kernel_testbed();
    assert!(tb.ping(Node::Prod, "10.20.1.2", 3), "prod cannot ping cons");
    assert!(tb.ping(Node::Cons, "10.10.1.2", 3), "cons cannot ping prod");
    // Path MTU is 1500 end to end: 1472 bytes of ICMP payload fit, 1473 do not (DF set).
    let fits = tb.run(
        Node::Prod,
        &[
            "ping",
            "-n",
            "-c",
            "1",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "1472",
            "10.20.1.2",
        ],
    );
    assert!(fits.status.success(), "1500-byte DF ping failed: {fits:?}");
    let too_big = tb.run(
        Node::Prod,
        &[
            "ping",
            "-n",
            "-c",
            "1",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "1473",
            "10.20.1.2",
        ],
    );
    assert!(
        !too_big.status.success(),
        "1501-byte DF ping passed a 1500 MTU path"
    );
}

#[test]
fn neighbour_of_prod_is_gwa_lan0() {
    let tb = kernel_testbed();
    assert!(tb.ping(Node::Prod, "10.10.1.1", 1), "prod cannot ping gwA");
    let gwa_lan0 = tb.link_mac(Node::GwA, "lan0").expect("gwA lan0 has a MAC");
    assert_eq!(gwa_lan0.len(), 17, "odd MAC {gwa_lan0}");
    assert_eq!(tb.neigh_mac(Node::Prod, "10.10.1.1"), Some(gwa_lan0));
    // An address nobody owns never resolves: its entry (if any) is INCOMPLETE/FAILED.
    assert!(!tb.ping(Node::Prod, "10.10.1.77", 1));
    assert_eq!(tb.neigh_mac(Node::Prod, "10.10.1.77"), None);
}

#[test]
fn udp_10k_datagrams_arrive_in_order() {
    let tb = kernel_testbed();
    let r = tb.udp_stream(Node::Prod, Node::Cons, "10.20.1.2:7001", 10_000, 512, 5_000);
    assert_complete_udp(&r, 10_000, 512);
}

#[test]
fn tcp_50mb_transfer_is_intact() {
    let tb = kernel_testbed();
    let r = tb.tcp_transfer(Node::Prod, Node::Cons, "10.20.1.2:7002", 50_000_000);
    assert_complete_tcp(&r, 50_000_000);
}

#[test]
fn mtu_9000_passes_8000_byte_datagrams() {
    require_root();
    let tb = Testbed::up(TestbedOpts {
        mtu: 9000,
        ..TestbedOpts::default()
    });
    for (node, ifname) in [
        (Node::Prod, "eth0"),
        (Node::GwA, "lan0"),
        (Node::GwA, "wan0"),
        (Node::Wan, "a0"),
        (Node::Wan, "b0"),
        (Node::GwB, "wan0"),
        (Node::GwB, "lan0"),
        (Node::Cons, "eth0"),
    ] {
        assert_eq!(tb.link_mtu(node, ifname), Some(9000), "{:?} {ifname}", node);
    }
    // Unfragmented (DF) 8000-byte datagram end to end.
    let df = tb.run(
        Node::Prod,
        &[
            "ping",
            "-n",
            "-c",
            "1",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "7972",
            "10.20.1.2",
        ],
    );
    assert!(df.status.success(), "8000-byte DF ping failed: {df:?}");
    let r = tb.udp_stream(Node::Prod, Node::Cons, "10.20.1.2:7003", 200, 8000, 1_000);
    assert_complete_udp(&r, 200, 8000);
}

#[test]
fn two_testbeds_run_side_by_side() {
    require_root();
    let a = Testbed::up(TestbedOpts::default());
    let b = Testbed::up(TestbedOpts::default());
    assert_ne!(a.prefix(), b.prefix());
    let listed = listed_namespaces();
    for ns in a.namespaces().iter().chain(b.namespaces().iter()) {
        assert!(listed.contains(ns), "{ns} not listed: {listed:?}");
    }
    // Identical addresses and ports in both: only isolation lets both transfers succeed.
    let (ra, rb) = thread::scope(|s| {
        let ta = s.spawn(|| {
            let t = a.tcp_transfer(Node::Prod, Node::Cons, "10.20.1.2:7004", 5_000_000);
            let u = a.udp_stream(Node::Cons, Node::Prod, "10.10.1.2:7005", 2_000, 256, 2_000);
            (t, u)
        });
        let tb = s.spawn(|| {
            let t = b.tcp_transfer(Node::Prod, Node::Cons, "10.20.1.2:7004", 5_000_000);
            let u = b.udp_stream(Node::Cons, Node::Prod, "10.10.1.2:7005", 2_000, 256, 2_000);
            (t, u)
        });
        (
            ta.join().expect("testbed A thread"),
            tb.join().expect("testbed B thread"),
        )
    });
    for (t, u) in [ra, rb] {
        assert_complete_tcp(&t, 5_000_000);
        assert_complete_udp(&u, 2_000, 256);
    }
    // A process in one testbed sees only its own namespace's interfaces.
    let out = a.run(Node::Prod, &["ip", "-br", "link"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().count(),
        2,
        "prod of A should hold lo and eth0 only:\n{text}"
    );
}

#[test]
fn drop_removes_namespaces_and_kills_children() {
    let tb = kernel_testbed();
    let names = tb.namespaces();
    let listed = listed_namespaces();
    for ns in &names {
        assert!(listed.contains(ns), "{ns} missing after up: {listed:?}");
    }
    let child = tb.spawn(Node::Cons, &["sleep", "600"]);
    drop(tb);
    assert_gone(&names);
    assert_killed(child);
}

#[test]
fn panic_inside_a_test_still_tears_down() {
    require_root();
    let mut names = Vec::new();
    let mut sleeper = None;
    let result = panic::catch_unwind(panic::AssertUnwindSafe(|| {
        let tb = Testbed::up(TestbedOpts {
            gw_a: GwMode::Bridge,
            gw_b: GwMode::None,
            mtu: 1500,
            ..TestbedOpts::default()
        });
        names = tb.namespaces();
        sleeper = Some(tb.spawn(Node::Wan, &["sleep", "600"]));
        panic!("deliberate panic with testbed {} up", tb.prefix());
    }));
    assert!(result.is_err(), "the closure must have panicked");
    assert_eq!(names.len(), 5);
    assert_gone(&names);
    assert_killed(sleeper.expect("sleeper was spawned"));
}

#[test]
fn userspace_gateway_modes_leave_the_kernel_silent() {
    require_root();
    let tb = Testbed::up(TestbedOpts {
        gw_a: GwMode::None,
        gw_b: GwMode::Bridge,
        mtu: 1500,
        ..TestbedOpts::default()
    });
    for gw in [Node::GwA, Node::GwB] {
        let out = tb.ip(gw, &["-4", "-o", "addr", "show"]);
        let text = String::from_utf8_lossy(&out.stdout);
        // Only the management link (mg0, for s2cs) has an address; the
        // ports the data plane owns have none.
        let data: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains(" lo ") && !l.contains(" mg0 "))
            .collect();
        assert!(data.is_empty(), "{gw:?} has IPv4 addresses: {data:?}");
        assert!(
            text.contains("inet 10.99.0."),
            "{gw:?} lacks its management address: {text}"
        );
        let fwd = tb.run(gw, &["sysctl", "-n", "net.ipv4.ip_forward"]);
        assert_eq!(String::from_utf8_lossy(&fwd.stdout).trim(), "0", "{gw:?}");
    }
    for (port, bridge) in [("lan0", "brlan"), ("wan0", "brwan")] {
        let out = tb.ip(Node::GwB, &["-o", "link", "show", "dev", port]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("master {bridge}")),
            "gwB {port}: {text}"
        );
        let out = tb.ip(Node::GwA, &["-o", "link", "show", "dev", bridge]);
        assert!(
            !out.status.success(),
            "gwA (mode none) must have no {bridge}"
        );
    }
    // Nobody answers for 10.10.1.1: no ping, no neighbour, no datagram gets through.
    assert!(!tb.ping(Node::Prod, "10.10.1.1", 1));
    assert_eq!(tb.neigh_mac(Node::Prod, "10.10.1.1"), None);
    let r = tb.udp_stream(Node::Prod, Node::Cons, "10.20.1.2:7006", 50, 128, 100);
    assert_eq!((r.received, r.lost, r.received_bytes), (0, 50, 0), "{r:?}");
}

/// `--queues 2`: every data-path veth has two queues each way (the
/// management link one), XPS sends from CPU c on queue c mod 2, the WAN
/// router steers by UDP source port with its tc program, and traffic still
/// crosses whole. (That the steering reaches the peer's workers is
/// control_e2e's `eight_flows_of_one_tunnel_...`.)
#[test]
fn two_queue_testbed_has_its_queues_xps_and_wan_steering() {
    require_root();
    let tb = Testbed::up_with_queues(TestbedOpts::default(), 2);
    let sh = |node: Node, cmd: &str| {
        let out = tb.run(node, &["sh", "-c", cmd]);
        assert!(out.status.success(), "{cmd}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    for (node, ifc) in [
        (Node::Prod, "eth0"),
        (Node::GwA, "lan0"),
        (Node::GwA, "wan0"),
        (Node::Wan, "a0"),
        (Node::Wan, "b0"),
        (Node::Cons, "eth0"),
    ] {
        assert_eq!(
            sh(
                node,
                &format!("ls /sys/class/net/{ifc}/queues | sort | tr '\\n' ' '")
            ),
            "rx-0 rx-1 tx-0 tx-1",
            "{node:?} {ifc}"
        );
    }
    assert_eq!(
        sh(Node::GwA, "ls /sys/class/net/mg0/queues | wc -l"),
        "2",
        "the management link keeps one queue each way"
    );
    let cpus: u32 = sh(Node::Prod, "getconf _NPROCESSORS_CONF").parse().unwrap();
    // The mask in 32-bit groups, lowest CPUs first (sysfs prints them
    // highest first, comma-separated), without high zero groups.
    let trim = |mut groups: Vec<u32>| {
        while groups.len() > 1 && groups.last() == Some(&0) {
            groups.pop();
        }
        groups
    };
    let xps = |q: u32| -> Vec<u32> {
        let mask = sh(
            Node::Prod,
            &format!("cat /sys/class/net/eth0/queues/tx-{q}/xps_cpus"),
        );
        trim(
            mask.split(',')
                .rev()
                .map(|g| u32::from_str_radix(g, 16).unwrap())
                .collect(),
        )
    };
    let want = |q: u32| -> Vec<u32> {
        let mut groups = vec![0u32; cpus.div_ceil(32) as usize];
        for c in (0..cpus).filter(|c| c % 2 == q) {
            groups[(c / 32) as usize] |= 1 << (c % 32);
        }
        trim(groups)
    };
    assert_eq!(
        (xps(0), xps(1)),
        (want(0), want(1)),
        "XPS by CPU on prod eth0"
    );
    for ifc in ["a0", "b0"] {
        let filters = sh(Node::Wan, &format!("tc filter show dev {ifc} ingress"));
        assert!(filters.contains("wan_steer.o"), "{ifc}: {filters}");
        assert!(filters.contains("direct-action"), "{ifc}: {filters}");
    }
    let r = tb.udp_stream(Node::Prod, Node::Cons, "10.20.1.2:7011", 5_000, 512, 5_000);
    assert_complete_udp(&r, 5_000, 512);
    let r = tb.tcp_transfer(Node::Prod, Node::Cons, "10.20.1.2:7012", 20_000_000);
    assert_complete_tcp(&r, 20_000_000);
}

/// `--queues` is checked, and does not combine with `--impair`.
#[test]
fn testbed_refuses_bad_queue_counts() {
    require_root();
    let script = scistream_testbed::paths::script("testbed.sh");
    for (args, want) in [
        (
            &["--queues", "0"][..],
            "--queues '0' must be an integer between 1 and 64",
        ),
        (
            &["--queues", "65"][..],
            "--queues '65' must be an integer between 1 and 64",
        ),
        (
            &["--queues", "2", "--impair"][..],
            "--queues and --impair do not go together",
        ),
    ] {
        let out = Command::new("bash")
            .arg(&script)
            .args(["up", "--prefix", &format!("s2q{}", std::process::id())])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
