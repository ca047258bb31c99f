#!/usr/bin/env python3
"""ESP tunnel benchmark over net_memif: one s2ds worker sealing LAN -> WAN
and opening WAN -> LAN (each AEAD engine) against DPDK's ipsec-secgw, same
traffic, same sink.

The set-up of benches/dpdk_forward.py (whose helpers this module imports),
with the forwarder replaced by a tunnel gateway:

    tester (dpdk-testpmd, one lcore)          gateway under test
    net_pcap0 (infinite rx) --io--> memif lan ======> LAN  s2ds [tunnel] | ipsec-secgw
    net_pcap0 tx (dropped)  <--io-- memif wan <====== WAN  (ESP out)
                                                      (one core, alone)

The generator sends plain IPv4/UDP frames (10.10.1.2 -> 10.20.1.2) into the
LAN memif; the gateway seals them with one outbound AES-GCM SA and sends
them to the WAN memif, where the tester counts them (frames it receives on
its WAN port between two "show fwd stats all" snapshots).

s2ds sends ESP in UDP (RFC 3948, port 4500, tunnel mode). ipsec-secgw 22.11
offers UDP encapsulation only for inline and lookaside-protocol sessions (a
NIC or a security accelerator), not for its software paths, so it sends plain
ESP in tunnel mode: the same cryptographic work on the same bytes, 8 bytes of
UDP header fewer per frame. ipsec-secgw runs in library mode (-l, librte_ipsec)
with cpu-crypto sessions (synchronous AES-GCM on the worker, no crypto queue
pairs) on the crypto_aesni_gcm vdev (intel-ipsec-mb), its fastest software
path.

The opening direction (--directions open) turns the tester round: it replays
one ESP frame of each gateway's own format (ESP in UDP for s2ds, plain ESP for
ipsec-secgw), sealed here with the peer's key (the `cryptography` package's
AES-GCM), into the gateway's WAN memif, and counts the opened plain frames on
its LAN memif. A replayed frame is a replay, so both gateways open without the
anti-replay check: ipsec-secgw's replay window is 0 (off) by default, and
s2ds's inbound SA has `anti_replay = false` (RFC 4303 3.4.3); the check itself
is a few loads and a compare per packet, measured apart by the pipeline bench.
Run through benches/tunnel_memif.sh (builds s2ds and ipsec-secgw, needs root).

With --stage-cycles, each s2ds engine runs a second time as "s2ds ENGINE
+stages", with `[workers] stage_cycles = true`: the summary then adds the
worker's cycles per packet in each stage (rx, classify, seal, tx, from the
stats snapshots at both ends of the measured window) and what counting them
cost (its best round against the plain one's, same run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dpdk_forward import (  # noqa: E402  (the shared memif set-up)
    EAL_COMMON,
    FWD_LAN_MAC,
    FWD_WAN_MAC,
    GEN_MAC,
    NEXT_HOP,
    SINK_MAC,
    DST_IP,
    SRC_IP,
    BenchError,
    CpuWatch,
    Proc,
    Round,
    Setup,
    begin_run,
    fwd_stats,
    ipv4_header,
    mac_bytes,
    write_frame_pcap,
    write_s2ds_config,
    log,
    start_tester,
    wait_links_up,
    wait_quiet,
)

ENGINES = ("ipsec-mb", "ring", "aes-gcm")
ALGOS = ("aes-128-gcm", "aes-256-gcm")
SECGW = "ipsec-secgw"
# Public test keys (with the 4-byte GCM salt after them for ipsec-secgw).
KEYS = {
    "aes-128-gcm": "2b7e151628aed2a6abf7158809cf4f3c",
    "aes-256-gcm": "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
}
SALT = "ca5e0001"
SALT_IN = "ca5e0002"
SPI_OUT = 0x1001
SPI_IN = 0x2001
WAN_IP = "10.10.100.1"
PEER_IP = "10.10.200.1"


DIRECTIONS = ("seal", "open")


@dataclass
class TRound(Round):
    algo: str = ""
    direction: str = "seal"


STAGED = "+stages"
STAGES = ("rx", "classify", "seal", "open", "tx")


def s2ds_kind(engine: str, staged: bool = False) -> str:
    return f"s2ds {engine}" + (f" {STAGED}" if staged else "")


def kind_engine(kind: str) -> tuple[str, bool]:
    """(engine, stage counting) of an s2ds kind."""
    parts = kind.split()
    return parts[1], parts[-1] == STAGED


def stage_counts(snap: dict) -> tuple[list[int], list[int]]:
    st = snap.get("work", {}).get("stages") or {}
    return st.get("packets", [0] * len(STAGES)), st.get("cycles", [0] * len(STAGES))


# ---------------------------------------------------------------- configs


def s2ds_config(su: Setup, algo: str, engine: str, staged: bool = False) -> Path:
    """The s2ds config of dpdk_forward with a tunnel: every frame to
    10.20.0.0/16 is sealed with one outbound SA towards PEER_IP, reached
    through the static next hop (the tester's WAN port)."""
    tunnel = f"""
[tunnel]
engine = "{engine}"
udp_port = 4500

[[peers]]
name = "peer"
address = "{PEER_IP}"

[[sas]]
spi = {SPI_OUT:#x}
direction = "out"
peer = "peer"
algorithm = "{algo}"
key = "{KEYS[algo]}"
salt = "{SALT}"
esn = false

[[sas]]
spi = {SPI_IN:#x}
direction = "in"
peer = "peer"
algorithm = "{algo}"
key = "{KEYS[algo]}"
salt = "{SALT_IN}"
esn = false
# The opening direction replays one captured frame (a replay by design).
anti_replay = false

[[tunnel_routes]]
prefix = "10.20.0.0/16"
sa = {SPI_OUT:#x}

# The opened frames go to the tester's LAN port.
[[neighbors]]
ip = "{ip_str(SRC_IP)}"
mac = "{GEN_MAC}"

"""
    return write_s2ds_config(su, s2ds_config_name(algo, engine, staged), "tbench", f"{WAN_IP}/24",
                             "10.10.200.0/24", tunnel, "benches/tunnel_memif.py",
                             "stage_cycles = true\n" if staged else "")


def ip_str(ip: tuple[int, ...]) -> str:
    return ".".join(str(b) for b in ip)


def esp_frame(size: int, algo: str, udp: bool) -> bytes:
    """The frame the peer gateway sends for a plain frame of `size` bytes
    from 10.20.1.2 to 10.10.1.2 (UDP 5001, zero payload): tunnel-mode ESP,
    SPI_IN, sequence number 1, sealed with the inbound SA's key and salt
    (RFC 4106: nonce = salt + 8-byte IV, AAD = SPI + sequence number, pad
    1, 2, 3 ... to 4 bytes, next header 4), PEER_IP -> WAN_IP; in UDP to
    port 4500 (RFC 3948, s2ds) or plain (`udp` false, ipsec-secgw)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    inner_len = size - 14
    inner = (ipv4_header(inner_len, 17, bytes(DST_IP), bytes(SRC_IP))
             + struct.pack("!HHHH", 5001, 5001, inner_len - 20, 0) + bytes(inner_len - 28))
    pad = (-(len(inner) + 2)) % 4
    plain = inner + bytes(range(1, pad + 1)) + bytes([pad, 4])
    seq = 1
    head = struct.pack("!II", SPI_IN, seq)
    iv = struct.pack("!Q", seq)
    sealed = AESGCM(bytes.fromhex(KEYS[algo])).encrypt(bytes.fromhex(SALT_IN) + iv, plain, head)
    esp = head + iv + sealed
    if udp:
        payload, proto = struct.pack("!HHHH", 4500, 4500, 8 + len(esp), 0) + esp, 17
    else:
        payload, proto = esp, 50
    outer = ipv4_header(20 + len(payload), proto, bytes(map(int, PEER_IP.split("."))),
                        bytes(map(int, WAN_IP.split("."))))
    return mac_bytes(FWD_WAN_MAC) + mac_bytes(SINK_MAC) + b"\x08\x00" + outer + payload


def start_open_tester(su: Setup, size: int, algo: str, kind: str, idx: int) -> Proc:
    """The tester of the opening direction, round `idx`: it replays
    `kind`'s ESP frame into the gateway's WAN memif and counts at its LAN
    memif (log tester-open-KIND-ALGO-SIZE-rIDX.log)."""
    udp = kind != SECGW
    pcap = su.work / f"esp-{'udp' if udp else 'plain'}-{algo}-{size}.pcap"
    write_frame_pcap(pcap, esp_frame(size, algo, udp))
    log_name = f"tester-open-{kind.replace(' ', '-')}-{algo}-{size}-r{idx}.log"
    return start_tester(su, size, pcap, into_wan=True, log_name=log_name)


def s2ds_config_name(algo: str, engine: str, staged: bool) -> str:
    return f"s2ds-{algo}-{engine}{'-stages' if staged else ''}.toml"


def colon_hex(h: str) -> str:
    return ":".join(h[i:i + 2] for i in range(0, len(h), 2))


def secgw_config(su: Setup, algo: str) -> Path:
    """ipsec-secgw's rules for the same policy: protect 10.20.0.0/16 with
    one tunnel-mode SA WAN_IP -> PEER_IP (cpu-crypto), route PEER_IP to port 1
    (the WAN memif), whose next hop is the tester's WAN port (`neigh`: 22.11
    has no --eth-dest)."""
    cfg = su.work / f"secgw-{algo}.cfg"
    key = colon_hex(KEYS[algo] + SALT)
    key_in = colon_hex(KEYS[algo] + SALT_IN)
    cfg.write_text(
        f"""# Generated by benches/tunnel_memif.py (ipsec-secgw -f)
