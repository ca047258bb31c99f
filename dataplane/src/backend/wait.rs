//! Sleeping in the kernel until a queue has traffic: `poll(2)` on the
//! queues' descriptors (an AF_XDP socket, a TAP device), for workers in
//! `poll_mode = "adaptive"`.

use std::os::fd::RawFd;
use std::time::Duration;

/// Waits until one of `fds` is readable, at most `timeout`. Returns true if
/// one is (false: the time ran out, or poll was interrupted).
pub fn wait_readable(fds: &[RawFd], timeout: Duration) -> bool {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 4];
    let n = fds.len().min(pfds.len());
    for (p, &fd) in pfds.iter_mut().zip(&fds[..n]) {
        p.fd = fd;
        p.events = libc::POLLIN;
    }
    let ms = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfds[..n]` is a valid, initialised array of `n` pollfd
    // structures that lives across the call; poll only writes `revents`.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, ms) };
    rc > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    #[test]
    fn wakes_when_a_descriptor_becomes_readable_and_times_out_otherwise() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let t0 = Instant::now();
        assert!(!wait_readable(&[b.as_raw_fd()], Duration::from_millis(20)));
        assert!(t0.elapsed() >= Duration::from_millis(15));
        a.write_all(b"x").unwrap();
        assert!(wait_readable(&[b.as_raw_fd()], Duration::from_secs(5)));
    }
}
