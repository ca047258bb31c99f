//! The lock-free connection table of the producer-side gateway A.
//!
//! The mapped source port *is* the slot index: `m = port_base + slot`, so a
//! reply from the producer finds its entry in O(1), and the forward path
//! finds (or claims) one by hashing the flow key into a bounded probe
//! window. The table is a fixed array allocated once and shared by all
//! workers; the forward and reply paths take no lock and allocate nothing.
//!
//! # A slot
//!
//! Four `AtomicU64` words (32 bytes, aligned so a slot never straddles a
//! cache line): `meta` and a three-word `key`.
//!
//! - `meta`: generation (bits 40..64) | flags (UDP, FIN from the consumer,
//!   FIN from the producer, RST; bits 34..38) | state (free, claiming,
//!   active; bits 32..34) | last-seen seconds (bits 0..32). The generation
//!   and state together are the entry's *identity*; last-seen and flags
//!   change while it lives.
//! - `key[0]`: UDP bit (63) | IPv6 bit (62) | listener index (15 bits,
//!   32..47) | consumer port (0..16).
//! - `key[1]`, `key[2]`: the consumer address as a `u128`, high and low
//!   half (an IPv4 address is the low 32 bits of `key[2]`, `key[1]` = 0).
//!
//! IPv4 and IPv6 flows share the slots, hence the mapped-port pool: the
//! mapped port is the slot index whatever the family, and a reply must
//! match its entry's family as well as its protocol and target.
//!
//! Keeping last-seen and the flags in the same word as the state lets
//! [`ConnTable::expire`] free an entry with one compare-exchange that fails
//! if a packet refreshed it meanwhile, and lets a packet's refresh fail if
//! the entry was freed meanwhile: neither can act on an entry the other has
//! just changed.
//!
//! # Memory orderings
//!
//! - **Claim** (forward path, new flow): `meta` free(g) → claiming(g) by a
//!   Relaxed compare-exchange; a Release fence; the three `key` words
//!   stored Relaxed; `meta` := active(g) | now stored with Release. The
//!   Release store makes the key words visible to any thread that sees the
//!   entry active (Acquire). The fence orders the claim before every key
//!   store, so a reader that observes any word of a later key also observes
//!   that the state moved on (below).
//! - **Read** (seqlock): `m1 = meta.load(Acquire)`, must be active; the
//!   three key words loaded Relaxed; an Acquire fence; `m2 =
//!   meta.load(Relaxed)`; the read is good only if `m1` and `m2` have the
//!   same identity. Each key word is at least the one published with `m1`
//!   (the Acquire load of `m1` saw the Release store that followed it). If
//!   any word was overwritten by a later claim, that claimer's Release fence
//!   synchronises with the reader's Acquire fence (through the word the
//!   reader saw), so `m2` sees at least that claim's state change: the
//!   identity differs and the read is a miss. A key mixed from two owners
//!   is therefore never accepted. The generation makes free → claim →
//!   active (ABA) visible too.
//! - **Refresh** (every packet whose time or flags differ from the entry's):
//!   a Relaxed compare-exchange on `meta` that keeps the identity; it fails
//!   and reports the entry gone if the identity changed. Nothing is
//!   published, so Relaxed is enough; a packet in the same second as the
//!   last one writes nothing.
//! - **Expire/flush** (slow path): a Relaxed compare-exchange active(g) →
//!   free(g+1). Nothing is published by freeing.
//!
//! On x86 every load and store above is a plain `mov` and the fences are
//! compiler barriers; only claims, refreshes and frees are locked
//! instructions.
//!
//! # A race this table allows
//!
//! Two workers that see the first packet of the same flow in the same few
//! nanoseconds, while another slot of the probe window is being freed, can
//! claim two slots for it. The later one serves at most the racing packet
//! and idles out. (Packets of one flow arrive in one ESP SA, on one outer
//! 5-tuple, so RSS gives them to one worker and the race does not arise.)

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};

use super::{NatConfigError, NatError, Proto, MAX_LISTENERS};

/// Default number of slots (mapped ports).
pub const DEFAULT_SLOTS: usize = 16384;
/// Default first mapped port: the pool is `32768..49152` by default.
pub const DEFAULT_PORT_BASE: u16 = 32768;
/// Slots a forward lookup probes before the table counts as full for a key.
pub const PROBE_LIMIT: usize = 16;
/// Times a forward lookup spins on a slot another worker is claiming.
const CLAIM_SPINS: u32 = 64;
/// Times a forward lookup restarts after losing a claim or a refresh race.
const ATTEMPTS: usize = 4;

