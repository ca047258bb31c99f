//! Authentication and authorization of northbound API callers.
//!
//! A caller sends a bearer token in the gRPC metadata `authorization`
//! (`Bearer <token>`, or the bare token as SciStream's clients send it).
//! [`bearer`] extracts it; a [`Verifier`] turns it into a
//! [`Principal`] (who is calling, with which scopes) or an [`AuthError`]; a
//! [`Policy`] then decides whether that principal may point the gateway at a
//! given endpoint.
//!
//! Verifiers, chosen by `auth.mode` through [`verifier`]:
//! - [`TokenFileVerifier`]: static tokens, stored as salted PBKDF2 hashes
//!   (`s2cs hash-token` makes the entries);
//! - [`JwtVerifier`]: JWT access tokens signed by a key of a JWKS file
//!   (EdDSA, ES256, RS256), with issuer, audience, expiry, not-before and a
//!   required scope checked;
//! - [`AllowAll`]: authentication off (`auth.mode = "none"`, only with
//!   `api.insecure = true`).
//!
//! Every [`AuthError`] maps to a gRPC status ([`AuthError::code`]):
//! missing, malformed or invalid tokens give `UNAUTHENTICATED`; a valid
//! token lacking the required scope, or a target outside the allow-list,
//! gives `PERMISSION_DENIED`. Messages never contain the token.
//!
//! Verification is CPU work (PBKDF2, signature checks; up to a few
//! milliseconds on a cache miss): async callers may want
//! `tokio::task::spawn_blocking` around [`Verifier::verify`].

mod cache;
mod hash;
mod jwt;
mod policy;
mod token_file;

use std::path::PathBuf;
use std::sync::Arc;

use tonic::metadata::MetadataMap;

use crate::config::{AuthMode, AuthSection};

pub use hash::{
    generate_token, hash_token, token_file_entry, TokenHash, DEFAULT_PBKDF2_ITERATIONS,
    MAX_PBKDF2_ITERATIONS, MIN_PBKDF2_ITERATIONS,
};
pub use jwt::JwtVerifier;
pub use policy::Policy;
pub use token_file::TokenFileVerifier;

/// The gRPC metadata key carrying the bearer token.
pub const AUTHORIZATION: &str = "authorization";

/// Who made a request, as established by a [`Verifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The authenticated identity: the token file's `identity`, or the
    /// JWT's `sub`; `"anonymous"` when authentication is off.
    pub subject: String,
    /// The scopes the token carries (token file `scopes`, JWT `scope` /
    /// `scp`), used to match `scope` allow rules.
    pub scopes: Vec<String>,
}

impl Principal {
    /// True if the principal's token carries `scope` exactly.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Why a request was not authenticated or not authorized. Messages are safe
/// to return to the client: they never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization` metadata.
    #[error(
        "missing bearer token: send metadata `authorization: Bearer <token>` (or the bare token)"
    )]
    Missing,
    /// The `authorization` metadata is neither `Bearer <token>` nor a bare
    /// token.
    #[error("malformed authorization metadata: {0}")]
    Malformed(String),
    /// The token is not accepted: unknown, bad signature, expired, not yet
    /// valid, wrong issuer or audience.
    #[error("invalid bearer token: {0}")]
    Invalid(String),
    /// The token is valid but lacks the scope this gateway requires.
    #[error("insufficient scope: {0}")]
    MissingScope(String),
    /// The principal may not use the requested endpoint.
    #[error("forbidden: {0}")]
    Forbidden(String),
}

impl AuthError {
    /// The gRPC status code for this failure: `UNAUTHENTICATED` for
    /// [`Missing`](AuthError::Missing), [`Malformed`](AuthError::Malformed)
    /// and [`Invalid`](AuthError::Invalid); `PERMISSION_DENIED` for
    /// [`MissingScope`](AuthError::MissingScope) and
    /// [`Forbidden`](AuthError::Forbidden).
    pub fn code(&self) -> tonic::Code {
        match self {
            AuthError::Missing | AuthError::Malformed(_) | AuthError::Invalid(_) => {
                tonic::Code::Unauthenticated
            }
            AuthError::MissingScope(_) | AuthError::Forbidden(_) => tonic::Code::PermissionDenied,
        }
    }

    /// The failure's kind as a metric label: `missing`, `malformed`,
    /// `invalid`, `missing_scope` or `forbidden`.
    pub fn reason_label(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::Invalid(_) => "invalid",
            AuthError::MissingScope(_) => "missing_scope",
            AuthError::Forbidden(_) => "forbidden",
        }
    }

    /// The gRPC status to return: [`AuthError::code`] with this error's
    /// message.
    pub fn into_status(self) -> tonic::Status {
        tonic::Status::new(self.code(), self.to_string())
    }
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> tonic::Status {
        e.into_status()
    }
}

/// Why a verifier could not be set up from its files.
#[derive(Debug, thiserror::Error)]
pub enum AuthLoadError {
    /// A file could not be read.
    #[error("cannot read {what} file {}: {source}", path.display())]
    Read {
        /// What the file is ("token", "JWKS").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The token file is malformed.
    #[error("token file {}: {message}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the entry.
        message: String,
    },
    /// The JWKS file is malformed or holds no usable key.
    #[error("JWKS file {}: {message}", path.display())]
    Jwks {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// Hashing a token failed (bad iteration count, no system randomness).
    #[error("cannot hash token: {0}")]
    Hash(String),
}

/// Checks bearer tokens.
pub trait Verifier: Send + Sync + std::fmt::Debug {
    /// The principal `bearer_token` authenticates, or why it does not.
    /// [`AuthError::Invalid`] or [`AuthError::MissingScope`] on failure
    /// ([`AuthError::Missing`] and [`AuthError::Malformed`] come from
    /// [`bearer`]).
    fn verify(&self, bearer_token: &str) -> Result<Principal, AuthError>;

