#!/usr/bin/env python3
"""DPDK forwarding benchmark over net_memif: s2ds against dpdk-testpmd io.

Three DPDK processes joined by two memif links (unix sockets in a private
temporary directory):

    tester (dpdk-testpmd, one lcore)          forwarder under test
    net_pcap0 (infinite rx) --io--> memif lan ======> LAN  s2ds | testpmd io
    net_pcap0 tx (dropped)  <--io-- memif wan <====== WAN
                                                      (one core, alone)

The tester is a single dpdk-testpmd in io mode with the chained topology over
three ports: a net_pcap port replaying one UDP frame forever (the generator),
the LAN memif and the WAN memif. Its only forwarding lcore moves pcap -> LAN
(generate) and WAN -> pcap (sink: pcap drops on transmit) in one poll loop, so
generator and sink share a core without being time-sliced against each other.
The tester is the memif server and stays up for a whole frame size; each
forwarder connects as a memif client, is measured, and goes away.

Throughput is counted at the sink (frames the tester receives on its WAN
port) between two "show fwd stats all" snapshots, the same way for both
forwarders. Run through benches/dpdk_forward.sh (builds s2ds, needs root).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# Fixed addresses of the set-up. The forwarders' memif MACs are set with the
# memif `mac=` devarg, so the generated frames can carry the LAN MAC as
# destination for both forwarders.
FWD_LAN_MAC = "02:00:00:00:00:01"
FWD_WAN_MAC = "02:00:00:00:00:02"
GEN_MAC = "02:00:00:00:01:02"  # tester LAN port, source of the frames
SINK_MAC = "02:00:00:00:02:fe"  # tester WAN port = the static next hop
SRC_IP = (10, 10, 1, 2)
DST_IP = (10, 20, 1, 2)
NEXT_HOP = "10.10.100.254"

EAL_COMMON = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf"]
# Identical queue, pool and burst settings for every DPDK process; they match
# s2ds's defaults (1024 descriptors, pool cache 256, bursts of 32).
TESTPMD_COMMON = [
    "--rxd=1024",
    "--txd=1024",
    "--burst=32",
    "--mbcache=256",
    "--total-num-mbufs=16384",
]
FORWARDERS = ("testpmd-io", "s2ds")
# testpmd's printf output is block-buffered into a pipe; line-buffer it so
# the driver sees each message when it is printed.
TESTPMD = ["stdbuf", "-oL", "-eL", "dpdk-testpmd"]
# Thread name of testpmd's forwarding lcore 1 (EAL 22.11; older releases
# said lcore-worker-1).
TESTPMD_LCORE = ("rte-worker-1", "lcore-worker-1")


class BenchError(Exception):
    """A step of the benchmark failed; the message says which."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- processes


