//! check-host and setup-host on fake sysfs/procfs trees.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::setup::{persist_plan, plan, Action};
use super::*;

/// A scratch host root, removed on drop.
struct FakeHost {
    root: PathBuf,
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

const LAN: &str = "0000:00:04.0";
const WAN: &str = "0000:00:05.0";

impl FakeHost {
    fn new() -> FakeHost {
        static N: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "s2ds-fakehost-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        let h = FakeHost { root };
        h.file(
            "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
            "0\n",
        );
        h.file(
            "sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
            "0\n",
        );
        fs::create_dir_all(h.root.join("sys/kernel/iommu_groups")).unwrap();
        h.file("proc/mounts", "sysfs /sys sysfs rw 0 0\n");
        h.file(
            "proc/cpuinfo",
            "processor\t: 0\nflags\t\t: fpu sse2 aes pclmulqdq avx2\n",
        );
        h.file(
            "proc/self/limits",
            "Max locked memory         8388608              8388608              bytes\n",
        );
        h.file("proc/self/status", "CapEff:\t0000000000000000\n");
        h.file("proc/sys/kernel/osrelease", "6.1.0-27-amd64\n");
        h.file("sys/devices/system/cpu/isolated", "\n");
        h
    }

    fn file(&self, rel: &str, text: &str) {
        let p = self.root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    /// A virtio-net PCI function bound to `driver` (None: unbound), with
    /// its netdev under virtio0/net while a kernel driver holds it.
    fn nic(&self, pci: &str, driver: Option<&str>, iface: Option<&str>) {
        let dev = self.root.join("sys/bus/pci/devices").join(pci);
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("numa_node"), "-1\n").unwrap();
        if let Some(d) = driver {
            let drv = self.root.join("sys/bus/pci/drivers").join(d);
            fs::create_dir_all(&drv).unwrap();
            std::os::unix::fs::symlink(&drv, dev.join("driver")).unwrap();
        }
        if let Some(i) = iface {
            fs::create_dir_all(dev.join("virtio0/net").join(i)).unwrap();
        }
    }

    fn paths(&self) -> HostPaths {
        HostPaths::under(&self.root)
    }

    fn state(&self) -> HostState {
        HostState::read(&self.paths(), &[LAN.to_string(), WAN.to_string()])
    }
}

/// The VM testbed's gateway: two virtio PCI NICs, 4095-mbuf pools, EAL -m 256.
fn vm_config() -> Config {
    let text = format!(
        r#"[gateway]
name = "gwa"
[workers]
cores = [0]
poll_mode = "adaptive"
[dpdk]
eal_args = ["-m", "256", "--huge-dir", "/dev/hugepages"]
mempool_size = 4095
[ports.lan]
backend = "dpdk"
device = "{LAN}"
address = "10.10.1.1/24"
[ports.wan]
backend = "dpdk"
device = "{WAN}"
address = "10.10.100.1/24"
"#
    );
    Config::from_toml(&text, Path::new("gwa.toml")).expect("valid config")
}

fn line<'a>(fs: &'a [Finding], what: &str) -> &'a Finding {
    fs.iter()
        .find(|f| f.what == what)
        .unwrap_or_else(|| panic!("no {what} line in {fs:#?}"))
}

#[test]
fn hugepages_from_the_pools_and_eal_memory() {
    // EAL -m 256 outweighs the pools (2 x 4095 x 2368 B = 19 MB + 64 MB),
    // plus a quarter: 320 MB = 160 pages.
    assert_eq!(hugepages_needed(&vm_config()), 160);
}

