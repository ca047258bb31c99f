//! Validation: raw schema values -> [`ControlConfig`], checking every rule,
//! each failure located at the key it concerns.

mod tunnels;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};

use scistream_region::Algorithm;
use scistream_tomldoc::values::{check_gateway_name, parse_ip};
use scistream_tomldoc::Document;

use scistream_tomldoc::values::parse_prefix_any;

use super::files::{check_certificates, check_private_key, check_readable_file, check_secret_file};
use super::raw::{
    RawAllow, RawApi, RawAuth, RawConfig, RawControl, RawGateway, RawIdentity, RawJwt, RawKeys,
    RawLogging, RawMetrics, RawPeer, RawPorts, RawRegistry, RawShm,
};
use super::*;

type Res<T> = Result<T, ConfigError>;

/// Checks `raw` and builds the typed configuration.
pub(super) fn validate(raw: RawConfig, doc: &Document<'_>) -> Res<ControlConfig> {
    let base = base_dir(doc.origin());
    let gateway = gateway(&raw.gateway, doc)?;
    let identity = identity(&raw.identity, &base, doc)?;
    let control = control(&raw.control, &base, doc)?;
    let shm = shm(&raw.shm, doc)?;
    let registry = registry(&raw.registry, &base, doc)?;
    let keys = keys(&raw.keys, doc)?;
    let ports = ports(&raw.ports, &gateway, &control, doc)?;
    let peers = peers(&raw.peers, &gateway, &base, doc)?;
    let logging = logging(&raw.logging, &base, doc)?;
    let api = match &raw.api {
        Some(a) => Some(api(a, &identity, &control, &ports, &gateway, &base, doc)?),
        None => None,
    };
    let auth = match (&raw.auth, &api) {
        (Some(a), Some(api)) => Some(auth(a, api, &base, doc)?),
        (Some(_), None) => {
            return Err(doc.conflict(
                "auth",
                "[auth] is set but there is no [api] section; authentication applies to the gRPC API only",
            ))
        }
        (None, Some(_)) => {
            return Err(doc.error(
                "api",
                ErrorKind::MissingKey,
                "[api] needs an [auth] section (mode \"token_file\" or \"jwt\", and [[auth.allow]] rules)",
            ))
        }
        (None, None) => None,
    };
    let tunnels = tunnels::tunnels(&raw.tunnels, &gateway, &peers, &shm, doc)?;
    let metrics = metrics(raw.metrics.as_ref(), &control, api.as_ref(), doc)?;
    Ok(ControlConfig {
        gateway,
        identity,
        control,
        shm,
        registry,
        keys,
        ports,
        peers,
        logging,
        api,
        auth,
        tunnels,
        metrics,
    })
}

fn metrics(
    m: Option<&RawMetrics>,
    control: &ControlSection,
    api: Option<&ApiSection>,
    doc: &Document<'_>,
) -> Res<MetricsSection> {
    let Some(listen) = m.and_then(|m| m.listen.as_ref()) else {
        return Ok(MetricsSection::default());
    };
    let listen = socket_addr(doc, "metrics.listen", listen, true)?;
    let clash = |other: SocketAddr| {
        (listen.ip() == other.ip() || listen.ip().is_unspecified() || other.ip().is_unspecified())
            && listen.port() == other.port()
    };
    if clash(control.peer_listen) {
        return Err(doc.conflict(
            "metrics.listen",
            format!(
                "{listen} collides with the peer channel's {} (control.peer_listen, line {})",
                control.peer_listen,
                doc.line_of("control.peer_listen")
            ),
        ));
    }
    if let Some(api_listen) = api.and_then(|a| a.listen) {
        if clash(api_listen) {
            return Err(doc.conflict(
                "metrics.listen",
                format!(
                    "{listen} collides with the gRPC API's {api_listen} (api.listen, line {})",
                    doc.line_of("api.listen")
                ),
            ));
        }
    }
    Ok(MetricsSection {
        listen: Some(listen),
    })
}

