//! The control process's view of its sessions and their SAs, and how it
//! becomes the shared-memory tables the workers read.
//!
//! Pure state: no I/O, no clock of its own (callers pass `Instant`s), so
//! every transition of the make-before-break rekey is unit-tested.
//!
//! A session's SAs over one rekey (epoch `e` → `e + 1`):
//! 1. the responder installs the inbound SA of `e + 1` (and keeps the
//!    outbound SA of `e + 1` pending);
//! 2. the initiator installs its inbound SA of `e + 1` and switches its
//!    outbound SA to `e + 1`; its inbound SA of `e` expires after the grace
//!    period;
//! 3. on `Commit`, the responder switches its outbound SA to `e + 1`; its
//!    inbound SA of `e` expires after the grace period.
//!
//! A session is either a listener-mode stream session (its outbound SA is
//! named by its listener entries) or a routed-mode tunnel
//! ([`crate::tunnel`]: its outbound SA is named by one route entry per
//! remote prefix); both go through the same rekey steps.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use scistream_region::{
    Algorithm, Capacities, Direction, ListenerEntry, ListenerRole, RouteEntry, SaEntry, SaKeys,
    TablesMut, TablesView,
};
use zeroize::{Zeroize, Zeroizing};

use crate::peer::keys::DirectionKeys;
use crate::registry::{SessionRecord, SessionRole};
use crate::tunnel::Tunnel;

/// One SA as the control process holds it. Debug never shows the key.
pub struct Sa {
    /// SPI.
    pub spi: u32,
    /// AEAD algorithm.
    pub algorithm: Algorithm,
    /// The key in its first `key_len` bytes.
    key: Zeroizing<[u8; 32]>,
    key_len: u8,
    salt: [u8; 4],
    /// The peer's ESP-in-UDP endpoint (outer destination or expected source).
    pub peer: SocketAddr,
    /// The SA's lanes (the session's SAs 1.. of this direction, each with no
    /// lanes of its own): the data plane spreads the session over its
    /// workers with them. Empty without lanes.
    pub lanes: Vec<Sa>,
}

impl Drop for Sa {
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

impl fmt::Debug for Sa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("algorithm", &self.algorithm)
            .field("peer", &self.peer)
            .field("key", &format_args!("<redacted>"))
            .finish()
    }
}

impl Sa {
    /// An SA from negotiated keys.
    pub fn from_keys(k: &DirectionKeys, algorithm: Algorithm, peer: SocketAddr) -> Sa {
        let mut key = Zeroizing::new([0u8; 32]);
        key[..k.key_len].copy_from_slice(k.key_bytes());
        Sa {
            spi: k.spi,
            algorithm,
            key,
            key_len: k.key_len as u8,
            salt: k.salt,
            peer,
            lanes: Vec::new(),
        }
    }

    /// This SA with lanes from negotiated keys (same algorithm and peer).
    pub fn with_lanes(mut self, lanes: &[DirectionKeys]) -> Sa {
        self.lanes = lanes
            .iter()
            .map(|k| Sa::from_keys(k, self.algorithm, self.peer))
            .collect();
        self
    }

    /// True if `spi` is this SA's or one of its lanes'.
    pub fn has_spi(&self, spi: u32) -> bool {
        self.spi == spi || self.lanes.iter().any(|l| l.spi == spi)
    }

    /// SAs in all: this one and its lanes.
    pub fn count(&self) -> usize {
        1 + self.lanes.len()
    }

    /// An SA read back from the region (a restarted control process
    /// adopting what the workers use); None if the entry is not valid.
    pub fn from_entry(e: &SaEntry) -> Option<Sa> {
        let algorithm = e.algorithm()?;
        let key_bytes = e.key()?;
        if key_bytes.len() != algorithm.key_len() {
            return None;
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key[..key_bytes.len()].copy_from_slice(key_bytes);
        Some(Sa {
            spi: e.spi,
            algorithm,
            key,
            key_len: e.key_len,
            salt: e.salt,
            peer: e.peer(),
            lanes: Vec::new(),
        })
    }

    /// The region entry for this SA in direction `direction`, with its
    /// lifetimes; an outbound SA is policed at `rate_bps` (0: unlimited).
    fn entry(&self, direction: Direction, limits: &Limits, rate_bps: u64) -> SaEntry {
        let keys = SaKeys {
            spi: self.spi,
            algorithm: self.algorithm,
            key: &self.key[..usize::from(self.key_len)],
            salt: self.salt,
            esn: true,
        };
        let entry = match direction {
            Direction::Out => SaEntry::outbound(&keys, self.peer, rate_bps),
            Direction::In => SaEntry::inbound(&keys, self.peer),
        };
        // `key_len` fits `algorithm` by construction (from_keys, from_entry).
        let entry = entry.expect("an SA's key fits its algorithm");
        entry.with_hard_lifetime(limits.hard_seconds(), limits.hard_packets())
    }

    /// The region entries of this SA (first) and its lanes (marked
    /// `lane_of` this SA). An outbound session's rate is shared out among
    /// them (each polices its part: the session never exceeds `rate_bps`).
    fn entries(
        &self,
        direction: Direction,
        limits: &Limits,
        rate_bps: u64,
    ) -> impl Iterator<Item = SaEntry> + '_ {
        let share = match rate_bps {
            0 => 0,
            r => (r / self.count() as u64).max(1),
        };
        let limits = *limits;
        std::iter::once(self.entry(direction, &limits, share)).chain(
            self.lanes
                .iter()
                .map(move |l| l.entry(direction, &limits, share).with_lane_of(self.spi)),
        )
    }
}

/// Lifetimes of each SA: the control process rekeys at these (soft)
/// limits; the data plane enforces the hard ones written with each SA
/// (twice the soft time and packets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Soft lifetime in seconds.
    pub rekey_seconds: u64,
    /// Soft lifetime in packets.
    pub rekey_packets: u64,
    /// Soft lifetime in bytes.
    pub rekey_bytes: u64,
}

impl Limits {
    /// The hard packet lifetime: twice the soft one, so a late rekey still
    /// has room, never beyond 2^40 (well inside AES-GCM's limits).
    pub fn hard_packets(&self) -> u64 {
        self.rekey_packets.saturating_mul(2).min(1 << 40)
    }

    /// The hard lifetime in seconds: twice the rekey interval, so a late
    /// rekey still has room; past it the data plane stops using the SA
    /// even if this process is gone.
    pub fn hard_seconds(&self) -> u64 {
        self.rekey_seconds.saturating_mul(2)
    }
}

/// An inbound SA and, once superseded, when it goes.
#[derive(Debug)]
pub struct InboundSa {
    /// The SA.
    pub sa: Sa,
    /// Epoch it belongs to.
    pub epoch: u64,
    /// When it is removed (None: current).
    pub expires: Option<Instant>,
}