#[test]
fn no_hugepages_and_an_unbound_nic_name_both_problems_and_their_fixes() {
    let h = FakeHost::new();
    h.nic(LAN, Some("virtio-pci"), Some("eth1"));
    h.nic(WAN, Some("uio_pci_generic"), None);
    let cfg = vm_config();
    let f = check(&cfg, Path::new("/etc/scistream/gwa.toml"), &h.state());
    let hp = line(&f, "hugepages");
    assert_eq!(hp.status, Status::Fail);
    assert_eq!(hp.detail, "0 x 2 MB reserved, the configuration needs 160");
    assert_eq!(
        hp.fix.as_deref(),
        Some("s2ds setup-host /etc/scistream/gwa.toml (or: echo 160 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)")
    );
    let lan = line(&f, "nic 0000:00:04.0");
    assert_eq!(lan.status, Status::Fail);
    assert_eq!(
        lan.detail,
        "bound to kernel driver virtio-pci (interface eth1), not to a DPDK driver"
    );
    assert_eq!(
        lan.fix.as_deref(),
        Some("s2ds setup-host /etc/scistream/gwa.toml (or: dpdk-devbind.py -b uio_pci_generic 0000:00:04.0)")
    );
    assert_eq!(line(&f, "nic 0000:00:05.0").status, Status::Ok);
    // No IOMMU, no vfio no-IOMMU mode: uio_pci_generic, warned.
    assert_eq!(line(&f, "iommu").status, Status::Warn);
    // The screen names both, each with its fix under it.
    let screen = render(&f);
    assert!(screen.contains("FAIL  hugepages"), "{screen}");
    assert!(screen.contains("FAIL  nic 0000:00:04.0"), "{screen}");
    assert_eq!(
        screen.matches("fix: s2ds setup-host").count(),
        2,
        "{screen}"
    );
}

#[test]
fn a_prepared_host_has_no_failures() {
    let h = FakeHost::new();
    h.nic(LAN, Some("uio_pci_generic"), None);
    h.nic(WAN, Some("uio_pci_generic"), None);
    h.file(
        "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
        "160\n",
    );
    h.file(
        "proc/mounts",
        "nodev /dev/hugepages hugetlbfs rw,pagesize=2M 0 0\n",
    );
    h.file("proc/self/status", "CapEff:\t000001ffffffffff\n");
    let f = check(&vm_config(), Path::new("gwa.toml"), &h.state());
    assert!(f.iter().all(|x| x.status != Status::Fail), "{f:#?}");
    assert_eq!(
        line(&f, "memlock").detail,
        "CAP_IPC_LOCK held: mlock is not limited"
    );
    assert_eq!(line(&f, "aes").status, Status::Ok);
    assert_eq!(
        line(&f, "kernel").detail,
        "6.1.0-27-amd64 (AF_XDP not used)"
    );
}

#[test]
fn a_small_memlock_without_cap_ipc_lock_is_warned() {
    let h = FakeHost::new();
    let f = check(&vm_config(), Path::new("gwa.toml"), &h.state());
    let m = line(&f, "memlock");
    assert_eq!(m.status, Status::Warn);
    assert_eq!(
        m.detail,
        "8192 kB: too small to mlock the shared-memory region"
    );
}

#[test]
fn workers_off_the_nic_numa_node_are_warned() {
    let h = FakeHost::new();
    h.nic(LAN, Some("vfio-pci"), None);
    h.nic(WAN, Some("vfio-pci"), None);
    h.file("sys/bus/pci/devices/0000:00:04.0/numa_node", "1\n");
    h.file("sys/devices/system/node/node0/cpulist", "0-3\n");
    h.file("sys/devices/system/node/node1/cpulist", "4-7\n");
    let f = check(&vm_config(), Path::new("gwa.toml"), &h.state());
    let n = line(&f, "numa");
    assert_eq!(n.status, Status::Warn);
    assert_eq!(n.detail, "the NICs are on node 1, worker core(s) 0 are not");
    assert_eq!(
        n.fix.as_deref(),
        Some("[workers] cores from /sys/devices/system/node/node1/cpulist")
    );
}

