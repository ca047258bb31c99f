//! The one layout of the shared-memory region, used by both the writer
//! (`s2cs`) and the readers (`s2ds` workers).
//!
//! Every type here is `#[repr(C)]` with explicit padding and a compile-time
//! size and alignment assertion, so both processes agree on every offset.
//! Words that change while the other process is attached are atomics
//! ([`Header`], [`WorkerSlot`]); table entries are plain
//! integers, written only while their copy is inactive and read only while
//! it is active (the QSBR protocol in [`super::writer`]).

use std::mem::{align_of, size_of};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::kinds::{Algorithm, Direction, ListenerRole, SALT_LEN};

/// First 8 bytes of the region: "SCISHM\0\x01" as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SCISHM\0\x01");
/// Layout version; bumped on every change to any type in this module.
pub const VERSION: u32 = 6;
/// Cache line size the per-worker blocks are aligned to.
pub const CACHE_LINE: usize = 64;
/// Longest key an SA entry holds (AES-256).
pub const MAX_KEY_LEN: usize = 32;
/// Longest stats-segment path the data plane can announce in
/// [`DataplaneInfo`].
pub const MAX_STATS_PATH: usize = 248;

/// How many entries each table holds and how many worker slots exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacities {
    /// SA table entries (per copy).
    pub sas: u32,
    /// Route table entries (per copy).
    pub routes: u32,
    /// Listener table entries (per copy).
    pub listeners: u32,
    /// Worker QSBR slots.
    pub workers: u32,
}

/// The region header at offset 0.
///
/// `magic` .. `workers` are written once by the writer before the file is
/// renamed into place and never change afterwards.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`VERSION`].
    pub version: u32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// Total size of the region in bytes (the file size).
    pub total_size: u64,
    /// SA table capacity.
    pub sa_capacity: u32,
    /// Route table capacity.
    pub route_capacity: u32,
    /// Listener table capacity.
    pub listener_capacity: u32,
    /// Worker slots.
    pub workers: u32,
    /// Data plane incarnation: `s2ds` bumps it when it starts.
    pub incarnation: AtomicU64,
    /// The published state: `generation << 1 | active copy index`, in one
    /// word so a reader gets both with one Acquire load.
    pub published: AtomicU64,
    /// Process id of the attached data plane (0: none yet); lets the writer
    /// tell a crashed data plane from a slow worker.
    pub dataplane_pid: AtomicU64,
}

/// Splits a [`Header::published`] word into (generation, active copy).
#[inline]
pub const fn unpack_published(word: u64) -> (u64, usize) {
    (word >> 1, (word & 1) as usize)
}

/// Builds a [`Header::published`] word.
#[inline]
pub const fn pack_published(generation: u64, active: usize) -> u64 {
    generation << 1 | (active as u64 & 1)
}

/// One worker's QSBR slot: written by that worker, read by the writer.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct WorkerSlot {
    /// The last generation this worker loaded (stored with Release).
    pub seen: AtomicU64,
    /// 1 while the worker is attached; the writer waits only for live workers.
    pub live: AtomicU32,
    /// Reserved, zero.
    pub reserved: [u32; 13],
}

/// What the attached data plane tells the control process about itself,
/// written by `s2ds` when it attaches, before it bumps
/// [`Header::incarnation`] (Release): a reader that sees the new
/// incarnation (Acquire) reads a complete record. 256 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataplaneInfo {
    /// Bytes of `stats_path` in use (0: the data plane publishes no stats
    /// segment).
    pub stats_path_len: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// The path of the data plane's stats segment (UTF-8, not terminated).
    pub stats_path: [u8; MAX_STATS_PATH],
}

impl Default for DataplaneInfo {
    fn default() -> Self {
        DataplaneInfo {
            stats_path_len: 0,
            reserved: 0,
            stats_path: [0; MAX_STATS_PATH],
        }
    }
}

impl DataplaneInfo {
    /// A record naming `stats_path`; `None` if it is longer than
    /// [`MAX_STATS_PATH`] bytes or not UTF-8.
    pub fn with_stats_path(stats_path: &std::path::Path) -> Option<DataplaneInfo> {
        let bytes = stats_path.to_str()?.as_bytes();
        if bytes.len() > MAX_STATS_PATH {
            return None;
        }
        let mut info = DataplaneInfo {
            stats_path_len: bytes.len() as u32,
            ..DataplaneInfo::default()
        };
        info.stats_path[..bytes.len()].copy_from_slice(bytes);
        Some(info)
    }

