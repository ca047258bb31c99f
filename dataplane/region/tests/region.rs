//! The shared-memory region: concurrent QSBR publishing without torn
//! reads, refusal of bad regions, file mode, and the writer's wait for
//! workers.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use scistream_region::layout::{MAGIC, ROLE_INBOUND, ROLE_OUTBOUND, VERSION};
use scistream_region::{
    Capacities, DataplaneInfo, ListenerEntry, RouteEntry, SaEntry, ShmError, ShmReader, ShmWriter,
};

use scistream_region::testing::TempRegion;

const CAPS: Capacities = Capacities {
    sas: 64,
    routes: 32,
    listeners: 16,
    workers: 4,
};

/// FNV-1a over the 64-bit words `w`.
fn fnv(w: &[u64]) -> u64 {
    w.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        x.to_le_bytes()
            .iter()
            .fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
    })
}

fn sa_count(g: u64) -> usize {
    1 + (g % 64) as usize
}

fn route_count(g: u64) -> usize {
    (g % 33) as usize
}

fn listener_count(g: u64) -> usize {
    (g % 17) as usize
}

/// The SA entry `i` of generation `g`: every field derived from (g, i),
/// the last 8 key bytes a checksum over the rest of the entry.
fn sa_for(g: u64, i: usize) -> SaEntry {
    let x = g.wrapping_mul(1_000_003) ^ (i as u64) << 40;
    let mut key = [0u8; 32];
    for (k, b) in key.iter_mut().take(24).enumerate() {
        *b = (x >> (k % 8 * 8)) as u8 ^ k as u8;
    }
    let mut e = SaEntry {
        spi: 256 + (x as u32 & 0xffff),
        direction: (g % 2) as u8,
        algorithm: 1 + (i % 2) as u8,
        key_len: 32,
        esn: ((g + i as u64) % 2) as u8,
        key,
        salt: (g as u32 ^ i as u32).to_le_bytes(),
        peer_addr: addr_for(x),
        peer_port: 4500 + (i as u16),
        hard_seconds: g + 1,
        hard_packets: i as u64,
        rate_bps: x,
        ..SaEntry::default()
    };
    let sum = sa_checksum(&e);
    e.key[24..].copy_from_slice(&sum.to_le_bytes());
    e
}

/// A 16-byte address that varies with `x` in both halves.
fn addr_for(x: u64) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..8].copy_from_slice(&x.to_le_bytes());
    a[8..].copy_from_slice(&x.rotate_left(17).to_be_bytes());
    a
}

fn sa_checksum(e: &SaEntry) -> u64 {
    let mut w = vec![
        u64::from(e.spi),
        u64::from(e.direction) | u64::from(e.algorithm) << 8 | u64::from(e.key_len) << 16,
        u64::from(e.esn),
        u64::from(u32::from_le_bytes(e.salt)),
        u64::from_le_bytes(e.peer_addr[..8].try_into().unwrap()),
        u64::from_le_bytes(e.peer_addr[8..].try_into().unwrap()) ^ u64::from(e.peer_port) << 32,
        e.hard_seconds,
        e.hard_packets,
        e.rate_bps,
    ];
    w.extend(
        e.key[..24]
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap())),
    );
    fnv(&w)
}

fn route_for(g: u64, i: usize) -> RouteEntry {
    RouteEntry {
        prefix: addr_for(g.wrapping_mul(2654435761) ^ i as u64),
        len: (i % 33) as u8,
        sa_slot: (g as u32) ^ (i as u32) << 16,
        ..RouteEntry::default()
    }
}

fn listener_for(g: u64, i: usize) -> ListenerEntry {
    ListenerEntry {
        role: if i.is_multiple_of(2) {
            ROLE_OUTBOUND
        } else {
            ROLE_INBOUND
        },
        port: 5000 + i as u16,
        remote_addr: addr_for(g),
        target_addr: addr_for(!g),
        remote_port: (g >> 32) as u16 ^ i as u16,
        target_port: g as u16,
        sa_slot: i as u32 ^ (g as u32) << 8,
        ..ListenerEntry::default()
    }
}

