//! Drive the network-namespace testbed (`scripts/testbed.sh`) and the traffic tool
//! (`scripts/traffic.py`) from Rust integration tests.
//!
//! Topology (see `docs/testbed.md`):
//!
//! ```text
//! prod(eth0 10.10.1.2) -- (lan0) gwA (wan0) -- (a0 10.10.100.254) wan (b0 10.10.200.254)
//!                      -- (wan0) gwB (lan0) -- (eth0 10.20.1.2) cons
//! ```
//!
//! A [`Testbed`] gets a unique namespace prefix per call, so tests may run in parallel.
//! Dropping it (also while unwinding from a panic) kills every process it spawned and
//! deletes its namespaces. Every wait has a deadline: no helper can hang a test forever.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::paths::{python, script};

/// Deadline for `testbed.sh up` / `down`.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default deadline for [`Testbed::run`].
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a receiver may take to create its ready file.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle timeout handed to `udp-recv`: it stops after this long without a datagram.
const UDP_IDLE_TIMEOUT_SECS: u64 = 5;
/// Idle/accept timeout handed to `tcp-recv` and `tcp-send`.
const TCP_IDLE_TIMEOUT_SECS: u64 = 30;
/// Grace period between SIGTERM and SIGKILL for spawned children on drop.
const KILL_GRACE: Duration = Duration::from_secs(1);
/// Polling interval of every deadline loop.
const POLL: Duration = Duration::from_millis(10);

/// Prefix counter: together with the process id it makes every testbed prefix unique.
static TESTBED_SEQ: AtomicU32 = AtomicU32::new(0);

/// A node (network namespace) of the testbed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// Producer host: `eth0` 10.10.1.2/24, default route via 10.10.1.1.
    Prod,
    /// Producer-side gateway: `lan0` (to prod) and `wan0` (to wan).
    GwA,
    /// WAN kernel router: `a0` 10.10.100.254/24, `b0` 10.10.200.254/24.
    Wan,
    /// Consumer-side gateway: `wan0` (to wan) and `lan0` (to cons).
    GwB,
    /// Consumer host: `eth0` 10.20.1.2/24, default route via 10.20.1.1.
    Cons,
    /// The impairment wire between gwA's `wan0` (its `g0`) and the WAN
    /// router's `a0` (its `w0`); only in a testbed from
    /// [`Testbed::up_impaired`].
    Imp,
}

impl Node {
    /// Every node, in topology order.
    pub const ALL: [Node; 5] = [Node::Prod, Node::GwA, Node::Wan, Node::GwB, Node::Cons];

    /// Namespace-name suffix used by `testbed.sh` (`<prefix>-<suffix>`).
    pub fn suffix(self) -> &'static str {
        match self {
            Node::Prod => "prod",
            Node::GwA => "gwa",
            Node::Wan => "wan",
            Node::GwB => "gwb",
            Node::Cons => "cons",
            Node::Imp => "imp",
        }
    }
}

/// How `testbed.sh` sets up a gateway namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GwMode {
    /// Plain Linux router with addresses, routes and `ip_forward=1`.
    Kernel,
    /// Interfaces up without addresses, `ip_forward=0`: a userspace gateway owns them.
    None,
    /// Like [`GwMode::None`] plus bridges `brlan` (port `lan0`) and `brwan` (port `wan0`).
    Bridge,
}

impl GwMode {
    /// The `--gw-a` / `--gw-b` argument value.
    pub fn as_arg(self) -> &'static str {
        match self {
            GwMode::Kernel => "kernel",
            GwMode::None => "none",
            GwMode::Bridge => "bridge",
        }
    }
}

/// Options for [`Testbed::up`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestbedOpts {
    /// Mode of the producer-side gateway namespace.
    pub gw_a: GwMode,
    /// Mode of the consumer-side gateway namespace.
    pub gw_b: GwMode,
    /// MTU of every veth (and bridge).
    pub mtu: u16,
    /// Address families of the data path.
    pub family: Family,
}

/// Address families of the testbed's data path (`testbed.sh --family`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Family {
    /// IPv4 only, IPv6 disabled everywhere.
    #[default]
    V4,
    /// IPv6 only (the management link keeps IPv4).
    V6,
    /// Both.
    Dual,
}

impl Family {
    /// The `--family` argument.
    pub fn as_arg(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
            Family::Dual => "dual",
        }
    }
}

