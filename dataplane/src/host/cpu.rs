//! The CPU and process lines of `check-host`: NUMA placement, isolated
//! cores, AES-NI/VAES, the memlock limit, the kernel release for AF_XDP.

use super::{Finding, HostState, Status};
use crate::config::{Backend, Config, PollMode};

/// The kernel AF_XDP needs (`need_wakeup` and shared UMEM arrived in 5.4).
const AF_XDP_KERNEL: (u32, u32) = (5, 4);
/// Below this RLIMIT_MEMLOCK, mlock of the shared-memory region fails.
const MEMLOCK_MIN: u64 = 64 << 20;

/// NUMA: the workers should sit on the NICs' node. None when the host
/// reports no NUMA placement for the NICs (a single node).
pub fn numa_finding(cfg: &Config, st: &HostState) -> Option<Finding> {
    let nodes: Vec<u32> = st.nics.iter().filter_map(|n| n.numa_node).collect();
    let Some(&node) = nodes.first() else {
        return Some(Finding::ok(
            "numa",
            "the NICs report no NUMA node (one node)",
        ));
    };
    let far: Vec<String> = cfg
        .workers
        .cores
        .iter()
        .filter(|c| st.core_node.get(c).is_some_and(|&n| n != node))
        .map(|c| c.to_string())
        .collect();
    Some(if far.is_empty() {
        Finding::ok("numa", format!("NICs and worker cores on node {node}"))
    } else {
        Finding::bad(
            Status::Warn,
            "numa",
            format!(
                "the NICs are on node {node}, worker core(s) {} are not",
                far.join(",")
            ),
            format!("[workers] cores from /sys/devices/system/node/node{node}/cpulist"),
        )
    })
}

/// Isolated worker cores (busy polling only: adaptive polling sleeps).
pub fn isolated_finding(cfg: &Config, st: &HostState) -> Finding {
    if cfg.workers.poll_mode == PollMode::Adaptive {
        return Finding::ok(
            "isolated cores",
            "adaptive polling: the workers sleep when idle",
        );
    }
    let missing: Vec<String> = cfg
        .workers
        .cores
        .iter()
        .filter(|c| !st.isolated.contains(c))
        .map(|c| c.to_string())
        .collect();
    if missing.is_empty() {
        return Finding::ok("isolated cores", "every worker core is isolated");
    }
    let list = missing.join(",");
    Finding::bad(
        Status::Warn,
        "isolated cores",
        format!("worker core(s) {list} are not isolated: the scheduler may run other tasks there"),
        format!("boot with isolcpus={list} nohz_full={list} (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub)"),
    )
}

/// AES-NI (and VAES, the wide form ipsec-mb uses).
pub fn aes_finding(st: &HostState) -> Finding {
    match (
        st.has_flag("aes"),
        st.has_flag("vaes") && st.has_flag("vpclmulqdq"),
    ) {
        (true, true) => Finding::ok("aes", "AES-NI and VAES/VPCLMULQDQ"),
        (true, false) => Finding::ok("aes", "AES-NI (no VAES: ipsec-mb uses its SSE/AVX2 paths)"),
        (false, _) => Finding::bad(
            Status::Warn,
            "aes",
            "no AES-NI: AES-GCM in software, a fraction of the rate",
            "a CPU with AES-NI (in a VM: qemu -cpu host, or a CPU model with +aes)",
        ),
    }
}

/// RLIMIT_MEMLOCK (s2ds mlocks the shared-memory region and its stats).
pub fn memlock_finding(st: &HostState) -> Finding {
    let what = "memlock";
    if st.cap_ipc_lock {
        return Finding::ok(what, "CAP_IPC_LOCK held: mlock is not limited");
    }
    match st.memlock {
        None => Finding::ok(what, "unlimited"),
        Some(b) if b >= MEMLOCK_MIN => Finding::ok(what, format!("{} MB", b >> 20)),
        Some(b) => Finding::bad(
            Status::Warn,
            what,
            format!(
                "{} kB: too small to mlock the shared-memory region",
                b >> 10
            ),
            "the s2ds@ and s2cs@ units set LimitMEMLOCK=infinity; in a shell: ulimit -l unlimited",
        ),
    }
}

fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The kernel release, judged for AF_XDP when a port uses it.
pub fn kernel_finding(cfg: &Config, st: &HostState) -> Finding {
    let af_xdp = [&cfg.ports.lan, &cfg.ports.wan]
        .iter()
        .any(|p| matches!(p.backend, Backend::AfXdp { .. }));
    let v = kernel_version(&st.kernel);
    let (maj, min) = AF_XDP_KERNEL;
    match (af_xdp, v) {
        (false, _) => Finding::ok("kernel", format!("{} (AF_XDP not used)", st.kernel)),
        (true, Some(v)) if v >= AF_XDP_KERNEL => Finding::ok(
            "kernel",
            format!("{}: AF_XDP with need_wakeup (>= {maj}.{min})", st.kernel),
        ),
        (true, _) => Finding::bad(
            Status::Fail,
            "kernel",
            format!("{}: AF_XDP needs {maj}.{min} or later", st.kernel),
            "install a newer kernel (Debian 12: linux-image-amd64 is 6.1)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.1.0-27-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("4.19.0"), Some((4, 19)));
        assert_eq!(kernel_version(""), None);
    }
}