/// One session's keys and counters.
#[derive(Debug)]
pub struct Session {
    /// What the registry persists.
    pub record: SessionRecord,
    /// The SA this side seals with.
    pub outbound: Option<Sa>,
    /// Epoch of the outbound SA.
    pub outbound_epoch: Option<u64>,
    /// Inbound SAs: the current one and superseded ones in their grace period.
    pub inbound: Vec<InboundSa>,
    /// Responder only: the outbound SA of an epoch offered but not yet committed.
    pub pending: Option<(u64, Sa)>,
    /// When the outbound SA was last switched.
    pub switched_at: Option<Instant>,
    /// Completed key switches since this process started.
    pub rekeys: u64,
    /// True once keys were negotiated by this process (false for adopted keys).
    pub negotiated: bool,
    /// The last negotiation error.
    pub last_error: Option<String>,
    /// True after the data plane restarted and took this session's keys
    /// with it, until new keys are switched in.
    pub lost_keys: bool,
    /// Northbound API: the endpoints the application's `hello` gave (PROD:
    /// the producer app's listeners), once it arrived.
    pub hello: Option<Vec<SocketAddr>>,
    /// Routed mode: the configured tunnel this session keys (None: a
    /// listener-mode stream session).
    pub tunnel: Option<Tunnel>,
}

impl Session {
    fn new(record: SessionRecord) -> Session {
        Session {
            record,
            outbound: None,
            outbound_epoch: None,
            inbound: Vec::new(),
            pending: None,
            switched_at: None,
            rekeys: 0,
            negotiated: false,
            last_error: None,
            lost_keys: false,
            hello: None,
            tunnel: None,
        }
    }

    /// True if this side starts key exchanges for the session (the outbound,
    /// consumer side, which learns the remote listeners; for a tunnel, the
    /// end whose gateway name sorts first, see [`crate::tunnel`]).
    pub fn is_initiator(&self) -> bool {
        self.record.role == SessionRole::Outbound
    }

    fn expire_current_inbound(&mut self, now: Instant, grace: Duration, keep_epoch: u64) {
        for i in &mut self.inbound {
            if i.epoch != keep_epoch && i.expires.is_none() {
                i.expires = Some(now + grace);
            }
        }
    }
}

/// Why a state transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// No session has this uid.
    #[error("unknown session `{0}`")]
    UnknownUid(String),
    /// A session with this uid exists.
    #[error("session `{0}` already exists")]
    Duplicate(String),
    /// The epoch is not newer than the session's.
    #[error("session `{uid}`: epoch {offered} is not newer than {current}")]
    StaleEpoch {
        /// Session.
        uid: String,
        /// Epoch offered.
        offered: u64,
        /// Epoch in use.
        current: u64,
    },
    /// A Commit for an epoch that is not pending.
    #[error("session `{uid}`: no pending keys for epoch {epoch}")]
    NotPending {
        /// Session.
        uid: String,
        /// Epoch committed.
        epoch: u64,
    },
    /// A key offer for a session bound to another peer gateway.
    #[error("session `{uid}` is bound to peer `{bound}`; peer `{refused}` refused")]
    PeerBound {
        /// Session.
        uid: String,
        /// The peer the session is bound to.
        bound: String,
        /// The peer that was refused.
        refused: String,
    },
    /// A key offer for a session whose exchanges this side initiates.
    #[error("session `{0}` is initiated by this side")]
    InitiatedHere(String),
    /// An initiator-only change to a session whose exchanges the peer initiates.
    #[error("session `{0}` is initiated by its peer, not by this side")]
    NotInitiatedHere(String),
    /// A change the configuration owns, asked of a configured tunnel.
    #[error("session `{0}` is a configured tunnel; its peer and routes come from [[tunnels]]")]
    Configured(String),
    /// An SPI is already used by another inbound SA.
    #[error("SPI {0:#010x} is already in use")]
    SpiInUse(u32),
    /// A listener port is already used by another session.
    #[error("listener port {port} is already used by session `{uid}`")]
    PortInUse {
        /// The port.
        port: u16,
        /// The session using it.
        uid: String,
    },
    /// The tables would not fit the region.
    #[error("the {table} table would need {needed} entries; the region holds {capacity}")]
    TooBig {
        /// "SA", "route" or "listener".
        table: &'static str,
        /// Entries needed.
        needed: usize,
        /// Capacity.
        capacity: u32,
    },
}

/// How many entries of each table the state renders into
/// ([`State::entry_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntryCounts {
    /// SA entries (both directions, adopted inbound SAs included).
    pub sas: usize,
    /// Route entries (tunnels' remote prefixes).
    pub routes: usize,
    /// Listener entries.
    pub listeners: usize,
}

/// What [`State::bind_responder_peer`] did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerBinding {
    /// The session had no peer: it is now bound to this one (persist it).
    Bound,
    /// The session was already bound to this peer (a rekey): nothing changed.
    AlreadyBound,
}

/// All sessions.
#[derive(Debug, Default)]
pub struct State {
    sessions: BTreeMap<String, Session>,
    /// Inbound SAs adopted from the region after a restart, by peer WAN
    /// address: kept until every session with that peer has renegotiated.
    adopted_inbound: Vec<(IpAddr, Sa, Option<Instant>)>,
    /// The data plane incarnation every SA held here belongs to; written
    /// with the tables, so that a data plane of another incarnation never
    /// uses them (see [`scistream_region::TablesMut::set_keyed_for`]).
    keyed_for: u64,
}

impl State {
    /// No sessions.
    pub fn new() -> State {
        State::default()
    }

    /// The session `uid`.
    pub fn get(&self, uid: &str) -> Option<&Session> {
        self.sessions.get(uid)
    }

    /// All sessions, by uid.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// Adds a session (no keys yet).
    pub fn create(&mut self, record: SessionRecord) -> Result<(), StateError> {
        if self.sessions.contains_key(&record.uid) {
            return Err(StateError::Duplicate(record.uid));
        }
        for l in &record.listeners {
            if let Some(s) = self.owner_of_port(l.port, record.role) {
                return Err(StateError::PortInUse {
                    port: l.port,
                    uid: s.to_string(),
                });
            }
        }
        self.sessions
            .insert(record.uid.clone(), Session::new(record));
        Ok(())
    }

    /// Adds the session of a configured tunnel (no keys yet): `record` as
    /// [`crate::tunnel::session`] makes it, bound to its peer, with no
    /// listeners.
    pub fn create_tunnel(
        &mut self,
        record: SessionRecord,
        tunnel: Tunnel,
    ) -> Result<(), StateError> {
        let uid = record.uid.clone();
        self.create(SessionRecord {
            listeners: Vec::new(),
            ..record
        })?;
        self.session_mut(&uid)?.tunnel = Some(tunnel);
        Ok(())
    }

    fn owner_of_port(&self, port: u16, role: SessionRole) -> Option<&str> {
        self.sessions
            .values()
            .find(|s| s.record.role == role && s.record.listeners.iter().any(|l| l.port == port))
            .map(|s| s.record.uid.as_str())
    }

