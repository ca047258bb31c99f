//! Runs the build script's own library check (not a rebuild): first as the
//! machine is, then with pkg-config pointed at an empty directory, and checks
//! the one-line message. One test, because it changes the process environment.

#[path = "../build/probe.rs"]
#[allow(dead_code)] // XDP_MISSING is the build script's, not this test's
mod probe;

#[test]
fn libdpdk_check_finds_it_or_says_what_to_install() {
    let found = probe::probe("libdpdk", "22.11", false, probe::DPDK_MISSING)
        .expect("libdpdk is installed by scripts/setup.sh");
    assert!(
        found.cflags.iter().any(|f| f == "rte_config.h"),
        "{:?}",
        found.cflags
    );

    let empty = std::env::temp_dir().join(format!("scistream-no-pc-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    std::env::set_var("PKG_CONFIG_LIBDIR", &empty);
    std::env::set_var("PKG_CONFIG_PATH", &empty);
    let err = probe::probe("libdpdk", "22.11", false, probe::DPDK_MISSING).unwrap_err();
    std::fs::remove_dir_all(&empty).ok();
    assert_eq!(err, probe::DPDK_MISSING);
    assert_eq!(err.lines().count(), 1, "the message is one line");
    assert!(err.contains("apt-get install -y libdpdk-dev"));
    assert!(err.contains("--no-default-features"));
}