    /// The stats segment's path, if one is announced (and well formed).
    pub fn stats_path(&self) -> Option<std::path::PathBuf> {
        let len = usize::try_from(self.stats_path_len).ok()?;
        let bytes = self.stats_path.get(..len).filter(|b| !b.is_empty())?;
        std::str::from_utf8(bytes)
            .ok()
            .map(std::path::PathBuf::from)
    }
}

/// At the start of each table copy: how many entries are in use, and for
/// which data plane the SAs were written.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyHeader {
    /// SA entries in use.
    pub sa_count: u32,
    /// Route entries in use.
    pub route_count: u32,
    /// Listener entries in use.
    pub listener_count: u32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// The data plane incarnation ([`Header::incarnation`]) these SAs were
    /// negotiated for. A data plane of another incarnation must not use
    /// them: an outbound SA's sequence counter lived in the process that
    /// died, so sealing with it again would repeat GCM nonces.
    pub keyed_for: u64,
    /// Reserved, zero.
    pub reserved: [u32; 10],
}

/// [`SaEntry::direction`]: inbound.
pub const DIR_IN: u8 = 0;
/// [`SaEntry::direction`]: outbound.
pub const DIR_OUT: u8 = 1;
/// [`SaEntry::algorithm`]: AES-128-GCM.
pub const ALG_AES128_GCM: u8 = 1;
/// [`SaEntry::algorithm`]: AES-256-GCM.
pub const ALG_AES256_GCM: u8 = 2;
/// [`ListenerEntry::role`]: outbound (consumer side).
pub const ROLE_OUTBOUND: u8 = 0;
/// [`ListenerEntry::role`]: inbound (producer side).
pub const ROLE_INBOUND: u8 = 1;

/// An address as the region stores it: 16 bytes in network byte order, an
/// IPv4 address in its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`, RFC 4291
/// section 2.5.5.2). IPv6 addresses in `::ffff:0:0/96` therefore read back
/// as IPv4; no gateway uses them (they never appear on the wire).
pub type AddrBytes = [u8; 16];

/// `ip` in the region's form ([`AddrBytes`]).
pub fn encode_ip(ip: IpAddr) -> AddrBytes {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The address stored as `b` ([`AddrBytes`]).
pub fn decode_ip(b: AddrBytes) -> IpAddr {
    let v6 = Ipv6Addr::from(b);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The longest prefix of `ip`'s family: 32 or 128.
const fn max_prefix_len(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// One security association. 96 bytes; integers in native byte order.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaEntry {
    /// Security Parameter Index.
    pub spi: u32,
    /// [`DIR_IN`] or [`DIR_OUT`].
    pub direction: u8,
    /// [`ALG_AES128_GCM`] or [`ALG_AES256_GCM`].
    pub algorithm: u8,
    /// Bytes of `key` in use (16 or 32).
    pub key_len: u8,
    /// 1 for 64-bit extended sequence numbers.
    pub esn: u8,
    /// The AES key, `key_len` bytes, zero-padded.
    pub key: [u8; MAX_KEY_LEN],
    /// The 4-byte GCM salt (RFC 4106).
    pub salt: [u8; 4],
    /// Peer WAN address, IPv4 or IPv6 ([`AddrBytes`]).
    pub peer_addr: AddrBytes,
    /// Peer ESP-in-UDP port.
    pub peer_port: u16,
    /// Reserved, zero.
    pub reserved0: u16,
    /// Hard lifetime in seconds from installation (0: none): the data
    /// plane stops using the SA after it, even if the control process is
    /// gone (the control process rekeys well before it).
    pub hard_seconds: u64,
    /// Hard lifetime in packets (0: none): an outbound SA seals no more.
    pub hard_packets: u64,
    /// Outbound: the session's rate limit in bits per second of inner
    /// packets, enforced by the SA's policer (0: unlimited). Inbound: unused, 0.
    pub rate_bps: u64,
    /// A lane of the SA with this SPI (same direction and session; 0: an
    /// SA of its own or a head). Outbound lanes spread a session over the
    /// sending workers, each from its own outer source port; inbound lanes
    /// are ordinary inbound SAs to the data plane, marked so a restarted
    /// control process regroups them.
    pub lane_of: u32,
    /// Reserved, zero.
    pub reserved1: u32,
}

/// What an SA entry holds besides its direction and peer.
#[derive(Clone, Copy)]
pub struct SaKeys<'k> {
    /// Security Parameter Index.
    pub spi: u32,
    /// The AEAD algorithm.
    pub algorithm: Algorithm,
    /// The AES key, `algorithm.key_len()` bytes.
    pub key: &'k [u8],
    /// The GCM salt.
    pub salt: [u8; SALT_LEN],
    /// 64-bit extended sequence numbers.
    pub esn: bool,
}

impl std::fmt::Debug for SaKeys<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaKeys")
            .field("spi", &format_args!("{:#x}", self.spi))
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .field("esn", &self.esn)
            .finish()
    }
}