/// The directory relative paths are resolved against: the configuration
/// file's directory (the current directory for a bare file name).
fn base_dir(origin: &Path) -> PathBuf {
    match origin.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A non-empty path from the file, resolved against `base` if relative.
fn path(doc: &Document<'_>, key: &str, s: &str, base: &Path) -> Res<PathBuf> {
    if s.is_empty() {
        return Err(doc.bad_value(key, "empty path"));
    }
    if s.contains('\0') {
        return Err(doc.bad_value(key, "path contains a NUL byte"));
    }
    let p = Path::new(s);
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    })
}

/// An integer at `key` that must lie in `lo..=hi`, or `default` if absent.
fn int<T>(doc: &Document<'_>, key: &str, v: Option<i64>, lo: T, hi: T, default: T) -> Res<T>
where
    T: TryFrom<i64> + Into<i128> + Copy + std::fmt::Display,
{
    let Some(v) = v else {
        return Ok(default);
    };
    let out_of_range = || doc.bad_value(key, format!("{v} is out of range; expected {lo} to {hi}"));
    if i128::from(v) < lo.into() || i128::from(v) > hi.into() {
        return Err(out_of_range());
    }
    T::try_from(v).map_err(|_| out_of_range())
}

/// A unicast IPv4 or IPv6 address (not unspecified, broadcast, multicast
/// or an IPv4-mapped IPv6 address).
fn unicast(doc: &Document<'_>, key: &str, s: &str) -> Res<IpAddr> {
    let ip = parse_ip(s).map_err(|m| doc.bad_value(key, m))?;
    let not_unicast = match ip {
        IpAddr::V4(v4) => v4.is_broadcast(),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
    };
    if ip.is_unspecified() || ip.is_multicast() || not_unicast {
        return Err(doc.bad_value(
            key,
            format!("{ip} is not a unicast address; a host address is required"),
        ));
    }
    Ok(ip)
}

/// An "a.b.c.d:port" or "[v6]:port" address with a non-zero port; `any_ok`
/// allows the unspecified address (0.0.0.0 or [::]).
fn socket_addr(doc: &Document<'_>, key: &str, s: &str, any_ok: bool) -> Res<SocketAddr> {
    let a: SocketAddr = s.parse().map_err(|_| {
        doc.bad_value(
            key,
            format!("invalid address `{s}`; expected an address and port like 10.10.100.1:5000 or [fd00:10:100::1]:5000"),
        )
    })?;
    if a.port() == 0 {
        return Err(doc.bad_value(key, format!("port 0 in `{s}`; a fixed port is required")));
    }
    let ip = a.ip();
    let broadcast = matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
    if (ip.is_unspecified() && !any_ok) || broadcast || ip.is_multicast() {
        return Err(doc.bad_value(
            key,
            format!("{ip} is not a unicast address; a host address is required"),
        ));
    }
    Ok(a)
}

fn gateway(g: &RawGateway, doc: &Document<'_>) -> Res<GatewaySection> {
    check_gateway_name(&g.name).map_err(|m| doc.bad_value("gateway.name", m))?;
    let lan_address = unicast(doc, "gateway.lan_address", &g.lan_address)?;
    let wan_address = unicast(doc, "gateway.wan_address", &g.wan_address)?;
    if lan_address == wan_address {
        return Err(doc.conflict(
            "gateway.wan_address",
            format!(
                "the WAN address {wan_address} is also the LAN address (line {}); the two ports need different addresses",
                doc.line_of("gateway.lan_address")
            ),
        ));
    }
    let udp_port = int(
        doc,
        "gateway.udp_port",
        g.udp_port,
        1,
        u16::MAX,
        DEFAULT_UDP_PORT,
    )?;
    Ok(GatewaySection {
        name: g.name.clone(),
        lan_address,
        wan_address,
        udp_port,
    })
}

fn identity(i: &RawIdentity, base: &Path, doc: &Document<'_>) -> Res<IdentitySection> {
    let cert = path(doc, "identity.cert", &i.cert, base)?;
    check_certificates(&cert, "certificate").map_err(|m| doc.bad_value("identity.cert", m))?;
    let key = path(doc, "identity.key", &i.key, base)?;
    check_private_key(&key).map_err(|m| doc.bad_value("identity.key", m))?;
    Ok(IdentitySection { cert, key })
}

fn control(c: &RawControl, base: &Path, doc: &Document<'_>) -> Res<ControlSection> {
    let peer_listen = socket_addr(doc, "control.peer_listen", &c.peer_listen, true)?;
    let admin_socket = path(doc, "control.admin_socket", &c.admin_socket, base)?;
    if admin_socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(doc.bad_value(
            "control.admin_socket",
            format!(
                "socket path {} is {} bytes long; Unix socket paths allow at most {MAX_SOCKET_PATH}",
                admin_socket.display(),
                admin_socket.as_os_str().len()
            ),
        ));
    }
    Ok(ControlSection {
        peer_listen,
        admin_socket,
    })
}

