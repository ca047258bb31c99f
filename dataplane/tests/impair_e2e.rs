//! The tunnel through an impaired WAN (this host's kernel has no netem):
//! `testbed.sh --impair` puts a namespace on the link between gwA and the
//! WAN router, and `scripts/wan_impair.py` there drops, duplicates,
//! reorders and delays gwA's ESP packets from a seeded generator, counting
//! each. The gateways run the native AF_XDP backend with the manual keys
//! of the testbed configs. Needs root.
//!
//! What must hold: the consumer misses exactly the datagrams the WAN
//! dropped (the gateways lose none), every duplicate is counted as a replay
//! at gwB and never delivered, every packet reordered within the
//! anti-replay window is delivered, one reordered beyond it is counted and
//! never delivered twice, and TCP carries its bytes intact through it all.

use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use scistream_dataplane::snapshot::Snapshot;
use scistream_testbed::gateway::Gateway;
use scistream_testbed::netns::{
    require_root, Family, GwMode, Impairment, Node, Testbed, TestbedOpts,
};
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

const CONS: &str = "10.20.1.2";

/// The impaired testbed with one s2ds per gateway; the fields drop in
/// order (gateways before the namespaces).
struct Pair {
    a: Gateway,
    b: Gateway,
    tb: Testbed,
}

impl Pair {
    fn up() -> Pair {
        let tb = Testbed::up_impaired(TestbedOpts {
            gw_a: GwMode::None,
            gw_b: GwMode::None,
            mtu: 1500,
            family: Family::V4,
        });
        let a = Gateway::start(&tb, Node::GwA, "testbed-gwa-native-xdp.toml", |_| {});
        let b = Gateway::start(&tb, Node::GwB, "testbed-gwb-native-xdp.toml", |_| {});
        Pair { a, b, tb }
    }

    /// Waits until prod reaches cons (ARP through the wire, both ways).
    fn wait_reachable(&self) {
        let ok = (0..15).any(|_| self.tb.ping(Node::Prod, CONS, 1));
        assert!(
            ok,
            "prod never reached cons through the impaired WAN\n--- gwA:\n{}\n--- gwB:\n{}",
            self.a.log_text(),
            self.b.log_text()
        );
    }

    /// gwB's replay drops (duplicates and packets left of the window).
    fn replays(s: &Snapshot) -> u64 {
        s.drops.get("esp_replay").copied().unwrap_or(0)
    }

    /// gwB's ICV failures.
    fn auth_failures(s: &Snapshot) -> u64 {
        s.drops.get("esp_auth_failed").copied().unwrap_or(0)
    }
}

