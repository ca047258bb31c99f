//! [`TokenFileVerifier`]: static bearer tokens checked against salted
//! PBKDF2 hashes from a TOML file.
//!
//! ```toml
//! [[tokens]]
//! identity = "alice"
//! hash = "pbkdf2-sha256$10000$<salt>$<hash>"
//! scopes = ["scistream"]          # optional
//! ```
//!
//! The file never holds a token, only its hash (`s2cs hash-token` prints
//! entries). A token is checked against every entry; successful checks are
//! cached for [`CACHE_TTL`] under the token's SHA-256.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::cache::VerifiedCache;
use super::hash::TokenHash;
use super::{AuthError, AuthLoadError, Principal, Verifier};

/// How long a verified token is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// How many verified tokens are remembered at most.
pub const CACHE_CAPACITY: usize = 1024;

/// The file as serde sees it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    tokens: Vec<RawToken>,
}

/// One `[[tokens]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    identity: String,
    hash: String,
    #[serde(default)]
    scopes: Vec<String>,
}

/// One valid entry.
#[derive(Debug)]
struct Entry {
    identity: String,
    hash: TokenHash,
    scopes: Vec<String>,
}

/// Verifies bearer tokens against the hashes of a token file.
#[derive(Debug)]
pub struct TokenFileVerifier {
    entries: Vec<Entry>,
    cache: VerifiedCache,
}

impl TokenFileVerifier {
    /// Reads and checks the token file at `path`: valid TOML with at least
    /// one `[[tokens]]` entry, each with a non-empty identity and a
    /// well-formed hash.
    pub fn load(path: &Path) -> Result<TokenFileVerifier, AuthLoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthLoadError::Read {
            what: "token",
            path: path.to_path_buf(),
            source,
        })?;
        TokenFileVerifier::from_toml(&text).map_err(|message| AuthLoadError::TokenFile {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses token-file `text`; the error says what is wrong and where.
    fn from_toml(text: &str) -> Result<TokenFileVerifier, String> {
        // Report the line but not its text: a misplaced plain token must not
        // end up in logs.
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(l) => format!("invalid TOML at line {l}: {}", e.message()),
                None => format!("invalid TOML: {}", e.message()),
            }
        })?;
        if raw.tokens.is_empty() {
            return Err("no [[tokens]] entry; add entries printed by `s2cs hash-token`".into());
        }
        let entries =
            raw.tokens
                .into_iter()
                .enumerate()
                .map(|(i, t)| {
                    if t.identity.trim().is_empty() {
                        return Err(format!("tokens[{i}].identity is empty"));
                    }
                    if let Some(s) = t
                        .scopes
                        .iter()
                        .find(|s| s.is_empty() || s.contains(char::is_whitespace))
                    {
                        return Err(format!(
                        "tokens[{i}] (identity `{}`): scope `{s}` is empty or contains whitespace",
                        t.identity
                    ));
                    }
                    let hash = t.hash.parse::<TokenHash>().map_err(|m| {
                        format!("tokens[{i}].hash (identity `{}`): {m}", t.identity)
                    })?;
                    Ok(Entry {
                        identity: t.identity,
                        hash,
                        scopes: t.scopes,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
        Ok(TokenFileVerifier {
            entries,
            cache: VerifiedCache::new(CACHE_CAPACITY, CACHE_TTL),
        })
    }

    /// How many tokens the file holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the file holds no token (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Verifier for TokenFileVerifier {
    fn verify(&self, bearer_token: &str) -> Result<Principal, AuthError> {
        if let Some(p) = self.cache.get(bearer_token) {
            return Ok(p);
        }
        let entry = self
            .entries
            .iter()
            .find(|e| e.hash.matches(bearer_token))
            .ok_or_else(|| AuthError::Invalid("unknown token".into()))?;
        let principal = Principal {
            subject: entry.identity.clone(),
            scopes: entry.scopes.clone(),
        };
        self.cache.insert(bearer_token, principal.clone());
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::super::hash::{hash_token, token_file_entry, MIN_PBKDF2_ITERATIONS};
    use super::*;

    fn file(entries: &[(&str, &str, &[&str])]) -> String {
        entries
            .iter()
            .map(|(id, tok, scopes)| {
                let h = hash_token(tok, MIN_PBKDF2_ITERATIONS).expect("hash");
                let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
                token_file_entry(id, &scopes, &h)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn verifies_and_caches() {
        let v = TokenFileVerifier::from_toml(&file(&[
            ("alice", "tok-a", &["scistream"]),
            ("bob", "tok-b", &[]),
        ]))
        .expect("load");
        assert_eq!(v.len(), 2);
        let a = v.verify("tok-a").expect("alice");
        assert_eq!(
            a,
            Principal {
                subject: "alice".into(),
                scopes: vec!["scistream".into()]
            }
        );
        assert_eq!(v.verify("tok-b").expect("bob").subject, "bob");
        assert_eq!(v.verify("tok-a").expect("cached"), a);
        let e = v.verify("tok-c").expect_err("unknown");
        assert_eq!(e, AuthError::Invalid("unknown token".into()));
        assert!(!e.to_string().contains("tok-c"));
    }

    #[test]
    fn rejects_bad_files() {
        let good = file(&[("alice", "t", &[])]);
        let cases = [
            ("".to_owned(), "no [[tokens]] entry"),
            ("tokens = 3".to_owned(), "invalid TOML at line 1"),
            (good.replace("scopes", "colour"), "invalid TOML at line 4"),
            ("\n\nsecret-token-text".to_owned(), "invalid TOML at line 3"),
            (
                good.replace("\"alice\"", "\"\""),
                "tokens[0].identity is empty",
            ),
            (
                good.replace("pbkdf2-sha256$", "md5$"),
                "tokens[0].hash (identity `alice`)",
            ),
            (
                good.replace("scopes = []", "scopes = [\"a b\"]"),
                "scope `a b` is empty or contains whitespace",
            ),
        ];
        for (text, want) in cases {
            let e = TokenFileVerifier::from_toml(&text).expect_err(&text);
            assert!(e.contains(want), "{text}\n=> {e}");
            assert!(!e.contains("secret-token-text"), "{e}");
        }
    }
}