class Proc:
    """A child process in its own session (so a terminal ^C reaches only the
    orchestrator, which stops the children in order), with its merged output
    captured to a log file and kept in memory for parsing."""

    registry: list["Proc"] = []
    pid_file: Path | None = None

    def __init__(self, name: str, cmd: list[str], log_path: Path, stdin_pipe: bool):
        self.name = name
        self.cmd = cmd
        self.log_path = log_path
        self._buf: list[str] = []
        self._len = 0
        self._lock = threading.Lock()
        self._logf = open(log_path, "w", encoding="utf-8", errors="replace")
        self._logf.write("$ " + " ".join(cmd) + "\n")
        self._logf.flush()
        self.p = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        Proc.registry.append(self)
        if Proc.pid_file is not None:
            with open(Proc.pid_file, "a") as f:
                f.write(f"{self.p.pid}\n")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        # Raw reads, not lines: testpmd's prompt has no newline.
        assert self.p.stdout is not None
        fd = self.p.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            text = chunk.decode("utf-8", errors="replace")
            with self._lock:
                self._buf.append(text)
                self._len += len(text)
                if not self._logf.closed:
                    self._logf.write(text)
                    self._logf.flush()

    @property
    def pid(self) -> int:
        return self.p.pid

    def text(self, start: int = 0) -> str:
        with self._lock:
            if len(self._buf) > 1:
                self._buf = ["".join(self._buf)]
            return self._buf[0][start:] if self._buf else ""

    def offset(self) -> int:
        with self._lock:
            return self._len

    def alive(self) -> bool:
        return self.p.poll() is None

    def send(self, line: str) -> None:
        if not self.alive() or self.p.stdin is None:
            raise BenchError(f"{self.name} is not running (see {self.log_path})")
        self.p.stdin.write((line + "\n").encode())
        self.p.stdin.flush()

    def wait_for(self, pattern: str, start: int, timeout: float) -> re.Match:
        """Waits until `pattern` (a regex, DOTALL) appears in the output
        written after offset `start`."""
        rx = re.compile(pattern, re.S)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.text(start))
            if m:
                return m
            if not self.alive():
                raise BenchError(
                    f"{self.name} exited (code {self.p.returncode}) while waiting for "
                    f"/{pattern}/; see {self.log_path}"
                )
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.name}: no /{pattern}/ within {timeout:.0f} s; see {self.log_path}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT (both testpmd and s2ds shut their ports down cleanly on it),
        then SIGKILL to the process group if it does not exit in time."""
        if self.alive():
            try:
                os.killpg(self.p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored SIGINT for {timeout:.0f} s; killing it")
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(5)
        if self.p.stdin is not None:
            try:
                self.p.stdin.close()
            except OSError:
                pass
        self._reader.join(2)
        with self._lock:
            self._logf.close()
        if self in Proc.registry:
            Proc.registry.remove(self)

    @classmethod
    def stop_all(cls) -> None:
        for p in reversed(list(cls.registry)):
            try:
                p.stop(timeout=5)
            except Exception as e:  # keep cleaning up the others
                log(f"cleanup of {p.name} failed: {e}")


# ---------------------------------------------------------------- frames


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def write_pcap(path: Path, size: int) -> None:
    """One Ethernet/IPv4/UDP frame of `size` bytes (no FCS, as testpmd's
    --txpkts counts), SRC_IP -> DST_IP, DF set, TTL 64, valid IP checksum."""
    if not 42 <= size <= 1514:
        raise BenchError(f"frame size {size} is outside 42..1514")
    ip_len = size - 14
    udp_len = ip_len - 20
    ip = ipv4_header(ip_len, 17, bytes(SRC_IP), bytes(DST_IP))
    udp = struct.pack("!HHHH", 5001, 5001, udp_len, 0) + bytes(udp_len - 8)
    frame = mac_bytes(FWD_LAN_MAC) + mac_bytes(GEN_MAC) + b"\x08\x00" + ip + udp
    assert len(frame) == size
    write_frame_pcap(path, frame)


def ipv4_header(total_len: int, proto: int, src: bytes, dst: bytes) -> bytes:
    """An IPv4 header (no options, DF, TTL 64) with its checksum."""
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, total_len, 0, 0x4000, 64, proto, 0,
                               src, dst))
    ip[10:12] = struct.pack("!H", _csum(bytes(ip)))
    return bytes(ip)


def write_frame_pcap(path: Path, frame: bytes) -> None:
    """A pcap file (microsecond, Ethernet) holding one frame."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        f.write(struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame)


# ---------------------------------------------------------------- set-up


@dataclass
class Setup:
    work: Path  # sockets, config, pcap (deleted at the end)
    out: Path  # logs and results (kept)
    s2ds: Path
    tester_core: int
    fwd_core: int
    tag: str  # unique per run: file prefixes
    quiet_limit: float = 0.1  # CPUs other processes may use before a round
    quiet_wait: float = 60.0  # longest wait for that, seconds

    @property
    def lan_sock(self) -> Path:
        return self.work / "lan.sock"

    @property
    def wan_sock(self) -> Path:
        return self.work / "wan.sock"

    def memif(self, name: str, role: str, sock: Path, mac: str) -> str:
        # socket-abstract=no: a real socket file in our private directory
        # (22.11 defaults to the abstract namespace).
        return f"{name},role={role},socket={sock},socket-abstract=no,mac={mac}"

    def prefixes(self) -> list[str]:
        return [f"{self.tag}-{x}" for x in ("tst", "tpmd", "s2ds")]


