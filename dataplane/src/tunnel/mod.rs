//! The encrypted tunnel as the workers see it: the SA and route tables
//! (behind [`TableSource`], so the control process's shared-memory region
//! can stand in for the static configuration), and the encapsulation and
//! decapsulation stages that run on whole bursts.

pub mod build;
pub mod from_shm;
pub mod pipeline;
pub mod sa_slots;
pub mod shm_source;
pub mod tables;

#[cfg(test)]
mod shm_tests;
#[cfg(test)]
mod tests;

pub use build::{RebuildReport, SaSpec, TableContext, TableSpec, MAX_LANES};
pub use sa_slots::SaSlots;
pub use shm_source::{ChangeSnapshot, ShmTableSource, ShmWatcher};
pub use tables::{InboundEntry, OutboundEntry, StaticTables, TableSource, TunnelTables};
