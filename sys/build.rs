//! Generates the FFI bindings with bindgen over the system headers:
//! libxdp's AF_XDP socket API always, DPDK when the `dpdk` feature is on,
//! intel-ipsec-mb when the `ipsec-mb` feature is on.
//! Static inline functions are wrapped with bindgen's `wrap_static_fns`;
//! the few DPDK macros we need are exposed by `src/shim.c`. intel-ipsec-mb's
//! API macros call through the `IMB_MGR` function pointers, which the bindings
//! expose as struct fields, so it needs no shim.

use std::env;
use std::path::{Path, PathBuf};

#[path = "build/probe.rs"]
mod probe;

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    for f in [
        "build/probe.rs",
        "src/dpdk.h",
        "src/xdp.h",
        "src/ipsec_mb.h",
        "src/shim.c",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=IPSEC_MB_PREFIX");

    let xdp = probe::probe("libxdp", "1.2", true, probe::XDP_MISSING).unwrap_or_else(|m| fail(m));
    probe::probe("libbpf", "0.8", true, probe::XDP_MISSING).unwrap_or_else(|m| fail(m));
    // libxdp's ring helpers are C99 `inline`; gnu89 semantics make them
    // `static inline`, which wrap_static_fns turns into callable wrappers.
    let mut xdp_cflags = xdp.cflags.clone();
    xdp_cflags.push("-fgnu89-inline".into());
    generate(
        &out,
        "xdp",
        "src/xdp.h",
        &xdp_cflags,
        &["xsk_.*", "xdp_.*"],
        &["XDP_.*", "XSK_.*"],
    );

    if env::var_os("CARGO_FEATURE_IPSEC_MB").is_some() {
        ipsec_mb(&out);
    }

    if env::var_os("CARGO_FEATURE_DPDK").is_some() {
        let dpdk =
            probe::probe("libdpdk", "22.11", true, probe::DPDK_MISSING).unwrap_or_else(|m| fail(m));
        generate(
            &out,
            "dpdk",
            "src/dpdk.h",
            &dpdk.cflags,
            &["rte_.*", "scistream_.*"],
            &["RTE_.*"],
        );
        compile_c(&out, "dpdk", &["src/shim.c"], &dpdk.cflags);
        // libdpdk.pc links DPDK's core libraries only; drivers are EAL plugins
        // loaded at run time. We call functions of two of them directly
        // (rte_vdev_init/rte_vdev_uninit; rte_eth_from_rings), so link those as
        // well; EAL's plugin loading then finds them already loaded.
        for lib in ["rte_bus_vdev", "rte_net_ring"] {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
    }
}

/// Bindings to intel-ipsec-mb: the manager (`IMB_MGR`, whose function
/// pointers are the API), its set-up and the GCM key and context types.
/// Found by looking for the header and library (Debian ships no .pc file).
fn ipsec_mb(out: &Path) {
    let mut prefixes: Vec<PathBuf> = env::var_os("IPSEC_MB_PREFIX")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    prefixes.extend(probe::IPSEC_MB_PREFIXES.iter().map(PathBuf::from));
    let found = probe::probe_ipsec_mb(&prefixes).unwrap_or_else(|m| fail(m));
    println!("cargo:rustc-link-search=native={}", found.lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=IPSec_MB");
    println!(
        "cargo:rustc-env=SCISTREAM_IPSEC_MB_HEADER_VERSION={}",
        found.version
    );
    // The library is built with LINUX defined, which the header needs to give
    // gcm_key_data its 64-byte alignment (the AVX-512 code uses aligned loads).
    // NO_COMPAT_IMB_API_053 drops the pre-0.53 short macro names (`GCM`, ...),
    // which would otherwise rename the job's `u.GCM` field.
    let cflags = [
        format!("-I{}", found.include_dir.display()),
        "-DLINUX".to_string(),
        "-DNO_COMPAT_IMB_API_053".to_string(),
    ];
    let bindings = bindgen::Builder::default()
        .header("src/ipsec_mb.h")
        .clang_args(&cflags)
        .derive_default(true)
        .derive_debug(false)
        .layout_tests(true)
        .generate_comments(false)
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .allowlist_function("alloc_mb_mgr|free_mb_mgr|init_mb_mgr_auto")
        .allowlist_function("imb_get_(version|version_str|errno|strerror|feature_flags)")
        .allowlist_type("IMB_MGR|IMB_JOB|IMB_ARCH|gcm_key_data|gcm_context_data")
        .allowlist_var("IMB_(VERSION_NUM|FEATURE_.*|FLAG_.*|MAX_BURST_SIZE)")
        .allowlist_var("IMB_(ARCH|STATUS|CIPHER|DIR|AUTH|ORDER|KEY)_.*")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| {
            fail(format!(
                "scistream-sys: bindgen failed on src/ipsec_mb.h: {e}"
            ))
        });
    bindings
        .write_to_file(out.join("ipsec_mb.rs"))
        .expect("write bindings");
}

fn fail(message: String) -> ! {
    // One line, no backtrace: say what to install and how to build without it.
    eprintln!("{message}");
    println!("cargo:warning={message}");
    std::process::exit(1);
}

/// Runs bindgen over `header`, writing `<name>.rs` and the wrappers for static
/// inline functions, which are compiled into `lib<name>_static.a`.
fn generate(out: &Path, name: &str, header: &str, cflags: &[String], fns: &[&str], vars: &[&str]) {
    let wrappers = out.join(format!("{name}_static_fns"));
    let mut builder = bindgen::Builder::default()
        .header(header)
        .clang_args(cflags)
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrappers)
        .derive_default(true)
        .derive_debug(false)
        .layout_tests(true)
        .generate_comments(false)
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        // Packed protocol headers that Rust cannot lay out (packed holding
        // aligned); we parse wire formats in Rust and never need these.
        .opaque_type("rte_l2tpv2_.*")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for f in fns {
        builder = builder.allowlist_function(f).allowlist_type(f);
    }
    for v in vars {
        builder = builder.allowlist_var(v);
    }
    let bindings = builder
        .generate()
        .unwrap_or_else(|e| fail(format!("scistream-sys: bindgen failed on {header}: {e}")));
    bindings
        .write_to_file(out.join(format!("{name}.rs")))
        .expect("write bindings");
    // The generated wrapper file includes the header by absolute path.
    let wrapper_c = wrappers.with_extension("c");
    let body = std::fs::read_to_string(&wrapper_c).expect("read static fn wrappers");
    let abs = std::fs::canonicalize(header).expect("header path");
    std::fs::write(
        &wrapper_c,
        body.replace(
            &format!("#include \"{header}\""),
            &format!("#include \"{}\"", abs.display()),
        ),
    )
    .expect("write static fn wrappers");
    compile_c(
        out,
        &format!("{name}_static"),
        &[wrapper_c.to_str().unwrap()],
        cflags,
    );
}

fn compile_c(out: &Path, lib: &str, files: &[&str], cflags: &[String]) {
    let mut build = cc::Build::new();
    build.opt_level(3).warnings(false).out_dir(out).include(".");
    let mut it = cflags.iter();
    while let Some(flag) = it.next() {
        if flag == "-include" {
            if let Some(h) = it.next() {
                build.flag("-include").flag(h);
            }
        } else if let Some(dir) = flag.strip_prefix("-I") {
            build.include(dir);
        } else {
            build.flag(flag);
        }
    }
    for f in files {
        build.file(f);
    }
    build.compile(lib);
}