/// The counts of one direction of `stats` (`a2b`: gwA toward the WAN).
fn a2b(stats: &Value, key: &str) -> u64 {
    stats["a2b"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no a2b.{key} in {stats}"))
}

/// What changed in the impairment's a2b counts between two readings.
fn a2b_delta(before: &Value, after: &Value, key: &str) -> u64 {
    a2b(after, key) - a2b(before, key)
}

/// Sends `count` 1000-byte sequence-numbered datagrams from prod to cons at
/// `rate` pps; returns the receiver's report.
fn udp_through(p: &Pair, port: u16, count: u64, rate: u64) -> Value {
    let (count_s, rate_s) = (count.to_string(), rate.to_string());
    let bind = format!("0.0.0.0:{port}");
    let to = format!("{CONS}:{port}");
    let recv = p.tb.start_receiver(
        Node::Cons,
        &[
            "udp-recv",
            "--bind",
            &bind,
            "--count",
            &count_s,
            "--timeout",
            "4",
        ],
    );
    let sender = p.tb.run_sender(
        Node::Prod,
        &[
            "udp-send", "--to", &to, "--count", &count_s, "--size", "1000", "--rate", &rate_s,
        ],
        Duration::from_secs(60),
    );
    assert_eq!(sender["sent"].as_u64(), Some(count), "{sender}");
    p.tb.finish(recv, Duration::from_secs(60))
}

/// Settles: the stage's stats file is rewritten every 200 ms and the
/// gateways export their counters about as often.
fn settle() {
    thread::sleep(Duration::from_millis(700));
}

/// 1% loss, 3% duplicates and 5% reordering (3 places late) on gwA's ESP:
/// of 20,000 datagrams cons misses exactly the ones the WAN dropped, gets
/// none twice, and every reordered one; gwB counts every duplicate as a
/// replay. Then 200 MB of TCP through the same arrive intact.
#[test]
fn loss_duplication_and_reordering_cost_exactly_what_the_wan_did() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    require_root();
    let p = Pair::up();
    let mut imp: Impairment = p.tb.start_impairment(&[
        "--seed",
        "7",
        "--loss",
        "0.01",
        "--dup",
        "0.03",
        "--reorder",
        "0.05",
        "--depth",
        "3",
    ]);
    p.wait_reachable();
    settle();
    let (s0, a0, b0) = (imp.stats(), p.a.snapshot(), p.b.snapshot());
    const COUNT: u64 = 20_000;
    let r = udp_through(&p, 6300, COUNT, 4000);
    settle();
    let (s1, a1, b1) = (imp.stats(), p.a.snapshot(), p.b.snapshot());
    let seen = a2b_delta(&s0, &s1, "seen");
    let dropped = a2b_delta(&s0, &s1, "dropped");
    let duplicated = a2b_delta(&s0, &s1, "duplicated");
    let reordered = a2b_delta(&s0, &s1, "reordered");
    eprintln!(
        "impaired UDP: {seen} ESP frames seen, {dropped} dropped, {duplicated} duplicated, {reordered} reordered; cons: {r}"
    );
    // Everything gwA sealed reached the impairment stage: no loss before it.
    assert_eq!(
        seen,
        a1.tunnel.encap_packets - a0.tunnel.encap_packets,
        "gwA sealed vs WAN saw"
    );
    assert_eq!(seen, COUNT, "only the test stream crossed during the run");
    assert!(
        dropped > 100 && duplicated > 400 && reordered > 700,
        "the rates took effect: {s1}"
    );
    assert_eq!(a2b(&s1, "send_errors"), 0);
    // Exactly the injected loss, nothing twice, every reordered one accepted.
    assert_eq!(
        r["lost"].as_u64(),
        Some(dropped),
        "cons lost only what the WAN dropped: {r}"
    );
    assert_eq!(r["received"].as_u64(), Some(COUNT - dropped), "{r}");
    assert_eq!(r["duplicates"].as_u64(), Some(0), "{r}");
    assert!(
        r["out_of_order"].as_u64().unwrap() > 0,
        "reordered datagrams arrived (out of order): {r}"
    );
    assert_eq!(
        Pair::replays(&b1) - Pair::replays(&b0),
        duplicated,
        "gwB counts every duplicate as a replay"
    );
    assert_eq!(
        b1.tunnel.decap_packets - b0.tunnel.decap_packets,
        COUNT - dropped,
        "gwB opened every packet that reached it once"
    );

    const TCP_BYTES: u64 = 200 * 1000 * 1000;
    let t =
        p.tb.tcp_transfer(Node::Prod, Node::Cons, "10.20.1.2:6301", TCP_BYTES);
    assert_eq!(t.received_bytes, TCP_BYTES, "{t:?}");
    assert_eq!(
        t.sent_sha256, t.received_sha256,
        "TCP intact through the impaired WAN"
    );
    let s2 = imp.stop();
    eprintln!("impaired TCP: {t:?}\nWAN stage: {s2}");
    assert!(
        a2b_delta(&s1, &s2, "dropped") > 0,
        "TCP crossed the impairment: {s2}"
    );
}

