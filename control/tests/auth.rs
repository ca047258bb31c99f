//! Authentication and authorization of API callers: the token-file and JWT
//! verifiers, bearer parsing, the allow-list, and the gRPC status each
//! failure maps to.
//!
//! JWT keys: Ed25519 and P-256 key pairs are generated here with ring; the
//! RSA key is a committed throwaway test key (`tests/data/`), since ring
//! cannot generate RSA keys. JWKS files are built from the public halves.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs1KeyDer;
use serde_json::{json, Value};
use tonic::metadata::MetadataMap;
use tonic::Code;

use scistream_control::auth::{
    self, bearer, AuthError, Policy, Principal, TokenFileVerifier, Verifier,
};
use scistream_control::config::{AllowRule, AllowSubject, AuthMode, AuthSection, JwtConfig};

const ISSUER: &str = "https://auth.example.org";
const AUDIENCE: &str = "scistream-gwa";
const SCOPE: &str = "https://auth.globus.org/scopes/c42c0dac-0a52-408e-a04f-5d31bfe0aef8/scistream";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// What a gRPC handler does with a request: bearer token, verification,
/// then the allow-list for each target; the status it would return (boxed:
/// `tonic::Status` is large).
fn authorize(
    md: &MetadataMap,
    verifier: &dyn Verifier,
    policy: &Policy,
    targets: &[SocketAddr],
) -> Result<Principal, Box<tonic::Status>> {
    let check = || -> Result<Principal, AuthError> {
        let who = auth::authenticate(md, verifier)?;
        policy.check_targets(&who, targets.iter().copied())?;
        Ok(who)
    };
    check().map_err(|e| Box::new(e.into_status()))
}

fn metadata(authorization: Option<&str>) -> MetadataMap {
    let mut md = MetadataMap::new();
    if let Some(v) = authorization {
        md.insert("authorization", v.parse().expect("ascii value"));
    }
    md
}

fn target(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port).into()
}

fn rule(subject: AllowSubject, targets: &[&str], ports: &[(u16, u16)]) -> AllowRule {
    AllowRule {
        subject,
        targets: targets.iter().map(|t| t.parse().expect("prefix")).collect(),
        ports: ports.iter().map(|&(a, b)| a..=b).collect(),
    }
}

// ---------------------------------------------------------------- token file

/// A temporary directory with a mode-0600 token file holding alice
/// ("alice-token", scope "scistream") and bob ("bob-token").
fn token_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokens.toml");
    let alice = auth::hash_token("alice-token", auth::DEFAULT_PBKDF2_ITERATIONS).expect("hash");
    let bob = auth::hash_token("bob-token", auth::MIN_PBKDF2_ITERATIONS).expect("hash");
    let text = format!(
        "# test tokens\n{}\n{}",
        auth::token_file_entry("alice", &["scistream".to_owned()], &alice),
        auth::token_file_entry("bob", &[], &bob)
    );
    fs::write(&path, &text).expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    assert!(!text.contains("alice-token") && !text.contains("bob-token"));
    (dir, path)
}

fn token_auth(path: &Path) -> AuthSection {
    AuthSection {
        mode: AuthMode::TokenFile(path.to_path_buf()),
        allow: vec![
            rule(
                AllowSubject::Identity("alice".into()),
                &["10.10.1.0/24"],
                &[(1024, 65535)],
            ),
            rule(
                AllowSubject::Scope("scistream".into()),
                &["10.20.1.0/24"],
                &[(5000, 5099)],
            ),
        ],
    }
}

#[test]
fn token_file_verification() {
    let (_dir, path) = token_file();
    let auth = token_auth(&path);
    let v = auth::verifier(&auth).expect("verifier");
    let p = Policy::new(&auth);
    let ok = target(10, 10, 1, 5, 5000);

    let who = authorize(&metadata(Some("Bearer alice-token")), &*v, &p, &[ok]).expect("alice");
    assert_eq!(who.subject, "alice");
    assert_eq!(who.scopes, ["scistream"]);
    // Again (served from the cache), with a lower-case scheme.
    let again = authorize(&metadata(Some("bearer alice-token")), &*v, &p, &[ok]).expect("again");
    assert_eq!(again, who);
    // Bare, as SciStream's clients send it.
    let bare = authorize(&metadata(Some("alice-token")), &*v, &p, &[ok]).expect("bare");
    assert_eq!(bare, who);

    let cases: [(Option<&str>, Code, &str); 5] = [
        (None, Code::Unauthenticated, "missing bearer token"),
        (
            Some("Bearer wrong-token"),
            Code::Unauthenticated,
            "unknown token",
        ),
        (
            Some("Bearer alice-token-x"),
            Code::Unauthenticated,
            "unknown token",
        ),
        (Some("alice token"), Code::Unauthenticated, "malformed"),
        (
            Some("Basic alice-token"),
            Code::Unauthenticated,
            "malformed",
        ),
    ];
    for (header, code, want) in cases {
        let s = authorize(&metadata(header), &*v, &p, &[ok]).expect_err("refused");
        assert_eq!(s.code(), code, "{header:?}: {s:?}");
        assert!(s.message().contains(want), "{header:?}: {}", s.message());
        assert!(!s.message().contains("token-x"), "{}", s.message());
    }
    // The typed errors behind them.
    assert_eq!(bearer(&metadata(None)), Err(AuthError::Missing));
    assert!(matches!(
        bearer(&metadata(Some("Token x"))),
        Err(AuthError::Malformed(_))
    ));
    assert!(matches!(v.verify("nope"), Err(AuthError::Invalid(_))));
}

