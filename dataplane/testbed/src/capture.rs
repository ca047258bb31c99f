//! Packet capture and injection on testbed links, for tests that look at
//! the wire itself (is the WAN traffic encrypted? what does a gateway do
//! with a tampered frame?).
//!
//! - [`Capture`] runs `tcpdump -w` on one interface of one namespace. It is
//!   ready when `start` returns (tcpdump said it is listening), and `stop`
//!   ends it with SIGINT so that it flushes its file. Dropping a `Capture`
//!   kills tcpdump if it still runs and deletes the capture file, also while
//!   unwinding from a failed assertion.
//! - [`Capture::frames`] parses the classic pcap file tcpdump wrote into
//!   frames; [`Frame`] classifies Ethernet/IPv4/UDP headers.
//! - [`inject`] sends raw Ethernet frames out of an interface through an
//!   `AF_PACKET` socket (python3's standard library, so no extra package).
//! - [`contains`], [`fix_checksums`]: byte search and header repair;
//!   [`parse_mac`], [`format_mac`]: MAC text as in the stats and `ip link`.

use std::fs::{self, File};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::netns::{signal, wait_deadline, Node, Testbed};
use crate::paths::python;

/// How long tcpdump may take to say it is listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long tcpdump may take to flush and exit after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Kernel capture buffer handed to tcpdump (`-B`, KiB): large enough that
/// a few seconds of a busy veth fit while tcpdump writes its file.
const BUFFER_KIB: &str = "65536";

/// Counter behind each capture's directory name.
static SEQ: AtomicU32 = AtomicU32::new(0);

/// What tcpdump reported when it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// "N packets captured" (written to the file).
    pub captured: u64,
    /// "N packets dropped by kernel" (did not fit in the buffer).
    pub dropped_by_kernel: u64,
}

/// A running (or stopped) `tcpdump -w FILE` inside a testbed namespace.
pub struct Capture {
    child: Option<Child>,
    dir: PathBuf,
    file: PathBuf,
    stderr: PathBuf,
    what: String,
}

impl Capture {
    /// Starts `tcpdump -i ifname -w FILE` in `node`'s namespace and returns
    /// once it is listening, so every frame sent afterwards is captured
    /// (unless the kernel buffer overflows: see [`CaptureStats`]). Panics,
    /// with tcpdump's stderr, if it does not start within 10 s.
    pub fn start(tb: &Testbed, node: Node, ifname: &str) -> Capture {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "s2cap-{}-{}-{}-{ifname}",
            std::process::id(),
            n,
            node.suffix()
        ));
        fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create capture dir {}: {e}", dir.display()));
        let file = dir.join("capture.pcap");
        let stderr = dir.join("tcpdump.stderr");
        let what = format!("tcpdump on {ifname} in {}", tb.ns(node));
        let err = File::create(&stderr)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", stderr.display()));
        let file_s = file.to_string_lossy().into_owned();
        // -Z root: keep writing as root into our root-owned directory;
        // -n: no DNS; -B: a large kernel buffer.
        let child = tb.spawn_stdio(
            node,
            &[
                "tcpdump", "-n", "-Z", "root", "-B", BUFFER_KIB, "-i", ifname, "-w", &file_s,
            ],
            Stdio::null(),
            Stdio::from(err),
        );
        let mut cap = Capture {
            child: Some(child),
            dir,
            file,
            stderr,
            what,
        };
        cap.wait_listening();
        cap
    }

    /// Waits until tcpdump says it is listening; panics, with its stderr,
    /// if it exits first or does not within [`START_TIMEOUT`].
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.stderr_text().contains("listening on") {
                return;
            }
            let child = self.child.as_mut().expect("capture running");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                panic!(
                    "{} exited ({status}) before listening:\n{}",
                    self.what,
                    self.stderr_text()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} not listening within {START_TIMEOUT:?}:\n{}",
                    self.what,
                    self.stderr_text()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// What tcpdump printed on stderr so far.
    fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Stops tcpdump with SIGINT (it flushes the file and prints its
    /// counts) and returns what it reported. Waits one second first: the
    /// kernel hands tcpdump its frames in blocks retired after at most a
    /// second, and a frame still in an unretired block would be lost.
    /// Panics if tcpdump does not exit in time or reports no counts.
    pub fn stop(&mut self) -> CaptureStats {
        let Some(child) = self.child.take() else {
            panic!("{} already stopped", self.what);
        };
        thread::sleep(Duration::from_millis(1100));
        signal(&[child.id()], "INT");
        let f = wait_deadline(child, STOP_TIMEOUT);
        let text = self.stderr_text();
        assert!(
            !f.timed_out,
            "{} did not exit within {STOP_TIMEOUT:?} of SIGINT; killed:\n{text}",
            self.what
        );
        let count = |suffix: &str| -> Option<u64> {
            text.lines()
                .find_map(|l| l.trim().strip_suffix(suffix)?.trim().parse().ok())
        };
        CaptureStats {
            captured: count("packets captured")
                .unwrap_or_else(|| panic!("{}: no 'packets captured' line:\n{text}", self.what)),
            dropped_by_kernel: count("packets dropped by kernel").unwrap_or_else(|| {
                panic!(
                    "{}: no 'packets dropped by kernel' line:\n{text}",
                    self.what
                )
            }),
        }
    }

    /// The captured frames; call after [`Capture::stop`].
    pub fn frames(&self) -> Vec<Vec<u8>> {
        read_pcap(&self.file)
    }

    /// The raw bytes of the capture file; call after [`Capture::stop`].
    pub fn bytes(&self) -> Vec<u8> {
        fs::read(&self.file)
            .unwrap_or_else(|e| panic!("cannot read capture {}: {e}", self.file.display()))
    }
}

