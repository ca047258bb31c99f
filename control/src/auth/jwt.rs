//! [`JwtVerifier`]: JWT/OIDC access tokens signed by a key of a JWKS file.
//!
//! Accepted algorithms: EdDSA (Ed25519 `OKP` keys), ES256 (P-256 `EC`
//! keys) and RS256 (`RSA` keys of 2048 to 8192 bits). `none`, HMAC and
//! every other algorithm are refused. The key is chosen by the token's
//! `kid` (a token without `kid` is accepted only when the JWKS holds a
//! single key), and its type must match the token's `alg`.
//!
//! After the signature, the claims are checked: `iss` equals the configured
//! issuer, `aud` contains the configured audience, `exp` and `nbf` hold
//! within the leeway, `sub` is present; then the required scope must be in
//! the `scope` claim (space-separated) or the `scp` claim (array or
//! string). A missing scope is [`AuthError::MissingScope`]; every other
//! failure is [`AuthError::Invalid`] with a short reason.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{AuthError, AuthLoadError, Principal, Verifier};
use crate::config::JwtConfig;

/// Smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_BYTES: usize = 256;
/// Largest RSA modulus accepted, in bytes (8192 bits).
const MAX_RSA_BYTES: usize = 1024;

/// One usable key of the JWKS.
struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Verifies JWT bearer tokens against a JWKS.
pub struct JwtVerifier {
    keys: Vec<VerifyKey>,
    issuer: String,
    audience: String,
    required_scope: String,
    leeway_seconds: u64,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("{:?}:{}", k.alg, k.kid.as_deref().unwrap_or("-")))
            .collect();
        f.debug_struct("JwtVerifier")
            .field("keys", &keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("required_scope", &self.required_scope)
            .field("leeway_seconds", &self.leeway_seconds)
            .finish()
    }
}

/// The claims we read after validation.
#[derive(Deserialize)]
struct Claims {
    // Optional here so that a missing `sub` is reported by the claim
    // validation ("missing claim `sub`"), which runs after this is parsed.
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<ScopeClaim>,
}

/// `scp`: an array of scopes, or (some issuers) one space-separated string.
#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    Many(Vec<String>),
    One(String),
}

impl JwtVerifier {
    /// Reads the JWKS named by `cfg` and keeps its usable signing keys.
    /// Keys of other types or algorithms (RSA-OAEP, P-384, symmetric, ...)
    /// and encryption keys are skipped with a warning; a malformed key of
    /// a supported type, a repeated `kid` or no usable key is an error.
    pub fn load(cfg: &JwtConfig) -> Result<JwtVerifier, AuthLoadError> {
        let path = &cfg.jwks;
        let text = std::fs::read_to_string(path).map_err(|source| AuthLoadError::Read {
            what: "JWKS",
            path: path.clone(),
            source,
        })?;
        let keys = parse_jwks(&text).map_err(|message| AuthLoadError::Jwks {
            path: path.clone(),
            message,
        })?;
        Ok(JwtVerifier {
            keys,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            required_scope: cfg.required_scope.clone(),
            leeway_seconds: cfg.leeway.as_secs(),
        })
    }

    /// The `kid`s of the usable keys, in file order (`None` for a key
    /// without one).
    pub fn key_ids(&self) -> Vec<Option<&str>> {
        self.keys.iter().map(|k| k.kid.as_deref()).collect()
    }

    /// The key for a token with header `kid`.
    fn key_for(&self, kid: Option<&str>) -> Result<&VerifyKey, AuthError> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or_else(|| AuthError::Invalid("unknown key id (kid)".into())),
            None if self.keys.len() == 1 => Ok(&self.keys[0]),
            None => Err(AuthError::Invalid(
                "the token has no key id (kid) and the key set holds several keys".into(),
            )),
        }
    }
}

