//! Validation of the tunnel sections.

use crate::tunnel::MAX_LANES;
use std::collections::HashMap;

use zeroize::Zeroizing;

use super::*;
use crate::config::raw::{RawListener, RawPeer, RawSa, RawTunnel, RawTunnelRoute};
use crate::config::tunnel::{
    Direction, Keying, ListenerConfig, ListenerRole, Peer, SaConfig, TunnelRoute, TunnelRoute6,
    TunnelSection, DEFAULT_NAT_PORT_BASE, DEFAULT_NAT_SLOTS, DEFAULT_UDP_PORT, MIN_SPI,
};
use crate::crypto::{Algorithm, EngineKind};

/// Checks the tunnel sections; None when the file has none of them.
pub(super) fn tunnel(
    raw: &RawConfig,
    ports: &Ports,
    routes: &[Route],
    routes6: &[Route6],
    cx: &Document<'_>,
) -> Res<Option<TunnelSection>> {
    let any = raw.tunnel.is_some()
        || !raw.peers.is_empty()
        || !raw.sas.is_empty()
        || !raw.tunnel_routes.is_empty();
    if !any {
        return Ok(None);
    }
    let Some(t) = &raw.tunnel else {
        let what = if !raw.peers.is_empty() {
            "peers"
        } else if !raw.sas.is_empty() {
            "sas"
        } else if !raw.tunnel_routes.is_empty() {
            "tunnel_routes"
        } else {
            "listeners"
        };
        return Err(cx.error_at_key(
            KeyPath::of(&["tunnel"]),
            ErrorKind::MissingKey,
            format!("[[{what}]] needs a [tunnel] section (engine, udp_port)"),
        ));
    };
    let (engine, udp_port) = section(t, cx)?;
    let keying = keying(t, raw, cx)?;
    let peers = peers(&raw.peers, udp_port, ports, (routes, routes6), cx)?;
    let sas = sas(&raw.sas, &peers, cx)?;
    let (routes, routes6) = tunnel_routes(&raw.tunnel_routes, &sas, ports, cx)?;
    let (nat_port_base, nat_slots) = nat_pool(t, cx)?;
    let listeners = listeners(&raw.listeners, &sas, ports, nat_port_base, nat_slots, cx)?;
    let tcp_mss = tcp_mss(t, ports, cx)?;
    Ok(Some(TunnelSection {
        engine,
        udp_port,
        peers,
        sas,
        routes,
        routes6,
        listeners,
        nat_port_base,
        nat_slots,
        keying,
        tcp_mss,
    }))
}

/// `tcp_mss_clamp` (default on) and `tcp_mss`: the MSS limit is what fills
/// the tunnel's inner MTU, or a lower value the operator sets (a path with
/// a smaller MTU beyond the far gateway).
fn tcp_mss(t: &RawTunnel, ports: &Ports, cx: &Document<'_>) -> Res<Option<u16>> {
    let base = KeyPath::of(&["tunnel"]);
    let inner_mtu = crate::esp::inner_mtu(ports.wan.mtu);
    let fits = crate::wire::mss::ipv4_mss_for(inner_mtu);
    match (t.tcp_mss_clamp.unwrap_or(true), t.tcp_mss) {
        (false, Some(_)) => Err(cx.conflict(
            base.key("tcp_mss"),
            "`tcp_mss` needs `tcp_mss_clamp = true`",
        )),
        (false, None) => Ok(None),
        (true, None) => Ok(Some(fits)),
        (true, Some(v)) => {
            if v > i64::from(fits) {
                return Err(cx.bad_value(
                    base.key("tcp_mss"),
                    format!(
                        "tcp_mss {v} does not fit the tunnel: the inner MTU is {inner_mtu} (WAN MTU {}), so IPv4 TCP segments carry at most {fits} bytes",
                        ports.wan.mtu
                    ),
                ));
            }
            Ok(Some(cx.in_range::<u16>(
                &base.key("tcp_mss"),
                v,
                536,
                fits,
            )?))
        }
    }
}

