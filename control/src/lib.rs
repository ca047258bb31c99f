//! `scistream-control`: the SciStream gateway control process (`s2cs`).
//!
//! `s2cs` negotiates keys with peer gateways over mutual TLS and writes SAs
//! and listeners into the shared-memory region the data plane (`s2ds`)
//! reads.
//!
//! - [`config`]: the TOML configuration;
//! - [`registry`]: the persistent session registry (SQLite);
//! - [`peer`]: the peer channel: mutual TLS, key derivation, messages;
//! - [`state`]: sessions and their SAs, rendered into the region's tables;
//! - [`service`]: the running process (peer server, negotiation, admin
//!   socket, timers).

pub mod auth;
pub mod config;
pub mod peer;
pub mod proto;
pub mod registry;
pub mod service;
pub mod state;

pub use service::run;