    /// The first `n` ports of `range` that no session uses, or None if
    /// fewer are free.
    pub fn free_ports(&self, range: &std::ops::RangeInclusive<u16>, n: usize) -> Option<Vec<u16>> {
        let used: std::collections::HashSet<u16> = self
            .sessions
            .values()
            .flat_map(|s| s.record.listeners.iter().map(|l| l.port))
            .collect();
        let free: Vec<u16> = range
            .clone()
            .filter(|p| !used.contains(p))
            .take(n)
            .collect();
        (free.len() == n).then_some(free)
    }

    /// Records the application's `hello` endpoints.
    pub fn set_hello(&mut self, uid: &str, endpoints: Vec<SocketAddr>) -> Result<(), StateError> {
        self.session_mut(uid)?.hello = Some(endpoints);
        Ok(())
    }

    /// Sets where the listeners lead (targets or remotes, per the role).
    pub fn set_listeners(
        &mut self,
        uid: &str,
        listeners: Vec<crate::registry::ListenerSpec>,
    ) -> Result<(), StateError> {
        self.session_mut(uid)?.record.listeners = listeners;
        Ok(())
    }

    /// Responder side: checks that authenticated peer gateway `peer` may
    /// negotiate keys for session `uid`, and binds the session to it if it
    /// has no peer yet, in one step (one `&mut self`, so one acquisition
    /// of the lock around the state). An inbound session created through
    /// the API learns its peer from the first key offer for its uid; every
    /// later offer (a rekey) must come from that same peer.
    ///
    /// Refused: [`StateError::UnknownUid`] if there is no such session,
    /// [`StateError::PeerBound`] if it is bound to another peer (the
    /// binding never changes), [`StateError::InitiatedHere`] if this side
    /// initiates its exchanges (an outbound session's peer comes from its
    /// creator, see [`State::bind_peer`]).
    pub fn bind_responder_peer(
        &mut self,
        uid: &str,
        peer: &str,
    ) -> Result<PeerBinding, StateError> {
        let s = self.session_mut(uid)?;
        if !s.record.peer.is_empty() && s.record.peer != peer {
            return Err(StateError::PeerBound {
                uid: uid.to_string(),
                bound: s.record.peer.clone(),
                refused: peer.to_string(),
            });
        }
        if s.is_initiator() {
            return Err(StateError::InitiatedHere(uid.to_string()));
        }
        if s.record.peer.is_empty() {
            s.record.peer = peer.to_string();
            Ok(PeerBinding::Bound)
        } else {
            Ok(PeerBinding::AlreadyBound)
        }
    }

    /// Undoes a [`State::bind_responder_peer`] that returned
    /// [`PeerBinding::Bound`] but could not be persisted: session `uid`
    /// becomes unbound again, if it is still an inbound session bound to
    /// `peer` (never anything else, so this cannot move a binding).
    pub fn unbind_responder_peer(&mut self, uid: &str, peer: &str) {
        if let Some(s) = self.sessions.get_mut(uid) {
            if !s.is_initiator() && s.tunnel.is_none() && s.record.peer == peer {
                s.record.peer.clear();
            }
        }
    }

    /// Initiator side, unconditional: sets the peer gateway of outbound
    /// session `uid` to `peer`, replacing any earlier one. For the session's
    /// owner only: the API's `update` of a CONS session, whose remote
    /// listeners name the peer through its configured WAN address (a later
    /// `update` may point the session at another gateway). This side starts
    /// the key exchanges, so no key offer is involved and nothing is
    /// checked. An inbound session is refused with
    /// [`StateError::NotInitiatedHere`], leaving it unchanged: its peer is
    /// only ever bound by the checked [`State::bind_responder_peer`]. A
    /// tunnel's peer never changes ([`StateError::Configured`]).
    pub fn bind_peer(&mut self, uid: &str, peer: &str) -> Result<(), StateError> {
        let s = self.session_mut(uid)?;
        if s.tunnel.is_some() {
            return Err(StateError::Configured(uid.to_string()));
        }
        if !s.is_initiator() {
            return Err(StateError::NotInitiatedHere(uid.to_string()));
        }
        s.record.peer = peer.to_string();
        Ok(())
    }

    /// Removes a session and all its SAs.
    pub fn release(&mut self, uid: &str) -> Result<Session, StateError> {
        self.sessions
            .remove(uid)
            .ok_or_else(|| StateError::UnknownUid(uid.to_string()))
    }

    fn session_mut(&mut self, uid: &str) -> Result<&mut Session, StateError> {
        self.sessions
            .get_mut(uid)
            .ok_or_else(|| StateError::UnknownUid(uid.to_string()))
    }

    fn spi_in_use(&self, spi: u32) -> bool {
        self.sessions.values().any(|s| {
            s.inbound.iter().any(|i| i.sa.has_spi(spi))
                || s.outbound.as_ref().is_some_and(|o| o.has_spi(spi))
                || s.pending.as_ref().is_some_and(|p| p.1.has_spi(spi))
        }) || self.adopted_inbound.iter().any(|a| a.1.has_spi(spi))
    }

    /// Checks that `uid` exists and `epoch` is newer than its epoch.
    pub fn check_offer(&self, uid: &str, epoch: u64) -> Result<(), StateError> {
        let s = self
            .sessions
            .get(uid)
            .ok_or_else(|| StateError::UnknownUid(uid.to_string()))?;
        if epoch <= s.record.epoch && s.outbound.is_some() {
            return Err(StateError::StaleEpoch {
                uid: uid.to_string(),
                offered: epoch,
                current: s.record.epoch,
            });
        }
        Ok(())
    }

    /// Responder, step 1: installs the inbound SA of `epoch` and keeps its
    /// outbound SA pending until the initiator commits. A pending epoch that
    /// was never committed is dropped.
    pub fn responder_offer(
        &mut self,
        uid: &str,
        epoch: u64,
        inbound: Sa,
        outbound: Sa,
    ) -> Result<(), StateError> {
        self.check_offer(uid, epoch)?;
        if self.spi_in_use(inbound.spi) {
            return Err(StateError::SpiInUse(inbound.spi));
        }
        let s = self.session_mut(uid)?;
        if let Some((old, _)) = s.pending.take() {
            s.inbound.retain(|i| i.epoch != old || i.expires.is_some());
        }
        s.inbound.push(InboundSa {
            sa: inbound,
            epoch,
            expires: None,
        });
        s.pending = Some((epoch, outbound));
        Ok(())
    }

    /// Responder, step 3: the initiator committed `epoch`; switch outbound.
    pub fn responder_commit(
        &mut self,
        uid: &str,
        epoch: u64,
        now: Instant,
        grace: Duration,
    ) -> Result<(), StateError> {
        let s = self.session_mut(uid)?;
        match s.pending.take() {
            Some((e, sa)) if e == epoch => {
                s.outbound = Some(sa);
                s.outbound_epoch = Some(epoch);
                s.record.epoch = epoch;
                s.expire_current_inbound(now, grace, epoch);
                s.switched_at = Some(now);
                s.rekeys += 1;
                s.negotiated = true;
                s.lost_keys = false;
                s.last_error = None;
                Ok(())
            }
            other => {
                s.pending = other;
                Err(StateError::NotPending {
                    uid: uid.to_string(),
                    epoch,
                })
            }
        }
    }

