//! The DPDK backend over in-process ports (net_ring, net_null): bursts,
//! mbuf editing, pool accounting, port setup and errors.
//!
//! All tests of this binary share one EAL (`Eal::init` returns the same one);
//! under cargo-nextest each test runs in its own process with its own EAL.
#![cfg(feature = "dpdk")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use scistream_dataplane::backend::dpdk::{
    DpdkError, DpdkPort, DpdkPortConfig, Eal, Mbuf, RingPort, RingPortConfig,
};
use scistream_dataplane::backend::{Burst, PacketBuf, PortQueue, BURST};

/// EAL without hugepages, PCI, shared config or telemetry, so any number of
/// test processes can run at once.
const EAL_ARGS: &[&str] = &[
    "--no-huge",
    "-m",
    "512",
    "--no-shconf",
    "--no-pci",
    "--no-telemetry",
    "--log-level=*:warning",
    "--lcores=0@(0-1)",
];

/// `RTE_PKTMBUF_HEADROOM` of the system DPDK build.
const HEADROOM: usize = 128;

fn eal() -> &'static Eal {
    let args: Vec<String> = EAL_ARGS.iter().map(|s| s.to_string()).collect();
    Eal::init(&args).expect("EAL initialises")
}

/// A name no other test of this process uses.
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}{}", N.fetch_add(1, Ordering::Relaxed))
}

/// An Ethernet frame of `len` bytes whose every byte depends on `seed`.
fn frame(seed: usize, len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i * 7 + seed * 13) as u8).collect();
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

/// An mbuf from `q` holding a copy of `bytes`.
fn mbuf_with(q: &mut impl PortQueue<Buf = Mbuf>, bytes: &[u8]) -> Mbuf {
    let mut m = q.alloc().expect("pool has mbufs");
    assert!(m.append(bytes.len()));
    m.data_mut().copy_from_slice(bytes);
    m
}