sp ipv4 out esp protect {SPI_OUT} pri 1 dst 10.20.0.0/16 sport 0:65535 dport 0:65535
sp ipv4 in esp protect {SPI_IN} pri 1 dst 10.10.1.0/24 sport 0:65535 dport 0:65535
sa out {SPI_OUT} aead_algo {algo} aead_key {key} mode ipv4-tunnel src {WAN_IP} dst {PEER_IP} type cpu-crypto
sa in {SPI_IN} aead_algo {algo} aead_key {key_in} mode ipv4-tunnel src {PEER_IP} dst {WAN_IP} type cpu-crypto
rt ipv4 dst 10.10.200.0/24 port 1
rt ipv4 dst 10.10.1.0/24 port 0
neigh port 0 {GEN_MAC}
neigh port 1 {SINK_MAC}
"""
    )
    shutil.copy(cfg, su.out / cfg.name)
    return cfg


# ---------------------------------------------------------------- forwarders


def start_s2ds(su: Setup, algo: str, engine: str, staged: bool, tag: str) -> Proc:
    cfg = su.work / s2ds_config_name(algo, engine, staged)
    stats = su.work / "s2ds.stats.json"
    stats.unlink(missing_ok=True)
    p = Proc(s2ds_kind(engine), [str(su.s2ds), "run", str(cfg)], su.out / f"{tag}.log",
             stdin_pipe=False)
    deadline = time.monotonic() + 30
    while not stats.exists():
        if not p.alive():
            raise BenchError(f"s2ds exited (code {p.p.returncode}); see {p.log_path}")
        if time.monotonic() > deadline:
            raise BenchError(f"s2ds wrote no stats snapshot within 30 s; see {p.log_path}")
        time.sleep(0.05)
    return p


def start_secgw(su: Setup, secgw: Path, algo: str, tag: str) -> Proc:
    cfg = su.work / f"secgw-{algo}.cfg"
    cmd = [
        "stdbuf", "-oL", "-eL", str(secgw),
        # One lcore, alone on the forwarder core, as s2ds's worker: the main
        # lcore runs the poll loop too. (A second, idle lcore would give each
        # port a second TX queue, which the one-queue memif server side
        # refuses: the links never come up.)
        f"--lcores=0@{su.fwd_core}",
        *EAL_COMMON,
        f"--file-prefix={su.tag}-secgw",
        "--vdev=" + su.memif("net_memif0", "client", su.lan_sock, FWD_LAN_MAC),
        "--vdev=" + su.memif("net_memif1", "client", su.wan_sock, FWD_WAN_MAC),
        "--vdev=crypto_aesni_gcm0",
        "--",
        "-p", "0x3", "-P", "-u", "0x2", "-l",
        "--config", "(0,0,0),(1,0,0)",
        "-f", str(cfg),
    ]
    p = Proc(SECGW, cmd, su.out / f"{tag}.log", stdin_pipe=False)
    p.wait_for(r"entering main loop on lcore 0", 0, 30)
    return p


def sink_bytes(tester: Proc) -> tuple[int, int]:
    """(frames, bytes) the tester's sink port (port 2: the WAN memif when
    sealing, the LAN memif when opening) has received so far."""
    start = tester.offset()
    tester.send("show port stats 2")
    m = tester.wait_for(r"NIC statistics for port 2.*?RX-packets:\s*(\d+).*?RX-bytes:\s*(\d+)",
                        start, 10)
    return int(m.group(1)), int(m.group(2))


def measure(su: Setup, tester: Proc, secgw: Path | None, kind: str, algo: str, size: int,
            idx: int, warmup: float, duration: float, direction: str = "seal") -> TRound:
    tag = f"{direction}-{kind.replace(' ', '-')}-{algo}-{size}-r{idx}"
    wait_quiet(su.quiet_limit, su.quiet_wait)
    if kind == SECGW:
        assert secgw is not None
        fwd = start_secgw(su, secgw, algo, tag)
        names = ("ipsec-secgw",)  # the main thread
    else:
        engine, staged = kind_engine(kind)
        fwd = start_s2ds(su, algo, engine, staged, tag)
        names = ("s2ds-worker0",)
    snap = None
    stages_a = stages_b = None
    stats_file = su.work / "s2ds.stats.json"
    try:
        wait_links_up(tester)
        start = tester.offset()
        tester.send("start")
        tester.wait_for(r"io packet forwarding", start, 10)
        time.sleep(warmup)
        cpu = CpuWatch(fwd, names, tester, (su.fwd_core, su.tester_core))
        a = fwd_stats(tester)
        bytes_a = sink_bytes(tester)
        if kind != SECGW:
            stages_a = json.loads(stats_file.read_text())
        time.sleep(max(0.0, duration - (time.monotonic() - a.t)))
        b = fwd_stats(tester)
        bytes_b = sink_bytes(tester)
        if kind != SECGW:
            stages_b = json.loads(stats_file.read_text())
        fwd_cpu, tester_cpu, steal = cpu.shares()
        start = tester.offset()
        tester.send("stop")
        tester.wait_for(r"Done\.", start, 10)
        if kind != SECGW:
            time.sleep(0.5)
            snap = json.loads((su.work / "s2ds.stats.json").read_text())
    finally:
        fwd.stop()
    r = TRound(
        forwarder=kind, size=size, index=idx, seconds=b.t - a.t,
        sink_frames=b.rx[2] - a.rx[2], offered=b.rx[0] - a.rx[0],
        refused=b.tx_dropped[1] - a.tx_dropped[1],
        fwd_cpu=fwd_cpu, tester_cpu=tester_cpu, steal=steal, algo=algo, direction=direction,
    )
    # The mean frame at the sink: proves the frames were sealed (plain size
    # + ESP overhead: 62 B for s2ds's ESP in UDP at 64 B, 54 B for plain ESP)
    # or opened (the plain size).
    if bytes_b[0] > bytes_a[0]:
        r.extra["wan_frame" if direction == "seal" else "lan_frame"] = round(
            (bytes_b[1] - bytes_a[1]) / (bytes_b[0] - bytes_a[0]), 1)
    if snap is not None:
        r.extra["s2ds_drops"] = {k: v for k, v in snap["drops"].items() if v}
    if stages_a is not None and stages_b is not None and kind_engine(kind)[1]:
        # The snapshots are written once a second: the window is about the
        # measured one, in steady state.
        (pa, ca), (pb, cb) = stage_counts(stages_a), stage_counts(stages_b)
        per = {}
        for i, name in enumerate(STAGES):
            n = pb[i] - pa[i]
            if n > 0:
                per[name] = round((cb[i] - ca[i]) / n, 1)
        r.extra["stage_cycles"] = per
        r.extra["cycles_per_second"] = stages_b.get("cycles_per_second", 0)
    if r.sink_frames <= 0:
        raise BenchError(f"{tag}: the sink received nothing; see {su.out}/{tag}.log")
    return r


# ---------------------------------------------------------------- output


def kinds_of(engines: list[str], with_secgw: bool, staged: bool = False) -> list[str]:
    kinds = [s2ds_kind(e) for e in engines]
    if staged:
        kinds += [s2ds_kind(e, True) for e in engines]
    return kinds + ([SECGW] if with_secgw else [])


def pick(rounds, kind, algo, size, min_cpu, direction="seal"):
    rs = [r for r in rounds if r.forwarder == kind and r.algo == algo and r.size == size
          and r.direction == direction]
    clean = [r for r in rs if not r.disturbed(min_cpu)] or rs
    return rs, clean


def summary(rounds: list[TRound], sizes, algos, engines, args) -> str:
    lines: list[str] = []
    for direction in args.direction_list:
        if lines:
            lines.append("")
        lines += direction_table(rounds, sizes, algos, engines, args, direction)
    return "\n".join(lines) + "\n"


def direction_table(rounds, sizes, algos, engines, args, direction: str) -> list[str]:
    what = ("sealing (LAN -> WAN), counted at the WAN sink (Mpps of sealed frames; the size is "
            "the plain frame the generator sends)" if direction == "seal" else
            "opening (WAN -> LAN), counted at the LAN sink (Mpps of opened frames of that size; "
            "the generator replays one ESP frame, both gateways without the anti-replay check)")
    lines = [
        f"ESP {what}, over net_memif, 1 worker on core {args.fwd_core}, tester on "
        f"core {args.tester_core}; {args.rounds} rounds x {args.duration:g} s per gateway, "
        f"algorithm and size. s2ds: ESP in UDP; ipsec-secgw: plain ESP, tunnel mode, "
        f"cpu-crypto on crypto_aesni_gcm.",
        "",
        "| direction | frame | algorithm | gateway | best (Mpps) | median (Mpps) "
        "| best (Gb/s, plain) | **s2ds / ipsec-secgw, best** | s2ds / ipsec-secgw, median "
        "| rounds |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for size in sizes:
        for algo in algos:
            _, ref = pick(rounds, SECGW, algo, size, args.min_cpu, direction)
            ref_best = max((r.mpps for r in ref), default=0.0)
            ref_med = statistics.median(r.mpps for r in ref) if ref else 0.0
            for kind in kinds_of(engines, True, args.stage_cycles):
                rs, clean = pick(rounds, kind, algo, size, args.min_cpu, direction)
                if not rs:
                    continue
                best = max(r.mpps for r in clean)
                med = statistics.median(r.mpps for r in clean)
                per = ", ".join(f"{r.mpps:.2f}" + ("*" if r.disturbed(args.min_cpu) else "")
                                + ("" if r.forwarder_bound else "t") for r in rs)
                if kind == SECGW:
                    ratio_b = ratio_m = "—"
                else:
                    ratio_b = f"**{best / ref_best:.2f}**" if ref_best else "—"
                    ratio_m = f"{med / ref_med:.2f}" if ref_med else "—"
                lines.append(f"| {direction} | {size} B | {algo} | {kind} | {best:.2f} | "
                             f"{med:.2f} | {best * size * 8 / 1000:.2f} | {ratio_b} | {ratio_m} "
                             f"| {per} |")
    lines += [
        "",
        "Best round = the closest to each gateway's capacity (interference only ever lowers a "
        "round). `t`: the gateway kept up with the generator in that round (it refused under "
        "1 % of the offered frames), so the tester set the rate.",
    ]
    if any(r.disturbed(args.min_cpu) for r in rounds):
        lines.append(f"`*`: still disturbed after {args.retries} repeats (a polling thread got "
                     f"less than {100 * args.min_cpu:.0f} % of its CPU); left out of best and "
                     f"median unless every round was.")
    if args.stage_cycles:
        lines += ["", *stage_table(rounds, sizes, algos, engines, args, direction)]
    return lines


def stage_table(rounds, sizes, algos, engines, args, direction="seal") -> list[str]:
    """Cycles per packet per stage, from the best clean round of each
    `+stages` gateway, and the cost of counting (its best / the plain best)."""
    lines = [
        "Cycles per packet in each stage of the s2ds worker (`[workers] stage_cycles = true`, "
        "TSC cycles; the best round of each `+stages` gateway), and the cost of counting them: "
        "the `+stages` best round over the plain one, same run.",
        "",
        "| direction | frame | algorithm | engine | " + " | ".join(STAGES) + " | total "
        "| ns/packet | Mpps with counting / without |",
        "|---|---:|---|---|" + "---:|" * (len(STAGES) + 3),
    ]
    for size in sizes:
        for algo in algos:
            for e in engines:
                _, staged = pick(rounds, s2ds_kind(e, True), algo, size, args.min_cpu, direction)
                _, plain = pick(rounds, s2ds_kind(e), algo, size, args.min_cpu, direction)
                staged = [r for r in staged if r.extra.get("stage_cycles")]
                if not staged:
                    continue
                best = max(staged, key=lambda r: r.mpps)
                per = best.extra["stage_cycles"]
                total = sum(per.values())
                hz = best.extra.get("cycles_per_second") or 0
                ns = f"{total * 1e9 / hz:.1f}" if hz else "—"
                plain_best = max((r.mpps for r in plain), default=0.0)
                cost = f"{best.mpps / plain_best:.3f}" if plain_best else "—"
                cells = " | ".join(f"{per[s]:.0f}" if s in per else "—" for s in STAGES)
                lines.append(f"| {direction} | {size} B | {algo} | {e} | {cells} | "
                             f"{total:.0f} | {ns} | {cost} |")
    return lines


def plot(rounds, sizes, algos, engines, args, path: Path) -> None:
    from plot import grouped_bars

    groups, keys = [], []
    for direction in args.direction_list:
        for size in sizes:
            for algo in algos:
                groups.append(f"{direction}\n{size} B\n{algo.replace('-gcm', '')}")
                keys.append((direction, size, algo))
    series = {}
    for kind in kinds_of(engines, True, args.stage_cycles):
        vals = []
        for direction, size, algo in keys:
            _, clean = pick(rounds, kind, algo, size, args.min_cpu, direction)
            vals.append(max((r.mpps for r in clean), default=0.0))
        series[kind] = vals
    title = "ESP " + " and ".join(
        {"seal": "sealing", "open": "opening"}[d] for d in args.direction_list)
    grouped_bars(path, f"{title} over net_memif, one worker (best round)", "Mpps",
                 groups, series,
                 f"{args.rounds} rounds x {args.duration:g} s; benches/tunnel_memif.sh",
                 figsize=(max(5.0, 1.0 * len(groups) * len(series) / 2 + 2), 4.0))


def report_round(r: TRound, min_cpu: float) -> None:
    note = " ".join(f"{k}={v}" for k, v in r.extra.items())
    flag = " DISTURBED" if r.disturbed(min_cpu) else ""
    log(f"{r.direction} {r.size:5d} B {r.algo} {r.forwarder:14s} round {r.index}: {r.mpps:7.3f} "
        f"Mpps at the "
        f"sink (offered {r.offered / r.seconds / 1e6:.2f} Mpps, refused "
        f"{100 * r.refused / max(r.offered, 1):.1f} %; CPU fwd {100 * r.fwd_cpu:.1f} %, "
        f"tester {100 * r.tester_cpu:.1f} %, steal {100 * r.steal:.1f} %){flag} {note}")


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--s2ds", required=True, type=Path, help="the s2ds binary")
    ap.add_argument("--secgw", required=True, type=Path, help="the ipsec-secgw binary")
    ap.add_argument("--sizes", default="64,512,1400", help="frame sizes in bytes")
    ap.add_argument("--directions", default=",".join(DIRECTIONS),
                    help="seal (LAN -> WAN), open (WAN -> LAN), or both")
    ap.add_argument("--algos", default=",".join(ALGOS), help="aes-128-gcm,aes-256-gcm")
    ap.add_argument("--engines", default=",".join(ENGINES), help="s2ds engines")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per gateway, algorithm, size")
    ap.add_argument("--duration", type=float, default=3, help="measured seconds per round")
    ap.add_argument("--warmup", type=float, default=1, help="seconds of traffic before measuring")
    ap.add_argument("--fwd-core", type=int, default=1, help="CPU of the gateway under test")
    ap.add_argument("--tester-core", type=int, default=0, help="CPU of the generator/sink")
    ap.add_argument("--out", type=Path, help="directory for logs and results")
    ap.add_argument("--time-limit", type=float, default=1500, help="abort after this many s")
    ap.add_argument("--min-cpu", type=float, default=0.97,
                    help="a round counts only if the gateway and tester threads each ran this "
                         "share of the window; otherwise it is repeated")
    ap.add_argument("--retries", type=int, default=1, help="repeats of a disturbed round")
    ap.add_argument("--quiet-wait", type=float, default=30,
                    help="before a round, wait up to this many s for the CPUs to be idle")
    ap.add_argument("--plot", type=Path, help="PNG of the best rounds (default OUT/tunnel.png)")
    ap.add_argument("--stage-cycles", action="store_true",
                    help="also run each engine with [workers] stage_cycles = true: cycles per "
                         "packet per stage, and the cost of counting them")
    ap.add_argument("--smoke", action="store_true",
                    help="one short round at 64 B, AES-128-GCM, s2ds's default engine (with and "
                         "without --stage-cycles) and ipsec-secgw, each direction, no CPU checks "
                         "(CI); fails if a gateway delivered nothing or the stage counters did "
                         "not move")
    args = ap.parse_args()
    if args.smoke:
        args.sizes, args.algos, args.engines = "64", "aes-128-gcm", "ipsec-mb"
        args.rounds, args.duration, args.warmup = 1, 1.0, 0.5
        args.min_cpu, args.retries, args.quiet_wait, args.time_limit = 0.0, 0, 0.0, 120
        args.stage_cycles = True

    sizes = [int(x) for x in args.sizes.split(",") if x]
    algos = [a for a in args.algos.split(",") if a]
    engines = [e for e in args.engines.split(",") if e]
    args.direction_list = [d for d in args.directions.split(",") if d]
    for d in args.direction_list:
        if d not in DIRECTIONS:
            print(f"tunnel_memif: unknown direction {d!r} (seal, open)", file=sys.stderr)
            return 2
    for a in algos:
        if a not in ALGOS:
            print(f"tunnel_memif: unknown algorithm {a!r}", file=sys.stderr)
            return 2
    for e in engines:
        if e not in ENGINES:
            print(f"tunnel_memif: unknown engine {e!r}", file=sys.stderr)
            return 2
    if os.geteuid() != 0:
        print("tunnel_memif: run as root (DPDK needs it)", file=sys.stderr)
        return 2
    if args.fwd_core == args.tester_core:
        print("tunnel_memif: --fwd-core and --tester-core must differ", file=sys.stderr)
        return 2

    work, out, su = begin_run(args, "s2tun", "s2ds-tunnel")

    kinds = kinds_of(engines, True, args.stage_cycles)
    rounds: list[TRound] = []
    failed = False
    started = time.monotonic()
    try:
        for algo in algos:
            secgw_config(su, algo)
            for e in engines:
                s2ds_config(su, algo, e)
                if args.stage_cycles:
                    s2ds_config(su, algo, e, True)
        per_round = args.warmup + args.duration + 5
        est = (len(args.direction_list) * len(sizes) * len(algos) * args.rounds * len(kinds)
               * per_round)
        log(f"{len(args.direction_list)} directions x {len(sizes)} sizes x {len(algos)} "
            f"algorithms x {args.rounds} rounds x {len(kinds)} gateways, about "
            f"{est / 60:.1f} min; logs in {out}")

        def one(tester: Proc, direction: str, kind: str, algo: str, size: int, i: int) -> None:
            for attempt in range(args.retries + 1):
                r = measure(su, tester, args.secgw, kind, algo, size, i, args.warmup,
                            args.duration, direction)
                report_round(r, args.min_cpu)
                if not r.disturbed(args.min_cpu):
                    break
                if attempt < args.retries:
                    log("  disturbed (CPU taken from a polling thread): repeating")
            rounds.append(r)

        for direction in args.direction_list:
            for size in sizes:
                # Sealing: one tester per size (the plain frame). Opening: one
                # per round, replaying the gateway's own ESP format and key.
                tester = start_tester(su, size) if direction == "seal" else None
                try:
                    for algo in algos:
                        for i in range(1, args.rounds + 1):
                            # Alternate the order so no gateway always goes first.
                            order = kinds if i % 2 else list(reversed(kinds))
                            for kind in order:
                                if tester is not None:
                                    one(tester, direction, kind, algo, size, i)
                                    continue
                                t = start_open_tester(su, size, algo, kind, i)
                                try:
                                    one(t, direction, kind, algo, size, i)
                                finally:
                                    t.stop()
                finally:
                    if tester is not None:
                        tester.stop()
    except BenchError as e:
        # Still write what was measured (e.g. when the time limit stops a
        # long run on a busy machine), but exit non-zero.
        log(f"FAILED: {e}")
        failed = True
    finally:
        signal.alarm(0)
        Proc.stop_all()
        shutil.rmtree(work, ignore_errors=True)
        for p in ("tst", "s2ds", "secgw"):
            shutil.rmtree(f"/var/run/dpdk/{su.tag}-{p}", ignore_errors=True)

    if not rounds:
        return 1
    (out / "rounds.json").write_text(json.dumps(
        [{"gateway": r.forwarder, "direction": r.direction, "algorithm": r.algo,
          "size": r.size, "round": r.index,
          "seconds": r.seconds, "sink_frames": r.sink_frames, "offered": r.offered,
          "refused": r.refused, "mpps": r.mpps, "fwd_cpu": r.fwd_cpu,
          "tester_cpu": r.tester_cpu, "steal": r.steal,
          "disturbed": r.disturbed(args.min_cpu), **r.extra} for r in rounds], indent=1))
    table = summary(rounds, sizes, algos, engines, args)
    (out / "summary.md").write_text(table)
    print()
    print(table)
    plot_path = args.plot or out / "tunnel.png"
    try:
        plot(rounds, sizes, algos, engines, args, plot_path)
        log(f"plot: {plot_path}")
    except ImportError as e:
        log(f"no plot ({e}; scripts/setup.sh installs python3-matplotlib)")
        if args.smoke:
            return 1
    log(f"done in {time.monotonic() - started:.0f} s; logs and rounds.json in {out}")
    if failed:
        log("FAILED: the table above is partial")
        return 1
    if args.smoke:
        for direction in args.direction_list:
            got = {r.forwarder for r in rounds if r.sink_frames > 0 and r.direction == direction}
            missing = [k for k in kinds if k not in got]
            if missing:
                log(f"SMOKE FAILED: {direction}: no frames at the sink from {missing}")
                return 1
            staged = [r for r in rounds if r.forwarder != SECGW and r.direction == direction
                      and kind_engine(r.forwarder)[1]]
            want = {"rx", "classify", direction, "tx"}
            if not any(want <= set(r.extra.get("stage_cycles", {})) for r in staged):
                log(f"SMOKE FAILED: {direction}: the +stages rounds counted no cycles in "
                    f"{', '.join(sorted(want))}")
                return 1
            frame = "wan_frame" if direction == "seal" else "lan_frame"
            wrong = [r for r in rounds if r.direction == direction == "open"
                     and r.extra.get(frame) != r.size]
            if wrong:
                log(f"SMOKE FAILED: open: {wrong[0].forwarder}'s opened frames are not "
                    f"{wrong[0].size} B: {wrong[0].extra}")
                return 1
        log("smoke: every gateway sealed and opened frames; the stage counters moved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
