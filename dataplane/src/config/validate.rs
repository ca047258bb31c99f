//! Validation: raw schema values -> [`Config`], checking every rule, each
//! failure located at the key it concerns.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::{Ipv4Net, Ipv6Net};

use scistream_tomldoc::{ConfigError, Document, ErrorKind, KeyPath};

use super::dpdk_device::parse_dpdk_device;
use super::raw::{RawBackend, RawConfig, RawDpdk, RawNeighbor, RawPort, RawRoute, RawWorkers};
use super::*;
use scistream_tomldoc::values::{
    check_gateway_name, check_ifname, check_unicast_mac, looks_ipv6, parse_ipv4, parse_ipv6,
    parse_mac, parse_port_address, parse_port_address6, parse_prefix, parse_prefix6,
};

mod tunnel;

type Res<T> = Result<T, ConfigError>;

/// Checks `raw` and builds the typed configuration.
pub(crate) fn validate(raw: RawConfig, cx: &Document<'_>) -> Res<Config> {
    let gateway = gateway(&raw, cx)?;
    let workers = workers(&raw.workers, cx)?;
    let dpdk = raw.dpdk.as_ref().map(|d| dpdk_section(d, cx)).transpose()?;
    let ports = ports(&raw, cx)?;
    let dpdk = dpdk_usage(dpdk, &ports, &workers, cx)?;
    let (routes, routes6) = routes(&raw.routes, &ports, cx)?;
    let neighbors = neighbors(&raw.neighbors, &ports, cx)?;
    let tunnel = tunnel::tunnel(&raw, &ports, &routes, &routes6, cx)?;
    Ok(Config {
        tunnel,
        gateway,
        workers,
        dpdk,
        ports,
        routes,
        routes6,
        neighbors,
        logging: LoggingSection {
            level: raw.logging.level,
        },
    })
}

fn gateway(raw: &RawConfig, cx: &Document<'_>) -> Res<GatewaySection> {
    let g = &raw.gateway;
    let base = KeyPath::of(&["gateway"]);
    check_gateway_name(&g.name).map_err(|m| cx.bad_value(base.key("name"), m))?;
    let stats_path = match &g.stats_path {
        Some(p) if p.is_empty() => {
            return Err(cx.bad_value(base.key("stats_path"), "stats_path must not be empty"));
        }
        Some(p) if p.ends_with('/') => {
            return Err(cx.bad_value(
                base.key("stats_path"),
                format!("stats_path `{p}` names a directory; give a file path"),
            ));
        }
        Some(p) => Some(PathBuf::from(p)),
        None => None,
    };
    Ok(GatewaySection {
        name: g.name.clone(),
        stats_path,
    })
}

fn core_id(cx: &Document<'_>, path: &KeyPath, v: i64) -> Res<usize> {
    if !(0..MAX_CORES as i64).contains(&v) {
        return Err(cx.bad_value(
            path,
            format!("core {v} is out of range; expected 0 to {}", MAX_CORES - 1),
        ));
    }
    Ok(v as usize)
}

fn workers(w: &RawWorkers, cx: &Document<'_>) -> Res<WorkersSection> {
    let base = KeyPath::of(&["workers"]);
    let cores_path = base.key("cores");
    if w.cores.is_empty() {
        return Err(cx.bad_value(
            &cores_path,
            "cores must list at least one core (one worker per entry)",
        ));
    }
    let mut cores = Vec::with_capacity(w.cores.len());
    for (i, &c) in w.cores.iter().enumerate() {
        let p = cores_path.index(i);
        let c = core_id(cx, &p, c)?;
        if let Some(j) = cores.iter().position(|&x| x == c) {
            return Err(cx.conflict(&p, format!("core {c} is listed twice (also workers.cores[{j}]); each worker needs its own core")));
        }
        cores.push(c);
    }
    let slowpath_core = match w.slowpath_core {
        Some(v) => {
            let p = base.key("slowpath_core");
            let c = core_id(cx, &p, v)?;
            if let Some(j) = cores.iter().position(|&x| x == c) {
                return Err(cx.conflict(
                    &p,
                    format!("core {c} is also worker core workers.cores[{j}]; the slow path must not share a busy-polling worker's core"),
                ));
            }
            Some(c)
        }
        None => None,
    };
    let idle_sleep_us = match w.idle_sleep_us {
        Some(v) => cx.in_range(base.key("idle_sleep_us"), v, 0u32, MAX_IDLE_SLEEP_US)?,
        None => 0,
    };
    let poll_mode = w.poll_mode.unwrap_or_default();
    if poll_mode == PollMode::Adaptive && w.idle_sleep_us.is_some() {
        return Err(cx.conflict(
            base.key("idle_sleep_us"),
            "idle_sleep_us applies to poll_mode = \"busy\"; an adaptive worker sleeps until its queues have traffic".to_string(),
        ));
    }
    Ok(WorkersSection {
        cores,
        slowpath_core,
        idle_sleep_us,
        poll_mode,
        stage_cycles: w.stage_cycles.unwrap_or(false),
    })
}

