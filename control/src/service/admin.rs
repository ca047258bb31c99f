//! The local admin socket: a Unix stream socket (mode 0600, in a 0700
//! directory) speaking one JSON object per line each way.
//!
//! Requests (`op` selects the operation):
//! - `{"op":"create","uid":U,"role":"inbound"|"outbound","peer":P,"listeners":[{"port":N,"target":"ip:port"} | {"port":N,"remote":"ip:port"}]}`
//! - `{"op":"list"}`, `{"op":"status","uid":U}`, `{"op":"release","uid":U}`,
//!   `{"op":"rekey","uid":U}`
//!
//! Replies: `{"ok":true,...}` or `{"ok":false,"error":"..."}`. Nothing
//! here ever includes key material. The northbound gRPC API replaces this
//! for users; the socket stays for operators and tests.
//!
//! The configured tunnels are listed too (uid `tunnel:<name>`, role
//! `"tunnel"`, and a `tunnel` object with their prefixes); `rekey` works on
//! them, `release` does not (they come from the configuration), and
//! `create` refuses uids starting with `tunnel:`.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

use super::{negotiate, Shared};
use crate::registry::{ListenerSpec, SessionRecord, SessionRole};
use crate::state::Session;
use crate::tunnel;

/// Longest request line.
pub const MAX_LINE: usize = 64 * 1024;

/// One admin request.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminRequest {
    /// Create a session.
    Create {
        /// Session id.
        uid: String,
        /// "inbound" (producer side) or "outbound" (consumer side).
        role: String,
        /// The peer gateway's name.
        peer: String,
        /// The listeners.
        listeners: Vec<ListenerRequest>,
    },
    /// List the sessions.
    List,
    /// One session.
    Status {
        /// Session id.
        uid: String,
    },
    /// Release a session.
    Release {
        /// Session id.
        uid: String,
    },
    /// Force a key exchange now (initiator side).
    Rekey {
        /// Session id.
        uid: String,
    },
}

/// A listener in a create request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerRequest {
    /// Listening port.
    pub port: u16,
    /// Inbound: the producer application's endpoint.
    #[serde(default)]
    pub target: Option<SocketAddr>,
    /// Outbound: the peer gateway's listener.
    #[serde(default)]
    pub remote: Option<SocketAddr>,
}

/// What `list` and `status` show of a session (never keys).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionStatus {
    /// Session id.
    pub uid: String,
    /// "inbound" or "outbound".
    pub role: String,
    /// Peer gateway.
    pub peer: String,
    /// Key epoch.
    pub epoch: u64,
    /// Key switches since this s2cs started.
    pub rekeys: u64,
    /// Outbound SPI, if keyed.
    pub outbound_spi: Option<u32>,
    /// Inbound SPIs (current and in their grace period).
    pub inbound_spis: Vec<u32>,
    /// Lanes (`[keys] lanes`): the SPIs of the outbound SA's lanes, and of
    /// the inbound SAs' lanes. Left out without lanes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound_lane_spis: Vec<u32>,
    /// See `outbound_lane_spis`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound_lane_spis: Vec<u32>,
    /// Listener ports.
    pub ports: Vec<u16>,
    /// True once this s2cs negotiated the keys in use.
    pub negotiated: bool,
    /// The last negotiation error.
    pub last_error: Option<String>,
    /// Routed mode: the configured tunnel this session keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelStatus>,
}

/// What `list` and `status` show of a configured tunnel.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TunnelStatus {
    /// The `[[tunnels]]` name.
    pub name: String,
    /// True if this side initiates the exchanges (its name sorts first).
    pub initiator: bool,
    /// Prefixes behind this gateway.
    pub local: Vec<String>,
    /// Prefixes behind the peer, routed into the tunnel.
    pub remote: Vec<String>,
}

