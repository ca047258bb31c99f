#!/usr/bin/python3
"""RFC 2544-style throughput search through both gateways of the VM testbed.

Two halves, one file:
  search   runs in the gen VM (as root): kernel pktgen in namespace prod sends
           UDP frames to cons (10.20.1.2) through gwA, the routed tunnel and
           gwB; an ingress filter in cons counts (and drops) them. For each
           frame size a binary search over the offered rate finds the highest
           rate with zero loss (NDR) and with at most --pdr-loss loss (PDR);
           then timestamped UDP probes (same VM clock at both ends, so one-way
           latency) run while pktgen offers the NDR rate. Prints JSON.
  report   runs on the host: the table, and a PNG plot with matplotlib.
  probe-send / probe-recv   the latency probes (started by search).

Frame sizes are Ethernet frames with FCS (pktgen's pkt_size is 4 less, virtio
carries no FCS); "imix" is pktgen's imix_weights 64:7, 570:4, 1518:1.

Usage: ip netns exec prod vm_throughput.py search --dst-mac MAC [--sizes 64,1400,imix] [--flows N]
                               [--trial-seconds S] [--iterations N] [--pdr-loss PCT] [--probes N]
       vm_throughput.py report RESULT.json [--png FILE]
"""
import argparse
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time

PGCTRL = "/proc/net/pktgen/pgctrl"
PROBE = struct.Struct("!QQ")   # sequence, CLOCK_MONOTONIC ns at send
IMIX = "64,7 570,4 1518,1"
SINK_PORT = 9
PROBE_PORT = 7001


def ns_run(ns, *cmd, check=True, **kw):
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], check=check, text=True,
                          capture_output=True, **kw)


def pg_write(path, line):
    # Every pktgen command is a write to a /proc file; /proc/net is this
    # process's namespace (prod: the suite starts the search in it).
    with open(path, "w") as f:
        f.write(line + "\n")


class Pktgen:
    """Kernel pktgen on device `dev` of this process's namespace, one thread (kpktgend_0)."""

    def __init__(self, dev, dst_ip, dst_mac, src_ip, flows):
        self.dev = dev
        self.base = [f"dst {dst_ip}", f"dst_mac {dst_mac}", f"src_min {src_ip}", f"src_max {src_ip}",
                     f"udp_dst_min {SINK_PORT}", f"udp_dst_max {SINK_PORT}", "udp_src_min 10000",
                     f"udp_src_max {10000 + flows - 1}", "clone_skb 0", "burst 1", "delay 0", "count 0"]
        subprocess.run(["modprobe", "pktgen"], check=True)

    def configure(self, size, rate_pps):
        # Re-adding the device resets every parameter (imix weights cannot be unset).
        pg_write("/proc/net/pktgen/kpktgend_0", "rem_device_all")
        pg_write("/proc/net/pktgen/kpktgend_0", f"add_device {self.dev}")
        lines = list(self.base)
        if size == "imix":
            lines.append("imix_weights " + " ".join(f"{int(s) - 4},{w}" for s, w in
                                                    (x.split(",") for x in IMIX.split())))
        else:
            lines.append(f"pkt_size {int(size) - 4}")
        if rate_pps:
            lines.append(f"ratep {int(rate_pps)}")
        for line in lines:
            pg_write(f"/proc/net/pktgen/{self.dev}", line)

    def run_for(self, seconds):
        """Send for `seconds`, return the packets sent (pkts-sofar)."""
        # "start" blocks the writer until the run ends; "stop" ends it.
        t = threading.Thread(target=pg_write, args=(PGCTRL, "start"))
        t.start()
        time.sleep(seconds)
        pg_write(PGCTRL, "stop")
        t.join()
        with open(f"/proc/net/pktgen/{self.dev}") as f:
            return int(re.search(r"pkts-sofar: (\d+)", f.read()).group(1))


class Sink:
    """Counts pktgen's frames arriving in namespace `ns` (and drops them: no ICMP back)."""

    def __init__(self, ns, dev):
        self.ns, self.dev = ns, dev
        ns_run(ns, "tc", "qdisc", "del", "dev", dev, "clsact", check=False)
        ns_run(ns, "tc", "qdisc", "add", "dev", dev, "clsact")
        ns_run(ns, "tc", "filter", "add", "dev", dev, "ingress", "protocol", "ip", "prio", "1", "u32",
               "match", "ip", "protocol", "17", "0xff", "match", "ip", "dport", str(SINK_PORT), "0xffff",
               "action", "drop")

    def count(self):
        text = ns_run(self.ns, "tc", "-s", "filter", "show", "dev", self.dev, "ingress").stdout
        m = re.search(r"Sent \d+ bytes (\d+) pkt", text)
        return int(m.group(1)) if m else 0

    def close(self):
        ns_run(self.ns, "tc", "qdisc", "del", "dev", self.dev, "clsact", check=False)


