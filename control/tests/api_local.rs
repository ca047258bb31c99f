//! The northbound API of two `s2cs` on loopback (no data plane, no
//! namespaces): authentication and authorization refusals, 20 concurrent
//! sessions set up and released, a `req` without `hello`, and a second,
//! independent client (Python grpcio) getting the same results as `s2uc`.
//!
//! The regions are written as usual; with no `s2ds` attached, publishing
//! does not wait for workers. Needs root only for mlock of the regions
//! (the default RLIMIT_MEMLOCK may be too small otherwise).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use scistream_control::auth::{hash_token, token_file_entry};
use scistream_control::proto::control_client::ControlClient;
use scistream_control::proto::Request as Req;
use scistream_region::ShmReader;
use scistream_testbed::control::{gen_certs, ControlPlane};
use scistream_testbed::paths::{python, script, workspace_bin};
use scistream_testbed::scratch::{free_port, ScratchDir};
use serde_json::Value;

const TOKEN: &str = "tok-testuser-0123456789abcdef";
/// Session ids: the API takes UUIDs of any version (these are version 1,
/// as SciStream's client makes them, and 4).
const U1: &str = "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3";
const NOPE: &str = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
const LONELY: &str = "9d6f3a2e-1c4b-11ef-8a7d-0242ac120002";
const PY1: &str = "e2b7c9d4-5a61-4f3e-9b08-7c1d2e3f4a5b";
const OTHER_TOKEN: &str = "tok-other-0123456789abcdef";

static SERIAL: Mutex<()> = Mutex::new(());

fn s2uc_bin() -> PathBuf {
    workspace_bin(option_env!("CARGO_BIN_EXE_s2uc"), "s2uc")
}

/// Two s2cs on loopback with the testbed example configs: peer channel
/// and API on free loopback ports, tokens for `testuser` (the example's
/// allow rule) and `other` (no allow rule).
struct Local {
    a: ControlPlane,
    b: ControlPlane,
    api_a: String,
    api_b: String,
    certs: ScratchDir,
}

impl Local {
    fn up(req_timeout: u64) -> Local {
        Local::up_with_certs(req_timeout, &["gwa", "gwb"])
    }

    /// Like [`Local::up`], with `gen-certs.sh` given `cert_args` (names and
    /// their `--ip` options).
    fn up_with_certs(req_timeout: u64, cert_args: &[&str]) -> Local {
        Local::up_with(req_timeout, cert_args, &[])
    }