/// `keying` and `shm_path`: with keying "control" the SAs, routes and
/// listeners come from s2cs, so the file must not define any.
fn keying(t: &RawTunnel, raw: &RawConfig, cx: &Document<'_>) -> Res<Keying> {
    let base = KeyPath::of(&["tunnel"]);
    match t.keying.as_deref().unwrap_or("manual") {
        "manual" => {
            if t.shm_path.is_some() {
                return Err(cx.conflict(
                    base.key("shm_path"),
                    "`shm_path` needs `keying = \"control\"`",
                ));
            }
            Ok(Keying::Manual)
        }
        "control" => {
            let Some(p) = &t.shm_path else {
                return Err(cx.error(
                    base.key("keying"),
                    ErrorKind::MissingKey,
                    "keying \"control\" needs `shm_path`, the region s2cs writes",
                ));
            };
            let shm_path = std::path::PathBuf::from(p);
            if !shm_path.is_absolute() {
                return Err(cx.bad_value(
                    base.key("shm_path"),
                    format!("`{p}` is not an absolute path"),
                ));
            }
            for (what, n) in [
                ("sas", raw.sas.len()),
                ("tunnel_routes", raw.tunnel_routes.len()),
                ("listeners", raw.listeners.len()),
            ] {
                if n > 0 {
                    return Err(cx.conflict(
                        KeyPath::of(&[what]).index(0),
                        format!(
                            "[[{what}]] cannot be used with keying \"control\": s2cs provides them"
                        ),
                    ));
                }
            }
            Ok(Keying::Control { shm_path })
        }
        other => Err(cx.bad_value(
            base.key("keying"),
            format!("unknown keying `{other}`; expected `manual` or `control`"),
        )),
    }
}

fn section(t: &RawTunnel, cx: &Document<'_>) -> Res<(EngineKind, u16)> {
    let base = KeyPath::of(&["tunnel"]);
    let engine = match t.engine.as_deref() {
        None => EngineKind::preferred(),
        Some(name) => engine(name).map_err(|m| cx.bad_value(base.key("engine"), m))?,
    };
    let udp_port = match t.udp_port {
        Some(p) => cx.in_range::<u16>(&base.key("udp_port"), p, 1, u16::MAX)?,
        None => DEFAULT_UDP_PORT,
    };
    Ok((engine, udp_port))
}

/// The engine a configuration names, if this build has it and it works here.
fn engine(name: &str) -> Result<EngineKind, String> {
    match EngineKind::from_name(name) {
        Some(kind) if kind.is_available() => Ok(kind),
        Some(kind) => Err(format!(
            "engine `{name}` cannot be used on this machine ({}); use `ring`",
            kind.describe()
        )),
        None if name == EngineKind::IPSEC_MB_NAME => Err(format!(
            "engine `{name}` is not built into this s2ds (cargo feature `ipsec-mb`); expected {}",
            engine_names()
        )),
        None => Err(format!(
            "unknown engine `{name}`; expected {}",
            engine_names()
        )),
    }
}

/// The accepted engine names, for messages: "`ring`, `aes-gcm` or `ipsec-mb`".
fn engine_names() -> String {
    let names: Vec<String> = EngineKind::ALL
        .iter()
        .map(|k| format!("`{}`", k.name()))
        .collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// `[[peers]]`: each a unique name and a WAN address, IPv4 or IPv6 (the
/// outer family of its SAs), reachable through the WAN port: on its
/// connected prefix of that family or covered by a `[[routes]]` entry via
/// wan. An IPv6 peer needs an IPv6 address on the WAN port (the outer
/// source).
fn peers(
    raw: &[RawPeer],
    default_port: u16,
    ports: &Ports,
    (routes, routes6): (&[Route], &[Route6]),
    cx: &Document<'_>,
) -> Res<Vec<Peer>> {
    let mut out: Vec<Peer> = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let base = KeyPath::of(&["peers"]).index(i);
        check_gateway_name(&p.name).map_err(|m| cx.bad_value(base.key("name"), m))?;
        if let Some(j) = out.iter().position(|q| q.name == p.name) {
            return Err(cx.conflict(
                base.key("name"),
                format!("duplicate peer name `{}` (also peers[{j}])", p.name),
            ));
        }
        let addr_path = base.key("address");
        let address: IpAddr = if looks_ipv6(&p.address) {
            parse_ipv6(&p.address)
                .map_err(|m| cx.bad_value(&addr_path, m))?
                .into()
        } else {
            parse_ipv4(&p.address)
                .map_err(|m| cx.bad_value(&addr_path, m))?
                .into()
        };
        let (via_wan, connected) = match address {
            IpAddr::V4(v4) => (
                ports.connected_to(v4) == Some(PortId::Wan)
                    || routes
                        .iter()
                        .any(|r| r.port == PortId::Wan && r.prefix.contains(&v4)),
                v4_prefix_text(&ports.wan),
            ),
            IpAddr::V6(v6) => {
                let Some(wan6) = ports.wan.connected_prefix6() else {
                    return Err(cx.conflict(
                        &addr_path,
                        format!(
                            "peer {v6} is IPv6, so its tunnel runs over IPv6, but ports.wan has no IPv6 address to send from; add one to ports.wan.address"
                        ),
                    ));
                };
                (
                    ports.connected_to6(v6) == Some(PortId::Wan)
                        || routes6
                            .iter()
                            .any(|r| r.port == PortId::Wan && r.prefix.contains(&v6)),
                    wan6.to_string(),
                )
            }
        };
        if !via_wan {
            return Err(cx.conflict(
                &addr_path,
                format!(
                    "peer {address} is not reachable through the WAN port: it is neither on {connected} nor covered by a [[routes]] entry via wan"
                ),
            ));
        }
        let udp_port = match p.udp_port {
            Some(v) => cx.in_range::<u16>(&base.key("udp_port"), v, 1, u16::MAX)?,
            None => default_port,
        };
        out.push(Peer {
            name: p.name.clone(),
            address,
            udp_port,
        });
    }
    Ok(out)
}

