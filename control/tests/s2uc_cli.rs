//! `s2uc` (and `scripts/scistream_client.py`) against a fake s2cs: a small
//! tonic server implementing `scistream.Control` and
//! `scistream.s2cs.Sessions` with fixed behaviour, served in plaintext and
//! over TLS (rcgen certificate, tokio-rustls). The fake records every call
//! with its fields and its `authorization` metadata, so the tests check the
//! exact call sequence of a session's set-up, the token, the exit statuses
//! and the output.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use scistream_control::client::uid::is_uuid_v4;
use scistream_control::proto::control_server::{Control, ControlServer};
use scistream_control::proto::s2cs::sessions_server::{Sessions, SessionsServer};
use scistream_control::proto::s2cs::{ListRequest, SessionInfo, SessionList, StatusRequest};
use scistream_control::proto::{AppResponse, Hello, Release, Request, Response, UpdateTargets};
use scistream_testbed::paths::script;
use scistream_testbed::scratch::free_port;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tonic::transport::server::Connected;
use tonic::{Code, Status};

/// The DNS name in the fake server's certificate.
const SERVER_NAME: &str = "s2cs.test";

/// One call the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Req {
        uid: String,
        role: String,
        num_conn: i32,
        rate: i32,
    },
    Hello {
        uid: String,
        prod_listeners: Vec<String>,
        role: String,
    },
    Update {
        uid: String,
        remote_listeners: Vec<String>,
        role: String,
    },
    Release {
        uid: String,
    },
    List,
    Status {
        uid: String,
    },
}

/// A call with the `authorization` metadata it carried and its outcome.
#[derive(Debug, Clone)]
struct Record {
    call: Call,
    auth: Option<String>,
    /// `None` if answered OK, else the status code returned.
    refused: Option<Code>,
}

/// What the fake does, and what it saw.
#[derive(Default)]
struct FakeState {
    records: Mutex<Vec<Record>>,
    /// uid → the req waiting for its hello.
    waiting: Mutex<HashMap<String, oneshot::Sender<Vec<String>>>>,
    /// uids whose req completed.
    known: Mutex<HashSet<String>>,
    /// If set, every req is refused with this status.
    refuse_req: Mutex<Option<(Code, String)>>,
    /// Hellos to answer NOT_FOUND before looking at the uid.
    hello_not_found: Mutex<u32>,
    /// Accept hellos but never wake the req (it then waits forever).
    swallow_hello: Mutex<bool>,
}

#[derive(Clone, Default)]
struct Fake(Arc<FakeState>);

/// The fake gateway's listeners for a role: PROD on 10.10.0.1, CONS on
/// 10.20.0.1, ports from 5100 and 5200.
fn gateway_listeners(role: &str, n: i32) -> Vec<String> {
    let (ip, base) = if role == "PROD" {
        ("10.10.0.1", 5100)
    } else {
        ("10.20.0.1", 5200)
    };
    (0..n.max(0))
        .map(|i| format!("{ip}:{}", base + i))
        .collect()
}

fn sample_session(uid: &str) -> SessionInfo {
    SessionInfo {
        uid: uid.to_string(),
        role: "PROD".to_string(),
        state: "keyed".to_string(),
        listeners: vec!["10.10.0.1:5100".to_string()],
        targets: vec!["192.0.2.10:7000".to_string()],
        num_conn: 1,
        rate_bps: 1_000_000,
        peer: "gwb".to_string(),
        epoch: 4,
        rekeys: 3,
        owner: "alice".to_string(),
        bytes_out: 5 << 20,
        packets_out: 3_700,
        ..SessionInfo::default()
    }
}

impl Fake {
    fn record<T>(&self, call: Call, request: &tonic::Request<T>, refused: Option<Code>) {
        let auth = request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().expect("ascii metadata").to_string());
        self.0.records.lock().unwrap().push(Record {
            call,
            auth,
            refused,
        });
    }

    fn records(&self) -> Vec<Record> {
        self.0.records.lock().unwrap().clone()
    }

    /// The calls answered OK, in order.
    fn accepted(&self) -> Vec<Call> {
        self.records()
            .into_iter()
            .filter(|r| r.refused.is_none())
            .map(|r| r.call)
            .collect()
    }
}

