//! Frames lost in the gateway host below the gateway's own code: in the
//! kernel's AF_XDP or AF_PACKET socket, in the kernel interface under it,
//! or in the NIC and its driver. Each backend
//! reports its own (cumulative, as the kernel or the device counts them);
//! each worker copies its queues' counts into its block of the stats
//! segment about twice a second, so `s2ds stats` and the metrics show
//! them beside the gateway's own drops (docs/metrics.md).

/// Why the host lost a frame before (or after) the gateway handled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum HostDrop {
    /// NIC: received frames dropped because the receive queue was full
    /// (DPDK `imissed`).
    NicRxMissed,
    /// NIC: erroneous frames received (DPDK `ierrors`).
    NicRxErrors,
    /// NIC: receive buffer allocation failures (DPDK `rx_nombuf`).
    NicRxNoBuffer,
    /// NIC: frames that failed to send (DPDK `oerrors`).
    NicTxErrors,
    /// AF_XDP: frames the kernel dropped for this socket (`rx_dropped`).
    XskRxDropped,
    /// AF_XDP: frames dropped because the socket's RX ring was full
    /// (`rx_ring_full`).
    XskRxRingFull,
    /// AF_XDP: times the fill ring was empty when a frame arrived
    /// (`rx_fill_ring_empty_descs`).
    XskFillRingEmpty,
    /// AF_XDP: invalid RX descriptors (`rx_invalid_descs`).
    XskRxInvalid,
    /// AF_XDP: invalid TX descriptors (`tx_invalid_descs`).
    XskTxInvalid,
    /// AF_XDP: times the TX ring was empty when the kernel looked
    /// (`tx_ring_empty_descs`).
    XskTxRingEmpty,
    /// The kernel interface under an AF_XDP or TAP port: frames it dropped
    /// on receive (`rx_dropped` + `rx_missed_errors` of its statistics; a
    /// NIC whose ring overflowed, a full backlog).
    NetdevRxDropped,
    /// The kernel interface under an AF_XDP or TAP port: frames it dropped
    /// on transmit (`tx_dropped`; on a TAP device, frames the kernel sent
    /// toward the gateway while its queue was full).
    NetdevTxDropped,
    /// The AF_PACKET sockets under a DPDK `net_af_packet` port: frames the
    /// kernel dropped because a socket's receive ring was full
    /// (`PACKET_STATISTICS` `tp_drops`; the PMD reports none itself).
    PacketRxDropped,
}

impl HostDrop {
    /// Number of reasons.
    pub const COUNT: usize = 13;
    /// Every reason, in index order.
    pub const ALL: [HostDrop; Self::COUNT] = [
        HostDrop::NicRxMissed,
        HostDrop::NicRxErrors,
        HostDrop::NicRxNoBuffer,
        HostDrop::NicTxErrors,
        HostDrop::XskRxDropped,
        HostDrop::XskRxRingFull,
        HostDrop::XskFillRingEmpty,
        HostDrop::XskRxInvalid,
        HostDrop::XskTxInvalid,
        HostDrop::XskTxRingEmpty,
        HostDrop::NetdevRxDropped,
        HostDrop::NetdevTxDropped,
        HostDrop::PacketRxDropped,
    ];

    /// The name in the stats segment (`<port>.host_<name>`), the snapshot
    /// and the metrics' `reason` label.
    pub const fn name(self) -> &'static str {
        match self {
            HostDrop::NicRxMissed => "nic_rx_missed",
            HostDrop::NicRxErrors => "nic_rx_errors",
            HostDrop::NicRxNoBuffer => "nic_rx_no_buffer",
            HostDrop::NicTxErrors => "nic_tx_errors",
            HostDrop::XskRxDropped => "xsk_rx_dropped",
            HostDrop::XskRxRingFull => "xsk_rx_ring_full",
            HostDrop::XskFillRingEmpty => "xsk_fill_ring_empty",
            HostDrop::XskRxInvalid => "xsk_rx_invalid",
            HostDrop::XskTxInvalid => "xsk_tx_invalid",
            HostDrop::XskTxRingEmpty => "xsk_tx_ring_empty",
            HostDrop::NetdevRxDropped => "netdev_rx_dropped",
            HostDrop::NetdevTxDropped => "netdev_tx_dropped",
            HostDrop::PacketRxDropped => "packet_rx_dropped",
        }
    }
}

/// One queue's host drops, cumulative, by [`HostDrop`] index.
pub type HostDropCounts = [u64; HostDrop::COUNT];

/// The drop counters of one kernel network interface, from
/// `/proc/thread-self/net/dev` opened in the network namespace the port was
/// opened in (the file stays bound to it, whichever thread reads it later;
/// sysfs would show the namespace it was mounted in instead). Each read is
/// `pread`s into a buffer sized at open: no allocation, no path lookup.
#[derive(Debug)]
pub struct NetdevDrops {
    file: std::fs::File,
    /// `"<interface>:"`, the start of its line (after blanks).
    key: String,
    buf: Box<[u8]>,
}