fn sas(raw: &[RawSa], peers: &[Peer], cx: &Document<'_>) -> Res<Vec<SaConfig>> {
    let mut out: Vec<SaConfig> = Vec::new();
    let mut seen: HashMap<(u32, Direction), usize> = HashMap::new();
    for (i, s) in raw.iter().enumerate() {
        let base = KeyPath::of(&["sas"]).index(i);
        let spi_path = base.key("spi");
        let spi = cx.in_range::<u32>(&spi_path, s.spi, MIN_SPI, u32::MAX)?;
        if let Some(j) = seen.insert((spi, Direction::from(s.direction)), i) {
            return Err(cx.conflict(
                &spi_path,
                format!(
                    "duplicate {} SPI {spi:#x} (also sas[{j}], line {})",
                    if Direction::from(s.direction) == Direction::In {
                        "inbound"
                    } else {
                        "outbound"
                    },
                    cx.line_of(KeyPath::of(&["sas"]).index(j).key("spi"))
                ),
            ));
        }
        let peer = peers.iter().position(|p| p.name == s.peer).ok_or_else(|| {
            cx.bad_value(
                base.key("peer"),
                format!("no [[peers]] entry is named `{}`", s.peer),
            )
        })?;
        let algorithm = match s.algorithm.as_str() {
            "aes-128-gcm" => Algorithm::Aes128Gcm,
            "aes-256-gcm" => Algorithm::Aes256Gcm,
            other => {
                return Err(cx.bad_value(
                    base.key("algorithm"),
                    format!("unknown algorithm `{other}`; expected `aes-128-gcm` or `aes-256-gcm`"),
                ));
            }
        };
        let key = key(s, &base, algorithm, cx)?;
        let salt_path = base.key("salt");
        let salt_bytes =
            parse_hex(&s.salt).map_err(|m| cx.bad_value(&salt_path, format!("salt: {m}")))?;
        let salt: [u8; 4] = salt_bytes.as_slice().try_into().map_err(|_| {
            cx.bad_value(
                &salt_path,
                format!(
                    "salt is {} bytes; expected 4 (8 hex digits)",
                    salt_bytes.len()
                ),
            )
        })?;
        let esn = s.esn.unwrap_or(true);
        let anti_replay = s.anti_replay.unwrap_or(true);
        let path = base.key("anti_replay");
        if s.anti_replay.is_some() && Direction::from(s.direction) != Direction::In {
            return Err(cx.bad_value(path, "anti_replay applies to inbound SAs only".to_string()));
        }
        if !anti_replay && esn {
            return Err(cx.bad_value(
                path,
                "anti_replay = false needs esn = false (the high sequence bits are \
                 inferred from the replay window)"
                    .to_string(),
            ));
        }
        out.push(SaConfig {
            spi,
            direction: Direction::from(s.direction),
            peer,
            algorithm,
            key,
            salt,
            esn,
            lane_of: None,
            anti_replay,
        });
    }
    for (i, s) in raw.iter().enumerate() {
        if let Some(v) = s.lane_of {
            out[i].lane_of = Some(lane_of(i, v, raw, &out, cx)?);
        }
    }
    Ok(out)
}

