//! The writer side (`s2cs`): creates the region and publishes table
//! updates QSBR style.
//!
//! Publishing generation `g + 1` while `g` is active:
//! 1. wait until every live worker has reported generation `g` (so none
//!    still reads the inactive copy, which held `g - 1`);
//! 2. copy the active tables into the inactive copy and let the caller edit it;
//! 3. store `(g + 1) << 1 | inactive` into the published word (SeqCst,
//!    which includes Release).

use std::fs::{self, File, OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::layout::{
    pack_published, unpack_published, Capacities, DataplaneInfo, Header, Layout, WorkerSlot, MAGIC,
    VERSION,
};
use super::mapping::Mapping;
use super::reader::map_region;
use super::table::{TablesMut, TablesView};
use super::ShmError;

/// Default time [`ShmWriter::publish`] waits for workers to catch up.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(1);

/// The single writer of a region. Dropping it unmaps the region but leaves
/// the file in place: the data plane keeps forwarding on the tables it holds.
#[derive(Debug)]
pub struct ShmWriter {
    path: PathBuf,
    map: Mapping,
    layout: Layout,
    generation: u64,
    active: usize,
    known_incarnation: u64,
    grace: Duration,
}

impl ShmWriter {
    /// Creates the region at `path` (replacing any file there) with mode
    /// 0600, whatever the umask, and locks it in RAM.
    ///
    /// The file is built under a temporary name in the same directory and
    /// renamed into place once the header is complete, so a reader never
    /// sees a half-initialised region. Generation 0 is published with empty
    /// tables.
    pub fn create(path: impl AsRef<Path>, caps: Capacities) -> Result<ShmWriter, ShmError> {
        let path = path.as_ref().to_path_buf();
        let layout = Layout::new(caps).ok_or(ShmError::BadCapacities {
            path: path.clone(),
            caps,
        })?;
        let name = path
            .file_name()
            .map_or_else(|| "region".into(), |n| n.to_string_lossy().into_owned());
        let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
        let result = Self::build(&path, &tmp, layout);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Attaches to the region at `path` if it holds a valid region with
    /// capacities `caps` (a restarted `s2cs`: the data plane keeps
    /// forwarding on the tables in it, which [`ShmWriter::current`] returns),
    /// or creates it as [`ShmWriter::create`] does if there is no file or the
    /// file is an older layout version or has other capacities. Returns the
    /// writer and whether an existing region was adopted. A file that is not
    /// a SciStream region (bad magic) is refused rather than replaced.
    pub fn open_or_create(
        path: impl AsRef<Path>,
        caps: Capacities,
    ) -> Result<(ShmWriter, bool), ShmError> {
        let path = path.as_ref();
        match map_region(path) {
            Ok((map, layout)) if layout.caps == caps => {
                let h = map.header();
                let (generation, active) = unpack_published(h.published.load(Ordering::Acquire));
                let known_incarnation = h.incarnation.load(Ordering::Acquire);
                let w = ShmWriter {
                    path: path.to_path_buf(),
                    map,
                    layout,
                    generation,
                    active,
                    known_incarnation,
                    grace: DEFAULT_GRACE,
                };
                Ok((w, true))
            }
            Ok(_)
            | Err(ShmError::BadVersion { .. })
            | Err(ShmError::ShortFile { .. })
            | Err(ShmError::SizeMismatch { .. }) => Ok((Self::create(path, caps)?, false)),
            Err(ShmError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok((Self::create(path, caps)?, false))
            }
            Err(e) => Err(e),
        }
    }

    /// The tables currently published (what the data plane uses).
    pub fn current(&self) -> TablesView<'_> {
        TablesView::new(&self.map, &self.layout, self.active, self.generation)
    }

    /// What the data plane that last attached announced about itself
    /// (read it after [`ShmWriter::take_incarnation_change`] reports a new
    /// incarnation: the incarnation's Acquire load orders the record).
    pub fn dataplane_info(&self) -> DataplaneInfo {
        self.map.read(self.layout.info, 0)
    }

    /// True if the data plane that last attached is still running (or
    /// none attached yet).
    fn dataplane_alive(&self) -> bool {
        let pid = self.map.header().dataplane_pid.load(Ordering::Acquire);
        // 0: no data plane attached yet, so none can have died.
        pid == 0 || i32::try_from(pid).is_ok_and(super::mapping::process_exists)
    }

    fn build(path: &Path, tmp: &Path, layout: Layout) -> Result<ShmWriter, ShmError> {
        let err = |op| move |e| ShmError::io(tmp, op, e);
        let _ = fs::remove_file(tmp);
        let file: File = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .map_err(err("create"))?;
        // The umask may have cleared bits of 0600 (never added any), but be
        // explicit: fchmod to exactly 0600.
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(err("fchmod 0600"))?;
        file.set_len(layout.total as u64)
            .map_err(err("ftruncate"))?;
        let mut map = Mapping::new(&file, layout.total).map_err(err("mmap"))?;
        map.lock().map_err(|source| ShmError::Mlock {
            path: path.to_path_buf(),
            len: layout.total,
            source,
        })?;
        map.init_header(Header {
            magic: MAGIC,
            version: VERSION,
            reserved0: 0,
            total_size: layout.total as u64,
            sa_capacity: layout.caps.sas,
            route_capacity: layout.caps.routes,
            listener_capacity: layout.caps.listeners,
            workers: layout.caps.workers,
            incarnation: 0.into(),
            published: pack_published(0, 0).into(),
            dataplane_pid: 0.into(),
        });
        fs::rename(tmp, path).map_err(|e| ShmError::io(path, "rename into place", e))?;
        Ok(ShmWriter {
            path: path.to_path_buf(),
            map,
            layout,
            generation: 0,
            active: 0,
            known_incarnation: 0,
            grace: DEFAULT_GRACE,
        })
    }

    /// The region file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The region's capacities.
    pub fn capacities(&self) -> Capacities {
        self.layout.caps
    }

    /// The last published generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Sets how long [`ShmWriter::publish`] waits for live workers.
    pub fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    /// The data plane incarnation in the header (bumped by each `s2ds` start).
    pub fn incarnation(&self) -> u64 {
        self.map.header().incarnation.load(Ordering::Acquire)
    }

    /// If the incarnation changed since the last call (a new `s2ds`
    /// attached), records and returns the new value: the caller should then
    /// rewrite all tables with [`ShmWriter::publish`].
    pub fn take_incarnation_change(&mut self) -> Option<u64> {
        let now = self.incarnation();
        (now != self.known_incarnation).then(|| {
            self.known_incarnation = now;
            now
        })
    }

    /// The generation worker `worker` last reported, and whether it is live.
    pub fn worker_state(&self, worker: usize) -> Result<(u64, bool), ShmError> {
        self.check_worker(worker)?;
        let s: &WorkerSlot = self.map.block(self.layout.slot(worker));
        Ok((
            s.seen.load(Ordering::Acquire),
            s.live.load(Ordering::SeqCst) != 0,
        ))
    }

    fn check_worker(&self, worker: usize) -> Result<(), ShmError> {
        match worker < self.layout.caps.workers as usize {
            true => Ok(()),
            false => Err(ShmError::NoSuchWorker {
                path: self.path.clone(),
                worker,
                slots: self.layout.caps.workers,
            }),
        }
    }

    /// Publishes a new generation: `f` edits the inactive copy (which
    /// starts as a copy of the current tables), then it becomes active.
    ///
    /// First waits, up to the grace time, for every live worker to report
    /// the current generation; on timeout returns
    /// [`ShmError::WorkerStuck`] and publishes nothing.
    pub fn publish(&mut self, f: impl FnOnce(&mut TablesMut<'_>)) -> Result<u64, ShmError> {
        self.wait_for_workers(self.generation)?;
        let target = 1 - self.active;
        self.map.copy(
            self.layout.copy(self.active),
            self.layout.copy(target),
            self.layout.copy_size,
        );
        let mut tables = TablesMut::new(&self.map, &self.layout, target);
        f(&mut tables);
        tables.finish();
        let next = self.generation + 1;
        // SeqCst: Release for the copy just written, and ordered before the
        // live-flag loads of the next wait (see `ShmReader::attach_worker`).
        self.map
            .header()
            .published
            .store(pack_published(next, target), Ordering::SeqCst);
        self.generation = next;
        self.active = target;
        Ok(next)
    }

    /// Waits until every live worker has moved on to the last published
    /// generation (or the grace time passes: [`ShmError::WorkerStuck`]).
    /// After [`ShmWriter::publish`], this makes the new tables the ones in
    /// use: a new inbound SA can be announced to the peer, a removed SA is
    /// no longer used by any worker.
    pub fn wait_until_seen(&self) -> Result<(), ShmError> {
        self.wait_for_workers(self.generation)
    }

    /// Waits until every live worker has seen `generation`.
    fn wait_for_workers(&self, generation: u64) -> Result<(), ShmError> {
        let start = Instant::now();
        for w in 0..self.layout.caps.workers as usize {
            let slot: &WorkerSlot = self.map.block(self.layout.slot(w));
            let mut spins = 0u32;
            loop {
                if slot.live.load(Ordering::SeqCst) == 0 {
                    break;
                }
                // Acquire: the worker's reads of the old copy happened
                // before its Release store of the newer generation.
                let seen = slot.seen.load(Ordering::Acquire);
                if seen >= generation {
                    break;
                }
                let waited = start.elapsed();
                if waited >= self.grace && !self.dataplane_alive() {
                    // The data plane died with its slots marked live: nobody
                    // reads the region, so nothing needs waiting for. The next
                    // data plane clears the slots when it attaches.
                    for w in 0..self.layout.caps.workers as usize {
                        let s: &WorkerSlot = self.map.block(self.layout.slot(w));
                        s.live.store(0, Ordering::SeqCst);
                    }
                    return Ok(());
                }
                if waited >= self.grace {
                    return Err(ShmError::WorkerStuck {
                        path: self.path.clone(),
                        worker: w,
                        seen,
                        wanted: generation,
                        waited,
                    });
                }
                spins += 1;
                match spins {
                    0..=64 => std::hint::spin_loop(),
                    65..=128 => std::thread::yield_now(),
                    _ => std::thread::sleep(Duration::from_micros(50)),
                }
            }
        }
        Ok(())
    }
}
