//! The northbound API's request validation: arbitrary bytes decoded as the
//! protobuf message of one call (`req`, `hello`, `update`, `release`,
//! `status`), as tonic's codec decodes them, then the checks every handler
//! makes before it touches a session (`service::request`), under bounds and
//! gateway addresses of either family taken from the input.
//!
//! Beyond "no panic": a refusal is INVALID_ARGUMENT and its reason stays
//! short whatever the size of the field it refuses; what is accepted is in
//! range (num_conn, rate, list lengths), in canonical form (uids), usable
//! (no port 0, no unspecified address) and of the gateway's family, prints
//! back to an endpoint string that parses to the same address, and passes
//! the same checks again when re-encoded in its canonical form.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use prost::Message;
use scistream_control::config::{ClientRate, RatePolicy, MAX_MAX_NUM_CONN, MAX_MAX_RATE_KBYTES};
use scistream_control::proto::s2cs::StatusRequest;
use scistream_control::proto::{Hello, Release, Request as Req, UpdateTargets};
use scistream_control::registry::SessionRole;
use scistream_control::service::request::{self, Bounds, MAX_ENDPOINT_LEN};
use tonic::{Code, Status};

/// The longest reason a refusal may give: a quoted value is cut at
/// MAX_ENDPOINT_LEN characters (up to 4 bytes each), the rest is fixed text
/// and two addresses.
const MAX_REASON: usize = 4 * MAX_ENDPOINT_LEN + 300;

fn refused(e: &Status) {
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().len() <= MAX_REASON,
        "a {}-byte reason: {:?}",
        e.message().len(),
        e.message()
    );
}

fn canonical_uid(raw: &str, uid: &str) {
    assert_eq!(uid.len(), 36, "{uid:?}");
    assert!(
        uid.bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{uid:?} is not lower-case hyphenated"
    );
    assert_eq!(request::uid(uid).expect("a canonical uid passes"), uid);
    assert!(raw.len() >= 32, "{raw:?} became {uid:?}");
}

/// Every accepted endpoint list: bounded, usable, of one family, and it
/// prints back to strings that parse to the same addresses.
fn usable(list: &[String], got: &[SocketAddr], b: &Bounds, own: IpAddr) {
    assert_eq!(list.len(), got.len());
    assert!(!got.is_empty() && got.len() <= b.max_num_conn as usize);
    for (s, a) in list.iter().zip(got) {
        assert!(s.len() <= MAX_ENDPOINT_LEN, "a {}-byte endpoint", s.len());
        assert_ne!(a.port(), 0);
        assert!(!a.ip().is_unspecified());
        assert_eq!(a.is_ipv4(), own.is_ipv4(), "{a} against {own}");
        let printed = a.to_string();
        assert!(printed.len() <= MAX_ENDPOINT_LEN);
        assert_eq!(
            printed.parse::<SocketAddr>().ok(),
            Some(*a),
            "{s:?} printed as {printed}"
        );
    }
}

fn printed(list: &[SocketAddr]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

fn address(v6: bool, n: u8) -> IpAddr {
    match v6 {
        false => IpAddr::from([192, 0, 2, n.max(1)]),
        true => IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n.max(1))]),
    }
}

fn role_of(bit: u8) -> SessionRole {
    match bit & 1 {
        0 => SessionRole::Inbound,
        _ => SessionRole::Outbound,
    }
}

