//! The data plane's stats segment, in the style of VPP's: one file under
//! `/dev/shm` that `s2ds` creates and every reader (`s2ds stats`, `s2cs`,
//! metrics exporters) maps, with
//!
//! - a header (magic, version, size, shape, the owner's pid);
//! - a directory of counter names, written once before the file appears;
//! - one cache-line-aligned block per writer (each worker, then the slow
//!   path), holding that writer's counters in directory order, then its
//!   per-SA counters, one [`SaCounters`] per SA slot;
//! - the SA slot directory ([`SaSlot`]): which SA (direction and SPI, as
//!   a [`sa_tag`]) each slot currently counts.
//!
//! Each block has exactly one writer, which adds with a Relaxed load and
//! store (no locked instruction, no shared cache line). Readers sum the
//! blocks with Relaxed loads and never block a writer; a counter only
//! grows, so a sum is at worst a few bursts old. An SA slot is reused for
//! another SA only after its tag changes: the writer zeroes its counters,
//! then stores the new tag with Release; a reader counts a block's entry
//! only if its tag matches the directory's before and after reading it.
//!
//! The layout is described in `docs/shared-memory.md`.

use std::fs::{self, File, OpenOptions, Permissions};
use std::mem::size_of;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::kinds::Direction;
use crate::layout::CACHE_LINE;
use crate::mapping::Mapping;
use crate::ShmError;

/// First 8 bytes of a stats segment: "S2STATS\x01" as a little-endian u64.
pub const STATS_MAGIC: u64 = u64::from_le_bytes(*b"S2STATS\x01");
/// Stats segment layout version.
pub const STATS_VERSION: u32 = 1;
/// Bytes of one counter name (ASCII, NUL-padded).
pub const NAME_LEN: usize = 48;
/// Most counters a segment may hold.
pub const MAX_COUNTERS: u32 = 4096;
/// Most SA slots a segment may hold.
pub const MAX_SA_SLOTS: u32 = 1 << 20;
/// Most blocks (writers) a segment may hold.
pub const MAX_BLOCKS: u32 = 1024;

/// The segment header at offset 0. Every field but `pid` is written once,
/// before the file is renamed into place.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct StatsHeader {
    /// [`STATS_MAGIC`].
    pub magic: u64,
    /// [`STATS_VERSION`].
    pub version: u32,
    /// Writer blocks.
    pub blocks: u32,
    /// Total size in bytes (the file size).
    pub total_size: u64,
    /// Counters per block (and names in the directory).
    pub counters: u32,
    /// SA slots per block (and in the SA slot directory).
    pub sa_slots: u32,
    /// The owning data plane's process id.
    pub pid: AtomicU64,
    /// When the owner started, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// Reserved, zero.
    pub reserved: [u64; 2],
}

/// One name of the counter directory.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CounterName {
    /// ASCII, NUL-padded.
    pub name: [u8; NAME_LEN],
}

/// One SA's counters in one writer's block. 64 bytes.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct SaCounters {
    /// The SA these counters belong to ([`sa_tag`]); 0: none yet.
    pub tag: AtomicU64,
    /// Packets sealed (outbound) or opened (inbound).
    pub packets: AtomicU64,
    /// Inner bytes sealed or opened.
    pub bytes: AtomicU64,
    /// Inbound: packets whose ICV did not verify.
    pub auth_failed: AtomicU64,
    /// Inbound: packets refused by the replay window.
    pub replayed: AtomicU64,
    /// Outbound: packets over the SA's rate, dropped by its policer.
    pub rate_limited: AtomicU64,
    /// Reserved, zero.
    pub reserved: [AtomicU64; 2],
}

/// One entry of the SA slot directory: which SA a slot counts. 16 bytes.
#[repr(C, align(16))]
#[derive(Debug, Default)]
pub struct SaSlot {
    /// The SA ([`sa_tag`]); 0: the slot is free.
    pub tag: AtomicU64,
    /// Reserved, zero.
    pub reserved: AtomicU64,
}

const _: () = {
    assert!(size_of::<StatsHeader>() == 64);
    assert!(size_of::<CounterName>() == NAME_LEN);
    assert!(size_of::<SaCounters>() == 64);
    assert!(size_of::<SaSlot>() == 16);
};

/// The tag of an SA in the segment: direction and SPI in one word, never 0.
pub const fn sa_tag(direction: Direction, spi: u32) -> u64 {
    let d: u64 = match direction {
        Direction::In => 1,
        Direction::Out => 2,
    };
    d << 32 | spi as u64
}

