//! `s2cs` and `s2uc` link no data-plane library: no DPDK (`librte_*`), no
//! libxdp, no libbpf. They depend on the region and configuration crates
//! only, so they install and run on hosts without DPDK.

use std::process::Command;

/// The shared libraries the dynamic loader resolves for `bin` (`ldd`).
fn linked_libraries(bin: &str) -> Vec<String> {
    let out = Command::new("ldd").arg(bin).output().expect("run ldd");
    assert!(
        out.status.success(),
        "ldd {bin}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn control_binaries_link_no_dataplane_library() {
    for bin in [env!("CARGO_BIN_EXE_s2cs"), env!("CARGO_BIN_EXE_s2uc")] {
        let libs = linked_libraries(bin);
        // The listing is real: the C library is always there.
        assert!(
            libs.iter().any(|l| l.starts_with("libc.so")),
            "{bin}: {libs:?}"
        );
        let forbidden: Vec<&String> = libs
            .iter()
            .filter(|l| {
                l.starts_with("librte_") || l.starts_with("libxdp") || l.starts_with("libbpf")
            })
            .collect();
        assert!(forbidden.is_empty(), "{bin} links {forbidden:?}");
    }
}