fn dpdk_section(d: &RawDpdk, cx: &Document<'_>) -> Res<DpdkSection> {
    let base = KeyPath::of(&["dpdk"]);
    let mempool_size = match d.mempool_size {
        Some(v) => cx.in_range(base.key("mempool_size"), v, 1u32, u32::MAX)?,
        None => DEFAULT_MEMPOOL_SIZE,
    };
    let cache_path = base.key("mempool_cache");
    let mempool_cache = match d.mempool_cache {
        Some(v) => cx.in_range(&cache_path, v, 0u32, MAX_MEMPOOL_CACHE)?,
        None => DEFAULT_MEMPOOL_CACHE,
    };
    // DPDK: cache_size * 1.5 must not exceed the pool size.
    if u64::from(mempool_cache) * 3 > u64::from(mempool_size) * 2 {
        return Err(cx.conflict(
            &cache_path,
            format!(
                "mempool_cache {mempool_cache} is too large for mempool_size {mempool_size}; it must be at most mempool_size / 1.5 = {}",
                u64::from(mempool_size) * 2 / 3
            ),
        ));
    }
    let rx_desc = match d.rx_desc {
        Some(v) => cx.in_range(base.key("rx_desc"), v, 1u16, MAX_RING_DESC)?,
        None => DEFAULT_RING_DESC,
    };
    let tx_desc = match d.tx_desc {
        Some(v) => cx.in_range(base.key("tx_desc"), v, 1u16, MAX_RING_DESC)?,
        None => DEFAULT_RING_DESC,
    };
    for (i, a) in d.eal_args.iter().enumerate() {
        if a.is_empty() {
            return Err(cx.bad_value(base.key("eal_args").index(i), "empty EAL argument"));
        }
    }
    Ok(DpdkSection {
        eal_args: d.eal_args.clone(),
        mempool_size,
        mempool_cache,
        rx_desc,
        tx_desc,
    })
}

/// Keys of a port table that only some backends take.
const BACKEND_KEYS: [(&str, &[RawBackend]); 7] = [
    ("device", &[RawBackend::Dpdk]),
    ("interface", &[RawBackend::AfXdp, RawBackend::Tap]),
    ("mac", &[RawBackend::Tap]),
    ("bridge", &[RawBackend::Tap]),
    ("xdp_mode", &[RawBackend::AfXdp]),
    ("zero_copy", &[RawBackend::AfXdp]),
    ("frame_count", &[RawBackend::AfXdp]),
];

fn backend_word(b: RawBackend) -> &'static str {
    match b {
        RawBackend::Dpdk => "dpdk",
        RawBackend::AfXdp => "af_xdp",
        RawBackend::Tap => "tap",
    }
}

fn present(p: &RawPort, key: &str) -> bool {
    match key {
        "device" => p.device.is_some(),
        "interface" => p.interface.is_some(),
        "mac" => p.mac.is_some(),
        "bridge" => p.bridge.is_some(),
        "xdp_mode" => p.xdp_mode.is_some(),
        "zero_copy" => p.zero_copy.is_some(),
        "frame_count" => p.frame_count.is_some(),
        _ => false,
    }
}

