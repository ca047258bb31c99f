//! The native packet I/O backends (TAP, AF_XDP) against the real kernel.
//!
//! Needs root: every test builds its own network namespaces (unique names,
//! deleted by a guard even on panic) and moves traffic only between them.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use scistream_dataplane::backend::afxdp::{
    XdpConfig, XdpError, XdpMode, XdpPort, XdpQueue, MAX_MTU,
};
use scistream_dataplane::backend::pool::PoolBuf;
use scistream_dataplane::backend::tap::{TapConfig, TapError, TapPort, TapQueue};
use scistream_dataplane::backend::{Burst, PacketBuf, PortQueue};
use scistream_dataplane::host_drops::HostDrop;
use scistream_testbed::capture::{format_mac, parse_mac};
use scistream_testbed::netns::require_root;

// ---------------------------------------------------------------- harness

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call, usable as an interface name (<= 15 bytes).
fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{}x{n}", std::process::id());
    assert!(name.len() <= 15, "test interface name {name} too long");
    name
}

/// Runs a command, panicking with its output if it fails; returns stdout.
fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted on drop (also when the test panics).
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        require_root();
        let ns = Netns(unique("s2nb"));
        run(&["ip", "netns", "add", &ns.0]);
        ns.ip(&["link", "set", "lo", "up"]);
        // No IPv6 chatter (router solicitations, MLD) on the links we watch.
        for key in [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ] {
            ns.exec(&["sysctl", "-qw", key]);
        }
        ns
    }

    fn name(&self) -> &str {
        &self.0
    }

    /// `ip -n NS ...`
    fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.0];
        full.extend_from_slice(args);
        run(&full)
    }

    /// `ip netns exec NS ...`
    fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.0];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Runs `f` on a thread that has entered this namespace: ports and
    /// sockets made there belong to the namespace for good.
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: setns with an open namespace fd changes only this thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// A UDP socket bound to `addr` inside this namespace, with a read timeout.
    fn udp(&self, addr: SocketAddrV4) -> UdpSocket {
        let s = self.enter(|| UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}")));
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// The MAC of `dev` in this namespace.
    fn mac(&self, dev: &str) -> [u8; 6] {
        let out = self.ip(&["-br", "link", "show", "dev", dev]);
        let field = out
            .split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("no MAC in {out:?}"));
        parse_mac(field)
    }

    /// `ip link show dev` output for `dev`.
    fn link(&self, dev: &str) -> String {
        self.ip(&["link", "show", "dev", dev])
    }

    /// True if `dev` exists in this namespace.
    fn has_link(&self, dev: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.0, "link", "show", "dev", dev])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Waits until `dev` reports LOWER_UP.
    fn wait_lower_up(&self, dev: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.link(dev).contains("LOWER_UP") {
            assert!(
                Instant::now() < deadline,
                "{dev} in {} never came up: {}",
                self.0,
                self.link(dev)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

// ---------------------------------------------------------------- frames

/// One Ethernet/IPv4/UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Udp {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: Vec<u8>,
}

fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let mut carry: Option<u8> = None;
    for chunk in chunks {
        for &b in chunk.iter() {
            match carry.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => carry = Some(b),
            }
        }
    }
    if let Some(hi) = carry {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn udp_pseudo(src: Ipv4Addr, dst: Ipv4Addr, len: u16) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[0..4].copy_from_slice(&src.octets());
    p[4..8].copy_from_slice(&dst.octets());
    p[9] = 17;
    p[10..12].copy_from_slice(&len.to_be_bytes());
    p
}

impl Udp {
    /// The frame bytes, with correct IPv4 and UDP checksums.
    fn build(&self) -> Vec<u8> {
        let udp_len = 8 + self.payload.len() as u16;
        let ip_len = 20 + udp_len;
        let mut f = Vec::with_capacity(14 + ip_len as usize);
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let ip_start = f.len();
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&ip_len.to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, 17, 0, 0]);
        f.extend_from_slice(&self.src.ip().octets());
        f.extend_from_slice(&self.dst.ip().octets());
        let ip_sum = checksum(&[&f[ip_start..ip_start + 20]]);
        f[ip_start + 10..ip_start + 12].copy_from_slice(&ip_sum.to_be_bytes());
        let udp_start = f.len();
        f.extend_from_slice(&self.src.port().to_be_bytes());
        f.extend_from_slice(&self.dst.port().to_be_bytes());
        f.extend_from_slice(&udp_len.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&self.payload);
        let pseudo = udp_pseudo(*self.src.ip(), *self.dst.ip(), udp_len);
        let mut udp_sum = checksum(&[&pseudo, &f[udp_start..]]);
        if udp_sum == 0 {
            udp_sum = 0xffff;
        }
        f[udp_start + 6..udp_start + 8].copy_from_slice(&udp_sum.to_be_bytes());
        f
    }

    /// Parses an untagged Ethernet/IPv4/UDP frame of exactly the right
    /// length, verifying both checksums. None for anything else.
    fn parse(f: &[u8]) -> Option<Udp> {
        if f.len() < 42 || f[12..14] != [0x08, 0x00] || f[14] != 0x45 || f[23] != 17 {
            return None;
        }
        let ip = &f[14..];
        let ip_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ip_len != ip.len() || checksum(&[&ip[..20]]) != 0 {
            return None;
        }
        let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let udp = &ip[20..];
        let udp_len = u16::from_be_bytes([udp[4], udp[5]]);
        if usize::from(udp_len) != udp.len() {
            return None;
        }
        if udp[6..8] != [0, 0] && checksum(&[&udp_pseudo(src_ip, dst_ip, udp_len), udp]) != 0 {
            return None;
        }
        Some(Udp {
            dst_mac: f[0..6].try_into().unwrap(),
            src_mac: f[6..12].try_into().unwrap(),
            src: SocketAddrV4::new(src_ip, u16::from_be_bytes([udp[0], udp[1]])),
            dst: SocketAddrV4::new(dst_ip, u16::from_be_bytes([udp[2], udp[3]])),
            payload: udp[8..].to_vec(),
        })
    }
}

