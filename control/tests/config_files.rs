//! The example configurations load, and every class of error is reported at
//! the exact line and key.
//!
//! Certificates are not committed: each test copies the configuration into
//! a temporary directory and generates throwaway PEM files under `certs/`
//! there with rcgen.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use scistream_control::auth;
use scistream_control::config::{
    AllowSubject, AuthMode, ClientRate, ConfigError, ControlConfig, ErrorKind, PeerTrust,
    RatePolicy,
};
use scistream_region::Algorithm;
use scistream_testbed::paths::configs_dir;
use tempfile::TempDir;

fn gwa_example() -> String {
    fs::read_to_string(configs_dir().join("control-testbed-gwa.toml")).expect("read example")
}

/// Writes `tokens.toml` (mode 0600) in `dir` with one entry: identity
/// "testuser", token "testuser-token".
fn write_tokens(dir: &Path) {
    let hash = auth::hash_token("testuser-token", auth::MIN_PBKDF2_ITERATIONS).expect("hash");
    let path = dir.join("tokens.toml");
    fs::write(&path, auth::token_file_entry("testuser", &[], &hash)).expect("write tokens");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod tokens");
}

/// A temporary directory with `certs/ca.pem` and, for each name,
/// `certs/NAME.pem` (SAN DNS:NAME, chain leaf + CA) and `certs/NAME.key`
/// (mode 0600), and a `tokens.toml` (see [`write_tokens`]).
fn cert_dir(names: &[&str]) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    fs::create_dir(&certs).expect("mkdir certs");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA cert");
    fs::write(certs.join("ca.pem"), ca.pem()).expect("write CA");
    for name in names {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let leaf = rcgen::CertificateParams::new(vec![(*name).to_owned()])
            .expect("leaf params")
            .signed_by(&key, &ca)
            .expect("leaf cert");
        fs::write(
            certs.join(format!("{name}.pem")),
            format!("{}{}", leaf.pem(), ca.pem()),
        )
        .expect("write leaf");
        let key_path = certs.join(format!("{name}.key"));
        fs::write(&key_path, key.serialize_pem()).expect("write key");
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).expect("chmod key");
    }
    write_tokens(dir.path());
    dir
}

/// Writes `text` as `gw.toml` next to generated certificates for gwa and
/// gwb and loads it.
fn load(text: &str) -> (TempDir, Result<ControlConfig, ConfigError>) {
    let dir = cert_dir(&["gwa", "gwb"]);
    let path = dir.path().join("gw.toml");
    fs::write(&path, text).expect("write config");
    let r = ControlConfig::load(&path);
    (dir, r)
}

/// The 1-based line of the only line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(hits.len(), 1, "`{needle}` must occur on exactly one line");
    hits[0]
}

/// The 1-based line of the last line of `text` starting with `prefix`.
fn last_line_starting(text: &str, prefix: &str) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with(prefix))
        .map(|(i, _)| i + 1)
        .last()
        .expect("present")
}

/// Replaces the only occurrence of `from` in `text`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "`{from}` must occur once");
    text.replacen(from, to, 1)
}

/// Loads `text`, expecting an error: (line, key, kind, message).
fn reject(text: &str) -> (usize, String, ErrorKind, String) {
    let (dir, r) = load(text);
    let e = r.expect_err("must be rejected");
    let msg = e.to_string();
    let file = dir.path().join("gw.toml");
    assert!(
        msg.starts_with(&format!("{}:{}:", file.display(), e.line().expect("line"))),
        "message must start with file:line: {msg}"
    );
    (
        e.line().expect("line"),
        e.key().expect("key").to_owned(),
        e.kind().expect("kind"),
        msg,
    )
}

#[test]
fn every_example_loads() {
    let mut seen = 0;
    for entry in fs::read_dir(configs_dir()).expect("configs dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with("control-") && name.ends_with(".toml")) {
            continue;
        }
        let text = fs::read_to_string(&path).expect("read");
        let (dir, r) = load(&text);
        let c = r.unwrap_or_else(|e| panic!("{name}: {e}"));
        let certs = dir.path().join("certs");
        assert_eq!(
            c.identity.cert,
            certs.join(format!("{}.pem", c.gateway.name))
        );
        assert_eq!(
            c.identity.key,
            certs.join(format!("{}.key", c.gateway.name))
        );
        assert!(c.shm.path.is_absolute(), "{name}");
        assert!(!c.peers.is_empty(), "{name}");
        for p in &c.peers {
            assert_eq!(p.trust, PeerTrust::Ca(certs.join("ca.pem")), "{name}");
        }
        seen += 1;
    }
    assert!(seen >= 2, "expected the gwa and gwb examples, found {seen}");
}

/// The package's example (configs/packaging/control-example.toml, installed
/// as /etc/scistream/control-example.toml) loads once its /etc/scistream/
/// files exist: here, in a temporary directory standing for /etc/scistream.
#[test]
fn package_example_loads() {
    let text = fs::read_to_string(configs_dir().join("packaging/control-example.toml"))
        .expect("read package example");
    let dir = cert_dir(&["gw-aps-1"]);
    let etc = format!("{}/", dir.path().display());
    let path = dir.path().join("control-example.toml");
    fs::write(&path, text.replace("/etc/scistream/", &etc)).expect("write config");
    let c = ControlConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.gateway.name, "gw-aps-1");
    assert_eq!(c.identity.cert, dir.path().join("certs/gw-aps-1.pem"));
    assert_eq!(c.shm.path, Path::new("/dev/shm/scistream-example"));
    assert_eq!(c.registry.path, Path::new("/var/lib/scistream/example.db"));
    assert_eq!(c.peers.len(), 1);
    assert_eq!(c.peers[0].name, "gw-alcf-1");
}

#[test]
fn gwa_example_values() {
    let (dir, r) = load(&gwa_example());
    let c = r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.gateway.name, "gwa");
    assert_eq!(c.gateway.lan_address, IpAddr::from([10, 10, 1, 1]));
    assert_eq!(c.gateway.wan_address, IpAddr::from([10, 10, 100, 1]));
    assert_eq!(c.gateway.udp_port, 4500);
    assert_eq!(
        c.control.peer_listen,
        SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 1), 5000).into()
    );
    assert_eq!(c.shm.path, Path::new("/dev/shm/scistream-testbed-gwa"));
    assert_eq!(c.shm.capacities().sas, 1024);
    assert_eq!(c.registry.path, Path::new("/tmp/scistream-testbed/gwa.db"));
    assert_eq!(c.keys.algorithm, Algorithm::Aes128Gcm);
    assert_eq!(c.keys.rekey_packets, 1 << 31);
    assert_eq!(c.keys.rekey_bytes, 1 << 38);
    assert_eq!(c.ports.listener_range, 5100..=5199);
    assert_eq!(c.peers.len(), 1);
    let p = &c.peers[0];
    assert_eq!(p.name, "gwb");
    assert_eq!(p.wan_address, IpAddr::from([10, 10, 200, 1]));
    assert_eq!(p.trust, PeerTrust::Ca(dir.path().join("certs/ca.pem")));
    assert_eq!(
        c.peer_by_wan_address(IpAddr::from([10, 10, 200, 1]))
            .map(|p| &p.name),
        Some(&"gwb".to_owned())
    );
    assert!(c.peer("gwb").is_some() && c.peer("gwa").is_none());
    assert_eq!(c.logging.level, "info");
}

