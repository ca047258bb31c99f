//! `s2ds run`: opens both ports with the configured backend, spawns one
//! pinned worker per configured core and the slow-path thread, exports the
//! stats snapshot, and stops cleanly on SIGINT/SIGTERM.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use tracing::{info, warn};

use crate::backend::native::NativePort;
use crate::backend::{afxdp, tap, PortInfo, PortQueue};
use crate::config::tunnel::Keying;
use crate::config::{Backend, Config};
use crate::gateway::Gateway;
use crate::latency::LatencyCollector;
use crate::neigh::Neighbors;
use crate::port::{PortAddr, PortId};
use crate::route::{Route, Route6, RouteTable};
use crate::slowpath::{SlowPath, REPLY_QUEUE_DEPTH, SLOW_QUEUE_DEPTH};
use crate::snapshot::{PortSnapshot, Snapshot, SNAPSHOT_VERSION};
use crate::stats::StatsRegistry;
use crate::tunnel::{
    SaSlots, ShmTableSource, ShmWatcher, StaticTables, TableContext, TableSource, TunnelTables,
};
use crate::worker::{Worker, WorkerLinks};

/// How often the stats snapshot is rewritten.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(250);
/// SA slots of the stats segment under keying "control": room for the SAs
/// of many sessions and their rekeys (64 bytes per slot and block).
const CONTROL_SA_SLOTS: u32 = 4096;

/// Runs the gateway described by `cfg` until `stop` is set (the binary sets
/// it from SIGINT/SIGTERM).
pub fn run(cfg: &Config, stop: Arc<AtomicBool>) -> Result<()> {
    let workers = cfg.workers.cores.len();
    if cfg.ports.use_dpdk() {
        #[cfg(feature = "dpdk")]
        return run_dpdk(cfg, workers, stop);
        #[cfg(not(feature = "dpdk"))]
        bail!("this s2ds was built without DPDK (--no-default-features); use backend \"af_xdp\" or \"tap\", or rebuild with the default features");
    }
    let mut ports = match PortId::ALL.map(|id| xdp_config(cfg, id, workers)) {
        // Both AF_XDP: each worker's two sockets share a UMEM, so frames
        // cross between the ports by descriptor, never copied in user space.
        // (Sockets on one UMEM bind alike: with zero_copy on one port only,
        // each keeps a UMEM of its own and TX copies.)
        [Some(lan), Some(wan)] if lan.zero_copy == wan.zero_copy => {
            let (l, w) = afxdp::XdpPort::open_pair(&lan, &wan)
                .context("opening the AF_XDP ports on shared UMEMs")?;
            vec![NativePort::Xdp(l), NativePort::Xdp(w)]
        }
        _ => {
            let mut ports = Vec::new();
            for id in PortId::ALL {
                ports.push(
                    open_native(cfg, id, workers).with_context(|| format!("opening port {id}"))?,
                );
            }
            ports
        }
    };
    let infos = [ports[0].info(), ports[1].info()];
    let mut lan = ports[0].take_queues();
    let mut wan = ports[1].take_queues();
    if lan.len() < workers || wan.len() < workers {
        bail!("a port gave fewer queues than the {workers} workers");
    }
    let pairs: Vec<_> = lan.drain(..workers).zip(wan.drain(..workers)).collect();
    serve(cfg, infos, pairs, || Ok(()), stop)
}

#[cfg(feature = "dpdk")]
fn run_dpdk(cfg: &Config, workers: usize, stop: Arc<AtomicBool>) -> Result<()> {
    use crate::backend::dpdk::{DpdkPort, DpdkPortConfig, Eal};
    let d = cfg.dpdk.clone().unwrap_or_default();
    let eal = Eal::init(&d.eal_args).context("initialising DPDK EAL")?;
    let mut ports = Vec::new();
    for id in PortId::ALL {
        let p = cfg.ports.get(id);
        let Backend::Dpdk { device } = &p.backend else {
            bail!("port {id} is not a DPDK port")
        };
        let pc = DpdkPortConfig {
            name: format!("{}_{}", cfg.gateway.name, id),
            device: device.as_str().to_string(),
            queues: workers as u16,
            mtu: p.mtu,
            rx_desc: d.rx_desc,
            tx_desc: d.tx_desc,
            mempool_size: d.mempool_size,
            mempool_cache: d.mempool_cache,
            // Adaptive workers sleep until a frame arrives where the PMD
            // has RX interrupts, else back off (worker.rs).
            rx_interrupts: cfg.workers.poll_mode == crate::config::PollMode::Adaptive,
        };
        let port = DpdkPort::open(eal, &pc)
            .with_context(|| format!("opening port {id} ({})", device.as_str()))?;
        if !port.wait_link_up(Duration::from_secs(10)) {
            warn!(port = %id, "link is down after 10 s; forwarding starts anyway");
        }
        ports.push(port);
    }
    let infos = [ports[0].info(), ports[1].info()];
    let pairs: Vec<_> = (0..workers as u16)
        .map(|i| (ports[0].queue(i), ports[1].queue(i)))
        .collect();
    serve(
        cfg,
        infos,
        pairs,
        move || {
            eal.register_thread()
                .map(|_| ())
                .context("registering worker with EAL")
        },
        stop,
    )
}