#[test]
fn token_file_load_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = TokenFileVerifier::load(&dir.path().join("absent.toml")).expect_err("absent");
    assert!(e.to_string().starts_with("cannot read token file"), "{e}");
    let bad = dir.path().join("bad.toml");
    fs::write(
        &bad,
        "[[tokens]]\nidentity = \"x\"\nhash = \"plain-text-token\"\n",
    )
    .expect("write");
    let e = TokenFileVerifier::load(&bad).expect_err("not a hash");
    let msg = e.to_string();
    assert!(
        msg.contains("bad.toml") && msg.contains("tokens[0].hash (identity `x`)"),
        "{msg}"
    );
}

#[test]
fn hash_format_round_trip() {
    let h = auth::hash_token("round-trip", auth::DEFAULT_PBKDF2_ITERATIONS).expect("hash");
    let s = h.to_string();
    let parts: Vec<&str> = s.split('$').collect();
    assert_eq!(parts.len(), 4, "{s}");
    assert_eq!(parts[0], "pbkdf2-sha256");
    assert_eq!(parts[1], "10000");
    assert_eq!(
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(parts[2])
            .expect("salt")
            .len(),
        16
    );
    let back: auth::TokenHash = s.parse().expect("parse");
    assert_eq!(back.iterations(), 10_000);
    assert!(back.matches("round-trip"));
    assert!(!back.matches("round-trip "));
}

// ----------------------------------------------------------------------- JWT

/// Signing keys and the JWKS of their public halves.
struct Keys {
    ed: EncodingKey,
    ec: EncodingKey,
    rsa: EncodingKey,
    /// An Ed25519 key that is not in the JWKS.
    stranger: EncodingKey,
    jwks: Value,
}

fn keys() -> Keys {
    let rng = SystemRandom::new();
    let ed_pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519");
    let ed_pair = Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref()).expect("ed25519 pair");
    let ec_pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .expect("p-256");
    let ec_pair = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        ec_pkcs8.as_ref(),
        &rng,
    )
    .expect("p-256 pair");
    let rsa_pem =
        fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rs256-test-only.key.pem"))
            .expect("read RSA test key");
    let rsa_der = PrivatePkcs1KeyDer::from_pem_slice(&rsa_pem).expect("PKCS#1 PEM");
    let rsa_pair = RsaKeyPair::from_der(rsa_der.secret_pkcs1_der()).expect("rsa pair");
    let rsa_pub: ring::rsa::PublicKeyComponents<Vec<u8>> = rsa_pair.public().into();
    let stranger = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519");

    // Uncompressed point: 0x04 || x || y.
    let point = ec_pair.public_key().as_ref();
    assert_eq!((point.len(), point[0]), (65, 4));
    let jwks = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "use": "sig",
         "x": b64(ed_pair.public_key().as_ref())},
        {"kty": "EC", "crv": "P-256", "kid": "ec", "alg": "ES256",
         "x": b64(&point[1..33]), "y": b64(&point[33..])},
        {"kty": "RSA", "kid": "rsa", "alg": "RS256", "use": "sig",
         "n": b64(&rsa_pub.n), "e": b64(&rsa_pub.e)},
        // Skipped with a warning: an encryption key and an unsupported alg.
        {"kty": "RSA", "kid": "enc", "use": "enc",
         "n": b64(&rsa_pub.n), "e": b64(&rsa_pub.e)},
        {"kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP",
         "n": b64(&rsa_pub.n), "e": b64(&rsa_pub.e)},
    ]});
    Keys {
        ed: EncodingKey::from_ed_der(ed_pkcs8.as_ref()),
        ec: EncodingKey::from_ec_der(ec_pkcs8.as_ref()),
        rsa: EncodingKey::from_rsa_der(rsa_der.secret_pkcs1_der()),
        stranger: EncodingKey::from_ed_der(stranger.as_ref()),
        jwks,
    }
}