/// The usable keys of JWKS `text`.
fn parse_jwks(text: &str) -> Result<Vec<VerifyKey>, String> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let list = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("no `keys` array (expected an RFC 7517 JWK set: {\"keys\": [...]})")?;
    let mut keys: Vec<VerifyKey> = Vec::with_capacity(list.len());
    for (i, value) in list.iter().enumerate() {
        let jwk: Jwk = match serde_json::from_value(value.clone()) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!("JWKS keys[{i}] skipped: unsupported or malformed key ({e})");
                continue;
            }
        };
        let kid = jwk.common.key_id.clone();
        let name = match &kid {
            Some(k) => format!("keys[{i}] (kid `{k}`)"),
            None => format!("keys[{i}]"),
        };
        let alg = match key_algorithm(&jwk) {
            Ok(a) => a,
            Err(reason) => {
                tracing::warn!("JWKS {name} skipped: {reason}");
                continue;
            }
        };
        check_key_material(&jwk).map_err(|m| format!("{name}: {m}"))?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("{name}: unusable key: {e}"))?;
        if let Some(k) = &kid {
            if keys.iter().any(|other| other.kid.as_deref() == Some(k)) {
                return Err(format!("{name}: kid `{k}` is used by an earlier key"));
            }
        }
        keys.push(VerifyKey { kid, alg, key });
    }
    if keys.is_empty() {
        return Err(
            "no usable signing key (accepted: OKP Ed25519 for EdDSA, EC P-256 for ES256, RSA for RS256)"
                .into(),
        );
    }
    if keys.len() > 1 && keys.iter().any(|k| k.kid.is_none()) {
        return Err("with several keys every key needs a `kid`".into());
    }
    Ok(keys)
}

/// The algorithm `jwk` verifies, or why it is not a usable signing key.
fn key_algorithm(jwk: &Jwk) -> Result<Algorithm, String> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Err("not a signing key (`use` is not `sig`)".into());
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.contains(&KeyOperations::Verify) {
            return Err("`key_ops` does not include `verify`".into());
        }
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (`oct`) keys are never accepted".into())
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            return Err(format!("OKP curve {:?} is not supported", p.curve))
        }
        AlgorithmParameters::EllipticCurve(p) => {
            return Err(format!("EC curve {:?} is not supported", p.curve))
        }
    };
    let declared_ok = match jwk.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::EdDSA) => alg == Algorithm::EdDSA,
        Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
        Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
        Some(_) => false,
    };
    if !declared_ok {
        return Err(format!(
            "declared `alg` {:?} is not accepted for this key type (expected {alg:?})",
            jwk.common.key_algorithm
        ));
    }
    Ok(alg)
}

/// Decodes a base64url JWK member.
fn b64url(field: &str, s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| format!("`{field}` is not base64url: {e}"))
}

/// Checks the sizes of a supported key's members, so that a broken key is
/// reported when loading rather than as failed signatures later.
fn check_key_material(jwk: &Jwk) -> Result<(), String> {
    match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) => {
            let x = b64url("x", &p.x)?;
            if x.len() != 32 {
                return Err(format!("Ed25519 `x` is {} bytes; expected 32", x.len()));
            }
        }
        AlgorithmParameters::EllipticCurve(p) => {
            for (name, v) in [("x", &p.x), ("y", &p.y)] {
                let b = b64url(name, v)?;
                if b.len() != 32 {
                    return Err(format!("P-256 `{name}` is {} bytes; expected 32", b.len()));
                }
            }
        }
        AlgorithmParameters::RSA(p) => {
            let n = b64url("n", &p.n)?;
            let bytes = n.iter().skip_while(|&&b| b == 0).count();
            if !(MIN_RSA_BYTES..=MAX_RSA_BYTES).contains(&bytes) {
                return Err(format!(
                    "RSA modulus is {} bits; expected 2048 to 8192",
                    bytes * 8
                ));
            }
            let e = b64url("e", &p.e)?;
            if e.is_empty() || e.len() > 4 {
                return Err("RSA exponent `e` is empty or too large".into());
            }
        }
        AlgorithmParameters::OctetKey(_) => return Err("symmetric key".into()),
    }
    Ok(())
}

/// The `alg` of a token's header, checked against the accepted set before
/// anything else is looked at.
fn header_algorithm(token: &str) -> Result<Algorithm, AuthError> {
    let malformed = || AuthError::Invalid("malformed token (not a signed JWT)".into());
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| malformed())?;
    let header: serde_json::Value = serde_json::from_slice(&header).map_err(|_| malformed())?;
    let alg = header
        .get("alg")
        .and_then(|a| a.as_str())
        .ok_or_else(|| AuthError::Invalid("the token header has no `alg`".into()))?;
    match alg {
        "EdDSA" => Ok(Algorithm::EdDSA),
        "ES256" => Ok(Algorithm::ES256),
        "RS256" => Ok(Algorithm::RS256),
        other => {
            // Echo short, plain algorithm names only.
            let shown = if other.len() <= 16 && other.bytes().all(|b| b.is_ascii_alphanumeric()) {
                format!("`{other}`")
            } else {
                "in the header".to_owned()
            };
            Err(AuthError::Invalid(format!(
                "algorithm {shown} is not accepted; expected EdDSA, ES256 or RS256"
            )))
        }
    }
}

