//! An `s2cs` (the control process) under test: started in a testbed
//! namespace or in this process's namespace with one of the
//! `configs/control-testbed-*.toml` examples made unique per test, driven
//! through its admin socket. Also its throwaway certificates and token file,
//! and the s2ds config edit that hands keying to it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::gateway::{crash, terminate};
use crate::netns::{Node, Testbed};
use crate::paths::{configs_dir, script, workspace_bin};
use crate::scratch::unique;

/// The bearer token of user `testuser` (the example configs' allow rule)
/// in the token file every [`ControlPlane`] gets.
pub const TEST_TOKEN: &str = "s2-test-token-3f9a1c7e5b2d4860";

/// Writes `dir/tokens.toml` (mode 0600) holding only the hash of
/// [`TEST_TOKEN`] for `testuser`, made by `s2cs hash-token`.
fn write_token_file(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let mut child = Command::new(s2cs_bin())
        .args(["hash-token", "--identity", "testuser"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run s2cs hash-token");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(TEST_TOKEN.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "s2cs hash-token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("tokens.toml");
    std::fs::write(&path, &out.stdout).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The `s2cs` binary under test (see [`workspace_bin`]: cargo gives its path
/// only to the control crate's own tests, and it is the same file).
fn s2cs_bin() -> PathBuf {
    workspace_bin(None, "s2cs")
}

/// A CA with certificates for `names` in `dir` (`ca.pem`, `NAME.pem`,
/// `NAME.key`), made by scripts/gen-certs.sh.
pub fn gen_certs(dir: &Path, names: &[&str]) {
    let out = Command::new(script("gen-certs.sh"))
        .arg(dir)
        .args(names)
        .output()
        .expect("run gen-certs.sh");
    assert!(
        out.status.success(),
        "gen-certs.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `s2cs`; stopped on drop, its region file removed.
pub struct ControlPlane {
    child: Option<Child>,
    /// The namespace it runs in (None: this process's).
    ns: Option<String>,
    /// Its config file.
    pub config: PathBuf,
    /// Its log (stdout and stderr, appended across restarts).
    pub log: PathBuf,
    /// Its admin socket.
    pub admin: PathBuf,
    /// The shared-memory region it writes.
    pub shm: PathBuf,
    dir: PathBuf,
}

impl ControlPlane {
    /// Starts `s2cs run` in `node`'s namespace with
    /// `configs/control-testbed-<gw>.toml`, rewritten so that the admin
    /// socket, registry and region are unique to this test, the
    /// certificates come from `certs`, and `edit` applied last.
    pub fn start(
        tb: &Testbed,
        node: Node,
        gw: &str,
        certs: &Path,
        edit: impl FnOnce(&mut toml::Table),
    ) -> ControlPlane {
        Self::start_in(Some(tb.ns(node)), gw, certs, edit)
    }

    /// Like [`ControlPlane::start`], in this process's network namespace
    /// (`edit` must then move the listen addresses to loopback).
    pub fn start_local(
        gw: &str,
        certs: &Path,
        edit: impl FnOnce(&mut toml::Table),
    ) -> ControlPlane {
        Self::start_in(None, gw, certs, edit)
    }

    /// Writes the config and starts `s2cs` in `ns` (None: this process's
    /// namespace).
    fn start_in(
        ns: Option<String>,
        gw: &str,
        certs: &Path,
        edit: impl FnOnce(&mut toml::Table),
    ) -> ControlPlane {
        let id = unique(gw);
        let dir = std::env::temp_dir().join(format!("s2cs-test-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = configs_dir().join(format!("control-testbed-{gw}.toml"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut t: toml::Table = toml::from_str(&text).unwrap();
        let shm = PathBuf::from(format!("/dev/shm/scistream-test-{id}"));
        let admin = dir.join("admin").join("s2cs.sock");
        let set = |t: &mut toml::Table, section: &str, key: &str, v: toml::Value| {
            t[section].as_table_mut().unwrap().insert(key.into(), v);
        };
        set(
            &mut t,
            "identity",
            "cert",
            certs.join(format!("{gw}.pem")).display().to_string().into(),
        );
        set(
            &mut t,
            "identity",
            "key",
            certs.join(format!("{gw}.key")).display().to_string().into(),
        );
        set(
            &mut t,
            "control",
            "admin_socket",
            admin.display().to_string().into(),
        );
        set(&mut t, "shm", "path", shm.display().to_string().into());
        set(
            &mut t,
            "registry",
            "path",
            dir.join("registry.db").display().to_string().into(),
        );
        if let Some(auth) = t.get_mut("auth").and_then(|a| a.as_table_mut()) {
            if auth.get("mode").and_then(|m| m.as_str()) == Some("token_file") {
                let tokens = write_token_file(&dir);
                auth.insert("token_file".into(), tokens.display().to_string().into());
            }
        }
        for p in t["peers"].as_array_mut().unwrap() {
            let p = p.as_table_mut().unwrap();
            if p.contains_key("ca") {
                p.insert(
                    "ca".into(),
                    certs.join("ca.pem").display().to_string().into(),
                );
            }
        }
        edit(&mut t);
        let config = dir.join("s2cs.toml");
        std::fs::write(&config, toml::to_string(&t).unwrap()).unwrap();
        let mut c = ControlPlane {
            child: None,
            ns,
            config,
            log: dir.join("s2cs.log"),
            admin,
            shm,
            dir,
        };
        c.spawn();
        c
    }

    /// Starts `s2cs run` (again), appending to its log, and waits until its
    /// admin socket accepts connections (panics after 20 s, with the log).
    fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.admin);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(s2cs_bin());
                c
            }
            None => Command::new(s2cs_bin()),
        };
        let child = cmd
            .arg("run")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("spawn s2cs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if UnixStream::connect(&self.admin).is_ok() {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "s2cs exited with {st} before it was ready:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("s2cs not ready within 20 s:\n{}", self.log_text());
    }

    /// The directory holding its configuration, registry and log.
    pub fn dir_path(&self) -> &Path {
        &self.dir
    }

    /// Sends one admin request and returns the reply.
    pub fn admin(&self, request: Value) -> Value {
        let mut s = UnixStream::connect(&self.admin).expect("connect to the admin socket");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut line = request.to_string();
        line.push('\n');
        s.write_all(line.as_bytes()).unwrap();
        let mut reply = String::new();
        BufReader::new(s)
            .read_line(&mut reply)
            .expect("admin reply");
        serde_json::from_str(&reply).expect("admin reply is JSON")
    }

    /// Sends a request that must succeed; panics with the log otherwise.
    pub fn admin_ok(&self, request: Value) -> Value {
        let r = self.admin(request.clone());
        assert_eq!(r["ok"], true, "{request} → {r}\n{}", self.log_text());
        r
    }

    /// The session `uid` as `status` shows it.
    pub fn status(&self, uid: &str) -> Value {
        self.admin_ok(serde_json::json!({"op": "status", "uid": uid}))["session"].clone()
    }

    /// Waits until session `uid` has negotiated keys of epoch >= `epoch`.
    pub fn wait_epoch(&self, uid: &str, epoch: u64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status(uid);
            if s["negotiated"] == true && s["epoch"].as_u64().unwrap_or(0) >= epoch {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "session {uid} did not reach epoch {epoch}: {s}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id of the running `s2cs`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Kills it with SIGKILL (a crash).
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            crash(child);
        }
    }

    /// Starts it again after [`ControlPlane::kill`].
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running s2cs");
        self.spawn();
    }

    /// Stops it with SIGTERM; true if it exited cleanly.
    pub fn stop(&mut self) -> bool {
        self.child.take().is_none_or(terminate)
    }
}

impl Drop for ControlPlane {
    /// Stops it and removes its region; removes its directory, or on a panic
    /// keeps it and prints the log.
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.shm);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "s2cs log kept at {}:\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// Turns a manually keyed testbed s2ds config into one keyed by s2cs
/// through the region at `shm`.
pub fn keyed_by_control(shm: &Path) -> impl FnOnce(&mut toml::Table) + '_ {
    move |t: &mut toml::Table| {
        for k in ["sas", "tunnel_routes", "listeners"] {
            t.remove(k);
        }
        let tunnel = t["tunnel"].as_table_mut().unwrap();
        tunnel.insert("keying".into(), "control".into());
        tunnel.insert("shm_path".into(), shm.display().to_string().into());
    }
}
