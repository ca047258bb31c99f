//! Tunnel tables from the control process (keying "control").
//!
//! [`ShmTableSource`] is what the workers load (an `ArcSwap`, as for manual
//! keys). [`ShmWatcher`], run by one thread, attaches to the region `s2cs`
//! writes, rebuilds the tables whenever a new generation is published and
//! swaps them in. Workers report each generation they move on to
//! ([`TableSource::seen`]), which is what lets the writer reuse a copy
//! (QSBR): once `s2cs`'s publish returns, no worker uses the old tables.
//!
//! The watcher also announces a new data plane incarnation when it
//! attaches (so `s2cs` renegotiates keys for this process), with the path
//! of the data plane's stats segment, where `s2cs` reads how much each SA
//! has carried (for packet and byte rekeying).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};

use super::build::{RebuildReport, TableContext};
use super::tables::{TableSource, TunnelTables};
use scistream_region::{DataplaneInfo, ShmError, ShmReader};

/// How often the watcher looks for a new generation.
pub const POLL_EVERY: Duration = Duration::from_millis(1);
/// How often it retries attaching, and checks that the file is still the one mapped.
pub const REATTACH_EVERY: Duration = Duration::from_millis(250);

/// Counters of the table changes, shown by `s2ds stats`.
#[derive(Debug, Default)]
pub struct ChangeCounts {
    /// Tables rebuilt from a new generation.
    pub rebuilds: AtomicU64,
    /// SAs installed.
    pub installed: AtomicU64,
    /// SAs removed.
    pub removed: AtomicU64,
    /// Invalid entries skipped.
    pub invalid: AtomicU64,
    /// Rebuilds that failed (old tables kept).
    pub failed: AtomicU64,
}

/// A plain copy of [`ChangeCounts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChangeSnapshot {
    /// Tables rebuilt from a new generation.
    pub rebuilds: u64,
    /// SAs installed.
    pub installed: u64,
    /// SAs removed.
    pub removed: u64,
    /// Invalid entries skipped.
    pub invalid: u64,
    /// Rebuilds that failed (old tables kept).
    pub failed: u64,
    /// The shared-memory generation in use.
    pub generation: u64,
    /// Whether the region is attached.
    pub attached: bool,
}

/// The tables the workers use, as last built from the region.
pub struct ShmTableSource {
    current: ArcSwap<TunnelTables>,
    reader: ArcSwapOption<ShmReader>,
    counts: ChangeCounts,
}

impl std::fmt::Debug for ShmTableSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmTableSource")
            .field("generation", &self.current.load().shm_generation)
            .field("attached", &self.reader.load().is_some())
            .finish()
    }
}

impl ShmTableSource {
    /// Empty tables (everything between LAN and WAN dropped) until the
    /// watcher attaches.
    pub fn new(cx: &TableContext) -> Self {
        ShmTableSource {
            current: ArcSwap::from_pointee(TunnelTables::empty(cx, 1)),
            reader: ArcSwapOption::empty(),
            counts: ChangeCounts::default(),
        }
    }

    /// The change counters.
    pub fn changes(&self) -> ChangeSnapshot {
        let c = &self.counts;
        ChangeSnapshot {
            rebuilds: c.rebuilds.load(Ordering::Relaxed),
            installed: c.installed.load(Ordering::Relaxed),
            removed: c.removed.load(Ordering::Relaxed),
            invalid: c.invalid.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            generation: self.current.load().shm_generation,
            attached: self.reader.load().is_some(),
        }
    }

    /// Detaches every worker slot (on a clean stop).
    pub fn detach(&self) {
        if let Some(r) = self.reader.swap(None) {
            r.detach_all();
        }
    }
}

impl TableSource for ShmTableSource {
    fn load(&self) -> arc_swap::Guard<Arc<TunnelTables>> {
        self.current.load()
    }

    fn seen(&self, worker: usize, tables: &TunnelTables) {
        if let Some(r) = self.reader.load().as_ref() {
            // An error means a worker index beyond the region's slots,
            // which attach refused already.
            let _ = r.report_seen(worker, tables.shm_generation);
        }
    }
}

/// The thread that keeps [`ShmTableSource`] in step with the region.
pub struct ShmWatcher {
    source: Arc<ShmTableSource>,
    cx: TableContext,
    path: PathBuf,
    workers: usize,
    /// What the control process learns about us when we attach.
    info: DataplaneInfo,
    /// (device, inode) of the mapped file.
    file_id: Option<(u64, u64)>,
    next_check: Instant,
    builds: u64,
    last_error: Option<String>,
    /// The incarnation we announced when we attached (0: not attached).
    incarnation: u64,
}

