//! Host preparation for a DPDK gateway: `s2ds check-host` (what is wrong
//! and the command that fixes it) and `s2ds setup-host` (hugepages, NIC
//! binding, and with `--persist` the drop-ins that make them survive a
//! reboot).
//!
//! Everything reads the host through [`HostPaths`], so the tests run on a
//! fake sysfs/procfs tree. The inspection ([`HostState`]) is separate from
//! the judgement ([`check`]) and from the changes ([`setup::plan`], a list of
//! [`setup::Action`]s that [`setup::apply`] carries out): both are pure
//! functions of the state and the configuration.

mod cpu;
mod hugepages;
mod pci;
mod report;
pub mod setup;
mod state;

use std::path::{Path, PathBuf};

pub use hugepages::{hugepages_needed, HUGEPAGE_KB};
pub use pci::{choose_driver, DriverChoice};
pub use report::{render, Finding, Status};
pub use state::{HostState, NicState};

use crate::config::{Backend, Config, DpdkDevice};

/// Where the host's kernel interfaces are: `/sys`, `/proc`, `/etc`
/// normally; a scratch tree in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// sysfs.
    pub sys: PathBuf,
    /// procfs.
    pub proc: PathBuf,
    /// Where `--persist` writes its drop-ins (sysctl.d, modprobe.d, systemd).
    pub etc: PathBuf,
}

impl HostPaths {
    /// The running system's.
    pub fn system() -> HostPaths {
        HostPaths {
            sys: "/sys".into(),
            proc: "/proc".into(),
            etc: "/etc".into(),
        }
    }

    /// `root`/sys, `root`/proc, `root`/etc (tests).
    pub fn under(root: &std::path::Path) -> HostPaths {
        HostPaths {
            sys: root.join("sys"),
            proc: root.join("proc"),
            etc: root.join("etc"),
        }
    }
}

/// The PCI addresses of the configuration's DPDK ports (vdevs need no binding).
pub fn pci_devices(cfg: &Config) -> Vec<String> {
    [&cfg.ports.lan, &cfg.ports.wan]
        .into_iter()
        .filter_map(|p| match &p.backend {
            Backend::Dpdk {
                device: DpdkDevice::Pci(a),
            } => Some(a.clone()),
            _ => None,
        })
        .collect()
}

/// Every finding of `check-host` for `cfg` (read from `config`, which the
/// fix commands name) on a host in `state`, in the order they are printed.
pub fn check(cfg: &Config, config: &Path, state: &HostState) -> Vec<Finding> {
    let mut out = Vec::new();
    if cfg.ports.use_dpdk() {
        out.push(hugepages::finding(cfg, state));
        out.push(pci::iommu_finding(state));
        for nic in &state.nics {
            out.push(pci::nic_finding(nic, state));
        }
        out.extend(cpu::numa_finding(cfg, state));
    }
    out.push(cpu::isolated_finding(cfg, state));
    out.push(cpu::aes_finding(state));
    out.push(cpu::memlock_finding(state));
    out.push(cpu::kernel_finding(cfg, state));
    for f in &mut out {
        if let Some(fix) = &mut f.fix {
            *fix = fix.replace("CONFIG", &config.display().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests;

/// `s2ds check-host CONFIG`: prints the screen; Ok(true) if nothing failed.
pub fn run_check_host(config: &Path) -> anyhow::Result<bool> {
    let cfg = Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let state = HostState::read(&HostPaths::system(), &pci_devices(&cfg));
    let findings = check(&cfg, config, &state);
    print!("{}", render(&findings));
    Ok(findings.iter().all(|f| f.status != Status::Fail))
}

/// `s2ds setup-host CONFIG [--persist] [--dry-run]`: reserves and mounts
/// the hugepages, binds the NICs, with `--persist` writes the boot-time
/// drop-ins; then checks that the host now has what the config needs.
pub fn run_setup_host(config: &Path, persist: bool, dry_run: bool) -> anyhow::Result<()> {
    let cfg = Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let paths = HostPaths::system();
    let pcis = pci_devices(&cfg);
    if !dry_run {
        setup::probe_vfio(&HostState::read(&paths, &pcis));
    }
    let state = HostState::read(&paths, &pcis);
    if let Some(w) = setup::dma_warning(&state).filter(|_| !state.nics.is_empty()) {
        eprintln!("s2ds setup-host: {w}");
    }
    let mut actions = setup::plan(&cfg, &state, &paths);
    if persist {
        let name = setup::instance_name(config);
        actions.extend(setup::persist_plan(&cfg, &state, &paths, &name));
    }
    for a in &actions {
        println!("{}{a}", if dry_run { "would: " } else { "" });
    }
    if dry_run {
        return Ok(());
    }
    setup::apply(&actions).map_err(|e| anyhow::anyhow!("setup-host: {e}"))?;
    let after = HostState::read(&paths, &pcis);
    let left = setup::plan(&cfg, &after, &paths);
    anyhow::ensure!(
        left.is_empty(),
        "setup-host: the host still needs: {}",
        left.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!(
        "setup-host: {} x 2 MB hugepages, NICs {} on {}",
        after.hugepages_total,
        if pcis.is_empty() {
            "(none)".to_string()
        } else {
            pcis.join(", ")
        },
        setup::driver_summary(&after)
    );
    Ok(())
}