/// Every 4,000th ESP packet held back 2,100 packets, beyond gwB's 1,984-wide
/// anti-replay window: each is dropped and counted once (an ICV failure:
/// with extended sequence numbers a number below the window is taken for
/// the next 2^32 block) and never delivered; everything else arrives once.
#[test]
fn a_reorder_beyond_the_window_is_counted_never_delivered_twice() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    require_root();
    let p = Pair::up();
    // Held frames go only by count (hold-ms far above the run).
    let mut imp = p.tb.start_impairment(&[
        "--seed",
        "11",
        "--late-every",
        "4000",
        "--late-depth",
        "2100",
        "--hold-ms",
        "60000",
    ]);
    p.wait_reachable();
    settle();
    let (s0, b0) = (imp.stats(), p.b.snapshot());
    let pings = a2b(&s0, "seen");
    // 22,500 datagrams: with the pings before them, 5 late ones, each
    // followed by at least 2,100 more.
    const COUNT: u64 = 22_500;
    let r = udp_through(&p, 6310, COUNT, 4000);
    settle();
    let (s1, b1) = (imp.stop(), p.b.snapshot());
    let late = a2b_delta(&s0, &s1, "late");
    eprintln!(
        "late beyond the window: {late} of {COUNT} (after {pings} earlier frames); cons: {r}"
    );
    assert!((5..=6).contains(&late), "{s1}");
    assert_eq!(r["duplicates"].as_u64(), Some(0), "{r}");
    assert_eq!(
        r["lost"].as_u64(),
        Some(late),
        "the late ones are lost, nothing else: {r}"
    );
    // With 64-bit sequence numbers, RFC 4303 Appendix A2.2 takes a low half
    // below the window for the next 2^32 block: the ICV then fails. Either
    // way each late packet is dropped and counted once.
    let replays = Pair::replays(&b1) - Pair::replays(&b0);
    let auth = Pair::auth_failures(&b1) - Pair::auth_failures(&b0);
    eprintln!("gwB: {replays} replay drops, {auth} ICV failures");
    assert_eq!(replays + auth, late, "gwB counts each late packet once");
}

/// A 40 ± 10 ms delay on gwA's ESP shows in prod's ping round trips: none
/// shorter than 30 ms, the median within 30..50, and three in four within
/// 30..50 plus the path's own (sub-millisecond). A few may come late when
/// the host's two CPUs are busy elsewhere (the impairment runs in user
/// space): that is the scheduler, not the delay, so it is not an error.
#[test]
fn delay_and_jitter_show_in_the_round_trip() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    require_root();
    let p = Pair::up();
    let mut imp =
        p.tb.start_impairment(&["--seed", "3", "--delay-ms", "40", "--jitter-ms", "10"]);
    p.wait_reachable();
    let out =
        p.tb.run(Node::Prod, &["ping", "-n", "-c", "20", "-i", "0.05", CONS]);
    let text = String::from_utf8_lossy(&out.stdout);
    let rtts: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect();
    let stats = imp.stop();
    eprintln!("round trips through 40 ± 10 ms: {rtts:?}");
    assert!(rtts.len() >= 18, "pings answered: {text}");
    for rtt in &rtts {
        assert!(
            *rtt >= 29.0,
            "{rtt} ms: shorter than the 30 ms minimum: {rtts:?}"
        );
    }
    let mut sorted = rtts.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    assert!(
        (30.0..=50.0).contains(&median),
        "median {median} ms: {rtts:?}"
    );
    let within = rtts.iter().filter(|r| (29.0..=60.0).contains(*r)).count();
    assert!(
        within * 4 >= rtts.len() * 3,
        "only {within} of {} within 30..50 (+ path): {rtts:?}",
        rtts.len()
    );
    let spread = rtts.iter().cloned().fold(f64::MIN, f64::max)
        - rtts.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 2.0, "jitter varies the delay: {rtts:?}");
    assert_eq!(a2b(&stats, "dropped"), 0);
}