/// A JWT verifier over `keys.jwks`, written to a temporary file.
fn jwt_setup(keys: &Keys) -> (tempfile::TempDir, AuthSection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    fs::write(&jwks, keys.jwks.to_string()).expect("write jwks");
    let auth = AuthSection {
        mode: AuthMode::Jwt(JwtConfig {
            jwks,
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            required_scope: SCOPE.into(),
            leeway: Duration::from_secs(30),
        }),
        allow: vec![rule(
            AllowSubject::Scope(SCOPE.into()),
            &["10.10.1.0/24"],
            &[(1, 65535)],
        )],
    };
    (dir, auth)
}

/// Claims that pass every check.
fn good_claims() -> Value {
    let t = now();
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice@example.org",
        "iat": t, "nbf": t - 5, "exp": t + 600,
        "scope": format!("openid {SCOPE} email"),
    })
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, key).expect("sign")
}

/// `claims` with `edit` applied to its object.
fn with(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut c = good_claims();
    edit(c.as_object_mut().expect("object"));
    c
}

#[test]
fn jwt_valid_for_each_algorithm() {
    let k = keys();
    let (_dir, auth) = jwt_setup(&k);
    let AuthMode::Jwt(cfg) = &auth.mode else {
        panic!("jwt_setup makes a jwt section")
    };
    let v = auth::JwtVerifier::load(cfg).expect("load");
    assert_eq!(v.key_ids(), [Some("ed"), Some("ec"), Some("rsa")]);
    let v: Arc<dyn Verifier> = Arc::new(v);
    let p = Policy::new(&auth);
    let claims = good_claims();
    for (alg, kid, key) in [
        (Algorithm::EdDSA, "ed", &k.ed),
        (Algorithm::ES256, "ec", &k.ec),
        (Algorithm::RS256, "rsa", &k.rsa),
    ] {
        let tok = sign(alg, Some(kid), &claims, key);
        let md = metadata(Some(&format!("Bearer {tok}")));
        let who = authorize(&md, &*v, &p, &[target(10, 10, 1, 7, 6000)])
            .unwrap_or_else(|s| panic!("{alg:?}: {s:?}"));
        assert_eq!(who.subject, "alice@example.org");
        assert_eq!(who.scopes, ["openid", SCOPE, "email"]);
    }
    // `scp` as an array, `aud` as an array, exp just past but within the
    // leeway.
    let c = with(|m| {
        m.remove("scope");
        m.insert("scp".into(), json!(["openid", SCOPE]));
        m.insert("aud".into(), json!(["other", AUDIENCE]));
        m.insert("exp".into(), json!(now() - 10));
    });
    let who = v
        .verify(&sign(Algorithm::EdDSA, Some("ed"), &c, &k.ed))
        .expect("scp, aud array, leeway");
    assert!(who.has_scope(SCOPE));
}