impl Drop for Capture {
    /// Kills tcpdump if it still runs and deletes the capture directory.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&[child.id()], "KILL");
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Reads a classic pcap file (either byte order, micro- or nanosecond
/// timestamps) and returns the captured bytes of each record. Panics with
/// the file name on anything that is not a well-formed pcap file.
fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let data =
        fs::read(path).unwrap_or_else(|e| panic!("cannot read pcap {}: {e}", path.display()));
    parse_pcap(&data).unwrap_or_else(|e| panic!("pcap {}: {e}", path.display()))
}

/// Parses the bytes of a classic pcap file into its records' bytes.
fn parse_pcap(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if data.len() < 24 {
        return Err(format!(
            "{} bytes, shorter than the 24-byte header",
            data.len()
        ));
    }
    let magic = [data[0], data[1], data[2], data[3]];
    let little = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err(format!("not a pcap file (magic {magic:02x?})")),
    };
    let u32_at = |off: usize| -> u32 {
        let b = [data[off], data[off + 1], data[off + 2], data[off + 3]];
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let linktype = u32_at(20);
    if linktype != 1 {
        return Err(format!("link type {linktype}, expected 1 (Ethernet)"));
    }
    let mut frames = Vec::new();
    let mut off = 24;
    while off < data.len() {
        if data.len() - off < 16 {
            return Err(format!("truncated record header at offset {off}"));
        }
        let caplen = u32_at(off + 8) as usize;
        let start = off + 16;
        let end = start
            .checked_add(caplen)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| format!("record at offset {off} runs past the end ({caplen} bytes)"))?;
        frames.push(data[start..end].to_vec());
        off = end;
    }
    Ok(frames)
}

/// Whether `needle` (non-empty) occurs anywhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    assert!(!needle.is_empty(), "searching for an empty pattern");
    let first = needle[0];
    let last_start = match haystack.len().checked_sub(needle.len()) {
        Some(n) => n,
        None => return false,
    };
    let mut i = 0;
    while i <= last_start {
        match haystack[i..=last_start].iter().position(|&b| b == first) {
            None => return false,
            Some(p) => {
                i += p;
                if haystack[i..i + needle.len()] == *needle {
                    return true;
                }
                i += 1;
            }
        }
    }
    false
}

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Length of an Ethernet header without VLAN tag.
pub const ETH_HLEN: usize = 14;

/// The headers of one captured Ethernet frame, as far as they parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// EtherType.
    pub ethertype: u16,
    /// IPv4 header, when the frame is IPv4 and the header parses.
    pub ipv4: Option<Ipv4Info>,
}