fn required<'r>(
    cx: &Document<'_>,
    base: &KeyPath,
    key: &str,
    v: &'r Option<String>,
    backend: &str,
) -> Res<&'r str> {
    v.as_deref().ok_or_else(|| {
        cx.error_at_key(
            base.key(key),
            ErrorKind::MissingKey,
            format!(
                "missing required key `{key}` {} (required for backend \"{backend}\")",
                base.location_phrase()
            ),
        )
    })
}

fn port(id: PortId, p: &RawPort, cx: &Document<'_>) -> Res<PortConfig> {
    let base = KeyPath::of(&["ports", id.as_str()]);
    let word = backend_word(p.backend);
    for (key, allowed) in BACKEND_KEYS {
        if present(p, key) && !allowed.contains(&p.backend) {
            let for_whom: Vec<String> = allowed
                .iter()
                .map(|b| format!("\"{}\"", backend_word(*b)))
                .collect();
            let hint = match (key, p.backend) {
                ("device", _) => " (use `interface` to name the kernel interface)",
                ("interface", RawBackend::Dpdk) => {
                    " (use `device`, e.g. \"net_af_packet0,iface=lan0\")"
                }
                _ => "",
            };
            return Err(cx.error_at_key(
            base.key(key), ErrorKind::UnknownKey,
                format!(
                    "`{key}` is only valid with backend {}; this port uses backend \"{word}\"{hint}",
                    for_whom.join(" or ")
                ),
            ));
        }
    }

    let (address, address6) = port_addresses(p.address.as_slice(), &base.key("address"), cx)?;

    let backend = match p.backend {
        RawBackend::Dpdk => {
            let dev = required(cx, &base, "device", &p.device, word)?;
            let device = parse_dpdk_device(dev).map_err(|m| cx.bad_value(base.key("device"), m))?;
            Backend::Dpdk { device }
        }
        RawBackend::AfXdp => {
            let ifname = required(cx, &base, "interface", &p.interface, word)?;
            check_ifname(ifname).map_err(|m| cx.bad_value(base.key("interface"), m))?;
            let frame_count = match p.frame_count {
                Some(v) => {
                    let path = base.key("frame_count");
                    let n = cx.in_range(&path, v, MIN_FRAME_COUNT, MAX_FRAME_COUNT)?;
                    if !n.is_power_of_two() {
                        return Err(
                            cx.bad_value(&path, format!("frame_count {n} is not a power of two"))
                        );
                    }
                    n
                }
                None => DEFAULT_FRAME_COUNT,
            };
            Backend::AfXdp {
                interface: ifname.to_owned(),
                xdp_mode: p.xdp_mode.unwrap_or_default(),
                zero_copy: p.zero_copy.unwrap_or(false),
                frame_count,
            }
        }
        RawBackend::Tap => {
            let ifname = required(cx, &base, "interface", &p.interface, word)?;
            check_ifname(ifname).map_err(|m| cx.bad_value(base.key("interface"), m))?;
            let mac = match &p.mac {
                Some(s) => {
                    let path = base.key("mac");
                    let mac = parse_mac(s).map_err(|m| cx.bad_value(&path, m))?;
                    check_unicast_mac(&mac).map_err(|m| cx.bad_value(&path, m))?;
                    Some(mac)
                }
                None => None,
            };
            let bridge = match &p.bridge {
                Some(b) => {
                    let path = base.key("bridge");
                    check_ifname(b).map_err(|m| cx.bad_value(&path, m))?;
                    if b == ifname {
                        return Err(cx.conflict(
                            &path,
                            format!("bridge `{b}` has the same name as the TAP interface"),
                        ));
                    }
                    Some(b.clone())
                }
                None => None,
            };
            Backend::Tap {
                interface: ifname.to_owned(),
                mac,
                bridge,
            }
        }
    };

    let mtu = match p.mtu {
        Some(v) => {
            let path = base.key("mtu");
            let mtu = cx.in_range(&path, v, MIN_MTU, MAX_MTU)?;
            if p.backend == RawBackend::AfXdp && mtu > MAX_AF_XDP_MTU {
                return Err(cx.bad_value(
                    &path,
                    format!("mtu {mtu} is too large for backend \"af_xdp\": a 4096-byte UMEM frame carries at most mtu {MAX_AF_XDP_MTU}"),
                ));
            }
            mtu
        }
        None => DEFAULT_MTU,
    };

    Ok(PortConfig {
        backend,
        address,
        address6,
        mtu,
    })
}