    /// Like [`Local::up_with_certs`], with `api` keys set in both `[api]`
    /// sections.
    fn up_with(req_timeout: u64, cert_args: &[&str], api_keys: &[(&str, i64)]) -> Local {
        let certs = ScratchDir::new("s2cs-api-certs");
        gen_certs(&certs, cert_args);
        let tokens = certs.join("tokens.toml");
        let mut text = String::new();
        for (id, tok) in [("testuser", TOKEN), ("other", OTHER_TOKEN)] {
            text += &token_file_entry(id, &[], &hash_token(tok, 1000).unwrap());
        }
        std::fs::write(&tokens, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (peer_a, peer_b, api_a, api_b) = (free_port(), free_port(), free_port(), free_port());
        let edit = |peer_listen: u16, peer_at: u16, api: u16| {
            let tokens = tokens.clone();
            move |t: &mut toml::Table| {
                let c = t["control"].as_table_mut().unwrap();
                c.insert(
                    "peer_listen".into(),
                    format!("127.0.0.1:{peer_listen}").into(),
                );
                let p = t["peers"].as_array_mut().unwrap()[0]
                    .as_table_mut()
                    .unwrap();
                p.insert(
                    "control_address".into(),
                    format!("127.0.0.1:{peer_at}").into(),
                );
                let a = t["api"].as_table_mut().unwrap();
                a.insert("listen".into(), format!("127.0.0.1:{api}").into());
                a.insert("req_timeout_seconds".into(), (req_timeout as i64).into());
                for (k, v) in api_keys {
                    a.insert((*k).into(), (*v).into());
                }
                let au = t["auth"].as_table_mut().unwrap();
                au.insert("token_file".into(), tokens.display().to_string().into());
            }
        };
        let a = ControlPlane::start_local("gwa", &certs, edit(peer_a, peer_b, api_a));
        let b = ControlPlane::start_local("gwb", &certs, edit(peer_b, peer_a, api_b));
        Local {
            a,
            b,
            api_a: format!("127.0.0.1:{api_a}"),
            api_b: format!("127.0.0.1:{api_b}"),
            certs,
        }
    }

    /// Runs s2uc against `api` (server name `name`) with `args`.
    fn s2uc(&self, api: &str, name: &str, token: Option<&str>, args: &[&str]) -> Output {
        let mut c = Command::new(s2uc_bin());
        c.args(args)
            .args(["--s2cs", api, "--server_cert"])
            .arg(self.certs.join("ca.pem"))
            .args(["--server-name", name, "--timeout", "30"]);
        if let Some(t) = token {
            c.args(["--token", t]);
        }
        c.output().expect("run s2uc")
    }

    /// `s2uc ... --json` that must succeed; its JSON.
    fn s2uc_ok(&self, api: &str, name: &str, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.s2uc(api, name, Some(TOKEN), &args);
        assert!(
            out.status.success(),
            "s2uc {args:?}: {}\n{}\nA:\n{}\nB:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.a.log_text(),
            self.b.log_text()
        );
        serde_json::from_slice(&out.stdout).expect("s2uc --json output")
    }

    fn inbound(&self, num_conn: usize, targets_port: u16) -> Value {
        let ports: Vec<String> = (0..num_conn)
            .map(|i| (targets_port + i as u16).to_string())
            .collect();
        self.s2uc_ok(
            &self.api_a,
            "gwa",
            &[
                "inbound-request",
                "--num_conn",
                &num_conn.to_string(),
                "--remote_ip",
                "10.10.1.2",
                "--receiver_ports",
                &ports.join(","),
            ],
        )
    }

    fn outbound(&self, uid: &str, prod_listeners: &Value, num_conn: usize) -> Value {
        let l: Vec<&str> = prod_listeners
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        self.s2uc_ok(
            &self.api_b,
            "gwb",
            &[
                "outbound-request",
                "--num_conn",
                &num_conn.to_string(),
                uid,
                &l.join(","),
            ],
        )
    }

    fn sessions(&self, api: &str, name: &str) -> Vec<Value> {
        let v = self.s2uc_ok(api, name, &["list"]);
        v["sessions"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("s2uc list --json without `sessions`: {v}"))
    }
}

/// (SAs, listeners) in the region at `shm`.
fn region_counts(shm: &Path) -> (usize, usize) {
    let r = ShmReader::open(shm, 0).expect("attach");
    let v = r.current();
    (v.sas().len(), v.listeners().len())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn refused_callers_set_up_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let l = Local::up(3);
    let inbound = |token: Option<&str>, ip: &str| {
        l.s2uc(
            &l.api_a,
            "gwa",
            token,
            &[
                "inbound-request",
                "--remote_ip",
                ip,
                "--receiver_ports",
                "5000",
            ],
        )
    };
    let cases = [
        ("no token", inbound(None, "10.10.1.2"), "UNAUTHENTICATED"),
        (
            "wrong token",
            inbound(Some("not-a-token"), "10.10.1.2"),
            "UNAUTHENTICATED",
        ),
        (
            "no allow rule",
            inbound(Some(OTHER_TOKEN), "10.10.1.2"),
            "PERMISSION_DENIED",
        ),
        (
            "target outside the allow-list",
            inbound(Some(TOKEN), "192.0.2.7"),
            "PERMISSION_DENIED",
        ),
    ];
    for (what, out, code) in &cases {
        assert_eq!(out.status.code(), Some(2), "{what}: {}", stderr(out));
        assert!(
            stderr(out).contains(code),
            "{what}: expected {code}: {}",
            stderr(out)
        );
    }
    // A refused hello leaves the req's reservation behind only until the
    // client goes away or the req times out (3 s here).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !l.sessions(&l.api_a, "gwa").is_empty() {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            l.sessions(&l.api_a, "gwa")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(region_counts(&l.a.shm), (0, 0));
    assert!(l.a.log_text().contains("request refused"));
}

#[test]
fn twenty_concurrent_sessions_leave_no_ports_or_sas_behind() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let l = Local::up(30);
    let setups: Vec<(Value, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let l = &l;
                s.spawn(move || {
                    let a = l.inbound(2, 6000 + 2 * i);
                    let uid = a["uid"].as_str().unwrap().to_string();
                    let b = l.outbound(&uid, &a["listeners"], 2);
                    (a, b)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ports = std::collections::BTreeSet::new();
    for (a, b) in &setups {
        assert_eq!(a["uid"], b["uid"]);
        for v in a["listeners"].as_array().unwrap() {
            assert!(
                ports.insert(v.as_str().unwrap().to_string()),
                "port given twice: {v}"
            );
        }
    }
    assert_eq!(ports.len(), 40);
    // Every session is keyed: each side has an outbound and an inbound SA
    // per session, and its listeners.
    let wait_counts = |shm: &Path, want: (usize, usize)| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let c = region_counts(shm);
            if c == want || Instant::now() > deadline {
                return c;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(wait_counts(&l.a.shm, (40, 40)), (40, 40));
    assert_eq!(wait_counts(&l.b.shm, (40, 40)), (40, 40));

    std::thread::scope(|s| {
        for (a, _) in &setups {
            let uid = a["uid"].as_str().unwrap().to_string();
            let l = &l;
            s.spawn(move || {
                l.s2uc_ok(&l.api_a, "gwa", &["release", &uid]);
                l.s2uc_ok(&l.api_b, "gwb", &["release", &uid]);
            });
        }
    });
    assert!(l.sessions(&l.api_a, "gwa").is_empty());
    assert!(l.sessions(&l.api_b, "gwb").is_empty());
    assert_eq!(region_counts(&l.a.shm), (0, 0));
    assert_eq!(region_counts(&l.b.shm), (0, 0));
    // Every port is free again: the whole range can be reserved at once.
    let all = l.inbound(64, 7000);
    assert_eq!(all["listeners"].as_array().unwrap().len(), 64);
    assert_eq!(all["listeners"][0], "10.10.100.1:5100");
    l.s2uc_ok(&l.api_a, "gwa", &["release", all["uid"].as_str().unwrap()]);
}

#[test]
fn a_req_without_hello_times_out_and_frees_its_ports() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let l = Local::up(2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        // The API runs TLS: dial with s2uc's connector.
        let opts = scistream_control::client::ConnectOptions {
            server: l.api_a.parse().unwrap(),
            security: scistream_control::client::Security::Tls {
                server_cert: l.certs.join("ca.pem"),
                server_name: Some("gwa".into()),
            },
            connect_timeout: Duration::from_secs(5),
        };
        let ch = scistream_control::client::connect::connect(&opts)
            .await
            .unwrap();
        let mut c = ControlClient::new(ch);
        let mut r = tonic::Request::new(Req {
            uid: LONELY.into(),
            role: "PROD".into(),
            num_conn: 3,
            rate: 0,
        });
        r.metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        let t0 = Instant::now();
        let e = c.req(r).await.unwrap_err();
        (e, t0.elapsed())
    });
    let (e, took) = status;
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(l.sessions(&l.api_a, "gwa").is_empty());
    // The three ports are free: a new session gets 5100..5102 again.
    let s = l.inbound(3, 7000);
    assert_eq!(s["listeners"][0], "10.10.100.1:5100");
    assert_eq!(s["listeners"][2], "10.10.100.1:5102");
}

#[test]
fn the_python_client_gets_the_same_results_as_s2uc() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let l = Local::up(30);
    let py = |api: &str, name: &str, args: &[&str]| -> Value {
        let script = script("scistream_client.py");
        let out = Command::new(python())
            .arg(script)
            .args(args)
            .args(["--s2cs", api, "--server-cert"])
            .arg(l.certs.join("ca.pem"))
            .args(["--server-name", name, "--token", TOKEN])
            .output()
            .expect("run the python client");
        assert!(
            out.status.success(),
            "python {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout).expect("python client JSON")
    };
    let targets = "10.10.1.2:5000,10.10.1.2:5001";
    let p_in = py(
        &l.api_a,
        "gwa",
        &[
            "inbound",
            "--uid",
            PY1,
            "--num-conn",
            "2",
            "--targets",
            targets,
        ],
    );
    let listeners: Vec<&str> = p_in["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let p_out = py(
        &l.api_b,
        "gwb",
        &[
            "outbound",
            "--uid",
            PY1,
            "--num-conn",
            "2",
            "--prod-listeners",
            &listeners.join(","),
        ],
    );
    // The session is keyed on both sides.
    let st = l.s2uc_ok(&l.api_b, "gwb", &["status", PY1]);
    assert_eq!(st["state"], "keyed", "{st}");
    py(&l.api_a, "gwa", &["release", "--uid", PY1]);
    py(&l.api_b, "gwb", &["release", "--uid", PY1]);

    // The same requests through s2uc give the same answers (the freed
    // ports are handed out again in the same order).
    let s_in = l.inbound(2, 5000);
    let s_out = l.outbound(s_in["uid"].as_str().unwrap(), &s_in["listeners"], 2);
    assert_eq!(p_in["listeners"], s_in["listeners"]);
    assert_eq!(p_in["prod_listeners"], s_in["prod_listeners"]);
    assert_eq!(p_out["listeners"], s_out["listeners"]);
    assert_eq!(
        p_in["prod_listeners"],
        serde_json::json!(["10.10.1.2:5000", "10.10.1.2:5001"])
    );
}

/// s2cs with JWT authentication: an expired token, one for another
/// audience, and one without the required scope each get their status
/// through the running API, and none sets anything up.
#[test]
fn jwt_refusals_through_the_api_set_up_nothing() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    const ISSUER: &str = "https://auth.example.org";
    const AUDIENCE: &str = "scistream-gwa";
    const SCOPE: &str =
        "https://auth.globus.org/scopes/c42c0dac-0a52-408e-a04f-5d31bfe0aef8/scistream";
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let certs = ScratchDir::new("s2cs-jwt-certs");
    gen_certs(&certs, &["gwa", "gwb"]);
    let jwks = certs.join("jwks.json");
    let jwks_doc = serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
        "use": "sig", "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())}]});
    std::fs::write(&jwks, jwks_doc.to_string()).unwrap();
    let (peer_port, api_port) = (free_port(), free_port());
    let a = ControlPlane::start_local("gwa", &certs, |t: &mut toml::Table| {
        let c = t["control"].as_table_mut().unwrap();
        c.insert(
            "peer_listen".into(),
            format!("127.0.0.1:{peer_port}").into(),
        );
        let api = t["api"].as_table_mut().unwrap();
        api.insert("listen".into(), format!("127.0.0.1:{api_port}").into());
        let auth = t["auth"].as_table_mut().unwrap();
        auth.insert("mode".into(), "jwt".into());
        auth.remove("token_file");
        let mut jwt = toml::Table::new();
        jwt.insert("jwks".into(), jwks.display().to_string().into());
        jwt.insert("issuer".into(), ISSUER.into());
        jwt.insert("audience".into(), AUDIENCE.into());
        jwt.insert("required_scope".into(), SCOPE.into());
        auth.insert("jwt".into(), toml::Value::Table(jwt));
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let key = jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref());
    let token = |exp: i64, aud: &str, scope: &str| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = Some("k1".into());
        let claims = serde_json::json!({"iss": ISSUER, "aud": aud, "sub": "testuser",
            "iat": now - 10, "nbf": now - 10, "exp": exp, "scope": scope});
        jsonwebtoken::encode(&h, &claims, &key).unwrap()
    };
    let good = token(now + 600, AUDIENCE, &format!("openid {SCOPE}"));
    let api = format!("127.0.0.1:{api_port}");
    let s2uc = |tok: &str, args: &[&str]| {
        Command::new(s2uc_bin())
            .args(args)
            .args(["--s2cs", &api, "--server_cert"])
            .arg(certs.join("ca.pem"))
            .args(["--server-name", "gwa", "--timeout", "20", "--token", tok])
            .output()
            .unwrap()
    };
    let inbound = [
        "inbound-request",
        "--remote_ip",
        "10.10.1.2",
        "--receiver_ports",
        "5000",
    ];
    let cases = [
        (
            "expired",
            token(now - 3600, AUDIENCE, SCOPE),
            "UNAUTHENTICATED",
        ),
        (
            "wrong audience",
            token(now + 600, "another-gateway", SCOPE),
            "UNAUTHENTICATED",
        ),
        (
            "missing scope",
            token(now + 600, AUDIENCE, "openid email"),
            "PERMISSION_DENIED",
        ),
    ];
    for (what, tok, code) in &cases {
        let out = s2uc(tok, &inbound);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(code),
            "{what}: expected {code}: {}",
            stderr(&out)
        );
        let list = s2uc(&good, &["list", "--json"]);
        assert!(list.status.success(), "{}", stderr(&list));
        let v: Value = serde_json::from_slice(&list.stdout).unwrap();
        assert_eq!(
            v["sessions"],
            serde_json::json!([]),
            "{what} set something up: {v}"
        );
    }
    // The valid token sets up a session (and the region holds nothing
    // until keys exist).
    let out = s2uc(&good, &[&inbound[..], &["--json"]].concat());
    assert!(out.status.success(), "{}\n{}", stderr(&out), a.log_text());
    assert_eq!(region_counts(&a.shm), (0, 0));
}