#[test]
fn frame_builder_round_trips_and_checksums_verify() {
    let u = Udp {
        dst_mac: [2, 0, 0, 0, 0, 1],
        src_mac: [2, 0, 0, 0, 0, 2],
        src: "10.0.0.1:1000".parse().unwrap(),
        dst: "10.0.0.2:2000".parse().unwrap(),
        payload: b"odd-length".to_vec(),
    };
    let mut f = u.build();
    assert_eq!(Udp::parse(&f), Some(u));
    let last = f.len() - 1;
    f[last] ^= 1;
    assert_eq!(
        Udp::parse(&f),
        None,
        "a corrupted payload must fail the UDP checksum"
    );
}

fn payload(tag: &str, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    p[..tag.len()].copy_from_slice(tag.as_bytes());
    p
}

/// Polls `q` until a frame satisfying `want` arrives; returns it. Frames
/// that are not Ethernet/IPv4/UDP are not expected (IPv6 is off) and fail the test.
fn recv_udp<Q: PortQueue<Buf = PoolBuf>>(q: &mut Q, timeout: Duration) -> (Udp, Vec<u8>) {
    let deadline = Instant::now() + timeout;
    let mut burst = Burst::new();
    loop {
        if q.rx_burst(&mut burst) > 0 {
            let frame = burst.remove(0);
            assert!(
                burst.is_empty(),
                "expected exactly one frame, got {} more",
                burst.len()
            );
            let bytes = frame.data().to_vec();
            let udp = Udp::parse(&bytes)
                .unwrap_or_else(|| panic!("not a valid UDP/IPv4 frame: {bytes:02x?}"));
            return (udp, bytes);
        }
        assert!(
            Instant::now() < deadline,
            "no frame received within {timeout:?}"
        );
        q.idle();
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn send_one<Q: PortQueue<Buf = PoolBuf>>(q: &mut Q, frame: &[u8]) {
    let mut burst = Burst::new();
    burst.push(PoolBuf::from_slice(frame).expect("frame fits a buffer"));
    assert_eq!(q.tx_burst(&mut burst), 1, "the port refused the frame");
    assert!(burst.is_empty());
    q.idle();
}

fn recv_payload(sock: &UdpSocket) -> (Vec<u8>, SocketAddrV4) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = sock
        .recv_from(&mut buf)
        .expect("kernel socket received nothing");
    let std::net::SocketAddr::V4(from) = from else {
        panic!("IPv6 source {from}")
    };
    buf.truncate(n);
    (buf, from)
}

// ---------------------------------------------------------------- TAP

const TAP_KERNEL: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
const TAP_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);
const GW_MAC: [u8; 6] = [0x02, 0x5c, 0x15, 0x00, 0x00, 0x01];

/// A TAP port in a fresh namespace, the tap's kernel side addressed as
/// TAP_KERNEL and TAP_GATEWAY resolved to the port's MAC.
struct TapFixture {
    queues: Vec<TapQueue>,
    port: TapPort,
    tap: String,
    kernel_mac: [u8; 6],
    ns: Netns,
}

fn tap_fixture(mtu: u16, queues: u16) -> TapFixture {
    let ns = Netns::new();
    let tap = unique("nbt");
    let cfg = TapConfig {
        interface: tap.clone(),
        mtu,
        mac: Some(GW_MAC),
        queues,
        bridge: None,
    };
    let mut port = ns.enter(|| TapPort::open(&cfg)).expect("open tap");
    let queues = port.take_queues();
    ns.ip(&["addr", "add", &format!("{TAP_KERNEL}/24"), "dev", &tap]);
    ns.ip(&[
        "neigh",
        "replace",
        &TAP_GATEWAY.to_string(),
        "lladdr",
        &format_mac(&GW_MAC),
        "dev",
        &tap,
        "nud",
        "permanent",
    ]);
    let kernel_mac = ns.mac(&tap);
    assert_ne!(kernel_mac, GW_MAC);
    TapFixture {
        queues,
        port,
        tap,
        kernel_mac,
        ns,
    }
}

/// Kernel socket -> tap -> rx_burst, then tx_burst -> tap -> kernel socket, with `len`-byte payloads.
fn tap_round_trip(f: &mut TapFixture, len: usize) {
    let q = &mut f.queues[0];
    // Kernel to gateway.
    let sender = f.ns.udp(SocketAddrV4::new(TAP_KERNEL, 0));
    let sport = sender.local_addr().unwrap().port();
    let out = payload("to-gateway", len);
    sender
        .send_to(&out, SocketAddrV4::new(TAP_GATEWAY, 5000))
        .unwrap();
    let (got, bytes) = recv_udp(q, Duration::from_secs(5));
    let want = Udp {
        dst_mac: GW_MAC,
        src_mac: f.kernel_mac,
        src: SocketAddrV4::new(TAP_KERNEL, sport),
        dst: SocketAddrV4::new(TAP_GATEWAY, 5000),
        payload: out,
    };
    assert_eq!(got, want);
    assert_eq!(bytes.len(), 14 + 20 + 8 + len);

    // Gateway to kernel.
    let receiver = f.ns.udp(SocketAddrV4::new(TAP_KERNEL, 0));
    let rport = receiver.local_addr().unwrap().port();
    let back = payload("to-kernel", len);
    let frame = Udp {
        dst_mac: f.kernel_mac,
        src_mac: GW_MAC,
        src: SocketAddrV4::new(TAP_GATEWAY, 7000),
        dst: SocketAddrV4::new(TAP_KERNEL, rport),
        payload: back.clone(),
    }
    .build();
    send_one(q, &frame);
    let (data, from) = recv_payload(&receiver);
    assert_eq!(data, back);
    assert_eq!(from, SocketAddrV4::new(TAP_GATEWAY, 7000));
    assert_eq!(q.rx_errors(), 0);
}

