//! Frames lost in the gateway host below the gateway's own code: in the
//! kernel's AF_XDP socket or in the NIC and its driver. Each backend
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
}

impl HostDrop {
    /// Number of reasons.
    pub const COUNT: usize = 10;
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
        }
    }
}

/// One queue's host drops, cumulative, by [`HostDrop`] index.
pub type HostDropCounts = [u64; HostDrop::COUNT];

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
}