/// The fields of an IPv4 header (and its UDP header) that the tests check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4Info {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol number (17 = UDP).
    pub protocol: u8,
    /// Header length in bytes.
    pub ihl: usize,
    /// Total length field.
    pub total_len: usize,
    /// Fragment offset is non-zero or more-fragments is set.
    pub fragment: bool,
    /// (source port, destination port) for an unfragmented UDP datagram.
    pub udp_ports: Option<(u16, u16)>,
}

impl Frame {
    /// Parses the Ethernet header and, for IPv4, the IP and UDP headers.
    /// None if the frame is shorter than an Ethernet header.
    pub fn parse(bytes: &[u8]) -> Option<Frame> {
        if bytes.len() < ETH_HLEN {
            return None;
        }
        let mut dst_mac = [0u8; 6];
        let mut src_mac = [0u8; 6];
        dst_mac.copy_from_slice(&bytes[0..6]);
        src_mac.copy_from_slice(&bytes[6..12]);
        let ethertype = u16::from_be_bytes([bytes[12], bytes[13]]);
        let ipv4 = if ethertype == ETHERTYPE_IPV4 {
            Ipv4Info::parse(&bytes[ETH_HLEN..])
        } else {
            None
        };
        Some(Frame {
            dst_mac,
            src_mac,
            ethertype,
            ipv4,
        })
    }
}

impl Ipv4Info {
    /// Parses an IPv4 header (and the UDP ports of an unfragmented UDP
    /// datagram); None if it is not a well-formed IPv4 header.
    fn parse(ip: &[u8]) -> Option<Ipv4Info> {
        if ip.len() < 20 || ip[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ihl < 20 || ip.len() < ihl {
            return None;
        }
        let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let frag = u16::from_be_bytes([ip[6], ip[7]]);
        let fragment = frag & 0x3fff != 0;
        let protocol = ip[9];
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let udp_ports = (protocol == 17 && !fragment && ip.len() >= ihl + 8).then(|| {
            (
                u16::from_be_bytes([ip[ihl], ip[ihl + 1]]),
                u16::from_be_bytes([ip[ihl + 2], ip[ihl + 3]]),
            )
        });
        Some(Ipv4Info {
            src,
            dst,
            protocol,
            ihl,
            total_len,
            fragment,
            udp_ports,
        })
    }
}

/// Parses "aa:bb:cc:dd:ee:ff" (as in the stats and `ip link`) into bytes.
pub fn parse_mac(text: &str) -> [u8; 6] {
    let parts: Vec<u8> = text
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).unwrap_or_else(|_| panic!("bad MAC '{text}'")))
        .collect();
    parts
        .try_into()
        .unwrap_or_else(|_| panic!("MAC '{text}' does not have 6 octets"))
}

