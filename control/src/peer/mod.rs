//! The peer channel between the control processes (`s2cs`) of two gateways.
//!
//! - [`tls`]: mutual TLS 1.3 with CA-trusted or pinned peers, and the TLS
//!   exporter that binds ESP keys to the authenticated channel.
//! - [`keys`]: per-session, per-epoch X25519 exchange and HKDF-SHA256
//!   derivation of the ESP keys, salts and SPIs of both directions.
//! - [`wire`]: the JSON messages of the channel, length-delimited framing.

pub mod keys;
pub mod tls;
pub mod wire;
