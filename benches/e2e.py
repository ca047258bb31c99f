#!/usr/bin/env python3
"""End-to-end throughput through two gateways on the namespace testbed,
s2ds against what SciStream uses today, in one run.

prod (iperf3 server) -- gwA -- wan -- gwB -- cons (iperf3 client: the
consumer opens the connections, as with SciStream's listeners), for each
mode:

  kernel          both gateways plain Linux routers (the ceiling)
  haproxy         an HAProxy pair in TCP mode (SciStream's default proxies)
  stunnel-tls13   a stunnel pair, TLS 1.3 (SciStream's encrypted mode)
  stunnel-psk     a stunnel pair, TLS 1.2 PSK-NULL-SHA256 (authenticated, not
                  encrypted: SciStream's other stunnel mode)
  s2ds-native     s2ds on native AF_XDP, ESP-in-UDP AES-GCM tunnel (routed)
  s2ds-af_packet  s2ds on DPDK net_af_packet
  s2ds-af_xdp     s2ds on DPDK net_af_xdp
  s2ds-tap        s2ds on TAP

Per mode and round: iperf3 TCP with 1 and 4 streams (throughput, sender
retransmits) and, where the path carries UDP (kernel and s2ds), iperf3 UDP
with 1400-byte datagrams offered as fast as iperf3 can (throughput, loss),
with 4 MiB socket buffers at both ends (--udp-buffer; as DTN hosts are tuned)
and the kernel's drop counters of every namespace beside iperf3's loss. For
s2ds, each gateway's work per test: frames per burst, busy share, sleeps.
--mtu sets every link's and port's MTU (jumbo frames as DTNs run them).
Writes a markdown table (medians and best rounds, ratios against HAProxy and
stunnel TLS 1.3) and a PNG bar chart. With --profile, each mode's first TCP
tests (P=1 and P=4) run under `perf record` of every CPU: CPU shares by thread (kernel
and user space) in the table, the heaviest functions in OUT/perf-MODE-TEST.txt.
Every namespace, process and file it made is removed on exit, also on
failure or ^C.
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTBED = REPO / "scripts" / "testbed.sh"
MODES = ("kernel", "haproxy", "stunnel-tls13", "stunnel-psk",
         "s2ds-native", "s2ds-af_packet", "s2ds-af_xdp", "s2ds-tap")
S2DS_CONFIG = {
    "s2ds-native": "native-xdp",
    "s2ds-af_packet": "af_packet",
    "s2ds-af_xdp": "af_xdp",
    "s2ds-tap": "tap",
}
UDP_MODES = ("kernel",) + tuple(S2DS_CONFIG)
PROD, CONS = "10.10.1.2", "10.20.1.2"
GWA_WAN, GWB_LAN = "10.10.100.1", "10.20.1.1"
PORT = 5201


def log(msg):
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class BenchError(Exception):
    pass


class Testbed:
    """One namespace testbed (scripts/testbed.sh) and the processes started in it."""

    def __init__(self, prefix, gw_mode, mtu):
        self.prefix = prefix
        self.procs = []
        run([str(TESTBED), "up", "--prefix", prefix, "--gw-a", gw_mode, "--gw-b", gw_mode,
             "--mtu", str(mtu)])

    def ns(self, node):
        return f"{self.prefix}-{node}"

    def cmd(self, node, argv):
        return ["ip", "netns", "exec", self.ns(node), *argv]

    def spawn(self, node, argv, log_path):
        f = open(log_path, "ab")
        p = subprocess.Popen(self.cmd(node, argv), stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append((p, f))
        return p

    def run(self, node, argv, timeout):
        return subprocess.run(self.cmd(node, argv), capture_output=True, text=True,
                              timeout=timeout)

    def ping(self, node, ip):
        return self.run(node, ["ping", "-c", "1", "-W", "1", ip], 5).returncode == 0

    def close(self):
        for p, f in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            f.close()
        self.procs.clear()
        run([str(TESTBED), "down", "--prefix", self.prefix], check=False)
        # The DPDK runtime directories of s2ds's --file-prefix (s2ds_pair).
        for node in ("gwa", "gwb"):
            shutil.rmtree(f"/var/run/dpdk/{self.prefix}-{node}", ignore_errors=True)


def run(argv, check=True):
    r = subprocess.run(argv, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise BenchError(f"{' '.join(argv)}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def wait_port(tb, node, ip, port, timeout=20):
    """Until something accepts TCP connections at ip:port, seen from `node`."""
    probe = ("import socket,sys\n"
             "s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=1)\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tb.run(node, [sys.executable, "-c", probe, ip, str(port)], 5).returncode == 0:
            return
        time.sleep(0.2)
    raise BenchError(f"nothing listens on {ip}:{port} (seen from {node})")


def haproxy(tb, work):
    for node, bind, to in (("gwa", f"{GWA_WAN}:{PORT}", f"{PROD}:{PORT}"),
                           ("gwb", f"{GWB_LAN}:{PORT}", f"{GWA_WAN}:{PORT}")):
        cfg = work / f"haproxy-{node}.cfg"
        cfg.write_text(
            "global\n  maxconn 1000\n"
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 120s\n"
            "  timeout server 120s\n"
            f"listen stream\n  bind {bind}\n  server far {to}\n")
        tb.spawn(node, ["haproxy", "-db", "-f", str(cfg)], work / f"haproxy-{node}.log")
    wait_port(tb, "cons", GWB_LAN, PORT)
    return GWB_LAN


def stunnel(tb, work, psk):
    certs = work / "certs"
    if not certs.exists():
        run(["bash", str(REPO / "scripts" / "gen-certs.sh"), str(certs), "gwa"])
    tls = ("sslVersion = TLSv1.2\nciphers = PSK-NULL-SHA256\nsecurityLevel = 0\n"
           f"PSKsecrets = {work / 'psk.txt'}\n") if psk else "sslVersion = TLSv1.3\n"
    if psk:
        (work / "psk.txt").write_text("scistream:" + "k" * 32 + "\n")
        os.chmod(work / "psk.txt", 0o600)
    server = (f"foreground = yes\npid =\n[srv]\naccept = {GWA_WAN}:5443\n"
              f"connect = {PROD}:{PORT}\n{tls}")
    if not psk:
        server += f"cert = {certs / 'gwa.pem'}\nkey = {certs / 'gwa.key'}\n"
    client = (f"foreground = yes\npid =\n[cli]\nclient = yes\naccept = {GWB_LAN}:{PORT}\n"
              f"connect = {GWA_WAN}:5443\n{tls}")
    for node, text in (("gwa", server), ("gwb", client)):
        cfg = work / f"stunnel-{node}.conf"
        cfg.write_text(text)
        tb.spawn(node, ["stunnel4", str(cfg)], work / f"stunnel-{node}.log")
    wait_port(tb, "cons", GWB_LAN, PORT)
    return GWB_LAN


def s2ds_pair(tb, work, s2ds, kind, mtu):
    for node in ("gwa", "gwb"):
        src = REPO / "configs" / f"testbed-{node}-{kind}.toml"
        text = src.read_text()
        # Both ports at the testbed's MTU (the shipped configs say 1500).
        text, ports = re.subn(r"(?m)^mtu = 1500$", f"mtu = {mtu}", text)
        if ports != 2:
            raise BenchError(f"{src}: expected two 'mtu = 1500' lines, found {ports}")
        # Private stats files and DPDK runtime directories for this run.
        text = text.replace(f'name = "{node}"',
                            f'name = "{node}"\nstats_path = "{work / (node + ".stats.json")}"', 1)
        text = text.replace(f"--file-prefix=s2ds-{node}", f"--file-prefix={tb.prefix}-{node}")
        cfg = work / f"s2ds-{node}.toml"
        cfg.write_text(text)
        tb.spawn(node, [str(s2ds), "run", str(cfg)], work / f"s2ds-{node}.log")
    for node in ("gwa", "gwb"):
        stats = work / f"{node}.stats.json"
        deadline = time.monotonic() + 30
        while not stats.exists():
            if time.monotonic() > deadline:
                raise BenchError(f"s2ds in {node} did not start; see {work}/s2ds-{node}.log")
            time.sleep(0.1)
    # The link bounces when af_packet/af_xdp attach: wait until prod and
    # cons reach each other through the tunnel.
    deadline = time.monotonic() + 30
    while not tb.ping("cons", PROD):
        if time.monotonic() > deadline:
            raise BenchError(f"cons does not reach prod through s2ds ({kind}); see {work}")
    return PROD


def iperf(tb, target, seconds, streams=1, udp_buffer=None):
    """One iperf3 test from cons to prod: TCP, or with `udp_buffer` UDP
    (1400-byte datagrams, unlimited rate) with socket buffers of that many
    bytes at both ends (0: the kernel's default)."""
    udp = udp_buffer is not None
    argv = ["iperf3", "-c", target, "-p", str(PORT), "-t", str(seconds), "-J",
            "-P", str(streams)]
    if udp:
        argv += ["-u", "-b", "0", "-l", "1400"] + (["-w", str(udp_buffer)] if udp_buffer else [])
    r = tb.run("cons", argv, seconds + 60)
    try:
        j = json.loads(r.stdout)
    except json.JSONDecodeError:
        raise BenchError(f"iperf3 {argv}: {r.stderr.strip() or r.stdout[:300]}") from None
    if "error" in j:
        raise BenchError(f"iperf3: {j['error']}")
    end = j["end"]
    if udp:
        # What arrived (the receiver's side), and what was lost on the way.
        s = end["sum"]
        got = end.get("sum_received", s)
        return {"gbps": got["bits_per_second"] / 1e9, "offered_gbps": s["bits_per_second"] / 1e9,
                "loss_pct": s.get("lost_percent", 0.0), "lost": s.get("lost_packets", 0),
                "packets": s.get("packets", 0)}
    return {"gbps": end["sum_received"]["bits_per_second"] / 1e9,
            "retransmits": end["sum_sent"].get("retransmits", 0)}


def snapshots(mwork):
    """Each s2ds gateway's latest stats snapshot (written four times a second)."""
    return {node: json.loads((mwork / f"{node}.stats.json").read_text())
            for node in ("gwa", "gwb")}


def gateway_drops(mwork, events=False):
    """Each s2ds gateway's drop counters from its stats snapshot, nonzero
    ones only: `drops.REASON` (the gateway's own), `host.PORT.NAME` (what
    its host lost below it: AF_XDP socket, netdev and DPDK port counters)
    and, with `events`, `events.PORT.NAME` (the *_ring_empty counters are
    ring events, not losses, docs/metrics.md: a loss they cause shows as
    xsk_rx_dropped)."""
    out = {}
    for node, snap in snapshots(mwork).items():
        d = {f"drops.{k}": v for k, v in snap["drops"].items() if v}
        for p in snap["ports"]:
            for k, v in p.get("host_drops", {}).items():
                if v and not k.endswith("_ring_empty"):
                    d[f"host.{p['id']}.{k}"] = v
                elif v and events:
                    d[f"events.{p['id']}.{k}"] = v
        out[node] = d
    return out


def counted_losses(udp):
    """The datagrams the counters say were lost: every link's rx/tx
    drops, the endpoints' UDP InErrors (which include RcvbufErrors), the
    gateways' own drops and their hosts' (not the ring events, and not the
    gateways' `netdev_*` counts: those are their interfaces' link drops,
    already read from the namespaces)."""
    k = udp["kernel_drops"]
    n = sum(v for key, v in k.items() if key.endswith(("_dropped", ".udp.InErrors")))
    return n + sum(v for d in udp["gateway_drops"].values() for key, v in d.items()
                   if ".netdev_" not in key)


def gateway_work(mwork):
    """Each s2ds gateway's work counters from its stats snapshot: the
    snapshot time, frames received, bursts, busy nanoseconds and idle
    sleeps, summed over its workers."""
    return {node: {"unix_ms": snap["unix_ms"], "bursts": snap["work"]["bursts"],
                   "busy_ns": snap["work"]["busy_ns"], "sleeps": snap["work"]["sleeps"],
                   "workers": snap["workers"],
                   "frames": sum(p["counts"]["rx_packets"] for p in snap["ports"])}
            for node, snap in snapshots(mwork).items()}


def work_rates(before, after):
    """Per gateway between two `gateway_work` readings: frames per burst,
    the workers' busy share of their wall time, idle sleeps per second."""
    rates = {}
    for node, a in after.items():
        b = before[node]
        secs = max(a["unix_ms"] - b["unix_ms"], 1) / 1000
        d = {k: a[k] - b[k] for k in ("bursts", "busy_ns", "sleeps", "frames")}
        rates[node] = {"frames_per_burst": d["frames"] / max(d["bursts"], 1),
                       "busy_pct": 100 * d["busy_ns"] / (secs * 1e9 * a["workers"]),
                       "sleeps_per_s": d["sleeps"] / secs, "seconds": secs}
    return rates


NODES = ("prod", "gwa", "wan", "gwb", "cons")
# The kernel's UDP counters that mean a datagram was dropped (/proc/net/snmp).
UDP_DROPS = ("InErrors", "RcvbufErrors", "SndbufErrors")


def kernel_drops(tb):
    """Every namespace's kernel drop counters: each link's rx/tx dropped
    (`ip -s -j link`; for a veth, frames its peer's receive ring refused
    are the sender's tx_dropped) and the UDP drops of /proc/net/snmp."""
    out = {}
    for node in NODES:
        r = tb.run(node, ["ip", "-s", "-j", "link", "show"], 10)
        for link in json.loads(r.stdout or "[]"):
            st = link.get("stats64", {})
            for way in ("rx", "tx"):
                out[f"{node}.{link['ifname']}.{way}_dropped"] = st.get(way, {}).get("dropped", 0)
        snmp = tb.run(node, ["cat", "/proc/net/snmp"], 10).stdout.splitlines()
        udp = [line.split()[1:] for line in snmp if line.startswith("Udp:")]
        if len(udp) == 2:
            for k, v in zip(*udp):
                if k in UDP_DROPS:
                    out[f"{node}.udp.{k}"] = int(v)
    return out


def delta(before, after):
    """The counters that moved, and by how much."""
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


class Profile:
    """`perf record` of every CPU while a test runs (cpu-clock, call graphs):
    the shares of CPU time by thread and by kernel or user space, and a
    report of the heaviest functions (self and with callees) in `base`.txt."""

    def __init__(self, base, seconds):
        self.seconds = seconds
        self.data, self.report = base.with_suffix(".data"), base.with_suffix(".txt")
        self.shares = {}

    def __enter__(self):
        self.proc = subprocess.Popen(
            ["perf", "record", "-q", "-a", "-g", "-e", "cpu-clock", "-F", "999",
             "-o", str(self.data), "--", "sleep", str(self.seconds)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc):
        self.proc.wait()
        if exc[0] is not None:
            return False
        report = ["perf", "report", "-i", str(self.data), "--stdio", "-g", "none"]
        by_thread = run(report + ["--no-children", "--sort", "comm,dso"]).stdout
        self.shares = thread_shares(by_thread)
        text = [by_thread]
        for extra in (["--no-children", "--sort", "sym"], ["--children", "--sort", "sym"]):
            text.append(run(report + extra).stdout)
        self.report.write_text("\n".join(text))
        self.data.unlink(missing_ok=True)
        return False


def thread_shares(text):
    """From `perf report --sort comm,dso`: per thread name (a worker's or
    per-CPU thread's number dropped), the percentage of samples in the
    kernel and in user space."""
    shares = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[0].endswith("%") or line.lstrip().startswith("#"):
            continue
        pct, comm, dso = float(parts[0][:-1]), parts[1], " ".join(parts[2:])
        name = re.sub(r"(?<=worker)\d+$|/\d+$", "", comm)
        side = "kernel" if dso.startswith("[kernel") or dso.startswith("bpf_") else "user"
        shares.setdefault(name, {"kernel": 0.0, "user": 0.0})[side] += pct
    return shares


def by_cpu(shares):
    """(thread, total %, kernel %, user %), the busiest thread first."""
    rows = [(n, v["kernel"] + v["user"], v["kernel"], v["user"]) for n, v in shares.items()]
    return sorted(rows, key=lambda r: -r[1])


def profile_line(shares):
    """The threads taking most CPU, e.g. `s2ds-worker 73.2 % (kernel 68.7)`."""
    return ", ".join(f"{n} {cpu:.1f} % (kernel {k:.1f})" for n, cpu, k, _ in by_cpu(shares)[:6])


def measure(mode, args, work, rnd):
    base = os.environ.get("E2E_PREFIX", f"e2e{os.getpid() % 100000}")
    prefix = f"{base}m{MODES.index(mode)}"
    gw_mode = "kernel" if mode in ("kernel", "haproxy") or mode.startswith("stunnel") else (
        "bridge" if mode == "s2ds-tap" else "none")
    mwork = work / f"{mode}-r{rnd}"
    mwork.mkdir(parents=True, exist_ok=True)
    tb = Testbed(prefix, gw_mode, args.mtu)
    try:
        if gw_mode == "kernel":
            # The testbed's routers reach each other's LANs; the proxies
            # also need gwA to reach gwB's WAN address.
            run(tb.cmd("gwa", ["ip", "route", "add", "10.10.200.0/24", "via", "10.10.100.254"]))
        if mode == "kernel":
            target = PROD
        elif mode == "haproxy":
            target = haproxy(tb, mwork)
        elif mode.startswith("stunnel"):
            target = stunnel(tb, mwork, psk=mode == "stunnel-psk")
        else:
            target = s2ds_pair(tb, mwork, args.s2ds, S2DS_CONFIG[mode], args.mtu)
        tb.spawn("prod", ["iperf3", "-s", "-p", str(PORT)], mwork / "iperf3-server.log")
        wait_port(tb, "prod", PROD, PORT)
        out = {"mode": mode, "round": rnd}
        profiled = args.profile and rnd == 1
        for key, streams in (("tcp1", 1), ("tcp4", 4)):
            work_before = gateway_work(mwork) if mode.startswith("s2ds") else None
            with (Profile(args.out_dir / f"perf-{mode}-{key}", max(1, args.duration - 1))
                  if profiled else contextlib.nullcontext()) as prof:
                out[key] = iperf(tb, target, args.duration, streams)
            if work_before:
                out[key]["gw_work"] = work_rates(work_before, gateway_work(mwork))
                log(f"  TCP P={streams}: " + "; ".join(
                    f"{node} {w['frames_per_burst']:.1f} frames/burst, busy {w['busy_pct']:.0f} %, "
                    f"{w['sleeps_per_s']:.0f} sleeps/s" for node, w in out[key]["gw_work"].items()))
            if profiled:
                out.setdefault("profile", {})[key] = prof.shares
                log(f"  profile (TCP P={streams}): {profile_line(prof.shares)}; {prof.report}")
        if mode in UDP_MODES:
            s2ds = mode.startswith("s2ds")
            # The workers read their host counters twice a second and the
            # gateways write snapshots four times: let the TCP tests' last drops land
            # before the UDP test's window opens, and its own before it closes.
            settle = 1.5 if s2ds else 0
            time.sleep(settle)
            before = kernel_drops(tb)
            gw_before = gateway_drops(mwork) if s2ds else {}
            out["udp"] = iperf(tb, target, args.duration, 1, udp_buffer=args.udp_buffer)
            time.sleep(settle)
            # Where the kernel lost datagrams (links, sockets), beside iperf3's count.
            out["udp"]["kernel_drops"] = delta(before, kernel_drops(tb))
            out["udp"]["gateway_drops"] = ({n: delta(gw_before[n], d)
                                             for n, d in gateway_drops(mwork).items()}
                                            if s2ds else {})
            out["udp"]["counted"] = counted_losses(out["udp"])
            log(f"  UDP: iperf3 lost {out['udp']['lost']}, counted {out['udp']['counted']}: "
                f"kernel {out['udp']['kernel_drops']}, gateways {out['udp']['gateway_drops']}")
        if mode.startswith("s2ds"):
            # Each gateway's own drops and what its host lost below it, over the whole run.
            for node, d in gateway_drops(mwork, events=True).items():
                out[f"{node}_drops"] = {k: v for k, v in d.items() if k.startswith("drops.")}
                out[f"{node}_host_drops"] = {k: v for k, v in d.items() if k.startswith("host.")}
                out[f"{node}_ring_events"] = {k: v for k, v in d.items()
                                              if k.startswith("events.")}
            log(f"  gwB (sends) drops {out['gwb_drops']} host {out['gwb_host_drops']}; "
                f"gwA drops {out['gwa_drops']} host {out['gwa_host_drops']}; ring events "
                f"gwB {out['gwb_ring_events']} gwA {out['gwa_ring_events']}")
        log(f"{mode} round {rnd}: TCP P=1 {out['tcp1']['gbps']:.2f} Gb/s "
            f"({out['tcp1']['retransmits']} retr), P=4 {out['tcp4']['gbps']:.2f} Gb/s"
            + (f", UDP {out['udp']['gbps']:.2f} Gb/s {out['udp']['loss_pct']:.1f} % lost"
               if "udp" in out else ""))
        return out
    finally:
        tb.close()


def table(results, modes, args):
    def pick(mode, key, field="gbps"):
        v = [r[key][field] for r in results if r["mode"] == mode and key in r]
        return (statistics.median(v), max(v)) if v else (None, None)

    ref = {k: pick("haproxy", k)[0] for k in ("tcp1", "tcp4")}
    tls = {k: pick("stunnel-tls13", k)[0] for k in ("tcp1", "tcp4")}
    kern_udp = pick("kernel", "udp")[0]
    buf = f"{args.udp_buffer} B" if args.udp_buffer else "the kernel's default"
    lines = [
        f"iperf3 through two gateways on the namespace testbed (MTU {args.mtu}), cons sends "
        f"to prod; {args.rounds} round(s) x {args.duration} s per test; median (best) in Gb/s; "
        f"UDP socket buffers {buf}.",
        "",
        "| mode | TCP P=1 | / HAProxy | / stunnel TLS 1.3 | retransmits | TCP P=4 | / HAProxy "
        "| / stunnel TLS 1.3 | UDP 1400 B | / kernel | UDP loss | lost / counted |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ratio(a, b):
        return f"{a / b:.2f}" if a is not None and b else "-"

    for m in modes:
        t1, b1 = pick(m, "tcp1")
        t4, b4 = pick(m, "tcp4")
        u, ub = pick(m, "udp")
        retr = [r["tcp1"]["retransmits"] for r in results if r["mode"] == m]
        udp = [r["udp"] for r in results if r["mode"] == m and "udp" in r]
        loss = [u["loss_pct"] for u in udp]
        # Datagrams iperf3 lost, and those the counters account for, over all rounds.
        lost = sum(u["lost"] for u in udp)
        counted = sum(u.get("counted", 0) for u in udp)
        lines.append(
            f"| {m} | {t1:.2f} ({b1:.2f}) | {ratio(t1, ref['tcp1'])} | {ratio(t1, tls['tcp1'])} "
            f"| {int(statistics.median(retr)) if retr else '-'} | {t4:.2f} ({b4:.2f}) "
            f"| {ratio(t4, ref['tcp4'])} | {ratio(t4, tls['tcp4'])} | "
            + (f"{u:.2f} ({ub:.2f}) | {ratio(u, kern_udp)} | {statistics.median(loss):.2f} % "
               f"| {lost} / {counted} |" if u is not None else "- | - | - | - |"))
    profiled = [r for r in results if r.get("profile") and r["mode"] in modes]
    if profiled:
        lines += ["", "Where the CPU time went during each mode's first TCP tests (perf, "
                  "both CPUs = 100 %; threads above 2 %):", "",
                  "| mode | test | thread | CPU | in the kernel | in user space |",
                  "|---|---|---|---:|---:|---:|"]
        for r in sorted(profiled, key=lambda r: modes.index(r["mode"])):
            for key, shares in r["profile"].items():
                test = "P=1" if key == "tcp1" else "P=4"
                lines += [f"| {r['mode']} | {test} | {name} | {cpu:.1f} % | {k:.1f} % "
                          f"| {u:.1f} % |" for name, cpu, k, u in by_cpu(shares) if cpu >= 2.0]
    return "\n".join(lines) + "\n"


def plot(results, modes, args, path):
    """The medians as a bar chart: TCP P=1, TCP P=4 and UDP per mode."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from plot import grouped_bars

    series = {}
    for key, label in (("tcp1", "TCP P=1"), ("tcp4", "TCP P=4"), ("udp", "UDP 1400 B")):
        series[label] = []
        for m in modes:
            v = [r[key]["gbps"] for r in results if r["mode"] == m and key in r]
            series[label].append(statistics.median(v) if v else None)
    grouped_bars(path, f"iperf3 through two gateways (namespace testbed, MTU {args.mtu}, median)",
                 "Gb/s",
                 modes, series, f"{args.rounds} round(s) x {args.duration} s; benches/e2e.sh")


def parse_size(text):
    """Bytes from e.g. `4M`, `512K` or `1048576`."""
    text = str(text).strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
    value = int(text[:-1] if scale > 1 else text)
    if value < 0:
        raise ValueError(text)
    return value * scale


SOCKET_LIMITS = ("/proc/sys/net/core/rmem_max", "/proc/sys/net/core/wmem_max")
_saved_limits = {}


def raise_socket_limits(size):
    """Raises the host's socket buffer limits (global, not per namespace)
    to `size` where they are lower, remembering the old values for
    `restore_socket_limits`. Returns the names of the limits raised."""
    raised = []
    for path in SOCKET_LIMITS:
        old = int(Path(path).read_text())
        if size > old:
            _saved_limits[path] = old
            Path(path).write_text(str(size))
            raised.append(Path(path).name)
    return raised


def restore_socket_limits():
    for path, old in _saved_limits.items():
        Path(path).write_text(str(old))
    _saved_limits.clear()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--s2ds", type=Path, required=True, help="the s2ds binary")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated, of: "
                    + ", ".join(MODES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per iperf3 test")
    ap.add_argument("--out", type=Path, help="directory for logs and results")
    ap.add_argument("--plot", type=Path, help="PNG bar chart (default OUT/e2e.png)")
    ap.add_argument("--mtu", type=int, default=1500,
                    help="MTU of every testbed link and s2ds port (576-3498: AF_XDP frames "
                    "are 4096 bytes; DTNs often run 9000)")
    ap.add_argument("--udp-buffer", default="4M",
                    help="socket buffer of the UDP test's sender and receiver (iperf3 -w; "
                    "K/M suffix; 0: the kernel's default, 208 KiB on Debian), as DTN hosts "
                    "raise it; net.core.rmem_max/wmem_max are raised to it for the run")
    ap.add_argument("--profile", action="store_true",
                    help="perf profile of every CPU during each mode's first TCP tests")
    ap.add_argument("--smoke", action="store_true",
                    help="one 2-second round of every mode (CI): proves the bench runs")
    args = ap.parse_args()
    if args.smoke:
        args.rounds, args.duration = 1, 2
    if not 576 <= args.mtu <= 3498:
        print(f"e2e: --mtu {args.mtu}: expected 576 to 3498 (the AF_XDP backend's largest)",
              file=sys.stderr)
        return 2
    try:
        args.udp_buffer = parse_size(args.udp_buffer)
    except ValueError:
        print(f"e2e: --udp-buffer {args.udp_buffer!r}: expected bytes with an optional K or M",
              file=sys.stderr)
        return 2
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad:
        print(f"e2e: unknown mode(s) {bad}; expected {', '.join(MODES)}", file=sys.stderr)
        return 2
    # The largest MTU each DPDK vdev carries as the testbed configs set it up.
    too_small = [f"{m} (at most {top}: {why})" for m, top, why in (
        ("s2ds-af_packet", 1500, "net_af_packet's 2048-byte frames"),
        ("s2ds-af_xdp", 3374, "net_af_xdp fits an mbuf into one 4 KiB UMEM frame"))
        if m in modes and args.mtu > top]
    if too_small:
        print(f"e2e: --mtu {args.mtu} is too large for {', '.join(too_small)}; leave them out",
              file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("e2e: run as root (namespaces)", file=sys.stderr)
        return 2
    for tool in ("iperf3", "haproxy", "stunnel4") + (("perf",) if args.profile else ()):
        if shutil.which(tool) is None:
            print(f"e2e: {tool} not found (scripts/setup.sh installs it)", file=sys.stderr)
            return 2
    out = args.out or Path(f"/tmp/s2-e2e-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    args.out_dir = out
    work = Path(tempfile.mkdtemp(prefix="s2-e2e-"))

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    results = []
    try:
        raised = raise_socket_limits(args.udp_buffer)
        if raised:
            log(f"raised {', '.join(raised)} to {args.udp_buffer} for this run")
        for rnd in range(1, args.rounds + 1):
            # Alternate the order so that no mode always runs first.
            for m in (modes if rnd % 2 else list(reversed(modes))):
                results.append(measure(m, args, work, rnd))
    except BenchError as e:
        log(f"FAILED: {e}")
        shutil.copytree(work, out / "work", dirs_exist_ok=True)
        return 1
    finally:
        restore_socket_limits()
        shutil.rmtree(work, ignore_errors=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    text = table(results, modes, args)
    (out / "summary.md").write_text(text)
    print()
    print(text)
    plot_path = args.plot or out / "e2e.png"
    try:
        plot(results, modes, args, plot_path)
        log(f"plot: {plot_path}")
    except ImportError as e:
        log(f"no plot ({e}; scripts/setup.sh installs python3-matplotlib)")
    log(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