#[tonic::async_trait]
impl Control for Fake {
    async fn req(
        &self,
        request: tonic::Request<Request>,
    ) -> Result<tonic::Response<Response>, Status> {
        let m = request.get_ref().clone();
        let call = Call::Req {
            uid: m.uid.clone(),
            role: m.role.clone(),
            num_conn: m.num_conn,
            rate: m.rate,
        };
        if let Some((code, msg)) = self.0.refuse_req.lock().unwrap().clone() {
            self.record(call, &request, Some(code));
            return Err(Status::new(code, msg));
        }
        self.record(call, &request, None);
        let (tx, rx) = oneshot::channel();
        self.0.waiting.lock().unwrap().insert(m.uid.clone(), tx);
        let prod_listeners = rx
            .await
            .map_err(|_| Status::internal("hello channel dropped"))?;
        self.0.known.lock().unwrap().insert(m.uid.clone());
        Ok(tonic::Response::new(Response {
            listeners: gateway_listeners(&m.role, m.num_conn),
            prod_listeners,
        }))
    }

    async fn hello(
        &self,
        request: tonic::Request<Hello>,
    ) -> Result<tonic::Response<AppResponse>, Status> {
        let m = request.get_ref().clone();
        let call = Call::Hello {
            uid: m.uid.clone(),
            prod_listeners: m.prod_listeners.clone(),
            role: m.role.clone(),
        };
        {
            let mut skip = self.0.hello_not_found.lock().unwrap();
            if *skip > 0 {
                *skip -= 1;
                self.record(call, &request, Some(Code::NotFound));
                return Err(Status::not_found(format!(
                    "uid {} has no req (forced)",
                    m.uid
                )));
            }
        }
        if *self.0.swallow_hello.lock().unwrap() {
            self.record(call, &request, None);
            return Ok(tonic::Response::new(AppResponse::default()));
        }
        let Some(tx) = self.0.waiting.lock().unwrap().remove(&m.uid) else {
            self.record(call, &request, Some(Code::NotFound));
            return Err(Status::not_found(format!("uid {} has no req", m.uid)));
        };
        self.record(call, &request, None);
        let _ = tx.send(m.prod_listeners);
        Ok(tonic::Response::new(AppResponse {
            message: "ok".to_string(),
            listeners: Vec::new(),
        }))
    }

    async fn update(
        &self,
        request: tonic::Request<UpdateTargets>,
    ) -> Result<tonic::Response<Response>, Status> {
        let m = request.get_ref().clone();
        let call = Call::Update {
            uid: m.uid.clone(),
            remote_listeners: m.remote_listeners.clone(),
            role: m.role.clone(),
        };
        if !self.0.known.lock().unwrap().contains(&m.uid) {
            self.record(call, &request, Some(Code::FailedPrecondition));
            return Err(Status::failed_precondition("update before req"));
        }
        self.record(call, &request, None);
        Ok(tonic::Response::new(Response::default()))
    }

    async fn release(
        &self,
        request: tonic::Request<Release>,
    ) -> Result<tonic::Response<Response>, Status> {
        let uid = request.get_ref().uid.clone();
        if !self.0.known.lock().unwrap().remove(&uid) {
            self.record(
                Call::Release { uid: uid.clone() },
                &request,
                Some(Code::NotFound),
            );
            return Err(Status::not_found(format!("no session {uid}")));
        }
        self.record(Call::Release { uid }, &request, None);
        Ok(tonic::Response::new(Response::default()))
    }
}

#[tonic::async_trait]
impl Sessions for Fake {
    async fn list(
        &self,
        request: tonic::Request<ListRequest>,
    ) -> Result<tonic::Response<SessionList>, Status> {
        self.record(Call::List, &request, None);
        Ok(tonic::Response::new(SessionList {
            sessions: vec![sample_session("s-one"), {
                let mut s = sample_session("s-two");
                s.role = "CONS".to_string();
                s.peer = String::new();
                s
            }],
        }))
    }