/// A port's `address`: at most one IPv4 port address and at most one IPv6
/// one, in either order, and at least one of them (an IPv6-only port has
/// only the IPv6 one).
fn port_addresses(
    list: &[String],
    path: &KeyPath,
    cx: &Document<'_>,
) -> Res<(Option<Ipv4Net>, Option<Ipv6Net>)> {
    let mut v4: Option<Ipv4Net> = None;
    let mut v6: Option<Ipv6Net> = None;
    for s in list {
        if looks_ipv6(s) {
            let net = parse_port_address6(s).map_err(|m| cx.bad_value(path, m))?;
            if let Some(first) = v6.replace(net) {
                return Err(cx.bad_value(
                    path,
                    format!(
                        "two IPv6 addresses ({first} and {net}); a port takes one of each family"
                    ),
                ));
            }
        } else {
            let net = parse_port_address(s).map_err(|m| cx.bad_value(path, m))?;
            if let Some(first) = v4.replace(net) {
                return Err(cx.bad_value(
                    path,
                    format!(
                        "two IPv4 addresses ({first} and {net}); a port takes one of each family"
                    ),
                ));
            }
        }
    }
    if v4.is_none() && v6.is_none() {
        return Err(cx.bad_value(
            path,
            "no address: a port needs an IPv4 address, an IPv6 one, or one of each, e.g. [\"10.10.1.1/24\", \"fd00:10:1::1/64\"]",
        ));
    }
    Ok((v4, v6))
}

fn ports(raw: &RawConfig, cx: &Document<'_>) -> Res<Ports> {
    let lan = port(PortId::Lan, &raw.ports.lan, cx)?;
    let wan = port(PortId::Wan, &raw.ports.wan, cx)?;
    let wan_path = |k: &str| KeyPath::of(&["ports", "wan", k]);

    if lan.backend.is_dpdk() != wan.backend.is_dpdk() {
        return Err(cx.conflict(
            wan_path("backend"),
            format!(
                "ports.lan uses backend \"{}\" but ports.wan uses backend \"{}\"; mixing DPDK with a native backend (af_xdp, tap) in one gateway is not supported yet: use \"dpdk\" on both ports, or native backends on both",
                lan.backend.name(),
                wan.backend.name()
            ),
        ));
    }
    if let (Some(lp), Some(wp)) = (lan.connected_prefix(), wan.connected_prefix()) {
        if lp.contains(&wp.network()) || wp.contains(&lp.network()) {
            return Err(cx.conflict(
            wan_path("address"),
            format!(
                "the wan connected prefix {wp} overlaps the lan connected prefix {lp} (ports.lan.address, line {}); the two ports must be on distinct networks",
                cx.line_of(KeyPath::of(&["ports", "lan", "address"]))
            ),
        ));
        }
    }
    if let (Some(lp), Some(wp)) = (lan.connected_prefix6(), wan.connected_prefix6()) {
        if lp.contains(&wp.network()) || wp.contains(&lp.network()) {
            return Err(cx.conflict(
                wan_path("address"),
                format!(
                    "the wan connected IPv6 prefix {wp} overlaps the lan connected IPv6 prefix {lp} (ports.lan.address, line {}); the two ports must be on distinct networks",
                    cx.line_of(KeyPath::of(&["ports", "lan", "address"]))
                ),
            ));
        }
    }
    match (&lan.backend, &wan.backend) {
        (Backend::Dpdk { device: a }, Backend::Dpdk { device: b }) if a == b => {
            return Err(cx.conflict(
                wan_path("device"),
                format!("lan and wan use the same DPDK device `{}`", a.as_str()),
            ));
        }
        _ => {}
    }
    if let (Some(a), Some(b)) = (lan.backend.interface(), wan.backend.interface()) {
        if a == b {
            return Err(cx.conflict(
                wan_path("interface"),
                format!("lan and wan use the same interface `{a}`"),
            ));
        }
    }
    if let (
        Backend::Tap {
            interface: li,
            bridge: lb,
            ..
        },
        Backend::Tap {
            interface: wi,
            bridge: wb,
            ..
        },
    ) = (&lan.backend, &wan.backend)
    {
        if let (Some(a), Some(b)) = (lb, wb) {
            if a == b {
                return Err(cx.conflict(
                    wan_path("bridge"),
                    format!("lan and wan are both enslaved to bridge `{a}`; that would join the two networks"),
                ));
            }
        }
        if lb.as_deref() == Some(wi.as_str()) {
            return Err(cx.conflict(
                KeyPath::of(&["ports", "lan", "bridge"]),
                format!("bridge `{wi}` is the wan TAP interface"),
            ));
        }
        if wb.as_deref() == Some(li.as_str()) {
            return Err(cx.conflict(
                wan_path("bridge"),
                format!("bridge `{li}` is the lan TAP interface"),
            ));
        }
    }
    Ok(Ports { lan, wan })
}

