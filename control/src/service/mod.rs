//! `s2cs run`: the control process.
//!
//! - [`Shared`]: the state every task works on: sessions ([`State`]), the
//!   region writer, the registry, the TLS configurations.
//! - [`peer_server`]: accepts the peer gateways' mutual-TLS connections and
//!   answers key offers, commits and rekey requests (responder side).
//! - [`negotiate`]: the initiator side of one key exchange.
//! - [`admin`]: the local admin socket (create, list, status, release, rekey).
//! - [`request`]: the checks of API requests that need no session state.
//! - [`timers`]: rekey triggers, grace-period expiry, data plane restarts.
//!
//! The configured `[[tunnels]]` ([`crate::tunnel`]) are sessions created
//! here at every start, before the registry's sessions are restored; they
//! are never written to the registry.
//!
//! Every change to the SAs is published to the workers before the next
//! protocol step ([`Shared::publish`]): the peer is only told to move on
//! once our data plane has moved.

pub mod admin;
pub mod api;
pub mod dataplane_stats;
pub mod guard;
pub mod negotiate;
pub mod peer_server;
pub mod request;
pub mod timers;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};
use scistream_region::{Capacities, ShmError, ShmWriter};
use tracing::{info, warn};

use crate::config::{self, ControlConfig};
use crate::peer::tls::{self, Identity, TrustedPeer};
use crate::registry::{Registry, RegistryError, SessionRecord};
use crate::state::{Limits, State, StateError};
use crate::tunnel;

/// How long a publish waits for the workers to move on.
pub const PUBLISH_GRACE: Duration = Duration::from_secs(2);

/// What all tasks share.
pub struct Shared {
    /// The configuration.
    pub cfg: ControlConfig,
    /// Sessions and SAs.
    pub state: Mutex<State>,
    /// The region writer.
    pub writer: Mutex<ShmWriter>,
    /// The session registry.
    pub registry: Mutex<Registry>,
    /// Our certificate and key.
    pub identity: Identity,
    /// The configured peers, in configuration order.
    pub peers: Vec<TrustedPeer>,
    /// Sessions with a key exchange in flight (initiator side).
    pub in_flight: Mutex<HashSet<String>>,
    /// SA lifetimes.
    pub limits: Limits,
    /// Grace period of superseded inbound SAs.
    pub grace: Duration,
    /// The data plane's stats segment.
    pub dp_stats: Mutex<dataplane_stats::DataplaneStats>,
    /// Per-session traffic, from the segment's per-SA counters.
    pub traffic: Mutex<crate::traffic::Traffic>,
    /// The control process's counters and histograms.
    pub metrics: crate::metrics::ControlMetrics,
    /// The audit log.
    pub audit: crate::audit::AuditLog,
    /// The last outcome of each peer's control channel, by peer name.
    pub peer_health: Mutex<std::collections::HashMap<String, PeerHealth>>,
}

/// How the control channel with one peer last went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerHealth {
    /// True if the last contact (either direction) succeeded.
    pub up: bool,
    /// When a contact last succeeded, seconds since the Unix epoch.
    pub last_contact_unix: Option<u64>,
}

