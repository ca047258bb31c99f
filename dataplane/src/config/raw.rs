//! The file's schema as serde sees it: every key, typed only as far as TOML
//! types go (strings stay strings, integers are `i64`). Turning these into the
//! validated [`super::Config`] is [`super::validate`]'s job, so that every
//! semantic error can be reported with the exact key and line.

use serde::Deserialize;

use super::{LogLevel, PollMode, PortId, XdpMode};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub gateway: RawGateway,
    pub workers: RawWorkers,
    pub dpdk: Option<RawDpdk>,
    pub ports: RawPorts,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub neighbors: Vec<RawNeighbor>,
    #[serde(default)]
    pub logging: RawLogging,
    pub tunnel: Option<RawTunnel>,
    #[serde(default)]
    pub peers: Vec<RawPeer>,
    #[serde(default)]
    pub sas: Vec<RawSa>,
    #[serde(default)]
    pub tunnel_routes: Vec<RawTunnelRoute>,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
}

/// `[[listeners]] role` as written.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawListenerRole {
    Outbound,
    Inbound,
}

impl From<RawListenerRole> for super::tunnel::ListenerRole {
    fn from(r: RawListenerRole) -> Self {
        match r {
            RawListenerRole::Outbound => Self::Outbound,
            RawListenerRole::Inbound => Self::Inbound,
        }
    }
}

/// `[[sas]] direction` as written.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawDirection {
    In,
    Out,
}

impl From<RawDirection> for super::tunnel::Direction {
    fn from(d: RawDirection) -> Self {
        match d {
            RawDirection::In => Self::In,
            RawDirection::Out => Self::Out,
        }
    }
}

/// One `[[listeners]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub role: RawListenerRole,
    pub port: i64,
    pub remote: Option<String>,
    pub target: Option<String>,
    pub sa: i64,
}

/// `[tunnel]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTunnel {
    pub engine: Option<String>,
    pub udp_port: Option<i64>,
    pub nat_port_base: Option<i64>,
    pub nat_slots: Option<i64>,
    pub keying: Option<String>,
    pub shm_path: Option<String>,
    pub tcp_mss_clamp: Option<bool>,
    pub tcp_mss: Option<i64>,
}

/// One `[[peers]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeer {
    pub name: String,
    pub address: String,
    pub udp_port: Option<i64>,
}

/// One `[[sas]]` entry. Not Debug: it holds key material.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSa {
    pub spi: i64,
    pub direction: RawDirection,
    pub peer: String,
    pub algorithm: String,
    pub key: Option<String>,
    pub key_file: Option<String>,
    pub salt: String,
    pub esn: Option<bool>,
    pub lane_of: Option<i64>,
    pub anti_replay: Option<bool>,
}

impl std::fmt::Debug for RawSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSa")
            .field("spi", &self.spi)
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}

/// One `[[tunnel_routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTunnelRoute {
    pub prefix: String,
    pub sa: i64,
}

/// `[gateway]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub name: String,
    pub stats_path: Option<String>,
}

/// `[workers]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkers {
    pub cores: Vec<i64>,
    pub slowpath_core: Option<i64>,
    pub idle_sleep_us: Option<i64>,
    pub poll_mode: Option<PollMode>,
    pub stage_cycles: Option<bool>,
}

/// `[dpdk]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDpdk {
    #[serde(default)]
    pub eal_args: Vec<String>,
    pub mempool_size: Option<i64>,
    pub mempool_cache: Option<i64>,
    pub rx_desc: Option<i64>,
    pub tx_desc: Option<i64>,
}

/// `[ports]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPorts {
    pub lan: RawPort,
    pub wan: RawPort,
}

/// The `backend` word of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawBackend {
    Dpdk,
    AfXdp,
    Tap,
}

/// `[ports.lan]` / `[ports.wan]`: the union of all backends' keys; which
/// ones are allowed depends on `backend` and is checked by validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPort {
    pub backend: RawBackend,
    pub device: Option<String>,
    pub interface: Option<String>,
    pub address: RawAddresses,
    pub mtu: Option<i64>,
    pub mac: Option<String>,
    pub bridge: Option<String>,
    pub xdp_mode: Option<XdpMode>,
    pub zero_copy: Option<bool>,
    pub frame_count: Option<i64>,
}

/// `address` of a port: one prefix, or a list (one IPv4, at most one IPv6).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawAddresses {
    One(String),
    Many(Vec<String>),
}

impl RawAddresses {
    /// The addresses as written.
    pub fn as_slice(&self) -> &[String] {
        match self {
            RawAddresses::One(s) => std::slice::from_ref(s),
            RawAddresses::Many(v) => v,
        }
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub prefix: String,
    pub via: String,
    pub port: Option<PortId>,
}

/// One `[[neighbors]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNeighbor {
    pub ip: String,
    pub mac: String,
    pub port: Option<PortId>,
}

/// `[logging]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogging {
    #[serde(default)]
    pub level: LogLevel,
}