impl SaEntry {
    /// An outbound SA: we seal with `keys` and send to `peer`, policed at
    /// `rate_bps` bits per second of inner packets (0: unlimited). `None`
    /// if the key's length does not fit the algorithm.
    pub fn outbound(keys: &SaKeys<'_>, peer: SocketAddr, rate_bps: u64) -> Option<SaEntry> {
        let mut e = Self::with_keys(keys, Direction::Out, peer)?;
        e.rate_bps = rate_bps;
        Some(e)
    }

    /// An inbound SA: we open with `keys` what `peer` sends. `None` if the
    /// key's length does not fit the algorithm.
    pub fn inbound(keys: &SaKeys<'_>, peer: SocketAddr) -> Option<SaEntry> {
        Self::with_keys(keys, Direction::In, peer)
    }

    fn with_keys(keys: &SaKeys<'_>, direction: Direction, peer: SocketAddr) -> Option<SaEntry> {
        if keys.key.len() != keys.algorithm.key_len() {
            return None;
        }
        let mut key = [0u8; MAX_KEY_LEN];
        key[..keys.key.len()].copy_from_slice(keys.key);
        Some(SaEntry {
            spi: keys.spi,
            direction: Self::direction_code(direction),
            algorithm: Self::algorithm_code(keys.algorithm),
            key_len: keys.key.len() as u8,
            esn: u8::from(keys.esn),
            key,
            salt: keys.salt,
            peer_addr: encode_ip(peer.ip()),
            peer_port: peer.port(),
            ..SaEntry::default()
        })
    }

    /// This entry as a lane of the SA with SPI `head` (0: none).
    pub fn with_lane_of(self, head: u32) -> SaEntry {
        SaEntry {
            lane_of: head,
            ..self
        }
    }

    /// This entry with hard lifetimes of `seconds` and `packets` (0: none).
    pub fn with_hard_lifetime(self, seconds: u64, packets: u64) -> SaEntry {
        SaEntry {
            hard_seconds: seconds,
            hard_packets: packets,
            ..self
        }
    }

    /// The direction, or `None` for an unknown code.
    pub fn direction(&self) -> Option<Direction> {
        match self.direction {
            DIR_IN => Some(Direction::In),
            DIR_OUT => Some(Direction::Out),
            _ => None,
        }
    }

    /// The code for `d`.
    pub const fn direction_code(d: Direction) -> u8 {
        match d {
            Direction::In => DIR_IN,
            Direction::Out => DIR_OUT,
        }
    }

    /// The algorithm, or `None` for an unknown code.
    pub fn algorithm(&self) -> Option<Algorithm> {
        match self.algorithm {
            ALG_AES128_GCM => Some(Algorithm::Aes128Gcm),
            ALG_AES256_GCM => Some(Algorithm::Aes256Gcm),
            _ => None,
        }
    }

    /// The code for `a`.
    pub const fn algorithm_code(a: Algorithm) -> u8 {
        match a {
            Algorithm::Aes128Gcm => ALG_AES128_GCM,
            Algorithm::Aes256Gcm => ALG_AES256_GCM,
        }
    }

