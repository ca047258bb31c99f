//! What happens with time: rekey triggers (seconds, packets, bytes),
//! removal of superseded inbound SAs after their grace period, first keys
//! for new or restored sessions, and a data plane restart (a new
//! incarnation in the region).
//!
//! Packets and bytes per SA come from the data plane's stats segment (the
//! one stats model), whose path the data plane announces in the region.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scistream_region::Direction;
use tracing::{info, warn};

use super::negotiate;
use super::Shared;

/// How often the timers run.
pub const TICK: Duration = Duration::from_millis(250);
/// Least time between two attempts for one session.
pub const RETRY: Duration = Duration::from_secs(2);

/// Runs forever.
pub async fn run(sh: Arc<Shared>) {
    let mut last_try: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        if dataplane_restart(&sh) {
            super::lock(&sh.dp_stats).reset();
        }
        let expired = sh.state().expire(now, sh.grace);
        if expired {
            if let Err(e) = sh.publish() {
                warn!(error = %e, "publishing expired SAs failed");
            }
        }
        // `spi → (packets, bytes)` of every outbound SA the data plane
        // counts; empty while there is no segment to read (then only the
        // time trigger rekeys).
        let usage: HashMap<u32, (u64, u64)> = sh
            .sample_traffic()
            .into_iter()
            .filter(|t| t.direction == Some(Direction::Out))
            .map(|t| (t.spi, (t.packets, t.bytes)))
            .collect();
        for (uid, action) in due(&sh, now, &usage) {
            if last_try
                .get(&uid)
                .is_some_and(|t| now.duration_since(*t) < RETRY)
            {
                continue;
            }
            last_try.insert(uid.clone(), now);
            match action {
                Action::Rekey(why) => {
                    tokio::spawn(negotiate::rekey(sh.clone(), uid, why));
                }
                Action::Ask(why) => {
                    tokio::spawn(negotiate::request_rekey(sh.clone(), uid, why));
                }
            }
        }
        last_try.retain(|uid, _| sh.state().get(uid).is_some());
    }
}

enum Action {
    /// We initiate: exchange keys now.
    Rekey(&'static str),
    /// We respond: ask the peer to.
    Ask(&'static str),
}

/// Sessions that need keys, and why.
fn due(sh: &Shared, now: Instant, usage: &HashMap<u32, (u64, u64)>) -> Vec<(String, Action)> {
    let st = sh.state();
    let in_flight = super::lock(&sh.in_flight);
    let limits = sh.limits;
    let mut out = Vec::new();
    for s in st.sessions() {
        // In flight, or not ready for keys: no peer yet (a session created
        // through the API learns it from `update` or the first offer).
        if in_flight.contains(&s.record.uid) || s.record.peer.is_empty() {
            continue;
        }
        let why = match (&s.outbound, s.switched_at) {
            // A new responder session waits for the initiator's offer.
            (None, _) if !s.is_initiator() && !s.lost_keys => None,
            (None, _) if s.lost_keys => Some("keys lost with the data plane"),
            (None, _) => Some("no keys yet"),
            (Some(_), None) => Some("keys adopted after a restart"),
            (Some(o), Some(at)) => {
                // Each lane has its own counters and limits: the busiest decides.
                let (packets, bytes) = std::iter::once(o)
                    .chain(&o.lanes)
                    .filter_map(|sa| usage.get(&sa.spi).copied())
                    .fold((0, 0), |(p, b), (q, c)| (p.max(q), b.max(c)));
                // Only the initiator rekeys on time: the responder runs the
                // same clock, and asking too would double the exchanges.
                let timed_out = now.duration_since(at) >= Duration::from_secs(limits.rekey_seconds);
                if timed_out && s.is_initiator() {
                    Some("lifetime (seconds)")
                } else if packets >= limits.rekey_packets {
                    Some("lifetime (packets)")
                } else if bytes >= limits.rekey_bytes {
                    Some("lifetime (bytes)")
                } else {
                    None
                }
            }
        };
        if let Some(why) = why {
            let action = match s.is_initiator() {
                true => Action::Rekey(why),
                false => Action::Ask(why),
            };
            out.push((s.record.uid.clone(), action));
        }
    }
    out
}

/// A new data plane attached: the SAs it held are gone with it. Outbound
/// SAs must not be reinstalled (their sequence numbers would restart under
/// the same key), so every session gets new keys. Returns true if it did.
fn dataplane_restart(sh: &Shared) -> bool {
    // State first, then the writer (the order every publish takes them
    // in): no publish can run between noticing the new data plane and
    // dropping the old keys, so none stamps old SAs with the new
    // incarnation.
    let sessions = {
        let mut st = sh.state();
        let change = super::lock(&sh.writer).take_incarnation_change();
        let Some(incarnation) = change else {
            return false;
        };
        st.forget_keys(incarnation);
        (incarnation, st.sessions().count())
    };
    let (incarnation, sessions) = sessions;
    info!(
        incarnation,
        sessions, "data plane (re)started: renegotiating every session's keys"
    );
    if let Err(e) = sh.publish() {
        warn!(error = %e, "publishing after the data plane restart failed");
    }
    true
}
