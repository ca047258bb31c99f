//! The `s2ds` command line (clap): parsed by the binary, and rendered into
//! man pages and shell completions by `xtask` at package build time.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The SciStream gateway data plane: pinned poll-mode workers forwarding
/// between the instrument (LAN) port and the WAN port.
#[derive(Parser)]
#[command(name = "s2ds", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway described by a configuration file.
    Run {
        /// The TOML configuration file.
        config: PathBuf,
    },
    /// Validate a configuration file without starting anything.
    CheckConfig {
        /// The TOML configuration file.
        config: PathBuf,
    },
    /// Prepare this host for a DPDK configuration: reserve and mount the
    /// hugepages it needs, bind its PCI NICs to vfio-pci (vfio no-IOMMU or
    /// uio_pci_generic where there is no IOMMU, with a warning).
    SetupHost {
        /// The TOML configuration file.
        config: PathBuf,
        /// Also write the drop-ins that redo this at boot (sysctl.d,
        /// modules-load.d, modprobe.d) and enable s2ds-host@NAME.service.
        #[arg(long)]
        persist: bool,
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check this host for a configuration, one line per item (OK, WARN,
    /// FAIL) with the command that fixes it: hugepages, NIC binding, IOMMU,
    /// NUMA, isolated cores, AES-NI/VAES, memlock, kernel. Exits 1 on a FAIL.
    CheckHost {
        /// The TOML configuration file.
        config: PathBuf,
    },
    /// Show live per-second counters of a running gateway.
    Stats {
        /// The gateway's configuration file (to find its stats file).
        #[arg(conflicts_with = "path", required_unless_present = "path")]
        config: Option<PathBuf>,
        /// The stats snapshot file itself.
        #[arg(long)]
        path: Option<PathBuf>,
        /// Seconds between updates.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many updates (default: run until interrupted).
        #[arg(long)]
        count: Option<u64>,
        /// Print the raw snapshot as JSON once and exit.
        #[arg(long)]
        json: bool,
    },
}