#[test]
fn tap_carries_udp_both_ways() {
    let mut f = tap_fixture(1500, 1);
    let info = f.port.info();
    assert_eq!(info.name, f.tap);
    assert_eq!(info.mac, GW_MAC);
    assert_eq!(info.mtu, 1500);
    assert_eq!(info.queues, 1);
    assert_eq!(info.driver, "tap");
    assert_eq!(f.queues.len(), 1);
    let link = f.ns.link(&f.tap);
    assert!(link.contains("mtu 1500") && link.contains(",UP"), "{link}");
    tap_round_trip(&mut f, 100);

    // Dropping the only queue removes the (non-persistent) tap.
    let TapFixture {
        queues,
        port,
        tap,
        ns,
        ..
    } = f;
    drop(queues);
    drop(port);
    assert!(!ns.has_link(&tap), "tap {tap} outlived its queues");
}

#[test]
fn tap_jumbo_mtu_carries_8000_byte_datagrams() {
    let mut f = tap_fixture(9000, 1);
    assert!(f.ns.link(&f.tap).contains("mtu 9000"));
    assert_eq!(f.port.info().mtu, 9000);
    tap_round_trip(&mut f, 8000);
}

#[test]
fn tap_multi_queue_opens_one_fd_per_queue() {
    let mut f = tap_fixture(1500, 2);
    assert_eq!(f.queues.len(), 2);
    assert_eq!(f.port.info().queues, 2);
    assert!(
        f.port.take_queues().is_empty(),
        "queues are handed out once"
    );
    let details = f.ns.ip(&["-d", "link", "show", "dev", &f.tap]);
    assert!(details.contains("multi_queue"), "{details}");
    // The second queue transmits like the first.
    let receiver = f.ns.udp(SocketAddrV4::new(TAP_KERNEL, 0));
    let rport = receiver.local_addr().unwrap().port();
    let frame = Udp {
        dst_mac: f.kernel_mac,
        src_mac: GW_MAC,
        src: SocketAddrV4::new(TAP_GATEWAY, 7001),
        dst: SocketAddrV4::new(TAP_KERNEL, rport),
        payload: b"queue one".to_vec(),
    }
    .build();
    send_one(&mut f.queues[1], &frame);
    assert_eq!(recv_payload(&receiver).0, b"queue one");
}

/// A gateway that stops reading its TAP queue: the kernel drops what no
/// longer fits the device's queue and counts it as the device's
/// `tx_dropped`, which queue 0 reports as `netdev_tx_dropped`. Every
/// datagram sent is either received or counted.
#[test]
fn tap_overflow_is_counted_as_the_devices_tx_drops() {
    let mut f = tap_fixture(1500, 1);
    f.ns.ip(&["link", "set", "dev", &f.tap, "txqueuelen", "64"]);
    let q = &mut f.queues[0];
    let before = q
        .host_drops()
        .expect("queue 0 reports the TAP device's drops");
    let sender = f.ns.udp(SocketAddrV4::new(TAP_KERNEL, 0));
    const SENT: u64 = 500;
    for i in 0..SENT {
        sender
            .send_to(&seq_payload(i as u32), SocketAddrV4::new(TAP_GATEWAY, 5000))
            .unwrap();
    }
    // Now read what the device kept.
    let mut received = 0u64;
    let mut burst = Burst::new();
    let mut idle = 0;
    while idle < 50 {
        let n = q.rx_burst(&mut burst);
        burst.clear();
        if n == 0 {
            idle += 1;
            std::thread::sleep(Duration::from_millis(2));
        } else {
            idle = 0;
            received += n as u64;
        }
    }
    let after = q.host_drops().unwrap();
    let tx_dropped =
        after[HostDrop::NetdevTxDropped as usize] - before[HostDrop::NetdevTxDropped as usize];
    assert!(received < SENT, "a 64-frame queue kept all {SENT}");
    assert!(tx_dropped > 0, "the overflow was not counted");
    assert_eq!(
        received + tx_dropped,
        SENT,
        "every datagram received or counted"
    );
}

