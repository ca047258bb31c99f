//! The control path end to end on the namespace testbed: both gateways run
//! `s2cs` and `s2ds` (native AF_XDP), and every key comes from the peer
//! channel (no static key anywhere). Needs root.
//!
//! A session: gateway B (consumer side, the initiator) listens on
//! 10.20.1.1:5100 and leads through the tunnel to gateway A's listener
//! 10.10.100.1:5100, which leads to the producer app on 10.10.1.2:5100.
//! The control processes talk over the testbed's management link.
//!
//! A tunnel (routed mode, `[[tunnels]] name = "site"`): prod's network
//! 10.10.1.0/24 behind gateway A and cons's 10.20.1.0/24 behind gateway B
//! reach each other with their own addresses; A initiates (its name sorts
//! first).
//!
//! The tests share the testbed machinery and the CPU-heavy gateways, so
//! they run one at a time.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use scistream_region::ShmReader;
use scistream_testbed::control::{gen_certs, keyed_by_control, ControlPlane, TEST_TOKEN};
use scistream_testbed::gateway::Gateway;
use scistream_testbed::netns::{require_root, Family, GwMode, Node, Testbed, TestbedOpts};
use scistream_testbed::paths::{python, script, workspace_bin};
use scistream_testbed::scratch::ScratchDir;
use serde_json::json;

static SERIAL: Mutex<()> = Mutex::new(());

/// The whole setup of one test: testbed, certificates, both control
/// processes and both data planes.
struct Pair {
    a: ControlPlane,
    b: ControlPlane,
    gwa: Gateway,
    gwb: Gateway,
    certs: ScratchDir,
    tb: Testbed,
}

impl Pair {
    /// Everything up; `edit` adjusts both s2cs configs.
    fn up(edit: impl Fn(&mut toml::Table)) -> Pair {
        Self::up_with(Family::V4, edit)
    }

    /// [`Pair::up`] on a testbed of address `family`.
    fn up_with(family: Family, edit: impl Fn(&mut toml::Table)) -> Pair {
        Self::up_full(family, edit, |_| {})
    }

    /// [`Pair::up_with`], with `dp_edit` adjusting both s2ds configs too
    /// (after they are switched to keying by s2cs).
    fn up_full(
        family: Family,
        edit: impl Fn(&mut toml::Table),
        dp_edit: impl Fn(&mut toml::Table),
    ) -> Pair {
        Self::up_on(Testbed::up(Self::opts(family)), edit, dp_edit)
    }

    /// [`Pair::up_full`] (IPv4) on a testbed with `queues` queues on every
    /// data-path veth (`testbed.sh --queues`).
    fn up_queues(
        queues: u16,
        edit: impl Fn(&mut toml::Table),
        dp_edit: impl Fn(&mut toml::Table),
    ) -> Pair {
        let opts = Self::opts(Family::V4);
        Self::up_on(Testbed::up_with_queues(opts, queues), edit, dp_edit)
    }

    fn opts(family: Family) -> TestbedOpts {
        TestbedOpts {
            gw_a: GwMode::None,
            gw_b: GwMode::None,
            mtu: 1500,
            family,
        }
    }

    /// Certificates, both s2cs and both s2ds on `tb`.
    fn up_on(
        tb: Testbed,
        edit: impl Fn(&mut toml::Table),
        dp_edit: impl Fn(&mut toml::Table),
    ) -> Pair {
        let certs = ScratchDir::new("s2cs-certs");
        // Each gateway's certificate names its management addresses too, so
        // that clients dialling the API by IP verify it (SciStream's usage).
        gen_certs(
            &certs,
            &[
                "gwa",
                "--ip",
                "10.99.0.1",
                "--ip",
                "fd00:99::1",
                "gwb",
                "--ip",
                "10.99.0.2",
                "--ip",
                "fd00:99::2",
            ],
        );
        let a = ControlPlane::start(&tb, Node::GwA, "gwa", &certs, &edit);
        let b = ControlPlane::start(&tb, Node::GwB, "gwb", &certs, &edit);
        let gwa = Gateway::start(&tb, Node::GwA, "testbed-gwa-native-xdp.toml", |t| {
            keyed_by_control(&a.shm)(t);
            dp_edit(t);
        });
        let gwb = Gateway::start(&tb, Node::GwB, "testbed-gwb-native-xdp.toml", |t| {
            keyed_by_control(&b.shm)(t);
            dp_edit(t);
        });
        Pair {
            a,
            b,
            gwa,
            gwb,
            certs,
            tb,
        }
    }

    /// Creates session `uid` on both sides (A first: it must exist there
    /// before B, the initiator, offers keys) and waits for its first keys.
    fn session(&self, uid: &str, port: u16) {
        self.a.admin_ok(json!({
            "op": "create", "uid": uid, "role": "inbound", "peer": "gwb",
            "listeners": [{"port": port, "target": format!("10.10.1.2:{port}")}]
        }));
        self.b.admin_ok(json!({
            "op": "create", "uid": uid, "role": "outbound", "peer": "gwa",
            "listeners": [{"port": port, "remote": format!("10.10.100.1:{port}")}]
        }));
        self.b.wait_epoch(uid, 1, Duration::from_secs(20));
        self.a.wait_epoch(uid, 1, Duration::from_secs(20));
        // The consumer reaches B's LAN address and the producer A's (ARP
        // answered by the gateways themselves, which learn the hosts' MACs:
        // s2ds drops, and counts, a packet whose next hop is unresolved).
        for (node, gw_ip, gw) in [
            (Node::Cons, "10.20.1.1", &self.gwb),
            (Node::Prod, "10.10.1.1", &self.gwa),
        ] {
            assert!(
                (0..10).any(|_| self.tb.ping(node, gw_ip, 1)),
                "{node:?} reaches its gateway {gw_ip}\n{}",
                gw.log_text()
            );
        }
    }

    fn logs(&self) -> String {
        format!(
            "--- s2cs A\n{}\n--- s2cs B\n{}\n--- s2ds A\n{}\n--- s2ds B\n{}",
            self.a.log_text(),
            self.b.log_text(),
            self.gwa.log_text(),
            self.gwb.log_text()
        )
    }
}

/// Every key (as lowercase hex) in the region at `shm` right now.
fn keys_in(shm: &Path) -> BTreeSet<String> {
    let r = ShmReader::open(shm, 0).expect("attach to the region");
    r.current()
        .sas()
        .iter()
        .filter_map(|e| e.key().map(hex::encode))
        .collect()
}

