//! Routed-mode (site-to-site) tunnels, declared in `[[tunnels]]`.
//!
//! A tunnel is a session created from the configuration at every start
//! (never through the API or the admin socket, and never written to the
//! registry: the configuration is what persists it). Its keys are
//! negotiated and rekeyed over the peer channel exactly as a session's,
//! under the uid `tunnel:<name>`, which no other session can have (API
//! uids are UUIDs; the admin socket refuses the prefix). It renders into
//! the region as its outbound SA plus one route entry per `remote` prefix
//! pointing at that SA, and its inbound SAs.
//!
//! **Who initiates.** Both ends must agree without talking, so the rule
//! is fixed: the gateway whose name sorts first (byte-wise: `"gwa"` before
//! `"gwb"`, `"B"` before `"a"`) initiates the exchanges, as the consumer
//! side does for a stream session; the other responds. A tunnel is bound
//! to its configured peer from the start, so the responder accepts offers
//! for it from that peer only.

use ipnet::IpNet;

use crate::config::TunnelConfig;
use crate::registry::{SessionRecord, SessionRole};

/// What the uid of every tunnel's session starts with.
pub const UID_PREFIX: &str = "tunnel:";

/// The session uid of tunnel `name`: `tunnel:<name>`.
pub fn uid(name: &str) -> String {
    format!("{UID_PREFIX}{name}")
}

/// True if `uid` is reserved for a tunnel (starts with [`UID_PREFIX`]).
pub fn is_tunnel_uid(uid: &str) -> bool {
    uid.starts_with(UID_PREFIX)
}

/// True if gateway `own` initiates the exchanges of a tunnel with gateway
/// `peer`: its name sorts first. The names differ (a peer never has our
/// name), so exactly one end initiates.
pub fn initiates(own: &str, peer: &str) -> bool {
    own < peer
}

/// A tunnel's part of its session: what the session renders as routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// The `[[tunnels]]` name.
    pub name: String,
    /// The prefixes behind this gateway (shown, not rendered).
    pub local: Vec<IpNet>,
    /// The prefixes behind the peer: one route entry each.
    pub remote: Vec<IpNet>,
}

/// The session of tunnel `cfg` on gateway `own`: its record (uid
/// `tunnel:<name>`, bound to the configured peer, no listeners; the role
/// is [`SessionRole::Outbound`] on the initiating end and
/// [`SessionRole::Inbound`] on the other, which is all the role means for a
/// tunnel) and its routes.
pub fn session(cfg: &TunnelConfig, own: &str, created_unix: u64) -> (SessionRecord, Tunnel) {
    let role = match initiates(own, &cfg.peer) {
        true => SessionRole::Outbound,
        false => SessionRole::Inbound,
    };
    let record = SessionRecord {
        uid: uid(&cfg.name),
        role,
        peer: cfg.peer.clone(),
        epoch: 0,
        listeners: Vec::new(),
        created_unix,
        rate_bps: 0,
        owner: String::new(),
    };
    let tunnel = Tunnel {
        name: cfg.name.clone(),
        local: cfg.local.clone(),
        remote: cfg.remote.clone(),
    };
    (record, tunnel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(peer: &str) -> TunnelConfig {
        TunnelConfig {
            name: "site".into(),
            peer: peer.into(),
            local: vec!["10.10.1.0/24".parse().unwrap()],
            remote: vec!["10.20.1.0/24".parse().unwrap()],
        }
    }

    #[test]
    fn exactly_one_end_initiates() {
        for (a, b) in [("gwa", "gwb"), ("B", "a"), ("gw-1", "gw_1"), ("x", "xy")] {
            assert!(initiates(a, b) != initiates(b, a), "{a} / {b}");
        }
        assert!(initiates("gwa", "gwb") && !initiates("gwb", "gwa"));
        let (a, _) = session(&cfg("gwb"), "gwa", 0);
        let (b, _) = session(&cfg("gwa"), "gwb", 0);
        assert_eq!(
            (a.role, b.role),
            (SessionRole::Outbound, SessionRole::Inbound)
        );
    }

    #[test]
    fn tunnel_uids_are_never_uuids() {
        let (r, t) = session(&cfg("gwb"), "gwa", 7);
        assert_eq!(r.uid, "tunnel:site");
        assert!(is_tunnel_uid(&r.uid));
        assert_eq!(crate::uid::canonical_uid(&r.uid), None);
        assert_eq!((r.peer.as_str(), r.epoch, r.created_unix), ("gwb", 0, 7));
        assert!(r.listeners.is_empty() && r.owner.is_empty());
        assert_eq!(t.remote, cfg("gwb").remote);
        assert!(!is_tunnel_uid("4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3"));
    }
}
