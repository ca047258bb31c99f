//! Typed access to one table copy: read-only views for the workers,
//! mutable ones for the writer while the copy is inactive.

use std::marker::PhantomData;

use super::layout::{CopyHeader, Layout, ListenerEntry, RouteEntry, SaEntry, Table};
use super::mapping::{Mapping, Plain};
use super::ShmError;

/// A table entry type (sealed: only the three layout entries).
pub trait Entry: Plain {
    /// Which table holds it.
    const TABLE: Table;
    /// Its name in error messages.
    const NAME: &'static str;
}

impl Entry for SaEntry {
    const TABLE: Table = Table::Sa;
    const NAME: &'static str = "SA";
}
impl Entry for RouteEntry {
    const TABLE: Table = Table::Route;
    const NAME: &'static str = "route";
}
impl Entry for ListenerEntry {
    const TABLE: Table = Table::Listener;
    const NAME: &'static str = "listener";
}

fn count(h: &CopyHeader, t: Table) -> u32 {
    match t {
        Table::Sa => h.sa_count,
        Table::Route => h.route_count,
        Table::Listener => h.listener_count,
    }
}

/// The entries in use of one table in the active copy.
#[derive(Debug, Clone, Copy)]
pub struct TableView<'a, T: Entry> {
    map: &'a Mapping,
    off: usize,
    len: u32,
    _t: PhantomData<T>,
}

impl<'a, T: Entry> TableView<'a, T> {
    fn new(map: &'a Mapping, layout: &Layout, copy: usize, h: &CopyHeader) -> Self {
        let (off, cap) = layout.table(copy, T::TABLE);
        TableView {
            map,
            off,
            // A count beyond the capacity (a corrupt region) is clamped.
            len: count(h, T::TABLE).min(cap),
            _t: PhantomData,
        }
    }

    /// Entries in use.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True if no entry is in use.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A copy of entry `i`, or `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        (i < self.len as usize).then(|| self.map.read::<T>(self.off, i))
    }

    /// The entries in use, copied out one by one.
    pub fn iter(&self) -> impl Iterator<Item = T> + 'a {
        let (map, off) = (self.map, self.off);
        (0..self.len as usize).map(move |i| map.read::<T>(off, i))
    }
}

/// The active copy as of one Acquire load of the published word.
///
/// Valid until the worker reports a newer generation: the writer reuses
/// this copy only after every live worker has done so.
#[derive(Debug, Clone, Copy)]
pub struct TablesView<'a> {
    map: &'a Mapping,
    layout: &'a Layout,
    copy: usize,
    generation: u64,
    header: CopyHeader,
}

impl<'a> TablesView<'a> {
    pub(crate) fn new(map: &'a Mapping, layout: &'a Layout, copy: usize, generation: u64) -> Self {
        let header = map.read::<CopyHeader>(layout.copy(copy), 0);
        TablesView {
            map,
            layout,
            copy,
            generation,
            header,
        }
    }

    /// The generation of this snapshot.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Which copy (0 = A, 1 = B) is active.
    #[inline]
    pub fn copy_index(&self) -> usize {
        self.copy
    }

    /// The data plane incarnation the SAs of this copy were written for
    /// ([`crate::layout::CopyHeader::keyed_for`]).
    #[inline]
    pub fn keyed_for(&self) -> u64 {
        self.header.keyed_for
    }

    /// The SA table.
    #[inline]
    pub fn sas(&self) -> TableView<'a, SaEntry> {
        TableView::new(self.map, self.layout, self.copy, &self.header)
    }

    /// The route table.
    #[inline]
    pub fn routes(&self) -> TableView<'a, RouteEntry> {
        TableView::new(self.map, self.layout, self.copy, &self.header)
    }

    /// The listener table.
    #[inline]
    pub fn listeners(&self) -> TableView<'a, ListenerEntry> {
        TableView::new(self.map, self.layout, self.copy, &self.header)
    }
}

/// One table of the inactive copy, being filled by the writer.
#[derive(Debug)]
pub struct TableMut<'a, T: Entry> {
    map: &'a Mapping,
    off: usize,
    cap: u32,
    len: &'a mut u32,
    _t: PhantomData<T>,
}