/// A short, client-safe reason for a failed decode.
fn reason(kind: &JwtErrorKind) -> String {
    match kind {
        JwtErrorKind::ExpiredSignature => "token expired".into(),
        JwtErrorKind::ImmatureSignature => "token not yet valid (nbf)".into(),
        JwtErrorKind::InvalidAudience => "wrong audience".into(),
        JwtErrorKind::InvalidIssuer => "wrong issuer".into(),
        JwtErrorKind::InvalidSignature | JwtErrorKind::Crypto(_) => "bad signature".into(),
        JwtErrorKind::MissingRequiredClaim(c) => format!("missing claim `{c}`"),
        JwtErrorKind::InvalidAlgorithm => "the token's algorithm does not match its key".into(),
        JwtErrorKind::Json(_) => "malformed claims".into(),
        _ => "malformed token".into(),
    }
}

impl Verifier for JwtVerifier {
    fn verify(&self, bearer_token: &str) -> Result<Principal, AuthError> {
        let alg = header_algorithm(bearer_token)?;
        let header = jsonwebtoken::decode_header(bearer_token)
            .map_err(|e| AuthError::Invalid(reason(e.kind())))?;
        let key = self.key_for(header.kid.as_deref())?;
        if key.alg != alg {
            return Err(AuthError::Invalid(
                "the token's algorithm does not match its key".into(),
            ));
        }
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(bearer_token, &key.key, &validation)
            .map_err(|e| AuthError::Invalid(reason(e.kind())))?;
        let claims = data.claims;
        let subject = match claims.sub {
            Some(s) if !s.trim().is_empty() => s,
            Some(_) => return Err(AuthError::Invalid("empty subject (sub)".into())),
            None => return Err(AuthError::Invalid("missing claim `sub`".into())),
        };
        let mut scopes: Vec<String> = claims
            .scope
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        match claims.scp {
            Some(ScopeClaim::Many(list)) => scopes.extend(list),
            Some(ScopeClaim::One(s)) => scopes.extend(s.split_whitespace().map(str::to_owned)),
            None => {}
        }
        // Keep the first of repeated scopes, in claim order.
        let mut seen = std::collections::HashSet::new();
        scopes.retain(|s| seen.insert(s.clone()));
        if !scopes.contains(&self.required_scope) {
            return Err(AuthError::MissingScope(format!(
                "the token lacks the scope `{}`",
                self.required_scope
            )));
        }
        Ok(Principal { subject, scopes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_algorithms() {
        let tok = |h: &str| format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(h));
        assert_eq!(
            header_algorithm(&tok(r#"{"alg":"EdDSA"}"#)),
            Ok(Algorithm::EdDSA)
        );
        assert_eq!(
            header_algorithm(&tok(r#"{"alg":"RS256","kid":"k"}"#)),
            Ok(Algorithm::RS256)
        );
        for (h, want) in [
            (r#"{"alg":"none"}"#, "algorithm `none` is not accepted"),
            (r#"{"alg":"HS256"}"#, "algorithm `HS256` is not accepted"),
            (r#"{"alg":"PS256"}"#, "algorithm `PS256` is not accepted"),
            (r#"{"alg":"<script>"}"#, "algorithm in the header is not"),
            (r#"{"typ":"JWT"}"#, "has no `alg`"),
            ("not json", "malformed token"),
        ] {
            let e = header_algorithm(&tok(h)).expect_err(h);
            assert!(e.to_string().contains(want), "{h}: {e}");
        }
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.x"] {
            assert!(header_algorithm(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jwks_rules() {
        let ed = r#"{"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        assert_eq!(
            parse_jwks(&format!(r#"{{"keys":[{ed}]}}"#)).map(|k| k.len()),
            Ok(1)
        );
        let cases = [
            ("[]".to_owned(), "no `keys` array"),
            ("{".to_owned(), "invalid JSON"),
            (r#"{"keys":[]}"#.to_owned(), "no usable signing key"),
            (
                r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}"#.to_owned(),
                "no usable signing key",
            ),
            (
                format!(
                    r#"{{"keys":[{}]}}"#,
                    ed.replace(r#""kty""#, r#""use":"enc","kty""#)
                ),
                "no usable signing key",
            ),
            (
                format!(r#"{{"keys":[{ed},{ed}]}}"#),
                "kid `a` is used by an earlier key",
            ),
            (
                format!(r#"{{"keys":[{}]}}"#, ed.replace("11qY", "")),
                "Ed25519 `x` is",
            ),
            (
                r#"{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}"#.to_owned(),
                "RSA modulus is 24 bits",
            ),
        ];
        for (text, want) in cases {
            let e = parse_jwks(&text).err().unwrap_or_default();
            assert!(e.contains(want), "{text}\n=> {e}");
        }
    }
}