/// Receives until `n` frames have come or 10 polls in a row bring nothing.
/// Returns the frames' bytes and how many rx_burst calls returned frames.
fn receive(q: &mut impl PortQueue<Buf = Mbuf>, n: usize) -> (Vec<Vec<u8>>, usize) {
    let mut got = Vec::new();
    let (mut calls, mut idle) = (0, 0);
    while got.len() < n && idle < 10 {
        let mut burst = Burst::<Mbuf>::new();
        let k = q.rx_burst(&mut burst);
        assert_eq!(k, burst.len());
        if k == 0 {
            idle += 1;
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        idle = 0;
        calls += 1;
        got.extend(burst.iter().map(|m| m.data().to_vec()));
    }
    (got, calls)
}

#[test]
fn eal_init_returns_the_same_eal_for_later_calls() {
    let first = eal();
    let again = Eal::init(&["--no-huge".to_string()]).expect("later calls succeed");
    assert!(std::ptr::eq(first, again));
    assert_eq!(first.args()[0], "--no-huge");
}

#[test]
fn injected_frames_come_out_of_rx_burst_in_order() {
    let eal = eal();
    let (ring, port) = RingPort::new(eal, &unique("rxord"), 1).unwrap();
    let start = port.mempool_available();
    let mut q = port.queue(0);
    let sent: Vec<Vec<u8>> = (0..100).map(|i| frame(i, 60 + i * 9)).collect();
    for f in &sent {
        ring.inject(0, f).unwrap();
    }
    assert_eq!(ring.rx_pending(0), 100);

    // A full burst first: 32 of the 100.
    let mut burst = Burst::<Mbuf>::new();
    assert_eq!(q.rx_burst(&mut burst), BURST);
    // A full burst has no room left, so nothing more is taken.
    assert_eq!(q.rx_burst(&mut burst), 0);
    let mut got: Vec<Vec<u8>> = burst.iter().map(|m| m.data().to_vec()).collect();
    assert!(burst
        .iter()
        .all(|m| m.segments() == 1 && m.pkt_len() as usize == m.len()));
    drop(burst);

    let (rest, calls) = receive(&mut q, 100 - BURST);
    got.extend(rest);
    assert_eq!(calls, 3, "68 frames take 3 more bursts of at most 32");
    assert_eq!(got.len(), 100);
    assert_eq!(got, sent, "same bytes, same order");
    assert_eq!(ring.rx_pending(0), 0);

    let mut burst = Burst::<Mbuf>::new();
    assert_eq!(q.rx_burst(&mut burst), 0, "nothing left");
    assert_eq!(port.stats().ipackets, 100);
    assert_eq!(port.mempool_available(), start, "received mbufs were freed");
}

#[test]
fn rx_burst_appends_after_frames_already_in_the_burst() {
    let eal = eal();
    let (ring, port) = RingPort::new(eal, &unique("rxapp"), 1).unwrap();
    let mut q = port.queue(0);
    for i in 0..40 {
        ring.inject(0, &frame(i, 64)).unwrap();
    }
    let mut burst = Burst::<Mbuf>::new();
    burst.push(mbuf_with(&mut q, &[0xaa; 20]));
    assert_eq!(q.rx_burst(&mut burst), BURST - 1);
    assert_eq!(burst.len(), BURST);
    assert_eq!(burst[0].data(), &[0xaa; 20]);
    for (i, m) in burst.iter().skip(1).enumerate() {
        assert_eq!(m.data(), frame(i, 64).as_slice());
    }
    assert_eq!(ring.rx_pending(0), 40 - (BURST as u32 - 1));
}

#[test]
fn tx_burst_puts_exactly_the_given_bytes_on_the_tx_ring() {
    let eal = eal();
    let (ring, port) = RingPort::new(eal, &unique("txbytes"), 1).unwrap();
    let start = port.mempool_available();
    let mut q = port.queue(0);
    let frames: Vec<Vec<u8>> = (0..BURST).map(|i| frame(i, 64 + 37 * i)).collect();
    let mut burst = Burst::<Mbuf>::new();
    for f in &frames {
        burst.push(mbuf_with(&mut q, f));
    }
    assert_eq!(q.tx_burst(&mut burst), BURST);
    assert!(burst.is_empty());
    assert_eq!(q.tx_burst(&mut burst), 0, "an empty burst sends nothing");
    assert_eq!(ring.tx_pending(0), BURST as u32);
    assert_eq!(
        port.mempool_available(),
        start - BURST as u32,
        "the ring holds the sent mbufs"
    );
    assert_eq!(ring.drain(0), frames);
    assert!(ring.drain(0).is_empty());
    assert_eq!(port.mempool_available(), start, "draining freed them");
    let st = port.stats();
    assert_eq!((st.opackets, st.oerrors), (BURST as u64, 0));
}

#[test]
fn tx_burst_frees_what_a_full_tx_ring_refuses() {
    let eal = eal();
    let mut cfg = RingPortConfig::new(unique("txfull"), 1);
    cfg.ring_size = 48;
    let (ring, port) = RingPort::with_config(eal, &cfg).unwrap();
    let start = port.mempool_available();
    let mut q = port.queue(0);
    let frames: Vec<Vec<u8>> = (0..2 * BURST).map(|i| frame(i, 100 + i)).collect();

    let mut burst = Burst::<Mbuf>::new();
    for f in &frames[..BURST] {
        burst.push(mbuf_with(&mut q, f));
    }
    assert_eq!(q.tx_burst(&mut burst), BURST);
    for f in &frames[BURST..] {
        burst.push(mbuf_with(&mut q, f));
    }
    assert_eq!(
        q.tx_burst(&mut burst),
        48 - BURST,
        "only 16 slots were left"
    );
    assert!(burst.is_empty(), "the refused mbufs left the burst");
    assert_eq!(
        port.mempool_available(),
        start - 48,
        "the 16 refused mbufs were freed"
    );
    assert_eq!(ring.tx_pending(0), 48);
    assert_eq!(port.stats().opackets, 48);

    assert_eq!(ring.drain(0), frames[..48].to_vec());
    assert_eq!(port.mempool_available(), start, "no mbuf leaked");
}

#[test]
fn alloc_gives_an_empty_buffer_with_headroom_and_room_for_a_frame() {
    let eal = eal();
    let (_ring, port) = RingPort::new(eal, &unique("alloc"), 1).unwrap();
    let mut q = port.queue(0);
    let m = q.alloc().unwrap();
    assert!(m.is_empty());
    assert_eq!(m.len(), 0);
    assert_eq!(m.pkt_len(), 0);
    assert_eq!(m.segments(), 1);
    assert_eq!(m.headroom(), HEADROOM);
    assert!(m.tailroom() >= 1500 + 18 + 64, "tailroom {}", m.tailroom());
    let in_use = port.mempool_in_use();
    drop(m);
    assert_eq!(port.mempool_in_use(), in_use - 1);
}

#[test]
fn mbuf_prepend_adj_append_trim_keep_bounds() {
    let eal = eal();
    let (_ring, port) = RingPort::new(eal, &unique("edit"), 1).unwrap();
    let mut q = port.queue(0);
    let mut m = mbuf_with(&mut q, &[1, 2, 3, 4]);
    let (head, tail) = (m.headroom(), m.tailroom());
    assert_eq!(head, HEADROOM);

    assert!(m.prepend(2));
    m.data_mut()[..2].copy_from_slice(&[8, 9]);
    assert_eq!(m.data(), &[8, 9, 1, 2, 3, 4]);
    assert_eq!((m.headroom(), m.tailroom()), (head - 2, tail));

    assert!(m.append(3));
    m.data_mut()[6..].copy_from_slice(&[5, 6, 7]);
    assert_eq!(m.data(), &[8, 9, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(m.tailroom(), tail - 3);

    assert!(m.adj(2));
    assert!(m.trim(3));
    assert_eq!(m.data(), &[1, 2, 3, 4]);
    assert_eq!(m.pkt_len(), 4, "pkt_len follows data_len");
    assert_eq!((m.headroom(), m.tailroom()), (head, tail));

    // Out of bounds: false, and nothing changes.
    let check_unchanged = |m: &Mbuf| {
        assert_eq!(m.data(), &[1, 2, 3, 4]);
        assert_eq!((m.headroom(), m.tailroom(), m.pkt_len()), (head, tail, 4));
    };
    assert!(!m.prepend(head + 1));
    check_unchanged(&m);
    assert!(!m.append(tail + 1));
    check_unchanged(&m);
    assert!(!m.append(70_000), "beyond the 16-bit mbuf length");
    check_unchanged(&m);
    assert!(!m.prepend(70_000));
    check_unchanged(&m);
    assert!(!m.adj(5));
    check_unchanged(&m);
    assert!(!m.trim(5));
    check_unchanged(&m);

    // Exactly at the bounds.
    assert!(m.prepend(head));
    assert_eq!((m.headroom(), m.len()), (0, head + 4));
    assert!(m.adj(head));
    assert!(m.append(tail));
    assert_eq!((m.tailroom(), m.len()), (0, tail + 4));
    assert!(m.trim(tail));
    assert!(m.adj(4));
    assert!(m.is_empty());
    assert!(m.set_len(10));
    assert_eq!(m.len(), 10);
    assert!(m.set_len(3));
    assert_eq!(m.pkt_len(), 3);
}

#[test]
fn null_vdev_opened_by_string_reports_sane_info_and_moves_frames() {
    let eal = eal();
    let device = unique("net_null");
    let mut cfg = DpdkPortConfig::new("nullport", device.clone());
    cfg.queues = 2;
    cfg.rx_desc = 256;
    cfg.tx_desc = 256;
    cfg.mempool_size = 2047;
    let port = DpdkPort::open(eal, &cfg).unwrap();
    let info = port.info();
    assert_eq!(info.name, device);
    assert_eq!(info.driver, "net_null");
    assert_eq!(info.queues, 2);
    assert_eq!(info.mtu, 1500);
    assert_eq!(port.device(), device);
    assert!(
        port.wait_link_up(Duration::from_secs(2)),
        "net_null link is up once started"
    );
    assert!(port.link_up());

    let mut q1 = port.queue(1);
    assert!(
        matches!(port.try_queue(1), Err(DpdkError::Queue { queue: 1, .. })),
        "queue handed out twice"
    );
    assert!(
        matches!(port.try_queue(2), Err(DpdkError::Queue { queue: 2, .. })),
        "no queue 2"
    );

    // net_null receives a full burst of 64-byte frames on every poll, and sends anything.
    let mut burst = Burst::<Mbuf>::new();
    assert_eq!(q1.rx_burst(&mut burst), BURST);
    assert!(burst.iter().all(|m| m.len() == 64));
    assert_eq!(q1.tx_burst(&mut burst), BURST);
    drop(q1);
    let again = port
        .try_queue(1)
        .expect("a dropped queue can be taken again");
    drop(again);

    // Closing removes the vdev, so the same device string opens again.
    drop(port);
    let port = DpdkPort::open(eal, &cfg).expect("reopen after close");
    assert_eq!(port.info().driver, "net_null");
}

#[test]
fn net_ring_vdev_opened_by_string() {
    let eal = eal();
    let device = unique("net_ring_v");
    let cfg = DpdkPortConfig {
        mempool_size: 1023,
        mempool_cache: 32,
        ..DpdkPortConfig::new("ringvdev", &device)
    };
    let port = DpdkPort::open(eal, &cfg).unwrap();
    let info = port.info();
    assert_eq!(
        (info.name.as_str(), info.driver.as_str()),
        (device.as_str(), "net_ring")
    );
    assert_eq!((info.queues, info.mtu), (1, 1500));
    assert!(port.wait_link_up(Duration::from_secs(2)));
    // A net_ring vdev made from a string loops its own TX ring back to RX.
    let mut q = port.queue(0);
    let mut burst = Burst::<Mbuf>::new();
    burst.push(mbuf_with(&mut q, &frame(1, 80)));
    assert_eq!(q.tx_burst(&mut burst), 1);
    let (got, _) = receive(&mut q, 1);
    assert_eq!(got, vec![frame(1, 80)]);
}

#[test]
fn ring_port_info() {
    let eal = eal();
    let cfg = RingPortConfig {
        mac: [0x02, 0, 0, 0xaa, 0xbb, 0xcc],
        ..RingPortConfig::new(unique("info"), 3)
    };
    let (ring, port) = RingPort::with_config(eal, &cfg).unwrap();
    let info = port.info();
    assert_eq!(info.mac, [0x02, 0, 0, 0xaa, 0xbb, 0xcc]);
    let (_other, other) = RingPort::new(eal, &unique("info"), 1).unwrap();
    assert_ne!(other.info().mac, info.mac);
    assert_eq!(other.info().mac[0], 0x02, "locally administered unicast");
    assert_eq!(info.name, ring.ethdev());
    assert!(info.name.starts_with("net_ring_"));
    assert_eq!(
        (info.driver.as_str(), info.queues, info.mtu),
        ("net_ring", 3, 1500)
    );
    assert!(port.link_up());
    // Each queue has its own pair of rings.
    let mut q2 = port.queue(2);
    ring.inject(2, &frame(2, 70)).unwrap();
    assert_eq!(ring.rx_pending(0), 0);
    let (got, _) = receive(&mut q2, 1);
    assert_eq!(got, vec![frame(2, 70)]);
    assert!(matches!(
        ring.inject(3, &frame(0, 60)),
        Err(DpdkError::Queue { queue: 3, .. })
    ));
}

#[test]
fn jumbo_frames_pass_rx_and_tx_intact() {
    let eal = eal();
    let mut cfg = RingPortConfig::new(unique("jumbo"), 1);
    cfg.mtu = 9000;
    cfg.ring_size = 64;
    cfg.mempool_size = 511;
    let (ring, port) = RingPort::with_config(eal, &cfg).unwrap();
    assert_eq!(port.info().mtu, 9000);
    let mut q = port.queue(0);
    let big = frame(9, 9018);
    ring.inject(0, &big).unwrap();
    let mut burst = Burst::<Mbuf>::new();
    assert_eq!(q.rx_burst(&mut burst), 1);
    assert_eq!(burst[0].segments(), 1);
    assert_eq!(burst[0].data(), big.as_slice());
    assert!(burst[0].tailroom() >= 64, "room for an ESP trailer");
    assert_eq!(q.tx_burst(&mut burst), 1);
    assert_eq!(ring.drain(0), vec![big]);

    // One byte more than the mbuf holds is refused, naming the port.
    let room = 9018 + 64;
    let err = ring.inject(0, &frame(0, room + 1)).unwrap_err();
    assert!(matches!(err, DpdkError::FrameTooLarge { .. }), "{err}");
    assert!(err.to_string().contains(&cfg.name), "{err}");
}

#[test]
fn a_bad_device_string_gives_an_error_naming_the_device() {
    let eal = eal();
    for device in [
        "net_nosuchpmd0",
        "0000:42:00.0",
        "net_null_bad0,nosucharg=1",
    ] {
        let cfg = DpdkPortConfig::new("badport", device);
        let err = DpdkPort::open(eal, &cfg).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(device) && msg.contains("badport"), "{msg}");
    }
    let err = DpdkPort::open(eal, &DpdkPortConfig::new("empty", "")).unwrap_err();
    assert!(matches!(err, DpdkError::Config { .. }), "{err}");
    let cfg = DpdkPortConfig {
        mtu: 65400,
        ..DpdkPortConfig::new("huge", "net_null_huge0")
    };
    let err = DpdkPort::open(eal, &cfg).unwrap_err();
    assert!(
        matches!(err, DpdkError::Config { .. }) && err.to_string().contains("65400"),
        "{err}"
    );
}

#[test]
fn worker_threads_register_and_own_their_queue() {
    let eal = eal();
    let (ring, port) = RingPort::new(eal, &unique("worker"), 2).unwrap();
    let start = port.mempool_available();
    let frames: Vec<Vec<u8>> = (0..50).map(|i| frame(i, 64 + i)).collect();
    for f in &frames {
        ring.inject(1, f).unwrap();
    }
    let mut q = port.queue(1);
    let worker = std::thread::spawn(move || {
        let id = eal.register_thread().expect("register");
        assert_eq!(eal.register_thread().unwrap(), id, "idempotent");
        assert_ne!(id, u32::MAX);
        // Echo everything back out of the same queue.
        let mut echoed = 0;
        let mut idle = 0;
        while echoed < 50 && idle < 1000 {
            let mut burst = Burst::<Mbuf>::new();
            if q.rx_burst(&mut burst) == 0 {
                idle += 1;
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            echoed += q.tx_burst(&mut burst);
        }
        echoed
    });
    assert_eq!(worker.join().unwrap(), 50);
    assert_eq!(ring.drain(1), frames);
    assert_eq!(
        port.mempool_available(),
        start,
        "the worker's lcore cache is counted"
    );
}

#[test]
fn thread_registrations_are_released_when_threads_exit() {
    let eal = eal();
    // EAL has 128 lcore slots; 200 threads in turn only fit if each exit frees its slot.
    for _ in 0..200 {
        std::thread::spawn(move || eal.register_thread().expect("a free lcore"))
            .join()
            .unwrap();
    }
}

/// Waits up to `timeout` for `fd` to become readable.
fn readable_within(fd: std::os::fd::RawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the length of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
    n == 1 && pfd.revents & libc::POLLIN != 0
}

/// Sends `frame` out of kernel interface `iface` (an AF_PACKET socket),
/// so the DPDK side of a net_tap port receives it.
fn send_from_kernel(iface: &str, frame: &[u8]) {
    let name = std::ffi::CString::new(iface).unwrap();
    // SAFETY: plain system calls on a socket this function owns and closes;
    // the address is a zeroed sockaddr_ll with its fields set.
    unsafe {
        let index = libc::if_nametoindex(name.as_ptr());
        assert_ne!(index, 0, "no interface {iface}");
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = index as i32;
        addr.sll_halen = 6;
        let sent = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        libc::close(fd);
        assert_eq!(
            sent,
            frame.len() as isize,
            "sendto: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Adaptive workers sleep on a DPDK queue's RX interrupt: with net_tap
/// (whose PMD has them) the queue's descriptor stays quiet while nothing
/// comes and turns readable when a frame arrives from the kernel side.
#[test]
fn rx_interrupts_wake_a_sleeping_queue_when_a_frame_arrives() {
    let eal = eal();
    // Unique across concurrent test processes too (IFNAMSIZ is 16).
    let iface = format!("s2rxi{}", std::process::id() % 100_000);
    let mut cfg = DpdkPortConfig::new(
        "tapport",
        format!("{},iface={iface}", unique("net_tap_rxi")),
    );
    // net_tap fills its RX ring from the pool at set-up: leave it spare mbufs.
    (cfg.rx_desc, cfg.tx_desc) = (128, 128);
    cfg.mempool_size = 1023;
    cfg.mempool_cache = 32;
    cfg.rx_interrupts = true;
    let port = DpdkPort::open(eal, &cfg).unwrap();
    assert_eq!(port.info().driver, "net_tap");
    assert!(
        port.rx_interrupts(),
        "net_tap gives every RX queue an interrupt"
    );
    // Nothing from the kernel's own IPv6 (router solicitations, MLD) on it.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6"), "1");
    let mut q = port.queue(0);
    let fd = q
        .wait_fd()
        .expect("a queue with an RX interrupt has a wait descriptor");
    while !receive(&mut q, usize::MAX).0.is_empty() {}

    q.arm_wait();
    assert!(
        !readable_within(fd, Duration::from_millis(300)),
        "woke with nothing received"
    );
    q.disarm_wait();

    let sent = frame(7, 300);
    q.arm_wait();
    let sender = {
        let (iface, sent) = (iface.clone(), sent.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            send_from_kernel(&iface, &sent);
        })
    };
    assert!(
        readable_within(fd, Duration::from_secs(10)),
        "the frame raised no interrupt"
    );
    q.disarm_wait();
    sender.join().unwrap();
    let (got, _) = receive(&mut q, 1);
    assert_eq!(
        got,
        vec![sent],
        "the frame that woke the queue, byte for byte"
    );
}

/// A PMD without RX interrupts (net_ring, net_null) is configured without
/// them: the port says so and its queues have no wait descriptor, so
/// adaptive workers back off with short sleeps instead.
#[test]
fn rx_interrupts_fall_back_where_the_pmd_has_none() {
    let eal = eal();
    for device in [unique("net_null_rxi"), unique("net_ring_rxi")] {
        let cfg = DpdkPortConfig {
            mempool_size: 1023,
            mempool_cache: 32,
            rx_interrupts: true,
            ..DpdkPortConfig::new("nointr", &device)
        };
        let port = DpdkPort::open(eal, &cfg).unwrap();
        assert!(!port.rx_interrupts(), "{device}");
        let mut q = port.queue(0);
        assert_eq!(q.wait_fd(), None, "{device}");
        q.arm_wait();
        q.disarm_wait();
        // Still an ordinary working port.
        let mut burst = Burst::<Mbuf>::new();
        burst.push(mbuf_with(&mut q, &frame(2, 90)));
        assert_eq!(q.tx_burst(&mut burst), 1, "{device}");
    }
}

/// A veth pair in this process's network namespace, IPv6 off so the kernel
/// sends nothing on it; deleted on drop, also when a test fails.
struct Veth {
    a: String,
    b: String,
}

impl Veth {
    fn new() -> Veth {
        // Unique across concurrent test processes too (IFNAMSIZ is 16).
        let id = format!("{}x{}", std::process::id() % 100_000, unique(""));
        let (a, b) = (format!("s2pa{id}"), format!("s2pb{id}"));
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        };
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        // Ours from here on: deleted on drop.
        let v = Veth { a, b };
        for dev in [&v.a, &v.b] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"), "1");
            ip(&["link", "set", dev, "up"]);
        }
        v
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.a])
            .output();
    }
}

/// An Ethernet frame of the local experimental ethertype carrying `seq`.
fn numbered_frame(seq: u32) -> Vec<u8> {
    let mut f = frame(seq as usize, 120);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    f
}

/// The sequence numbers of the numbered frames among `frames`.
fn seqs(frames: &[Vec<u8>]) -> Vec<u32> {
    frames
        .iter()
        .filter(|f| f.len() == 120 && f[12..14] == [0x88, 0xb5])
        .map(|f| u32::from_be_bytes(f[14..18].try_into().unwrap()))
        .collect()
}

/// A net_af_packet port whose worker stops reading: the kernel drops what
/// no longer fits the socket's receive ring and counts it only in the
/// socket's PACKET_STATISTICS (DPDK's PMD reports no drops), which queue 0
/// reads as `packet_rx_dropped`. Every frame sent is received or counted.
#[test]
fn af_packet_ring_overflow_is_counted_as_packet_rx_drops() {
    use scistream_dataplane::host_drops::HostDrop;
    let eal = eal();
    let veth = Veth::new();
    let cfg = DpdkPortConfig {
        mempool_size: 1023,
        mempool_cache: 32,
        ..DpdkPortConfig::new(
            "afpacket",
            format!(
                "{},iface={},qpairs=1,blocksz=4096,framesz=2048,framecnt=64",
                unique("net_af_packet_drops"),
                veth.a
            ),
        )
    };
    let port = DpdkPort::open(eal, &cfg).unwrap();
    assert_eq!(port.info().driver, "net_af_packet");
    let mut q = port.queue(0);
    // The PMD bounces the link as it starts: send until a frame comes through.
    let mut seq = 1_000_000;
    loop {
        send_from_kernel(&veth.b, &numbered_frame(seq));
        std::thread::sleep(Duration::from_millis(20));
        if !seqs(&receive(&mut q, usize::MAX).0).is_empty() {
            break;
        }
        seq += 1;
        assert!(seq < 1_000_250, "no frame reached the port in 250 tries");
    }
    let before = q.host_drops().expect("queue 0 reports the port's drops");

    const SENT: u32 = 500;
    for i in 0..SENT {
        send_from_kernel(&veth.b, &numbered_frame(i));
    }
    // Until every frame is received or counted (the kernel may still be
    // delivering), at most 10 s.
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (after, dropped) = loop {
        got.extend(
            seqs(&receive(&mut q, usize::MAX).0)
                .into_iter()
                .filter(|&s| s < SENT),
        );
        let after = q.host_drops().unwrap();
        let dropped =
            after[HostDrop::PacketRxDropped as usize] - before[HostDrop::PacketRxDropped as usize];
        if got.len() as u64 + dropped >= u64::from(SENT) || std::time::Instant::now() > deadline {
            break (after, dropped);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(got.len() < SENT as usize, "a 64-frame ring kept all {SENT}");
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "received in order, each once"
    );
    assert!(dropped > 0, "the overflow was not counted");
    assert_eq!(
        got.len() as u64 + dropped,
        u64::from(SENT),
        "every frame received or counted"
    );
    assert_eq!(
        after[HostDrop::NicRxMissed as usize],
        0,
        "the PMD itself counts none"
    );
}
