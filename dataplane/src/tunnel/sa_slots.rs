//! Which SA slot of the stats segment each SA counts into. The table
//! builder (one thread: the watcher, or the start-up code) assigns a slot
//! to each new SA and frees the slots of SAs that leave the tables; an SA
//! kept by a rebuild keeps its slot, so its counters carry on. With no
//! free slot an SA is still forwarded, only not counted on its own.

use std::sync::{Arc, Mutex};

use scistream_region::stats::sa_tag;
use scistream_region::Direction;

use crate::stats::StatsRegistry;

/// The slot directory of a stats segment, as the table builder keeps it.
#[derive(Debug)]
pub struct SaSlots {
    stats: Arc<StatsRegistry>,
    /// The tag each slot counts (0: free).
    tags: Mutex<Vec<u64>>,
}

impl SaSlots {
    /// The slots of `stats`' segment, all free.
    pub fn new(stats: Arc<StatsRegistry>) -> Self {
        let n = stats.segment().sa_slots();
        SaSlots {
            stats,
            tags: Mutex::new(vec![0; n]),
        }
    }

    /// A free slot for the SA `direction`/`spi`, now named in the
    /// segment's directory; `None` if every slot is taken.
    pub fn assign(&self, direction: Direction, spi: u32) -> Option<usize> {
        let tag = sa_tag(direction, spi);
        let mut tags = self.tags.lock().unwrap_or_else(|p| p.into_inner());
        let slot = tags.iter().position(|&t| t == 0)?;
        tags[slot] = tag;
        self.stats.segment().set_slot(slot, tag);
        Some(slot)
    }

    /// Frees `slot` (its SA left the tables).
    pub fn release(&self, slot: usize) {
        let mut tags = self.tags.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = tags.get_mut(slot) {
            *t = 0;
            self.stats.segment().set_slot(slot, 0);
        }
    }

    /// The registry whose segment the slots belong to.
    pub fn stats(&self) -> &Arc<StatsRegistry> {
        &self.stats
    }
}