    /// Initiator, step 2: the responder accepted `epoch`; install the new
    /// inbound SA and switch outbound in one publish. The old inbound SA
    /// stays until [`State::committed`]: the responder still seals with it.
    pub fn initiator_switch(
        &mut self,
        uid: &str,
        epoch: u64,
        inbound: Sa,
        outbound: Sa,
        now: Instant,
    ) -> Result<(), StateError> {
        if self.spi_in_use(inbound.spi) {
            return Err(StateError::SpiInUse(inbound.spi));
        }
        let s = self.session_mut(uid)?;
        s.inbound.push(InboundSa {
            sa: inbound,
            epoch,
            expires: None,
        });
        s.outbound = Some(outbound);
        s.outbound_epoch = Some(epoch);
        s.record.epoch = epoch;
        s.switched_at = Some(now);
        s.rekeys += 1;
        s.negotiated = true;
        s.lost_keys = false;
        s.last_error = None;
        Ok(())
    }

    /// Initiator, after `Committed`: the responder seals with `epoch` too,
    /// so every older inbound SA expires after `grace`.
    pub fn committed(&mut self, uid: &str, epoch: u64, now: Instant, grace: Duration) {
        if let Some(s) = self.sessions.get_mut(uid) {
            s.expire_current_inbound(now, grace, epoch);
        }
    }

    /// Records a negotiation error on the session (shown by `status`).
    pub fn note_error(&mut self, uid: &str, error: String) {
        if let Some(s) = self.sessions.get_mut(uid) {
            s.last_error = Some(error);
        }
    }

    /// Removes superseded inbound SAs whose grace period is over, and
    /// adopted ones no longer needed. Returns true if anything went.
    pub fn expire(&mut self, now: Instant, grace: Duration) -> bool {
        let mut changed = false;
        for s in self.sessions.values_mut() {
            let before = s.inbound.len();
            s.inbound.retain(|i| i.expires.is_none_or(|t| t > now));
            changed |= s.inbound.len() != before;
        }
        // An adopted inbound SA goes `grace` after every session with its
        // peer has negotiated keys of its own.
        let sessions = &self.sessions;
        for (peer, _, expires) in &mut self.adopted_inbound {
            let all_renegotiated = sessions
                .values()
                .filter(|s| s.outbound.as_ref().is_some_and(|o| o.peer.ip() == *peer))
                .all(|s| s.negotiated);
            if expires.is_none() && all_renegotiated {
                *expires = Some(now + grace);
            }
        }
        let before = self.adopted_inbound.len();
        self.adopted_inbound
            .retain(|(_, _, t)| t.is_none_or(|t| t > now));
        changed | (self.adopted_inbound.len() != before)
    }

    /// The data plane incarnation the SAs held here are for.
    pub fn keyed_for(&self) -> u64 {
        self.keyed_for
    }

    /// The data plane restarted (now incarnation `incarnation`): the SAs
    /// it held are gone, and an outbound SA must never be reinstalled (its
    /// sequence counter is lost, so nonces would repeat). Drops every SA;
    /// the caller renegotiates. Tables rendered from now on are for
    /// `incarnation`.
    pub fn forget_keys(&mut self, incarnation: u64) {
        self.keyed_for = incarnation;
        for s in self.sessions.values_mut() {
            s.outbound = None;
            s.outbound_epoch = None;
            s.inbound.clear();
            s.pending = None;
            s.negotiated = false;
            s.lost_keys = true;
        }
        self.adopted_inbound.clear();
    }

    /// A restarted control process adopts the SAs the workers of data plane
    /// incarnation `incarnation` are using: each session's outbound SA is
    /// found through its listeners (a tunnel's through the route entry of
    /// one of its remote prefixes), and every inbound SA is kept until the
    /// sessions of its peer renegotiate. Tables written for another
    /// incarnation (the data plane restarted while this process was down)
    /// are not adopted: their outbound SAs' sequence counters are gone.
    /// Returns (outbound SAs adopted, inbound SAs adopted).
    pub fn adopt(&mut self, view: &TablesView<'_>, incarnation: u64) -> (usize, usize) {
        self.keyed_for = incarnation;
        if view.keyed_for() != incarnation {
            return (0, 0);
        }
        let sas: Vec<SaEntry> = view.sas().iter().collect();
        let listeners: Vec<ListenerEntry> = view.listeners().iter().collect();
        let routes: Vec<RouteEntry> = view.routes().iter().collect();
        let mut outbound = 0;
        for s in self.sessions.values_mut() {
            let role = match s.record.role {
                SessionRole::Inbound => ListenerRole::Inbound,
                SessionRole::Outbound => ListenerRole::Outbound,
            };
            let slot = match &s.tunnel {
                Some(t) => t.remote.iter().find_map(|net| {
                    routes
                        .iter()
                        .find(|r| r.len == net.prefix_len() && r.network() == net.network())
                        .map(|r| r.sa_slot as usize)
                }),
                None => s.record.listeners.iter().find_map(|l| {
                    listeners
                        .iter()
                        .find(|e| e.role() == Some(role) && e.port == l.port)
                        .map(|e| e.sa_slot as usize)
                }),
            };
            if let Some(mut sa) = slot
                .and_then(|i| sas.get(i))
                .filter(|e| e.direction() == Some(Direction::Out))
                .and_then(Sa::from_entry)
            {
                // Its lanes: the outbound entries marked as lanes of it.
                sa.lanes = sas
                    .iter()
                    .filter(|e| e.direction() == Some(Direction::Out) && e.lane_of == sa.spi)
                    .filter_map(Sa::from_entry)
                    .collect();
                s.outbound = Some(sa);
                s.outbound_epoch = Some(s.record.epoch);
                outbound += 1;
            }
        }
        self.adopted_inbound = sas
            .iter()
            .filter(|e| e.direction() == Some(Direction::In))
            .filter_map(|e| Sa::from_entry(e).map(|sa| (e.peer().ip(), sa, None)))
            .collect();
        (outbound, self.adopted_inbound.len())
    }

    /// Entries the tables need.
    pub fn entry_counts(&self) -> EntryCounts {
        let mut n = EntryCounts {
            sas: self.adopted_inbound.len(),
            ..EntryCounts::default()
        };
        for s in self.sessions.values() {
            n.sas += s.inbound.iter().map(|i| i.sa.count()).sum::<usize>()
                + s.outbound.as_ref().map_or(0, Sa::count);
            if s.outbound.is_some() {
                n.listeners += s.record.listeners.len();
                n.routes += s.tunnel.as_ref().map_or(0, |t| t.remote.len());
            }
        }
        n
    }

    /// Checks that the tables fit the region's capacities.
    pub fn check_fits(&self, caps: Capacities) -> Result<(), StateError> {
        let n = self.entry_counts();
        for (table, needed, capacity) in [
            ("SA", n.sas, caps.sas),
            ("route", n.routes, caps.routes),
            ("listener", n.listeners, caps.listeners),
        ] {
            if needed > capacity as usize {
                return Err(StateError::TooBig {
                    table,
                    needed,
                    capacity,
                });
            }
        }
        Ok(())
    }