def start_tester(su: Setup, size: int, pcap: Path | None = None, into_wan: bool = False,
                 log_name: str | None = None) -> Proc:
    """testpmd with three ports in a chain (io forwarding): port 0 replays
    `pcap` (default: one plain frame of `size` bytes) into port 1, and what
    port 2 receives goes to port 0's transmit (the sink). Port 1 is the LAN
    memif and port 2 the WAN one, or the other way round with `into_wan`
    (frames for the gateway's WAN port, counted at its LAN side). Its log is
    OUT/`log_name` (default tester-SIZE.log)."""
    if pcap is None:
        pcap = su.work / f"frame{size}.pcap"
        write_pcap(pcap, size)
    lan = (su.lan_sock, GEN_MAC)
    wan = (su.wan_sock, SINK_MAC)
    first, second = (wan, lan) if into_wan else (lan, wan)
    cmd = [
        *TESTPMD,
        f"--lcores=0@{su.tester_core},1@{su.tester_core}",
        *EAL_COMMON,
        f"--file-prefix={su.tag}-tst",
        f"--vdev=net_pcap0,rx_pcap={pcap},infinite_rx=1",
        "--vdev=" + su.memif("net_memif0", "server", *first),
        "--vdev=" + su.memif("net_memif1", "server", *second),
        "--",
        "-i",
        "--forward-mode=io",
        "--port-topology=chained",
        "--no-flush-rx",
        *TESTPMD_COMMON,
    ]
    t = Proc(f"tester({size}B)", cmd, su.out / (log_name or f"tester-{size}.log"),
             stdin_pipe=True)
    t.wait_for(r"testpmd> ", 0, 30)
    for s in (su.lan_sock, su.wan_sock):
        if not s.exists():
            raise BenchError(f"the tester did not create {s}; see {t.log_path}")
    return t


def s2ds_config(su: Setup) -> Path:
    """The forwarding bench's s2ds: a plain router over the two memifs."""
    return write_s2ds_config(su, "s2ds.toml", "bench", "10.10.100.1/24", "10.20.0.0/16", "",
                             "benches/dpdk_forward.py")


def write_s2ds_config(su: Setup, file_name: str, gateway: str, wan_address: str,
                      route_prefix: str, extra: str, generator: str,
                      workers_extra: str = "") -> Path:
    """Writes an s2ds config for one worker on the forwarder core over the
    two memif ports (LAN 10.10.1.1/24, WAN `wan_address`), with a route to
    `route_prefix` through the tester's WAN port and `extra` sections (a
    tunnel) appended; checks it with `s2ds check-config` and keeps a copy in
    the output directory. `workers_extra` is appended to `[workers]`."""
    cfg = su.work / file_name
    eal = ", ".join(
        f'"{a}"' for a in ["-l", str(su.tester_core), *EAL_COMMON, f"--file-prefix={su.tag}-s2ds"]
    )
    lan = su.memif("net_memif0", "client", su.lan_sock, FWD_LAN_MAC)
    wan = su.memif("net_memif1", "client", su.wan_sock, FWD_WAN_MAC)
    cfg.write_text(
        f"""# Generated by {generator}
[gateway]
name = "{gateway}"
stats_path = "{su.work / 's2ds.stats.json'}"

[workers]
cores = [{su.fwd_core}]
slowpath_core = {su.tester_core}
idle_sleep_us = 0
{workers_extra}
[dpdk]
eal_args = [{eal}]
mempool_size = 8191
mempool_cache = 256
rx_desc = 1024
tx_desc = 1024

[ports.lan]
backend = "dpdk"
device = "{lan}"
address = "10.10.1.1/24"

[ports.wan]
backend = "dpdk"
device = "{wan}"
address = "{wan_address}"

[[routes]]
prefix = "{route_prefix}"
via = "{NEXT_HOP}"

[[neighbors]]
ip = "{NEXT_HOP}"
mac = "{SINK_MAC}"
{extra}
[logging]
level = "info"
"""
    )
    r = subprocess.run([str(su.s2ds), "check-config", str(cfg)], capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"s2ds check-config rejected the generated config:\n{r.stdout}{r.stderr}")
    shutil.copy(cfg, su.out / file_name)
    return cfg