    /// The key bytes in use, or `None` if `key_len` is out of range.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.get(..usize::from(self.key_len))
    }

    /// The peer endpoint.
    pub fn peer(&self) -> SocketAddr {
        SocketAddr::new(decode_ip(self.peer_addr), self.peer_port)
    }
}

/// One route: inner destination prefix → outbound SA slot. 24 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteEntry {
    /// Network address, IPv4 or IPv6 ([`AddrBytes`]), host bits zero.
    pub prefix: AddrBytes,
    /// Prefix length in the family of `prefix`: 0..=32 or 0..=128.
    pub len: u8,
    /// Reserved, zero.
    pub reserved0: [u8; 3],
    /// Index of the outbound SA in the SA table of the same copy.
    pub sa_slot: u32,
}

impl RouteEntry {
    /// Inner destinations in `prefix`/`len` go through the outbound SA in
    /// slot `sa_slot`; host bits of `prefix` are cleared. `None` if `len`
    /// exceeds the longest prefix of the family (32 or 128).
    pub fn new(prefix: IpAddr, len: u8, sa_slot: u32) -> Option<RouteEntry> {
        if len > max_prefix_len(&prefix) {
            return None;
        }
        let network = match prefix {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        };
        Some(RouteEntry {
            prefix: encode_ip(network),
            len,
            sa_slot,
            ..RouteEntry::default()
        })
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        decode_ip(self.prefix)
    }

    /// True if `len` fits the family of the prefix (a reader skips the
    /// entry otherwise).
    pub fn len_is_valid(&self) -> bool {
        self.len <= max_prefix_len(&self.network())
    }
}

/// One stream listener. 48 bytes; an all-zero address means unset.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerEntry {
    /// [`ROLE_OUTBOUND`] or [`ROLE_INBOUND`].
    pub role: u8,
    /// Reserved, zero.
    pub reserved0: u8,
    /// The listening port.
    pub port: u16,
    /// Outbound: the peer listener's address ([`AddrBytes`]).
    pub remote_addr: AddrBytes,
    /// Inbound: the producer application's address ([`AddrBytes`]).
    pub target_addr: AddrBytes,
    /// Outbound: the peer listener's port.
    pub remote_port: u16,
    /// Inbound: the producer application's port.
    pub target_port: u16,
    /// Index of the outbound SA in the SA table of the same copy.
    pub sa_slot: u32,
    /// Reserved, zero.
    pub reserved1: u32,
}

impl ListenerEntry {
    /// A consumer-side listener: our LAN `port` leads to the peer's listener
    /// `remote`, through the outbound SA in slot `sa_slot`.
    pub fn outbound(port: u16, remote: SocketAddr, sa_slot: u32) -> ListenerEntry {
        ListenerEntry {
            role: ROLE_OUTBOUND,
            port,
            remote_addr: encode_ip(remote.ip()),
            remote_port: remote.port(),
            sa_slot,
            ..ListenerEntry::default()
        }
    }

    /// A producer-side listener: our WAN `port`, reached through the
    /// tunnel, leads to the producer application `target`; replies go
    /// through the outbound SA in slot `sa_slot`.
    pub fn inbound(port: u16, target: SocketAddr, sa_slot: u32) -> ListenerEntry {
        ListenerEntry {
            role: ROLE_INBOUND,
            port,
            target_addr: encode_ip(target.ip()),
            target_port: target.port(),
            sa_slot,
            ..ListenerEntry::default()
        }
    }

    /// The role, or `None` for an unknown code.
    pub fn role(&self) -> Option<ListenerRole> {
        match self.role {
            ROLE_OUTBOUND => Some(ListenerRole::Outbound),
            ROLE_INBOUND => Some(ListenerRole::Inbound),
            _ => None,
        }
    }

    /// The remote endpoint.
    pub fn remote(&self) -> SocketAddr {
        SocketAddr::new(decode_ip(self.remote_addr), self.remote_port)
    }

    /// The target endpoint.
    pub fn target(&self) -> SocketAddr {
        SocketAddr::new(decode_ip(self.target_addr), self.target_port)
    }
}

