//! An `s2ds` under test: started inside a testbed namespace with one of the
//! example configurations from `configs/`, made unique per test (stats file,
//! EAL file prefix) so that tests run in parallel, and read through its stats
//! snapshot. Also the SIGTERM/SIGKILL stops that [`crate::control`] shares.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use scistream_dataplane::snapshot::Snapshot;

use crate::netns::{signal, Node, Testbed};
use crate::paths::{configs_dir, workspace_bin};

/// Counter behind each gateway's unique id (directory, EAL file prefix).
static SEQ: AtomicU32 = AtomicU32::new(0);

/// A running `s2ds`; stopped with SIGTERM (then SIGKILL) on drop.
pub struct Gateway {
    child: Option<Child>,
    /// The config file it runs with.
    pub config: PathBuf,
    /// Its stats snapshot file.
    pub stats: PathBuf,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
    dir: PathBuf,
    /// The namespace it runs in.
    ns: String,
    /// DPDK's runtime directory for the gateway's `--file-prefix` (DPDK
    /// backends), removed on drop.
    dpdk_runtime: Option<PathBuf>,
}

/// The `s2ds` binary under test (see [`workspace_bin`]: cargo gives its path
/// only to the data plane's own tests, and it is the same file).
fn s2ds_bin() -> PathBuf {
    workspace_bin(None, "s2ds")
}

impl Gateway {
    /// Starts `s2ds run` in `node`'s namespace with `configs/<example>`,
    /// rewritten to use a unique stats path and EAL file prefix, and with
    /// `edit` applied to the parsed TOML. Waits until its stats file shows
    /// it running (panics after 30 s, printing its log).
    pub fn start(
        tb: &Testbed,
        node: Node,
        example: &str,
        edit: impl FnOnce(&mut toml::Table),
    ) -> Gateway {
        let id = format!(
            "{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("s2ds-test-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = configs_dir().join(example);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut t: toml::Table = toml::from_str(&text).unwrap();
        let stats = dir.join("stats.json");
        let gw = t["gateway"].as_table_mut().unwrap();
        gw.insert("stats_path".into(), stats.display().to_string().into());
        let mut dpdk_runtime = None;
        if let Some(d) = t.get_mut("dpdk").and_then(|d| d.as_table_mut()) {
            let args: Vec<toml::Value> = d
                .get("eal_args")
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .filter(|v| !v.as_str().is_some_and(|s| s.starts_with("--file-prefix")))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let mut args = args;
            args.push(format!("--file-prefix=s2t{id}").into());
            dpdk_runtime = Some(PathBuf::from(format!("/var/run/dpdk/s2t{id}")));
            d.insert("eal_args".into(), toml::Value::Array(args));
        }
        edit(&mut t);
        let config = dir.join("gateway.toml");
        std::fs::write(&config, toml::to_string(&t).unwrap()).unwrap();
        let log = dir.join("s2ds.log");
        let mut g = Gateway {
            child: None,
            config,
            stats,
            log,
            dir,
            ns: tb.ns(node),
            dpdk_runtime,
        };
        g.spawn();
        g
    }

    /// Starts `s2ds run` (again) with this gateway's config, appending to
    /// its log, and waits until it runs.
    fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.stats);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(s2ds_bin())
            .arg("run")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("spawn s2ds");
        self.child = Some(child);
        self.wait_running(Duration::from_secs(30));
    }

    /// Freezes the gateway's process (SIGSTOP): its workers stop polling
    /// while the kernel side of its ports keeps receiving.
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            crate::netns::signal(&[c.id()], "STOP");
        }
    }

    /// Lets a paused gateway run again (SIGCONT).
    pub fn resume(&self) {
        if let Some(c) = &self.child {
            crate::netns::signal(&[c.id()], "CONT");
        }
    }

    /// Kills the gateway with SIGKILL (a crash: nothing is cleaned up).
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            crash(child);
        }
    }

    /// The process id of the running `s2ds` (`ip netns exec` execs it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the gateway again after [`Gateway::kill`] or [`Gateway::stop`].
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running gateway");
        self.spawn();
    }

    /// Waits until the stats file shows the gateway running; panics, with
    /// its log, if it exits first or `timeout` passes.
    fn wait_running(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if Snapshot::read(&self.stats).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "s2ds exited with {status} before running:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "s2ds did not start within {timeout:?}:\n{}",
            self.log_text()
        );
    }

    /// The current stats snapshot.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::read(&self.stats).expect("stats snapshot")
    }

    /// A snapshot taken after the gateway has exported the counters of
    /// everything sent so far (waits two export periods).
    pub fn settled_snapshot(&self) -> Snapshot {
        std::thread::sleep(Duration::from_millis(600));
        self.snapshot()
    }

    /// The gateway's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The gateway's MAC on `port` ("lan"/"wan"), from its stats.
    pub fn mac(&self, port: &str) -> String {
        self.snapshot()
            .ports
            .iter()
            .find(|p| p.id.name() == port)
            .expect("port")
            .mac
            .clone()
    }

    /// Stops the gateway with SIGTERM and returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        self.child.take().is_none_or(terminate)
    }
}

/// Stops `child` with SIGTERM (SIGKILL after 10 s); true if it exited
/// cleanly.
pub(crate) fn terminate(mut child: Child) -> bool {
    signal(&[child.id()], "TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            return st.success();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// Kills `child` with SIGKILL (a crash: nothing is cleaned up) and reaps it.
pub(crate) fn crash(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Gateway {
    /// Stops the gateway; removes its directory, or on a panic keeps it and
    /// prints the log.
    fn drop(&mut self) {
        self.stop();
        if let Some(d) = &self.dpdk_runtime {
            let _ = std::fs::remove_dir_all(d);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "s2ds log kept at {}:\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}