fn shm(s: &RawShm, doc: &Document<'_>) -> Res<ShmSection> {
    let p = Path::new(&s.path);
    if !p.is_absolute() {
        return Err(doc.bad_value(
            "shm.path",
            format!(
                "`{}` is relative; the region is shared with s2ds, so give an absolute path like /dev/shm/scistream-gwa",
                s.path
            ),
        ));
    }
    if p.components().any(|c| c == Component::ParentDir) || p.file_name().is_none() {
        return Err(doc.bad_value(
            "shm.path",
            format!("`{}` must name a file, without `..`", s.path),
        ));
    }
    let table = |key, v, default| int(doc, key, v, 1, MAX_SHM_TABLE, default);
    Ok(ShmSection {
        path: p.to_path_buf(),
        sas: table("shm.sas", s.sas, DEFAULT_SHM_SAS)?,
        routes: table("shm.routes", s.routes, DEFAULT_SHM_ROUTES)?,
        listeners: table("shm.listeners", s.listeners, DEFAULT_SHM_LISTENERS)?,
        workers: int(
            doc,
            "shm.workers",
            s.workers,
            1,
            MAX_SHM_WORKERS,
            DEFAULT_SHM_WORKERS,
        )?,
    })
}

fn registry(r: &RawRegistry, base: &Path, doc: &Document<'_>) -> Res<RegistrySection> {
    let path = path(doc, "registry.path", &r.path, base)?;
    if path.is_dir() {
        return Err(doc.bad_value(
            "registry.path",
            format!(
                "{} is a directory; name the database file inside it",
                path.display()
            ),
        ));
    }
    Ok(RegistrySection { path })
}

fn keys(k: &RawKeys, doc: &Document<'_>) -> Res<KeysSection> {
    let algorithm = match k.algorithm.as_deref() {
        None | Some("aes-128-gcm") => Algorithm::Aes128Gcm,
        Some("aes-256-gcm") => Algorithm::Aes256Gcm,
        Some(other) => {
            return Err(doc.bad_value(
                "keys.algorithm",
                format!("unknown algorithm `{other}`; expected `aes-128-gcm` or `aes-256-gcm`"),
            ))
        }
    };
    let rekey_seconds = int(
        doc,
        "keys.rekey_seconds",
        k.rekey_seconds,
        1,
        MAX_REKEY_SECONDS,
        DEFAULT_REKEY_SECONDS,
    )?;
    let rekey_packets = int(
        doc,
        "keys.rekey_packets",
        k.rekey_packets,
        MIN_REKEY_PACKETS,
        MAX_REKEY_VOLUME,
        DEFAULT_REKEY_PACKETS,
    )?;
    let rekey_bytes = int(
        doc,
        "keys.rekey_bytes",
        k.rekey_bytes,
        MIN_REKEY_BYTES,
        MAX_REKEY_VOLUME,
        DEFAULT_REKEY_BYTES,
    )?;
    let grace_seconds = int(
        doc,
        "keys.grace_seconds",
        k.grace_seconds,
        1,
        MAX_GRACE_SECONDS,
        DEFAULT_GRACE_SECONDS,
    )?;
    if grace_seconds >= rekey_seconds {
        return Err(doc.conflict(
            "keys.grace_seconds",
            format!(
                "grace period {grace_seconds} s is not shorter than the rekey interval {rekey_seconds} s; the old SA must be gone before the next rekey"
            ),
        ));
    }
    let lanes = int(
        doc,
        "keys.lanes",
        k.lanes,
        1,
        crate::peer::keys::MAX_LANES as u32,
        1,
    )?;
    Ok(KeysSection {
        algorithm,
        rekey_seconds,
        rekey_packets,
        rekey_bytes,
        grace_seconds,
        lanes,
    })
}

