//! The only module that touches the mapped memory through raw pointers.
//!
//! [`Mapping`] owns one `MAP_SHARED` mapping of the region file. It hands
//! out shared references to the atomic blocks ([`Header`], [`WorkerSlot`],
//! the stats segment's counters) and copies plain table entries in and out with volatile
//! accesses. Every offset it is given comes from a validated
//! [`super::layout::Layout`] and is bounds- and alignment-checked here.

use std::fs::File;
use std::io;
use std::mem::{align_of, size_of};
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use std::sync::atomic::AtomicU64;

use super::layout::{
    CopyHeader, DataplaneInfo, Header, ListenerEntry, RouteEntry, SaEntry, WorkerSlot,
};
use super::stats::{CounterName, SaCounters, SaSlot, StatsHeader};

/// Types made only of atomics, valid for any bit pattern, so a `&T` into
/// memory another process writes is sound.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, contain only atomics and plain
/// integers that never change after the region is published, and be valid
/// for every bit pattern (including all zeroes).
pub(crate) unsafe trait SharedBlock {}
// SAFETY: repr(C); the mutable fields are atomics, the rest are integers
// written before the file is renamed into place.
unsafe impl SharedBlock for Header {}
// SAFETY: repr(C), an AtomicU64, an AtomicU32 and reserved integers.
unsafe impl SharedBlock for WorkerSlot {}
// SAFETY: an atomic integer, valid for every bit pattern.
unsafe impl SharedBlock for AtomicU64 {}
// SAFETY: repr(C); the pid is atomic, the rest are integers written
// before the file is renamed into place.
unsafe impl SharedBlock for StatsHeader {}
// SAFETY: repr(C), atomics only.
unsafe impl SharedBlock for SaCounters {}
// SAFETY: repr(C), atomics only.
unsafe impl SharedBlock for SaSlot {}

/// Plain-old-data table types (public but unnameable outside `shm`, which
/// seals [`super::table::Entry`]): `Copy`, no padding, valid for every bit
/// pattern, so a volatile copy out of shared memory is always a valid value.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, made only of integers and integer
/// arrays, with no implicit padding.
pub unsafe trait Plain: Copy {}
// SAFETY: repr(C), integers only, explicit reserved fields; size asserted in layout.rs.
unsafe impl Plain for SaEntry {}
// SAFETY: as above.
unsafe impl Plain for RouteEntry {}
// SAFETY: as above.
unsafe impl Plain for ListenerEntry {}
// SAFETY: as above.
unsafe impl Plain for CopyHeader {}
// SAFETY: repr(C), a byte array and integers, no padding (size asserted).
unsafe impl Plain for DataplaneInfo {}
// SAFETY: repr(C), a byte array.
unsafe impl Plain for CounterName {}

