//! The checks of the northbound API's requests that depend only on the
//! decoded message and the configuration: session ids, roles, `num_conn`,
//! `rate` and endpoint lists. Each refusal is INVALID_ARGUMENT with a
//! reason that quotes at most [`MAX_ENDPOINT_LEN`] characters of what it
//! refused, so an oversized field is never echoed back.
//!
//! The handlers in [`super::api`] call these before they look at any
//! session; what needs the sessions (ownership, the hello precondition,
//! the peer a CONS session's remote listeners name, the allow-list) stays
//! there. The `grpc_request` fuzz target drives them on arbitrary messages.

// `tonic::Status` is tonic's own error type (176 bytes); the handlers
// return it as is.
#![allow(clippy::result_large_err)]

use std::net::{IpAddr, SocketAddr};

use tonic::Status;

use crate::proto::{Hello, Request as Req, UpdateTargets};
use crate::registry::SessionRole;

/// Longest endpoint string the API parses: `[IPv6]:port` with every group
/// written out is 47 bytes. Also the most of any refused value a status
/// quotes.
pub const MAX_ENDPOINT_LEN: usize = 64;

/// What the checks depend on: the `[api]` bound on listeners and the
/// gateway's own addresses (whose families the endpoints must share).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// `api.max_num_conn`: the most listeners a session may have, and the
    /// most endpoints a list may hold.
    pub max_num_conn: u32,
    /// `gateway.wan_address`: PROD sessions' listeners are on it.
    pub wan_address: IpAddr,
    /// `gateway.lan_address`: CONS sessions' listeners are on it.
    pub lan_address: IpAddr,
}

/// A `req` that passed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReqArgs {
    /// The session id in canonical form.
    pub uid: String,
    /// PROD (inbound) or CONS (outbound).
    pub role: SessionRole,
    /// Listeners to reserve, 1..=`max_num_conn`.
    pub num_conn: usize,
    /// The rate the client asked for, kB/s (SciStream's unit), 0 = unlimited.
    pub rate_kbytes: u32,
}

/// At most [`MAX_ENDPOINT_LEN`] characters of `s`, and its length if cut.
pub fn shown(s: &str) -> String {
    match s.char_indices().nth(MAX_ENDPOINT_LEN) {
        None => s.to_string(),
        Some((at, _)) => format!("{}... ({} bytes)", &s[..at], s.len()),
    }
}

/// The session id `raw` in canonical form: a UUID string of any version
/// (SciStream's client makes version-1 uuids).
pub fn uid(raw: &str) -> Result<String, Status> {
    crate::uid::canonical_uid(raw).ok_or_else(|| {
        Status::invalid_argument(format!(
            "uid {:?} is not a UUID (expected a form like 4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3)",
            shown(raw)
        ))
    })
}

/// `PROD` or `CONS`.
pub fn role(raw: &str) -> Result<SessionRole, Status> {
    match raw {
        "PROD" => Ok(SessionRole::Inbound),
        "CONS" => Ok(SessionRole::Outbound),
        other => Err(Status::invalid_argument(format!(
            "role `{}`: expected `PROD` or `CONS`",
            shown(other)
        ))),
    }
}

/// The API's name of a role.
pub fn role_name(r: SessionRole) -> &'static str {
    match r {
        SessionRole::Inbound => "PROD",
        SessionRole::Outbound => "CONS",
    }
}

/// The checks of a `req`: uid, role, `num_conn` within 1..=`max_num_conn`
/// and a `rate` that is not negative.
pub fn req(r: &Req, b: &Bounds) -> Result<ReqArgs, Status> {
    let uid = uid(&r.uid)?;
    let role = role(&r.role)?;
    if r.num_conn < 1 || r.num_conn as u32 > b.max_num_conn {
        return Err(Status::invalid_argument(format!(
            "num_conn {} is out of range 1..={}",
            r.num_conn, b.max_num_conn
        )));
    }
    let rate_kbytes = u32::try_from(r.rate)
        .map_err(|_| Status::invalid_argument(format!("rate {} is negative", r.rate)))?;
    Ok(ReqArgs {
        uid,
        role,
        num_conn: r.num_conn as usize,
        rate_kbytes,
    })
}