/// Asserts that no key in `keys` appears in `text`, in hex (either case)
/// or as raw bytes.
fn assert_no_keys(keys: &BTreeSet<String>, text: &str) {
    assert!(!keys.is_empty());
    let lower = text.to_lowercase();
    for k in keys {
        assert!(!lower.contains(k.as_str()), "a key appears in the logs");
        let raw = hex::decode(k).unwrap();
        assert!(
            !text
                .as_bytes()
                .windows(raw.len())
                .any(|w| w == raw.as_slice()),
            "raw key bytes appear in the logs"
        );
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn negotiated_session_carries_200_mb_and_strangers_are_refused() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = Pair::up(|_| {});
    p.session("s1", 5100);
    for shm in [&p.a.shm, &p.b.shm] {
        assert_eq!(mode(shm), 0o600, "{}", shm.display());
    }
    let keys = keys_in(&p.a.shm);
    assert_eq!(
        keys,
        keys_in(&p.b.shm),
        "both gateways hold the same two keys"
    );
    assert_eq!(keys.len(), 2);

    let r =
        p.tb.tcp_transfer(Node::Cons, Node::Prod, "10.20.1.1:5100", 200_000_000);
    assert_eq!(r.received_bytes, 200_000_000, "{r:?}\n{}", p.logs());
    assert_eq!(r.sent_sha256, r.received_sha256);

    // A key request for a uid A does not hold is refused.
    p.b.admin_ok(json!({
        "op": "create", "uid": "nobody-at-a", "role": "outbound", "peer": "gwa",
        "listeners": [{"port": 5101, "remote": "10.10.100.1:5101"}]
    }));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let s = p.b.status("nobody-at-a");
        if !s["last_error"].is_null() || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = status["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("UnknownUid"), "{status}");
    assert_eq!(status["negotiated"], false);
    assert!(status["outbound_spi"].is_null());
    assert!(
        p.a.log_text().contains("key offer refused"),
        "{}",
        p.a.log_text()
    );

    // A peer whose certificate comes from another CA is refused, with the reason.
    let strangers = ScratchDir::new("s2cs-strangers");
    gen_certs(&strangers, &["gwb"]);
    let out = p.tb.run(
        Node::GwB,
        &[
            "openssl",
            "s_client",
            "-connect",
            "10.99.0.1:5000",
            "-tls1_3",
            "-cert",
            &strangers.join("gwb.pem").display().to_string(),
            "-key",
            &strangers.join("gwb.key").display().to_string(),
        ],
    );
    drop(strangers);
    drop(out); // s_client's exit status says little for TLS 1.3 client auth: A's log does.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !p.a.log_text().contains("matches no trusted peer") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = p.a.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("matches no trusted peer"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{log}"));
    assert!(
        line.contains("refused") && line.contains("gwb: bad certificate signature"),
        "{line}"
    );

    // Release: the SAs and listeners leave the workers' tables.
    for (cp, gw) in [(&p.b, &p.gwb), (&p.a, &p.gwa)] {
        cp.admin_ok(json!({"op": "release", "uid": "s1"}));
        let after = gw.settled_snapshot();
        assert_eq!(
            after.sas[2] + after.sas[3],
            0,
            "listeners left: {:?}",
            after.sas
        );
    }
    let a = p.gwa.settled_snapshot();
    assert_eq!(a.sas[0], 0, "A has no outbound SA left: {:?}", a.sas);

    // No key ever reached a log.
    assert_no_keys(&keys, &p.logs());
}

#[test]
fn rekey_every_two_seconds_under_load_loses_nothing() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = Pair::up(|t| {
        let keys = t["keys"].as_table_mut().unwrap();
        keys.insert("rekey_seconds".into(), 2.into());
        keys.insert("grace_seconds".into(), 1.into());
    });
    p.session("s2", 5100);
    let before = (p.gwa.settled_snapshot(), p.gwb.settled_snapshot());
    let mut keys = keys_in(&p.b.shm);

    let (udp, tcp) = std::thread::scope(|s| {
        let udp = s.spawn(|| {
            p.tb.udp_stream(
                Node::Cons,
                Node::Prod,
                "10.20.1.1:5100",
                20_000,
                1000,
                1_000,
            )
        });
        let tcp = s.spawn(|| {
            p.tb.tcp_transfer(Node::Cons, Node::Prod, "10.20.1.1:5100", 300_000_000)
        });
        // Collect every key the rekeys install, for the log scan.
        while !udp.is_finished() {
            keys.extend(keys_in(&p.b.shm));
            std::thread::sleep(Duration::from_millis(200));
        }
        (udp.join().unwrap(), tcp.join().unwrap())
    });
    let drops = |g: &Gateway| {
        g.settled_snapshot()
            .drops
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        udp.lost,
        0,
        "{udp:?}\nA drops {:?}\nB drops {:?}\n{}",
        drops(&p.gwa),
        drops(&p.gwb),
        p.logs()
    );
    assert_eq!(udp.received, 20_000, "{udp:?}");
    assert_eq!(tcp.received_bytes, 300_000_000, "{tcp:?}");
    assert_eq!(tcp.sent_sha256, tcp.received_sha256);

    let (a, b) = (p.gwa.settled_snapshot(), p.gwb.settled_snapshot());
    let rekeys = p.b.status("s2")["rekeys"].as_u64().unwrap();
    // How long each exchange took, end to end at the initiator (offer to
    // committed, both publishes included): for docs/benchmarks.md.
    let mut ms: Vec<u64> =
        p.b.log_text()
            .lines()
            .filter(|l| l.contains("keys switched"))
            .filter_map(|l| {
                l.split("ms=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
    ms.sort_unstable();
    if !ms.is_empty() {
        eprintln!(
            "rekey under load: {} exchanges, median {} ms, max {} ms",
            ms.len(),
            ms[ms.len() / 2],
            ms[ms.len() - 1]
        );
    }
    assert!(rekeys >= 8, "only {rekeys} rekeys\n{}", p.logs());
    for (name, before, after) in [("A", &before.0, &a), ("B", &before.1, &b)] {
        let t0 = before.tables.unwrap();
        let t1 = after.tables.unwrap();
        // Each rekey installs two SAs (one each way) and removes two.
        assert!(
            t1.installed - t0.installed >= 16 && t1.removed - t0.removed >= 14,
            "{name}: SA changes {t0:?} → {t1:?}\nA: {}\nB: {}",
            p.a.status("s2"),
            p.b.status("s2")
        );
        assert_eq!(after.drops["esp_auth_failed"], 0, "{name}");
        assert_eq!(after.drops["esp_unknown_spi"], 0, "{name}");
        assert_eq!(after.drops["esp_replay"], 0, "{name}");
    }
    assert!(keys.len() >= 16, "{} distinct keys seen", keys.len());
    // Superseded inbound SAs go after the grace period: at most the current
    // one and the one in its grace period remain.
    std::thread::sleep(Duration::from_millis(1500));
    for cp in [&p.a, &p.b] {
        let s = cp.status("s2");
        assert!(
            s["inbound_spis"].as_array().unwrap().len() <= 2,
            "{s}\n{}",
            p.logs()
        );
    }
    assert_no_keys(&keys, &p.logs());
}

/// Waits until `cp` shows session `uid` with keys it negotiated itself at
/// an epoch above `above`; returns the status.
fn wait_renegotiated(cp: &ControlPlane, uid: &str, above: u64) -> serde_json::Value {
    cp.wait_epoch(uid, above + 1, Duration::from_secs(30))
}

#[test]
fn restarts_of_s2cs_and_s2ds_need_no_operator() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut p = Pair::up(|t| {
        let keys = t["keys"].as_table_mut().unwrap();
        keys.insert("grace_seconds".into(), 2.into());
    });
    p.session("s3", 5100);

    // SIGKILL each control process in turn in the middle of a UDP stream:
    // the workers keep forwarding on the keys they hold, nothing is lost,
    // and the restarted process lists the session and renegotiates.
    let udp = std::thread::scope(|s| {
        let udp = s.spawn(|| {
            p.tb.udp_stream(
                Node::Cons,
                Node::Prod,
                "10.20.1.1:5100",
                14_000,
                1000,
                1_000,
            )
        });
        for which in ["A", "B"] {
            std::thread::sleep(Duration::from_secs(2));
            let cp = if which == "A" { &mut p.a } else { &mut p.b };
            let epoch = cp.status("s3")["epoch"].as_u64().unwrap();
            cp.kill();
            std::thread::sleep(Duration::from_secs(1));
            cp.restart();
            let listed = cp.admin_ok(json!({"op": "list"}));
            assert_eq!(listed["sessions"][0]["uid"], "s3", "{which}: {listed}");
            let s = wait_renegotiated(cp, "s3", epoch);
            assert!(s["outbound_spi"].is_u64(), "{which}: {s}");
        }
        udp.join().unwrap()
    });
    assert_eq!(udp.lost, 0, "{udp:?}\n{}", p.logs());
    assert_eq!(udp.received, 14_000, "{udp:?}");
    assert!(p.a.log_text().contains("attached to the existing region"));

    // SIGKILL the producer side's data plane 2 s into a 10 s UDP stream
    // and start it again: s2cs sees the new incarnation and gets fresh keys
    // (an outbound SA is never reinstalled: its sequence counter died with
    // the process), and the stream resumes. Datagrams sent while no data
    // plane ran are lost; everything after the restart arrives.
    let epoch = p.b.status("s3")["epoch"].as_u64().unwrap();
    let (udp, restarted_after) = std::thread::scope(|s| {
        let t0 = Instant::now();
        let udp = s.spawn(|| {
            p.tb.udp_stream(
                Node::Cons,
                Node::Prod,
                "10.20.1.1:5100",
                10_000,
                1000,
                1_000,
            )
        });
        std::thread::sleep(Duration::from_secs(2));
        p.gwa.kill();
        p.gwa.restart();
        let restarted_after = t0.elapsed();
        (udp.join().unwrap(), restarted_after)
    });
    // Lost: at most what was sent between the kill and the restart plus
    // the time to renegotiate (1000 datagrams per second).
    let gap = restarted_after.as_millis() as u64 - 2000 + 1000;
    assert!(
        udp.received >= 10_000 - gap && udp.received < 10_000,
        "{udp:?} (restart took until {restarted_after:?})\n{}",
        p.logs()
    );
    let s = wait_renegotiated(&p.b, "s3", epoch);
    assert!(s["rekeys"].as_u64().unwrap() >= 1, "{s}");
    assert!(
        p.a.log_text().contains("data plane (re)started"),
        "{}",
        p.a.log_text()
    );
    let a = p.gwa.settled_snapshot();
    assert_eq!(a.drops["esp_auth_failed"], 0);
}

/// The API address of `node`'s s2cs on the management link.
fn api_of(node: Node) -> &'static str {
    match node {
        Node::GwA => "10.99.0.1:5001",
        _ => "10.99.0.2:5001",
    }
}

/// Runs `s2uc` inside `node`'s namespace against that gateway's API on the
/// management link, with the test token; returns its JSON output. The
/// certificate is verified against the IP address dialled (no
/// `--server-name`).
fn s2uc(p: &Pair, node: Node, args: &[&str]) -> serde_json::Value {
    s2uc_at(p, node, api_of(node), args)
}

/// [`s2uc`] against the API at `api`.
fn s2uc_at(p: &Pair, node: Node, api: &str, args: &[&str]) -> serde_json::Value {
    let bin = workspace_bin(option_env!("CARGO_BIN_EXE_s2uc"), "s2uc");
    let ca = p.certs.join("ca.pem").display().to_string();
    let mut argv: Vec<&str> = vec![bin.to_str().unwrap()];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&[
        "--s2cs",
        api,
        "--server_cert",
        &ca,
        "--token",
        TEST_TOKEN,
        "--json",
    ]);
    let out = p.tb.run(node, &argv);
    assert!(
        out.status.success(),
        "s2uc {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        p.logs()
    );
    serde_json::from_slice(&out.stdout).expect("s2uc JSON")
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The data-path addresses a listener-mode session uses, in one family.
struct StreamAddrs {
    /// The producer app (SciStream's `--remote_ip`).
    prod: &'static str,
    /// Gateway A's LAN address (the producer's next hop).
    gwa_lan: &'static str,
    /// Gateway A's WAN address: its inbound listeners' address.
    gwa_wan: &'static str,
    /// Gateway B's LAN address: its outbound listeners' address.
    gwb_lan: &'static str,
}

/// The testbed's IPv4 plan.
const V4: StreamAddrs = StreamAddrs {
    prod: "10.10.1.2",
    gwa_lan: "10.10.1.1",
    gwa_wan: "10.10.100.1",
    gwb_lan: "10.20.1.1",
};

/// The testbed's IPv6 plan (scripts/testbed.sh).
const V6: StreamAddrs = StreamAddrs {
    prod: "fd00:10:1::2",
    gwa_lan: "fd00:10:1::1",
    gwa_wan: "fd00:10:100::1",
    gwb_lan: "fd00:20:1::1",
};

/// `ip:port`, bracketing an IPv6 address, as the API writes endpoints.
fn endpoint(ip: &str, port: u16) -> String {
    std::net::SocketAddr::new(ip.parse().unwrap(), port).to_string()
}

/// SciStream's flow driven only by s2uc against the APIs `apis` (A's,
/// B's): inbound-request at A for the producer app 10.10.1.2:5100,
/// outbound-request at B with A's listener; the consumer pulls `bytes`
/// through B's listener with matching SHA-256, and the session is keyed.
/// Returns its uid.
fn s2uc_stream(p: &Pair, apis: [&str; 2], bytes: u64) -> String {
    s2uc_stream_in(p, apis, &V4, bytes)
}

/// [`s2uc_stream`] with the data-path addresses of `at`.
fn s2uc_stream_in(p: &Pair, apis: [&str; 2], at: &StreamAddrs, bytes: u64) -> String {
    let inbound = s2uc_at(
        p,
        Node::GwA,
        apis[0],
        &[
            "inbound-request",
            "--num_conn",
            "1",
            "--remote_ip",
            at.prod,
            "--receiver_ports",
            "5100",
        ],
    );
    let uid = inbound["uid"].as_str().unwrap().to_string();
    let a_listener = endpoint(at.gwa_wan, 5100);
    assert_eq!(strings(&inbound["listeners"]), [a_listener.as_str()]);
    assert_eq!(
        strings(&inbound["prod_listeners"]),
        [endpoint(at.prod, 5100)]
    );
    let outbound = s2uc_at(
        p,
        Node::GwB,
        apis[1],
        &["outbound-request", &uid, &a_listener],
    );
    let b_listener = endpoint(at.gwb_lan, 5100);
    assert_eq!(strings(&outbound["listeners"]), [b_listener.as_str()]);
    for (node, gw_ip) in [(Node::Cons, at.gwb_lan), (Node::Prod, at.gwa_lan)] {
        assert!(
            (0..10).any(|_| p.tb.ping(node, gw_ip, 1)),
            "{node:?} → {gw_ip}"
        );
    }
    let r = p.tb.tcp_pull(Node::Prod, Node::Cons, &b_listener, bytes);
    assert_eq!(r.received_bytes, bytes, "{r:?}\n{}", p.logs());
    assert_eq!(r.sent_sha256, r.received_sha256);
    let status = s2uc_at(p, Node::GwB, apis[1], &["status", &uid]);
    assert_eq!(status["state"], "keyed", "{status}");
    uid
}

/// SciStream's flow driven only by s2uc: inbound-request at A with the
/// producer's endpoint, outbound-request at B with A's listeners; the
/// consumer pulls 200 MB from the producer through B's listener; release
/// on both sides frees the listeners and the ports.
#[test]
fn s2uc_sets_up_a_stream_that_carries_200_mb_and_release_frees_it() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = Pair::up(|_| {});
    let uid = s2uc_stream(&p, [api_of(Node::GwA), api_of(Node::GwB)], 200_000_000);

    s2uc(&p, Node::GwB, &["release", &uid]);
    s2uc(&p, Node::GwA, &["release", &uid]);
    for gw in [&p.gwa, &p.gwb] {
        let s = gw.settled_snapshot();
        assert_eq!(s.sas, [0, 0, 0, 0], "SAs and listeners left: {:?}", s.sas);
    }
    // The listener no longer forwards: nothing reaches the producer.
    let udp =
        p.tb.udp_stream(Node::Cons, Node::Prod, "10.20.1.1:5100", 200, 100, 1000);
    assert_eq!(udp.received, 0, "{udp:?}");
    // And the port is free again.
    let again = s2uc(
        &p,
        Node::GwA,
        &[
            "inbound-request",
            "--remote_ip",
            "10.10.1.2",
            "--receiver_ports",
            "5100",
        ],
    );
    assert_eq!(strings(&again["listeners"]), ["10.10.100.1:5100"]);
}

/// Moves both s2cs's peer channel and API onto the management link's IPv6
/// addresses (fd00:99::1 for gwa, fd00:99::2 for gwb), IPv4 nowhere.
fn control_over_ipv6(t: &mut toml::Table) {
    let a = t["gateway"]["name"].as_str() == Some("gwa");
    let (me, peer) = if a {
        ("fd00:99::1", "fd00:99::2")
    } else {
        ("fd00:99::2", "fd00:99::1")
    };
    t["control"]["peer_listen"] = format!("[{me}]:5000").into();
    t["api"]["listen"] = format!("[{me}]:5001").into();
    for p in t["peers"].as_array_mut().unwrap() {
        p["control_address"] = format!("[{peer}]:5000").into();
    }
}

/// The two control processes peer, and serve s2uc, over IPv6 only: a
/// session set up with s2uc at [fd00:99::1]:5001 and [fd00:99::2]:5001 gets
/// its keys over the IPv6 peer channel and carries 50 MB intact.
#[test]
fn s2cs_peers_and_serves_s2uc_over_ipv6() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = Pair::up_with(Family::Dual, control_over_ipv6);
    s2uc_stream(&p, ["[fd00:99::1]:5001", "[fd00:99::2]:5001"], 50_000_000);
    // Keyed: the two s2cs exchanged keys over their peer channel, whose
    // only addresses (peer_listen, control_address) are IPv6.
}