fn fill(t: &mut scistream_region::TablesMut<'_>, g: u64) {
    t.clear();
    for i in 0..sa_count(g) {
        t.sas().push(sa_for(g, i)).unwrap();
    }
    for i in 0..route_count(g) {
        t.routes().push(route_for(g, i)).unwrap();
    }
    for i in 0..listener_count(g) {
        t.listeners().push(listener_for(g, i)).unwrap();
    }
}

#[test]
fn concurrent_publishing_never_shows_a_torn_entry() {
    const GENERATIONS: u64 = 10_000;
    const READERS: usize = 2;
    let region = TempRegion::new("qsbr");
    let mut writer = ShmWriter::create(region.path(), CAPS).unwrap();
    writer.set_grace(Duration::from_secs(20));
    let readers: Vec<Arc<ShmReader>> = (0..READERS)
        .map(|_| Arc::new(ShmReader::open(region.path(), READERS).unwrap()))
        .collect();
    for (w, r) in readers.iter().enumerate() {
        r.attach_worker(w).unwrap();
    }
    let handles: Vec<_> = readers
        .iter()
        .enumerate()
        .map(|(w, r)| {
            let r = Arc::clone(r);
            thread::spawn(move || {
                let (mut last, mut distinct, mut entries) = (0u64, 0u64, 0u64);
                loop {
                    let v = r.current();
                    let g = v.generation();
                    assert!(g >= last, "worker {w}: generation went back {last} -> {g}");
                    if g != last {
                        distinct += 1;
                    }
                    last = g;
                    if g > 0 {
                        let sas = v.sas();
                        assert_eq!(sas.len(), sa_count(g), "gen {g}: SA count");
                        for (i, e) in sas.iter().enumerate() {
                            let sum = u64::from_le_bytes(e.key[24..].try_into().unwrap());
                            assert_eq!(sum, sa_checksum(&e), "gen {g}: torn SA {i}");
                            assert_eq!(e, sa_for(g, i), "gen {g}: SA {i}");
                            entries += 1;
                        }
                        let routes = v.routes();
                        assert_eq!(routes.len(), route_count(g), "gen {g}: route count");
                        for (i, e) in routes.iter().enumerate() {
                            assert_eq!(e, route_for(g, i), "gen {g}: route {i}");
                        }
                        let ls = v.listeners();
                        assert_eq!(ls.len(), listener_count(g), "gen {g}: listener count");
                        for (i, e) in ls.iter().enumerate() {
                            assert_eq!(e, listener_for(g, i), "gen {g}: listener {i}");
                        }
                    }
                    r.report_seen(w, g).unwrap();
                    if g == GENERATIONS {
                        r.detach_worker(w).unwrap();
                        return (distinct, entries);
                    }
                    thread::yield_now();
                }
            })
        })
        .collect();
    for g in 1..=GENERATIONS {
        assert_eq!(writer.publish(|t| fill(t, g)).unwrap(), g);
    }
    for h in handles {
        let (distinct, entries) = h.join().expect("reader thread panicked");
        // Each reader must have followed the writer, not just seen the end.
        assert!(distinct > 100, "reader saw only {distinct} generations");
        assert!(entries > 0);
    }
}

/// A valid region, then `edit` applied to its file.
fn region_with(tag: &str, edit: impl FnOnce(&mut fs::File, u64)) -> TempRegion {
    let region = TempRegion::new(tag);
    let writer = ShmWriter::create(region.path(), CAPS).unwrap();
    drop(writer);
    let mut f = OpenOptions::new().write(true).open(region.path()).unwrap();
    let len = f.metadata().unwrap().len();
    edit(&mut f, len);
    region
}