#[test]
fn tap_drops_frames_larger_than_a_buffer_and_keeps_going() {
    let mut f = tap_fixture(9000, 1);
    // Raised behind the port's back: the kernel now sends frames no buffer holds.
    f.ns.ip(&["link", "set", "dev", &f.tap, "mtu", "16000"]);
    let sender = f.ns.udp(SocketAddrV4::new(TAP_KERNEL, 0));
    sender
        .send_to(
            &payload("huge", 12000),
            SocketAddrV4::new(TAP_GATEWAY, 5000),
        )
        .unwrap();
    let q = &mut f.queues[0];
    let mut burst = Burst::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while q.rx_errors() == 0 {
        assert_eq!(
            q.rx_burst(&mut burst),
            0,
            "an oversized frame was delivered"
        );
        assert!(Instant::now() < deadline, "oversized frame was never seen");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(q.rx_errors(), 1);
    sender
        .send_to(b"small", SocketAddrV4::new(TAP_GATEWAY, 5000))
        .unwrap();
    let (got, _) = recv_udp(q, Duration::from_secs(5));
    assert_eq!(got.payload, b"small");
    assert_eq!(q.rx_errors(), 1);
}

#[test]
fn tap_is_enslaved_to_the_configured_bridge() {
    let ns = Netns::new();
    let br = unique("nbb");
    let tap = unique("nbt");
    ns.ip(&["link", "add", &br, "type", "bridge"]);
    let cfg = TapConfig {
        interface: tap.clone(),
        mtu: 1500,
        mac: None,
        queues: 1,
        bridge: Some(br.clone()),
    };
    let port = ns
        .enter(|| TapPort::open(&cfg))
        .expect("open tap on bridge");
    let link = ns.link(&tap);
    assert!(link.contains(&format!("master {br}")), "{link}");
    // A random MAC is locally administered unicast.
    let mac = port.info().mac;
    assert_eq!(mac[0] & 0x03, 0x02, "{}", format_mac(&mac));
    drop(port);
}

#[test]
fn tap_rejects_bad_config_before_touching_the_kernel() {
    let base = TapConfig {
        interface: "nbtbad".into(),
        mtu: 1500,
        mac: None,
        queues: 1,
        bridge: None,
    };
    let long = TapConfig {
        interface: "a-name-longer-than-15".into(),
        ..base.clone()
    };
    match TapPort::open(&long) {
        Err(e @ TapError::InvalidName { .. }) => {
            assert!(e.to_string().contains("a-name-longer-than-15"), "{e}")
        }
        other => panic!("expected InvalidName, got {:?}", other.err()),
    }
    let mtu = TapConfig {
        mtu: 20,
        ..base.clone()
    };
    match TapPort::open(&mtu) {
        Err(e @ TapError::InvalidConfig { .. }) => assert!(
            e.to_string().contains("nbtbad") && e.to_string().contains("20"),
            "{e}"
        ),
        other => panic!("expected InvalidConfig, got {:?}", other.err()),
    }
    let q = TapConfig {
        queues: 0,
        ..base.clone()
    };
    assert!(matches!(
        TapPort::open(&q),
        Err(TapError::InvalidConfig { .. })
    ));
    let mc = TapConfig {
        mac: Some([1, 0, 0, 0, 0, 1]),
        ..base
    };
    assert!(matches!(
        TapPort::open(&mc),
        Err(TapError::InvalidConfig { .. })
    ));
}

#[test]
fn tap_bridge_that_does_not_exist_is_a_named_error() {
    let ns = Netns::new();
    let tap = unique("nbt");
    let cfg = TapConfig {
        interface: tap.clone(),
        mtu: 1500,
        mac: None,
        queues: 1,
        bridge: Some("nobr0".into()),
    };
    let err = ns
        .enter(|| TapPort::open(&cfg))
        .err()
        .expect("bridge nobr0 does not exist");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            TapError::Sys {
                call: "ioctl(SIOCBRADDIF)",
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains(&tap), "{msg}");
    assert!(!ns.has_link(&tap), "failed open left {tap} behind");
}

// ---------------------------------------------------------------- AF_XDP

const XDP_PEER: Ipv4Addr = Ipv4Addr::new(10, 202, 0, 1);
const XDP_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 202, 0, 2);

/// A veth pair: `dev` in `ns` (for the AF_XDP port), `peer_dev` in `peer`
/// addressed XDP_PEER, with tx checksum offload off.
struct Veth {
    dev: String,
    peer_dev: String,
    peer_mac: [u8; 6],
    peer: Netns,
    ns: Netns,
}

fn veth(queues: u16, mtu: u16) -> Veth {
    let ns = Netns::new();
    let (dev, peer_dev, peer, peer_mac) = veth_in(&ns, queues, mtu, XDP_PEER);
    Veth {
        dev,
        peer_dev,
        peer_mac,
        peer,
        ns,
    }
}

/// A veth pair from `ns` to a new namespace whose end has `peer_addr`/24:
/// (device in `ns`, peer device, peer namespace, peer MAC).
fn veth_in(
    ns: &Netns,
    queues: u16,
    mtu: u16,
    peer_addr: Ipv4Addr,
) -> (String, String, Netns, [u8; 6]) {
    let peer = Netns::new();
    let dev = unique("nbx");
    let peer_dev = unique("nbp");
    let q = queues.to_string();
    ns.ip(&[
        "link",
        "add",
        &dev,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        &peer_dev,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "netns",
        peer.name(),
    ]);
    let mtu = mtu.to_string();
    ns.ip(&["link", "set", &dev, "mtu", &mtu, "up"]);
    peer.ip(&["link", "set", &peer_dev, "mtu", &mtu, "up"]);
    peer.ip(&["addr", "add", &format!("{peer_addr}/24"), "dev", &peer_dev]);
    for (n, d) in [(ns, &dev), (&peer, &peer_dev)] {
        n.exec(&["ethtool", "-K", d, "tx", "off"]);
    }
    ns.wait_lower_up(&dev);
    peer.wait_lower_up(&peer_dev);
    let peer_mac = peer.mac(&peer_dev);
    (dev, peer_dev, peer, peer_mac)
}

fn skb_config(dev: &str, queues: u16) -> XdpConfig {
    XdpConfig {
        queues,
        mode: XdpMode::Skb,
        ..XdpConfig::new(dev)
    }
}

fn assert_no_xdp(v: &Veth) {
    let link = v.ns.link(&v.dev);
    assert!(
        !link.contains("xdp"),
        "XDP program left on {}: {link}",
        v.dev
    );
}

