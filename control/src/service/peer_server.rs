//! The responder side: accepts mutual-TLS connections from the configured
//! peers and answers their messages, one at a time per connection.
//!
//! A peer may only negotiate keys for a session that we hold too, created
//! by one of our users, and whose peer is the gateway that authenticated.

use std::sync::Arc;
use std::time::Instant;

use ring::rand::SystemRandom;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::Shared;
use crate::peer::keys::{algorithm_from_name, Exchange, Side};
use crate::peer::tls;
use crate::peer::wire::{PeerMessage, PeerStream, RefuseCode};
use crate::state::{Sa, StateError};

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
            if let Err(e) = session(&sh, &mut ch, &peer).await {
                warn!(%remote, %peer, error = %format!("{e:#}"), "peer channel closed");
            }
        });
    }
}

async fn session(sh: &Arc<Shared>, ch: &mut ServerChannel, peer: &str) -> anyhow::Result<()> {
    let rng = SystemRandom::new();
    while let Some(msg) = ch.recv().await? {
        let reply = match msg {
            PeerMessage::KeyOffer {
                uid,
                epoch,
                algorithm,
                public,
            } => offer(sh, ch, peer, &rng, uid, epoch, &algorithm, &public),
            PeerMessage::Commit { uid, epoch } => commit(sh, peer, uid, epoch),
            PeerMessage::RekeyRequest { uid } => {
                match owned(sh, peer, &uid) {
                    Ok(true) => {
                        tokio::spawn(super::negotiate::rekey(sh.clone(), uid, "peer request"));
                    }
                    Ok(false) => {
                        debug!(uid = %uid, "rekey request for a session we do not initiate")
                    }
                    Err(r) => warn!(uid = %uid, %peer, reason = %r, "rekey request refused"),
                }
                continue;
            }
            PeerMessage::Release { uid } => {
                info!(uid = %uid, %peer, "the peer released the session");
                continue;
            }
            other => refused(
                None,
                None,
                RefuseCode::BadMessage,
                format!("unexpected {}", other.kind()),
            ),
        };
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

#[allow(clippy::too_many_arguments)]
fn offer(
    sh: &Shared,
    ch: &ServerChannel,
    peer: &str,
    rng: &SystemRandom,
    uid: String,
    epoch: u64,
    algorithm: &str,
    public: &[u8; 32],
) -> PeerMessage {
    let refuse = |code, reason: String| {
        warn!(uid = %uid, epoch, %peer, ?code, %reason, "key offer refused");
        refused(Some(uid.clone()), Some(epoch), code, reason)
    };
    // An inbound session created through the northbound API does not know
    // its peer until the first authenticated peer offers keys for its uid
    // (a random id only the user and the two gateways know).
    let unbound = sh
        .state()
        .get(&uid)
        .is_some_and(|s| s.record.peer.is_empty() && !s.is_initiator());
    if unbound {
        let bound = tokio::task::block_in_place(|| -> anyhow::Result<()> {
            sh.state().bind_peer(&uid, peer)?;
            sh.registry().set_peer(&uid, peer)?;
            Ok(())
        });
        if let Err(e) = bound {
            return refuse(RefuseCode::Internal, format!("{e:#}"));
        }
        info!(uid = %uid, %peer, "session bound to its peer gateway");
    }
    match owned(sh, peer, &uid) {
        Ok(false) => {}
        Ok(true) => {
            return refuse(
                RefuseCode::BadMessage,
                format!("session `{uid}` is initiated by this side"),
            )
        }
        Err(r) => return refuse(RefuseCode::UnknownUid, r),
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
        let keys = ex.finish(public, &exporter, alg, Side::Responder)?;
        Ok((
            ours,
            Sa::from_keys(&keys.inbound, alg, endpoint),
            Sa::from_keys(&keys.outbound, alg, endpoint),
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
        sh.registry().set_epoch(&uid, epoch)?;
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