const LAST_MASK: u64 = 0xffff_ffff;
const STATE_SHIFT: u32 = 32;
const STATE_MASK: u64 = 0b11 << STATE_SHIFT;
const FREE: u64 = 0;
const CLAIMING: u64 = 1 << STATE_SHIFT;
const ACTIVE: u64 = 2 << STATE_SHIFT;
/// The entry is UDP (else TCP).
const F_UDP: u64 = 1 << 34;
/// TCP FIN seen from the consumer (forward direction).
pub(crate) const F_FIN_FWD: u64 = 1 << 35;
/// TCP FIN seen from the producer (reply direction).
pub(crate) const F_FIN_REV: u64 = 1 << 36;
/// TCP RST seen in either direction.
pub(crate) const F_RST: u64 = 1 << 37;
/// Flags a new TCP connection on the same key clears.
pub(crate) const F_TCP_STATE: u64 = F_FIN_FWD | F_FIN_REV | F_RST;
const GEN_SHIFT: u32 = 40;
const GEN_UNIT: u64 = 1 << GEN_SHIFT;
const GEN_MASK: u64 = !(GEN_UNIT - 1);
/// Generation and state: what a reader re-checks.
const IDENT_MASK: u64 = GEN_MASK | STATE_MASK;

/// Idle timeouts in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A UDP flow.
    pub udp: u32,
    /// A TCP connection without RST and without FIN in both directions.
    pub tcp_established: u32,
    /// A TCP connection after RST, or after FIN in both directions.
    pub tcp_closing: u32,
}

impl Default for Timeouts {
    /// 60 s UDP, 300 s TCP, 10 s for closed TCP.
    fn default() -> Self {
        Self {
            udp: 60,
            tcp_established: 300,
            tcp_closing: 10,
        }
    }
}

/// One entry (32 bytes). See the module documentation for the layout.
#[derive(Debug, Default)]
#[repr(align(32))]
struct Slot {
    meta: AtomicU64,
    key: [AtomicU64; 3],
}

/// A packed [`FlowKey`]: the three `key` words of a slot.
type Key = [u64; 3];

/// A flow's identity at A: protocol, inbound listener and consumer endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowKey {
    /// TCP or UDP.
    pub proto: Proto,
    /// Inbound listener index (< [`MAX_LISTENERS`]).
    pub listener: usize,
    /// The consumer's address and port as they arrive through the tunnel
    /// (IPv4 or IPv6).
    pub consumer: SocketAddr,
}

impl FlowKey {
    fn pack(&self) -> Key {
        debug_assert!(self.listener < MAX_LISTENERS);
        let udp = u64::from(self.proto == Proto::Udp) << 63;
        let (v6, addr) = match self.consumer.ip() {
            IpAddr::V4(a) => (0, u128::from(u32::from(a))),
            IpAddr::V6(a) => (1 << 62, u128::from(a)),
        };
        let k0 =
            udp | v6 | ((self.listener as u64 & 0x7fff) << 32) | u64::from(self.consumer.port());
        [k0, (addr >> 64) as u64, addr as u64]
    }

    fn unpack(k: Key) -> Self {
        let addr = (u128::from(k[1]) << 64) | u128::from(k[2]);
        let ip = if k[0] >> 62 & 1 == 1 {
            IpAddr::V6(Ipv6Addr::from(addr))
        } else {
            IpAddr::V4(Ipv4Addr::from(addr as u32))
        };
        Self {
            proto: if k[0] >> 63 == 1 {
                Proto::Udp
            } else {
                Proto::Tcp
            },
            listener: ((k[0] >> 32) & 0x7fff) as usize,
            consumer: SocketAddr::new(ip, k[0] as u16),
        }
    }
}

/// A live entry as a lookup saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    /// Slot index (the mapped port less the base).
    pub slot: usize,
    /// The `meta` word read (its identity is what a refresh must find).
    meta: u64,
}

/// The producer-side connection table: consumer flows ↔ mapped source ports
/// on A's LAN address of the flow's family (IPv4 flows map to `lan_ip4`,
/// IPv6 flows to `lan_ip6`, from one shared pool of ports). Shared by all
/// workers (`&self` everywhere).
#[derive(Debug)]
pub struct ConnTable {
    slots: Box<[Slot]>,
    lan_ip4: Option<Ipv4Addr>,
    lan_ip6: Option<Ipv6Addr>,
    port_base: u16,
    probe: usize,
    seed: u64,
    timeouts: Timeouts,
    active: AtomicUsize,
}

