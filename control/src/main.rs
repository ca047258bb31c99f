//! `s2cs`: the SciStream gateway control process.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use scistream_control::config::ControlConfig;
use scistream_control::config::PeerTrust;

/// The SciStream gateway control process: negotiates keys with peer
/// gateways over mutual TLS and programs the data plane through shared
/// memory.
#[derive(Parser)]
#[command(name = "s2cs", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

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
        Command::CheckConfig { config } => match ControlConfig::load(&config) {
            Ok(cfg) => {
                let pinned = cfg
                    .peers
                    .iter()
                    .filter(|p| matches!(p.trust, PeerTrust::Pin(_)))
                    .count();
                println!(
                    "{}: ok (gateway {}, lan {}, wan {}, peer channel {}, {} peer(s) of which {} pinned, listener ports {}..={})",
                    config.display(),
                    cfg.gateway.name,
                    cfg.gateway.lan_address,
                    cfg.gateway.wan_address,
                    cfg.control.peer_listen,
                    cfg.peers.len(),
                    pinned,
                    cfg.ports.listener_range.start(),
                    cfg.ports.listener_range.end(),
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