impl NetdevDrops {
    /// The counters of `interface` in the calling thread's network
    /// namespace. None if it has no such interface.
    pub fn open(interface: &str) -> Option<Self> {
        Self::open_file(std::path::Path::new("/proc/thread-self/net/dev"), interface)
    }

    /// As [`NetdevDrops::open`], from a file in `/proc/net/dev`'s format.
    pub fn open_file(path: &std::path::Path, interface: &str) -> Option<Self> {
        let text = std::fs::read(path).ok()?;
        // Room for the file as it is and as many interfaces again.
        let mut nd = NetdevDrops {
            file: std::fs::File::open(path).ok()?,
            key: format!("{interface}:"),
            buf: vec![0u8; (text.len() * 2).max(4096)].into_boxed_slice(),
        };
        let mut probe = [0u64; HostDrop::COUNT];
        nd.read_into(&mut probe).then_some(nd)
    }

    /// Sets `counts`' [`HostDrop::NetdevRxDropped`] (the kernel's
    /// `rx_dropped + rx_missed_errors`, /proc/net/dev's `drop`) and
    /// [`HostDrop::NetdevTxDropped`] (`tx_dropped`). Leaves them as they
    /// were if the interface's line cannot be read.
    pub fn add_to(&mut self, counts: &mut HostDropCounts) {
        self.read_into(counts);
    }

    fn read_into(&mut self, counts: &mut HostDropCounts) -> bool {
        use std::os::unix::fs::FileExt;
        let buf = &mut self.buf;
        let mut len = 0;
        while len < buf.len() {
            match self.file.read_at(&mut buf[len..], len as u64) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(_) => return false,
            }
        }
        let Some(line) = buf[..len]
            .split(|&b| b == b'\n')
            .find_map(|l| l.trim_ascii_start().strip_prefix(self.key.as_bytes()))
        else {
            return false;
        };
        // rx: bytes packets errs drop fifo frame compressed multicast;
        // tx: bytes packets errs drop ...
        let mut fields = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty())
            .map(parse_decimal);
        let (Some(Some(rx_drop)), Some(Some(tx_drop))) = (fields.nth(3), fields.nth(7)) else {
            return false;
        };
        counts[HostDrop::NetdevRxDropped as usize] = rx_drop;
        counts[HostDrop::NetdevTxDropped as usize] = tx_drop;
        true
    }
}

/// An unsigned decimal number, None if the field is anything else.
fn parse_decimal(field: &[u8]) -> Option<u64> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_in_index_order_with_distinct_names() {
        for (i, r) in HostDrop::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let names: std::collections::HashSet<_> = HostDrop::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), HostDrop::COUNT);
    }

    /// /proc/net/dev as Linux prints it, with `wan0`'s rx and tx drops set.
    fn fake_dev(rx_drop: &str, tx_drop: &str) -> String {
        format!(
            "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
             lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  \
             wan0: 9000000   7000    1 {rx_drop}    4     0          0         0  8000000    6000    0 {tx_drop}    0     0       0          0\n"
        )
    }

    #[test]
    fn netdev_counters_are_read_again_on_every_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev");
        std::fs::write(&path, fake_dev("42", "5")).unwrap();
        let mut nd = NetdevDrops::open_file(&path, "wan0").expect("wan0 is listed");
        let mut c = [0u64; HostDrop::COUNT];
        nd.add_to(&mut c);
        assert_eq!(c[HostDrop::NetdevRxDropped as usize], 42);
        assert_eq!(c[HostDrop::NetdevTxDropped as usize], 5);
        std::fs::write(&path, fake_dev("43", "18446744073709551615")).unwrap();
        nd.add_to(&mut c);
        assert_eq!(c[HostDrop::NetdevRxDropped as usize], 43);
        assert_eq!(c[HostDrop::NetdevTxDropped as usize], u64::MAX);
        std::fs::write(&path, fake_dev("x", "7")).unwrap();
        nd.add_to(&mut c);
        assert_eq!(
            c[HostDrop::NetdevRxDropped as usize],
            43,
            "a bad line changes nothing"
        );
        assert_eq!(
            c[HostDrop::XskRxDropped as usize],
            0,
            "other slots untouched"
        );
    }

    #[test]
    fn an_interface_not_listed_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev");
        std::fs::write(&path, fake_dev("1", "1")).unwrap();
        assert!(NetdevDrops::open_file(&path, "lan0").is_none());
        assert!(
            NetdevDrops::open_file(&path, "wan").is_none(),
            "a prefix is not a match"
        );
        assert!(NetdevDrops::open_file(&dir.path().join("nothing"), "wan0").is_none());
    }

    #[test]
    fn a_real_interface_is_found() {
        let mut lo = NetdevDrops::open("lo").expect("lo is in every network namespace");
        let mut c = [u64::MAX; HostDrop::COUNT];
        lo.add_to(&mut c);
        assert_ne!(c[HostDrop::NetdevTxDropped as usize], u64::MAX, "read");
    }
}
