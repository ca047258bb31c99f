//! `[[tunnels]]`: routed-mode tunnels, each to a configured peer, with
//! the prefixes behind either end. Every rule is reported at the key that
//! breaks it.
//!
//! The data plane picks a tunnel route by first match, so no address may
//! lie in two tunnels' remote prefixes; and a network cannot lie both
//! behind this gateway and behind a peer, so local and remote prefixes
//! never overlap (local prefixes of different tunnels may: one network can
//! reach several peers).

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use scistream_tomldoc::values::{check_gateway_name, parse_prefix_any};
use scistream_tomldoc::Document;

use super::Res;
use crate::config::raw::RawTunnel;
use crate::config::{GatewaySection, PeerConfig, ShmSection, TunnelConfig};

/// Which list of a tunnel a prefix is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Local,
    Remote,
}

impl Side {
    fn key(self) -> &'static str {
        match self {
            Side::Local => "local",
            Side::Remote => "remote",
        }
    }
}

/// A prefix accepted so far, and where it is written.
struct Seen {
    net: IpNet,
    tunnel: usize,
    side: Side,
    key: String,
}

/// True if `a` and `b` share an address (for prefixes: one holds the
/// other); prefixes of different families never overlap.
fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Checks every `[[tunnels]]` entry against the gateway, its peers and the
/// region's route capacity.
pub(super) fn tunnels(
    raw: &[RawTunnel],
    gateway: &GatewaySection,
    peers: &[PeerConfig],
    shm: &ShmSection,
    doc: &Document<'_>,
) -> Res<Vec<TunnelConfig>> {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut seen: Vec<Seen> = Vec::new();
    let mut routes = 0usize;
    let mut out = Vec::with_capacity(raw.len());
    for (i, t) in raw.iter().enumerate() {
        let key = |k: &str| format!("tunnels[{i}].{k}");
        check_gateway_name(&t.name)
            .map_err(|m| doc.bad_value(&key("name"), m.replace("gateway name", "tunnel name")))?;
        if let Some(j) = names.insert(&t.name, i) {
            return Err(doc.conflict(
                &key("name"),
                format!(
                    "tunnel name `{}` is already used by tunnels[{j}] (line {})",
                    t.name,
                    doc.line_of(&format!("tunnels[{j}].name"))
                ),
            ));
        }
        if !peers.iter().any(|p| p.name == t.peer) {
            let known: Vec<String> = peers.iter().map(|p| format!("`{}`", p.name)).collect();
            let known = match known.is_empty() {
                true => "no [[peers]] entry is configured".to_owned(),
                false => format!("configured peers: {}", known.join(", ")),
            };
            return Err(doc.bad_value(
                &key("peer"),
                format!(
                    "tunnel `{}`: unknown peer `{}`; a tunnel's peer must be a [[peers]] name ({known})",
                    t.name, t.peer
                ),
            ));
        }
        let local = prefixes(i, Side::Local, &t.local, &t.name, &t.peer, doc)?;
        let remote = prefixes(i, Side::Remote, &t.remote, &t.name, &t.peer, doc)?;
        for (side, list) in [(Side::Local, &local), (Side::Remote, &remote)] {
            for (j, net) in list.iter().enumerate() {
                let k = key(&format!("{}[{j}]", side.key()));
                check_prefix(net, side, &k, i, &seen, raw, gateway, doc)?;
                seen.push(Seen {
                    net: *net,
                    tunnel: i,
                    side,
                    key: k,
                });
            }
        }
        routes += remote.len();
        if routes > shm.routes as usize {
            return Err(doc.conflict(
                &key("remote"),
                format!(
                    "the tunnels' remote prefixes need {routes} route entries; the region holds {} (shm.routes, line {})",
                    shm.routes,
                    doc.line_of("shm.routes")
                ),
            ));
        }
        out.push(TunnelConfig {
            name: t.name.clone(),
            peer: t.peer.clone(),
            local,
            remote,
        });
    }
    Ok(out)
}

/// The prefixes of list `side` of tunnel `i`: non-empty, each a valid
/// IPv4 or IPv6 prefix with no host bits.
fn prefixes(
    i: usize,
    side: Side,
    raw: &[String],
    name: &str,
    peer: &str,
    doc: &Document<'_>,
) -> Res<Vec<IpNet>> {
    if raw.is_empty() {
        let (behind, example) = match side {
            Side::Local => ("this gateway".to_owned(), "10.10.1.0/24"),
            Side::Remote => (format!("peer `{peer}`"), "10.20.1.0/24"),
        };
        return Err(doc.bad_value(
            &format!("tunnels[{i}].{}", side.key()),
            format!(
                "tunnel `{name}`: no prefix; list the IPv4 or IPv6 prefixes behind {behind}, like [\"{example}\"]"
            ),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(j, s)| {
            parse_prefix_any(s)
                .map_err(|m| doc.bad_value(&format!("tunnels[{i}].{}[{j}]", side.key()), m))
        })
        .collect()
}

/// Checks prefix `net`, written at `key` in list `side` of tunnel `i`,
/// against our own addresses and every prefix accepted before it.
#[allow(clippy::too_many_arguments)]
fn check_prefix(
    net: &IpNet,
    side: Side,
    key: &str,
    i: usize,
    seen: &[Seen],
    raw: &[RawTunnel],
    gateway: &GatewaySection,
    doc: &Document<'_>,
) -> Res<()> {
    if side == Side::Remote {
        let own: [(IpAddr, &str, &str); 2] = [
            (gateway.lan_address, "LAN", "gateway.lan_address"),
            (gateway.wan_address, "WAN", "gateway.wan_address"),
        ];
        for (ip, what, own_key) in own {
            if net.contains(&ip) {
                return Err(doc.conflict(
                    key,
                    format!(
                        "{net} holds this gateway's own {what} address {ip} ({own_key}); a remote prefix must lie behind the peer"
                    ),
                ));
            }
        }
    }
    for s in seen {
        if !overlaps(net, &s.net) {
            continue;
        }
        let at = format!("{}, line {}", s.key, doc.line_of(&s.key));
        let what = if s.net == *net {
            format!("{net} is listed twice (also {at})")
        } else {
            format!("{net} overlaps {} ({at})", s.net)
        };
        let other = &raw[s.tunnel].name;
        let why = match (s.tunnel == i, s.side, side) {
            (true, a, b) if a == b => "list each network once".to_owned(),
            (true, _, _) => {
                "a network cannot lie both behind this gateway and behind the peer".to_owned()
            }
            (false, Side::Remote, Side::Remote) => format!(
                "tunnel `{other}` routes it already; the data plane could not tell which tunnel an address belongs to"
            ),
            (false, Side::Local, Side::Local) => continue,
            (false, Side::Remote, Side::Local) => format!(
                "tunnel `{other}` puts it behind peer `{}`, not behind this gateway",
                raw[s.tunnel].peer
            ),
            (false, Side::Local, Side::Remote) => {
                format!("tunnel `{other}` puts it behind this gateway, not behind a peer")
            }
        };
        return Err(doc.conflict(key, format!("{what}; {why}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_overlap_when_one_holds_the_other() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        assert!(overlaps(&n("10.0.0.0/8"), &n("10.20.1.0/24")));
        assert!(overlaps(&n("10.20.1.0/24"), &n("10.0.0.0/8")));
        assert!(overlaps(&n("10.20.1.0/24"), &n("10.20.1.0/24")));
        assert!(!overlaps(&n("10.20.1.0/25"), &n("10.20.1.128/25")));
        assert!(overlaps(&n("0.0.0.0/0"), &n("192.0.2.1/32")));
    }
}
