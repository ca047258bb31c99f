//! `scistream-control`: the SciStream gateway control process (`s2cs`).
//!
//! `s2cs` negotiates keys with peer gateways over mutual TLS and writes SAs
//! and listeners into the shared-memory region the data plane (`s2ds`)
//! reads. This crate holds its [`config`]uration and the persistent session
//! [`registry`].

pub mod config;
pub mod registry;

use config::ControlConfig;

/// Runs the control process until SIGINT or SIGTERM.
///
/// TEMPORARY: a placeholder until the session manager lands; it only logs
/// that it is ready and waits for a termination signal.
pub async fn run(config: ControlConfig) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::unix::{signal, SignalKind};

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tracing::info!(
        gateway = %config.gateway.name,
        peers = config.peers.len(),
        "s2cs ready"
    );
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
        _ = int.recv() => tracing::info!("SIGINT received, stopping"),
    }
    Ok(())
}
