//! The `s2cs` command line: `check-config` exit codes and messages, `--help`,
//! and `run` starting and stopping on SIGTERM.
//!
//! Certificates come from `scripts/gen-certs.sh` (openssl), which these
//! tests thereby exercise too.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use scistream_testbed::control::gen_certs;
use scistream_testbed::paths::configs_dir;
use scistream_testbed::scratch::free_port;
use tempfile::TempDir;

fn s2cs() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_s2cs"));
    c.env_remove("RUST_LOG");
    c
}

/// A temporary directory holding `gw.toml` (the gwa testbed example) and
/// `certs/` made by `scripts/gen-certs.sh DIR/certs gwa gwb`.
fn setup() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    gen_certs(&dir.path().join("certs"), &["gwa", "gwb"]);
    let config = dir.path().join("gw.toml");
    fs::copy(configs_dir().join("control-testbed-gwa.toml"), &config).expect("copy example");
    // The example's token file: one entry, a hash only, mode 0600.
    let hash = scistream_control::auth::hash_token(
        "cli-test-token",
        scistream_control::auth::MIN_PBKDF2_ITERATIONS,
    )
    .expect("hash");
    let tokens = dir.path().join("tokens.toml");
    fs::write(
        &tokens,
        scistream_control::auth::token_file_entry("testuser", &[], &hash),
    )
    .expect("write tokens.toml");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&tokens, fs::Permissions::from_mode(0o600)).expect("chmod");
    (dir, config)
}

fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run s2cs");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_the_example() {
    let (_dir, config) = setup();
    let (code, out, err) = run(s2cs().arg("check-config").arg(&config));
    assert_eq!(code, Some(0), "stderr: {err}");
    assert!(
        out.starts_with(&format!("{}: ok (gateway gwa,", config.display())),
        "{out}"
    );
    assert!(err.is_empty(), "{err}");
}

#[test]
fn check_config_rejects_with_file_and_line() {
    let (_dir, config) = setup();
    let text = fs::read_to_string(&config).expect("read");
    let bad = text.replacen("sas = 1024", "sas = 0", 1);
    fs::write(&config, &bad).expect("write");
    let line = bad
        .lines()
        .position(|l| l == "sas = 0")
        .expect("edited line")
        + 1;
    let (code, out, err) = run(s2cs().arg("check-config").arg(&config));
    assert_eq!(code, Some(2), "stdout: {out} stderr: {err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(
        err.trim_end(),
        format!(
            "{}:{line}:7: key `shm.sas`: 0 is out of range; expected 1 to 65536",
            config.display()
        )
    );
}

#[test]
fn check_config_rejects_an_unreadable_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("absent.toml");
    let (code, _, err) = run(s2cs().arg("check-config").arg(&missing));
    assert_eq!(code, Some(2));
    assert!(
        err.starts_with(&format!("{}: cannot read", missing.display())),
        "{err}"
    );
}

#[test]
fn help_everywhere() {
    for args in [
        &["--help"][..],
        &["check-config", "--help"],
        &["run", "--help"],
    ] {
        let (code, out, err) = run(s2cs().args(args));
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(out.contains("Usage: s2cs"), "{args:?}: {out}");
    }
    let (code, _, err) = run(s2cs().arg("frobnicate"));
    assert_eq!(code, Some(2), "clap's usage error code");
    assert!(err.contains("unrecognized subcommand"), "{err}");
}

/// Kills the child on drop if the test did not stop it.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Points the example's sockets, region and registry at places this test
/// owns: a free loopback port, the temp dir, a unique /dev/shm name.
fn local_paths(dir: &Path, config: &Path) -> PathBuf {
    // Two ports the kernel gave out as free (port + 1 may well be taken).
    let (port, api_port) = (free_port(), free_port());
    let shm = PathBuf::from(format!("/dev/shm/scistream-cli-{}", std::process::id()));
    let text = fs::read_to_string(config)
        .expect("read config")
        .replace("10.99.0.1:5000", &format!("127.0.0.1:{port}"))
        .replace("10.99.0.1:5001", &format!("127.0.0.1:{api_port}"))
        .replace(
            "/tmp/scistream-testbed/gwa.sock",
            &dir.join("admin/gwa.sock").display().to_string(),
        )
        .replace(
            "/tmp/scistream-testbed/gwa.db",
            &dir.join("gwa.db").display().to_string(),
        )
        .replace("/dev/shm/scistream-testbed-gwa", &shm.display().to_string());
    fs::write(config, text).expect("write config");
    shm
}

/// Removes a file on drop.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn run_reports_ready_and_stops_on_sigterm() {
    let (dir, config) = setup();
    let shm = RemoveOnDrop(local_paths(dir.path(), &config));
    let mut child = ChildGuard(
        s2cs()
            .arg("run")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn s2cs run"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains("s2cs ready") => break line,
            Ok(_) => continue,
            Err(e) => panic!("no `s2cs ready` line: {e}"),
        }
    };
    assert!(ready.contains("gateway=gwa"), "{ready}");
    // The region holds keys and the admin socket creates sessions: both 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&shm.0), 0o600, "region mode");
    assert_eq!(
        mode(&dir.path().join("admin/gwa.sock")),
        0o600,
        "admin socket mode"
    );
    assert_eq!(
        mode(&dir.path().join("admin")),
        0o700,
        "admin socket directory mode"
    );
    let kill = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -TERM failed");
    let status = child.0.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
}