    async fn status(
        &self,
        request: tonic::Request<StatusRequest>,
    ) -> Result<tonic::Response<SessionInfo>, Status> {
        let uid = request.get_ref().uid.clone();
        if uid != "s-one" {
            self.record(
                Call::Status { uid: uid.clone() },
                &request,
                Some(Code::NotFound),
            );
            return Err(Status::not_found(format!("no session {uid}")));
        }
        self.record(Call::Status { uid: uid.clone() }, &request, None);
        Ok(tonic::Response::new(sample_session(&uid)))
    }
}

/// A TLS stream tonic can serve (tonic's own impl needs its `tls` feature).
struct TlsIo(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl Connected for TlsIo {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl AsyncRead for TlsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// A running fake s2cs; stops when dropped (with its runtime).
struct FakeServer {
    fake: Fake,
    addr: SocketAddr,
    /// The PEM certificate to trust (TLS variant), in `_dir`.
    cert: Option<PathBuf>,
    _dir: TempDir,
    _rt: tokio::runtime::Runtime,
}

impl FakeServer {
    fn plain() -> FakeServer {
        FakeServer::start(false)
    }

    fn tls() -> FakeServer {
        FakeServer::start(true)
    }

    fn start(tls: bool) -> FakeServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = Fake::default();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let router = tonic::transport::Server::builder()
            .add_service(ControlServer::new(fake.clone()))
            .add_service(SessionsServer::new(fake.clone()));
        let mut cert = None;
        if tls {
            let key =
                rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()]).expect("rcgen");
            let path = dir.path().join("server.pem");
            std::fs::write(&path, key.cert.pem()).expect("write cert");
            cert = Some(path);
            let der = key.cert.der().clone();
            let private =
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
            let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![der], private)
            .expect("server config");
            config.alpn_protocols = vec![b"h2".to_vec()];
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<TlsIo>>(16);
            rt.spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        // Failed handshakes (a client that distrusts us) are dropped.
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = tx.send(Ok(TlsIo(tls))).await;
                        }
                    });
                }
            });
            let incoming = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            rt.spawn(router.serve_with_incoming(incoming));
        } else {
            let incoming = futures_util::stream::unfold(listener, |l| async move {
                Some((l.accept().await.map(|(s, _)| s), l))
            });
            rt.spawn(router.serve_with_incoming(incoming));
        }
        FakeServer {
            fake,
            addr,
            cert,
            _dir: dir,
            _rt: rt,
        }
    }

    /// `--s2cs 127.0.0.1:PORT`, and for TLS `--server_cert FILE --server-name s2cs.test`,
    /// else `--insecure`.
    fn conn_args(&self) -> Vec<String> {
        let mut args = vec!["--s2cs".to_string(), self.addr.to_string()];
        match &self.cert {
            Some(cert) => args.extend([
                "--server_cert".to_string(),
                cert.display().to_string(),
                "--server-name".to_string(),
                SERVER_NAME.to_string(),
            ]),
            None => args.push("--insecure".to_string()),
        }
        args
    }
}

fn s2uc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_s2uc"));
    c.env_remove("RUST_LOG").env_remove("S2UC_TOKEN");
    c
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

/// Only hellos may have been refused (NOT_FOUND while req was not yet in).
fn assert_only_early_hellos_refused(fake: &Fake) {
    for r in fake.records() {
        if let Some(code) = r.refused {
            assert!(
                matches!(r.call, Call::Hello { .. }) && code == Code::NotFound,
                "unexpected refusal {r:?}"
            );
        }
    }
}

/// `inbound-request --json` with the producer app at 192.0.2.10:7000,7001.
fn inbound(server: &FakeServer, extra: &[&str]) -> Run {
    run(s2uc()
        .arg("inbound-request")
        .args(server.conn_args())
        .args([
            "--json",
            "--remote_ip",
            "192.0.2.10",
            "--receiver_ports",
            "7000,7001",
        ])
        .args(extra))
}

