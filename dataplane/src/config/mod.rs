//! The gateway's TOML configuration: typed, validated settings for the rest
//! of `s2ds`.
//!
//! [`Config::load`] reads a file, [`Config::from_toml`] parses text,
//! through the same [`scistream_tomldoc::Document`] as `s2cs`'s
//! configuration, in three steps, each reporting errors as a
//! [`ConfigError`] that names the file, line, column and dotted key
//! (`routes[1].via`):
//!
//! 1. TOML parsing ([`Document::parse`]);
//! 2. serde deserialization into the raw schema (`raw`), which rejects
//!    unknown keys, missing keys and wrong types;
//! 3. validation (`validate`), which turns raw values into the types here
//!    and checks every rule that relates keys to each other.
//!
//! The operator documentation of every key is `docs/configuration.md`.

pub mod dpdk_device;
mod raw;
pub mod tunnel;
mod validate;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Deserialize;

pub use scistream_tomldoc::{ConfigError, Document, ErrorKind, Location};

/// Default `[dpdk] mempool_size`: mbufs per port (2^13 - 1, the optimum for DPDK's ring-based pools).
pub const DEFAULT_MEMPOOL_SIZE: u32 = 8191;
/// Default `[dpdk] mempool_cache`: per-lcore mbuf cache.
pub const DEFAULT_MEMPOOL_CACHE: u32 = 256;
/// Largest `[dpdk] mempool_cache` (DPDK's `RTE_MEMPOOL_CACHE_MAX_SIZE`).
pub const MAX_MEMPOOL_CACHE: u32 = 512;
/// Default `[dpdk] rx_desc` and `tx_desc`.
pub const DEFAULT_RING_DESC: u16 = 1024;
/// Largest `rx_desc` / `tx_desc` accepted.
pub const MAX_RING_DESC: u16 = 32768;
/// Default port MTU.
pub const DEFAULT_MTU: u16 = 1500;
/// Smallest port MTU (the IPv4 minimum reassembly size).
pub const MIN_MTU: u16 = 576;
/// Largest port MTU (jumbo frames).
pub const MAX_MTU: u16 = 9000;
/// Largest MTU of an af_xdp port: a 4096-byte UMEM frame minus XDP headroom
/// (256), `skb_shared_info` (320), Ethernet header (14) and two VLAN tags (8).
pub const MAX_AF_XDP_MTU: u16 = 3498;
/// Default af_xdp `frame_count`.
pub const DEFAULT_FRAME_COUNT: u32 = 4096;
/// Smallest af_xdp `frame_count`.
pub const MIN_FRAME_COUNT: u32 = 64;
/// Largest af_xdp `frame_count` (1 GiB of 4 KiB frames).
pub const MAX_FRAME_COUNT: u32 = 262_144;
/// Cores are numbered below this (glibc's `CPU_SETSIZE`).
pub const MAX_CORES: usize = 1024;
/// Largest `idle_sleep_us` (one second).
pub const MAX_IDLE_SLEEP_US: u32 = 1_000_000;

/// A validated gateway configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[gateway]`.
    pub gateway: GatewaySection,
    /// `[workers]`.
    pub workers: WorkersSection,
    /// `[dpdk]`: `Some` exactly when the ports use backend "dpdk" (a `[dpdk]`
    /// table in a gateway with native ports is checked, then ignored).
    pub dpdk: Option<DpdkSection>,
    /// `[ports.lan]` and `[ports.wan]`.
    pub ports: Ports,
    /// `[[routes]]` with IPv4 prefixes, in file order.
    pub routes: Vec<Route>,
    /// `[[routes]]` with IPv6 prefixes, in file order.
    pub routes6: Vec<Route6>,
    /// `[[neighbors]]`, in file order.
    pub neighbors: Vec<Neighbor>,
    /// The encrypted tunnel (`[tunnel]`, `[[peers]]`, `[[sas]]`,
    /// `[[tunnel_routes]]`); None for a plain router.
    pub tunnel: Option<tunnel::TunnelSection>,
    /// `[logging]`.
    pub logging: LoggingSection,
}

