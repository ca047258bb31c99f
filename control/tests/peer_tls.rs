//! Mutual TLS of the peer channel over real localhost TCP: CA and pinned trust,
//! refusals with readable reasons, exporter agreement, and a full key exchange
//! through `PeerStream`.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use ring::rand::SystemRandom;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use scistream_control::peer::keys::{algorithm_from_name, Exchange, SessionKeys, Side};
use scistream_control::peer::tls::{
    self, client_config, exporter, identify, server_config, Identity, PeerTrust, TrustedPeer,
    PEER_ALPN,
};
use scistream_control::peer::wire::{PeerMessage, PeerStream};
use scistream_region::Algorithm;
use scistream_testbed::scratch::ScratchDir;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

// ---------------------------------------------------------------- PKI fixture

/// A test CA.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(cn: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    fn trust(&self) -> PeerTrust {
        PeerTrust::Ca(vec![self.der()])
    }

    /// A gateway certificate (CN and DNS SAN `name`, server and client auth).
    fn issue(&self, name: &str) -> Gateway {
        let key = KeyPair::generate().unwrap();
        let cert = gateway_params(name).signed_by(&key, &self.issuer).unwrap();
        Gateway {
            chain: vec![cert.der().clone()],
            pem: cert.pem(),
            key,
        }
    }
}

fn gateway_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params
}

/// A gateway's certificate chain and key.
struct Gateway {
    chain: Vec<CertificateDer<'static>>,
    /// The certificate in PEM.
    pem: String,
    key: KeyPair,
}

impl Gateway {
    /// A self-signed certificate (for pinning).
    fn self_signed(name: &str) -> Gateway {
        let key = KeyPair::generate().unwrap();
        let cert = gateway_params(name).self_signed(&key).unwrap();
        Gateway {
            chain: vec![cert.der().clone()],
            pem: cert.pem(),
            key,
        }
    }

    fn identity(&self) -> Identity {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()));
        Identity::from_der(self.chain.clone(), key).unwrap()
    }

    fn pin(&self) -> PeerTrust {
        PeerTrust::Pin(tls::spki_sha256(&self.chain[0]).unwrap())
    }
}

fn peer(name: &str, trust: PeerTrust) -> TrustedPeer {
    TrustedPeer {
        name: name.to_string(),
        trust,
    }
}

// ---------------------------------------------------------------- handshake harness

type ServerSide = std::io::Result<server::TlsStream<TcpStream>>;
type ClientSide = std::io::Result<client::TlsStream<TcpStream>>;

/// Runs one TLS handshake over localhost TCP. The client side, when its
/// handshake completes, also tries to read one byte, so that a refusal the
/// server sends after the client's Finished (TLS 1.3 client auth) shows up
/// as a client-side error too.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    dial: &TrustedPeer,
) -> (ServerSide, ClientSide) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server);
    let accept = async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await
    };
    let name = tls::server_name(dial).unwrap();
    let connect = async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        TlsConnector::from(client).connect(name, tcp).await
    };
    tokio::join!(accept, connect)
}

/// Asserts the client observes a refusal: either the handshake failed, or the
/// first read after it fails (the server's alert).
async fn assert_client_refused(client: ClientSide) {
    if let Ok(mut stream) = client {
        let mut byte = [0u8; 1];
        let read = stream.read(&mut byte).await;
        assert!(
            read.is_err(),
            "client was not refused: read returned {read:?}"
        );
    }
}

fn text<T>(result: &std::io::Result<T>) -> String {
    match result {
        Ok(_) => panic!("expected a handshake error"),
        Err(e) => e.to_string(),
    }
}

