//! The encrypted tunnel as the workers see it: the SA and route tables
//! (behind [`TableSource`], so the control process's shared-memory region
//! can stand in for the static configuration), and the encapsulation and
//! decapsulation stages that run on whole bursts.

pub mod pipeline;
pub mod tables;

#[cfg(test)]
mod tests;

pub use tables::{InboundEntry, OutboundEntry, StaticTables, TableSource, TunnelTables};