#[test]
fn optional_sections_take_defaults() {
    let text = "\
[gateway]
name = \"gwa\"
lan_address = \"10.10.1.1\"
wan_address = \"10.10.100.1\"

[identity]
cert = \"certs/gwa.pem\"
key = \"certs/gwa.key\"

[control]
peer_listen = \"0.0.0.0:5000\"
admin_socket = \"run/gwa.sock\"

[shm]
path = \"/dev/shm/x\"

[registry]
path = \"state/gwa.db\"
";
    let (dir, r) = load(text);
    let c = r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.gateway.udp_port, 4500);
    assert_eq!(
        (c.shm.sas, c.shm.routes, c.shm.listeners, c.shm.workers),
        (1024, 256, 1024, 16)
    );
    assert_eq!(c.keys, Default::default());
    assert_eq!(c.keys.algorithm, Algorithm::Aes128Gcm);
    assert_eq!(c.keys.rekey_seconds, 3600);
    assert_eq!(c.keys.grace_seconds, 10);
    assert_eq!(c.keys.lanes, 1, "one SA per direction unless asked");
    assert_eq!(c.ports.listener_range, 5100..=5199);
    assert!(c.peers.is_empty());
    assert_eq!(c.logging.level, "info");
    assert_eq!((c.api, c.auth), (None, None));
    // Relative paths are resolved against the file's directory.
    assert_eq!(c.control.admin_socket, dir.path().join("run/gwa.sock"));
    assert_eq!(c.registry.path, dir.path().join("state/gwa.db"));
}

#[test]
fn pinned_peer_and_aes256() {
    let pin = "0123456789abcdef".repeat(4);
    let text = edit(
        &gwa_example(),
        "ca = \"certs/ca.pem\"",
        &format!("pin_sha256 = \"{pin}\""),
    );
    let text = edit(&text, "\"aes-128-gcm\"", "\"aes-256-gcm\"");
    let (_dir, r) = load(&text);
    let c = r.unwrap_or_else(|e| panic!("{e}"));
    let mut want = [0u8; 32];
    for (i, b) in want.iter_mut().enumerate() {
        *b = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef][i % 8];
    }
    assert_eq!(c.peers[0].trust, PeerTrust::Pin(want));
    assert_eq!(c.keys.algorithm, Algorithm::Aes256Gcm);
}

#[test]
fn syntax_error() {
    let text = edit(
        &gwa_example(),
        "udp_port = 4500                #",
        "udp_port = 45 00 #",
    );
    let (line, key, kind, msg) = reject(&text);
    assert_eq!(kind, ErrorKind::Syntax);
    assert_eq!(line, line_of(&text, "udp_port = 45 00"));
    assert_eq!(key, "gateway.udp_port");
    assert!(msg.contains("TOML syntax error"), "{msg}");
}

#[test]
fn unknown_key() {
    let text = edit(
        &gwa_example(),
        "workers = 16",
        "workers = 16\ncolour = \"red\"",
    );
    let (line, key, kind, msg) = reject(&text);
    assert_eq!(
        (line, key.as_str(), kind),
        (
            line_of(&text, "colour"),
            "shm.colour",
            ErrorKind::UnknownKey
        )
    );
    assert!(msg.contains("unknown key `colour` in [shm]"), "{msg}");
}

#[test]
fn wrong_type() {
    let text = edit(&gwa_example(), "sas = 1024", "sas = \"many\"");
    let (line, key, kind, msg) = reject(&text);
    assert_eq!(
        (line, key.as_str(), kind),
        (
            line_of(&text, "sas = \"many\""),
            "shm.sas",
            ErrorKind::WrongType
        )
    );
    assert!(msg.contains("expected an integer"), "{msg}");
}

#[test]
fn missing_section() {
    let text = edit(
        &gwa_example(),
        "[registry]\npath = \"/tmp/scistream-testbed/gwa.db\"        # sessions survive s2cs restarts\n",
        "",
    );
    let (line, key, kind, msg) = reject(&text);
    assert_eq!(
        (line, key.as_str(), kind),
        (1, "registry", ErrorKind::MissingKey)
    );
    assert!(msg.contains("missing required key `registry`"), "{msg}");
}

#[test]
fn missing_key_in_section() {
    let text = edit(&gwa_example(), "lan_address = \"10.10.1.1\"", "");
    let (line, key, kind, _) = reject(&text);
    assert_eq!(
        (line, key.as_str(), kind),
        (
            line_of(&text, "[gateway]"),
            "gateway.lan_address",
            ErrorKind::MissingKey
        )
    );
}

#[test]
fn both_ca_and_pin() {
    let pin = "ab".repeat(32);
    let text = edit(
        &gwa_example(),
        "ca = \"certs/ca.pem\"",
        &format!("ca = \"certs/ca.pem\"\npin_sha256 = \"{pin}\""),
    );
    let (line, key, kind, msg) = reject(&text);
    assert_eq!(
        (line, key.as_str(), kind),
        (
            line_of(&text, "pin_sha256"),
            "peers[0].pin_sha256",
            ErrorKind::Conflict
        )
    );
    assert!(msg.contains("sets both `ca` and `pin_sha256`"), "{msg}");
}

#[test]
fn neither_ca_nor_pin() {
    let text = edit(&gwa_example(), "ca = \"certs/ca.pem\"\n", "");
    let (line, key, kind, msg) = reject(&text);
    assert_eq!(
        (line, key.as_str(), kind),
        (
            line_of(&text, "[[peers]]"),
            "peers[0].ca",
            ErrorKind::MissingKey
        )
    );
    assert!(msg.contains("needs `ca`"), "{msg}");
}

#[test]
fn bad_pin_hex() {
    for bad in ["xyz".to_owned(), "ab".repeat(31)] {
        let text = edit(
            &gwa_example(),
            "ca = \"certs/ca.pem\"",
            &format!("pin_sha256 = \"{bad}\""),
        );
        let (line, key, kind, _) = reject(&text);
        assert_eq!(
            (line, key.as_str(), kind),
            (
                line_of(&text, "pin_sha256"),
                "peers[0].pin_sha256",
                ErrorKind::BadValue
            ),
            "{bad}"
        );
    }
}

#[test]
fn duplicate_peer_name() {
    let text = format!(
        "{}\n[[peers]]\nname = \"gwb\"\nca = \"certs/ca.pem\"\nwan_address = \"10.10.201.1\"\ncontrol_address = \"10.10.201.1:5000\"\n",
        gwa_example()
    );
    let (line, key, kind, msg) = reject(&text);
    let second = last_line_starting(&text, "name = \"gwb\"");
    assert_eq!(
        (line, key.as_str(), kind),
        (second, "peers[1].name", ErrorKind::Conflict)
    );
    let first = line_of(&text, "name = \"gwb\"                   #");
    assert!(
        msg.contains(&format!("already used by peers[0] (line {first})")),
        "{msg}"
    );
}

#[test]
fn duplicate_peer_wan_address() {
    let text = format!(
        "{}\n[[peers]]\nname = \"gwc\"\nca = \"certs/ca.pem\"\nwan_address = \"10.10.200.1\"\ncontrol_address = \"10.10.201.1:5000\"\n",
        gwa_example()
    );
    let (line, key, kind, _) = reject(&text);
    let second = last_line_starting(&text, "wan_address = \"10.10.200.1\"");
    assert_eq!(
        (line, key.as_str(), kind),
        (second, "peers[1].wan_address", ErrorKind::Conflict)
    );
}