/// The AF_XDP socket settings of port `id`, if it is an AF_XDP port.
fn xdp_config(cfg: &Config, id: PortId, workers: usize) -> Option<afxdp::XdpConfig> {
    let Backend::AfXdp {
        interface,
        xdp_mode,
        zero_copy,
        frame_count,
    } = &cfg.ports.get(id).backend
    else {
        return None;
    };
    Some(afxdp::XdpConfig {
        interface: interface.clone(),
        queues: workers as u16,
        mode: match xdp_mode {
            crate::config::XdpMode::Auto => afxdp::XdpMode::Auto,
            crate::config::XdpMode::Native => afxdp::XdpMode::Native,
            crate::config::XdpMode::Skb => afxdp::XdpMode::Skb,
        },
        zero_copy: *zero_copy,
        frame_count: *frame_count,
    })
}

fn open_native(cfg: &Config, id: PortId, workers: usize) -> Result<NativePort> {
    if let Some(xdp) = xdp_config(cfg, id, workers) {
        return Ok(NativePort::open_xdp(&xdp)?);
    }
    let p = cfg.ports.get(id);
    Ok(match &p.backend {
        Backend::Tap {
            interface,
            mac,
            bridge,
        } => NativePort::open_tap(&tap::TapConfig {
            interface: interface.clone(),
            mtu: p.mtu,
            mac: *mac,
            queues: workers as u16,
            bridge: bridge.clone(),
        })?,
        Backend::AfXdp { .. } => unreachable!("AF_XDP ports are opened above"),
        Backend::Dpdk { .. } => bail!("port {id} is a DPDK port"),
    })
}

