//! Parsers and checks for single values both configurations use: MAC
//! addresses, interface and gateway names, IPv4 and IPv6 addresses, port
//! addresses and prefixes. Each returns a message for an operator on failure (the
//! caller adds the location, with [`crate::Document::bad_value`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Longest gateway name.
pub const MAX_GATEWAY_NAME_LEN: usize = 32;

/// Parses "aa:bb:cc:dd:ee:ff" (hex digits in either case, exactly two per octet).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || {
        format!("invalid MAC address `{s}`; expected six colon-separated hex octets like 02:00:00:00:00:01")
    };
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for octet in &mut mac {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *octet = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(mac)
}

/// Formats a MAC as "aa:bb:cc:dd:ee:ff".
pub fn format_mac(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// Checks that a MAC can be a port's own or a neighbour's address.
pub fn check_unicast_mac(mac: &[u8; 6]) -> Result<(), String> {
    if mac.iter().all(|&b| b == 0) {
        return Err("the all-zero MAC address is not a valid station address".into());
    }
    if mac[0] & 1 != 0 {
        return Err(format!(
            "{} is a multicast/broadcast MAC address (low bit of the first octet set); a unicast address is required",
            format_mac(mac)
        ));
    }
    Ok(())
}

/// Checks a Linux interface name as the kernel does (`dev_valid_name`):
/// 1..=15 bytes, not "." or "..", no '/', ':' or whitespace.
pub fn check_ifname(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("interface name must not be empty".into());
    }
    if s.len() > MAX_IFNAME_LEN {
        return Err(format!(
            "interface name `{s}` is {} bytes long; Linux allows at most {MAX_IFNAME_LEN}",
            s.len()
        ));
    }
    if s == "." || s == ".." || s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(format!(
            "`{s}` is not a valid interface name (no '/', ':' or whitespace; not \".\" or \"..\")"
        ));
    }
    Ok(())
}

/// Checks a gateway name: 1..=32 characters from [A-Za-z0-9_-].
pub fn check_gateway_name(s: &str) -> Result<(), String> {
    let ok = (1..=MAX_GATEWAY_NAME_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid gateway name `{s}`; use 1 to {MAX_GATEWAY_NAME_LEN} characters from A-Z a-z 0-9 _ -"
        ))
    }
}

/// Parses a dotted-quad IPv4 address.
pub fn parse_ipv4(s: &str) -> Result<Ipv4Addr, String> {
    Ipv4Addr::from_str(s)
        .map_err(|_| format!("invalid IPv4 address `{s}`; expected dotted-quad like 10.10.1.1"))
}

/// Parses "a.b.c.d/len" into address and prefix length, insisting on the length.
fn parse_cidr(s: &str, example: &str) -> Result<Ipv4Net, String> {
    let Some((addr, len)) = s.split_once('/') else {
        return Err(format!(
            "`{s}` has no prefix length; write it as address/length like {example}"
        ));
    };
    let addr = parse_ipv4(addr)?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| format!("invalid prefix length in `{s}`; expected 0 to 32"))?;
    Ipv4Net::new(addr, len).map_err(|_| format!("invalid prefix length in `{s}`; expected 0 to 32"))
}

/// Parses a port address: the gateway's own IPv4 address and the length of
/// the connected prefix ("10.10.1.1/24"). The address must be usable as a
/// host address inside a prefix of length 1..=31.
pub fn parse_port_address(s: &str) -> Result<Ipv4Net, String> {
    let net = parse_cidr(s, "10.10.1.1/24")?;
    let ip = net.addr();
    if net.prefix_len() == 0 || net.prefix_len() == 32 {
        return Err(format!(
            "prefix length /{} in `{s}` leaves no connected network; use 1 to 31",
            net.prefix_len()
        ));
    }
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast() {
        return Err(format!(
            "{ip} cannot be a port address (unspecified, loopback, multicast or broadcast)"
        ));
    }
    if net.prefix_len() <= 30 && (ip == net.network() || ip == net.broadcast()) {
        return Err(format!(
            "{ip} is the {} address of {}; choose a host address",
            if ip == net.network() {
                "network"
            } else {
                "broadcast"
            },
            net.trunc()
        ));
    }
    Ok(net)
}

