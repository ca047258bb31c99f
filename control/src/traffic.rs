//! Per-session traffic: the data plane's per-SA counters (read from its
//! stats segment) summed per session, across rekeys.
//!
//! An SA's counters live only as long as the SA: a rekey replaces it, a
//! data plane restart drops all of them. [`Traffic`] remembers the last
//! totals it read for every SA of every session; once an SA is gone from
//! the segment, its last totals are final and move into the session's
//! retired sum. A session's traffic is therefore monotonic while `s2cs`
//! runs, short only of what an SA counted between the last sample and its
//! removal (the samples run every [`crate::service::timers::TICK`], and
//! a superseded SA lingers in the segment for the grace period).
//!
//! Nothing here is on the packet path: `s2cs` samples on its timer, on
//! each scrape of the metrics endpoint and on each status request.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use scistream_region::stats::{sa_tag, SaTotals};
use scistream_region::Direction;

use crate::state::State;

/// Packets and inner bytes one way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Flow {
    /// Packets sealed (out) or opened (in).
    pub packets: u64,
    /// Inner bytes (IP packets) sealed or opened.
    pub bytes: u64,
}

/// One session's traffic through this gateway's data plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct SessionTraffic {
    /// Towards the peer (sealed by our outbound SAs).
    pub out: Flow,
    /// From the peer (opened by our inbound SAs).
    #[serde(rename = "in")]
    pub inbound: Flow,
    /// Inbound packets whose ICV did not verify.
    pub auth_failed: u64,
    /// Inbound packets refused by the replay window.
    pub replayed: u64,
    /// Outbound packets dropped by the session's rate policer.
    pub rate_limited: u64,
    /// Outbound inner bits per second over the last sampling window.
    pub out_bps: u64,
    /// Inbound inner bits per second over the last sampling window.
    pub in_bps: u64,
}

impl SessionTraffic {
    fn add(&mut self, dir: Direction, t: &SaTotals) {
        let f = match dir {
            Direction::Out => &mut self.out,
            Direction::In => &mut self.inbound,
        };
        f.packets += t.packets;
        f.bytes += t.bytes;
        self.auth_failed += t.auth_failed;
        self.replayed += t.replayed;
        self.rate_limited += t.rate_limited;
    }
}

/// The shortest window a rate is computed over.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// An SA seen in the segment, and whose session it is.
#[derive(Debug)]
struct Seen {
    uid: String,
    direction: Direction,
    last: SaTotals,
}

/// A session's sums.
#[derive(Debug, Default)]
struct Account {
    /// SAs gone from the segment, summed.
    retired: SessionTraffic,
    /// The start of the current rate window: when, and the byte totals.
    window: Option<(Instant, u64, u64)>,
    out_bps: u64,
    in_bps: u64,
}

/// Every session's traffic.
#[derive(Debug, Default)]
pub struct Traffic {
    seen: HashMap<u64, Seen>,
    accounts: HashMap<String, Account>,
}

/// The SA tags of every session in `st`: its outbound SA and its inbound
/// SAs (current and in their grace period), lanes included.
pub fn owners(st: &State) -> HashMap<u64, String> {
    let mut m = HashMap::new();
    for s in st.sessions() {
        let uid = &s.record.uid;
        for o in s
            .outbound
            .iter()
            .flat_map(|o| std::iter::once(o).chain(&o.lanes))
        {
            m.insert(sa_tag(Direction::Out, o.spi), uid.clone());
        }
        for i in s
            .inbound
            .iter()
            .flat_map(|i| std::iter::once(&i.sa).chain(&i.sa.lanes))
        {
            m.insert(sa_tag(Direction::In, i.spi), uid.clone());
        }
    }
    m
}

impl Traffic {
    /// Takes in a reading of the segment (`live`: every SA it counts now)
    /// at `now`, with `owners` ([`owners`]) saying whose SA each tag is.
    /// Sessions that are no longer in `owners` are forgotten.
    pub fn update(&mut self, owners: &HashMap<u64, String>, live: &[SaTotals], now: Instant) {
        let mut present = HashSet::with_capacity(live.len());
        for t in live {
            let Some(direction) = t.direction else {
                continue;
            };
            let tag = sa_tag(direction, t.spi);
            present.insert(tag);
            match self.seen.get_mut(&tag) {
                Some(s) => {
                    // Counters only grow; smaller ones mean the slot now
                    // counts a new SA under the same tag: the old one's
                    // last totals are final.
                    if t.packets < s.last.packets || t.bytes < s.last.bytes {
                        let a = self.accounts.entry(s.uid.clone()).or_default();
                        a.retired.add(s.direction, &s.last);
                    }
                    s.last = *t;
                }
                None => {
                    if let Some(uid) = owners.get(&tag) {
                        self.seen.insert(
                            tag,
                            Seen {
                                uid: uid.clone(),
                                direction,
                                last: *t,
                            },
                        );
                    }
                }
            }
        }
        let accounts = &mut self.accounts;
        self.seen.retain(|tag, s| {
            if present.contains(tag) {
                return true;
            }
            accounts
                .entry(s.uid.clone())
                .or_default()
                .retired
                .add(s.direction, &s.last);
            false
        });
        let sessions: HashSet<&String> = owners.values().collect();
        self.accounts.retain(|uid, _| sessions.contains(uid));
        self.seen.retain(|_, s| sessions.contains(&s.uid));
        for uid in sessions {
            self.accounts.entry(uid.clone()).or_default();
        }
        let totals: Vec<(String, SessionTraffic)> = self
            .accounts
            .keys()
            .map(|uid| (uid.clone(), self.sum(uid)))
            .collect();
        for (uid, t) in totals {
            let a = self.accounts.get_mut(&uid).expect("listed above");
            match a.window {
                Some((t0, out0, in0)) if now.duration_since(t0) >= RATE_WINDOW => {
                    let secs = now.duration_since(t0).as_secs_f64();
                    a.out_bps = (t.out.bytes.saturating_sub(out0) as f64 * 8.0 / secs) as u64;
                    a.in_bps = (t.inbound.bytes.saturating_sub(in0) as f64 * 8.0 / secs) as u64;
                    a.window = Some((now, t.out.bytes, t.inbound.bytes));
                }
                Some(_) => {}
                None => a.window = Some((now, t.out.bytes, t.inbound.bytes)),
            }
        }
    }