/// `[gateway]`: identity of this gateway instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySection {
    /// Name used in logs, pool names and the default stats path; `[A-Za-z0-9_-]{1,32}`.
    pub name: String,
    /// Where the stats JSON is written, if not the default (see [`Config::stats_path`]).
    pub stats_path: Option<PathBuf>,
}

/// `[workers]`: the forwarding threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkersSection {
    /// One worker per entry, pinned to that core; worker *i* owns queue *i* on
    /// both ports. Non-empty, no duplicates.
    pub cores: Vec<usize>,
    /// Core for the slow-path thread (ARP, stats), not one of `cores`.
    pub slowpath_core: Option<usize>,
    /// 0: pure busy polling. Otherwise a worker sleeps this many microseconds
    /// after 64 consecutive empty polls (`poll_mode = "busy"` only).
    pub idle_sleep_us: u32,
    /// Busy polling, or sleeping in the kernel while the queues are idle.
    pub poll_mode: PollMode,
    /// Count frames and clock cycles per stage of the poll loop
    /// ([`crate::stage_clock`]); off by default.
    pub stage_cycles: bool,
}

/// How a worker waits when its queues are idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PollMode {
    /// Poll without pause (lowest latency; the core is always at 100 %),
    /// or with `idle_sleep_us` sleeps after 64 empty polls.
    #[default]
    Busy,
    /// After 64 empty polls, sleep in the kernel until a queue has traffic:
    /// `poll()` on the AF_XDP socket or TAP descriptor (need_wakeup), a
    /// backoff of 10 µs doubling to 1 ms where the backend has no
    /// descriptor (DPDK).
    Adaptive,
}

/// `[dpdk]`: EAL and ethdev settings, used when the ports use backend "dpdk".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkSection {
    /// Extra EAL arguments, passed after the program name.
    pub eal_args: Vec<String>,
    /// mbufs in each port's pool.
    pub mempool_size: u32,
    /// Per-lcore cache of each pool (<= 512 and <= mempool_size / 1.5).
    pub mempool_cache: u32,
    /// RX descriptors per queue.
    pub rx_desc: u16,
    /// TX descriptors per queue.
    pub tx_desc: u16,
}

impl Default for DpdkSection {
    fn default() -> Self {
        DpdkSection {
            eal_args: Vec::new(),
            mempool_size: DEFAULT_MEMPOOL_SIZE,
            mempool_cache: DEFAULT_MEMPOOL_CACHE,
            rx_desc: DEFAULT_RING_DESC,
            tx_desc: DEFAULT_RING_DESC,
        }
    }
}

pub use crate::port::PortId;

/// `[ports]`: both ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    /// The instrument-side port.
    pub lan: PortConfig,
    /// The wide-area port.
    pub wan: PortConfig,
}

impl Ports {
    /// The port `id`.
    pub fn get(&self, id: PortId) -> &PortConfig {
        match id {
            PortId::Lan => &self.lan,
            PortId::Wan => &self.wan,
        }
    }

    /// The port whose connected prefix holds `ip`, if any (the prefixes do not overlap).
    pub fn connected_to(&self, ip: Ipv4Addr) -> Option<PortId> {
        PortId::ALL.into_iter().find(|&p| {
            self.get(p)
                .connected_prefix()
                .is_some_and(|n| n.contains(&ip))
        })
    }

    /// The port whose connected IPv6 prefix holds `ip`, if any.
    pub fn connected_to6(&self, ip: Ipv6Addr) -> Option<PortId> {
        PortId::ALL.into_iter().find(|&p| {
            self.get(p)
                .connected_prefix6()
                .is_some_and(|n| n.contains(&ip))
        })
    }

    /// True if both ports use backend "dpdk" (validation guarantees both or neither).
    pub fn use_dpdk(&self) -> bool {
        self.lan.backend.is_dpdk()
    }
}

/// One port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// The packet I/O backend and its settings.
    pub backend: Backend,
    /// The gateway's IPv4 address on this port and the length of the
    /// connected prefix, if it has one. A port has at least one of
    /// `address` and `address6`.
    pub address: Option<Ipv4Net>,
    /// Its IPv6 address and connected prefix, if it has one (the port's
    /// link-local address comes from its MAC).
    pub address6: Option<Ipv6Net>,
    /// IP MTU (largest IP packet), 576..=9000 (af_xdp: ..=3498).
    pub mtu: u16,
}