const TARGETS: [&str; 2] = ["192.0.2.10:7000", "192.0.2.10:7001"];

#[test]
fn inbound_request_makes_req_hello_update_and_prints_json() {
    let server = FakeServer::plain();
    let r = inbound(
        &server,
        &["--num_conn", "2", "--rate", "5000", "--token", "tok-1"],
    );
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let out = json(&r.stdout);
    let uid = out["uid"].as_str().expect("uid").to_string();
    assert!(is_uuid_v4(&uid), "{uid}");
    assert_eq!(
        strings(&out["listeners"]),
        ["10.10.0.1:5100", "10.10.0.1:5101"]
    );
    assert_eq!(strings(&out["prod_listeners"]), TARGETS);
    let targets: Vec<String> = TARGETS.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        server.fake.accepted(),
        [
            Call::Req {
                uid: uid.clone(),
                role: "PROD".into(),
                num_conn: 2,
                rate: 5000
            },
            Call::Hello {
                uid: uid.clone(),
                prod_listeners: targets.clone(),
                role: "PROD".into()
            },
            Call::Update {
                uid: uid.clone(),
                remote_listeners: targets,
                role: "PROD".into()
            },
        ]
    );
    assert_only_early_hellos_refused(&server.fake);
    for rec in server.fake.records() {
        assert_eq!(rec.auth.as_deref(), Some("Bearer tok-1"), "{rec:?}");
    }
    // --insecure warns on stderr.
    assert!(r.stderr.contains("warning: --insecure"), "{}", r.stderr);
}

#[test]
fn inbound_request_text_output() {
    let server = FakeServer::plain();
    let r = run(s2uc()
        .arg("inbound-request")
        .args(server.conn_args())
        .args(["--remote-ip", "192.0.2.10", "--receiver-ports", "7000"]));
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    let uid = lines[0].strip_prefix("uid: ").expect("uid line");
    assert!(is_uuid_v4(uid), "{uid}");
    assert_eq!(lines[1], "listeners: 10.10.0.1:5100");
}

#[test]
fn outbound_request_makes_req_hello_update_cons() {
    let server = FakeServer::plain();
    let uid = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
    let r = run(s2uc()
        .arg("outbound-request")
        .args(server.conn_args())
        .args(["--json", "--num-conn", "3", "--token", "tok-2"])
        .args([uid, "10.10.0.1:5100,10.10.0.1:5101"]));
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let out = json(&r.stdout);
    assert_eq!(out["uid"], uid);
    assert_eq!(
        strings(&out["listeners"]),
        ["10.20.0.1:5200", "10.20.0.1:5201", "10.20.0.1:5202"]
    );
    assert_eq!(strings(&out["prod_listeners"]), Vec::<String>::new());
    assert_eq!(
        server.fake.accepted(),
        [
            Call::Req {
                uid: uid.into(),
                role: "CONS".into(),
                num_conn: 3,
                rate: 0
            },
            Call::Hello {
                uid: uid.into(),
                prod_listeners: vec![],
                role: "CONS".into()
            },
            Call::Update {
                uid: uid.into(),
                remote_listeners: vec!["10.10.0.1:5100".into(), "10.10.0.1:5101".into()],
                role: "CONS".into()
            },
        ]
    );
    assert_only_early_hellos_refused(&server.fake);
}

