//! Tables from shared memory: rebuilds keep SAs (and their sequence
//! counters) whose key is unchanged, keep inbound listener indexes, and
//! workers' reports let the writer publish; a session's rate limit is
//! enforced by the encapsulation stage.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use crate::crypto::EngineKind;
use scistream_region::layout::{ALG_AES128_GCM, DIR_IN, DIR_OUT, ROLE_INBOUND, ROLE_OUTBOUND};
use scistream_region::testing::TempRegion;
use scistream_region::{Capacities, ListenerEntry, RouteEntry, SaEntry, ShmError, ShmWriter};

use super::{ShmTableSource, ShmWatcher, TableContext, TableSource};

const CAPS: Capacities = Capacities {
    sas: 16,
    routes: 4,
    listeners: 8,
    workers: 2,
};

const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn cx() -> TableContext {
    TableContext {
        engine: EngineKind::Ring,
        udp_port: 4500,
        lan_ip: Some(Ipv4Addr::new(10, 1, 0, 1)),
        lan_ip6: None,
        wan_ip: Some(Ipv4Addr::new(192, 0, 2, 1)),
        wan_ip6: None,
        wan_mtu: 1500,
        nat_port_base: 40000,
        nat_slots: 64,
        sa_slots: None,
        tcp_mss: Some(1398),
    }
}

fn sa(spi: u32, direction: u8, key_byte: u8) -> SaEntry {
    SaEntry {
        spi,
        direction,
        algorithm: ALG_AES128_GCM,
        key_len: 16,
        esn: 1,
        key: [key_byte; 32],
        salt: [1, 2, 3, 4],
        peer_addr: scistream_region::encode_ip(PEER.into()),
        peer_port: 4500,
        ..SaEntry::default()
    }
}

fn inbound_listener(port: u16, target_port: u16, sa_slot: u32) -> ListenerEntry {
    ListenerEntry {
        role: ROLE_INBOUND,
        port,
        target_addr: scistream_region::encode_ip(Ipv4Addr::new(10, 1, 0, 5).into()),
        target_port,
        sa_slot,
        ..ListenerEntry::default()
    }
}

/// A writer, a source and a watcher for 2 workers on a fresh region.
fn setup(r: &TempRegion) -> (ShmWriter, Arc<ShmTableSource>, ShmWatcher) {
    setup_with(r, cx(), None)
}

/// [`setup`] with the context `cx`, announcing the stats segment `stats`.
fn setup_with(
    r: &TempRegion,
    cx: TableContext,
    stats: Option<&std::path::Path>,
) -> (ShmWriter, Arc<ShmTableSource>, ShmWatcher) {
    let mut w = ShmWriter::create(r.path(), CAPS).unwrap();
    let src = Arc::new(ShmTableSource::new(&cx));
    let mut watcher = ShmWatcher::new(src.clone(), cx, r.path(), 2, stats);
    watcher.poll();
    assert!(src.changes().attached);
    // The control process's side of the handshake: the tables are for the
    // data plane that just attached (every copy starts from this one).
    let incarnation = w.incarnation();
    w.publish(|t| t.set_keyed_for(incarnation)).unwrap();
    watcher.poll();
    workers_catch_up(&src);
    (w, src, watcher)
}

/// Both workers move on to the current tables.
fn workers_catch_up(src: &ShmTableSource) {
    let t = src.load();
    src.seen(0, &t);
    src.seen(1, &t);
}