impl ShmWatcher {
    /// A watcher for the region at `path`, serving `workers` workers,
    /// announcing the stats segment at `stats` to the control process.
    pub fn new(
        source: Arc<ShmTableSource>,
        cx: TableContext,
        path: &Path,
        workers: usize,
        stats: Option<&Path>,
    ) -> Self {
        let info = stats
            .and_then(|p| {
                let info = DataplaneInfo::with_stats_path(p);
                if info.is_none() {
                    tracing::warn!(stats = %p.display(), "the stats segment's path is too long to announce to s2cs; it rekeys by time only");
                }
                info
            })
            .unwrap_or_default();
        ShmWatcher {
            source,
            cx,
            path: path.to_path_buf(),
            workers,
            info,
            file_id: None,
            next_check: Instant::now(),
            builds: 1,
            last_error: None,
            incarnation: 0,
        }
    }

    /// One step: attach if not attached (or if the file was replaced), and
    /// rebuild the tables if a new generation is published. Returns true
    /// if the tables changed.
    pub fn poll(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.next_check {
            self.next_check = now + REATTACH_EVERY;
            let on_disk = file_id(&self.path);
            if on_disk.is_some() && on_disk != self.file_id {
                self.attach(on_disk);
            }
        }
        let Some(reader) = self.source.reader.load_full() else {
            return false;
        };
        let published = reader.current().generation();
        let current = self.source.current.load_full();
        if published == current.shm_generation {
            return false;
        }
        self.rebuild(&reader, &current)
    }

    fn attach(&mut self, on_disk: Option<(u64, u64)>) {
        match ShmReader::open(&self.path, self.workers) {
            Ok(r) => {
                // A data plane that crashed may have left slots live.
                r.detach_all();
                r.set_dataplane_pid(std::process::id());
                r.set_dataplane_info(&self.info);
                let incarnation = r.bump_incarnation();
                self.incarnation = incarnation;
                for w in 0..self.workers {
                    // In range: open checked the slots.
                    let _ = r.attach_worker(w);
                }
                let caps = r.capacities();
                tracing::info!(path = %self.path.display(), incarnation, ?caps, "attached to the control process's region");
                if let Some(old) = self.source.reader.swap(Some(Arc::new(r))) {
                    old.detach_all();
                }
                self.file_id = on_disk;
                self.last_error = None;
                // Force a rebuild from the new region.
                let reader = self.source.reader.load_full().expect("just stored");
                let current = self.source.current.load_full();
                self.rebuild(&reader, &current);
            }
            Err(e) => self.note_error(&e),
        }
    }

    fn note_error(&mut self, e: &ShmError) {
        let msg = e.to_string();
        if self.last_error.as_deref() != Some(&msg) {
            tracing::warn!(error = %msg, "cannot attach to the control process's region; retrying");
            self.last_error = Some(msg);
        }
    }

    fn rebuild(&mut self, reader: &ShmReader, current: &TunnelTables) -> bool {
        loop {
            let view = reader.current();
            let generation = view.generation();
            self.builds += 1;
            let built =
                TunnelTables::from_shm(&view, &self.cx, current, self.builds, self.incarnation);
            if view.keyed_for() != self.incarnation {
                tracing::info!(
                    generation,
                    keyed_for = view.keyed_for(),
                    incarnation = self.incarnation,
                    "the region's keys are for another data plane: no tunnel until the control process rekeys for this one"
                );
            }
            // A publish that landed while we read may have reused the copy
            // (only possible with no live worker): read again.
            if reader.current().generation() != generation {
                continue;
            }
            let c = &self.source.counts;
            match built {
                Ok((tables, report)) => {
                    let RebuildReport {
                        installed,
                        removed,
                        invalid,
                    } = report;
                    tracing::debug!(generation, installed, removed, invalid, "tables rebuilt");
                    c.rebuilds.fetch_add(1, Ordering::Relaxed);
                    c.installed.fetch_add(installed, Ordering::Relaxed);
                    c.removed.fetch_add(removed, Ordering::Relaxed);
                    c.invalid.fetch_add(invalid, Ordering::Relaxed);
                    self.source.current.store(Arc::new(tables));
                    return true;
                }
                Err(e) => {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(generation, error = %e, "tables from the control process refused; keeping the previous ones");
                    // Report the generation as seen anyway: nothing reads
                    // the copy, and the writer must not stall on it.
                    for w in 0..self.workers {
                        let _ = reader.report_seen(w, generation);
                    }
                    return false;
                }
            }
        }
    }

    /// Runs [`ShmWatcher::poll`] until `stop` is set.
    pub fn run(mut self, stop: &std::sync::atomic::AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if !self.poll() {
                std::thread::sleep(POLL_EVERY);
            }
        }
        self.source.detach();
    }
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}