fn ports(
    p: &RawPorts,
    gateway: &GatewaySection,
    control: &ControlSection,
    doc: &Document<'_>,
) -> Res<PortsSection> {
    const KEY: &str = "ports.listener_range";
    let Some(range) = &p.listener_range else {
        return Ok(PortsSection::default());
    };
    let [first, last] = range.as_slice() else {
        return Err(doc.bad_value(
            KEY,
            format!(
                "{} element(s); expected two ports [first, last] like [5100, 5199]",
                range.len()
            ),
        ));
    };
    let first: u16 = int(
        doc,
        "ports.listener_range[0]",
        Some(*first),
        MIN_LISTENER_PORT,
        u16::MAX,
        0,
    )?;
    let last: u16 = int(
        doc,
        "ports.listener_range[1]",
        Some(*last),
        MIN_LISTENER_PORT,
        u16::MAX,
        0,
    )?;
    if first > last {
        return Err(doc.bad_value(KEY, format!("first port {first} is above last port {last}")));
    }
    let listener_range = first..=last;
    if listener_range.contains(&gateway.udp_port) {
        return Err(doc.conflict(
            KEY,
            format!(
                "the range {first}..={last} includes the ESP-in-UDP port {} (gateway.udp_port)",
                gateway.udp_port
            ),
        ));
    }
    let listen = control.peer_listen;
    let shares_ip = listen.ip().is_unspecified()
        || listen.ip() == gateway.wan_address
        || listen.ip() == gateway.lan_address;
    if shares_ip && listener_range.contains(&listen.port()) {
        return Err(doc.conflict(
            KEY,
            format!(
                "the range {first}..={last} includes the peer-channel port of {listen} (control.peer_listen, line {})",
                doc.line_of("control.peer_listen")
            ),
        ));
    }
    Ok(PortsSection { listener_range })
}