#[test]
fn afxdp_carries_udp_both_ways_and_detaches_on_drop() {
    let v = veth(1, 1500);
    let mut port =
        v.ns.enter(|| XdpPort::open(&skb_config(&v.dev, 1)))
            .expect("open af_xdp");
    let info = port.info();
    assert_eq!(info.name, v.dev);
    assert_eq!(info.mac, v.ns.mac(&v.dev));
    assert_eq!(info.mtu, 1500);
    assert_eq!(info.queues, 1);
    assert_eq!(info.driver, "af_xdp");
    assert!(
        v.ns.link(&v.dev).contains("xdpgeneric"),
        "program attached in SKB mode: {}",
        v.ns.link(&v.dev)
    );
    let mut queues = port.take_queues();
    assert_eq!(queues.len(), 1);
    let q = &mut queues[0];
    v.peer.ip(&[
        "neigh",
        "replace",
        &XDP_GATEWAY.to_string(),
        "lladdr",
        &format_mac(&info.mac),
        "dev",
        &v.peer_dev,
        "nud",
        "permanent",
    ]);

    // Peer kernel to the AF_XDP socket.
    let sender = v.peer.udp(SocketAddrV4::new(XDP_PEER, 0));
    let sport = sender.local_addr().unwrap().port();
    let out = payload("xdp-rx", 300);
    sender
        .send_to(&out, SocketAddrV4::new(XDP_GATEWAY, 6000))
        .unwrap();
    let (got, bytes) = recv_udp(q, Duration::from_secs(5));
    assert_eq!(
        got,
        Udp {
            dst_mac: info.mac,
            src_mac: v.peer_mac,
            src: SocketAddrV4::new(XDP_PEER, sport),
            dst: SocketAddrV4::new(XDP_GATEWAY, 6000),
            payload: out,
        }
    );
    assert_eq!(bytes.len(), 14 + 20 + 8 + 300);

    // The AF_XDP socket to the peer kernel.
    let receiver = v.peer.udp(SocketAddrV4::new(XDP_PEER, 0));
    let rport = receiver.local_addr().unwrap().port();
    let back = payload("xdp-tx", 1000);
    let frame = Udp {
        dst_mac: v.peer_mac,
        src_mac: info.mac,
        src: SocketAddrV4::new(XDP_GATEWAY, 6001),
        dst: SocketAddrV4::new(XDP_PEER, rport),
        payload: back.clone(),
    }
    .build();
    send_one(q, &frame);
    let (data, from) = recv_payload(&receiver);
    assert_eq!(data, back);
    assert_eq!(from, SocketAddrV4::new(XDP_GATEWAY, 6001));
    assert_eq!(q.rx_dropped(), 0);

    // Dropped here, on a thread outside the port's namespace.
    drop(queues);
    drop(port);
    assert_no_xdp(&v);
}

const COUNT: u32 = 1000;

fn seq_payload(seq: u32) -> Vec<u8> {
    let mut p = seq.to_be_bytes().to_vec();
    p.extend_from_slice(&[0xa5; 60]);
    p
}

fn seq_of(p: &[u8]) -> u32 {
    assert_eq!(p.len(), 64, "unexpected payload {p:02x?}");
    assert_eq!(&p[4..], &[0xa5; 60]);
    u32::from_be_bytes(p[..4].try_into().unwrap())
}

/// Receives until every one of COUNT sequence numbers arrived (or the deadline).
fn rx_count(queues: &mut [XdpQueue], port: u16) -> BTreeSet<u32> {
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut burst = Burst::new();
    while seen.len() < COUNT as usize && Instant::now() < deadline {
        let mut any = false;
        for q in queues.iter_mut() {
            if q.rx_burst(&mut burst) > 0 {
                any = true;
            }
            for b in burst.drain(..) {
                let u = Udp::parse(b.data()).expect("valid UDP frame");
                assert_eq!(u.dst.port(), port);
                assert!(seen.insert(seq_of(&u.payload)), "duplicate frame");
            }
        }
        if !any {
            queues.iter_mut().for_each(|q| q.idle());
            std::thread::yield_now();
        }
    }
    seen
}

fn send_count(v: &Veth, port: u16) {
    let sender = v.peer.udp(SocketAddrV4::new(XDP_PEER, 0));
    for seq in 0..COUNT {
        sender
            .send_to(&seq_payload(seq), SocketAddrV4::new(XDP_GATEWAY, port))
            .unwrap();
    }
}

/// Reads sequence-numbered datagrams until all COUNT arrived or `timeout`
/// passed, publishing how many so far in `received`; a duplicate fails the test.
fn read_seqs(receiver: &UdpSocket, received: &AtomicU32, timeout: Duration) -> BTreeSet<u32> {
    let mut seen = BTreeSet::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + timeout;
    while seen.len() < COUNT as usize && Instant::now() < deadline {
        if let Ok(n) = receiver.recv(&mut buf) {
            assert!(seen.insert(seq_of(&buf[..n])), "duplicate datagram");
            received.store(seen.len() as u32, Ordering::Release);
        }
    }
    seen
}

/// Fails naming the first missing sequence numbers unless all COUNT were seen.
fn assert_all_seen(seen: &BTreeSet<u32>) {
    assert_eq!(
        seen.len(),
        COUNT as usize,
        "missing datagrams: {:?}",
        (0..COUNT)
            .filter(|s| !seen.contains(s))
            .take(20)
            .collect::<Vec<_>>()
    );
}