/// Parses a route prefix ("10.20.0.0/16"); host bits must be zero.
pub fn parse_prefix(s: &str) -> Result<Ipv4Net, String> {
    let net = parse_cidr(s, "10.20.0.0/16")?;
    if net.addr() != net.network() {
        return Err(format!(
            "prefix `{s}` has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// True if `s` is written as an IPv6 address or prefix (it has a colon):
/// which parser of a dual-stack value applies.
pub fn looks_ipv6(s: &str) -> bool {
    s.contains(':')
}

/// Parses an IPv6 address in any RFC 4291 text form ("fd00:10:1::1").
pub fn parse_ipv6(s: &str) -> Result<Ipv6Addr, String> {
    Ipv6Addr::from_str(s)
        .map_err(|_| format!("invalid IPv6 address `{s}`; expected a form like fd00:10:1::1"))
}

/// Parses "addr/len" for IPv6, insisting on the length.
fn parse_cidr6(s: &str, example: &str) -> Result<Ipv6Net, String> {
    let Some((addr, len)) = s.split_once('/') else {
        return Err(format!(
            "`{s}` has no prefix length; write it as address/length like {example}"
        ));
    };
    let addr = parse_ipv6(addr)?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= 128)
        .ok_or_else(|| format!("invalid prefix length in `{s}`; expected 0 to 128"))?;
    Ipv6Net::new(addr, len)
        .map_err(|_| format!("invalid prefix length in `{s}`; expected 0 to 128"))
}

/// Parses an IPv6 port address: the gateway's own global (or unique
/// local) address and the length of the connected prefix
/// ("fd00:10:1::1/64"). Link-local addresses are not configured: each
/// port forms its own from its MAC.
pub fn parse_port_address6(s: &str) -> Result<Ipv6Net, String> {
    let net = parse_cidr6(s, "fd00:10:1::1/64")?;
    let ip = net.addr();
    if net.prefix_len() == 0 || net.prefix_len() == 128 {
        return Err(format!(
            "prefix length /{} in `{s}` leaves no connected network; use 1 to 127 (usually 64)",
            net.prefix_len()
        ));
    }
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
        return Err(format!(
            "{ip} cannot be a port address (unspecified, loopback or multicast)"
        ));
    }
    if ip.segments()[0] & 0xffc0 == 0xfe80 {
        return Err(format!(
            "{ip} is link-local; each port forms its link-local address from its MAC, so configure a global or unique-local address"
        ));
    }
    if ip == net.network() {
        return Err(format!(
            "{ip} is the subnet-router anycast address of {}; choose a host address",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Parses an IPv6 route prefix ("fd00:20::/32"); host bits must be zero.
pub fn parse_prefix6(s: &str) -> Result<Ipv6Net, String> {
    let net = parse_cidr6(s, "fd00:20::/32")?;
    if net.addr() != net.network() {
        return Err(format!(
            "prefix `{s}` has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Parses an IPv4 or an IPv6 address (IPv6 if it has a colon).
pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    match looks_ipv6(s) {
        true => parse_ipv6(s).map(IpAddr::V6),
        false => parse_ipv4(s).map(IpAddr::V4),
    }
}

/// Parses an IPv4 or an IPv6 route prefix (IPv6 if it has a colon); host
/// bits must be zero.
pub fn parse_prefix_any(s: &str) -> Result<IpNet, String> {
    match looks_ipv6(s) {
        true => parse_prefix6(s).map(IpNet::V6),
        false => parse_prefix(s).map(IpNet::V4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_values() {
        assert!(looks_ipv6("fd00::1/64") && !looks_ipv6("10.0.0.1/8"));
        assert_eq!(
            parse_port_address6("fd00:10:1::1/64").unwrap().addr(),
            "fd00:10:1::1".parse::<Ipv6Addr>().unwrap()
        );
        for (bad, needle) in [
            ("fd00:10:1::1", "no prefix length"),
            ("fd00:10:1::1/129", "expected 0 to 128"),
            ("fd00:10:1::1/128", "leaves no connected network"),
            ("fe80::1/64", "link-local"),
            ("ff02::1/64", "multicast"),
            ("fd00:10:1::/64", "subnet-router anycast"),
            ("fd00:10:1::g/64", "invalid IPv6 address"),
        ] {
            let e = parse_port_address6(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        assert!(parse_prefix6("fd00:20::/32").is_ok());
        assert!(parse_prefix6("fd00:20::1/32")
            .unwrap_err()
            .contains("host bits"));
        assert!(parse_prefix6("::/0").is_ok());
    }

    #[test]
    fn macs() {
        assert_eq!(parse_mac("02:00:00:00:01:fE"), Ok([2, 0, 0, 0, 1, 0xfe]));
        for bad in [
            "",
            "02:00:00:00:01",
            "02:00:00:00:01:fe:00",
            "2:00:00:00:01:fe",
            "02-00-00-00-01-fe",
            "0g:00:00:00:01:fe",
            "+2:00:00:00:01:fe",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
        assert!(check_unicast_mac(&[0; 6]).is_err());
        assert!(check_unicast_mac(&[1, 0, 0x5e, 0, 0, 1]).is_err());
        assert!(check_unicast_mac(&[0xff; 6]).is_err());
        assert!(check_unicast_mac(&[2, 0, 0, 0, 0, 1]).is_ok());
        assert_eq!(format_mac(&[2, 0xab, 0, 0, 0, 1]), "02:ab:00:00:00:01");
    }

    #[test]
    fn names() {
        assert!(check_ifname("lan0").is_ok());
        assert!(check_ifname("a23456789012345").is_ok());
        for bad in ["", "a234567890123456", ".", "..", "a/b", "a:1", "a b"] {
            assert!(check_ifname(bad).is_err(), "{bad}");
        }
        assert!(check_gateway_name("gw-A_1").is_ok());
        for bad in ["", "gw A", "gw.a", &"x".repeat(33)] {
            assert!(check_gateway_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses() {
        let a = parse_port_address("10.10.1.1/24").expect("valid");
        assert_eq!(
            (a.addr(), a.prefix_len()),
            (Ipv4Addr::new(10, 10, 1, 1), 24)
        );
        assert!(parse_port_address("10.10.1.0/31").is_ok());
        for bad in [
            "10.10.1.1",
            "10.10.1.1/33",
            "10.10.1.1/x",
            "10.10.1/24",
            "10.10.1.0/24",
            "10.10.1.255/24",
            "10.10.1.1/32",
            "127.0.0.1/8",
            "224.0.0.1/24",
            "0.0.0.0/8",
        ] {
            assert!(parse_port_address(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_prefix("0.0.0.0/0").expect("valid").prefix_len(), 0);
        assert!(parse_prefix("10.20.0.0/16").is_ok());
        let e = parse_prefix("10.20.0.1/16").expect_err("host bits");
        assert!(e.contains("10.20.0.0/16"), "{e}");
        assert!(parse_ipv4("010.1.1.1").is_err());
    }

    #[test]
    fn dual_family_values_pick_their_parser_by_the_colon() {
        assert_eq!(
            parse_ip("10.1.2.3"),
            Ok(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)))
        );
        assert_eq!(parse_ip("fd00::1"), Ok("fd00::1".parse().unwrap()));
        assert!(parse_ip("10.1.2").unwrap_err().contains("IPv4"));
        assert!(parse_ip("fd00::g").unwrap_err().contains("IPv6"));
        assert_eq!(
            parse_prefix_any("10.20.0.0/16"),
            Ok("10.20.0.0/16".parse().unwrap())
        );
        assert_eq!(
            parse_prefix_any("fd00:20::/32"),
            Ok("fd00:20::/32".parse().unwrap())
        );
        assert!(parse_prefix_any("fd00:20::1/32")
            .unwrap_err()
            .contains("host bits"));
        assert!(parse_prefix_any("10.20.0.0/33")
            .unwrap_err()
            .contains("0 to 32"));
    }
}
