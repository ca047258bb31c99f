//! Finding the system libraries the bindings are generated from.
//!
//! Shared by `build.rs` and by `tests/probe.rs`, so the "library missing"
//! message is tested without a rebuild.

/// What the build needs from pkg-config for one library.
#[derive(Debug, Clone)]
pub struct Found {
    /// Every cflag pkg-config gives (`-include rte_config.h`, `-march=...`, defines).
    pub cflags: Vec<String>,
}

/// The one-line message printed when libdpdk cannot be found.
pub const DPDK_MISSING: &str = "scistream-sys: libdpdk not found by pkg-config. Install it with `apt-get install -y libdpdk-dev dpdk pkg-config clang libclang-dev` (or run scripts/setup.sh), or build without DPDK: `cargo build --no-default-features` (AF_XDP and TAP backends only).";

/// The one-line message printed when libxdp cannot be found.
pub const XDP_MISSING: &str = "scistream-sys: libxdp/libbpf not found by pkg-config. Install them with `apt-get install -y libxdp-dev libbpf-dev pkg-config clang libclang-dev` (or run scripts/setup.sh).";

/// Looks up `lib` with pkg-config. `emit` makes pkg-config print the cargo
/// link lines (only the build script wants that). On failure returns `missing`.
pub fn probe(lib: &str, min_version: &str, emit: bool, missing: &str) -> Result<Found, String> {
    let cflags = std::process::Command::new("pkg-config")
        .args(["--cflags", lib])
        .output()
        .map_err(|_| missing.to_string())?;
    if !cflags.status.success() {
        return Err(missing.to_string());
    }
    pkg_config::Config::new()
        .atleast_version(min_version)
        .cargo_metadata(emit)
        .probe(lib)
        .map_err(|_| missing.to_string())?;
    let cflags = String::from_utf8_lossy(&cflags.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect::<Vec<_>>();
    Ok(Found { cflags })
}