fn tx_count(v: &Veth, q: &mut XdpQueue, mac: [u8; 6]) {
    let receiver = v.peer.udp(SocketAddrV4::new(XDP_PEER, 0));
    receiver
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let rport = receiver.local_addr().unwrap().port();
    // The kernel socket is the slow end: give it room, and keep the sender
    // at most WINDOW datagrams ahead of the reader so none overflow it.
    const WINDOW: u32 = 128;
    let rcvbuf: libc::c_int = 8 << 20;
    // SAFETY: setsockopt reads one c_int from a valid pointer; the fd is open.
    let rc = unsafe {
        libc::setsockopt(
            receiver.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&rcvbuf as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", io::Error::last_os_error());
    let received = AtomicU32::new(0);
    std::thread::scope(|s| {
        let reader = s.spawn(|| read_seqs(&receiver, &received, Duration::from_secs(10)));
        let mut seq = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while seq < COUNT {
            assert!(Instant::now() < deadline, "TX stalled at {seq}");
            if seq - received.load(Ordering::Acquire) > WINDOW {
                q.idle();
                std::thread::yield_now();
                continue;
            }
            let mut burst = Burst::new();
            for s in seq..(seq + 32).min(COUNT) {
                let frame = Udp {
                    dst_mac: v.peer_mac,
                    src_mac: mac,
                    src: SocketAddrV4::new(XDP_GATEWAY, 6002),
                    dst: SocketAddrV4::new(XDP_PEER, rport),
                    payload: seq_payload(s),
                }
                .build();
                burst.push(PoolBuf::from_slice(&frame).unwrap());
            }
            // Frames are accepted in order; resend the rest next round.
            seq += q.tx_burst(&mut burst) as u32;
            q.idle();
        }
        for _ in 0..100 {
            q.idle();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_all_seen(&reader.join().unwrap());
    });
}

#[test]
fn afxdp_moves_1000_frames_each_way() {
    let v = veth(1, 1500);
    let mut port =
        v.ns.enter(|| XdpPort::open(&skb_config(&v.dev, 1)))
            .expect("open af_xdp");
    let mac = port.info().mac;
    let mut queues = port.take_queues();
    v.peer.ip(&[
        "neigh",
        "replace",
        &XDP_GATEWAY.to_string(),
        "lladdr",
        &format_mac(&mac),
        "dev",
        &v.peer_dev,
        "nud",
        "permanent",
    ]);

    std::thread::scope(|s| {
        s.spawn(|| send_count(&v, 6100));
        let seen = rx_count(&mut queues, 6100);
        assert_eq!(
            seen.len(),
            COUNT as usize,
            "missing: {:?}",
            (0..COUNT)
                .filter(|s| !seen.contains(s))
                .take(20)
                .collect::<Vec<_>>()
        );
    });
    tx_count(&v, &mut queues[0], mac);
    assert_eq!(queues[0].rx_dropped(), 0);

    // Dropped on a thread inside the namespace this time.
    v.ns.enter(move || drop((queues, port)));
    assert_no_xdp(&v);
}

#[test]
fn afxdp_two_queues_share_the_program_and_detach_when_the_last_goes() {
    let v = veth(2, 1500);
    let mut port =
        v.ns.enter(|| XdpPort::open(&skb_config(&v.dev, 2)))
            .expect("open af_xdp with 2 queues");
    let mac = port.info().mac;
    let mut queues = port.take_queues();
    assert_eq!(queues.len(), 2);
    assert_eq!((queues[0].id(), queues[1].id()), (0, 1));
    v.peer.ip(&[
        "neigh",
        "replace",
        &XDP_GATEWAY.to_string(),
        "lladdr",
        &format_mac(&mac),
        "dev",
        &v.peer_dev,
        "nud",
        "permanent",
    ]);
    std::thread::scope(|s| {
        s.spawn(|| send_count(&v, 6200));
        let seen = rx_count(&mut queues, 6200);
        assert_eq!(seen.len(), COUNT as usize);
    });
    let second = queues.pop().unwrap();
    drop(second);
    assert!(
        v.ns.link(&v.dev).contains("xdpgeneric"),
        "program must stay while queue 0 lives"
    );
    drop(queues);
    drop(port);
    assert_no_xdp(&v);
}

// ------------------------------------------------ shared UMEM (open_pair)

/// The WAN-side peer of the pair tests, on another subnet routed through the "gateway".
const XDP_WAN_PEER: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 1);
/// The "gateway"'s address on the WAN side (never assigned: the test forwards).
const XDP_WAN_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 2);
/// Frames per socket in the pair tests: the smallest UMEM, so forwarding
/// 1000 frames recycles every frame many times through both sockets.
const PAIR_FRAMES: u32 = 64;

/// A gateway namespace (`lan.ns`) with two veths: `lan` to a peer at
/// XDP_PEER, `wan` (device, peer device, peer namespace, peer MAC) to a
/// peer at XDP_WAN_PEER; each peer routes the other's subnet through it.
struct Pair {
    lan: Veth,
    wan: (String, String, Netns, [u8; 6]),
}

impl Pair {
    fn new() -> Pair {
        let lan = veth(1, 1500);
        let wan = veth_in(&lan.ns, 1, 1500, XDP_WAN_PEER);
        let (lan_mac, wan_mac) = (lan.ns.mac(&lan.dev), lan.ns.mac(&wan.0));
        for (peer, dev, gw, mac, other) in [
            (
                &lan.peer,
                &lan.peer_dev,
                XDP_GATEWAY,
                lan_mac,
                "10.203.0.0/24",
            ),
            (&wan.2, &wan.1, XDP_WAN_GATEWAY, wan_mac, "10.202.0.0/24"),
        ] {
            let gw = gw.to_string();
            peer.ip(&[
                "neigh",
                "replace",
                &gw,
                "lladdr",
                &format_mac(&mac),
                "dev",
                dev,
                "nud",
                "permanent",
            ]);
            peer.ip(&["route", "add", other, "via", &gw, "dev", dev]);
        }
        Pair { lan, wan }
    }

    fn open(&self) -> (XdpPort, XdpPort) {
        let cfg = |dev: &str| XdpConfig {
            frame_count: PAIR_FRAMES,
            ..skb_config(dev, 1)
        };
        self.lan
            .ns
            .enter(|| XdpPort::open_pair(&cfg(&self.lan.dev), &cfg(&self.wan.0)))
            .expect("open the AF_XDP pair")
    }

    fn assert_no_xdp(&self) {
        assert_no_xdp(&self.lan);
        let link = self.lan.ns.link(&self.wan.0);
        assert!(
            !link.contains("xdp"),
            "XDP program left on {}: {link}",
            self.wan.0
        );
    }
}

/// Streams COUNT datagrams from a socket in `tx_ns` to `to_addr` in
/// `rx_ns` while the test forwards every frame from `from` to `to` (MACs
/// rewritten in place, nothing copied): every datagram must arrive once,
/// every frame received must be a lent UMEM frame, and `to` must take all.
/// Returns the frames forwarded.
fn stream_through(
    (tx_ns, rx_ns, to_addr): (&Netns, &Netns, Ipv4Addr),
    (from, to): (&mut XdpQueue, &mut XdpQueue),
    (dst_mac, src_mac): ([u8; 6], [u8; 6]),
) -> u64 {
    let receiver = rx_ns.udp(SocketAddrV4::new(to_addr, 0));
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let dst = receiver.local_addr().unwrap();
    let sender = tx_ns.udp(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    // At most WINDOW datagrams in flight: the rings hold PAIR_FRAMES / 2.
    const WINDOW: u32 = 16;
    let received = AtomicU32::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut forwarded = 0u64;
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let seen = read_seqs(&receiver, &received, Duration::from_secs(20));
            done.store(true, Ordering::Release);
            seen
        });
        s.spawn(|| {
            let mut seq = 0;
            while seq < COUNT && !done.load(Ordering::Acquire) {
                if seq - received.load(Ordering::Acquire) >= WINDOW {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                sender.send_to(&seq_payload(seq), dst).unwrap();
                seq += 1;
            }
        });
        let mut burst = Burst::new();
        while !done.load(Ordering::Acquire) {
            if from.rx_burst(&mut burst) == 0 {
                from.idle();
                to.idle();
                std::thread::yield_now();
                continue;
            }
            for b in burst.iter_mut() {
                assert!(b.in_umem(), "a received frame was copied out of the UMEM");
                b.data_mut()[..6].copy_from_slice(&dst_mac);
                b.data_mut()[6..12].copy_from_slice(&src_mac);
            }
            let n = burst.len();
            assert_eq!(to.tx_burst(&mut burst), n, "the other port refused frames");
            forwarded += n as u64;
        }
        assert_all_seen(&reader.join().unwrap());
    });
    forwarded
}