#[test]
fn bad_port_range() {
    let ex = gwa_example();
    let range = "listener_range = [5100, 5199]";
    let reversed = edit(&ex, range, "listener_range = [5199, 5100]");
    let (line, key, kind, msg) = reject(&reversed);
    assert_eq!(
        (line, key.as_str(), kind),
        (
            line_of(&reversed, "listener_range"),
            "ports.listener_range",
            ErrorKind::BadValue
        )
    );
    assert!(
        msg.contains("first port 5199 is above last port 5100"),
        "{msg}"
    );

    let low = edit(&ex, range, "listener_range = [80, 90]");
    let (line, key, kind, _) = reject(&low);
    assert_eq!(
        (line, key.as_str(), kind),
        (
            line_of(&low, "listener_range"),
            "ports.listener_range[0]",
            ErrorKind::BadValue
        )
    );

    let three = edit(&ex, range, "listener_range = [5100, 5150, 5199]");
    let (_, key, kind, _) = reject(&three);
    assert_eq!(
        (key.as_str(), kind),
        ("ports.listener_range", ErrorKind::BadValue)
    );

    // The peer channel listens on 5000 on every address.
    let clash = edit(
        &ex,
        "peer_listen = \"10.99.0.1:5000\"",
        "peer_listen = \"0.0.0.0:5000\"",
    );
    let clash = edit(&clash, range, "listener_range = [4900, 5100]");
    let (line, key, kind, msg) = reject(&clash);
    assert_eq!(
        (line, key.as_str(), kind),
        (
            line_of(&clash, "listener_range"),
            "ports.listener_range",
            ErrorKind::Conflict
        )
    );
    assert!(msg.contains("peer-channel port"), "{msg}");
}

#[test]
fn relative_shm_path() {
    let text = edit(
        &gwa_example(),
        "path = \"/dev/shm/scistream-testbed-gwa\"",
        "path = \"shm/gwa\"",
    );
    let (line, key, kind, msg) = reject(&text);
    assert_eq!(
        (line, key.as_str(), kind),
        (
            line_of(&text, "path = \"shm/gwa\""),
            "shm.path",
            ErrorKind::BadValue
        )
    );
    assert!(msg.contains("is relative"), "{msg}");
}

#[test]
fn missing_cert_file() {
    let text = edit(
        &gwa_example(),
        "cert = \"certs/gwa.pem\"",
        "cert = \"certs/nope.pem\"",
    );
    let (line, key, kind, msg) = reject(&text);
    assert_eq!(
        (line, key.as_str(), kind),
        (
            line_of(&text, "nope.pem"),
            "identity.cert",
            ErrorKind::BadValue
        )
    );
    assert!(msg.contains("certs/nope.pem does not exist"), "{msg}");
}

#[test]
fn cert_file_that_is_a_key() {
    let text = edit(
        &gwa_example(),
        "cert = \"certs/gwa.pem\"",
        "cert = \"certs/gwa.key\"",
    );
    let (_, key, kind, msg) = reject(&text);
    assert_eq!((key.as_str(), kind), ("identity.cert", ErrorKind::BadValue));
    assert!(msg.contains("holds no PEM certificate"), "{msg}");
}

#[test]
fn group_readable_key() {
    let text = gwa_example();
    let dir = cert_dir(&["gwa", "gwb"]);
    let key = dir.path().join("certs/gwa.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).expect("chmod");
    let path = dir.path().join("gw.toml");
    fs::write(&path, &text).expect("write");
    let e = ControlConfig::load(&path).expect_err("group-readable key");
    assert_eq!(e.kind(), Some(ErrorKind::BadValue));
    assert_eq!(e.line(), Some(line_of(&text, "key = \"certs/gwa.key\"")));
    assert_eq!(e.key(), Some("identity.key"));
    let msg = e.to_string();
    assert!(
        msg.contains("has mode 0640") && msg.contains("chmod 600"),
        "{msg}"
    );
}

#[test]
fn value_rules() {
    let ex = gwa_example();
    let cases: &[(&str, &str, &str, ErrorKind)] = &[
        (
            "name = \"gwa\"",
            "name = \"g w a\"",
            "gateway.name",
            ErrorKind::BadValue,
        ),
        (
            "wan_address = \"10.10.100.1\"    #",
            "wan_address = \"10.10.1.1\"    #",
            "gateway.wan_address",
            ErrorKind::Conflict,
        ),
        (
            "peer_listen = \"10.99.0.1:5000\"",
            "peer_listen = \"10.99.0.1\"",
            "control.peer_listen",
            ErrorKind::BadValue,
        ),
        (
            "workers = 16",
            "workers = 257",
            "shm.workers",
            ErrorKind::BadValue,
        ),
        ("sas = 1024", "sas = 0", "shm.sas", ErrorKind::BadValue),
        (
            "\"aes-128-gcm\"",
            "\"chacha20\"",
            "keys.algorithm",
            ErrorKind::BadValue,
        ),
        (
            "rekey_seconds = 3600",
            "rekey_seconds = 0",
            "keys.rekey_seconds",
            ErrorKind::BadValue,
        ),
        (
            "rekey_packets = 2147483648",
            "rekey_packets = 999",
            "keys.rekey_packets",
            ErrorKind::BadValue,
        ),
        (
            "rekey_bytes = 274877906944",
            "rekey_bytes = 1099511627777",
            "keys.rekey_bytes",
            ErrorKind::BadValue,
        ),
        (
            "grace_seconds = 10",
            "grace_seconds = 601",
            "keys.grace_seconds",
            ErrorKind::BadValue,
        ),
        (
            "grace_seconds = 10",
            "lanes = 17\ngrace_seconds = 10",
            "keys.lanes",
            ErrorKind::BadValue,
        ),
        (
            "grace_seconds = 10",
            "lanes = 0\ngrace_seconds = 10",
            "keys.lanes",
            ErrorKind::BadValue,
        ),
        (
            "level = \"info\"",
            "level = \"info,=x=\"",
            "logging.level",
            ErrorKind::BadValue,
        ),
        (
            "wan_address = \"10.10.200.1\"\n",
            "wan_address = \"10.10.100.1\"\n",
            "peers[0].wan_address",
            ErrorKind::Conflict,
        ),
        (
            "control_address = \"10.99.0.2:5000\"",
            "control_address = \"0.0.0.0:5000\"",
            "peers[0].control_address",
            ErrorKind::BadValue,
        ),
    ];
    for (from, to, want_key, want_kind) in cases {
        let text = edit(&ex, from, to);
        // The edited line: where `from` started in the example.
        let at = ex.find(from).expect("present");
        let want_line = ex[..at].matches('\n').count() + 1;
        let (line, key, kind, msg) = reject(&text);
        assert_eq!(
            (line, key.as_str(), kind),
            (want_line, *want_key, *want_kind),
            "{to}: {msg}"
        );
    }
}

#[test]
fn grace_must_be_shorter_than_rekey() {
    let text = edit(&gwa_example(), "rekey_seconds = 3600", "rekey_seconds = 10");
    let (line, key, kind, _) = reject(&text);
    assert_eq!(
        (line, key.as_str(), kind),
        (
            line_of(&text, "grace_seconds"),
            "keys.grace_seconds",
            ErrorKind::Conflict
        )
    );
}

#[test]
fn unreadable_file() {
    let e = ControlConfig::load(Path::new("/nonexistent/s2cs.toml")).expect_err("absent");
    assert!(matches!(e, ConfigError::Read { .. }));
    assert_eq!(e.line(), None);
    assert!(e
        .to_string()
        .starts_with("/nonexistent/s2cs.toml: cannot read"));
}

/// The text from `[api]` to just before `[logging]` in the gwa example.
const API_AUTH_START: &str = "[api]";

/// The gwa example with its [api] and [auth] sections replaced by `tail`.
fn with_api_auth(tail: &str) -> String {
    let ex = gwa_example();
    let start = ex.find(API_AUTH_START).expect("[api] in the example");
    let end = ex.find("[logging]").expect("[logging] in the example");
    assert!(start < end, "[api] comes before [logging] in the example");
    format!("{}{}\n{}", &ex[..start], tail, &ex[end..])
}

#[test]
fn gwa_example_api_and_auth() {
    let (dir, r) = load(&gwa_example());
    let c = r.unwrap_or_else(|e| panic!("{e}"));
    let api = c.api.expect("[api]");
    assert_eq!(
        api.listen,
        Some(SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 1), 5001).into())
    );
    // Defaults to the [identity] certificate and key.
    assert_eq!(api.cert, dir.path().join("certs/gwa.pem"));
    assert_eq!(api.key, dir.path().join("certs/gwa.key"));
    assert!(!api.insecure);
    assert_eq!(api.req_timeout, Duration::from_secs(180));
    assert_eq!(api.max_num_conn, 64);
    assert_eq!(
        api.rate,
        RatePolicy {
            client: ClientRate::Enforce,
            max_kbytes: 0
        }
    );
    let auth = c.auth.expect("[auth]");
    assert_eq!(
        auth.mode,
        AuthMode::TokenFile(dir.path().join("tokens.toml"))
    );
    assert_eq!(auth.allow.len(), 1);
    let rule = &auth.allow[0];
    assert_eq!(rule.subject, AllowSubject::Identity("testuser".into()));
    let targets: Vec<String> = rule.targets.iter().map(|t| t.to_string()).collect();
    assert_eq!(
        targets,
        [
            "10.10.1.0/24",
            "10.10.100.0/24",
            "10.10.200.0/24",
            "10.20.1.0/24"
        ]
    );
    assert_eq!(rule.ports, vec![1..=65535]);
    // The example's token file (written by the test) authenticates testuser,
    // and the policy allows the producer app network but not elsewhere.
    let verifier = auth::verifier(&auth).expect("verifier");
    let who = verifier.verify("testuser-token").expect("testuser");
    assert_eq!(who.subject, "testuser");
    let policy = auth::Policy::new(&auth);
    assert!(policy
        .check_target(
            &who,
            SocketAddrV4::new(Ipv4Addr::new(10, 10, 1, 2), 6000).into()
        )
        .is_ok());
    assert!(policy
        .check_target(
            &who,
            SocketAddrV4::new(Ipv4Addr::new(10, 30, 1, 2), 6000).into()
        )
        .is_err());
}

