//! The control process's TOML configuration: typed, validated settings for
//! `s2cs`.
//!
//! [`ControlConfig::load`] reads a file, [`ControlConfig::from_toml`] parses
//! text. Errors are [`ConfigError`]s that name the file, line, column and
//! dotted key (`peers[1].ca`), produced by the same machinery as the data
//! plane's configuration
//! ([`scistream_tomldoc::Document`]):
//!
//! 1. TOML parsing;
//! 2. serde deserialization into the raw schema ([`raw`]), which rejects
//!    unknown keys, missing keys and wrong types;
//! 3. validation ([`validate`]), which turns raw values into the types here,
//!    resolves relative paths against the file's directory and checks every
//!    rule, including that the certificate and key files exist and parse.
//!
//! The operator documentation of every key is `docs/control-configuration.md`.

mod files;
mod raw;
mod validate;

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use scistream_region::Algorithm;
use scistream_region::Capacities;
use scistream_tomldoc::Document;

pub use scistream_tomldoc::{ConfigError, ErrorKind, Location};

/// Default `gateway.udp_port` and `peers[].udp_port` (RFC 3948 ESP-in-UDP).
pub const DEFAULT_UDP_PORT: u16 = 4500;
/// Default `shm.sas`.
pub const DEFAULT_SHM_SAS: u32 = 1024;
/// Default `shm.routes`.
pub const DEFAULT_SHM_ROUTES: u32 = 256;
/// Default `shm.listeners`.
pub const DEFAULT_SHM_LISTENERS: u32 = 1024;
/// Default `shm.workers`.
pub const DEFAULT_SHM_WORKERS: u32 = 16;
/// Largest `shm.sas`, `shm.routes` and `shm.listeners`.
pub const MAX_SHM_TABLE: u32 = 65_536;
/// Largest `shm.workers`.
pub const MAX_SHM_WORKERS: u32 = 256;
/// Default `keys.rekey_seconds` (one hour).
pub const DEFAULT_REKEY_SECONDS: u32 = 3600;
/// Largest `keys.rekey_seconds` (one day).
pub const MAX_REKEY_SECONDS: u32 = 86_400;
/// Default `keys.rekey_packets` (2^31).
pub const DEFAULT_REKEY_PACKETS: u64 = 1 << 31;
/// Smallest `keys.rekey_packets`.
pub const MIN_REKEY_PACKETS: u64 = 1000;
/// Largest `keys.rekey_packets` and `keys.rekey_bytes` (2^40): 2^40 bytes
/// are 2^36 AES blocks, the AES-GCM usage limit per key.
pub const MAX_REKEY_VOLUME: u64 = 1 << 40;
/// Default `keys.rekey_bytes` (2^38, 256 GiB).
pub const DEFAULT_REKEY_BYTES: u64 = 1 << 38;
/// Smallest `keys.rekey_bytes` (1 MiB).
pub const MIN_REKEY_BYTES: u64 = 1 << 20;
/// Default `keys.grace_seconds`.
pub const DEFAULT_GRACE_SECONDS: u32 = 10;
/// Largest `keys.grace_seconds`.
pub const MAX_GRACE_SECONDS: u32 = 600;
/// Default `ports.listener_range`.
pub const DEFAULT_LISTENER_RANGE: RangeInclusive<u16> = 5100..=5199;
/// Lowest port `ports.listener_range` may include (no privileged ports).
pub const MIN_LISTENER_PORT: u16 = 1024;
/// Default `logging.level`.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Default `api.req_timeout_seconds`.
pub const DEFAULT_REQ_TIMEOUT_SECONDS: u32 = 180;
/// Largest `api.req_timeout_seconds` (one hour).
pub const MAX_REQ_TIMEOUT_SECONDS: u32 = 3600;
/// Default `api.max_num_conn`.
pub const DEFAULT_MAX_NUM_CONN: u32 = 64;
/// Largest `api.max_num_conn`.
pub const MAX_MAX_NUM_CONN: u32 = 1024;
/// Largest `api.max_rate_kbytes` (the API's `rate` is a 32-bit integer).
pub const MAX_MAX_RATE_KBYTES: u64 = i32::MAX as u64;
/// Default `auth.jwt.leeway_seconds`.
pub const DEFAULT_JWT_LEEWAY_SECONDS: u32 = 30;
/// Largest `auth.jwt.leeway_seconds` (five minutes).
pub const MAX_JWT_LEEWAY_SECONDS: u32 = 300;
/// Longest Unix socket path (`sun_path` is 108 bytes including the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// A validated `s2cs` configuration. Every path in it is absolute or
/// resolved against the configuration file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// `[gateway]`: this gateway's name and addresses.
    pub gateway: GatewaySection,
    /// `[identity]`: this gateway's TLS certificate and key.
    pub identity: IdentitySection,
    /// `[control]`: where `s2cs` listens.
    pub control: ControlSection,
    /// `[shm]`: the region shared with the data plane.
    pub shm: ShmSection,
    /// `[registry]`: the persistent session registry.
    pub registry: RegistrySection,
    /// `[keys]`: SA algorithm and rekey policy.
    pub keys: KeysSection,
    /// `[ports]`: ports handed out to listeners.
    pub ports: PortsSection,
    /// `[[peers]]`, in file order (names and WAN addresses are unique).
    pub peers: Vec<PeerConfig>,
    /// `[logging]`.
    pub logging: LoggingSection,
    /// `[api]`: the northbound gRPC API, if configured. When present,
    /// [`ControlConfig::auth`] is present too.
    pub api: Option<ApiSection>,
    /// `[auth]`: how API callers are authenticated and what they may use;
    /// present exactly when [`ControlConfig::api`] is.
    pub auth: Option<AuthSection>,
    /// `[[tunnels]]`, in file order: routed-mode (site-to-site) tunnels
    /// (names unique, peers configured, remote prefixes disjoint).
    pub tunnels: Vec<TunnelConfig>,
    /// `[metrics]`: the Prometheus endpoint (off unless `listen` is set).
    pub metrics: MetricsSection,
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSection {
    /// Where `GET /metrics` is served (OpenMetrics text, data plane and
    /// control metrics), IPv4 or IPv6; `None`: no endpoint.
    pub listen: Option<SocketAddr>,
}