/// Puts both s2cs on the IPv6-only testbed's data-path addresses (LAN and
/// WAN addresses, the peer's WAN address, IPv6 allow-list prefixes), with
/// the control traffic on the management link's IPv6 addresses.
fn s2cs_ipv6_only(t: &mut toml::Table) {
    control_over_ipv6(t);
    let a = t["gateway"]["name"].as_str() == Some("gwa");
    let (lan, wan, peer_wan) = match a {
        true => ("fd00:10:1::1", "fd00:10:100::1", "fd00:10:200::1"),
        false => ("fd00:20:1::1", "fd00:10:200::1", "fd00:10:100::1"),
    };
    t["gateway"]["lan_address"] = lan.into();
    t["gateway"]["wan_address"] = wan.into();
    t["peers"][0]["wan_address"] = peer_wan.into();
    let nets = [
        "fd00:10:1::/64",
        "fd00:10:100::/64",
        "fd00:10:200::/64",
        "fd00:20:1::/64",
    ];
    t["auth"]["allow"][0]["targets"] = toml::Value::Array(nets.iter().map(|&n| n.into()).collect());
}

/// Puts both s2ds on the IPv6-only testbed: IPv6 port addresses only, a
/// route to the far WAN through the WAN router, no IPv4 anywhere.
fn s2ds_ipv6_only(t: &mut toml::Table) {
    let a = t["gateway"]["name"].as_str() == Some("gwa");
    let (lan, wan, far_wan, router, peer) = match a {
        true => (
            "fd00:10:1::1/64",
            "fd00:10:100::1/64",
            "fd00:10:200::/64",
            "fd00:10:100::fe",
            "fd00:10:200::1",
        ),
        false => (
            "fd00:20:1::1/64",
            "fd00:10:200::1/64",
            "fd00:10:100::/64",
            "fd00:10:200::fe",
            "fd00:10:100::1",
        ),
    };
    t["ports"]["lan"]["address"] = lan.into();
    t["ports"]["wan"]["address"] = wan.into();
    let mut route = toml::Table::new();
    route.insert("prefix".into(), far_wan.into());
    route.insert("via".into(), router.into());
    t.insert("routes".into(), toml::Value::Array(vec![route.into()]));
    t["peers"][0]["address"] = peer.into();
}

/// SciStream's flow on an IPv6-only testbed (no IPv4 on the data path or
/// in either control process): s2uc sets up a listener-mode session whose
/// listeners are `[IPv6]:port`, the listener NAT translates IPv6 at both
/// gateways, and 50 MB pulled through B's listener arrive with matching
/// SHA-256 over a tunnel whose outer headers are IPv6.
#[test]
fn s2uc_session_on_an_ipv6_only_testbed_carries_50_mb() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = Pair::up_full(Family::V6, s2cs_ipv6_only, s2ds_ipv6_only);
    let mut wan = scistream_testbed::capture::Capture::start(&p.tb, Node::Wan, "a0");
    let uid = s2uc_stream_in(
        &p,
        ["[fd00:99::1]:5001", "[fd00:99::2]:5001"],
        &V6,
        50_000_000,
    );
    wan.stop();
    let status = s2uc_at(&p, Node::GwA, "[fd00:99::1]:5001", &["status", &uid]);
    assert_eq!(status["state"], "keyed", "{status}");
    // The SAs s2cs wrote carry the peers' IPv6 WAN addresses: gwA's WAN
    // link carries ESP-in-UDP over IPv6 both ways, and no IPv4 at all.
    let frames = wan.frames();
    let (esp6, _) = esp_by_outer_family(&frames);
    let ipv4 = frames
        .iter()
        .filter(|f| matches!(f.get(12..14), Some([0x08, 0x00] | [0x08, 0x06])))
        .count();
    eprintln!("IPv6-only session: gwA WAN frames: {esp6} ESP-in-UDP over IPv6, {ipv4} IPv4/ARP");
    assert_eq!(ipv4, 0, "IPv4 or ARP frames on an IPv6-only WAN");
    assert!(
        esp6 > 30_000,
        "50 MB as ESP-in-UDP over IPv6 to port 4500: {esp6} frames"
    );
}

/// Puts both s2ds on dual-stack ports (the testbed's IPv4 and IPv6
/// addresses), with a route to the far WAN's IPv6 prefix.
fn s2ds_dual_stack(t: &mut toml::Table) {
    let a = t["gateway"]["name"].as_str() == Some("gwa");
    let (lan6, wan6, far_wan, router) = match a {
        true => (
            "fd00:10:1::1/64",
            "fd00:10:100::1/64",
            "fd00:10:200::/64",
            "fd00:10:100::fe",
        ),
        false => (
            "fd00:20:1::1/64",
            "fd00:10:200::1/64",
            "fd00:10:100::/64",
            "fd00:10:200::fe",
        ),
    };
    for (port, v6) in [("lan", lan6), ("wan", wan6)] {
        let v4 = t["ports"][port]["address"].as_str().unwrap().to_owned();
        t["ports"][port]["address"] = toml::Value::Array(vec![v4.into(), v6.into()]);
    }
    let mut route = toml::Table::new();
    route.insert("prefix".into(), far_wan.into());
    route.insert("via".into(), router.into());
    t["routes"].as_array_mut().unwrap().push(route.into());
}

/// Counts the frames of a WAN capture that are ESP-in-UDP (to port 4500)
/// over IPv6 and over IPv4.
fn esp_by_outer_family(frames: &[Vec<u8>]) -> (u64, u64) {
    let (mut v6, mut v4) = (0, 0);
    for f in frames {
        match f.get(12..14) {
            Some([0x86, 0xdd])
                if f.get(20) == Some(&17) && f.get(56..58) == Some(&[0x11, 0x94]) =>
            {
                v6 += 1
            }
            Some([0x08, 0x00]) => {
                let ihl = usize::from(f.get(14).map_or(0, |b| b & 0x0f)) * 4;
                let to_4500 = f.get(14 + ihl + 2..14 + ihl + 4) == Some(&[0x11, 0x94]);
                if f.get(23) == Some(&17) && to_4500 {
                    v4 += 1;
                }
            }
            _ => {}
        }
    }
    (v6, v4)
}

/// IPv4 facilities over an IPv6 WAN: the producer, the consumer and every
/// listener are IPv4 (the s2uc flow of [`s2uc_stream`], unchanged), while
/// each s2cs sends ESP to its peer's IPv6 `esp_address`. 50 MB arrive
/// intact, and the WAN carries the tunnel over IPv6 only.
#[test]
fn ipv4_sessions_cross_an_ipv6_wan_with_esp_address() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s2cs_esp6 = |t: &mut toml::Table| {
        let a = t["gateway"]["name"].as_str() == Some("gwa");
        let peer_wan6 = if a {
            "fd00:10:200::1"
        } else {
            "fd00:10:100::1"
        };
        t["peers"][0]
            .as_table_mut()
            .unwrap()
            .insert("esp_address".into(), peer_wan6.into());
    };
    let p = Pair::up_full(Family::Dual, s2cs_esp6, s2ds_dual_stack);
    let mut wan = scistream_testbed::capture::Capture::start(&p.tb, Node::Wan, "a0");
    s2uc_stream(&p, [api_of(Node::GwA), api_of(Node::GwB)], 50_000_000);
    wan.stop();
    let (esp6, esp4) = esp_by_outer_family(&wan.frames());
    eprintln!("IPv4 session over an IPv6 WAN: {esp6} ESP frames over IPv6, {esp4} over IPv4");
    assert_eq!(esp4, 0, "no ESP over IPv4 once esp_address is IPv6");
    assert!(esp6 > 30_000, "50 MB as ESP over IPv6: {esp6} frames");
}

/// Sets up a one-connection session at A (the producer app on
/// 10.10.1.2:5100) and B with `s2uc --rate rate_kbytes`, and warms both
/// LANs' neighbour entries; returns the uid.
fn rated_session(p: &Pair, rate_kbytes: u32) -> String {
    let rate = rate_kbytes.to_string();
    let inbound = s2uc(
        p,
        Node::GwA,
        &[
            "inbound-request",
            "--num_conn",
            "1",
            "--rate",
            &rate,
            "--remote_ip",
            "10.10.1.2",
            "--receiver_ports",
            "5100",
        ],
    );
    let uid = inbound["uid"].as_str().unwrap().to_string();
    s2uc(
        p,
        Node::GwB,
        &["outbound-request", &uid, "10.10.100.1:5100"],
    );
    for (node, gw_ip) in [(Node::Cons, "10.20.1.1"), (Node::Prod, "10.10.1.1")] {
        assert!(
            (0..10).any(|_| p.tb.ping(node, gw_ip, 1)),
            "{node:?} → {gw_ip}"
        );
    }
    uid
}

