//! Token hashes as stored in the token file:
//! `pbkdf2-sha256$<iterations>$<salt>$<digest>`, salt and digest in
//! unpadded standard base64, the digest being PBKDF2-HMAC-SHA256 of the
//! token (32 bytes).
//!
//! Tokens are random, high-entropy secrets (32 random bytes from
//! [`generate_token`]), not passwords: the salt keeps equal tokens from
//! having equal hashes and the iterations only add a modest cost to
//! brute-forcing a stolen file, so the default is a moderate
//! [`DEFAULT_PBKDF2_ITERATIONS`].

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, Engine};
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

use super::AuthLoadError;

/// Default PBKDF2 iteration count of new hashes.
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 10_000;
/// Smallest iteration count accepted in a token file.
pub const MIN_PBKDF2_ITERATIONS: u32 = 1_000;
/// Largest iteration count accepted in a token file (more would make each
/// cache miss take seconds).
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// Length of the salt of new hashes.
const SALT_LEN: usize = 16;
/// Shortest salt accepted in a token file.
const MIN_SALT_LEN: usize = 8;
/// Longest salt accepted in a token file.
const MAX_SALT_LEN: usize = 64;
/// Length of a PBKDF2-HMAC-SHA256 digest.
const DIGEST_LEN: usize = 32;
/// Random bytes in a generated token.
const TOKEN_BYTES: usize = 32;
/// The scheme tag that starts every hash string.
const SCHEME: &str = "pbkdf2-sha256";

/// Standard base64 alphabet, written without padding, read with or without.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A salted PBKDF2-HMAC-SHA256 hash of a token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    digest: [u8; DIGEST_LEN],
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The digest is not secret, but there is no reason to spread it.
        f.debug_struct("TokenHash")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl TokenHash {
    /// The iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations.get()
    }

    /// True if `token` hashes to this digest (constant-time comparison).
    pub fn matches(&self, token: &str) -> bool {
        pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            self.iterations,
            &self.salt,
            token.as_bytes(),
            &self.digest,
        )
        .is_ok()
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}${}${}${}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.digest)
        )
    }
}

impl FromStr for TokenHash {
    type Err = String;

    fn from_str(s: &str) -> Result<TokenHash, String> {
        let format = "expected `pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>` as printed by `s2cs hash-token`";
        let parts: Vec<&str> = s.split('$').collect();
        let [scheme, iterations, salt, digest] = parts.as_slice() else {
            return Err(format!("malformed hash; {format}"));
        };
        if *scheme != SCHEME {
            return Err(format!("unknown hash scheme `{scheme}`; {format}"));
        }
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| format!("iteration count `{iterations}` is not a number; {format}"))?;
        if !(MIN_PBKDF2_ITERATIONS..=MAX_PBKDF2_ITERATIONS).contains(&iterations) {
            return Err(format!(
                "iteration count {iterations} is out of range; expected {MIN_PBKDF2_ITERATIONS} to {MAX_PBKDF2_ITERATIONS}"
            ));
        }
        let salt = B64
            .decode(salt)
            .map_err(|e| format!("salt is not base64: {e}"))?;
        if !(MIN_SALT_LEN..=MAX_SALT_LEN).contains(&salt.len()) {
            return Err(format!(
                "salt is {} bytes; expected {MIN_SALT_LEN} to {MAX_SALT_LEN}",
                salt.len()
            ));
        }
        let digest = B64
            .decode(digest)
            .map_err(|e| format!("hash is not base64: {e}"))?;
        let digest: [u8; DIGEST_LEN] = digest.as_slice().try_into().map_err(|_| {
            format!(
                "hash is {} bytes; expected {DIGEST_LEN} (PBKDF2-HMAC-SHA256)",
                digest.len()
            )
        })?;
        Ok(TokenHash {
            iterations: NonZeroU32::new(iterations).ok_or("iteration count 0")?,
            salt,
            digest,
        })
    }
}

/// Hashes `token` with a fresh random 16-byte salt and `iterations`
/// rounds ([`MIN_PBKDF2_ITERATIONS`]..=[`MAX_PBKDF2_ITERATIONS`]).
pub fn hash_token(token: &str, iterations: u32) -> Result<TokenHash, AuthLoadError> {
    if !(MIN_PBKDF2_ITERATIONS..=MAX_PBKDF2_ITERATIONS).contains(&iterations) {
        return Err(AuthLoadError::Hash(format!(
            "iteration count {iterations} is out of range; expected {MIN_PBKDF2_ITERATIONS} to {MAX_PBKDF2_ITERATIONS}"
        )));
    }
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(AuthLoadError::Hash(
            "a token must be non-empty and contain no whitespace".into(),
        ));
    }
    let iterations = NonZeroU32::new(iterations)
        .ok_or_else(|| AuthLoadError::Hash("iteration count 0".into()))?;
    let mut salt = vec![0u8; SALT_LEN];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| AuthLoadError::Hash("the system random generator failed".into()))?;
    let mut digest = [0u8; DIGEST_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        token.as_bytes(),
        &mut digest,
    );
    Ok(TokenHash {
        iterations,
        salt,
        digest,
    })
}

