//! The static token file (`TokenFileVerifier::load`: TOML, identities,
//! scopes, and each `pbkdf2-sha256$iterations$salt$hash` string) over
//! arbitrary text, and `TokenHash` parsing on its own (a parsed hash prints
//! back to a string that parses to the same hash). Refusals are errors
//! that name the line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scistream_control::auth::{TokenFileVerifier, TokenHash};

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("s2cs-fuzz-tokens-{}", std::process::id()));
    std::fs::write(&path, data).expect("write the token file");
    match TokenFileVerifier::load(&path) {
        Ok(v) => assert!(!v.is_empty(), "a token file without tokens was accepted"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = std::fs::remove_file(&path);
    // The hash strings on their own, as the file's entries are parsed.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(h) = text.parse::<TokenHash>() {
            let again: TokenHash = h.to_string().parse().expect("a printed hash parses");
            assert_eq!(again, h);
        }
    }
});
