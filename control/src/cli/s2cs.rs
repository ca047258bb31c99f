//! The `s2cs` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::auth;

/// The SciStream gateway control process: negotiates keys with peer
/// gateways over mutual TLS and programs the data plane through shared
/// memory.
#[derive(Parser)]
#[command(name = "s2cs", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the control process described by a configuration file.
    Run {
        /// The TOML configuration file.
        config: PathBuf,
    },
    /// Validate a configuration file (and the certificate and key files it
    /// names) without starting anything. Exits 2 if it is rejected.
    CheckConfig {
        /// The TOML configuration file.
        config: PathBuf,
    },
    /// Print a `[[tokens]]` entry for the token file (`auth.token_file`):
    /// the salted PBKDF2 hash of a token read from the first line of stdin,
    /// or of a new random token with --generate (the token itself goes to
    /// stderr, alone on its line, and is stored nowhere).
    HashToken {
        /// The identity the token authenticates (what `[[auth.allow]]
        /// identity` rules match).
        #[arg(long, value_name = "NAME")]
        identity: String,
        /// A scope the token carries (what `[[auth.allow]] scope` rules
        /// match); repeat for several.
        #[arg(long = "scope", value_name = "S")]
        scopes: Vec<String>,
        /// Generate a random 32-byte token (base64url) instead of reading
        /// one from stdin.
        #[arg(long)]
        generate: bool,
        /// PBKDF2-HMAC-SHA256 iterations.
        #[arg(long, default_value_t = auth::DEFAULT_PBKDF2_ITERATIONS,
              value_parser = clap::value_parser!(u32).range(i64::from(auth::MIN_PBKDF2_ITERATIONS)..=i64::from(auth::MAX_PBKDF2_ITERATIONS)))]
        iterations: u32,
    },
}
