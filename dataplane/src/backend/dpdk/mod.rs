//! DPDK ethdev backend (stub, being written).
