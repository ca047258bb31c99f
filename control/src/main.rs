//! `s2cs`: the SciStream gateway control process.

#![forbid(unsafe_code)]

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::Parser;
use scistream_control::auth;
use scistream_control::cli::s2cs::{Cli, Command};
use scistream_control::config::ControlConfig;
use scistream_control::config::PeerTrust;

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("s2cs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::HashToken {
            identity,
            scopes,
            generate,
            iterations,
        } => hash_token(&identity, &scopes, generate, iterations),
        Command::CheckConfig { config } => match ControlConfig::load(&config) {
            Ok(cfg) => {
                // The token file or JWKS must also parse.
                if let Some(a) = &cfg.auth {
                    if let Err(e) = auth::verifier(a) {
                        eprintln!("{}: {e}", config.display());
                        return Ok(ExitCode::from(2));
                    }
                }
                let pinned = cfg
                    .peers
                    .iter()
                    .filter(|p| matches!(p.trust, PeerTrust::Pin(_)))
                    .count();
                println!(
                    "{}: ok (gateway {}, lan {}, wan {}, peer channel {}, {} peer(s) of which {} pinned, listener ports {}..={}, {} tunnel(s))",
                    config.display(),
                    cfg.gateway.name,
                    cfg.gateway.lan_address,
                    cfg.gateway.wan_address,
                    cfg.control.peer_listen,
                    cfg.peers.len(),
                    pinned,
                    cfg.ports.listener_range.start(),
                    cfg.ports.listener_range.end(),
                    cfg.tunnels.len(),
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Run { config } => {
            let cfg = ControlConfig::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            init_logging(&cfg.logging.level);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("s2cs")
                .build()
                .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))?;
            runtime.block_on(scistream_control::run(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `s2cs hash-token`: prints the token-file entry on stdout.
fn hash_token(
    identity: &str,
    scopes: &[String],
    generate: bool,
    iterations: u32,
) -> anyhow::Result<ExitCode> {
    if identity.trim().is_empty() {
        anyhow::bail!("--identity must not be empty");
    }
    if let Some(s) = scopes
        .iter()
        .find(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        anyhow::bail!("--scope `{s}` is empty or contains whitespace");
    }
    let token = if generate {
        auth::generate_token()?
    } else {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprintln!("s2cs: reading the token from stdin (one line)");
        }
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| anyhow::anyhow!("reading the token from stdin: {e}"))?;
        let token = line.trim_end_matches(['\r', '\n']).to_owned();
        if token.is_empty() {
            anyhow::bail!("no token on stdin (or use --generate)");
        }
        token
    };
    let hash = auth::hash_token(&token, iterations)?;
    print!("{}", auth::token_file_entry(identity, scopes, &hash));
    if generate {
        eprintln!("{token}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Logs to stderr (coloured only on a terminal) with the configured filter; `RUST_LOG`, if set and valid,
/// overrides it.
fn init_logging(directive: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directive));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