/// `[gateway]`: identity and addresses of this gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySection {
    /// Name used in logs and by peers; `[A-Za-z0-9_-]{1,32}`.
    pub name: String,
    /// Instrument-side address: where local applications reach our
    /// listeners. IPv4 or IPv6: the family of the listeners' addresses.
    pub lan_address: IpAddr,
    /// WAN address: the outer source of our ESP packets and the IP of
    /// inbound listeners. IPv4 or IPv6.
    pub wan_address: IpAddr,
    /// Our ESP-in-UDP port (default [`DEFAULT_UDP_PORT`]).
    pub udp_port: u16,
}

/// `[identity]`: the certificate and key this gateway presents to peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySection {
    /// PEM file with our certificate chain, leaf first (checked to hold at
    /// least one certificate).
    pub cert: PathBuf,
    /// PEM file with our private key (PKCS#8, SEC1 or PKCS#1); checked to
    /// be readable by its owner only.
    pub key: PathBuf,
}

/// `[control]`: the sockets `s2cs` listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSection {
    /// Address of the mutual-TLS peer channel (port non-zero), IPv4 or IPv6.
    pub peer_listen: SocketAddr,
    /// Path of the local admin Unix socket (created mode 0600).
    pub admin_socket: PathBuf,
}

/// `[shm]`: the shared-memory region `s2cs` writes and `s2ds` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmSection {
    /// Absolute path of the region file (normally under `/dev/shm`).
    pub path: PathBuf,
    /// SA table capacity, 1..=[`MAX_SHM_TABLE`].
    pub sas: u32,
    /// Route table capacity, 1..=[`MAX_SHM_TABLE`].
    pub routes: u32,
    /// Listener table capacity, 1..=[`MAX_SHM_TABLE`].
    pub listeners: u32,
    /// Worker slots, 1..=[`MAX_SHM_WORKERS`] (at least the data plane's worker count).
    pub workers: u32,
}

impl ShmSection {
    /// The capacities to create the region with.
    pub fn capacities(&self) -> Capacities {
        Capacities {
            sas: self.sas,
            routes: self.routes,
            listeners: self.listeners,
            workers: self.workers,
        }
    }
}

/// `[registry]`: where sessions persist across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySection {
    /// The SQLite database file (created if absent).
    pub path: PathBuf,
}