fn status_of(s: &Session) -> SessionStatus {
    let strings = |nets: &[ipnet::IpNet]| nets.iter().map(|n| n.to_string()).collect();
    let tunnel = s.tunnel.as_ref().map(|t| TunnelStatus {
        name: t.name.clone(),
        initiator: s.is_initiator(),
        local: strings(&t.local),
        remote: strings(&t.remote),
    });
    SessionStatus {
        uid: s.record.uid.clone(),
        role: match tunnel {
            Some(_) => "tunnel".into(),
            None => role_name(s.record.role).into(),
        },
        peer: s.record.peer.clone(),
        epoch: s.record.epoch,
        rekeys: s.rekeys,
        outbound_spi: s.outbound.as_ref().map(|o| o.spi),
        inbound_spis: s.inbound.iter().map(|i| i.sa.spi).collect(),
        outbound_lane_spis: s
            .outbound
            .iter()
            .flat_map(|o| o.lanes.iter().map(|l| l.spi))
            .collect(),
        inbound_lane_spis: s
            .inbound
            .iter()
            .flat_map(|i| i.sa.lanes.iter().map(|l| l.spi))
            .collect(),
        ports: s.record.listeners.iter().map(|l| l.port).collect(),
        negotiated: s.negotiated,
        last_error: s.last_error.clone(),
        tunnel,
    }
}

fn role_name(r: SessionRole) -> &'static str {
    match r {
        SessionRole::Inbound => "inbound",
        SessionRole::Outbound => "outbound",
    }
}

/// Binds the socket: its directory is created 0700 if missing, the socket
/// is made 0600, and a stale socket file is replaced.
pub fn bind(sh: &Shared) -> anyhow::Result<UnixListener> {
    let path = &sh.cfg.control.admin_socket;
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        }
    }
    let _ = fs::remove_file(path);
    let l = UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("binding the admin socket {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| anyhow::anyhow!("chmod 0600 {}: {e}", path.display()))?;
    Ok(l)
}