#[test]
fn hello_is_retried_while_the_server_has_not_seen_req() {
    let server = FakeServer::plain();
    *server.fake.0.hello_not_found.lock().unwrap() = 3;
    let r = inbound(&server, &[]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let kinds: Vec<&str> = server
        .fake
        .accepted()
        .iter()
        .map(|c| match c {
            Call::Req { .. } => "req",
            Call::Hello { .. } => "hello",
            Call::Update { .. } => "update",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["req", "hello", "update"]);
    let refused = server
        .fake
        .records()
        .iter()
        .filter(|r| r.refused.is_some())
        .count();
    assert!(refused >= 3, "{:?}", server.fake.records());
}

#[test]
fn token_from_file_and_environment() {
    let server = FakeServer::plain();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "tok-file\n").unwrap();
    let file_arg = file.display().to_string();
    for (flag, expect) in [
        ("--token-file", "Bearer tok-file"),
        ("--token_file", "Bearer tok-file"),
    ] {
        let r = run(s2uc()
            .arg("list")
            .args(server.conn_args())
            .args([flag, &file_arg]));
        assert_eq!(r.code, Some(0), "{flag}: {}", r.stderr);
        assert_eq!(
            server.fake.records().last().unwrap().auth.as_deref(),
            Some(expect)
        );
    }
    let r = run(s2uc()
        .arg("list")
        .args(server.conn_args())
        .env("S2UC_TOKEN", "tok-env"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        server.fake.records().last().unwrap().auth.as_deref(),
        Some("Bearer tok-env")
    );
    // --token wins over the environment; no token sends no header.
    let r = run(s2uc()
        .arg("list")
        .args(server.conn_args())
        .args(["--token", "tok-flag"])
        .env("S2UC_TOKEN", "tok-env"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        server.fake.records().last().unwrap().auth.as_deref(),
        Some("Bearer tok-flag")
    );
    let r = run(s2uc().arg("list").args(server.conn_args()));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(server.fake.records().last().unwrap().auth, None);
    // --token and --token-file together are a usage error.
    let r = run(s2uc().arg("list").args(server.conn_args()).args([
        "--token",
        "a",
        "--token-file",
        &file_arg,
    ]));
    assert_eq!(r.code, Some(2));
    // A token that cannot be a bearer token is refused before connecting.
    let n = server.fake.records().len();
    let r = run(s2uc()
        .arg("list")
        .args(server.conn_args())
        .args(["--token", "two words"]));
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("token from --token"), "{}", r.stderr);
    assert_eq!(server.fake.records().len(), n);
}

#[test]
fn refused_request_exits_2_with_the_code_name() {
    let server = FakeServer::plain();
    *server.fake.0.refuse_req.lock().unwrap() =
        Some((Code::AlreadyExists, "uid taken".to_string()));
    let r = inbound(&server, &[]);
    assert_eq!(r.code, Some(2), "stdout: {} stderr: {}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("req: ALREADY_EXISTS: uid taken"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    // No update after a refused req.
    assert!(!server
        .fake
        .records()
        .iter()
        .any(|rec| matches!(rec.call, Call::Update { .. })));

    // release and status of an unknown uid: NOT_FOUND.
    let r = run(s2uc().args(["release", "nope"]).args(server.conn_args()));
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains("release: NOT_FOUND: no session nope"),
        "{}",
        r.stderr
    );
    let r = run(s2uc()
        .args(["status", "nope", "--json"])
        .args(server.conn_args()));
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("status: NOT_FOUND"), "{}", r.stderr);
}

#[test]
fn deadline_exits_2() {
    let server = FakeServer::plain();
    *server.fake.0.swallow_hello.lock().unwrap() = true;
    let started = std::time::Instant::now();
    let r = inbound(&server, &["--timeout", "1"]);
    assert_eq!(r.code, Some(2), "stderr: {}", r.stderr);
    assert!(r.stderr.contains("req: DEADLINE_EXCEEDED"), "{}", r.stderr);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn unreachable_server_exits_1() {
    // A port that was just free: bind, note it, close.
    let port = free_port();
    let r = run(s2uc().args(["list", "--insecure", "--s2cs", &format!("127.0.0.1:{port}")]));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("connecting to 127.0.0.1:{port}")),
        "{}",
        r.stderr
    );
}

