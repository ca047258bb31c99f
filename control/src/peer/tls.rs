//! Mutual TLS 1.3 for the peer channel between two `s2cs` processes.
//!
//! Each gateway has an [`Identity`] (certificate chain and private key) and a
//! list of [`TrustedPeer`]s from its configuration. A peer is trusted either
//! through a CA ([`PeerTrust::Ca`]: the chain must verify against *that* CA and
//! the end-entity certificate must carry the peer's name as a DNS SAN) or through
//! a pinned key ([`PeerTrust::Pin`]: the SHA-256 of the end-entity
//! SubjectPublicKeyInfo must equal the pin; issuer and validity period are not
//! checked, the handshake signature still is).
//!
//! The server side ([`server_config`]) requires a client certificate and accepts
//! a client that matches *any* configured peer; after the handshake
//! [`identify`] tells which one. The client side ([`client_config`]) accepts
//! only the one peer it dialled. A refused certificate produces an error whose
//! text names the certificate and, per configured peer, why it did not match;
//! the server also logs it with `tracing::warn!`.
//!
//! Only TLS 1.3 is offered, session resumption is off (every connection
//! re-verifies the peer against the current trust list), and both sides use
//! the ALPN protocol [`PEER_ALPN`]. [`exporter`] derives the per-(uid, epoch)
//! value that binds the ESP keys to the authenticated channel (RFC 8446 §7.5).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, ConnectionCommon, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, SignatureScheme,
};
use zeroize::Zeroizing;

/// Label of the TLS exporter that binds ESP keys to the peer channel.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-scistream-esp-v1";

/// ALPN protocol identifier of the peer channel, offered by both sides.
pub const PEER_ALPN: &[u8] = b"scistream-peer/1";

/// Errors while loading identities and trust anchors, building TLS
/// configurations or exporting keying material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read PEM file {path}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM file that should hold certificates holds none.
    #[error("{path} holds no certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The private key cannot be used with the certificate (unsupported key
    /// type, or it does not belong to the end-entity certificate).
    #[error("private key is unusable for the certificate {cert}: {source}")]
    Key {
        /// Where the certificate came from (a path, or "DER input").
        cert: String,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// A certificate could not be parsed.
    #[error("malformed certificate: {0}")]
    BadCertificate(String),
    /// A CA certificate was rejected as a trust anchor.
    #[error("CA certificate in {path} is not a usable trust anchor: {source}")]
    BadCa {
        /// The CA file.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// A CA trust list is empty.
    #[error("trusted peer {peer:?} has an empty CA list")]
    EmptyCa {
        /// The peer's name.
        peer: String,
    },
    /// A pin is not 64 hexadecimal digits.
    #[error("SPKI pin {0:?} is not 64 hexadecimal digits (SHA-256)")]
    BadPin(String),
    /// A peer name is not usable as a TLS server name (a DNS name).
    #[error("peer name {0:?} is not a valid DNS name")]
    BadPeerName(String),
    /// The server configuration was asked for with no trusted peer.
    #[error("no trusted peer is configured")]
    NoPeers,
    /// The webpki verifier for a CA-trusted peer could not be built.
    #[error("cannot build the certificate verifier for peer {peer:?}: {source}")]
    Verifier {
        /// The peer's name.
        peer: String,
        /// rustls' reason.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration rejected: {0}")]
    Config(#[source] rustls::Error),
    /// The uid does not fit the exporter context's 16-bit length prefix.
    #[error("uid is {len} bytes long; the exporter context allows at most 65535")]
    UidTooLong {
        /// Length of the uid in bytes.
        len: usize,
    },
    /// The TLS exporter failed (for example, the handshake is not complete).
    #[error("TLS exporter failed: {0}")]
    Exporter(#[source] rustls::Error),
}

/// The crypto provider of the peer channel: `ring`.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The signature algorithms accepted in handshake signatures.
fn sig_algs() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// This gateway's certificate chain and private key.
#[derive(Clone)]
pub struct Identity {
    certified: Arc<CertifiedKey>,
    spki_sha256: [u8; 32],
}

impl Identity {
    /// Loads the certificate chain (end-entity first) from `cert_pem` and the
    /// private key (PKCS#8, PKCS#1 or SEC1) from `key_pem`, and checks that the
    /// key belongs to the end-entity certificate.
    pub fn load(cert_pem: &Path, key_pem: &Path) -> Result<Identity, TlsError> {
        let chain = CertificateDer::pem_file_iter(cert_pem)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|source| TlsError::Pem {
                path: cert_pem.to_path_buf(),
                source,
            })?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                path: cert_pem.to_path_buf(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(key_pem).map_err(|source| TlsError::Pem {
            path: key_pem.to_path_buf(),
            source,
        })?;
        Identity::build(chain, key, &cert_pem.display().to_string())
    }

    /// Builds an identity from DER: `chain` is end-entity first.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Identity, TlsError> {
        if chain.is_empty() {
            return Err(TlsError::BadCertificate(
                "empty certificate chain".to_string(),
            ));
        }
        Identity::build(chain, key, "DER input")
    }

    fn build(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        origin: &str,
    ) -> Result<Identity, TlsError> {
        let spki_sha256 = spki_sha256(&chain[0])?;
        let certified =
            CertifiedKey::from_der(chain, key, &provider()).map_err(|source| TlsError::Key {
                cert: origin.to_string(),
                source,
            })?;
        Ok(Identity {
            certified: Arc::new(certified),
            spki_sha256,
        })
    }

    /// SHA-256 of the end-entity certificate's SubjectPublicKeyInfo (what a
    /// peer pins with [`PeerTrust::Pin`]).
    pub fn spki_sha256(&self) -> [u8; 32] {
        self.spki_sha256
    }

    /// The certificate chain, end-entity first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.certified.cert
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("certificate", &describe(&self.certified.cert[0]))
            .field("spki_sha256", &hex::encode(self.spki_sha256))
            .field("key", &"<redacted>")
            .finish()
    }
}

/// How a configured peer is authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum PeerTrust {
    /// The peer's chain must verify against these CA certificates (trust
    /// anchors), and its end-entity certificate must name the peer as a DNS SAN.
    Ca(Vec<CertificateDer<'static>>),
    /// SHA-256 of the peer's end-entity SubjectPublicKeyInfo (DER).
    Pin([u8; 32]),
}

impl PeerTrust {
    /// Loads every certificate of the PEM file `path` as a CA trust anchor.
    pub fn load_ca(path: &Path) -> Result<PeerTrust, TlsError> {
        let cas = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|source| TlsError::Pem {
                path: path.to_path_buf(),
                source,
            })?;
        if cas.is_empty() {
            return Err(TlsError::NoCertificate {
                path: path.to_path_buf(),
            });
        }
        let mut roots = RootCertStore::empty();
        for ca in &cas {
            roots.add(ca.clone()).map_err(|source| TlsError::BadCa {
                path: path.to_path_buf(),
                source,
            })?;
        }
        Ok(PeerTrust::Ca(cas))
    }

    /// Parses a pin written as 64 hexadecimal digits (colons allowed between bytes).
    pub fn parse_pin(text: &str) -> Result<PeerTrust, TlsError> {
        let digits: String = text.trim().chars().filter(|c| *c != ':').collect();
        let mut pin = [0u8; 32];
        hex::decode_to_slice(&digits, &mut pin).map_err(|_| TlsError::BadPin(text.to_string()))?;
        Ok(PeerTrust::Pin(pin))
    }
}

impl fmt::Debug for PeerTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerTrust::Ca(cas) => {
                let names: Vec<String> = cas.iter().map(describe).collect();
                f.debug_tuple("Ca").field(&names).finish()
            }
            PeerTrust::Pin(pin) => f.debug_tuple("Pin").field(&hex::encode(pin)).finish(),
        }
    }
}