/// A TLS channel to `api` with s2uc's connector, verifying `name`.
async fn channel(l: &Local, api: &str, name: &str) -> tonic::transport::Channel {
    let opts = scistream_control::client::ConnectOptions {
        server: api.parse().unwrap(),
        security: scistream_control::client::Security::Tls {
            server_cert: l.certs.join("ca.pem"),
            server_name: Some(name.into()),
        },
        connect_timeout: Duration::from_secs(5),
    };
    scistream_control::client::connect::connect(&opts)
        .await
        .unwrap()
}

/// `m` with metadata `authorization: value`.
fn with_auth<T>(value: &str, m: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(m);
    r.metadata_mut().insert(
        "authorization",
        tonic::metadata::MetadataValue::try_from(value).expect("ascii"),
    );
    r
}

/// SciStream's client sends the token bare, ours as `Bearer <token>`:
/// both set up a session. Another scheme, an empty value, or a token with
/// a space inside are UNAUTHENTICATED, for req and hello alike, and set up
/// nothing.
#[test]
fn bare_and_bearer_tokens_work_and_malformed_ones_set_up_nothing() {
    use scistream_control::proto::{Hello, Release};
    use tonic::Code;

    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let l = Local::up(30);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let req = |uid: &str| Req {
        uid: uid.into(),
        role: "PROD".into(),
        num_conn: 1,
        rate: 0,
    };
    let hello = |uid: &str| Hello {
        uid: uid.into(),
        prod_listeners: vec!["10.10.1.2:5000".into()],
        role: "PROD".into(),
    };
    rt.block_on(async {
        let client = ControlClient::new(channel(&l, &l.api_a, "gwa").await);
        let mut c = client.clone();
        for value in [
            "Basic xyz".to_string(),
            String::new(),
            "   ".to_string(),
            format!("Bearer {TOKEN} {TOKEN}"),
            format!("{TOKEN} {TOKEN}"),
            "Bearer tok-testuser 0123456789abcdef".to_string(),
            "Bearer".to_string(),
        ] {
            let e = c.req(with_auth(&value, req(PY1))).await.unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated, "{value:?}: {e:?}");
            assert!(
                e.message().contains("malformed authorization"),
                "{value:?}: {e:?}"
            );
            assert!(!e.message().contains(TOKEN), "the token is not echoed");
            let e = c.hello(with_auth(&value, hello(PY1))).await.unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated, "{value:?}: {e:?}");
        }
        assert_eq!(region_counts(&l.a.shm), (0, 0), "nothing set up");

        // Both forms (the scheme in any case) set up a session.
        for (uid, value) in [
            (U1, TOKEN.to_string()),
            (NOPE, format!("Bearer {TOKEN}")),
            (LONELY, format!("bEaReR   {TOKEN}")),
        ] {
            let mut waiting = client.clone();
            let v = value.clone();
            let pending = tokio::spawn(async move { waiting.req(with_auth(&v, req(uid))).await });
            let mut tries = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                match c.hello(with_auth(&value, hello(uid))).await {
                    Ok(_) => break,
                    Err(e) if e.code() == Code::NotFound && tries < 20 => tries += 1,
                    Err(e) => panic!("hello with {value:?}: {e:?}"),
                }
            }
            let resp = pending.await.unwrap().expect("req").into_inner();
            assert_eq!(resp.listeners.len(), 1, "{value:?}: {resp:?}");
            assert_eq!(resp.prod_listeners, ["10.10.1.2:5000"]);
        }
    });
    let owners: Vec<Value> = l.sessions(&l.api_a, "gwa");
    let mut uids: Vec<&str> = owners.iter().map(|s| s["uid"].as_str().unwrap()).collect();
    uids.sort();
    let mut want = vec![U1, NOPE, LONELY];
    want.sort();
    assert_eq!(uids, want, "the refused requests set up nothing");
    assert!(owners.iter().all(|s| s["owner"] == "testuser"));
    rt.block_on(async {
        let mut c = ControlClient::new(channel(&l, &l.api_a, "gwa").await);
        for uid in [U1, NOPE, LONELY] {
            c.release(with_auth(TOKEN, Release { uid: uid.into() }))
                .await
                .expect("release with a bare token");
        }
    });
    assert!(l.sessions(&l.api_a, "gwa").is_empty());
}