/// Applies the `[dpdk]` table: required when the ports use DPDK, ignored otherwise.
fn dpdk_usage(
    dpdk: Option<DpdkSection>,
    ports: &Ports,
    workers: &WorkersSection,
    cx: &Document<'_>,
) -> Res<Option<DpdkSection>> {
    if !ports.use_dpdk() {
        return Ok(None);
    }
    let Some(d) = dpdk else {
        return Err(cx.error_at_key(
            KeyPath::of(&["dpdk"]), ErrorKind::MissingKey,
            format!(
                "missing table [dpdk]: it is required (and may be empty) when the ports use backend \"dpdk\" (ports.lan.backend, line {})",
                cx.line_of(KeyPath::of(&["ports", "lan", "backend"]))
            ),
        ));
    };
    // Each worker's RX queue holds rx_desc mbufs and its lcore cache up to
    // mempool_cache more; a smaller pool starves the RX rings.
    let needed = workers.cores.len() as u64 * (u64::from(d.rx_desc) + u64::from(d.mempool_cache));
    if u64::from(d.mempool_size) < needed {
        return Err(cx.conflict(
            KeyPath::of(&["dpdk", "mempool_size"]),
            format!(
                "mempool_size {} is too small: {} worker(s) x (rx_desc {} + mempool_cache {}) = {needed} mbufs are needed to fill the RX rings",
                d.mempool_size,
                workers.cores.len(),
                d.rx_desc,
                d.mempool_cache
            ),
        ));
    }
    if d.eal_args.iter().any(|a| a == "--no-pci") {
        for id in PortId::ALL {
            if let Backend::Dpdk {
                device: DpdkDevice::Pci(pci),
            } = &ports.get(id).backend
            {
                return Err(cx.conflict(
                    KeyPath::of(&["ports", id.as_str(), "device"]),
                    format!("PCI device {pci} cannot be used: [dpdk] eal_args contains --no-pci"),
                ));
            }
        }
    }
    Ok(Some(d))
}

/// The port `ip` is on, checked against an explicit `port` key.
fn resolve_port(
    cx: &Document<'_>,
    ports: &Ports,
    ip: Ipv4Addr,
    ip_path: &KeyPath,
    explicit: Option<PortId>,
    port_path: &KeyPath,
    what: &str,
) -> Res<PortId> {
    let Some(on) = ports.connected_to(ip) else {
        return Err(cx.conflict(
            ip_path,
            format!(
                "{what} {ip} is not on a connected prefix (lan {}, wan {})",
                v4_prefix_text(&ports.lan),
                v4_prefix_text(&ports.wan)
            ),
        ));
    };
    if let Some(p) = explicit {
        if p != on {
            return Err(cx.conflict(
                port_path,
                format!(
                    "port is \"{p}\" but {what} {ip} is on the {on} prefix {}",
                    v4_prefix_text(ports.get(on))
                ),
            ));
        }
    }
    let port = ports.get(on);
    if Some(ip) == port.ip() {
        return Err(cx.conflict(
            ip_path,
            format!("{what} {ip} is the gateway's own address on {on}"),
        ));
    }
    if let Some(net) = port.connected_prefix() {
        if net.prefix_len() <= 30 && (ip == net.network() || ip == net.broadcast()) {
            return Err(cx.conflict(
                ip_path,
                format!("{what} {ip} is not a host address of {net}"),
            ));
        }
    }
    Ok(on)
}

