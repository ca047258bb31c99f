//! Where the things under test are: the repository root with its `configs/`
//! and `scripts/`, the Python interpreter for the scripts, and the
//! workspace's binaries (`s2ds`, `s2cs`, `s2uc`) in cargo's target directory.

use std::path::{Path, PathBuf};

/// Root of the repository (this crate lives in `dataplane/testbed/`).
fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or_else(|| panic!("{} has no grandparent", manifest.display()))
        .to_path_buf()
}

/// The example configurations, `configs/`.
pub fn configs_dir() -> PathBuf {
    repo_root().join("configs")
}

/// `scripts/NAME`.
pub fn script(name: &str) -> PathBuf {
    repo_root().join("scripts").join(name)
}

/// Python interpreter for the scripts: `$S2_PYTHON`, else `/usr/bin/python3`,
/// else `python3`.
pub fn python() -> String {
    if let Ok(p) = std::env::var("S2_PYTHON") {
        if !p.is_empty() {
            return p;
        }
    }
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3".to_string()
    } else {
        "python3".to_string()
    }
}

/// The workspace binary `name`.
///
/// `cargo_path` is what the calling test got from
/// `option_env!("CARGO_BIN_EXE_<name>")`: cargo sets it only for the tests
/// of the package that owns the binary, so pass it where there is one.
/// Otherwise the binary is looked up next to the running test executable
/// (`<target>/<profile>/deps/<test>` → `<target>/<profile>/<name>`, the same
/// path cargo would give, whatever `CARGO_TARGET_DIR` is), where
/// `cargo build --workspace --bins` or `cargo test --workspace` puts it.
/// Panics if it is not there.
pub fn workspace_bin(cargo_path: Option<&str>, name: &str) -> PathBuf {
    if let Some(p) = cargo_path {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("{} is not in <target>/<profile>/deps", exe.display()));
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} not built: run `cargo build --workspace --bins` first",
        bin.display()
    );
    bin
}
