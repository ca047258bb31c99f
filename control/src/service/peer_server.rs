//! The responder side: accepts mutual-TLS connections from the configured
//! peers and answers their messages, one at a time per connection.
//!
//! A peer may only negotiate keys for a session that we hold too, created
//! by one of our users (or a configured tunnel, bound to its configured
//! peer from the start), and whose peer is the gateway that authenticated.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use ring::rand::SystemRandom;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::Shared;
use crate::audit::{AuditRecord, Source};
use crate::peer::keys::{algorithm_from_name, Exchange, Side};
use crate::peer::tls;
use crate::peer::wire::{settle_lanes, PeerMessage, PeerStream, RefuseCode};
use crate::registry::RegistryError;
use crate::state::{PeerBinding, Sa, State, StateError};

type ServerChannel = PeerStream<TlsStream<TcpStream>>;

/// Binds the peer-channel listener.
pub async fn bind(sh: &Shared) -> anyhow::Result<TcpListener> {
    let addr = sh.cfg.control.peer_listen;
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the peer channel on {addr}: {e}"))
}

/// Accepts connections forever.
pub async fn serve(sh: Arc<Shared>, listener: TcpListener) {
    if sh.peers.is_empty() {
        info!("no peers configured: the peer channel refuses every connection");
    }
    let config = match tls::server_config(&sh.identity, &sh.peers) {
        Ok(c) => Some(c),
        Err(e) => {
            warn!(error = %e, "peer channel TLS configuration failed; refusing every connection");
            None
        }
    };
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "peer channel accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(config) = config.clone() else {
            continue;
        };
        let sh = sh.clone();
        tokio::spawn(async move {
            let tls = match TlsAcceptor::from(config).accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    warn!(%remote, reason = %e, "peer channel: connection refused");
                    return;
                }
            };
            let chain = tls
                .get_ref()
                .1
                .peer_certificates()
                .unwrap_or_default()
                .to_vec();
            let Some(i) = tls::identify(&sh.peers, &chain) else {
                warn!(%remote, "peer channel: connection refused: the certificate matches no configured peer");
                return;
            };
            let peer = sh.peers[i].name.clone();
            let mut ch = PeerStream::new(tls);
            match ch.exchange_hello(&sh.cfg.gateway.name).await {
                Ok(name) if name == peer => {}
                Ok(name) => {
                    warn!(%remote, %peer, claimed = %name, "peer channel: refused: the gateway name differs from the certificate's peer");
                    return;
                }
                Err(e) => {
                    warn!(%remote, %peer, error = %e, "peer channel: hello failed");
                    return;
                }
            }
            debug!(%remote, %peer, "peer channel up");
            sh.peer_contact(&peer, true);
            if let Err(e) = session(&sh, &mut ch, &peer).await {
                warn!(%remote, %peer, error = %format!("{e:#}"), "peer channel closed");
            }
        });
    }
}