def start_forwarder(su: Setup, kind: str, tag: str, burst_stats: bool = False) -> Proc:
    """Starts forwarder `kind` and waits until it forwards. With
    `burst_stats`, testpmd also records how full its receive bursts were."""
    if kind == "testpmd-io":
        cmd = [
            *TESTPMD,
            # main lcore (idle: waits for a key press) beside the tester,
            # forwarding lcore alone on the forwarder core, as s2ds below.
            f"--lcores=0@{su.tester_core},1@{su.fwd_core}",
            *EAL_COMMON,
            f"--file-prefix={su.tag}-tpmd",
            "--vdev=" + su.memif("net_memif0", "client", su.lan_sock, FWD_LAN_MAC),
            "--vdev=" + su.memif("net_memif1", "client", su.wan_sock, FWD_WAN_MAC),
            "--",
            "--forward-mode=io",
            *TESTPMD_COMMON,
            *(["--record-burst-stats", "--record-core-cycles"] if burst_stats else []),
        ]
        p = Proc(kind, cmd, su.out / f"{tag}.log", stdin_pipe=True)
        p.wait_for(r"Press enter to exit", 0, 30)
        return p
    stats = su.work / "s2ds.stats.json"
    stats.unlink(missing_ok=True)
    p = Proc(kind, [str(su.s2ds), "run", str(su.work / "s2ds.toml")], su.out / f"{tag}.log",
             stdin_pipe=False)
    deadline = time.monotonic() + 30
    while not stats.exists():
        if not p.alive():
            raise BenchError(f"s2ds exited (code {p.p.returncode}); see {p.log_path}")
        if time.monotonic() > deadline:
            raise BenchError(f"s2ds wrote no stats snapshot within 30 s; see {p.log_path}")
        time.sleep(0.05)
    snap = json.loads(stats.read_text())
    if snap["ports"][0]["mac"].lower() != FWD_LAN_MAC:
        raise BenchError(f"s2ds LAN MAC is {snap['ports'][0]['mac']}, expected {FWD_LAN_MAC}")
    return p


# ---------------------------------------------------------------- CPU share


def poll_thread(pid: int, names: tuple[str, ...]) -> int:
    """The thread id of a process's busy-polling thread: the one named like
    `names` (s2ds: s2ds-worker0; testpmd 22.11: rte-worker-1), else the thread
    that has run the longest."""
    best, best_run = pid, -1
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            run = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if comm in names:
            return int(task.name)
        if run > best_run:
            best, best_run = int(task.name), run
    return best


def run_ns(pid: int, tid: int) -> int:
    """Nanoseconds thread `tid` has spent on a CPU (/proc/.../schedstat)."""
    return int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])


def steal_ticks(cpus: tuple[int, ...]) -> int:
    """Steal time (USER_HZ ticks) of the given CPUs so far (/proc/stat)."""
    total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f[0] in {f"cpu{c}" for c in cpus}:
            total += int(f[8])
    return total


def cpu_busy(seconds: float) -> float:
    """CPUs' worth of time spent busy, system-wide, over `seconds` (/proc/stat)."""

    def sample() -> tuple[int, int]:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = f[3] + f[4]
        return sum(f[:8]) - idle, idle

    b0, _ = sample()
    time.sleep(seconds)
    b1, _ = sample()
    return (b1 - b0) / os.sysconf("SC_CLK_TCK") / seconds


