//! Remembers the network namespace an AF_XDP socket was created in, so that
//! teardown (which libxdp does by interface index, over netlink in the
//! calling thread's namespace) runs in that namespace even when the queue is
//! dropped by a thread living elsewhere.

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SELF_NETNS: &CStr = c"/proc/thread-self/ns/net";

/// A handle on a network namespace.
pub(super) struct NetNs {
    fd: OwnedFd,
    id: (u64, u64),
}

impl NetNs {
    /// The calling thread's network namespace.
    pub(super) fn current() -> io::Result<NetNs> {
        // SAFETY: SELF_NETNS is a NUL-terminated path; the result is checked.
        let fd = unsafe { libc::open(SELF_NETNS.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a freshly opened descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let id = ns_id(&fd)?;
        Ok(NetNs { fd, id })
    }

    /// Runs `f` inside this namespace, switching the calling thread into it
    /// and back if it lives elsewhere. Fails, without running `f`, if the
    /// switch is impossible.
    pub(super) fn run_in<T>(&self, f: impl FnOnce() -> T) -> io::Result<T> {
        let here = NetNs::current()?;
        if here.id == self.id {
            return Ok(f());
        }
        setns(&self.fd)?;
        let out = f();
        if let Err(e) = setns(&here.fd) {
            tracing::error!("af_xdp: cannot return thread to its network namespace: {e}");
        }
        Ok(out)
    }
}

fn ns_id(fd: &OwnedFd) -> io::Result<(u64, u64)> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes one `struct stat` into `st`; fd is open.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so `st` is initialised.
    let st = unsafe { st.assume_init() };
    Ok((st.st_dev, st.st_ino))
}

fn setns(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: setns takes a namespace fd we own and a constant; it changes
    // only the calling thread's network namespace.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