#[test]
fn gwb_example_api_listen() {
    let text = fs::read_to_string(configs_dir().join("control-testbed-gwb.toml")).expect("read");
    let (_dir, r) = load(&text);
    let c = r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.api.expect("[api]").listen,
        Some(SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 2), 5001).into())
    );
}

#[test]
fn api_defaults_and_explicit_cert() {
    let text = with_api_auth(
        "[api]\ncert = \"certs/gwb.pem\"\nkey = \"certs/gwb.key\"\n\n[auth]\nmode = \"token_file\"\ntoken_file = \"tokens.toml\"\n[[auth.allow]]\nscope = \"https://auth.globus.org/scopes/x/scistream\"\ntargets = [\"10.10.1.0/24\"]\nports = [[1024, 2047], [5000, 5000]]\n",
    );
    let (dir, r) = load(&text);
    let c = r.unwrap_or_else(|e| panic!("{e}"));
    let api = c.api.expect("[api]");
    assert_eq!(api.listen, None);
    assert_eq!(api.cert, dir.path().join("certs/gwb.pem"));
    assert_eq!(api.key, dir.path().join("certs/gwb.key"));
    let rule = &c.auth.expect("[auth]").allow[0];
    assert_eq!(
        rule.subject,
        AllowSubject::Scope("https://auth.globus.org/scopes/x/scistream".into())
    );
    assert_eq!(rule.ports, vec![1024..=2047, 5000..=5000]);
}

#[test]
fn auth_mode_none_needs_insecure() {
    let text = edit(
        &gwa_example(),
        "mode = \"token_file\"\ntoken_file = \"tokens.toml\"",
        "mode = \"none\"",
    );
    let (line, key, kind, msg) = reject(&text);
    assert_eq!(
        (line, key.as_str(), kind),
        (
            line_of(&text, "mode = \"none\""),
            "auth.mode",
            ErrorKind::Conflict
        )
    );
    assert!(
        msg.contains("auth.mode = \"none\"") && msg.contains("api.insecure = true"),
        "{msg}"
    );

    let text = edit(&text, "insecure = false", "insecure = true");
    let (_dir, r) = load(&text);
    let c = r.unwrap_or_else(|e| panic!("{e}"));
    assert!(c.api.expect("[api]").insecure);
    assert_eq!(c.auth.expect("[auth]").mode, AuthMode::None);
}

#[test]
fn auth_and_api_come_together() {
    // [auth] without [api].
    let ex = gwa_example();
    let api_start = ex.find("[api]").expect("[api]");
    let auth_start = ex.find("[auth]").expect("[auth]");
    let no_api = format!("{}{}", &ex[..api_start], &ex[auth_start..]);
    let (line, key, kind, msg) = reject(&no_api);
    assert_eq!(
        (line, key.as_str(), kind),
        (line_of(&no_api, "[auth]"), "auth", ErrorKind::Conflict)
    );
    assert!(msg.contains("there is no [api] section"), "{msg}");

    // [api] without [auth].
    let no_auth = with_api_auth("[api]\nlisten = \"10.99.0.1:5001\"\n");
    let (line, key, kind, msg) = reject(&no_auth);
    assert_eq!(
        (line, key.as_str(), kind),
        (line_of(&no_auth, "[api]"), "api", ErrorKind::MissingKey)
    );
    assert!(msg.contains("needs an [auth] section"), "{msg}");
}