#[test]
fn setup_plan_reserves_mounts_and_binds_with_uio_without_noiommu() {
    let h = FakeHost::new();
    h.nic(LAN, Some("virtio-pci"), Some("eth1"));
    h.nic(WAN, None, None);
    let p = h.paths();
    let dev = |pci: &str, attr: &str| p.sys.join("bus/pci/devices").join(pci).join(attr);
    let w = |path: PathBuf, v: &str| Action::Write {
        path,
        value: v.into(),
    };
    let r = |a: &[&str]| Action::Run(a.iter().map(|s| s.to_string()).collect());
    assert_eq!(
        plan(&vm_config(), &h.state(), &p),
        vec![
            w(
                p.sys
                    .join("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"),
                "160"
            ),
            Action::Mkdir("/dev/hugepages".into()),
            r(&[
                "mount",
                "-t",
                "hugetlbfs",
                "-o",
                "pagesize=2M",
                "nodev",
                "/dev/hugepages"
            ]),
            r(&["modprobe", "uio_pci_generic"]),
            w(dev(LAN, "driver_override"), "uio_pci_generic"),
            w(dev(LAN, "driver/unbind"), LAN),
            w(p.sys.join("bus/pci/drivers_probe"), LAN),
            w(dev(WAN, "driver_override"), "uio_pci_generic"),
            w(p.sys.join("bus/pci/drivers_probe"), WAN),
        ]
    );
    assert!(setup::dma_warning(&h.state())
        .unwrap()
        .contains("uio_pci_generic"));
}

#[test]
fn setup_plan_uses_vfio_noiommu_where_the_kernel_has_it_and_vfio_with_an_iommu() {
    let h = FakeHost::new();
    h.nic(LAN, Some("virtio-pci"), None);
    h.nic(WAN, Some("vfio-pci"), None);
    h.file(
        "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
        "512\n",
    );
    h.file("proc/mounts", "nodev /dev/hugepages hugetlbfs rw 0 0\n");
    h.file(
        "sys/module/vfio/parameters/enable_unsafe_noiommu_mode",
        "N\n",
    );
    let p = h.paths();
    let st = h.state();
    assert_eq!(choose_driver(&st), DriverChoice::VfioNoIommu);
    let actions = plan(&vm_config(), &st, &p);
    assert_eq!(
        actions[..2],
        [
            Action::Run(vec!["modprobe".into(), "vfio-pci".into()]),
            Action::Write {
                path: p
                    .sys
                    .join("module/vfio/parameters/enable_unsafe_noiommu_mode"),
                value: "1".into()
            },
        ]
    );
    assert_eq!(
        actions.len(),
        5,
        "only the LAN NIC is rebound: {actions:#?}"
    );
    assert!(setup::dma_warning(&st).unwrap().contains("UNSAFE no-IOMMU"));
    // An IOMMU: plain vfio-pci, no warning.
    fs::create_dir_all(h.root.join("sys/kernel/iommu_groups/0")).unwrap();
    let st = h.state();
    assert_eq!(choose_driver(&st), DriverChoice::Vfio);
    assert_eq!(setup::dma_warning(&st), None);
    assert_eq!(
        line(&check(&vm_config(), Path::new("c"), &st), "iommu").status,
        Status::Ok
    );
}

#[test]
fn a_prepared_host_needs_no_changes() {
    let h = FakeHost::new();
    h.nic(LAN, Some("uio_pci_generic"), None);
    h.nic(WAN, Some("uio_pci_generic"), None);
    h.file(
        "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
        "160\n",
    );
    h.file("proc/mounts", "nodev /dev/hugepages hugetlbfs rw 0 0\n");
    assert_eq!(plan(&vm_config(), &h.state(), &h.paths()), vec![]);
}

#[test]
fn persist_writes_sysctl_modules_and_enables_the_host_unit() {
    let h = FakeHost::new();
    h.nic(LAN, Some("virtio-pci"), None);
    h.nic(WAN, Some("virtio-pci"), None);
    let p = h.paths();
    let actions = persist_plan(&vm_config(), &h.state(), &p, "gwa");
    setup::apply(&actions).unwrap();
    assert_eq!(
        fs::read_to_string(p.etc.join("sysctl.d/60-scistream-gwa.conf")).unwrap(),
        "# s2ds setup-host --persist (gwa)\nvm.nr_hugepages = 160\n"
    );
    assert_eq!(
        fs::read_to_string(p.etc.join("modules-load.d/60-scistream-gwa.conf")).unwrap(),
        "# s2ds setup-host --persist (gwa)\nuio_pci_generic\n"
    );
    assert!(!p.etc.join("modprobe.d").exists());
    assert_eq!(
        fs::read_link(
            p.etc
                .join("systemd/system/multi-user.target.wants/s2ds-host@gwa.service")
        )
        .unwrap(),
        Path::new("/lib/systemd/system/s2ds-host@.service")
    );
}