fn peers(
    raw: &[RawPeer],
    gateway: &GatewaySection,
    base: &Path,
    doc: &Document<'_>,
) -> Res<Vec<PeerConfig>> {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut wans: HashMap<IpAddr, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, p) in raw.iter().enumerate() {
        let key = |k: &str| format!("peers[{i}].{k}");
        check_gateway_name(&p.name)
            .map_err(|m| doc.bad_value(&key("name"), m.replace("gateway name", "peer name")))?;
        if p.name == gateway.name {
            return Err(doc.conflict(
                &key("name"),
                format!("peer `{}` has this gateway's own name", p.name),
            ));
        }
        if let Some(j) = names.insert(&p.name, i) {
            return Err(doc.conflict(
                &key("name"),
                format!(
                    "peer name `{}` is already used by peers[{j}] (line {})",
                    p.name,
                    doc.line_of(&format!("peers[{j}].name"))
                ),
            ));
        }
        let trust = match (&p.ca, &p.pin_sha256) {
            (Some(_), Some(_)) => {
                return Err(doc.conflict(
                    &key("pin_sha256"),
                    format!(
                        "peer `{}` sets both `ca` and `pin_sha256`; set exactly one",
                        p.name
                    ),
                ))
            }
            (None, None) => {
                return Err(doc.missing(
                    &key("ca"),
                    format!(
                        "peer `{}` needs `ca` (a CA certificate file) or `pin_sha256` (the SHA-256 of its public key)",
                        p.name
                    ),
                ))
            }
            (Some(ca), None) => {
                let ca = path(doc, &key("ca"), ca, base)?;
                check_certificates(&ca, "CA").map_err(|m| doc.bad_value(&key("ca"), m))?;
                PeerTrust::Ca(ca)
            }
            (None, Some(pin)) => PeerTrust::Pin(parse_pin(pin).map_err(|m| doc.bad_value(&key("pin_sha256"), m))?),
        };
        let wan_address = unicast(doc, &key("wan_address"), &p.wan_address)?;
        if wan_address == gateway.wan_address {
            return Err(doc.conflict(
                &key("wan_address"),
                format!("{wan_address} is this gateway's own WAN address (gateway.wan_address)"),
            ));
        }
        if let Some(j) = wans.insert(wan_address, i) {
            return Err(doc.conflict(
                &key("wan_address"),
                format!(
                    "WAN address {wan_address} is already peers[{j}]'s (line {}); remote listeners map to peers by this address",
                    doc.line_of(&format!("peers[{j}].wan_address"))
                ),
            ));
        }
        let esp_address = p
            .esp_address
            .as_ref()
            .map(|s| unicast(doc, &key("esp_address"), s))
            .transpose()?;
        if let Some(esp) = esp_address {
            if esp.is_ipv4() == wan_address.is_ipv4() {
                return Err(doc.conflict(
                    &key("esp_address"),
                    format!(
                        "{esp} is of the family of wan_address {wan_address}; esp_address is for a WAN of the other family (omit it to send ESP to wan_address)"
                    ),
                ));
            }
        }
        let udp_port = int(
            doc,
            &key("udp_port"),
            p.udp_port,
            1,
            u16::MAX,
            DEFAULT_UDP_PORT,
        )?;
        let control_address = socket_addr(doc, &key("control_address"), &p.control_address, false)?;
        out.push(PeerConfig {
            name: p.name.clone(),
            trust,
            wan_address,
            esp_address,
            udp_port,
            control_address,
        });
    }
    Ok(out)
}

/// Parses 64 hex digits (colons between byte pairs allowed, as
/// `openssl ... -c` prints them) into a SHA-256 digest.
fn parse_pin(s: &str) -> Result<[u8; 32], String> {
    let digits: String = s.chars().filter(|&c| c != ':').collect();
    let bytes = hex::decode(&digits).map_err(|e| {
        format!("invalid pin `{s}`: {e}; expected 64 hex digits (SHA-256 of the peer's SubjectPublicKeyInfo)")
    })?;
    bytes.as_slice().try_into().map_err(|_| {
        format!(
            "pin is {} bytes; expected 32 (64 hex digits of a SHA-256 digest)",
            bytes.len()
        )
    })
}

fn logging(l: &RawLogging, base: &Path, doc: &Document<'_>) -> Res<LoggingSection> {
    let audit_file = match &l.audit_file {
        Some(f) => {
            let p = path(doc, "logging.audit_file", f, base)?;
            if p.is_dir() {
                return Err(doc.bad_value(
                    "logging.audit_file",
                    format!(
                        "{} is a directory; name the log file inside it",
                        p.display()
                    ),
                ));
            }
            Some(p)
        }
        None => None,
    };
    let Some(level) = &l.level else {
        return Ok(LoggingSection {
            audit_file,
            ..LoggingSection::default()
        });
    };
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map_err(|e| {
            doc.bad_value(
                "logging.level",
                format!(
                    "invalid filter `{level}`: {e}; expected a level (error, warn, info, debug, trace) or directives like `info,scistream_control=debug`"
                ),
            )
        })?;
    Ok(LoggingSection {
        level: level.clone(),
        audit_file,
    })
}

