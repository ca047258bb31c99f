//! NIC binding for DPDK: which userspace I/O driver a NIC needs on this
//! host, and whether it has it. The choice is the VM testbed's
//! (scripts/vm/provision.sh before it called `setup-host`):
//! - an IOMMU in use: vfio-pci;
//! - no IOMMU, a kernel whose vfio has no-IOMMU mode: vfio-pci in no-IOMMU
//!   mode (no DMA isolation: warned loudly);
//! - no IOMMU and no no-IOMMU mode (Debian 12's kernel): uio_pci_generic.

use super::{Finding, HostState, NicState, Status};

/// The driver a NIC should be bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverChoice {
    /// vfio-pci behind an IOMMU.
    Vfio,
    /// vfio-pci with `enable_unsafe_noiommu_mode=1`.
    VfioNoIommu,
    /// uio_pci_generic (INTx; no DMA isolation).
    UioPciGeneric,
}

impl DriverChoice {
    /// The kernel driver's name.
    pub fn driver(self) -> &'static str {
        match self {
            DriverChoice::Vfio | DriverChoice::VfioNoIommu => "vfio-pci",
            DriverChoice::UioPciGeneric => "uio_pci_generic",
        }
    }

    /// The module that provides it.
    pub fn module(self) -> &'static str {
        match self {
            DriverChoice::Vfio | DriverChoice::VfioNoIommu => "vfio-pci",
            DriverChoice::UioPciGeneric => "uio_pci_generic",
        }
    }
}

/// The driver for this host (see the module comment).
pub fn choose_driver(st: &HostState) -> DriverChoice {
    if st.iommu_groups > 0 {
        DriverChoice::Vfio
    } else if st.vfio_noiommu_param {
        DriverChoice::VfioNoIommu
    } else {
        DriverChoice::UioPciGeneric
    }
}

fn is_dpdk_driver(d: &str) -> bool {
    matches!(d, "vfio-pci" | "uio_pci_generic" | "igb_uio")
}

/// The IOMMU line.
pub fn iommu_finding(st: &HostState) -> Finding {
    let fix = "enable VT-d / AMD-Vi in the firmware and boot with intel_iommu=on iommu=pt (or amd_iommu=on)";
    match choose_driver(st) {
        DriverChoice::Vfio => Finding::ok(
            "iommu",
            format!("{} IOMMU groups: vfio-pci isolates the NICs' DMA", st.iommu_groups),
        ),
        DriverChoice::VfioNoIommu => Finding::bad(
            Status::Warn,
            "iommu",
            "no IOMMU: vfio-pci in UNSAFE no-IOMMU mode, the NICs can DMA anywhere in memory",
            fix,
        ),
        DriverChoice::UioPciGeneric => Finding::bad(
            Status::Warn,
            "iommu",
            "no IOMMU and no vfio no-IOMMU mode in this kernel: uio_pci_generic, the NICs can DMA anywhere in memory",
            fix,
        ),
    }
}

/// One NIC's line.
pub fn nic_finding(nic: &NicState, st: &HostState) -> Finding {
    let what = format!("nic {}", nic.pci);
    if !nic.present {
        return Finding::bad(
            Status::Fail,
            what,
            "no such PCI device",
            "lspci -D | grep -i ethernet, then fix the port's device in the configuration",
        );
    }
    let want = choose_driver(st).driver();
    match nic.driver.as_deref() {
        Some(d) if is_dpdk_driver(d) => Finding::ok(what, format!("bound to {d}")),
        other => Finding::bad(
            Status::Fail,
            what,
            match (other, &nic.interface) {
                (Some(d), Some(i)) => {
                    format!("bound to kernel driver {d} (interface {i}), not to a DPDK driver")
                }
                (Some(d), None) => format!("bound to kernel driver {d}, not to a DPDK driver"),
                (None, _) => "bound to no driver".to_string(),
            },
            format!(
                "s2ds setup-host CONFIG (or: dpdk-devbind.py -b {want} {})",
                nic.pci
            ),
        ),
    }
}
