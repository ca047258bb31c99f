//! The reader side (`s2ds`): attaches to the region after checking it,
//! gives workers the active tables, and records what each worker has seen.

use std::fs::OpenOptions;
use std::mem::size_of;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::layout::{
    unpack_published, Capacities, DataplaneInfo, Header, Layout, WorkerSlot, MAGIC, VERSION,
};
use super::mapping::Mapping;
use super::table::TablesView;
use super::ShmError;

/// A data plane's attachment to a region.
#[derive(Debug)]
pub struct ShmReader {
    path: PathBuf,
    map: Mapping,
    layout: Layout,
    workers: u32,
}

impl ShmReader {
    /// Opens and maps the region at `path` for `worker_slots` workers,
    /// and locks it in RAM.
    ///
    /// Refuses, each with its own error naming the path and what was
    /// expected and found: a file shorter than the header
    /// ([`ShmError::ShortFile`]), a wrong magic ([`ShmError::BadMagic`]),
    /// a wrong layout version ([`ShmError::BadVersion`]), a file whose
    /// size differs from the size the header describes
    /// ([`ShmError::SizeMismatch`]), and more workers than slots
    /// ([`ShmError::NoSuchWorker`]).
    pub fn open(path: impl AsRef<Path>, worker_slots: usize) -> Result<ShmReader, ShmError> {
        let path = path.as_ref().to_path_buf();
        let (map, layout) = map_region(&path)?;
        let caps = layout.caps;
        if worker_slots > caps.workers as usize {
            return Err(ShmError::NoSuchWorker {
                path,
                worker: worker_slots - 1,
                slots: caps.workers,
            });
        }
        Ok(ShmReader {
            path,
            map,
            layout,
            workers: worker_slots as u32,
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

    /// Announces a new data plane incarnation (on `s2ds` start); the writer
    /// notices and rewrites the tables. Returns the new incarnation.
    pub fn bump_incarnation(&self) -> u64 {
        self.map
            .header()
            .incarnation
            .fetch_add(1, Ordering::AcqRel)
            .wrapping_add(1)
    }

    /// The current incarnation.
    pub fn incarnation(&self) -> u64 {
        self.map.header().incarnation.load(Ordering::Acquire)
    }

    /// The active tables: one Acquire load of the published word. Call once
    /// per burst, then [`ShmReader::report_seen`] with its generation; keep
    /// the view no longer than until the next report.
    #[inline]
    pub fn current(&self) -> TablesView<'_> {
        let (generation, copy) =
            unpack_published(self.map.header().published.load(Ordering::Acquire));
        TablesView::new(&self.map, &self.layout, copy, generation)
    }

    fn slot(&self, worker: usize) -> Result<&WorkerSlot, ShmError> {
        match worker < self.workers as usize {
            true => Ok(self.map.block(self.layout.slot(worker))),
            false => Err(ShmError::NoSuchWorker {
                path: self.path.clone(),
                worker,
                slots: self.workers,
            }),
        }
    }

    /// Records that `worker` has moved on to `generation` and no longer
    /// reads older copies (Release).
    #[inline]
    pub fn report_seen(&self, worker: usize, generation: u64) -> Result<(), ShmError> {
        self.slot(worker)?.seen.store(generation, Ordering::Release);
        Ok(())
    }

    /// Marks `worker` live, so the writer waits for it, and records the
    /// current generation as seen. Returns that generation.
    pub fn attach_worker(&self, worker: usize) -> Result<u64, ShmError> {
        let slot = self.slot(worker)?;
        let published = &self.map.header().published;
        slot.seen.store(
            unpack_published(published.load(Ordering::SeqCst)).0,
            Ordering::Release,
        );
        // SeqCst store then SeqCst load, against the writer's SeqCst publish
        // then SeqCst live load: either the writer sees us live, or we see
        // its newest generation (Dekker).
        slot.live.store(1, Ordering::SeqCst);
        let (generation, _) = unpack_published(published.load(Ordering::SeqCst));
        slot.seen.store(generation, Ordering::Release);
        Ok(generation)
    }

    /// Marks `worker` not live: the writer stops waiting for it. The worker
    /// must not use any view afterwards until it attaches again.
    pub fn detach_worker(&self, worker: usize) -> Result<(), ShmError> {
        self.slot(worker)?.live.store(0, Ordering::SeqCst);
        Ok(())
    }

    /// Marks every worker slot of the region not live, including slots left
    /// live by a data plane that crashed. Call on start, before
    /// [`ShmReader::bump_incarnation`] and [`ShmReader::attach_worker`].
    pub fn detach_all(&self) {
        for w in 0..self.layout.caps.workers as usize {
            let slot: &WorkerSlot = self.map.block(self.layout.slot(w));
            slot.live.store(0, Ordering::SeqCst);
        }
    }

    /// Records this process as the attached data plane, so a writer waiting
    /// for our workers can tell whether we are still alive.
    pub fn set_dataplane_pid(&self, pid: u32) {
        self.map
            .header()
            .dataplane_pid
            .store(u64::from(pid), Ordering::Release);
    }

    /// Announces what the control process should know about this data
    /// plane (its stats segment). Call before [`ShmReader::bump_incarnation`],
    /// which publishes it.
    pub fn set_dataplane_info(&self, info: &DataplaneInfo) {
        self.map.write(self.layout.info, 0, *info);
    }
}

/// Opens, maps, validates and locks an existing region: the checks both
/// [`ShmReader::open`] and [`super::ShmWriter::open_or_create`] rely on.
pub(super) fn map_region(path: &Path) -> Result<(Mapping, Layout), ShmError> {
    let p = path.to_path_buf();
    let err = |op| {
        let p = p.clone();
        move |e| ShmError::io(&p, op, e)
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(err("open"))?;
    let found = file.metadata().map_err(err("fstat"))?.len();
    let header_len = size_of::<Header>() as u64;
    if found < header_len {
        return Err(ShmError::ShortFile {
            path: path.to_path_buf(),
            expected: header_len,
            found,
        });
    }
    let len = usize::try_from(found).map_err(|_| ShmError::SizeMismatch {
        path: path.to_path_buf(),
        expected: 0,
        found,
    })?;
    let map = Mapping::new(&file, len).map_err(err("mmap"))?;
    let h = map.header();
    if h.magic != MAGIC {
        return Err(ShmError::BadMagic {
            path: path.to_path_buf(),
            expected: MAGIC,
            found: h.magic,
        });
    }
    if h.version != VERSION {
        return Err(ShmError::BadVersion {
            path: path.to_path_buf(),
            expected: VERSION,
            found: h.version,
        });
    }
    if h.total_size != found {
        return Err(ShmError::SizeMismatch {
            path: path.to_path_buf(),
            expected: h.total_size,
            found,
        });
    }
    let caps = Capacities {
        sas: h.sa_capacity,
        routes: h.route_capacity,
        listeners: h.listener_capacity,
        workers: h.workers,
    };
    let layout = Layout::new(caps).ok_or(ShmError::BadCapacities {
        path: path.to_path_buf(),
        caps,
    })?;
    if layout.total as u64 != found {
        return Err(ShmError::SizeMismatch {
            path: path.to_path_buf(),
            expected: layout.total as u64,
            found,
        });
    }
    map.lock().map_err(|source| ShmError::Mlock {
        path: path.to_path_buf(),
        len,
        source,
    })?;
    Ok((map, layout))
}