/// Captures `tracing` output of the current thread (tests run on a
/// current-thread runtime, so spawned work logs here too).
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Runs the tests of this file one at a time (an async lock: it is held
/// across the handshakes' awaits). Tracing caches, per
/// callsite and process-wide, whether any subscriber wants its events: a
/// test that logs with no subscriber while another installs its capture
/// can leave the capture's callsites switched off (a race inside tracing's
/// interest cache), and the log assertions would then see nothing.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn ca_trusted_mutual_handshake_identifies_and_exports() {
    let _serial = SERIAL.lock().await;
    let ca = Ca::new("SciStream Test CA");
    let other_ca = Ca::new("Other CA");
    let (gwa, gwb) = (ca.issue("gwa"), ca.issue("gwb"));
    let pinned = Gateway::self_signed("gwp");

    // gwa (server) trusts a pinned gateway and gwb through the CA.
    let a_peers = vec![peer("gwp", pinned.pin()), peer("gwb", ca.trust())];
    let b_peer = peer("gwa", ca.trust());
    let (s, c) = handshake(
        server_config(&gwa.identity(), &a_peers).unwrap(),
        client_config(&gwb.identity(), &b_peer).unwrap(),
        &b_peer,
    )
    .await;
    let (s, c) = (s.unwrap(), c.unwrap());
    let (_, s_conn) = s.get_ref();
    let (_, c_conn) = c.get_ref();

    assert_eq!(
        s_conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(s_conn.alpn_protocol(), Some(PEER_ALPN));
    assert_eq!(c_conn.alpn_protocol(), Some(PEER_ALPN));

    let from_b = s_conn.peer_certificates().unwrap();
    let from_a = c_conn.peer_certificates().unwrap();
    assert_eq!(identify(&a_peers, from_b), Some(1));
    assert_eq!(identify(std::slice::from_ref(&b_peer), from_a), Some(0));
    // The same certificate is not "gwb" under another CA, nor "gwa" at all.
    assert_eq!(identify(&[peer("gwb", other_ca.trust())], from_b), None);
    assert_eq!(identify(&[peer("gwa", ca.trust())], from_b), None);
    assert_eq!(identify(&a_peers, &[]), None);

    let e_s = exporter(s_conn, "uid-1", 0).unwrap();
    let e_c = exporter(c_conn, "uid-1", 0).unwrap();
    assert!(*e_s == *e_c, "exporters differ between the two ends");
    let other_uid = exporter(c_conn, "uid-2", 0).unwrap();
    let other_epoch = exporter(c_conn, "uid-1", 1).unwrap();
    assert!(*other_uid != *e_c && *other_epoch != *e_c && *other_uid != *other_epoch);
    // The length prefix keeps ("uid-1", epoch) unambiguous against a longer uid.
    assert!(*exporter(c_conn, "uid-1\0", 0).unwrap() != *e_c);
}

#[tokio::test]
async fn identities_and_cas_load_from_pem_files() {
    let _serial = SERIAL.lock().await;
    let ca = Ca::new("SciStream Test CA");
    let (gwa, gwb) = (ca.issue("gwa"), ca.issue("gwb"));
    let dir = ScratchDir::new("scistream-peer-tls");
    let ca_path = dir.write("ca.pem", ca.issuer.pem());
    let a_cert = dir.write("gwa.pem", &gwa.pem);
    let a_key = dir.write("gwa.key", gwa.key.serialize_pem());
    let b_cert = dir.write("gwb.pem", &gwb.pem);
    let b_key = dir.write("gwb.key", gwb.key.serialize_pem());

    let a_id = Identity::load(&a_cert, &a_key).unwrap();
    let b_id = Identity::load(&b_cert, &b_key).unwrap();
    assert_eq!(a_id.spki_sha256(), tls::spki_sha256(&gwa.chain[0]).unwrap());
    assert_eq!(a_id.cert_chain(), &gwa.chain[..]);
    let debug = format!("{a_id:?}");
    assert!(
        debug.contains("CN=gwa") && debug.contains("<redacted>"),
        "{debug}"
    );

    let trust = PeerTrust::load_ca(&ca_path).unwrap();
    assert_eq!(trust, ca.trust());
    let b_peer = peer("gwa", trust.clone());
    let (s, c) = handshake(
        server_config(&a_id, &[peer("gwb", trust)]).unwrap(),
        client_config(&b_id, &b_peer).unwrap(),
        &b_peer,
    )
    .await;
    s.unwrap();
    c.unwrap();

    // A key that does not belong to the certificate is refused at load time.
    let err = Identity::load(&a_cert, &b_key).unwrap_err();
    assert!(err.to_string().contains("private key is unusable"), "{err}");
    // A missing file names the file.
    let missing = dir.join("absent.pem");
    let err = PeerTrust::load_ca(&missing).unwrap_err();
    assert!(err.to_string().contains("absent.pem"), "{err}");
    // A key file given as the CA holds no certificate.
    let err = PeerTrust::load_ca(&a_key).unwrap_err();
    assert!(err.to_string().contains("holds no certificate"), "{err}");
}

#[tokio::test]
async fn pinned_keys_handshake_and_wrong_pins_are_refused() {
    let _serial = SERIAL.lock().await;
    let ca = Ca::new("SciStream Test CA");
    let gwa = ca.issue("gwa");
    let gwp = Gateway::self_signed("gwp");
    let stranger = Gateway::self_signed("gwp");

    // Both sides pin each other.
    let a_peers = vec![peer("gwp", gwp.pin())];
    let p_peer = peer("gwa", gwa.pin());
    let (s, c) = handshake(
        server_config(&gwa.identity(), &a_peers).unwrap(),
        client_config(&gwp.identity(), &p_peer).unwrap(),
        &p_peer,
    )
    .await;
    let (s, c) = (s.unwrap(), c.unwrap());
    assert_eq!(
        identify(&a_peers, s.get_ref().1.peer_certificates().unwrap()),
        Some(0)
    );
    assert_eq!(
        identify(
            std::slice::from_ref(&p_peer),
            c.get_ref().1.peer_certificates().unwrap()
        ),
        Some(0)
    );
    assert!(*exporter(s.get_ref().1, "u", 3).unwrap() == *exporter(c.get_ref().1, "u", 3).unwrap());

    // The client pins another key: it refuses the server.
    let wrong = peer("gwa", stranger.pin());
    let (s, c) = handshake(
        server_config(&gwa.identity(), &a_peers).unwrap(),
        client_config(&gwp.identity(), &wrong).unwrap(),
        &wrong,
    )
    .await;
    let why = text(&c);
    assert!(
        why.contains("CN=gwa") && why.contains("gwa: SPKI pin mismatch"),
        "{why}"
    );
    assert!(
        s.is_err(),
        "server completed a handshake the client refused"
    );

    // The server pins another key for gwp: it refuses the client.
    let (s, c) = handshake(
        server_config(&gwa.identity(), &[peer("gwp", stranger.pin())]).unwrap(),
        client_config(&gwp.identity(), &p_peer).unwrap(),
        &p_peer,
    )
    .await;
    let why = text(&s);
    assert!(
        why.contains("matches no trusted peer: gwp: SPKI pin mismatch"),
        "{why}"
    );
    assert_client_refused(c).await;

    // Pins parse from hex, with or without colons.
    let hex_pin = hex::encode(tls::spki_sha256(&gwp.chain[0]).unwrap());
    assert_eq!(PeerTrust::parse_pin(&hex_pin).unwrap(), gwp.pin());
    let colons: Vec<String> = hex_pin
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    assert_eq!(PeerTrust::parse_pin(&colons.join(":")).unwrap(), gwp.pin());
    assert!(PeerTrust::parse_pin(&hex_pin[..62]).is_err());
}

#[tokio::test]
async fn client_from_another_ca_is_refused_with_reason_logged() {
    let _serial = SERIAL.lock().await;
    let logs = LogBuffer::default();
    let _guard = logs.install();
    let ca = Ca::new("SciStream Test CA");
    let other = Ca::new("Other CA");
    let gwa = ca.issue("gwa");
    let impostor = other.issue("gwb");
    let pinned = Gateway::self_signed("gwp");

    let a_peers = vec![peer("gwb", ca.trust()), peer("gwp", pinned.pin())];
    let b_peer = peer("gwa", ca.trust());
    let (s, c) = handshake(
        server_config(&gwa.identity(), &a_peers).unwrap(),
        client_config(&impostor.identity(), &b_peer).unwrap(),
        &b_peer,
    )
    .await;
    let why = text(&s);
    assert!(
        why.contains("certificate for CN=gwb SAN=[gwb] matches no trusted peer: gwb: unknown issuer; gwp: SPKI pin mismatch"),
        "{why}"
    );
    assert_client_refused(c).await;
    let logged = logs.contents();
    assert!(logged.contains("WARN"), "{logged}");
    assert!(logged.contains("remote=CN=gwb SAN=[gwb]"), "{logged}");
    assert!(
        logged.contains("gwb: unknown issuer; gwp: SPKI pin mismatch"),
        "{logged}"
    );
}

#[tokio::test]
async fn certificate_for_the_wrong_name_is_refused() {
    let _serial = SERIAL.lock().await;
    let ca = Ca::new("SciStream Test CA");
    let gwa = ca.issue("gwa");
    let gwc = ca.issue("gwc");

    // Server side: gwc's certificate is from the right CA, but only gwb is trusted.
    let b_peer = peer("gwa", ca.trust());
    let (s, c) = handshake(
        server_config(&gwa.identity(), &[peer("gwb", ca.trust())]).unwrap(),
        client_config(&gwc.identity(), &b_peer).unwrap(),
        &b_peer,
    )
    .await;
    let why = text(&s);
    assert!(
        why.contains(
            "CN=gwc SAN=[gwc] matches no trusted peer: gwb: certificate not valid for name"
        ),
        "{why}"
    );
    assert_client_refused(c).await;

    // Client side: dialling "gwb" and meeting gwc's certificate.
    let dial = peer("gwb", ca.trust());
    let (s, c) = handshake(
        server_config(&gwc.identity(), &[peer("gwa", ca.trust())]).unwrap(),
        client_config(&gwa.identity(), &dial).unwrap(),
        &dial,
    )
    .await;
    let why = text(&c);
    assert!(
        why.contains(
            "CN=gwc SAN=[gwc] matches no trusted peer: gwb: certificate not valid for name"
        ),
        "{why}"
    );
    assert!(s.is_err());
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let _serial = SERIAL.lock().await;
    let ca = Ca::new("SciStream Test CA");
    let gwa = ca.issue("gwa");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let anonymous = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let dial = peer("gwa", ca.trust());
    let (s, c) = handshake(
        server_config(&gwa.identity(), &[peer("gwb", ca.trust())]).unwrap(),
        Arc::new(anonymous),
        &dial,
    )
    .await;
    let why = text(&s);
    assert!(why.contains("peer sent no certificates"), "{why}");
    assert_client_refused(c).await;
}

#[test]
fn configuration_errors_name_the_problem() {
    let _serial = SERIAL.blocking_lock();
    let ca = Ca::new("SciStream Test CA");
    let gwa = ca.issue("gwa").identity();
    let err = server_config(&gwa, &[]).unwrap_err();
    assert!(err.to_string().contains("no trusted peer"), "{err}");
    let err = client_config(&gwa, &peer("not a name!", ca.trust())).unwrap_err();
    assert!(
        err.to_string()
            .contains("\"not a name!\" is not a valid DNS name"),
        "{err}"
    );
    let err = server_config(&gwa, &[peer("gwb", PeerTrust::Ca(vec![]))]).unwrap_err();
    assert!(err.to_string().contains("empty CA list"), "{err}");
}

/// Initiator side of one key exchange over an established channel.
async fn initiate<S>(
    channel: &mut PeerStream<S>,
    exporter_value: &[u8; 32],
    uid: &str,
    epoch: u64,
    alg: Algorithm,
) -> SessionKeys
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mine = Exchange::new(&SystemRandom::new()).unwrap();
    channel
        .send(&PeerMessage::KeyOffer {
            uid: uid.to_string(),
            epoch,
            algorithm: alg.name().to_string(),
            public: mine.public_key(),
            lanes: 1,
        })
        .await
        .unwrap();
    match channel.recv().await.unwrap() {
        Some(PeerMessage::KeyAccept {
            uid: got_uid,
            epoch: got_epoch,
            public,
            ..
        }) => {
            assert_eq!((got_uid.as_str(), got_epoch), (uid, epoch));
            mine.finish(&public, exporter_value, alg, Side::Initiator, 1)
                .unwrap()
        }
        other => panic!("expected KeyAccept, got {:?}", other.map(|m| m.kind())),
    }
}

