//! Listener mode (SciStream semantics) end to end on the namespace testbed,
//! both gateways running s2ds with the tunnel. Needs root.
//!
//! A session with num_conn = 4: gateway B (consumer side) listens on
//! 10.20.1.1:5100..5103; each leads through the tunnel to gateway A's
//! listener 10.10.100.1:6100..6103, which leads to the producer app on
//! 10.10.1.2:5100..5103. The consumer only ever talks to B; the producer
//! only ever sees A's LAN address.

use scistream_testbed::gateway::Gateway;
use scistream_testbed::netns::{require_root, GwMode, Node, Testbed, TestbedOpts};

const NUM_CONN: u16 = 4;

/// Adds listeners of `role` to a gateway config: outbound (B) leads to A's
/// listeners, inbound (A) to the producer.
fn listeners(role: &'static str) -> impl FnOnce(&mut toml::Table) {
    move |t: &mut toml::Table| {
        let mut list = Vec::new();
        for i in 0..NUM_CONN {
            let mut l = toml::Table::new();
            l.insert("role".into(), role.into());
            if role == "outbound" {
                l.insert("port".into(), i64::from(5100 + i).into());
                l.insert("remote".into(), format!("10.10.100.1:{}", 6100 + i).into());
                l.insert("sa".into(), 0x2001.into());
            } else {
                l.insert("port".into(), i64::from(6100 + i).into());
                l.insert("target".into(), format!("10.10.1.2:{}", 5100 + i).into());
                l.insert("sa".into(), 0x1001.into());
            }
            list.push(toml::Value::Table(l));
        }
        t.insert("listeners".into(), toml::Value::Array(list));
    }
}

#[test]
fn listener_mode_tcp_and_udp_streams() {
    require_root();
    let tb = Testbed::up(TestbedOpts {
        gw_a: GwMode::None,
        gw_b: GwMode::None,
        mtu: 1500,
        ..TestbedOpts::default()
    });
    let gwa = Gateway::start(
        &tb,
        Node::GwA,
        "testbed-gwa-af_packet.toml",
        listeners("inbound"),
    );
    let gwb = Gateway::start(
        &tb,
        Node::GwB,
        "testbed-gwb-af_packet.toml",
        listeners("outbound"),
    );
    // The consumer reaches B's LAN address (ARP + ping answered by B itself).
    let mut up = false;
    for _ in 0..10 {
        if tb.ping(Node::Cons, "10.20.1.1", 1) {
            up = true;
            break;
        }
    }
    assert!(up, "consumer reaches gateway B\n{}", gwb.log_text());

    // Three concurrent TCP connections to the same listener, each with its own data.
    let reports = tb.tcp_transfers(Node::Cons, Node::Prod, "10.20.1.1:5100", 20_000_000, 3);
    assert_eq!(reports.len(), 3);
    for r in &reports {
        assert_eq!(
            r.received_bytes,
            20_000_000,
            "{r:?}\nA:\n{}\nB:\n{}",
            gwa.log_text(),
            gwb.log_text()
        );
        assert_eq!(r.sent_sha256, r.received_sha256);
    }
    let mut shas: Vec<&str> = reports.iter().map(|r| r.sent_sha256.as_str()).collect();
    shas.sort();
    shas.dedup();
    assert_eq!(shas.len(), 3, "three distinct payloads");

    // A UDP best-effort stream through another listener.
    let udp = tb.udp_stream(Node::Cons, Node::Prod, "10.20.1.1:5101", 5_000, 1000, 2_500);
    assert_eq!(udp.received, 5_000, "{udp:?}");
    assert!(udp.in_order && udp.duplicates == 0, "{udp:?}");

    let (a, b) = (gwa.settled_snapshot(), gwb.settled_snapshot());
    assert!(
        a.nat_active >= 4,
        "A tracks the 3 TCP connections and the UDP flow: {}",
        a.nat_active
    );
    for (name, s) in [("A", &a), ("B", &b)] {
        for reason in [
            "esp_auth_failed",
            "esp_replay",
            "nat_pool_exhausted",
            "nat_unsupported",
        ] {
            assert_eq!(s.drops[reason], 0, "{name}: {reason}");
        }
    }
    assert!(b.tunnel.encap_packets >= 5_000 && a.tunnel.decap_packets >= 5_000);
    // MSS clamping: B lowers each consumer SYN as it seals it, A each
    // producer SYN-ACK, so neither 1500-MTU endpoint sends a segment too
    // big for the tunnel, and no gateway answers with fragmentation needed.
    assert!(
        b.tunnel.mss_clamped >= 3 && a.tunnel.mss_clamped >= 3,
        "A {} B {}",
        a.tunnel.mss_clamped,
        b.tunnel.mss_clamped
    );
    assert_eq!(
        (a.control.icmp_errors, b.control.icmp_errors),
        (0, 0),
        "no ICMP errors"
    );
}