impl<T: Entry> TableMut<'_, T> {
    /// Entries in use.
    pub fn len(&self) -> usize {
        *self.len as usize
    }

    /// True if no entry is in use.
    pub fn is_empty(&self) -> bool {
        *self.len == 0
    }

    /// The table's capacity.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// A copy of entry `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<T> {
        (i < *self.len as usize).then(|| self.map.read::<T>(self.off, i))
    }

    /// Appends `e`; returns its slot.
    pub fn push(&mut self, e: T) -> Result<usize, ShmError> {
        if *self.len >= self.cap {
            return Err(ShmError::TableFull {
                table: T::NAME,
                capacity: self.cap,
            });
        }
        let i = *self.len as usize;
        self.map.write(self.off, i, e);
        *self.len += 1;
        Ok(i)
    }

    /// Replaces entry `i` (which must be in use).
    pub fn set(&mut self, i: usize, e: T) -> Result<(), ShmError> {
        if i >= *self.len as usize {
            return Err(ShmError::OutOfRange {
                table: T::NAME,
                index: i,
                len: *self.len,
            });
        }
        self.map.write(self.off, i, e);
        Ok(())
    }

    /// Keeps the first `n` entries (no-op if fewer are in use).
    pub fn truncate(&mut self, n: usize) {
        if n < *self.len as usize {
            *self.len = n as u32;
        }
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        *self.len = 0;
    }
}

/// The inactive copy while the writer fills it. It starts as a copy of the
/// active tables, so an update only touches what changed.
#[derive(Debug)]
pub struct TablesMut<'a> {
    map: &'a Mapping,
    layout: &'a Layout,
    copy: usize,
    header: CopyHeader,
    /// The counts the copy started with: entries past the final counts up
    /// to these are wiped on finish (an SA entry holds a key).
    initial: CopyHeader,
}

impl<'a> TablesMut<'a> {
    pub(crate) fn new(map: &'a Mapping, layout: &'a Layout, copy: usize) -> Self {
        let header = map.read::<CopyHeader>(layout.copy(copy), 0);
        TablesMut {
            map,
            layout,
            copy,
            header,
            initial: header,
        }
    }

    fn table<T: Entry>(&mut self) -> TableMut<'_, T> {
        let (off, cap) = self.layout.table(self.copy, T::TABLE);
        let len = match T::TABLE {
            Table::Sa => &mut self.header.sa_count,
            Table::Route => &mut self.header.route_count,
            Table::Listener => &mut self.header.listener_count,
        };
        // A corrupt count never exceeds the capacity.
        *len = (*len).min(cap);
        TableMut {
            map: self.map,
            off,
            cap,
            len,
            _t: PhantomData,
        }
    }

    /// The SA table.
    pub fn sas(&mut self) -> TableMut<'_, SaEntry> {
        self.table()
    }

    /// The route table.
    pub fn routes(&mut self) -> TableMut<'_, RouteEntry> {
        self.table()
    }

    /// The listener table.
    pub fn listeners(&mut self) -> TableMut<'_, ListenerEntry> {
        self.table()
    }

    fn wipe<T: Entry + Default>(&mut self, before: u32, after: u32) {
        let (off, cap) = self.layout.table(self.copy, T::TABLE);
        for i in after..before.min(cap) {
            self.map.write(off, i as usize, T::default());
        }
    }

    /// Records that the SAs written are for data plane incarnation
    /// `incarnation` ([`crate::layout::CopyHeader::keyed_for`]). A copy
    /// keeps the value of the copy it started from until this is called.
    pub fn set_keyed_for(&mut self, incarnation: u64) {
        self.header.keyed_for = incarnation;
    }

    /// Empties all three tables.
    pub fn clear(&mut self) {
        self.header.sa_count = 0;
        self.header.route_count = 0;
        self.header.listener_count = 0;
    }

    /// Wipes the entries past the final counts that were in use before, so
    /// no removed SA leaves its key behind in the region, and writes the
    /// entry counts into the copy (before it is published).
    pub(crate) fn finish(mut self) {
        self.wipe::<SaEntry>(self.initial.sa_count, self.header.sa_count);
        self.wipe::<RouteEntry>(self.initial.route_count, self.header.route_count);
        self.wipe::<ListenerEntry>(self.initial.listener_count, self.header.listener_count);
        self.map.write(self.layout.copy(self.copy), 0, self.header);
    }
}