def trial(pg, sink, size, rate, seconds):
    pg.configure(size, rate)
    before = sink.count()
    sent = pg.run_for(seconds)
    time.sleep(1.0)  # frames still in the gateways' queues arrive
    received = sink.count() - before
    loss = 0.0 if sent == 0 else max(0.0, (sent - received) / sent)
    r = {"size": size, "offered_pps": rate, "sent": sent, "received": received,
         "tx_pps": round(sent / seconds), "loss_pct": round(100 * loss, 4)}
    print(f"trial {r}", file=sys.stderr)
    return r


def search_rate(pg, sink, size, top, max_loss_pct, iterations, seconds, trials, floor=None):
    """Binary search over (floor, top]: highest rate whose loss <= max_loss_pct.
    `floor` is a trial already known to pass (the NDR for the PDR search), the
    answer when nothing above it does."""
    lo, hi, best = (float(floor["tx_pps"]) if floor else 0.0), float(top), floor
    for _ in range(iterations):
        mid = (lo + hi) / 2
        r = trial(pg, sink, size, int(mid), seconds)
        trials.append(r)
        if r["loss_pct"] <= max_loss_pct:
            lo, best = mid, r
        else:
            hi = mid
    return best


def probe_send(args):
    host, port = args.to.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, int(port)))
    gap = 1.0 / args.rate
    t_next = time.monotonic()
    for seq in range(args.count):
        try:
            s.send(PROBE.pack(seq, time.clock_gettime_ns(time.CLOCK_MONOTONIC)) + b"\0" * 32)
        except ConnectionRefusedError:
            pass  # an ICMP error for an earlier probe; that probe counts as lost

        t_next += gap
        time.sleep(max(0.0, t_next - time.monotonic()))
    return 0


def probe_recv(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", args.port))
    # The first probe may take a while (the sender's interpreter starts under
    # TCG); after it, --timeout seconds of silence end the run.
    s.settimeout(30)
    open(args.ready_file, "w").close()
    lat, seen = [], set()
    while len(seen) < args.count:
        try:
            data = s.recv(2048)
        except socket.timeout:
            break
        s.settimeout(args.timeout)
        seq, ts = PROBE.unpack_from(data)
        if seq not in seen:
            seen.add(seq)
            lat.append((time.clock_gettime_ns(time.CLOCK_MONOTONIC) - ts) / 1000.0)
    print(json.dumps({"count": args.count, "received": len(seen), "latency_us": lat}))
    return 0


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, round(p / 100 * (len(sorted_vals) - 1))))
    return round(sorted_vals[k], 1)


def latency_at(pg, size, rate, seconds, probes):
    """Probes cross prod -> cons while pktgen offers `rate`; one-way latency percentiles."""
    ready = f"/tmp/vm-throughput-probe.{os.getpid()}"
    me = os.path.abspath(__file__)
    recv = subprocess.Popen(["ip", "netns", "exec", "cons", sys.executable, me, "probe-recv", "--port",
                             str(PROBE_PORT), "--count", str(probes), "--timeout", "3", "--ready-file", ready],
                            stdout=subprocess.PIPE, text=True)
    while not os.path.exists(ready):
        time.sleep(0.05)
    os.unlink(ready)
    pg.configure(size, rate)
    rate_probe = max(10, probes / max(1.0, seconds))
    sender = subprocess.Popen(["ip", "netns", "exec", "prod", sys.executable, me, "probe-send", "--to",
                               f"10.20.1.2:{PROBE_PORT}", "--count", str(probes), "--rate", str(rate_probe)])
    if rate:
        pg.run_for(probes / rate_probe)
    sender.wait()
    out = json.loads(recv.communicate()[0])
    lat = sorted(out["latency_us"])
    return {"offered_pps": rate, "probes": probes, "probes_received": out["received"],
            "p50_us": percentile(lat, 50), "p90_us": percentile(lat, 90), "p99_us": percentile(lat, 99),
            "max_us": round(lat[-1], 1) if lat else None}


