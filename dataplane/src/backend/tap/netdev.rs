//! Network-interface control through `ifreq` ioctls on a datagram socket:
//! index, MTU, MAC, flags and bridge membership. Shared by the native backends.
//!
//! Every call acts in the network namespace of the calling thread.

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SIOCBRADDIF` from <linux/sockios.h> (not exported by libc for glibc targets).
const SIOCBRADDIF: libc::Ioctl = 0x89a2;

/// A validated interface name, as the kernel's `IFNAMSIZ` buffer.
#[derive(Clone)]
pub(crate) struct IfName {
    raw: [libc::c_char; libc::IFNAMSIZ],
    c: CString,
}

impl IfName {
    /// Checks `name` against the kernel's rules (1..=15 bytes, no '/', ':',
    /// whitespace or NUL; not "." or ".."). The error is the reason.
    pub(crate) fn new(name: &str) -> Result<Self, &'static str> {
        if name.is_empty() {
            return Err("interface name is empty");
        }
        if name.len() >= libc::IFNAMSIZ {
            return Err("interface name is longer than 15 bytes");
        }
        if name == "." || name == ".." {
            return Err("interface name may not be \".\" or \"..\"");
        }
        if name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
        {
            return Err("interface name contains '/', ':', whitespace or NUL");
        }
        let mut raw = [0 as libc::c_char; libc::IFNAMSIZ];
        for (dst, src) in raw.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        let c = CString::new(name).map_err(|_| "interface name contains NUL")?;
        Ok(IfName { raw, c })
    }

    /// The name as a C string.
    pub(crate) fn as_cstr(&self) -> &std::ffi::CStr {
        &self.c
    }

    /// A zeroed `ifreq` naming this interface.
    pub(crate) fn ifreq(&self) -> libc::ifreq {
        // SAFETY: ifreq is plain old data (a name array and a union of
        // integers, sockaddrs and a pointer); all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { mem::zeroed() };
        req.ifr_name = self.raw;
        req
    }
}

/// An `AF_INET` datagram socket used only as a handle for interface ioctls.
pub(crate) struct CtlSocket(OwnedFd);

impl CtlSocket {
    /// Opens the control socket in the calling thread's network namespace.
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: socket() takes no pointers; the result is checked below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a freshly created descriptor that nothing else owns.
        Ok(CtlSocket(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ioctl(&self, request: libc::Ioctl, req: &mut libc::ifreq) -> io::Result<()> {
        // SAFETY: every request used in this module reads and/or writes one
        // `struct ifreq`, and `req` is a valid, exclusively borrowed ifreq.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), request, req as *mut libc::ifreq) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// The interface index (SIOCGIFINDEX).
    pub(crate) fn ifindex(&self, name: &IfName) -> io::Result<i32> {
        let mut req = name.ifreq();
        self.ioctl(libc::SIOCGIFINDEX, &mut req)?;
        // SAFETY: SIOCGIFINDEX filled the ifindex member of the union.
        Ok(unsafe { req.ifr_ifru.ifru_ifindex })
    }

    /// The interface MTU (SIOCGIFMTU).
    pub(crate) fn mtu(&self, name: &IfName) -> io::Result<u32> {
        let mut req = name.ifreq();
        self.ioctl(libc::SIOCGIFMTU, &mut req)?;
        // SAFETY: SIOCGIFMTU filled the mtu member of the union.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu };
        u32::try_from(mtu).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    }

    /// Sets the interface MTU (SIOCSIFMTU).
    pub(crate) fn set_mtu(&self, name: &IfName, mtu: u16) -> io::Result<()> {
        let mut req = name.ifreq();
        req.ifr_ifru.ifru_mtu = libc::c_int::from(mtu);
        self.ioctl(libc::SIOCSIFMTU, &mut req)
    }

    /// The interface's hardware address (SIOCGIFHWADDR).
    pub(crate) fn hwaddr(&self, name: &IfName) -> io::Result<[u8; 6]> {
        let mut req = name.ifreq();
        self.ioctl(libc::SIOCGIFHWADDR, &mut req)?;
        // SAFETY: SIOCGIFHWADDR filled the hwaddr (sockaddr) member of the union.
        let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
        let mut mac = [0u8; 6];
        for (dst, src) in mac.iter_mut().zip(sa.sa_data.iter()) {
            *dst = *src as u8;
        }
        Ok(mac)
    }

    /// Sets IFF_UP on the interface (SIOCGIFFLAGS then SIOCSIFFLAGS).
    pub(crate) fn set_up(&self, name: &IfName) -> io::Result<()> {
        let mut req = name.ifreq();
        self.ioctl(libc::SIOCGIFFLAGS, &mut req)?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        if flags & libc::IFF_UP as libc::c_short != 0 {
            return Ok(());
        }
        req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
        self.ioctl(libc::SIOCSIFFLAGS, &mut req)
    }

    /// Enslaves the interface with index `port` to `bridge` (SIOCBRADDIF).
    pub(crate) fn bridge_add_if(&self, bridge: &IfName, port: i32) -> io::Result<()> {
        let mut req = bridge.ifreq();
        req.ifr_ifru.ifru_ifindex = port;
        self.ioctl(SIOCBRADDIF, &mut req)
    }
}

#[cfg(test)]
mod tests {
    use super::IfName;

    #[test]
    fn names_follow_kernel_rules() {
        assert!(IfName::new("eth0").is_ok());
        assert!(IfName::new("abcdefghijklmno").is_ok());
        assert!(IfName::new("abcdefghijklmnop").is_err());
        assert!(IfName::new("").is_err());
        assert!(IfName::new("a/b").is_err());
        assert!(IfName::new("a b").is_err());
        assert!(IfName::new("a:0").is_err());
        assert!(IfName::new("..").is_err());
        let n = IfName::new("tap0").unwrap();
        assert_eq!(n.as_cstr().to_bytes(), b"tap0");
        assert_eq!(
            n.ifreq().ifr_name[..5],
            [b't' as libc::c_char, b'a' as _, b'p' as _, b'0' as _, 0]
        );
    }
}