/// A port's connected IPv4 prefix for a message, or "none (IPv6 only)".
pub(super) fn v4_prefix_text(port: &PortConfig) -> String {
    port.connected_prefix()
        .map_or_else(|| "none (IPv6 only)".to_owned(), |n| n.to_string())
}

fn routes(raw: &[RawRoute], ports: &Ports, cx: &Document<'_>) -> Res<(Vec<Route>, Vec<Route6>)> {
    let mut out: Vec<Route> = Vec::with_capacity(raw.len());
    let mut out6: Vec<Route6> = Vec::new();
    let mut seen: HashMap<Ipv4Net, usize> = HashMap::new();
    let mut seen6: HashMap<Ipv6Net, usize> = HashMap::new();
    for (i, r) in raw.iter().enumerate() {
        let base = KeyPath::of(&["routes"]).index(i);
        let prefix_path = base.key("prefix");
        if looks_ipv6(&r.prefix) {
            out6.push(route6(r, &base, ports, &mut seen6, i, cx)?);
            continue;
        }
        let prefix = parse_prefix(&r.prefix).map_err(|m| cx.bad_value(&prefix_path, m))?;
        if let Some(j) = seen.insert(prefix, i) {
            return Err(cx.conflict(
                &prefix_path,
                format!(
                    "duplicate route for {prefix} (also routes[{j}], line {})",
                    cx.line_of(KeyPath::of(&["routes"]).index(j).key("prefix"))
                ),
            ));
        }
        for id in PortId::ALL {
            if ports.get(id).connected_prefix() == Some(prefix) {
                return Err(cx.conflict(
                    &prefix_path,
                    format!("{prefix} is the connected prefix of {id}; it needs no route"),
                ));
            }
        }
        let via_path = base.key("via");
        let via = parse_ipv4(&r.via).map_err(|m| cx.bad_value(&via_path, m))?;
        let port = resolve_port(
            cx,
            ports,
            via,
            &via_path,
            r.port,
            &base.key("port"),
            "next hop",
        )?;
        out.push(Route { prefix, via, port });
    }
    Ok((out, out6))
}

/// One IPv6 `[[routes]]` entry: the next hop is on the connected IPv6
/// prefix of a port, or link-local, with `port` naming the port.
fn route6(
    r: &RawRoute,
    base: &KeyPath,
    ports: &Ports,
    seen: &mut HashMap<Ipv6Net, usize>,
    i: usize,
    cx: &Document<'_>,
) -> Res<Route6> {
    let prefix_path = base.key("prefix");
    let prefix = parse_prefix6(&r.prefix).map_err(|m| cx.bad_value(&prefix_path, m))?;
    if let Some(j) = seen.insert(prefix, i) {
        return Err(cx.conflict(
            &prefix_path,
            format!(
                "duplicate route for {prefix} (also routes[{j}], line {})",
                cx.line_of(KeyPath::of(&["routes"]).index(j).key("prefix"))
            ),
        ));
    }
    for id in PortId::ALL {
        if ports.get(id).connected_prefix6() == Some(prefix) {
            return Err(cx.conflict(
                &prefix_path,
                format!("{prefix} is the connected prefix of {id}; it needs no route"),
            ));
        }
    }
    let via_path = base.key("via");
    if !looks_ipv6(&r.via) {
        return Err(cx.bad_value(
            &via_path,
            format!(
                "next hop `{}` is not IPv6 but the prefix {prefix} is",
                r.via
            ),
        ));
    }
    let via = parse_ipv6(&r.via).map_err(|m| cx.bad_value(&via_path, m))?;
    let port = resolve_port6(
        cx,
        ports,
        via,
        &via_path,
        r.port,
        &base.key("port"),
        "next hop",
    )?;
    Ok(Route6 { prefix, via, port })
}