#[test]
fn afxdp_pair_forwards_by_descriptor_both_ways_on_a_shared_umem() {
    let p = Pair::new();
    let (mut lan, mut wan) = p.open();
    let (lan_mac, wan_mac) = (lan.info().mac, wan.info().mac);
    let (mut lqs, mut wqs) = (lan.take_queues(), wan.take_queues());
    let (lq, wq) = (&mut lqs[0], &mut wqs[0]);

    // LAN peer -> WAN peer, then back: 1000 datagrams each way through 128
    // shared frames, each frame received on one socket and sent on the other.
    let out = stream_through(
        (&p.lan.peer, &p.wan.2, XDP_WAN_PEER),
        (&mut *lq, &mut *wq),
        (p.wan.3, wan_mac),
    );
    let back = stream_through(
        (&p.wan.2, &p.lan.peer, XDP_PEER),
        (&mut *wq, &mut *lq),
        (p.lan.peer_mac, lan_mac),
    );
    assert!(
        out >= u64::from(COUNT) && back >= u64::from(COUNT),
        "{out} {back}"
    );
    assert_eq!((lq.rx_dropped(), wq.rx_dropped()), (0, 0));
    // Sent by descriptor: not one frame copied on either side.
    assert_eq!((lq.tx_copied(), wq.tx_copied()), (0, 0));
    // Nothing lost below the gateway either (fill ring never empty, no TX invalid).
    for q in [&mut *lq, &mut *wq] {
        let d = q.host_drops().expect("XDP_STATISTICS");
        for r in [
            HostDrop::XskRxDropped,
            HostDrop::XskTxInvalid,
            HostDrop::XskRxInvalid,
        ] {
            assert_eq!(d[r as usize], 0, "{r:?} on queue {}", q.id());
        }
    }
    // A frame the gateway makes itself (heap buffer) is copied into a free frame.
    let receiver = p.wan.2.udp(SocketAddrV4::new(XDP_WAN_PEER, 0));
    let rport = receiver.local_addr().unwrap().port();
    let frame = Udp {
        dst_mac: p.wan.3,
        src_mac: wan_mac,
        src: SocketAddrV4::new(XDP_WAN_GATEWAY, 6300),
        dst: SocketAddrV4::new(XDP_WAN_PEER, rport),
        payload: payload("heap", 200),
    }
    .build();
    send_one(wq, &frame);
    assert_eq!(recv_payload(&receiver).0, payload("heap", 200));
    assert_eq!(wq.tx_copied(), 1);

    drop((lqs, wqs, lan, wan));
    p.assert_no_xdp();
}

#[test]
fn afxdp_lent_frames_outlive_their_port_and_other_threads_may_drop_them() {
    let p = Pair::new();
    let (mut lan, wan) = p.open();
    let mut lq = lan.take_queues();
    let sender = p.lan.peer.udp(SocketAddrV4::new(XDP_PEER, 0));
    for tag in ["kept-here", "kept-there"] {
        sender
            .send_to(&payload(tag, 100), SocketAddrV4::new(XDP_WAN_PEER, 7000))
            .unwrap();
    }
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut burst = Burst::new();
    while held.len() < 2 {
        assert!(Instant::now() < deadline, "frames did not arrive");
        lq[0].rx_burst(&mut burst);
        held.extend(burst.drain(..));
        lq[0].idle();
    }
    assert!(
        held.iter().all(|b| b.in_umem()),
        "received frames are lent in place"
    );
    let copies: Vec<Vec<u8>> = held.iter().map(|b| b.data().to_vec()).collect();
    // The port and its UMEM go while both buffers still point into it.
    drop((lq, lan, wan));
    p.assert_no_xdp();
    let there = held.pop().unwrap();
    let expect_there = copies[1].clone();
    std::thread::spawn(move || {
        assert_eq!(there.data(), &expect_there[..]);
        drop(there);
    })
    .join()
    .unwrap();
    let here = held.pop().unwrap();
    assert_eq!(here.data(), &copies[0][..]);
    assert_eq!(
        Udp::parse(here.data()).unwrap().payload,
        payload("kept-here", 100)
    );
    drop(here);
}

