//! The data plane's side of the shared-memory region over a corrupted file:
//! a region written by the real writer (`ShmWriter`: SAs of both
//! directions, routes, listeners of both roles, one published generation)
//! is overwritten at places the input chooses, and may be cut short or
//! grown; then `ShmReader::open` (the magic, version and size checks),
//! `current`, every table's entries and typed accessors, the worker slot
//! calls, and `TunnelTables::from_shm` (the one builder, which must skip
//! invalid entries) run over it. Nothing may panic.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use scistream_dataplane::crypto::{Algorithm, EngineKind};
use scistream_dataplane::stats::StatsRegistry;
use scistream_dataplane::tunnel::{SaSlots, TableContext, TunnelTables};
use scistream_dataplane_fuzz::{ports, tunnel_section, Bytes};
use scistream_region::{
    Capacities, ListenerEntry, RouteEntry, SaEntry, SaKeys, ShmReader, ShmWriter,
};

const CAPS: Capacities = Capacities {
    sas: 4,
    routes: 4,
    listeners: 4,
    workers: 2,
};

fn path(tag: &str) -> PathBuf {
    PathBuf::from(format!(
        "/dev/shm/scistream-fuzz-{tag}-{}",
        std::process::id()
    ))
}

/// The bytes of a valid region, written once by the real writer.
fn template() -> &'static [u8] {
    static T: OnceLock<Vec<u8>> = OnceLock::new();
    T.get_or_init(|| {
        let p = path("template");
        let _ = std::fs::remove_file(&p);
        let mut w = ShmWriter::create(&p, CAPS).expect("create the template region");
        let peer: std::net::SocketAddr = "10.10.200.1:4500".parse().unwrap();
        let keys = |spi, key: &'static [u8], algorithm| SaKeys {
            spi,
            algorithm,
            key,
            salt: [1, 2, 3, spi as u8],
            esn: true,
        };
        w.publish(|t| {
            {
                let mut sas = t.sas();
                let out = keys(0x1001, b"0123456789abcdef", Algorithm::Aes128Gcm);
                let inb = keys(
                    0x2001,
                    b"fedcba9876543210fedcba9876543210",
                    Algorithm::Aes256Gcm,
                );
                sas.push(
                    SaEntry::outbound(&out, peer, 1_000_000)
                        .unwrap()
                        .with_hard_lifetime(3600, 0),
                )
                .unwrap();
                sas.push(SaEntry::inbound(&inb, peer).unwrap()).unwrap();
            }
            t.routes()
                .push(RouteEntry::new(std::net::Ipv4Addr::new(10, 20, 0, 0).into(), 16, 0).unwrap())
                .unwrap();
            let mut l = t.listeners();
            l.push(ListenerEntry::outbound(
                5100,
                "10.10.200.1:6100".parse().unwrap(),
                0,
            ))
            .unwrap();
            l.push(ListenerEntry::inbound(
                6100,
                "10.10.1.2:7000".parse().unwrap(),
                0,
            ))
            .unwrap();
        })
        .expect("publish the template tables");
        let bytes = std::fs::read(&p).expect("read the template region");
        drop(w);
        let _ = std::fs::remove_file(&p);
        bytes
    })
}

struct Fixture {
    cx: TableContext,
    empty: TunnelTables,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let stats = Arc::new(StatsRegistry::new(1));
        let section = tunnel_section(EngineKind::Ring);
        let ports = ports();
        let slots = Arc::new(SaSlots::new(stats));
        let cx = TableContext::new(&section, &ports[0], &ports[1], Some(slots));
        let empty = TunnelTables::empty(&cx, 0);
        Fixture { cx, empty }
    })
}

fuzz_target!(|data: &[u8]| {
    let mut region = template().to_vec();
    let f = fixture();
    let mut r = Bytes::new(data);
    let resize = r.u8();
    while !r.is_empty() {
        let at = usize::from(r.u16()) % region.len();
        let patch = r.chunk();
        let end = (at + patch.len()).min(region.len());
        region[at..end].copy_from_slice(&patch[..end - at]);
    }
    match resize % 8 {
        1 => region.truncate(region.len().saturating_sub(usize::from(resize >> 3) * 64)),
        2 => region.resize(region.len() + usize::from(resize >> 3) * 64, 0),
        _ => {}
    }
    let p = path("input");
    std::fs::write(&p, &region).expect("write the region file");
    let reader = ShmReader::open(&p, 1);
    let _ = std::fs::remove_file(&p);
    let Ok(reader) = reader else {
        return;
    };
    let _ = reader.capacities();
    let _ = reader.incarnation();
    let _ = reader.attach_worker(0);
    let view = reader.current();
    for e in view.sas().iter() {
        let _ = (e.direction(), e.algorithm(), e.key(), e.peer());
    }
    for e in view.routes().iter() {
        let _ = e.network();
    }
    for e in view.listeners().iter() {
        let _ = (e.role(), e.remote(), e.target());
    }
    let _ = TunnelTables::from_shm(&view, &f.cx, &f.empty, 1, view.keyed_for());
    let _ = reader.report_seen(0, view.generation());
    let _ = reader.detach_worker(0);
});
