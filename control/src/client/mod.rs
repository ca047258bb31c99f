//! The client side of the SciStream control API (`s2uc`): dialling s2cs
//! (TLS or plaintext), bearer tokens, session ids, the call sequences of a
//! session's set-up, and the command's output.
//!
//! - [`connect`]: `HOST:PORT`, TLS (rustls, ring) or plaintext;
//! - [`token`]: the bearer token and where it comes from;
//! - [`uid`]: session ids (re-exported from [`crate::uid`]);
//! - [`endpoints`]: the `ip:port` lists the API carries;
//! - [`session`]: [`S2ucClient`], the RPC sequences;
//! - [`output`]: text and JSON rendering;
//! - [`error`]: [`ClientError`] and exit statuses.
//!
//! The protocol itself is described in `docs/control-protocol.md`.

pub mod connect;
pub mod endpoints;
pub mod error;
pub mod output;
pub mod session;
pub mod token;

pub use crate::uid;

pub use connect::{ConnectOptions, Security, ServerAddr};
pub use error::ClientError;
pub use session::{HelloRetry, S2ucClient, SessionSetup};
pub use token::BearerToken;
