//! The initiator side of a key exchange, over a fresh mutual-TLS
//! connection to the peer (one connection per exchange: the TLS exporter
//! that salts the keys is that connection's).
//!
//! KeyOffer → (peer installs its inbound SA) → KeyAccept → we install our
//! inbound SA and switch outbound, publish → Commit → (peer switches) →
//! Committed → our old inbound SA expires after the grace period.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tracing::{info, warn};

use super::Shared;
use crate::audit::{AuditRecord, Source};
use crate::peer::keys::{Exchange, Side, MAX_LANES};
use crate::peer::tls;
use crate::peer::wire::{PeerMessage, PeerStream, RefuseCode};
use crate::state::Sa;

/// How long one exchange may take end to end.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A peer channel we dialled.
pub type ClientChannel = PeerStream<TlsStream<TcpStream>>;

/// Dials peer `i`: TCP, TLS 1.3 with both certificates checked, Hello.
pub async fn connect(sh: &Shared, i: usize) -> anyhow::Result<ClientChannel> {
    let r = dial(sh, i).await;
    sh.peer_contact(&sh.peers[i].name, r.is_ok());
    r
}

async fn dial(sh: &Shared, i: usize) -> anyhow::Result<ClientChannel> {
    let peer = &sh.peers[i];
    let addr = sh.cfg.peers[i].control_address;
    let config = tls::client_config(&sh.identity, peer)?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| anyhow::anyhow!("peer {}: connecting to {addr}: {e}", peer.name))?;
    let _ = tcp.set_nodelay(true);
    let tls = TlsConnector::from(config)
        .connect(tls::server_name(peer)?, tcp)
        .await
        .map_err(|e| anyhow::anyhow!("peer {}: TLS with {addr}: {e}", peer.name))?;
    let mut ch = PeerStream::new(tls);
    let name = ch.exchange_hello(&sh.cfg.gateway.name).await?;
    if name != peer.name {
        anyhow::bail!(
            "peer at {addr} authenticated as {} but says it is {name}",
            peer.name
        );
    }
    Ok(ch)
}

/// Runs one exchange for session `uid` unless one is already in flight.
/// Errors are logged and recorded on the session.
pub async fn rekey(sh: Arc<Shared>, uid: String, why: &'static str) {
    {
        let mut f = super::lock(&sh.in_flight);
        if !f.insert(uid.clone()) {
            return;
        }
    }
    sh.metrics.rekey(why);
    let started = Instant::now();
    let r = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(&sh, &uid)).await;
    super::lock(&sh.in_flight).remove(&uid);
    let r = r.unwrap_or_else(|_| Err(anyhow::anyhow!("timed out after {EXCHANGE_TIMEOUT:?}")));
    let peer = sh
        .state()
        .get(&uid)
        .map(|s| s.record.peer.clone())
        .unwrap_or_default();
    let mut audit = AuditRecord::new(Source::Peer, &peer, "key_exchange");
    audit.uid = uid.clone();
    audit.peer = peer;
    match r {
        Ok(epoch) => {
            let elapsed = started.elapsed();
            sh.metrics
                .exchange("initiator", true, elapsed.as_secs_f64());
            audit.epoch = Some(epoch);
            audit.reason = why.to_string();
            info!(uid = %uid, epoch, why, ms = elapsed.as_millis() as u64, "keys switched")
        }
        Err(e) => {
            sh.metrics.exchange("initiator", false, 0.0);
            audit.code = "ERROR".to_string();
            audit.reason = format!("{why}: {e:#}");
            warn!(uid = %uid, why, error = %format!("{e:#}"), "key exchange failed");
            sh.state().note_error(&uid, format!("{e:#}"));
        }
    }
    sh.audit.record(audit);
}