#[test]
fn jwt_rejections() {
    let k = keys();
    let (_dir, auth) = jwt_setup(&k);
    let v = auth::verifier(&auth).expect("verifier");
    let p = Policy::new(&auth);
    let t = now();
    let ed = |c: &Value| sign(Algorithm::EdDSA, Some("ed"), c, &k.ed);

    // Tampered: the payload of one token with the signature of another.
    let good = ed(&good_claims());
    let forged_payload = b64(with(|m| {
        m.insert("sub".into(), json!("mallory"));
    })
    .to_string()
    .as_bytes());
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = &forged_payload;
    let tampered = parts.join(".");
    // Flipped signature bits.
    let mut sig = URL_SAFE_NO_PAD
        .decode(good.rsplit('.').next().expect("signature"))
        .expect("b64");
    sig[0] ^= 1;
    let bad_sig = format!("{}.{}", good.rsplit_once('.').expect("dot").0, b64(&sig));
    // alg none: no signature at all.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"ed"}"#),
        b64(good_claims().to_string().as_bytes())
    );
    // HS256 keyed with the public RSA modulus (key-confusion attack).
    let rsa_n = k.jwks["keys"][2]["n"].as_str().expect("n").as_bytes();
    let hs256 = sign(
        Algorithm::HS256,
        Some("rsa"),
        &good_claims(),
        &EncodingKey::from_secret(rsa_n),
    );

    let cases: Vec<(&str, String, Code, &str)> = vec![
        (
            "expired",
            ed(&with(|m| {
                m.insert("exp".into(), json!(t - 120));
            })),
            Code::Unauthenticated,
            "token expired",
        ),
        (
            "nbf in the future",
            ed(&with(|m| {
                m.insert("nbf".into(), json!(t + 120));
            })),
            Code::Unauthenticated,
            "not yet valid",
        ),
        (
            "wrong audience",
            ed(&with(|m| {
                m.insert("aud".into(), json!("scistream-gwb"));
            })),
            Code::Unauthenticated,
            "wrong audience",
        ),
        (
            "wrong issuer",
            ed(&with(|m| {
                m.insert("iss".into(), json!("https://evil.example.org"));
            })),
            Code::Unauthenticated,
            "wrong issuer",
        ),
        (
            "no exp",
            ed(&with(|m| {
                m.remove("exp");
            })),
            Code::Unauthenticated,
            "missing claim `exp`",
        ),
        (
            "no sub",
            ed(&with(|m| {
                m.remove("sub");
            })),
            Code::Unauthenticated,
            "missing claim `sub`",
        ),
        (
            "missing scope",
            ed(&with(|m| {
                m.insert("scope".into(), json!("openid email"));
            })),
            Code::PermissionDenied,
            "lacks the scope",
        ),
        (
            "scope prefix only",
            ed(&with(|m| {
                m.insert("scope".into(), json!(&SCOPE[..SCOPE.len() - 1]));
            })),
            Code::PermissionDenied,
            "lacks the scope",
        ),
        (
            "unknown kid",
            sign(Algorithm::EdDSA, Some("other"), &good_claims(), &k.ed),
            Code::Unauthenticated,
            "unknown key id",
        ),
        (
            "no kid with several keys",
            sign(Algorithm::EdDSA, None, &good_claims(), &k.ed),
            Code::Unauthenticated,
            "no key id",
        ),
        (
            "signed by a key not in the JWKS",
            sign(Algorithm::EdDSA, Some("ed"), &good_claims(), &k.stranger),
            Code::Unauthenticated,
            "bad signature",
        ),
        (
            "alg does not match the key",
            sign(Algorithm::ES256, Some("ed"), &good_claims(), &k.ec),
            Code::Unauthenticated,
            "does not match its key",
        ),
        (
            "skipped encryption key",
            sign(Algorithm::RS256, Some("enc"), &good_claims(), &k.rsa),
            Code::Unauthenticated,
            "unknown key id",
        ),
        (
            "alg none",
            none,
            Code::Unauthenticated,
            "algorithm `none` is not accepted",
        ),
        (
            "HS256",
            hs256,
            Code::Unauthenticated,
            "algorithm `HS256` is not accepted",
        ),
        (
            "tampered payload",
            tampered,
            Code::Unauthenticated,
            "bad signature",
        ),
        (
            "tampered signature",
            bad_sig,
            Code::Unauthenticated,
            "bad signature",
        ),
        (
            "not a JWT",
            "abc".to_owned(),
            Code::Unauthenticated,
            "malformed token",
        ),
    ];
    for (name, tok, code, want) in cases {
        let md = metadata(Some(&format!("Bearer {tok}")));
        let s = authorize(&md, &*v, &p, &[target(10, 10, 1, 7, 6000)]).expect_err(name);
        assert_eq!(s.code(), code, "{name}: {s:?}");
        assert!(s.message().contains(want), "{name}: {}", s.message());
        if tok.len() > 10 {
            assert!(!s.message().contains(&tok), "{name} echoes the token");
        }
    }
}

#[test]
fn jwks_load_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = |name: &str| JwtConfig {
        jwks: dir.path().join(name),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        required_scope: SCOPE.into(),
        leeway: Duration::from_secs(30),
    };
    let e = auth::JwtVerifier::load(&cfg("absent.json")).expect_err("absent");
    assert!(e.to_string().starts_with("cannot read JWKS file"), "{e}");
    fs::write(
        dir.path().join("hmac.json"),
        r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#,
    )
    .expect("write");
    let e = auth::JwtVerifier::load(&cfg("hmac.json")).expect_err("symmetric only");
    assert!(e.to_string().contains("no usable signing key"), "{e}");
}

// -------------------------------------------------------------------- policy