/// One shared mapping of a region file; unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory. Every access through it goes
// through atomics or volatile copies of `Plain` values; nothing is tied to
// the thread that created it.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only yields `&` to atomic blocks and copies.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `file` read-write and shared. `len` must be at
    /// least one [`Header`] and no more than the file size.
    pub(crate) fn new(file: &File, len: usize) -> io::Result<Mapping> {
        if len < size_of::<Header>() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: a fresh mapping (addr NULL) of a valid fd; the kernel picks
        // the address, so no existing memory is affected. The result is
        // checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Mapping { ptr, len })
    }

    /// Maps `len` bytes of `file` read-only and shared (a stats segment's
    /// readers: only loads go through such a mapping).
    pub(crate) fn new_read_only(file: &File, len: usize) -> io::Result<Mapping> {
        if len < size_of::<Header>() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: as in `new`, a fresh mapping of a valid fd, checked
        // against MAP_FAILED. Read-only: the code that holds such a mapping
        // only loads from it (a store would fault, never corrupt).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Mapping { ptr, len })
    }

    /// Maps `len` bytes of fresh anonymous shared memory, zero-filled: a
    /// stats segment that no other process reads (tests, or a gateway
    /// that publishes no segment).
    pub(crate) fn anonymous(len: usize) -> io::Result<Mapping> {
        if len < size_of::<Header>() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: a fresh anonymous mapping (addr NULL, fd -1); the kernel
        // picks the address, so no existing memory is affected. The result
        // is checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Mapping { ptr, len })
    }

    /// Locks the mapping in RAM (`mlock`).
    pub(crate) fn lock(&self) -> io::Result<()> {
        // SAFETY: the range is exactly our live mapping; mlock does not
        // change its contents.
        let r = unsafe { libc::mlock(self.ptr.as_ptr().cast(), self.len) };
        match r {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Checks that a `T` at `off` lies inside the mapping and is aligned.
    fn check<T>(&self, off: usize, count: usize) {
        let end = size_of::<T>()
            .checked_mul(count)
            .and_then(|n| n.checked_add(off));
        assert!(
            matches!(end, Some(e) if e <= self.len),
            "shm: {count} x {} at offset {off} is outside the {}-byte mapping",
            std::any::type_name::<T>(),
            self.len
        );
        assert!(
            (self.ptr.as_ptr() as usize + off).is_multiple_of(align_of::<T>()),
            "shm: misaligned {} at offset {off}",
            std::any::type_name::<T>()
        );
    }

    /// The header.
    pub(crate) fn header(&self) -> &Header {
        self.block(0)
    }

    /// A shared block (atomics only) at `off`.
    pub(crate) fn block<T: SharedBlock>(&self, off: usize) -> &T {
        self.check::<T>(off, 1);
        // SAFETY: in bounds and aligned (checked above); the mapping lives as
        // long as `&self`; `T: SharedBlock` is valid for any bit pattern and
        // all of its mutable state is atomic, so shared references are sound
        // while other threads or processes write it.
        unsafe { &*self.ptr.as_ptr().add(off).cast::<T>() }
    }

    /// `count` shared blocks (atomics only) in an array at `off`.
    pub(crate) fn blocks<T: SharedBlock>(&self, off: usize, count: usize) -> &[T] {
        self.check::<T>(off, count);
        // SAFETY: in bounds and aligned (checked above, for all `count`);
        // as for `block`, `T` is valid for any bit pattern and its mutable
        // state is atomic; the mapping outlives the borrow of `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(off).cast::<T>(), count) }
    }

    /// Copies the `i`-th `T` of the array at `off` out of the mapping.
    pub(crate) fn read<T: Plain>(&self, off: usize, i: usize) -> T {
        self.check::<T>(off, i + 1);
        // SAFETY: in bounds and aligned (checked above); `T: Plain` is valid
        // for any bit pattern. Volatile: another process owns the writes, and
        // the QSBR protocol (Acquire of the published word) orders them
        // before this read; a protocol violation yields a stale value, never
        // an invalid one.
        unsafe {
            self.ptr
                .as_ptr()
                .add(off)
                .cast::<T>()
                .add(i)
                .read_volatile()
        }
    }

    /// Writes `v` as the `i`-th `T` of the array at `off`.
    pub(crate) fn write<T: Plain>(&self, off: usize, i: usize, v: T) {
        self.check::<T>(off, i + 1);
        // SAFETY: in bounds and aligned (checked above). Only the writer
        // calls this, only on the inactive copy, which no reader reads until
        // the Release store that publishes it.
        unsafe {
            self.ptr
                .as_ptr()
                .add(off)
                .cast::<T>()
                .add(i)
                .write_volatile(v)
        }
    }

    /// Copies `len` bytes from `src` to `dst` inside the mapping (the two
    /// ranges must not overlap).
    pub(crate) fn copy(&self, src: usize, dst: usize, len: usize) {
        self.check::<u8>(src, len);
        self.check::<u8>(dst, len);
        assert!(
            src + len <= dst || dst + len <= src,
            "shm: overlapping copy"
        );
        // SAFETY: both ranges are inside the mapping and disjoint (checked
        // above). The source is the active copy, which nobody writes; the
        // destination is the inactive copy, which no reader reads.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(src),
                self.ptr.as_ptr().add(dst),
                len,
            )
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping we created; all references into
        // it borrow `self`, so none outlive this.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

impl Mapping {
    /// Writes the header of a region nobody else has mapped yet (the
    /// writer's temporary file, before it is renamed into place).
    pub(crate) fn init_header(&mut self, h: Header) {
        self.check::<Header>(0, 1);
        // SAFETY: in bounds and aligned (checked above); `&mut self` means no
        // reference into the mapping is alive in this process, and the file
        // is not yet visible under its final name to any other.
        unsafe { self.ptr.as_ptr().cast::<Header>().write_volatile(h) }
    }

    /// Writes the header of a stats segment nobody else has mapped yet.
    pub(crate) fn init_stats_header(&mut self, h: StatsHeader) {
        self.check::<StatsHeader>(0, 1);
        // SAFETY: as for `init_header`: in bounds, aligned, no reference
        // alive (`&mut self`), the file not yet under its final name.
        unsafe { self.ptr.as_ptr().cast::<StatsHeader>().write_volatile(h) }
    }
}

/// True if process `pid` exists (`kill(pid, 0)`, which sends nothing).
/// EPERM (a process we may not signal) counts as existing.
pub(crate) fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 performs only the existence and permission checks;
    // kill touches no memory of ours.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}