const _: () = {
    assert!(size_of::<Header>() == 64 && align_of::<Header>() == 64);
    assert!(size_of::<WorkerSlot>() == 64 && align_of::<WorkerSlot>() == CACHE_LINE);
    assert!(size_of::<DataplaneInfo>() == 256 && align_of::<DataplaneInfo>() == 4);
    assert!(size_of::<CopyHeader>() == 64 && align_of::<CopyHeader>() == 64);
    assert!(size_of::<SaEntry>() == 96 && align_of::<SaEntry>() == 8);
    assert!(size_of::<RouteEntry>() == 24 && align_of::<RouteEntry>() == 4);
    assert!(size_of::<ListenerEntry>() == 48 && align_of::<ListenerEntry>() == 4);
};

/// The tables a copy holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// [`SaEntry`].
    Sa,
    /// [`RouteEntry`].
    Route,
    /// [`ListenerEntry`].
    Listener,
}

/// Byte offsets of everything in a region with given capacities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The capacities the offsets are computed from.
    pub caps: Capacities,
    /// First [`WorkerSlot`].
    pub slots: usize,
    /// The [`DataplaneInfo`].
    pub info: usize,
    /// Copy A (copy B follows at `copies + copy_size`).
    pub copies: usize,
    /// Bytes per copy.
    pub copy_size: usize,
    /// SA table, relative to its copy.
    pub sa_off: usize,
    /// Route table, relative to its copy.
    pub route_off: usize,
    /// Listener table, relative to its copy.
    pub listener_off: usize,
    /// Total region size.
    pub total: usize,
}