    fn sum(&self, uid: &str) -> SessionTraffic {
        let mut t = self
            .accounts
            .get(uid)
            .map(|a| a.retired)
            .unwrap_or_default();
        for s in self.seen.values().filter(|s| s.uid == uid) {
            t.add(s.direction, &s.last);
        }
        t
    }

    /// Session `uid`'s traffic so far (zero if it has none yet).
    pub fn session(&self, uid: &str) -> SessionTraffic {
        let mut t = self.sum(uid);
        if let Some(a) = self.accounts.get(uid) {
            t.out_bps = a.out_bps;
            t.in_bps = a.in_bps;
        }
        t
    }

    /// Every SA tag seen, and its session's uid.
    pub fn owners(&self) -> HashMap<u64, String> {
        self.seen
            .iter()
            .map(|(tag, s)| (*tag, s.uid.clone()))
            .collect()
    }

    /// The uid of the session SA `tag` belongs (or belonged) to.
    pub fn owner_of(&self, tag: u64) -> Option<&str> {
        self.seen.get(&tag).map(|s| s.uid.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(direction: Direction, spi: u32, packets: u64, bytes: u64) -> SaTotals {
        SaTotals {
            direction: Some(direction),
            spi,
            packets,
            bytes,
            ..SaTotals::default()
        }
    }

    fn owners_of(list: &[(Direction, u32, &str)]) -> HashMap<u64, String> {
        list.iter()
            .map(|(d, spi, uid)| (sa_tag(*d, *spi), uid.to_string()))
            .collect()
    }

    #[test]
    fn a_sessions_traffic_survives_its_sas_being_replaced() {
        let mut tr = Traffic::default();
        let t0 = Instant::now();
        let o = owners_of(&[(Direction::Out, 1, "s"), (Direction::In, 2, "s")]);
        tr.update(
            &o,
            &[
                totals(Direction::Out, 1, 10, 1000),
                totals(Direction::In, 2, 5, 500),
            ],
            t0,
        );
        // Rekey: SA 1 is replaced by 3; SA 1 counted 2 more packets before
        // it went, and the segment still shows it once more.
        let o2 = owners_of(&[(Direction::Out, 3, "s"), (Direction::In, 2, "s")]);
        tr.update(
            &o2,
            &[
                totals(Direction::Out, 1, 12, 1200),
                totals(Direction::Out, 3, 1, 100),
                totals(Direction::In, 2, 6, 600),
            ],
            t0 + Duration::from_millis(500),
        );
        // SA 1 is gone from the segment now: its last totals are final.
        tr.update(
            &o2,
            &[
                totals(Direction::Out, 3, 4, 400),
                totals(Direction::In, 2, 7, 700),
            ],
            t0 + Duration::from_secs(2),
        );
        let s = tr.session("s");
        assert_eq!(
            s.out,
            Flow {
                packets: 16,
                bytes: 1600
            }
        );
        assert_eq!(
            s.inbound,
            Flow {
                packets: 7,
                bytes: 700
            }
        );
        // 600 bytes out over 2 s: 2400 bit/s.
        assert_eq!(s.out_bps, 2400);
        assert_eq!(tr.owner_of(sa_tag(Direction::Out, 3)), Some("s"));
    }

    #[test]
    fn a_released_session_is_forgotten_and_strangers_are_not_counted() {
        let mut tr = Traffic::default();
        let now = Instant::now();
        let o = owners_of(&[(Direction::Out, 1, "a"), (Direction::Out, 2, "b")]);
        let live = [
            totals(Direction::Out, 1, 1, 10),
            totals(Direction::Out, 2, 2, 20),
            totals(Direction::Out, 9, 9, 90),
        ];
        tr.update(&o, &live, now);
        assert_eq!(tr.session("b").out.packets, 2);
        assert_eq!(tr.owner_of(sa_tag(Direction::Out, 9)), None);
        let o = owners_of(&[(Direction::Out, 1, "a")]);
        tr.update(&o, &live, now);
        assert_eq!(tr.session("b"), SessionTraffic::default());
        assert_eq!(tr.owner_of(sa_tag(Direction::Out, 2)), None);
        assert_eq!(tr.session("a").out.packets, 1);
    }

    #[test]
    fn a_slot_counting_a_new_sa_under_the_same_tag_keeps_the_old_totals() {
        let mut tr = Traffic::default();
        let now = Instant::now();
        let o = owners_of(&[(Direction::In, 5, "s")]);
        tr.update(&o, &[totals(Direction::In, 5, 100, 1000)], now);
        tr.update(&o, &[totals(Direction::In, 5, 3, 30)], now);
        assert_eq!(
            tr.session("s").inbound,
            Flow {
                packets: 103,
                bytes: 1030
            }
        );
    }
}
