//! Errors of the DPDK backend, and the `rte_strerror` text they carry.

use std::ffi::CStr;

use scistream_sys::dpdk as sys;

/// Everything that can go wrong in the DPDK backend. Messages name the port
/// (our name for it) and the device, and carry DPDK's error text.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    /// `rte_eal_init` failed.
    #[error("EAL initialisation with arguments {args:?} failed: {reason} (rte_errno {errno})")]
    EalInit {
        /// The EAL arguments (without argv\[0\]).
        args: Vec<String>,
        /// `rte_errno` after the failure.
        errno: i32,
        /// `rte_strerror(errno)`.
        reason: String,
    },
    /// EAL failed earlier in this process; DPDK cannot initialise it twice.
    #[error("EAL initialisation failed earlier in this process and cannot be retried: {0}")]
    EalFailedEarlier(String),
    /// A string handed to DPDK contains a NUL byte.
    #[error("{what} {value:?} contains a NUL byte")]
    Nul {
        /// What the string is ("EAL argument", "device", ...).
        what: &'static str,
        /// The offending string.
        value: String,
    },
    /// `rte_thread_register` failed.
    #[error("cannot register thread {thread:?} with EAL: {reason} (rte_errno {errno})")]
    ThreadRegister {
        /// The thread's name, or its id.
        thread: String,
        /// `rte_errno` after the failure.
        errno: i32,
        /// `rte_strerror(errno)`.
        reason: String,
    },
    /// The port configuration is unusable, before any device is touched.
    #[error("port {port}: invalid configuration: {reason}")]
    Config {
        /// Our name for the port.
        port: String,
        /// What is wrong.
        reason: String,
    },
    /// A DPDK call on a device failed.
    #[error("port {port} (device {device:?}): {op} failed: {reason} (errno {errno})")]
    Device {
        /// Our name for the port.
        port: String,
        /// The device string or ethdev name.
        device: String,
        /// The DPDK function that failed.
        op: &'static str,
        /// The (positive) errno it returned or set.
        errno: i32,
        /// `rte_strerror(errno)`, or a hint when DPDK gave no errno.
        reason: String,
    },
    /// No ethdev carries the expected name after probing or hot-plugging.
    #[error("port {port} (device {device:?}): no ethdev named {ethdev:?} after {how}")]
    NotFound {
        /// Our name for the port.
        port: String,
        /// The device string.
        device: String,
        /// The ethdev name looked up.
        ethdev: String,
        /// What was done before the lookup.
        how: &'static str,
    },
    /// The device cannot do what the configuration asks (MTU, queue count...).
    #[error("port {port} (device {device:?}): {reason}")]
    Unsupported {
        /// Our name for the port.
        port: String,
        /// The device string or ethdev name.
        device: String,
        /// What the device cannot do.
        reason: String,
    },
    /// The port's mbuf pool could not be created.
    #[error("port {port}: mempool {pool:?} ({count} mbufs, {data_room} B data room) could not be created: {reason} (rte_errno {errno})")]
    Mempool {
        /// Our name for the port.
        port: String,
        /// The mempool name.
        pool: String,
        /// Number of mbufs requested.
        count: u32,
        /// Data room per mbuf.
        data_room: u16,
        /// `rte_errno` after the failure.
        errno: i32,
        /// `rte_strerror(errno)`.
        reason: String,
    },
    /// A queue index is out of range or already handed out.
    #[error("port {port}: queue {queue}: {reason}")]
    Queue {
        /// Our name for the port.
        port: String,
        /// The queue index.
        queue: u16,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `rte_ring` could not be created.
    #[error("port {port}: ring {ring:?} could not be created: {reason} (rte_errno {errno})")]
    Ring {
        /// Our name for the port.
        port: String,
        /// The ring name.
        ring: String,
        /// `rte_errno` after the failure.
        errno: i32,
        /// `rte_strerror(errno)`.
        reason: String,
    },
    /// The port's mbuf pool has no free mbuf.
    #[error("port {port}: mbuf pool exhausted")]
    PoolExhausted {
        /// Our name for the port.
        port: String,
    },
    /// A frame does not fit one mbuf of the port's pool.
    #[error("port {port}: a {len}-byte frame does not fit one mbuf ({room} bytes of room)")]
    FrameTooLarge {
        /// Our name for the port.
        port: String,
        /// Frame length.
        len: usize,
        /// Room in an empty mbuf.
        room: usize,
    },
    /// An in-process ring port's RX ring has no room.
    #[error("port {port}: RX ring of queue {queue} is full")]
    RingFull {
        /// Our name for the port.
        port: String,
        /// The queue index.
        queue: u16,
    },
}

/// `rte_strerror(errno)` as an owned string. Accepts errno with either sign.
pub(crate) fn errno_text(errno: i32) -> String {
    // SAFETY: rte_strerror accepts any value and returns a pointer to a
    // NUL-terminated string, static or in a per-thread buffer, valid until the
    // next call on this thread; we copy it out at once.
    let text = unsafe { sys::rte_strerror(errno.abs()) };
    if text.is_null() {
        return format!("error {}", errno.abs());
    }
    // SAFETY: non-null, NUL-terminated (see above).
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

/// The calling thread's `rte_errno`.
pub(crate) fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local integer.
    unsafe { sys::scistream_rte_errno() }
}
