//! `s2ds`: the SciStream gateway data plane.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use scistream_dataplane::cli::{Cli, Command};
use scistream_dataplane::config::Config;
use scistream_dataplane::host;
use scistream_dataplane::runtime;
use scistream_dataplane::snapshot::{render, Snapshot};

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("s2ds: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(cfg) => {
                println!(
                    "{}: ok (gateway {}, {} worker(s), lan {} via {}, wan {} via {}, {} route(s))",
                    config.display(),
                    cfg.gateway.name,
                    cfg.workers.cores.len(),
                    cfg.ports.lan.addresses(),
                    cfg.ports.lan.backend.name(),
                    cfg.ports.wan.addresses(),
                    cfg.ports.wan.backend.name(),
                    cfg.routes.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Run { config } => {
            let cfg = Config::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            init_logging(cfg.logging.level.to_tracing());
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, stop.clone())
                    .context("installing signal handlers")?;
            }
            runtime::run(&cfg, stop)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::SetupHost {
            config,
            persist,
            dry_run,
        } => {
            host::run_setup_host(&config, persist, dry_run)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckHost { config } => Ok(if host::run_check_host(&config)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        Command::Stats {
            config,
            path,
            interval,
            count,
            json,
        } => {
            let path = match (path, config) {
                (Some(p), _) => p,
                (None, Some(c)) => Config::load(&c)
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .stats_path(),
                (None, None) => unreachable!("clap requires one of them"),
            };
            let mut prev = Snapshot::read(&path)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&prev)?);
                return Ok(ExitCode::SUCCESS);
            }
            let interval = Duration::from_secs_f64(interval.max(0.1));
            let mut shown = 0;
            while count.is_none_or(|c| shown < c) {
                std::thread::sleep(interval);
                let cur = Snapshot::read(&path)?;
                println!("{}", render(&prev, &cur));
                prev = cur;
                shown += 1;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_logging(level: tracing::Level) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.as_str().to_lowercase()));
    // No colour codes where the output is not a terminal (the journal, files).
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
}