#[test]
fn afxdp_pair_with_different_queue_counts_or_copy_modes_is_refused_before_touching_the_kernel() {
    let p = Pair::new();
    // Sockets on one UMEM bind alike: zero_copy on one port only is refused too.
    let zero_copy = XdpConfig {
        zero_copy: true,
        ..skb_config(&p.wan.0, 1)
    };
    for (wan, names) in [
        (skb_config(&p.wan.0, 2), "queues"),
        (zero_copy, "zero_copy"),
    ] {
        let err = p
            .lan
            .ns
            .enter(|| XdpPort::open_pair(&skb_config(&p.lan.dev, 1), &wan))
            .err()
            .unwrap_or_else(|| panic!("mismatched {names} accepted"));
        assert!(
            matches!(&err, XdpError::InvalidConfig { interface, .. } if *interface == p.wan.0),
            "{err}"
        );
        assert!(err.to_string().contains(names), "{err}");
    }
    p.assert_no_xdp();
}

#[test]
fn afxdp_native_mode_carries_udp_both_ways() {
    let v = veth(1, 1500);
    let cfg = XdpConfig {
        mode: XdpMode::Native,
        ..XdpConfig::new(v.dev.clone())
    };
    let mut port =
        v.ns.enter(|| XdpPort::open(&cfg))
            .expect("open af_xdp in native mode");
    let link = v.ns.link(&v.dev);
    assert!(
        link.contains("xdp ") || link.contains("xdpdrv"),
        "native program attached: {link}"
    );
    let mac = port.info().mac;
    let mut queues = port.take_queues();
    v.peer.ip(&[
        "neigh",
        "replace",
        &XDP_GATEWAY.to_string(),
        "lladdr",
        &format_mac(&mac),
        "dev",
        &v.peer_dev,
        "nud",
        "permanent",
    ]);
    let sender = v.peer.udp(SocketAddrV4::new(XDP_PEER, 0));
    sender
        .send_to(b"native rx", SocketAddrV4::new(XDP_GATEWAY, 6300))
        .unwrap();
    let (got, _) = recv_udp(&mut queues[0], Duration::from_secs(5));
    assert_eq!(
        (got.dst_mac, got.payload.as_slice()),
        (mac, &b"native rx"[..])
    );
    let receiver = v.peer.udp(SocketAddrV4::new(XDP_PEER, 0));
    let frame = Udp {
        dst_mac: v.peer_mac,
        src_mac: mac,
        src: SocketAddrV4::new(XDP_GATEWAY, 6301),
        dst: SocketAddrV4::new(XDP_PEER, receiver.local_addr().unwrap().port()),
        payload: b"native tx".to_vec(),
    }
    .build();
    send_one(&mut queues[0], &frame);
    assert_eq!(recv_payload(&receiver).0, b"native tx");
    drop(queues);
    drop(port);
    assert_no_xdp(&v);
}

#[test]
fn afxdp_zero_copy_on_a_driver_without_it_fails_cleanly() {
    let v = veth(1, 1500);
    let cfg = XdpConfig {
        zero_copy: true,
        ..skb_config(&v.dev, 1)
    };
    let err =
        v.ns.enter(|| XdpPort::open(&cfg))
            .err()
            .expect("veth in SKB mode has no zero-copy");
    assert!(
        matches!(
            &err,
            XdpError::Sys {
                call: "xsk_socket__create_shared",
                queue: Some(0),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&v.dev), "{err}");
    assert_no_xdp(&v);
}

#[test]
fn afxdp_unknown_interface_is_a_named_error() {
    let ns = Netns::new();
    let name = unique("nbnone");
    let err = ns
        .enter(|| XdpPort::open(&XdpConfig::new(name.clone())))
        .err()
        .expect("interface does not exist");
    assert!(
        matches!(&err, XdpError::NoSuchInterface { interface } if *interface == name),
        "{err}"
    );
    assert!(err.to_string().contains(&name), "{err}");
}

#[test]
fn afxdp_rejects_mtu_larger_than_a_frame() {
    let v = veth(1, 9000);
    let err =
        v.ns.enter(|| XdpPort::open(&skb_config(&v.dev, 1)))
            .err()
            .expect("MTU 9000 cannot fit");
    assert!(
        matches!(&err, XdpError::MtuTooLarge { mtu: 9000, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&v.dev) && msg.contains("9000") && msg.contains(&MAX_MTU.to_string()),
        "{msg}"
    );
    assert_no_xdp(&v);

    let ok = MAX_MTU.to_string();
    v.ns.ip(&["link", "set", &v.dev, "mtu", &ok]);
    let port =
        v.ns.enter(|| XdpPort::open(&skb_config(&v.dev, 1)))
            .expect("MTU at the limit opens");
    assert_eq!(u32::from(port.info().mtu), MAX_MTU);
    drop(port);
    assert_no_xdp(&v);
}

#[test]
fn afxdp_rejects_bad_frame_count() {
    let cfg = XdpConfig {
        frame_count: 1000,
        ..XdpConfig::new("lo")
    };
    let err = XdpPort::open(&cfg)
        .err()
        .expect("1000 is not a power of two");
    assert!(matches!(err, XdpError::InvalidConfig { .. }), "{err}");
    assert!(err.to_string().contains("frame_count"), "{err}");
}