/// `[keys]`: the algorithm of negotiated SAs and when they are replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysSection {
    /// AEAD of every SA (default AES-128-GCM).
    pub algorithm: Algorithm,
    /// Rekey after this many seconds, 1..=[`MAX_REKEY_SECONDS`].
    pub rekey_seconds: u32,
    /// Rekey after this many packets on an SA,
    /// [`MIN_REKEY_PACKETS`]..=[`MAX_REKEY_VOLUME`].
    pub rekey_packets: u64,
    /// Rekey after this many bytes on an SA,
    /// [`MIN_REKEY_BYTES`]..=[`MAX_REKEY_VOLUME`].
    pub rekey_bytes: u64,
    /// How long an old inbound SA stays installed after a switch,
    /// 1..=[`MAX_GRACE_SECONDS`] and less than `rekey_seconds`.
    pub grace_seconds: u32,
    /// SAs per direction this gateway can use per session (1..=16, default
    /// 1): set it to the data plane's worker count. A session uses the
    /// smaller of the two gateways' values (1 with a peer that does not
    /// know lanes); lanes 1.. spread it over the workers at both ends.
    pub lanes: u32,
}

impl KeysSection {
    /// `rekey_seconds` as a duration.
    pub fn rekey_interval(&self) -> Duration {
        Duration::from_secs(self.rekey_seconds.into())
    }

    /// `grace_seconds` as a duration.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_seconds.into())
    }
}

impl Default for KeysSection {
    fn default() -> Self {
        KeysSection {
            algorithm: Algorithm::Aes128Gcm,
            rekey_seconds: DEFAULT_REKEY_SECONDS,
            rekey_packets: DEFAULT_REKEY_PACKETS,
            rekey_bytes: DEFAULT_REKEY_BYTES,
            grace_seconds: DEFAULT_GRACE_SECONDS,
            lanes: 1,
        }
    }
}

/// `[ports]`: ports `s2cs` may assign to listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortsSection {
    /// Listener ports (inclusive), all >= [`MIN_LISTENER_PORT`]; excludes
    /// our ESP-in-UDP port and the peer-channel port.
    pub listener_range: RangeInclusive<u16>,
}

impl Default for PortsSection {
    fn default() -> Self {
        PortsSection {
            listener_range: DEFAULT_LISTENER_RANGE,
        }
    }
}

/// How a peer's TLS certificate is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerTrust {
    /// Chain to a CA in this PEM file; the peer certificate's SAN must hold
    /// the peer's name as a DNS name.
    Ca(PathBuf),
    /// The SHA-256 of the peer certificate's SubjectPublicKeyInfo (DER).
    Pin([u8; 32]),
}

/// One `[[peers]]` entry: a gateway we negotiate keys with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's name (its gateway name; with CA trust, a DNS name in its
    /// certificate's SAN). Unique, and not our own name.
    pub name: String,
    /// How its certificate is checked.
    pub trust: PeerTrust,
    /// Its WAN address: outer destination of ESP packets to it and the IP
    /// of its inbound listeners, IPv4 or IPv6. Unique among peers, not our own.
    pub wan_address: IpAddr,
    /// Where its ESP-in-UDP packets come from and ours go, when that is
    /// not `wan_address`: an address of the other family, for sessions
    /// whose listeners (and so the packets inside the tunnel) are of one
    /// family while the WAN between the gateways is of the other (IPv4
    /// facilities over an IPv6 WAN). `None`: `wan_address`.
    pub esp_address: Option<IpAddr>,
    /// Its ESP-in-UDP port (default [`DEFAULT_UDP_PORT`]).
    pub udp_port: u16,
    /// Its peer-channel address (its `control.peer_listen`), IPv4 or IPv6.
    pub control_address: SocketAddr,
}

impl PeerConfig {
    /// The outer address of the tunnel to this peer: `esp_address`, else
    /// `wan_address`.
    pub fn outer_address(&self) -> IpAddr {
        self.esp_address.unwrap_or(self.wan_address)
    }
}

/// One `[[tunnels]]` entry: a routed-mode (site-to-site) tunnel to a peer
/// gateway. Inner destinations in `remote` are sealed with the tunnel's
/// outbound SA; its keys are negotiated and rekeyed by the two control
/// processes exactly as a session's are (see [`crate::tunnel`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    /// The tunnel's name, `[A-Za-z0-9_-]{1,32}`, unique; the peer's entry
    /// for the same tunnel carries the same name (the session uid on the
    /// peer channel is `tunnel:<name>`).
    pub name: String,
    /// The `[[peers]]` name of the gateway at the other end.
    pub peer: String,
    /// IPv4 and IPv6 prefixes behind this gateway (the peer's `remote`);
    /// non-empty, pairwise disjoint.
    pub local: Vec<IpNet>,
    /// IPv4 and IPv6 prefixes behind the peer: one route entry each, toward the
    /// tunnel's outbound SA. Non-empty, disjoint from each other, from
    /// `local`, from every other tunnel's prefixes, and from our own
    /// addresses.
    pub remote: Vec<IpNet>,
}