async fn session(sh: &Arc<Shared>, ch: &mut ServerChannel, peer: &str) -> anyhow::Result<()> {
    let rng = SystemRandom::new();
    // Offers accepted on this channel and when, for the exchange's duration.
    let mut offered: Vec<(String, u64, Instant)> = Vec::new();
    while let Some(msg) = ch.recv().await? {
        let (event, uid, epoch) = match &msg {
            PeerMessage::KeyOffer { uid, epoch, .. } => ("key_offer", uid.clone(), Some(*epoch)),
            PeerMessage::Commit { uid, epoch } => ("key_commit", uid.clone(), Some(*epoch)),
            PeerMessage::RekeyRequest { uid } => ("rekey_request", uid.clone(), None),
            PeerMessage::Release { uid } => ("release", uid.clone(), None),
            other => (other.kind(), String::new(), None),
        };
        let mut audit = AuditRecord::new(Source::Peer, peer, event);
        audit.uid = uid;
        audit.peer = peer.to_string();
        let reply = match msg {
            PeerMessage::KeyOffer {
                uid,
                epoch,
                algorithm,
                public,
                lanes,
            } => {
                let lanes = settle_lanes(lanes, sh.cfg.keys.lanes);
                offer(sh, ch, peer, &rng, (uid, epoch, lanes), &algorithm, &public)
            }
            PeerMessage::Commit { uid, epoch } => commit(sh, peer, uid, epoch),
            PeerMessage::RekeyRequest { uid } => {
                match owned(sh, peer, &uid) {
                    Ok(true) => {
                        tokio::spawn(super::negotiate::rekey(sh.clone(), uid, "peer request"));
                    }
                    Ok(false) => {
                        debug!(uid = %uid, "rekey request for a session we do not initiate")
                    }
                    Err(r) => {
                        warn!(uid = %uid, %peer, reason = %r, "rekey request refused");
                        audit.code = RefuseCode::UnknownUid.to_string();
                        audit.reason = r;
                    }
                }
                sh.audit.record(audit);
                continue;
            }
            PeerMessage::Release { uid } => {
                info!(uid = %uid, %peer, "the peer released the session");
                sh.audit.record(audit);
                continue;
            }
            other => refused(
                None,
                None,
                RefuseCode::BadMessage,
                format!("unexpected {}", other.kind()),
            ),
        };
        match &reply {
            PeerMessage::KeyAccept { uid, epoch, .. } => {
                offered.retain(|(u, _, _)| u != uid);
                offered.push((uid.clone(), *epoch, Instant::now()));
            }
            PeerMessage::Committed { uid, epoch } => {
                let started = offered
                    .iter()
                    .position(|(u, e, _)| u == uid && e == epoch)
                    .map(|i| offered.swap_remove(i).2);
                let secs = started.map_or(0.0, |t| t.elapsed().as_secs_f64());
                sh.metrics.exchange("responder", true, secs);
            }
            PeerMessage::Refused { code, reason, .. } => {
                audit.code = code.to_string();
                audit.reason = reason.clone();
                if event == "key_commit" {
                    sh.metrics.exchange("responder", false, 0.0);
                }
            }
            _ => {}
        }
        audit.epoch = epoch;
        sh.audit.record(audit);
        ch.send(&reply).await?;
    }
    Ok(())
}

fn refused(
    uid: Option<String>,
    epoch: Option<u64>,
    code: RefuseCode,
    reason: String,
) -> PeerMessage {
    PeerMessage::Refused {
        uid,
        epoch,
        code,
        reason,
    }
}

/// Whether session `uid` exists with `peer` as its peer; Ok(true) if we
/// are its initiator.
fn owned(sh: &Shared, peer: &str, uid: &str) -> Result<bool, String> {
    let st = sh.state();
    match st.get(uid) {
        Some(s) if s.record.peer == peer => Ok(s.is_initiator()),
        Some(_) => Err(format!("session `{uid}` belongs to another peer")),
        None => Err(format!("unknown session `{uid}`")),
    }
}