fn check_req(r: &Req, b: &Bounds, rate: &RatePolicy) {
    match request::req(r, b) {
        Err(e) => refused(&e),
        Ok(a) => {
            canonical_uid(&r.uid, &a.uid);
            assert_eq!(request::role_name(a.role), r.role);
            assert!(a.num_conn >= 1 && a.num_conn <= b.max_num_conn as usize);
            assert_eq!(i64::from(a.rate_kbytes), i64::from(r.rate));
            // The policer rate never overflows and never exceeds what was
            // asked or allowed.
            let bps = rate.session_bps(a.rate_kbytes);
            let most = u64::from(a.rate_kbytes).max(rate.max_kbytes) * 8_000;
            assert!(
                bps <= most,
                "{bps} b/s from {} kB/s under {rate:?}",
                a.rate_kbytes
            );
            if rate.max_kbytes > 0 {
                assert!(bps <= rate.max_kbytes * 8_000 && bps > 0);
            }
            let again = Req {
                uid: a.uid.clone(),
                ..r.clone()
            };
            let again = Req::decode(again.encode_to_vec().as_slice()).expect("re-encoded");
            assert_eq!(request::req(&again, b).expect("passes again"), a);
        }
    }
}

fn check_hello(r: &Hello, role: SessionRole, b: &Bounds) {
    check_uid_only(&r.uid);
    match request::prod_listeners(r, role, b) {
        Err(e) => refused(&e),
        Ok(got) if role == SessionRole::Outbound => assert!(got.is_empty()),
        Ok(got) => {
            usable(&r.prod_listeners, &got, b, b.wan_address);
            let again = Hello {
                prod_listeners: printed(&got),
                ..r.clone()
            };
            assert_eq!(
                request::prod_listeners(&again, role, b).expect("passes again"),
                got
            );
        }
    }
}

fn check_update(r: &UpdateTargets, role: SessionRole, b: &Bounds) {
    match request::update_role(r, role) {
        Err(e) => refused(&e),
        Ok(()) => assert!(r.role.is_empty() || r.role == request::role_name(role)),
    }
    match request::remote_listeners(r, role, b) {
        Err(e) => refused(&e),
        Ok(got) => {
            let own = match role {
                SessionRole::Inbound => b.wan_address,
                SessionRole::Outbound => b.lan_address,
            };
            usable(&r.remote_listeners, &got, b, own);
            if role == SessionRole::Outbound {
                assert!(
                    got.iter().all(|a| a.ip() == got[0].ip()),
                    "{got:?} span gateways"
                );
            }
            let again = UpdateTargets {
                remote_listeners: printed(&got),
                ..r.clone()
            };
            assert_eq!(
                request::remote_listeners(&again, role, b).expect("passes again"),
                got
            );
        }
    }
}

fn check_uid_only(raw: &str) {
    match request::uid(raw) {
        Err(e) => refused(&e),
        Ok(uid) => canonical_uid(raw, &uid),
    }
}

fuzz_target!(|data: &[u8]| {
    // Four bytes of set-up, then the message as the client sent it.
    let [kind, conn, addrs, rate_byte, message @ ..] = data else {
        return;
    };
    let max_num_conn = match conn {
        0xff => MAX_MAX_NUM_CONN,
        n => 1 + u32::from(*n) % 64,
    };
    let b = Bounds {
        max_num_conn,
        wan_address: address(addrs & 1 != 0, addrs >> 2),
        lan_address: address(addrs & 2 != 0, addrs >> 3),
    };
    let rate = RatePolicy {
        client: match rate_byte & 1 {
            0 => ClientRate::Enforce,
            _ => ClientRate::Ignore,
        },
        max_kbytes: match rate_byte >> 1 {
            0 => 0,
            0x7f => MAX_MAX_RATE_KBYTES,
            n => u64::from(n) * 1_000,
        },
    };
    let role = role_of(kind >> 3);
    match kind % 5 {
        0 => {
            if let Ok(r) = Req::decode(message) {
                check_req(&r, &b, &rate);
            }
        }
        1 => {
            if let Ok(r) = Hello::decode(message) {
                check_hello(&r, role, &b);
            }
        }
        2 => {
            if let Ok(r) = UpdateTargets::decode(message) {
                check_uid_only(&r.uid);
                check_update(&r, role, &b);
            }
        }
        3 => {
            if let Ok(r) = Release::decode(message) {
                check_uid_only(&r.uid);
            }
        }
        _ => {
            if let Ok(r) = StatusRequest::decode(message) {
                check_uid_only(&r.uid);
            }
        }
    }
});
