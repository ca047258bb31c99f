//! The `s2cs` configuration loader (`ControlConfig::from_toml`: TOML
//! parsing with located errors, the schema, and validation, which checks
//! that the files it names exist) over arbitrary text. Every refusal must
//! be an error, never a panic, and must render.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use scistream_control::config::ControlConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Relative paths in the file resolve against a directory that does not exist.
    match ControlConfig::from_toml(text, Path::new("/nonexistent/s2cs-fuzz/s2cs.toml")) {
        Ok(c) => {
            let _ = c.peers.len();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