#[test]
fn policy_from_rules() {
    let (_dir, path) = token_file();
    let auth = token_auth(&path);
    let v = auth::verifier(&auth).expect("verifier");
    let p = Policy::new(&auth);
    let alice = metadata(Some("Bearer alice-token"));
    let bob = metadata(Some("Bearer bob-token"));

    // Alice's identity rule: 10.10.1.0/24, ports 1024-65535.
    assert!(authorize(&alice, &*v, &p, &[target(10, 10, 1, 200, 1024)]).is_ok());
    // Alice's scope ("scistream") rule: 10.20.1.0/24, ports 5000-5099.
    assert!(authorize(&alice, &*v, &p, &[target(10, 20, 1, 3, 5099)]).is_ok());
    let refused = [
        (&alice, target(10, 10, 2, 1, 5000), "outside every prefix"),
        (&alice, target(10, 10, 1, 1, 80), "outside the port range"),
        (
            &alice,
            target(10, 20, 1, 3, 5100),
            "outside the scope rule's ports",
        ),
        (&bob, target(10, 10, 1, 1, 5000), "bob has no rule"),
    ];
    for (md, t, why) in refused {
        let s = authorize(md, &*v, &p, &[t]).expect_err(why);
        assert_eq!(s.code(), Code::PermissionDenied, "{why}");
        assert!(
            s.message().contains(&t.to_string()),
            "{why}: {}",
            s.message()
        );
    }
    // One forbidden target among allowed ones refuses the request.
    let s = authorize(
        &alice,
        &*v,
        &p,
        &[target(10, 10, 1, 2, 5000), target(8, 8, 8, 8, 53)],
    )
    .expect_err("mixed");
    assert_eq!(s.code(), Code::PermissionDenied);
    assert_eq!(
        s.message(),
        "forbidden: identity `alice` may not use target 8.8.8.8:53"
    );
}

#[test]
fn mode_none_allows_everything() {
    let auth = AuthSection {
        mode: AuthMode::None,
        allow: vec![],
    };
    let v = auth::verifier(&auth).expect("verifier");
    let p = Policy::new(&auth);
    // No token needed, and any target is allowed.
    let who = authorize(&metadata(None), &*v, &p, &[target(192, 0, 2, 1, 1)]).expect("anonymous");
    assert_eq!(who.subject, "anonymous");
}

// ------------------------------------------------------------ s2cs hash-token

/// Runs `s2cs hash-token ARGS` with `stdin`; (exit code, stdout, stderr).
fn hash_token_cli(args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_s2cs"))
        .arg("hash-token")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn s2cs");
    // s2cs may exit (bad arguments) before reading: a broken pipe is fine.
    if let Err(e) = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
    {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `entries` as a mode-0600 token file in `dir` and loads it.
fn load_entries(dir: &Path, entries: &str) -> TokenFileVerifier {
    let path = dir.join("tokens.toml");
    fs::write(&path, entries).expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    TokenFileVerifier::load(&path).expect("load")
}

#[test]
fn hash_token_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A token from stdin.
    let (code, out, err) = hash_token_cli(
        &[
            "--identity",
            "alice",
            "--scope",
            SCOPE,
            "--iterations",
            "1000",
        ],
        "my-secret-token\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !out.contains("my-secret-token") && err.is_empty(),
        "{out}{err}"
    );
    assert!(out.starts_with("[[tokens]]\nidentity = \"alice\"\nhash = \"pbkdf2-sha256$1000$"));
    let v = load_entries(dir.path(), &out);
    let who = v.verify("my-secret-token").expect("verifies");
    assert_eq!(
        (who.subject.as_str(), who.scopes.as_slice()),
        ("alice", &[SCOPE.to_owned()][..])
    );
    assert!(v.verify("my-secret-token\n").is_err());

    // A generated token: on stderr alone, hashed on stdout.
    let (code, out, err) = hash_token_cli(&["--identity", "bob", "--generate"], "");
    assert_eq!(code, Some(0), "{err}");
    let token = err.trim_end();
    assert_eq!(token.len(), 43, "{err}");
    assert!(!out.contains(token));
    assert!(out.contains("pbkdf2-sha256$10000$"), "{out}");
    let v = load_entries(dir.path(), &out);
    assert_eq!(v.verify(token).expect("generated token").subject, "bob");

    // Refusals.
    let (code, _, err) = hash_token_cli(&["--identity", "x"], "");
    assert_eq!(code, Some(1));
    assert!(err.contains("no token on stdin"), "{err}");
    let (code, _, err) = hash_token_cli(&["--identity", "x", "--iterations", "10"], "t\n");
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = hash_token_cli(&["--identity", "x", "--scope", "a b"], "t\n");
    assert_eq!(code, Some(1));
    assert!(err.contains("contains whitespace"), "{err}");
}