/// `[logging]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingSection {
    /// A `tracing` env-filter directive ("info", "s2cs=debug,warn", ...),
    /// checked to parse; `RUST_LOG` overrides it at run time.
    pub level: String,
    /// The audit log's file (JSON lines, mode 0600); audit records also
    /// go to stderr.
    pub audit_file: Option<PathBuf>,
}

impl Default for LoggingSection {
    fn default() -> Self {
        LoggingSection {
            level: DEFAULT_LOG_LEVEL.to_owned(),
            audit_file: None,
        }
    }
}

/// `[api]`: the northbound gRPC API (`scistream.Control`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSection {
    /// Where the gRPC server listens, IPv4 or IPv6; `None`: no server is started.
    pub listen: Option<SocketAddr>,
    /// PEM file with the server certificate chain (default `[identity]
    /// cert`); checked to hold at least one certificate.
    pub cert: PathBuf,
    /// PEM file with the server's private key (default `[identity] key`);
    /// checked to be readable by its owner only.
    pub key: PathBuf,
    /// Serve plaintext gRPC instead of TLS (and allow `auth.mode = "none"`).
    /// The service logs a warning at start when this is set.
    pub insecure: bool,
    /// How long `req` waits for the matching `hello`,
    /// 1..=[`MAX_REQ_TIMEOUT_SECONDS`] seconds.
    pub req_timeout: Duration,
    /// Largest `num_conn` a request may ask for, 1..=[`MAX_MAX_NUM_CONN`].
    pub max_num_conn: u32,
    /// What a request's `rate` becomes (`api.client_rate`,
    /// `api.max_rate_kbytes`).
    pub rate: RatePolicy,
    /// Connection bounds (`api.max_connections`,
    /// `api.max_connections_per_source`, `api.handshake_timeout_seconds`).
    pub limits: crate::service::guard::Limits,
}

/// `api.client_rate`: what `s2cs` does with the `rate` a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientRate {
    /// Police the session at the client's rate (SciStream's meaning:
    /// kilobytes per second, 0 = unlimited). The default.
    #[default]
    Enforce,
    /// Disregard the client's rate; only the gateway's ceiling applies.
    Ignore,
}

/// How a session's rate is chosen: the client's `rate` field (kB/s, 1 kB =
/// 1000 bytes, as SciStream documents it), under `client`, capped at
/// `max_kbytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RatePolicy {
    /// Enforce or ignore the client's rate.
    pub client: ClientRate,
    /// The most any one session may have, kB/s; 0 = no ceiling. A session
    /// that asks for unlimited (0), or whose rate is ignored, gets the
    /// ceiling.
    pub max_kbytes: u64,
}

impl RatePolicy {
    /// The policer rate, in bits per second (0 = unlimited), of a session
    /// whose client asked for `requested_kbytes` kB/s (0 = unlimited).
    pub fn session_bps(&self, requested_kbytes: u32) -> u64 {
        let asked = match self.client {
            ClientRate::Enforce => u64::from(requested_kbytes),
            ClientRate::Ignore => 0,
        };
        let kbytes = match (asked, self.max_kbytes) {
            (0, ceiling) => ceiling,
            (asked, 0) => asked,
            (asked, ceiling) => asked.min(ceiling),
        };
        kbytes * 8_000
    }
}

/// `[auth]`: authentication of API callers and the allow-list of what
/// each may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSection {
    /// How bearer tokens are checked.
    pub mode: AuthMode,
    /// `[[auth.allow]]` rules, in file order; at least one unless `mode` is
    /// [`AuthMode::None`] (where they are ignored: everything is allowed).
    pub allow: Vec<AllowRule>,
}

