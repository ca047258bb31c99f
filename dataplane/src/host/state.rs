//! What the host looks like, read from sysfs and procfs under [`HostPaths`].
//! Missing files read as "absent", never as errors: a host without NUMA or
//! without the vfio module is a state to judge, not a failure to read.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::HostPaths;

/// One configured PCI NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicState {
    /// Its PCI address ("0000:00:04.0").
    pub pci: String,
    /// False if sysfs has no such device.
    pub present: bool,
    /// The driver bound to it, if any ("virtio-pci", "vfio-pci", ...).
    pub driver: Option<String>,
    /// Its NUMA node (None: unknown or -1, a host without NUMA).
    pub numa_node: Option<u32>,
    /// Its kernel interface while a kernel driver owns it.
    pub interface: Option<String>,
}

/// The host, as far as the checks and the set-up need it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostState {
    /// 2 MB hugepages reserved (`nr_hugepages`).
    pub hugepages_total: u64,
    /// Of those, free.
    pub hugepages_free: u64,
    /// Mount points of hugetlbfs file systems.
    pub hugetlbfs_mounts: Vec<String>,
    /// Entries in /sys/kernel/iommu_groups (0: no IOMMU in use).
    pub iommu_groups: usize,
    /// vfio is loaded with an `enable_unsafe_noiommu_mode` parameter
    /// (a kernel built with CONFIG_VFIO_NOIOMMU).
    pub vfio_noiommu_param: bool,
    /// ... and it is on.
    pub vfio_noiommu_on: bool,
    /// The configured PCI NICs.
    pub nics: Vec<NicState>,
    /// CPU flags of the first processor in /proc/cpuinfo.
    pub cpu_flags: Vec<String>,
    /// Cores isolated from the scheduler (isolcpus).
    pub isolated: Vec<usize>,
    /// NUMA node of each core (empty on a host without NUMA information).
    pub core_node: BTreeMap<usize, u32>,
    /// RLIMIT_MEMLOCK of this process in bytes; None = unlimited.
    pub memlock: Option<u64>,
    /// This process holds CAP_IPC_LOCK (mlock is then not limited).
    pub cap_ipc_lock: bool,
    /// The running kernel's release ("6.1.0-27-amd64").
    pub kernel: String,
}

fn read(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn read_u64(p: &Path) -> u64 {
    read(p).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The last component of a symlink's target (a driver's or device's name).
fn link_name(p: &Path) -> Option<String> {
    fs::read_link(p)
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Parses a kernel cpulist ("0-3,8,10-11"); bad parts are skipped.
pub fn parse_cpulist(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}

impl HostState {
    /// Reads the host for the NICs `pcis`.
    pub fn read(paths: &HostPaths, pcis: &[String]) -> HostState {
        let hp = paths.sys.join("kernel/mm/hugepages/hugepages-2048kB");
        let hugetlbfs_mounts = read(&paths.proc.join("mounts"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 2 && f[2] == "hugetlbfs").then(|| f[1].to_string())
            })
            .collect();
        let iommu_groups = fs::read_dir(paths.sys.join("kernel/iommu_groups"))
            .map(|d| d.count())
            .unwrap_or(0);
        let noiommu = paths
            .sys
            .join("module/vfio/parameters/enable_unsafe_noiommu_mode");
        let nics = pcis.iter().map(|p| read_nic(paths, p)).collect();
        let cpu_flags = read(&paths.proc.join("cpuinfo"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("flags"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, f)| f.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let isolated = parse_cpulist(
            &read(&paths.sys.join("devices/system/cpu/isolated")).unwrap_or_default(),
        );
        let mut core_node = BTreeMap::new();
        if let Ok(dir) = fs::read_dir(paths.sys.join("devices/system/node")) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(node) = name
                    .strip_prefix("node")
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                for c in parse_cpulist(&read(&e.path().join("cpulist")).unwrap_or_default()) {
                    core_node.insert(c, node);
                }
            }
        }
        let limits = read(&paths.proc.join("self/limits")).unwrap_or_default();
        let memlock = parse_memlock(&limits);
        let cap_ipc_lock = read(&paths.proc.join("self/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|caps| caps & (1 << 14) != 0);
        HostState {
            hugepages_total: read_u64(&hp.join("nr_hugepages")),
            hugepages_free: read_u64(&hp.join("free_hugepages")),
            hugetlbfs_mounts,
            iommu_groups,
            vfio_noiommu_param: noiommu.exists(),
            vfio_noiommu_on: read(&noiommu).is_some_and(|v| v == "Y" || v == "1"),
            nics,
            cpu_flags,
            isolated,
            core_node,
            memlock: memlock.unwrap_or(Some(0)),
            cap_ipc_lock,
            kernel: read(&paths.proc.join("sys/kernel/osrelease")).unwrap_or_default(),
        }
    }

    /// True if the CPU reports flag `f` ("aes", "vaes", ...).
    pub fn has_flag(&self, f: &str) -> bool {
        self.cpu_flags.iter().any(|x| x == f)
    }
}

/// The soft "Max locked memory" of /proc/self/limits: Some(None) unlimited,
/// Some(Some(bytes)), None if the line is missing.
fn parse_memlock(limits: &str) -> Option<Option<u64>> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))?;
    let soft = line
        .trim_start_matches("Max locked memory")
        .split_whitespace()
        .next()?;
    Some(if soft == "unlimited" {
        None
    } else {
        Some(soft.parse().ok()?)
    })
}

fn read_nic(paths: &HostPaths, pci: &str) -> NicState {
    let dev = paths.sys.join("bus/pci/devices").join(pci);
    let interface = fs::read_dir(dev.join("net"))
        .ok()
        .or_else(|| {
            // virtio-net: the netdev hangs off the virtioN child device.
            fs::read_dir(&dev).ok()?.flatten().find_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("virtio")
                    .then(|| fs::read_dir(e.path().join("net")).ok())
                    .flatten()
            })
        })
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned());
    NicState {
        pci: pci.to_string(),
        present: dev.exists(),
        driver: link_name(&dev.join("driver")),
        numa_node: read(&dev.join("numa_node"))
            .and_then(|n| n.parse::<i64>().ok())
            .and_then(|n| u32::try_from(n).ok()),
        interface,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpulists() {
        assert_eq!(parse_cpulist("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpulist(""), Vec::<usize>::new());
    }

    #[test]
    fn memlock_lines() {
        let l = "Limit                     Soft Limit           Hard Limit           Units\n\
                 Max locked memory         8388608              8388608              bytes\n";
        assert_eq!(parse_memlock(l), Some(Some(8_388_608)));
        let u = "Max locked memory         unlimited            unlimited            bytes\n";
        assert_eq!(parse_memlock(u), Some(None));
    }
}