/// A route or listener's `sa`: an outbound SA that is not a lane (a
/// session's traffic enters through its head).
fn check_names_head(sas: &[SaConfig], spi: u32, path: &KeyPath, cx: &Document<'_>) -> Res<()> {
    match sas
        .iter()
        .find(|s| s.spi == spi && s.direction == Direction::Out)
    {
        None => Err(cx.bad_value(path, format!("no outbound SA has SPI {spi:#x}"))),
        Some(SaConfig {
            lane_of: Some(head),
            ..
        }) => Err(cx.bad_value(
            path,
            format!("SA {spi:#x} is a lane of {head:#x}; name the head"),
        )),
        Some(_) => Ok(()),
    }
}

/// `sas[i].lane_of = v`: an outbound SA's head, an outbound SA toward the
/// same peer that is not itself a lane, with at most `MAX_LANES` SAs.
fn lane_of(i: usize, v: i64, raw: &[RawSa], sas: &[SaConfig], cx: &Document<'_>) -> Res<u32> {
    let path = KeyPath::of(&["sas"]).index(i).key("lane_of");
    let head = cx.in_range::<u32>(&path, v, MIN_SPI, u32::MAX)?;
    if sas[i].direction != Direction::Out {
        return Err(cx.bad_value(&path, "only an outbound SA can be a lane"));
    }
    let Some(h) = sas
        .iter()
        .position(|o| o.spi == head && o.direction == Direction::Out)
    else {
        return Err(cx.bad_value(&path, format!("no outbound SA has SPI {head:#x}")));
    };
    if h == i {
        return Err(cx.bad_value(&path, "an SA cannot be a lane of itself"));
    }
    if let Some(raw_head) = raw[h].lane_of {
        return Err(cx.bad_value(
            &path,
            format!("SA {head:#x} is itself a lane (of {raw_head:#x}); name the head"),
        ));
    }
    if sas[h].peer != sas[i].peer {
        return Err(cx.bad_value(
            &path,
            format!("SA {head:#x} goes to another peer; a lane shares its head's peer"),
        ));
    }
    let lanes = sas[..i].iter().filter(|o| o.lane_of == Some(head)).count() + 1;
    if lanes + 1 > MAX_LANES {
        return Err(cx.bad_value(
            &path,
            format!("SA {head:#x} would have more than {MAX_LANES} SAs (itself and its lanes)"),
        ));
    }
    Ok(head)
}

fn key(
    s: &RawSa,
    base: &KeyPath,
    algorithm: Algorithm,
    cx: &Document<'_>,
) -> Res<Zeroizing<Vec<u8>>> {
    let (hex, path) = match (&s.key, &s.key_file) {
        (Some(_), Some(_)) => {
            return Err(cx.conflict(base.key("key_file"), "give `key` or `key_file`, not both"));
        }
        (None, None) => {
            return Err(cx.error_at_key(
                base,
                ErrorKind::MissingKey,
                "an SA needs `key` (hex) or `key_file`",
            ));
        }
        (Some(k), None) => (Zeroizing::new(k.clone()), base.key("key")),
        (None, Some(f)) => {
            let p = base.key("key_file");
            let file = cx.origin().parent().unwrap_or(Path::new(".")).join(f);
            let text = std::fs::read_to_string(&file).map_err(|e| {
                cx.bad_value(&p, format!("cannot read key file {}: {e}", file.display()))
            })?;
            (Zeroizing::new(text.trim().to_string()), p)
        }
    };
    let key =
        Zeroizing::new(parse_hex(&hex).map_err(|m| cx.bad_value(&path, format!("key: {m}")))?);
    let want = algorithm.key_len();
    if key.len() != want {
        return Err(cx.bad_value(
            &path,
            format!(
                "key is {} bytes; {} needs {want} bytes ({} hex digits)",
                key.len(),
                s.algorithm,
                want * 2
            ),
        ));
    }
    Ok(key)
}

