//! `scistream-dataplane`: the SciStream gateway data plane (`s2ds`).
//!
//! Pinned poll-mode workers move frames between the instrument (LAN) port
//! and the WAN port through one of the packet I/O [`backend`]s.
//!
//! `unsafe` lives only in [`backend`] (DPDK, AF_XDP and TAP I/O) and in the
//! `ipsec-mb` engine's calls into intel-ipsec-mb (`crypto::ipsec_mb_engine`,
//! allowed there alone: the rest of [`crypto`] denies it), each block with a
//! `SAFETY:` comment; every other module forbids it.

pub mod backend;
#[forbid(unsafe_code)]
pub mod cli;
#[forbid(unsafe_code)]
pub mod config;
#[deny(unsafe_code)]
pub mod crypto;
#[forbid(unsafe_code)]
pub mod esp;
#[cfg(test)]
mod fixtures;
#[forbid(unsafe_code)]
pub mod forward;
#[forbid(unsafe_code)]
pub mod gateway;
#[forbid(unsafe_code)]
pub mod host;
#[forbid(unsafe_code)]
pub mod host_drops;
#[forbid(unsafe_code)]
pub mod latency;
#[forbid(unsafe_code)]
pub mod nat;
#[forbid(unsafe_code)]
pub mod neigh;
#[forbid(unsafe_code)]
pub mod port;
#[forbid(unsafe_code)]
pub mod route;
#[forbid(unsafe_code)]
pub mod runtime;
#[forbid(unsafe_code)]
pub mod slowpath;
#[forbid(unsafe_code)]
pub mod snapshot;
#[forbid(unsafe_code)]
pub mod stage_clock;
#[forbid(unsafe_code)]
pub mod stats;
#[forbid(unsafe_code)]
pub mod tunnel;
#[forbid(unsafe_code)]
pub mod wire;
#[forbid(unsafe_code)]
pub mod worker;
