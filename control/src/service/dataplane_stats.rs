//! The data plane's stats segment as `s2cs` reads it: opened from the
//! path the data plane announced in the region, reopened after a data
//! plane restart, and sampled into the per-session [`Traffic`] sums.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use scistream_region::stats::SaTotals;
use scistream_region::StatsReader;
use tracing::{debug, info, warn};

use super::Shared;
use crate::traffic;

/// How often a missing or unreadable stats segment is looked for again.
const STATS_RETRY: Duration = Duration::from_secs(1);

/// The reader of the data plane's segment, while there is one.
#[derive(Debug, Default)]
pub struct DataplaneStats {
    reader: Option<StatsReader>,
    next_try: Option<Instant>,
    last_error: Option<String>,
}

impl DataplaneStats {
    /// Drops the reader (the data plane restarted: its new segment is
    /// opened on the next call).
    pub fn reset(&mut self) {
        *self = DataplaneStats::default();
    }

    /// The segment's reader, opening it first if needed (`path`: where
    /// the data plane announced it). `None` while there is none to read.
    pub fn reader(&mut self, path: Option<PathBuf>, now: Instant) -> Option<&StatsReader> {
        if self.reader.as_ref().is_some_and(|r| !r.owner_alive()) {
            self.reader = None;
        }
        if self.reader.is_none() && self.next_try.is_none_or(|t| now >= t) {
            self.next_try = Some(now + STATS_RETRY);
            match path.map(StatsReader::open) {
                Some(Ok(r)) => {
                    info!(stats = %r.path().display(), "reading SA usage from the data plane's stats segment (rekeys, traffic counts)");
                    self.reader = Some(r);
                    self.last_error = None;
                }
                Some(Err(e)) => {
                    let msg = e.to_string();
                    if self.last_error.as_deref() != Some(&msg) {
                        warn!(error = %msg, "cannot read the data plane's stats segment; packet and byte rekeying and traffic counts wait");
                        self.last_error = Some(msg);
                    }
                }
                None => debug!("the data plane announced no stats segment yet"),
            }
        }
        self.reader.as_ref()
    }
}

impl Shared {
    /// Reads every SA's totals from the data plane's segment and folds
    /// them into the per-session traffic; returns them (empty while there
    /// is no segment).
    pub fn sample_traffic(&self) -> Vec<SaTotals> {
        let now = Instant::now();
        let live = {
            let path = super::lock(&self.writer).dataplane_info().stats_path();
            let mut stats = super::lock(&self.dp_stats);
            match stats.reader(path, now) {
                Some(r) => r.sa_totals(),
                None => return Vec::new(),
            }
        };
        let owners = traffic::owners(&self.state());
        super::lock(&self.traffic).update(&owners, &live, now);
        live
    }

    /// Like [`Shared::sample_traffic`], with the state already locked by
    /// the caller: taken just before a publish, so that an SA about to
    /// leave the tables is read one last time (its slot in the segment goes
    /// with it).
    pub fn sample_traffic_locked(&self, st: &crate::state::State) {
        let now = Instant::now();
        let path = super::lock(&self.writer).dataplane_info().stats_path();
        let live = match super::lock(&self.dp_stats).reader(path, now) {
            Some(r) => r.sa_totals(),
            None => return,
        };
        let owners = traffic::owners(st);
        super::lock(&self.traffic).update(&owners, &live, now);
    }

    /// Calls `f` with the data plane's segment reader, if there is one.
    pub fn with_dataplane_stats<R>(&self, f: impl FnOnce(&StatsReader) -> R) -> Option<R> {
        let path = super::lock(&self.writer).dataplane_info().stats_path();
        let mut stats = super::lock(&self.dp_stats);
        stats.reader(path, Instant::now()).map(f)
    }
}