#[test]
fn unchanged_sas_keep_their_sequence_counter_and_changed_keys_restart() {
    let r = TempRegion::new("tables");
    let (mut w, src, mut watcher) = setup(&r);
    assert_eq!(
        w.take_incarnation_change(),
        Some(1),
        "attaching announces an incarnation"
    );
    w.publish(|t| {
        t.sas().push(sa(0x1000, DIR_OUT, 7)).unwrap();
        t.sas().push(sa(0x2000, DIR_IN, 8)).unwrap();
        t.routes()
            .push(RouteEntry {
                prefix: scistream_region::encode_ip(Ipv4Addr::new(10, 2, 0, 0).into()),
                len: 16,
                sa_slot: 0,
                ..RouteEntry::default()
            })
            .unwrap();
    })
    .unwrap();
    assert!(watcher.poll());
    let t1 = src.load().clone();
    assert_eq!(t1.route(Ipv4Addr::new(10, 2, 3, 4)), Some(0));
    assert_eq!(t1.route(Ipv4Addr::new(10, 3, 0, 1)), None);
    assert!(t1.has_inbound(0x2000));
    assert_eq!(t1.outbound(0).outer.dst, PEER);
    assert_eq!(t1.outbound(0).sa.reserve(10).unwrap(), 1..11);
    t1.outbound(0).sa.account_bytes(1000);
    workers_catch_up(&src);

    // Another SA added: the first is the same SA, its counter goes on.
    w.publish(|t| {
        t.sas().push(sa(0x1001, DIR_OUT, 9)).unwrap();
    })
    .unwrap();
    assert!(watcher.poll());
    let t2 = src.load().clone();
    assert_eq!(t2.outbound(0).sa.reserve(1).unwrap(), 11..12);
    assert!(std::ptr::eq(&t1.outbound(0).sa, &t2.outbound(0).sa));
    assert_eq!(src.changes().installed, 3);
    assert_eq!(src.changes().removed, 0);
    workers_catch_up(&src);

    // Same SPI, new key: a new SA whose numbers start at 1 again.
    w.publish(|t| {
        t.sas().set(0, sa(0x1000, DIR_OUT, 0x42)).unwrap();
    })
    .unwrap();
    assert!(watcher.poll());
    let t3 = src.load().clone();
    assert_eq!(t3.outbound(0).sa.reserve(1).unwrap(), 1..2);
    assert_eq!(src.changes().installed, 4);
    assert_eq!(src.changes().removed, 1);
}

/// The watcher tells the control process where the stats segment is, and
/// every SA of the tables has a slot there, named by its direction and
/// SPI; a slot follows its SA across rebuilds and is freed with it.
#[test]
fn sas_are_counted_in_the_stats_segment_the_region_announces() {
    use crate::stats::StatsRegistry;
    use crate::tunnel::SaSlots;
    use scistream_region::Direction;

    let r = TempRegion::new("tables-stats");
    let seg = TempRegion::new("tables-stats-seg");
    let stats = Arc::new(StatsRegistry::create(Some(seg.path()), 2, 8).unwrap());
    let cx = TableContext {
        sa_slots: Some(Arc::new(SaSlots::new(stats.clone()))),
        ..cx()
    };
    let (mut w, src, mut watcher) = setup_with(&r, cx, Some(seg.path()));
    assert_eq!(w.take_incarnation_change(), Some(1));
    assert_eq!(
        w.dataplane_info().stats_path().as_deref(),
        Some(seg.path()),
        "the region names the stats segment"
    );
    w.publish(|t| {
        t.sas().push(sa(0x1000, DIR_OUT, 7)).unwrap();
        t.sas().push(sa(0x2000, DIR_IN, 8)).unwrap();
    })
    .unwrap();
    assert!(watcher.poll());
    let listed = |stats: &StatsRegistry| {
        let mut v: Vec<(Option<Direction>, u32)> = stats
            .segment()
            .sa_totals()
            .iter()
            .map(|t| (t.direction, t.spi))
            .collect();
        v.sort_by_key(|x| x.1);
        v
    };
    assert_eq!(
        listed(&stats),
        [
            (Some(Direction::Out), 0x1000),
            (Some(Direction::In), 0x2000)
        ]
    );
    let slot = src.load().outbound(0).stats_slot.expect("a slot");
    workers_catch_up(&src);
    // A rebuild that keeps the SA keeps its slot; a rekeyed SA (new key,
    // same SPI) gets a fresh one and the old one is freed.
    w.publish(|t| {
        t.sas().push(sa(0x1001, DIR_OUT, 9)).unwrap();
    })
    .unwrap();
    assert!(watcher.poll());
    assert_eq!(src.load().outbound(0).stats_slot, Some(slot));
    workers_catch_up(&src);
    w.publish(|t| {
        t.sas().set(0, sa(0x1000, DIR_OUT, 0x42)).unwrap();
        t.sas().set(1, sa(0x2001, DIR_IN, 8)).unwrap();
    })
    .unwrap();
    assert!(watcher.poll());
    assert_eq!(
        listed(&stats),
        [
            (Some(Direction::Out), 0x1000),
            (Some(Direction::Out), 0x1001),
            (Some(Direction::In), 0x2001)
        ],
        "0x2000 left, its slot with it"
    );
    let t = src.load();
    let (a, b) = (t.outbound(0).stats_slot, t.outbound(1).stats_slot);
    assert!(a.is_some() && b.is_some() && a != b);
}

