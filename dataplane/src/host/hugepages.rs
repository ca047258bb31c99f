//! How many 2 MB hugepages a configuration needs, and whether the host has
//! them.
//!
//! Need = the larger of what EAL is told to take (`-m MB` or the sum of
//! `--socket-mem`) and the two ports' mbuf pools plus 64 MB for EAL's own
//! structures and the rings, with a quarter on top for fragmentation, in
//! 2 MB pages.

use super::{Finding, HostState, Status};
use crate::config::Config;

/// The hugepage size `setup-host` reserves, in kB.
pub const HUGEPAGE_KB: u64 = 2048;
const MB: u64 = 1 << 20;
/// EAL's memzones, the rings and the per-lcore caches' slack.
const EAL_OVERHEAD_MB: u64 = 64;
/// mbuf header (`struct rte_mbuf`, two cache lines) and the mempool's
/// per-object header and trailer.
const MBUF_OVERHEAD: u64 = 128 + 64;
/// DPDK's RTE_PKTMBUF_HEADROOM and default buffer size, as Debian builds it.
const PKTMBUF_HEADROOM: u64 = 128;
const MBUF_DEFAULT_BUF_SIZE: u64 = 2048 + PKTMBUF_HEADROOM;

/// The MB EAL's arguments ask for (`-m N`, `--socket-mem a,b`), if any.
fn eal_memory_mb(args: &[String]) -> Option<u64> {
    let mut it = args.iter();
    let mut total = None;
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        if flag == "-m" || flag == "--socket-mem" {
            let v = inline.or_else(|| it.next().cloned())?;
            let mb: u64 = v
                .split(',')
                .filter_map(|x| x.trim().parse::<u64>().ok())
                .sum();
            total = Some(total.unwrap_or(0) + mb);
        }
    }
    total
}

/// 2 MB hugepages `cfg` needs (0 without DPDK ports).
pub fn hugepages_needed(cfg: &Config) -> u64 {
    let Some(dpdk) = cfg.dpdk.as_ref().filter(|_| cfg.ports.use_dpdk()) else {
        return 0;
    };
    let mut pools = 0u64;
    for p in [&cfg.ports.lan, &cfg.ports.wan] {
        let room = (PKTMBUF_HEADROOM + u64::from(p.mtu) + 18 + 64).max(MBUF_DEFAULT_BUF_SIZE)
            + MBUF_OVERHEAD;
        pools += u64::from(dpdk.mempool_size) * room;
    }
    let computed = pools.div_ceil(MB) + EAL_OVERHEAD_MB;
    let mb = eal_memory_mb(&dpdk.eal_args).map_or(computed, |m| m.max(computed));
    (mb + mb / 4).div_ceil(HUGEPAGE_KB / 1024)
}

/// The hugepages line of `check-host`.
pub fn finding(cfg: &Config, st: &HostState) -> Finding {
    let need = hugepages_needed(cfg);
    let what = "hugepages";
    if st.hugepages_total < need {
        return Finding::bad(
            Status::Fail,
            what,
            format!(
                "{} x 2 MB reserved, the configuration needs {need}",
                st.hugepages_total
            ),
            format!("s2ds setup-host CONFIG (or: echo {need} > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)"),
        );
    }
    if st.hugetlbfs_mounts.is_empty() {
        return Finding::bad(
            Status::Fail,
            what,
            format!(
                "{} x 2 MB reserved, but no hugetlbfs mounted",
                st.hugepages_total
            ),
            "s2ds setup-host CONFIG (or: mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages)",
        );
    }
    Finding::ok(
        what,
        format!(
            "{} x 2 MB reserved ({} free), {need} needed; hugetlbfs on {}",
            st.hugepages_total,
            st.hugepages_free,
            st.hugetlbfs_mounts.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eal_memory_flags() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(eal_memory_mb(&v(&["-m", "256"])), Some(256));
        assert_eq!(
            eal_memory_mb(&v(&["--socket-mem", "1024,1024"])),
            Some(2048)
        );
        assert_eq!(eal_memory_mb(&v(&["--socket-mem=512"])), Some(512));
        assert_eq!(eal_memory_mb(&v(&["--file-prefix=x"])), None);
    }
}