fn api(
    a: &RawApi,
    identity: &IdentitySection,
    control: &ControlSection,
    ports: &PortsSection,
    gateway: &GatewaySection,
    base: &Path,
    doc: &Document<'_>,
) -> Res<ApiSection> {
    let listen = match &a.listen {
        Some(s) => Some(socket_addr(doc, "api.listen", s, true)?),
        None => None,
    };
    if let Some(listen) = listen {
        let peer = control.peer_listen;
        let same_ip =
            listen.ip() == peer.ip() || listen.ip().is_unspecified() || peer.ip().is_unspecified();
        if same_ip && listen.port() == peer.port() {
            return Err(doc.conflict(
                "api.listen",
                format!(
                    "{listen} collides with the peer channel's {peer} (control.peer_listen, line {})",
                    doc.line_of("control.peer_listen")
                ),
            ));
        }
        let on_gateway_ip = listen.ip().is_unspecified()
            || listen.ip() == gateway.wan_address
            || listen.ip() == gateway.lan_address;
        if on_gateway_ip && ports.listener_range.contains(&listen.port()) {
            return Err(doc.conflict(
                "api.listen",
                format!(
                    "port {} is inside the listener ports {}..={} (ports.listener_range)",
                    listen.port(),
                    ports.listener_range.start(),
                    ports.listener_range.end()
                ),
            ));
        }
    }
    let cert = match &a.cert {
        Some(c) => {
            let cert = path(doc, "api.cert", c, base)?;
            check_certificates(&cert, "certificate").map_err(|m| doc.bad_value("api.cert", m))?;
            cert
        }
        None => identity.cert.clone(),
    };
    let key = match &a.key {
        Some(k) => {
            let key = path(doc, "api.key", k, base)?;
            check_private_key(&key).map_err(|m| doc.bad_value("api.key", m))?;
            key
        }
        None => identity.key.clone(),
    };
    let req_timeout: u32 = int(
        doc,
        "api.req_timeout_seconds",
        a.req_timeout_seconds,
        1,
        MAX_REQ_TIMEOUT_SECONDS,
        DEFAULT_REQ_TIMEOUT_SECONDS,
    )?;
    let max_num_conn = int(
        doc,
        "api.max_num_conn",
        a.max_num_conn,
        1,
        MAX_MAX_NUM_CONN,
        DEFAULT_MAX_NUM_CONN,
    )?;
    let client = match a.client_rate.as_deref() {
        None | Some("enforce") => ClientRate::Enforce,
        Some("ignore") => ClientRate::Ignore,
        Some(other) => {
            return Err(doc.bad_value(
                "api.client_rate",
                format!("{other:?}: expected \"enforce\" or \"ignore\""),
            ))
        }
    };
    let max_kbytes = int(
        doc,
        "api.max_rate_kbytes",
        a.max_rate_kbytes,
        0,
        MAX_MAX_RATE_KBYTES,
        0,
    )?;
    use crate::service::guard;
    let max_connections: u32 = int(
        doc,
        "api.max_connections",
        a.max_connections,
        1,
        1 << 20,
        guard::DEFAULT_MAX_CONNECTIONS as u32,
    )?;
    let per_source: u32 = int(
        doc,
        "api.max_connections_per_source",
        a.max_connections_per_source,
        1,
        max_connections,
        (guard::DEFAULT_PER_SOURCE as u32).min(max_connections),
    )?;
    let handshake_timeout: u32 = int(
        doc,
        "api.handshake_timeout_seconds",
        a.handshake_timeout_seconds,
        1,
        300,
        guard::DEFAULT_HANDSHAKE_TIMEOUT.as_secs() as u32,
    )?;
    Ok(ApiSection {
        listen,
        cert,
        key,
        insecure: a.insecure.unwrap_or(false),
        req_timeout: Duration::from_secs(req_timeout.into()),
        max_num_conn,
        rate: RatePolicy { client, max_kbytes },
        limits: guard::Limits {
            max_connections: max_connections as usize,
            per_source: per_source as usize,
            handshake_timeout: Duration::from_secs(handshake_timeout.into()),
        },
    })
}

