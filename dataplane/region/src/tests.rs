//! Unit tests of the writer's table editing and the entry helpers.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

use super::layout::{ALG_AES256_GCM, DIR_OUT, ROLE_INBOUND};
use super::*;
use crate::testing::TempRegion;

const CAPS: Capacities = Capacities {
    sas: 2,
    routes: 3,
    listeners: 1,
    workers: 1,
};

fn sa(spi: u32) -> SaEntry {
    SaEntry {
        spi,
        ..SaEntry::default()
    }
}

#[test]
fn full_table_and_bad_index_are_errors() {
    let r = TempRegion::new("unit");
    let mut w = ShmWriter::create(r.path(), CAPS).unwrap();
    let mut outcome = Vec::new();
    w.publish(|t| {
        let mut sas = t.sas();
        outcome.push(sas.push(sa(256)).map_err(|e| e.to_string()));
        outcome.push(sas.push(sa(257)).map_err(|e| e.to_string()));
        outcome.push(sas.push(sa(258)).map_err(|e| e.to_string()));
        outcome.push(sas.set(5, sa(1)).map(|_| 0).map_err(|e| e.to_string()));
    })
    .unwrap();
    assert_eq!(outcome[0], Ok(0));
    assert_eq!(outcome[1], Ok(1));
    assert_eq!(
        outcome[2],
        Err("shared memory: SA table is full (2 entries)".into())
    );
    assert_eq!(
        outcome[3],
        Err("shared memory: SA index 5 out of range (2 entries in use)".into())
    );
    let rd = ShmReader::open(r.path(), 1).unwrap();
    let v = rd.current();
    assert_eq!(v.generation(), 1);
    assert_eq!(
        v.sas().iter().map(|e| e.spi).collect::<Vec<_>>(),
        [256, 257]
    );
    assert_eq!(v.sas().get(2), None);
}

#[test]
fn publish_starts_from_the_current_tables() {
    let r = TempRegion::new("unit");
    let mut w = ShmWriter::create(r.path(), CAPS).unwrap();
    let rd = ShmReader::open(r.path(), 1).unwrap();
    rd.attach_worker(0).unwrap();
    w.publish(|t| {
        t.sas().push(sa(256)).unwrap();
        t.routes()
            .push(RouteEntry {
                prefix: crate::encode_ip(Ipv4Addr::new(10, 0, 0, 0).into()),
                len: 8,
                ..RouteEntry::default()
            })
            .unwrap();
    })
    .unwrap();
    let g1 = rd.current();
    assert_eq!(g1.copy_index(), 1);
    rd.report_seen(0, g1.generation()).unwrap();
    // Generation 2 edits only the SA table; the route carries over.
    w.publish(|t| {
        let mut sas = t.sas();
        assert_eq!(sas.get(0), Some(sa(256)));
        sas.set(0, sa(300)).unwrap();
        sas.push(sa(301)).unwrap();
    })
    .unwrap();
    let g2 = rd.current();
    assert_eq!((g2.generation(), g2.copy_index()), (2, 0));
    assert_eq!(
        g2.sas().iter().map(|e| e.spi).collect::<Vec<_>>(),
        [300, 301]
    );
    assert_eq!(g2.routes().len(), 1);
    assert_eq!(g2.routes().get(0).unwrap().len, 8);
    rd.report_seen(0, 2).unwrap();
    // Generation 3 truncates and clears.
    w.publish(|t| {
        t.sas().truncate(1);
        t.routes().clear();
    })
    .unwrap();
    let g3 = rd.current();
    assert_eq!(g3.sas().len(), 1);
    assert!(g3.routes().is_empty());
    // The old generation-2 view still reads its own copy (untouched).
    assert_eq!(g2.sas().len(), 2);
}

#[test]
fn entry_helpers_decode_codes() {
    let mut e = SaEntry {
        direction: DIR_OUT,
        algorithm: ALG_AES256_GCM,
        key_len: 32,
        peer_addr: crate::encode_ip(Ipv4Addr::new(192, 0, 2, 7).into()),
        peer_port: 4500,
        ..SaEntry::default()
    };
    assert_eq!(e.direction(), Some(Direction::Out));
    assert_eq!(e.algorithm(), Some(Algorithm::Aes256Gcm));
    assert_eq!(SaEntry::direction_code(Direction::In), 0);
    assert_eq!(SaEntry::algorithm_code(Algorithm::Aes128Gcm), 1);
    assert_eq!(e.key().map(<[u8]>::len), Some(32));
    assert_eq!(
        e.peer(),
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 4500))
    );
    e.direction = 9;
    e.algorithm = 0;
    e.key_len = 33;
    assert_eq!((e.direction(), e.algorithm(), e.key()), (None, None, None));
    let l = ListenerEntry {
        role: ROLE_INBOUND,
        target_addr: crate::encode_ip(Ipv4Addr::new(10, 1, 2, 3).into()),
        target_port: 9000,
        ..ListenerEntry::default()
    };
    assert_eq!(l.role(), Some(ListenerRole::Inbound));
    assert_eq!(
        l.target(),
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 9000))
    );
    let v6: SocketAddr = "[2001:db8::5]:7000".parse().unwrap();
    let l = ListenerEntry::inbound(5100, v6, 2);
    assert_eq!((l.target(), l.port, l.sa_slot), (v6, 5100, 2));
    let o = ListenerEntry::outbound(5200, "[fd00::1]:5100".parse().unwrap(), 0);
    assert_eq!(o.remote().ip(), Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
}