#[test]
fn bad_magic_is_refused() {
    let region = region_with("magic", |f, _| {
        f.write_all(&0xdead_beef_u64.to_le_bytes()).unwrap();
    });
    let e = ShmReader::open(region.path(), 1).unwrap_err();
    assert!(
        matches!(e, ShmError::BadMagic { expected: MAGIC, found: 0xdead_beef, ref path } if path == region.path()),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains(&region.path().display().to_string()), "{msg}");
    assert!(
        msg.contains("bad magic") && msg.contains("0x00000000deadbeef"),
        "{msg}"
    );
}

#[test]
fn bad_version_is_refused() {
    let region = region_with("version", |f, _| {
        f.seek(SeekFrom::Start(8)).unwrap();
        f.write_all(&99u32.to_le_bytes()).unwrap();
    });
    let e = ShmReader::open(region.path(), 1).unwrap_err();
    assert!(
        matches!(
            e,
            ShmError::BadVersion {
                expected: VERSION,
                found: 99,
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains(&region.path().display().to_string()), "{msg}");
    assert!(
        msg.contains("version 99") && msg.contains(&format!("expected {VERSION}")),
        "{msg}"
    );
}

#[test]
fn short_file_is_refused() {
    let region = TempRegion::new("short");
    fs::write(region.path(), [0u8; 10]).unwrap();
    let e = ShmReader::open(region.path(), 1).unwrap_err();
    assert!(
        matches!(
            e,
            ShmError::ShortFile {
                expected: 64,
                found: 10,
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains(&region.path().display().to_string()), "{msg}");
    assert!(
        msg.contains("10 bytes") && msg.contains("64-byte header"),
        "{msg}"
    );
}

#[test]
fn truncated_or_extended_file_is_refused() {
    let mut total = 0;
    let region = region_with("trunc", |f, len| {
        total = len;
        f.set_len(len - 64).unwrap();
    });
    let e = ShmReader::open(region.path(), 1).unwrap_err();
    assert!(
        matches!(e, ShmError::SizeMismatch { expected, found, .. } if expected == total && found == total - 64),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains(&format!("{total}-byte region")), "{msg}");
    assert!(
        msg.contains(&format!("file is {} bytes", total - 64)),
        "{msg}"
    );

    let region = region_with("long", |f, len| f.set_len(len + 4096).unwrap());
    let e = ShmReader::open(region.path(), 1).unwrap_err();
    assert!(
        matches!(e, ShmError::SizeMismatch { expected, found, .. } if found == expected + 4096),
        "{e:?}"
    );
}

#[test]
fn too_many_workers_are_refused() {
    let region = TempRegion::new("workers");
    let _w = ShmWriter::create(region.path(), CAPS).unwrap();
    let e = ShmReader::open(region.path(), 5).unwrap_err();
    assert!(
        matches!(
            e,
            ShmError::NoSuchWorker {
                worker: 4,
                slots: 4,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn region_file_is_0600_even_with_a_permissive_umask() {
    let region = TempRegion::new("mode");
    // A stale world-readable file at the path is replaced.
    fs::write(region.path(), b"stale").unwrap();
    fs::set_permissions(region.path(), fs::Permissions::from_mode(0o666)).unwrap();
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0) };
    let created = ShmWriter::create(region.path(), CAPS);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let _w = created.unwrap();
    let meta = fs::metadata(region.path()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert!(ShmReader::open(region.path(), 1).is_ok());
}

#[test]
fn writer_waits_for_live_workers_only() {
    let region = TempRegion::new("wait");
    let mut writer = ShmWriter::create(region.path(), CAPS).unwrap();
    let reader = Arc::new(ShmReader::open(region.path(), 2).unwrap());
    assert_eq!(reader.attach_worker(0).unwrap(), 0);
    assert_eq!(reader.attach_worker(1).unwrap(), 0);

    // Generation 1 only needs generation 0 seen: no wait.
    assert_eq!(writer.publish(|t| fill(t, 1)).unwrap(), 1);
    assert_eq!(reader.current().generation(), 1);

    // Worker 0 reports generation 1, worker 1 is stuck at 0.
    reader.report_seen(0, 1).unwrap();
    writer.set_grace(Duration::from_millis(200));
    let t0 = Instant::now();
    let e = writer.publish(|t| fill(t, 2)).unwrap_err();
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert!(
        matches!(
            e,
            ShmError::WorkerStuck {
                worker: 1,
                seen: 0,
                wanted: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("worker 1 is stuck at generation 0"),
        "{e}"
    );
    // Nothing was published and the active copy is intact.
    assert_eq!(writer.generation(), 1);
    let v = reader.current();
    assert_eq!(v.generation(), 1);
    assert_eq!(v.sas().get(0), Some(sa_for(1, 0)));

    // The writer waits while worker 1 catches up 150 ms later.
    writer.set_grace(Duration::from_secs(10));
    let r = Arc::clone(&reader);
    let late = thread::spawn(move || {
        thread::sleep(Duration::from_millis(150));
        r.report_seen(1, 1).unwrap();
    });
    let t0 = Instant::now();
    assert_eq!(writer.publish(|t| fill(t, 2)).unwrap(), 2);
    assert!(
        t0.elapsed() >= Duration::from_millis(140),
        "{:?}",
        t0.elapsed()
    );
    late.join().unwrap();

    // A worker that is not live is not waited for.
    reader.report_seen(0, 2).unwrap();
    reader.detach_worker(1).unwrap();
    writer.set_grace(Duration::from_millis(100));
    assert_eq!(writer.publish(|t| fill(t, 3)).unwrap(), 3);
    assert_eq!(writer.worker_state(1).unwrap(), (1, false));
    // But a live one that lags still is.
    assert!(matches!(
        writer.publish(|t| fill(t, 4)),
        Err(ShmError::WorkerStuck {
            worker: 0,
            seen: 2,
            wanted: 3,
            ..
        })
    ));
}

#[test]
fn incarnation_and_dataplane_info_cross_the_region() {
    let region = TempRegion::new("inc");
    let mut writer = ShmWriter::create(region.path(), CAPS).unwrap();
    assert_eq!(writer.take_incarnation_change(), None);
    let reader = ShmReader::open(region.path(), 2).unwrap();
    assert_eq!(reader.bump_incarnation(), 1);
    assert_eq!(writer.incarnation(), 1);
    assert_eq!(writer.take_incarnation_change(), Some(1));
    assert_eq!(writer.take_incarnation_change(), None);
    assert_eq!(reader.bump_incarnation(), 2);
    assert_eq!(writer.take_incarnation_change(), Some(2));

    // A crashed data plane left worker 0 live and stuck: the next one
    // clears every slot on start, and publishing no longer waits.
    reader.attach_worker(0).unwrap();
    writer.publish(|_| {}).unwrap();
    writer.set_grace(Duration::from_millis(50));
    assert!(matches!(
        writer.publish(|_| {}),
        Err(ShmError::WorkerStuck { worker: 0, .. })
    ));
    let next = ShmReader::open(region.path(), 1).unwrap();
    next.detach_all();
    assert_eq!(writer.worker_state(0).unwrap(), (0, false));
    assert_eq!(writer.publish(|_| {}).unwrap(), 2);

    // The data plane announces its stats segment; the control process
    // reads it once the new incarnation is visible.
    let info =
        DataplaneInfo::with_stats_path(std::path::Path::new("/dev/shm/s2ds-gwa.stats")).unwrap();
    reader.set_dataplane_info(&info);
    assert_eq!(reader.bump_incarnation(), 3);
    assert_eq!(writer.take_incarnation_change(), Some(3));
    assert_eq!(
        writer.dataplane_info().stats_path().as_deref(),
        Some(std::path::Path::new("/dev/shm/s2ds-gwa.stats"))
    );
    let long = "/".repeat(scistream_region::MAX_STATS_PATH + 1);
    assert!(DataplaneInfo::with_stats_path(std::path::Path::new(&long)).is_none());
    assert_eq!(DataplaneInfo::default().stats_path(), None);
}