#[test]
fn release_removes_sas_and_listeners_and_indexes_stay_stable() {
    let r = TempRegion::new("tables");
    let (mut w, src, mut watcher) = setup(&r);
    w.publish(|t| {
        t.sas().push(sa(0x1000, DIR_OUT, 7)).unwrap();
        t.sas().push(sa(0x2000, DIR_IN, 8)).unwrap();
        t.listeners().push(inbound_listener(5100, 7000, 0)).unwrap();
        t.listeners().push(inbound_listener(5101, 7001, 0)).unwrap();
        t.listeners()
            .push(ListenerEntry {
                role: ROLE_OUTBOUND,
                port: 6000,
                remote_addr: scistream_region::encode_ip(PEER.into()),
                remote_port: 5200,
                sa_slot: 0,
                ..ListenerEntry::default()
            })
            .unwrap();
    })
    .unwrap();
    assert!(watcher.poll());
    assert_eq!(src.load().listener_counts(), (1, 2));
    workers_catch_up(&src);

    // Release the first inbound listener; the second keeps index 1.
    w.publish(|t| {
        let mut l = t.listeners();
        let keep: Vec<ListenerEntry> = (0..l.len())
            .filter_map(|i| l.get(i))
            .filter(|e| e.port != 5100)
            .collect();
        l.clear();
        for e in keep {
            l.push(e).unwrap();
        }
    })
    .unwrap();
    assert!(watcher.poll());
    let t = src.load().clone();
    assert_eq!(t.listener_counts(), (1, 1));
    let listen = |port| std::net::SocketAddr::from(SocketAddrV4::new(cx().wan_ip.unwrap(), port));
    let l = t.listeners.as_ref().unwrap();
    assert_eq!(l.match_inbound(listen(5101)), Some(1));
    assert_eq!(l.match_inbound(listen(5100)), None);
    workers_catch_up(&src);

    // A new listener takes the free index 0; 5101 stays at 1.
    w.publish(|t| {
        t.listeners().push(inbound_listener(5102, 7002, 0)).unwrap();
    })
    .unwrap();
    assert!(watcher.poll());
    let t = src.load().clone();
    let l = t.listeners.as_ref().unwrap();
    assert_eq!(l.match_inbound(listen(5102)), Some(0));
    assert_eq!(l.match_inbound(listen(5101)), Some(1));
    workers_catch_up(&src);

    // Release everything: no SA, no listener left.
    w.publish(|t| t.clear()).unwrap();
    assert!(watcher.poll());
    let t = src.load().clone();
    assert_eq!((t.outbound_len(), t.inbound_len()), (0, 0));
    assert_eq!(t.listener_counts(), (0, 0));
    assert_eq!(src.changes().removed, 2);
}

#[test]
fn publishing_waits_for_every_worker_to_move_on() {
    let r = TempRegion::new("tables");
    let (mut w, src, mut watcher) = setup(&r);
    w.set_grace(Duration::from_millis(50));
    w.publish(|t| {
        t.sas().push(sa(0x1000, DIR_OUT, 7)).unwrap();
    })
    .unwrap();
    assert!(watcher.poll());
    // Worker 0 moves on, worker 1 has not loaded the new tables yet.
    src.seen(0, &src.load());
    let err = w.publish(|_| {}).unwrap_err();
    assert!(
        matches!(err, ShmError::WorkerStuck { worker: 1, .. }),
        "{err}"
    );
    src.seen(1, &src.load());
    w.publish(|_| {}).unwrap();
    // The new generation is not in use until the watcher rebuilt the tables
    // and both workers moved on to them.
    assert!(matches!(
        w.wait_until_seen(),
        Err(ShmError::WorkerStuck { worker: 0, .. })
    ));
    assert!(watcher.poll());
    workers_catch_up(&src);
    w.wait_until_seen().unwrap();
}

