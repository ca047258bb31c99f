//! The example configurations load, and each class of bad configuration is
//! rejected with the exact file, line and key.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use scistream_dataplane::config::{
    Backend, Config, ConfigError, DpdkDevice, ErrorKind, LogLevel, PollMode, PortId, XdpMode,
};
use scistream_testbed::paths::configs_dir;
use scistream_testbed::scratch::ScratchDir;

fn load_example(name: &str) -> Config {
    let path = configs_dir().join(name);
    Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Parses `text` that must be rejected.
fn reject(text: &str) -> ConfigError {
    match Config::from_toml(text, Path::new("bad.toml")) {
        Ok(c) => panic!("accepted a bad config: {c:?}"),
        Err(e) => e,
    }
}

/// Asserts the error's line, key, class and that its message mentions `needle`.
fn assert_err(e: &ConfigError, line: usize, key: &str, kind: ErrorKind, needle: &str) {
    let shown = e.to_string();
    assert_eq!(e.line(), Some(line), "line of: {shown}");
    assert_eq!(e.key(), Some(key), "key of: {shown}");
    assert_eq!(e.kind(), Some(kind), "kind of: {shown}");
    assert!(shown.starts_with(&format!("bad.toml:{line}:")), "{shown}");
    assert!(shown.contains(&format!("key `{key}`: ")), "{shown}");
    assert!(shown.contains(needle), "{shown:?} lacks {needle:?}");
}

/// A valid tap gateway; tests append to or edit it. Line numbers matter.
const TAP: &str = r#"[gateway]
name = "t"

[workers]
cores = [1]

[ports.lan]
backend = "tap"
interface = "tl"
address = "10.10.1.1/24"

[ports.wan]
backend = "tap"
interface = "tw"
address = "10.10.100.1/24"
"#;

#[test]
fn every_example_loads() {
    // configs/ and the package's example (configs/packaging/example.toml,
    // installed as /etc/scistream/example.toml).
    let mut names: Vec<PathBuf> = std::fs::read_dir(configs_dir())
        .expect("configs/ exists")
        .chain(
            std::fs::read_dir(configs_dir().join("packaging")).expect("configs/packaging/ exists"),
        )
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        // control-*.toml configure s2cs (checked by the control crate's tests).
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("control-"))
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 8,
        "expected the seven examples and the package's, found {names:?}"
    );
    for p in &names {
        if let Err(e) = Config::load(p) {
            panic!("{e}");
        }
    }
}

#[test]
fn testbed_af_packet_example() {
    let c = load_example("testbed-gwa-af_packet.toml");
    assert_eq!(c.gateway.name, "gwa");
    assert_eq!(
        c.stats_path(),
        PathBuf::from("/dev/shm/s2ds-gwa.stats.json")
    );
    // The two gateways on different cores, sleeping when idle.
    assert_eq!(c.workers.cores, [0]);
    assert_eq!(c.workers.poll_mode, PollMode::Adaptive);
    assert_eq!(
        load_example("testbed-gwb-af_packet.toml").workers.cores,
        [1]
    );
    let d = c.dpdk.as_ref().expect("dpdk ports keep [dpdk]");
    assert!(d.eal_args.iter().any(|a| a == "--file-prefix=s2ds-gwa"));
    assert!(d.eal_args.iter().any(|a| a == "--no-huge"));
    assert_eq!(
        c.ports.lan.backend,
        Backend::Dpdk {
            device: DpdkDevice::Vdev("net_af_packet0,iface=lan0".into())
        }
    );
    assert_eq!(c.ports.lan.address.unwrap().to_string(), "10.10.1.1/24");
    assert_eq!(c.ports.wan.address.unwrap().to_string(), "10.10.100.1/24");
    assert_eq!(c.routes.len(), 1);
    assert_eq!(
        c.routes[0].prefix.to_string(),
        "10.10.200.0/24",
        "the peer's WAN subnet"
    );
    assert_eq!(c.routes[0].via, Ipv4Addr::new(10, 10, 100, 254));
    assert_eq!(c.routes[0].port, PortId::Wan);
    let t = c
        .tunnel
        .as_ref()
        .expect("the testbed gateways run the tunnel");
    assert_eq!(t.peers[0].address, Ipv4Addr::new(10, 10, 200, 1));
    assert_eq!(t.routes[0].prefix.to_string(), "10.20.0.0/16");
    assert_eq!(t.routes[0].spi, 0x1001);
}

#[test]
fn other_examples_have_the_promised_shape() {
    let c = load_example("testbed-gwa-af_xdp.toml");
    assert_eq!(
        c.ports.lan.backend,
        Backend::Dpdk {
            device: DpdkDevice::Vdev("net_af_xdp0,iface=lan0,start_queue=0,queue_count=1".into())
        }
    );
    let c = load_example("testbed-gwa-native-xdp.toml");
    assert!(c.dpdk.is_none());
    match &c.ports.wan.backend {
        Backend::AfXdp {
            interface,
            xdp_mode,
            zero_copy,
            frame_count,
        } => {
            assert_eq!(
                (interface.as_str(), *xdp_mode, *zero_copy, *frame_count),
                ("wan0", XdpMode::Skb, false, 4096)
            );
        }
        other => panic!("{other:?}"),
    }
    let c = load_example("testbed-gwa-tap.toml");
    match &c.ports.lan.backend {
        Backend::Tap {
            interface,
            mac,
            bridge,
        } => {
            assert_eq!(interface, "s2tlan");
            assert_eq!(*mac, Some([0x02, 0, 0, 0x0a, 0x01, 0x01]));
            assert_eq!(bridge.as_deref(), Some("brlan"));
        }
        other => panic!("{other:?}"),
    }
    let c = load_example("dpdk-pci-host.toml");
    assert_eq!(c.workers.cores, [2, 3, 4, 5]);
    assert_eq!(c.workers.slowpath_core, Some(1));
    assert_eq!(
        c.ports.lan.backend,
        Backend::Dpdk {
            device: DpdkDevice::Pci("0000:3b:00.0".into())
        }
    );
    assert_eq!(
        c.ports.wan.backend,
        Backend::Dpdk {
            device: DpdkDevice::Pci("0000:3b:00.1".into())
        }
    );
    assert_eq!(c.neighbors.len(), 2);
    assert_eq!(c.neighbors[0].port, PortId::Wan);
    assert_eq!(c.routes[1].port, PortId::Lan);
    assert_eq!(c.logging.level, LogLevel::Warn);
    for name in ["laptop-af_xdp.toml", "laptop-tap.toml"] {
        let c = load_example(name);
        assert!(c.dpdk.is_none());
        assert!(!c.ports.use_dpdk());
    }
}