fn tunnel_routes(
    raw: &[RawTunnelRoute],
    sas: &[SaConfig],
    ports: &Ports,
    cx: &Document<'_>,
) -> Res<(Vec<TunnelRoute>, Vec<TunnelRoute6>)> {
    let mut out: Vec<TunnelRoute> = Vec::new();
    let mut out6: Vec<TunnelRoute6> = Vec::new();
    let outbound_spi = |r: &RawTunnelRoute, base: &KeyPath| -> Res<u32> {
        let spi_path = base.key("sa");
        let spi = cx.in_range::<u32>(&spi_path, r.sa, MIN_SPI, u32::MAX)?;
        check_names_head(sas, spi, &spi_path, cx)?;
        Ok(spi)
    };
    for (i, r) in raw.iter().enumerate() {
        let base = KeyPath::of(&["tunnel_routes"]).index(i);
        let prefix_path = base.key("prefix");
        if looks_ipv6(&r.prefix) {
            let prefix = parse_prefix6(&r.prefix).map_err(|m| cx.bad_value(&prefix_path, m))?;
            if let Some(j) = out6.iter().position(|o| o.prefix == prefix) {
                return Err(cx.conflict(
                    &prefix_path,
                    format!("duplicate tunnel route for {prefix} (also tunnel_routes[{j}])"),
                ));
            }
            for id in PortId::ALL {
                if let Some(own) = ports.get(id).connected_prefix6() {
                    if own.contains(&prefix.network()) || prefix.contains(&own.network()) {
                        return Err(cx.conflict(
                            &prefix_path,
                            format!("{prefix} overlaps the connected prefix {own} of {id}; a tunnel route must lead elsewhere"),
                        ));
                    }
                }
            }
            let spi = outbound_spi(r, &base)?;
            out6.push(TunnelRoute6 { prefix, spi });
            continue;
        }
        let prefix = parse_prefix(&r.prefix).map_err(|m| cx.bad_value(&prefix_path, m))?;
        if let Some(j) = out.iter().position(|o| o.prefix == prefix) {
            return Err(cx.conflict(
                &prefix_path,
                format!("duplicate tunnel route for {prefix} (also tunnel_routes[{j}])"),
            ));
        }
        for id in PortId::ALL {
            let Some(own) = ports.get(id).connected_prefix() else {
                continue;
            };
            if own.contains(&prefix.network()) || prefix.contains(&own.network()) {
                return Err(cx.conflict(
                    &prefix_path,
                    format!("{prefix} overlaps the connected prefix {own} of {id}; a tunnel route must lead elsewhere"),
                ));
            }
        }
        let spi = outbound_spi(r, &base)?;
        out.push(TunnelRoute { prefix, spi });
    }
    Ok((out, out6))
}

fn nat_pool(t: &RawTunnel, cx: &Document<'_>) -> Res<(u16, usize)> {
    let base = KeyPath::of(&["tunnel"]);
    let port_base = match t.nat_port_base {
        Some(v) => cx.in_range::<u16>(&base.key("nat_port_base"), v, 1024, u16::MAX)?,
        None => DEFAULT_NAT_PORT_BASE,
    };
    let room = 65536 - usize::from(port_base);
    let slots = match t.nat_slots {
        Some(v) => cx.in_range::<u32>(&base.key("nat_slots"), v, 64, room as u32)? as usize,
        None => DEFAULT_NAT_SLOTS.min(room),
    };
    Ok((port_base, slots))
}