def wait_quiet(limit: float, max_wait: float) -> None:
    """Between rounds nothing of ours polls, so the machine should be idle.
    Waits (up to `max_wait` s) while other processes keep more than `limit`
    CPUs busy: a polling thread that loses its CPU stalls the whole chain."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy(1.0)
    if busy <= limit:
        return
    log(f"other processes keep {busy:.2f} CPUs busy; waiting up to {max_wait:.0f} s for quiet")
    while busy > limit and time.monotonic() < deadline:
        busy = cpu_busy(2.0)
    if busy > limit:
        log(f"still {busy:.2f} CPUs busy; measuring anyway (the round will likely be disturbed)")


class CpuWatch:
    """How much of the wall-clock time the forwarder's and the tester's
    polling threads actually got their CPU during a window. A busy-polling
    thread should get ~100 %; less means another process or the hypervisor
    took the CPU, and the round is not a fair measurement."""

    def __init__(self, fwd: Proc, fwd_names: tuple[str, ...], tester: Proc, cpus: tuple[int, ...]):
        self.threads = [
            (fwd.pid, poll_thread(fwd.pid, fwd_names)),
            (tester.pid, poll_thread(tester.pid, TESTPMD_LCORE)),
        ]
        self.cpus = cpus
        self.t0 = time.monotonic_ns()
        self.run0 = [run_ns(p, t) for p, t in self.threads]
        self.steal0 = steal_ticks(cpus)

    def shares(self) -> tuple[float, float, float]:
        """(forwarder share, tester share, steal share of the two CPUs)."""
        wall = time.monotonic_ns() - self.t0
        f, t = ((run_ns(p, tid) - r0) / wall for (p, tid), r0 in zip(self.threads, self.run0))
        hz = os.sysconf("SC_CLK_TCK")
        steal = (steal_ticks(self.cpus) - self.steal0) / hz * 1e9 / wall / len(self.cpus)
        return f, t, steal


# ---------------------------------------------------------------- tester


@dataclass
class FwdStats:
    """Per-port counters of one 'show fwd stats all' (cumulative since start)."""

    t: float
    rx: dict[int, int] = field(default_factory=dict)
    tx: dict[int, int] = field(default_factory=dict)
    tx_dropped: dict[int, int] = field(default_factory=dict)


PORT_BLOCK = re.compile(
    r"Forward statistics for port (\d+).*?RX-packets:\s*(\d+).*?TX-packets:\s*(\d+)\s+"
    r"TX-dropped:\s*(\d+)",
    re.S,
)


def fwd_stats(tester: Proc) -> FwdStats:
    start = tester.offset()
    t = time.monotonic()
    tester.send("show fwd stats all")
    m = tester.wait_for(r"Accumulated forward statistics.*?\n[^\n]*\n[^\n]*\n\s*\+{20,}", start, 10)
    block = tester.text(start)[: m.end()]
    s = FwdStats(t)
    for port, rx, tx, txd in PORT_BLOCK.findall(block):
        s.rx[int(port)] = int(rx)
        s.tx[int(port)] = int(tx)
        s.tx_dropped[int(port)] = int(txd)
    if 2 not in s.rx:
        raise BenchError(f"cannot parse the tester's forward statistics; see {tester.log_path}")
    return s


def wait_links_up(tester: Proc, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        up = []
        for port in (1, 2):
            start = tester.offset()
            tester.send(f"show port info {port}")
            m = tester.wait_for(r"Link status:\s*(\w+)", start, 10)
            up.append(m.group(1) == "up")
        if all(up):
            return
        if time.monotonic() > deadline:
            raise BenchError("the memif links did not come up (is the forwarder connected?)")
        time.sleep(0.2)


@dataclass
class Round:
    forwarder: str
    size: int
    index: int
    seconds: float
    sink_frames: int
    offered: int
    refused: int  # frames the forwarder's LAN ring had no room for
    fwd_cpu: float = 1.0  # share of the window the forwarder thread ran
    tester_cpu: float = 1.0  # same for the tester's polling thread
    steal: float = 0.0  # hypervisor steal share of the two CPUs
    extra: dict = field(default_factory=dict)

    def disturbed(self, min_cpu: float) -> bool:
        """Another process or the hypervisor took CPU time from the forwarder
        or the tester during the window."""
        return self.fwd_cpu < min_cpu or self.tester_cpu < min_cpu

    @property
    def mpps(self) -> float:
        return self.sink_frames / self.seconds / 1e6

    @property
    def forwarder_bound(self) -> bool:
        """The generator offered more than the forwarder took (its LAN ring
        was full): the forwarder, not the tester, set the rate."""
        return self.offered > 0 and self.refused / self.offered > 0.01


def measure(su: Setup, tester: Proc, kind: str, size: int, idx: int, warmup: float,
            duration: float, during=None, burst_stats: bool = False) -> Round:
    tag = f"{kind}-{size}-r{idx}"
    wait_quiet(su.quiet_limit, su.quiet_wait)
    fwd = start_forwarder(su, kind, tag, burst_stats)
    try:
        wait_links_up(tester)
        start = tester.offset()
        tester.send("start")
        tester.wait_for(r"io packet forwarding", start, 10)
        time.sleep(warmup)
        names = ("s2ds-worker0",) if kind == "s2ds" else TESTPMD_LCORE
        cpu = CpuWatch(fwd, names, tester, (su.fwd_core, su.tester_core))
        a = fwd_stats(tester)
        if during is not None:
            during(fwd)
        time.sleep(max(0.0, duration - (time.monotonic() - a.t)))
        b = fwd_stats(tester)
        fwd_cpu, tester_cpu, steal = cpu.shares()
        start = tester.offset()
        tester.send("stop")
        tester.wait_for(r"Done\.", start, 10)
        # s2ds removes its snapshot when it stops: read it while it runs
        # (it is rewritten every 250 ms; the traffic has stopped).
        snap = None
        if kind == "s2ds":
            time.sleep(0.5)
            snap = json.loads((su.work / "s2ds.stats.json").read_text())
    finally:
        fwd.stop()
    r = Round(
        forwarder=kind,
        size=size,
        index=idx,
        seconds=b.t - a.t,
        sink_frames=b.rx[2] - a.rx[2],
        offered=b.rx[0] - a.rx[0],
        refused=b.tx_dropped[1] - a.tx_dropped[1],
        fwd_cpu=fwd_cpu,
        tester_cpu=tester_cpu,
        steal=steal,
    )
    if snap is not None:
        r.extra["s2ds_drops"] = {k: v for k, v in snap["drops"].items() if v}
        r.extra["s2ds_lan_rx"] = snap["ports"][0]["counts"]["rx_packets"]
        r.extra["s2ds_wan_tx"] = snap["ports"][1]["counts"]["tx_packets"]
    if r.sink_frames <= 0:
        raise BenchError(f"{tag}: the sink received nothing; see {su.out}/{tag}.log")
    return r


# ---------------------------------------------------------------- profile


def profile(su: Setup, tester: Proc, kinds: tuple[str, ...], seconds: float,
            warmup: float) -> None:
    """Samples the forwarder core with perf while each forwarder runs at 64 B
    (event cpu-clock: this VM exposes no PMU counters), and writes a profile
    by shared object and by symbol."""
    if shutil.which("perf") is None:
        log("perf not found: no profile (apt-get install linux-perf)")
        return
    for kind in kinds:
        data = su.out / f"perf-{kind}.data"
        report = su.out / f"perf-{kind}.txt"

        def during(_fwd, data=data):
            subprocess.run(
                ["perf", "record", "-q", "-e", "cpu-clock", "-F", "4999", "-C", str(su.fwd_core),
                 "-o", str(data), "--", "sleep", str(seconds)],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )

        r = measure(su, tester, kind, 64, 0, warmup, seconds + 1, during=during,
                    burst_stats=True)
        text = []
        for sort, limit in (("dso", "1"), ("dso,symbol", "0.7")):
            rep = subprocess.run(
                ["perf", "report", "-i", str(data), "--stdio", "--no-children",
                 "--sort", sort, "--percent-limit", limit],
                capture_output=True, text=True,
            )
            text.append(rep.stdout)
        report.write_text("\n".join(text))
        log(f"profile of {kind} at 64 B ({r.mpps:.2f} Mpps while sampled, forwarder CPU "
            f"{100 * r.fwd_cpu:.0f} %), core {su.fwd_core}; full report: {report}")
        if kind == "testpmd-io":
            # testpmd's own view of its LAN receive bursts (whole run; empty
            # polls are idle time) and of its busy cycles per packet, hence
            # its capacity whatever the tester could offer.
            fwd_log = (su.out / "testpmd-io-64-r0.log").read_text()
            m = re.search(r"RX-bursts : \d+ \[([^\]]*)\]", fwd_log)
            if m:
                log(f"testpmd io LAN receive bursts: {m.group(1)}")
            m = re.search(r"CPU cycles/packet=([\d.]+).*?at (\d+) MHz", fwd_log, re.S)
            if m:
                cpp, mhz = float(m.group(1)), int(m.group(2))
                log(f"testpmd io busy cycles per frame: {cpp:.0f} at {mhz} MHz, i.e. "
                    f"{mhz / cpp:.1f} Mpps if it were never idle")
        for block in text:
            rows = [ln.rstrip(" -") for ln in block.splitlines()
                    if ln.strip() and not ln.startswith("#")]
            for ln in rows[:20]:
                print("    " + ln)
            print()


# ---------------------------------------------------------------- main


def begin_run(args, tag: str, stem: str) -> tuple[Path, Path, Setup]:
    """What every memif bench does first: a work directory (removed by the
    caller), the output directory, the shared set-up, clean stops on
    SIGINT/SIGTERM/SIGHUP and the time limit as an exception."""
    tag = f"{tag}{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix=f"{stem}-"))
    out = args.out or Path(f"/tmp/{stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    Proc.pid_file = Path(os.environ.get("BENCH_PID_FILE", str(work / "pids")))
    su = Setup(work, out, args.s2ds.resolve(), args.tester_core, args.fwd_core, tag,
               quiet_wait=args.quiet_wait)

    def on_signal(signum, _frame):
        log(f"interrupted ({signal.Signals(signum).name}): stopping everything")
        raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    def on_alarm(_signum, _frame):
        raise BenchError(f"time limit of {args.time_limit:.0f} s reached")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.time_limit))
    return work, out, su


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--s2ds", required=True, type=Path, help="the s2ds binary")
    ap.add_argument("--sizes", default="64,1400", help="frame sizes in bytes, comma separated")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per forwarder and size")
    ap.add_argument("--duration", type=float, default=5, help="measured seconds per round")
    ap.add_argument("--warmup", type=float, default=2, help="seconds of traffic before measuring")
    ap.add_argument("--fwd-core", type=int, default=1, help="CPU of the forwarder")
    ap.add_argument("--tester-core", type=int, default=0, help="CPU of the generator/sink")
    ap.add_argument("--profile", action="store_true", help="perf profile of both forwarders at 64 B")
    ap.add_argument("--out", type=Path, help="directory for logs and results")
    ap.add_argument("--time-limit", type=float, default=900, help="abort after this many seconds")
    ap.add_argument("--min-cpu", type=float, default=0.97,
                    help="a round counts only if the forwarder and tester threads each ran this "
                         "share of the window; otherwise it is repeated")
    ap.add_argument("--retries", type=int, default=2, help="repeats of a disturbed round")
    ap.add_argument("--quiet-wait", type=float, default=60,
                    help="before a round, wait up to this many seconds for other processes "
                         "to leave the CPUs idle")
    ap.add_argument("--plot", type=Path,
                    help="write the best rounds as a PNG bar chart here (default: OUT/forward.png)")
    ap.add_argument("--smoke", action="store_true",
                    help="one short round at 64 B per forwarder, no CPU checks: proves the bench "
                         "still runs end to end (CI); fails if a forwarder delivered nothing")
    args = ap.parse_args()
    if args.smoke:
        args.sizes, args.rounds, args.duration, args.warmup = "64", 1, 1.0, 0.5
        args.min_cpu, args.retries, args.quiet_wait, args.time_limit = 0.0, 0, 0.0, 300

    sizes = [int(x) for x in args.sizes.split(",") if x]
    if os.geteuid() != 0:
        print("dpdk_forward: run as root (DPDK needs it)", file=sys.stderr)
        return 2
    if shutil.which("dpdk-testpmd") is None:
        print("dpdk_forward: dpdk-testpmd not found (apt-get install dpdk)", file=sys.stderr)
        return 2
    if args.fwd_core == args.tester_core:
        print("dpdk_forward: --fwd-core and --tester-core must differ", file=sys.stderr)
        return 2

    work, out, su = begin_run(args, "s2bench", "s2ds-bench")

    rounds: list[Round] = []
    started = time.monotonic()
    try:
        s2ds_config(su)
        per_round = args.warmup + args.duration + 4
        est = len(sizes) * args.rounds * len(FORWARDERS) * per_round
        log(f"{len(sizes)} sizes x {args.rounds} rounds x {len(FORWARDERS)} forwarders, "
            f"about {est / 60:.1f} min; logs in {out}")
        for size in sizes:
            tester = start_tester(su, size)
            try:
                for i in range(1, args.rounds + 1):
                    # Alternate the order so neither forwarder always goes first.
                    order = FORWARDERS if i % 2 else tuple(reversed(FORWARDERS))
                    for kind in order:
                        for attempt in range(args.retries + 1):
                            r = measure(su, tester, kind, size, i, args.warmup, args.duration)
                            report_round(r, args.min_cpu)
                            if not r.disturbed(args.min_cpu):
                                break
                            if attempt < args.retries:
                                log("  disturbed (CPU taken from a polling thread): repeating")
                        rounds.append(r)
                if args.profile and size == 64:
                    profile(su, tester, FORWARDERS, 5, args.warmup)
            finally:
                tester.stop()
    except BenchError as e:
        log(f"FAILED: {e}")
        return 1
    finally:
        signal.alarm(0)
        Proc.stop_all()
        shutil.rmtree(work, ignore_errors=True)
        for p in su.prefixes():
            shutil.rmtree(f"/var/run/dpdk/{p}", ignore_errors=True)

    (out / "rounds.json").write_text(json.dumps(
        [{"forwarder": r.forwarder, "size": r.size, "round": r.index, "seconds": r.seconds,
          "sink_frames": r.sink_frames, "offered": r.offered, "refused": r.refused,
          "mpps": r.mpps, "fwd_cpu": r.fwd_cpu, "tester_cpu": r.tester_cpu, "steal": r.steal,
          "disturbed": r.disturbed(args.min_cpu), **r.extra} for r in rounds], indent=1))
    table = summary(rounds, sizes, args)
    (out / "summary.md").write_text(table)
    print()
    print(table)
    plot_path = args.plot or out / "forward.png"
    try:
        plot(rounds, sizes, args, plot_path)
        log(f"plot: {plot_path}")
    except ImportError as e:
        log(f"no plot ({e}; scripts/setup.sh installs python3-matplotlib)")
    log(f"done in {time.monotonic() - started:.0f} s; logs and rounds.json in {out}")
    if args.smoke:
        silent = sorted({r.forwarder for r in rounds if r.sink_frames == 0})
        if silent or not rounds:
            log(f"SMOKE FAILED: no frames at the sink from {silent or 'any forwarder'}")
            return 1
        log("smoke: every forwarder delivered frames")
    return 0


def plot(rounds: list[Round], sizes: list[int], args, path: Path) -> None:
    """The best clean round per forwarder and size, as a bar chart."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from plot import grouped_bars

    series = {}
    for kind in FORWARDERS:
        vals = []
        for size in sizes:
            rs = [r for r in rounds if r.size == size and r.forwarder == kind]
            clean = [r for r in rs if not r.disturbed(args.min_cpu)] or rs
            vals.append(max((r.mpps for r in clean), default=0.0))
        series[kind] = vals
    grouped_bars(path, "DPDK forwarding over net_memif, one worker (best round)", "Mpps",
                 [f"{s} B" for s in sizes], series,
                 f"{args.rounds} rounds x {args.duration:g} s; benches/dpdk_forward.sh")