#[test]
fn create_in_a_missing_directory_names_the_path() {
    let e = ShmWriter::create("/dev/shm/no-such-dir-scistream/region", CAPS).unwrap_err();
    assert!(matches!(e, ShmError::Io { op: "create", .. }), "{e:?}");
    assert!(
        e.to_string().contains("/dev/shm/no-such-dir-scistream/"),
        "{e}"
    );
}

#[test]
fn missing_region_names_the_path() {
    let e = ShmReader::open("/dev/shm/scistream-no-such-region", 1).unwrap_err();
    assert!(matches!(e, ShmError::Io { op: "open", .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("shared memory /dev/shm/scistream-no-such-region: open failed"),
        "{e}"
    );
}

#[test]
fn removed_entries_leave_no_key_behind() {
    let r = TempRegion::new("unit");
    let mut w = ShmWriter::create(r.path(), CAPS).unwrap();
    let keyed = |spi, b| SaEntry {
        spi,
        key: [b; 32],
        key_len: 16,
        ..SaEntry::default()
    };
    w.publish(|t| {
        t.sas().push(keyed(256, 0xaa)).unwrap();
        t.sas().push(keyed(257, 0xbb)).unwrap();
    })
    .unwrap();
    // Both copies end up with one SA: the other copy had none, this one
    // had two and the second is wiped.
    w.publish(|t| t.sas().truncate(1)).unwrap();
    w.publish(|t| t.sas().truncate(1)).unwrap();
    w.publish(|t| t.sas().truncate(1)).unwrap();
    let bytes = std::fs::read(r.path()).unwrap();
    assert!(
        bytes.windows(16).any(|win| win == [0xaa; 16]),
        "the SA in use is there"
    );
    assert!(
        !bytes.windows(16).any(|win| win == [0xbb; 16]),
        "the removed key is gone"
    );
}

#[test]
fn the_rate_and_lane_fields_of_a_version_6_sa_entry() {
    use std::io::{Seek, SeekFrom, Write};
    let r = TempRegion::new("unit");
    let mut w = ShmWriter::create(r.path(), CAPS).unwrap();
    let rate: u64 = 0x0102_0304_0506_0708;
    w.publish(|t| {
        t.sas()
            .push(SaEntry {
                rate_bps: rate,
                hard_packets: 77,
                ..sa(256).with_lane_of(0x1234_5678)
            })
            .unwrap();
    })
    .unwrap();
    let rd = ShmReader::open(r.path(), 1).unwrap();
    let e = rd.current().sas().get(0).unwrap();
    assert_eq!(
        (e.spi, e.hard_packets, e.rate_bps, e.lane_of),
        (256, 77, rate, 0x1234_5678)
    );
    drop(rd);
    // In the file: bytes 80..88 of the entry, after the hard packet lifetime.
    let layout = layout::Layout::new(CAPS).unwrap();
    let (sa_off, _) = layout.table(1, layout::Table::Sa);
    let bytes = std::fs::read(r.path()).unwrap();
    assert_eq!(bytes[sa_off + 72..sa_off + 80], 77u64.to_ne_bytes());
    assert_eq!(bytes[sa_off + 80..sa_off + 88], rate.to_ne_bytes());
    assert_eq!(
        bytes[sa_off + 88..sa_off + 92],
        0x1234_5678u32.to_ne_bytes()
    );
    // A region of the previous layout (version 5, no lanes) is refused.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(r.path())
        .unwrap();
    f.seek(SeekFrom::Start(8)).unwrap();
    f.write_all(&5u32.to_ne_bytes()).unwrap();
    drop(f);
    let e = ShmReader::open(r.path(), 1).unwrap_err();
    assert!(
        matches!(
            e,
            ShmError::BadVersion {
                expected: 6,
                found: 5,
                ..
            }
        ),
        "{e:?}"
    );
}
