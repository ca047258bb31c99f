//! The JWT/OIDC verifier (`JwtVerifier`): arbitrary bearer tokens against
//! a JWKS holding one Ed25519 key; tokens whose claims come from the input
//! but are signed with that key (so the claim checks run: issuer,
//! audience, expiry, not-before, subject, scope and scp); and arbitrary
//! JWKS files (`JwtVerifier::load`). Every refusal is an error, never a
//! panic.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use ring::signature::{Ed25519KeyPair, KeyPair};
use scistream_control::auth::{JwtVerifier, Verifier};
use scistream_control::config::JwtConfig;

fn config(jwks: PathBuf) -> JwtConfig {
    JwtConfig {
        jwks,
        issuer: "https://issuer.example".into(),
        audience: "scistream".into(),
        required_scope: "https://auth.globus.org/scopes/scistream/all".into(),
        leeway: Duration::from_secs(30),
    }
}

fn signer() -> &'static Ed25519KeyPair {
    static K: OnceLock<Ed25519KeyPair> = OnceLock::new();
    K.get_or_init(|| Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("an Ed25519 seed"))
}

fn verifier() -> &'static JwtVerifier {
    static V: OnceLock<JwtVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let x = URL_SAFE_NO_PAD.encode(signer().public_key().as_ref());
        let jwks = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"k1","alg":"EdDSA","use":"sig","x":"{x}"}}]}}"#
        );
        let path = std::env::temp_dir().join(format!("s2cs-fuzz-jwks-{}", std::process::id()));
        std::fs::write(&path, jwks).expect("write the JWKS");
        let v = JwtVerifier::load(&config(path.clone())).expect("the fixture JWKS loads");
        let _ = std::fs::remove_file(&path);
        v
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match mode % 3 {
        0 => {
            let _ = verifier().verify(text);
        }
        1 => {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#);
            let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(text));
            let sig = signer().sign(signing_input.as_bytes());
            let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
            let _ = verifier().verify(&token);
        }
        _ => {
            let path =
                std::env::temp_dir().join(format!("s2cs-fuzz-jwks-in-{}", std::process::id()));
            std::fs::write(&path, text).expect("write the JWKS");
            if let Err(e) = JwtVerifier::load(&config(path.clone())) {
                let _ = e.to_string();
            }
            let _ = std::fs::remove_file(&path);
        }
    }
});