/// Why a session could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The state refused it (duplicate uid, port in use).
    #[error(transparent)]
    State(#[from] StateError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The tables do not fit.
    #[error(transparent)]
    State(#[from] StateError),
    /// The region refused.
    #[error(transparent)]
    Shm(#[from] ShmError),
}

/// Locks `m`, whether or not a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves consistent data here (every
    // mutation is a single call), so poisoning is not fatal.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// The sessions, locked.
    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The registry, locked.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    /// Notes the outcome of a contact with peer `name`'s control channel.
    pub fn peer_contact(&self, name: &str, up: bool) {
        let mut h = lock(&self.peer_health);
        let e = h.entry(name.to_string()).or_default();
        e.up = up;
        if up {
            e.last_contact_unix = Some(unix_now());
        }
    }

    /// Index of the peer named `name`.
    pub fn peer_index(&self, name: &str) -> Option<usize> {
        self.cfg.peers.iter().position(|p| p.name == name)
    }

    /// The ESP-in-UDP endpoint of peer `i`.
    pub fn peer_endpoint(&self, i: usize) -> SocketAddr {
        let p = &self.cfg.peers[i];
        SocketAddr::new(p.outer_address(), p.udp_port)
    }

    /// Writes the current state into the region and waits until every
    /// worker uses it. Blocking (the QSBR wait): call from a blocking
    /// context (`block_in_place` or a plain thread).
    pub fn publish_locked(&self, state: &State) -> Result<u64, PublishError> {
        // The SAs this publish drops are counted one last time.
        self.sample_traffic_locked(state);
        let mut w = lock(&self.writer);
        state.check_fits(w.capacities())?;
        let limits = self.limits;
        let generation = w.publish(|t| state.render(t, &limits))?;
        // Only once the workers use the new tables may the peer be told
        // (a new inbound SA must be in use before the peer seals with it).
        w.wait_until_seen()?;
        Ok(generation)
    }

    /// Adds `record` to the state `st` (locked by the caller, so that a
    /// port reservation and the creation are one step) and to the
    /// registry: both or neither.
    pub fn register_locked(
        &self,
        st: &mut State,
        record: SessionRecord,
    ) -> Result<(), RegisterError> {
        st.create(record.clone())?;
        if let Err(e) = self.registry().insert(&record) {
            let _ = st.release(&record.uid);
            return Err(e.into());
        }
        Ok(())
    }

    /// Releases session `uid`: removes it from the state and the registry,
    /// publishes (its SAs and listeners are out of the workers' tables when
    /// this returns) and, if it had keys, tells its peer. From async code.
    pub fn release_session(self: &Arc<Self>, uid: &str) -> anyhow::Result<()> {
        let released = tokio::task::block_in_place(|| -> anyhow::Result<_> {
            let mut st = self.state();
            let s = st.release(uid)?;
            self.registry().remove(uid)?;
            self.publish_locked(&st)?;
            Ok(s)
        })?;
        if released.negotiated || released.outbound.is_some() {
            tokio::spawn(negotiate::notify_release(
                self.clone(),
                uid.to_string(),
                released.record.peer.clone(),
            ));
        }
        info!(uid = %uid, "session released; its SAs and listeners are gone from the workers' tables");
        Ok(())
    }

    /// Persists the key epoch of session `uid` after a switch. A tunnel's
    /// session is not in the registry (the configuration recreates it at
    /// start, and the peer channel recovers the epoch: a stale offer is
    /// answered with the peer's epoch), so nothing is written for it.
    /// Blocking: call from a blocking context.
    pub fn persist_epoch(&self, uid: &str, epoch: u64) -> Result<(), RegistryError> {
        if tunnel::is_tunnel_uid(uid) {
            return Ok(());
        }
        self.registry().set_epoch(uid, epoch)
    }

    /// [`Shared::publish_locked`] from async code.
    pub fn publish(&self) -> Result<u64, PublishError> {
        tokio::task::block_in_place(|| {
            let state = self.state();
            self.publish_locked(&state)
        })
    }
}

/// Builds the shared state: loads the identity and peers, opens the
/// registry, attaches to (or creates) the region and adopts what the
/// workers are using.
pub fn prepare(cfg: ControlConfig) -> Result<Arc<Shared>> {
    let identity = Identity::load(&cfg.identity.cert, &cfg.identity.key)
        .context("loading the identity certificate and key")?;
    let audit =
        crate::audit::AuditLog::open(cfg.logging.audit_file.as_deref()).with_context(|| {
            format!(
                "opening the audit log {}",
                cfg.logging
                    .audit_file
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display()
            )
        })?;
    let mut peers = Vec::new();
    for p in &cfg.peers {
        let trust = match &p.trust {
            config::PeerTrust::Ca(path) => tls::PeerTrust::load_ca(path)
                .with_context(|| format!("peer {}: loading its CA", p.name))?,
            config::PeerTrust::Pin(pin) => tls::PeerTrust::Pin(*pin),
        };
        peers.push(TrustedPeer {
            name: p.name.clone(),
            trust,
        });
    }
    let registry = Registry::open(&cfg.registry.path).context("opening the session registry")?;
    let caps = Capacities {
        sas: cfg.shm.sas,
        routes: cfg.shm.routes,
        listeners: cfg.shm.listeners,
        workers: cfg.shm.workers,
    };
    let (mut writer, adopted) = ShmWriter::open_or_create(&cfg.shm.path, caps)
        .context("opening the shared-memory region")?;
    writer.set_grace(PUBLISH_GRACE);
    // The incarnation now in the region is the data plane we adopt from.
    let _ = writer.take_incarnation_change();
    let incarnation = writer.incarnation();
    let mut state = State::new();
    for t in &cfg.tunnels {
        let (record, routes) = tunnel::session(t, &cfg.gateway.name, unix_now());
        let initiator = tunnel::initiates(&cfg.gateway.name, &t.peer);
        let uid = record.uid.clone();
        state
            .create_tunnel(record, routes)
            .with_context(|| format!("tunnel {}", t.name))?;
        info!(
            uid = %uid,
            peer = %t.peer,
            initiator,
            local = ?t.local,
            remote = ?t.remote,
            "tunnel configured"
        );
    }
    for record in registry
        .load_all()
        .context("loading the session registry")?
    {
        let uid = record.uid.clone();
        if tunnel::is_tunnel_uid(&uid) {
            warn!(uid = %uid, "registry: a session with a tunnel's uid is not restored (tunnels come from [[tunnels]] only)");
            continue;
        }
        if let Err(e) = state.create(record) {
            warn!(uid = %uid, error = %e, "registry: session not restored");
        }
    }
    if adopted {
        let (out, inb) = state.adopt(&writer.current(), incarnation);
        if writer.current().keyed_for() != incarnation {
            warn!(
                keyed_for = writer.current().keyed_for(),
                incarnation,
                "the region's keys were written for another data plane: nothing adopted, every session gets new keys"
            );
        }
        info!(
            path = %cfg.shm.path.display(),
            generation = writer.generation(),
            outbound = out,
            inbound = inb,
            "attached to the existing region; the workers keep their keys until renegotiated"
        );
    } else {
        info!(path = %cfg.shm.path.display(), ?caps, "created the shared-memory region");
    }
    let sessions = state.sessions().count();
    if sessions > 0 {
        info!(sessions, "sessions restored from the registry");
    }
    let limits = Limits {
        rekey_seconds: u64::from(cfg.keys.rekey_seconds),
        rekey_packets: cfg.keys.rekey_packets,
        rekey_bytes: cfg.keys.rekey_bytes,
    };
    let grace = Duration::from_secs(u64::from(cfg.keys.grace_seconds));
    Ok(Arc::new(Shared {
        cfg,
        state: Mutex::new(state),
        writer: Mutex::new(writer),
        registry: Mutex::new(registry),
        identity,
        peers,
        in_flight: Mutex::new(HashSet::new()),
        limits,
        grace,
        dp_stats: Mutex::default(),
        traffic: Mutex::default(),
        metrics: crate::metrics::ControlMetrics::default(),
        audit,
        peer_health: Mutex::default(),
    }))
}

/// Runs the control process until SIGINT or SIGTERM.
pub async fn run(cfg: ControlConfig) -> Result<()> {
    // SIGTERM is handled from the start: once "s2cs ready" is logged, a
    // service manager may stop us at any moment, and must see a clean exit.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shared = prepare(cfg)?;
    // Publish what we hold (adopted or restored) so that the tables match
    // our state from the start.
    if let Err(e) = shared.publish() {
        warn!(error = %e, "initial publish failed; retrying with the timers");
    }
    let server = peer_server::bind(&shared).await?;
    let admin = admin::bind(&shared)?;
    let mut tasks = vec![
        tokio::spawn(peer_server::serve(shared.clone(), server)),
        tokio::spawn(admin::serve(shared.clone(), admin)),
        tokio::spawn(timers::run(shared.clone())),
    ];
    if let Some(listen) = shared.cfg.metrics.listen {
        let listener = crate::metrics::bind(listen).await?;
        let sh = shared.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(sh, listener).await {
                tracing::error!(error = %format!("{e:#}"), "the metrics endpoint stopped");
            }
        }));
    }
    if let Some(api_cfg) = shared.cfg.api.as_ref().filter(|a| a.listen.is_some()) {
        // Every admitted API connection holds a descriptor, beside the
        // peer channel, the region and the registry.
        guard::raise_open_files(api_cfg.limits.max_connections + 1024);
        let api = api::Api::new(shared.clone())?;
        let listener = api.bind().await?;
        tasks.push(tokio::spawn(async move {
            if let Err(e) = api.serve(listener).await {
                tracing::error!(error = %format!("{e:#}"), "the gRPC API stopped");
            }
        }));
    }
    // Ready once every listener is bound: a service manager (or a test)
    // that sees this line finds the peer port, the admin socket, the
    // metrics and the API all accepting.
    info!(
        gateway = %shared.cfg.gateway.name,
        peer_listen = %shared.cfg.control.peer_listen,
        admin = %shared.cfg.control.admin_socket.display(),
        "s2cs ready"
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT: stopping"),
        _ = term.recv() => info!("SIGTERM: stopping"),
    }
    for t in tasks {
        t.abort();
    }
    let _ = std::fs::remove_file(&shared.cfg.control.admin_socket);
    // The region stays: the workers keep forwarding on the keys they hold.
    Ok(())
}