impl Default for TestbedOpts {
    /// Both gateways in kernel-router mode, MTU 1500.
    fn default() -> Self {
        TestbedOpts {
            gw_a: GwMode::Kernel,
            gw_b: GwMode::Kernel,
            mtu: 1500,
            family: Family::V4,
        }
    }
}

/// Result of [`Testbed::udp_stream`], combined from `udp-send` and `udp-recv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpReport {
    /// Datagrams the sender handed to the kernel.
    pub sent: u64,
    /// Distinct sequence numbers the receiver got.
    pub received: u64,
    /// Sequence numbers in `0..count` that never arrived.
    pub lost: u64,
    /// Datagrams whose sequence number had already arrived.
    pub duplicates: u64,
    /// Datagrams that arrived after a higher sequence number.
    pub out_of_order: u64,
    /// `out_of_order == 0`.
    pub in_order: bool,
    /// Payload bytes the receiver got (duplicates included).
    pub received_bytes: u64,
}

/// Result of [`Testbed::tcp_transfer`], combined from `tcp-send` and `tcp-recv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpReport {
    /// Bytes the sender wrote.
    pub sent_bytes: u64,
    /// Bytes the receiver read before EOF.
    pub received_bytes: u64,
    /// SHA-256 (hex) of what the sender wrote.
    pub sent_sha256: String,
    /// SHA-256 (hex) of what the receiver read.
    pub received_sha256: String,
}

/// Panic with a clear message unless the effective user is root.
pub fn require_root() {
    let status = fs::read_to_string("/proc/self/status")
        .unwrap_or_else(|e| panic!("cannot read /proc/self/status to check for root: {e}"));
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no effective uid in /proc/self/status"));
    assert!(
        euid == "0",
        "this test needs root (network namespaces, veth, TAP, AF_XDP, sysctl); run it as root (euid is {euid})"
    );
}

/// Path of `scripts/testbed.sh`.
fn testbed_script() -> PathBuf {
    script("testbed.sh")
}

/// Path of `scripts/traffic.py`.
fn traffic_script() -> PathBuf {
    script("traffic.py")
}

/// Output of a child waited for with a deadline.
#[derive(Debug)]
pub(crate) struct Finished {
    /// Exit status, stdout and stderr (stdout/stderr empty unless piped).
    pub(crate) output: Output,
    /// The deadline expired and the child was killed.
    pub(crate) timed_out: bool,
}

/// A `traffic.py` receiver or server that [`Testbed::start_receiver`] started and saw
/// bind. Collect its report with [`Testbed::finish`]; if it is dropped instead, the
/// testbed kills it when it goes.
#[derive(Debug)]
pub struct Receiver {
    child: Child,
    node: Node,
    /// Its `traffic.py` arguments, for messages.
    args: Vec<String>,
    /// Its ready file, removed by [`Testbed::finish`].
    ready: PathBuf,
}

/// Wait for `child` until `timeout`, killing it when the deadline passes. Piped stdout and
/// stderr are drained concurrently so a chatty child cannot block on a full pipe.
pub(crate) fn wait_deadline(mut child: Child, timeout: Duration) -> Finished {
    let out_reader = child.stdout.take().map(|mut s| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            buf
        })
    });
    let err_reader = child.stderr.take().map(|mut s| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            buf
        })
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status: ExitStatus = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
            Ok(None) | Err(_) => {
                timed_out = true;
                let _ = child.kill();
                // If even reaping fails, report the child as killed by SIGKILL.
                break child.wait().unwrap_or_else(|_| ExitStatus::from_raw(9));
            }
        }
    };
    let stdout = out_reader
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    let stderr = err_reader
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    Finished {
        output: Output {
            status,
            stdout,
            stderr,
        },
        timed_out,
    }
}

/// The last line of `stdout` that is a JSON object, if any.
fn last_json(stdout: &[u8]) -> Option<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(Value::is_object)
}

/// The integer `key` of a JSON report; panics, showing the report, if there is none.
pub fn json_u64(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("report has no integer '{key}': {v}"))
}

/// The string `key` of a JSON report; panics, showing the report, if there is none.
pub fn json_str(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("report has no string '{key}': {v}"))
        .to_string()
}

fn describe(argv: &[&str]) -> String {
    argv.join(" ")
}