/// The value of `auth.mode`.
enum ModeKind {
    None,
    TokenFile,
    Jwt,
}

fn auth(a: &RawAuth, api: &ApiSection, base: &Path, doc: &Document<'_>) -> Res<AuthSection> {
    let mode_name = a.mode.as_str();
    let kind = match mode_name {
        "none" => ModeKind::None,
        "token_file" => ModeKind::TokenFile,
        "jwt" => ModeKind::Jwt,
        other => {
            return Err(doc.bad_value(
                "auth.mode",
                format!("unknown mode `{other}`; expected \"token_file\", \"jwt\" or \"none\""),
            ))
        }
    };
    // Settings of the other modes are mistakes, not silently ignored.
    if a.token_file.is_some() && mode_name != "token_file" {
        return Err(doc.conflict(
            "auth.token_file",
            format!("auth.token_file is set but auth.mode is \"{mode_name}\"; it is used only with mode \"token_file\""),
        ));
    }
    if a.jwt.is_some() && mode_name != "jwt" {
        return Err(doc.conflict(
            "auth.jwt",
            format!("[auth.jwt] is set but auth.mode is \"{mode_name}\"; it is used only with mode \"jwt\""),
        ));
    }
    let mode = match kind {
        ModeKind::None => {
            if !api.insecure {
                return Err(doc.conflict(
                    "auth.mode",
                    format!(
                        "auth.mode = \"none\" turns authentication off and needs api.insecure = true (line {}) to say so explicitly",
                        doc.line_of("api.insecure")
                    ),
                ));
            }
            AuthMode::None
        }
        ModeKind::TokenFile => {
            let Some(file) = &a.token_file else {
                return Err(doc.missing(
                    "auth.token_file",
                    "auth.mode = \"token_file\" needs auth.token_file (a TOML file of token hashes; see `s2cs hash-token`)",
                ));
            };
            let file = path(doc, "auth.token_file", file, base)?;
            check_secret_file(&file, "token").map_err(|m| doc.bad_value("auth.token_file", m))?;
            AuthMode::TokenFile(file)
        }
        ModeKind::Jwt => {
            let Some(jwt) = &a.jwt else {
                return Err(doc.missing(
                    "auth.jwt",
                    "auth.mode = \"jwt\" needs an [auth.jwt] section (jwks, issuer, audience, required_scope)",
                ));
            };
            AuthMode::Jwt(jwt_config(jwt, base, doc)?)
        }
    };
    if a.allow.is_empty() && mode != AuthMode::None {
        return Err(doc.missing(
            "auth.allow",
            "no [[auth.allow]] rule: every request would be refused; add at least one rule with `identity` or `scope` and `targets`",
        ));
    }
    let allow = a
        .allow
        .iter()
        .enumerate()
        .map(|(i, r)| allow_rule(i, r, doc))
        .collect::<Res<Vec<_>>>()?;
    Ok(AuthSection { mode, allow })
}

/// A string setting that must be non-empty.
fn non_empty(doc: &Document<'_>, key: &str, s: &str) -> Res<String> {
    if s.trim().is_empty() {
        return Err(doc.bad_value(key, "empty value"));
    }
    Ok(s.to_owned())
}

fn jwt_config(j: &RawJwt, base: &Path, doc: &Document<'_>) -> Res<JwtConfig> {
    let jwks = path(doc, "auth.jwt.jwks", &j.jwks, base)?;
    check_readable_file(&jwks, "JWKS").map_err(|m| doc.bad_value("auth.jwt.jwks", m))?;
    let issuer = non_empty(doc, "auth.jwt.issuer", &j.issuer)?;
    let audience = non_empty(doc, "auth.jwt.audience", &j.audience)?;
    let required_scope = non_empty(doc, "auth.jwt.required_scope", &j.required_scope)?;
    if required_scope.chars().any(char::is_whitespace) {
        return Err(doc.bad_value(
            "auth.jwt.required_scope",
            "a scope cannot contain whitespace (the `scope` claim is a space-separated list)",
        ));
    }
    let leeway: u32 = int(
        doc,
        "auth.jwt.leeway_seconds",
        j.leeway_seconds,
        0,
        MAX_JWT_LEEWAY_SECONDS,
        DEFAULT_JWT_LEEWAY_SECONDS,
    )?;
    Ok(JwtConfig {
        jwks,
        issuer,
        audience,
        required_scope,
        leeway: Duration::from_secs(leeway.into()),
    })
}

