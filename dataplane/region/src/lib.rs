//! `scistream-region`: the shared-memory region between the control
//! process (`s2cs`, the one writer) and the data plane (`s2ds`, whose
//! workers read it). Both processes link this crate and nothing else of
//! each other's; it depends on `libc` and `thiserror` alone.
//!
//! - [`kinds`]: the enums the entries encode (direction, listener role,
//!   algorithm) and the SPI rule.
//! - [`layout`]: the one `#[repr(C)]` layout both processes use, with typed
//!   constructors for its entries.
//! - [`mapping`] (private): the fenced module that maps the file and touches it.
//! - [`table`]: typed views of one table copy.
//! - [`writer`]: [`ShmWriter`], creates the file and publishes tables QSBR style.
//! - [`reader`]: [`ShmReader`], attaches, validates and reads.
//! - [`stats`]: the data plane's stats segment (per-worker counter blocks
//!   and per-SA counters, with a directory of names), VPP style.
//! - `testing` (feature `testing`): `TempRegion`, a unique region path
//!   removed on drop, for tests.
//!
//! The protocol and the offsets are described in `docs/shared-memory.md`.

pub mod kinds;
pub mod layout;
mod mapping;
pub mod reader;
pub mod stats;
pub mod table;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod writer;

#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use kinds::{spi_is_usable, Algorithm, Direction, ListenerRole, MIN_SPI, SALT_LEN};
pub use layout::{
    decode_ip, encode_ip, AddrBytes, Capacities, DataplaneInfo, ListenerEntry, RouteEntry, SaEntry,
    SaKeys, MAX_STATS_PATH,
};
pub use reader::ShmReader;
pub use stats::{sa_tag, SaTotals, StatsReader, StatsSegment, StatsShape};
pub use table::{TableMut, TableView, TablesMut, TablesView};
pub use writer::ShmWriter;

/// Why a region could not be created, attached or updated.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// A system call on the region file failed.
    #[error("shared memory {path}: {op} failed: {source}")]
    Io {
        /// The region file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The file does not start with [`layout::MAGIC`].
    #[error(
        "shared memory {path}: bad magic: expected {expected:#018x}, found {found:#018x} \
         (not a SciStream shared-memory region)"
    )]
    BadMagic {
        /// The region file.
        path: PathBuf,
        /// [`layout::MAGIC`].
        expected: u64,
        /// What the file holds.
        found: u64,
    },
    /// The layout version differs from ours.
    #[error(
        "shared memory {path}: layout version {found}, expected {expected} \
         (s2cs and s2ds were built with different layouts)"
    )]
    BadVersion {
        /// The region file.
        path: PathBuf,
        /// [`layout::VERSION`].
        expected: u32,
        /// What the file holds.
        found: u32,
    },
    /// The file is too short to hold even the header.
    #[error(
        "shared memory {path}: file is {found} bytes, shorter than the {expected}-byte header"
    )]
    ShortFile {
        /// The region file.
        path: PathBuf,
        /// The header size.
        expected: u64,
        /// The file size.
        found: u64,
    },
    /// The file size does not match the size the header describes.
    #[error(
        "shared memory {path}: size mismatch: the header describes a {expected}-byte region, \
         the file is {found} bytes"
    )]
    SizeMismatch {
        /// The region file.
        path: PathBuf,
        /// The size the header (and the layout of its capacities) gives.
        expected: u64,
        /// The file size.
        found: u64,
    },
    /// The capacities give a region too large to address.
    #[error("shared memory {path}: capacities {caps:?} give a region too large to map")]
    BadCapacities {
        /// The region file.
        path: PathBuf,
        /// The capacities asked for (or found in the header).
        caps: Capacities,
    },
    /// A stats segment's shape is out of range (too many blocks, counters
    /// or SA slots, or a size too large to map).
    #[error(
        "stats segment {path}: {blocks} blocks, {counters} counters, {sa_slots} SA slots: out of range"
    )]
    BadStatsShape {
        /// The segment file.
        path: PathBuf,
        /// Writer blocks.
        blocks: u32,
        /// Counters per block.
        counters: u32,
        /// SA slots.
        sa_slots: u32,
    },
    /// A worker index is beyond the region's worker slots.
    #[error(
        "shared memory {path}: worker {worker} out of range: the region has {slots} worker slots"
    )]
    NoSuchWorker {
        /// The region file.
        path: PathBuf,
        /// The worker asked for.
        worker: usize,
        /// Worker slots in the region.
        slots: u32,
    },
    /// `mlock` failed: the region could be paged out, so we refuse.
    #[error(
        "shared memory {path}: mlock of {len} bytes failed: {source} \
         (raise RLIMIT_MEMLOCK, e.g. `ulimit -l`, or grant CAP_IPC_LOCK)"
    )]
    Mlock {
        /// The region file.
        path: PathBuf,
        /// Bytes to lock.
        len: usize,
        /// The OS error (EPERM or ENOMEM).
        source: io::Error,
    },
    /// A live worker did not report the current generation in time, so the
    /// old copy cannot be reused; nothing was published.
    #[error(
        "shared memory {path}: worker {worker} is stuck at generation {seen}; \
         publishing needs it to reach {wanted} (waited {waited:?})"
    )]
    WorkerStuck {
        /// The region file.
        path: PathBuf,
        /// The stuck worker.
        worker: usize,
        /// The generation it last reported.
        seen: u64,
        /// The generation it must report.
        wanted: u64,
        /// How long the writer waited.
        waited: Duration,
    },
    /// A table has no room for another entry.
    #[error("shared memory: {table} table is full ({capacity} entries)")]
    TableFull {
        /// "SA", "route" or "listener".
        table: &'static str,
        /// Its capacity.
        capacity: u32,
    },
    /// An entry index is beyond the entries in use.
    #[error("shared memory: {table} index {index} out of range ({len} entries in use)")]
    OutOfRange {
        /// "SA", "route" or "listener".
        table: &'static str,
        /// The index asked for.
        index: usize,
        /// Entries in use.
        len: u32,
    },
}

impl ShmError {
    fn io(path: &std::path::Path, op: &'static str, source: io::Error) -> ShmError {
        ShmError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}