/// Dialled by IP without `--server-name`, s2uc checks the address against
/// the certificate's IP addresses, as any TLS client does: gwa's
/// certificate (made by gen-certs.sh with `--ip 127.0.0.1`) passes; gwb's,
/// which names only `gwb`, fails with an error that names the address and
/// the names the certificate holds.
#[test]
fn an_ip_address_is_verified_against_the_certificate_ip_sans() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let l = Local::up_with_certs(30, &["gwa", "--ip", "127.0.0.1", "gwb"]);
    let s2uc = |api: &str| {
        Command::new(s2uc_bin())
            .args(["list", "--json", "--s2cs", api, "--server_cert"])
            .arg(l.certs.join("ca.pem"))
            .args(["--token", TOKEN])
            .output()
            .expect("run s2uc")
    };
    let ok = s2uc(&l.api_a);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let v: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["sessions"], serde_json::json!([]));
    let refused = s2uc(&l.api_b);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let e = stderr(&refused);
    assert!(
        e.contains(&format!("connecting to {}", l.api_b))
            && e.contains(r#"certificate not valid for name "127.0.0.1""#)
            && e.contains(r#"DnsName("gwb")"#),
        "{e}"
    );
}

/// The real server's answers to bad requests, through our generated client:
/// INVALID_ARGUMENT with a reason, NOT_FOUND, FAILED_PRECONDITION,
/// ALREADY_EXISTS, and ABORTED for a `req` whose session is released.
#[test]
fn bad_requests_get_their_status_codes() {
    use scistream_control::proto::{Hello, Release, UpdateTargets};
    use tonic::Code;

    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let l = Local::up(30);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let opts = scistream_control::client::ConnectOptions {
            server: l.api_a.parse().unwrap(),
            security: scistream_control::client::Security::Tls {
                server_cert: l.certs.join("ca.pem"),
                server_name: Some("gwa".into()),
            },
            connect_timeout: Duration::from_secs(5),
        };
        let ch = scistream_control::client::connect::connect(&opts)
            .await
            .unwrap();
        let client = ControlClient::new(ch);
        fn authed<T>(m: T) -> tonic::Request<T> {
            let mut r = tonic::Request::new(m);
            r.metadata_mut()
                .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
            r
        }
        let req = |uid: &str, role: &str, num_conn: i32| Req {
            uid: uid.into(),
            role: role.into(),
            num_conn,
            rate: 0,
        };
        fn expect<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, needle: &str) {
            let e = r.unwrap_err();
            assert_eq!(e.code(), code, "{e:?}");
            assert!(e.message().contains(needle), "{needle}: {e:?}");
        }
        let mut c = client.clone();
        expect(
            c.req(authed(req(U1, "BOGUS", 1))).await,
            Code::InvalidArgument,
            "role",
        );
        expect(
            c.req(authed(req(U1, "PROD", 0))).await,
            Code::InvalidArgument,
            "num_conn",
        );
        for not_a_uuid in ["", "u1", "py-1", &U1[..35], &format!("{U1}0")] {
            expect(
                c.req(authed(req(not_a_uuid, "PROD", 1))).await,
                Code::InvalidArgument,
                "is not a UUID",
            );
        }
        let hello = |uid: &str, l: &[&str]| Hello {
            uid: uid.into(),
            prod_listeners: l.iter().map(|s| s.to_string()).collect(),
            role: "PROD".into(),
        };
        expect(
            c.hello(authed(hello(NOPE, &["10.10.1.2:5000"]))).await,
            Code::NotFound,
            NOPE,
        );
        expect(
            c.release(authed(Release { uid: NOPE.into() })).await,
            Code::NotFound,
            NOPE,
        );

        // A req waiting for its hello.
        let mut waiting = client.clone();
        let pending = tokio::spawn(async move { waiting.req(authed(req(U1, "PROD", 2))).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The same uuid in capitals names the same session.
        expect(
            c.req(authed(req(&U1.to_uppercase(), "PROD", 1))).await,
            Code::AlreadyExists,
            U1,
        );
        let update = UpdateTargets {
            uid: U1.into(),
            remote_listeners: vec!["10.10.1.2:5000".into()],
            role: "PROD".into(),
        };
        expect(
            c.update(authed(update)).await,
            Code::FailedPrecondition,
            "hello",
        );
        expect(
            c.hello(authed(hello(U1, &["10.10.1.2"]))).await,
            Code::InvalidArgument,
            "ip:port",
        );
        // gwa's WAN address is IPv4: an IPv6 producer cannot be reached
        // through its listeners (no translation between families).
        expect(
            c.hello(authed(hello(U1, &["[fd00:10:1::2]:5000"]))).await,
            Code::InvalidArgument,
            "does not translate between IPv4 and IPv6",
        );
        // Oversized requests allocate nothing large: over 64 KiB the message
        // is not decoded (RESOURCE_EXHAUSTED); under it, too many endpoints
        // or an endpoint far too long are INVALID_ARGUMENT, quoting at most
        // 64 characters back.
        let huge = "9".repeat(1 << 20);
        expect(
            c.hello(authed(hello(U1, &[huge.as_str()]))).await,
            Code::ResourceExhausted,
            "too large",
        );
        let ten_thousand: Vec<&str> = vec!["10.10.1.2:5000"; 10_000];
        expect(
            c.hello(authed(hello(U1, &ten_thousand))).await,
            Code::ResourceExhausted,
            "too large",
        );
        let three_thousand: Vec<&str> = vec!["10.10.1.2:5000"; 3_000];
        expect(
            c.hello(authed(hello(U1, &three_thousand))).await,
            Code::InvalidArgument,
            "prod_listeners has 3000 entries; at most 64",
        );
        let long = "1".repeat(30_000);
        let e = c
            .hello(authed(hello(U1, &[long.as_str()])))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(
            e.message().len() < 300,
            "the refusal does not echo 30 KB: {}",
            e.message().len()
        );
        expect(
            c.req(authed(req(LONELY, "PROD", i32::MAX))).await,
            Code::InvalidArgument,
            "num_conn",
        );
        c.release(authed(Release { uid: U1.into() })).await.unwrap();
        let e = pending.await.unwrap().unwrap_err();
        assert_eq!(e.code(), Code::Aborted, "{e:?}");
    });
    assert!(l.sessions(&l.api_a, "gwa").is_empty());
}

