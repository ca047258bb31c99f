//! Control-state metrics read at scrape time: sessions by state, each
//! session's traffic (from [`Traffic`], summed across rekeys) and its
//! rate limit, and the peers. Series of a released session are simply not
//! produced any more: label cardinality follows the live sessions.

use crate::service::Shared;
use crate::state::Session;

use super::families::{labels, Families, Kind};

/// A session's state as the API and the metrics show it: `reserved` (an
/// API session waiting for its application's hello), `ready` (waiting for
/// keys) or `keyed`.
pub fn state_name(s: &Session) -> &'static str {
    match (&s.outbound, &s.hello) {
        (Some(_), _) => "keyed",
        (None, None) if s.tunnel.is_none() && !s.record.owner.is_empty() => "reserved",
        (None, _) => "ready",
    }
}

/// Adds the control families into `f`.
pub fn collect(sh: &Shared, f: &mut Families) {
    let st = sh.state();
    let traffic = crate::service::lock(&sh.traffic);
    let mut by_state = [("reserved", 0u64), ("ready", 0), ("keyed", 0)];
    let now = std::time::Instant::now();
    for s in st.sessions() {
        let state = state_name(s);
        if let Some(n) = by_state.iter_mut().find(|(k, _)| *k == state) {
            n.1 += 1;
        }
        let uid = s.record.uid.as_str();
        let kind = if s.tunnel.is_some() {
            "tunnel"
        } else {
            "stream"
        };
        let t = traffic.session(uid);
        for (dir, flow, bps) in [("out", t.out, t.out_bps), ("in", t.inbound, t.in_bps)] {
            let l = labels([("uid", uid), ("direction", dir)]);
            f.add(
                Kind::Counter,
                "s2cs_session_packets",
                "A session's packets through this gateway's data plane (out: sealed towards the peer, in: opened from it), across rekeys",
                l.clone(),
                flow.packets as f64,
            );
            f.add(
                Kind::Counter,
                "s2cs_session_bytes",
                "A session's inner bytes (IP packets) through this gateway's data plane, across rekeys",
                l.clone(),
                flow.bytes as f64,
            );
            f.add(
                Kind::Gauge,
                "s2cs_session_rate_bytes_per_second",
                "A session's inner byte rate over the last second or so",
                l,
                bps as f64 / 8.0,
            );
        }
        for (reason, v) in [
            ("auth_failed", t.auth_failed),
            ("replayed", t.replayed),
            ("rate_limited", t.rate_limited),
        ] {
            f.add(
                Kind::Counter,
                "s2cs_session_drops",
                "A session's packets dropped by the data plane, by reason",
                labels([("uid", uid), ("reason", reason)]),
                v as f64,
            );
        }
        f.add(
            Kind::Gauge,
            "s2cs_session_rate_limit_bytes_per_second",
            "The inner byte rate a session is policed at on the instrument side (0: unlimited)",
            labels([("uid", uid)]),
            s.record.rate_bps as f64 / 8.0,
        );
        f.add(
            Kind::Gauge,
            "s2cs_session_info",
            "One per session, with its role, peer, kind and state",
            labels([
                ("uid", uid),
                ("role", role_label(s)),
                ("peer", &s.record.peer),
                ("kind", kind),
                ("state", state),
            ]),
            1.0,
        );
        f.add(
            Kind::Gauge,
            "s2cs_session_key_epoch",
            "A session's current key epoch",
            labels([("uid", uid)]),
            s.record.epoch as f64,
        );
        if let Some(at) = s.switched_at {
            f.add(
                Kind::Gauge,
                "s2cs_session_key_age_seconds",
                "Seconds since a session's last key switch",
                labels([("uid", uid)]),
                now.duration_since(at).as_secs_f64(),
            );
        }
    }
    drop(traffic);
    drop(st);
    for (state, n) in by_state {
        f.add(
            Kind::Gauge,
            "s2cs_sessions",
            "Sessions, by state",
            labels([("state", state)]),
            n as f64,
        );
    }
    let peers = crate::service::lock(&sh.peer_health);
    for p in &sh.cfg.peers {
        let h = peers.get(&p.name).copied().unwrap_or_default();
        f.add(
            Kind::Gauge,
            "s2cs_peer_up",
            "1 if the last contact with a peer gateway's control channel succeeded (either direction)",
            labels([("peer", &p.name)]),
            if h.up { 1.0 } else { 0.0 },
        );
        if let Some(t) = h.last_contact_unix {
            f.add(
                Kind::Gauge,
                "s2cs_peer_last_contact_timestamp_seconds",
                "When a peer gateway's control channel last succeeded, seconds since the Unix epoch",
                labels([("peer", &p.name)]),
                t as f64,
            );
        }
    }
}

fn role_label(s: &Session) -> &'static str {
    match s.record.role {
        crate::registry::SessionRole::Inbound => "PROD",
        crate::registry::SessionRole::Outbound => "CONS",
    }
}