#[test]
fn invalid_entries_are_skipped_and_counted() {
    let r = TempRegion::new("tables");
    let (mut w, src, mut watcher) = setup(&r);
    w.publish(|t| {
        t.sas().push(sa(0x1000, DIR_OUT, 7)).unwrap();
        t.sas().push(sa(0x10, DIR_IN, 8)).unwrap(); // reserved SPI
        let mut bad_alg = sa(0x3000, DIR_IN, 8);
        bad_alg.algorithm = 99;
        t.sas().push(bad_alg).unwrap();
        let mut bad_len = sa(0x3001, DIR_IN, 8);
        bad_len.key_len = 20;
        t.sas().push(bad_len).unwrap();
        t.listeners().push(inbound_listener(5100, 7000, 9)).unwrap(); // no such SA
    })
    .unwrap();
    assert!(watcher.poll());
    let t = src.load().clone();
    assert_eq!((t.outbound_len(), t.inbound_len()), (1, 0));
    assert_eq!(t.listener_counts(), (0, 0));
    assert_eq!(src.changes().invalid, 4);
}

/// Rate limits through the encapsulation stage: a gateway's WAN side toward
/// [`PEER`], with the tables of a region.
mod rate {
    use super::*;
    use crate::backend::pool::PoolBuf;
    use crate::backend::{Burst, PacketBuf};
    use crate::esp::{Clock, ManualClock};
    use crate::gateway::Gateway;
    use crate::neigh::Neighbors;
    use crate::port::{PortAddr, PortId};
    use crate::route::RouteTable;
    use crate::stats::{Counters, DropReason};
    use crate::tunnel::pipeline::{encap_burst_with_clock, StageCtx, TunnelErrors, Unresolved};
    use crate::tunnel::TunnelTables;
    use crate::wire::{checksum, ETH_HLEN};