#[tokio::test]
async fn key_exchange_over_the_channel_mirrors_keys() {
    let _serial = SERIAL.lock().await;
    let ca = Ca::new("SciStream Test CA");
    let (gwa, gwb) = (ca.issue("gwa"), ca.issue("gwb"));
    let b_peer = peer("gwa", ca.trust());
    let (s, c) = handshake(
        server_config(&gwa.identity(), &[peer("gwb", ca.trust())]).unwrap(),
        client_config(&gwb.identity(), &b_peer).unwrap(),
        &b_peer,
    )
    .await;
    let mut responder = PeerStream::new(s.unwrap());
    let mut initiator = PeerStream::new(c.unwrap());

    // Responder (gwa, the TLS server) answers offers until the channel closes.
    let responder_task = tokio::spawn(async move {
        assert_eq!(responder.exchange_hello("gwa").await.unwrap(), "gwb");
        let mut all = Vec::new();
        while let Some(message) = responder.recv().await.unwrap() {
            let PeerMessage::KeyOffer {
                uid,
                epoch,
                algorithm,
                public,
                ..
            } = message
            else {
                panic!("expected KeyOffer, got {}", message.kind());
            };
            let alg = algorithm_from_name(&algorithm).unwrap();
            let exported = exporter(responder.get_ref().get_ref().1, &uid, epoch).unwrap();
            let mine = Exchange::new(&SystemRandom::new()).unwrap();
            let reply = PeerMessage::KeyAccept {
                uid: uid.clone(),
                epoch,
                public: mine.public_key(),
                lanes: 1,
            };
            let keys = mine
                .finish(&public, &exported, alg, Side::Responder, 1)
                .unwrap();
            responder.send(&reply).await.unwrap();
            all.push(keys);
        }
        all
    });

    assert_eq!(initiator.exchange_hello("gwb").await.unwrap(), "gwa");
    let mut mine = Vec::new();
    for (epoch, alg) in [(0, Algorithm::Aes128Gcm), (1, Algorithm::Aes256Gcm)] {
        let exported = exporter(initiator.get_ref().get_ref().1, "sess-42", epoch).unwrap();
        mine.push(initiate(&mut initiator, &exported, "sess-42", epoch, alg).await);
    }
    initiator.close().await.unwrap();
    let theirs = responder_task.await.unwrap();

    assert_eq!(theirs.len(), 2);
    for (i, r) in mine.iter().zip(&theirs) {
        // Compared without printing: assert! on booleans only.
        assert!(
            i.outbound.key_bytes() == r.inbound.key_bytes(),
            "i→r keys differ"
        );
        assert!(
            i.inbound.key_bytes() == r.outbound.key_bytes(),
            "r→i keys differ"
        );
        assert!(i.outbound.salt == r.inbound.salt && i.inbound.salt == r.outbound.salt);
        assert_eq!(
            (i.outbound.spi, i.inbound.spi),
            (r.inbound.spi, r.outbound.spi)
        );
    }
    // The rekey (epoch 1) shares nothing with epoch 0.
    assert!(mine[0].outbound.key_bytes() != &mine[1].outbound.key_bytes()[..16]);
    assert_ne!(mine[0].outbound.spi, mine[1].outbound.spi);
    assert_eq!(mine[1].outbound.key_len, 32);
}