#[test]
fn release_list_status_output() {
    let server = FakeServer::plain();
    let r = inbound(&server, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let uid = json(&r.stdout)["uid"].as_str().unwrap().to_string();

    let r = run(s2uc().args(["release", &uid]).args(server.conn_args()));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout, format!("released {uid}\n"));
    assert_eq!(
        server.fake.accepted().last(),
        Some(&Call::Release { uid: uid.clone() })
    );

    let r = run(s2uc().args(["list", "--json"]).args(server.conn_args()));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let v = json(&r.stdout);
    let uids: Vec<&str> = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["uid"].as_str().unwrap())
        .collect();
    assert_eq!(uids, ["s-one", "s-two"]);
    assert_eq!(v["sessions"][0]["rate_bps"], 1_000_000);

    let r = run(s2uc().arg("list").args(server.conn_args()));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(
        lines[0].starts_with("UID    ROLE  STATE  PEER"),
        "{}",
        r.stdout
    );
    assert!(
        lines[1].starts_with("s-one  PROD  keyed  gwb "),
        "{}",
        r.stdout
    );

    let r = run(s2uc().args(["status", "s-one"]).args(server.conn_args()));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with("session: s-one\n  role: PROD (owner alice)\n  state: keyed\n"),
        "{}",
        r.stdout
    );
    for want in [
        "  rate: 1 Mbit/s (125 kB/s)\n",
        "  transfer: 0 B (0 packets) received, 5.00 MiB (3700 packets) sent\n",
        "  latest key exchange: none yet (epoch 4)\n",
    ] {
        assert!(r.stdout.contains(want), "{want:?} in\n{}", r.stdout);
    }
    let r = run(s2uc()
        .args(["status", "s-one", "--json"])
        .args(server.conn_args()));
    let v = json(&r.stdout);
    assert_eq!(v["owner"], "alice");
    assert_eq!(v["bytes_out"], 5 << 20);
    assert_eq!(v["packets_out"], 3_700);
}

#[test]
fn uids_are_distinct_uuid_v4() {
    let server = FakeServer::plain();
    let a = inbound(&server, &[]);
    let b = inbound(&server, &[]);
    assert_eq!(
        (a.code, b.code),
        (Some(0), Some(0)),
        "{} {}",
        a.stderr,
        b.stderr
    );
    let (ua, ub) = (
        json(&a.stdout)["uid"].clone(),
        json(&b.stdout)["uid"].clone(),
    );
    assert_ne!(ua, ub);
    assert!(is_uuid_v4(ua.as_str().unwrap()) && is_uuid_v4(ub.as_str().unwrap()));
}

#[test]
fn tls_with_server_cert_and_name() {
    let server = FakeServer::tls();
    // Underscore spellings with TLS.
    let r = inbound(&server, &["--num_conn", "1", "--token", "tls-tok"]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert!(r.stderr.is_empty(), "no warning over TLS: {}", r.stderr);
    let uid = json(&r.stdout)["uid"].as_str().unwrap().to_string();
    assert_eq!(server.fake.accepted().len(), 3);
    assert!(matches!(&server.fake.accepted()[2], Call::Update { uid: u, .. } if *u == uid));
    assert!(server
        .fake
        .records()
        .iter()
        .all(|r| r.auth.as_deref() == Some("Bearer tls-tok")));

    // Dashed spellings give the same request.
    let cert = server.cert.clone().unwrap().display().to_string();
    let r = run(s2uc().arg("inbound-request").args([
        "--s2cs",
        &server.addr.to_string(),
        "--server-cert",
        &cert,
        "--server_name",
        SERVER_NAME,
        "--num-conn",
        "2",
        "--remote-ip",
        "192.0.2.10",
        "--receiver-ports",
        "7000,7001",
    ]));
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert!(matches!(
        &server.fake.accepted()[3],
        Call::Req { num_conn: 2, role, .. } if role == "PROD"
    ));
}

#[test]
fn tls_refuses_a_wrong_name_or_missing_trust() {
    let server = FakeServer::tls();
    let cert = server.cert.clone().unwrap().display().to_string();
    let addr = server.addr.to_string();
    // The certificate is for s2cs.test, not other.test: handshake fails.
    let r = run(s2uc().args([
        "list",
        "--s2cs",
        &addr,
        "--server_cert",
        &cert,
        "--server-name",
        "other.test",
    ]));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("TLS handshake (server name other.test)"),
        "{}",
        r.stderr
    );
    // An IP address without --server-name is checked against the
    // certificate's IP addresses: this one holds only s2cs.test, and the
    // error names both.
    let r = run(s2uc().args(["list", "--s2cs", &addr, "--server_cert", &cert]));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(r#"certificate not valid for name "127.0.0.1""#)
            && r.stderr.contains(r#"DnsName("s2cs.test")"#),
        "{}",
        r.stderr
    );
    // No --server_cert and no --insecure.
    let r = run(s2uc().args(["list", "--s2cs", &addr]));
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("TLS needs --server_cert"), "{}", r.stderr);
    // A certificate that is not the server's: not trusted.
    let other = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let other_path = dir.path().join("other.pem");
    std::fs::write(&other_path, other.cert.pem()).unwrap();
    let r = run(s2uc().args([
        "list",
        "--s2cs",
        &addr,
        "--server_cert",
        &other_path.display().to_string(),
        "--server-name",
        SERVER_NAME,
    ]));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("TLS handshake"), "{}", r.stderr);
    assert!(server.fake.records().is_empty());
    // --insecure and --server_cert together are a usage error.
    let r = run(s2uc().args(["list", "--insecure", "--server_cert", &cert]));
    assert_eq!(r.code, Some(2), "{}", r.stderr);
}