impl ConnTable {
    /// A table of `slots` entries mapping to source ports
    /// `port_base..port_base + slots` on A's LAN addresses: `lan_v4` for
    /// IPv4 flows, `lan_v6` for IPv6 flows (a flow of a family without one
    /// is refused). At least one is needed
    /// ([`NatConfigError::NoLanAddress`]). The only allocation the table
    /// ever makes.
    pub fn new(
        lan_v4: Option<Ipv4Addr>,
        lan_v6: Option<Ipv6Addr>,
        port_base: u16,
        slots: usize,
        timeouts: Timeouts,
    ) -> Result<Self, NatConfigError> {
        if lan_v4.is_none() && lan_v6.is_none() {
            return Err(NatConfigError::NoLanAddress);
        }
        if slots == 0 || port_base == 0 || usize::from(port_base) + slots > 65536 {
            return Err(NatConfigError::BadPool { port_base, slots });
        }
        Ok(Self {
            slots: (0..slots).map(|_| Slot::default()).collect(),
            lan_ip4: lan_v4,
            lan_ip6: lan_v6,
            port_base,
            probe: PROBE_LIMIT.min(slots),
            // A per-table random seed, so no one can aim flows at one probe window.
            seed: RandomState::new().hash_one(0x5c15_7ea3_u64),
            timeouts,
            active: AtomicUsize::new(0),
        })
    }

    /// A's LAN IPv4 address, the source of every mapped IPv4 flow.
    pub fn lan_ip4(&self) -> Option<Ipv4Addr> {
        self.lan_ip4
    }

    /// A's LAN IPv6 address, the source of every mapped IPv6 flow.
    pub fn lan_ip6(&self) -> Option<Ipv6Addr> {
        self.lan_ip6
    }

