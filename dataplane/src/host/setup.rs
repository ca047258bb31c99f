//! `s2ds setup-host`: the changes that make a host fit a configuration, as
//! a list of [`Action`]s planned from the [`HostState`] (pure, tested) and
//! then applied. `--persist` plans the drop-ins that redo them at boot.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::pci::{choose_driver, DriverChoice};
use super::{hugepages_needed, HostPaths, HostState};
use crate::config::Config;

/// Where hugetlbfs is mounted when none is (systemd's dev-hugepages.mount
/// uses the same place).
pub const HUGETLBFS_DIR: &str = "/dev/hugepages";
/// The unit `--persist` enables (shipped in the scistream-gateway package).
pub const HOST_UNIT: &str = "s2ds-host@.service";
/// Where the package installs units.
pub const UNIT_DIR: &str = "/lib/systemd/system";

/// One change to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write `value` to a sysfs attribute or a file.
    Write {
        /// The file.
        path: PathBuf,
        /// What to write.
        value: String,
    },
    /// Create a directory (and its parents).
    Mkdir(PathBuf),
    /// A symlink `link` → `target` (replaced if present).
    Symlink {
        /// The link.
        link: PathBuf,
        /// What it points to.
        target: PathBuf,
    },
    /// Run a command; its failure fails the set-up.
    Run(Vec<String>),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Write { path, value } => {
                write!(f, "write {:?} to {}", value.trim_end(), path.display())
            }
            Action::Mkdir(p) => write!(f, "mkdir -p {}", p.display()),
            Action::Symlink { link, target } => {
                write!(f, "ln -sf {} {}", target.display(), link.display())
            }
            Action::Run(argv) => f.write_str(&argv.join(" ")),
        }
    }
}

fn run(argv: &[&str]) -> Action {
    Action::Run(argv.iter().map(|s| s.to_string()).collect())
}

fn write(path: PathBuf, value: impl Into<String>) -> Action {
    Action::Write {
        path,
        value: value.into(),
    }
}

/// The loud warning for a NIC binding without DMA isolation, if any.
pub fn dma_warning(st: &HostState) -> Option<String> {
    match choose_driver(st) {
        DriverChoice::Vfio => None,
        DriverChoice::VfioNoIommu => Some(
            "WARNING: no IOMMU: binding the NICs to vfio-pci in UNSAFE no-IOMMU mode. \
             The NICs (and s2ds) can DMA anywhere in memory; enable the IOMMU for production."
                .into(),
        ),
        DriverChoice::UioPciGeneric => Some(
            "WARNING: no IOMMU and this kernel has no vfio no-IOMMU mode: binding the NICs to \
             uio_pci_generic. The NICs (and s2ds) can DMA anywhere in memory; enable the IOMMU \
             for production."
                .into(),
        ),
    }
}

/// The changes that give `cfg` its hugepages and NIC bindings on a host in `st`.
pub fn plan(cfg: &Config, st: &HostState, paths: &HostPaths) -> Vec<Action> {
    let mut out = Vec::new();
    let need = hugepages_needed(cfg);
    if st.hugepages_total < need {
        out.push(write(
            paths
                .sys
                .join("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"),
            need.to_string(),
        ));
    }
    if need > 0 && st.hugetlbfs_mounts.is_empty() {
        out.push(Action::Mkdir(HUGETLBFS_DIR.into()));
        out.push(run(&[
            "mount",
            "-t",
            "hugetlbfs",
            "-o",
            "pagesize=2M",
            "nodev",
            HUGETLBFS_DIR,
        ]));
    }
    let choice = choose_driver(st);
    let unbound: Vec<_> = st
        .nics
        .iter()
        .filter(|n| n.present && n.driver.as_deref() != Some(choice.driver()))
        .collect();
    if unbound.is_empty() {
        return out;
    }
    out.push(run(&["modprobe", choice.module()]));
    if choice == DriverChoice::VfioNoIommu && !st.vfio_noiommu_on {
        out.push(write(
            paths
                .sys
                .join("module/vfio/parameters/enable_unsafe_noiommu_mode"),
            "1",
        ));
    }
    for nic in unbound {
        let dev = paths.sys.join("bus/pci/devices").join(&nic.pci);
        out.push(write(dev.join("driver_override"), choice.driver()));
        if nic.driver.is_some() {
            out.push(write(dev.join("driver/unbind"), nic.pci.clone()));
        }
        out.push(write(
            paths.sys.join("bus/pci/drivers_probe"),
            nic.pci.clone(),
        ));
    }
    out
}

