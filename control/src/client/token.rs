//! The bearer token `s2uc` sends in gRPC metadata `authorization`.

use std::fmt;
use std::path::Path;

use tonic::metadata::{Ascii, MetadataValue};

use super::error::ClientError;

/// The environment variable `s2uc` reads the token from when neither
/// `--token` nor `--token-file` is given.
pub const TOKEN_ENV: &str = "S2UC_TOKEN";

/// A bearer token, ready to go in metadata as `authorization: Bearer <t>`.
/// `Debug` does not show it.
#[derive(Clone)]
pub struct BearerToken {
    header: MetadataValue<Ascii>,
}

impl BearerToken {
    /// Checks `token` (surrounding whitespace is dropped; the rest must be
    /// non-empty printable ASCII without spaces, as RFC 6750 tokens are).
    /// `origin` names the source for error messages.
    pub fn new(token: &str, origin: &str) -> Result<BearerToken, ClientError> {
        let bad = |reason| ClientError::BadToken {
            origin: origin.to_string(),
            reason,
        };
        let token = token.trim();
        if token.is_empty() {
            return Err(bad("empty"));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("not printable ASCII without spaces"));
        }
        let header = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| bad("not valid in gRPC metadata"))?;
        Ok(BearerToken { header })
    }

    /// Reads the token from `path` (its whole content, trailing newline
    /// dropped).
    pub fn from_file(path: &Path) -> Result<BearerToken, ClientError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClientError::ReadToken {
            path: path.to_path_buf(),
            source,
        })?;
        BearerToken::new(&text, &format!("--token-file {}", path.display()))
    }

    /// The token `s2uc` uses: `--token`, else `--token-file`, else the value
    /// of [`TOKEN_ENV`] (passed in as `env`), else none.
    pub fn resolve(
        token: Option<&str>,
        token_file: Option<&Path>,
        env: Option<&str>,
    ) -> Result<Option<BearerToken>, ClientError> {
        match (token, token_file, env) {
            (Some(t), _, _) => BearerToken::new(t, "--token").map(Some),
            (None, Some(path), _) => BearerToken::from_file(path).map(Some),
            (None, None, Some(t)) => BearerToken::new(t, TOKEN_ENV).map(Some),
            (None, None, None) => Ok(None),
        }
    }

    /// The metadata value, `Bearer <token>`.
    pub fn header(&self) -> &MetadataValue<Ascii> {
        &self.header
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_bearer_and_trimmed() {
        let t = BearerToken::new("  abc.DEF-123_~+/=\n", "--token").unwrap();
        assert_eq!(t.header().to_str().unwrap(), "Bearer abc.DEF-123_~+/=");
        assert_eq!(format!("{t:?}"), "BearerToken(<redacted>)");
    }

    #[test]
    fn rejects_empty_and_spaces_and_non_ascii() {
        for bad in ["", "  \n", "two words", "caf\u{e9}", "tab\there"] {
            let err = BearerToken::new(bad, "S2UC_TOKEN").unwrap_err();
            assert!(
                matches!(&err, ClientError::BadToken { origin, .. } if origin == "S2UC_TOKEN"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn precedence_is_flag_then_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tok");
        std::fs::write(&file, "from-file\n").unwrap();
        let get = |t: Option<&str>, f: Option<&Path>, e: Option<&str>| {
            BearerToken::resolve(t, f, e)
                .unwrap()
                .map(|b| b.header().to_str().unwrap().to_string())
        };
        assert_eq!(
            get(Some("flag"), Some(&file), Some("env")).as_deref(),
            Some("Bearer flag")
        );
        assert_eq!(
            get(None, Some(&file), Some("env")).as_deref(),
            Some("Bearer from-file")
        );
        assert_eq!(get(None, None, Some("env")).as_deref(), Some("Bearer env"));
        assert_eq!(get(None, None, None), None);
    }

    #[test]
    fn missing_file_names_the_file() {
        let err = BearerToken::from_file(Path::new("/nonexistent/s2uc-token")).unwrap_err();
        assert!(matches!(err, ClientError::ReadToken { .. }));
        assert!(
            err.report().contains("/nonexistent/s2uc-token"),
            "{}",
            err.report()
        );
    }
}
