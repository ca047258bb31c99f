//! `scistream-dataplane`: the SciStream gateway data plane (`s2ds`).
//!
//! Pinned poll-mode workers move frames between the instrument (LAN) port
//! and the WAN port through one of the packet I/O [`backend`]s.

pub mod backend;
pub mod config;
pub mod crypto;
pub mod esp;
pub mod forward;
pub mod latency;
pub mod nat;
pub mod neigh;
pub mod port;
pub mod route;
pub mod runtime;
pub mod shm;
pub mod slowpath;
pub mod snapshot;
pub mod stats;
pub mod tunnel;
pub mod wire;
pub mod worker;