/// The direction and SPI of a non-zero tag.
pub const fn untag(tag: u64) -> Option<(Direction, u32)> {
    let spi = tag as u32;
    match tag >> 32 {
        1 => Some((Direction::In, spi)),
        2 => Some((Direction::Out, spi)),
        _ => None,
    }
}

/// The shape of a segment: how many writers, counters and SA slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsShape {
    /// Writer blocks (workers and the slow path).
    pub blocks: u32,
    /// Counter names, in block order.
    pub names: Vec<String>,
    /// SA slots per block.
    pub sa_slots: u32,
}

/// Byte offsets within a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatsLayout {
    blocks: u32,
    counters: u32,
    sa_slots: u32,
    names: usize,
    slots: usize,
    first_block: usize,
    /// Offset of a block's SA counters, relative to the block.
    block_sas: usize,
    block_size: usize,
    total: usize,
}

const fn align_up(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

impl StatsLayout {
    fn new(blocks: u32, counters: u32, sa_slots: u32) -> Option<StatsLayout> {
        if blocks > MAX_BLOCKS || counters > MAX_COUNTERS || sa_slots > MAX_SA_SLOTS {
            return None;
        }
        let names = size_of::<StatsHeader>();
        let slots = align_up(names + counters as usize * NAME_LEN, CACHE_LINE);
        let first_block = align_up(slots + sa_slots as usize * size_of::<SaSlot>(), CACHE_LINE);
        let block_sas = align_up(counters as usize * 8, CACHE_LINE);
        let block_size = block_sas + sa_slots as usize * size_of::<SaCounters>();
        let total = first_block.checked_add(block_size.checked_mul(blocks as usize)?)?;
        Some(StatsLayout {
            blocks,
            counters,
            sa_slots,
            names,
            slots,
            first_block,
            block_sas,
            block_size,
            total,
        })
    }

    fn block(&self, b: usize) -> usize {
        self.first_block + b * self.block_size
    }
}

/// The data plane's side: creates the segment and hands out each writer's
/// block. The file (if any) is removed when this is dropped.
#[derive(Debug)]
pub struct StatsSegment {
    path: Option<PathBuf>,
    map: Mapping,
    layout: StatsLayout,
}

impl StatsSegment {
    /// Creates the segment at `path` (replacing any file there), mode 0644
    /// (counters are not secret: monitoring may run as another user), or,
    /// with `None`, in anonymous memory that only this process sees. The
    /// file is built under a temporary name and renamed into place once its
    /// header and directory are complete.
    pub fn create(path: Option<&Path>, shape: &StatsShape) -> Result<StatsSegment, ShmError> {
        let shown = path.map_or_else(|| PathBuf::from("(anonymous)"), Path::to_path_buf);
        let counters = u32::try_from(shape.names.len()).unwrap_or(u32::MAX);
        let layout = StatsLayout::new(shape.blocks, counters, shape.sa_slots).ok_or_else(|| {
            ShmError::BadStatsShape {
                path: shown.clone(),
                blocks: shape.blocks,
                counters,
                sa_slots: shape.sa_slots,
            }
        })?;
        match path {
            None => {
                let mut map = Mapping::anonymous(layout.total)
                    .map_err(|e| ShmError::io(&shown, "mmap anonymous", e))?;
                init(&mut map, &layout, shape);
                Ok(StatsSegment {
                    path: None,
                    map,
                    layout,
                })
            }
            Some(path) => {
                let name = path
                    .file_name()
                    .map_or_else(|| "stats".into(), |n| n.to_string_lossy().into_owned());
                let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
                let made = Self::build(path, &tmp, &layout, shape);
                if made.is_err() {
                    let _ = fs::remove_file(&tmp);
                }
                made
            }
        }
    }

    fn build(
        path: &Path,
        tmp: &Path,
        layout: &StatsLayout,
        shape: &StatsShape,
    ) -> Result<StatsSegment, ShmError> {
        let err = |op| move |e| ShmError::io(tmp, op, e);
        let _ = fs::remove_file(tmp);
        let file: File = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(tmp)
            .map_err(err("create"))?;
        file.set_permissions(Permissions::from_mode(0o644))
            .map_err(err("fchmod 0644"))?;
        file.set_len(layout.total as u64)
            .map_err(err("ftruncate"))?;
        let mut map = Mapping::new(&file, layout.total).map_err(err("mmap"))?;
        init(&mut map, layout, shape);
        fs::rename(tmp, path).map_err(|e| ShmError::io(path, "rename into place", e))?;
        Ok(StatsSegment {
            path: Some(path.to_path_buf()),
            map,
            layout: *layout,
        })
    }

    /// The segment file (`None`: anonymous).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writer blocks.
    pub fn blocks(&self) -> usize {
        self.layout.blocks as usize
    }

    /// SA slots per block.
    pub fn sa_slots(&self) -> usize {
        self.layout.sa_slots as usize
    }

    /// Block `b`'s counters, in directory order. Only block `b`'s writer
    /// may change them (with [`add`]).
    pub fn counters(&self, b: usize) -> &[AtomicU64] {
        assert!(b < self.blocks(), "stats block {b} of {}", self.blocks());
        self.map
            .blocks(self.layout.block(b), self.layout.counters as usize)
    }

    /// Block `b`'s counters of SA slot `slot`.
    pub fn sa(&self, b: usize, slot: usize) -> &SaCounters {
        assert!(b < self.blocks() && slot < self.sa_slots());
        self.map
            .block(self.layout.block(b) + self.layout.block_sas + slot * size_of::<SaCounters>())
    }

    /// Sets which SA slot `slot` counts (`tag` 0: free). Only the thread
    /// that builds the tunnel tables calls this.
    pub fn set_slot(&self, slot: usize, tag: u64) {
        assert!(slot < self.sa_slots());
        let s: &SaSlot = self
            .map
            .block(self.layout.slots + slot * size_of::<SaSlot>());
        s.tag.store(tag, Ordering::Release);
    }

    /// A reader over this segment's own memory (tests, and the owner's own
    /// snapshots).
    pub fn totals(&self) -> Vec<u64> {
        sum_counters(&self.map, &self.layout)
    }

    /// The per-SA totals over all blocks (see [`StatsReader::sa_totals`]).
    pub fn sa_totals(&self) -> Vec<SaTotals> {
        sum_sas(&self.map, &self.layout)
    }
}

impl Drop for StatsSegment {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = fs::remove_file(p);
        }
    }
}

