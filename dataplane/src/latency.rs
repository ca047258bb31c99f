//! Per-burst processing time, from the first non-empty receive of a poll to
//! the end of its transmits. Each worker records into its own hdrhistogram;
//! about once a second it swaps in an empty one and sends the full one to
//! the main thread, which merges it and sends it back empty. The
//! histograms are allocated at start and then only travel: the hot path
//! neither allocates nor locks.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use hdrhistogram::Histogram;

/// How often a worker hands its histogram over.
pub const EXPORT_EVERY: Duration = Duration::from_secs(1);
/// Largest value recorded (larger ones are clamped): 100 ms.
const HIGHEST_NS: u64 = 100_000_000;
/// Significant decimal digits of the histograms.
const SIGFIG: u8 = 2;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NS, SIGFIG).expect("constant, valid bounds")
}

/// Latency over a window, as shown by `s2ds stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LatencySummary {
    /// Bursts measured.
    pub bursts: u64,
    /// Median, nanoseconds.
    pub p50_ns: u64,
    /// 99th percentile, nanoseconds.
    pub p99_ns: u64,
    /// 99.9th percentile, nanoseconds.
    pub p999_ns: u64,
    /// Largest, nanoseconds.
    pub max_ns: u64,
}

/// A worker's side.
pub struct LatencyRecorder {
    worker: usize,
    hist: Histogram<u64>,
    to_main: Sender<(usize, Histogram<u64>)>,
    spare: Receiver<Histogram<u64>>,
    last_export: Instant,
}

impl LatencyRecorder {
    /// Records one burst that started at `started`.
    #[inline]
    pub fn record(&mut self, started: Instant) {
        let now = Instant::now();
        let ns = u64::try_from(now.duration_since(started).as_nanos()).unwrap_or(u64::MAX);
        self.hist.saturating_record(ns.max(1));
        if now.duration_since(self.last_export) >= EXPORT_EVERY {
            self.export(now);
        }
    }

    /// Hands the histogram over if an empty one has come back; otherwise keeps recording.
    fn export(&mut self, now: Instant) {
        if let Ok(mut empty) = self.spare.try_recv() {
            std::mem::swap(&mut self.hist, &mut empty);
            // The main thread holds the other end for the life of the gateway;
            // if it is gone, the histogram is simply dropped.
            let _ = self.to_main.try_send((self.worker, empty));
        }
        self.last_export = now;
    }
}

/// The main thread's side.
pub struct LatencyCollector {
    from_workers: Receiver<(usize, Histogram<u64>)>,
    returns: Vec<Sender<Histogram<u64>>>,
    window: Histogram<u64>,
    window_start: Instant,
    last: Option<LatencySummary>,
}

impl LatencyCollector {
    /// A collector and one recorder per worker, each with a spare histogram.
    pub fn new(workers: usize) -> (Self, Vec<LatencyRecorder>) {
        let (to_main, from_workers) = crossbeam_channel::bounded(workers.max(1) * 2);
        let mut returns = Vec::new();
        let mut recorders = Vec::new();
        let now = Instant::now();
        for worker in 0..workers {
            let (ret_tx, spare) = crossbeam_channel::bounded(2);
            ret_tx.send(histogram()).expect("fresh channel has room");
            returns.push(ret_tx);
            recorders.push(LatencyRecorder {
                worker,
                hist: histogram(),
                to_main: to_main.clone(),
                spare,
                last_export: now,
            });
        }
        let c = LatencyCollector {
            from_workers,
            returns,
            window: histogram(),
            window_start: now,
            last: None,
        };
        (c, recorders)
    }

    /// Merges what workers handed over, returns their histograms empty, and
    /// gives the summary of the last complete window of about a second.
    pub fn collect(&mut self) -> Option<LatencySummary> {
        while let Ok((worker, mut h)) = self.from_workers.try_recv() {
            let _ = self.window.add(&h);
            h.reset();
            if let Some(ret) = self.returns.get(worker) {
                let _ = ret.try_send(h);
            }
        }
        if self.window_start.elapsed() >= EXPORT_EVERY {
            if !self.window.is_empty() {
                let w = &self.window;
                self.last = Some(LatencySummary {
                    bursts: w.len(),
                    p50_ns: w.value_at_quantile(0.5),
                    p99_ns: w.value_at_quantile(0.99),
                    p999_ns: w.value_at_quantile(0.999),
                    max_ns: w.max(),
                });
            }
            self.window.reset();
            self.window_start = Instant::now();
        }
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_travel_and_come_back() {
        let (mut c, mut recs) = LatencyCollector::new(2);
        let r = &mut recs[0];
        let t0 = Instant::now();
        for _ in 0..1000 {
            r.hist.record(2_000).unwrap();
        }
        r.hist.record(50_000).unwrap();
        r.export(t0);
        assert!(r.hist.is_empty(), "the worker swapped in its spare");
        assert!(r.spare.try_recv().is_err(), "its only spare is in use");
        c.window_start = Instant::now() - EXPORT_EVERY;
        let s = c.collect().expect("a window with bursts");
        assert_eq!(s.bursts, 1001);
        assert!((1_980..=2_020).contains(&s.p50_ns), "{s:?}");
        assert!(s.max_ns >= 49_500, "{s:?}");
        // The histogram came back empty, ready for the next swap.
        let back = r.spare.try_recv().expect("returned");
        assert!(back.is_empty());
        // Without a spare the worker keeps recording into the same histogram.
        r.record(Instant::now());
        r.export(Instant::now());
        assert_eq!(r.hist.len(), 1);
    }
}