/// The port an IPv6 next hop or neighbour `ip` is on: its connected IPv6
/// prefix, or for a link-local address the `port` the entry names.
fn resolve_port6(
    cx: &Document<'_>,
    ports: &Ports,
    ip: Ipv6Addr,
    ip_path: &KeyPath,
    explicit: Option<PortId>,
    port_path: &KeyPath,
    what: &str,
) -> Res<PortId> {
    if ip.is_multicast() || ip.is_unspecified() || ip.is_loopback() {
        return Err(cx.bad_value(ip_path, format!("{what} {ip} is not a unicast address")));
    }
    if ip.segments()[0] & 0xffc0 == 0xfe80 {
        return explicit.ok_or_else(|| {
            cx.error(
                port_path,
                ErrorKind::MissingKey,
                format!(
                    "{what} {ip} is link-local: name its port with `port = \"lan\"` or `\"wan\"`"
                ),
            )
        });
    }
    let Some(on) = ports.connected_to6(ip) else {
        let show = |id: PortId| {
            ports
                .get(id)
                .connected_prefix6()
                .map_or_else(|| "none".to_owned(), |n| n.to_string())
        };
        return Err(cx.conflict(
            ip_path,
            format!(
                "{what} {ip} is not on a connected IPv6 prefix (lan {}, wan {})",
                show(PortId::Lan),
                show(PortId::Wan)
            ),
        ));
    };
    if let Some(p) = explicit {
        if p != on {
            return Err(cx.conflict(
                port_path,
                format!("port is \"{p}\" but {what} {ip} is on the {on} IPv6 prefix"),
            ));
        }
    }
    if ports.get(on).address6.is_some_and(|a| a.addr() == ip) {
        return Err(cx.conflict(
            ip_path,
            format!("{what} {ip} is the gateway's own address on {on}"),
        ));
    }
    Ok(on)
}

fn neighbors(raw: &[RawNeighbor], ports: &Ports, cx: &Document<'_>) -> Res<Vec<Neighbor>> {
    let mut out: Vec<Neighbor> = Vec::with_capacity(raw.len());
    let mut seen: HashMap<IpAddr, usize> = HashMap::new();
    for (i, n) in raw.iter().enumerate() {
        let base = KeyPath::of(&["neighbors"]).index(i);
        let ip_path = base.key("ip");
        let ip: IpAddr = if looks_ipv6(&n.ip) {
            parse_ipv6(&n.ip)
                .map_err(|m| cx.bad_value(&ip_path, m))?
                .into()
        } else {
            parse_ipv4(&n.ip)
                .map_err(|m| cx.bad_value(&ip_path, m))?
                .into()
        };
        if let Some(j) = seen.insert(ip, i) {
            return Err(cx.conflict(
                &ip_path,
                format!(
                    "duplicate neighbour {ip} (also neighbors[{j}], line {})",
                    cx.line_of(KeyPath::of(&["neighbors"]).index(j).key("ip"))
                ),
            ));
        }
        let port = match ip {
            IpAddr::V4(ip) => resolve_port(
                cx,
                ports,
                ip,
                &ip_path,
                n.port,
                &base.key("port"),
                "neighbour",
            )?,
            IpAddr::V6(ip) => resolve_port6(
                cx,
                ports,
                ip,
                &ip_path,
                n.port,
                &base.key("port"),
                "neighbour",
            )?,
        };
        let mac_path = base.key("mac");
        let mac = parse_mac(&n.mac).map_err(|m| cx.bad_value(&mac_path, m))?;
        check_unicast_mac(&mac)
            .map_err(|m| cx.bad_value(&mac_path, format!("neighbour {ip}: {m}")))?;
        out.push(Neighbor { ip, mac, port });
    }
    Ok(out)
}