/// A peer gateway this gateway talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedPeer {
    /// The peer's name: its DNS SAN under CA trust, and the TLS server name
    /// this gateway sends when it dials the peer.
    pub name: String,
    /// How the peer is authenticated.
    pub trust: PeerTrust,
}

/// The TLS server name to dial `peer` with.
pub fn server_name(peer: &TrustedPeer) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(peer.name.clone()).map_err(|_| TlsError::BadPeerName(peer.name.clone()))
}

/// SHA-256 of the DER SubjectPublicKeyInfo of `cert`.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Result<[u8; 32], TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, parsed.public_key().raw);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Ok(out)
}

/// "CN=... SAN=[...]" of a certificate, for error messages and logs.
fn describe(cert: &CertificateDer<'_>) -> String {
    let parsed = match x509_parser::parse_x509_certificate(cert.as_ref()) {
        Ok((_, parsed)) => parsed,
        Err(e) => return format!("<unparsable certificate: {e}>"),
    };
    let subject = parsed.subject().to_string();
    let subject = if subject.is_empty() {
        "<empty subject>".to_string()
    } else {
        subject
    };
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = parsed.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => sans.push(dns.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => {
                    let addr = <[u8; 4]>::try_from(*ip)
                        .map(std::net::IpAddr::from)
                        .or_else(|_| <[u8; 16]>::try_from(*ip).map(std::net::IpAddr::from));
                    match addr {
                        Ok(addr) => sans.push(format!("IP:{addr}")),
                        Err(_) => sans.push(format!("IP:{}", hex::encode(ip))),
                    }
                }
                other => sans.push(other.to_string()),
            }
        }
    }
    format!("{subject} SAN=[{}]", sans.join(", "))
}

