//! The file's schema as serde sees it: every key, typed only as far as TOML
//! types go (addresses stay strings, integers are `i64`). Turning these into
//! the validated [`super::ControlConfig`] is [`super::validate`]'s job, so
//! that every rule is reported at its exact key and line.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub gateway: RawGateway,
    pub identity: RawIdentity,
    pub control: RawControl,
    pub shm: RawShm,
    pub registry: RawRegistry,
    #[serde(default)]
    pub keys: RawKeys,
    #[serde(default)]
    pub ports: RawPorts,
    #[serde(default)]
    pub peers: Vec<RawPeer>,
    #[serde(default)]
    pub logging: RawLogging,
    pub api: Option<RawApi>,
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub tunnels: Vec<RawTunnel>,
    pub metrics: Option<RawMetrics>,
}

/// `[metrics]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub listen: Option<String>,
}

/// `[gateway]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub name: String,
    pub lan_address: String,
    pub wan_address: String,
    pub udp_port: Option<i64>,
}

/// `[identity]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {
    pub cert: String,
    pub key: String,
}

/// `[control]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControl {
    pub peer_listen: String,
    pub admin_socket: String,
}

/// `[shm]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShm {
    pub path: String,
    pub sas: Option<i64>,
    pub routes: Option<i64>,
    pub listeners: Option<i64>,
    pub workers: Option<i64>,
}

/// `[registry]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegistry {
    pub path: String,
}

/// `[keys]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKeys {
    pub algorithm: Option<String>,
    pub rekey_seconds: Option<i64>,
    pub rekey_packets: Option<i64>,
    pub rekey_bytes: Option<i64>,
    pub grace_seconds: Option<i64>,
    pub lanes: Option<i64>,
}

/// `[ports]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPorts {
    pub listener_range: Option<Vec<i64>>,
}

/// One `[[peers]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeer {
    pub name: String,
    pub ca: Option<String>,
    pub pin_sha256: Option<String>,
    pub wan_address: String,
    pub esp_address: Option<String>,
    pub udp_port: Option<i64>,
    pub control_address: String,
}

/// `[logging]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogging {
    pub level: Option<String>,
    pub audit_file: Option<String>,
}

/// `[api]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApi {
    pub listen: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub insecure: Option<bool>,
    pub req_timeout_seconds: Option<i64>,
    pub max_num_conn: Option<i64>,
    pub client_rate: Option<String>,
    pub max_rate_kbytes: Option<i64>,
    pub max_connections: Option<i64>,
    pub max_connections_per_source: Option<i64>,
    pub handshake_timeout_seconds: Option<i64>,
}

/// `[auth]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub mode: String,
    pub token_file: Option<String>,
    pub jwt: Option<RawJwt>,
    #[serde(default)]
    pub allow: Vec<RawAllow>,
}

/// `[auth.jwt]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwt {
    pub jwks: String,
    pub issuer: String,
    pub audience: String,
    pub required_scope: String,
    pub leeway_seconds: Option<i64>,
}

/// One `[[auth.allow]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAllow {
    pub identity: Option<String>,
    pub scope: Option<String>,
    pub targets: Vec<String>,
    pub ports: Option<Vec<Vec<i64>>>,
}

/// One `[[tunnels]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTunnel {
    pub name: String,
    pub peer: String,
    pub local: Vec<String>,
    pub remote: Vec<String>,
}
