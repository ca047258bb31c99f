//! Dialling s2cs: `HOST:PORT`, TLS (rustls with the ring provider, TLS 1.2
//! and 1.3, ALPN `h2`) against a trusted PEM certificate, or plaintext.

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use super::error::ClientError;

/// The address of an s2cs, `HOST:PORT` (`[v6]:PORT` for IPv6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// Host name or IP address, without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl ServerAddr {
    /// The host as an IP address, if it is one.
    pub fn host_ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// `host:port`, bracketing an IPv6 host.
    pub fn authority(&self) -> String {
        match self.host_ip() {
            Some(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

impl FromStr for ServerAddr {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<ServerAddr, ClientError> {
        let bad = |reason| ClientError::BadAddress {
            addr: s.to_string(),
            reason,
        };
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| bad("expected HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| bad("the port is not a number 1-65535"))?;
        if port == 0 {
            return Err(bad("the port is not a number 1-65535"));
        }
        let host = match host.strip_prefix('[') {
            Some(inner) => {
                let v6 = inner
                    .strip_suffix(']')
                    .ok_or_else(|| bad("unbalanced '[' around the IPv6 address"))?;
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(bad("not an IPv6 address inside [ ]"));
                }
                v6
            }
            None if host.contains(':') => return Err(bad("write an IPv6 host as [ADDR]:PORT")),
            None => host,
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        Ok(ServerAddr {
            host: host.to_string(),
            port,
        })
    }
}

/// How the connection is protected.
#[derive(Debug, Clone)]
pub enum Security {
    /// TLS, trusting the certificates in `server_cert` (a CA, or the
    /// server's own self-signed certificate), and verifying the server's
    /// certificate for `server_name` (default: the host of the address, a
    /// DNS name or an IP address).
    Tls {
        /// PEM file with one or more trusted certificates.
        server_cert: PathBuf,
        /// The DNS name (or IP address) to verify the certificate for.
        server_name: Option<String>,
    },
    /// Plaintext HTTP/2; tokens travel in clear.
    Insecure,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The s2cs address.
    pub server: ServerAddr,
    /// TLS or plaintext.
    pub security: Security,
    /// Time allowed to set up the connection: TCP connect and, with TLS,
    /// the handshake.
    pub connect_timeout: Duration,
}

/// Opens an HTTP/2 channel to s2cs now (so that a wrong address or a
/// certificate mismatch is reported here, as [`ClientError::Connect`]).
pub async fn connect(opts: &ConnectOptions) -> Result<Channel, ClientError> {
    let authority = opts.server.authority();
    let connect_err = |source| ClientError::Connect {
        addr: authority.clone(),
        source,
    };
    match &opts.security {
        Security::Insecure => {
            let endpoint = endpoint(&format!("http://{authority}"), opts)?;
            endpoint.connect().await.map_err(connect_err)
        }
        Security::Tls {
            server_cert,
            server_name,
        } => {
            let name = verify_name(&opts.server, server_name.as_deref())?;
            let config = client_config(server_cert)?;
            let dialer = TlsDialer {
                host: opts.server.host.clone(),
                port: opts.server.port,
                name,
                tls: TlsConnector::from(Arc::new(config)),
            };
            // The dialer does TLS itself: tonic must see a plain "http" URI,
            // or (with its own TLS compiled in for the server) it refuses
            // an "https" endpoint that has no tonic TLS config.
            let endpoint = endpoint(&format!("http://{authority}"), opts)?;
            endpoint
                .connect_with_connector(dialer)
                .await
                .map_err(connect_err)
        }
    }
}

/// The tonic endpoint for `uri`, with the connect timeout.
fn endpoint(uri: &str, opts: &ConnectOptions) -> Result<Endpoint, ClientError> {
    let endpoint = Endpoint::from_shared(uri.to_string()).map_err(|_| ClientError::BadAddress {
        addr: opts.server.authority(),
        reason: "not usable in a URI",
    })?;
    Ok(endpoint
        .connect_timeout(opts.connect_timeout)
        .tcp_nodelay(true))
}

/// The name the server certificate must be valid for: `--server-name` if
/// given, else the host of the address: a DNS name (checked against the
/// certificate's DNS names) or an IP address (checked against its IP
/// address names), as any TLS client does.
pub fn verify_name(
    server: &ServerAddr,
    explicit: Option<&str>,
) -> Result<ServerName<'static>, ClientError> {
    match explicit {
        Some(name) => {
            ServerName::try_from(name.to_string()).map_err(|_| ClientError::BadServerName {
                name: name.to_string(),
            })
        }
        None => match server.host_ip() {
            Some(ip) => Ok(ServerName::IpAddress(ip.into())),
            None => {
                ServerName::try_from(server.host.clone()).map_err(|_| ClientError::BadAddress {
                    addr: server.authority(),
                    reason: "the host is not a valid DNS name",
                })
            }
        },
    }
}

/// A rustls client configuration (ring provider, TLS 1.2 and 1.3, ALPN
/// `h2`) trusting the certificates in the PEM file `server_cert`.
pub fn client_config(server_cert: &Path) -> Result<ClientConfig, ClientError> {
    let bad = |reason: String| ClientError::BadServerCert {
        path: server_cert.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(server_cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE block in the file".to_string()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| bad(format!("not usable as a trust anchor: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The connector tonic calls for each (re)connection: TCP to the s2cs
/// address, then the TLS handshake for the verified name. The URI tonic
/// passes is ignored; it carries the same address.
#[derive(Clone)]
struct TlsDialer {
    host: String,
    port: u16,
    name: ServerName<'static>,
    tls: TlsConnector,
}

impl tower_service::Service<Uri> for TlsDialer {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let tcp = TcpStream::connect((this.host.as_str(), this.port))
                .await
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("TCP connect to {}:{}: {e}", this.host, this.port),
                    )
                })?;
            tcp.set_nodelay(true)?;
            let name = this.name.clone();
            let shown = name.to_str().into_owned();
            let tls = this.tls.connect(name, tcp).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("TLS handshake (server name {shown}): {e}"),
                )
            })?;
            Ok(TokioIo::new(tls))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_forms() {
        let a: ServerAddr = "localhost:5000".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("localhost", 5000));
        let a: ServerAddr = "10.0.0.1:5000".parse().unwrap();
        assert_eq!(a.host_ip(), Some("10.0.0.1".parse().unwrap()));
        let a: ServerAddr = "[fd00::1]:5000".parse().unwrap();
        assert_eq!(a.host, "fd00::1");
        assert_eq!(a.authority(), "[fd00::1]:5000");
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "localhost",
            "localhost:",
            "localhost:0",
            "localhost:70000",
            ":5000",
            "fd00::1:5000",
            "[fd00::1:5000",
            "[nothex]:5000",
        ] {
            assert!(
                matches!(
                    bad.parse::<ServerAddr>(),
                    Err(ClientError::BadAddress { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn server_name_rules() {
        let by_name: ServerAddr = "gwa.example.org:5000".parse().unwrap();
        let by_ip: ServerAddr = "192.0.2.7:5000".parse().unwrap();
        assert_eq!(
            verify_name(&by_name, None).unwrap().to_str(),
            "gwa.example.org"
        );
        // An IP host is verified against the certificate's IP addresses.
        assert!(matches!(
            verify_name(&by_ip, None),
            Ok(ServerName::IpAddress(ip)) if std::net::IpAddr::from(ip) == by_ip.host_ip().unwrap()
        ));
        let by_v6: ServerAddr = "[fd00::7]:5000".parse().unwrap();
        assert!(matches!(
            verify_name(&by_v6, None),
            Ok(ServerName::IpAddress(_))
        ));
        assert_eq!(
            verify_name(&by_ip, Some("gwa.example.org"))
                .unwrap()
                .to_str(),
            "gwa.example.org"
        );
        assert!(matches!(
            verify_name(&by_ip, Some("192.0.2.7")),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            verify_name(&by_ip, Some("bad name!")),
            Err(ClientError::BadServerName { .. })
        ));
    }

    #[test]
    fn certificate_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        for path in [empty, dir.path().join("missing.pem")] {
            let err = client_config(&path).unwrap_err();
            assert!(matches!(err, ClientError::BadServerCert { .. }), "{err}");
            assert!(err.to_string().contains(&path.display().to_string()));
        }
    }
}