/// The producer endpoints of a `hello` for a session of `role`: for PROD,
/// `prod_listeners` parsed, of the WAN address's family; for CONS, none
/// (SciStream's consumer-side hello carries none that matter).
pub fn prod_listeners(r: &Hello, role: SessionRole, b: &Bounds) -> Result<Vec<SocketAddr>, Status> {
    match role {
        SessionRole::Inbound => {
            let a = endpoints("prod_listeners", &r.prod_listeners, b.max_num_conn)?;
            same_family("prod_listeners", &a, b.wan_address, "gateway.wan_address")?;
            Ok(a)
        }
        SessionRole::Outbound => Ok(Vec::new()),
    }
}

/// An `update`'s role, when it gives one, must be its session's.
pub fn update_role(r: &UpdateTargets, session: SessionRole) -> Result<(), Status> {
    if !r.role.is_empty() && role(&r.role)? != session {
        return Err(Status::invalid_argument(format!(
            "update role {} differs from the session's {}",
            r.role,
            role_name(session)
        )));
    }
    Ok(())
}

/// An `update`'s `remote_listeners` for a session of `role`, parsed: of the
/// family of the address our listeners for them are on (WAN for PROD, LAN
/// for CONS) and, for CONS, all on one peer gateway.
pub fn remote_listeners(
    r: &UpdateTargets,
    role: SessionRole,
    b: &Bounds,
) -> Result<Vec<SocketAddr>, Status> {
    let remotes = endpoints("remote_listeners", &r.remote_listeners, b.max_num_conn)?;
    match role {
        SessionRole::Inbound => same_family(
            "remote_listeners",
            &remotes,
            b.wan_address,
            "gateway.wan_address",
        )?,
        SessionRole::Outbound => {
            same_family(
                "remote_listeners",
                &remotes,
                b.lan_address,
                "gateway.lan_address",
            )?;
            let ip = remotes[0].ip();
            if let Some(other) = remotes.iter().find(|a| a.ip() != ip) {
                return Err(Status::invalid_argument(format!(
                    "remote_listeners span two gateways ({ip} and {})",
                    other.ip()
                )));
            }
        }
    }
    Ok(remotes)
}

/// Parses the `ip:port` list `field` of 1..=`max` entries, none with port 0
/// or an unspecified address.
pub fn endpoints(field: &str, list: &[String], max: u32) -> Result<Vec<SocketAddr>, Status> {
    if list.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is empty")));
    }
    if list.len() > max as usize {
        return Err(Status::invalid_argument(format!(
            "{field} has {} entries; at most {max} (api.max_num_conn)",
            list.len()
        )));
    }
    list.iter()
        .map(|s| {
            let parsed = (s.len() <= MAX_ENDPOINT_LEN)
                .then(|| s.trim().parse::<SocketAddr>().ok())
                .flatten();
            let a = parsed.ok_or_else(|| {
                Status::invalid_argument(format!(
                    "{field}: `{}` is not an ip:port (a.b.c.d:port, or [IPv6]:port)",
                    shown(s)
                ))
            })?;
            match a.port() == 0 || a.ip().is_unspecified() {
                true => Err(Status::invalid_argument(format!(
                    "{field}: `{a}` is not usable"
                ))),
                false => Ok(a),
            }
        })
        .collect()
}