#[test]
fn help_everywhere() {
    for sub in [
        vec![],
        vec!["inbound-request"],
        vec!["outbound-request"],
        vec!["release"],
        vec!["list"],
        vec!["status"],
    ] {
        let r = run(s2uc().args(&sub).arg("--help"));
        assert_eq!(r.code, Some(0), "{sub:?}");
        assert!(r.stdout.contains("Usage: s2uc"), "{sub:?}: {}", r.stdout);
    }
    let r = run(s2uc().args(["outbound-request", "--help"]));
    assert!(r.stdout.contains("<UID> <PROD_LSTN>"), "{}", r.stdout);
    assert!(r.stdout.contains("--num_conn"), "{}", r.stdout);
}

#[test]
fn bad_arguments_exit_2_without_connecting() {
    let server = FakeServer::plain();
    for (args, needle) in [
        (
            vec!["outbound-request", "u", "10.0.0.1"],
            "PROD_LSTN \"10.0.0.1\"",
        ),
        (vec!["outbound-request", "u", ""], "empty list"),
        (
            vec![
                "inbound-request",
                "--remote_ip",
                "0.0.0.0",
                "--receiver_ports",
                "1",
            ],
            "unspecified",
        ),
        (
            vec![
                "inbound-request",
                "--remote_ip",
                "10.0.0.1",
                "--receiver_ports",
                "0",
            ],
            "port 0",
        ),
        (
            vec![
                "inbound-request",
                "--remote_ip",
                "10.0.0.1",
                "--receiver_ports",
                "x",
            ],
            "invalid value",
        ),
        (vec!["list", "--timeout", "0"], "--timeout"),
        (
            vec![
                "inbound-request",
                "--num_conn",
                "0",
                "--remote_ip",
                "10.0.0.1",
                "--receiver_ports",
                "1",
            ],
            "--num-conn",
        ),
    ] {
        let r = run(s2uc().args(&args).args(server.conn_args()));
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
    assert!(server.fake.records().is_empty());
}

// ---- scripts/scistream_client.py: the same calls from outside our Rust types.

fn python_client() -> Command {
    let script = script("scistream_client.py");
    let mut c = Command::new("/usr/bin/python3");
    c.arg(script).env_remove("S2UC_TOKEN");
    c
}

/// The script's connection flags (dashed spellings).
fn py_conn_args(server: &FakeServer) -> Vec<String> {
    server
        .conn_args()
        .into_iter()
        .map(|a| {
            if a == "--server_cert" {
                "--server-cert".to_string()
            } else {
                a
            }
        })
        .collect()
}

fn python_sequence(server: &FakeServer) {
    let uid = "11111111-2222-4333-8444-555555555555";
    let r = run(python_client()
        .args(["inbound", "--uid", uid, "--num-conn", "2", "--rate", "77"])
        .args([
            "--targets",
            "192.0.2.10:7000,192.0.2.10:7001",
            "--token",
            "py-tok",
        ])
        .args(py_conn_args(server)));
    assert_eq!(r.code, Some(0), "stdout: {} stderr: {}", r.stdout, r.stderr);
    let out = json(&r.stdout);
    assert_eq!(out["uid"], uid);
    assert_eq!(
        strings(&out["listeners"]),
        ["10.10.0.1:5100", "10.10.0.1:5101"]
    );
    assert_eq!(strings(&out["prod_listeners"]), TARGETS);

    let cons_uid = "11111111-2222-4333-8444-666666666666";
    let r = run(python_client()
        .args([
            "outbound",
            "--uid",
            cons_uid,
            "--prod-listeners",
            "10.10.0.1:5100,10.10.0.1:5101",
        ])
        .args(py_conn_args(server))
        .env("S2UC_TOKEN", "py-env"));
    assert_eq!(r.code, Some(0), "stdout: {} stderr: {}", r.stdout, r.stderr);
    assert_eq!(strings(&json(&r.stdout)["listeners"]), ["10.20.0.1:5200"]);

    let r = run(python_client()
        .args(["release", "--uid", uid])
        .args(py_conn_args(server)));
    assert_eq!(r.code, Some(0), "stdout: {} stderr: {}", r.stdout, r.stderr);
    assert_eq!(json(&r.stdout)["released"], true);

    let targets: Vec<String> = TARGETS.iter().map(|s| s.to_string()).collect();
    let gw: Vec<String> = vec!["10.10.0.1:5100".into(), "10.10.0.1:5101".into()];
    assert_eq!(
        server.fake.accepted(),
        [
            Call::Req {
                uid: uid.into(),
                role: "PROD".into(),
                num_conn: 2,
                rate: 77
            },
            Call::Hello {
                uid: uid.into(),
                prod_listeners: targets.clone(),
                role: "PROD".into()
            },
            Call::Update {
                uid: uid.into(),
                remote_listeners: targets,
                role: "PROD".into()
            },
            Call::Req {
                uid: cons_uid.into(),
                role: "CONS".into(),
                num_conn: 1,
                rate: 0
            },
            Call::Hello {
                uid: cons_uid.into(),
                prod_listeners: vec![],
                role: "CONS".into()
            },
            Call::Update {
                uid: cons_uid.into(),
                remote_listeners: gw,
                role: "CONS".into()
            },
            Call::Release { uid: uid.into() },
        ]
    );
    assert_only_early_hellos_refused(&server.fake);
    // Each call carried its own token (retried hellos included).
    for rec in server.fake.records() {
        let expect = match &rec.call {
            Call::Release { .. } => None,
            Call::Req { uid: u, .. } | Call::Hello { uid: u, .. } | Call::Update { uid: u, .. } => {
                Some(if u == uid {
                    "Bearer py-tok"
                } else {
                    "Bearer py-env"
                })
            }
            other => panic!("unexpected call {other:?}"),
        };
        assert_eq!(rec.auth.as_deref(), expect, "{rec:?}");
    }

    // A refusal: JSON error, exit 2.
    let r = run(python_client()
        .args(["release", "--uid", "nope"])
        .args(py_conn_args(server)));
    assert_eq!(r.code, Some(2), "stdout: {} stderr: {}", r.stdout, r.stderr);
    let err = json(&r.stdout);
    assert_eq!(err["error"], "NOT_FOUND");
    assert_eq!(err["details"], "no session nope");
}

#[test]
fn python_client_plaintext() {
    let server = FakeServer::plain();
    python_sequence(&server);
}

#[test]
fn python_client_tls() {
    let server = FakeServer::tls();
    python_sequence(&server);
}