/// Serves admin connections forever.
pub async fn serve(sh: Arc<Shared>, l: UnixListener) {
    loop {
        match l.accept().await {
            Ok((s, _)) => {
                tokio::spawn(connection(sh.clone(), s));
            }
            Err(e) => {
                warn!(error = %e, "admin socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(sh: Arc<Shared>, s: UnixStream) {
    let (r, mut w) = s.into_split();
    let mut lines = BufReader::new(r).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                let _ = reply(&mut w, json!({"ok": false, "error": e.to_string()})).await;
                return;
            }
        };
        if line.len() > MAX_LINE {
            let _ = reply(&mut w, json!({"ok": false, "error": "request too long"})).await;
            return;
        }
        let answer = match serde_json::from_str::<AdminRequest>(&line) {
            Ok(req) => handle(&sh, req).await,
            Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
        };
        if reply(&mut w, answer).await.is_err() {
            return;
        }
    }
}

async fn reply(w: &mut tokio::net::unix::OwnedWriteHalf, v: Value) -> std::io::Result<()> {
    let mut s = v.to_string();
    s.push('\n');
    w.write_all(s.as_bytes()).await
}

fn err(e: impl std::fmt::Display) -> Value {
    json!({"ok": false, "error": e.to_string()})
}

async fn handle(sh: &Arc<Shared>, req: AdminRequest) -> Value {
    match req {
        AdminRequest::Create {
            uid,
            role,
            peer,
            listeners,
        } => match create(sh, uid, &role, peer, listeners) {
            Ok(uid) => {
                let initiator = sh.state().get(&uid).is_some_and(|s| s.is_initiator());
                if initiator {
                    tokio::spawn(negotiate::rekey(sh.clone(), uid.clone(), "new session"));
                }
                json!({"ok": true, "uid": uid})
            }
            Err(e) => err(format!("{e:#}")),
        },
        AdminRequest::List => {
            let v: Vec<SessionStatus> = sh.state().sessions().map(status_of).collect();
            json!({"ok": true, "sessions": v})
        }
        AdminRequest::Status { uid } => match sh.state().get(&uid) {
            Some(s) => json!({"ok": true, "session": status_of(s)}),
            None => err(format!("unknown session `{uid}`")),
        },
        AdminRequest::Release { uid } if tunnel::is_tunnel_uid(&uid) => err(format!(
            "session `{uid}` is a configured tunnel: remove its [[tunnels]] entry and restart s2cs to remove it"
        )),
        AdminRequest::Release { uid } => match sh.release_session(&uid) {
            Ok(()) => json!({"ok": true}),
            Err(e) => err(format!("{e:#}")),
        },
        AdminRequest::Rekey { uid } => {
            let initiator = sh.state().get(&uid).map(|s| s.is_initiator());
            match initiator {
                Some(true) => {
                    negotiate::rekey(sh.clone(), uid.clone(), "admin").await;
                    match sh.state().get(&uid) {
                        Some(s) => json!({"ok": true, "session": status_of(s)}),
                        None => err("released meanwhile"),
                    }
                }
                Some(false) => {
                    negotiate::request_rekey(sh.clone(), uid, "admin").await;
                    json!({"ok": true})
                }
                None => err(format!("unknown session `{uid}`")),
            }
        }
    }
}

fn create(
    sh: &Shared,
    uid: String,
    role: &str,
    peer: String,
    listeners: Vec<ListenerRequest>,
) -> anyhow::Result<String> {
    let role = match role {
        "inbound" => SessionRole::Inbound,
        "outbound" => SessionRole::Outbound,
        other => anyhow::bail!("role `{other}`: expected `inbound` or `outbound`"),
    };
    if uid.is_empty() || uid.len() > 128 || !uid.bytes().all(|b| b.is_ascii_graphic()) {
        anyhow::bail!("uid must be 1 to 128 printable ASCII characters");
    }
    if tunnel::is_tunnel_uid(&uid) {
        anyhow::bail!(
            "uid `{uid}`: uids starting with `{}` are reserved for the configured [[tunnels]]",
            tunnel::UID_PREFIX
        );
    }
    if sh.peer_index(&peer).is_none() {
        anyhow::bail!("peer `{peer}` is not configured");
    }
    if listeners.is_empty() {
        anyhow::bail!("a session needs at least one listener");
    }
    let range = &sh.cfg.ports.listener_range;
    let mut specs = Vec::new();
    for l in listeners {
        if !range.contains(&l.port) {
            anyhow::bail!(
                "listener port {} is outside the configured range {}-{}",
                l.port,
                range.start(),
                range.end()
            );
        }
        match (role, l.target, l.remote) {
            (SessionRole::Inbound, Some(_), None) | (SessionRole::Outbound, None, Some(_)) => {}
            (SessionRole::Inbound, _, _) => {
                anyhow::bail!(
                    "inbound listener {} needs `target` (and no `remote`)",
                    l.port
                )
            }
            (SessionRole::Outbound, _, _) => {
                anyhow::bail!(
                    "outbound listener {} needs `remote` (and no `target`)",
                    l.port
                )
            }
        }
        if specs.iter().any(|s: &ListenerSpec| s.port == l.port) {
            anyhow::bail!("listener port {} given twice", l.port);
        }
        specs.push(ListenerSpec {
            port: l.port,
            remote: l.remote,
            target: l.target,
        });
    }
    let record = SessionRecord {
        uid: uid.clone(),
        role,
        peer,
        epoch: 0,
        listeners: specs,
        created_unix: super::unix_now(),
        rate_bps: 0,
        owner: String::new(),
    };
    tokio::task::block_in_place(|| sh.register_locked(&mut sh.state(), record.clone()))?;
    info!(uid = %uid, role = role_name(role), peer = %record.peer, listeners = record.listeners.len(), "session created");
    Ok(uid)
}