fn listeners(
    raw: &[RawListener],
    sas: &[SaConfig],
    ports: &Ports,
    nat_base: u16,
    nat_slots: usize,
    cx: &Document<'_>,
) -> Res<Vec<ListenerConfig>> {
    let mut out: Vec<ListenerConfig> = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let base = KeyPath::of(&["listeners"]).index(i);
        let port_path = base.key("port");
        let port = cx.in_range::<u16>(&port_path, l.port, 1, u16::MAX)?;
        if let Some(j) = out
            .iter()
            .position(|o| o.role == ListenerRole::from(l.role) && o.port == port)
        {
            return Err(cx.conflict(
                &port_path,
                format!(
                    "listener port {port} overlaps listeners[{j}] (line {}): one {} listener per port",
                    cx.line_of(KeyPath::of(&["listeners"]).index(j).key("port")),
                    if ListenerRole::from(l.role) == ListenerRole::Inbound { "inbound" } else { "outbound" }
                ),
            ));
        }
        if ListenerRole::from(l.role) == ListenerRole::Outbound
            && usize::from(port) >= usize::from(nat_base)
            && usize::from(port) < usize::from(nat_base) + nat_slots
        {
            return Err(cx.conflict(
                &port_path,
                format!(
                    "outbound listener port {port} lies in the NAT port pool {nat_base}..{}",
                    usize::from(nat_base) + nat_slots
                ),
            ));
        }
        let addr = |key: &str, v: &Option<String>| -> Res<Option<std::net::SocketAddr>> {
            v.as_ref()
                .map(|s| {
                    s.parse().map_err(|_| {
                        cx.bad_value(
                            base.key(key),
                            format!(
                                "`{s}` is not an address with a port, like 10.10.1.2:5000 or [fd00:10:1::2]:5000"
                            ),
                        )
                    })
                })
                .transpose()
        };
        let remote = addr("remote", &l.remote)?;
        let target = addr("target", &l.target)?;
        // Listener mode rewrites addresses within one family: the listener
        // sits on our LAN (outbound) or WAN (inbound) address of the
        // family of its remote or target, and the NAT needs both ports to
        // have one.
        if let Some((key, a)) = remote
            .map(|a| ("remote", a))
            .or(target.map(|a| ("target", a)))
        {
            let family = if a.is_ipv4() { "IPv4" } else { "IPv6" };
            let has = |p: &PortConfig| match a {
                std::net::SocketAddr::V4(_) => p.address.is_some(),
                std::net::SocketAddr::V6(_) => p.address6.is_some(),
            };
            if let Some(id) = PortId::ALL.into_iter().find(|&id| !has(ports.get(id))) {
                return Err(cx.conflict(
                    base.key(key),
                    format!(
                        "{a} is {family}, and ports.{id} has no {family} address: a listener needs one on both ports (listener mode does not translate between IPv4 and IPv6)"
                    ),
                ));
            }
        }
        match (ListenerRole::from(l.role), &remote, &target) {
            (ListenerRole::Outbound, Some(_), None) => {}
            (ListenerRole::Inbound, None, Some(t)) => {
                let on_lan = match t.ip() {
                    std::net::IpAddr::V4(ip) => ports.connected_to(ip),
                    std::net::IpAddr::V6(ip) => ports.connected_to6(ip),
                };
                if on_lan != Some(PortId::Lan) {
                    return Err(cx.conflict(
                        base.key("target"),
                        format!("target {t} is not on the LAN prefix {}", {
                            match t {
                                std::net::SocketAddr::V4(_) => v4_prefix_text(&ports.lan),
                                std::net::SocketAddr::V6(_) => ports
                                    .lan
                                    .connected_prefix6()
                                    .map_or_else(|| "(none)".to_owned(), |n| n.to_string()),
                            }
                        }),
                    ));
                }
            }
            (ListenerRole::Outbound, _, _) => {
                let (key, msg) = if target.is_some() {
                    (
                        "target",
                        "an outbound listener takes `remote`, not `target`",
                    )
                } else {
                    (
                        "remote",
                        "an outbound listener needs `remote` (the peer's listener)",
                    )
                };
                return Err(cx.error_at_key(base.key(key), ErrorKind::Conflict, msg));
            }
            (ListenerRole::Inbound, _, _) => {
                let (key, msg) = if remote.is_some() {
                    ("remote", "an inbound listener takes `target`, not `remote`")
                } else {
                    (
                        "target",
                        "an inbound listener needs `target` (the producer application)",
                    )
                };
                return Err(cx.error_at_key(base.key(key), ErrorKind::Conflict, msg));
            }
        }
        let spi_path = base.key("sa");
        let spi = cx.in_range::<u32>(&spi_path, l.sa, MIN_SPI, u32::MAX)?;
        check_names_head(sas, spi, &spi_path, cx)?;
        out.push(ListenerConfig {
            role: ListenerRole::from(l.role),
            port,
            remote,
            target,
            spi,
        });
    }
    Ok(out)
}

/// Parses hex digits (surrounding whitespace and a leading `0x` allowed) into bytes.
fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    hex::decode(s.trim().trim_start_matches("0x")).map_err(|e| e.to_string())
}
