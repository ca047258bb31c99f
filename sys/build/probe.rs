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

/// The one-line message printed when intel-ipsec-mb cannot be found.
pub const IPSEC_MB_MISSING: &str = "scistream-sys: intel-ipsec-mb 1.3 or later not found (intel-ipsec-mb.h and libIPSec_MB.so). Install it with `apt-get install -y libipsec-mb-dev` (or run scripts/setup.sh), or build without it: `cargo build --no-default-features --features dpdk` (AEAD engines ring and aes-gcm only).";

/// Where the build looks for intel-ipsec-mb by default: Debian's prefix, then
/// a `make install` from source. `IPSEC_MB_PREFIX`, if set, is tried first.
pub const IPSEC_MB_PREFIXES: [&str; 2] = ["/usr", "/usr/local"];

/// What the build needs to know about an intel-ipsec-mb installation
/// (Debian ships neither a pkg-config file nor a CMake config for it).
#[derive(Debug, Clone)]
pub struct IpsecMb {
    /// The directory holding `intel-ipsec-mb.h`.
    pub include_dir: std::path::PathBuf,
    /// The directory holding `libIPSec_MB.so`.
    pub lib_dir: std::path::PathBuf,
    /// `IMB_VERSION_STR` from the header, e.g. `"1.3.0"`.
    pub version: String,
}

/// Looks for the intel-ipsec-mb header and shared library under each prefix
/// in turn (`include/`, and `lib/<multiarch>`, `lib64` or `lib`), and checks
/// that the header is version 1.3 or later. On failure returns
/// [`IPSEC_MB_MISSING`].
pub fn probe_ipsec_mb<P: AsRef<std::path::Path>>(prefixes: &[P]) -> Result<IpsecMb, String> {
    const LIB_DIRS: [&str; 4] = [
        "lib/x86_64-linux-gnu",
        "lib/aarch64-linux-gnu",
        "lib64",
        "lib",
    ];
    for prefix in prefixes {
        let prefix = prefix.as_ref();
        let include_dir = prefix.join("include");
        let Ok(header) = std::fs::read_to_string(include_dir.join("intel-ipsec-mb.h")) else {
            continue;
        };
        let Some(version) = header_version(&header) else {
            continue;
        };
        let lib_dir = LIB_DIRS
            .iter()
            .map(|d| prefix.join(d))
            .find(|d| d.join("libIPSec_MB.so").exists());
        if let (Some(lib_dir), true) = (lib_dir, at_least(&version, (1, 3))) {
            return Ok(IpsecMb {
                include_dir,
                lib_dir,
                version,
            });
        }
    }
    Err(IPSEC_MB_MISSING.to_string())
}

/// `IMB_VERSION_STR` of an intel-ipsec-mb header.
fn header_version(header: &str) -> Option<String> {
    header.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("#define")?.trim_start();
        let value = rest.strip_prefix("IMB_VERSION_STR")?.trim();
        Some(value.trim_matches('"').to_string())
    })
}

/// Whether `version` ("major.minor[.patch]") is at least `min`.
fn at_least(version: &str, min: (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= min
}