/// `auth.mode`: how bearer tokens are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// No authentication: every caller is anonymous and allowed everything.
    /// Only accepted together with `api.insecure = true`.
    None,
    /// Tokens are checked against salted PBKDF2 hashes in this TOML file
    /// (checked to exist and to be readable by its owner only).
    TokenFile(PathBuf),
    /// Tokens are JWTs signed by a key of a JWKS file.
    Jwt(JwtConfig),
}

/// `[auth.jwt]`: JWT/OIDC access-token verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// The JWKS file (RFC 7517) holding the issuer's public keys (checked
    /// to exist).
    pub jwks: PathBuf,
    /// The required `iss` claim.
    pub issuer: String,
    /// The audience the `aud` claim must contain.
    pub audience: String,
    /// The scope the `scope` (space-separated) or `scp` claim must
    /// contain; Globus-style scope URLs are fine. Non-empty, no whitespace.
    pub required_scope: String,
    /// Clock skew tolerated on `exp` and `nbf`,
    /// 0..=[`MAX_JWT_LEEWAY_SECONDS`] seconds.
    pub leeway: Duration,
}

/// Whom an `[[auth.allow]]` rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowSubject {
    /// Callers whose authenticated identity (token-file `identity`, JWT
    /// `sub`) is exactly this.
    Identity(String),
    /// Callers whose token carries exactly this scope.
    Scope(String),
}

/// One `[[auth.allow]]` rule: which endpoints a set of callers may point
/// the gateway at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    /// Whom the rule applies to.
    pub subject: AllowSubject,
    /// IPv4 and IPv6 prefixes (host bits zero) targets and remote
    /// listeners may lie in; non-empty.
    pub targets: Vec<IpNet>,
    /// Inclusive port ranges they may use; non-empty, each within 1..=65535
    /// (default one range, 1..=65535).
    pub ports: Vec<RangeInclusive<u16>>,
}

impl AllowRule {
    /// True if this rule lets its subject use `target`.
    pub fn permits(&self, target: SocketAddr) -> bool {
        self.targets.iter().any(|net| net.contains(&target.ip()))
            && self.ports.iter().any(|r| r.contains(&target.port()))
    }
}

impl ControlConfig {
    /// Reads and validates the configuration file at `path`. Relative paths
    /// inside it are resolved against the directory of `path`.
    pub fn load(path: &Path) -> Result<ControlConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ControlConfig::from_toml(&text, path)
    }

    /// Parses and validates configuration `text`. `origin` names it in
    /// errors, and relative paths are resolved against its directory.
    pub fn from_toml(text: &str, origin: &Path) -> Result<ControlConfig, ConfigError> {
        let doc = Document::parse(text, origin)?;
        let raw: raw::RawConfig = doc.deserialize()?;
        validate::validate(raw, &doc)
    }

    /// The peer named `name`.
    pub fn peer(&self, name: &str) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// The peer whose WAN address is `ip` (the IP of a remote listener).
    pub fn peer_by_wan_address(&self, ip: IpAddr) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| p.wan_address == ip)
    }

    /// The tunnel named `name`.
    pub fn tunnel(&self, name: &str) -> Option<&TunnelConfig> {
        self.tunnels.iter().find(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_rate_is_kilobytes_per_second_under_the_policy() {
        let enforce = RatePolicy::default();
        // SciStream's 20000 kB/s is 20 MB/s, 160 Mbit/s; its default 10000 is 80 Mbit/s.
        assert_eq!(enforce.session_bps(20_000), 160_000_000);
        assert_eq!(enforce.session_bps(2_500), 20_000_000);
        assert_eq!(enforce.session_bps(0), 0);
        let ignore = RatePolicy {
            client: ClientRate::Ignore,
            max_kbytes: 0,
        };
        assert_eq!(ignore.session_bps(2_500), 0);
        let capped = RatePolicy {
            client: ClientRate::Enforce,
            max_kbytes: 5_000,
        };
        assert_eq!(capped.session_bps(2_500), 20_000_000);
        assert_eq!(capped.session_bps(10_000), 40_000_000);
        assert_eq!(
            capped.session_bps(0),
            40_000_000,
            "unlimited gets the ceiling"
        );
        let ignored_capped = RatePolicy {
            client: ClientRate::Ignore,
            max_kbytes: 5_000,
        };
        assert_eq!(ignored_capped.session_bps(1), 40_000_000);
        // The largest rate the API can carry does not overflow.
        assert_eq!(
            enforce.session_bps(i32::MAX as u32),
            i32::MAX as u64 * 8_000
        );
    }
}