/// The producer offers 40 Mb/s of UDP payload (5000 datagrams of 1000
/// bytes per second for 6 s) through the session; the consumer's received
/// rate in bit/s.
fn pull_40_mbps(p: &Pair) -> (f64, serde_json::Value) {
    let report =
        p.tb.udp_pull(Node::Prod, Node::Cons, "10.20.1.1:5100", 30_000, 1000, 5000);
    (report["rate_bps"].as_f64().unwrap_or(0.0), report)
}

/// A session with a rate, in SciStream's unit (kB/s): 2500 kB/s is
/// 20 Mb/s. The producer offers twice that; the consumer receives within
/// 10% of it, and the producer gateway counts the rest.
#[test]
fn the_session_rate_in_kilobytes_per_second_is_enforced_on_the_instrument_side() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = Pair::up(|_| {});
    let uid = rated_session(&p, 2500);
    let status = s2uc(&p, Node::GwA, &["status", &uid]);
    assert_eq!(status["rate_bps"], 20_000_000, "{status}");
    let (got, report) = pull_40_mbps(&p);
    let limit = 20_000_000.0;
    eprintln!("rate: offered 40 Mb/s, limit 2500 kB/s = {limit} b/s, received {got:.0} b/s");
    assert!(
        (got - limit).abs() <= 0.1 * limit,
        "received {got} b/s for a {limit} b/s limit: {report}\n{}",
        p.logs()
    );
    let a = p.gwa.settled_snapshot();
    assert!(a.drops["rate_limited"] > 5_000, "A drops: {:?}", a.drops);
}

/// With `[api] client_rate = "ignore"` the same session's rate is not
/// policed: the consumer receives what the producer offers.
#[test]
fn a_client_rate_is_not_policed_when_the_gateway_ignores_it() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = Pair::up(|t| {
        let api = t["api"].as_table_mut().unwrap();
        api.insert("client_rate".into(), "ignore".into());
    });
    let uid = rated_session(&p, 2500);
    let status = s2uc(&p, Node::GwA, &["status", &uid]);
    assert_eq!(status["rate_bps"], 0, "{status}");
    let (got, report) = pull_40_mbps(&p);
    eprintln!("rate ignored: offered 40 Mb/s, received {got:.0} b/s");
    assert!(
        got > 30_000_000.0,
        "received {got} b/s: policed although ignored? {report}\n{}",
        p.logs()
    );
    let a = p.gwa.settled_snapshot();
    assert_eq!(a.drops["rate_limited"], 0, "A drops: {:?}", a.drops);
}

/// SciStream's own client, as it behaves (scripts/scistream_client.py
/// --as-scistream: bare token, uuid1 uid, req and hello from a thread pool
/// with hello 0.5 s later, role PROD in the consumer-side hello, rate 10000
/// kB/s by default, the certificate checked against the IP it dials, release
/// at the end): a whole session on the testbed, 50 MB pulled through the
/// listeners, then nothing left behind on either gateway.
#[test]
fn scistreams_own_client_works_unchanged() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = Pair::up(|_| {});
    let script = script("scistream_client.py");
    let script = script.display().to_string();
    let ca = p.certs.join("ca.pem").display().to_string();
    let py = python();
    let scistream = |node: Node, args: &[&str]| -> serde_json::Value {
        let mut argv: Vec<&str> = vec![&py, &script];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&[
            "--as-scistream",
            "--s2cs",
            api_of(node),
            "--server-cert",
            &ca,
            "--token",
            TEST_TOKEN,
        ]);
        let out = p.tb.run(node, &argv);
        assert!(
            out.status.success(),
            "SciStream client {args:?}: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            p.logs()
        );
        serde_json::from_slice(&out.stdout).expect("client JSON")
    };
    let inbound = scistream(
        Node::GwA,
        &["inbound", "--num-conn", "1", "--targets", "10.10.1.2:5100"],
    );
    let uid = inbound["uid"].as_str().unwrap().to_string();
    assert_eq!(&uid[14..15], "1", "a version-1 uuid: {uid}");
    assert_eq!(strings(&inbound["listeners"]), ["10.10.100.1:5100"]);
    let outbound = scistream(
        Node::GwB,
        &[
            "outbound",
            "--uid",
            &uid,
            "--num-conn",
            "1",
            "--prod-listeners",
            "10.10.100.1:5100",
        ],
    );
    assert_eq!(strings(&outbound["listeners"]), ["10.20.1.1:5100"]);
    // SciStream's default rate, 10000 kB/s, is 80 Mb/s, not 10 kb/s.
    let status = s2uc(&p, Node::GwA, &["status", &uid]);
    assert_eq!(status["rate_bps"], 80_000_000, "{status}");
    assert_eq!(s2uc(&p, Node::GwB, &["status", &uid])["state"], "keyed");
    for (node, gw_ip) in [(Node::Cons, "10.20.1.1"), (Node::Prod, "10.10.1.1")] {
        assert!(
            (0..10).any(|_| p.tb.ping(node, gw_ip, 1)),
            "{node:?} → {gw_ip}"
        );
    }
    let r =
        p.tb.tcp_pull(Node::Prod, Node::Cons, "10.20.1.1:5100", 50_000_000);
    assert_eq!(r.received_bytes, 50_000_000, "{r:?}\n{}", p.logs());
    assert_eq!(r.sent_sha256, r.received_sha256);

    for node in [Node::GwB, Node::GwA] {
        let released = scistream(node, &["release", "--uid", &uid]);
        assert_eq!(released["released"], true);
    }
    for gw in [&p.gwa, &p.gwb] {
        let s = gw.settled_snapshot();
        assert_eq!(s.sas, [0, 0, 0, 0], "SAs and listeners left: {:?}", s.sas);
    }
    for node in [Node::GwA, Node::GwB] {
        let list = s2uc(&p, node, &["list"]);
        assert_eq!(list["sessions"], serde_json::json!([]), "{node:?}: {list}");
    }
    // No port stays reserved: the whole listener range can be had again.
    let all = s2uc(
        &p,
        Node::GwA,
        &[
            "inbound-request",
            "--num_conn",
            "64",
            "--remote_ip",
            "10.10.1.2",
            "--receiver_ports",
            "5100",
        ],
    );
    assert_eq!(all["listeners"].as_array().unwrap().len(), 64);
    assert_eq!(all["listeners"][0], "10.10.100.1:5100");
}

/// Packet-count rekeying: the control process reads each SA's packets from
/// the data plane's stats segment (whose path the data plane announced in
/// the region), so 20,000 datagrams over an SA good for 5,000 packets rekey
/// it several times, with not one datagram lost.
#[test]
fn packet_lifetimes_read_from_the_stats_segment_trigger_rekeys() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = Pair::up(|t| {
        let keys = t["keys"].as_table_mut().unwrap();
        keys.insert("rekey_packets".into(), 5_000.into());
        keys.insert("grace_seconds".into(), 1.into());
    });
    p.session("s3", 5100);
    let udp = p.tb.udp_stream(
        Node::Cons,
        Node::Prod,
        "10.20.1.1:5100",
        20_000,
        1000,
        2_000,
    );
    assert_eq!(udp.lost, 0, "{udp:?}\n{}", p.logs());
    assert_eq!(udp.received, 20_000, "{udp:?}");
    let log = p.b.log_text();
    let by_packets = log
        .lines()
        .filter(|l| l.contains("keys switched") && l.contains("lifetime (packets)"))
        .count();
    assert!(
        by_packets >= 2,
        "{by_packets} packet-triggered rekeys:\n{}",
        p.logs()
    );
    assert!(
        log.contains("reading SA usage from the data plane's stats segment"),
        "{log}"
    );
}

/// The uid of the testbed's site-to-site tunnel (`[[tunnels]] name = "site"`).
const SITE: &str = "tunnel:site";

/// Adds the testbed's site-to-site tunnel to an s2cs config: prod's
/// network 10.10.1.0/24 behind gwA, cons's 10.20.1.0/24 behind gwB, each
/// side the other's mirror.
fn site_tunnel(t: &mut toml::Table) {
    let (peer, local, remote) = match t["gateway"]["name"].as_str() {
        Some("gwa") => ("gwb", "10.10.1.0/24", "10.20.1.0/24"),
        _ => ("gwa", "10.20.1.0/24", "10.10.1.0/24"),
    };
    let mut tunnel = toml::Table::new();
    tunnel.insert("name".into(), "site".into());
    tunnel.insert("peer".into(), peer.into());
    tunnel.insert("local".into(), vec![toml::Value::from(local)].into());
    tunnel.insert("remote".into(), vec![toml::Value::from(remote)].into());
    t.insert("tunnels".into(), vec![toml::Value::Table(tunnel)].into());
}

impl Pair {
    /// Waits for the site tunnel's first keys on both sides, and until prod
    /// reaches cons through it (the gateways resolve the hosts' MACs on
    /// the way).
    fn wait_site(&self) {
        self.a.wait_epoch(SITE, 1, Duration::from_secs(20));
        self.b.wait_epoch(SITE, 1, Duration::from_secs(20));
        assert!(
            (0..10).any(|_| self.tb.ping(Node::Prod, "10.20.1.2", 1)),
            "prod never reached cons through the tunnel\n{}",
            self.logs()
        );
    }
}

/// Every route in the region at `shm`: (prefix/len, SPI of the outbound
/// SA it names).
fn routes_in(shm: &Path) -> Vec<(String, u32)> {
    let r = ShmReader::open(shm, 0).expect("attach to the region");
    let t = r.current();
    let sas: Vec<_> = t.sas().iter().collect();
    t.routes()
        .iter()
        .map(|e| {
            let sa = &sas[e.sa_slot as usize];
            assert_eq!(
                sa.direction(),
                Some(scistream_region::Direction::Out),
                "a route names an outbound SA"
            );
            (format!("{}/{}", e.network(), e.len), sa.spi)
        })
        .collect()
}