#[test]
fn token_file_checks() {
    let text = edit(
        &gwa_example(),
        "token_file = \"tokens.toml\"",
        "token_file = \"nope.toml\"",
    );
    let (line, key, kind, msg) = reject(&text);
    assert_eq!(
        (line, key.as_str(), kind),
        (
            line_of(&text, "nope.toml"),
            "auth.token_file",
            ErrorKind::BadValue
        )
    );
    assert!(msg.contains("nope.toml does not exist"), "{msg}");

    let text = gwa_example();
    let dir = cert_dir(&["gwa", "gwb"]);
    fs::set_permissions(
        dir.path().join("tokens.toml"),
        fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let path = dir.path().join("gw.toml");
    fs::write(&path, &text).expect("write");
    let e = ControlConfig::load(&path).expect_err("world-readable token file");
    assert_eq!(e.key(), Some("auth.token_file"));
    assert_eq!(e.line(), Some(line_of(&text, "token_file = ")));
    assert!(e.to_string().contains("has mode 0644"), "{e}");

    let text = edit(&gwa_example(), "token_file = \"tokens.toml\"", "");
    let (line, key, kind, _) = reject(&text);
    assert_eq!(
        (line, key.as_str(), kind),
        (
            line_of(&text, "[auth]"),
            "auth.token_file",
            ErrorKind::MissingKey
        )
    );
}

#[test]
fn jwt_section() {
    let jwt = "[auth.jwt]\njwks = \"jwks.json\"\nissuer = \"https://auth.example.org\"\naudience = \"scistream-gwa\"\nrequired_scope = \"https://auth.globus.org/scopes/c42c0dac-0a52-408e-a04f-5d31bfe0aef8/scistream\"\n";
    let text = edit(
        &gwa_example(),
        "mode = \"token_file\"\ntoken_file = \"tokens.toml\"",
        &format!("mode = \"jwt\"\n{jwt}"),
    );
    // The JWKS file must exist.
    let (line, key, kind, msg) = reject(&text);
    assert_eq!(
        (line, key.as_str(), kind),
        (
            line_of(&text, "jwks.json"),
            "auth.jwt.jwks",
            ErrorKind::BadValue
        )
    );
    assert!(msg.contains("does not exist"), "{msg}");

    let dir = cert_dir(&["gwa", "gwb"]);
    fs::write(dir.path().join("jwks.json"), "{\"keys\": []}").expect("write jwks");
    let path = dir.path().join("gw.toml");
    let load_in = |t: &str| {
        fs::write(&path, t).expect("write");
        ControlConfig::load(&path)
    };
    let c = load_in(&text).unwrap_or_else(|e| panic!("{e}"));
    let AuthMode::Jwt(j) = c.auth.expect("[auth]").mode else {
        panic!("mode jwt")
    };
    assert_eq!(j.jwks, dir.path().join("jwks.json"));
    assert_eq!(j.issuer, "https://auth.example.org");
    assert_eq!(j.audience, "scistream-gwa");
    assert!(j.required_scope.ends_with("/scistream"));
    assert_eq!(j.leeway, Duration::from_secs(30));

    let cases = [
        (
            "audience = \"scistream-gwa\"",
            "audience = \"scistream-gwa\"\nleeway_seconds = 301",
            "auth.jwt.leeway_seconds",
            ErrorKind::BadValue,
        ),
        (
            "issuer = \"https://auth.example.org\"",
            "issuer = \"\"",
            "auth.jwt.issuer",
            ErrorKind::BadValue,
        ),
        (
            "/scistream\"",
            "/scistream other\"",
            "auth.jwt.required_scope",
            ErrorKind::BadValue,
        ),
        (
            "mode = \"jwt\"",
            "mode = \"jwt\"\ntoken_file = \"tokens.toml\"",
            "auth.token_file",
            ErrorKind::Conflict,
        ),
        (
            "mode = \"jwt\"",
            "mode = \"token_file\"",
            "auth.jwt",
            ErrorKind::Conflict,
        ),
    ];
    for (from, to, want_key, want_kind) in cases {
        let bad = edit(&text, from, to);
        let e = load_in(&bad).expect_err(to);
        assert_eq!(
            (e.key(), e.kind()),
            (Some(want_key), Some(want_kind)),
            "{to}: {e}"
        );
    }
    // [auth.jwt] missing in mode jwt.
    let bad = edit(&text, jwt, "");
    let e = load_in(&bad).expect_err("no [auth.jwt]");
    assert_eq!(
        (e.key(), e.kind()),
        (Some("auth.jwt"), Some(ErrorKind::MissingKey)),
        "{e}"
    );
}

#[test]
fn allow_rules() {
    let ex = gwa_example();
    let targets =
        "targets = [\"10.10.1.0/24\", \"10.10.100.0/24\", \"10.10.200.0/24\", \"10.20.1.0/24\"]";
    let cases: &[(&str, &str, &str, ErrorKind)] = &[
        (
            "identity = \"testuser\"",
            "identity = \"testuser\"\nscope = \"s\"",
            "auth.allow[0].scope",
            ErrorKind::Conflict,
        ),
        (
            "identity = \"testuser\"",
            "",
            "auth.allow[0].identity",
            ErrorKind::MissingKey,
        ),
        (
            "identity = \"testuser\"",
            "identity = \" \"",
            "auth.allow[0].identity",
            ErrorKind::BadValue,
        ),
        (
            targets,
            "targets = [\"10.10.1.0/24\", \"10.10.1.1/24\"]",
            "auth.allow[0].targets[1]",
            ErrorKind::BadValue,
        ),
        (
            targets,
            "targets = [\"10.10.1.0\"]",
            "auth.allow[0].targets[0]",
            ErrorKind::BadValue,
        ),
        (
            targets,
            "targets = []",
            "auth.allow[0].targets",
            ErrorKind::BadValue,
        ),
        (
            "ports = [[1, 65535]]",
            "ports = [[2000, 1000]]",
            "auth.allow[0].ports[0]",
            ErrorKind::BadValue,
        ),
        (
            "ports = [[1, 65535]]",
            "ports = [[1, 65535], [0, 10]]",
            "auth.allow[0].ports[1][0]",
            ErrorKind::BadValue,
        ),
        (
            "ports = [[1, 65535]]",
            "ports = [[1, 65536]]",
            "auth.allow[0].ports[0][1]",
            ErrorKind::BadValue,
        ),
        (
            "ports = [[1, 65535]]",
            "ports = [[80]]",
            "auth.allow[0].ports[0]",
            ErrorKind::BadValue,
        ),
        (
            "ports = [[1, 65535]]",
            "ports = []",
            "auth.allow[0].ports",
            ErrorKind::BadValue,
        ),
        (
            "mode = \"token_file\"",
            "mode = \"kerberos\"",
            "auth.mode",
            ErrorKind::BadValue,
        ),
        (
            "req_timeout_seconds = 180",
            "req_timeout_seconds = 0",
            "api.req_timeout_seconds",
            ErrorKind::BadValue,
        ),
        (
            "req_timeout_seconds = 180",
            "req_timeout_seconds = 3601",
            "api.req_timeout_seconds",
            ErrorKind::BadValue,
        ),
        (
            "max_num_conn = 64",
            "max_num_conn = 1025",
            "api.max_num_conn",
            ErrorKind::BadValue,
        ),
        (
            "client_rate = \"enforce\"",
            "client_rate = \"bits\"",
            "api.client_rate",
            ErrorKind::BadValue,
        ),
        (
            "max_rate_kbytes = 0",
            "max_rate_kbytes = -1",
            "api.max_rate_kbytes",
            ErrorKind::BadValue,
        ),
        (
            "max_rate_kbytes = 0",
            "max_rate_kbytes = 2147483648",
            "api.max_rate_kbytes",
            ErrorKind::BadValue,
        ),
        (
            "listen = \"10.99.0.1:5001\"",
            "listen = \"10.99.0.1:5000\"",
            "api.listen",
            ErrorKind::Conflict,
        ),
        (
            "listen = \"10.99.0.1:5001\"",
            "listen = \"0.0.0.0:5150\"",
            "api.listen",
            ErrorKind::Conflict,
        ),
        (
            "listen = \"10.99.0.1:5001\"",
            "listen = \"10.99.0.1\"",
            "api.listen",
            ErrorKind::BadValue,
        ),
    ];
    for (from, to, want_key, want_kind) in cases {
        let text = edit(&ex, from, to);
        let (line, key, kind, msg) = reject(&text);
        assert_eq!((key.as_str(), kind), (*want_key, *want_kind), "{to}: {msg}");
        // Reported at the edited line, or at the [[auth.allow]] header for a
        // missing key.
        let at = ex.find(from).expect("present");
        let edited = ex[..at].matches('\n').count() + 1;
        if *want_kind == ErrorKind::MissingKey {
            assert_eq!(line, line_of(&text, "[[auth.allow]]"), "{to}: {msg}");
        } else {
            assert!(
                line >= edited && line <= edited + to.matches('\n').count(),
                "{to}: line {line}, edited {edited}: {msg}"
            );
        }
    }

    // No rule at all.
    let text = edit(
        &ex,
        &format!("[[auth.allow]]                 # testuser may use the testbed's app and gateway networks\nidentity = \"testuser\"\n{targets}\nports = [[1, 65535]]\n"),
        "",
    );
    let (line, key, kind, msg) = reject(&text);
    assert_eq!(
        (line, key.as_str(), kind),
        (
            line_of(&text, "[auth]"),
            "auth.allow",
            ErrorKind::MissingKey
        )
    );
    assert!(msg.contains("no [[auth.allow]] rule"), "{msg}");
}

/// The gwa example with `tunnels` (one or more `[[tunnels]]` entries)
/// appended.
fn with_tunnels(tunnels: &str) -> String {
    format!("{}\n{tunnels}", gwa_example())
}

/// gwA's side of the testbed's site-to-site tunnel.
const SITE: &str = "\
[[tunnels]]
name = \"site\"
peer = \"gwb\"
local = [\"10.10.1.0/24\"]
remote = [\"10.20.1.0/24\", \"10.30.0.0/16\"]
";

#[test]
fn tunnels_load() {
    let (_dir, r) = load(&with_tunnels(SITE));
    let c = r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.tunnels.len(), 1);
    let t = c.tunnel("site").expect("tunnel `site`");
    assert_eq!(t.peer, "gwb");
    assert_eq!(t.local, ["10.10.1.0/24".parse().unwrap()]);
    assert_eq!(
        t.remote,
        [
            "10.20.1.0/24".parse().unwrap(),
            "10.30.0.0/16".parse().unwrap()
        ]
    );
    // gwa sorts before gwb: this end initiates the tunnel's exchanges.
    assert!(scistream_control::tunnel::initiates(
        &c.gateway.name,
        &t.peer
    ));
    // No [[tunnels]]: none (the examples declare none).
    let (_dir, r) = load(&gwa_example());
    assert!(r.unwrap_or_else(|e| panic!("{e}")).tunnels.is_empty());
    // Two tunnels may share their local network.
    let second = "\
[[tunnels]]
name = \"site-2\"
peer = \"gwb\"
local = [\"10.10.1.0/24\"]
remote = [\"10.40.0.0/16\"]
";
    let (_dir, r) = load(&with_tunnels(&format!("{SITE}\n{second}")));
    assert_eq!(r.unwrap_or_else(|e| panic!("{e}")).tunnels.len(), 2);
}

/// One rejected `[[tunnels]]` variant: the key and kind expected, and a
/// piece of the message.
struct Bad {
    tunnels: String,
    key: &'static str,
    kind: ErrorKind,
    says: &'static str,
}

fn bad(tunnels: &str, key: &'static str, kind: ErrorKind, says: &'static str) -> Bad {
    Bad {
        tunnels: tunnels.to_owned(),
        key,
        kind,
        says,
    }
}

#[test]
fn tunnel_errors_name_the_key() {
    let remote = "remote = [\"10.20.1.0/24\", \"10.30.0.0/16\"]";
    let cases = [
        bad(
            &edit(SITE, "peer = \"gwb\"", "peer = \"gwc\""),
            "tunnels[0].peer",
            ErrorKind::BadValue,
            "tunnel `site`: unknown peer `gwc`; a tunnel's peer must be a [[peers]] name (configured peers: `gwb`)",
        ),
        bad(
            &edit(SITE, "name = \"site\"", "name = \"site one\""),
            "tunnels[0].name",
            ErrorKind::BadValue,
            "invalid tunnel name `site one`",
        ),
        bad(
            &edit(SITE, remote, "remote = [\"10.20.1.1/24\"]"),
            "tunnels[0].remote[0]",
            ErrorKind::BadValue,
            "host bits set; did you mean 10.20.1.0/24?",
        ),
        bad(
            &edit(SITE, remote, "remote = [\"10.20.1.0\"]"),
            "tunnels[0].remote[0]",
            ErrorKind::BadValue,
            "10.20.1.0",
        ),
        bad(
            &edit(SITE, "local = [\"10.10.1.0/24\"]", "local = [\"10.10.1.0/33\"]"),
            "tunnels[0].local[0]",
            ErrorKind::BadValue,
            "10.10.1.0/33",
        ),
        bad(
            &edit(SITE, "local = [\"10.10.1.0/24\"]", "local = []"),
            "tunnels[0].local",
            ErrorKind::BadValue,
            "tunnel `site`: no prefix; list the IPv4 or IPv6 prefixes behind this gateway",
        ),
        bad(
            &edit(SITE, remote, "remote = []"),
            "tunnels[0].remote",
            ErrorKind::BadValue,
            "no prefix; list the IPv4 or IPv6 prefixes behind peer `gwb`",
        ),
        bad(
            &edit(SITE, remote, "remote = [\"10.20.0.0/16\", \"10.20.1.0/24\"]"),
            "tunnels[0].remote[1]",
            ErrorKind::Conflict,
            "10.20.1.0/24 overlaps 10.20.0.0/16 (tunnels[0].remote[0], line ",
        ),
        bad(
            &edit(SITE, remote, "remote = [\"10.20.1.0/24\", \"10.20.1.0/24\"]"),
            "tunnels[0].remote[1]",
            ErrorKind::Conflict,
            "10.20.1.0/24 is listed twice (also tunnels[0].remote[0], line ",
        ),
        bad(
            &edit(SITE, remote, "remote = [\"10.10.1.128/25\"]"),
            "tunnels[0].remote[0]",
            ErrorKind::Conflict,
            "a network cannot lie both behind this gateway and behind the peer",
        ),
        bad(
            &edit(
                SITE,
                "local = [\"10.10.1.0/24\"]",
                "local = [\"10.99.0.0/24\"]",
            )
            .replace(remote, "remote = [\"10.10.0.0/16\"]"),
            "tunnels[0].remote[0]",
            ErrorKind::Conflict,
            "10.10.0.0/16 holds this gateway's own LAN address 10.10.1.1 (gateway.lan_address)",
        ),
        bad(
            &edit(
                SITE,
                "local = [\"10.10.1.0/24\"]",
                "local = [\"10.99.0.0/24\"]",
            )
            .replace(remote, "remote = [\"10.10.100.0/24\"]"),
            "tunnels[0].remote[0]",
            ErrorKind::Conflict,
            "own WAN address 10.10.100.1 (gateway.wan_address)",
        ),
        bad(
            &edit(SITE, "name = \"site\"\n", ""),
            "tunnels[0].name",
            ErrorKind::MissingKey,
            "missing required key `name`",
        ),
        bad(
            &edit(SITE, remote, &format!("{remote}\ncolour = \"red\"")),
            "tunnels[0].colour",
            ErrorKind::UnknownKey,
            "unknown key `colour`",
        ),
    ];
    for c in &cases {
        let text = with_tunnels(&c.tunnels);
        let (line, key, kind, msg) = reject(&text);
        assert_eq!(
            (key.as_str(), kind),
            (c.key, c.kind),
            "{}: {msg}",
            c.tunnels
        );
        assert!(msg.contains(c.says), "{msg}");
        // Reported at the offending line, or at the [[tunnels]] header for
        // a missing key.
        let want = match (kind, key.rsplit('.').next()) {
            (ErrorKind::MissingKey, _) => last_line_starting(&text, "[[tunnels]]"),
            (ErrorKind::UnknownKey, _) => line_of(&text, "colour"),
            (_, Some(k)) => {
                let field = k.split('[').next().unwrap_or(k);
                last_line_starting(&text, &format!("{field} = "))
            }
            (_, None) => unreachable!(),
        };
        assert_eq!(line, want, "{}: {msg}", c.tunnels);
    }
}

#[test]
fn tunnels_conflict_with_each_other() {
    let second = |name: &str, local: &str, remote: &str| {
        format!(
            "[[tunnels]]\nname = \"{name}\"\npeer = \"gwb\"\nlocal = [\"{local}\"]\nremote = [\"{remote}\"]\n"
        )
    };
    let cases = [
        (
            second("site", "10.10.2.0/24", "10.40.0.0/16"),
            "tunnels[1].name",
            "tunnel name `site` is already used by tunnels[0] (line ",
        ),
        (
            second("other", "10.10.2.0/24", "10.30.5.0/24"),
            "tunnels[1].remote[0]",
            "10.30.5.0/24 overlaps 10.30.0.0/16 (tunnels[0].remote[1], line ",
        ),
        (
            second("other", "10.10.2.0/24", "10.30.5.0/24"),
            "tunnels[1].remote[0]",
            "tunnel `site` routes it already",
        ),
        (
            second("other", "10.20.1.0/24", "10.40.0.0/16"),
            "tunnels[1].local[0]",
            "tunnel `site` puts it behind peer `gwb`, not behind this gateway",
        ),
        (
            second("other", "10.10.2.0/24", "10.10.1.128/25"),
            "tunnels[1].remote[0]",
            "tunnel `site` puts it behind this gateway, not behind a peer",
        ),
    ];
    for (tunnel, want_key, says) in cases {
        let text = with_tunnels(&format!("{SITE}\n{tunnel}"));
        let (line, key, kind, msg) = reject(&text);
        assert_eq!(
            (key.as_str(), kind),
            (want_key, ErrorKind::Conflict),
            "{msg}"
        );
        assert!(msg.contains(says), "{msg}");
        let field = want_key
            .rsplit('.')
            .next()
            .unwrap()
            .split('[')
            .next()
            .unwrap();
        assert_eq!(
            line,
            last_line_starting(&text, &format!("{field} = ")),
            "{msg}"
        );
        if want_key == "tunnels[1].name" {
            let first = text
                .lines()
                .position(|l| l == "name = \"site\"")
                .expect("present")
                + 1;
            assert!(msg.contains(&format!("(line {first})")), "{msg}");
        }
    }
}

#[test]
fn tunnel_routes_must_fit_the_region() {
    let text = edit(&with_tunnels(SITE), "routes = 256", "routes = 1");
    let (line, key, kind, msg) = reject(&text);
    assert_eq!(
        (line, key.as_str(), kind),
        (
            last_line_starting(&text, "remote = "),
            "tunnels[0].remote",
            ErrorKind::Conflict
        )
    );
    let routes_line = line_of(&text, "routes = 1");
    assert!(
        msg.contains(&format!(
            "the tunnels' remote prefixes need 2 route entries; the region holds 1 (shm.routes, line {routes_line})"
        )),
        "{msg}"
    );
}

/// The examples' commented-out `[[tunnels]]` entries load once
/// uncommented, and mirror each other.
#[test]
fn commented_tunnel_examples_load() {
    let mut sides = Vec::new();
    for gw in ["gwa", "gwb"] {
        let text = fs::read_to_string(configs_dir().join(format!("control-testbed-{gw}.toml")))
            .expect("read example");
        let keys = [
            "#[[tunnels]]",
            "#name = ",
            "#peer = ",
            "#local = ",
            "#remote = ",
        ];
        let uncommented: String = text
            .lines()
            .map(|l| match keys.iter().any(|k| l.starts_with(k)) {
                true => &l[1..],
                false => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(uncommented, text.trim_end(), "{gw}: no commented tunnel");
        let (_dir, r) = load(&uncommented);
        let c = r.unwrap_or_else(|e| panic!("{gw}: {e}"));
        assert_eq!(c.tunnels.len(), 1, "{gw}");
        sides.push(c.tunnels[0].clone());
    }
    let (a, b) = (&sides[0], &sides[1]);
    assert_eq!(a.name, b.name);
    assert_eq!((a.peer.as_str(), b.peer.as_str()), ("gwb", "gwa"));
    assert_eq!((&a.local, &a.remote), (&b.remote, &b.local));
}

#[test]
fn control_sockets_take_ipv6_addresses() {
    let ex = gwa_example();
    let v6 = edit(
        &edit(
            &edit(
                &ex,
                "peer_listen = \"10.99.0.1:5000\"",
                "peer_listen = \"[fd00:99::1]:5000\"",
            ),
            "control_address = \"10.99.0.2:5000\"",
            "control_address = \"[fd00:99::2]:5000\"",
        ),
        "listen = \"10.99.0.1:5001\"",
        "listen = \"[::]:5001\"",
    );
    let (_dir, c) = load(&v6);
    let c = c.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.control.peer_listen, "[fd00:99::1]:5000".parse().unwrap());
    assert_eq!(
        c.peers[0].control_address,
        "[fd00:99::2]:5000".parse().unwrap()
    );
    assert_eq!(
        c.api.as_ref().unwrap().listen,
        Some("[::]:5001".parse().unwrap())
    );
    // A peer's address must be a host, and the brackets are required.
    for (bad, needle) in [
        ("\"[::]:5000\"", "not a unicast address"),
        ("\"[ff02::1]:5000\"", "not a unicast address"),
        (
            "\"fd00:99::2:5000\"",
            "like 10.10.100.1:5000 or [fd00:10:100::1]:5000",
        ),
    ] {
        let text = edit(&v6, "\"[fd00:99::2]:5000\"", bad);
        let (_, key, kind, msg) = reject(&text);
        assert_eq!(
            (key.as_str(), kind),
            ("peers[0].control_address", ErrorKind::BadValue),
            "{msg}"
        );
        assert!(msg.contains(needle), "{bad}: {msg}");
    }
}

/// gwA's example on IPv6: its LAN and WAN addresses, its peer's WAN
/// address, the allow-list and a tunnel all IPv6.
fn gwa_ipv6() -> String {
    let text = gwa_example();
    let text = edit(
        &text,
        "lan_address = \"10.10.1.1\"",
        "lan_address = \"fd00:10:1::1\"",
    );
    let text = edit(
        &text,
        "wan_address = \"10.10.100.1\"",
        "wan_address = \"fd00:10:100::1\"",
    );
    let text = edit(
        &text,
        "wan_address = \"10.10.200.1\"",
        "wan_address = \"fd00:10:200::1\"",
    );
    edit(
        &text,
        "targets = [\"10.10.1.0/24\", \"10.10.100.0/24\", \"10.10.200.0/24\", \"10.20.1.0/24\"]",
        "targets = [\"fd00:10:1::/64\", \"10.10.1.0/24\"]",
    )
}

#[test]
fn ipv6_gateway_peer_allow_list_and_tunnel_prefixes_load() {
    let tunnel = "\
[[tunnels]]
name = \"site6\"
peer = \"gwb\"
local = [\"fd00:10:1::/64\", \"10.10.1.0/24\"]
remote = [\"fd00:20::/32\", \"10.20.1.0/24\"]
";
    let (_dir, r) = load(&format!("{}\n{tunnel}", gwa_ipv6()));
    let c = r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.gateway.lan_address,
        "fd00:10:1::1".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        c.gateway.wan_address,
        "fd00:10:100::1".parse::<IpAddr>().unwrap()
    );
    let peer = c
        .peer_by_wan_address("fd00:10:200::1".parse().unwrap())
        .expect("the peer by its IPv6 WAN address");
    assert_eq!(peer.name, "gwb");
    let t = c.tunnel("site6").expect("tunnel");
    assert_eq!(
        t.remote,
        [
            "fd00:20::/32".parse().unwrap(),
            "10.20.1.0/24".parse().unwrap()
        ]
    );
    let rule = &c.auth.as_ref().expect("[auth]").allow[0];
    assert!(rule.permits("[fd00:10:1::2]:5100".parse().unwrap()));
    assert!(rule.permits("10.10.1.2:5100".parse().unwrap()));
    assert!(!rule.permits("[fd00:10:2::2]:5100".parse().unwrap()));
    // An IPv4 target never matches an IPv6 prefix, nor the reverse.
    assert!(!rule.permits("[::ffff:10.10.1.2]:5100".parse().unwrap()));
}

#[test]
fn ipv6_values_are_checked_at_their_key() {
    let v6 = gwa_ipv6();
    for (from, to, key, says) in [
        (
            "lan_address = \"fd00:10:1::1\"",
            "lan_address = \"ff02::1\"",
            "gateway.lan_address",
            "not a unicast address",
        ),
        (
            "wan_address = \"fd00:10:100::1\"",
            "wan_address = \"::ffff:10.10.100.1\"",
            "gateway.wan_address",
            "not a unicast address",
        ),
        (
            "wan_address = \"fd00:10:200::1\"",
            "wan_address = \"fd00:10:100::1\" # the peer's",
            "peers[0].wan_address",
            "own WAN address",
        ),
        (
            "\"fd00:10:1::/64\", \"10.10.1.0/24\"]",
            "\"fd00:10:1::1/64\"]",
            "auth.allow[0].targets[0]",
            "host bits",
        ),
        (
            "lan_address = \"fd00:10:1::1\"",
            "lan_address = \"fd00:10:1::g\"",
            "gateway.lan_address",
            "invalid IPv6 address",
        ),
    ] {
        let text = edit(&v6, from, to);
        let (line, k, _, msg) = reject(&text);
        assert_eq!(k, key, "{msg}");
        assert_eq!(line, line_of(&text, to), "{msg}");
        assert!(msg.contains(says), "{key}: {msg}");
    }
    // A tunnel's IPv6 remote prefix may not hold our own IPv6 WAN address.
    let tunnel = "\
[[tunnels]]
name = \"site6\"
peer = \"gwb\"
local = [\"fd00:10:1::/64\"]
remote = [\"fd00:10::/32\"]
";
    let (line, k, _, msg) = reject(&format!("{}\n{tunnel}", v6));
    assert_eq!(k, "tunnels[0].remote[0]", "{msg}");
    assert!(
        msg.contains("own LAN address") || msg.contains("own WAN address"),
        "{msg}"
    );
    assert!(line > 0);
}

#[test]
fn esp_address_moves_the_tunnel_to_the_other_family() {
    let text = edit(
        &gwa_example(),
        "wan_address = \"10.10.200.1\"",
        "wan_address = \"10.10.200.1\"\nesp_address = \"fd00:10:200::1\"",
    );
    let (_dir, r) = load(&text);
    let c = r.unwrap_or_else(|e| panic!("{e}"));
    let p = c.peer("gwb").expect("gwb");
    assert_eq!(p.wan_address, IpAddr::from([10, 10, 200, 1]));
    assert_eq!(
        p.outer_address(),
        "fd00:10:200::1".parse::<IpAddr>().unwrap()
    );
    // Without it the tunnel runs to wan_address.
    let (_dir, r) = load(&gwa_example());
    let c = r.unwrap_or_else(|e| panic!("{e}"));
    let p = c.peer("gwb").expect("gwb");
    assert_eq!((p.esp_address, p.outer_address()), (None, p.wan_address));
    // Of the same family as wan_address it would change nothing: refused.
    let same = edit(
        &gwa_example(),
        "wan_address = \"10.10.200.1\"",
        "wan_address = \"10.10.200.1\"\nesp_address = \"10.10.200.2\"",
    );
    let (line, key, kind, msg) = reject(&same);
    assert_eq!(
        (key.as_str(), kind),
        ("peers[0].esp_address", ErrorKind::Conflict),
        "{msg}"
    );
    assert_eq!(line, line_of(&same, "esp_address"));
    assert!(msg.contains("other family"), "{msg}");
}

#[test]
fn api_connection_limits_default_and_are_checked() {
    use scistream_control::service::guard::Limits;
    let (_dir, r) = load(&gwa_example());
    let api = r.unwrap_or_else(|e| panic!("{e}")).api.expect("[api]");
    assert_eq!(api.limits, Limits::default());
    let with = |keys: &str| {
        edit(
            &gwa_example(),
            "max_num_conn = 64",
            &format!("max_num_conn = 64\n{keys}"),
        )
    };
    let (_dir, r) = load(&with(
        "max_connections = 100\nmax_connections_per_source = 10\nhandshake_timeout_seconds = 3",
    ));
    let api = r.unwrap_or_else(|e| panic!("{e}")).api.expect("[api]");
    assert_eq!(
        api.limits,
        Limits {
            max_connections: 100,
            per_source: 10,
            handshake_timeout: Duration::from_secs(3)
        }
    );
    for (keys, key) in [
        ("max_connections = 0", "api.max_connections"),
        (
            "max_connections = 100\nmax_connections_per_source = 101",
            "api.max_connections_per_source",
        ),
        (
            "handshake_timeout_seconds = 0",
            "api.handshake_timeout_seconds",
        ),
    ] {
        let (_, k, kind, msg) = reject(&with(keys));
        assert_eq!((k.as_str(), kind), (key, ErrorKind::BadValue), "{msg}");
        assert!(msg.contains("out of range"), "{msg}");
    }
}