/// Opens `n` TCP connections to `api` from the loopback address `from`.
fn connect_from(
    rt: &tokio::runtime::Runtime,
    from: &str,
    api: &str,
    n: usize,
) -> Vec<tokio::net::TcpStream> {
    let api: std::net::SocketAddr = api.parse().unwrap();
    let from: std::net::IpAddr = from.parse().unwrap();
    rt.block_on(async {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(std::net::SocketAddr::new(from, 0)).unwrap();
            out.push(sock.connect(api).await.expect("connect"));
        }
        out
    })
}

/// Completes a TLS handshake (ALPN h2, the server verified against the
/// test CA as `gwa`) on each of `conns` and then says nothing: gRPC
/// clients that never send a request.
fn idle_tls(
    rt: &tokio::runtime::Runtime,
    conns: Vec<tokio::net::TcpStream>,
    ca: &Path,
) -> Vec<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("gwa").unwrap();
    rt.block_on(async {
        let mut out = Vec::with_capacity(conns.len());
        for c in conns {
            out.push(
                connector
                    .connect(name.clone(), c)
                    .await
                    .expect("TLS handshake"),
            );
        }
        out
    })
}

/// How many of `conns` the server has closed by `settle` from now: a
/// read finds end of file or a reset (an open connection has nothing to
/// read and would block).
fn closed_by_server(
    rt: &tokio::runtime::Runtime,
    conns: &mut [tokio::net::TcpStream],
    settle: Duration,
) -> usize {
    std::thread::sleep(settle);
    rt.block_on(async {
        let mut buf = [0u8; 64];
        conns
            .iter_mut()
            .filter(|c| match c.try_read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            })
            .count()
    })
}

