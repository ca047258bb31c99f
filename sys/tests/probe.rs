//! Runs the build script's own library checks (not a rebuild): first as the
//! machine is, then pointed at an empty place, and checks the one-line
//! message. The DPDK check is one test, because it changes the process
//! environment; the intel-ipsec-mb check takes its search prefixes as an argument.

use std::path::Path;

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

#[test]
fn ipsec_mb_check_finds_it_or_says_what_to_install() {
    #[cfg(feature = "ipsec-mb")]
    {
        let found = probe::probe_ipsec_mb(&probe::IPSEC_MB_PREFIXES)
            .expect("libipsec-mb-dev is installed by scripts/setup.sh");
        assert!(found.include_dir.join("intel-ipsec-mb.h").is_file());
        assert!(found.lib_dir.join("libIPSec_MB.so").exists());
        assert!(found.version.starts_with("1."), "{}", found.version);
    }

    let root = std::env::temp_dir().join(format!("scistream-no-imb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("include")).unwrap();
    let err = probe::probe_ipsec_mb(&[&root]).unwrap_err();
    assert_eq!(err, probe::IPSEC_MB_MISSING);
    assert_eq!(err.lines().count(), 1, "the message is one line");
    assert!(err.contains("apt-get install -y libipsec-mb-dev"));
    assert!(err.contains("--no-default-features"));

    // A header without its library, then an old header with it, then 1.3.
    let header = |v: &str| format!("#ifndef X\n#define IMB_VERSION_STR \"{v}\"\n#endif\n");
    std::fs::write(root.join("include/intel-ipsec-mb.h"), header("1.3.0")).unwrap();
    assert!(probe::probe_ipsec_mb(&[&root]).is_err());
    std::fs::create_dir_all(root.join("lib64")).unwrap();
    std::fs::write(root.join("lib64/libIPSec_MB.so"), b"").unwrap();
    std::fs::write(root.join("include/intel-ipsec-mb.h"), header("1.2.0")).unwrap();
    assert_eq!(
        probe::probe_ipsec_mb(&[&root]).unwrap_err(),
        probe::IPSEC_MB_MISSING
    );
    std::fs::write(root.join("include/intel-ipsec-mb.h"), header("1.3.0")).unwrap();
    let found = probe::probe_ipsec_mb(&[Path::new("/nonexistent"), &root]).unwrap();
    std::fs::remove_dir_all(&root).ok();
    assert_eq!(found.version, "1.3.0");
    assert_eq!(found.lib_dir, root.join("lib64"));
    assert_eq!(found.include_dir, root.join("include"));
}
