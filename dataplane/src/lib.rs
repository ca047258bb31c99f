//! `scistream-dataplane`: the SciStream gateway data plane (`s2ds`).
//!
//! Pinned poll-mode workers move frames between the instrument (LAN) port
//! and the WAN port through one of the packet I/O [`backend`]s.

pub mod backend;
pub mod config;