/// Routed mode under s2cs: a `[[tunnels]]` entry on each side, no session
/// and no listener. Prod sends straight to cons's address; gwA (the
/// initiator: its name sorts first) seals what is routed to 10.20.1.0/24
/// with the tunnel's outbound SA, gwB routes the decapsulated packets onto
/// its LAN. With a rekey every 2 s, 20,000 datagrams and 100 MB of TCP
/// arrive whole, and no key reaches a log.
#[test]
fn a_configured_tunnel_routes_prod_to_cons_through_key_switches() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = Pair::up(|t| {
        let keys = t["keys"].as_table_mut().unwrap();
        keys.insert("rekey_seconds".into(), 2.into());
        keys.insert("grace_seconds".into(), 1.into());
        site_tunnel(t);
    });
    p.wait_site();
    let a = p.a.status(SITE);
    assert_eq!(a["role"], "tunnel", "{a}");
    assert_eq!(a["peer"], "gwb", "{a}");
    assert_eq!(a["tunnel"]["initiator"], true, "{a}");
    assert_eq!(a["tunnel"]["remote"], json!(["10.20.1.0/24"]), "{a}");
    assert_eq!(p.b.status(SITE)["tunnel"]["initiator"], false);
    // One route each way, to the tunnel's outbound SA.
    for (cp, prefix) in [(&p.a, "10.20.1.0/24"), (&p.b, "10.10.1.0/24")] {
        let routes = routes_in(&cp.shm);
        assert_eq!(routes.len(), 1, "{routes:?}");
        assert_eq!(routes[0].0, prefix);
    }
    let epochs = (
        p.a.status(SITE)["epoch"].as_u64().unwrap(),
        p.b.status(SITE)["epoch"].as_u64().unwrap(),
    );
    let before = (p.gwa.settled_snapshot(), p.gwb.settled_snapshot());
    let mut keys = keys_in(&p.a.shm);

    let (udp, tcp) = std::thread::scope(|s| {
        let udp = s.spawn(|| {
            p.tb.udp_stream(
                Node::Prod,
                Node::Cons,
                "10.20.1.2:6100",
                20_000,
                1000,
                1_000,
            )
        });
        let tcp = s.spawn(|| {
            p.tb.tcp_transfer(Node::Prod, Node::Cons, "10.20.1.2:6101", 100_000_000)
        });
        // Collect every key the rekeys install, for the log scan.
        while !udp.is_finished() {
            keys.extend(keys_in(&p.a.shm));
            keys.extend(keys_in(&p.b.shm));
            std::thread::sleep(Duration::from_millis(200));
        }
        (udp.join().unwrap(), tcp.join().unwrap())
    });
    let drops = |g: &Gateway| {
        g.settled_snapshot()
            .drops
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        udp.lost,
        0,
        "{udp:?}\nA drops {:?}\nB drops {:?}\n{}",
        drops(&p.gwa),
        drops(&p.gwb),
        p.logs()
    );
    assert_eq!(udp.received, 20_000, "{udp:?}");
    assert_eq!(tcp.received_bytes, 100_000_000, "{tcp:?}\n{}", p.logs());
    assert_eq!(tcp.sent_sha256, tcp.received_sha256);

    // Rekeys happened, on both sides, and each switched the route to the
    // new outbound SA.
    let (sa, sb) = (p.a.status(SITE), p.b.status(SITE));
    for (name, s, epoch) in [("A", &sa, epochs.0), ("B", &sb, epochs.1)] {
        let now = s["epoch"].as_u64().unwrap();
        assert!(now >= epoch + 2, "{name}: epoch {epoch} → {now}: {s}");
        assert!(s["rekeys"].as_u64().unwrap() >= 3, "{name}: {s}");
        assert!(s["last_error"].is_null(), "{name}: {s}");
    }
    let switched =
        p.a.log_text()
            .lines()
            .filter(|l| l.contains("keys switched") && l.contains(SITE))
            .count();
    assert!(switched >= 3, "{switched} switches logged\n{}", p.logs());
    eprintln!(
        "tunnel: {} rekeys at A (epoch {}), {} at B (epoch {}), {switched} switches logged at A; UDP {udp:?}",
        sa["rekeys"], sa["epoch"], sb["rekeys"], sb["epoch"]
    );
    for (name, cp, before, gw) in [
        ("A", &p.a, &before.0, &p.gwa),
        ("B", &p.b, &before.1, &p.gwb),
    ] {
        let routes = routes_in(&cp.shm);
        let out = cp.status(SITE)["outbound_spi"].as_u64().unwrap() as u32;
        assert_eq!(routes.len(), 1, "{name}: {routes:?}");
        assert_eq!(routes[0].1, out, "{name}: the route names the current SA");
        let after = gw.settled_snapshot();
        let (t0, t1) = (before.tables.unwrap(), after.tables.unwrap());
        assert!(
            t1.installed - t0.installed >= 4 && t1.removed - t0.removed >= 4,
            "{name}: SA changes {t0:?} → {t1:?}"
        );
        for counter in ["esp_auth_failed", "esp_unknown_spi", "esp_replay"] {
            assert_eq!(after.drops[counter], 0, "{name}: {counter}");
        }
    }

    // The tunnel is the configuration's: the admin socket neither releases
    // it nor lets a session take a tunnel uid, and the API does not list it.
    let r = p.a.admin(json!({"op": "release", "uid": SITE}));
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("configured tunnel"),
        "{r}"
    );
    let r = p.b.admin(json!({
        "op": "create", "uid": "tunnel:other", "role": "outbound", "peer": "gwa",
        "listeners": [{"port": 5100, "remote": "10.10.100.1:5100"}]
    }));
    assert_eq!(r["ok"], false, "{r}");
    assert!(r["error"].as_str().unwrap().contains("reserved"), "{r}");
    assert_eq!(s2uc(&p, Node::GwA, &["list"])["sessions"], json!([]));

    assert_no_keys(&keys, &p.logs());
}

/// One reading of the region at `shm`: every SA as (SPI, outbound?,
/// lane_of), and the SPI each route names.
fn sas_and_routes_in(shm: &Path) -> (Vec<(u32, bool, u32)>, Vec<u32>) {
    let r = ShmReader::open(shm, 0).expect("attach to the region");
    let t = r.current();
    let sas: Vec<_> = t.sas().iter().collect();
    let routes = t
        .routes()
        .iter()
        .map(|e| sas[e.sa_slot as usize].spi)
        .collect();
    let sas = sas
        .iter()
        .map(|e| {
            (
                e.spi,
                e.direction() == Some(scistream_region::Direction::Out),
                e.lane_of,
            )
        })
        .collect();
    (sas, routes)
}

/// Routed mode with `[keys] lanes = 2` on both gateways: each epoch brings
/// two SAs per direction, the second a lane of the first (the one the route
/// names), rekeyed together; traffic crosses whole through the switches
/// and no ESP drop happens.
#[test]
fn a_tunnel_with_lanes_negotiates_and_rekeys_them_together() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = Pair::up(|t| {
        let keys = t["keys"].as_table_mut().unwrap();
        keys.insert("rekey_seconds".into(), 2.into());
        keys.insert("grace_seconds".into(), 1.into());
        keys.insert("lanes".into(), 2.into());
        site_tunnel(t);
    });
    p.wait_site();
    let check_lanes = |name: &str, cp: &ControlPlane| {
        let (sas, routes) = sas_and_routes_in(&cp.shm);
        assert_eq!(routes.len(), 1, "{name}: {routes:?}");
        let head = routes[0];
        let lanes: Vec<_> = sas.iter().filter(|s| s.1 && s.2 == head).collect();
        assert_eq!(lanes.len(), 1, "{name}: one lane of {head:#x} in {sas:x?}");
        assert!(sas.contains(&(head, true, 0)), "{name}: the head itself");
        let inbound_heads = sas.iter().filter(|s| !s.1 && s.2 == 0).count();
        let inbound_lanes = sas.iter().filter(|s| !s.1 && s.2 != 0).count();
        assert!(
            inbound_heads >= 1 && inbound_lanes == inbound_heads,
            "{name}: every inbound SA has its lane: {sas:x?}"
        );
    };
    check_lanes("A", &p.a);
    check_lanes("B", &p.b);
    // The admin status names the lanes too (one each way per epoch).
    let s = p.a.status(SITE);
    assert_eq!(
        s["outbound_lane_spis"].as_array().map(Vec::len),
        Some(1),
        "{s}"
    );
    assert!(
        !s["inbound_lane_spis"].as_array().unwrap().is_empty(),
        "{s}"
    );
    let epoch = s["epoch"].as_u64().unwrap();
    let (udp, tcp) = std::thread::scope(|s| {
        let udp = s.spawn(|| {
            p.tb.udp_stream(Node::Prod, Node::Cons, "10.20.1.2:6103", 8_000, 1000, 1_000)
        });
        let tcp = s.spawn(|| {
            p.tb.tcp_transfer(Node::Prod, Node::Cons, "10.20.1.2:6104", 30_000_000)
        });
        (udp.join().unwrap(), tcp.join().unwrap())
    });
    assert_eq!(
        (udp.lost, udp.received),
        (0, 8_000),
        "{udp:?}\n{}",
        p.logs()
    );
    assert_eq!(tcp.received_bytes, 30_000_000, "{tcp:?}\n{}", p.logs());
    assert_eq!(tcp.sent_sha256, tcp.received_sha256);
    let now = p.a.status(SITE)["epoch"].as_u64().unwrap();
    assert!(
        now >= epoch + 2,
        "rekeyed with lanes: epoch {epoch} → {now}"
    );
    check_lanes("A", &p.a);
    check_lanes("B", &p.b);
    for (name, gw) in [("A", &p.gwa), ("B", &p.gwb)] {
        let snap = gw.settled_snapshot();
        for counter in ["esp_auth_failed", "esp_unknown_spi", "esp_replay"] {
            assert_eq!(snap.drops[counter], 0, "{name}: {counter}");
        }
    }
}

/// Each worker's sealed and opened packets in `gw`'s settled snapshot
/// (what `s2ds stats` shows per worker).
fn per_worker(gw: &Gateway) -> (Vec<u64>, Vec<u64>) {
    let w = gw.settled_snapshot().per_worker;
    (
        w.iter().map(|w| w.encap_packets).collect(),
        w.iter().map(|w| w.decap_packets).collect(),
    )
}

/// `after - before`, element by element.
fn deltas(before: &[u64], after: &[u64]) -> Vec<u64> {
    before.iter().zip(after).map(|(b, a)| a - b).collect()
}