/// Adds `n` to a counter of the caller's own block: a Relaxed load and
/// store, no locked instruction (the block has one writer).
#[inline]
pub fn add(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl SaCounters {
    /// Makes these counters count SA `tag`, for their block's writer: if
    /// they counted another SA, they are zeroed first and the tag stored
    /// last (Release), so no reader pairs one SA's tag with another's counts.
    #[inline]
    pub fn claim(&self, tag: u64) {
        if self.tag.load(Ordering::Relaxed) == tag {
            return;
        }
        self.tag.store(0, Ordering::Release);
        for c in [
            &self.packets,
            &self.bytes,
            &self.auth_failed,
            &self.replayed,
            &self.rate_limited,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.tag.store(tag, Ordering::Release);
    }
}

fn init(map: &mut Mapping, layout: &StatsLayout, shape: &StatsShape) {
    map.init_stats_header(StatsHeader {
        magic: STATS_MAGIC,
        version: STATS_VERSION,
        blocks: layout.blocks,
        total_size: layout.total as u64,
        counters: layout.counters,
        sa_slots: layout.sa_slots,
        pid: AtomicU64::new(u64::from(std::process::id())),
        started_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        reserved: [0; 2],
    });
    for (i, n) in shape.names.iter().enumerate() {
        let mut name = [0u8; NAME_LEN];
        let b = n.as_bytes();
        let len = b.len().min(NAME_LEN);
        name[..len].copy_from_slice(&b[..len]);
        map.write(layout.names, i, CounterName { name });
    }
}

/// The totals of one SA over all blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaTotals {
    /// In or out.
    pub direction: Option<Direction>,
    /// The SPI.
    pub spi: u32,
    /// Packets sealed or opened.
    pub packets: u64,
    /// Inner bytes sealed or opened.
    pub bytes: u64,
    /// Inbound: ICV failures.
    pub auth_failed: u64,
    /// Inbound: replay-window refusals.
    pub replayed: u64,
    /// Outbound: rate-limited drops.
    pub rate_limited: u64,
}

fn sum_counters(map: &Mapping, layout: &StatsLayout) -> Vec<u64> {
    let mut sum = vec![0u64; layout.counters as usize];
    for b in 0..layout.blocks as usize {
        let c: &[AtomicU64] = map.blocks(layout.block(b), layout.counters as usize);
        for (s, v) in sum.iter_mut().zip(c) {
            *s = s.wrapping_add(v.load(Ordering::Relaxed));
        }
    }
    sum
}

fn sum_sas(map: &Mapping, layout: &StatsLayout) -> Vec<SaTotals> {
    let mut out = Vec::new();
    for slot in 0..layout.sa_slots as usize {
        let dir: &SaSlot = map.block(layout.slots + slot * size_of::<SaSlot>());
        let tag = dir.tag.load(Ordering::Acquire);
        let Some((direction, spi)) = untag(tag) else {
            continue;
        };
        let mut t = SaTotals {
            direction: Some(direction),
            spi,
            ..SaTotals::default()
        };
        for b in 0..layout.blocks as usize {
            let c: &SaCounters =
                map.block(layout.block(b) + layout.block_sas + slot * size_of::<SaCounters>());
            if c.tag.load(Ordering::Acquire) != tag {
                continue;
            }
            let v = [
                c.packets.load(Ordering::Relaxed),
                c.bytes.load(Ordering::Relaxed),
                c.auth_failed.load(Ordering::Relaxed),
                c.replayed.load(Ordering::Relaxed),
                c.rate_limited.load(Ordering::Relaxed),
            ];
            if c.tag.load(Ordering::Acquire) != tag {
                continue;
            }
            t.packets += v[0];
            t.bytes += v[1];
            t.auth_failed += v[2];
            t.replayed += v[3];
            t.rate_limited += v[4];
        }
        out.push(t);
    }
    out
}

/// A reader of a stats segment (any process): never blocks the writers.
#[derive(Debug)]
pub struct StatsReader {
    path: PathBuf,
    map: Mapping,
    layout: StatsLayout,
}

impl StatsReader {
    /// Maps the segment at `path` after checking its magic, version and
    /// size, each refusal with its own error naming the path.
    pub fn open(path: impl AsRef<Path>) -> Result<StatsReader, ShmError> {
        let path = path.as_ref().to_path_buf();
        let err = |op| {
            let p = path.clone();
            move |e| ShmError::io(&p, op, e)
        };
        let file = File::open(&path).map_err(err("open"))?;
        let found = file.metadata().map_err(err("stat"))?.len();
        let hdr = size_of::<StatsHeader>() as u64;
        if found < hdr {
            return Err(ShmError::ShortFile {
                path,
                expected: hdr,
                found,
            });
        }
        let len = usize::try_from(found).map_err(|_| ShmError::SizeMismatch {
            path: path.clone(),
            expected: 0,
            found,
        })?;
        let map = Mapping::new_read_only(&file, len).map_err(err("mmap"))?;
        let h: &StatsHeader = map.block(0);
        if h.magic != STATS_MAGIC {
            return Err(ShmError::BadMagic {
                path,
                expected: STATS_MAGIC,
                found: h.magic,
            });
        }
        if h.version != STATS_VERSION {
            return Err(ShmError::BadVersion {
                path,
                expected: STATS_VERSION,
                found: h.version,
            });
        }
        let layout = StatsLayout::new(h.blocks, h.counters, h.sa_slots).ok_or_else(|| {
            ShmError::BadStatsShape {
                path: path.clone(),
                blocks: h.blocks,
                counters: h.counters,
                sa_slots: h.sa_slots,
            }
        })?;
        if h.total_size != found || layout.total as u64 != found {
            return Err(ShmError::SizeMismatch {
                path,
                expected: h.total_size,
                found,
            });
        }
        Ok(StatsReader { path, map, layout })
    }

    /// The segment file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The owning data plane's process id.
    pub fn pid(&self) -> u32 {
        let h: &StatsHeader = self.map.block(0);
        h.pid.load(Ordering::Relaxed) as u32
    }

    /// When the owner started, milliseconds since the Unix epoch.
    pub fn started_unix_ms(&self) -> u64 {
        let h: &StatsHeader = self.map.block(0);
        h.started_unix_ms
    }

    /// Writer blocks.
    pub fn blocks(&self) -> usize {
        self.layout.blocks as usize
    }

    /// The counter names, in block order.
    pub fn names(&self) -> Vec<String> {
        (0..self.layout.counters as usize)
            .map(|i| {
                let n: CounterName = self.map.read(self.layout.names, i);
                let end = n.name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
                String::from_utf8_lossy(&n.name[..end]).into_owned()
            })
            .collect()
    }

    /// Every counter summed over all blocks, in directory order.
    pub fn totals(&self) -> Vec<u64> {
        sum_counters(&self.map, &self.layout)
    }

    /// Block `b`'s counters, in directory order.
    pub fn block(&self, b: usize) -> Vec<u64> {
        assert!(b < self.blocks());
        let c: &[AtomicU64] = self
            .map
            .blocks(self.layout.block(b), self.layout.counters as usize);
        c.iter().map(|v| v.load(Ordering::Relaxed)).collect()
    }

    /// Every SA the directory lists, with its counters summed over all
    /// blocks (a block's entry counts only while its tag is the SA's).
    pub fn sa_totals(&self) -> Vec<SaTotals> {
        sum_sas(&self.map, &self.layout)
    }

    /// Whether the owning process still runs.
    pub fn owner_alive(&self) -> bool {
        i32::try_from(self.pid()).is_ok_and(crate::mapping::process_exists)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempRegion;

    fn shape() -> StatsShape {
        StatsShape {
            blocks: 3,
            names: vec!["lan.rx_packets".into(), "drop.runt".into(), "x".repeat(60)],
            sa_slots: 4,
        }
    }

    #[test]
    fn blocks_sum_and_names_round_trip() {
        let r = TempRegion::new("stats");
        let seg = StatsSegment::create(Some(r.path()), &shape()).unwrap();
        add(&seg.counters(0)[0], 5);
        add(&seg.counters(1)[0], 7);
        add(&seg.counters(2)[1], 1);
        let rd = StatsReader::open(r.path()).unwrap();
        assert_eq!(rd.names()[..2], ["lan.rx_packets", "drop.runt"]);
        assert_eq!(
            rd.names()[2],
            "x".repeat(NAME_LEN),
            "names are cut to 48 bytes"
        );
        assert_eq!(rd.totals(), [12, 1, 0]);
        assert_eq!(rd.block(1), [7, 0, 0]);
        assert_eq!(rd.pid(), std::process::id());
        assert!(rd.owner_alive());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(r.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        drop(rd);
        drop(seg);
        assert!(!r.path().exists(), "the owner removes its segment");
    }

    #[test]
    fn sa_counters_follow_their_tags() {
        let seg = StatsSegment::create(None, &shape()).unwrap();
        let out = sa_tag(Direction::Out, 0x1001);
        let inb = sa_tag(Direction::In, 0x1001);
        seg.set_slot(0, out);
        seg.set_slot(1, inb);
        for b in 0..2 {
            let c = seg.sa(b, 0);
            c.claim(out);
            add(&c.packets, 10);
            add(&c.bytes, 1000);
        }
        let c = seg.sa(2, 1);
        c.claim(inb);
        add(&c.auth_failed, 3);
        let t = seg.sa_totals();
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].direction, t[0].spi, t[0].packets, t[0].bytes),
            (Some(Direction::Out), 0x1001, 20, 2000)
        );
        assert_eq!((t[1].direction, t[1].auth_failed), (Some(Direction::In), 3));
        // The slot goes to another SA: a block still tagged with the old SA
        // is not counted for the new one, and reclaiming zeroes it.
        let other = sa_tag(Direction::Out, 0x2002);
        seg.set_slot(0, other);
        let t = seg.sa_totals();
        assert_eq!((t[0].spi, t[0].packets), (0x2002, 0));
        seg.sa(0, 0).claim(other);
        add(&seg.sa(0, 0).packets, 1);
        assert_eq!(seg.sa_totals()[0].packets, 1);
        seg.set_slot(1, 0);
        assert_eq!(seg.sa_totals().len(), 1, "a free slot lists nothing");
    }

    #[test]
    fn bad_segments_are_refused_with_their_reason() {
        let r = TempRegion::new("stats-bad");
        std::fs::write(r.path(), [0u8; 10]).unwrap();
        assert!(matches!(
            StatsReader::open(r.path()),
            Err(ShmError::ShortFile { .. })
        ));
        std::fs::write(r.path(), [7u8; 128]).unwrap();
        assert!(matches!(
            StatsReader::open(r.path()),
            Err(ShmError::BadMagic { .. })
        ));
        let seg = StatsSegment::create(Some(r.path()), &shape()).unwrap();
        let f = OpenOptions::new().write(true).open(r.path()).unwrap();
        f.set_len(seg.layout.total as u64 + 64).unwrap();
        assert!(matches!(
            StatsReader::open(r.path()),
            Err(ShmError::SizeMismatch { .. })
        ));
        let too_many = StatsShape {
            blocks: MAX_BLOCKS + 1,
            ..shape()
        };
        assert!(matches!(
            StatsSegment::create(None, &too_many),
            Err(ShmError::BadStatsShape { .. })
        ));
    }

    #[test]
    fn tags_encode_direction_and_spi() {
        for d in [Direction::In, Direction::Out] {
            for spi in [256, 0x1234_5678, u32::MAX] {
                let t = sa_tag(d, spi);
                assert_ne!(t, 0);
                assert_eq!(untag(t), Some((d, spi)));
            }
        }
        assert_eq!(untag(0), None);
    }
}