impl PortConfig {
    /// The gateway's own IPv4 address on this port, if it has one.
    pub fn ip(&self) -> Option<Ipv4Addr> {
        self.address.map(|a| a.addr())
    }

    /// The connected IPv4 prefix (`address` with host bits cleared), if
    /// the port has an IPv4 address.
    pub fn connected_prefix(&self) -> Option<Ipv4Net> {
        self.address.map(|a| a.trunc())
    }

    /// The port's addresses as written in the configuration, for messages
    /// and the log: "10.10.1.1/24", "fd00:10:1::1/64" or both, comma-separated.
    pub fn addresses(&self) -> String {
        let v4 = self.address.map(|a| a.to_string());
        let v6 = self.address6.map(|a| a.to_string());
        v4.into_iter().chain(v6).collect::<Vec<_>>().join(", ")
    }

    /// The connected IPv6 prefix, if the port has an IPv6 address.
    pub fn connected_prefix6(&self) -> Option<Ipv6Net> {
        self.address6.map(|a| a.trunc())
    }
}

/// A DPDK device: what EAL is told to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpdkDevice {
    /// A PCI address in long form ("0000:03:00.0", lower case); pass to EAL with `-a`.
    Pci(String),
    /// A virtual device string ("net_af_packet0,iface=lan0"); pass to EAL with `--vdev`.
    Vdev(String),
}

impl DpdkDevice {
    /// The device string as EAL takes it.
    pub fn as_str(&self) -> &str {
        match self {
            DpdkDevice::Pci(s) | DpdkDevice::Vdev(s) => s,
        }
    }

    /// For a virtual device, the instance name before the first comma
    /// ("net_af_packet0"), which is also its ethdev name.
    pub fn vdev_name(&self) -> Option<&str> {
        match self {
            DpdkDevice::Pci(_) => None,
            DpdkDevice::Vdev(s) => s.split(',').next(),
        }
    }
}

/// How an af_xdp socket attaches its XDP program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpMode {
    /// Native (driver) mode if the driver supports it, else generic.
    #[default]
    Auto,
    /// Driver mode only (fails on drivers without XDP support).
    Native,
    /// Generic (SKB) mode: works everywhere, copies.
    Skb,
}

/// A port's packet I/O backend with its backend-specific settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// DPDK ethdev.
    Dpdk {
        /// The device EAL probes.
        device: DpdkDevice,
    },
    /// Native AF_XDP sockets on a kernel interface.
    AfXdp {
        /// The kernel interface.
        interface: String,
        /// How the XDP program is attached.
        xdp_mode: XdpMode,
        /// Request zero-copy mode.
        zero_copy: bool,
        /// 4096-byte UMEM frames per socket (a power of two).
        frame_count: u32,
    },
    /// A TAP device the gateway creates.
    Tap {
        /// Name of the TAP device.
        interface: String,
        /// MAC the gateway uses on the port; if absent the TAP backend chooses one.
        mac: Option<[u8; 6]>,
        /// Bridge to enslave the TAP to.
        bridge: Option<String>,
    },
}

impl Backend {
    /// "dpdk", "af_xdp" or "tap", as in the file.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Dpdk { .. } => "dpdk",
            Backend::AfXdp { .. } => "af_xdp",
            Backend::Tap { .. } => "tap",
        }
    }

    /// True for [`Backend::Dpdk`].
    pub fn is_dpdk(&self) -> bool {
        matches!(self, Backend::Dpdk { .. })
    }

    /// The kernel interface of an af_xdp or tap port.
    pub fn interface(&self) -> Option<&str> {
        match self {
            Backend::Dpdk { .. } => None,
            Backend::AfXdp { interface, .. } | Backend::Tap { interface, .. } => Some(interface),
        }
    }
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix (host bits zero).
    pub prefix: Ipv4Net,
    /// Next hop, on the connected prefix of `port`.
    pub via: Ipv4Addr,
    /// The port the next hop is on.
    pub port: PortId,
}