/// One tunnel across workers (issue 11, item 6): two workers per gateway
/// on a 2-queue testbed, `[keys] lanes = 2`. Eight TCP flows from prod to
/// cons arrive whole; at gwA both workers seal (each with its own lane,
/// from its own source port), and at gwB both workers open (each lane
/// reaches the worker of its queue, and only that worker opens it), with
/// no replay drop and no other ESP drop on either side.
#[test]
fn eight_flows_of_one_tunnel_keep_both_workers_busy_at_both_ends() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = Pair::up_queues(
        2,
        |t| {
            let keys = t["keys"].as_table_mut().unwrap();
            keys.insert("lanes".into(), 2.into());
            site_tunnel(t);
        },
        |t| {
            t["workers"]["cores"] = toml::Value::Array(vec![0.into(), 1.into()]);
            for port in ["lan", "wan"] {
                t["ports"][port]["xdp_mode"] = "native".into();
            }
        },
    );
    p.wait_site();
    let before = (per_worker(&p.gwa).0, per_worker(&p.gwb).1);
    // Each SA's packets so far (the pings of wait_site), by direction and SPI.
    let sa_packets = |gw: &Gateway| -> std::collections::BTreeMap<(String, String), u64> {
        gw.settled_snapshot()
            .sa_counters
            .into_iter()
            .map(|sa| ((sa.direction, sa.spi), sa.packets))
            .collect()
    };
    let sa_before = (sa_packets(&p.gwa), sa_packets(&p.gwb));
    let reports =
        p.tb.tcp_transfers(Node::Prod, Node::Cons, "10.20.1.2:6105", 10_000_000, 8);
    assert_eq!(reports.len(), 8, "{reports:?}\n{}", p.logs());
    for r in &reports {
        assert_eq!(r.received_bytes, 10_000_000, "{r:?}\n{}", p.logs());
        assert_eq!(r.sent_sha256, r.received_sha256, "{r:?}");
    }
    let a_sealed = deltas(&before.0, &per_worker(&p.gwa).0);
    let b_opened = deltas(&before.1, &per_worker(&p.gwb).1);
    eprintln!("per worker: gwA sealed {a_sealed:?}, gwB opened {b_opened:?}");
    // 80 MB is about 55,000 full-size segments: each worker carries a
    // share far above what the handshakes and ACKs alone would make.
    for (what, v) in [("gwA sealed", &a_sealed), ("gwB opened", &b_opened)] {
        let total: u64 = v.iter().sum();
        assert!(total >= 50_000, "{what}: {v:?}\n{}", p.logs());
        for (w, n) in v.iter().enumerate() {
            assert!(
                *n * 10 >= total,
                "{what}: worker {w} carried {n} of {total} ({v:?})\n{}",
                p.logs()
            );
        }
    }
    for (name, gw, direction, data, sas_before) in [
        ("A", &p.gwa, "out", &a_sealed, &sa_before.0),
        ("B", &p.gwb, "in", &b_opened, &sa_before.1),
    ] {
        let snap = gw.settled_snapshot();
        for counter in ["esp_auth_failed", "esp_unknown_spi", "esp_replay"] {
            assert_eq!(snap.drops[counter], 0, "{name}: {counter}");
        }
        for sa in &snap.sa_counters {
            assert_eq!(sa.replayed, 0, "{name}: {sa:?}");
        }
        // Both lanes carried the data: A sealed with two outbound SAs, B
        // opened with two inbound ones (packets during the transfer).
        let total: u64 = data.iter().sum();
        let busy: Vec<_> = snap
            .sa_counters
            .iter()
            .filter(|sa| {
                let was = sas_before
                    .get(&(sa.direction.clone(), sa.spi.clone()))
                    .copied()
                    .unwrap_or(0);
                sa.direction == direction && (sa.packets - was) * 10 >= total
            })
            .collect();
        assert_eq!(
            busy.len(),
            2,
            "{name}: two lanes busy: {:?}",
            snap.sa_counters
        );
    }
}

/// A tunnel survives each s2cs being killed in the middle of a stream: the
/// workers keep forwarding on the keys they hold, and the restarted
/// process finds the tunnel's outbound SA through its route entry (a
/// tunnel has no listener) and renegotiates, with nothing lost.
#[test]
fn a_tunnel_survives_s2cs_restarts() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut p = Pair::up(|t| {
        let keys = t["keys"].as_table_mut().unwrap();
        keys.insert("grace_seconds".into(), 2.into());
        site_tunnel(t);
    });
    p.wait_site();
    let udp = std::thread::scope(|s| {
        let udp = s.spawn(|| {
            p.tb.udp_stream(
                Node::Prod,
                Node::Cons,
                "10.20.1.2:6102",
                14_000,
                1000,
                1_000,
            )
        });
        for which in ["A", "B"] {
            std::thread::sleep(Duration::from_secs(2));
            let cp = if which == "A" { &mut p.a } else { &mut p.b };
            let epoch = cp.status(SITE)["epoch"].as_u64().unwrap();
            cp.kill();
            std::thread::sleep(Duration::from_secs(1));
            cp.restart();
            let log = cp.log_text();
            let attached = log
                .lines()
                .rfind(|l| l.contains("attached to the existing region"))
                .unwrap_or_else(|| panic!("{which}: not attached:\n{log}"));
            assert!(attached.contains("outbound=1"), "{which}: {attached}");
            let s = wait_renegotiated(cp, SITE, epoch);
            assert!(s["outbound_spi"].is_u64(), "{which}: {s}");
        }
        udp.join().unwrap()
    });
    assert_eq!(udp.lost, 0, "{udp:?}\n{}", p.logs());
    assert_eq!(udp.received, 14_000, "{udp:?}");
    let a = p.gwa.settled_snapshot();
    assert_eq!(a.drops["esp_auth_failed"], 0);
}

/// The metrics port of both gateways' s2cs, on the management link.
const METRICS_PORT: u16 = 9410;

/// Serves metrics on each gateway's management address and writes its
/// audit log beside its registry.
fn observed(t: &mut toml::Table) {
    let gw = t["gateway"]["name"].as_str().unwrap().to_string();
    let ip = if gw == "gwa" {
        "10.99.0.1"
    } else {
        "10.99.0.2"
    };
    let mut m = toml::Table::new();
    m.insert("listen".into(), format!("{ip}:{METRICS_PORT}").into());
    t.insert("metrics".into(), m.into());
    let registry = t["registry"]["path"].as_str().unwrap().to_string();
    let audit = Path::new(&registry).with_file_name("audit.log");
    t["logging"]
        .as_table_mut()
        .unwrap()
        .insert("audit_file".into(), audit.display().to_string().into());
}

/// The audit log of a control process started with [`observed`].
fn audit_lines(cp: &ControlPlane) -> Vec<serde_json::Value> {
    let registry = cp.dir_path().join("audit.log");
    std::fs::read_to_string(&registry)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
        .collect()
}