fn allow_rule(i: usize, r: &RawAllow, doc: &Document<'_>) -> Res<AllowRule> {
    let key = |k: &str| format!("auth.allow[{i}].{k}");
    let subject = match (&r.identity, &r.scope) {
        (Some(_), Some(_)) => {
            return Err(doc.conflict(
                &key("scope"),
                "the rule sets both `identity` and `scope`; set exactly one",
            ))
        }
        (None, None) => {
            return Err(doc.missing(
                &key("identity"),
                "the rule needs `identity` (a user) or `scope` (a token scope)",
            ))
        }
        (Some(id), None) => AllowSubject::Identity(non_empty(doc, &key("identity"), id)?),
        (None, Some(scope)) => AllowSubject::Scope(non_empty(doc, &key("scope"), scope)?),
    };
    if r.targets.is_empty() {
        return Err(doc.bad_value(
            &key("targets"),
            "no prefix; list the IPv4 or IPv6 prefixes this rule allows, like [\"10.10.1.0/24\", \"fd00:10:1::/64\"]",
        ));
    }
    let targets = r
        .targets
        .iter()
        .enumerate()
        .map(|(j, t)| {
            parse_prefix_any(t).map_err(|m| doc.bad_value(&key(&format!("targets[{j}]")), m))
        })
        .collect::<Res<Vec<_>>>()?;
    let ports = match &r.ports {
        None => vec![1..=u16::MAX],
        Some(list) if list.is_empty() => return Err(doc.bad_value(
            &key("ports"),
            "no port range; omit `ports` to allow every port, or list ranges like [[1024, 65535]]",
        )),
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(j, pair)| port_range(doc, &key(&format!("ports[{j}]")), pair))
            .collect::<Res<Vec<_>>>()?,
    };
    Ok(AllowRule {
        subject,
        targets,
        ports,
    })
}

/// A `[first, last]` inclusive port range within 1..=65535.
fn port_range(doc: &Document<'_>, key: &str, pair: &[i64]) -> Res<RangeInclusive<u16>> {
    let [first, last] = pair else {
        return Err(doc.bad_value(
            key,
            format!(
                "{} element(s); expected two ports [first, last] like [1024, 65535]",
                pair.len()
            ),
        ));
    };
    let first: u16 = int(doc, &format!("{key}[0]"), Some(*first), 1, u16::MAX, 1)?;
    let last: u16 = int(doc, &format!("{key}[1]"), Some(*last), 1, u16::MAX, 1)?;
    if first > last {
        return Err(doc.bad_value(key, format!("first port {first} is above last port {last}")));
    }
    Ok(first..=last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins() {
        let hex64 = "ab".repeat(32);
        assert_eq!(parse_pin(&hex64), Ok([0xab; 32]));
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_pin(&colons), Ok([0xab; 32]));
        assert!(parse_pin("abc").expect_err("odd").contains("invalid pin"));
        assert!(parse_pin("zz")
            .expect_err("not hex")
            .contains("invalid pin"));
        assert!(parse_pin(&"ab".repeat(31))
            .expect_err("short")
            .contains("pin is 31 bytes"));
    }

    #[test]
    fn base_dirs() {
        assert_eq!(base_dir(Path::new("gw.toml")), PathBuf::from("."));
        assert_eq!(base_dir(Path::new("a/gw.toml")), PathBuf::from("a"));
        assert_eq!(
            base_dir(Path::new("/etc/s/gw.toml")),
            PathBuf::from("/etc/s")
        );
    }
}