const fn align_up(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

impl Layout {
    /// Computes the layout, or `None` if it would overflow `usize`/`u64`.
    pub fn new(caps: Capacities) -> Option<Layout> {
        let n = |c: u32, sz: usize| (c as usize).checked_mul(sz);
        let slots = size_of::<Header>();
        let info = slots.checked_add(n(caps.workers, size_of::<WorkerSlot>())?)?;
        let copies = align_up(info.checked_add(size_of::<DataplaneInfo>())?, CACHE_LINE);
        let sa_off = size_of::<CopyHeader>();
        let route_off = align_up(
            sa_off.checked_add(n(caps.sas, size_of::<SaEntry>())?)?,
            CACHE_LINE,
        );
        let listener_off = align_up(
            route_off.checked_add(n(caps.routes, size_of::<RouteEntry>())?)?,
            CACHE_LINE,
        );
        let copy_size = align_up(
            listener_off.checked_add(n(caps.listeners, size_of::<ListenerEntry>())?)?,
            CACHE_LINE,
        );
        let total = copies.checked_add(copy_size.checked_mul(2)?)?;
        u64::try_from(total).ok()?;
        Some(Layout {
            caps,
            slots,
            info,
            copies,
            copy_size,
            sa_off,
            route_off,
            listener_off,
            total,
        })
    }

    /// Offset of worker `w`'s QSBR slot.
    pub fn slot(&self, w: usize) -> usize {
        self.slots + w * size_of::<WorkerSlot>()
    }

    /// Offset of copy `c` (0 = A, 1 = B).
    pub fn copy(&self, c: usize) -> usize {
        self.copies + c * self.copy_size
    }

    /// Offset and capacity of `table` in copy `c`.
    pub fn table(&self, c: usize, table: Table) -> (usize, u32) {
        let base = self.copy(c);
        match table {
            Table::Sa => (base + self.sa_off, self.caps.sas),
            Table::Route => (base + self.route_off, self.caps.routes),
            Table::Listener => (base + self.listener_off, self.caps.listeners),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_offsets_are_cache_aligned_and_sum_up() {
        let l = Layout::new(Capacities {
            sas: 3,
            routes: 5,
            listeners: 7,
            workers: 2,
        })
        .unwrap();
        assert_eq!(l.slots, 64);
        assert_eq!(l.info, 64 + 2 * 64);
        assert_eq!(l.copies, l.info + 256); // 448, cache-aligned
        assert_eq!(l.sa_off, 64);
        assert_eq!(l.route_off, 384); // 64 + 3 * 96 = 352 → 384
        assert_eq!(l.listener_off, 512); // 384 + 5 * 24 = 504 → 512
        assert_eq!(l.copy_size, 896); // 512 + 7 * 48 = 848 → 896
        assert_eq!(l.total, l.copies + 2 * 896);
        assert_eq!(l.copy(1), l.copies + 896);
        assert_eq!(l.table(1, Table::Route), (l.copies + 896 + 384, 5));
    }

    #[test]
    fn field_offsets_match_the_documented_layout() {
        use std::mem::offset_of;
        assert_eq!(offset_of!(Header, version), 8);
        assert_eq!(offset_of!(Header, total_size), 16);
        assert_eq!(offset_of!(Header, sa_capacity), 24);
        assert_eq!(offset_of!(Header, workers), 36);
        assert_eq!(offset_of!(Header, incarnation), 40);
        assert_eq!(offset_of!(Header, published), 48);
        assert_eq!(offset_of!(WorkerSlot, live), 8);
        assert_eq!(offset_of!(CopyHeader, listener_count), 8);
        assert_eq!(offset_of!(CopyHeader, keyed_for), 16);
        assert_eq!(offset_of!(SaEntry, key_len), 6);
        assert_eq!(offset_of!(SaEntry, key), 8);
        assert_eq!(offset_of!(SaEntry, salt), 40);
        assert_eq!(offset_of!(SaEntry, peer_addr), 44);
        assert_eq!(offset_of!(SaEntry, peer_port), 60);
        assert_eq!(offset_of!(SaEntry, hard_seconds), 64);
        assert_eq!(offset_of!(SaEntry, hard_packets), 72);
        assert_eq!(offset_of!(SaEntry, rate_bps), 80);
        assert_eq!(offset_of!(SaEntry, lane_of), 88);
        assert_eq!(offset_of!(DataplaneInfo, stats_path), 8);
        assert_eq!(offset_of!(RouteEntry, len), 16);
        assert_eq!(offset_of!(RouteEntry, sa_slot), 20);
        assert_eq!(offset_of!(ListenerEntry, port), 2);
        assert_eq!(offset_of!(ListenerEntry, remote_addr), 4);
        assert_eq!(offset_of!(ListenerEntry, target_addr), 20);
        assert_eq!(offset_of!(ListenerEntry, remote_port), 36);
        assert_eq!(offset_of!(ListenerEntry, target_port), 38);
        assert_eq!(offset_of!(ListenerEntry, sa_slot), 40);
    }

    #[test]
    fn addresses_round_trip_in_both_families() {
        for ip in ["192.0.2.7", "0.0.0.0", "2001:db8::1", "::", "fe80::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(decode_ip(encode_ip(ip)), ip, "{ip}");
        }
        let v4 = encode_ip("10.1.2.3".parse().unwrap());
        assert_eq!(&v4[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
    }

    #[test]
    fn routes_clear_host_bits_and_check_the_length_per_family() {
        let r = RouteEntry::new("10.20.30.40".parse().unwrap(), 16, 3).unwrap();
        assert_eq!(
            (r.network(), r.len, r.sa_slot),
            ("10.20.0.0".parse().unwrap(), 16, 3)
        );
        let r = RouteEntry::new("2001:db8:1:2::9".parse().unwrap(), 48, 1).unwrap();
        assert_eq!(r.network(), "2001:db8:1::".parse::<IpAddr>().unwrap());
        assert!(RouteEntry::new("0.0.0.0".parse().unwrap(), 0, 0)
            .unwrap()
            .len_is_valid());
        assert!(RouteEntry::new("10.0.0.0".parse().unwrap(), 33, 0).is_none());
        assert!(RouteEntry::new("2001:db8::".parse().unwrap(), 129, 0).is_none());
        let r = RouteEntry::new("2001:db8::".parse().unwrap(), 128, 0).unwrap();
        assert!(r.len_is_valid());
        let bad = RouteEntry {
            prefix: encode_ip("10.0.0.0".parse().unwrap()),
            len: 64,
            ..RouteEntry::default()
        };
        assert!(!bad.len_is_valid());
    }

    #[test]
    fn published_word_round_trips() {
        for (g, a) in [(0, 0), (1, 1), (u64::MAX >> 1, 1), (12345, 0)] {
            assert_eq!(unpack_published(pack_published(g, a)), (g, a));
        }
    }
}