/// GET `url` from inside `node`'s namespace; the body.
fn http_get(tb: &Testbed, node: Node, url: &str) -> String {
    const GET: &str = "import sys, urllib.request\n\
        print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode(), end='')\n";
    let py = python();
    let out = tb.run(node, &[&py, "-c", GET, url]);
    assert!(
        out.status.success(),
        "GET {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A Prometheus server (Debian's package) in gwB's namespace scraping
/// both gateways every second, with a private data directory; stopped on
/// drop.
struct Prometheus {
    child: std::process::Child,
    _dir: ScratchDir,
}

const PROMETHEUS: &str = "10.99.0.2:19090";

impl Prometheus {
    fn start(tb: &Testbed) -> Prometheus {
        let dir = ScratchDir::new("prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
                 scrape_configs:\n  - job_name: s2cs\n    static_configs:\n      - targets: ['10.99.0.1:{METRICS_PORT}', '10.99.0.2:{METRICS_PORT}']\n"
            ),
        )
        .unwrap();
        let config = config.display().to_string();
        let data = dir.join("data").display().to_string();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let mut cmd = tb.command(
            Node::GwB,
            &[
                "prometheus",
                &format!("--config.file={config}"),
                &format!("--storage.tsdb.path={data}"),
                &format!("--web.listen-address={PROMETHEUS}"),
                "--web.enable-lifecycle",
            ],
        );
        cmd.stdout(std::process::Stdio::from(log.try_clone().unwrap()))
            .stderr(std::process::Stdio::from(log));
        let child = tb.spawn_cmd(Node::GwB, cmd);
        let p = Prometheus { child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let py = python();
            let ready = tb.run(
                Node::GwB,
                &[
                    &py,
                    "-c",
                    "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)",
                    &format!("http://{PROMETHEUS}/-/ready"),
                ],
            );
            if ready.status.success() {
                return p;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("prometheus not ready in 60 s");
    }

    /// An instant query's value (the sum over the result vector; `None`
    /// if it is empty).
    fn query(&self, tb: &Testbed, expr: &str) -> Option<f64> {
        let url = format!(
            "http://{PROMETHEUS}/api/v1/query?query={}",
            url_encode(expr)
        );
        let v: serde_json::Value = serde_json::from_str(&http_get(tb, Node::GwB, &url)).unwrap();
        assert_eq!(v["status"], "success", "{expr}: {v}");
        let result = v["data"]["result"].as_array().unwrap();
        if result.is_empty() {
            return None;
        }
        Some(
            result
                .iter()
                .map(|r| r["value"][1].as_str().unwrap().parse::<f64>().unwrap())
                .sum(),
        )
    }

    /// Waits until `expr` is `want` in Prometheus (it scrapes every
    /// second); the last value seen.
    fn wait_for(&self, tb: &Testbed, expr: &str, want: f64) -> Option<f64> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = None;
        while Instant::now() < deadline {
            last = self.query(tb, expr);
            if last == Some(want) {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        last
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter (RFC 3986 unreserved characters kept).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// ESP-in-UDP frames from gwA's WAN address to gwB's with SPI `spi`,
/// sequence numbers ahead of any sent, and garbage ciphertext: each fails
/// gwB's ICV check once (the replay window only moves on authentic packets).
fn forged_esp(p: &Pair, spi: u32, n: u32) -> Vec<Vec<u8>> {
    use scistream_testbed::capture::{fix_checksums, parse_mac};
    let dst = parse_mac(&p.gwb.mac("wan"));
    let src = parse_mac(&p.tb.link_mac(Node::Wan, "b0").expect("b0 MAC"));
    (0..n)
        .map(|i| {
            let esp_len = 4 + 4 + 8 + 64 + 16;
            let udp_len = 8 + esp_len;
            let ip_len = 20 + udp_len;
            let mut f = Vec::with_capacity(14 + ip_len);
            f.extend_from_slice(&dst);
            f.extend_from_slice(&src);
            f.extend_from_slice(&[0x08, 0x00]);
            f.extend_from_slice(&[0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 0, 0x40, 0]);
            f.extend_from_slice(&[63, 17, 0, 0, 10, 10, 100, 1, 10, 10, 200, 1]);
            f.extend_from_slice(&[0x11, 0x94, 0x11, 0x94]); // 4500 -> 4500
            f.extend_from_slice(&[(udp_len >> 8) as u8, udp_len as u8, 0, 0]);
            f.extend_from_slice(&spi.to_be_bytes());
            f.extend_from_slice(&(1_000_000 + i).to_be_bytes());
            f.extend((0..8 + 64 + 16).map(|k| (k as u8).wrapping_mul(31) ^ i as u8));
            fix_checksums(&mut f);
            f
        })
        .collect()
}

/// Metric names a scrape exposes: its sample names (without labels), and
/// the sample names of each declared family (`# TYPE`), which a family
/// with no series yet (no authentication failure so far) still has.
fn sample_names(scrape: &str) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    for l in scrape.lines() {
        let mut w = l.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (w.next(), w.next(), w.next(), w.next())
        {
            let suffixes: &[&str] = match kind {
                "counter" if name.ends_with("_total") => &[""],
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_count", "_sum"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        }
    }
    names
}

/// A real Prometheus scrapes both gateways during a session: the
/// per-session bytes match what the producer sent, the authentication
/// failure counter moves by exactly the number of forged frames, the
/// key-exchange histogram counts every key switch, `promtool check
/// metrics` accepts a scrape, the dashboard names only exported metrics,
/// the audit log has one line per call with identity and code (and no
/// token or key anywhere), and a released session's series are gone.
#[test]
fn prometheus_scrapes_session_traffic_drops_and_key_exchanges() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = Pair::up(observed);
    let prom = Prometheus::start(&p.tb);
    let uid = rated_session(&p, 0);
    let a_metrics = format!("http://10.99.0.1:{METRICS_PORT}/metrics");
    let b_metrics = format!("http://10.99.0.2:{METRICS_PORT}/metrics");

    // Traffic: 10,000 datagrams of 1000 bytes from the producer; each is a
    // 1028-byte IP packet inside the tunnel.
    const COUNT: u64 = 10_000;
    let report =
        p.tb.udp_pull(Node::Prod, Node::Cons, "10.20.1.1:5100", COUNT, 1000, 2000);
    eprintln!("udp pull: {report}");
    let received = report["received"].as_u64().unwrap();
    assert!(received >= COUNT * 99 / 100, "{report}\n{}", p.logs());
    // Three key switches, started by B (the initiator) one after another.
    let before = p.b.status(&uid)["epoch"].as_u64().unwrap();
    for i in 1..=3 {
        p.b.admin_ok(json!({"op": "rekey", "uid": uid}));
        wait_renegotiated(&p.b, &uid, before + i - 1);
    }
    std::thread::sleep(Duration::from_secs(3));
    let inner = (COUNT * 1028) as f64;
    let out_a = format!("s2cs_session_bytes_total{{instance=\"10.99.0.1:{METRICS_PORT}\",uid=\"{uid}\",direction=\"out\"}}");
    let in_b = format!("s2cs_session_bytes_total{{instance=\"10.99.0.2:{METRICS_PORT}\",uid=\"{uid}\",direction=\"in\"}}");
    for expr in [&out_a, &in_b] {
        let mut v = 0.0;
        for _ in 0..20 {
            v = prom.query(&p.tb, expr).unwrap_or(0.0);
            if (v - inner).abs() <= 0.01 * inner {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let scrapes: String = [&a_metrics, &b_metrics]
            .iter()
            .map(|u| http_get(&p.tb, Node::GwB, u))
            .flat_map(|s| {
                s.lines()
                    .filter(|l| l.contains("bytes") && !l.starts_with('#'))
                    .map(|l| format!("{l}\n"))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            (v - inner).abs() <= 0.01 * inner,
            "{expr} = {v}, sent {COUNT} x 1028 B = {inner}: {report}\n{scrapes}\n{}",
            p.logs()
        );
    }

    // Forged frames with the current inbound SPI at B: each one is an
    // authentication failure, exactly.
    let spi = p.b.status(&uid)["inbound_spis"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_u64()
        .unwrap() as u32;
    let drops = format!(
        "s2ds_drops_total{{instance=\"10.99.0.2:{METRICS_PORT}\",reason=\"esp_auth_failed\"}}"
    );
    let direct = |gw: &Gateway| gw.settled_snapshot().drops["esp_auth_failed"] as f64;
    let start = direct(&p.gwb);
    assert_eq!(prom.wait_for(&p.tb, &drops, start), Some(start));
    const FORGED: u32 = 25;
    scistream_testbed::capture::inject(&p.tb, Node::Wan, "b0", &forged_esp(&p, spi, FORGED));
    let want = start + f64::from(FORGED);
    assert_eq!(
        prom.wait_for(&p.tb, &drops, want),
        Some(want),
        "gwB counts {} directly\n{}",
        direct(&p.gwb),
        p.logs()
    );
    let session_auth = format!(
        "s2cs_session_drops_total{{instance=\"10.99.0.2:{METRICS_PORT}\",uid=\"{uid}\",reason=\"auth_failed\"}}"
    );
    assert_eq!(
        prom.wait_for(&p.tb, &session_auth, f64::from(FORGED)),
        Some(f64::from(FORGED))
    );

    // Every completed exchange is in the histogram, on both sides.
    for (cp, ip) in [(&p.a, "10.99.0.1"), (&p.b, "10.99.0.2")] {
        let rekeys = cp.status(&uid)["rekeys"].as_u64().unwrap() as f64;
        assert!(rekeys >= 4.0, "first keys and three switches: {rekeys}");
        let expr = format!(
            "sum(s2cs_key_exchange_duration_seconds_count{{instance=\"{ip}:{METRICS_PORT}\"}})"
        );
        assert_eq!(prom.wait_for(&p.tb, &expr, rekeys), Some(rekeys), "{expr}");
    }

    // A stranger's call is refused, counted and audited.
    let bin = workspace_bin(option_env!("CARGO_BIN_EXE_s2uc"), "s2uc");
    let ca = p.certs.join("ca.pem").display().to_string();
    let refused = p.tb.run(
        Node::GwB,
        &[
            bin.to_str().unwrap(),
            "list",
            "--s2cs",
            api_of(Node::GwB),
            "--server_cert",
            &ca,
            "--token",
            "not-a-token-of-ours",
        ],
    );
    assert!(!refused.status.success());
    let auth = format!(
        "s2cs_auth_failures_total{{instance=\"10.99.0.2:{METRICS_PORT}\",reason=\"invalid\"}}"
    );
    assert_eq!(prom.wait_for(&p.tb, &auth, 1.0), Some(1.0), "{auth}");
    assert!(
        audit_lines(&p.b).iter().any(|l| l["method"] == "list"
            && l["code"] == "UNAUTHENTICATED"
            && l["identity"] == "-"),
        "the refused call is audited"
    );

    // A scrape passes promtool, and holds every metric the dashboard uses.
    let scrape = http_get(&p.tb, Node::GwB, &b_metrics);
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write as _;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = sample_names(&scrape);
    let dashboard = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana-dashboard.json"),
    )
    .unwrap();
    let used = dashboard_metrics(&dashboard);
    assert!(used.len() >= 10, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "dashboard metrics not exported: {missing:?}"
    );

    // Release on both sides: the session's series are gone.
    let keys: BTreeSet<String> = keys_in(&p.a.shm)
        .union(&keys_in(&p.b.shm))
        .cloned()
        .collect();
    s2uc(&p, Node::GwB, &["status", &uid]);
    s2uc(&p, Node::GwB, &["release", &uid]);
    s2uc(&p, Node::GwA, &["release", &uid]);
    for url in [&a_metrics, &b_metrics] {
        let scrape = http_get(&p.tb, Node::GwB, url);
        assert!(!scrape.contains(&uid), "{uid} still in a scrape of {url}");
        assert!(
            scrape.contains("s2cs_sessions{state=\"keyed\"} 0"),
            "{scrape}"
        );
    }

    // The audit log: one line per call, with identity and code.
    for (cp, calls) in [
        (&p.a, vec!["req", "hello", "update", "release"]),
        (&p.b, vec!["req", "hello", "update", "status", "release"]),
    ] {
        let lines = audit_lines(cp);
        let api: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| l["source"] == "api" && l["uid"] == uid.as_str())
            // s2uc retries a `hello` that overtook its `req` (NOT_FOUND,
            // see client::session::HelloRetry); each try is audited.
            .filter(|l| !(l["method"] == "hello" && l["code"] == "NOT_FOUND"))
            .collect();
        // In the order the calls completed (req answers after hello).
        let mut methods: Vec<&str> = api.iter().map(|l| l["method"].as_str().unwrap()).collect();
        methods.sort_unstable();
        let mut calls = calls;
        calls.sort_unstable();
        assert_eq!(methods, calls, "{lines:?}");
        for l in &api {
            assert_eq!(l["identity"], "testuser", "{l}");
            assert_eq!(l["code"], "OK", "{l}");
            assert!(l["role"] == "PROD" || l["role"] == "CONS", "{l}");
        }
        assert!(
            lines
                .iter()
                .any(|l| l["source"] == "peer" && l["uid"] == uid.as_str()),
            "peer events are audited: {lines:?}"
        );
        let text = std::fs::read_to_string(cp.dir_path().join("audit.log")).unwrap();
        assert!(!text.contains(TEST_TOKEN) && !text.contains("not-a-token-of-ours"));
        assert_no_keys(&keys, &text);
        assert!(!cp.log_text().contains(TEST_TOKEN));
        assert_no_keys(&keys, &cp.log_text());
        assert_eq!(mode(&cp.dir_path().join("audit.log")), 0o600);
    }
}

/// The metric names a Grafana dashboard's queries use (`s2ds_*`, `s2cs_*`).
fn dashboard_metrics(json: &str) -> BTreeSet<String> {
    let v: serde_json::Value = serde_json::from_str(json).expect("dashboard JSON");
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x.as_str()) {
                        ("expr", Some(e)) => out.push(e.to_string()),
                        _ => walk(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&v, &mut exprs);
    let mut names = BTreeSet::new();
    for e in exprs {
        let b = e.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let boundary = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
            if boundary && (e[i..].starts_with("s2ds_") || e[i..].starts_with("s2cs_")) {
                let end = e[i..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(e.len(), |n| i + n);
                names.insert(e[i..end].to_string());
                i = end;
            } else {
                i += 1;
            }
        }
    }
    names
}

/// A small seeded generator (SplitMix64) for the crash loop's choices
/// (which process, when): repeatable from the seed it prints.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A duration in `lo..hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

/// (SPI, low sequence number) of every ESP-in-UDP frame (to port 4500)
/// of a capture, and how many frames were neither that nor ARP.
fn esp_ids(frames: &[Vec<u8>]) -> (Vec<(u32, u32)>, Vec<String>) {
    let mut ids = Vec::new();
    let mut other = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let ethertype = f.get(12..14);
        if ethertype == Some(&[0x08, 0x06]) {
            continue;
        }
        let ihl = usize::from(f.get(14).map_or(0, |b| b & 0x0f)) * 4;
        let udp = 14 + ihl;
        let is_esp = ethertype == Some(&[0x08, 0x00])
            && f.get(23) == Some(&17)
            && f.get(udp + 2..udp + 4) == Some(&[0x11, 0x94])
            && f.len() >= udp + 16;
        if !is_esp {
            other.push(format!(
                "#{i}: {} bytes, {:02x?}",
                f.len(),
                &f[..f.len().min(40)]
            ));
            continue;
        }
        let spi = u32::from_be_bytes(f[udp + 8..udp + 12].try_into().unwrap());
        let seq = u32::from_be_bytes(f[udp + 12..udp + 16].try_into().unwrap());
        ids.push((spi, seq));
    }
    (ids, other)
}

/// Crash loop: `S2_CRASH_LOOPS` (default 5) times, SIGKILL one of the four
/// processes (s2cs or s2ds, at A or B, chosen by a seeded generator) at a
/// random moment, during a UDP stream and with keys rolled over every 2 s
/// (so some kills land in key exchanges), and start it again. Each time
/// the session carries a stream whole again without an operator. Over the
/// whole run the WAN carries nothing but ESP-in-UDP (and ARP), no payload
/// in clear, and no (SPI, sequence number) pair twice: a repeated pair
/// under one key would be a repeated GCM nonce.
#[test]
fn crash_loops_recover_and_never_repeat_a_nonce() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let loops: usize = std::env::var("S2_CRASH_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let seed = std::env::var("S2_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash loop: {loops} kills, seed {seed} (S2_CRASH_SEED to repeat)");
    let mut rng = SplitMix64(seed);
    let mut p = Pair::up(|t| {
        let keys = t["keys"].as_table_mut().unwrap();
        keys.insert("rekey_seconds".into(), 2.into());
        keys.insert("grace_seconds".into(), 1.into());
    });
    p.session("c1", 5100);
    p.session("c2", 5101);
    let mut wan = scistream_testbed::capture::Capture::start(&p.tb, Node::Wan, "a0");
    let recovered = |p: &Pair, what: &str| -> Duration {
        let t0 = Instant::now();
        loop {
            let r =
                p.tb.udp_stream(Node::Cons, Node::Prod, "10.20.1.1:5100", 300, 200, 1000);
            if r.received == 300 && r.duplicates == 0 {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no recovery within 60 s after {what}: {r:?}\n{}",
                p.logs()
            );
        }
    };
    recovered(&p, "the start");
    let mut log = Vec::new();
    for i in 0..loops {
        let victim = rng.next() % 4;
        let (before, down) = (rng.millis(100, 2000), rng.millis(100, 1000));
        let what = ["s2cs A", "s2cs B", "s2ds A", "s2ds B"][victim as usize];
        // Background traffic on the second session while the kill happens.
        std::thread::scope(|s| {
            let bg = s.spawn(|| {
                p.tb.udp_stream(Node::Cons, Node::Prod, "10.20.1.1:5101", 2000, 300, 1000)
            });
            std::thread::sleep(before);
            match victim {
                0 => p.a.kill(),
                1 => p.b.kill(),
                2 => p.gwa.kill(),
                _ => p.gwb.kill(),
            }
            std::thread::sleep(down);
            match victim {
                0 => p.a.restart(),
                1 => p.b.restart(),
                2 => p.gwa.restart(),
                _ => p.gwb.restart(),
            }
            bg.join().unwrap()
        });
        let took = recovered(&p, what);
        log.push(format!(
            "#{i}: {what} killed after {before:?}, down {down:?}, usable again after {took:?}"
        ));
    }
    wan.stop();
    for l in &log {
        eprintln!("crash loop {l}");
    }
    let frames = wan.frames();
    let (ids, other) = esp_ids(&frames);
    assert!(
        other.is_empty(),
        "{} frame(s) on the WAN other than ESP-in-UDP and ARP, first: {:?}",
        other.len(),
        &other[..other.len().min(5)]
    );
    // traffic.py's filler (0, 1, 2, ...): never on the WAN in clear.
    let filler: Vec<u8> = (0u8..64).collect();
    assert!(
        !scistream_testbed::capture::contains(&wan.bytes(), &filler),
        "payload in clear on the WAN"
    );
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let repeats: Vec<_> = ids.iter().filter(|id| !seen.insert(**id)).collect();
    let spis: BTreeSet<u32> = ids.iter().map(|(spi, _)| *spi).collect();
    eprintln!(
        "crash loop: {} ESP packets on the WAN under {} SPIs, {} repeated (SPI, sequence) pairs",
        ids.len(),
        spis.len(),
        repeats.len()
    );
    assert!(
        repeats.is_empty(),
        "repeated (SPI, seq) pairs: {:?}",
        &repeats[..repeats.len().min(10)]
    );
    assert!(spis.len() > 4, "keys were renegotiated: {spis:?}");
}

/// A process's resident memory (kB) and open file descriptors.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

/// What the churn soak compares at its start and end: per process (s2cs A,
/// s2cs B, s2ds A, s2ds B) memory and descriptors; per gateway the region's
/// SAs and listeners, and the sessions (each holding reserved ports).
#[derive(Debug)]
struct Footprint {
    procs: Vec<(&'static str, u64, usize)>,
    region: [(usize, usize); 2],
    sessions: [usize; 2],
}

impl Footprint {
    fn of(p: &Pair) -> Footprint {
        let pids = [
            ("s2cs A", p.a.pid()),
            ("s2cs B", p.b.pid()),
            ("s2ds A", p.gwa.pid()),
            ("s2ds B", p.gwb.pid()),
        ];
        let procs = pids
            .iter()
            .map(|(n, pid)| {
                let (rss, fds) = footprint(pid.expect("running"));
                (*n, rss, fds)
            })
            .collect();
        let region = |shm: &Path| {
            let r = ShmReader::open(shm, 0).expect("attach");
            let v = r.current();
            (v.sas().len(), v.listeners().len())
        };
        let sessions = |cp: &ControlPlane| {
            cp.admin_ok(json!({"op": "list"}))["sessions"]
                .as_array()
                .map_or(0, Vec::len)
        };
        Footprint {
            procs,
            region: [region(&p.a.shm), region(&p.b.shm)],
            sessions: [sessions(&p.a), sessions(&p.b)],
        }
    }
}

/// Churn soak (a benchmark: `benches/churn_soak.sh`, not part of `cargo
/// test`): for `S2_SOAK_SECONDS` (default 180), sessions are created and
/// released continuously (`S2_SOAK_SESSIONS` over the run, default one
/// every 1.8 s), keys roll over every second, and every live session
/// carries a UDP stream for its whole life. Every stream of a session that
/// was not released during it arrives whole; at the end, with every session
/// released, memory, descriptors, SAs, listeners and sessions (reserved
/// ports) are back to their values at the start. Writes its figures to
/// `S2_SOAK_OUT` (JSON) if set.
#[test]
#[ignore = "a benchmark: run by benches/churn_soak.sh"]
fn churn_soak() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let seconds = env("S2_SOAK_SECONDS", 180);
    let sessions = env("S2_SOAK_SESSIONS", (seconds * 10 / 18).max(1));
    let interval = Duration::from_secs_f64(seconds as f64 / sessions as f64);
    // Each session lives about four intervals: four or five at a time.
    const RATE: u64 = 500;
    let lifetime = (interval * 4).max(Duration::from_secs(3));
    let count = RATE * lifetime.as_millis() as u64 / 1000;
    // Keys roll over on demand: every second for every live session
    // (below); the old inbound SA lives on for 1 s.
    let p = Pair::up(|t| {
        let keys = t["keys"].as_table_mut().unwrap();
        keys.insert("grace_seconds".into(), 1.into());
    });
    // Warm up (first session, allocator arenas, neighbour entries), then
    // take the starting footprint with nothing in use.
    p.session("soak-warmup", 5199);
    let w =
        p.tb.udp_stream(Node::Cons, Node::Prod, "10.20.1.1:5199", 1000, 500, 1000);
    assert_eq!(w.lost, 0, "{w:?}");
    for cp in [&p.b, &p.a] {
        cp.admin_ok(json!({"op": "release", "uid": "soak-warmup"}));
    }
    std::thread::sleep(Duration::from_secs(3));
    let start = Footprint::of(&p);
    eprintln!("churn soak: {sessions} sessions over {seconds} s, each {lifetime:?} at {RATE}/s; start {start:?}");
    let t0 = Instant::now();
    let results = std::sync::Mutex::new(Vec::new());
    let live = std::sync::Mutex::new(BTreeSet::<String>::new());
    let done = std::sync::atomic::AtomicBool::new(false);
    let asked = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        // A rekey every second on each live session, from B (the
        // initiator); a session released meanwhile refuses it.
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let uids: Vec<String> = live.lock().unwrap().iter().cloned().collect();
                for uid in uids {
                    let r = p.b.admin(json!({"op": "rekey", "uid": uid}));
                    if r["ok"] == true {
                        asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let mut workers = Vec::new();
        for i in 0..sessions {
            let due = interval * i as u32;
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
            let (p, results, live) = (&p, &results, &live);
            workers.push(s.spawn(move || {
                let uid = format!("soak-{i}");
                // 90 ports: a port is reused only long after its session ended.
                let port = 5100 + (i % 90) as u16;
                p.session(&uid, port);
                live.lock().unwrap().insert(uid.clone());
                let dst = format!("10.20.1.1:{port}");
                let r =
                    p.tb.udp_stream(Node::Cons, Node::Prod, &dst, count, 500, RATE);
                live.lock().unwrap().remove(&uid);
                for cp in [&p.b, &p.a] {
                    cp.admin_ok(json!({"op": "release", "uid": uid}));
                }
                results.lock().unwrap().push((i, r));
            }));
        }
        for w in workers {
            let _ = w.join();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let elapsed = t0.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let end = Footprint::of(&p);
    let results = results.into_inner().unwrap();
    let lost: u64 = results.iter().map(|(_, r)| r.lost).sum();
    let sent: u64 = results.iter().map(|(_, r)| r.sent).sum();
    let rekeys = p.b.log_text().matches("keys switched").count();
    let asked = asked.into_inner();
    eprintln!(
        "churn soak: {} sessions in {elapsed:?}, {sent} datagrams, {lost} lost, {asked} rekeys asked, {rekeys} key switches at gwB; end {end:?}",
        results.len()
    );
    if let Ok(out) = std::env::var("S2_SOAK_OUT") {
        let procs = |f: &Footprint| -> Vec<serde_json::Value> {
            f.procs
                .iter()
                .map(|(n, rss, fds)| json!({"process": n, "rss_kb": rss, "fds": fds}))
                .collect()
        };
        let doc = json!({
            "seconds": elapsed.as_secs_f64(), "sessions": results.len(), "datagrams": sent,
            "lost": lost, "rekey_log_lines": rekeys, "rekeys_asked": asked,
            "start": {"procs": procs(&start), "region": start.region, "sessions": start.sessions},
            "end": {"procs": procs(&end), "region": end.region, "sessions": end.sessions},
        });
        std::fs::write(out, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    }
    for (i, r) in &results {
        assert_eq!(
            (r.received, r.lost),
            (count, 0),
            "session soak-{i}: {r:?}\n{}",
            p.logs()
        );
    }
    assert_eq!(results.len() as u64, sessions);
    assert_eq!(
        (end.region, end.sessions),
        (start.region, start.sessions),
        "SAs, listeners, sessions back"
    );
    for ((name, rss0, fds0), (_, rss1, fds1)) in start.procs.iter().zip(&end.procs) {
        assert_eq!(fds1, fds0, "{name}: file descriptors {fds0} -> {fds1}");
        // Allocator arenas and caches settle within a few MB; a leak of
        // even 10 KB per session shows in the 30-minute form.
        assert!(
            *rss1 <= rss0 + 6144,
            "{name}: resident memory {rss0} kB -> {rss1} kB"
        );
    }
}