/// Formats a MAC as "aa:bb:cc:dd:ee:ff" (as in the stats and `ip link`).
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The Internet checksum (RFC 1071) of `data`, folded, not inverted.
fn ones_sum(data: &[u8], mut sum: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// Recomputes the IPv4 header checksum of an Ethernet/IPv4 frame and, for
/// an unfragmented UDP datagram whose checksum is not zero (zero means "no
/// checksum"), the UDP checksum, after a test edited the frame.
pub fn fix_checksums(frame: &mut [u8]) {
    let info = Frame::parse(frame)
        .and_then(|f| f.ipv4)
        .expect("fix_checksums needs an Ethernet/IPv4 frame");
    let ip_end = ETH_HLEN + info.total_len;
    assert!(
        frame.len() >= ip_end,
        "frame shorter than its IPv4 total length"
    );
    let ip = &mut frame[ETH_HLEN..ip_end];
    ip[10] = 0;
    ip[11] = 0;
    let sum = !(ones_sum(&ip[..info.ihl], 0) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    if info.udp_ports.is_none() {
        return;
    }
    let ihl = info.ihl;
    if ip[ihl + 6] == 0 && ip[ihl + 7] == 0 {
        return;
    }
    ip[ihl + 6] = 0;
    ip[ihl + 7] = 0;
    let udp_len = ip.len() - ihl;
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&ip[12..20]);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    let sum = ones_sum(&ip[ihl..], ones_sum(&pseudo, 0));
    let mut sum = !(sum as u16);
    if sum == 0 {
        sum = 0xffff;
    }
    ip[ihl + 6..ihl + 8].copy_from_slice(&sum.to_be_bytes());
}

/// Sends each of `frames` (complete Ethernet frames) out of `ifname` in
/// `node`'s namespace through an `AF_PACKET` raw socket, in order. Panics
/// if the sender fails.
pub fn inject(tb: &Testbed, node: Node, ifname: &str, frames: &[Vec<u8>]) {
    const SCRIPT: &str = "import socket, sys\n\
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
        s.bind((sys.argv[1], 0))\n\
        for h in sys.argv[2:]:\n    \
            f = bytes.fromhex(h)\n    \
            n = s.send(f)\n    \
            assert n == len(f), (n, len(f))\n";
    let py = python();
    let hex: Vec<String> = frames.iter().map(|f| to_hex(f)).collect();
    let mut argv: Vec<&str> = vec![&py, "-c", SCRIPT, ifname];
    argv.extend(hex.iter().map(String::as_str));
    let out = tb.run(node, &argv);
    assert!(
        out.status.success(),
        "injecting {} frame(s) on {ifname} in {} failed ({}):\n{}",
        frames.len(),
        tb.ns(node),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Lower-case hex of `bytes`.
fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pcap file (header, one record per frame) in either byte order.
    fn pcap(frames: &[&[u8]], little: bool) -> Vec<u8> {
        let u32b = |v: u32| {
            if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };
        let mut f = u32b(0xa1b2_c3d4).to_vec();
        f.extend_from_slice(&[0; 16]);
        f.extend_from_slice(&u32b(1));
        for fr in frames {
            f.extend_from_slice(&[0; 8]);
            f.extend_from_slice(&u32b(fr.len() as u32));
            f.extend_from_slice(&u32b(fr.len() as u32));
            f.extend_from_slice(fr);
        }
        f
    }

    /// An Ethernet/IPv4/UDP frame with zeroed checksums fields except UDP's
    /// (non-zero, so that `fix_checksums` recomputes it).
    fn udp_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
        let total = (20 + 8 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[0x13, 0x88, 0x11, 0x94]);
        f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
        f.extend_from_slice(&[0xde, 0xad]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn pcap_records_parse_in_both_byte_orders() {
        let frames: [&[u8]; 2] = [&[1, 2, 3], &[4; 60]];
        for little in [true, false] {
            let got = parse_pcap(&pcap(&frames, little)).unwrap();
            assert_eq!(got, frames.map(<[u8]>::to_vec));
        }
        let mut truncated = pcap(&frames, true);
        truncated.pop();
        assert!(parse_pcap(&truncated)
            .unwrap_err()
            .contains("runs past the end"));
        assert!(parse_pcap(&[0; 24])
            .unwrap_err()
            .contains("not a pcap file"));
    }

    #[test]
    fn contains_finds_patterns_anywhere_and_only_there() {
        assert!(contains(b"abcabd", b"abd"));
        assert!(contains(b"abd", b"abd"));
        assert!(!contains(b"abcab", b"abd"));
        assert!(!contains(b"ab", b"abd"));
    }

    #[test]
    fn macs_round_trip() {
        let mac = [0x02, 0x5c, 0x15, 0x00, 0xab, 0xff];
        assert_eq!(format_mac(&mac), "02:5c:15:00:ab:ff");
        assert_eq!(parse_mac("02:5C:15:00:ab:ff"), mac);
    }

    #[test]
    fn fixed_checksums_verify() {
        let mut f = udp_frame(b"hello, checksum");
        fix_checksums(&mut f);
        let info = Frame::parse(&f).unwrap().ipv4.unwrap();
        assert_eq!(info.udp_ports, Some((5000, 4500)));
        let ip = &f[ETH_HLEN..];
        assert_eq!(ones_sum(&ip[..20], 0), 0xffff, "IPv4 header checksum");
        let mut pseudo = ip[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&((ip.len() - 20) as u16).to_be_bytes());
        assert_eq!(
            ones_sum(&ip[20..], ones_sum(&pseudo, 0)),
            0xffff,
            "UDP checksum"
        );
    }
}