def search(args):
    pg = Pktgen("eth0", "10.20.1.2", args.dst_mac, "10.10.1.2", args.flows)
    sink = Sink("cons", "eth0")
    results = []
    try:
        for size in args.sizes.split(","):
            trials = []
            # The top of the search: what pktgen offers unpaced.
            top = trial(pg, sink, size, 0, args.trial_seconds)
            trials.append(top)
            top_pps = max(1, top["tx_pps"])
            if top["loss_pct"] == 0:
                ndr = top
            else:
                ndr = search_rate(pg, sink, size, top_pps, 0.0, args.iterations, args.trial_seconds, trials)
            if top["loss_pct"] <= args.pdr_loss:
                pdr = top
            else:
                pdr = search_rate(pg, sink, size, top_pps, args.pdr_loss, args.iterations,
                                  args.trial_seconds, trials, floor=ndr)
            ndr_pps = ndr["tx_pps"] if ndr else 0
            lat = latency_at(pg, size, ndr_pps, args.trial_seconds, args.probes)
            frame = 1518 * 1 / 12 + 570 * 4 / 12 + 64 * 7 / 12 if size == "imix" else int(size)
            results.append({"size": size, "frame_bytes": round(frame, 1), "max_offered_pps": top_pps,
                            "ndr_pps": ndr_pps, "pdr_pps": pdr["tx_pps"] if pdr else 0,
                            "ndr_mbps": round(ndr_pps * frame * 8 / 1e6, 2),
                            "pdr_mbps": round((pdr["tx_pps"] if pdr else 0) * frame * 8 / 1e6, 2),
                            "latency_at_ndr": lat, "trials": trials})
    finally:
        sink.close()
    print(json.dumps({"flows": args.flows, "trial_seconds": args.trial_seconds, "iterations": args.iterations,
                      "pdr_loss_pct": args.pdr_loss, "results": results}, indent=1))
    return 0 if all(r["ndr_pps"] > 0 and r["pdr_pps"] >= r["ndr_pps"] for r in results) else 1


def report(args):
    data = json.load(open(args.result))
    rows = data["results"]
    print(f"RFC 2544-style search: {data['flows']} flows, {data['trial_seconds']} s trials, "
          f"{data['iterations']} iterations, PDR <= {data['pdr_loss_pct']} % loss")
    print(f"{'frame':>6} {'max kpps':>9} {'NDR kpps':>9} {'NDR Mb/s':>9} {'PDR kpps':>9} {'PDR Mb/s':>9} "
          f"{'p50 us':>8} {'p99 us':>8} {'max us':>8} {'probes':>9}")
    for r in rows:
        lat = r["latency_at_ndr"]
        print(f"{r['size']:>6} {r['max_offered_pps'] / 1e3:9.1f} {r['ndr_pps'] / 1e3:9.1f} {r['ndr_mbps']:9.1f} "
              f"{r['pdr_pps'] / 1e3:9.1f} {r['pdr_mbps']:9.1f} {lat['p50_us'] or 0:8.0f} {lat['p99_us'] or 0:8.0f} "
              f"{lat['max_us'] or 0:8.0f} {lat['probes_received']:>4}/{lat['probes']:<4}")
    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        labels = [str(r["size"]) for r in rows]
        x = range(len(rows))
        fig, ax = plt.subplots(figsize=(7, 4))
        w = 0.38
        ax.bar([i - w / 2 for i in x], [r["ndr_pps"] / 1e3 for r in rows], w, label="NDR (0 loss)")
        ax.bar([i + w / 2 for i in x], [r["pdr_pps"] / 1e3 for r in rows], w,
               label=f"PDR (<= {data['pdr_loss_pct']} % loss)")
        ax.set_xticks(list(x), labels)
        ax.set_xlabel("frame size (bytes)")
        ax.set_ylabel("throughput (kpps)")
        ax.set_title("s2ds, DPDK virtio PMD, gwA -> ESP tunnel -> gwB (VM testbed)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
        print(f"plot: {args.png}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("search")
    p.add_argument("--dst-mac", required=True)
    p.add_argument("--sizes", default="64,1400")
    p.add_argument("--flows", type=int, default=16)
    p.add_argument("--trial-seconds", type=float, default=10)
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--pdr-loss", type=float, default=0.5)
    p.add_argument("--probes", type=int, default=1000)
    p = sub.add_parser("report")
    p.add_argument("result")
    p.add_argument("--png")
    p = sub.add_parser("probe-send")
    p.add_argument("--to", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate", type=float, default=100)
    p = sub.add_parser("probe-recv")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--timeout", type=float, default=3)
    p.add_argument("--ready-file", required=True)
    a = ap.parse_args()
    return {"search": search, "report": report, "probe-send": probe_send, "probe-recv": probe_recv}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