/// An authenticated user still sets up a session while 1,000
/// unauthenticated connections hold the API open and never finish their
/// TLS handshake (slow loris), some with a partial ClientHello, and 1,000
/// more complete TLS and never send a request: the handshakes time out and
/// are closed, a source over its connection bound is refused at once, and
/// the user's session set-up takes about as long as without the attack.
#[test]
fn abusive_connections_do_not_stop_an_authenticated_user() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // This process holds the attack's 2,350 sockets.
    let mut lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    lim.current = lim.maximum.map(|m| m.min(8192)).or(Some(8192));
    rustix::process::setrlimit(rustix::process::Resource::Nofile, lim)
        .expect("raise RLIMIT_NOFILE");
    let l = Local::up_with(
        30,
        &["gwa", "gwb"],
        &[
            ("handshake_timeout_seconds", 2),
            ("max_connections_per_source", 300),
        ],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t0 = Instant::now();
    let baseline = l.inbound(1, 7100);
    let normal = t0.elapsed();
    l.s2uc_ok(
        &l.api_a,
        "gwa",
        &["release", baseline["uid"].as_str().unwrap()],
    );

    // 1,000 gRPC clients that complete TLS and never send a request, from
    // four sources (250 each, under the per-source bound of 300)...
    let mut silent = Vec::new();
    for from in ["127.0.0.7", "127.0.0.8", "127.0.0.9", "127.0.0.10"] {
        // One at a time: the server's handshake deadline runs from accept.
        for _ in 0..250 {
            let tcp = connect_from(&rt, from, &l.api_a, 1);
            silent.extend(idle_tls(&rt, tcp, &l.certs.join("ca.pem")));
        }
    }
    // ... 1,000 connections from four more sources that never finish
    // their handshake, half of them with the first bytes of a TLS
    // ClientHello; and 350 from a ninth source, 50 over its bound.
    let mut idle = Vec::new();
    for from in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        idle.extend(connect_from(&rt, from, &l.api_a, 250));
    }
    rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        for c in idle.iter_mut().step_by(2) {
            c.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
                .await
                .unwrap();
        }
    });
    let mut greedy = connect_from(&rt, "127.0.0.6", &l.api_a, 350);
    let refused = closed_by_server(&rt, &mut greedy, Duration::from_millis(500));
    assert!(
        (50..=60).contains(&refused),
        "a source over its bound of 300 is refused at once: {refused} of 350 closed"
    );

    // Meanwhile an authenticated user sets up a session.
    let t1 = Instant::now();
    let under_attack = l.inbound(1, 7100);
    let took = t1.elapsed();
    eprintln!("session set-up: {normal:?} normally, {took:?} with 2,350 hostile connections open");
    assert!(
        took < normal * 10 + Duration::from_secs(3),
        "set-up took {took:?} under attack, {normal:?} without"
    );
    assert_eq!(under_attack["listeners"].as_array().map(Vec::len), Some(1));

    // Every slow handshake has been cut off after its 2 s.
    let cut = closed_by_server(&rt, &mut idle, Duration::from_secs(4));
    assert_eq!(cut, idle.len(), "handshakes past the deadline are closed");
    // And the API still serves.
    l.s2uc_ok(
        &l.api_a,
        "gwa",
        &["release", under_attack["uid"].as_str().unwrap()],
    );
    assert!(l.sessions(&l.api_a, "gwa").is_empty());
    drop(silent);
}