/// The instance name of a configuration file: its stem (/etc/scistream/gwa.toml → gwa).
pub fn instance_name(config: &Path) -> String {
    config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "default".into())
}

/// The drop-ins that redo the set-up at boot, for the instance `name`:
/// the hugepage count (sysctl.d: reserved early, before memory fragments),
/// the driver module (modules-load.d), vfio's no-IOMMU mode (modprobe.d)
/// where it is used, and `s2ds-host@NAME.service` enabled (it runs
/// `s2ds setup-host /etc/scistream/NAME.toml` before `s2ds@NAME`).
pub fn persist_plan(cfg: &Config, st: &HostState, paths: &HostPaths, name: &str) -> Vec<Action> {
    let mut out = Vec::new();
    let need = hugepages_needed(cfg);
    let file = format!("60-scistream-{name}.conf");
    if need > 0 {
        out.push(Action::Mkdir(paths.etc.join("sysctl.d")));
        out.push(write(
            paths.etc.join("sysctl.d").join(&file),
            format!("# s2ds setup-host --persist ({name})\nvm.nr_hugepages = {need}\n"),
        ));
    }
    let choice = choose_driver(st);
    if !st.nics.is_empty() {
        out.push(Action::Mkdir(paths.etc.join("modules-load.d")));
        out.push(write(
            paths.etc.join("modules-load.d").join(&file),
            format!(
                "# s2ds setup-host --persist ({name})\n{}\n",
                choice.module()
            ),
        ));
        if choice == DriverChoice::VfioNoIommu {
            out.push(Action::Mkdir(paths.etc.join("modprobe.d")));
            out.push(write(
                paths.etc.join("modprobe.d").join(&file),
                format!(
                    "# s2ds setup-host --persist ({name}): no IOMMU, UNSAFE\noptions vfio enable_unsafe_noiommu_mode=1\n"
                ),
            ));
        }
    }
    let wants = paths.etc.join("systemd/system/multi-user.target.wants");
    out.push(Action::Mkdir(wants.clone()));
    out.push(Action::Symlink {
        link: wants.join(format!("s2ds-host@{name}.service")),
        target: Path::new(UNIT_DIR).join(HOST_UNIT),
    });
    out
}

/// Carries out `actions` in order; the first failure stops and is returned,
/// naming the action.
pub fn apply(actions: &[Action]) -> Result<(), String> {
    for a in actions {
        let r = match a {
            Action::Write { path, value } => fs::write(path, value).map_err(|e| e.to_string()),
            Action::Mkdir(p) => fs::create_dir_all(p).map_err(|e| e.to_string()),
            Action::Symlink { link, target } => {
                let _ = fs::remove_file(link);
                std::os::unix::fs::symlink(target, link).map_err(|e| e.to_string())
            }
            Action::Run(argv) => match Command::new(&argv[0]).args(&argv[1..]).status() {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(format!("exited with {s}")),
                Err(e) => Err(e.to_string()),
            },
        };
        r.map_err(|e| format!("{a}: {e}"))?;
    }
    Ok(())
}

/// Before reading the host for a plan: without an IOMMU, load vfio with
/// no-IOMMU mode asked for, so that its parameter shows whether this
/// kernel has the mode at all (Debian 12's has not). Failure is an answer,
/// not an error.
pub fn probe_vfio(st: &HostState) {
    if st.iommu_groups == 0 && !st.vfio_noiommu_param && !st.nics.is_empty() {
        let _ = Command::new("modprobe")
            .args(["vfio", "enable_unsafe_noiommu_mode=1"])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The driver(s) the NICs are on now ("uio_pci_generic"), for the summary line.
pub fn driver_summary(st: &HostState) -> String {
    let mut d: Vec<&str> = st.nics.iter().filter_map(|n| n.driver.as_deref()).collect();
    d.dedup();
    if d.is_empty() {
        "no driver".into()
    } else {
        d.join(", ")
    }
}