    const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0x99, 1];
    const LIMITED_NET: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 0);
    const FREE_NET: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 0);
    const INNER: usize = 1000;
    const SEC: u64 = 1_000_000_000;

    fn gateway() -> Gateway {
        let c = cx();
        let port = |mac, ip| PortAddr {
            mac,
            ip4: Some((ip, 24)),
            mtu: 1500,
            ip6: None,
        };
        let ports = [
            port([2, 0xaa, 0, 0, 0, 1], c.lan_ip.unwrap()),
            port([2, 0xaa, 0, 0, 0, 2], c.wan_ip.unwrap()),
        ];
        Gateway {
            routes: RouteTable::new(&ports, &[]),
            ports,
        }
    }

    /// An Ethernet frame with an IPv4/UDP packet of `INNER` bytes to `dst`.
    fn frame(dst: Ipv4Addr) -> Vec<u8> {
        let mut f = vec![0u8; ETH_HLEN + INNER];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[ETH_HLEN..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(INNER as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 1, 0, 5]);
        ip[16..20].copy_from_slice(&dst.octets());
        let c = checksum::of(&ip[..20]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// What the WAN saw of one SA: sealed frames, inner bytes, sequence numbers.
    #[derive(Default)]
    struct Sealed {
        frames: u64,
        inner_bytes: u64,
        seqs: Vec<u32>,
    }

    /// Offers bursts of 32 frames, alternating between the limited and the
    /// free SA, one burst every `interval` ns for `duration` ns of `clock`.
    fn offer(
        tables: &TunnelTables,
        clock: &ManualClock,
        interval: u64,
        duration: u64,
        counts: &mut Counters,
    ) -> [Sealed; 2] {
        let gw = gateway();
        let neigh = Neighbors::with_static(&[(PEER, PEER_MAC, PortId::Wan)]);
        let neigh = neigh.load();
        let dsts = [Ipv4Addr::new(10, 2, 0, 9), Ipv4Addr::new(10, 3, 0, 9)];
        let sa_of = |d: Ipv4Addr| tables.route(d).unwrap();
        let mut out: [Sealed; 2] = Default::default();
        let end = clock.now_ns() + duration;
        while clock.now_ns() < end {
            let mut bufs: Burst<PoolBuf> = Burst::new();
            let mut sa_idx = Vec::new();
            for k in 0..32 {
                bufs.push(PoolBuf::from_slice(&frame(dsts[k % 2])).unwrap());
                sa_idx.push(sa_of(dsts[k % 2]));
            }
            let mut unresolved = Unresolved::new();
            let mut errors = TunnelErrors::new();
            let mut cx = StageCtx {
                gw: &gw,
                neigh: &neigh,
                tables,
                counts: &mut *counts,
                unresolved: &mut unresolved,
                errors: &mut errors,
                sa_stats: None,
            };
            encap_burst_with_clock(&mut cx, &mut bufs, &sa_idx, clock);
            assert!(unresolved.is_empty());
            for b in &bufs {
                let d = b.data();
                assert_eq!(&d[..6], &PEER_MAC);
                let spi = u32::from_be_bytes(d[ETH_HLEN + 28..ETH_HLEN + 32].try_into().unwrap());
                let seq = u32::from_be_bytes(d[ETH_HLEN + 32..ETH_HLEN + 36].try_into().unwrap());
                let which = match spi {
                    0x1000 => 0,
                    0x1001 => 1,
                    other => panic!("sealed with unknown SPI {other:#x}"),
                };
                out[which].frames += 1;
                out[which].inner_bytes += INNER as u64;
                out[which].seqs.push(seq);
            }
            clock.advance(interval);
        }
        out
    }

    fn publish_rate(w: &mut ShmWriter, rate_bps: u64) {
        w.publish(|t| {
            t.sas().clear();
            t.routes().clear();
            t.sas()
                .push(SaEntry {
                    rate_bps,
                    ..sa(0x1000, DIR_OUT, 7)
                })
                .unwrap();
            t.sas().push(sa(0x1001, DIR_OUT, 9)).unwrap();
            for (slot, net) in [(0, LIMITED_NET), (1, FREE_NET)] {
                t.routes()
                    .push(RouteEntry {
                        prefix: scistream_region::encode_ip(net.into()),
                        len: 16,
                        sa_slot: slot,
                        ..RouteEntry::default()
                    })
                    .unwrap();
            }
        })
        .unwrap();
    }

    /// Asserts `got` inner bytes are within 2 % of `rate_bps` over `ns`.
    fn assert_rate(got: u64, rate_bps: u64, ns: u64) {
        let want = rate_bps as f64 / 8.0 * ns as f64 / SEC as f64;
        let err = (got as f64 - want).abs() / want;
        assert!(
            err < 0.02,
            "sealed {got} B, the rate allows {want} B ({err:.4})"
        );
    }

    #[test]
    fn a_session_offered_twice_its_rate_gets_its_rate_and_the_rest_is_counted() {
        const RATE: u64 = 100_000_000; // 12.5 MB/s
        let r = TempRegion::new("tables");
        let (mut w, src, mut watcher) = setup(&r);
        publish_rate(&mut w, RATE);
        assert!(watcher.poll());
        let t1 = src.load().clone();
        workers_catch_up(&src);
        assert_eq!(t1.outbound(0).sa.rate_bps(), RATE);
        assert_eq!(t1.outbound(1).sa.rate_bps(), 0);

        // 16 frames of 1000 B per SA per burst every 640 µs: 25 MB/s, twice the rate.
        let clock = ManualClock::new(7 * SEC);
        let interval = 640_000;
        let mut counts = Counters::default();
        let [limited, free] = offer(&t1, &clock, interval, SEC, &mut counts);
        let offered = SEC.div_ceil(interval) * 16;
        assert_rate(limited.inner_bytes, RATE, SEC);
        assert_eq!(free.frames, offered, "the SA without a rate lost nothing");
        assert_eq!(
            counts.dropped(DropReason::RateLimited),
            offered - limited.frames,
            "every refused packet is counted"
        );
        assert_eq!(
            counts.total_drops(),
            counts.dropped(DropReason::RateLimited)
        );
        assert_eq!(counts.tunnel.encap_packets, limited.frames + free.frames);
        // Refused packets take no sequence number: the sealed ones are 1, 2, 3, ...
        let expect: Vec<u32> = (1..=limited.frames as u32).collect();
        assert_eq!(limited.seqs, expect);
        assert_eq!(
            t1.outbound(0).sa.usage(),
            (limited.frames, limited.inner_bytes)
        );

        // The control process halves the rate: same SA, same counter, new rate.
        publish_rate(&mut w, RATE / 2);
        assert!(watcher.poll());
        let t2 = src.load().clone();
        workers_catch_up(&src);
        assert!(std::ptr::eq(&t1.outbound(0).sa, &t2.outbound(0).sa));
        assert_eq!(t2.outbound(0).sa.rate_bps(), RATE / 2);
        let [halved, _] = offer(&t2, &clock, interval, SEC, &mut Counters::default());
        assert_rate(halved.inner_bytes, RATE / 2, SEC);
        assert_eq!(
            halved.seqs.first().copied(),
            Some(limited.frames as u32 + 1)
        );

        // Rate 0: unlimited again.
        publish_rate(&mut w, 0);
        assert!(watcher.poll());
        let t3 = src.load().clone();
        let mut counts = Counters::default();
        let [all, _] = offer(&t3, &clock, interval, SEC / 10, &mut counts);
        assert_eq!(all.frames, (SEC / 10).div_ceil(interval) * 16);
        assert_eq!(counts.total_drops(), 0);
        assert!(clock.now_ns() > 9 * SEC);
    }
}

/// The nonce guard: tables written for another data plane incarnation (a
/// restarted `s2ds` reading what its dead predecessor used) are not
/// installed, however valid, until the control process stamps them for
/// this incarnation; then they are.
#[test]
fn tables_keyed_for_another_incarnation_are_not_used() {
    let r = TempRegion::new("tables");
    let mut w = ShmWriter::create(r.path(), CAPS).unwrap();
    // What the previous data plane (incarnation 1) used.
    w.publish(|t| {
        t.set_keyed_for(1);
        t.sas().push(sa(0x1000, DIR_OUT, 7)).unwrap();
        t.sas().push(sa(0x2000, DIR_IN, 8)).unwrap();
        t.listeners().push(inbound_listener(5100, 7000, 0)).unwrap();
    })
    .unwrap();
    let src = Arc::new(ShmTableSource::new(&cx()));
    let mut watcher = ShmWatcher::new(src.clone(), cx(), r.path(), 2, None);
    // Whoever attaches bumps the incarnation: 0 → 1 here, so the first
    // attach sees tables for itself...
    watcher.poll();
    assert_eq!(src.load().outbound_len(), 1, "keyed for incarnation 1");
    // ... and a restarted data plane (incarnation 2) does not.
    drop(watcher);
    let src = Arc::new(ShmTableSource::new(&cx()));
    let mut watcher = ShmWatcher::new(src.clone(), cx(), r.path(), 2, None);
    watcher.poll();
    assert_eq!(w.incarnation(), 2);
    let t = src.load();
    assert_eq!(
        (t.outbound_len(), t.inbound_len(), t.listener_counts()),
        (0, 0, (0, 0)),
        "nothing from the dead data plane's tables"
    );
    workers_catch_up(&src);
    // Restamped (with new keys, as s2cs does), they are used.
    w.publish(|t| {
        t.set_keyed_for(2);
        t.sas().set(0, sa(0x1001, DIR_OUT, 9)).unwrap();
    })
    .unwrap();
    assert!(watcher.poll());
    assert_eq!(src.load().outbound_len(), 1);
}