/// Builds the gateway from the config and the opened ports, then runs the
/// workers, the slow path and the stats export until `stop`.
fn serve<Q>(
    cfg: &Config,
    infos: [PortInfo; 2],
    pairs: Vec<(Q, Q)>,
    on_worker_start: impl Fn() -> Result<()> + Send + Clone + 'static,
    stop: Arc<AtomicBool>,
) -> Result<()>
where
    Q: PortQueue + 'static,
{
    let started = Instant::now();
    let addrs: [PortAddr; 2] = PortId::ALL.map(|id| {
        let p = cfg.ports.get(id);
        PortAddr {
            mac: infos[id.index()].mac,
            ip4: p.address.map(|a| (a.addr(), a.prefix_len())),
            mtu: p.mtu,
            ip6: p.address6.map(|a| (a.addr(), a.prefix_len())),
        }
    });
    let statics: Vec<Route> = cfg
        .routes
        .iter()
        .map(|r| Route {
            net: r.prefix.network(),
            len: r.prefix.prefix_len(),
            port: r.port,
            via: Some(r.via),
        })
        .collect();
    let statics6: Vec<Route6> = cfg
        .routes6
        .iter()
        .map(|r| Route6 {
            net: r.prefix.network(),
            len: r.prefix.prefix_len(),
            port: r.port,
            via: Some(r.via),
        })
        .collect();
    let gw = Arc::new(Gateway {
        ports: addrs,
        routes: RouteTable::new(&addrs, &statics).with_v6(&statics6),
    });
    let neigh = Arc::new(Neighbors::with_static(
        &cfg.neighbors
            .iter()
            .map(|n| (n.ip, n.mac, n.port))
            .collect::<Vec<(IpAddr, [u8; 6], PortId)>>(),
    ));
    for id in PortId::ALL {
        let (i, a) = (&infos[id.index()], &addrs[id.index()]);
        let address = cfg.ports.get(id).address.map(|a| a.to_string());
        let address6 = cfg.ports.get(id).address6.map(|a| a.to_string());
        info!(port = %id, device = %i.name, driver = %i.driver, mac = %crate::wire::mac_to_string(&a.mac), address = address.as_deref().unwrap_or("-"), address6 = address6.as_deref().unwrap_or("-"), link_local = %a.link_local(), mtu = a.mtu, "port up");
    }
    for r in gw.routes.routes() {
        info!(prefix = %format!("{}/{}", r.net, r.len), port = %r.port, via = ?r.via, "route");
    }
    for r in gw.routes.routes6() {
        info!(prefix = %format!("{}/{}", r.net, r.len), port = %r.port, via = ?r.via, "route");
    }

    let workers = pairs.len();
    let segment = cfg.stats_segment_path();
    let sa_slots = match &cfg.tunnel {
        Some(t) if matches!(t.keying, Keying::Manual) => t.sas.len().max(1) as u32,
        Some(_) => CONTROL_SA_SLOTS,
        None => 0,
    };
    let stats = Arc::new(
        StatsRegistry::create(Some(&segment), workers, sa_slots)
            .with_context(|| format!("creating the stats segment {}", segment.display()))?,
    );
    let slots = (sa_slots > 0).then(|| Arc::new(SaSlots::new(stats.clone())));
    let mut shm: Option<(Arc<ShmTableSource>, ShmWatcher)> = None;
    let tunnel: Option<Arc<dyn TableSource>> = match &cfg.tunnel {
        Some(t) if matches!(t.keying, Keying::Control { .. }) => {
            let Keying::Control { shm_path } = &t.keying else {
                unreachable!("matched above")
            };
            let cx = TableContext::new(
                t,
                &addrs[PortId::Lan.index()],
                &addrs[PortId::Wan.index()],
                slots.clone(),
            );
            let source = Arc::new(ShmTableSource::new(&cx));
            let watcher = ShmWatcher::new(source.clone(), cx, shm_path, workers, Some(&segment));
            info!(
                engine = t.engine.name(),
                engine_impl = %t.engine.describe(),
                udp_port = t.udp_port,
                shm = %shm_path.display(),
                inner_mtu_ipv4_outer = crate::esp::inner_mtu(addrs[PortId::Wan.index()].mtu),
                inner_mtu_ipv6_outer = crate::esp::inner_mtu6(addrs[PortId::Wan.index()].mtu),
                "tunnel up (keys from s2cs); no cleartext between LAN and WAN"
            );
            shm = Some((source.clone(), watcher));
            Some(source)
        }
        Some(t) => {
            let cx = TableContext::new(
                t,
                &addrs[PortId::Lan.index()],
                &addrs[PortId::Wan.index()],
                slots.clone(),
            );
            let tables =
                TunnelTables::from_config(t, &cx, 1).context("preparing the tunnel tables")?;
            info!(
                engine = t.engine.name(),
                engine_impl = %t.engine.describe(),
                udp_port = t.udp_port,
                sas = t.sas.len(),
                routes = t.routes.len(),
                routes6 = t.routes6.len(),
                inner_mtu = tables.inner_mtu(),
                "tunnel up (manual keys); no cleartext between LAN and WAN"
            );
            for s in t.sas.iter().filter(|s| !s.anti_replay) {
                warn!(
                    spi = format_args!("{:#x}", s.spi),
                    "inbound SA without the anti-replay check (anti_replay = false): a replayed \
                     packet is opened again; for benchmarks only"
                );
            }
            Some(Arc::new(StaticTables::new(tables)))
        }
        None => None,
    };
    let (mut latency, recorders) = LatencyCollector::new(workers);
    let mut recorders = recorders.into_iter();
    let (to_slow, slow_rx) = crossbeam_channel::bounded(SLOW_QUEUE_DEPTH);
    let mut reply_txs = Vec::new();
    let mut threads: Vec<JoinHandle<Result<()>>> = Vec::new();
    let idle_sleep = Duration::from_micros(u64::from(cfg.workers.idle_sleep_us));
    let poll_mode = cfg.workers.poll_mode;
    let stage_cycles = cfg.workers.stage_cycles;
    for (i, (lan, wan)) in pairs.into_iter().enumerate() {
        let (reply_tx, replies) = crossbeam_channel::bounded(REPLY_QUEUE_DEPTH);
        reply_txs.push(reply_tx);
        let links = WorkerLinks {
            gw: gw.clone(),
            neigh: neigh.clone(),
            to_slowpath: to_slow.clone(),
            replies,
            stats: stats.clone(),
            tunnel: tunnel.clone(),
            latency: recorders.next(),
        };
        let core = cfg.workers.cores[i];
        let stop = stop.clone();
        let on_start = on_worker_start.clone();
        let t = std::thread::Builder::new()
            .name(format!("s2ds-worker{i}"))
            .spawn(move || -> Result<()> {
                pin(core, &format!("worker {i}"));
                on_start()?;
                info!(worker = i, core, "worker polling");
                Worker::new(i, lan, wan, links, idle_sleep)
                    .with_poll_mode(poll_mode)
                    .with_stage_cycles(stage_cycles)
                    .run(&stop);
                Ok(())
            })?;
        threads.push(t);
    }
    drop(to_slow);
    let shm_source = match shm {
        Some((source, watcher)) => {
            let stop = stop.clone();
            threads.push(std::thread::Builder::new().name("s2ds-shm".into()).spawn(
                move || -> Result<()> {
                    watcher.run(&stop);
                    Ok(())
                },
            )?);
            Some(source)
        }
        None => None,
    };
    let slow = SlowPath::new(gw.clone(), neigh.clone(), slow_rx, reply_txs, stats.clone());
    let slow_core = cfg.workers.slowpath_core;
    let slow_stop = stop.clone();
    threads.push(
        std::thread::Builder::new()
            .name("s2ds-slowpath".into())
            .spawn(move || -> Result<()> {
                if let Some(c) = slow_core {
                    pin(c, "slow path");
                }
                slow.run(&slow_stop);
                Ok(())
            })?,
    );

    let path = cfg.stats_path();
    let mut snap = Snapshot {
        version: SNAPSHOT_VERSION,
        gateway: cfg.gateway.name.clone(),
        pid: std::process::id(),
        unix_ms: 0,
        uptime_s: 0.0,
        workers,
        ports: PortId::ALL
            .iter()
            .map(|id| PortSnapshot {
                id: *id,
                device: infos[id.index()].name.clone(),
                driver: infos[id.index()].driver.clone(),
                mac: crate::wire::mac_to_string(&addrs[id.index()].mac),
                address: cfg.ports.get(*id).addresses(),
                counts: Default::default(),
                host_drops: Default::default(),
            })
            .collect(),
        drops: Default::default(),
        control: Default::default(),
        tunnel: Default::default(),
        work: Default::default(),
        nat_active: 0,
        tables: None,
        sas: [0; 4],
        latency: None,
        neighbors: vec![],
        stats_segment: Some(segment.display().to_string()),
        sa_counters: vec![],
        cycles_per_second: if cfg.workers.stage_cycles {
            crate::stage_clock::cycles_per_second()
        } else {
            0
        },
        per_worker: cfg
            .workers
            .cores
            .iter()
            .map(|&core| crate::snapshot::WorkerSnapshot {
                core,
                ..Default::default()
            })
            .collect(),
    };
    info!(stats = %path.display(), segment = %segment.display(), workers, "gateway running");
    let mut export_failed = false;
    while !stop.load(Ordering::Relaxed) && !threads.iter().any(|t| t.is_finished()) {
        std::thread::sleep(SNAPSHOT_EVERY);
        if let Some(t) = &tunnel {
            let tables = t.load();
            tables.housekeeping();
            for spi in tables.expire(Instant::now()) {
                warn!(
                    spi = format_args!("{spi:#x}"),
                    "SA past its hard lifetime without a rekey: it seals and opens no more"
                );
            }
            snap.nat_active = tables.nat_active() as u64;
            let (lo, li) = tables.listener_counts();
            snap.sas = [
                tables.outbound_len() as u64,
                tables.inbound_len() as u64,
                lo as u64,
                li as u64,
            ];
        }
        if let Some(src) = &shm_source {
            snap.tables = Some(src.changes());
        }
        snap.latency = latency.collect();
        export(
            &mut snap,
            &stats,
            &neigh,
            started,
            &path,
            &mut export_failed,
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut result = Ok(());
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(_) => result = Err(anyhow::anyhow!("a gateway thread panicked")),
        }
    }
    // A stopped gateway has no live counters: remove its snapshot so that
    // `s2ds stats` says it is not running rather than showing stale zeros.
    let final_counts = stats.sum();
    let _ = std::fs::remove_file(&path);
    info!(
        lan_rx = final_counts.ports[0].rx_packets,
        wan_rx = final_counts.ports[1].rx_packets,
        drops = final_counts.total_drops(),
        "gateway stopped"
    );
    result
}

fn export(
    snap: &mut Snapshot,
    stats: &StatsRegistry,
    neigh: &Neighbors,
    started: Instant,
    path: &Path,
    failed: &mut bool,
) {
    snap.unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    snap.uptime_s = started.elapsed().as_secs_f64();
    snap.set_counts(&stats.sum());
    let blocks: Vec<_> = (0..snap.workers).map(|i| stats.worker(i).get()).collect();
    snap.set_worker_counts(&blocks);
    snap.set_sa_counters(&stats.segment().sa_totals());
    snap.set_neighbors(&neigh.load(), Instant::now());
    match snap.write_atomic(path) {
        Ok(()) => *failed = false,
        Err(e) if !*failed => {
            warn!(path = %path.display(), error = %e, "cannot write the stats snapshot");
            *failed = true;
        }
        Err(_) => {}
    }
}

fn pin(core: usize, what: &str) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        warn!(
            core,
            "{what}: could not pin to core {core}; running unpinned"
        );
    }
}