/// Port of an `IP:PORT` string (panics with the string on bad input: test-author error).
/// The wildcard address of `dst`'s family with its port: `0.0.0.0:PORT`,
/// or `[::]:PORT` for an `[IPv6]:PORT` destination.
fn any_bind(dst: &str) -> String {
    if dst.starts_with('[') {
        format!("[::]:{}", port_of(dst))
    } else {
        format!("0.0.0.0:{}", port_of(dst))
    }
}

fn port_of(dst: &str) -> &str {
    match dst.rsplit_once(':') {
        Some((ip, port)) if !ip.is_empty() && port.parse::<u16>().is_ok() => port,
        _ => panic!("destination '{dst}' is not IP:PORT"),
    }
}

/// Send `sig` (`TERM`, `INT`, `KILL`...) to `pids` with kill(1): no unsafe FFI in test
/// code. Errors are ignored (a process may be gone already).
pub(crate) fn signal(pids: &[u32], sig: &str) {
    if pids.is_empty() {
        return;
    }
    let mut cmd = Command::new("kill");
    cmd.arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Ok(child) = cmd.spawn() {
        let _ = wait_deadline(child, Duration::from_secs(5));
    }
}

/// Network-namespace inode of process `pid`, if it is alive and not a zombie.
fn pid_netns(pid: u32) -> Option<String> {
    let link = fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// One running testbed (five network namespaces); torn down on drop.
pub struct Testbed {
    prefix: String,
    /// Per-testbed scratch directory (ready files).
    scratch: PathBuf,
    /// Pids of the children spawned through [`Testbed::spawn`] and friends.
    pids: Mutex<Vec<u32>>,
    /// Counter for scratch file names.
    seq: AtomicU32,
}

impl Testbed {
    /// Build a testbed with a fresh unique prefix (`s2t<pid>-<n>`); panics if
    /// `testbed.sh up` fails (after tearing down whatever was built).
    pub fn up(opts: TestbedOpts) -> Testbed {
        Testbed::up_with(opts, false, 1)
    }

    /// Like [`Testbed::up`], with the impairment namespace ([`Node::Imp`],
    /// `testbed.sh --impair`) on the link between gwA and the WAN router:
    /// nothing crosses it until the test starts `scripts/wan_impair.py`
    /// there (see [`Testbed::start_impairment`]).
    pub fn up_impaired(opts: TestbedOpts) -> Testbed {
        Testbed::up_with(opts, true, 1)
    }

    /// Like [`Testbed::up`], with `queues` TX and RX queues on every veth
    /// of the data path and XPS sending from CPU c on queue c mod `queues`
    /// (`testbed.sh --queues`): a gateway with one worker per core gets on
    /// worker i what the kernel sent from core i.
    pub fn up_with_queues(opts: TestbedOpts, queues: u16) -> Testbed {
        Testbed::up_with(opts, false, queues)
    }

    fn up_with(opts: TestbedOpts, impair: bool, queues: u16) -> Testbed {
        let n = TESTBED_SEQ.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("s2t{}-{}", std::process::id(), n);
        let scratch = std::env::temp_dir().join(format!("{prefix}.scratch"));
        // Build the guard before anything else, so that a failure below still tears down.
        let tb = Testbed {
            prefix,
            scratch,
            pids: Mutex::new(Vec::new()),
            seq: AtomicU32::new(0),
        };
        let _ = fs::remove_dir_all(&tb.scratch);
        fs::create_dir_all(&tb.scratch)
            .unwrap_or_else(|e| panic!("cannot create scratch dir {}: {e}", tb.scratch.display()));
        let mtu = opts.mtu.to_string();
        let queues = queues.to_string();
        let mut args = vec![
            "up",
            "--gw-a",
            opts.gw_a.as_arg(),
            "--gw-b",
            opts.gw_b.as_arg(),
            "--mtu",
            &mtu,
            "--family",
            opts.family.as_arg(),
            "--queues",
            &queues,
        ];
        if impair {
            args.push("--impair");
        }
        let f = tb
            .script(&args)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", testbed_script().display()));
        assert!(
            f.output.status.success() && !f.timed_out,
            "testbed.sh up --prefix {} failed ({}{}):\n{}{}",
            tb.prefix,
            f.output.status,
            if f.timed_out { ", timed out" } else { "" },
            String::from_utf8_lossy(&f.output.stdout),
            String::from_utf8_lossy(&f.output.stderr)
        );
        tb
    }

    /// Run `testbed.sh CMD --prefix <prefix> ARGS...` with a deadline.
    fn script(&self, args: &[&str]) -> std::io::Result<Finished> {
        let child = Command::new("bash")
            .arg(testbed_script())
            .arg(args[0])
            .arg("--prefix")
            .arg(&self.prefix)
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        Ok(wait_deadline(child, SCRIPT_TIMEOUT))
    }

    /// Namespace prefix of this testbed.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Name of the network namespace of `node`.
    pub fn ns(&self, node: Node) -> String {
        format!("{}-{}", self.prefix, node.suffix())
    }

    /// Names of all five namespaces, in topology order.
    pub fn namespaces(&self) -> Vec<String> {
        Node::ALL.iter().map(|&n| self.ns(n)).collect()
    }

    /// An `ip netns exec <ns> argv...` command (not started, not tracked).
    pub fn command(&self, node: Node, argv: &[&str]) -> Command {
        assert!(
            !argv.is_empty(),
            "empty argv for a command in {}",
            self.ns(node)
        );
        let mut cmd = Command::new("ip");
        cmd.arg("netns")
            .arg("exec")
            .arg(self.ns(node))
            .args(argv)
            .stdin(Stdio::null());
        cmd
    }

    /// Run `argv` inside `node`'s namespace and wait (deadline 60 s; panics on timeout).
    pub fn run(&self, node: Node, argv: &[&str]) -> Output {
        self.run_timeout(node, argv, RUN_TIMEOUT)
    }

    /// Run `argv` inside `node`'s namespace and wait up to `timeout` (panics on timeout).
    pub fn run_timeout(&self, node: Node, argv: &[&str], timeout: Duration) -> Output {
        let mut cmd = self.command(node, argv);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = self.spawn_cmd(node, cmd);
        let f = wait_deadline(child, timeout);
        assert!(
            !f.timed_out,
            "'{}' in {} did not finish within {timeout:?}; killed. stderr:\n{}",
            describe(argv),
            self.ns(node),
            String::from_utf8_lossy(&f.output.stderr)
        );
        f.output
    }

    /// Start `argv` inside `node`'s namespace (stdin null, stdout/stderr inherited).
    /// The child is tracked: it is killed when the testbed is dropped.
    pub fn spawn(&self, node: Node, argv: &[&str]) -> Child {
        self.spawn_stdio(node, argv, Stdio::inherit(), Stdio::inherit())
    }

    /// Like [`Testbed::spawn`] with explicit stdout/stderr (e.g. `Stdio::piped()`;
    /// then drain them, or the child may block on a full pipe).
    pub fn spawn_stdio(&self, node: Node, argv: &[&str], stdout: Stdio, stderr: Stdio) -> Child {
        let mut cmd = self.command(node, argv);
        cmd.stdout(stdout).stderr(stderr);
        self.spawn_cmd(node, cmd)
    }

    /// Start a prepared command (normally from [`Testbed::command`]) and track it.
    pub fn spawn_cmd(&self, node: Node, mut cmd: Command) -> Child {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?} in {}: {e}", self.ns(node)));
        self.pids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child.id());
        child
    }

    /// Ping `ip` from `node`: true if `count` echo replies arrive before the deadline
    /// (`count` * 0.2 s + 3 s).
    pub fn ping(&self, from: Node, ip: &str, count: u32) -> bool {
        let count = count.max(1);
        let deadline = (u64::from(count) / 5 + 3).to_string();
        let count_s = count.to_string();
        let out = self.run(
            from,
            &[
                "ping", "-n", "-q", "-c", &count_s, "-i", "0.2", "-w", &deadline, ip,
            ],
        );
        out.status.success()
    }

    /// MAC address `node` has resolved for `ip` (lower case), if its neighbour entry is
    /// REACHABLE, STALE, DELAY or PERMANENT.
    pub fn neigh_mac(&self, node: Node, ip: &str) -> Option<String> {
        let out = self.ip(node, &["neigh", "show", ip]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                if words.first() != Some(&ip) {
                    return None;
                }
                let usable = words
                    .iter()
                    .any(|w| matches!(*w, "REACHABLE" | "STALE" | "DELAY" | "PERMANENT"));
                let pos = words.iter().position(|w| *w == "lladdr")?;
                let mac = words.get(pos + 1)?;
                usable.then(|| mac.to_ascii_lowercase())
            })
    }

    /// MAC address of interface `ifname` in `node` (lower case), from `ip link show`.
    pub fn link_mac(&self, node: Node, ifname: &str) -> Option<String> {
        let out = self.ip(node, &["link", "show", "dev", ifname]);
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        words.find(|w| *w == "link/ether")?;
        words.next().map(str::to_ascii_lowercase)
    }

    /// MTU of interface `ifname` in `node`, from `ip link show`.
    pub fn link_mtu(&self, node: Node, ifname: &str) -> Option<u32> {
        let out = self.ip(node, &["link", "show", "dev", ifname]);
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        words.find(|w| *w == "mtu")?;
        words.next()?.parse().ok()
    }

    /// Run `ip -n <ns> args...` (deadline 60 s).
    pub fn ip(&self, node: Node, args: &[&str]) -> Output {
        let child = Command::new("ip")
            .arg("-n")
            .arg(self.ns(node))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run ip -n {} {}: {e}", self.ns(node), args.join(" "))
            });
        let f = wait_deadline(child, RUN_TIMEOUT);
        assert!(
            !f.timed_out,
            "ip -n {} {} timed out",
            self.ns(node),
            args.join(" ")
        );
        f.output
    }

    /// Starts `scripts/wan_impair.py --a g0 --b w0 ARGS...` in the
    /// impairment namespace ([`Testbed::up_impaired`]) and waits until it
    /// runs (its first stats file). Until then, and after the handle is
    /// stopped, nothing crosses between gwA and the WAN.
    pub fn start_impairment(&self, args: &[&str]) -> Impairment {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let stats = self.scratch.join(format!("impair-{n}.json"));
        let py = python();
        let script = crate::paths::script("wan_impair.py");
        let (script, stats_s) = (script.to_string_lossy(), stats.to_string_lossy());
        let mut argv: Vec<&str> = vec![&py, &script, "--a", "g0", "--b", "w0", "--stats", &stats_s];
        argv.extend_from_slice(args);
        let mut child = self.spawn_stdio(Node::Imp, &argv, Stdio::null(), Stdio::piped());
        let deadline = Instant::now() + READY_TIMEOUT;
        while !stats.exists() {
            if let Ok(Some(_)) = child.try_wait() {
                let f = wait_deadline(child, Duration::from_secs(1));
                panic!(
                    "wan_impair.py {args:?} exited at once ({}):\n{}",
                    f.output.status,
                    String::from_utf8_lossy(&f.output.stderr)
                );
            }
            assert!(
                Instant::now() < deadline,
                "wan_impair.py not running after {READY_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Impairment {
            child: Some(child),
            stats,
        }
    }

    /// Start `traffic.py ARGS... --ready-file FILE` (a receiver or server) in `node` and
    /// wait until it has bound its socket (created `FILE`, in this testbed's scratch
    /// directory). Panics if it exits first or is not ready within 10 s. Hand the result
    /// to [`Testbed::finish`] for its report.
    pub fn start_receiver(&self, node: Node, args: &[&str]) -> Receiver {
        let what = args.first().copied().unwrap_or("receiver");
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let ready = self.scratch.join(format!("{what}-{n}.ready"));
        let py = python();
        let script = traffic_script();
        let script = script.to_string_lossy();
        let ready_s = ready.to_string_lossy();
        let mut argv: Vec<&str> = vec![&py, &script];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--ready-file", &ready_s]);
        let mut child = self.spawn_stdio(node, &argv, Stdio::piped(), Stdio::piped());
        let deadline = Instant::now() + READY_TIMEOUT;
        while !ready.exists() {
            if let Ok(Some(_)) = child.try_wait() {
                let f = wait_deadline(child, Duration::from_secs(1));
                panic!(
                    "receiver '{}' in {} exited before binding ({}):\n{}{}",
                    describe(&argv),
                    self.ns(node),
                    f.output.status,
                    String::from_utf8_lossy(&f.output.stdout),
                    String::from_utf8_lossy(&f.output.stderr)
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "receiver '{}' in {} not ready within {READY_TIMEOUT:?}",
                    describe(&argv),
                    self.ns(node)
                );
            }
            thread::sleep(POLL);
        }
        Receiver {
            child,
            node,
            args: args.iter().map(|a| a.to_string()).collect(),
            ready,
        }
    }

    /// Wait up to `timeout` for a receiver from [`Testbed::start_receiver`] to finish and
    /// return its JSON report (any exit status; its stderr, if any, is echoed). Panics if
    /// it hit the deadline or printed no report.
    pub fn finish(&self, receiver: Receiver, timeout: Duration) -> Value {
        let Receiver {
            child,
            node,
            args,
            ready,
        } = receiver;
        let f = wait_deadline(child, timeout);
        let _ = fs::remove_file(&ready);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.report(&args, node, f)
    }

    /// Run `traffic.py ARGS...` (a sender or client) in `node` to completion, up to
    /// `timeout`, and return its JSON report; panics like [`Testbed::finish`].
    pub fn run_sender(&self, node: Node, args: &[&str], timeout: Duration) -> Value {
        let py = python();
        let script = traffic_script();
        let script = script.to_string_lossy();
        let mut argv: Vec<&str> = vec![&py, &script];
        argv.extend_from_slice(args);
        let child = self.spawn_stdio(node, &argv, Stdio::piped(), Stdio::piped());
        let f = wait_deadline(child, timeout);
        self.report(args, node, f)
    }

    /// JSON report of a finished `traffic.py ARGS...` run (any exit status); panics if it
    /// printed none or was killed by its deadline.
    fn report(&self, args: &[&str], node: Node, f: Finished) -> Value {
        let stderr = String::from_utf8_lossy(&f.output.stderr);
        assert!(
            !f.timed_out,
            "'traffic.py {}' in {} hit its deadline and was killed:\n{stderr}",
            describe(args),
            self.ns(node)
        );
        if !stderr.trim().is_empty() {
            eprintln!(
                "[{}] traffic.py {}: {}",
                self.ns(node),
                describe(args),
                stderr.trim()
            );
        }
        last_json(&f.output.stdout).unwrap_or_else(|| {
            panic!(
                "'traffic.py {}' in {} printed no JSON report ({}):\n{}{stderr}",
                describe(args),
                self.ns(node),
                f.output.status,
                String::from_utf8_lossy(&f.output.stdout)
            )
        })
    }

    /// Send `count` sequence-numbered UDP datagrams of `size` bytes at `rate_pps`
    /// (0 = unpaced) from `from` to `dst` (`IP:PORT`), received in `to` on `0.0.0.0:PORT`
    /// (so that gateways which rewrite the destination address still reach it).
    pub fn udp_stream(
        &self,
        from: Node,
        to: Node,
        dst: &str,
        count: u64,
        size: usize,
        rate_pps: u64,
    ) -> UdpReport {
        let bind = any_bind(dst);
        let (count_s, size_s, rate_s) = (count.to_string(), size.to_string(), rate_pps.to_string());
        let idle = UDP_IDLE_TIMEOUT_SECS.to_string();
        let receiver = self.start_receiver(
            to,
            &[
                "udp-recv",
                "--bind",
                &bind,
                "--count",
                &count_s,
                "--timeout",
                &idle,
            ],
        );

        let send_secs = count.checked_div(rate_pps).unwrap_or(count / 10_000);
        let sender = self.run_sender(
            from,
            &[
                "udp-send", "--to", dst, "--count", &count_s, "--size", &size_s, "--rate", &rate_s,
            ],
            Duration::from_secs(send_secs + 60),
        );
        let recv_timeout = Duration::from_secs(UDP_IDLE_TIMEOUT_SECS + 30);
        let receiver = self.finish(receiver, recv_timeout);

        UdpReport {
            sent: json_u64(&sender, "sent"),
            received: json_u64(&receiver, "received"),
            lost: json_u64(&receiver, "lost"),
            duplicates: json_u64(&receiver, "duplicates"),
            out_of_order: json_u64(&receiver, "out_of_order"),
            in_order: receiver
                .get("in_order")
                .and_then(Value::as_bool)
                .unwrap_or_else(|| panic!("udp-recv: report has no bool 'in_order': {receiver}")),
            received_bytes: json_u64(&receiver, "bytes"),
        }
    }

    /// `n` concurrent TCP connections from `from` to `dst` (`IP:PORT`), each sending
    /// `bytes` of its own seeded data, served by one receiver in `to` (on `0.0.0.0:PORT`)
    /// that accepts all `n`. Returns one report per connection; received reports
    /// are matched to senders by SHA-256 (the receiver cannot know which
    /// sender a connection came from), so a mismatch shows as an unmatched pair.
    pub fn tcp_transfers(
        &self,
        from: Node,
        to: Node,
        dst: &str,
        bytes: u64,
        n: usize,
    ) -> Vec<TcpReport> {
        let bind = any_bind(dst);
        let idle = TCP_IDLE_TIMEOUT_SECS.to_string();
        let n_s = n.to_string();
        let receiver = self.start_receiver(
            to,
            &[
                "tcp-recv",
                "--bind",
                &bind,
                "--timeout",
                &idle,
                "--connections",
                &n_s,
            ],
        );
        let bytes_s = bytes.to_string();
        let deadline =
            Duration::from_secs(n as u64 * bytes / 1_000_000 + 2 * TCP_IDLE_TIMEOUT_SECS + 30);
        let sent: Vec<Value> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let seed = format!("{}", self.seq.fetch_add(1, Ordering::Relaxed) + 1000);
                    let (idle, bytes_s) = (idle.clone(), bytes_s.clone());
                    scope.spawn(move || {
                        self.run_sender(
                            from,
                            &[
                                "tcp-send",
                                "--to",
                                dst,
                                "--bytes",
                                &bytes_s,
                                "--seed",
                                &seed,
                                "--timeout",
                                &idle,
                            ],
                            deadline,
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("sender thread"))
                .collect()
        });
        let receiver = self.finish(receiver, deadline);
        let received: Vec<&Value> = receiver
            .get("connections")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("tcp-recv: report has no 'connections': {receiver}"))
            .iter()
            .collect();
        sent.iter()
            .map(|s| {
                let sha = json_str(s, "sha256");
                let r = received.iter().find(|r| json_str(r, "sha256") == sha);
                TcpReport {
                    sent_bytes: json_u64(s, "bytes"),
                    received_bytes: r.map_or(0, |r| json_u64(r, "bytes")),
                    sent_sha256: sha,
                    received_sha256: r.map_or_else(String::new, |r| json_str(r, "sha256")),
                }
            })
            .collect()
    }

    /// Move `bytes` seeded pseudo-random bytes over one TCP connection from `from` to
    /// `dst` (`IP:PORT`), accepted in `to` on `0.0.0.0:PORT`; both SHA-256 are returned.
    pub fn tcp_transfer(&self, from: Node, to: Node, dst: &str, bytes: u64) -> TcpReport {
        let bind = any_bind(dst);
        let idle = TCP_IDLE_TIMEOUT_SECS.to_string();
        let receiver = self.start_receiver(to, &["tcp-recv", "--bind", &bind, "--timeout", &idle]);

        let bytes_s = bytes.to_string();
        let seed = format!("{}", self.seq.fetch_add(1, Ordering::Relaxed));
        // Generous: at least 1 MB/s plus the idle timeouts.
        let deadline = Duration::from_secs(bytes / 1_000_000 + 2 * TCP_IDLE_TIMEOUT_SECS + 30);
        let sender = self.run_sender(
            from,
            &[
                "tcp-send",
                "--to",
                dst,
                "--bytes",
                &bytes_s,
                "--seed",
                &seed,
                "--timeout",
                &idle,
            ],
            deadline,
        );
        let receiver = self.finish(receiver, deadline);

        TcpReport {
            sent_bytes: json_u64(&sender, "bytes"),
            received_bytes: json_u64(&receiver, "bytes"),
            sent_sha256: json_str(&sender, "sha256"),
            received_sha256: json_str(&receiver, "sha256"),
        }
    }

    /// Pull mode: `server` listens on `dst`'s port and sends `bytes`
    /// deterministic bytes to whoever connects; `client` connects to `dst`
    /// (through the gateways' listeners) and reads to EOF.
    pub fn tcp_pull(&self, server: Node, client: Node, dst: &str, bytes: u64) -> TcpReport {
        let bind = any_bind(dst);
        let idle = TCP_IDLE_TIMEOUT_SECS.to_string();
        let bytes_s = bytes.to_string();
        let seed = format!("{}", self.seq.fetch_add(1, Ordering::Relaxed));
        let sender = self.start_receiver(
            server,
            &[
                "tcp-serve",
                "--bind",
                &bind,
                "--bytes",
                &bytes_s,
                "--seed",
                &seed,
                "--timeout",
                &idle,
            ],
        );
        let deadline = Duration::from_secs(bytes / 1_000_000 + 2 * TCP_IDLE_TIMEOUT_SECS + 30);
        let receiver = self.run_sender(
            client,
            &["tcp-pull", "--to", dst, "--timeout", &idle],
            deadline,
        );
        let sender = self.finish(sender, deadline);
        TcpReport {
            sent_bytes: json_u64(&sender, "bytes"),
            received_bytes: json_u64(&receiver, "bytes"),
            sent_sha256: json_str(&sender, "sha256"),
            received_sha256: json_str(&receiver, "sha256"),
        }
    }

    /// Pull mode for UDP: `server` waits on `dst`'s port for a start
    /// datagram, then sends `count` sequence-numbered datagrams of `size`
    /// bytes at `rate_pps` back to its source; `client` asks through `dst`.
    /// Returns the client's report (with `rate_bps`, the received rate).
    pub fn udp_pull(
        &self,
        server: Node,
        client: Node,
        dst: &str,
        count: u64,
        size: usize,
        rate_pps: u64,
    ) -> Value {
        let bind = any_bind(dst);
        let (count_s, size_s, rate_s) = (count.to_string(), size.to_string(), rate_pps.to_string());
        let idle = UDP_IDLE_TIMEOUT_SECS.to_string();
        let server_child = self.start_receiver(
            server,
            &[
                "udp-serve",
                "--bind",
                &bind,
                "--count",
                &count_s,
                "--size",
                &size_s,
                "--rate",
                &rate_s,
                "--timeout",
                "30",
            ],
        );
        let deadline = Duration::from_secs(count / rate_pps.max(1) + 60);
        let report = self.run_sender(
            client,
            &[
                "udp-pull",
                "--to",
                dst,
                "--count",
                &count_s,
                "--timeout",
                &idle,
            ],
            deadline,
        );
        let _ = self.finish(server_child, deadline);
        report
    }

    /// Tracked children still alive inside one of this testbed's namespaces.
    fn live_children(&self) -> Vec<u32> {
        let ours: Vec<String> = self
            .namespaces()
            .iter()
            .filter_map(|ns| fs::metadata(format!("/run/netns/{ns}")).ok())
            .map(|m| format!("net:[{}]", m.ino()))
            .collect();
        let pids = self.pids.lock().unwrap_or_else(|p| p.into_inner());
        pids.iter()
            .copied()
            .filter(|&pid| pid_netns(pid).is_some_and(|ns| ours.contains(&ns)))
            .collect()
    }

    /// SIGTERM every tracked child still inside the testbed, SIGKILL after a grace period.
    fn kill_children(&self) {
        let live = self.live_children();
        signal(&live, "TERM");
        let deadline = Instant::now() + KILL_GRACE;
        loop {
            let live = self.live_children();
            if live.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                signal(&live, "KILL");
                return;
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Testbed {
    /// Kill the spawned children, then `testbed.sh down` (which also kills anything else
    /// left in the namespaces). Never panics: problems are reported on stderr.
    fn drop(&mut self) {
        self.kill_children();
        match self.script(&["down"]) {
            Ok(f) if f.output.status.success() && !f.timed_out => {}
            Ok(f) => eprintln!(
                "warning: testbed.sh down --prefix {} failed ({}{}):\n{}{}",
                self.prefix,
                f.output.status,
                if f.timed_out { ", timed out" } else { "" },
                String::from_utf8_lossy(&f.output.stdout),
                String::from_utf8_lossy(&f.output.stderr)
            ),
            Err(e) => eprintln!(
                "warning: cannot start testbed.sh down --prefix {}: {e}",
                self.prefix
            ),
        }
        let _ = fs::remove_dir_all(&self.scratch);
    }
}

/// A running `wan_impair.py` ([`Testbed::start_impairment`]).
pub struct Impairment {
    child: Option<Child>,
    stats: PathBuf,
}

impl Impairment {
    /// Its latest counts (rewritten every 200 ms): `{"a2b": {...}, "b2a":
    /// {...}, "seconds": ...}` with `frames`, `seen`, `dropped`,
    /// `duplicated`, `reordered`, `late`, `forwarded`, `send_errors`.
    pub fn stats(&self) -> serde_json::Value {
        let text = fs::read_to_string(&self.stats)
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.stats.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}: {text}", self.stats.display()))
    }

    /// Stops it (SIGTERM: it flushes what it holds) and returns its final
    /// counts.
    pub fn stop(&mut self) -> serde_json::Value {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stats()
    }
}

impl Drop for Impairment {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