    /// Writes every table into `t` (the inactive copy). Call
    /// [`State::check_fits`] first: entries beyond a table's capacity are
    /// left out.
    pub fn render(&self, t: &mut TablesMut<'_>, limits: &Limits) {
        t.clear();
        t.set_keyed_for(self.keyed_for);
        for (_, sa, _) in &self.adopted_inbound {
            let _ = t.sas().push(sa.entry(Direction::In, limits, 0));
        }
        for s in self.sessions.values() {
            for e in s
                .inbound
                .iter()
                .flat_map(|i| i.sa.entries(Direction::In, limits, 0))
            {
                let _ = t.sas().push(e);
            }
            let Some(out) = &s.outbound else {
                continue;
            };
            // The session's rate is policed on the instrument side: the
            // producer gateway's outbound SA.
            let rate = match s.record.role {
                SessionRole::Inbound => s.record.rate_bps,
                SessionRole::Outbound => 0,
            };
            let mut entries = out.entries(Direction::Out, limits, rate);
            let Some(Ok(slot)) = entries.next().map(|head| t.sas().push(head)) else {
                continue;
            };
            for lane in entries {
                let _ = t.sas().push(lane);
            }
            let slot = slot as u32;
            // Routed mode: each remote prefix of a tunnel leads to its
            // outbound SA.
            for net in s.tunnel.iter().flat_map(|tunnel| &tunnel.remote) {
                if let Some(route) = RouteEntry::new(net.network(), net.prefix_len(), slot) {
                    let _ = t.routes().push(route);
                }
            }
            for l in &s.record.listeners {
                let entry = match (s.record.role, l.remote, l.target) {
                    (SessionRole::Outbound, Some(remote), _) => {
                        ListenerEntry::outbound(l.port, remote, slot)
                    }
                    (SessionRole::Inbound, _, Some(target)) => {
                        ListenerEntry::inbound(l.port, target, slot)
                    }
                    _ => continue,
                };
                let _ = t.listeners().push(entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use super::*;
    use crate::registry::ListenerSpec;

    const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 4500);
    const GRACE: Duration = Duration::from_secs(10);

    fn sa(spi: u32, b: u8) -> Sa {
        let k = DirectionKeys {
            spi,
            key: Zeroizing::new([b; 32]),
            key_len: 16,
            salt: [b; 4],
        };
        Sa::from_keys(&k, Algorithm::Aes128Gcm, PEER)
    }

    fn record(uid: &str, role: SessionRole, port: u16) -> SessionRecord {
        SessionRecord {
            uid: uid.into(),
            role,
            peer: "gwb".into(),
            epoch: 0,
            listeners: vec![ListenerSpec {
                port,
                remote: (role == SessionRole::Outbound).then(|| "192.0.2.2:5100".parse().unwrap()),
                target: (role == SessionRole::Inbound).then(|| "10.1.0.5:7000".parse().unwrap()),
            }],
            created_unix: 0,
            rate_bps: 0,
            owner: String::new(),
        }
    }

    fn inbound_spis(st: &State, uid: &str) -> Vec<u32> {
        st.get(uid)
            .unwrap()
            .inbound
            .iter()
            .map(|i| i.sa.spi)
            .collect()
    }

    fn out_spi(st: &State, uid: &str) -> Option<u32> {
        st.get(uid).unwrap().outbound.as_ref().map(|o| o.spi)
    }

    /// Responder R and initiator I through two epochs: at every step each
    /// side can open what the other seals.
    #[test]
    fn make_before_break_keeps_every_packet_openable() {
        let t0 = Instant::now();
        let (mut r, mut i) = (State::new(), State::new());
        r.create(record("u", SessionRole::Inbound, 5100)).unwrap();
        i.create(record("u", SessionRole::Outbound, 5100)).unwrap();
        let opens =
            |st: &State, spi: Option<u32>| spi.is_none_or(|s| inbound_spis(st, "u").contains(&s));

        // Epoch 1: I→R SPI 0x1001, R→I SPI 0x2001.
        r.responder_offer("u", 1, sa(0x1001, 1), sa(0x2001, 2))
            .unwrap();
        assert_eq!(out_spi(&r, "u"), None, "pending until commit");
        i.initiator_switch("u", 1, sa(0x2001, 2), sa(0x1001, 1), t0)
            .unwrap();
        assert!(opens(&r, out_spi(&i, "u")));
        r.responder_commit("u", 1, t0, GRACE).unwrap();
        i.committed("u", 1, t0, GRACE);
        assert!(opens(&i, out_spi(&r, "u")));
        assert_eq!(r.get("u").unwrap().record.epoch, 1);

        // Epoch 2.
        r.responder_offer("u", 2, sa(0x1002, 3), sa(0x2002, 4))
            .unwrap();
        assert_eq!(inbound_spis(&r, "u"), [0x1001, 0x1002]);
        assert_eq!(out_spi(&r, "u"), Some(0x2001), "R still seals with epoch 1");
        i.initiator_switch("u", 2, sa(0x2002, 4), sa(0x1002, 3), t0)
            .unwrap();
        assert_eq!(
            inbound_spis(&i, "u"),
            [0x2001, 0x2002],
            "I still opens epoch 1"
        );
        assert!(opens(&r, out_spi(&i, "u")) && opens(&i, out_spi(&r, "u")));
        r.responder_commit("u", 2, t0, GRACE).unwrap();
        i.committed("u", 2, t0, GRACE);
        assert!(opens(&r, out_spi(&i, "u")) && opens(&i, out_spi(&r, "u")));

        // Old inbound SAs stay through the grace period, then go.
        assert!(!r.expire(t0 + GRACE / 2, GRACE) && !i.expire(t0 + GRACE / 2, GRACE));
        assert_eq!(inbound_spis(&r, "u"), [0x1001, 0x1002]);
        assert!(r.expire(t0 + GRACE + Duration::from_millis(1), GRACE));
        assert!(i.expire(t0 + GRACE + Duration::from_millis(1), GRACE));
        assert_eq!(inbound_spis(&r, "u"), [0x1002]);
        assert_eq!(inbound_spis(&i, "u"), [0x2002]);
        assert_eq!(
            (r.get("u").unwrap().rekeys, i.get("u").unwrap().rekeys),
            (2, 2)
        );
    }

    #[test]
    fn offers_and_commits_are_checked() {
        let t0 = Instant::now();
        let mut r = State::new();
        r.create(record("u", SessionRole::Inbound, 5100)).unwrap();
        assert_eq!(
            r.responder_offer("nope", 1, sa(0x1001, 1), sa(0x2001, 2)),
            Err(StateError::UnknownUid("nope".into()))
        );
        assert_eq!(
            r.responder_commit("u", 1, t0, GRACE),
            Err(StateError::NotPending {
                uid: "u".into(),
                epoch: 1
            })
        );
        r.responder_offer("u", 1, sa(0x1001, 1), sa(0x2001, 2))
            .unwrap();
        r.responder_commit("u", 1, t0, GRACE).unwrap();
        assert_eq!(
            r.responder_offer("u", 1, sa(0x1003, 1), sa(0x2003, 2)),
            Err(StateError::StaleEpoch {
                uid: "u".into(),
                offered: 1,
                current: 1
            })
        );
        assert_eq!(
            r.responder_offer("u", 2, sa(0x1001, 5), sa(0x2005, 6)),
            Err(StateError::SpiInUse(0x1001))
        );
        // An offer never committed is replaced by the next one.
        r.responder_offer("u", 2, sa(0x1002, 5), sa(0x2002, 6))
            .unwrap();
        r.responder_offer("u", 3, sa(0x1003, 7), sa(0x2003, 8))
            .unwrap();
        assert_eq!(inbound_spis(&r, "u"), [0x1001, 0x1003]);
        assert_eq!(
            r.create(record("u", SessionRole::Inbound, 5101)),
            Err(StateError::Duplicate("u".into()))
        );
        assert_eq!(
            r.create(record("v", SessionRole::Inbound, 5100)),
            Err(StateError::PortInUse {
                port: 5100,
                uid: "u".into()
            })
        );
    }

    #[test]
    fn a_restarted_data_plane_never_gets_an_old_outbound_sa_back() {
        let t0 = Instant::now();
        let mut i = State::new();
        i.create(record("u", SessionRole::Outbound, 5100)).unwrap();
        i.initiator_switch("u", 1, sa(0x2001, 2), sa(0x1001, 1), t0)
            .unwrap();
        i.forget_keys(1);
        let s = i.get("u").unwrap();
        assert!(s.outbound.is_none() && s.inbound.is_empty() && s.lost_keys);
        assert_eq!(
            i.entry_counts(),
            EntryCounts::default(),
            "nothing to render"
        );
    }

    #[test]
    fn tables_that_do_not_fit_are_refused_before_publishing() {
        let t0 = Instant::now();
        let mut i = State::new();
        i.create(record("u", SessionRole::Outbound, 5100)).unwrap();
        i.initiator_switch("u", 1, sa(0x2001, 2), sa(0x1001, 1), t0)
            .unwrap();
        assert_eq!(
            i.entry_counts(),
            EntryCounts {
                sas: 2,
                routes: 0,
                listeners: 1
            }
        );
        let caps = |sas, listeners| Capacities {
            sas,
            routes: 1,
            listeners,
            workers: 1,
        };
        assert!(i.check_fits(caps(2, 1)).is_ok());
        assert_eq!(
            i.check_fits(caps(1, 1)),
            Err(StateError::TooBig {
                table: "SA",
                needed: 2,
                capacity: 1
            })
        );
        assert_eq!(
            i.check_fits(caps(2, 0)),
            Err(StateError::TooBig {
                table: "listener",
                needed: 1,
                capacity: 0
            })
        );
    }

    /// An inbound session as the API's `req` creates it: no peer yet.
    fn unbound(uid: &str, port: u16) -> SessionRecord {
        SessionRecord {
            peer: String::new(),
            ..record(uid, SessionRole::Inbound, port)
        }
    }

    /// Two peers offer keys for the same unbound uid at the same moment,
    /// each checking and binding under one acquisition of the lock, as the
    /// responder does: exactly one wins, every time, and the binding seen
    /// by either thread after its attempt is the winner's.
    #[test]
    fn racing_offers_bind_exactly_one_peer() {
        use std::sync::{Barrier, Mutex};
        for i in 0..1000 {
            let st = Mutex::new(State::new());
            st.lock().unwrap().create(unbound("u", 5100)).unwrap();
            let barrier = Barrier::new(2);
            let race = |peer: &'static str| {
                barrier.wait();
                let r = st.lock().unwrap().bind_responder_peer("u", peer);
                let seen = st.lock().unwrap().get("u").unwrap().record.peer.clone();
                (r, seen)
            };
            let (b, c) = std::thread::scope(|sc| {
                let b = sc.spawn(|| race("gwb"));
                let c = sc.spawn(|| race("gwc"));
                (b.join().unwrap(), c.join().unwrap())
            });
            let winner = st.lock().unwrap().get("u").unwrap().record.peer.clone();
            let (won, lost) = match winner.as_str() {
                "gwb" => (b, c),
                "gwc" => (c, b),
                other => panic!("iteration {i}: bound to `{other}`"),
            };
            let loser = if winner == "gwb" { "gwc" } else { "gwb" };
            assert_eq!(won.0, Ok(PeerBinding::Bound), "iteration {i}");
            assert_eq!(
                lost.0,
                Err(StateError::PeerBound {
                    uid: "u".into(),
                    bound: winner.clone(),
                    refused: loser.into(),
                }),
                "iteration {i}: exactly one offer wins"
            );
            assert_eq!((won.1, lost.1), (winner.clone(), winner), "iteration {i}");
        }
    }

    /// Rekeys: the bound peer offers again and again; nothing changes, and
    /// its offers are still installed.
    #[test]
    fn the_bound_peer_offers_again() {
        let mut r = State::new();
        r.create(unbound("u", 5100)).unwrap();
        assert_eq!(r.bind_responder_peer("u", "gwb"), Ok(PeerBinding::Bound));
        for epoch in 1..=3 {
            assert_eq!(
                r.bind_responder_peer("u", "gwb"),
                Ok(PeerBinding::AlreadyBound)
            );
            let spi = 0x1000 + epoch as u32;
            r.responder_offer("u", epoch, sa(spi, 1), sa(spi + 0x1000, 2))
                .unwrap();
            r.responder_commit("u", epoch, Instant::now(), GRACE)
                .unwrap();
        }
        assert_eq!(r.get("u").unwrap().record.peer, "gwb");
        assert_eq!(r.get("u").unwrap().record.epoch, 3);
        // A session restored bound (from the registry, or created by the
        // admin socket with its peer) is already bound.
        r.create(record("v", SessionRole::Inbound, 5101)).unwrap();
        assert_eq!(
            r.bind_responder_peer("v", "gwb"),
            Ok(PeerBinding::AlreadyBound)
        );
    }

    #[test]
    fn an_offer_for_a_session_bound_to_another_peer_is_refused() {
        let mut r = State::new();
        r.create(unbound("u", 5100)).unwrap();
        assert_eq!(r.bind_responder_peer("u", "gwb"), Ok(PeerBinding::Bound));
        let refused = StateError::PeerBound {
            uid: "u".into(),
            bound: "gwb".into(),
            refused: "gwc".into(),
        };
        assert_eq!(r.bind_responder_peer("u", "gwc"), Err(refused.clone()));
        assert_eq!(
            r.bind_responder_peer("u", "gwc"),
            Err(refused.clone()),
            "every time"
        );
        assert_eq!(r.get("u").unwrap().record.peer, "gwb", "unchanged");
        assert_eq!(
            refused.to_string(),
            "session `u` is bound to peer `gwb`; peer `gwc` refused"
        );
        // Undoing can only clear one's own binding.
        r.unbind_responder_peer("u", "gwc");
        assert_eq!(r.get("u").unwrap().record.peer, "gwb");
        r.unbind_responder_peer("u", "gwb");
        assert_eq!(r.get("u").unwrap().record.peer, "");
        assert_eq!(
            r.bind_responder_peer("nope", "gwb"),
            Err(StateError::UnknownUid("nope".into()))
        );
    }

    /// An outbound session's peer comes from its owner, never from an
    /// offer; the unconditional path is for outbound sessions only.
    #[test]
    fn initiator_sessions_are_bound_by_their_owner_only() {
        let mut r = State::new();
        r.create(SessionRecord {
            peer: String::new(),
            ..record("o", SessionRole::Outbound, 5100)
        })
        .unwrap();
        assert_eq!(
            r.bind_responder_peer("o", "gwb"),
            Err(StateError::InitiatedHere("o".into()))
        );
        assert_eq!(r.get("o").unwrap().record.peer, "");
        r.bind_peer("o", "gwb").unwrap();
        assert_eq!(
            r.bind_responder_peer("o", "gwb"),
            Err(StateError::InitiatedHere("o".into()))
        );
        assert!(matches!(
            r.bind_responder_peer("o", "gwc"),
            Err(StateError::PeerBound { .. })
        ));
        r.bind_peer("o", "gwc").unwrap();
        assert_eq!(r.get("o").unwrap().record.peer, "gwc", "re-targeted");
        r.unbind_responder_peer("o", "gwc");
        assert_eq!(r.get("o").unwrap().record.peer, "gwc", "not an inbound one");

        r.create(unbound("u", 5101)).unwrap();
        assert_eq!(
            r.bind_peer("u", "gwb"),
            Err(StateError::NotInitiatedHere("u".into()))
        );
        assert_eq!(r.get("u").unwrap().record.peer, "", "still unbound");
    }

    /// An SA to an IPv6 peer keeps its address through the region and back
    /// (what a restarted control process adopts).
    #[test]
    fn an_ipv6_peer_survives_the_region_entry() {
        let peer: SocketAddr = "[fd00:10:200::1]:4500".parse().unwrap();
        let k = DirectionKeys {
            spi: 0x1234,
            key: Zeroizing::new([7; 32]),
            key_len: 16,
            salt: [1; 4],
        };
        let sa = Sa::from_keys(&k, Algorithm::Aes128Gcm, peer);
        for direction in [Direction::In, Direction::Out] {
            let e = sa.entry(direction, &LIMITS, 0);
            assert_eq!(e.peer(), peer);
            let back = Sa::from_entry(&e).expect("valid entry");
            assert_eq!((back.peer, back.spi), (peer, 0x1234));
        }
    }

    /// The session of a tunnel to gwb routing two remote prefixes, an
    /// IPv6 one first (a restart adopts the SA through it); this side
    /// initiates if `initiator`.
    fn tunnel_state(initiator: bool) -> State {
        let cfg = crate::config::TunnelConfig {
            name: "site".into(),
            peer: "gwb".into(),
            local: vec!["10.10.1.0/24".parse().unwrap()],
            remote: vec![
                "fd00:20::/32".parse().unwrap(),
                "10.30.0.0/16".parse().unwrap(),
            ],
        };
        let own = if initiator { "gwa" } else { "gwz" };
        let (record, tunnel) = crate::tunnel::session(&cfg, own, 0);
        let mut st = State::new();
        st.create_tunnel(record, tunnel).unwrap();
        st
    }

    const LIMITS: Limits = Limits {
        rekey_seconds: 3600,
        rekey_packets: 1 << 31,
        rekey_bytes: 1 << 38,
    };

    fn caps() -> Capacities {
        Capacities {
            sas: 16,
            routes: 8,
            listeners: 8,
            workers: 1,
        }
    }

    /// (SPI and direction of every SA, (prefix/len, SPI of the SA it names)
    /// of every route) in the region's current tables.
    type Rendered = (Vec<(u32, Option<Direction>)>, Vec<(String, u32)>);

    fn rendered(w: &scistream_region::ShmWriter) -> Rendered {
        let view = w.current();
        let sas: Vec<SaEntry> = view.sas().iter().collect();
        let routes = view
            .routes()
            .iter()
            .map(|r| {
                let spi = sas[r.sa_slot as usize].spi;
                (format!("{}/{}", r.network(), r.len), spi)
            })
            .collect();
        (sas.iter().map(|e| (e.spi, e.direction())).collect(), routes)
    }

    /// A tunnel renders as its inbound SAs, its outbound SA and one route
    /// per remote prefix naming that SA; across a rekey the routes move to
    /// the new outbound SA in the same publish, and the old inbound SA stays
    /// through the grace period.
    #[test]
    fn a_tunnel_renders_routes_to_its_outbound_sa_across_rekeys() {
        let region = scistream_region::testing::TempRegion::new("state-tunnel");
        let mut w = scistream_region::ShmWriter::create(region.path(), caps()).unwrap();
        let t0 = Instant::now();
        let mut i = tunnel_state(true);
        let uid = "tunnel:site";
        assert!(i.get(uid).unwrap().is_initiator());
        assert_eq!(
            i.entry_counts(),
            EntryCounts::default(),
            "no keys, no routes"
        );
        i.initiator_switch(uid, 1, sa(0x2001, 2), sa(0x1001, 1), t0)
            .unwrap();
        assert_eq!(
            i.entry_counts(),
            EntryCounts {
                sas: 2,
                routes: 2,
                listeners: 0
            }
        );
        w.publish(|t| i.render(t, &LIMITS)).unwrap();
        let routes = |spi| {
            vec![
                ("fd00:20::/32".to_string(), spi),
                ("10.30.0.0/16".to_string(), spi),
            ]
        };
        assert_eq!(
            rendered(&w),
            (
                vec![
                    (0x2001, Some(Direction::In)),
                    (0x1001, Some(Direction::Out))
                ],
                routes(0x1001)
            )
        );
        i.committed(uid, 1, t0, GRACE);
        i.initiator_switch(uid, 2, sa(0x2002, 4), sa(0x1002, 3), t0)
            .unwrap();
        i.committed(uid, 2, t0, GRACE);
        w.publish(|t| i.render(t, &LIMITS)).unwrap();
        let (sas, r) = rendered(&w);
        assert_eq!(
            sas,
            [
                (0x2001, Some(Direction::In)),
                (0x2002, Some(Direction::In)),
                (0x1002, Some(Direction::Out))
            ]
        );
        assert_eq!(r, routes(0x1002), "the routes follow the new outbound SA");
        assert!(i.expire(t0 + GRACE + Duration::from_millis(1), GRACE));
        w.publish(|t| i.render(t, &LIMITS)).unwrap();
        assert_eq!(rendered(&w).0.len(), 2);
        assert_eq!(i.get(uid).unwrap().rekeys, 2);

        // The route table is checked before publishing too.
        let small = Capacities {
            routes: 1,
            ..caps()
        };
        assert_eq!(
            i.check_fits(small),
            Err(StateError::TooBig {
                table: "route",
                needed: 2,
                capacity: 1
            })
        );
    }

    /// A restarted control process finds a tunnel's outbound SA through its
    /// route entries (and keeps the inbound SAs as adopted ones).
    #[test]
    fn a_restart_adopts_a_tunnels_outbound_sa_through_its_routes() {
        let region = scistream_region::testing::TempRegion::new("state-tunnel-adopt");
        let mut w = scistream_region::ShmWriter::create(region.path(), caps()).unwrap();
        let mut before = tunnel_state(false);
        let uid = "tunnel:site";
        // Another session's SAs come first, so the slot is not 0 or 1.
        before
            .create(record("u", SessionRole::Outbound, 5100))
            .unwrap();
        before
            .initiator_switch("u", 1, sa(0x3001, 5), sa(0x4001, 6), Instant::now())
            .unwrap();
        before
            .responder_offer(uid, 4, sa(0x1004, 1), sa(0x2004, 2))
            .unwrap();
        before
            .responder_commit(uid, 4, Instant::now(), GRACE)
            .unwrap();
        w.publish(|t| before.render(t, &LIMITS)).unwrap();

        let mut after = tunnel_state(false);
        after
            .create(record("u", SessionRole::Outbound, 5100))
            .unwrap();
        assert_eq!(after.adopt(&w.current(), 0), (2, 2));
        let t = after.get(uid).unwrap();
        assert_eq!(t.outbound.as_ref().map(|o| o.spi), Some(0x2004));
        assert!(
            !t.negotiated && t.switched_at.is_none(),
            "to be renegotiated"
        );
        assert_eq!(out_spi(&after, "u"), Some(0x4001));
        // Rendered again, the adopted SA keeps its routes.
        w.publish(|t| after.render(t, &LIMITS)).unwrap();
        let (_, routes) = rendered(&w);
        assert!(routes.iter().all(|(_, spi)| *spi == 0x2004), "{routes:?}");
        assert_eq!(routes.len(), 2);
    }

    /// `sa(spi, b)` with lanes of SPIs `lanes` (keys `b + 1`, `b + 2`, ...).
    fn sa_lanes(spi: u32, b: u8, lanes: &[u32]) -> Sa {
        let keys: Vec<DirectionKeys> = lanes
            .iter()
            .zip(1u8..)
            .map(|(&spi, i)| DirectionKeys {
                spi,
                key: Zeroizing::new([b + i; 32]),
                key_len: 16,
                salt: [b + i; 4],
            })
            .collect();
        sa(spi, b).with_lanes(&keys)
    }

    /// A session with lanes renders each lane as an SA of its own, the
    /// outbound ones marked `lane_of` the head (which the routes name), the
    /// session's rate shared out among them; a restarted control process
    /// regroups the lanes under the head it finds through the routes.
    #[test]
    fn lanes_render_after_their_head_and_are_adopted_with_it() {
        let region = scistream_region::testing::TempRegion::new("state-lanes");
        let mut w = scistream_region::ShmWriter::create(region.path(), caps()).unwrap();
        let mut i = tunnel_state(true);
        let uid = "tunnel:site";
        i.initiator_switch(
            uid,
            1,
            sa_lanes(0x2001, 2, &[0x2011, 0x2021]),
            sa_lanes(0x1001, 1, &[0x1011, 0x1021]),
            Instant::now(),
        )
        .unwrap();
        assert_eq!(i.entry_counts().sas, 6);
        w.publish(|t| i.render(t, &LIMITS)).unwrap();
        let view = w.current();
        let got: Vec<(u32, Option<Direction>, u32)> = view
            .sas()
            .iter()
            .map(|e| (e.spi, e.direction(), e.lane_of))
            .collect();
        let (o, n) = (Some(Direction::Out), Some(Direction::In));
        assert_eq!(
            got,
            [
                (0x2001, n, 0),
                (0x2011, n, 0x2001),
                (0x2021, n, 0x2001),
                (0x1001, o, 0),
                (0x1011, o, 0x1001),
                (0x1021, o, 0x1001),
            ]
        );
        let (_, routes) = rendered(&w);
        assert!(
            routes.iter().all(|(_, spi)| *spi == 0x1001),
            "routes name the head"
        );

        let mut after = tunnel_state(true);
        assert_eq!(after.adopt(&w.current(), 0), (1, 3));
        let out = after.get(uid).unwrap().outbound.as_ref().unwrap();
        assert_eq!(out.spi, 0x1001);
        assert_eq!(
            out.lanes.iter().map(|l| l.spi).collect::<Vec<_>>(),
            [0x1011, 0x1021]
        );
        assert!(after.spi_in_use(0x1021) && after.spi_in_use(0x2011));
        assert!(!after.spi_in_use(0x1031));
    }

    #[test]
    fn a_sessions_rate_is_shared_out_among_its_lanes() {
        let sa = sa_lanes(0x1001, 1, &[0x1011, 0x1021]);
        let rates: Vec<u64> = sa
            .entries(Direction::Out, &LIMITS, 3_000_000)
            .map(|e| e.rate_bps)
            .collect();
        assert_eq!(rates, [1_000_000; 3]);
        assert!(sa
            .entries(Direction::Out, &LIMITS, 0)
            .all(|e| e.rate_bps == 0));
    }

    /// A tunnel is bound to its configured peer from the start: only that
    /// peer may offer keys for it, and nothing rebinds it.
    #[test]
    fn a_tunnel_takes_offers_from_its_configured_peer_only() {
        let mut r = tunnel_state(false);
        let uid = "tunnel:site";
        assert!(!r.get(uid).unwrap().is_initiator());
        assert_eq!(
            r.bind_responder_peer(uid, "gwb"),
            Ok(PeerBinding::AlreadyBound)
        );
        assert_eq!(
            r.bind_responder_peer(uid, "gwc"),
            Err(StateError::PeerBound {
                uid: uid.into(),
                bound: "gwb".into(),
                refused: "gwc".into()
            })
        );
        r.unbind_responder_peer(uid, "gwb");
        assert_eq!(r.get(uid).unwrap().record.peer, "gwb", "never unbound");
        assert_eq!(
            r.bind_peer(uid, "gwc"),
            Err(StateError::Configured(uid.into()))
        );
        // The initiating end refuses offers altogether.
        let mut i = tunnel_state(true);
        assert_eq!(
            i.bind_responder_peer(uid, "gwb"),
            Err(StateError::InitiatedHere(uid.into()))
        );
        assert_eq!(
            i.bind_peer(uid, "gwb"),
            Err(StateError::Configured(uid.into()))
        );
        assert_eq!(
            i.create(record(uid, SessionRole::Outbound, 5100)),
            Err(StateError::Duplicate(uid.into()))
        );
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let s = format!("{:?}", sa(0x1001, 0xab));
        assert!(s.contains("0x00001001") && s.contains("redacted"), "{s}");
        assert!(
            !s.to_lowercase().contains("abab") && !s.contains("171"),
            "{s}"
        );
    }
}