    /// A's LAN address of `peer`'s family, if the table has one.
    #[inline]
    pub(crate) fn lan_for(&self, peer: IpAddr) -> Option<IpAddr> {
        match peer {
            IpAddr::V4(_) => self.lan_ip4.map(IpAddr::V4),
            IpAddr::V6(_) => self.lan_ip6.map(IpAddr::V6),
        }
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Number of slots (the size of the mapped-port pool).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// True if `port` is in the mapped-port pool.
    #[inline]
    pub fn is_mapped_port(&self, port: u16) -> bool {
        self.slot_of(port).is_some()
    }

    /// Number of live entries (for stats).
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Frees every entry idle for at least its timeout at `now`; returns how
    /// many. Called by the slow path about once a second; a pass reads each
    /// slot once and writes only those it frees.
    pub fn expire(&self, now: u32) -> usize {
        self.free_where(|meta| self.is_idle(meta, now))
    }

    /// Frees every entry (e.g. when the listeners change, since entries name
    /// listeners by index); returns how many.
    pub fn flush(&self) -> usize {
        self.free_where(|_| true)
    }

    /// The mapped port of `slot`.
    #[inline]
    pub(crate) fn port_of(&self, slot: usize) -> u16 {
        // slot < slots.len() <= 65536 - port_base: no overflow.
        self.port_base + slot as u16
    }

    /// The slot of mapped port `port`, if it is in the pool.
    #[inline]
    pub(crate) fn slot_of(&self, port: u16) -> Option<usize> {
        let s = usize::from(port.checked_sub(self.port_base)?);
        (s < self.slots.len()).then_some(s)
    }

    /// The live entry in `slot`, read consistently.
    #[inline]
    pub(crate) fn entry(&self, slot: usize) -> Option<(Hit, FlowKey)> {
        let s = self.slots.get(slot)?;
        let m1 = s.meta.load(Ordering::Acquire);
        let (meta, key) = self.read_after(s, m1)?;
        Some((Hit { slot, meta }, FlowKey::unpack(key)))
    }

    /// The live entry for `key`, without creating one.
    pub(crate) fn find(&self, key: &FlowKey) -> Option<Hit> {
        let k = key.pack();
        let start = self.start(k);
        (0..self.probe).find_map(|j| {
            let slot = self.wrap(start + j);
            let s = &self.slots[slot];
            let m1 = self.settle(s);
            match self.read_after(s, m1) {
                Some((meta, found)) if found == k => Some(Hit { slot, meta }),
                _ => None,
            }
        })
    }

    /// The live entry for `key`, refreshed to `now` with `set` flags added
    /// and `clear` flags removed, claiming a free slot for a new flow.
    pub(crate) fn track(
        &self,
        key: &FlowKey,
        now: u32,
        set: u64,
        clear: u64,
    ) -> Result<Hit, NatError> {
        let k = key.pack();
        let udp = if key.proto == Proto::Udp { F_UDP } else { 0 };
        for _ in 0..ATTEMPTS {
            let hit = match self.find_or_claim(k, udp, now) {
                Some(Ok(hit)) => hit,
                Some(Err(e)) => return Err(e),
                None => continue, // lost a claim race: look again
            };
            if self.touch(hit, now, set, clear) {
                return Ok(hit);
            }
            // Freed between the lookup and the refresh: look again.
        }
        Err(NatError::PoolExhausted)
    }

    /// Refreshes a live entry: last-seen to `now` (never backwards), `set`
    /// flags added, `clear` flags removed. False if the entry is gone.
    #[inline]
    pub(crate) fn touch(&self, hit: Hit, now: u32, set: u64, clear: u64) -> bool {
        let meta = &self.slots[hit.slot].meta;
        let ident = hit.meta & IDENT_MASK;
        let mut cur = hit.meta;
        loop {
            if cur & IDENT_MASK != ident {
                return false;
            }
            let mut new = (cur & !clear) | set;
            if (now.wrapping_sub(cur as u32) as i32) > 0 {
                new = (new & !LAST_MASK) | u64::from(now);
            }
            if new == cur {
                return true;
            }
            match meta.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// One probe pass: Some(Ok) found or claimed, Some(Err) no free slot in
    /// the window, None a claim race was lost (try again).
    fn find_or_claim(&self, k: Key, udp: u64, now: u32) -> Option<Result<Hit, NatError>> {
        let start = self.start(k);
        let mut free = None;
        // The whole window is scanned before claiming: freed slots leave
        // holes, and the key may sit after one.
        for j in 0..self.probe {
            let slot = self.wrap(start + j);
            let s = &self.slots[slot];
            let m1 = self.settle(s);
            match m1 & STATE_MASK {
                ACTIVE => {
                    if let Some((meta, found)) = self.read_after(s, m1) {
                        if found == k {
                            return Some(Ok(Hit { slot, meta }));
                        }
                    }
                }
                FREE if free.is_none() => free = Some((slot, m1)),
                _ => {}
            }
        }
        let Some((slot, m)) = free else {
            return Some(Err(NatError::PoolExhausted));
        };
        self.claim(slot, m, k, udp, now).map(Ok)
    }

    /// Claims free `slot` (whose `meta` was `m`) for key `k`.
    fn claim(&self, slot: usize, m: u64, k: Key, udp: u64, now: u32) -> Option<Hit> {
        let s = &self.slots[slot];
        let gen = m & GEN_MASK;
        s.meta
            .compare_exchange(m, gen | CLAIMING, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        // Orders the claim before the key stores (see the module docs).
        fence(Ordering::Release);
        for (word, v) in s.key.iter().zip(k) {
            word.store(v, Ordering::Relaxed);
        }
        self.active.fetch_add(1, Ordering::Relaxed);
        let meta = gen | ACTIVE | udp | u64::from(now);
        // Publishes the key with the active state.
        s.meta.store(meta, Ordering::Release);
        Some(Hit { slot, meta })
    }

    /// Loads `meta`, waiting briefly while another worker is claiming the
    /// slot (a claim is a few stores; the wait is bounded in case that
    /// worker was descheduled, and the slot then counts as taken).
    #[inline]
    fn settle(&self, s: &Slot) -> u64 {
        let mut m = s.meta.load(Ordering::Acquire);
        let mut spins = 0;
        while m & STATE_MASK == CLAIMING && spins < CLAIM_SPINS {
            std::hint::spin_loop();
            m = s.meta.load(Ordering::Acquire);
            spins += 1;
        }
        m
    }

    /// The seqlock read of `s` after `m1 = meta.load(Acquire)`: the current
    /// `meta` and the key, or None if the slot is not active or changed.
    #[inline]
    fn read_after(&self, s: &Slot, m1: u64) -> Option<(u64, Key)> {
        if m1 & STATE_MASK != ACTIVE {
            return None;
        }
        let k = [
            s.key[0].load(Ordering::Relaxed),
            s.key[1].load(Ordering::Relaxed),
            s.key[2].load(Ordering::Relaxed),
        ];
        fence(Ordering::Acquire);
        let m2 = s.meta.load(Ordering::Relaxed);
        (m2 & IDENT_MASK == m1 & IDENT_MASK).then_some((m2, k))
    }

    fn is_idle(&self, meta: u64, now: u32) -> bool {
        let timeout = if meta & F_UDP != 0 {
            self.timeouts.udp
        } else if meta & F_RST != 0 || meta & (F_FIN_FWD | F_FIN_REV) == F_FIN_FWD | F_FIN_REV {
            self.timeouts.tcp_closing
        } else {
            self.timeouts.tcp_established
        };
        let idle = now.wrapping_sub(meta as u32);
        // A last-seen ahead of `now` (a worker's clock read after ours) is not idle.
        idle <= i32::MAX as u32 && idle >= timeout
    }

    fn free_where(&self, mut pred: impl FnMut(u64) -> bool) -> usize {
        let mut freed = 0;
        for s in self.slots.iter() {
            let mut m = s.meta.load(Ordering::Relaxed);
            while m & STATE_MASK == ACTIVE && pred(m) {
                let free = (m & GEN_MASK).wrapping_add(GEN_UNIT) | FREE;
                match s
                    .meta
                    .compare_exchange(m, free, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => {
                        self.active.fetch_sub(1, Ordering::Relaxed);
                        freed += 1;
                        break;
                    }
                    // Refreshed (or flagged) meanwhile: judge it again.
                    Err(actual) => m = actual,
                }
            }
        }
        freed
    }

    /// First slot of `k`'s probe window.
    #[inline]
    fn start(&self, k: Key) -> usize {
        let h = mix(mix(mix(k[0] ^ self.seed) ^ k[1]) ^ k[2]);
        ((u128::from(h) * self.slots.len() as u128) >> 64) as usize
    }

    #[inline]
    fn wrap(&self, i: usize) -> usize {
        if i >= self.slots.len() {
            i - self.slots.len()
        } else {
            i
        }
    }
}

/// A 64-bit finaliser (xor-shift-multiply): every key bit affects the high
/// bits that pick the slot.
#[inline]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 32;
    x = x.wrapping_mul(0xd6e8_feb8_6659_fd93);
    x ^= x >> 32;
    x = x.wrapping_mul(0xd6e8_feb8_6659_fd93);
    x ^= x >> 32;
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::testutil::{ip4, sa, sa6};

    fn key(port: u16) -> FlowKey {
        FlowKey {
            proto: Proto::Udp,
            listener: 3,
            consumer: sa([10, 2, 0, 7], port),
        }
    }

    #[test]
    fn keys_pack_and_unpack() {
        for k in [
            key(1),
            FlowKey {
                proto: Proto::Tcp,
                listener: MAX_LISTENERS - 1,
                consumer: sa([255, 255, 255, 254], 65535),
            },
        ] {
            assert_eq!(FlowKey::unpack(k.pack()), k);
        }
        let tcp = FlowKey {
            proto: Proto::Tcp,
            ..key(1)
        };
        assert_ne!(tcp.pack(), key(1).pack());
    }

    #[test]
    fn ipv6_keys_pack_and_unpack_and_differ_from_ipv4_ones() {
        let v6 = |a: &str, port| FlowKey {
            proto: Proto::Tcp,
            listener: MAX_LISTENERS - 1,
            consumer: sa6(a, port),
        };
        for k in [
            v6("fd00:2::7", 1),
            v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535),
            v6("fe80::1", 40000),
        ] {
            assert_eq!(FlowKey::unpack(k.pack()), k);
        }
        // ::10.2.0.7 and 10.2.0.7 share the low address bits, not the key.
        let compat = FlowKey {
            proto: Proto::Udp,
            listener: 3,
            consumer: sa6("::10.2.0.7", 1),
        };
        assert_ne!(compat.pack(), key(1).pack());
        assert_eq!(FlowKey::unpack(compat.pack()), compat);
    }

    #[test]
    fn a_table_needs_a_lan_address_and_maps_each_family_to_its_own() {
        let t = Timeouts::default();
        assert_eq!(
            ConnTable::new(None, None, 40000, 8, t).unwrap_err(),
            NatConfigError::NoLanAddress
        );
        let lan6: Ipv6Addr = "fd00:1::1".parse().unwrap();
        let both = ConnTable::new(Some(ip4([10, 1, 0, 1])), Some(lan6), 40000, 8, t).unwrap();
        assert_eq!(both.lan_ip4(), Some(ip4([10, 1, 0, 1])));
        assert_eq!(both.lan_ip6(), Some(lan6));
        assert_eq!(both.lan_for(IpAddr::V6(lan6)), Some(IpAddr::V6(lan6)));
        let only6 = ConnTable::new(None, Some(lan6), 40000, 8, t).unwrap();
        assert_eq!(only6.lan_for(ip4([10, 2, 0, 7]).into()), None);
        assert_eq!(only6.lan_ip4(), None);
    }

    #[test]
    fn a_slot_is_32_bytes_and_never_straddles_a_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        assert_eq!(std::mem::align_of::<Slot>(), 32);
    }

    #[test]
    fn the_pool_must_fit_the_port_space() {
        let t = Timeouts::default();
        let lan = ip4([10, 1, 0, 1]);
        for (base, slots) in [(0, 10), (1000, 0), (65000, 537), (u16::MAX, 2)] {
            assert_eq!(
                ConnTable::new(Some(lan), None, base, slots, t).unwrap_err(),
                NatConfigError::BadPool {
                    port_base: base,
                    slots
                }
            );
        }
        let full = ConnTable::new(Some(lan), None, 65000, 536, t).unwrap();
        assert!(full.is_mapped_port(65535) && full.is_mapped_port(65000));
        assert!(!full.is_mapped_port(64999));
        assert_eq!(full.port_of(535), 65535);
        assert_eq!(full.slot_of(65535), Some(535));
        let def = ConnTable::new(Some(lan), None, DEFAULT_PORT_BASE, DEFAULT_SLOTS, t).unwrap();
        assert_eq!(def.capacity(), DEFAULT_SLOTS);
        assert!(!def.is_mapped_port(DEFAULT_PORT_BASE + DEFAULT_SLOTS as u16));
    }

    #[test]
    fn a_freed_and_reused_slot_is_a_different_entry() {
        let t = ConnTable::new(
            Some(ip4([10, 1, 0, 1])),
            None,
            40000,
            1,
            Timeouts::default(),
        )
        .unwrap();
        let a = t.track(&key(1), 10, 0, 0).unwrap();
        assert_eq!(t.entry(a.slot).map(|(_, k)| k), Some(key(1)));
        assert_eq!(t.find(&key(1)), Some(a));
        assert_eq!(t.track(&key(2), 10, 0, 0), Err(NatError::PoolExhausted));
        assert_eq!(t.expire(70), 1);
        assert!(t.entry(a.slot).is_none());
        assert!(t.find(&key(1)).is_none());
        let b = t.track(&key(2), 71, 0, 0).unwrap();
        assert_eq!(b.slot, a.slot);
        // The old entry's holder can neither refresh nor flag the new one.
        assert!(!t.touch(a, 72, F_RST, 0));
        let (now_hit, k) = t.entry(b.slot).unwrap();
        assert_eq!(k, key(2));
        assert_eq!(now_hit, b, "unchanged by the stale touch");
        assert!(t.touch(b, 72, 0, 0));
        assert_eq!(t.expire(131), 0);
        assert_eq!(t.expire(132), 1);
    }

    #[test]
    fn refresh_never_moves_last_seen_backwards() {
        let t = ConnTable::new(
            Some(ip4([10, 1, 0, 1])),
            None,
            40000,
            8,
            Timeouts::default(),
        )
        .unwrap();
        let h = t.track(&key(1), 100, 0, 0).unwrap();
        assert!(t.touch(h, 90, 0, 0));
        assert_eq!(t.expire(159), 0);
        assert_eq!(t.expire(160), 1);
    }

    #[test]
    fn flush_frees_everything() {
        let t = ConnTable::new(
            Some(ip4([10, 1, 0, 1])),
            None,
            40000,
            64,
            Timeouts::default(),
        )
        .unwrap();
        for p in 1..=20 {
            t.track(&key(p), 0, 0, 0).unwrap();
        }
        assert_eq!(t.active(), 20);
        assert_eq!(t.flush(), 20);
        assert_eq!(t.active(), 0);
        assert!((0..64).all(|s| t.entry(s).is_none()));
    }
}