    /// False if every caller is accepted without a token ([`AllowAll`]);
    /// [`authenticate`] then does not look for one.
    fn requires_token(&self) -> bool {
        true
    }
}

/// The verifier of `auth.mode = "none"`: every token, and none, is accepted
/// as `anonymous` with no scopes. Pair it with [`Policy::allow_all`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl AllowAll {
    /// The principal every caller becomes.
    pub fn principal() -> Principal {
        Principal {
            subject: "anonymous".to_owned(),
            scopes: Vec::new(),
        }
    }
}

impl Verifier for AllowAll {
    fn verify(&self, _bearer_token: &str) -> Result<Principal, AuthError> {
        Ok(AllowAll::principal())
    }

    fn requires_token(&self) -> bool {
        false
    }
}

/// The principal behind a request's `metadata`: [`bearer`] then
/// [`Verifier::verify`]; with a verifier that requires no token
/// ([`AllowAll`]) the metadata is not looked at.
pub fn authenticate(
    metadata: &MetadataMap,
    verifier: &dyn Verifier,
) -> Result<Principal, AuthError> {
    if !verifier.requires_token() {
        return verifier.verify("");
    }
    verifier.verify(bearer(metadata)?)
}

/// The verifier `auth` configures. With `auth.mode = "none"` it logs a
/// warning that authentication is off.
pub fn verifier(auth: &AuthSection) -> Result<Arc<dyn Verifier>, AuthLoadError> {
    Ok(match &auth.mode {
        AuthMode::None => {
            tracing::warn!(
                "AUTHENTICATION IS OFF (auth.mode = \"none\", api.insecure = true): anyone who can reach the API can set up sessions to any target"
            );
            Arc::new(AllowAll)
        }
        AuthMode::TokenFile(path) => Arc::new(TokenFileVerifier::load(path)?),
        AuthMode::Jwt(cfg) => Arc::new(JwtVerifier::load(cfg)?),
    })
}

/// The bearer token in `metadata`'s `authorization` entry: either
/// `Bearer <token>` (RFC 6750; the scheme in any case) or the bare token,
/// as SciStream's own clients send it. Anything else (another scheme, an
/// empty value, whitespace inside the token) is [`AuthError::Malformed`].
pub fn bearer(metadata: &MetadataMap) -> Result<&str, AuthError> {
    let value = metadata.get(AUTHORIZATION).ok_or(AuthError::Missing)?;
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed("the value is not printable ASCII".into()))?;
    let value = value.trim();
    let Some((first, rest)) = value.split_once(char::is_whitespace) else {
        // One word: a bare token (SciStream's form), unless it is only the scheme.
        return match value {
            "" => Err(AuthError::Malformed(
                "the value is empty; expected `Bearer <token>` or the token".into(),
            )),
            v if v.eq_ignore_ascii_case("bearer") => {
                Err(AuthError::Malformed("`Bearer` without a token".into()))
            }
            v => Ok(v),
        };
    };
    if !first.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed(
            "not `Bearer <token>` nor a bare token: another scheme, or whitespace inside the token"
                .into(),
        ));
    }
    let token = rest.trim_start();
    if token.contains(char::is_whitespace) {
        return Err(AuthError::Malformed(
            "whitespace inside the token after `Bearer`".into(),
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(value: Option<&str>) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Some(v) = value {
            m.insert(AUTHORIZATION, v.parse().expect("ascii"));
        }
        m
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(&md(Some("Bearer abc.def"))), Ok("abc.def"));
        assert_eq!(bearer(&md(Some("bearer   xyz"))), Ok("xyz"));
        assert_eq!(bearer(&md(Some("BEARER t "))), Ok("t"));
        // SciStream's clients send the token bare.
        assert_eq!(bearer(&md(Some("abc.def-123"))), Ok("abc.def-123"));
        assert_eq!(bearer(&md(Some(" abc \t"))), Ok("abc"));
        assert_eq!(bearer(&md(None)), Err(AuthError::Missing));
        for bad in [
            "",
            "   ",
            "Bearer",
            "Bearer ",
            "bearer\t",
            "Basic dXNlcjpwYXNz",
            "Basic xyz",
            "abc def",
            "Bearer a b",
            "Bearer a\tb",
        ] {
            let e = bearer(&md(Some(bad))).expect_err(bad);
            assert!(matches!(e, AuthError::Malformed(_)), "{bad}: {e:?}");
            assert_eq!(e.code(), tonic::Code::Unauthenticated);
        }
        // The token is never echoed back.
        let e = bearer(&md(Some("Basic s3cr3t"))).expect_err("basic");
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }

    #[test]
    fn status_codes() {
        use tonic::Code;
        let cases = [
            (AuthError::Missing, Code::Unauthenticated),
            (AuthError::Malformed("m".into()), Code::Unauthenticated),
            (
                AuthError::Invalid("token expired".into()),
                Code::Unauthenticated,
            ),
            (AuthError::MissingScope("s".into()), Code::PermissionDenied),
            (AuthError::Forbidden("f".into()), Code::PermissionDenied),
        ];
        for (e, code) in cases {
            let msg = e.to_string();
            let s = e.into_status();
            assert_eq!(s.code(), code);
            assert_eq!(s.message(), msg);
        }
    }

    #[test]
    fn allow_all() {
        let p = AllowAll.verify("anything").expect("allowed");
        assert_eq!(p.subject, "anonymous");
        assert!(p.scopes.is_empty());
        // No metadata needed.
        assert_eq!(
            authenticate(&md(None), &AllowAll),
            Ok(AllowAll::principal())
        );
    }
}
