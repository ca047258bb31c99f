//! `scistream-control`: the SciStream gateway control process (`s2cs`).
//!
//! `s2cs` negotiates keys with peer gateways over mutual TLS and writes SAs
//! and listeners into the shared-memory region the data plane (`s2ds`)
//! reads.
//!
//! - [`config`]: the TOML configuration;
//! - [`auth`]: who may call the northbound API, and with which targets;
//! - [`cli`]: the command lines of `s2cs` and `s2uc`;
//! - [`client`]: the `s2uc` client of the northbound API;
//! - [`proto`]: the gRPC messages and services;
//! - [`registry`]: the persistent session registry (SQLite);
//! - [`peer`]: the peer channel: mutual TLS, key derivation, messages;
//! - [`uid`]: session ids (UUID strings of any version);
//! - [`state`]: sessions and their SAs, rendered into the region's tables;
//! - [`tunnel`]: routed-mode tunnels from `[[tunnels]]`, sessions of their
//!   own (uid `tunnel:<name>`, initiated by the gateway whose name sorts
//!   first);
//! - [`traffic`]: per-session traffic, from the data plane's per-SA
//!   counters, summed across rekeys;
//! - [`metrics`]: the Prometheus endpoint (data plane and control);
//! - [`audit`]: the audit log of API calls and peer events;
//! - [`service`]: the running process (peer server, negotiation, admin
//!   socket, timers, gRPC API).

#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod metrics;
pub mod peer;
pub mod proto;
pub mod registry;
pub mod service;
pub mod state;
pub mod traffic;
pub mod tunnel;
pub mod uid;

pub use service::run;