/// A static IPv6 route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route6 {
    /// Destination prefix (host bits zero).
    pub prefix: Ipv6Net,
    /// Next hop: on the connected IPv6 prefix of `port`, or link-local on it.
    pub via: Ipv6Addr,
    /// The port the next hop is on.
    pub port: PortId,
}

/// A static neighbour (ARP or Neighbor Discovery entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    /// The neighbour's address, on the connected prefix of `port` (IPv6:
    /// or link-local on it).
    pub ip: IpAddr,
    /// Its unicast MAC.
    pub mac: [u8; 6],
    /// The port it is on.
    pub port: PortId,
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Normal operation messages.
    #[default]
    Info,
    /// Debugging detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The word used in the file and in `RUST_LOG`-style filters.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// The matching `tracing` level.
    pub fn to_tracing(self) -> tracing::Level {
        match self {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        }
    }
}

/// `[logging]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoggingSection {
    /// Verbosity (default info).
    pub level: LogLevel,
}

impl Config {
    /// Reads and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Parses and validates configuration `text`; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let doc = Document::parse(text, origin)?;
        let raw: raw::RawConfig = doc.deserialize()?;
        validate::validate(raw, &doc)
    }

    /// Where the stats segment goes: next to the stats JSON, with the
    /// extension `seg` (`/dev/shm/s2ds-<name>.stats.seg` by default).
    pub fn stats_segment_path(&self) -> PathBuf {
        self.stats_path().with_extension("seg")
    }

    /// Where the stats JSON goes: `gateway.stats_path`, or
    /// `/dev/shm/s2ds-<name>.stats.json`.
    pub fn stats_path(&self) -> PathBuf {
        self.gateway.stats_path.clone().unwrap_or_else(|| {
            PathBuf::from(format!("/dev/shm/s2ds-{}.stats.json", self.gateway.name))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAP: &str = r#"[gateway]
name = "t"

[workers]
cores = [1]

[ports.lan]
backend = "tap"
interface = "tl"
address = "10.10.1.1/24"

[ports.wan]
backend = "tap"
interface = "tw"
address = "10.10.100.1/24"
"#;

    fn ok(text: &str) -> Config {
        Config::from_toml(text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// (line, key, kind) of the error for `text`.
    fn err(text: &str) -> (usize, String, ErrorKind) {
        let e = Config::from_toml(text, Path::new("t.toml")).expect_err("must be rejected");
        (
            e.line().expect("line"),
            e.key().expect("key").to_owned(),
            e.kind().expect("kind"),
        )
    }

    #[test]
    fn defaults_and_stats_path() {
        let c = ok(TAP);
        assert_eq!(c.stats_path(), PathBuf::from("/dev/shm/s2ds-t.stats.json"));
        assert_eq!(
            c.stats_segment_path(),
            PathBuf::from("/dev/shm/s2ds-t.stats.seg")
        );
        assert_eq!(
            c.workers,
            WorkersSection {
                cores: vec![1],
                slowpath_core: None,
                idle_sleep_us: 0,
                poll_mode: PollMode::Busy,
                stage_cycles: false,
            }
        );
        assert_eq!(
            c.ports.lan.backend,
            Backend::Tap {
                interface: "tl".into(),
                mac: None,
                bridge: None
            }
        );
        assert_eq!(c.ports.lan.ip(), Some(Ipv4Addr::new(10, 10, 1, 1)));
        assert_eq!(
            c.ports.lan.connected_prefix().unwrap().to_string(),
            "10.10.1.0/24"
        );
        assert_eq!(
            c.ports.connected_to(Ipv4Addr::new(10, 10, 100, 7)),
            Some(PortId::Wan)
        );
        assert_eq!(c.ports.connected_to(Ipv4Addr::new(10, 10, 2, 7)), None);
        let c = ok(&TAP.replace("name = \"t\"", "name = \"t\"\nstats_path = \"/tmp/x.json\""));
        assert_eq!(c.stats_path(), PathBuf::from("/tmp/x.json"));
    }

    #[test]
    fn af_xdp_defaults() {
        let c = ok(&TAP.replace("\"tap\"", "\"af_xdp\""));
        assert_eq!(
            c.ports.wan.backend,
            Backend::AfXdp {
                interface: "tw".into(),
                xdp_mode: XdpMode::Auto,
                zero_copy: false,
                frame_count: 4096
            }
        );
        let bad = TAP.replace("\"tap\"", "\"af_xdp\"").replace(
            "interface = \"tw\"",
            "interface = \"tw\"\nframe_count = 3000",
        );
        assert_eq!(
            err(&bad),
            (15, "ports.wan.frame_count".into(), ErrorKind::BadValue)
        );
    }

    #[test]
    fn inline_and_dotted_tables_are_located_too() {
        let text = "[gateway]\nname = \"t\"\n[workers]\ncores = [1]\n[ports]\nlan = { backend = \"tap\", interface = \"tl\", address = \"10.10.1.1/24\", mtu = 100 }\nwan.backend = \"tap\"\nwan.interface = \"tw\"\nwan.address = \"10.10.100.1/24\"\n";
        assert_eq!(err(text), (6, "ports.lan.mtu".into(), ErrorKind::BadValue));
        let text = text
            .replace("mtu = 100", "mtu = 1400")
            .replace("wan.interface = \"tw\"", "wan.interface = \"tl\"");
        assert_eq!(
            err(&text),
            (8, "ports.wan.interface".into(), ErrorKind::Conflict)
        );
    }

    #[test]
    fn worker_rules() {
        assert_eq!(
            err(&TAP.replace("cores = [1]", "cores = []")),
            (5, "workers.cores".into(), ErrorKind::BadValue)
        );
        assert_eq!(
            err(&TAP.replace("cores = [1]", "cores = [1, 2, 1]")),
            (5, "workers.cores[2]".into(), ErrorKind::Conflict)
        );
        assert_eq!(
            err(&TAP.replace("cores = [1]", "cores = [1]\nslowpath_core = 1")),
            (6, "workers.slowpath_core".into(), ErrorKind::Conflict)
        );
        assert_eq!(
            err(&TAP.replace("cores = [1]", "cores = [1]\nidle_sleep_us = -5")),
            (6, "workers.idle_sleep_us".into(), ErrorKind::BadValue)
        );
        assert_eq!(
            err(&TAP.replace(
                "cores = [1]",
                "cores = [1]\npoll_mode = \"adaptive\"\nidle_sleep_us = 50"
            )),
            (7, "workers.idle_sleep_us".into(), ErrorKind::Conflict)
        );
        assert_eq!(
            err(&TAP.replace("cores = [1]", "cores = [1]\npoll_mode = \"lazy\"")).1,
            "workers.poll_mode".to_string()
        );
        assert!(!ok(TAP).workers.stage_cycles, "off by default");
        assert!(
            ok(&TAP.replace("cores = [1]", "cores = [1]\nstage_cycles = true"))
                .workers
                .stage_cycles
        );
        assert_eq!(
            err(&TAP.replace("cores = [1]", "cores = [1]\nstage_cycles = 1")).1,
            "workers.stage_cycles".to_string()
        );
    }

    #[test]
    fn tap_rules() {
        let c = ok(&TAP.replace(
            "interface = \"tl\"",
            "interface = \"tl\"\nmac = \"02:AB:cd:00:00:01\"\nbridge = \"brlan\"",
        ));
        assert_eq!(
            c.ports.lan.backend,
            Backend::Tap {
                interface: "tl".into(),
                mac: Some([2, 0xab, 0xcd, 0, 0, 1]),
                bridge: Some("brlan".into())
            }
        );
        let both = TAP
            .replace("interface = \"tl\"", "interface = \"tl\"\nbridge = \"br0\"")
            .replace("interface = \"tw\"", "interface = \"tw\"\nbridge = \"br0\"");
        assert_eq!(
            err(&both),
            (16, "ports.wan.bridge".into(), ErrorKind::Conflict)
        );
        let long = TAP.replace("\"tl\"", "\"a-very-long-name0\"");
        assert_eq!(
            err(&long),
            (9, "ports.lan.interface".into(), ErrorKind::BadValue)
        );
    }

    #[test]
    fn neighbours_resolve_their_port() {
        let c = ok(&format!(
            "{TAP}[[neighbors]]\nip = \"10.10.100.254\"\nmac = \"02:00:00:00:01:FE\"\n"
        ));
        assert_eq!(
            c.neighbors,
            [Neighbor {
                ip: Ipv4Addr::new(10, 10, 100, 254).into(),
                mac: [2, 0, 0, 0, 1, 0xfe],
                port: PortId::Wan
            }]
        );
        let own = format!("{TAP}[[neighbors]]\nip = \"10.10.1.1\"\nmac = \"02:00:00:00:01:FE\"\n");
        assert_eq!(
            err(&own),
            (17, "neighbors[0].ip".into(), ErrorKind::Conflict)
        );
        let off = format!("{TAP}[[neighbors]]\nip = \"10.10.2.1\"\nmac = \"02:00:00:00:01:FE\"\n");
        assert_eq!(
            err(&off),
            (17, "neighbors[0].ip".into(), ErrorKind::Conflict)
        );
    }

    #[test]
    fn routes_resolve_their_port() {
        let c = ok(&format!(
            "{TAP}[[routes]]\nprefix = \"0.0.0.0/0\"\nvia = \"10.10.1.254\"\nport = \"lan\"\n"
        ));
        assert_eq!(
            c.routes,
            [Route {
                prefix: "0.0.0.0/0".parse().expect("net"),
                via: Ipv4Addr::new(10, 10, 1, 254),
                port: PortId::Lan
            }]
        );
        let connected =
            format!("{TAP}[[routes]]\nprefix = \"10.10.1.0/24\"\nvia = \"10.10.1.254\"\n");
        assert_eq!(
            err(&connected),
            (17, "routes[0].prefix".into(), ErrorKind::Conflict)
        );
        let no_len = format!("{TAP}[[routes]]\nprefix = \"10.20.0.0\"\nvia = \"10.10.1.254\"\n");
        assert_eq!(
            err(&no_len),
            (17, "routes[0].prefix".into(), ErrorKind::BadValue)
        );
    }

    #[test]
    fn dpdk_devices_must_differ() {
        let text = TAP
            .replacen(
                "backend = \"tap\"\ninterface = \"tl\"",
                "backend = \"dpdk\"\ndevice = \"03:00.0\"",
                1,
            )
            .replacen(
                "backend = \"tap\"\ninterface = \"tw\"",
                "backend = \"dpdk\"\ndevice = \"0000:03:00.0\"",
                1,
            );
        assert_eq!(
            err(&format!("{text}[dpdk]\n")),
            (14, "ports.wan.device".into(), ErrorKind::Conflict)
        );
        let e = Config::from_toml(&format!("{text}[dpdk]\n"), Path::new("t.toml"))
            .expect_err("rejected");
        assert!(
            e.to_string().contains("same DPDK device `0000:03:00.0`"),
            "{e}"
        );
    }

    #[test]
    fn columns_point_at_the_value() {
        let e = Config::from_toml(
            &TAP.replace("10.10.1.1/24", "10.10.1.1/99"),
            Path::new("t.toml"),
        )
        .expect_err("rejected");
        assert_eq!((e.line(), e.column()), (Some(10), Some(11)));
        assert_eq!(
            e.to_string(),
            "t.toml:10:11: key `ports.lan.address`: invalid prefix length in `10.10.1.1/99`; expected 0 to 32"
        );
    }

    #[test]
    fn log_levels() {
        let c = ok(&format!("{TAP}[logging]\nlevel = \"trace\"\n"));
        assert_eq!(c.logging.level, LogLevel::Trace);
        assert_eq!(c.logging.level.to_tracing(), tracing::Level::TRACE);
        assert_eq!(
            err(&format!("{TAP}[logging]\nlevel = \"loud\"\n")),
            (17, "logging.level".into(), ErrorKind::BadValue)
        );
    }
}