/// Why a key offer's peer could not be bound to its session.
#[derive(Debug, thiserror::Error)]
enum BindError {
    /// The state refused the offer's peer.
    #[error(transparent)]
    State(#[from] StateError),
    /// A new binding could not be persisted (and was undone).
    #[error("persisting the session's peer: {0}")]
    Persist(#[from] RegistryError),
}

impl BindError {
    /// The `Refused` code and reason for the offering peer. A session bound
    /// to another peer is unknown to this one (the old wire answer), and
    /// the reason does not name the other peer; the log has the full error.
    fn refusal(&self) -> (RefuseCode, String) {
        match self {
            BindError::State(StateError::UnknownUid(uid)) => {
                (RefuseCode::UnknownUid, format!("unknown session `{uid}`"))
            }
            BindError::State(StateError::PeerBound { uid, .. }) => (
                RefuseCode::UnknownUid,
                format!("session `{uid}` belongs to another peer"),
            ),
            BindError::State(StateError::InitiatedHere(uid)) => (
                RefuseCode::BadMessage,
                format!("session `{uid}` is initiated by this side"),
            ),
            other => (RefuseCode::Internal, other.to_string()),
        }
    }
}

/// Checks that authenticated peer `peer` may offer keys for session `uid`
/// and binds the session to it if it had no peer yet
/// ([`State::bind_responder_peer`]), under one acquisition of the state
/// lock. A new binding is persisted by `persist` (the registry) under the
/// same acquisition, and undone if that fails, so no other offer sees the
/// session in between. Blocking: call through `block_in_place`.
fn check_and_bind(
    state: &Mutex<State>,
    uid: &str,
    peer: &str,
    persist: impl FnOnce() -> Result<(), RegistryError>,
) -> Result<PeerBinding, BindError> {
    let mut st = super::lock(state);
    let binding = st.bind_responder_peer(uid, peer)?;
    if binding == PeerBinding::Bound {
        if let Err(e) = persist() {
            st.unbind_responder_peer(uid, peer);
            return Err(e.into());
        }
    }
    Ok(binding)
}

#[allow(clippy::too_many_arguments)]
fn offer(
    sh: &Shared,
    ch: &ServerChannel,
    peer: &str,
    rng: &SystemRandom,
    (uid, epoch, lanes): (String, u64, u32),
    algorithm: &str,
    public: &[u8; 32],
) -> PeerMessage {
    let refuse = |code, reason: String| {
        warn!(uid = %uid, epoch, %peer, ?code, %reason, "key offer refused");
        refused(Some(uid.clone()), Some(epoch), code, reason)
    };
    // An inbound session created through the northbound API does not know
    // its peer until the first authenticated peer offers keys for its uid
    // (a random id only the user and the two gateways know); from then on
    // only that peer may offer keys for it.
    let binding = tokio::task::block_in_place(|| {
        check_and_bind(&sh.state, &uid, peer, || sh.registry().set_peer(&uid, peer))
    });
    match binding {
        Ok(PeerBinding::Bound) => info!(uid = %uid, %peer, "session bound to its peer gateway"),
        Ok(PeerBinding::AlreadyBound) => {}
        Err(e) => {
            let (code, reason) = e.refusal();
            warn!(uid = %uid, epoch, %peer, ?code, error = %e, "key offer refused");
            return refused(Some(uid.clone()), Some(epoch), code, reason);
        }
    }
    let Some(alg) = algorithm_from_name(algorithm) else {
        return refuse(
            RefuseCode::BadMessage,
            format!("unknown algorithm `{algorithm}`"),
        );
    };
    let Some(i) = sh.peer_index(peer) else {
        return refuse(RefuseCode::Internal, "peer not configured".into());
    };
    let endpoint = sh.peer_endpoint(i);
    let derived = (|| -> anyhow::Result<([u8; 32], Sa, Sa)> {
        let ex = Exchange::new(rng)?;
        let ours = ex.public_key();
        let exporter = tls::exporter(ch.get_ref().get_ref().1, &uid, epoch)?;
        let keys = ex.finish(public, &exporter, alg, Side::Responder, lanes as usize)?;
        Ok((
            ours,
            Sa::from_keys(&keys.inbound, alg, endpoint).with_lanes(&keys.inbound_lanes),
            Sa::from_keys(&keys.outbound, alg, endpoint).with_lanes(&keys.outbound_lanes),
        ))
    })();
    let (ours, inbound, outbound) = match derived {
        Ok(x) => x,
        Err(e) => return refuse(RefuseCode::BadMessage, format!("{e:#}")),
    };
    let r = tokio::task::block_in_place(|| -> Result<(), super::PublishError> {
        let mut st = sh.state();
        st.responder_offer(&uid, epoch, inbound, outbound)?;
        sh.publish_locked(&st)?;
        Ok(())
    });
    match r {
        Ok(()) => PeerMessage::KeyAccept {
            uid,
            epoch,
            public: ours,
            lanes,
        },
        Err(super::PublishError::State(StateError::StaleEpoch { current, .. })) => {
            warn!(uid = %uid, epoch, current, %peer, "stale key offer refused");
            refused(
                Some(uid.clone()),
                Some(current),
                RefuseCode::StaleEpoch,
                format!("epoch {epoch} is not newer than {current}"),
            )
        }
        Err(e) => refuse(RefuseCode::Internal, e.to_string()),
    }
}

fn commit(sh: &Shared, peer: &str, uid: String, epoch: u64) -> PeerMessage {
    if let Err(r) = owned(sh, peer, &uid) {
        warn!(uid = %uid, %peer, reason = %r, "commit refused");
        return refused(Some(uid), Some(epoch), RefuseCode::UnknownUid, r);
    }
    let r = tokio::task::block_in_place(|| -> anyhow::Result<()> {
        let mut st = sh.state();
        st.responder_commit(&uid, epoch, Instant::now(), sh.grace)?;
        sh.publish_locked(&st)?;
        drop(st);
        sh.persist_epoch(&uid, epoch)?;
        Ok(())
    });
    match r {
        Ok(()) => {
            info!(uid = %uid, epoch, %peer, "keys switched (responder)");
            PeerMessage::Committed { uid, epoch }
        }
        Err(e) => {
            warn!(uid = %uid, epoch, %peer, error = %format!("{e:#}"), "commit failed");
            refused(
                Some(uid),
                Some(epoch),
                RefuseCode::Internal,
                format!("{e:#}"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Barrier, Mutex};

    use super::*;
    use crate::registry::{ListenerSpec, SessionRecord, SessionRole};

    fn state_with(uid: &str, role: SessionRole, peer: &str) -> Mutex<State> {
        let mut st = State::new();
        st.create(SessionRecord {
            uid: uid.into(),
            role,
            peer: peer.into(),
            epoch: 0,
            listeners: vec![ListenerSpec {
                port: 5100,
                remote: None,
                target: None,
            }],
            created_unix: 0,
            rate_bps: 0,
            owner: String::new(),
        })
        .unwrap();
        Mutex::new(st)
    }

    fn peer_of(st: &Mutex<State>, uid: &str) -> String {
        st.lock().unwrap().get(uid).unwrap().record.peer.clone()
    }

    /// Two authenticated peers' first offers for one unbound uid, at the
    /// same moment: exactly one is bound and persisted, every time; the
    /// other is refused as for an unknown session, and the binding never
    /// moves (a later offer from the loser is refused too).
    #[test]
    fn racing_first_offers_bind_and_persist_one_peer() {
        for i in 0..1000 {
            let st = state_with("u", SessionRole::Inbound, "");
            let persisted = Mutex::new(Vec::new());
            let barrier = Barrier::new(2);
            let offer = |peer: &'static str| {
                barrier.wait();
                let r = check_and_bind(&st, "u", peer, || {
                    persisted.lock().unwrap().push(peer);
                    Ok(())
                });
                (r.map_err(|e| e.refusal()), peer_of(&st, "u"))
            };
            let (b, c) = std::thread::scope(|sc| {
                let b = sc.spawn(|| offer("gwb"));
                let c = sc.spawn(|| offer("gwc"));
                (b.join().unwrap(), c.join().unwrap())
            });
            let winner = peer_of(&st, "u");
            let (won, lost, loser) = match winner.as_str() {
                "gwb" => (b, c, "gwc"),
                "gwc" => (c, b, "gwb"),
                other => panic!("iteration {i}: bound to `{other}`"),
            };
            assert_eq!(won.0, Ok(PeerBinding::Bound), "iteration {i}");
            assert_eq!(
                lost.0,
                Err((
                    RefuseCode::UnknownUid,
                    "session `u` belongs to another peer".into()
                )),
                "iteration {i}: exactly one offer wins"
            );
            assert_eq!(
                (won.1.as_str(), lost.1.as_str()),
                (winner.as_str(), winner.as_str()),
                "iteration {i}: the binding never moves"
            );
            assert_eq!(
                *persisted.lock().unwrap(),
                [winner.as_str()],
                "iteration {i}"
            );
            let again = check_and_bind(&st, "u", loser, || panic!("not persisted"));
            assert!(matches!(
                again,
                Err(BindError::State(StateError::PeerBound { .. }))
            ));
            assert_eq!(peer_of(&st, "u"), winner, "iteration {i}");
        }
    }

    /// A rekey: the bound peer offers again; nothing is persisted again.
    #[test]
    fn the_bound_peer_offers_again() {
        let st = state_with("u", SessionRole::Inbound, "");
        let writes = AtomicUsize::new(0);
        let persist = || {
            writes.fetch_add(1, Ordering::Relaxed);
            Ok(())
        };
        assert_eq!(
            check_and_bind(&st, "u", "gwb", persist).unwrap(),
            PeerBinding::Bound
        );
        for _ in 0..3 {
            assert_eq!(
                check_and_bind(&st, "u", "gwb", persist).unwrap(),
                PeerBinding::AlreadyBound
            );
        }
        assert_eq!(writes.load(Ordering::Relaxed), 1);
        assert_eq!(peer_of(&st, "u"), "gwb");
    }

    /// Refusals, and the codes the offering peer gets (the wire's existing
    /// codes; the reason never names the peer the session is bound to).
    #[test]
    fn offers_the_state_refuses_are_refused() {
        let never = || -> Result<(), RegistryError> { panic!("not persisted") };
        let st = state_with("u", SessionRole::Inbound, "gwb");
        let e = check_and_bind(&st, "u", "gwc", never).unwrap_err();
        assert!(matches!(
            &e,
            BindError::State(StateError::PeerBound { uid, bound, refused })
                if uid == "u" && bound == "gwb" && refused == "gwc"
        ));
        let (code, reason) = e.refusal();
        assert_eq!(code, RefuseCode::UnknownUid);
        assert!(!reason.contains("gwb"), "{reason}");
        assert_eq!(peer_of(&st, "u"), "gwb");

        let e = check_and_bind(&st, "nope", "gwb", never).unwrap_err();
        assert_eq!(
            e.refusal(),
            (RefuseCode::UnknownUid, "unknown session `nope`".into())
        );

        let st = state_with("o", SessionRole::Outbound, "gwb");
        let e = check_and_bind(&st, "o", "gwb", never).unwrap_err();
        assert_eq!(
            e.refusal(),
            (
                RefuseCode::BadMessage,
                "session `o` is initiated by this side".into()
            )
        );
    }

    /// A configured tunnel is bound to its configured peer from the start:
    /// another authenticated peer's offer is refused as for an unknown
    /// session, the configured peer's is taken, and neither writes to the
    /// registry (a tunnel is not in it).
    #[test]
    fn a_tunnel_takes_offers_from_its_configured_peer_only() {
        let never = || -> Result<(), RegistryError> { panic!("not persisted") };
        let cfg = crate::config::TunnelConfig {
            name: "site".into(),
            peer: "gwa".into(),
            local: vec!["10.20.1.0/24".parse().unwrap()],
            remote: vec!["10.10.1.0/24".parse().unwrap()],
        };
        // gwb responds: "gwa" sorts first.
        let (record, tunnel) = crate::tunnel::session(&cfg, "gwb", 0);
        let mut st = State::new();
        st.create_tunnel(record, tunnel).unwrap();
        let st = Mutex::new(st);
        let e = check_and_bind(&st, "tunnel:site", "gwc", never).unwrap_err();
        assert_eq!(
            e.refusal(),
            (
                RefuseCode::UnknownUid,
                "session `tunnel:site` belongs to another peer".into()
            )
        );
        assert_eq!(
            check_and_bind(&st, "tunnel:site", "gwa", never).unwrap(),
            PeerBinding::AlreadyBound
        );
        assert_eq!(peer_of(&st, "tunnel:site"), "gwa");
    }

    /// A binding that cannot be persisted is undone: the offer is refused
    /// and the session is unbound again (so state and registry agree).
    #[test]
    fn a_binding_that_cannot_be_persisted_is_undone() {
        let st = state_with("u", SessionRole::Inbound, "");
        let e = check_and_bind(&st, "u", "gwb", || Err(RegistryError::NotFound("u".into())))
            .unwrap_err();
        assert!(matches!(e, BindError::Persist(_)));
        assert_eq!(e.refusal().0, RefuseCode::Internal);
        assert_eq!(peer_of(&st, "u"), "");
        assert_eq!(
            check_and_bind(&st, "u", "gwb", || Ok(())).unwrap(),
            PeerBinding::Bound
        );
    }
}
