//! `scistream-tomldoc`: TOML configuration files whose every error names
//! the file, the line, the column and the dotted key (`peers[1].ca`), for
//! both `s2ds` and `s2cs`.
//!
//! A schema is loaded in three steps through one [`Document`]:
//!
//! 1. [`Document::parse`]: TOML syntax (a syntax error is located, with the
//!    key being parsed when it can be told);
//! 2. [`Document::deserialize`]: serde into raw structs (use
//!    `#[serde(deny_unknown_fields)]`), which rejects unknown keys, missing
//!    keys and wrong types, each at its key;
//! 3. the caller's validation, which reports each broken rule with
//!    [`Document::bad_value`], [`Document::conflict`] or
//!    [`Document::error`], naming the key as a dotted string or a
//!    [`KeyPath`].
//!
//! [`values`] holds the value parsers both configurations share (MAC and
//! IPv4 addresses, prefixes, interface and gateway names).

mod de_error;
mod document;
mod error;
mod keypath;
mod locate;
pub mod values;

pub use document::{Document, Key};
pub use error::{ConfigError, ErrorKind, Location};
pub use keypath::{KeyPath, Seg};