def report_round(r: Round, min_cpu: float) -> None:
    note = " ".join(f"{k}={v}" for k, v in r.extra.items())
    flag = " DISTURBED" if r.disturbed(min_cpu) else ""
    log(f"{r.size:5d} B {r.forwarder:10s} round {r.index}: {r.mpps:7.3f} Mpps at the sink "
        f"(offered {r.offered / r.seconds / 1e6:.2f} Mpps, refused "
        f"{100 * r.refused / max(r.offered, 1):.1f} %; CPU fwd {100 * r.fwd_cpu:.1f} %, "
        f"tester {100 * r.tester_cpu:.1f} %, steal {100 * r.steal:.1f} %){flag} {note}")


def summary(rounds: list[Round], sizes: list[int], args) -> str:
    """The markdown table: per size, the best and the median round of each
    forwarder, and s2ds / testpmd for both."""
    lines = [
        f"DPDK forwarding over net_memif, 1 worker on core {args.fwd_core}, tester on core "
        f"{args.tester_core}; {args.rounds} rounds x {args.duration:g} s per forwarder and size, "
        f"counted at the sink (Gb/s: Ethernet frames without FCS).",
        "",
        "| frame | testpmd io best (Mpps) | s2ds best (Mpps) | s2ds best (Gb/s) | **s2ds / testpmd, best** "
        "| testpmd io median | s2ds median | s2ds / testpmd, median | rounds testpmd io | rounds s2ds |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for size in sizes:
        best, med, per = {}, {}, {}
        for kind in FORWARDERS:
            rs = [r for r in rounds if r.size == size and r.forwarder == kind]
            clean = [r for r in rs if not r.disturbed(args.min_cpu)] or rs
            best[kind] = max(r.mpps for r in clean)
            med[kind] = statistics.median(r.mpps for r in clean)
            per[kind] = ", ".join(
                f"{r.mpps:.2f}" + ("*" if r.disturbed(args.min_cpu) else "")
                + ("" if r.forwarder_bound else "t") for r in rs)
        t, s = "testpmd-io", "s2ds"
        lines.append(
            f"| {size} B | {best[t]:.2f} | {best[s]:.2f} | {best[s] * size * 8 / 1000:.1f} | "
            f"**{best[s] / best[t]:.2f}** | {med[t]:.2f} | {med[s]:.2f} | {med[s] / med[t]:.2f} | "
            f"{per[t]} | {per[s]} |"
        )
    lines += [
        "",
        "Best round = the closest to each forwarder's capacity: on a shared VM, interference "
        "only ever lowers a round. `t`: the forwarder kept up with the generator in that round "
        "(it refused under 1 % of the offered frames), so the tester set the rate.",
    ]
    if any(r.disturbed(args.min_cpu) for r in rounds):
        lines.append(f"`*`: still disturbed after {args.retries} repeats (a polling thread got "
                     f"less than {100 * args.min_cpu:.0f} % of its CPU); left out of best and "
                     f"median unless every round was.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
