//! An in-memory queue: frames pushed to `rx` are received, transmitted
//! frames are collected in `tx`. For tests and benches of everything above
//! the backends (forwarding, tunnel, slow path) without devices or root.

use std::collections::VecDeque;

use super::pool::PoolBuf;
use super::{Burst, PacketBuf, PortQueue};

/// One in-memory RX/TX queue pair.
#[derive(Debug, Default)]
pub struct MemQueue {
    /// Frames waiting to be received, in order.
    pub rx: VecDeque<Vec<u8>>,
    /// Frames transmitted so far, in order.
    pub tx: Vec<Vec<u8>>,
    /// Most frames one `tx_burst` accepts (the rest are refused); None = all.
    pub tx_room: Option<usize>,
}

impl MemQueue {
    /// An empty queue that accepts every frame.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the frames transmitted so far.
    pub fn take_tx(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.tx)
    }
}

impl PortQueue for MemQueue {
    type Buf = PoolBuf;

    fn rx_burst(&mut self, out: &mut Burst<PoolBuf>) -> usize {
        let mut n = 0;
        while !out.is_full() {
            let Some(f) = self.rx.pop_front() else { break };
            match PoolBuf::from_slice(&f) {
                Some(b) => out.push(b),
                None => continue,
            }
            n += 1;
        }
        n
    }

    fn tx_burst(&mut self, bufs: &mut Burst<PoolBuf>) -> usize {
        let take = bufs.len().min(self.tx_room.unwrap_or(usize::MAX));
        for b in bufs.drain(..).take(take) {
            self.tx.push(b.data().to_vec());
        }
        bufs.clear();
        take
    }

    fn alloc(&mut self) -> Option<PoolBuf> {
        Some(PoolBuf::new())
    }
}