async fn exchange(sh: &Shared, uid: &str) -> anyhow::Result<u64> {
    let (peer_name, mut epoch) = {
        let st = sh.state();
        let s = st
            .get(uid)
            .ok_or_else(|| anyhow::anyhow!("session released"))?;
        (s.record.peer.clone(), s.record.epoch + 1)
    };
    let i = sh
        .peer_index(&peer_name)
        .ok_or_else(|| anyhow::anyhow!("peer `{peer_name}` is not configured"))?;
    let endpoint = sh.peer_endpoint(i);
    let alg = sh.cfg.keys.algorithm;
    let mut ch = connect(sh, i).await?;
    let rng = SystemRandom::new();
    for _attempt in 0..3 {
        let ex = Exchange::new(&rng)?;
        ch.send(&PeerMessage::KeyOffer {
            uid: uid.to_string(),
            epoch,
            algorithm: alg.name().to_string(),
            public: ex.public_key(),
            lanes: sh.cfg.keys.lanes,
        })
        .await?;
        let (public, lanes) = match ch.recv().await? {
            Some(PeerMessage::KeyAccept {
                uid: u,
                epoch: e,
                public,
                lanes,
            }) if u == uid && e == epoch => (public, lanes.clamp(1, MAX_LANES as u32)),
            Some(PeerMessage::Refused {
                code: RefuseCode::StaleEpoch,
                epoch: Some(current),
                ..
            }) if current >= epoch => {
                // The peer committed an epoch we did not record (we
                // restarted mid-exchange): continue after it.
                epoch = current + 1;
                continue;
            }
            Some(PeerMessage::Refused { code, reason, .. }) => {
                anyhow::bail!("peer {peer_name} refused the key offer: {code:?}: {reason}")
            }
            Some(other) => anyhow::bail!("peer {peer_name}: unexpected {}", other.kind()),
            None => anyhow::bail!("peer {peer_name} closed the channel"),
        };
        let exporter = tls::exporter(ch.get_ref().get_ref().1, uid, epoch)?;
        let keys = ex.finish(&public, &exporter, alg, Side::Initiator, lanes as usize)?;
        let inbound = Sa::from_keys(&keys.inbound, alg, endpoint).with_lanes(&keys.inbound_lanes);
        let outbound =
            Sa::from_keys(&keys.outbound, alg, endpoint).with_lanes(&keys.outbound_lanes);
        drop(keys);
        tokio::task::block_in_place(|| -> anyhow::Result<()> {
            let mut st = sh.state();
            st.initiator_switch(uid, epoch, inbound, outbound, Instant::now())?;
            sh.publish_locked(&st)?;
            Ok(())
        })?;
        tokio::task::block_in_place(|| sh.persist_epoch(uid, epoch))?;
        ch.send(&PeerMessage::Commit {
            uid: uid.to_string(),
            epoch,
        })
        .await?;
        match ch.recv().await? {
            Some(PeerMessage::Committed { uid: u, epoch: e }) if u == uid && e == epoch => {}
            Some(PeerMessage::Refused { code, reason, .. }) => {
                anyhow::bail!("peer {peer_name} refused the commit: {code:?}: {reason}")
            }
            Some(other) => anyhow::bail!("peer {peer_name}: unexpected {}", other.kind()),
            None => anyhow::bail!("peer {peer_name} closed the channel before Committed"),
        }
        // Both sides now seal with the new keys: our old inbound SA only
        // has packets in flight left, so it goes after the grace period.
        sh.state().committed(uid, epoch, Instant::now(), sh.grace);
        let _ = ch.close().await;
        return Ok(epoch);
    }
    anyhow::bail!("peer {peer_name} kept refusing epochs as stale")
}

/// Sends one message to peer `i` over a fresh channel, within
/// [`EXCHANGE_TIMEOUT`] (a notice that needs no answer).
async fn notify(sh: &Shared, i: usize, m: PeerMessage) -> anyhow::Result<()> {
    let r = async {
        let mut ch = connect(sh, i).await?;
        ch.send(&m).await?;
        let _ = ch.close().await;
        anyhow::Ok(())
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, r)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out after {EXCHANGE_TIMEOUT:?}")))
}

/// Asks the initiator (the peer) to rekey session `uid` (we are the
/// responder and a limit was reached, or our keys were lost).
pub async fn request_rekey(sh: Arc<Shared>, uid: String, why: &'static str) {
    let peer = sh.state().get(&uid).map(|s| s.record.peer.clone());
    let Some(i) = peer.and_then(|p| sh.peer_index(&p)) else {
        return;
    };
    match notify(&sh, i, PeerMessage::RekeyRequest { uid: uid.clone() }).await {
        Ok(()) => info!(uid = %uid, why, "asked the peer to rekey"),
        Err(e) => warn!(uid = %uid, why, error = %format!("{e:#}"), "rekey request failed"),
    }
}

/// Tells peer gateway `peer` that session `uid` was released here (best
/// effort: the peer logs it; its own user releases its side).
pub async fn notify_release(sh: Arc<Shared>, uid: String, peer: String) {
    let Some(i) = sh.peer_index(&peer) else {
        return;
    };
    if let Err(e) = notify(&sh, i, PeerMessage::Release { uid: uid.clone() }).await {
        warn!(uid = %uid, %peer, error = %format!("{e:#}"), "telling the peer about the release failed");
    }
}