/// A new random token: 32 bytes from the system generator, base64url
/// without padding (43 characters).
pub fn generate_token() -> Result<String, AuthLoadError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| AuthLoadError::Hash("the system random generator failed".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A `[[tokens]]` entry of the token file, as TOML text ending in a
/// newline.
pub fn token_file_entry(identity: &str, scopes: &[String], hash: &TokenHash) -> String {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let scopes: Vec<String> = scopes.iter().map(|s| quote(s)).collect();
    format!(
        "[[tokens]]\nidentity = {}\nhash = {}\nscopes = [{}]\n",
        quote(identity),
        quote(&hash.to_string()),
        scopes.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = hash_token("s3cret-token", MIN_PBKDF2_ITERATIONS).expect("hash");
        let text = h.to_string();
        assert!(text.starts_with("pbkdf2-sha256$1000$"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        let back: TokenHash = text.parse().expect("parse");
        assert_eq!(back, h);
        assert!(back.matches("s3cret-token"));
        assert!(!back.matches("s3cret-tokem"));
        assert!(!back.matches(""));
        // A fresh salt each time: equal tokens, different hashes.
        let again = hash_token("s3cret-token", MIN_PBKDF2_ITERATIONS).expect("hash");
        assert_ne!(again.to_string(), text);
        assert!(again.matches("s3cret-token"));
    }

    #[test]
    fn known_vector() {
        // The published PBKDF2-HMAC-SHA256 test vector: P = "password",
        // S = "salt", c = 4096, dkLen = 32.
        let digest =
            hex::decode("c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a")
                .expect("hex");
        let h = TokenHash {
            iterations: NonZeroU32::new(4096).expect("non-zero"),
            salt: b"salt".to_vec(),
            digest: digest.as_slice().try_into().expect("32 bytes"),
        };
        assert!(h.matches("password"));
        assert!(!h.matches("passwore"));
        assert_eq!(
            h.to_string(),
            format!("pbkdf2-sha256$4096$c2FsdA${}", B64.encode(&digest))
        );
        // Padded base64 is read too (with a salt long enough to be accepted).
        let long = TokenHash {
            salt: b"saltsalt".to_vec(),
            ..h
        };
        let padded = format!(
            "pbkdf2-sha256$4096${}${}",
            base64::engine::general_purpose::STANDARD.encode(b"saltsalt"),
            base64::engine::general_purpose::STANDARD.encode(&digest)
        );
        assert!(padded.contains('='), "{padded}");
        assert_eq!(padded.parse::<TokenHash>().expect("padded"), long);
    }

    #[test]
    fn malformed_hashes() {
        let good = hash_token("t", MIN_PBKDF2_ITERATIONS)
            .expect("hash")
            .to_string();
        let parts: Vec<&str> = good.split('$').collect();
        let cases = [
            ("nonsense".to_owned(), "malformed hash"),
            (
                good.replace("pbkdf2-sha256", "bcrypt"),
                "unknown hash scheme",
            ),
            (good.replace("$1000$", "$x$"), "is not a number"),
            (good.replace("$1000$", "$999$"), "out of range"),
            (format!("{}$1000$!!$%%", parts[0]), "salt is not base64"),
            (
                format!("{}$1000$AAAA${}", parts[0], parts[3]),
                "salt is 3 bytes",
            ),
            (
                format!("{}$1000${}$AAAA", parts[0], parts[2]),
                "hash is 3 bytes",
            ),
        ];
        for (s, want) in cases {
            let e = s.parse::<TokenHash>().expect_err(&s);
            assert!(e.contains(want), "{s}: {e}");
        }
    }

    #[test]
    fn hashing_rules() {
        assert!(hash_token("t", 999).is_err());
        assert!(hash_token("", 1000).is_err());
        assert!(hash_token("a b", 1000).is_err());
    }

    #[test]
    fn generated_tokens() {
        let a = generate_token().expect("token");
        let b = generate_token().expect("token");
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn entry_text() {
        let h = hash_token("tok", MIN_PBKDF2_ITERATIONS).expect("hash");
        let e = token_file_entry("al\"ice", &["a".into(), "b c".into()], &h);
        let v: toml::Table = toml::from_str(&e).expect("valid TOML");
        let t = &v["tokens"][0];
        assert_eq!(t["identity"].as_str(), Some("al\"ice"));
        assert_eq!(t["hash"].as_str(), Some(h.to_string().as_str()));
        assert_eq!(t["scopes"].as_array().map(|a| a.len()), Some(2), "{e}");
    }
}