/// Repeated authentication failures from one source are throttled: after
/// its burst, the source is refused with RESOURCE_EXHAUSTED before its
/// token is checked (even a good token), and counted; another gateway's API
/// is unaffected.
#[test]
fn repeated_authentication_failures_are_throttled() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let l = Local::up(30);
    let list = |api: &str, name: &str, token: &str| l.s2uc(api, name, Some(token), &["list"]);
    for i in 0..10 {
        let out = list(&l.api_a, "gwa", "not-a-valid-token");
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("UNAUTHENTICATED")
                || stderr(&out).to_lowercase().contains("unauthenticated"),
            "failure {i}: {}",
            stderr(&out)
        );
    }
    let out = list(&l.api_a, "gwa", "not-a-valid-token");
    assert!(
        stderr(&out).contains("too many authentication failures from 127.0.0.1"),
        "{}",
        stderr(&out)
    );
    let out = list(&l.api_a, "gwa", TOKEN);
    assert!(
        !out.status.success() && stderr(&out).contains("too many authentication failures"),
        "a throttled source is refused even with a good token: {}",
        stderr(&out)
    );
    assert!(
        l.sessions(&l.api_b, "gwb").is_empty(),
        "gwb's API still serves"
    );
    let logs = l.a.log_text();
    assert!(logs.contains("request refused"), "{logs}");
}