#[test]
fn base_config_is_valid() {
    let c = Config::from_toml(TAP, Path::new("ok.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.ports.lan.mtu, 1500);
    assert_eq!(c.workers.idle_sleep_us, 0);
    assert_eq!(c.logging.level, LogLevel::Info);
    assert!(c.routes.is_empty() && c.neighbors.is_empty());
}

#[test]
fn unknown_key() {
    let text = TAP.replace(
        "backend = \"tap\"\ninterface = \"tl\"",
        "backend = \"tap\"\ncolour = \"red\"\ninterface = \"tl\"",
    );
    let e = reject(&text);
    assert_err(
        &e,
        9,
        "ports.lan.colour",
        ErrorKind::UnknownKey,
        "unknown key `colour` in [ports.lan]; expected one of `backend`",
    );
    assert_eq!(e.column(), Some(1));
}

#[test]
fn syntax_error() {
    let text = TAP.replace("address = \"10.10.100.1/24\"", "address = \"10.10.100.1/24");
    let e = reject(&text);
    assert_err(
        &e,
        15,
        "ports.wan.address",
        ErrorKind::Syntax,
        "TOML syntax error",
    );
    let e = reject("[gateway]\nname = \"a\"\nname = \"b\"\n");
    assert_err(&e, 3, "gateway.name", ErrorKind::Syntax, "duplicate key");
    let e = reject("[gateway]\nname = \"a\"\n[ports.lan\n");
    assert_err(&e, 3, "ports.lan", ErrorKind::Syntax, "TOML syntax error");
}

#[test]
fn missing_required_key() {
    // `address` missing from [ports.wan]: reported at the table header.
    let text = TAP.replace("address = \"10.10.100.1/24\"\n", "");
    let e = reject(&text);
    assert_err(
        &e,
        12,
        "ports.wan.address",
        ErrorKind::MissingKey,
        "missing required key `address` in [ports.wan]",
    );
    // A whole table missing: reported at the top of the file.
    let text = TAP.replace("[workers]\ncores = [1]\n", "");
    assert_err(
        &reject(&text),
        1,
        "workers",
        ErrorKind::MissingKey,
        "missing required key `workers`",
    );
    // A backend-specific required key.
    let text = TAP.replace("interface = \"tw\"\n", "");
    assert_err(
        &reject(&text),
        12,
        "ports.wan.interface",
        ErrorKind::MissingKey,
        "required for backend \"tap\"",
    );
}

#[test]
fn wrong_type() {
    let text = TAP.replace("cores = [1]", "cores = 1");
    assert_err(
        &reject(&text),
        5,
        "workers.cores",
        ErrorKind::WrongType,
        "expected an array",
    );
    let text = TAP.replace("cores = [1]", "cores = [\"1\"]");
    assert_err(
        &reject(&text),
        5,
        "workers.cores[0]",
        ErrorKind::WrongType,
        "expected an integer",
    );
}

#[test]
fn bad_ip() {
    let text = TAP.replace("10.10.1.1/24", "10.10.1.300/24");
    assert_err(
        &reject(&text),
        10,
        "ports.lan.address",
        ErrorKind::BadValue,
        "invalid IPv4 address `10.10.1.300`",
    );
    let text = format!("{TAP}\n[[routes]]\nprefix = \"10.20.0.0/16\"\nvia = \"10.10.100\"\n");
    assert_err(
        &reject(&text),
        19,
        "routes[0].via",
        ErrorKind::BadValue,
        "invalid IPv4 address",
    );
}

#[test]
fn bad_mac() {
    let text = TAP.replace(
        "interface = \"tw\"",
        "interface = \"tw\"\nmac = \"02:00:00:00:00\"",
    );
    assert_err(
        &reject(&text),
        15,
        "ports.wan.mac",
        ErrorKind::BadValue,
        "invalid MAC address `02:00:00:00:00`",
    );
    let text = TAP.replace(
        "interface = \"tw\"",
        "interface = \"tw\"\nmac = \"01:00:5E:00:00:01\"",
    );
    assert_err(
        &reject(&text),
        15,
        "ports.wan.mac",
        ErrorKind::BadValue,
        "unicast",
    );
    let text = format!("{TAP}\n[[neighbors]]\nip = \"10.10.1.7\"\nmac = \"00:00:00:00:00:00\"\n");
    assert_err(
        &reject(&text),
        19,
        "neighbors[0].mac",
        ErrorKind::BadValue,
        "all-zero",
    );
}

#[test]
fn mtu_out_of_range() {
    let text = TAP.replace(
        "address = \"10.10.1.1/24\"",
        "address = \"10.10.1.1/24\"\nmtu = 9001",
    );
    assert_err(
        &reject(&text),
        11,
        "ports.lan.mtu",
        ErrorKind::BadValue,
        "expected 576 to 9000",
    );
}

#[test]
fn overlapping_prefixes() {
    let text = TAP.replace("10.10.100.1/24", "10.10.0.1/16");
    assert_err(
        &reject(&text),
        15,
        "ports.wan.address",
        ErrorKind::Conflict,
        "overlaps the lan connected prefix 10.10.1.0/24 (ports.lan.address, line 10)",
    );
}

#[test]
fn route_via_unconnected_next_hop() {
    let text = format!("{TAP}\n[[routes]]\nprefix = \"10.20.0.0/16\"\nvia = \"10.10.100.254\"\n\n[[routes]]\nprefix = \"10.30.0.0/16\"\nvia = \"10.99.0.1\"\n");
    assert_err(
        &reject(&text),
        23,
        "routes[1].via",
        ErrorKind::Conflict,
        "next hop 10.99.0.1 is not on a connected prefix",
    );
}

#[test]
fn route_port_disagrees_and_duplicates() {
    let text = format!(
        "{TAP}\n[[routes]]\nprefix = \"10.20.0.0/16\"\nvia = \"10.10.100.254\"\nport = \"lan\"\n"
    );
    assert_err(
        &reject(&text),
        20,
        "routes[0].port",
        ErrorKind::Conflict,
        "on the wan prefix",
    );
    let text = format!("{TAP}\n[[routes]]\nprefix = \"10.20.0.0/16\"\nvia = \"10.10.100.254\"\n\n[[routes]]\nprefix = \"10.20.0.0/16\"\nvia = \"10.10.1.254\"\n");
    assert_err(
        &reject(&text),
        22,
        "routes[1].prefix",
        ErrorKind::Conflict,
        "duplicate route for 10.20.0.0/16 (also routes[0], line 18)",
    );
    let text = format!("{TAP}\n[[neighbors]]\nip = \"10.10.1.7\"\nmac = \"02:00:00:00:00:07\"\n\n[[neighbors]]\nip = \"10.10.1.7\"\nmac = \"02:00:00:00:00:08\"\n");
    assert_err(
        &reject(&text),
        22,
        "neighbors[1].ip",
        ErrorKind::Conflict,
        "duplicate neighbour 10.10.1.7",
    );
}

#[test]
fn mixed_dpdk_and_tap() {
    let text = TAP.replacen(
        "backend = \"tap\"\ninterface = \"tl\"",
        "backend = \"dpdk\"\ndevice = \"net_null0\"",
        1,
    );
    let text = format!("[dpdk]\n{text}");
    assert_err(
        &reject(&text),
        14,
        "ports.wan.backend",
        ErrorKind::Conflict,
        "mixing DPDK with a native backend",
    );
}

#[test]
fn backend_specific_keys() {
    let text = TAP.replace(
        "interface = \"tl\"",
        "interface = \"tl\"\ndevice = \"net_null0\"",
    );
    assert_err(
        &reject(&text),
        10,
        "ports.lan.device",
        ErrorKind::UnknownKey,
        "only valid with backend \"dpdk\"",
    );
    let text = TAP.replace(
        "interface = \"tw\"",
        "interface = \"tw\"\nxdp_mode = \"skb\"",
    );
    assert_err(
        &reject(&text),
        15,
        "ports.wan.xdp_mode",
        ErrorKind::UnknownKey,
        "only valid with backend \"af_xdp\"",
    );
}

#[test]
fn af_xdp_mtu_limit() {
    let text = TAP
        .replace("backend = \"tap\"", "backend = \"af_xdp\"")
        .replace(
            "address = \"10.10.1.1/24\"",
            "address = \"10.10.1.1/24\"\nmtu = 4000",
        );
    assert_err(
        &reject(&text),
        11,
        "ports.lan.mtu",
        ErrorKind::BadValue,
        "at most mtu 3498",
    );
}

#[test]
fn unreadable_file() {
    let path =
        std::env::temp_dir().join(format!("s2ds-no-such-config-{}.toml", std::process::id()));
    let e = Config::load(&path).expect_err("missing file");
    assert!(matches!(e, ConfigError::Read { .. }));
    assert_eq!(e.line(), None);
    assert_eq!(e.key(), None);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: cannot read: No such file or directory (os error 2)",
            path.display()
        )
    );
}

