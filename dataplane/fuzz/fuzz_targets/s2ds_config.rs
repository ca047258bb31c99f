//! The `s2ds` configuration loader (`Config::from_toml`: TOML parsing with
//! located errors, the schema, and validation) over arbitrary text. Every
//! refusal must be an error, never a panic, and must render (the message
//! names the file, line, column and key).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use scistream_dataplane::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text, Path::new("fuzz.toml")) {
        Ok(config) => {
            let _ = config.stats_segment_path();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
