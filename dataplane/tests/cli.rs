//! The `s2ds` command line, run as a user would: `check-config` on every
//! example file and on broken files, `stats` without a running gateway, help.

use std::path::PathBuf;
use std::process::{Command, Output};

use scistream_testbed::paths::configs_dir;
use scistream_testbed::scratch::ScratchDir;

fn s2ds(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_s2ds"))
        .args(args)
        .output()
        .expect("run s2ds")
}

fn configs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(configs_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        // control-*.toml configure s2cs (checked by the control crate's tests).
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("control-"))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn check_config_accepts_every_example() {
    let files = configs();
    assert!(files.len() >= 11, "examples present: {files:?}");
    for f in files {
        let out = s2ds(&["check-config", f.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(": ok (gateway "), "{stdout}");
    }
}

#[test]
fn check_config_names_file_line_and_key() {
    let dir = ScratchDir::new("s2ds-cli");
    let cases = [
        ("unknown.toml", "[gateway]\nname = \"gw\"\ncolour = \"red\"\n", ":3:1: key `gateway.colour`: unknown key `colour`"),
        (
            "badip.toml",
            "[gateway]\nname = \"gw\"\n[workers]\ncores = [1]\n[ports.lan]\nbackend = \"tap\"\ninterface = \"t0\"\naddress = \"10.10.1.300/24\"\n[ports.wan]\nbackend = \"tap\"\ninterface = \"t1\"\naddress = \"10.10.2.1/24\"\n",
            ":8:11: key `ports.lan.address`:",
        ),
        (
            "nowan.toml",
            "[gateway]\nname = \"gw\"\n[workers]\ncores = [1]\n[ports.lan]\nbackend = \"tap\"\ninterface = \"t0\"\naddress = \"10.10.1.1/24\"\n",
            ":5:2: key `ports.wan`: missing required key `wan` in [ports]",
        ),
    ];
    for (name, body, want) in cases {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        let out = s2ds(&["check-config", p.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.starts_with(p.to_str().unwrap()),
            "names the file: {stderr}"
        );
        assert!(stderr.contains(want), "{stderr} should contain {want}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    }
    let missing = dir.join("absent.toml");
    let out = s2ds(&["check-config", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.toml: cannot read"));
}

#[test]
fn stats_without_a_running_gateway_says_so() {
    let out = s2ds(&[
        "stats",
        "--path",
        "/nonexistent/s2ds.stats.json",
        "--count",
        "1",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/s2ds.stats.json: cannot read stats snapshot"),
        "{stderr}"
    );
    assert!(stderr.contains("is `s2ds run` running?"), "{stderr}");
}

#[test]
fn help_lists_the_subcommands() {
    let out = s2ds(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["run", "check-config", "stats"] {
        assert!(text.contains(sub), "{text}");
    }
}