#[test]
fn dpdk_table_rules() {
    let dpdk_ports = TAP
        .replacen(
            "backend = \"tap\"\ninterface = \"tl\"",
            "backend = \"dpdk\"\ndevice = \"net_null0\"",
            1,
        )
        .replacen(
            "backend = \"tap\"\ninterface = \"tw\"",
            "backend = \"dpdk\"\ndevice = \"net_null1\"",
            1,
        );
    // DPDK ports without [dpdk]: the missing table is named, at the top of the file.
    assert_err(
        &reject(&dpdk_ports),
        1,
        "dpdk",
        ErrorKind::MissingKey,
        "missing table [dpdk]",
    );
    // An empty [dpdk] gives the defaults.
    let c = Config::from_toml(&format!("{dpdk_ports}[dpdk]\n"), Path::new("ok.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let d = c.dpdk.expect("dpdk section");
    assert_eq!(
        (d.mempool_size, d.mempool_cache, d.rx_desc, d.tx_desc),
        (8191, 256, 1024, 1024)
    );
    assert!(d.eal_args.is_empty());
    // [dpdk] with native ports is accepted and ignored.
    let c = Config::from_toml(
        &format!("{TAP}[dpdk]\neal_args = [\"--no-huge\"]\n"),
        Path::new("ok.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.dpdk.is_none());
    // The cache limit: mempool_size / 1.5.
    let text = format!("{dpdk_ports}[dpdk]\nmempool_size = 3000\nmempool_cache = 2001\n");
    assert_err(
        &reject(&text),
        18,
        "dpdk.mempool_cache",
        ErrorKind::BadValue,
        "expected 0 to 512",
    );
    let text =
        format!("{dpdk_ports}[dpdk]\nmempool_size = 600\nmempool_cache = 401\nrx_desc = 64\n");
    assert_err(
        &reject(&text),
        18,
        "dpdk.mempool_cache",
        ErrorKind::Conflict,
        "at most mempool_size / 1.5 = 400",
    );
}

/// TAP (16 lines) plus a valid tunnel: a peer on the WAN prefix, one SA
/// each way and a tunnel route. Line numbers below count from here.
fn tunnel(extra: &str) -> String {
    format!(
        r#"{TAP}
[tunnel]
engine = "aes-gcm"

[[peers]]
name = "gwb"
address = "10.10.100.9"

[[sas]]
spi = 0x1001
direction = "out"
peer = "gwb"
algorithm = "aes-128-gcm"
key = "000102030405060708090a0b0c0d0e0f"
salt = "01020304"

[[sas]]
spi = 0x2001
direction = "in"
peer = "gwb"
algorithm = "aes-256-gcm"
key = "000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f"
salt = "0a0b0c0d"
esn = false

[[tunnel_routes]]
prefix = "10.20.0.0/16"
sa = 0x1001
{extra}"#
    )
}

#[test]
fn tunnel_sections_load() {
    use scistream_dataplane::config::tunnel::Direction;
    use scistream_dataplane::crypto::{Algorithm, EngineKind};
    let c = Config::from_toml(&tunnel(""), Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let t = c.tunnel.expect("tunnel section");
    assert_eq!(t.engine, EngineKind::AesGcm);
    assert_eq!(t.udp_port, 4500);
    assert_eq!(
        t.peers[0].address,
        std::net::IpAddr::from(Ipv4Addr::new(10, 10, 100, 9))
    );
    assert_eq!(t.sas.len(), 2);
    assert_eq!(
        (t.sas[0].spi, t.sas[0].direction, t.sas[0].algorithm),
        (0x1001, Direction::Out, Algorithm::Aes128Gcm)
    );
    assert!(t.sas[0].esn);
    assert_eq!(
        (t.sas[1].algorithm, t.sas[1].esn, t.sas[1].salt),
        (Algorithm::Aes256Gcm, false, [10, 11, 12, 13])
    );
    assert_eq!(t.routes[0].spi, 0x1001);
    let shown = format!("{:?}", t.sas[0]);
    assert!(
        !shown.contains("0102030405"),
        "Debug never shows key material: {shown}"
    );
}

#[test]
fn tunnel_key_length_must_match_the_algorithm() {
    let text = tunnel("").replace(
        "key = \"000102030405060708090a0b0c0d0e0f\"",
        "key = \"0001020304\"",
    );
    let e = reject(&text);
    assert_err(
        &e,
        29,
        "sas[0].key",
        ErrorKind::BadValue,
        "key is 5 bytes; aes-128-gcm needs 16 bytes (32 hex digits)",
    );
    let text = tunnel("").replace("salt = \"01020304\"", "salt = \"0102\"");
    assert_err(
        &reject(&text),
        30,
        "sas[0].salt",
        ErrorKind::BadValue,
        "salt is 2 bytes; expected 4",
    );
    let text = tunnel("").replace("salt = \"01020304\"", "salt = \"zz020304\"");
    assert_err(
        &reject(&text),
        30,
        "sas[0].salt",
        ErrorKind::BadValue,
        "salt:",
    );
}

#[test]
fn tunnel_duplicate_spi_and_dangling_references() {
    let dup = "\n[[sas]]\nspi = 0x1001\ndirection = \"out\"\npeer = \"gwb\"\nalgorithm = \"aes-128-gcm\"\nkey = \"000102030405060708090a0b0c0d0e0f\"\nsalt = \"01020304\"\n";
    assert_err(
        &reject(&tunnel(dup)),
        46,
        "sas[2].spi",
        ErrorKind::Conflict,
        "duplicate outbound SPI 0x1001 (also sas[0], line 25)",
    );
    let text = tunnel("").replacen("peer = \"gwb\"", "peer = \"nobody\"", 1);
    assert_err(
        &reject(&text),
        27,
        "sas[0].peer",
        ErrorKind::BadValue,
        "no [[peers]] entry is named `nobody`",
    );
    let text = tunnel("").replace("sa = 0x1001", "sa = 0x2001");
    assert_err(
        &reject(&text),
        43,
        "tunnel_routes[0].sa",
        ErrorKind::BadValue,
        "no outbound SA has SPI 0x2001",
    );
    let text = tunnel("").replace("spi = 0x2001", "spi = 7");
    assert_err(
        &reject(&text),
        33,
        "sas[1].spi",
        ErrorKind::BadValue,
        "out of range",
    );
}

/// An outbound `[[sas]]` entry with SPI `spi` toward `peer`, a lane of `head`.
fn lane_sa(spi: &str, peer: &str, head: &str) -> String {
    format!(
        "\n[[sas]]\nspi = {spi}\ndirection = \"out\"\npeer = \"{peer}\"\nalgorithm = \"aes-128-gcm\"\nkey = \"0f0e0d0c0b0a09080706050403020100\"\nsalt = \"05060708\"\nlane_of = {head}\n"
    )
}

/// The 1-based line of the `n`-th (0-based) line of `text` starting with `prefix`.
fn nth_line(text: &str, prefix: &str, n: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with(prefix))
        .nth(n)
        .unwrap_or_else(|| panic!("no line {n} starting with {prefix}"))
        .0
        + 1
}

#[test]
fn tunnel_lanes_load_and_are_checked() {
    let text = tunnel(&lane_sa("0x1003", "gwb", "0x1001"));
    let c = Config::from_toml(&text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let t = c.tunnel.unwrap();
    assert_eq!(
        t.sas.iter().map(|s| (s.spi, s.lane_of)).collect::<Vec<_>>(),
        vec![(0x1001, None), (0x2001, None), (0x1003, Some(0x1001))]
    );

    // Only outbound SAs have lanes; the head must be an outbound SA, not a
    // lane, toward the same peer; routes name the head.
    let text = tunnel("").replace("esn = false", "esn = false\nlane_of = 0x1001");
    let line = nth_line(&text, "lane_of", 0);
    assert_err(
        &reject(&text),
        line,
        "sas[1].lane_of",
        ErrorKind::BadValue,
        "only an outbound SA can be a lane",
    );
    let text = tunnel(&lane_sa("0x1003", "gwb", "0x2001"));
    let line = nth_line(&text, "lane_of", 0);
    assert_err(
        &reject(&text),
        line,
        "sas[2].lane_of",
        ErrorKind::BadValue,
        "no outbound SA has SPI 0x2001",
    );
    let text = tunnel(&lane_sa("0x1003", "gwb", "0x1003"));
    assert_err(
        &reject(&text),
        line,
        "sas[2].lane_of",
        ErrorKind::BadValue,
        "an SA cannot be a lane of itself",
    );
    let text = tunnel(&(lane_sa("0x1003", "gwb", "0x1001") + &lane_sa("0x1005", "gwb", "0x1003")));
    let line = nth_line(&text, "lane_of", 1);
    assert_err(
        &reject(&text),
        line,
        "sas[3].lane_of",
        ErrorKind::BadValue,
        "SA 0x1003 is itself a lane (of 0x1001); name the head",
    );
    let text = tunnel(&lane_sa("0x1003", "gwb", "0x1001")).replace("sa = 0x1001", "sa = 0x1003");
    let line = nth_line(&text, "sa = ", 0);
    assert_err(
        &reject(&text),
        line,
        "tunnel_routes[0].sa",
        ErrorKind::BadValue,
        "SA 0x1003 is a lane of 0x1001; name the head",
    );
}

/// `anti_replay = false` (benchmarks replaying a capture): inbound SAs
/// with 32-bit sequence numbers only; on by default.
#[test]
fn anti_replay_can_be_turned_off_on_an_inbound_sa_without_esn() {
    let c = Config::from_toml(&tunnel(""), Path::new("t.toml")).unwrap();
    assert!(
        c.tunnel.unwrap().sas.iter().all(|s| s.anti_replay),
        "on by default"
    );
    let text = tunnel("").replace("esn = false", "esn = false\nanti_replay = false");
    let c = Config::from_toml(&text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.tunnel
            .unwrap()
            .sas
            .iter()
            .map(|s| (s.spi, s.anti_replay))
            .collect::<Vec<_>>(),
        vec![(0x1001, true), (0x2001, false)]
    );
    let text = tunnel("").replace("esn = false", "anti_replay = false");
    assert_err(
        &reject(&text),
        nth_line(&text, "anti_replay", 0),
        "sas[1].anti_replay",
        ErrorKind::BadValue,
        "anti_replay = false needs esn = false",
    );
    // On the outbound SA, whatever its value.
    for setting in ["esn = false\nanti_replay = false", "anti_replay = true"] {
        let text = tunnel("").replace(
            "salt = \"01020304\"",
            &format!("salt = \"01020304\"\n{setting}"),
        );
        assert_err(
            &reject(&text),
            nth_line(&text, "anti_replay", 0),
            "sas[0].anti_replay",
            ErrorKind::BadValue,
            "anti_replay applies to inbound SAs only",
        );
    }
}

#[test]
fn tunnel_peer_and_route_rules() {
    let text = tunnel("").replace("address = \"10.10.100.9\"", "address = \"192.0.2.1\"");
    assert_err(
        &reject(&text),
        22,
        "peers[0].address",
        ErrorKind::Conflict,
        "not reachable through the WAN port",
    );
    let text = tunnel("").replace("prefix = \"10.20.0.0/16\"", "prefix = \"10.10.0.0/16\"");
    assert_err(
        &reject(&text),
        42,
        "tunnel_routes[0].prefix",
        ErrorKind::Conflict,
        "overlaps the connected prefix",
    );
    let text = tunnel("").replace("engine = \"aes-gcm\"", "engine = \"rot13\"");
    assert_err(
        &reject(&text),
        18,
        "tunnel.engine",
        ErrorKind::BadValue,
        "unknown engine `rot13`",
    );
    let both = tunnel("").replacen(
        "salt = \"01020304\"",
        "salt = \"01020304\"\nkey_file = \"k.hex\"",
        1,
    );
    assert_err(
        &reject(&both),
        31,
        "sas[0].key_file",
        ErrorKind::Conflict,
        "not both",
    );
}

#[test]
fn ipv6_peers_need_an_ipv6_wan_address_on_their_prefix() {
    let v6_peer = tunnel("").replace("address = \"10.10.100.9\"", "address = \"fd00:10:100::9\"");
    assert_err(
        &reject(&v6_peer),
        22,
        "peers[0].address",
        ErrorKind::Conflict,
        "ports.wan has no IPv6 address to send from",
    );
    let dual_wan = v6_peer.replace(
        "address = \"10.10.100.1/24\"",
        "address = [\"10.10.100.1/24\", \"fd00:10:100::1/64\"]",
    );
    let c = Config::from_toml(&dual_wan, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let t = c.tunnel.expect("tunnel section");
    assert_eq!(
        t.peers[0].address,
        "fd00:10:100::9".parse::<std::net::IpAddr>().unwrap()
    );
    let off_link = dual_wan.replace("fd00:10:100::9", "fd00:10:200::9");
    assert_err(
        &reject(&off_link),
        22,
        "peers[0].address",
        ErrorKind::Conflict,
        "peer fd00:10:200::9 is not reachable through the WAN port: it is neither on fd00:10:100::/64",
    );
    let routed = format!(
        "{off_link}\n[[routes]]\nprefix = \"fd00:10:200::/64\"\nvia = \"fd00:10:100::fe\"\nport = \"wan\"\n"
    );
    Config::from_toml(&routed, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let bad = tunnel("").replace("address = \"10.10.100.9\"", "address = \"fd00:10:100::zz\"");
    assert_err(
        &reject(&bad),
        22,
        "peers[0].address",
        ErrorKind::BadValue,
        "invalid IPv6 address `fd00:10:100::zz`",
    );
}

#[test]
fn tunnel_engine_names_and_the_default() {
    use scistream_dataplane::crypto::EngineKind;
    let engine_of = |text: &str| {
        Config::from_toml(text, Path::new("t.toml"))
            .unwrap_or_else(|e| panic!("{e}"))
            .tunnel
            .expect("tunnel section")
            .engine
    };
    for kind in EngineKind::ALL {
        let text = tunnel("").replace("\"aes-gcm\"", &format!("\"{}\"", kind.name()));
        assert_eq!(engine_of(&text), kind);
    }
    // No `engine`: ipsec-mb when built in (and it initialises), else ring.
    let text = tunnel("").replace("engine = \"aes-gcm\"\n", "");
    assert_eq!(engine_of(&text), EngineKind::preferred());
    #[cfg(feature = "ipsec-mb")]
    assert_eq!(engine_of(&text), EngineKind::IpsecMb);
    #[cfg(not(feature = "ipsec-mb"))]
    {
        assert_eq!(engine_of(&text), EngineKind::Ring);
        // Named, but not built in: said so, on its line.
        let text = tunnel("").replace("engine = \"aes-gcm\"", "engine = \"ipsec-mb\"");
        assert_err(
            &reject(&text),
            18,
            "tunnel.engine",
            ErrorKind::BadValue,
            "engine `ipsec-mb` is not built into this s2ds (cargo feature `ipsec-mb`)",
        );
    }
    // The located error lists every accepted name.
    let text = tunnel("").replace("engine = \"aes-gcm\"", "engine = \"openssl\"");
    #[cfg(feature = "ipsec-mb")]
    let expected = "unknown engine `openssl`; expected `ring`, `aes-gcm` or `ipsec-mb`";
    #[cfg(not(feature = "ipsec-mb"))]
    let expected = "unknown engine `openssl`; expected `ring` or `aes-gcm`";
    assert_err(
        &reject(&text),
        18,
        "tunnel.engine",
        ErrorKind::BadValue,
        expected,
    );
}

#[test]
fn tunnel_sections_need_the_tunnel_table() {
    let text = tunnel("").replace("[tunnel]\nengine = \"aes-gcm\"\n", "");
    let e = reject(&text);
    assert_eq!(e.kind(), Some(ErrorKind::MissingKey), "{e}");
    assert!(e.to_string().contains("needs a [tunnel] section"), "{e}");
}

#[test]
fn tunnel_key_file_is_read_relative_to_the_config() {
    let dir = ScratchDir::new("s2ds-keyfile");
    dir.write("out.hex", "00112233445566778899aabbccddeeff\n");
    let text = tunnel("").replacen(
        "key = \"000102030405060708090a0b0c0d0e0f\"",
        "key_file = \"out.hex\"",
        1,
    );
    let c = Config::from_toml(&text, &dir.join("gw.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.tunnel.unwrap().sas[0].key[..2], [0x00, 0x11]);
    let missing = Config::from_toml(&text, &dir.join("sub/gw.toml")).unwrap_err();
    assert!(
        missing.to_string().contains("cannot read key file"),
        "{missing}"
    );
}

#[test]
fn listeners_load_and_overlaps_are_rejected() {
    use scistream_dataplane::config::tunnel::ListenerRole;
    let ok = tunnel(
        "\n[[listeners]]\nrole = \"outbound\"\nport = 5100\nremote = \"10.10.100.9:6100\"\nsa = 0x1001\n\n[[listeners]]\nrole = \"inbound\"\nport = 5100\ntarget = \"10.10.1.2:7000\"\nsa = 0x1001\n",
    );
    let c = Config::from_toml(&ok, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let l = &c.tunnel.unwrap().listeners;
    assert_eq!(l.len(), 2);
    assert_eq!((l[0].role, l[0].port), (ListenerRole::Outbound, 5100));
    assert_eq!(l[1].target.unwrap().to_string(), "10.10.1.2:7000");

    // The first listener starts at line 45 (its port on 47), the second at 51 (port on 53).
    let dup = tunnel(
        "\n[[listeners]]\nrole = \"outbound\"\nport = 5100\nremote = \"10.10.100.9:6100\"\nsa = 0x1001\n\n[[listeners]]\nrole = \"outbound\"\nport = 5100\nremote = \"10.10.100.9:6101\"\nsa = 0x1001\n",
    );
    assert_err(
        &reject(&dup),
        53,
        "listeners[1].port",
        ErrorKind::Conflict,
        "listener port 5100 overlaps listeners[0] (line 47)",
    );
    let no_remote = tunnel("\n[[listeners]]\nrole = \"outbound\"\nport = 5100\nsa = 0x1001\n");
    let e = reject(&no_remote);
    assert_eq!(e.key(), Some("listeners[0].remote"), "{e}");
    assert!(e.to_string().contains("needs `remote`"), "{e}");
    let off_lan = tunnel("\n[[listeners]]\nrole = \"inbound\"\nport = 6100\ntarget = \"192.0.2.7:80\"\nsa = 0x1001\n");
    assert_err(
        &reject(&off_lan),
        48,
        "listeners[0].target",
        ErrorKind::Conflict,
        "not on the LAN prefix",
    );
    let in_pool = tunnel("\n[[listeners]]\nrole = \"outbound\"\nport = 40000\nremote = \"10.10.100.9:6100\"\nsa = 0x1001\n");
    assert_err(
        &reject(&in_pool),
        47,
        "listeners[0].port",
        ErrorKind::Conflict,
        "lies in the NAT port pool",
    );
    let bad_addr = tunnel("\n[[listeners]]\nrole = \"outbound\"\nport = 5100\nremote = \"10.10.100.9\"\nsa = 0x1001\n");
    assert_err(
        &reject(&bad_addr),
        48,
        "listeners[0].remote",
        ErrorKind::BadValue,
        "is not an address with a port",
    );
}

#[test]
fn tcp_mss_clamping_defaults_to_the_inner_mtu_and_is_checked() {
    let mss_of = |text: &str| {
        Config::from_toml(text, Path::new("t.toml"))
            .unwrap_or_else(|e| panic!("{e}"))
            .tunnel
            .expect("tunnel section")
            .tcp_mss
    };
    // WAN MTU 1500: inner MTU 1438, so IPv4 TCP segments of 1398 bytes.
    assert_eq!(mss_of(&tunnel("")), Some(1398));
    let with = |keys: &str| {
        tunnel("").replace(
            "engine = \"aes-gcm\"\n",
            &format!("engine = \"aes-gcm\"\n{keys}\n"),
        )
    };
    assert_eq!(mss_of(&with("tcp_mss = 1200")), Some(1200));
    assert_eq!(mss_of(&with("tcp_mss_clamp = false")), None);
    let jumbo = with("tcp_mss = 8898").replace(
        "address = \"10.10.100.1/24\"",
        "address = \"10.10.100.1/24\"\nmtu = 9000",
    );
    assert_eq!(mss_of(&jumbo), Some(8898), "inner MTU 8938 at WAN MTU 9000");
    assert_err(
        &reject(&with("tcp_mss = 1399")),
        19,
        "tunnel.tcp_mss",
        ErrorKind::BadValue,
        "tcp_mss 1399 does not fit the tunnel: the inner MTU is 1438 (WAN MTU 1500), so IPv4 TCP segments carry at most 1398 bytes",
    );
    assert_err(
        &reject(&with("tcp_mss = 100")),
        19,
        "tunnel.tcp_mss",
        ErrorKind::BadValue,
        "536",
    );
    assert_err(
        &reject(&with("tcp_mss_clamp = false\ntcp_mss = 1200")),
        20,
        "tunnel.tcp_mss",
        ErrorKind::Conflict,
        "`tcp_mss` needs `tcp_mss_clamp = true`",
    );
}

/// TAP with an IPv6 address on each port (line 7: lan address; line 12: wan address).
fn dual_stack(extra: &str) -> String {
    let text = TAP
        .replace(
            "address = \"10.10.1.1/24\"",
            "address = [\"10.10.1.1/24\", \"fd00:10:1::1/64\"]",
        )
        .replace(
            "address = \"10.10.100.1/24\"",
            "address = [\"fd00:10:100::1/64\", \"10.10.100.1/24\"]",
        );
    format!("{text}{extra}")
}

/// The tunnel config of [`tunnel`] on an IPv6-only gateway: no IPv4
/// address on either port, the peer `peer`, an IPv6 tunnel route.
fn ipv6_only_tunnel(peer: &str) -> String {
    tunnel("")
        .replace(
            "address = \"10.10.1.1/24\"",
            "address = \"fd00:10:1::1/64\"",
        )
        .replace(
            "address = \"10.10.100.1/24\"",
            "address = [\"fd00:10:100::1/64\"]",
        )
        .replace(
            "address = \"10.10.100.9\"",
            &format!("address = \"{peer}\""),
        )
        .replace("prefix = \"10.20.0.0/16\"", "prefix = \"fd00:20::/48\"")
}

#[test]
fn ipv6_only_ports_load_and_ipv4_peers_on_them_are_refused() {
    use std::net::Ipv6Addr;
    let c = Config::from_toml(&ipv6_only_tunnel("fd00:10:100::9"), Path::new("t.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.ports.lan.ip(), None);
    assert_eq!(c.ports.wan.address, None);
    assert_eq!(
        c.ports.wan.address6.unwrap().addr(),
        "fd00:10:100::1".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(c.ports.lan.addresses(), "fd00:10:1::1/64");
    let t = c.tunnel.expect("the tunnel section loads");
    assert_eq!(t.peers[0].address.to_string(), "fd00:10:100::9");
    assert!(t.routes.is_empty());
    assert_eq!(t.routes6[0].prefix.to_string(), "fd00:20::/48");
    // An IPv4 peer cannot be reached from an IPv6-only WAN port.
    assert_err(
        &reject(&ipv6_only_tunnel("10.10.100.9")),
        22,
        "peers[0].address",
        ErrorKind::Conflict,
        "none (IPv6 only)",
    );
    // A listener needs an address of its own family on both ports: an
    // IPv4 listener on IPv6-only ports is refused at its address...
    let listener = |remote: &str| {
        format!(
            "{}\n[[listeners]]\nrole = \"outbound\"\nport = 5100\nremote = \"{remote}\"\nsa = 0x1001\n",
            ipv6_only_tunnel("fd00:10:100::9")
        )
    };
    let text = listener("10.10.100.9:6100");
    let line = text
        .lines()
        .position(|l| l.starts_with("remote = "))
        .unwrap()
        + 1;
    assert_err(
        &reject(&text),
        line,
        "listeners[0].remote",
        ErrorKind::Conflict,
        "10.10.100.9:6100 is IPv4, and ports.lan has no IPv4 address",
    );
    // ... and an IPv6 one loads, with its remote as written.
    let c = Config::from_toml(&listener("[fd00:10:100::9]:6100"), Path::new("t.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let l = &c.tunnel.as_ref().expect("tunnel").listeners[0];
    assert_eq!(l.remote, Some("[fd00:10:100::9]:6100".parse().unwrap()));
}

#[test]
fn dual_stack_ports_routes_and_neighbors_load() {
    use std::net::{IpAddr, Ipv6Addr};
    let text = dual_stack(
        r#"
[[routes]]
prefix = "fd00:20::/32"
via = "fe80::1"
port = "wan"

[[routes]]
prefix = "10.20.0.0/16"
via = "10.10.100.254"

[[routes]]
prefix = "::/0"
via = "fd00:10:1::fe"

[[neighbors]]
ip = "fe80::1"
mac = "02:00:00:00:02:fe"
port = "wan"
"#,
    );
    let c = Config::from_toml(&text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    assert_eq!(c.ports.lan.address6.unwrap().addr(), v6("fd00:10:1::1"));
    assert_eq!(c.ports.wan.address6.unwrap().prefix_len(), 64);
    assert_eq!(c.ports.wan.ip(), Some(Ipv4Addr::new(10, 10, 100, 1)));
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes6.len(), 2);
    assert_eq!(
        (c.routes6[0].via, c.routes6[0].port),
        (v6("fe80::1"), scistream_dataplane::port::PortId::Wan)
    );
    assert_eq!(
        c.routes6[1].port,
        scistream_dataplane::port::PortId::Lan,
        "found by prefix"
    );
    assert_eq!(c.neighbors[0].ip, IpAddr::V6(v6("fe80::1")));
}

#[test]
fn ipv6_config_errors_name_line_and_key() {
    let route = |prefix: &str, via: &str, port: &str| {
        dual_stack(&format!(
            "\n[[routes]]\nprefix = \"{prefix}\"\nvia = \"{via}\"\n{port}\n"
        ))
    };
    // The appended [[routes]] table is on line 17 (a missing key is reported there), its prefix on 18.
    assert_err(
        &reject(&route("fd00:20::/32", "fe80::1", "")),
        17,
        "routes[0].port",
        ErrorKind::MissingKey,
        "next hop fe80::1 is link-local: name its port",
    );
    assert_err(
        &reject(&route("fd00:20::/32", "10.10.100.254", "")),
        19,
        "routes[0].via",
        ErrorKind::BadValue,
        "next hop `10.10.100.254` is not IPv6 but the prefix fd00:20::/32 is",
    );
    assert_err(
        &reject(&route("fd00:20::/32", "fd00:99::1", "")),
        19,
        "routes[0].via",
        ErrorKind::Conflict,
        "not on a connected IPv6 prefix (lan fd00:10:1::/64, wan fd00:10:100::/64)",
    );
    assert_err(
        &reject(&route("fd00:20::1/32", "fd00:10:100::fe", "")),
        18,
        "routes[0].prefix",
        ErrorKind::BadValue,
        "host bits set; did you mean fd00:20::/32?",
    );
    assert_err(
        &reject(&route("fd00:10:1::/64", "fd00:10:100::fe", "")),
        18,
        "routes[0].prefix",
        ErrorKind::Conflict,
        "is the connected prefix of lan",
    );
    // Port addresses: link-local, two of one family, none of IPv4.
    let with_lan =
        |addr: &str| TAP.replace("address = \"10.10.1.1/24\"", &format!("address = {addr}"));
    assert_err(
        &reject(&with_lan("[\"10.10.1.1/24\", \"fe80::1/64\"]")),
        10,
        "ports.lan.address",
        ErrorKind::BadValue,
        "link-local; each port forms its link-local address from its MAC",
    );
    assert_err(
        &reject(&with_lan(
            "[\"10.10.1.1/24\", \"fd00::1/64\", \"fd01::1/64\"]",
        )),
        10,
        "ports.lan.address",
        ErrorKind::BadValue,
        "two IPv6 addresses",
    );
    assert_err(
        &reject(&with_lan("[]")),
        10,
        "ports.lan.address",
        ErrorKind::BadValue,
        "no address: a port needs an IPv4 address, an IPv6 one, or one of each",
    );
    // Overlapping IPv6 prefixes on the two ports.
    let overlap = dual_stack("").replace("fd00:10:100::1/64", "fd00:10:1::2/64");
    assert_err(
        &reject(&overlap),
        15,
        "ports.wan.address",
        ErrorKind::Conflict,
        "overlaps the lan connected IPv6 prefix fd00:10:1::/64",
    );
}

#[test]
fn ipv6_tunnel_routes_load_and_are_checked() {
    let text = tunnel("\n[[tunnel_routes]]\nprefix = \"fd00:20::/32\"\nsa = 0x1001\n");
    let c = Config::from_toml(&text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let t = c.tunnel.expect("tunnel section");
    assert_eq!((t.routes.len(), t.routes6.len()), (1, 1));
    assert_eq!(t.routes6[0].prefix.to_string(), "fd00:20::/32");
    assert_eq!(t.routes6[0].spi, 0x1001);
    // Through an inbound SA: refused on its key.
    let text = tunnel("\n[[tunnel_routes]]\nprefix = \"fd00:20::/32\"\nsa = 0x2001\n");
    let e = reject(&text);
    assert_eq!(e.key(), Some("tunnel_routes[1].sa"), "{e}");
    assert!(
        e.to_string().contains("no outbound SA has SPI 0x2001"),
        "{e}"
    );
    // Overlapping a port's own IPv6 prefix.
    let text = dual_stack("")
        + &tunnel("").replacen(TAP, "", 1)
        + "\n[[tunnel_routes]]\nprefix = \"fd00:10::/32\"\nsa = 0x1001\n";
    let e = reject(&text);
    assert_eq!(e.key(), Some("tunnel_routes[1].prefix"), "{e}");
    assert!(
        e.to_string()
            .contains("overlaps the connected prefix fd00:10:1::/64 of lan"),
        "{e}"
    );
}