/// A human-readable reason from a rustls verification error.
fn reason(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "unknown issuer".to_string()
        }
        rustls::Error::InvalidCertificate(CertificateError::BadSignature) => {
            "bad certificate signature".to_string()
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
            "certificate not valid for the peer's name".to_string()
        }
        rustls::Error::InvalidCertificate(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// Why a certificate matched none of the candidate peers.
///
/// rustls formats `CertificateError::Other` with `Debug`, so `Debug` prints
/// the same readable sentence as `Display`.
struct Refusal {
    /// [`describe`] of the end-entity certificate.
    certificate: String,
    /// Per candidate peer: its name and why it did not match.
    reasons: Vec<(String, String)>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "certificate for {} matches no trusted peer",
            self.certificate
        )?;
        for (i, (peer, why)) in self.reasons.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(f, "{sep}{peer}: {why}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }
}

/// A configured peer with its verifiers built.
#[derive(Debug)]
struct CompiledPeer {
    name: String,
    check: Check,
}

#[derive(Debug)]
enum Check {
    Pin([u8; 32]),
    Ca {
        /// Verifies the chain as a TLS client certificate.
        client: Arc<dyn ClientCertVerifier>,
        /// Verifies the chain and the name as a TLS server certificate.
        server: Arc<WebPkiServerVerifier>,
        server_name: ServerName<'static>,
    },
}

impl CompiledPeer {
    fn new(peer: &TrustedPeer) -> Result<CompiledPeer, TlsError> {
        let server_name = server_name(peer)?;
        let check = match &peer.trust {
            PeerTrust::Pin(pin) => Check::Pin(*pin),
            PeerTrust::Ca(cas) => {
                if cas.is_empty() {
                    return Err(TlsError::EmptyCa {
                        peer: peer.name.clone(),
                    });
                }
                let mut roots = RootCertStore::empty();
                for ca in cas {
                    roots.add(ca.clone()).map_err(|source| TlsError::BadCa {
                        path: PathBuf::from(format!("<CA of peer {}>", peer.name)),
                        source,
                    })?;
                }
                let roots = Arc::new(roots);
                let verifier_error = |source| TlsError::Verifier {
                    peer: peer.name.clone(),
                    source,
                };
                let client = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                    .build()
                    .map_err(verifier_error)?;
                let server = WebPkiServerVerifier::builder_with_provider(roots, provider())
                    .build()
                    .map_err(verifier_error)?;
                Check::Ca {
                    client,
                    server,
                    server_name,
                }
            }
        };
        Ok(CompiledPeer {
            name: peer.name.clone(),
            check,
        })
    }

    fn check_pin(pin: &[u8; 32], end_entity: &CertificateDer<'_>) -> Result<(), String> {
        let got = spki_sha256(end_entity).map_err(|e| e.to_string())?;
        if &got == pin {
            Ok(())
        } else {
            Err(format!(
                "SPKI pin mismatch (certificate's SPKI SHA-256 is {})",
                hex::encode(got)
            ))
        }
    }

    /// Checks a certificate presented by a TLS client (this side is the server).
    fn check_client(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), String> {
        match &self.check {
            Check::Pin(pin) => Self::check_pin(pin, end_entity),
            Check::Ca {
                client,
                server_name,
                ..
            } => {
                client
                    .verify_client_cert(end_entity, intermediates, now)
                    .map_err(|e| reason(&e))?;
                let parsed = ParsedCertificate::try_from(end_entity).map_err(|e| reason(&e))?;
                rustls::client::verify_server_name(&parsed, server_name).map_err(|e| reason(&e))
            }
        }
    }

    /// Checks a certificate presented by a TLS server (this side is the client).
    fn check_server(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), String> {
        match &self.check {
            Check::Pin(pin) => Self::check_pin(pin, end_entity),
            Check::Ca {
                server,
                server_name,
                ..
            } => server
                .verify_server_cert(end_entity, intermediates, server_name, &[], now)
                .map(|_| ())
                .map_err(|e| reason(&e)),
        }
    }
}

/// Server-side verifier: the client must match one of the configured peers.
#[derive(Debug)]
struct PeerClientVerifier {
    peers: Vec<CompiledPeer>,
    hints: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PeerClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let mut reasons = Vec::with_capacity(self.peers.len());
        for peer in &self.peers {
            match peer.check_client(end_entity, intermediates, now) {
                Ok(()) => return Ok(ClientCertVerified::assertion()),
                Err(why) => reasons.push((peer.name.clone(), why)),
            }
        }
        let refusal = Refusal {
            certificate: describe(end_entity),
            reasons,
        };
        tracing::warn!(remote = %refusal.certificate, "peer channel: refused client: {refusal}");
        Err(refusal.into_rustls())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Client-side verifier: the server must be the one peer that was dialled.
#[derive(Debug)]
struct PeerServerVerifier {
    peer: CompiledPeer,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.peer.check_server(end_entity, intermediates, now) {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(why) => {
                let refusal = Refusal {
                    certificate: describe(end_entity),
                    reasons: vec![(self.peer.name.clone(), why)],
                };
                tracing::warn!(remote = %refusal.certificate, "peer channel: refused server: {refusal}");
                Err(refusal.into_rustls())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

fn compile(peers: &[TrustedPeer]) -> Result<Vec<CompiledPeer>, TlsError> {
    peers.iter().map(CompiledPeer::new).collect()
}

/// The TLS 1.3 server configuration of the peer channel: presents `id` and
/// requires a client certificate that matches one of `peers`.
pub fn server_config(
    id: &Identity,
    peers: &[TrustedPeer],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    if peers.is_empty() {
        return Err(TlsError::NoPeers);
    }
    let compiled = compile(peers)?;
    // Hint the CA subjects only when every peer is CA-trusted: a pinned peer's
    // certificate may come from any issuer, so then the list must stay empty.
    let mut hints = Vec::new();
    if compiled.iter().all(|p| matches!(p.check, Check::Ca { .. })) {
        for peer in &compiled {
            if let Check::Ca { client, .. } = &peer.check {
                hints.extend_from_slice(client.root_hint_subjects());
            }
        }
    }
    let verifier = PeerClientVerifier {
        peers: compiled,
        hints,
        algs: sig_algs(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(id.certified.clone())));
    config.alpn_protocols = vec![PEER_ALPN.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The TLS acceptor of the gRPC API: presents the certificate chain in
/// `cert_pem` with the key in `key_pem`, offers HTTP/2 by ALPN, asks for
/// no client certificate (API callers authenticate with tokens), and takes
/// TLS 1.2 and 1.3 (SciStream's Python clients may still speak 1.2).
pub fn api_acceptor(
    cert_pem: &Path,
    key_pem: &Path,
) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let id = Identity::load(cert_pem, key_pem)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(id.certified.clone())));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The TLS 1.3 client configuration for dialling `peer`: presents `id` and
/// accepts only a server that matches `peer`. Dial with [`server_name`]`(peer)`.
pub fn client_config(
    id: &Identity,
    peer: &TrustedPeer,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let verifier = PeerServerVerifier {
        peer: CompiledPeer::new(peer)?,
        algs: sig_algs(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(id.certified.clone())));
    config.alpn_protocols = vec![PEER_ALPN.to_vec()];
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// Which configured peer presented `chain` (end-entity first, as returned by
/// `peer_certificates()` after the handshake), by index into `peers`.
///
/// The handshake has already verified the chain in its role; this re-checks it
/// against each peer in order (CA chain and DNS SAN, or pin) and returns the
/// first that matches. `None` if none does (or the chain is empty).
pub fn identify(peers: &[TrustedPeer], chain: &[CertificateDer<'_>]) -> Option<usize> {
    let (end_entity, intermediates) = chain.split_first()?;
    let now = UnixTime::now();
    peers.iter().position(|peer| {
        let Ok(compiled) = CompiledPeer::new(peer) else {
            return false;
        };
        compiled
            .check_client(end_entity, intermediates, now)
            .is_ok()
            || compiled
                .check_server(end_entity, intermediates, now)
                .is_ok()
    })
}

/// The exporter context: uid length (16-bit big-endian) ‖ uid ‖ epoch (64-bit big-endian).
fn exporter_context(uid: &str, epoch: u64) -> Result<Vec<u8>, TlsError> {
    let len = u16::try_from(uid.len()).map_err(|_| TlsError::UidTooLong { len: uid.len() })?;
    let mut context = Vec::with_capacity(2 + uid.len() + 8);
    context.extend_from_slice(&len.to_be_bytes());
    context.extend_from_slice(uid.as_bytes());
    context.extend_from_slice(&epoch.to_be_bytes());
    Ok(context)
}

/// The 32-byte TLS exporter value (RFC 8446 §7.5) for (`uid`, `epoch`) on an
/// established peer-channel connection, with label [`EXPORTER_LABEL`] and
/// context `len(uid) as u16 BE ‖ uid ‖ epoch as u64 BE`. Both ends of one
/// connection get the same value; any other connection, uid or epoch gives an
/// unrelated one.
///
/// Pass a `rustls::ClientConnection` or `rustls::ServerConnection` (for
/// tokio-rustls: `stream.get_ref().1`).
pub fn exporter<D>(
    conn: &ConnectionCommon<D>,
    uid: &str,
    epoch: u64,
) -> Result<Zeroizing<[u8; 32]>, TlsError> {
    let context = exporter_context(uid, epoch)?;
    conn.export_keying_material(Zeroizing::new([0u8; 32]), EXPORTER_LABEL, Some(&context))
        .map_err(TlsError::Exporter)
}