/// Refuses endpoints of `field` whose family differs from `own`, the
/// gateway address (`own_key`) our listeners for them are on: listener mode
/// rewrites addresses and ports, never the IP version.
pub fn same_family(
    field: &str,
    list: &[SocketAddr],
    own: IpAddr,
    own_key: &str,
) -> Result<(), Status> {
    let family = |ip: IpAddr| if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    match list.iter().find(|a| a.is_ipv4() != own.is_ipv4()) {
        None => Ok(()),
        Some(a) => Err(Status::invalid_argument(format!(
            "{field}: `{a}` is {} but this gateway's listeners for it are on its {} address {own} ({own_key}); \
             listener mode does not translate between IPv4 and IPv6",
            family(a.ip()),
            family(own)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn bounds() -> Bounds {
        Bounds {
            max_num_conn: 4,
            wan_address: "192.0.2.1".parse().unwrap(),
            lan_address: "10.0.0.1".parse().unwrap(),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_valid_req_gives_the_canonical_uid() {
        let r = Req {
            uid: "4F8583BC-A4D3-11EE-9FD6-034D1FCBD7C3".into(),
            role: "CONS".into(),
            num_conn: 4,
            rate: 10_000,
        };
        let a = req(&r, &bounds()).unwrap();
        assert_eq!(a.uid, "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3");
        assert_eq!(a.role, SessionRole::Outbound);
        assert_eq!((a.num_conn, a.rate_kbytes), (4, 10_000));
    }

    #[test]
    fn req_numbers_out_of_range_are_refused_with_the_value() {
        let base = Req {
            uid: "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3".into(),
            role: "PROD".into(),
            num_conn: 1,
            rate: 0,
        };
        for (num_conn, rate, says) in [
            (0, 0, "num_conn 0 is out of range 1..=4"),
            (5, 0, "num_conn 5 is out of range 1..=4"),
            (-7, 0, "num_conn -7 is out of range"),
            (1, -1, "rate -1 is negative"),
        ] {
            let r = Req {
                num_conn,
                rate,
                ..base.clone()
            };
            let e = req(&r, &bounds()).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(e.message().contains(says), "{}", e.message());
        }
    }

    #[test]
    fn a_huge_field_is_quoted_short() {
        let huge = "x".repeat(1 << 20);
        for e in [
            uid(&huge).unwrap_err(),
            role(&huge).unwrap_err(),
            endpoints("prod_listeners", std::slice::from_ref(&huge), 4).unwrap_err(),
        ] {
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(e.message().len() < 200, "{} bytes", e.message().len());
            assert!(e.message().contains("1048576 bytes"), "{}", e.message());
        }
    }

    #[test]
    fn endpoint_lists_are_bounded_parsed_and_of_one_family() {
        let b = bounds();
        let hello = |v: &[&str]| Hello {
            uid: String::new(),
            prod_listeners: strings(v),
            role: String::new(),
        };
        let ok = prod_listeners(
            &hello(&["10.0.0.9:5000", " 10.0.0.8:5001 "]),
            SessionRole::Inbound,
            &b,
        );
        assert_eq!(ok.unwrap().len(), 2);
        assert!(prod_listeners(&hello(&[]), SessionRole::Outbound, &b)
            .unwrap()
            .is_empty());
        for (list, says) in [
            (vec![], "prod_listeners is empty"),
            (vec!["10.0.0.9:1"; 5], "has 5 entries; at most 4"),
            (vec!["10.0.0.9"], "is not an ip:port"),
            (vec!["10.0.0.9:0"], "is not usable"),
            (vec!["0.0.0.0:80"], "is not usable"),
            (vec!["[2001:db8::1]:80"], "is IPv6 but"),
        ] {
            let e = prod_listeners(&hello(&list), SessionRole::Inbound, &b).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(e.message().contains(says), "{list:?}: {}", e.message());
        }
    }

    #[test]
    fn cons_remote_listeners_name_one_gateway() {
        let b = bounds();
        let update = |v: &[&str], role: &str| UpdateTargets {
            uid: String::new(),
            remote_listeners: strings(v),
            role: role.into(),
        };
        let one = update(&["10.9.0.1:5100", "10.9.0.1:5101"], "CONS");
        assert_eq!(
            remote_listeners(&one, SessionRole::Outbound, &b)
                .unwrap()
                .len(),
            2
        );
        let two = update(&["10.9.0.1:5100", "10.9.0.2:5101"], "CONS");
        let e = remote_listeners(&two, SessionRole::Outbound, &b).unwrap_err();
        assert!(e.message().contains("span two gateways"), "{}", e.message());
        // PROD sessions' targets may be anywhere.
        assert!(remote_listeners(&two, SessionRole::Inbound, &b).is_ok());
        assert!(update_role(&update(&[], ""), SessionRole::Inbound).is_ok());
        let e = update_role(&update(&[], "CONS"), SessionRole::Inbound).unwrap_err();
        assert!(e.message().contains("differs from the session's PROD"));
    }
}
